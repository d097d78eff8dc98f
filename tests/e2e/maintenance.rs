//! Background maintenance seen from outside: retention by size and by time deletes old
//! segments; compaction keeps the latest value per key and drops old tombstones.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Server, eventually};

fn total_size(d: &Value) -> i64 {
    d["partition_offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["size_bytes"].as_i64().unwrap())
        .sum()
}

#[test]
fn retention_by_size_and_time_deletes_old_segments() {
    let s = Server::start(&["--cleanup-interval-ms", "200"]);
    s.create_topic(
        json!({"name":"by-size","partitions":1,"segment_bytes":2048,"retention_bytes":8192}),
    );
    s.create_topic(
        json!({"name":"by-time","partitions":1,"segment_bytes":2048,"retention_ms":60000}),
    );
    for i in 0..60 {
        let batch = |ts: Option<i64>| -> Vec<Value> {
            (0..5)
                .map(|j| json!({"value": format!("{i}-{j}-{}", "y".repeat(100)), "timestamp": ts}))
                .collect()
        };
        s.produce("by-size", batch(None));
        // Records stamped in 2001: far past the 60 s retention.
        s.produce("by-time", batch(Some(1_000_000_000_000 + i)));
    }
    assert!(
        eventually(Duration::from_secs(20), || {
            let d = s.describe("by-size");
            d["partition_offsets"][0]["start_offset"].as_i64().unwrap() > 0
                && total_size(&d) <= 8192 + 2048
        }),
        "size retention did not run: {}",
        s.describe("by-size")
    );
    let d = s.describe("by-size");
    let start = d["partition_offsets"][0]["start_offset"].as_i64().unwrap();
    let left = s.read_all("by-size", 0, 0);
    assert_eq!(left.first().unwrap()["offset"], start);
    assert_eq!(left.last().unwrap()["offset"], 299);

    // Time: every closed segment is expired; only the active one stays.
    assert!(
        eventually(
            Duration::from_secs(20),
            || s.describe("by-time")["partition_offsets"][0]["segments"] == 1
        ),
        "time retention did not run: {}",
        s.describe("by-time")
    );
    let left = s.read_all("by-time", 0, 0);
    assert!(
        !left.is_empty() && left.len() < 30,
        "{} records left",
        left.len()
    );
    assert_eq!(left.last().unwrap()["offset"], 299);
}

#[test]
fn compaction_keeps_latest_value_per_key() {
    let mut s = Server::start(&["--cleanup-interval-ms", "200"]);
    s.create_topic(json!({"name":"profiles","partitions":1,"compacted":true,"segment_bytes":2048,"delete_retention_ms":1000}));
    let mut latest: HashMap<String, (i64, Option<String>)> = HashMap::new();
    for round in 0..40 {
        let records: Vec<Value> = (0..10)
            .map(|k| {
                // Key k3 is deleted with a tombstone (stamped long ago) halfway through.
                let value = if k == 3 && round >= 20 { Value::Null } else { json!(format!("k{k}-round{round}-{}", "z".repeat(60))) };
                if k == 3 && round >= 20 {
                    json!({"key": format!("k{k}"), "value": value, "timestamp": 1_000_000_000_000i64})
                } else {
                    json!({"key": format!("k{k}"), "value": value})
                }
            })
            .filter(|r| !(r["key"] == "k3" && round > 20))
            .collect();
        let keys: Vec<(String, Option<String>)> = records
            .iter()
            .map(|r| {
                (
                    r["key"].as_str().unwrap().to_string(),
                    r["value"].as_str().map(String::from),
                )
            })
            .collect();
        for ((_, o), (k, v)) in s.produce("profiles", records).into_iter().zip(keys) {
            latest.insert(k, (o, v));
        }
    }
    let written = 40 * 10 - 19;
    assert!(
        eventually(Duration::from_secs(30), || s
            .read_all("profiles", 0, 0)
            .len()
            < written / 3),
        "compaction did not run: {} records",
        s.read_all("profiles", 0, 0).len()
    );
    // Survives a restart too.
    s.restart();
    let records = s.read_all("profiles", 0, 0);
    let mut seen: HashMap<String, (i64, Option<String>)> = HashMap::new();
    let mut prev = -1;
    for r in &records {
        let o = r["offset"].as_i64().unwrap();
        assert!(o > prev, "offsets must ascend");
        prev = o;
        seen.insert(
            r["key"].as_str().unwrap().to_string(),
            (o, r["value"].as_str().map(String::from)),
        );
    }
    for k in 0..10 {
        let key = format!("k{k}");
        if k == 3 {
            // The old tombstone was removed along with every earlier value of k3.
            assert!(
                !seen.contains_key(&key),
                "k3 should be gone: {:?}",
                seen.get(&key)
            );
        } else {
            assert_eq!(seen.get(&key), latest.get(&key), "{key}");
        }
    }
    assert_eq!(
        s.describe("profiles")["partition_offsets"][0]["end_offset"],
        written as i64
    );
}

//! Producing and reading records over HTTP: ordering, partitioning, headers, timestamps,
//! volume, and the streaming follow.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::{Value, json};
use weir_broker::partitioner::partition_for_key;

use crate::common::Server;

#[test]
fn produce_and_read_back_with_keys_headers_timestamps() {
    let s = Server::start(&[]);
    s.create_topic(json!({"name":"t","partitions":4}));
    let records: Vec<Value> = (0..40)
        .map(|i| json!({"key": format!("key-{}", i % 9), "value": format!("value-{i}"), "headers": {"h": format!("x{i}")}, "timestamp": 1_700_000_000_000i64 + i}))
        .collect();
    let offsets = s.produce("t", records);
    assert_eq!(offsets.len(), 40);
    // Keys land where Kafka's default partitioner puts them, offsets are dense per partition.
    let mut next = [0i64; 4];
    for (i, (p, o)) in offsets.iter().enumerate() {
        assert_eq!(
            *p,
            partition_for_key(format!("key-{}", i % 9).as_bytes(), 4) as i64
        );
        assert_eq!(*o, next[*p as usize]);
        next[*p as usize] += 1;
    }
    for p in 0..4 {
        let got = s.read_all("t", p, 0);
        let expected: Vec<usize> = offsets
            .iter()
            .enumerate()
            .filter(|(_, (pp, _))| *pp == p)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(got.len(), expected.len());
        for (r, i) in got.iter().zip(expected) {
            assert_eq!(r["value"], format!("value-{i}"));
            assert_eq!(r["key"], format!("key-{}", i % 9));
            assert_eq!(r["headers"]["h"], format!("x{i}"));
            assert_eq!(r["timestamp"], 1_700_000_000_000i64 + i as i64);
        }
    }
    // Reading by timestamp starts at the first record at or after it.
    let p0: Vec<usize> = offsets
        .iter()
        .enumerate()
        .filter(|(_, (p, _))| *p == 0)
        .map(|(i, _)| i)
        .collect();
    let target = p0[p0.len() / 2];
    let (status, body) = s.get(&format!(
        "/v1/topics/t/partitions/0/records?timestamp={}&max=1",
        1_700_000_000_000i64 + target as i64
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["records"][0]["value"], format!("value-{target}"));
    let (_, body) = s.get("/v1/topics/t/partitions/0/records?timestamp=1800000000000");
    assert!(body["records"].as_array().unwrap().is_empty());

    // Explicit partition, null value, no key.
    let o = s.produce(
        "t",
        vec![
            json!({"value": null, "partition": 2}),
            json!({"value": "v", "partition": 2}),
        ],
    );
    assert_eq!(o, vec![(2, next[2]), (2, next[2] + 1)]);
    let (_, body) = s.get(&format!(
        "/v1/topics/t/partitions/2/records?offset={}&max=1",
        next[2]
    ));
    assert_eq!(body["records"].as_array().unwrap().len(), 1);
    assert_eq!(body["records"][0]["value"], Value::Null);
    assert_eq!(body["records"][0]["key"], Value::Null);
    assert_eq!(body["next_offset"], next[2] + 1);
}

#[test]
fn hundred_thousand_records_in_and_out_in_order() {
    let s = Server::start(&[]);
    s.create_topic(json!({"name":"bulk","partitions":3}));
    let total = 100_000;
    let mut sent: Vec<Vec<String>> = vec![Vec::new(); 3];
    for chunk in 0..20 {
        let records: Vec<Value> = (0..total / 20)
            .map(|i| {
                let n = chunk * (total / 20) + i;
                json!({"key": format!("k{}", n % 1000), "value": format!("record-{n}")})
            })
            .collect();
        let values: Vec<String> = records
            .iter()
            .map(|r| r["value"].as_str().unwrap().to_string())
            .collect();
        for ((p, _), v) in s.produce("bulk", records).into_iter().zip(values) {
            sent[p as usize].push(v);
        }
    }
    let mut received = 0;
    for (p, expected) in sent.iter().enumerate() {
        let got: Vec<String> = s
            .read_all("bulk", p as i64, 0)
            .iter()
            .map(|r| r["value"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got.len(), expected.len(), "partition {p}");
        assert!(got == *expected, "partition {p}: order differs");
        received += got.len();
    }
    assert_eq!(received, total);
}

#[test]
fn follow_streams_new_records_as_ndjson() {
    let s = Server::start(&[]);
    s.create_topic(json!({"name":"live","partitions":1}));
    s.produce("live", vec![json!({"value":"before"})]);
    let resp = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .get(format!(
            "{}/v1/topics/live/partitions/0/records?offset=0&follow=true",
            s.url
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut lines = BufReader::new(resp).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["value"], "before");
    assert_eq!(first["offset"], 0);
    // Records appended after the stream opened arrive on it.
    let url = s.url.clone();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let c = reqwest::blocking::Client::new();
        for i in 0..3 {
            let r = c
                .post(format!("{url}/v1/topics/live/records"))
                .json(&json!({"records":[{"value": format!("after-{i}")}]}))
                .send()
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
        }
    });
    for i in 0..3 {
        let rec: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(rec["value"], format!("after-{i}"));
        assert_eq!(rec["offset"], i + 1);
    }
    producer.join().unwrap();
}

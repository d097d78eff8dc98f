//! SIGKILL during a stream of acknowledged appends: after a restart every acknowledged record
//! is there, at the offset it was acknowledged with, and appends continue after it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::Server;

#[test]
fn sigkill_loses_no_acknowledged_record() {
    for round in 0..3 {
        let mut s = Server::start(&[]);
        s.create_topic(
            json!({"name":"durable","partitions":2,"fsync":"batch","segment_bytes": 65536}),
        );
        let acked: Arc<Mutex<Vec<(i64, i64, String)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..3 {
            let (acked, stop, url) = (acked.clone(), stop.clone(), s.url.clone());
            writers.push(std::thread::spawn(move || {
                let c = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let values: Vec<String> = (0..5)
                        .map(|i| format!("r{round}-w{w}-{n}-{i}-{}", "x".repeat(200)))
                        .collect();
                    let records: Vec<Value> = values
                        .iter()
                        .map(|v| json!({"key": format!("w{w}-{n}"), "value": v}))
                        .collect();
                    let Ok(r) = c
                        .post(format!("{url}/v1/topics/durable/records"))
                        .json(&json!({"records": records}))
                        .send()
                    else {
                        break;
                    };
                    if r.status().as_u16() != 200 {
                        break;
                    }
                    let Ok(body) = r.json::<Value>() else { break };
                    let mut a = acked.lock().unwrap();
                    for (o, v) in body["offsets"].as_array().unwrap().iter().zip(values) {
                        a.push((
                            o["partition"].as_i64().unwrap(),
                            o["offset"].as_i64().unwrap(),
                            v,
                        ));
                    }
                    n += 1;
                }
            }));
        }
        // Kill once a round-dependent number of appends is acknowledged (not after a fixed
        // time, so a slow machine still kills mid-stream with enough acknowledged work).
        let want = 60 + 90 * round as usize;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while acked.lock().unwrap().len() < want && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        s.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        assert!(
            acked.len() > 50,
            "too few appends acknowledged before the kill: {}",
            acked.len()
        );

        s.restart();
        let stored: Vec<Vec<Value>> = (0..2).map(|p| s.read_all("durable", p, 0)).collect();
        for (p, offset, value) in &acked {
            let r = &stored[*p as usize]
                .get(*offset as usize)
                .unwrap_or_else(|| panic!("acknowledged {p}/{offset} missing"));
            assert_eq!(r["offset"], *offset);
            assert_eq!(r["value"], value.as_str(), "record at {p}/{offset}");
        }
        // Offsets are dense and the log takes appends after recovery.
        for (p, records) in stored.iter().enumerate() {
            for (i, r) in records.iter().enumerate() {
                assert_eq!(r["offset"], i as i64);
            }
            let o = s.produce("durable", vec![json!({"value":"after", "partition": p})]);
            assert_eq!(o[0].1, records.len() as i64);
        }
    }
}

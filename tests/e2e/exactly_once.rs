//! Exactly-once processors (`"guarantee": "exactly_once"`) through the real binary, the
//! word-count guest and confluent-kafka (`tests/kafka/confluent_transactions.py`):
//!
//! - a processor reads committed input only: a transactional producer's aborted records
//!   never reach its output (this holds for `at_least_once` processors too);
//! - a word count killed with SIGKILL again and again while it processes, and restarted,
//!   ends with exact counts, and its output read with `isolation.level=read_committed` holds
//!   each word's updates exactly once: per word, the counts are exactly the running sums of
//!   the committed repartitioned additions (none repeated, none missing), and those
//!   additions sum to the word's occurrences in the input.
//!
//! Why this fails without exactly-once: an `at_least_once` task appends its repartitioned
//! records and outputs as it processes and commits its input offsets only every commit
//! interval, so a SIGKILL between the two makes the restarted task process that input
//! again. Its repartitioned additions are then in the log twice, and the owning task adds
//! them twice: the word's final count exceeds its occurrences and the sum check fails
//! (`processors.rs`'s at-least-once SIGKILL test can only assert `>=` for that reason). Here
//! the appends are transactional and committed with the offsets, and the restarted task
//! first aborts the killed one's transaction (InitProducerId's epoch bump).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Server, eventually, free_port, guest};
use crate::kafka::python;
use crate::processors::{caught_up, query, word_counts};

const DEADLINE: Duration = Duration::from_secs(120);

fn start() -> (Server, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let server = Server::start(&["--kafka", &addr]);
    (server, addr)
}

/// Every record of a partition read committed (`isolation=read_committed`).
fn read_committed(s: &Server, topic: &str, partition: i64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let (status, body) = s.get(&format!(
            "/v1/topics/{topic}/partitions/{partition}/records?offset={offset}&max=5000&isolation=read_committed"
        ));
        assert_eq!(status, 200, "read: {body}");
        let records = body["records"].as_array().unwrap().clone();
        let next = body["next_offset"].as_i64().unwrap();
        if records.is_empty() && next <= offset {
            return out;
        }
        out.extend(records);
        if next >= body["end_offset"].as_i64().unwrap() {
            return out;
        }
        offset = next;
    }
}

#[test]
fn processors_never_see_aborted_input() {
    let (s, kafka) = start();
    s.create_topic(json!({"name": "ti", "partitions": 2}));
    for (name, guarantee) in [("up-alo", "at_least_once"), ("up-eos", "exactly_once")] {
        let d = s.deploy(
            &json!({"name": name, "inputs": ["ti"], "outputs": [format!("{name}-out")],
                    "commit_interval_ms": 100, "guarantee": guarantee}),
            guest("uppercase"),
        );
        assert_eq!(d["spec"]["guarantee"], guarantee, "{d}");
    }
    let r = python(
        "confluent_transactions.py",
        &[
            "abort-input",
            "--bootstrap",
            &kafka,
            "--topic",
            "ti",
            "--num",
            "200",
            "--txn-id",
            "input-producer",
        ],
    );
    assert_eq!(r["committed"], 400);
    for name in ["up-alo", "up-eos"] {
        let out = format!("{name}-out");
        let values = || {
            let mut v: Vec<String> = (0..2)
                .flat_map(|p| read_committed(&s, &out, p))
                .map(|r| r["value"].as_str().unwrap_or_default().to_string())
                .collect();
            v.sort();
            v
        };
        assert!(
            eventually(DEADLINE, || values().len() >= 400 && caught_up(&s, name)),
            "{name}: {} outputs",
            values().len()
        );
        let v = values();
        assert_eq!(v.len(), 400, "{name}");
        assert!(
            v.iter().all(|x| x.starts_with("C-")),
            "{name}: {:?}",
            &v[..5]
        );
        // Nothing aborted is in the output even read uncommitted.
        let all: usize = (0..2).map(|p| s.read_all(&out, p, 0).len()).sum();
        assert!(
            (0..2)
                .flat_map(|p| s.read_all(&out, p, 0))
                .all(|r| !r["value"].as_str().unwrap_or_default().starts_with("AB-")),
            "{name}: {all} records"
        );
    }
}

#[test]
fn exactly_once_word_count_survives_repeated_sigkill_with_each_update_once() {
    let (mut s, kafka) = start();
    s.create_topic(json!({"name": "text", "partitions": 3}));
    let d = s.deploy(
        &json!({"name": "wc", "inputs": ["text"], "outputs": ["counts"],
                "commit_interval_ms": 100, "guarantee": "exactly_once"}),
        guest("word-count"),
    );
    assert_eq!(d["spec"]["guarantee"], "exactly_once");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    // The node listens on a new HTTP port after each restart.
    let url = Arc::new(Mutex::new(s.url.clone()));
    let writer = {
        let (stop, sent, url) = (stop.clone(), sent.clone(), url.clone());
        std::thread::spawn(move || {
            let c = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let records: Vec<Value> = (0..25)
                    .map(|i| json!({"value": format!("w{} v{} common", (n + i) % 17, i % 4)}))
                    .collect();
                let base = url.lock().unwrap().clone();
                let ok = c
                    .post(format!("{base}/v1/topics/text/records"))
                    .json(&json!({"records": records}))
                    .send()
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    n += 25;
                    sent.store(n, Ordering::Relaxed);
                } else {
                    // The node is down (killed): try again once it is back.
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
    };
    // Kill the node while the processor is busy, five times.
    let kills = 5;
    for k in 1..=kills {
        let target = sent.load(Ordering::Relaxed) + 500;
        assert!(
            eventually(DEADLINE, || sent.load(Ordering::Relaxed) >= target),
            "the writer stalled before kill {k}"
        );
        std::thread::sleep(Duration::from_millis(150 + 70 * k as u64));
        s.kill9();
        std::thread::sleep(Duration::from_millis(100));
        s.restart();
        *url.lock().unwrap() = s.url.clone();
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        eventually(DEADLINE, || caught_up(&s, "wc")),
        "{}",
        s.processor("wc")
    );

    // What the input really holds (acknowledged or not), counted exactly.
    let mut input = Vec::new();
    for p in 0..3 {
        for r in s.read_all("text", p, 0) {
            input.push(r["value"].as_str().unwrap().to_string());
        }
    }
    assert!(input.len() >= 2500, "only {} input records", input.len());
    let exact = word_counts(input.iter().map(String::as_str));

    // The store: exact.
    for (w, n) in &exact {
        let (status, body) = query(&s, "wc", "counts", w);
        assert_eq!(status, 200, "{w}: {body}");
        assert_eq!(body["value"], n.to_string(), "{w}");
    }
    // The output, read committed: the latest count of every word is exact.
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    for p in 0..3 {
        for r in read_committed(&s, "counts", p) {
            latest.insert(
                r["key"].as_str().unwrap().to_string(),
                r["value"].as_str().unwrap().to_string(),
            );
        }
    }
    let want: BTreeMap<String, String> = exact
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    assert_eq!(latest, want);

    // confluent-kafka, read_committed: every update exactly once.
    let r = python(
        "confluent_transactions.py",
        &[
            "updates",
            "--bootstrap",
            &kafka,
            "--topic",
            "counts",
            "--out",
            "wc.repartition",
        ],
    );
    let words = r["words"].as_object().unwrap();
    assert_eq!(words.len(), exact.len(), "{r}");
    for (w, n) in &exact {
        let got = &words[w.as_str()];
        assert_eq!(got["added"], json!(n), "{w}: {got}");
        assert_eq!(got["last"], json!(n), "{w}: {got}");
        assert_eq!(got["running_sums"], json!(true), "{w}: {got}");
    }
    let d = s.processor("wc");
    let restarts: Vec<i64> = d["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["commits"].as_i64().unwrap_or(0))
        .collect();
    eprintln!(
        "{kills} kills, {} input records, task commits since the last start: {restarts:?}",
        input.len()
    );
}

#[test]
fn exactly_once_is_shown_and_validated() {
    let s = Server::start(&[]);
    s.create_topic(json!({"name": "g", "partitions": 1}));
    let d = s.deploy(
        &json!({"name": "g-default", "inputs": ["g"], "outputs": ["g-out"]}),
        guest("uppercase"),
    );
    assert_eq!(d["spec"]["guarantee"], "at_least_once");
    let (status, body) = s.upload(
        reqwest::Method::POST,
        "/v1/processors",
        &json!({"name": "g-bad", "inputs": ["g"], "outputs": ["g-out2"], "guarantee": "twice"}),
        guest("uppercase"),
    );
    assert_eq!(status, 400, "{body}");
}

//! Many partitions and broken ones (issue #12, finding 2): a 10,000-partition topic (the
//! documented maximum) is created over HTTP and Kafka, written to in every partition and
//! survives a restart on this machine's default open-file limit; under a low limit the
//! create is refused (`400 policy_violation` / `POLICY_VIOLATION`) with nothing left on disk
//! and the node restarts; a partition that cannot be opened at start is reported while the
//! rest of the node serves.

use std::path::Path;

use serde_json::{Value, json};

use crate::common::Server;
use crate::kafka::python;

/// Kafka's POLICY_VIOLATION error code.
const POLICY_VIOLATION: i64 = 44;

const WIDE: i64 = 10_000;

/// Names under `<data>/topics` and `<data>/staging` (what a create left on disk).
fn on_disk(data: &Path) -> (Vec<String>, Vec<String>) {
    let names = |d: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(data.join(d))
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    (names("topics"), names("staging"))
}

fn kafka_create(server: &Server, topic: &str, partitions: i64) -> Value {
    python(
        "admin_create_topic.py",
        &[
            "--bootstrap",
            &server.kafka,
            "--topic",
            topic,
            "--partitions",
            &partitions.to_string(),
        ],
    )
}

/// Asserts every partition of `topic` is online and ends at `end`.
fn assert_ends(server: &Server, topic: &str, partitions: i64, end: i64) {
    let d = server.describe(topic);
    let parts = d["partition_offsets"].as_array().unwrap();
    assert_eq!(parts.len() as i64, partitions);
    for p in parts {
        assert_eq!(p["status"], json!("online"), "{p}");
        assert_eq!(p["end_offset"], json!(end), "{p}");
    }
}

fn metrics(s: &Server) -> String {
    s.http
        .get(format!("{}/metrics", s.url))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// This process's hard open-file limit (what the server can raise its soft limit to).
fn hard_fd_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX)
}

#[test]
fn ten_thousand_partitions_are_created_written_everywhere_and_survive_restarts() {
    let mut s = Server::start(&[]);
    if hard_fd_limit() < 16_384 {
        // Too few descriptors for 10,000 partitions here: the refusal must be clean.
        let (status, body) = s.post("/v1/topics", &json!({"name": "wide", "partitions": WIDE}));
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], json!("policy_violation"));
        eprintln!("hard open-file limit below 16384: only the refusal was checked");
        return;
    }
    // Over HTTP.
    let (status, body) = s.post("/v1/topics", &json!({"name": "wide", "partitions": WIDE}));
    assert_eq!(status, 201, "{body}");
    let records: Vec<Value> = (0..WIDE)
        .map(|p| json!({"key": format!("k{p}"), "value": format!("v{p}"), "partition": p}))
        .collect();
    let offsets = s.produce("wide", records);
    assert_eq!(offsets.len() as i64, WIDE);
    assert!(
        offsets.iter().all(|(_, o)| *o == 0),
        "one record per partition"
    );
    assert_ends(&s, "wide", WIDE, 1);

    // A second 10,000-partition topic does not fit this node's budget (derived from the
    // open-file limit): Kafka's CreateTopics is refused before anything is written.
    let before = on_disk(&s.data_dir);
    assert!(before.0.contains(&"wide".to_string()));
    let r = kafka_create(&s, "wide2", WIDE);
    assert_eq!(r["created"], json!(false), "{r}");
    assert_eq!(r["code"], json!(POLICY_VIOLATION), "{r}");
    assert_eq!(on_disk(&s.data_dir), before);

    // SIGKILL and start again: every partition recovers and still serves.
    s.restart();
    assert_ends(&s, "wide", WIDE, 1);
    for p in [0, 1, 4_999, 9_999] {
        let got = s.read_all("wide", p, 0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["value"], json!(format!("v{p}")));
    }
    let records: Vec<Value> = (0..WIDE)
        .map(|p| json!({"value": format!("w{p}"), "partition": p}))
        .collect();
    s.produce("wide", records);
    assert_ends(&s, "wide", WIDE, 2);

    // Over Kafka, once there is room again; then a clean stop and start.
    assert_eq!(s.delete("/v1/topics/wide"), 204);
    let r = kafka_create(&s, "wide2", WIDE);
    assert_eq!(r["created"], json!(true), "{r}");
    let records: Vec<Value> = (0..WIDE)
        .map(|p| json!({"value": format!("x{p}"), "partition": p}))
        .collect();
    s.produce("wide2", records);
    assert!(s.terminate(), "clean shutdown");
    s.start_again();
    assert_ends(&s, "wide2", WIDE, 1);
    assert_eq!(s.read_all("wide2", 7_777, 0)[0]["value"], json!("x7777"));
}

#[test]
fn under_a_low_fd_limit_a_wide_topic_is_refused_cleanly_and_the_node_restarts() {
    let mut s = Server::start_with_nofile(Some(1024), &[]);
    let before = on_disk(&s.data_dir);

    let (status, body) = s.post("/v1/topics", &json!({"name": "wide", "partitions": WIDE}));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], json!("policy_violation"), "{body}");
    let r = kafka_create(&s, "wide", WIDE);
    assert_eq!(r["created"], json!(false), "{r}");
    assert_eq!(r["code"], json!(POLICY_VIOLATION), "{r}");
    assert_eq!(
        on_disk(&s.data_dir),
        before,
        "a refused create leaves nothing"
    );
    assert_eq!(s.get("/v1/topics/wide").0, 404);

    // What fits is still created, written and kept; the node restarts under the same limit.
    s.create_topic(json!({"name": "narrow", "partitions": 200}));
    let records: Vec<Value> = (0..200)
        .map(|p| json!({"value": format!("v{p}"), "partition": p}))
        .collect();
    s.produce("narrow", records);
    s.restart();
    assert_ends(&s, "narrow", 200, 1);
    assert_eq!(s.get("/v1/topics/wide").0, 404);
}

/// Under a limit far below the number of segment files, the log still serves every
/// partition: files are closed and reopened through the cache.
#[test]
fn a_node_serves_more_partition_files_than_its_fd_limit() {
    let mut s = Server::start_with_nofile(Some(512), &["--max-partitions", "3000"]);
    s.create_topic(json!({"name": "many", "partitions": 3000}));
    for round in 0..2 {
        let records: Vec<Value> = (0..3000)
            .map(|p| json!({"value": format!("r{round}p{p}"), "partition": p}))
            .collect();
        s.produce("many", records);
    }
    for p in [0, 1_234, 2_999] {
        let got = s.read_all("many", p, 0);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1]["value"], json!(format!("r1p{p}")));
    }
    let metrics = metrics(&s);
    assert!(
        metrics.contains("weir_log_file_evictions_total"),
        "{metrics}"
    );
    s.restart();
    assert_ends(&s, "many", 3000, 2);
}

#[test]
fn a_partition_that_cannot_be_opened_is_reported_and_the_rest_of_the_node_serves() {
    let mut s = Server::start(&[]);
    s.create_topic(json!({"name": "good", "partitions": 2}));
    s.create_topic(json!({"name": "bad", "partitions": 3}));
    s.create_topic(json!({"name": "ugly", "partitions": 1}));
    for (t, n) in [("good", 2), ("bad", 3)] {
        let records: Vec<Value> = (0..6)
            .map(|i| json!({"value": format!("{t}{i}"), "partition": i % n}))
            .collect();
        s.produce(t, records);
    }
    assert!(s.terminate());
    // One partition directory replaced by a file; one topic's spec made unreadable.
    let part = s.data_dir.join("topics/bad/1");
    std::fs::remove_dir_all(&part).unwrap();
    std::fs::write(&part, b"not a directory").unwrap();
    std::fs::write(s.data_dir.join("topics/ugly/topic.json"), b"{ not json").unwrap();

    s.start_again();
    // The broken partition is reported…
    let d = s.describe("bad");
    let parts = d["partition_offsets"].as_array().unwrap();
    assert_eq!(parts[1]["status"], json!("offline"), "{d}");
    assert!(parts[1]["error"].as_str().unwrap().contains("bad/1"), "{d}");
    assert_eq!(parts[0]["status"], json!("online"));
    assert_eq!(parts[2]["status"], json!("online"));
    let (status, body) = s.post(
        "/v1/topics/bad/records",
        &json!({"records": [{"value": "x", "partition": 1}]}),
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], json!("partition_offline"));
    let metrics = metrics(&s);
    assert!(
        metrics.contains("weir_partitions_offline{topic=\"bad\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_partitions_offline{topic=\"ugly\"} 1"),
        "{metrics}"
    );
    // …and everything else serves: the other partitions, the other topics, new topics.
    assert!(!s.read_all("bad", 0, 0).is_empty());
    assert!(!s.read_all("good", 0, 0).is_empty());
    s.produce("good", vec![json!({"value": "after", "partition": 1})]);
    s.produce("bad", vec![json!({"value": "after", "partition": 2})]);
    s.create_topic(json!({"name": "fresh", "partitions": 1}));
    // The unreadable topic keeps its name (its files are left for the operator).
    assert_eq!(
        s.post("/v1/topics", &json!({"name": "ugly", "partitions": 1}))
            .0,
        409
    );
}

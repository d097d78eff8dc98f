//! Kafka transactions (KIP-98) with confluent-kafka (librdkafka) against `weir serve
//! --kafka`: commit and abort seen through read_committed and read_uncommitted consumers,
//! consume-transform-produce with `send_offsets_to_transaction`, a zombie fenced by a second
//! producer with the same transactional id, a SIGKILL of the server in the middle of a
//! transaction and during its commit (all or nothing after the restart), a transaction aborted by its timeout, and a cluster refusing transactional ids at once instead of hanging. The
//! client side is `tests/kafka/confluent_transactions.py`.

use std::time::Duration;

use serde_json::json;

use crate::common::{Server, eventually, free_port};
use crate::kafka::python;

fn start() -> (Server, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let server = Server::start(&["--kafka", &addr]);
    (server, addr)
}

fn txn(args: &[&str]) -> serde_json::Value {
    python("confluent_transactions.py", args)
}

#[test]
fn committed_transactions_are_read_committed_and_aborted_ones_only_read_uncommitted() {
    let (server, kafka) = start();
    server.create_topic(json!({"name": "tx", "partitions": 3}));
    let s = txn(&[
        "commit-abort",
        "--bootstrap",
        &kafka,
        "--topic",
        "tx",
        "--num",
        "300",
    ]);
    assert_eq!(s["read_committed"], json!(600));
    assert_eq!(s["read_uncommitted"], json!(900));
    assert_eq!(s["aborted_seen_by_committed"], json!(0));
    // Weir's own readers (HTTP here) never see a marker as a record: 900 records, and the
    // partitions' offsets also hold one marker per transaction and partition.
    let d = server.describe("tx");
    let end: i64 = d["partition_offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["end_offset"].as_i64().unwrap())
        .sum();
    let mut records = 0;
    for p in 0..3 {
        records += server.read_all("tx", p, 0).len() as i64;
    }
    assert_eq!(records, 900);
    assert!(end > 900, "markers take offsets: {end}");
}

#[test]
fn consume_transform_produce_moves_the_groups_offsets_only_on_commit() {
    let (server, kafka) = start();
    server.create_topic(json!({"name": "ctp-in", "partitions": 2}));
    server.create_topic(json!({"name": "ctp-out", "partitions": 2}));
    let s = txn(&[
        "ctp",
        "--bootstrap",
        &kafka,
        "--topic",
        "ctp-in",
        "--out",
        "ctp-out",
        "--group",
        "ctp",
        "--num",
        "500",
    ]);
    assert_eq!(s["output"], json!(500));
    assert_eq!(s["aborted_round_checked"], json!(true));
    assert!(s["output_uncommitted"].as_i64().unwrap() > 500, "{s}");
}

#[test]
fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let (server, kafka) = start();
    server.create_topic(json!({"name": "fz", "partitions": 1}));
    let s = txn(&["fence", "--bootstrap", &kafka, "--topic", "fz"]);
    let name = s["zombie_error"]["name"].as_str().unwrap().to_string();
    assert!(
        name.contains("FENCED") || name.contains("INVALID_PRODUCER_EPOCH"),
        "{s}"
    );
    assert_eq!(s["committed"], json!(["live-0", "live-1"]));
}

#[test]
fn a_transaction_in_flight_at_a_sigkill_is_aborted_after_the_restart() {
    let (mut server, kafka) = start();
    server.create_topic(json!({"name": "crash", "partitions": 2}));
    let s = txn(&[
        "begin",
        "--bootstrap",
        &kafka,
        "--topic",
        "crash",
        "--txn-id",
        "crashing",
        "--num",
        "200",
    ]);
    assert_eq!(s["in_flight"], json!(200));
    server.restart(); // SIGKILL, then the same data dir and ports
    assert!(eventually(Duration::from_secs(30), || server
        .get("/v1/topics/crash")
        .0
        == 200));
    // A read_committed consumer reaches the end (not stuck below the aborted transaction)
    // and sees only the committed records; then a new producer with the same id commits.
    let r = txn(&[
        "read",
        "--bootstrap",
        &kafka,
        "--topic",
        "crash",
        "--txn-id",
        "crashing",
        "--expect",
        "200",
        "--prefix",
        "before-",
    ]);
    assert_eq!(r["read_committed"], json!(200));
}

#[test]
fn a_sigkill_during_commit_leaves_the_transaction_all_committed_or_all_aborted() {
    let (mut server, kafka) = start();
    // Many partitions: the markers take long enough for the kill to land among them.
    server.create_topic(json!({"name": "ck", "partitions": 200}));
    let mut outcomes = Vec::new();
    for (round, delay) in [0, 5, 50].into_iter().enumerate() {
        let prefix = format!("r{round}-");
        let pid = server.pid().to_string();
        let txn_id = format!("killed-{round}");
        let delay = delay.to_string();
        txn(&[
            "commit-kill",
            "--bootstrap",
            &kafka,
            "--topic",
            "ck",
            "--txn-id",
            &txn_id,
            "--prefix",
            &prefix,
            "--kill-pid",
            &pid,
            "--delay-ms",
            &delay,
        ]);
        server.restart(); // reaps the killed process, starts on the same data dir
        assert!(eventually(Duration::from_secs(30), || server
            .get("/v1/topics/ck")
            .0
            == 200));
        let s = txn(&[
            "atomic",
            "--bootstrap",
            &kafka,
            "--topic",
            "ck",
            "--prefix",
            &prefix,
            "--expect",
            "200",
        ]);
        outcomes.push(s["committed"].clone());
    }
    // Printed for the record: which rounds committed depends on where each kill landed.
    eprintln!("committed per round: {outcomes:?}");
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let (server, kafka) = start();
    server.create_topic(json!({"name": "slow", "partitions": 2}));
    let s = txn(&[
        "timeout",
        "--bootstrap",
        &kafka,
        "--topic",
        "slow",
        "--num",
        "20",
    ]);
    assert_eq!(s["commit_error"]["fatal"], json!(true), "{s}");
    assert!(
        s["commit_error"]["name"]
            .as_str()
            .unwrap()
            .contains("FENCED"),
        "{s}"
    );
}

#[test]
fn a_cluster_refuses_transactional_ids_at_once() {
    let servers = crate::replication::start_cluster();
    let spec = json!({"name": "ctx", "partitions": 1, "replication_factor": 3});
    assert!(eventually(Duration::from_secs(60), || matches!(
        servers[0].post("/v1/topics", &spec).0,
        201 | 409
    )));
    let s = txn(&[
        "refused",
        "--bootstrap",
        &servers[0].kafka,
        "--topic",
        "ctx",
    ]);
    assert_eq!(s["fatal"], json!(true), "{s}");
    assert_eq!(
        s["name"],
        json!("TRANSACTIONAL_ID_AUTHORIZATION_FAILED"),
        "{s}"
    );
    assert!(s["seconds"].as_f64().unwrap() < 30.0, "{s}");
}

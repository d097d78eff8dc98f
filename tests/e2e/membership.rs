//! Cluster membership through real `weir serve` processes: a fourth node started with
//! `--join` gets its share of the replicas by itself (throttled by
//! `--replication-throttle-bytes`) and then of the leaderships, then `weir cluster decommission 3 --wait` moves every
//! replica off node 3, takes it out of the metadata quorum (the joined learner becomes a
//! voter in its place) and retires its id — all while an idempotent `acks=all`
//! confluent-kafka producer keeps writing, and every record it was told is stored is read
//! back exactly once, in order. A decommission the other nodes could not hold is refused,
//! and a retired id stays retired. Timing is never asserted beyond liveness bounds.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Server, eventually, free_port, stderr, stdout};
use crate::replication::{create_replicated, start_cluster_with};

fn cluster(s: &Server) -> Value {
    s.get("/v1/cluster").1
}

fn node(view: &Value, id: u64) -> Option<&Value> {
    view["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"].as_u64() == Some(id))
}

fn replicas_of(view: &Value, id: u64) -> Option<u64> {
    node(view, id)?["replicas"].as_u64()
}

/// Every partition of `topic` led and with its whole replica list in sync, and no move in
/// flight.
fn settled(view: &Value) -> bool {
    view["under_replicated"]
        .as_array()
        .is_some_and(Vec::is_empty)
        && view["offline"].as_array().is_some_and(Vec::is_empty)
        && view["reassigning"].as_array().is_some_and(Vec::is_empty)
}

#[test]
fn a_joined_node_takes_its_share_and_a_decommissioned_node_leaves_with_nothing_lost() {
    // Leaderships are balanced 1 s after the cluster settles (default 30 s).
    let servers = start_cluster_with(&["--leader-balance-delay-ms", "1000"], &[]);
    create_replicated(
        &servers[0],
        json!({"name": "moving", "partitions": 6, "replication_factor": 3, "min_insync_replicas": 2}),
    );
    assert!(
        eventually(Duration::from_secs(60), || {
            let v = cluster(&servers[0]);
            settled(&v) && replicas_of(&v, 1) == Some(6)
        }),
        "{}",
        cluster(&servers[0])
    );
    let bootstrap = servers
        .iter()
        .map(|s| s.kafka.clone())
        .collect::<Vec<_>>()
        .join(",");
    let stop = tempfile::tempdir().unwrap();
    let stop_file = stop.path().join("stop");
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/kafka/cluster_produce_verify.py");
    let producer = Command::new("python3")
        .arg(script)
        .args([
            "--bootstrap",
            &bootstrap,
            "--topic",
            "moving",
            "--rate",
            "500",
        ])
        .arg("--stop")
        .arg(&stop_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with confluent-kafka (scripts/test.sh installs it)");
    std::thread::sleep(Duration::from_secs(2));

    // Node 4 joins through node 1 and gets replicas moved onto it by the controller.
    let v = cluster(&servers[0]);
    let join = node(&v, 1).unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let n4 = Server::start(&[
        "--node-id",
        "4",
        "--cluster-listen",
        &listen,
        "--join",
        &join,
        "--replication-throttle-bytes",
        "2000000",
        "--leader-balance-delay-ms",
        "1000",
    ]);
    assert!(
        eventually(Duration::from_secs(120), || {
            let v = cluster(&servers[0]);
            settled(&v) && replicas_of(&v, 4).is_some_and(|n| n >= 4)
        }),
        "node 4 never got its share: {}",
        cluster(&servers[0])
    );
    let v = cluster(&servers[0]);
    let counts: Vec<u64> = (1..=4).filter_map(|id| replicas_of(&v, id)).collect();
    assert_eq!(counts.iter().sum::<u64>(), 18, "{v}");
    assert!(
        counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
        "{counts:?}"
    );
    // …and its share of the leaderships, once the cluster has been settled for a while.
    assert!(
        eventually(Duration::from_secs(60), || {
            let v = cluster(&servers[0]);
            let led: Vec<u64> = (1..=4)
                .filter_map(|id| node(&v, id)?["partitions_led"].as_u64())
                .collect();
            led.len() == 4
                && led.iter().sum::<u64>() == 6
                && led.iter().all(|l| (1..=2).contains(l))
        }),
        "leaderships not spread over the four nodes: {}",
        cluster(&servers[0])
    );

    // Node 3 goes, through the CLI, waiting until it is done.
    let out = servers[0].cli(&["cluster", "decommission", "3", "--wait"], None);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("node 3 is decommissioned"),
        "{}",
        stdout(&out)
    );
    let v = cluster(&servers[1]);
    assert_eq!(v["retired"], json!([3]), "{v}");
    assert!(node(&v, 3).is_none(), "{v}");
    assert!(
        eventually(Duration::from_secs(30), || {
            let v = cluster(&servers[1]);
            let voters = &v["metadata"]["voters"];
            voters == &json!([1, 2, 4])
        }),
        "the joined learner did not take the decommissioned voter's place: {}",
        cluster(&servers[1])
    );
    assert!(
        eventually(Duration::from_secs(60), || settled(&cluster(&servers[1]))),
        "{}",
        cluster(&servers[1])
    );
    // Three nodes must stay for a factor of 3: decommissioning another one is refused.
    let (status, body) = servers[0].post("/v1/cluster/nodes/1/decommission", &json!({}));
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"]["code"],
        json!("cannot_decommission"),
        "{body}"
    );
    // A node id that is not one, or one the cluster never had: a clear 4xx, nothing changes.
    for (id, want, code) in [
        ("abc", 400, "bad_request"),
        ("18446744073709551616", 400, "bad_request"),
        ("99", 404, "unknown_node"),
    ] {
        let (status, body) =
            servers[0].post(&format!("/v1/cluster/nodes/{id}/decommission"), &json!({}));
        assert_eq!(status, want, "{id}: {body}");
        assert_eq!(body["error"]["code"], json!(code), "{id}: {body}");
    }
    let (status, body) = servers[0].post("/v1/cluster/nodes/3/decommission", &json!({}));
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], json!("node_retired"), "{body}");

    // The producer kept going through all of it: nothing acknowledged lost or doubled.
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(&stop_file, b"").unwrap();
    let out = producer.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Value =
        serde_json::from_str(text.lines().last().unwrap_or_default()).unwrap_or(Value::Null);
    assert!(
        out.status.success() && summary["ok"] == json!(true),
        "producer/verifier failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(summary["acked"].as_u64().unwrap() > 500, "{summary}");
    eprintln!("{summary}");
    drop(n4);
}

//! Consumer groups on a cluster of three real `weir serve --peers` processes: the group's
//! coordinator (FindCoordinator) is the leader of the group's `__consumer_offsets`
//! partition, that topic is replicated, and a confluent-kafka consumer keeps its committed
//! offsets through a SIGKILL of the coordinator (it finds the new one, rejoins, resumes from
//! its commits). Timing is never asserted beyond liveness bounds.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Server, eventually};
use crate::replication::start_cluster;

/// Per partition (leader, in-sync set) of `topic` as `s` describes it.
fn routes(s: &Server, topic: &str) -> Vec<(Option<u64>, usize)> {
    let (status, d) = s.get(&format!("/v1/topics/{topic}"));
    if status != 200 {
        return Vec::new();
    }
    d["partition_offsets"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let r = &p["replication"];
                    (
                        r["leader"].as_u64(),
                        r["isr"].as_array().map_or(0, Vec::len),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_group_keeps_its_committed_offsets_through_kill9_of_its_coordinator() {
    let mut servers = start_cluster();
    let spec =
        json!({"name": "gc", "partitions": 3, "replication_factor": 3, "min_insync_replicas": 2});
    let created = eventually(Duration::from_secs(60), || {
        matches!(servers[0].post("/v1/topics", &spec).0, 201 | 409)
    });
    assert!(created, "the topic was never created");
    assert!(
        eventually(Duration::from_secs(30), || {
            let r = routes(&servers[0], "gc");
            r.len() == 3 && r.iter().all(|(l, isr)| l.is_some() && *isr == 3)
        }),
        "{:?}",
        routes(&servers[0], "gc")
    );
    let bootstrap = servers
        .iter()
        .map(|s| s.kafka.clone())
        .collect::<Vec<_>>()
        .join(",");
    let group = "resumer";
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/kafka/group_coordinator_failover.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--bootstrap", &bootstrap, "--topic", "gc", "--group", group])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with confluent-kafka (scripts/test.sh installs it)");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let asked: Value = serde_json::from_str(line.trim()).unwrap_or(Value::Null);
    if asked["phase"] != json!("kill") {
        let out = child.wait_with_output().unwrap();
        panic!(
            "the consumer did not get to the kill: {line}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The coordinator clients were given is the leader of the group's offsets partition,
    // a replicated partition with all three nodes in sync.
    let partition = weir_broker::group::offsets_partition(group) as usize;
    let offsets = routes(&servers[0], "__consumer_offsets");
    assert_eq!(
        offsets.len(),
        weir_broker::group::OFFSETS_PARTITIONS as usize
    );
    let (leader, isr) = offsets[partition];
    let coordinator = asked["coordinator"].as_u64().unwrap();
    assert_eq!(leader, Some(coordinator), "{asked}");
    assert_eq!(isr, 3, "{offsets:?}");

    servers[coordinator as usize - 1].kill9();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "killed").unwrap();
    drop(stdin);
    let mut rest = String::new();
    for l in stdout.lines() {
        rest = l.unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let summary: Value = serde_json::from_str(&rest).unwrap_or(Value::Null);
    assert!(
        out.status.success() && summary["ok"] == json!(true),
        "consumer/verifier failed: {rest}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{summary}");
    // The group's partition is led by a survivor now.
    let survivor = &servers[(coordinator as usize) % 3];
    let (now, _) = routes(survivor, "__consumer_offsets")[partition];
    assert!(now.is_some_and(|n| n != coordinator), "{now:?}");
}

#[test]
fn admin_apis_on_a_cluster_describe_it_and_refuse_what_it_cannot_do_yet() {
    let servers = start_cluster();
    let spec =
        json!({"name": "ac", "partitions": 3, "replication_factor": 3, "min_insync_replicas": 2});
    assert!(
        eventually(Duration::from_secs(60), || {
            matches!(servers[0].post("/v1/topics", &spec).0, 201 | 409)
        }),
        "the topic was never created"
    );
    assert!(
        eventually(Duration::from_secs(30), || {
            servers
                .iter()
                .all(|s| routes(s, "ac").iter().filter(|(l, _)| l.is_some()).count() == 3)
        }),
        "the topic never got its leaders"
    );
    let bootstrap = servers
        .iter()
        .map(|s| s.kafka.clone())
        .collect::<Vec<_>>()
        .join(",");
    let r = crate::kafka::python(
        "admin_cluster.py",
        &["--bootstrap", &bootstrap, "--topic", "ac"],
    );
    assert_eq!(r["nodes"].as_array().map(Vec::len), Some(3), "{r}");
    assert!(r["controller"].as_i64().is_some(), "{r}");
    for api in ["delete_records", "create_partitions", "alter_configs"] {
        assert_eq!(r[api], "POLICY_VIOLATION", "{api}: {r}");
    }
    assert_eq!(r["delete_group"], Value::Null, "{r}");
    assert_eq!(r["delete_group_again"], "GROUP_ID_NOT_FOUND", "{r}");
}

//! Replicated topics through three real `weir serve --peers` processes: a topic created on
//! any node is replicated to all three (describe shows leader, replicas, in-sync set); a
//! replication factor above the live nodes is refused; a follower answers Kafka clients
//! NOT_LEADER_OR_FOLLOWER and they find the leader; a restarted node answers Kafka requests
//! only once it has caught up with the metadata; and an idempotent `acks=all`
//! confluent-kafka producer under steady load loses nothing it was told is stored while the
//! leader of most partitions is killed with SIGKILL and restarted five times (once the
//! metadata controller), and paused with SIGSTOP past its session (Kafka's ducktape
//! replication test does the kills; Jepsen found lost writes under pauses). Timing is never asserted beyond liveness bounds.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Server, eventually, free_port};

/// Three nodes of one cluster, each with HTTP, Kafka and a cluster listener.
pub(crate) fn start_cluster() -> Vec<Server> {
    start_cluster_with(&[], &[])
}

/// [`start_cluster`] with `extra` flags and `env` variables given to every node.
pub(crate) fn start_cluster_with(extra: &[&str], env: &[(&str, &str)]) -> Vec<Server> {
    let ports = [free_port(), free_port(), free_port()];
    let peers: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
        .collect();
    let peers = peers.join(",");
    (1..=3)
        .map(|id| {
            let listen = format!("127.0.0.1:{}", ports[id - 1]);
            // A fixed Kafka port: clients' bootstrap list stays right across restarts.
            let kafka = format!("127.0.0.1:{}", free_port());
            let id = id.to_string();
            let mut args = vec![
                "--node-id",
                &id,
                "--cluster-listen",
                &listen,
                "--peers",
                &peers,
                "--kafka",
                &kafka,
            ];
            args.extend_from_slice(extra);
            Server::start_with_env(&args, env)
        })
        .collect()
}

/// Creates a topic on `s`, retrying while the cluster forms (no controller or not every
/// node registered yet); panics on any other answer.
pub(crate) fn create_replicated(s: &Server, spec: Value) -> Value {
    let mut last = Value::Null;
    let ok = eventually(Duration::from_secs(60), || {
        let (status, body) = s.post("/v1/topics", &spec);
        last = json!({"status": status, "body": body});
        match status {
            201 => true,
            400 | 503 | 409 if body["error"]["code"] != json!("topic_exists") => false,
            409 => true,
            _ => panic!("creating {spec}: {status} {body}"),
        }
    });
    assert!(ok, "the topic was never created: {last}");
    last
}

/// Per partition (leader, in-sync set) as `s` describes the topic.
pub(crate) fn routes(s: &Server, topic: &str) -> Vec<(Option<u64>, Vec<u64>)> {
    let (status, d) = s.get(&format!("/v1/topics/{topic}"));
    if status != 200 {
        return Vec::new();
    }
    d["partition_offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let r = &p["replication"];
            (
                r["leader"].as_u64(),
                r["isr"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

pub(crate) fn fully_replicated(s: &Server, topic: &str, partitions: usize) -> bool {
    let r = routes(s, topic);
    r.len() == partitions && r.iter().all(|(l, isr)| l.is_some() && isr.len() == 3)
}

#[test]
fn a_replicated_topic_is_on_every_node_and_an_impossible_factor_is_refused() {
    let servers = start_cluster();
    create_replicated(
        &servers[1],
        json!({"name": "orders", "partitions": 2, "replication_factor": 3, "min_insync_replicas": 2}),
    );
    for s in &servers {
        assert!(
            eventually(Duration::from_secs(30), || fully_replicated(s, "orders", 2)),
            "{:?}",
            routes(s, "orders")
        );
        let d = s.describe("orders");
        assert_eq!(d["cluster"]["replication_factor"], json!(3), "{d}");
        assert_eq!(d["cluster"]["min_insync_replicas"], json!(2), "{d}");
    }
    let (status, body) = servers[0].post(
        "/v1/topics",
        &json!({"name": "wide", "partitions": 1, "replication_factor": 4}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["code"],
        json!("invalid_replication_factor"),
        "{body}"
    );
    // Produced through the leader, the records are on every replica.
    let (leader, _) = routes(&servers[0], "orders")[0].clone();
    let leader = &servers[leader.unwrap() as usize - 1];
    leader.produce(
        "orders",
        vec![json!({"key": "a", "value": "1", "partition": 0})],
    );
    for s in &servers {
        assert!(
            eventually(Duration::from_secs(30), || s.read_all("orders", 0, 0).len()
                == 1),
            "a replica misses the record"
        );
    }
    // Deleted on one node: gone everywhere.
    assert_eq!(servers[2].delete("/v1/topics/orders"), 204);
    for s in &servers {
        assert!(
            eventually(Duration::from_secs(30), || s.get("/v1/topics/orders").0
                == 404),
            "the topic is still on a node"
        );
    }
}

/// The node leading most partitions of `topic`, as `s` sees it.
fn busiest_leader(s: &Server, topic: &str) -> Option<u64> {
    let mut count: BTreeMap<u64, usize> = BTreeMap::new();
    for (l, _) in routes(s, topic) {
        *count.entry(l?).or_default() += 1;
    }
    count.into_iter().max_by_key(|(_, n)| *n).map(|(id, _)| id)
}

/// What a round of the failover test does to a node.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL the node leading most partitions, restart it.
    KillLeader,
    /// SIGKILL the metadata controller, restart it.
    KillController,
    /// SIGSTOP the node leading most partitions until its partitions moved, then SIGCONT.
    PauseLeader,
}

#[test]
fn acks_all_records_survive_kill9_of_leaders_and_the_controller_and_a_paused_leader() {
    let mut servers = start_cluster();
    create_replicated(
        &servers[0],
        json!({"name": "steady", "partitions": 3, "replication_factor": 3, "min_insync_replicas": 2}),
    );
    assert!(
        eventually(Duration::from_secs(30), || fully_replicated(
            &servers[0],
            "steady",
            3
        )),
        "{:?}",
        routes(&servers[0], "steady")
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
            "steady",
            "--rate",
            "1000",
        ])
        .arg("--stop")
        .arg(&stop_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with confluent-kafka (scripts/test.sh installs it)");
    std::thread::sleep(Duration::from_secs(3));
    // Five kills (one of them of the metadata controller) and one SIGSTOP of a leader that
    // outlasts its session: the paused old leader wakes after its partitions moved and must
    // neither acknowledge nor expose a write at its old epoch (the verifier would see it).
    let rounds = [
        Fault::KillLeader,
        Fault::KillController,
        Fault::PauseLeader,
        Fault::KillLeader,
        Fault::KillLeader,
        Fault::KillLeader,
    ];
    for (round, fault) in rounds.into_iter().enumerate() {
        // Every node runs at the start of a round (the last victim was restarted).
        let observer = &servers[round % 3];
        let victim = match fault {
            Fault::KillController => {
                let (_, c) = observer.get("/v1/cluster");
                c["metadata"]["controller"]
                    .as_u64()
                    .expect("a controller is known")
            }
            _ => busiest_leader(observer, "steady").expect("every partition has a leader"),
        };
        let at = std::time::Instant::now();
        match fault {
            Fault::PauseLeader => servers[victim as usize - 1].pause(),
            _ => servers[victim as usize - 1].kill9(),
        }
        let others: Vec<usize> = (0..3).filter(|i| *i as u64 != victim - 1).collect();
        let led_again = eventually(Duration::from_secs(30), || {
            let r = routes(&servers[others[0]], "steady");
            r.len() == 3 && r.iter().all(|(l, _)| l.is_some_and(|l| l != victim))
        });
        assert!(
            led_again,
            "round {round}: partitions not led again after {fault:?} of {victim}"
        );
        // Informational only: how long until every partition had a new leader.
        eprintln!(
            "round {round}: {fault:?} of node {victim}; led again after {:?}",
            at.elapsed()
        );
        std::thread::sleep(Duration::from_secs(2));
        match fault {
            Fault::PauseLeader => servers[victim as usize - 1].resume(),
            _ => servers[victim as usize - 1].start_again(),
        }
        assert!(
            eventually(Duration::from_secs(60), || fully_replicated(
                &servers[others[0]],
                "steady",
                3
            )),
            "round {round}: node {victim} never rejoined the in-sync sets: {:?}",
            routes(&servers[others[0]], "steady")
        );
    }
    std::fs::write(&stop_file, b"").unwrap();
    let out = producer.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or(Value::Null);
    assert!(
        out.status.success() && summary["ok"] == json!(true),
        "producer/verifier failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(summary["acked"].as_u64().unwrap() > 1000, "{summary}");
    eprintln!("{summary}");
}

/// Runs tests/kafka/acks_all_until.py: single `acks=all` records without client retries to
/// `partition` until the outcome is `until` (an error name, or `ok`); its JSON summary.
fn acks_all_until(bootstrap: &str, topic: &str, partition: u32, until: &str) -> Value {
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/acks_all_until.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--bootstrap", bootstrap, "--topic", topic, "--until", until])
        .args(["--partition", &partition.to_string(), "--max-seconds", "90"])
        .stdin(Stdio::null())
        .output()
        .expect("python3 with confluent-kafka (scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|_| {
        panic!(
            "acks_all_until.py: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn with_two_of_three_nodes_down_acks_all_is_refused_and_works_again_when_one_returns() {
    let mut servers = start_cluster();
    create_replicated(
        &servers[0],
        json!({"name": "quorum", "partitions": 1, "replication_factor": 3, "min_insync_replicas": 2}),
    );
    assert!(
        eventually(Duration::from_secs(30), || fully_replicated(
            &servers[0],
            "quorum",
            1
        )),
        "{:?}",
        routes(&servers[0], "quorum")
    );
    let leader = routes(&servers[0], "quorum")[0].0.expect("a leader");
    let survivor = leader as usize - 1;
    let first = acks_all_until(&servers[survivor].kafka, "quorum", 0, "ok");
    assert_eq!(first["matched"], json!(true), "{first}");
    // Both followers die: the metadata quorum is gone too, so the in-sync set cannot shrink
    // through the controller; the leader itself must refuse once they are out of sync.
    let down: Vec<usize> = (0..3).filter(|i| *i != survivor).collect();
    for &i in &down {
        servers[i].kill9();
    }
    let refused = acks_all_until(&servers[survivor].kafka, "quorum", 0, "NOT_ENOUGH_REPLICAS");
    assert_eq!(refused["matched"], json!(true), "{refused}");
    assert!(
        refused["outcomes"].get("ok").is_none(),
        "acknowledged with two of three replicas dead: {refused}"
    );
    // One returns: the quorum is back, it catches up and rejoins the in-sync set.
    servers[down[0]].start_again();
    let bootstrap = format!("{},{}", servers[survivor].kafka, servers[down[0]].kafka);
    let recovered = acks_all_until(&bootstrap, "quorum", 0, "ok");
    assert_eq!(recovered["matched"], json!(true), "{recovered}");
    // Every acknowledged record is readable from the leader.
    let mut acked: Vec<String> = Vec::new();
    for v in [&first, &refused, &recovered] {
        acked.extend(
            v["acked"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string()),
        );
    }
    let values: Vec<Value> = servers[survivor]
        .read_all("quorum", 0, 0)
        .iter()
        .map(|r| r["value"].clone())
        .collect();
    for a in &acked {
        assert!(
            values.contains(&json!(a)),
            "acknowledged {a} is missing: {values:?}"
        );
    }
}

#[test]
fn a_node_whose_data_directory_was_wiped_rejoins_and_copies_every_partition_again() {
    let mut servers = start_cluster();
    create_replicated(
        &servers[0],
        json!({"name": "wiped", "partitions": 2, "replication_factor": 3, "min_insync_replicas": 2}),
    );
    assert!(
        eventually(Duration::from_secs(30), || fully_replicated(
            &servers[0],
            "wiped",
            2
        )),
        "{:?}",
        routes(&servers[0], "wiped")
    );
    // 2 × 500 records, each produced on its partition's leader.
    let leaders: Vec<u64> = routes(&servers[0], "wiped")
        .iter()
        .map(|(l, _)| l.expect("a leader"))
        .collect();
    for (p, leader) in leaders.iter().enumerate() {
        for chunk in 0..5 {
            let records: Vec<Value> = (0..100)
                .map(|i| json!({"value": format!("p{p}-{}", chunk * 100 + i), "partition": p}))
                .collect();
            servers[*leader as usize - 1].produce("wiped", records);
        }
    }
    let victim = (1..=3u64)
        .find(|id| !leaders.contains(id))
        .unwrap_or(leaders[0]);
    let v = victim as usize - 1;
    let observer = (v + 1) % 3;
    servers[v].kill9();
    std::fs::remove_dir_all(&servers[v].data_dir).unwrap();
    std::fs::create_dir_all(&servers[v].data_dir).unwrap();
    servers[v].start_again();
    // It comes back empty, copies both partitions from their leaders and rejoins the
    // in-sync sets; its own copy then holds every record, in order.
    let want: Vec<Vec<String>> = (0..2)
        .map(|p| (0..500).map(|i| format!("p{p}-{i}")).collect())
        .collect();
    let mut got: Vec<Vec<String>> = Vec::new();
    let copied = eventually(Duration::from_secs(90), || {
        got = (0..2)
            .map(|p| local_values(&servers[v], "wiped", p))
            .collect();
        got == want
    });
    assert!(
        copied,
        "node {victim} holds {:?} records",
        got.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(
        eventually(Duration::from_secs(60), || fully_replicated(
            &servers[observer],
            "wiped",
            2
        )),
        "node {victim} never rejoined: {:?}",
        routes(&servers[observer], "wiped")
    );
    // The metadata quorum took the empty log back too: every member still runs (openraft's
    // leader used to assert on a follower whose log went back) and a topic can be created.
    for s in &servers {
        let (_, c) = s.get("/v1/cluster");
        assert_ne!(c["metadata"]["role"], json!("shutdown"), "{c}");
    }
    create_replicated(
        &servers[v],
        json!({"name": "after-wipe", "partitions": 1, "replication_factor": 3}),
    );
}

/// The values of `topic`/`partition` readable on `s` from offset 0 (empty while it answers
/// anything but 200, e.g. before it has the topic).
fn local_values(s: &Server, topic: &str, partition: i64) -> Vec<String> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let (status, body) = s.get(&format!(
            "/v1/topics/{topic}/partitions/{partition}/records?offset={offset}&max=5000"
        ));
        if status != 200 {
            return out;
        }
        let records = body["records"].as_array().cloned().unwrap_or_default();
        if records.is_empty() {
            return out;
        }
        for r in &records {
            out.push(r["value"].as_str().unwrap_or_default().to_string());
        }
        match body["next_offset"].as_i64() {
            Some(n) if n > offset => offset = n,
            _ => return out,
        }
    }
}

/// Sends a Produce v7 (`acks=1`, one record without producer id) for `topic`/0 on `stream`
/// without reading the answer.
fn send_produce(stream: &mut std::net::TcpStream, topic: &str) {
    use bytes::BytesMut;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use std::io::Write;
    let record = Record {
        transactional: false,
        control: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(bytes::Bytes::from_static(b"sent-before-catch-up")),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut records = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut records,
        [record].iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records.freeze())),
                ]),
        ]);
    let version = 7;
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .encode(&mut buf, ApiKey::Produce.request_header_version(version))
        .unwrap();
    request.encode(&mut buf, version).unwrap();
    let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    stream.write_all(&frame).unwrap();
}

/// Reads the answer to [`send_produce`]: the partition's error code and base offset.
fn read_produce(stream: &mut std::net::TcpStream) -> (i16, i64) {
    use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
    use kafka_protocol::protocol::Decodable;
    use std::io::Read;
    let version = 7;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    let mut body = bytes::Bytes::from(body);
    ResponseHeader::decode(&mut body, ApiKey::Produce.response_header_version(version)).unwrap();
    match ResponseKind::decode(ApiKey::Produce, &mut body, version).unwrap() {
        ResponseKind::Produce(r) => {
            let p = &r.responses[0].partition_responses[0];
            (p.error_code, p.base_offset)
        }
        other => panic!("{other:?}"),
    }
}

/// A restarted node serves Kafka requests only once it has caught up with the cluster
/// metadata and applied it, as a KRaft broker enables request processing only after its
/// first metadata publish. Before, it answered NOT_LEADER_OR_FOLLOWER for the partitions it
/// was about to lead; a producer's next pipelined batch, handled once it had caught up, then
/// got OUT_OF_ORDER_SEQUENCE_NUMBER, and librdkafka bumped its epoch and sent a possibly
/// stored batch of another partition again as a new one (a duplicate in the fault runs).
#[test]
fn a_restarted_node_answers_kafka_requests_only_once_it_has_caught_up_with_the_metadata() {
    let mut servers = start_cluster();
    create_replicated(
        &servers[0],
        json!({"name": "gated", "partitions": 1, "replication_factor": 1}),
    );
    let mut leader = None;
    assert!(
        eventually(Duration::from_secs(30), || {
            leader = routes(&servers[0], "gated")
                .first()
                .and_then(|(l, isr)| l.filter(|_| isr.len() == 1));
            leader.is_some()
        }),
        "{:?}",
        routes(&servers[0], "gated")
    );
    // Its only replica, so it leads the partition again once it is back and registered.
    let node = leader.unwrap() as usize - 1;
    // Every node at once: the one restarted first has no quorum to catch up with.
    for s in servers.iter_mut() {
        s.kill9();
    }
    servers[node].start_again();
    // Sent while it cannot catch up (the listener is bound: the request waits to be read).
    let mut stream = std::net::TcpStream::connect(&servers[node].kafka).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    send_produce(&mut stream, "gated");
    // A second node: a quorum again, the node catches up and answers as the leader.
    let other = (node + 1) % 3;
    servers[other].start_again();
    let (code, base) = read_produce(&mut stream);
    assert_eq!(code, 0, "answered before catching up with the metadata");
    assert_eq!(base, 0);
}

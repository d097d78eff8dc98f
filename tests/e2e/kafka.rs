//! The Kafka protocol with real clients none of us wrote: Debian's kcat (librdkafka 2.0.2),
//! confluent-kafka (a current librdkafka) and kafka-python, against `weir serve --kafka`.
//! The Python clients run the scripts in `tests/kafka/`; each prints one JSON summary line.
//! Records cross between Kafka and the HTTP API in both directions, on the same partitions.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::common::{Server, free_port, run};

/// A server with a Kafka listener on a free port; returns it and the bootstrap address.
fn start() -> (Server, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let server = Server::start(&["--kafka", &addr]);
    (server, addr)
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/kafka")
        .join(name)
}

/// Runs a Python helper; returns its last stdout line as JSON. Panics with its output if it
/// fails.
pub(crate) fn python(name: &str, args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(script(name))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python3 (scripts/test.sh installs confluent-kafka and kafka-python)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let summary: Value = serde_json::from_str(last).unwrap_or(Value::Null);
    assert!(
        out.status.success() && summary["ok"] != json!(false),
        "{name} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    summary
}

pub(crate) fn kcat(args: &[&str], stdin: Option<&str>) -> Output {
    // scripts/test.sh installs kcat.
    let mut cmd = Command::new("kcat");
    cmd.args(args);
    let out = run(cmd, stdin);
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The partition Weir's HTTP produce picks for each key (murmur2, as Kafka's default).
fn http_partitions(server: &Server, topic: &str, keys: &[String]) -> HashMap<String, i64> {
    let records = keys
        .iter()
        .map(|k| json!({"key": k, "value": "probe"}))
        .collect();
    let offsets = server.produce(topic, records);
    keys.iter()
        .cloned()
        .zip(offsets.iter().map(|(p, _)| *p))
        .collect()
}

#[test]
fn kcat_produces_and_consumes_keys_and_headers_and_lists_metadata() {
    let (server, kafka) = start();
    server.create_topic(json!({"name": "kc", "partitions": 3}));
    server.create_topic(json!({"name": "kc-http", "partitions": 3}));
    let keys: Vec<String> = (0..60).map(|i| format!("key-{i}")).collect();
    let input: String = keys.iter().map(|k| format!("{k}:value-of-{k}\n")).collect();
    // librdkafka's default partitioner is CRC32-based; murmur2_random is Java's.
    kcat(
        &[
            "-b",
            &kafka,
            "-P",
            "-t",
            "kc",
            "-K:",
            "-H",
            "source=kcat",
            "-H",
            "n=1",
            "-X",
            "partitioner=murmur2_random",
        ],
        Some(&input),
    );
    let out = kcat(
        &[
            "-b",
            &kafka,
            "-C",
            "-t",
            "kc",
            "-e",
            "-q",
            "-f",
            "%p|%o|%k|%s|%h\n",
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut by_key = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f.len(), 5, "unexpected kcat line {line:?}");
        assert_eq!(f[3], format!("value-of-{}", f[2]));
        assert_eq!(f[4], "source=kcat,n=1");
        by_key.insert(
            f[2].to_string(),
            (f[0].parse::<i64>().unwrap(), f[1].parse::<i64>().unwrap()),
        );
    }
    assert_eq!(by_key.len(), keys.len(), "kcat read back: {text}");

    // The same keys produced over HTTP land on the same partitions.
    let http = http_partitions(&server, "kc-http", &keys);
    for k in &keys {
        assert_eq!(by_key[k].0, http[k], "partition of {k}");
    }
    // And every kcat record reads back over HTTP with its key, value and headers.
    for p in 0..3 {
        for r in server.read_all("kc", p, 0) {
            let k = r["key"].as_str().unwrap();
            assert_eq!(by_key[k], (p, r["offset"].as_i64().unwrap()));
            assert_eq!(r["value"], json!(format!("value-of-{k}")));
            assert_eq!(r["headers"]["source"], json!("kcat"));
        }
    }

    // Metadata (-L) in JSON: one broker at the bootstrap address, the topics and partitions.
    let out = kcat(&["-b", &kafka, "-L", "-J"], None);
    let md: Value = serde_json::from_slice(&out.stdout).unwrap();
    let port: i64 = kafka.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(md["brokers"][0]["name"], json!(format!("127.0.0.1:{port}")));
    let topics = md["topics"].as_array().unwrap();
    let kc = topics
        .iter()
        .find(|t| t["topic"] == json!("kc"))
        .expect("kc listed");
    assert_eq!(kc["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(kc["partitions"][0]["leader"], json!(0));
}

#[test]
fn http_records_are_consumed_by_kcat_on_the_same_partitions_and_offsets() {
    let (server, kafka) = start();
    server.create_topic(json!({"name": "hk", "partitions": 2}));
    let records: Vec<Value> = (0..20)
        .map(|i| json!({"key": format!("h{i}"), "value": format!("v{i}"), "headers": {"via": "http"}}))
        .collect();
    let offsets = server.produce("hk", records);
    let out = kcat(
        &[
            "-b",
            &kafka,
            "-C",
            "-t",
            "hk",
            "-e",
            "-q",
            "-f",
            "%p|%o|%k|%s|%h\n",
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut got: Vec<(i64, i64, String)> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            assert_eq!(f[3], format!("v{}", &f[2][1..]));
            assert_eq!(f[4], "via=http");
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].to_string(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(i64, i64, String)> = offsets
        .iter()
        .enumerate()
        .map(|(i, (p, o))| (*p, *o, format!("h{i}")))
        .collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn confluent_kafka_produces_100k_idempotent_acks_all_and_consumes_them_all() {
    let (server, kafka) = start();
    server.create_topic(json!({"name": "ci", "partitions": 3}));
    let s = python(
        "confluent_idempotent.py",
        &["--bootstrap", &kafka, "--topic", "ci", "--num", "100000"],
    );
    assert_eq!(s["produced"], json!(100_000));
    assert_eq!(s["consumed"], json!(100_000));
    assert_eq!(s["duplicates"], json!(0));
    // Exactly 100,000 records in the log: no retried batch was appended twice.
    let d = server.describe("ci");
    let total: i64 = d["partition_offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["end_offset"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 100_000);
    let per: i64 = s["per_partition"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(per, 100_000);
    assert_eq!(
        s["per_partition"].as_object().unwrap().len(),
        3,
        "keys spread over 3 partitions"
    );
    // A record where the client says it is, readable over HTTP.
    let (p, o) = (
        s["sample"]["key-0"][0].as_i64().unwrap(),
        s["sample"]["key-0"][1].as_i64().unwrap(),
    );
    let (status, body) = server.get(&format!(
        "/v1/topics/ci/partitions/{p}/records?offset={o}&max=1"
    ));
    assert_eq!(status, 200);
    assert_eq!(body["records"][0]["key"], json!("key-0"));
    assert_eq!(body["records"][0]["value"], json!("value-0"));
    assert_eq!(body["records"][0]["headers"]["seq"], json!("0"));
}

#[test]
fn consumer_group_member_dies_and_the_other_resumes_from_committed_offsets() {
    let (server, kafka) = start();
    server.create_topic(json!({"name": "gf", "partitions": 4}));
    let s = python(
        "group_failover.py",
        &["--bootstrap", &kafka, "--topic", "gf"],
    );
    assert_eq!(s["partitions"], json!(4));
    assert_eq!(s["problems"], json!([]));
    let victim = s["victim_partitions"].as_array().unwrap();
    assert!(
        !victim.is_empty() && victim.len() < 4,
        "the victim owned a share: {s}"
    );
    let takeover = s["takeover"].as_object().unwrap();
    assert!(
        !takeover.is_empty(),
        "at least one partition was taken over mid-way: {s}"
    );
    for (p, t) in takeover {
        let committed = t["committed"].as_i64().unwrap();
        assert!(committed > 0, "partition {p}: {t}");
        assert_eq!(
            t["survivor_first"].as_i64().unwrap(),
            committed,
            "partition {p}"
        );
    }
}

#[test]
fn kafka_python_round_trip_offsets_and_murmur2_placement() {
    let (server, kafka) = start();
    server.create_topic(json!({"name": "kp", "partitions": 3}));
    server.create_topic(json!({"name": "kp-http", "partitions": 3}));
    let s = python(
        "kafka_python_roundtrip.py",
        &["--bootstrap", &kafka, "--topic", "kp", "--num", "600"],
    );
    assert_eq!(s["produced"], json!(600));
    assert_eq!(s["consumed"], json!(600));
    let placement = s["placement"].as_object().unwrap();
    let keys: Vec<String> = placement.keys().cloned().collect();
    let http = http_partitions(&server, "kp-http", &keys);
    for (k, p) in placement {
        assert_eq!(p.as_i64().unwrap(), http[k], "partition of {k}");
    }
    assert_eq!(s["committed"].as_object().unwrap().len(), 3);
    // Records from kafka-python read over HTTP with their headers.
    let recs = server.read_all("kp", 0, 0);
    assert!(!recs.is_empty());
    assert!(
        recs.iter()
            .all(|r| r["headers"]["origin"] == json!("kafka-python"))
    );
}

#[test]
fn committed_offsets_survive_a_restart() {
    let (mut server, kafka) = start();
    server.create_topic(json!({"name": "co", "partitions": 2}));
    server.produce(
        "co",
        (0..10)
            .map(|i| json!({"value": format!("v{i}"), "partition": i % 2}))
            .collect(),
    );
    let args = [
        "--bootstrap",
        kafka.as_str(),
        "--topic",
        "co",
        "--group",
        "durable",
    ];
    let committed = python(
        "committed_offsets.py",
        &[&args[..], &["commit", "0=3", "1=5"]].concat(),
    );
    assert_eq!(committed, json!({"0": 3, "1": 5}));
    server.restart();
    let shown = python(
        "committed_offsets.py",
        &[&args[..], &["show", "0", "1"]].concat(),
    );
    assert_eq!(shown, json!({"0": 3, "1": 5}));
    // The internal offsets topic is listed as Kafka lists it, and marked internal.
    let out = kcat(
        &["-b", &kafka, "-L", "-J", "-t", "__consumer_offsets"],
        None,
    );
    let md: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(md["topics"][0]["topic"], json!("__consumer_offsets"));
}

#[test]
fn compressed_batches_are_stored_as_sent_and_read_back_over_http_and_kafka() {
    let (server, kafka) = start();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("z-{codec}");
        server.create_topic(json!({"name": topic, "partitions": 1}));
        let input: String = (0..200)
            .map(|i| format!("k{i}:{}\n", format!("{codec}-{i} ").repeat(10)))
            .collect();
        kcat(
            &[
                "-b",
                &kafka,
                "-P",
                "-t",
                &topic,
                "-K:",
                "-z",
                codec,
                "-X",
                "linger.ms=50",
            ],
            Some(&input),
        );
        // Stored as sent: the batches on disk carry the codec in their attributes, so fewer
        // bytes than the records' payload are stored.
        let d = server.describe(&topic);
        let stored = d["partition_offsets"][0]["size_bytes"].as_i64().unwrap();
        assert!(
            stored > 0 && stored < 200 * 60,
            "{codec}: {stored} bytes stored"
        );
        let recs = server.read_all(&topic, 0, 0);
        assert_eq!(recs.len(), 200, "{codec}");
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r["key"], json!(format!("k{i}")));
            assert_eq!(r["value"], json!(format!("{codec}-{i} ").repeat(10)));
        }
        let out = kcat(
            &["-b", &kafka, "-C", "-t", &topic, "-e", "-q", "-f", "%k\n"],
            None,
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).lines().count(),
            200,
            "{codec}"
        );
    }
}

#[test]
fn records_from_kcat_show_up_in_a_processor_output_and_back_in_kcat() {
    let (server, kafka) = start();
    server.create_topic(json!({"name": "kin", "partitions": 2}));
    server.deploy(
        &json!({"name": "upper", "inputs": ["kin"], "outputs": ["kout"]}),
        crate::common::guest("uppercase"),
    );
    let input: String = (0..40).map(|i| format!("k{i}:hello kafka {i}\n")).collect();
    kcat(
        &[
            "-b",
            &kafka,
            "-P",
            "-t",
            "kin",
            "-K:",
            "-X",
            "partitioner=murmur2_random",
        ],
        Some(&input),
    );
    // The processor's output, read over HTTP: every input record, uppercased, same key.
    let mut seen = std::collections::BTreeMap::new();
    let done = crate::common::eventually(std::time::Duration::from_secs(60), || {
        seen = server.latest_by_key("kout");
        seen.len() == 40
    });
    assert!(done, "processor output incomplete: {} of 40", seen.len());
    for i in 0..40 {
        assert_eq!(seen[&format!("k{i}")], format!("HELLO KAFKA {i}"));
    }
    // And the output topic is consumable by kcat.
    let out = kcat(
        &["-b", &kafka, "-C", "-t", "kout", "-e", "-f", "%k=%s\n"],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 40, "{text}");
    assert!(text.lines().any(|l| l == "k7=HELLO KAFKA 7"), "{text}");
}

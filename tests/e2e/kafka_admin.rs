//! The admin APIs Kafka tools call, driven by confluent-kafka's AdminClient (the scripts in
//! `tests/kafka/admin_*.py`; OffsetDelete through kafka-python's, as confluent-kafka's Python
//! API lacks it) and kcat against the real binary: DeleteRecords, ListOffsets
//! earliest, CreatePartitions, DescribeCluster, DescribeConfigs and IncrementalAlterConfigs,
//! and the group admin APIs; what they change survives a kill -9.

use serde_json::{Value, json};

use crate::common::{Server, free_port, stdout};
use crate::kafka::{kcat, python};

fn start() -> (Server, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let server = Server::start(&["--kafka", &addr]);
    (server, addr)
}

/// The offsets kcat reads from the beginning of partition 0 of `topic`.
fn kcat_offsets(kafka: &str, topic: &str) -> Vec<i64> {
    let out = kcat(
        &[
            "-b",
            kafka,
            "-C",
            "-t",
            topic,
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%o\n",
        ],
        None,
    );
    stdout(&out)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

#[test]
fn delete_records_create_partitions_and_describe_cluster_with_admin_client_and_kcat() {
    let (mut server, kafka) = start();
    server.create_topic(json!({"name": "adm", "partitions": 1}));
    let records = (0..10)
        .map(|i| json!({"key": format!("k{i}"), "value": format!("v{i}"), "partition": 0}))
        .collect();
    server.produce("adm", records);

    let r = python(
        "admin_topics.py",
        &[
            "--bootstrap",
            &kafka,
            "--topic",
            "adm",
            "--delete-before",
            "4",
        ],
    );
    assert_eq!(r["low_watermark"], 4, "{r}");
    assert_eq!(r["past_end_error"], "OFFSET_OUT_OF_RANGE", "{r}");
    assert_eq!(r["earliest"], 4, "{r}");
    assert_eq!(r["consumed_offsets"], json!([4, 5, 6, 7, 8, 9]), "{r}");
    assert_eq!(r["grow_error"], Value::Null, "{r}");
    assert_eq!(r["shrink_error"], "INVALID_PARTITIONS", "{r}");
    assert_eq!(r["partitions"], 3, "{r}");
    assert_eq!(r["nodes"], json!([0]), "{r}");
    assert_eq!(r["controller"], 0, "{r}");
    assert!(
        r["cluster_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{r}"
    );

    assert_eq!(kcat_offsets(&kafka, "adm"), vec![4, 5, 6, 7, 8, 9]);
    // kill -9: the log start offset and the partition count were durable when answered.
    server.restart();
    assert_eq!(kcat_offsets(&kafka, "adm"), vec![4, 5, 6, 7, 8, 9]);
    let d = server.describe("adm");
    assert_eq!(d["partition_offsets"][0]["start_offset"], 4, "{d}");
    assert_eq!(d["partition_offsets"].as_array().unwrap().len(), 3, "{d}");
}

/// `[value, source]` of config `name` in an admin_configs.py summary (source 1: set on the
/// topic, 5: the default).
fn config(r: &Value, name: &str) -> (String, i64) {
    let c = &r["configs"][name];
    (
        c[0].as_str().unwrap_or_default().to_string(),
        c[1].as_i64().unwrap_or(-1),
    )
}

#[test]
fn topic_configs_are_altered_live_persisted_and_described_with_admin_client() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = Server::start(&["--kafka", &addr, "--cleanup-interval-ms", "200"]);
    let kafka = addr;
    server.create_topic(json!({"name": "cfg", "partitions": 1}));
    let args = ["--bootstrap", &kafka, "--topic", "cfg", "--mode"];
    let set = python("admin_configs.py", &[&args[..], &["set"]].concat());
    assert_eq!(set["error"], Value::Null, "{set}");
    assert_eq!(config(&set, "segment.bytes"), ("1024".into(), 1), "{set}");
    assert_eq!(config(&set, "retention.bytes"), ("3000".into(), 1), "{set}");
    assert_eq!(
        config(&set, "retention.ms"),
        ("86400000".into(), 1),
        "{set}"
    );
    assert_eq!(
        config(&set, "min.insync.replicas"),
        ("1".into(), 5),
        "{set}"
    );
    assert_eq!(
        config(&set, "cleanup.policy"),
        ("delete".into(), 5),
        "{set}"
    );
    let errors = &set["errors"];
    for (change, want) in [
        ("no.such.config=1/SET", "INVALID_CONFIG"),
        ("min.insync.replicas=2/SET", "INVALID_CONFIG"),
        ("retention.ms=soon/SET", "INVALID_CONFIG"),
        ("segment.bytes=10/SET", "INVALID_CONFIG"),
        ("segment.bytes=4096/APPEND", "INVALID_CONFIG"),
        ("unknown topic", "UNKNOWN_TOPIC_OR_PART"),
    ] {
        assert_eq!(errors[change], want, "{change}: {set}");
    }

    // Applied live: new segments roll at 1 KiB and retention keeps about 3000 bytes.
    let input: String = (0..200).map(|i| format!("{i:0>100}\n")).collect();
    kcat(
        &[
            "-b",
            &kafka,
            "-P",
            "-t",
            "cfg",
            "-p",
            "0",
            "-X",
            "batch.num.messages=5",
        ],
        Some(&input),
    );
    assert!(
        crate::common::eventually(std::time::Duration::from_secs(20), || {
            let d = server.describe("cfg");
            let p = &d["partition_offsets"][0];
            p["start_offset"].as_i64() > Some(0) && p["size_bytes"].as_i64() < Some(5000)
        }),
        "retention.bytes was not applied: {}",
        server.describe("cfg")
    );
    let d = server.describe("cfg");
    assert!(
        d["partition_offsets"][0]["segments"].as_i64() > Some(1),
        "{d}"
    );
    assert_eq!(d["partition_offsets"][0]["end_offset"], 200, "{d}");

    // Persisted: after kill -9 the topic runs with them.
    server.restart();
    let d = server.describe("cfg");
    assert_eq!(d["retention_bytes"], 3000, "{d}");
    assert_eq!(d["segment_bytes"], 1024, "{d}");
    let reset = python("admin_configs.py", &[&args[..], &["reset"]].concat());
    assert_eq!(reset["error"], Value::Null, "{reset}");
    assert_eq!(
        config(&reset, "retention.bytes"),
        ("-1".into(), 5),
        "{reset}"
    );
    assert_eq!(
        config(&reset, "retention.ms"),
        ("86400000".into(), 1),
        "{reset}"
    );
    assert_eq!(
        config(&reset, "cleanup.policy"),
        ("compact".into(), 1),
        "{reset}"
    );
    assert_eq!(config(&reset, "segment.bytes").1, 5, "{reset}");
    let d = server.describe("cfg");
    assert_eq!(d["compacted"], true, "{d}");
    assert_eq!(d["retention_bytes"], Value::Null, "{d}");
}

#[test]
fn group_admin_apis_with_admin_client_and_offsets_go_with_their_topic() {
    let (mut server, kafka) = start();
    server.create_topic(json!({"name": "gt", "partitions": 3}));
    let records = (0..30)
        .map(|i| json!({"key": format!("k{i}"), "value": format!("v{i}")}))
        .collect();
    server.produce("gt", records);
    let r = python(
        "admin_groups.py",
        &["--bootstrap", &kafka, "--topic", "gt", "--group", "ga"],
    );
    assert_eq!(r["consumed"], 30, "{r}");
    let active = &r["active_describe"];
    assert_eq!(active["state"], "STABLE", "{r}");
    assert_eq!(active["simple"], false, "protocol type consumer: {r}");
    assert_eq!(active["members"], 1, "{r}");
    assert_eq!(r["active_list"]["simple"], false, "{r}");
    assert_eq!(r["delete_active_group"], "NON_EMPTY_GROUP", "{r}");
    assert_eq!(
        r["delete_subscribed_offsets"], "GroupSubscribedToTopicError",
        "{r}"
    );
    // Empty, the group keeps its protocol type.
    assert_eq!(r["empty_describe"]["state"], "EMPTY", "{r}");
    assert_eq!(r["empty_describe"]["simple"], false, "{r}");
    assert_eq!(r["empty_list"]["simple"], false, "{r}");
    assert_eq!(r["offset_delete"], Value::Null, "{r}");
    let after = r["committed_after_offset_delete"].as_array().unwrap();
    assert_eq!(after[0][1], -1001, "partition 0's offset deleted: {r}");
    assert!(after[1][1].as_i64() > Some(0), "{r}");
    assert_eq!(r["delete_group"], Value::Null, "{r}");
    assert_eq!(r["deleted_describe"]["state"], "DEAD", "{r}");
    assert_eq!(r["deleted_list"], Value::Null, "{r}");
    assert_eq!(r["delete_again"], "GROUP_ID_NOT_FOUND", "{r}");
    assert_eq!(
        r["offset_delete_unknown_group"], "GroupIdNotFoundError",
        "{r}"
    );
    assert!(
        r["committed_before_topic_delete"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p[1].as_i64() > Some(0)),
        "{r}"
    );
    assert_eq!(r["delete_topic"], Value::Null, "{r}");
    assert_eq!(r["create_topic"], Value::Null, "{r}");
    assert_eq!(
        r["committed_after_recreate"],
        json!([[0, -1001], [1, -1001], [2, -1001]]),
        "a recreated topic starts clean: {r}"
    );
    // The deletions were durable: after kill -9 the group (empty, its protocol type kept)
    // has no committed offset left.
    server.restart();
    let (status, body) = server.get("/v1/groups/ga");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "Empty", "{body}");
    assert_eq!(body["protocol_type"], "consumer", "{body}");
    assert_eq!(body["partitions"], json!([]), "{body}");
}

//! The admin APIs Kafka tools call, driven by confluent-kafka's AdminClient (the scripts in
//! `tests/kafka/admin_*.py`) and kcat against the real binary: DeleteRecords, ListOffsets
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

//! Topic lifecycle over HTTP: create, list, describe, delete, persistence across restarts.

use serde_json::json;

use crate::common::Server;

#[test]
fn topic_lifecycle_and_persistence() {
    let mut s = Server::start(&[]);
    let (status, body) = s.post(
        "/v1/topics",
        &json!({"name":"orders","partitions":3,"compacted":false,"retention_ms":null,"retention_bytes":null}),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "orders");
    assert_eq!(body["partitions"], 3);
    assert_eq!(body["compacted"], false);

    let (status, body) = s.post("/v1/topics", &json!({"name":"orders","partitions":3}));
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "topic_exists");

    s.create_topic(json!({"name":"users","partitions":1,"compacted":true}));
    let (status, body) = s.get("/v1/topics");
    assert_eq!(status, 200);
    let names: Vec<&str> = body["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orders", "users"]);
    assert_eq!(body["topics"][1]["compacted"], true);

    s.produce(
        "orders",
        vec![
            json!({"key":"a","value":"1"}),
            json!({"key":"b","value":"2"}),
        ],
    );
    let d = s.describe("orders");
    assert_eq!(d["partitions"], 3);
    let parts = d["partition_offsets"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    assert_eq!(
        parts
            .iter()
            .map(|p| p["end_offset"].as_i64().unwrap())
            .sum::<i64>(),
        2
    );
    assert!(parts.iter().all(|p| p["start_offset"] == 0));

    // Metadata and data survive a restart.
    s.restart();
    let d = s.describe("orders");
    assert_eq!(
        d["partition_offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["end_offset"].as_i64().unwrap())
            .sum::<i64>(),
        2
    );
    assert_eq!(s.describe("users")["compacted"], true);

    // Delete removes the topic and its data, for good.
    assert_eq!(s.delete("/v1/topics/orders"), 204);
    assert_eq!(s.get("/v1/topics/orders").0, 404);
    assert_eq!(s.delete("/v1/topics/orders"), 404);
    assert!(!s.data_dir().join("topics").join("orders").exists());
    s.restart();
    assert_eq!(s.get("/v1/topics/orders").0, 404);
    // A topic of the same name starts empty.
    s.create_topic(json!({"name":"orders","partitions":1}));
    assert_eq!(
        s.describe("orders")["partition_offsets"][0]["end_offset"],
        0
    );
}

#[test]
fn clean_shutdown_on_sigterm() {
    let mut s = Server::start(&[]);
    s.create_topic(json!({"name":"t","partitions":1}));
    s.produce("t", vec![json!({"value":"x"})]);
    assert!(s.terminate(), "weir must exit 0 on SIGTERM");
    s.restart();
    assert_eq!(s.read_all("t", 0, 0).len(), 1);
}

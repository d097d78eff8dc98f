//! Bad requests get the documented JSON errors and never take the server down.

use serde_json::{Value, json};

use crate::common::Server;

fn assert_error(status: u16, body: &Value, expected_status: u16, what: &str) {
    assert_eq!(status, expected_status, "{what}: {body}");
    assert!(
        body["error"]["code"].is_string(),
        "{what}: no error.code in {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: no message in {body}"
    );
}

#[test]
fn bad_requests_get_json_errors() {
    let s = Server::start(&["--max-request-bytes", "1048576"]);
    s.create_topic(json!({"name":"t","partitions":2}));

    let (st, b) = s.post("/v1/topics", &json!({"name":"bad name!","partitions":1}));
    assert_error(st, &b, 400, "bad topic name");
    let (st, b) = s.post("/v1/topics", &json!({"name":"zero","partitions":0}));
    assert_error(st, &b, 400, "zero partitions");
    let (st, b) = s.post("/v1/topics", &json!({"name":"neg","partitions":-3}));
    assert_error(st, &b, 400, "negative partitions");
    let (st, b) = s.post("/v1/topics", &json!({"name":"x","partitions":"three"}));
    assert_error(st, &b, 400, "partitions as string");
    let (st, b) = s.post_raw("/v1/topics", "{not json");
    assert_error(st, &b, 400, "malformed JSON");

    let (st, b) = s.get("/v1/topics/missing");
    assert_error(st, &b, 404, "unknown topic");
    let (st, b) = s.post(
        "/v1/topics/missing/records",
        &json!({"records":[{"value":"v"}]}),
    );
    assert_error(st, &b, 404, "produce to unknown topic");
    let (st, b) = s.get("/v1/topics/t/partitions/7/records");
    assert_error(st, &b, 404, "unknown partition");
    let (st, b) = s.post(
        "/v1/topics/t/records",
        &json!({"records":[{"value":"v","partition":9}]}),
    );
    assert_error(st, &b, 404, "produce to unknown partition");
    let (st, b) = s.get("/v1/topics/t/partitions/abc/records");
    assert_error(st, &b, 400, "non-numeric partition");
    let (st, b) = s.get("/v1/topics/t/partitions/0/records?offset=abc");
    assert_error(st, &b, 400, "non-numeric offset");
    let (st, b) = s.get("/v1/topics/t/partitions/0/records?offset=99");
    assert_error(st, &b, 400, "offset past the end");
    let (st, b) = s.post("/v1/topics/t/records", &json!({"records":[{"value": 5}]}));
    assert_error(st, &b, 400, "non-string value");
    let (st, b) = s.post("/v1/topics/t/records", &json!({"records":[]}));
    assert_error(st, &b, 400, "no records");
    let (st, b) = s.post(
        "/v1/topics/t/records",
        &json!({"records":[{"value":"v","timestamp":-5}]}),
    );
    assert_error(st, &b, 400, "negative timestamp");
    let (st, b) = s.get("/v1/nothing/here");
    assert_error(st, &b, 404, "unknown route");

    let big = "x".repeat(2 * 1024 * 1024);
    let (st, b) = s.post("/v1/topics/t/records", &json!({"records":[{"value": big}]}));
    assert_error(st, &b, 413, "oversized body");

    // Garbage bytes of every sort: the server answers and stays up.
    for body in [
        "",
        "null",
        "[]",
        "{\"records\":null}",
        "\u{0}\u{1}\u{2}",
        "{\"records\":[{\"headers\":5}]}",
    ] {
        let (st, _) = s.post_raw("/v1/topics/t/records", body);
        assert!((400..500).contains(&st), "body {body:?} -> {st}");
    }
    let (st, b) = s.get("/health");
    assert_eq!(st, 200);
    assert_eq!(b, json!({"status":"ok"}));
    // Nothing was appended by the failed requests.
    let d = s.describe("t");
    assert!(
        d["partition_offsets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["end_offset"] == 0),
        "{d}"
    );
}

#[test]
fn metrics_expose_per_topic_counters() {
    let s = Server::start(&[]);
    s.create_topic(json!({"name":"m","partitions":1}));
    s.produce(
        "m",
        (0..7).map(|i| json!({"value": format!("{i}")})).collect(),
    );
    s.read_all("m", 0, 0);
    let text = s
        .http
        .get(format!("{}/metrics", s.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.contains("records_appended") && l.contains("topic=\"m\"") && !l.starts_with('#')
        })
        .unwrap_or_else(|| panic!("no records_appended for m in:\n{text}"));
    assert!(line.trim_end().ends_with(" 7"), "{line}");
    assert!(
        text.lines().any(|l| l.contains("records_read")
            && l.contains("topic=\"m\"")
            && l.trim_end().ends_with(" 7")),
        "{text}"
    );
    assert!(text.contains("http_requests"), "{text}");
}

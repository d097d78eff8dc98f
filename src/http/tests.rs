//! In-process tests of the router: a real broker in a temp dir, the API served on a free
//! port, and reqwest as the client.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::watch;
use weir_broker::{Broker, BrokerConfig};

use super::metrics::Metrics;
use super::{AppState, HttpConfig, router};

struct Server {
    base: String,
    client: reqwest::Client,
    shutdown: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(max_request_bytes: usize) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        let (shutdown, rx) = watch::channel(false);
        let state = AppState {
            broker: broker.clone(),
            metrics: std::sync::Arc::new(Metrics::new(broker)),
            shutdown: rx,
        };
        let app = router(state, &HttpConfig { max_request_bytes });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server {
            base,
            client: reqwest::Client::new(),
            shutdown,
            _dir: dir,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

#[tokio::test]
async fn topic_lifecycle_and_records() {
    let s = Server::start(1 << 20).await;
    assert_eq!(s.get("/health").await, (200, json!({"status":"ok"})));

    let (status, body) = s.post("/v1/topics", r#"{"name":"t","partitions":2}"#).await;
    assert_eq!(status, 201);
    assert_eq!(body["name"], "t");
    assert_eq!(body["partitions"], 2);
    let (status, body) = s.post("/v1/topics", r#"{"name":"t","partitions":2}"#).await;
    assert_eq!((status, code(&body)), (409, "topic_exists"));

    let (status, body) = s
        .post(
            "/v1/topics/t/records",
            r#"{"records":[{"key":"k","value":"v","headers":{"h":"x"},"timestamp":1700000000000,"partition":1},{"value":null,"partition":1}]}"#,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"offsets":[{"partition":1,"offset":0},{"partition":1,"offset":1}]})
    );

    let (status, body) = s
        .get("/v1/topics/t/partitions/1/records?offset=0&max=1")
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["records"].as_array().unwrap().len(), 1);
    assert_eq!(body["records"][0]["key"], "k");
    assert_eq!(body["records"][0]["value"], "v");
    assert_eq!(body["records"][0]["headers"], json!({"h":"x"}));
    assert_eq!(body["records"][0]["timestamp"], 1_700_000_000_000i64);
    assert_eq!(body["next_offset"], 1);

    let (status, body) = s.get("/v1/topics/t").await;
    assert_eq!(status, 200);
    assert_eq!(body["partition_offsets"][1]["end_offset"], 2);

    let (status, body) = s.get("/v1/topics").await;
    assert_eq!(status, 200);
    assert_eq!(body["topics"][0]["name"], "t");

    let (status, _) = s.call(reqwest::Method::DELETE, "/v1/topics/t", None).await;
    assert_eq!(status, 204);
    let (status, body) = s.get("/v1/topics/t").await;
    assert_eq!((status, code(&body)), (404, "unknown_topic"));
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let s = Server::start(4096).await;
    s.post("/v1/topics", r#"{"name":"t"}"#).await;
    let cases: Vec<(reqwest::Method, &str, Option<&str>, u16, &str)> = vec![
        (
            reqwest::Method::POST,
            "/v1/topics",
            Some("{"),
            400,
            "invalid_json",
        ),
        (
            reqwest::Method::POST,
            "/v1/topics",
            Some(r#"{"name":1}"#),
            400,
            "bad_request",
        ),
        (
            reqwest::Method::POST,
            "/v1/topics",
            Some(r#"{"name":"a b"}"#),
            400,
            "invalid_topic_name",
        ),
        (
            reqwest::Method::POST,
            "/v1/topics",
            Some(r#"{"name":"z","partitions":0}"#),
            400,
            "invalid_config",
        ),
        (
            reqwest::Method::POST,
            "/v1/topics/t/records",
            Some(r#"{"records":[]}"#),
            400,
            "bad_request",
        ),
        (
            reqwest::Method::POST,
            "/v1/topics/nope/records",
            Some(r#"{"records":[{}]}"#),
            404,
            "unknown_topic",
        ),
        (
            reqwest::Method::GET,
            "/v1/topics/t/partitions/5/records",
            None,
            404,
            "unknown_partition",
        ),
        (
            reqwest::Method::GET,
            "/v1/topics/t/partitions/x/records",
            None,
            400,
            "invalid_path",
        ),
        (
            reqwest::Method::GET,
            "/v1/topics/t/partitions/0/records?max=x",
            None,
            400,
            "invalid_query",
        ),
        (
            reqwest::Method::GET,
            "/v1/topics/t/partitions/0/records?offset=-1",
            None,
            400,
            "invalid_query",
        ),
        (reqwest::Method::GET, "/nope", None, 404, "not_found"),
        (
            reqwest::Method::PATCH,
            "/v1/topics",
            None,
            405,
            "method_not_allowed",
        ),
    ];
    for (method, path, body, status, expected) in cases {
        let (got, json) = s.call(method.clone(), path, body).await;
        assert_eq!(
            (got, code(&json)),
            (status, expected),
            "{method} {path} {body:?}: {json}"
        );
        assert!(json["error"]["message"].is_string(), "{json}");
    }
    let big = format!(r#"{{"records":[{{"value":"{}"}}]}}"#, "x".repeat(5000));
    let (status, json) = s.post("/v1/topics/t/records", &big).await;
    assert_eq!((status, code(&json)), (413, "too_large"));
}

#[tokio::test]
async fn follow_streams_new_records_and_ends_on_shutdown() {
    let s = Server::start(1 << 20).await;
    s.post("/v1/topics", r#"{"name":"f"}"#).await;
    s.post("/v1/topics/f/records", r#"{"records":[{"value":"old"}]}"#)
        .await;
    let resp = s
        .client
        .get(format!(
            "{}/v1/topics/f/partitions/0/records?follow=true",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.bytes_stream();
    s.post("/v1/topics/f/records", r#"{"records":[{"value":"new"}]}"#)
        .await;

    let mut text = String::new();
    while text.lines().count() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("no record within 5s")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let values: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(values[0]["value"], "old");
    assert_eq!(values[1]["value"], "new");
    assert_eq!(values[1]["offset"], 1);

    s.shutdown.send(true).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), body.next()).await;
    assert!(matches!(end, Ok(None)), "stream should end on shutdown");
}

#[tokio::test]
async fn metrics_count_requests_and_topic_traffic() {
    let s = Server::start(1 << 20).await;
    s.post("/v1/topics", r#"{"name":"m"}"#).await;
    s.post(
        "/v1/topics/m/records",
        r#"{"records":[{"value":"a"},{"value":"b"}]}"#,
    )
    .await;
    let resp = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(r#"weir_topic_records_appended_total{topic="m"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"weir_http_requests_total{method="POST",route="/v1/topics/{name}/records",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("weir_http_request_duration_seconds_bucket"),
        "{text}"
    );
}

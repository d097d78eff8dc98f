//! In-process tests of the router: a real broker in a temp dir, the API served on a free
//! port, and reqwest as the client.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::watch;

use weir_broker::{Broker, BrokerConfig};
use weir_engine::native::NativeLoader;
use weir_engine::state::memory::MemoryBackend;
use weir_engine::udf::{FunctionRegistry, FunctionRegistryConfig};
use weir_engine::wasm::{WasmConfig, WasmEngine};
use weir_engine::{Engine, EngineConfig};

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
        let broker = Broker::open(BrokerConfig::new(dir.path().join("log"))).unwrap();
        let engine = Engine::open(
            &EngineConfig::under(dir.path()),
            Arc::new(broker.clone()),
            Arc::new(MemoryBackend::new()),
            Arc::new(NativeLoader),
        )
        .unwrap();
        let wasm = WasmEngine::new({
            let mut c = WasmConfig::new(dir.path().join("wasm-cache"));
            c.max_instances = 8;
            c.max_memory_bytes = 256 << 20;
            c
        })
        .unwrap();
        let functions = FunctionRegistry::open(
            FunctionRegistryConfig::under(dir.path()).with_reserved(["upper"]),
            wasm,
        )
        .unwrap();
        let (shutdown, rx) = watch::channel(false);
        let state = AppState {
            broker: broker.clone(),
            engine,
            functions: Arc::new(functions),
            sql: None,
            metrics: std::sync::Arc::new(Metrics::new(broker)),
            shutdown: rx,
            auth: None,
            cluster: None,
            metadata: None,
            node_id: 0,
            routing: None,
            forwarder: None,
            replication: None,
            groups: weir_broker::group::GroupsView::default(),
            engine_cluster: None,
        };
        let config = HttpConfig {
            max_request_bytes,
            max_upload_bytes: 1 << 20,
            ..HttpConfig::default()
        };
        let app = router(state, &config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server {
            base,
            client: {
                weir_broker::net::tls::install_default_provider();
                reqwest::Client::new()
            },
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

/// A multipart upload of a native test processor (`native:<name>`).
async fn upload(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    spec: &str,
    module: Vec<u8>,
) -> (u16, Value) {
    let form = reqwest::multipart::Form::new()
        .text("spec", spec.to_string())
        .part("wasm", reqwest::multipart::Part::bytes(module));
    let resp = s
        .client
        .request(method, format!("{}{path}", s.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn processors_deploy_describe_query_and_delete() {
    let s = Server::start(1 << 20).await;
    s.post("/v1/topics", r#"{"name":"text","partitions":2}"#)
        .await;
    let spec = r#"{"name":"wc","inputs":["text"],"outputs":["counts"],"commit_interval_ms":20}"#;
    let (status, body) = upload(
        &s,
        reqwest::Method::POST,
        "/v1/processors",
        spec,
        b"native:word-count".to_vec(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 1);
    assert_eq!(body["tasks"].as_array().unwrap().len(), 2);

    s.post(
        "/v1/topics/text/records",
        r#"{"records":[{"value":"a b a","partition":0},{"value":"a","partition":1}]}"#,
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = s.get("/v1/processors/wc/stores/counts/keys/a").await;
        if status == 200 && body == json!({"key":"a","value":"3"}) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = s.get("/v1/processors/wc/stores/counts/keys/zzz").await;
    assert_eq!((status, code(&body)), (404, "key_not_found"));
    let (status, body) = s.get("/v1/processors/wc/stores/other/keys/a").await;
    assert_eq!((status, code(&body)), (404, "unknown_store"));
    // A single node answers a stale look-up from its running task; a bad flag is a 400.
    let (status, body) = s
        .get("/v1/processors/wc/stores/counts/keys/a?allow_stale=true")
        .await;
    assert_eq!((status, &body), (200, &json!({"key":"a","value":"3"})));
    let (status, body) = s
        .get("/v1/processors/wc/stores/counts/keys/a?allow_stale=maybe")
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = s.get("/v1/processors").await;
    assert_eq!(status, 200);
    assert_eq!(body["processors"][0]["name"], "wc");
    let (status, body) = s.get("/v1/processors/wc").await;
    assert_eq!(status, 200);
    assert_eq!(body["tasks"][0]["state"], "running");

    let (status, body) = s.post("/v1/processors/wc/pause", "").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("paused")));
    let (status, _) = s.post("/v1/processors/wc/resume", "").await;
    assert_eq!(status, 200);
    let (status, body) = upload(
        &s,
        reqwest::Method::PUT,
        "/v1/processors/wc",
        spec,
        b"native:word-count".to_vec(),
    )
    .await;
    assert_eq!((status, body["version"].as_i64()), (200, Some(2)), "{body}");

    let (status, _) = s
        .call(
            reqwest::Method::DELETE,
            "/v1/processors/wc?keep_state=false",
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = s.get("/v1/processors/wc").await;
    assert_eq!((status, code(&body)), (404, "unknown_processor"));
}

#[tokio::test]
async fn processor_uploads_are_validated() {
    let s = Server::start(1 << 20).await;
    s.post("/v1/topics", r#"{"name":"a","partitions":2}"#).await;
    s.post("/v1/topics", r#"{"name":"b","partitions":1}"#).await;
    let post = |spec: &'static str, module: &'static [u8]| {
        upload(
            &s,
            reqwest::Method::POST,
            "/v1/processors",
            spec,
            module.to_vec(),
        )
    };
    let cases: [(&str, &[u8], u16, &str); 6] = [
        (
            r#"{"name":"p","inputs":["a"]}"#,
            b"garbage",
            400,
            "not_a_component",
        ),
        (
            r#"{"name":"p","inputs":["a","b"]}"#,
            b"native:uppercase",
            400,
            "not_co_partitioned",
        ),
        (
            r#"{"name":"p","inputs":["nope"]}"#,
            b"native:uppercase",
            400,
            "unknown_input",
        ),
        (r#"{"name":"p"}"#, b"native:uppercase", 400, "invalid_spec"),
        (
            r#"{"name":"p.q","inputs":["a"]}"#,
            b"native:uppercase",
            400,
            "invalid_spec",
        ),
        (r#"not json"#, b"native:uppercase", 400, "invalid_spec"),
    ];
    for (spec, module, want_status, want_code) in cases {
        let (status, body) = post(spec, module).await;
        assert_eq!(
            (status, code(&body)),
            (want_status, want_code),
            "{spec}: {body}"
        );
    }
    // Missing parts.
    let form = reqwest::multipart::Form::new().text("spec", r#"{"name":"p","inputs":["a"]}"#);
    let resp = s
        .client
        .post(format!("{}/v1/processors", s.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // Over the upload limit: 413.
    let (status, body) = upload(
        &s,
        reqwest::Method::POST,
        "/v1/processors",
        r#"{"name":"p","inputs":["a"]}"#,
        vec![0u8; 2 << 20],
    )
    .await;
    assert_eq!((status, code(&body)), (413, "too_large"), "{body}");
    // Not multipart at all.
    let (status, body) = s.post("/v1/processors", "{}").await;
    assert_eq!(status, 400, "{body}");
}

/// A UDF component built by scripts/build-guests.sh.
fn guest(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/guests")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "guest component {} is missing ({e}): run scripts/build-guests.sh first",
            path.display()
        )
    })
}

#[tokio::test]
async fn functions_register_list_describe_and_delete() {
    let s = Server::start(1 << 20).await;
    let mask = guest("udf-mask");
    let (status, body) = upload(
        &s,
        reqwest::Method::POST,
        "/v1/functions",
        r#"{"name":"mask"}"#,
        mask.clone(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "MASK");
    assert_eq!(body["kind"], "scalar");
    assert_eq!(
        body["signature"],
        json!({"params":["text"],"returns":"text"})
    );
    assert_eq!(body["module_bytes"], mask.len());
    assert_eq!(body["sha256"].as_str().map(str::len), Some(64));

    // Same name again: 409 unless replacing.
    let (status, body) = upload(
        &s,
        reqwest::Method::POST,
        "/v1/functions",
        r#"{"name":"MASK"}"#,
        mask.clone(),
    )
    .await;
    assert_eq!((status, code(&body)), (409, "function_exists"), "{body}");
    let (status, body) = upload(
        &s,
        reqwest::Method::POST,
        "/v1/functions",
        r#"{"name":"Mask","replace":true}"#,
        guest("udf-geomean"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["kind"], "aggregate");

    let (status, body) = s.get("/v1/functions").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["functions"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    let (status, body) = s.get("/v1/functions/mask").await;
    assert_eq!(
        (status, body["name"].as_str()),
        (200, Some("MASK")),
        "{body}"
    );
    let (status, body) = s.get("/v1/functions/nope").await;
    assert_eq!((status, code(&body)), (404, "unknown_function"), "{body}");

    let (status, _) = s
        .call(reqwest::Method::DELETE, "/v1/functions/mask", None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = s
        .call(reqwest::Method::DELETE, "/v1/functions/mask", None)
        .await;
    assert_eq!((status, code(&body)), (404, "unknown_function"), "{body}");
    let (_, body) = s.get("/v1/functions").await;
    assert_eq!(body, json!({"functions": []}));
}

#[tokio::test]
async fn function_uploads_are_validated() {
    let s = Server::start(1 << 20).await;
    let post = |spec: &'static str, module: Vec<u8>| {
        upload(&s, reqwest::Method::POST, "/v1/functions", spec, module)
    };
    let cases: [(&str, Vec<u8>, u16, &str); 8] = [
        (
            r#"{"name":"f"}"#,
            guest("udf-bad-signature"),
            400,
            "signature_failed",
        ),
        (
            r#"{"name":"f"}"#,
            b"garbage".to_vec(),
            400,
            "not_a_component",
        ),
        (r#"{"name":"f"}"#, guest("uppercase"), 400, "wrong_world"),
        (r#"{"name":"f"}"#, guest("wrong-world"), 400, "wrong_world"),
        (
            r#"{"name":"1f"}"#,
            guest("udf-mask"),
            400,
            "invalid_function_name",
        ),
        (
            r#"{"name":"UPPER"}"#,
            guest("udf-mask"),
            400,
            "reserved_function_name",
        ),
        (r#"{"nom":"f"}"#, guest("udf-mask"), 400, "invalid_spec"),
        (r#"not json"#, guest("udf-mask"), 400, "invalid_spec"),
    ];
    for (spec, module, want_status, want_code) in cases {
        let (status, body) = post(spec, module).await;
        assert_eq!(
            (status, code(&body)),
            (want_status, want_code),
            "{spec}: {body}"
        );
    }
    // Over the upload limit: 413.
    let (status, body) = post(r#"{"name":"f"}"#, vec![0u8; 2 << 20]).await;
    assert_eq!((status, code(&body)), (413, "too_large"), "{body}");
    let (status, body) = s.post("/v1/functions", "{}").await;
    assert_eq!(status, 400, "{body}");
    let (_, body) = s.get("/v1/functions").await;
    assert_eq!(body, json!({"functions": []}));
}

#[tokio::test]
async fn artifacts_are_stored() {
    let s = Server::start(1 << 20).await;
    let mask = guest("udf-mask");
    let resp = s
        .client
        .put(format!("{}/v1/artifacts/mask", s.base))
        .body(mask.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["name"], "mask");
    assert_eq!(body["bytes"], mask.len());
    assert_eq!(body["sha256"].as_str().map(str::len), Some(64));
    for (path, bytes, want_status, want_code) in [
        (
            "/v1/artifacts/bad",
            b"garbage".to_vec(),
            400,
            "not_a_component",
        ),
        (
            "/v1/artifacts/..x",
            mask.clone(),
            400,
            "invalid_artifact_name",
        ),
        ("/v1/artifacts/big", vec![0u8; 2 << 20], 413, "too_large"),
    ] {
        let resp = s
            .client
            .put(format!("{}{path}", s.base))
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (status, code(&body)),
            (want_status, want_code),
            "{path}: {body}"
        );
    }
}

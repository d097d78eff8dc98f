//! `weir sql` against an in-process fake of the SQL HTTP API (`/v1/sql`, `/v1/query`) that
//! records what it was sent; also `weir function` and `weir artifact` against the same fake.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::*;
use crate::cli::function::{self, ArtifactCommand, FunctionCommand};

#[derive(Clone, Default)]
struct Fake {
    /// (path, JSON body or text) of every request, in order.
    requests: Arc<Mutex<Vec<(String, Value)>>>,
    /// Lets the push query send its second row.
    resume: Arc<Notify>,
}

fn error(status: StatusCode, message: &str, position: Option<(u64, u64)>) -> Response {
    let mut e = json!({"error": {"code": "sql_syntax", "message": message}});
    if let Some((line, column)) = position {
        e["error"]["line"] = json!(line);
        e["error"]["column"] = json!(column);
    }
    (status, axum::Json(e)).into_response()
}

async fn sql(State(f): State<Fake>, axum::Json(body): axum::Json<Value>) -> Response {
    f.requests
        .lock()
        .unwrap()
        .push(("/v1/sql".into(), body.clone()));
    let sql = body["sql"].as_str().unwrap_or_default().to_string();
    if sql.contains("BAD") {
        return error(
            StatusCode::BAD_REQUEST,
            "mismatched input 'BAD'",
            Some((2, 3)),
        );
    }
    if sql.contains("GONE") {
        return error(StatusCode::NOT_FOUND, "stream GONE does not exist", None);
    }
    let result = if sql.starts_with("SHOW STREAMS") {
        json!({"statement": sql, "type": "streams", "columns": ["NAME", "TOPIC", "EXTRA"],
               "rows": [["S", "t", null], ["日本", "u", {"a": [1]}]]})
    } else {
        json!({"statement": sql, "type": "created", "message": format!("done: {sql}")})
    };
    axum::Json(json!({"results": [result]})).into_response()
}

/// An NDJSON body from lines sent on a channel.
fn ndjson(lines: tokio::sync::mpsc::Receiver<String>) -> Body {
    let stream = futures_util::stream::unfold(lines, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok::<Bytes, Infallible>(Bytes::from(line + "\n")), rx))
    });
    Body::from_stream(stream)
}

async fn query(State(f): State<Fake>, axum::Json(body): axum::Json<Value>) -> Response {
    f.requests
        .lock()
        .unwrap()
        .push(("/v1/query".into(), body.clone()));
    let sql = body["sql"].as_str().unwrap_or_default().to_string();
    if sql.contains("missing") {
        return error(StatusCode::BAD_REQUEST, "unknown source", Some((1, 15)));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let header = json!({"header": {"query_id": "q1", "columns": ["ID", "NAME"]}}).to_string();
    tokio::spawn(async move {
        let _ = tx.send(header).await;
        let _ = tx.send(json!({"row": [1, "a"]}).to_string()).await;
        if sql.contains("push") {
            f.resume.notified().await;
            let _ = tx.send(json!({"row": [2, null]}).to_string()).await;
        } else if sql.contains("failing") {
            let _ = tx
                .send(json!({"error": {"code": "query_failed", "message": "boom"}}).to_string())
                .await;
        } else {
            let _ = tx.send(json!({"row": [22, [1, 2]]}).to_string()).await;
        }
    });
    ([("content-type", "application/x-ndjson")], ndjson(rx)).into_response()
}

async fn create_function(State(f): State<Fake>, mut form: Multipart) -> Response {
    let mut parts = json!({});
    while let Some(field) = form.next_field().await.unwrap() {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.unwrap();
        parts[name] = json!(String::from_utf8_lossy(&bytes));
    }
    f.requests
        .lock()
        .unwrap()
        .push(("POST /v1/functions".into(), parts));
    (
        StatusCode::CREATED,
        axum::Json(json!({"name": "mask", "kind": "scalar",
                          "signature": {"params": ["text"], "returns": "text"}})),
    )
        .into_response()
}

async fn delete_function(State(f): State<Fake>, Path(name): Path<String>) -> StatusCode {
    f.requests
        .lock()
        .unwrap()
        .push((format!("DELETE /v1/functions/{name}"), Value::Null));
    StatusCode::NO_CONTENT
}

async fn put_artifact(
    State(f): State<Fake>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let length = headers["content-length"].to_str().unwrap().to_string();
    f.requests.lock().unwrap().push((
        format!("PUT /v1/artifacts/{name}"),
        json!({"length": length, "body": String::from_utf8_lossy(&body)}),
    ));
    StatusCode::CREATED
}

/// Starts the fake; returns it and a client for it.
async fn start() -> (Fake, Client) {
    let fake = Fake::default();
    let app = Router::new()
        .route("/v1/sql", post(sql))
        .route("/v1/query", post(query))
        .route("/v1/functions", post(create_function))
        .route("/v1/functions/{name}", delete(delete_function))
        .route("/v1/artifacts/{name}", put(put_artifact))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, Client::new(&format!("http://{addr}")).unwrap())
}

fn session(client: &Client, output: SqlOutput) -> (Session, Arc<Mutex<Vec<u8>>>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let session = Session {
        client: client.clone(),
        output,
        properties: [("p".to_string(), "1".to_string())].into_iter().collect(),
        interactive: false,
        sink: Sink::Buffer(buffer.clone()),
    };
    (session, buffer)
}

fn text(buffer: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8(buffer.lock().unwrap().clone()).unwrap()
}

fn sent(fake: &Fake) -> Vec<(String, Value)> {
    fake.requests.lock().unwrap().clone()
}

#[tokio::test]
async fn a_script_runs_statement_by_statement_with_properties() {
    let (fake, client) = start().await;
    let (mut s, out) = session(&client, SqlOutput::Table);
    let script = "-- a script\nSHOW STREAMS;\nSET 'auto.offset.reset' = 'earliest';\n\
                  CREATE STREAM x /* ; */ AS SELECT 1;\nUNSET 'p';\nSELECT * FROM pull";
    s.run_script(script).await.unwrap();
    let requests = sent(&fake);
    let sqls: Vec<(&str, &str)> = requests
        .iter()
        .map(|(path, body)| (path.as_str(), body["sql"].as_str().unwrap()))
        .collect();
    assert_eq!(
        sqls,
        [
            ("/v1/sql", "SHOW STREAMS;"),
            ("/v1/sql", "CREATE STREAM x         AS SELECT 1;"),
            ("/v1/query", "SELECT * FROM pull;"),
        ]
    );
    assert_eq!(requests[0].1["properties"], json!({"p": "1"}));
    assert_eq!(
        requests[1].1["properties"],
        json!({"p": "1", "auto.offset.reset": "earliest"})
    );
    assert_eq!(
        requests[2].1["properties"],
        json!({"auto.offset.reset": "earliest"})
    );
    assert_eq!(
        text(&out),
        "+------+-------+-----------+\n\
         | NAME | TOPIC | EXTRA     |\n\
         +------+-------+-----------+\n\
         | S    | t     | NULL      |\n\
         | 日本 | u     | {\"a\":[1]} |\n\
         +------+-------+-----------+\n\
         Property 'auto.offset.reset' set to 'earliest'\n\
         done: CREATE STREAM x         AS SELECT 1;\n\
         Property 'p' unset\n\
         +------------+------------+\n\
         | ID         | NAME       |\n\
         +------------+------------+\n\
         | 1          | a          |\n\
         | 22         | [1,2]      |\n\
         +------------+------------+\n"
    );
}

#[tokio::test]
async fn a_script_stops_at_the_first_error_with_its_position() {
    let (fake, client) = start().await;
    let (mut s, out) = session(&client, SqlOutput::Table);
    // The server says line 2, column 3 of the statement, which starts on line 3, column 3.
    let e = s
        .run_script("SHOW STREAMS;\n\n  CREATE\nBAD x;\nSHOW STREAMS;")
        .await
        .unwrap_err();
    assert_eq!(format!("{e:#}"), "line 4, column 3: mismatched input 'BAD'");
    assert_eq!(
        sent(&fake).len(),
        2,
        "the statement after the error was run"
    );
    assert!(text(&out).contains("| S "));

    // Without a position: the statement's line, when there are several.
    let e = s
        .run_script("SHOW STREAMS;\nDROP STREAM GONE;")
        .await
        .unwrap_err();
    assert_eq!(
        format!("{e:#}"),
        "statement at line 2: stream GONE does not exist"
    );
    let e = s.run_script("DROP STREAM GONE").await.unwrap_err();
    assert_eq!(format!("{e:#}"), "stream GONE does not exist");

    // A query refused with a position.
    let e = s.run_script("SELECT * FROM missing;").await.unwrap_err();
    assert_eq!(format!("{e:#}"), "line 1, column 15: unknown source");

    // A failure in the middle of a query's stream.
    let before = text(&out).len();
    let e = s.run_script("SELECT * FROM failing;").await.unwrap_err();
    assert_eq!(format!("{e:#}"), "boom");
    assert!(
        text(&out)[before..]
            .ends_with("| 1          | a          |\n+------------+------------+\n")
    );

    // Client-side errors.
    let e = s.run_script("SET k = v;").await.unwrap_err();
    assert!(
        format!("{e:#}").starts_with("expected SET 'name'='value'"),
        "{e:#}"
    );
    let e = s.run_script("SHOW 'STREAMS;").await.unwrap_err();
    assert_eq!(format!("{e:#}"), "unterminated quoted string (missing ')");
    let e = s.run_script("SHOW STREAMS; /*").await.unwrap_err();
    assert_eq!(format!("{e:#}"), "unterminated comment (missing */)");
}

#[tokio::test]
async fn push_query_rows_print_as_they_arrive() {
    let (fake, client) = start().await;
    let (mut s, out) = session(&client, SqlOutput::Table);
    let run = tokio::spawn(async move { s.run_script("select * from push emit changes;").await });
    // The first row is printed while the query is still open.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !text(&out).contains("| 1 ") {
        assert!(tokio::time::Instant::now() < deadline, "{}", text(&out));
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!run.is_finished());
    fake.resume.notify_one();
    run.await.unwrap().unwrap();
    assert!(text(&out).ends_with("| 2          | NULL       |\n+------------+------------+\n"));
}

#[tokio::test]
async fn json_output_prints_results_and_stream_lines() {
    let (_fake, client) = start().await;
    let (mut s, out) = session(&client, SqlOutput::Json);
    s.run_script("SET 'a'='b'; CREATE STREAM y; SELECT * FROM pull;")
        .await
        .unwrap();
    let lines: Vec<Value> = text(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // SET prints nothing; one result, then the stream's lines as they came.
    assert_eq!(lines.len(), 4, "{}", text(&out));
    assert_eq!(lines[0]["message"], "done: CREATE STREAM y;");
    assert_eq!(lines[0]["type"], "created");
    assert_eq!(lines[1]["header"]["columns"], json!(["ID", "NAME"]));
    assert_eq!(lines[2]["row"], json!([1, "a"]));
    assert_eq!(lines[3]["row"], json!([22, [1, 2]]));
}

#[tokio::test]
async fn functions_and_artifacts_use_the_api() {
    let (fake, client) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("mask.wasm");
    std::fs::write(&wasm, b"\0asm-fake").unwrap();
    function::run(
        &client,
        FunctionCommand::Create {
            name: "mask".into(),
            file: wasm.clone(),
            replace: true,
        },
    )
    .await
    .unwrap();
    function::run(&client, FunctionCommand::Delete { name: "a b".into() })
        .await
        .unwrap();
    function::run_artifact(
        &client,
        ArtifactCommand::Put {
            name: "lib".into(),
            file: wasm,
        },
    )
    .await
    .unwrap();
    let requests = sent(&fake);
    assert_eq!(requests[0].0, "POST /v1/functions");
    assert_eq!(requests[0].1["wasm"], "\0asm-fake");
    let spec: Value = serde_json::from_str(requests[0].1["spec"].as_str().unwrap()).unwrap();
    assert_eq!(spec, json!({"name": "mask", "replace": true}));
    assert_eq!(requests[1].0, "DELETE /v1/functions/a b");
    assert_eq!(requests[2].0, "PUT /v1/artifacts/lib");
    assert_eq!(requests[2].1, json!({"length": "9", "body": "\0asm-fake"}));
    // The fake has no GET /v1/functions: a one-line error.
    let e = function::run(&client, FunctionCommand::List)
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "server answered 405 Method Not Allowed");
}

#[tokio::test]
async fn ndjson_lines_handle_crlf_blank_lines_and_a_last_line_without_newline() {
    let app = Router::new().route(
        "/lines",
        axum::routing::get(|| async {
            let chunks = ["{\"a\":1}\r\n\n{\"b\"", ":2}\n", "  \n{\"c\":3}"];
            let stream = futures_util::stream::iter(
                chunks.map(|c| Ok::<Bytes, Infallible>(Bytes::from_static(c.as_bytes()))),
            );
            Body::from_stream(stream)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::new(&format!("http://{addr}")).unwrap();
    let response = client.send(client.get(&["lines"])).await.unwrap();
    let lines: Vec<String> = client
        .ndjson_lines(response)
        .map(|l| String::from_utf8(l.unwrap()).unwrap())
        .collect()
        .await;
    assert_eq!(lines, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
}

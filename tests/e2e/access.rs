//! The HTTP listener's remaining authorization gaps (issue #12), through the real binary:
//! prefix ACLs apply to SQL queries (the topics a pull or push query reads), to the topic
//! list and to processor state look-ups (the store's changelog topic), as on the Kafka
//! listener; users, tokens and ACLs cannot be planted on a node without `--auth`; and an
//! unreadable user store is a warning without `--auth` and a refusal to start with it.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::RequestBuilder;
use serde_json::{Value, json};

use crate::common::{BIN, Server, free_port, guest, stderr};

const ADMIN_PW: &str = "Adm1n-S3cret-pw";

fn start_auth() -> Server {
    Server::start_with_env(&["--auth"], &[("WEIR_ADMIN_PASSWORD", ADMIN_PW)])
}

/// Sends `req` as `user` (Basic; no credentials for `None`); the status and the JSON body.
fn send(req: RequestBuilder, user: Option<(&str, &str)>) -> (u16, Value) {
    let req = match user {
        Some((u, p)) => req.basic_auth(u, Some(p)),
        None => req,
    };
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

const ADMIN: Option<(&str, &str)> = Some(("admin", ADMIN_PW));
const OLA: Option<(&str, &str)> = Some(("ola", "ola-pw-1"));

fn get(s: &Server, path: &str, user: Option<(&str, &str)>) -> (u16, Value) {
    send(s.http.get(format!("{}{path}", s.url)), user)
}

fn post(s: &Server, path: &str, body: &Value, user: Option<(&str, &str)>) -> (u16, Value) {
    send(s.http.post(format!("{}{path}", s.url)).json(body), user)
}

fn admin_ok(s: &Server, path: &str, body: &Value) -> Value {
    let (status, answer) = post(s, path, body, ADMIN);
    assert!((200..300).contains(&status), "{path} {body}: {answer}");
    answer
}

/// `POST /v1/query` as `user`: the status, and the error code if it failed. A push query's
/// stream is dropped once its header arrived (which ends the query).
fn query(s: &Server, sql: &str, user: Option<(&str, &str)>) -> (u16, Option<String>) {
    let mut req = s
        .http
        .post(format!("{}/v1/query", s.url))
        .json(&json!({ "sql": sql }));
    if let Some((u, p)) = user {
        req = req.basic_auth(u, Some(p));
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    if status == 200 {
        return (status, None);
    }
    let body: Value = r.json().unwrap_or(Value::Null);
    (status, body["error"]["code"].as_str().map(str::to_string))
}

/// Deploys word-count as admin (multipart).
fn deploy_word_count(s: &Server, name: &str, input: &str) {
    let boundary = "weir-access-boundary";
    let spec = json!({"name": name, "inputs": [input], "outputs": [format!("{name}-out")]});
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"spec\"\r\n\r\n{spec}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"wasm\"; \
         filename=\"p.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&guest("word-count"));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (status, answer) = send(
        s.http
            .post(format!("{}/v1/processors", s.url))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body),
        ADMIN,
    );
    assert_eq!(status, 201, "{answer}");
}

/// A node with `ola`, a reader limited by a read ACL to topics starting with `orders`, and
/// streams and tables inside and outside that prefix.
fn start_with_ola() -> Server {
    let s = start_auth();
    admin_ok(
        &s,
        "/v1/users",
        &json!({"name": "ola", "password": "ola-pw-1", "role": "reader"}),
    );
    admin_ok(
        &s,
        "/v1/acls",
        &json!({"user": "ola", "resource": "topic", "prefix": "orders", "allow": "read"}),
    );
    admin_ok(
        &s,
        "/v1/sql",
        &json!({"sql": "CREATE STREAM orders_s (id VARCHAR KEY, amount INT) \
                          WITH (KAFKA_TOPIC='orders.eu', PARTITIONS=1); \
                        CREATE TABLE customers (id VARCHAR PRIMARY KEY, name VARCHAR) \
                          WITH (KAFKA_TOPIC='orders.customers', PARTITIONS=1); \
                        CREATE TABLE payments (id VARCHAR PRIMARY KEY, amount INT) \
                          WITH (KAFKA_TOPIC='payments', PARTITIONS=1); \
                        CREATE STREAM refunds (id VARCHAR KEY, amount INT) \
                          WITH (KAFKA_TOPIC='refunds', PARTITIONS=1); \
                        INSERT INTO payments (id, amount) VALUES ('p1', 10);"}),
    );
    s
}

#[test]
fn pull_and_push_queries_need_read_on_every_topic_they_read() {
    let s = start_with_ola();
    let denied = |sql: &str| {
        let got = query(&s, sql, OLA);
        assert_eq!(got, (403, Some("forbidden".to_string())), "{sql}");
    };
    denied("SELECT * FROM payments WHERE id = 'p1';");
    denied("SELECT * FROM payments;");
    denied("SELECT * FROM refunds EMIT CHANGES;");
    denied("SELECT o.id, p.amount FROM orders_s o JOIN payments p ON o.id = p.id EMIT CHANGES;");
    assert_eq!(
        query(&s, "SELECT * FROM customers;", OLA),
        (200, None),
        "a table inside the prefix"
    );
    assert_eq!(
        query(&s, "SELECT * FROM orders_s EMIT CHANGES;", OLA),
        (200, None),
        "a stream inside the prefix"
    );
    assert_eq!(
        query(
            &s,
            "SELECT o.id, c.name FROM orders_s o JOIN customers c ON o.id = c.id EMIT CHANGES;",
            OLA
        ),
        (200, None),
        "a join inside the prefix"
    );
    // The admin reads everything; bad SQL is still a 400, not a hidden 403.
    assert_eq!(
        query(&s, "SELECT * FROM payments WHERE id = 'p1';", ADMIN),
        (200, None)
    );
    assert_eq!(query(&s, "SELEKT 1;", OLA).0, 400);
    assert_eq!(query(&s, "SELECT * FROM payments;", None).0, 401);
}

#[test]
fn the_topic_list_holds_only_the_topics_a_user_may_describe() {
    let s = start_with_ola();
    let (status, list) = get(&s, "/v1/topics", OLA);
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"orders.eu"), "{names:?}");
    assert!(!names.contains(&"payments"), "{names:?}");
    assert!(!names.contains(&"refunds"), "{names:?}");
    let (_, all) = get(&s, "/v1/topics", ADMIN);
    assert!(all.to_string().contains("\"payments\""), "{all}");
    // Describe and consume of one topic were refused already.
    assert_eq!(get(&s, "/v1/topics/payments", OLA).0, 403);
    assert_eq!(
        get(&s, "/v1/topics/payments/partitions/0/records?offset=0", OLA).0,
        403
    );
}

#[test]
fn state_look_ups_need_read_on_the_stores_changelog_topic() {
    let s = start_with_ola();
    deploy_word_count(&s, "wc", "orders.eu");
    let lookup = "/v1/processors/wc/stores/counts/keys/fox";
    let (status, body) = get(&s, lookup, OLA);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wc.counts.changelog"),
        "{body}"
    );
    assert_ne!(get(&s, lookup, ADMIN).0, 403);
    admin_ok(
        &s,
        "/v1/acls",
        &json!({"user": "ola", "resource": "topic", "prefix": "wc.", "allow": "read"}),
    );
    let (status, body) = get(&s, lookup, OLA);
    assert!(status == 200 || status == 404, "{status} {body}");
}

/// Runs `weir serve` on `data_dir` expecting it to exit; its output.
fn serve_expecting_exit(data_dir: &std::path::Path, extra: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(["--http", &format!("127.0.0.1:{}", free_port())])
        .args(["--kafka", &format!("127.0.0.1:{}", free_port())])
        .args(extra)
        .env("WEIR_ADMIN_PASSWORD", ADMIN_PW)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("weir serve did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn users_tokens_and_acls_cannot_be_planted_without_auth() {
    let mut s = Server::start(&[]);
    let refused = |(status, body): (u16, Value)| {
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "auth_disabled", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--auth"),
            "{body}"
        );
    };
    refused(post(
        &s,
        "/v1/users",
        &json!({"name": "mallory", "password": "planted-pw-1", "role": "admin"}),
        None,
    ));
    refused(post(&s, "/v1/tokens", &json!({"user": "admin"}), None));
    refused(post(
        &s,
        "/v1/acls",
        &json!({"user": "admin", "resource": "topic", "prefix": "", "allow": "read"}),
        None,
    ));
    refused(send(
        s.http.delete(format!("{}/v1/users/admin", s.url)),
        None,
    ));
    refused(send(s.http.delete(format!("{}/v1/tokens/x", s.url)), None));
    refused(send(s.http.delete(format!("{}/v1/acls/1", s.url)), None));

    // The CLI says what is wrong and what to do.
    let o = s.cli(
        &["user", "create", "mallory", "--role", "admin"],
        Some("pw-1\n"),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("without --auth") && err.contains("weir serve --auth"),
        "{err}"
    );
    for args in [
        &["token", "create", "--for", "admin"][..],
        &[
            "acl",
            "add",
            "--user",
            "x",
            "--topic-prefix",
            "a",
            "--allow",
            "read",
        ][..],
    ] {
        let o = s.cli(args, None);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains("without --auth"), "{}", stderr(&o));
    }
    assert!(!s.data_dir.join("auth/auth.json").exists());

    // Turning --auth on later: only the admin from WEIR_ADMIN_PASSWORD exists.
    assert!(s.terminate());
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["serve", "--auth", "--data-dir"])
        .arg(&s.data_dir)
        .args(["--http", &format!("127.0.0.1:{port}")])
        .args(["--kafka", &format!("127.0.0.1:{}", free_port())])
        .env("WEIR_ADMIN_PASSWORD", ADMIN_PW)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.http.get(format!("{url}/health")).send().is_err() {
        assert!(Instant::now() < deadline, "weir --auth did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let planted = send(
        s.http.get(format!("{url}/v1/topics")),
        Some(("mallory", "planted-pw-1")),
    );
    let admin = send(s.http.get(format!("{url}/v1/users")), ADMIN);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(planted.0, 401);
    assert_eq!(admin.0, 200, "{}", admin.1);
    assert_eq!(admin.1["users"].as_array().unwrap().len(), 1, "{}", admin.1);
}

#[test]
fn an_unreadable_user_store_is_a_warning_without_auth_and_fatal_with_it() {
    let mut s = Server::start(&[]);
    s.create_topic(json!({"name": "t", "partitions": 1}));
    assert!(s.terminate());
    let file = s.data_dir.join("auth/auth.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let garbage = b"{\"version\": 1, \"users\": [tr";
    std::fs::write(&file, garbage).unwrap();

    // Without --auth: the node starts and serves; the file is left for the operator.
    s.start_again();
    assert_eq!(s.get("/v1/topics").0, 200);
    assert_eq!(s.describe("t")["name"], "t");
    let (status, body) = s.post(
        "/v1/users",
        &json!({"name": "x", "password": "pw-pw-1", "role": "admin"}),
    );
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("auth_disabled"))
    );
    assert!(s.terminate());
    assert_eq!(std::fs::read(&file).unwrap(), garbage);

    // With --auth: it refuses to start, naming the file (fail closed).
    let out = serve_expecting_exit(&s.data_dir, &["--auth"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&file.display().to_string()) && err.contains("corrupt"),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), garbage);
}

//! `weir serve --auth` through the real binary: the first start creating `admin` from
//! WEIR_ADMIN_PASSWORD (and refusing to start without one), credentials stored without the
//! password, HTTP Basic and bearer tokens (401, 403, revocation, rate-limited failures), the
//! CLI with a token and with --user/--password, Kafka SASL (PLAIN, SCRAM-SHA-256/512) with
//! confluent-kafka and kcat, and prefix ACLs enforced on both listeners.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::RequestBuilder;
use serde_json::{Value, json};

use crate::common::{BIN, Server, free_port, guest, run, stderr, stdout};

const ADMIN_PW: &str = "Adm1n-S3cret-pw";

fn start_auth(extra: &[&str]) -> Server {
    let mut args = vec!["--auth"];
    args.extend_from_slice(extra);
    Server::start_with_env(&args, &[("WEIR_ADMIN_PASSWORD", ADMIN_PW)])
}

/// Sends a request with Basic credentials; returns the status and the JSON body.
fn call(req: RequestBuilder, auth: Auth) -> (u16, Value) {
    let req = match auth {
        Auth::None => req,
        Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
        Auth::Bearer(t) => req.bearer_auth(t),
    };
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

const ADMIN: Auth = Auth::Basic("admin", ADMIN_PW);

fn get(s: &Server, path: &str, auth: Auth) -> (u16, Value) {
    call(s.http.get(format!("{}{path}", s.url)), auth)
}

fn post(s: &Server, path: &str, body: &Value, auth: Auth) -> (u16, Value) {
    call(s.http.post(format!("{}{path}", s.url)).json(body), auth)
}

fn delete(s: &Server, path: &str, auth: Auth) -> (u16, Value) {
    call(s.http.delete(format!("{}{path}", s.url)), auth)
}

fn create_user(s: &Server, name: &str, password: &str, role: &str) {
    let (status, body) = post(
        s,
        "/v1/users",
        &json!({"name": name, "password": password, "role": role}),
        ADMIN,
    );
    assert_eq!(status, 201, "{body}");
}

fn produce_body() -> Value {
    json!({"records": [{"key": "k", "value": "v"}]})
}

/// A processor upload (multipart) with credentials.
fn deploy(s: &Server, spec: &Value, auth: Auth) -> (u16, Value) {
    let boundary = "weir-auth-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"spec\"\r\n\r\n{spec}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"wasm\"; \
         filename=\"p.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&guest("uppercase"));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    call(
        s.http
            .post(format!("{}/v1/processors", s.url))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body),
        auth,
    )
}

#[test]
fn first_start_needs_an_admin_password_and_the_store_holds_no_password() {
    // --auth, no users, no WEIR_ADMIN_PASSWORD: refuses to start, saying why.
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--auth", "--data-dir"])
        .arg(tmp.path().join("data"))
        .args(["--http", &format!("127.0.0.1:{}", free_port())])
        .args(["--kafka", &format!("127.0.0.1:{}", free_port())])
        .env_remove("WEIR_ADMIN_PASSWORD")
        .env("RUST_LOG", "warn");
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("WEIR_ADMIN_PASSWORD"),
        "{}",
        stderr(&out)
    );

    let mut s = start_auth(&[]);
    assert_eq!(get(&s, "/v1/topics", ADMIN).0, 200);
    let who = get(&s, "/v1/whoami", ADMIN).1;
    assert_eq!(who, json!({"user": "admin", "role": "admin"}));
    create_user(&s, "rita", "rita-Pa55word", "reader");
    let stored = std::fs::read_to_string(s.data_dir.join("auth/auth.json")).unwrap();
    assert!(stored.contains("scram_sha256") && stored.contains("scram_sha512"));
    assert!(
        !stored.contains(ADMIN_PW),
        "plaintext admin password stored"
    );
    assert!(
        !stored.contains("rita-Pa55word"),
        "plaintext password stored"
    );

    // Later starts need no WEIR_ADMIN_PASSWORD (and a new one does not reset admin's).
    s.terminate();
    s.env = vec![("WEIR_ADMIN_PASSWORD".into(), "another-one".into())];
    s.start_again();
    assert_eq!(get(&s, "/v1/topics", ADMIN).0, 200);
    assert_eq!(
        get(&s, "/v1/topics", Auth::Basic("admin", "another-one")).0,
        401
    );
    assert_eq!(
        get(&s, "/v1/topics", Auth::Basic("rita", "rita-Pa55word")).0,
        200
    );
}

fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
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
fn http_needs_credentials_and_roles_decide() {
    let s = start_auth(&[]);
    // Open: health and metrics.
    assert_eq!(get(&s, "/health", Auth::None).0, 200);
    assert_eq!(get(&s, "/metrics", Auth::None).0, 200);
    // No credentials, wrong password, unknown user, garbage: 401 with a challenge.
    let r = s.http.get(format!("{}/v1/topics", s.url)).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains("Basic") && challenge.contains("Bearer"),
        "{challenge}"
    );
    assert_eq!(
        r.json::<Value>().unwrap()["error"]["code"],
        "unauthenticated"
    );
    assert_eq!(get(&s, "/v1/topics", Auth::Basic("admin", "nope")).0, 401);
    assert_eq!(
        get(&s, "/v1/topics", Auth::Basic("nobody", ADMIN_PW)).0,
        401
    );
    assert_eq!(get(&s, "/v1/topics", Auth::Bearer("weir_x_y")).0, 401);
    // Unknown routes do not answer 404 to strangers either.
    assert_eq!(get(&s, "/v1/nothing-here", Auth::None).0, 401);
    assert_eq!(get(&s, "/v1/nothing-here", ADMIN).0, 404);

    create_user(&s, "rita", "rita-pw-1", "reader");
    create_user(&s, "wally", "wally-pw-1", "writer");
    let rita = Auth::Basic("rita", "rita-pw-1");
    let wally = Auth::Basic("wally", "wally-pw-1");

    // Admin works: topics and a processor.
    let (status, body) = post(
        &s,
        "/v1/topics",
        &json!({"name": "in", "partitions": 1}),
        ADMIN,
    );
    assert_eq!(status, 201, "{body}");
    let spec = json!({"name": "up", "inputs": ["in"], "outputs": ["out"]});
    let (status, body) = deploy(&s, &spec, ADMIN);
    assert_eq!(status, 201, "{body}");

    // A reader lists, reads and describes, but does not deploy, create or produce.
    assert_eq!(get(&s, "/v1/topics", rita).0, 200);
    assert_eq!(get(&s, "/v1/processors/up", rita).0, 200);
    assert_eq!(
        get(&s, "/v1/topics/in/partitions/0/records?offset=0", rita).0,
        200
    );
    let spec2 = json!({"name": "up2", "inputs": ["in"], "outputs": ["out2"]});
    let (status, body) = deploy(&s, &spec2, rita);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(
        post(
            &s,
            "/v1/topics",
            &json!({"name": "x", "partitions": 1}),
            rita
        )
        .0,
        403
    );
    assert_eq!(
        post(&s, "/v1/topics/in/records", &produce_body(), rita).0,
        403
    );
    assert_eq!(delete(&s, "/v1/processors/up", rita).0, 403);
    assert_eq!(
        post(&s, "/v1/sql", &json!({"sql": "SHOW STREAMS;"}), rita).0,
        403
    );
    assert_eq!(get(&s, "/v1/users", rita).0, 403);
    assert_eq!(get(&s, "/v1/users/rita", rita).0, 200);
    assert_eq!(get(&s, "/v1/users/wally", rita).0, 403);

    // A writer produces, but does not administer.
    assert_eq!(
        post(&s, "/v1/topics/in/records", &produce_body(), wally).0,
        200
    );
    assert_eq!(delete(&s, "/v1/topics/in", wally).0, 403);
    let (status, _) = post(
        &s,
        "/v1/users",
        &json!({"name": "eve", "password": "x", "role": "admin"}),
        wally,
    );
    assert_eq!(status, 403);

    // A token works until it is revoked.
    let (status, created) = post(&s, "/v1/tokens", &json!({"name": "ci"}), wally);
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_string();
    assert_eq!(created["user"], "wally");
    let bearer = Auth::Bearer(&token);
    assert_eq!(
        post(&s, "/v1/topics/in/records", &produce_body(), bearer).0,
        200
    );
    assert_eq!(get(&s, "/v1/whoami", bearer).1["user"], "wally");
    // Others' tokens are not a writer's to create or revoke.
    assert_eq!(
        post(&s, "/v1/tokens", &json!({"user": "rita"}), wally).0,
        403
    );
    assert_eq!(delete(&s, "/v1/tokens/ci", rita).0, 404);
    let stored = std::fs::read_to_string(s.data_dir.join("auth/auth.json")).unwrap();
    let secret = token.rsplit('_').next().unwrap();
    assert!(!stored.contains(secret), "token secret stored");
    assert_eq!(delete(&s, "/v1/tokens/ci", wally).0, 204);
    assert_eq!(
        post(&s, "/v1/topics/in/records", &produce_body(), bearer).0,
        401
    );

    // Deleting a user ends its access.
    assert_eq!(delete(&s, "/v1/users/rita", ADMIN).0, 204);
    assert_eq!(get(&s, "/v1/topics", rita).0, 401);
}

#[test]
fn metrics_can_be_protected_and_failed_logins_are_rate_limited() {
    let s = start_auth(&["--auth-metrics", "--auth-max-failures", "3"]);
    assert_eq!(get(&s, "/health", Auth::None).0, 200);
    assert_eq!(get(&s, "/metrics", Auth::None).0, 401);
    assert_eq!(get(&s, "/metrics", ADMIN).0, 200);
    for _ in 0..3 {
        assert_eq!(get(&s, "/v1/topics", Auth::Basic("admin", "guess")).0, 401);
    }
    // Now even the right password is refused from this address for a while.
    let r = s
        .http
        .get(format!("{}/v1/topics", s.url))
        .basic_auth("admin", Some(ADMIN_PW))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

/// Runs the CLI with `env` (WEIR_URL set to the server).
fn cli(s: &Server, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("WEIR_URL", &s.url)
        .env_remove("WEIR_USER")
        .env_remove("WEIR_PASSWORD")
        .env_remove("WEIR_TOKEN")
        .envs(env.iter().copied());
    run(cmd, stdin)
}

#[test]
fn cli_with_user_and_password_and_with_a_token() {
    let s = start_auth(&[]);
    let o = cli(&s, &["topic", "list"], &[], None);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("authentication required"),
        "{}",
        stderr(&o)
    );

    let admin = ["--user", "admin", "--password", ADMIN_PW];
    let o = cli(
        &s,
        &[&admin[..], &["user", "create", "wally", "--role", "writer"]].concat(),
        &[],
        Some("wally-pw-9\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli(&s, &[&admin[..], &["user", "list"]].concat(), &[], None);
    assert!(
        stdout(&o).contains("wally") && stdout(&o).contains("writer"),
        "{}",
        stdout(&o)
    );
    let o = cli(
        &s,
        &[&admin[..], &["topic", "create", "t", "--partitions", "1"]].concat(),
        &[],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));

    // The writer gets a token through the environment's user and password.
    let wally_env = [("WEIR_USER", "wally"), ("WEIR_PASSWORD", "wally-pw-9")];
    let o = cli(&s, &["token", "create", "laptop"], &wally_env, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let token = stdout(&o).trim().to_string();
    assert!(token.starts_with("weir_"), "{token}");

    let o = cli(
        &s,
        &["produce", "t"],
        &[("WEIR_TOKEN", &token)],
        Some("a\nb\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli(&s, &["--token", &token, "topic", "list"], &[], None);
    assert!(
        o.status.success() && stdout(&o).contains('t'),
        "{}",
        stderr(&o)
    );
    let o = cli(
        &s,
        &["topic", "delete", "t"],
        &[("WEIR_TOKEN", &token)],
        None,
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("may not"), "{}", stderr(&o));

    let o = cli(&s, &["token", "list"], &wally_env, None);
    assert!(stdout(&o).contains("laptop"), "{}", stdout(&o));
    let o = cli(&s, &["token", "revoke", "laptop"], &wally_env, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli(&s, &["topic", "list"], &[("WEIR_TOKEN", &token)], None);
    assert!(!o.status.success());

    let o = cli(
        &s,
        &["--user", "wally", "--password", "wrong", "topic", "list"],
        &[],
        None,
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("authentication failed"),
        "{}",
        stderr(&o)
    );
}

// ---- Kafka ----

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/kafka")
        .join(name)
}

/// confluent-kafka over SASL_PLAINTEXT (tests/kafka/sasl_client.py); returns its summary.
pub(crate) fn confluent(
    kafka: &str,
    mech: &str,
    user: &str,
    password: &str,
    args: &[&str],
) -> Value {
    let out = Command::new("python3")
        .arg(script("sasl_client.py"))
        .args(["--bootstrap", kafka, "--mechanism", mech, "--user", user])
        .args(["--password", password])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python3 with confluent-kafka");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sasl_client.py failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("bad summary {text}: {e}"))
}

fn kcat_sasl(
    kafka: &str,
    mech: &str,
    user: &str,
    password: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut cmd = Command::new("kcat");
    cmd.args(["-b", kafka, "-X", "security.protocol=SASL_PLAINTEXT"])
        .args(["-X", &format!("sasl.mechanisms={mech}")])
        .args(["-X", &format!("sasl.username={user}")])
        .args(["-X", &format!("sasl.password={password}")])
        .args(args);
    run(cmd, stdin)
}

#[test]
fn kafka_admin_apis_need_admin_rights_on_the_topic_or_group() {
    let s = start_auth(&[]);
    let k = s.kafka.clone();
    create_user(&s, "wally", "wally-pw-1", "writer");
    create_user(&s, "ada", "ada-pw-1", "admin");
    let topic = json!({"name": "ledger", "partitions": 1});
    assert_eq!(post(&s, "/v1/topics", &topic, ADMIN).0, 201);
    let w = confluent(
        &k,
        "SCRAM-SHA-256",
        "wally",
        "wally-pw-1",
        &["produce", "ledger", "5"],
    );
    assert_eq!(w["delivered"], 5, "{w}");
    let c = confluent(
        &k,
        "SCRAM-SHA-256",
        "wally",
        "wally-pw-1",
        &["consume", "ledger", "5", "--group", "ledger-app"],
    );
    assert_eq!(c["consumed"], 5, "{c}");
    // A writer may not delete records, add partitions, alter configs or delete groups.
    let denied = confluent(
        &k,
        "SCRAM-SHA-256",
        "wally",
        "wally-pw-1",
        &["admin", "ledger", "3", "--group", "ledger-app"],
    );
    for (api, want) in [
        ("delete_records", "TOPIC_AUTHORIZATION_FAILED"),
        ("create_partitions", "TOPIC_AUTHORIZATION_FAILED"),
        ("alter_configs", "TOPIC_AUTHORIZATION_FAILED"),
        ("delete_group", "GROUP_AUTHORIZATION_FAILED"),
    ] {
        assert_eq!(denied["admin"][api], want, "{api}: {denied}");
    }
    let (_, d) = get(&s, "/v1/topics/ledger", ADMIN);
    assert_eq!(d["partitions"], 1, "{d}");
    assert_eq!(d["partition_offsets"][0]["start_offset"], 0, "{d}");
    // An admin may.
    let done = confluent(
        &k,
        "SCRAM-SHA-256",
        "ada",
        "ada-pw-1",
        &["admin", "ledger", "3", "--group", "ledger-app"],
    );
    for api in [
        "delete_records",
        "create_partitions",
        "alter_configs",
        "delete_group",
    ] {
        assert_eq!(done["admin"][api], Value::Null, "{api}: {done}");
    }
    let (_, d) = get(&s, "/v1/topics/ledger", ADMIN);
    assert_eq!(d["partitions"], 3, "{d}");
    assert_eq!(d["retention_ms"], 3_600_000, "{d}");
    assert_eq!(d["partition_offsets"][0]["start_offset"], 1, "{d}");
}

#[test]
fn kafka_clients_authenticate_with_sasl_and_roles_apply() {
    let s = start_auth(&[]);
    let k = s.kafka.clone();
    create_user(&s, "wally", "wally-pw-1", "writer");
    create_user(&s, "rita", "rita-pw-1", "reader");
    assert_eq!(
        post(
            &s,
            "/v1/topics",
            &json!({"name": "orders", "partitions": 2}),
            ADMIN
        )
        .0,
        201
    );

    // Without SASL the connection is closed: kcat cannot even list metadata.
    let mut cmd = Command::new("kcat");
    cmd.args(["-b", &k, "-L", "-m", "5"]);
    let o = run(cmd, None);
    assert!(!o.status.success(), "{}", stdout(&o));

    // confluent-kafka, SCRAM-SHA-256: the writer produces, the reader may not.
    let w = confluent(
        &k,
        "SCRAM-SHA-256",
        "wally",
        "wally-pw-1",
        &["produce", "orders", "50"],
    );
    assert_eq!(w["delivered"], 50, "{w}");
    let r = confluent(
        &k,
        "SCRAM-SHA-256",
        "rita",
        "rita-pw-1",
        &["produce", "orders", "3"],
    );
    assert_eq!(r["delivered"], 0, "{r}");
    assert!(
        r["errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e == "TOPIC_AUTHORIZATION_FAILED")
            && !r["errors"].as_array().unwrap().is_empty(),
        "{r}"
    );
    // The reader consumes with a group (SCRAM-SHA-512).
    let c = confluent(
        &k,
        "SCRAM-SHA-512",
        "rita",
        "rita-pw-1",
        &["consume", "orders", "50", "--group", "rita-app"],
    );
    assert_eq!(c["consumed"], 50, "{c}");
    // A wrong password fails authentication.
    let bad = confluent(
        &k,
        "SCRAM-SHA-256",
        "wally",
        "wrong",
        &["produce", "orders", "1"],
    );
    assert_eq!(bad["auth_failed"], true, "{bad}");
    assert_eq!(bad["delivered"], 0, "{bad}");

    // kcat with PLAIN: the writer produces, the reader consumes all, the reader's produce
    // is refused, a wrong password fails.
    let o = kcat_sasl(
        &k,
        "PLAIN",
        "wally",
        "wally-pw-1",
        &["-P", "-t", "orders", "-K", ":"],
        Some("a:1\nb:2\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = kcat_sasl(
        &k,
        "PLAIN",
        "rita",
        "rita-pw-1",
        &["-C", "-t", "orders", "-o", "beginning", "-e", "-q"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 52, "{}", stdout(&o));
    let o = kcat_sasl(
        &k,
        "PLAIN",
        "rita",
        "rita-pw-1",
        &["-P", "-t", "orders"],
        Some("x\n"),
    );
    let text = format!("{}{}", stdout(&o), stderr(&o)).to_lowercase();
    assert!(text.contains("authorization failed"), "{text}");
    let o = kcat_sasl(
        &k,
        "SCRAM-SHA-256",
        "rita",
        "wrong",
        &["-L", "-m", "5"],
        None,
    );
    assert!(!o.status.success());
    let text = stderr(&o).to_lowercase();
    assert!(text.contains("authentication"), "{text}");
}

/// Debian's kcat links librdkafka 2.0.2, whose SCRAM client-final repeats the client nonce
/// (fixed in librdkafka 2.6.1); the server accepts it as Kafka 3.x does.
#[test]
fn kcat_lists_metadata_with_scram_sha_256() {
    let s = start_auth(&[]);
    create_user(&s, "rita", "rita-pw-1", "reader");
    assert_eq!(
        post(
            &s,
            "/v1/topics",
            &json!({"name": "orders", "partitions": 1}),
            ADMIN
        )
        .0,
        201
    );
    let o = kcat_sasl(
        &s.kafka,
        "SCRAM-SHA-256",
        "rita",
        "rita-pw-1",
        &["-L", "-J"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"orders\""), "{}", stdout(&o));
}

#[test]
fn a_prefix_acl_limits_a_user_on_both_listeners() {
    let s = start_auth(&[]);
    let k = s.kafka.clone();
    create_user(&s, "ola", "ola-pw-1", "writer");
    for t in ["orders.eu", "payments"] {
        assert_eq!(
            post(
                &s,
                "/v1/topics",
                &json!({"name": t, "partitions": 1}),
                ADMIN
            )
            .0,
            201
        );
    }
    let o = cli(
        &s,
        &[
            "acl",
            "add",
            "--user",
            "ola",
            "--topic-prefix",
            "orders",
            "--allow",
            "write",
        ],
        &[("WEIR_USER", "admin"), ("WEIR_PASSWORD", ADMIN_PW)],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli(
        &s,
        &["acl", "list"],
        &[("WEIR_USER", "admin"), ("WEIR_PASSWORD", ADMIN_PW)],
        None,
    );
    assert!(
        stdout(&o).contains("orders") && stdout(&o).contains("ola"),
        "{}",
        stdout(&o)
    );
    let ola = Auth::Basic("ola", "ola-pw-1");

    // HTTP: writes inside the prefix only; reads need a read ACL now.
    assert_eq!(
        post(&s, "/v1/topics/orders.eu/records", &produce_body(), ola).0,
        200
    );
    let (status, body) = post(&s, "/v1/topics/payments/records", &produce_body(), ola);
    assert_eq!(status, 403, "{body}");
    assert_eq!(get(&s, "/v1/topics/orders.eu", ola).0, 200);
    assert_eq!(get(&s, "/v1/topics/payments", ola).0, 403);
    assert_eq!(
        get(
            &s,
            "/v1/topics/orders.eu/partitions/0/records?offset=0",
            ola
        )
        .0,
        403
    );

    // Kafka: the same.
    let ok = confluent(
        &k,
        "SCRAM-SHA-256",
        "ola",
        "ola-pw-1",
        &["produce", "orders.eu", "5"],
    );
    assert_eq!(ok["delivered"], 5, "{ok}");
    let no = confluent(
        &k,
        "SCRAM-SHA-256",
        "ola",
        "ola-pw-1",
        &["produce", "payments", "2"],
    );
    assert_eq!(no["delivered"], 0, "{no}");
    assert!(
        no["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "TOPIC_AUTHORIZATION_FAILED"),
        "{no}"
    );
    // Metadata lists only what the ACLs let the user describe.
    let o = kcat_sasl(&k, "PLAIN", "ola", "ola-pw-1", &["-L", "-J"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("orders.eu") && !stdout(&o).contains("payments"),
        "{}",
        stdout(&o)
    );

    // Removing the ACL lifts the limit.
    let id = get(&s, "/v1/acls?user=ola", ADMIN).1["acls"][0]["id"]
        .as_u64()
        .unwrap();
    assert_eq!(delete(&s, &format!("/v1/acls/{id}"), ADMIN).0, 204);
    assert_eq!(
        post(&s, "/v1/topics/payments/records", &produce_body(), ola).0,
        200
    );
}

#[test]
fn without_auth_nothing_asks_for_credentials() {
    let s = Server::start(&[]);
    assert_eq!(get(&s, "/v1/topics", Auth::None).0, 200);
    // Kafka clients without SASL still work (kcat lists metadata).
    let mut cmd = Command::new("kcat");
    cmd.args(["-b", &s.kafka, "-L", "-J"]);
    let o = run(cmd, None);
    assert!(o.status.success(), "{}", stderr(&o));
}

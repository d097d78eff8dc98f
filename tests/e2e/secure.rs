//! Authentication and TLS together, as an operator exposing Weir runs it (issue #12, section
//! 2): `--auth` with `--tls-cert/--tls-key`; confluent-kafka and kcat over `SASL_SSL` with
//! SCRAM-SHA-256 (a writer produces, a reader consumes, a reader that produces gets
//! TOPIC_AUTHORIZATION_FAILED, a wrong password fails), curl over HTTPS with the CA and
//! Basic credentials, and the CLI with `--ca-cert` and a token.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::common::{BIN, Server, run, stderr, stdout};
use crate::tls::Pki;

const ADMIN_PW: &str = "Adm1n-S3cret-pw";

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn admin_post(srv: &Server, path: &str, body: &Value) -> (u16, Value) {
    let r = srv
        .http
        .post(format!("{}{path}", srv.url))
        .basic_auth("admin", Some(ADMIN_PW))
        .json(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// confluent-kafka over SASL_SSL (tests/kafka/sasl_client.py --ca); returns its summary.
fn confluent(srv: &Server, ca: &Path, user: &str, password: &str, args: &[&str]) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/sasl_client.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .args(["--bootstrap", &srv.kafka, "--mechanism", "SCRAM-SHA-256"])
        .args(["--user", user, "--password", password, "--ca", &s(ca)])
        .args(args);
    let out = run(cmd, None);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "sasl_client.py failed: {text}\n{}",
        stderr(&out)
    );
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("bad summary {text}: {e}"))
}

fn kcat(
    srv: &Server,
    ca: &Path,
    user: &str,
    password: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
    let mut cmd = Command::new("kcat");
    cmd.args(["-b", &srv.kafka, "-X", "security.protocol=SASL_SSL"])
        .args(["-X", "sasl.mechanisms=SCRAM-SHA-256"])
        .args(["-X", &format!("sasl.username={user}")])
        .args(["-X", &format!("sasl.password={password}")])
        .args(["-X", &format!("ssl.ca.location={}", s(ca))])
        .args(args);
    run(cmd, stdin)
}

#[test]
fn sasl_ssl_with_scram_over_tls_for_confluent_kcat_curl_and_the_cli() {
    let pki = Pki::new();
    let args = [
        "--auth",
        "--tls-cert",
        &s(&pki.cert),
        "--tls-key",
        &s(&pki.key),
    ];
    let srv = Server::start_https_with_env(
        &args,
        &[("WEIR_ADMIN_PASSWORD", ADMIN_PW)],
        pki.client(false),
    );
    for (name, role) in [("wally", "writer"), ("rita", "reader")] {
        let (st, body) = admin_post(
            &srv,
            "/v1/users",
            &json!({"name": name, "password": format!("{name}-pw-1"), "role": role}),
        );
        assert_eq!(st, 201, "{body}");
    }
    let (st, body) = admin_post(
        &srv,
        "/v1/topics",
        &json!({"name": "orders", "partitions": 2}),
    );
    assert_eq!(st, 201, "{body}");

    // confluent-kafka: the writer produces, the reader may not, a wrong password fails.
    let w = confluent(
        &srv,
        &pki.ca,
        "wally",
        "wally-pw-1",
        &["produce", "orders", "5"],
    );
    assert_eq!(w["delivered"], json!(5), "{w}");
    let r = confluent(
        &srv,
        &pki.ca,
        "rita",
        "rita-pw-1",
        &["produce", "orders", "1"],
    );
    assert_eq!(r["delivered"], json!(0), "{r}");
    assert!(
        r["errors"]
            .to_string()
            .contains("TOPIC_AUTHORIZATION_FAILED"),
        "{r}"
    );
    let bad = confluent(
        &srv,
        &pki.ca,
        "rita",
        "wrong-password",
        &["produce", "orders", "1"],
    );
    assert_eq!(bad["delivered"], json!(0), "{bad}");
    assert_eq!(bad["auth_failed"], json!(true), "{bad}");
    let c = confluent(
        &srv,
        &pki.ca,
        "rita",
        "rita-pw-1",
        &["consume", "orders", "5", "--group", "rita-g"],
    );
    assert_eq!(c["consumed"], json!(5), "{c}");

    // kcat (Debian's librdkafka) over SASL_SSL: produce as the writer, consume as the reader.
    let o = kcat(
        &srv,
        &pki.ca,
        "wally",
        "wally-pw-1",
        &["-P", "-t", "orders", "-p", "0"],
        Some("from-kcat\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = kcat(
        &srv,
        &pki.ca,
        "rita",
        "rita-pw-1",
        &[
            "-C",
            "-t",
            "orders",
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("from-kcat"), "{}", stdout(&o));

    // curl over HTTPS with the CA: credentials required, Basic works.
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "20",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ])
    .args(["--cacert", &s(&pki.ca), &format!("{}/v1/topics", srv.url)]);
    let o = run(cmd, None);
    assert_eq!(stdout(&o), "401", "{}", stderr(&o));
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-f", "--max-time", "20", "--cacert", &s(&pki.ca)])
        .args(["-u", "rita:rita-pw-1", &format!("{}/v1/topics", srv.url)]);
    let o = run(cmd, None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("orders"), "{}", stdout(&o));

    // The CLI over HTTPS with --ca-cert and a token.
    let mut cmd = Command::new(BIN);
    cmd.args([
        "token",
        "create",
        "ci",
        "--url",
        &srv.url,
        "--ca-cert",
        &s(&pki.ca),
    ])
    .env("WEIR_USER", "admin")
    .env("WEIR_PASSWORD", ADMIN_PW);
    let o = run(cmd, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let token = stdout(&o).trim().to_string();
    assert!(!token.is_empty());
    let mut cmd = Command::new(BIN);
    cmd.args(["topic", "list", "--url", &srv.url, "--ca-cert", &s(&pki.ca)])
        .env("WEIR_TOKEN", &token);
    let o = run(cmd, None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("orders"), "{}", stdout(&o));
}

//! TLS on both listeners with real clients (issue #12, section 2): curl over HTTPS with the
//! CA and plain HTTP refused on that port, kcat and confluent-kafka producing and consuming
//! over Kafka `SSL`, the CLI with `--ca-cert`, and mTLS (`--tls-client-ca`): without a
//! client certificate the handshake fails, with one signed by the CA it works. The
//! certificates come from the workspace's one test PKI (broker/src/net/test_pki.rs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::{BIN, Server, run, stderr, stdout};
use crate::test_pki::TestPki;

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate (CN
/// `alice`), as PEM files in a temporary directory.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let files = TestPki::generate().write(dir.path());
        Pki {
            ca: files.ca,
            cert: files.cert,
            key: files.key,
            client_cert: files.client_cert,
            client_key: files.client_key,
            _dir: dir,
        }
    }

    /// An HTTPS client trusting the CA, presenting the client certificate if `mtls`.
    pub fn client(&self, mtls: bool) -> reqwest::blocking::Client {
        weir_broker::net::tls::install_default_provider();
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.ca).unwrap()).unwrap();
        let mut b = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .add_root_certificate(ca);
        if mtls {
            let mut pem = std::fs::read(&self.client_cert).unwrap();
            pem.extend(std::fs::read(&self.client_key).unwrap());
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    }

    fn server_args(&self, mtls: bool) -> Vec<String> {
        let mut a = vec![
            "--tls-cert".to_string(),
            s(&self.cert),
            "--tls-key".to_string(),
            s(&self.key),
        ];
        if mtls {
            a.extend(["--tls-client-ca".to_string(), s(&self.ca)]);
        }
        a
    }
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn curl(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-f", "--max-time", "20"]).args(args);
    run(cmd, None)
}

fn kcat(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new("kcat");
    cmd.args(args);
    run(cmd, stdin)
}

fn python_tls(args: &[&str]) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/tls_roundtrip.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).args(args);
    let out = run(cmd, None);
    let text = stdout(&out);
    let summary: serde_json::Value =
        serde_json::from_str(text.lines().last().unwrap_or_default()).unwrap_or_default();
    assert!(
        out.status.success() && summary["ok"] == json!(true),
        "tls_roundtrip.py failed: {text}\n{}",
        stderr(&out)
    );
    summary
}

fn start(pki: &Pki, mtls: bool) -> Server {
    let args = pki.server_args(mtls);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_https(&args, pki.client(mtls))
}

#[test]
fn https_and_kafka_ssl_serve_curl_kcat_confluent_and_the_cli() {
    let pki = Pki::new();
    let server = start(&pki, false);
    let ca = s(&pki.ca);

    // curl over HTTPS trusting the CA; plain HTTP on the same port fails.
    let out = curl(&["--cacert", &ca, &format!("{}/health", server.url)]);
    assert!(out.status.success(), "curl https: {}", stderr(&out));
    let plain = server.url.replace("https://", "http://");
    let out = curl(&[&format!("{plain}/health")]);
    assert!(
        !out.status.success(),
        "plain HTTP answered: {}",
        stdout(&out)
    );
    // Without the CA the certificate is not trusted.
    let out = curl(&[&format!("{}/health", server.url)]);
    assert!(!out.status.success());

    // kcat over SSL: produce, then consume everything back.
    server.create_topic(json!({"name": "tls-kcat", "partitions": 1}));
    let ssl = ["-X", "security.protocol=SSL", "-X"];
    let ca_loc = format!("ssl.ca.location={ca}");
    let input: String = (0..50).map(|i| format!("v{i}\n")).collect();
    let mut args = vec!["-b", &server.kafka, "-P", "-t", "tls-kcat"];
    args.extend(ssl);
    args.push(&ca_loc);
    let out = kcat(&args, Some(&input));
    assert!(out.status.success(), "kcat produce: {}", stderr(&out));
    let mut args = vec!["-b", &server.kafka, "-C", "-t", "tls-kcat", "-e", "-q"];
    args.extend(ssl);
    args.push(&ca_loc);
    let out = kcat(&args, None);
    assert!(out.status.success(), "kcat consume: {}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 50);

    // confluent-kafka over SSL.
    server.create_topic(json!({"name": "tls-py", "partitions": 1}));
    let summary = python_tls(&[
        "--bootstrap",
        &server.kafka,
        "--topic",
        "tls-py",
        "--ca",
        &ca,
        "--num",
        "2000",
    ]);
    assert_eq!(summary["consumed"], json!(2000));

    // The CLI trusts the server with --ca-cert (env WEIR_CA_CERT), and not without.
    let mut cmd = Command::new(BIN);
    cmd.args(["--url", &server.url, "--ca-cert", &ca, "topic", "list"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "weir --ca-cert: {}", stderr(&out));
    assert!(stdout(&out).contains("tls-py"), "{}", stdout(&out));
    let mut cmd = Command::new(BIN);
    cmd.args(["--url", &server.url, "topic", "list"]);
    cmd.env("WEIR_CA_CERT", &ca);
    assert!(run(cmd, None).status.success());
    let mut cmd = Command::new(BIN);
    cmd.args(["--url", &server.url, "topic", "list"]);
    cmd.env_remove("WEIR_CA_CERT");
    assert!(!run(cmd, None).status.success());
}

#[test]
fn mtls_refuses_clients_without_a_certificate_from_the_ca() {
    let pki = Pki::new();
    let server = start(&pki, true);
    let ca = s(&pki.ca);
    let (cert, key) = (s(&pki.client_cert), s(&pki.client_key));
    let health = format!("{}/health", server.url);

    let out = curl(&["--cacert", &ca, &health]);
    assert!(!out.status.success(), "no client cert accepted");
    let out = curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, &health]);
    assert!(out.status.success(), "curl mTLS: {}", stderr(&out));

    let base = [
        "-b",
        server.kafka.as_str(),
        "-L",
        "-m",
        "5",
        "-X",
        "security.protocol=SSL",
    ];
    let ca_loc = format!("ssl.ca.location={ca}");
    let mut args = base.to_vec();
    args.extend(["-X", &ca_loc]);
    let out = kcat(&args, None);
    assert!(
        !out.status.success(),
        "kcat without a client cert got metadata"
    );
    let cert_loc = format!("ssl.certificate.location={cert}");
    let key_loc = format!("ssl.key.location={key}");
    args.extend(["-X", &cert_loc, "-X", &key_loc]);
    let out = kcat(&args, None);
    assert!(out.status.success(), "kcat mTLS: {}", stderr(&out));

    server.create_topic(json!({"name": "mtls-py", "partitions": 1}));
    python_tls(&[
        "--bootstrap",
        &server.kafka,
        "--topic",
        "mtls-py",
        "--ca",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--num",
        "200",
    ]);
}

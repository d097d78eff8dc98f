//! Harness: start/stop/kill the `weir` binary, an HTTP client, and a CLI runner.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_weir");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `weir serve` with its own data directory.
pub struct Server {
    child: Option<Child>,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub url: String,
    /// `host:port` of the Kafka listener.
    pub kafka: String,
    extra: Vec<String>,
    /// Open-file limit (soft and hard) the server runs under; `None`: this process's.
    nofile: Option<u64>,
    /// Environment variables given to the binary.
    pub env: Vec<(String, String)>,
    pub http: reqwest::blocking::Client,
    /// `http` or `https` (the server was given `--tls-cert`).
    scheme: &'static str,
}

fn default_client() -> reqwest::blocking::Client {
    // reqwest's rustls needs a process-wide crypto provider (the binary installs ring).
    weir_broker::net::tls::install_default_provider();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with_nofile(None, extra)
    }

    /// Starts the binary on an existing data directory (which the test keeps).
    pub fn start_on(data_dir: &Path, extra: &[&str]) -> Server {
        weir_broker::net::tls::install_default_provider();
        let mut s = Server {
            child: None,
            data_dir: data_dir.to_path_buf(),
            _tmp: None,
            url: String::new(),
            kafka: String::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            nofile: None,
            env: Vec::new(),
            http: default_client(),
            scheme: "http",
        };
        s.spawn();
        s
    }

    /// Starts the binary with `extra` flags and `env` variables.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_with(extra, env, "http", default_client(), None)
    }

    /// [`Server::start`] under an open-file limit of `nofile` (soft and hard, as `prlimit`
    /// would set them), or this process's limit when `None`.
    pub fn start_with_nofile(nofile: Option<u64>, extra: &[&str]) -> Server {
        Self::start_with(extra, &[], "http", default_client(), nofile)
    }

    /// A server serving HTTPS (`extra` holds the TLS flags); `http` must trust its
    /// certificate (and present a client certificate under `--tls-client-ca`).
    pub fn start_https(extra: &[&str], http: reqwest::blocking::Client) -> Server {
        Self::start_with(extra, &[], "https", http, None)
    }

    /// A server serving HTTPS with `env` variables (e.g. `WEIR_ADMIN_PASSWORD`).
    pub fn start_https_with_env(
        extra: &[&str],
        env: &[(&str, &str)],
        http: reqwest::blocking::Client,
    ) -> Server {
        Self::start_with(extra, env, "https", http, None)
    }

    fn start_with(
        extra: &[&str],
        env: &[(&str, &str)],
        scheme: &'static str,
        http: reqwest::blocking::Client,
        nofile: Option<u64>,
    ) -> Server {
        // reqwest's rustls needs a process-wide crypto provider (the binary installs ring).
        weir_broker::net::tls::install_default_provider();
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let mut s = Server {
            child: None,
            data_dir,
            _tmp: Some(tmp),
            url: String::new(),
            kafka: String::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            nofile,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            http,
            scheme,
        };
        s.spawn();
        s
    }

    /// Starts the binary on free ports. A port picked free can be taken by another test
    /// before the server binds it (the server then exits at once): that start is retried on
    /// new ports, a few times.
    fn spawn(&mut self) {
        let mut last = None;
        for _ in 0..4 {
            match self.spawn_once() {
                Ok(()) => return,
                Err(status) => last = Some(status),
            }
        }
        panic!("weir exited during startup: {last:?}");
    }

    fn spawn_once(&mut self) -> Result<(), std::process::ExitStatus> {
        let port = free_port();
        self.url = format!("{}://127.0.0.1:{port}", self.scheme);
        let mut extra = self.extra.clone();
        match extra.iter().position(|a| a == "--kafka") {
            Some(i) => self.kafka = extra.get(i + 1).cloned().unwrap_or_default(),
            None => {
                self.kafka = format!("127.0.0.1:{}", free_port());
                extra.extend(["--kafka".to_string(), self.kafka.clone()]);
            }
        }
        let mut cmd = Command::new(BIN);
        if let Some(limit) = self.nofile {
            use std::os::unix::process::CommandExt;
            let rlimit = rustix::process::Rlimit {
                current: Some(limit),
                maximum: Some(limit),
            };
            // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
            unsafe {
                cmd.pre_exec(move || {
                    rustix::process::setrlimit(rustix::process::Resource::Nofile, rlimit)
                        .map_err(std::io::Error::from)
                });
            }
        }
        let child = cmd
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--http")
            .arg(format!("127.0.0.1:{port}"))
            .args(&extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start weir");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(format!("{}/health", self.url)).send()
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(status);
            }
            assert!(Instant::now() < deadline, "weir did not become healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// The server's process id (while it runs).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// SIGSTOP: the process freezes (sockets stay open, nothing answers) until [`resume`].
    ///
    /// [`resume`]: Server::resume
    pub fn pause(&self) {
        let pid = self.pid().to_string();
        assert!(
            Command::new("kill")
                .args(["-STOP", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// SIGCONT after [`pause`](Server::pause).
    pub fn resume(&self) {
        let pid = self.pid().to_string();
        assert!(
            Command::new("kill")
                .args(["-CONT", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited with status 0.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let pid = c.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                c.kill().unwrap();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the binary again after [`Server::terminate`] (same data directory).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        self.spawn();
    }

    /// Starts the binary again on the same data directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.url)).send().unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// `GET path`: the status, the answer's `x-weir-*` headers and its JSON body; `None`
    /// when the server cannot be reached.
    pub fn get_with_headers(
        &self,
        path: &str,
    ) -> Option<(u16, std::collections::BTreeMap<String, String>, Value)> {
        let r = self.http.get(format!("{}{path}", self.url)).send().ok()?;
        let status = r.status().as_u16();
        let headers = r
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-weir-"))
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect();
        Some((status, headers, r.json().unwrap_or(Value::Null)))
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn post_raw(&self, path: &str, body: impl Into<reqwest::blocking::Body>) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn delete(&self, path: &str) -> u16 {
        self.http
            .delete(format!("{}{path}", self.url))
            .send()
            .unwrap()
            .status()
            .as_u16()
    }

    pub fn create_topic(&self, spec: Value) {
        let (status, body) = self.post("/v1/topics", &spec);
        assert_eq!(status, 201, "create topic {spec}: {body}");
    }

    /// Produces `values` (with optional keys) and returns the `offsets` array.
    pub fn produce(&self, topic: &str, records: Vec<Value>) -> Vec<(i64, i64)> {
        let (status, body) = self.post(
            &format!("/v1/topics/{topic}/records"),
            &json!({ "records": records }),
        );
        assert_eq!(status, 200, "produce: {body}");
        body["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["partition"].as_i64().unwrap(),
                    o["offset"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    /// Every record of a partition from `offset` to the end, paging with next_offset.
    pub fn read_all(&self, topic: &str, partition: i64, mut offset: i64) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let (status, body) = self.get(&format!(
                "/v1/topics/{topic}/partitions/{partition}/records?offset={offset}&max=5000"
            ));
            assert_eq!(status, 200, "read: {body}");
            let records = body["records"].as_array().unwrap().clone();
            let next = body["next_offset"].as_i64().unwrap();
            if records.is_empty() {
                return out;
            }
            out.extend(records);
            offset = next;
        }
    }

    pub fn describe(&self, topic: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/topics/{topic}"));
        assert_eq!(status, 200, "describe: {body}");
        body
    }

    /// Runs the CLI against this server.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        cli_at(&self.url, args, stdin)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn cli_at(url: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("WEIR_URL", url);
    run(cmd, stdin)
}

/// Runs `cmd` to completion, feeding it `stdin` (or nothing), capturing stdout and stderr.
pub fn run(mut cmd: Command, stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let Some(input) = stdin {
        let mut s = child.stdin.take().unwrap();
        s.write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `weir serve` with `args` expecting it to fail at startup (within 60 s); returns its
/// output.
pub fn serve_expecting_failure(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("weir serve {args:?} kept running; expected it to refuse to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Copies a directory tree (a data directory fixture) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// The bytes of a guest component built by `scripts/build-guests.sh` into
/// `target/guests/<name>.wasm`; panics saying how to build it when it is missing.
pub fn guest(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/guests")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "guest component {} is missing ({e}): run scripts/build-guests.sh first",
            path.display()
        )
    })
}

impl Server {
    /// A multipart processor upload (`POST /v1/processors` or `PUT /v1/processors/{name}`).
    pub fn upload(
        &self,
        method: reqwest::Method,
        path: &str,
        spec: &Value,
        wasm: Vec<u8>,
    ) -> (u16, Value) {
        // Encoded here (not with reqwest's streaming multipart) so the request has a
        // Content-Length and goes out in one piece, as curl sends it.
        let boundary = "weir-e2e-boundary-7d3f";
        let mut body = Vec::with_capacity(wasm.len() + 512);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"spec\"\r\n\r\n{spec}\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"wasm\"; \
                 filename=\"processor.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&wasm);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// Deploys a processor, asserting 201; returns its description.
    pub fn deploy(&self, spec: &Value, wasm: Vec<u8>) -> Value {
        let (status, body) = self.upload(reqwest::Method::POST, "/v1/processors", spec, wasm);
        assert_eq!(status, 201, "deploy {spec}: {body}");
        body
    }

    /// `GET /v1/processors/{name}`, asserting 200.
    pub fn processor(&self, name: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/processors/{name}"));
        assert_eq!(status, 200, "describe processor {name}: {body}");
        body
    }

    /// Latest value per key over every partition of `topic` (string keys and values).
    pub fn latest_by_key(&self, topic: &str) -> std::collections::BTreeMap<String, String> {
        let partitions = self.describe(topic)["partitions"].as_i64().unwrap();
        let mut out = std::collections::BTreeMap::new();
        for p in 0..partitions {
            for r in self.read_all(topic, p, 0) {
                if let (Some(k), Some(v)) = (r["key"].as_str(), r["value"].as_str()) {
                    out.insert(k.to_string(), v.to_string());
                }
            }
        }
        out
    }
}

/// A confluent-kafka consumer-group member (`tests/kafka/group_member.py`) that read
/// `records` records of `topic`, committed `commit_at` on each partition it was assigned, and
/// stays in its group until dropped (then it leaves the group and exits).
pub struct GroupMember {
    child: Option<Child>,
    /// Kept open so the member's last line has somewhere to go.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
    /// The script's "ready" line: `assigned` partitions and `committed` offsets.
    pub ready: Value,
}

impl GroupMember {
    pub fn join(
        bootstrap: &str,
        topic: &str,
        group: &str,
        client_id: &str,
        records: usize,
        commit_at: i64,
    ) -> GroupMember {
        use std::io::BufRead;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/group_member.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--bootstrap", bootstrap, "--topic", topic, "--group", group])
            .args(["--client-id", client_id])
            .args(["--records", &records.to_string()])
            .args(["--commit-at", &commit_at.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with confluent-kafka (scripts/test.sh installs it)");
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
        stdout
            .read_line(&mut line)
            .expect("the member's first line");
        let ready: Value = serde_json::from_str(line.trim()).unwrap_or(Value::Null);
        if ready["phase"] != json!("ready") {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the group member did not get ready: {line}");
        }
        GroupMember {
            child: Some(child),
            _stdout: stdout,
            ready,
        }
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A line (or EOF) on stdin: it leaves the group and exits.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// Produces one record of arbitrary bytes with confluent-kafka
/// (`tests/kafka/produce_bytes.py`; key and value in hex, key `-` for none); returns its
/// `(partition, offset)`.
pub fn produce_bytes(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    key_hex: &str,
    value_hex: &str,
) -> (i64, i64) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/produce_bytes.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--bootstrap", bootstrap, "--topic", topic])
        .args(["--partition", &partition.to_string()])
        .args(["--key-hex", key_hex, "--value-hex", value_hex])
        .stdin(Stdio::null())
        .output()
        .expect("python3 with confluent-kafka (scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or(Value::Null);
    assert!(
        out.status.success() && summary["ok"] == json!(true),
        "produce_bytes.py failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        summary["partition"].as_i64().unwrap_or(-1),
        summary["offset"].as_i64().unwrap_or(-1),
    )
}

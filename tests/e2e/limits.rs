//! Server limits on processors, through the real binary (issue #12, findings 4 and 6):
//! specs over the server's maxima are refused naming the limit; a guest spinning under a
//! large (allowed) CPU limit is stopped by pause, delete and SIGTERM, does not wedge a
//! restart nor the control plane of other processors; deploys that do not fit the node's
//! instance pool or Wasm memory budget are refused at once with the reason; accepted
//! deploys answer at once and show `starting` until their tasks run.
//!
//! Liveness bounds are generous (a loaded 2-core machine); nothing asserts performance.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Server, eventually, guest};

const DEADLINE: Duration = Duration::from_secs(60);

/// A day: the spinning guest is never stopped by its own CPU limit in these tests.
const DAY_MS: u64 = 86_400_000;

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// utime + stime of a process, in clock ticks (fields 14 and 15 of `/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// CPU ticks the server burns over `window`.
fn cpu_over(s: &Server, window: Duration) -> u64 {
    let pid = s.pid();
    let before = cpu_ticks(pid);
    std::thread::sleep(window);
    cpu_ticks(pid) - before
}

/// Deploys `spec` with the uppercase guest (`POST /v1/processors`, or with `PUT` a redeploy
/// of `/v1/processors/{name}`), asserts it is refused with `status` and `code`, and returns
/// the error message.
fn assert_refused(
    s: &Server,
    method: reqwest::Method,
    spec: &Value,
    status: u16,
    code: &str,
) -> String {
    let path = if method == reqwest::Method::PUT {
        format!("/v1/processors/{}", spec["name"].as_str().unwrap())
    } else {
        "/v1/processors".to_string()
    };
    let (got, body) = s.upload(method, &path, spec, guest("uppercase"));
    assert_eq!((got, error_code(&body)), (status, code), "{body}");
    error_message(&body).to_string()
}

fn spin_spec(name: &str, input: &str) -> Value {
    json!({"name": name, "inputs": [input], "outputs": [format!("{name}-out")],
           "limits": {"cpu_ms_per_call": DAY_MS}})
}

/// The server with a maximum that allows a day per call, and a topic `in` of
/// `partitions` partitions with a record in each.
fn spinning_server(partitions: i64) -> Server {
    let s = Server::start(&["--max-cpu-ms-per-call", &DAY_MS.to_string()]);
    s.create_topic(json!({"name": "in", "partitions": partitions}));
    let records = (0..partitions)
        .map(|p| json!({"value": "x", "partition": p}))
        .collect();
    s.produce("in", records);
    s
}

/// Waits until the server burns CPU: the guest spins (its task is `running` and the
/// process's CPU time grows); returns the ticks burnt over 3 s.
fn wait_spinning(s: &Server, name: &str) -> u64 {
    let ok = eventually(DEADLINE, || {
        let d = s.processor(name);
        d["status"] == "running"
    });
    assert!(ok, "{name} never ran: {}", s.processor(name));
    std::thread::sleep(Duration::from_millis(500));
    let spinning = cpu_over(s, Duration::from_secs(3));
    // At least a tenth of a core (100 ticks/s on Linux): the guest is spinning.
    assert!(
        spinning >= 30,
        "the guest does not seem to spin: {spinning} ticks in 3 s"
    );
    spinning
}

#[test]
fn specs_over_the_server_maxima_are_refused_naming_the_limit() {
    let s = Server::start(&["--max-task-memory-bytes", "134217728"]);
    s.create_topic(json!({"name": "in", "partitions": 1}));
    let over = [
        (
            json!({"cpu_ms_per_call": 1_000_000_000_000u64}),
            "--max-cpu-ms-per-call",
        ),
        (
            json!({"memory_bytes": 4u64 << 30}),
            "--max-task-memory-bytes",
        ),
        (
            json!({"memory_bytes": 256u64 << 20}),
            "--max-task-memory-bytes",
        ),
    ];
    for (limits, flag) in &over {
        let spec = json!({"name": "p", "inputs": ["in"], "outputs": ["out"], "limits": limits});
        let message = assert_refused(&s, reqwest::Method::POST, &spec, 400, "limit_exceeded");
        assert!(message.contains(flag), "{message}");
    }
    // Nothing was created.
    assert_eq!(s.get("/v1/processors/p").0, 404);
    assert_eq!(s.get("/v1/topics/out").0, 404);

    // Within the maxima it deploys; a redeploy over them is refused and changes nothing.
    let ok = json!({"name": "p", "inputs": ["in"], "outputs": ["out"],
                    "limits": {"memory_bytes": 128u64 << 20, "cpu_ms_per_call": 30_000}});
    s.deploy(&ok, guest("uppercase"));
    let (spec, _) = &over[0];
    let spec = json!({"name": "p", "inputs": ["in"], "outputs": ["out"], "limits": spec});
    assert_refused(&s, reqwest::Method::PUT, &spec, 400, "limit_exceeded");
    assert_eq!(s.processor("p")["version"], 1);
}

#[test]
fn a_spinning_guest_is_stopped_by_pause_and_delete_without_blocking_other_processors() {
    let s = spinning_server(2);
    s.deploy(&spin_spec("spin", "in"), guest("hostile-loop"));
    let spinning = wait_spinning(&s, "spin");

    // Pause answers, and the cores are free again.
    let started = Instant::now();
    let (status, body) = s.post("/v1/processors/spin/pause", &json!({}));
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("paused")),
        "{body}"
    );
    eprintln!("pause took {:?}", started.elapsed());
    std::thread::sleep(Duration::from_secs(1));
    let paused = cpu_over(&s, Duration::from_secs(3));
    eprintln!("CPU ticks over 3 s: {spinning} spinning, {paused} paused");
    assert!(
        paused * 3 < spinning && paused < 60,
        "still burning CPU after pause: {paused} ticks in 3 s (spinning: {spinning})"
    );

    // Resume: it spins again (the interrupted record is processed again).
    let (status, body) = s.post("/v1/processors/spin/resume", &json!({}));
    assert_eq!(status, 200, "{body}");
    wait_spinning(&s, "spin");

    // A delete of the spinning processor and a deploy of another one at the same time:
    // both answer.
    s.create_topic(json!({"name": "other", "partitions": 1}));
    let deleter = {
        let http = s.http.clone();
        let url = format!("{}/v1/processors/spin", s.url);
        std::thread::spawn(move || {
            let started = Instant::now();
            let status = http.delete(url).send().unwrap().status().as_u16();
            (status, started.elapsed())
        })
    };
    let started = Instant::now();
    s.deploy(
        &json!({"name": "up", "inputs": ["other"], "outputs": ["other-out"]}),
        guest("uppercase"),
    );
    eprintln!("deploy beside the delete took {:?}", started.elapsed());
    let (status, took) = deleter.join().unwrap();
    eprintln!("delete of the spinning processor took {took:?}");
    assert_eq!(status, 204);
    assert!(took < Duration::from_secs(30), "delete took {took:?}");
    assert_eq!(s.get("/v1/processors/spin").0, 404);

    // The other processor works; the CPU is free.
    s.produce("other", vec![json!({"value": "hi"})]);
    assert!(eventually(DEADLINE, || s.read_all("other-out", 0, 0).len() == 1));
    let after = cpu_over(&s, Duration::from_secs(3));
    assert!(
        after < 60,
        "still burning CPU after delete: {after} ticks in 3 s"
    );
}

#[test]
fn sigterm_stops_spinning_guests_and_the_restart_is_not_wedged() {
    let mut s = spinning_server(2);
    s.deploy(&spin_spec("spin", "in"), guest("hostile-loop"));
    wait_spinning(&s, "spin");

    let started = Instant::now();
    assert!(s.terminate(), "the server did not exit cleanly on SIGTERM");
    let took = started.elapsed();
    eprintln!("SIGTERM to exit with guests spinning: {took:?}");
    assert!(took < Duration::from_secs(10), "exit took {took:?}");

    // The processor spins again after the restart, but the node serves and can delete it.
    s.start_again();
    assert_eq!(s.get("/health").0, 200);
    wait_spinning(&s, "spin");
    let started = Instant::now();
    assert_eq!(s.delete("/v1/processors/spin"), 204);
    eprintln!("delete after the restart took {:?}", started.elapsed());
    assert_eq!(s.get("/v1/processors").1["processors"], json!([]));
    assert!(s.terminate());
}

#[test]
fn deploys_beyond_the_node_capacity_are_refused_at_once_with_the_reason() {
    let s = Server::start(&[
        "--wasm-instance-pool",
        "64",
        "--max-task-memory-bytes",
        "134217728",
        "--wasm-memory-budget-bytes",
        "536870912",
    ]);
    s.create_topic(json!({"name": "wide", "partitions": 1000}));
    s.create_topic(json!({"name": "narrow", "partitions": 4}));

    // 1,000 tasks for 64 instance slots.
    let started = Instant::now();
    let message = assert_refused(
        &s,
        reqwest::Method::POST,
        &json!({"name": "wide", "inputs": ["wide"], "outputs": ["wide-out"],
                "limits": {"memory_bytes": 1u64 << 20}}),
        507,
        "insufficient_resources",
    );
    let took = started.elapsed();
    eprintln!("refusing the 1,000-task deploy took {took:?}");
    assert!(message.contains("--wasm-instance-pool"), "{message}");
    assert!(took < Duration::from_secs(30), "refusal took {took:?}");
    assert_eq!(s.get("/v1/processors/wide").0, 404);
    assert_eq!(s.get("/v1/topics/wide-out").0, 404);

    // 4 tasks × 128 MiB fit the 512 MiB budget; 4 more do not.
    let spec = |name: &str| {
        json!({"name": name, "inputs": ["narrow"], "outputs": [format!("{name}-out")],
               "limits": {"memory_bytes": 128u64 << 20}})
    };
    s.deploy(&spec("a"), guest("uppercase"));
    let message = assert_refused(
        &s,
        reqwest::Method::POST,
        &spec("b"),
        507,
        "insufficient_resources",
    );
    assert!(message.contains("--wasm-memory-budget-bytes"), "{message}");
    // Deleting the first gives its share back.
    assert_eq!(s.delete("/v1/processors/a"), 204);
    s.deploy(&spec("b"), guest("uppercase"));
}

#[test]
fn an_accepted_deploy_answers_at_once_and_is_starting_then_running() {
    let s = Server::start(&[]);
    s.create_topic(json!({"name": "in", "partitions": 64}));
    let d = s.deploy(
        &json!({"name": "up", "inputs": ["in"], "outputs": ["out"],
                "limits": {"memory_bytes": 2u64 << 20}}),
        guest("uppercase"),
    );
    assert_eq!(d["status"], "starting", "{d}");
    assert_eq!(d["tasks"].as_array().unwrap().len(), 64, "{d}");
    assert!(
        d["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["state"] == "starting"),
        "{d}"
    );
    let ok = eventually(Duration::from_secs(120), || {
        s.processor("up")["status"] == "running"
    });
    assert!(ok, "never running: {}", s.processor("up"));
    s.produce("in", vec![json!({"value": "hi", "partition": 63})]);
    let ok = eventually(DEADLINE, || {
        let d = s.processor("up");
        let out: u64 = d["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["records_out"].as_u64().unwrap_or(0))
            .sum();
        out == 1
    });
    assert!(ok, "the record was not processed: {}", s.processor("up"));
}

//! Processors end to end, through the real binary and the guest components that
//! `scripts/build-guests.sh` builds into `target/guests/`: exact word counts across
//! partitions (output topic and interactive queries), restoration after the node loses its
//! RocksDB directory, at-least-once after SIGKILL, hostile guests failing only their own
//! task, upload validation, redeploy, pause/resume, and the CLI.
//!
//! No timed assertions: everything polls with a generous deadline.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Server, eventually, guest, stderr, stdout};

const DEADLINE: Duration = Duration::from_secs(90);

pub(crate) fn word_counts<'a>(lines: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in lines {
        for w in l.split_whitespace() {
            *m.entry(w.to_string()).or_default() += 1;
        }
    }
    m
}

pub(crate) fn as_strings(m: &BTreeMap<String, u64>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
}

/// Produces `lines` to explicit partitions, round robin.
pub(crate) fn produce_lines(s: &Server, topic: &str, partitions: i64, lines: &[String]) {
    let records: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| json!({"value": l, "partition": i as i64 % partitions}))
        .collect();
    s.produce(topic, records);
}

pub(crate) fn tasks(d: &Value) -> Vec<Value> {
    d["tasks"].as_array().cloned().unwrap_or_default()
}

/// Every task running with nothing left to process.
pub(crate) fn caught_up(s: &Server, name: &str) -> bool {
    let d = s.processor(name);
    let t = tasks(&d);
    !t.is_empty()
        && t.iter().all(|t| {
            t["state"] == "running"
                && t["lag"] == 0
                && t["inputs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|i| i["committed_offset"] == i["end_offset"])
        })
}

pub(crate) fn query(s: &Server, name: &str, store: &str, key: &str) -> (u16, Value) {
    s.get(&format!("/v1/processors/{name}/stores/{store}/keys/{key}"))
}

pub(crate) fn sample_lines() -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..60 {
        lines.push(format!("the quick brown fox {} jumps", i % 7));
        lines.push(format!("over the lazy dog {}", i % 5));
        lines.push("the end".to_string());
    }
    lines
}

#[test]
fn word_count_is_exact_and_its_state_is_rebuilt_from_the_changelog() {
    let mut s = Server::start(&[]);
    s.create_topic(json!({"name": "text", "partitions": 3}));
    let lines = sample_lines();
    // The same words land on every partition.
    produce_lines(&s, "text", 3, &lines);
    let d = s.deploy(
        &json!({"name": "wc", "inputs": ["text"], "outputs": ["counts"]}),
        guest("word-count"),
    );
    assert_eq!(d["partitions"], 3);
    assert_eq!(d["version"], 1);

    let want = word_counts(lines.iter().map(String::as_str));
    let want_s = as_strings(&want);
    let ok = eventually(DEADLINE, || s.latest_by_key("counts") == want_s);
    assert!(
        ok,
        "counts: {:?}\nwant: {want_s:?}",
        s.latest_by_key("counts")
    );
    let ok = eventually(DEADLINE, || {
        want.iter().all(|(w, n)| {
            query(&s, "wc", "counts", w) == (200, json!({"key": w, "value": n.to_string()}))
        })
    });
    assert!(ok, "interactive queries never matched the counts");
    let (status, body) = query(&s, "wc", "counts", "absent-word");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("key_not_found"))
    );
    assert!(eventually(DEADLINE, || caught_up(&s, "wc")));
    let d = s.processor("wc");
    assert_eq!(d["status"], "running");
    assert_eq!(d["topics"]["changelogs"], json!(["wc.counts.changelog"]));

    // Lose the node's RocksDB directory: the store comes back from its changelog.
    assert!(s.terminate(), "clean shutdown");
    let rocks = s.data_dir().join("state").join("rocksdb");
    assert!(rocks.is_dir(), "{} should exist", rocks.display());
    std::fs::remove_dir_all(&rocks).unwrap();
    s.restart();
    assert!(eventually(DEADLINE, || caught_up(&s, "wc")));
    let d = s.processor("wc");
    let restored: i64 = tasks(&d)
        .iter()
        .map(|t| t["restore"]["records"].as_i64().unwrap_or(0))
        .sum();
    assert!(
        restored >= want.len() as i64,
        "restored {restored} records: {d}"
    );
    assert!(
        tasks(&d).iter().all(|t| t["restore"]["done"] == true),
        "{d}"
    );
    for w in ["the", "fox", "end"] {
        assert_eq!(query(&s, "wc", "counts", w).1["value"], want[w].to_string());
    }

    // Counting continues from the restored state.
    let more: Vec<String> = vec!["the fox".into(), "the end".into(), "brand new".into()];
    produce_lines(&s, "text", 3, &more);
    let want = word_counts(lines.iter().chain(&more).map(String::as_str));
    let want_s = as_strings(&want);
    assert!(eventually(DEADLINE, || s.latest_by_key("counts") == want_s));
    assert!(eventually(DEADLINE, || {
        query(&s, "wc", "counts", "the").1["value"].as_str() == Some(&*want["the"].to_string())
    }));
}

#[test]
fn sigkill_during_processing_leaves_no_input_unprocessed() {
    let mut s = Server::start(&[]);
    s.create_topic(json!({"name": "text", "partitions": 2}));
    s.deploy(
        &json!({"name": "wc", "inputs": ["text"], "outputs": ["counts"],
                "commit_interval_ms": 100}),
        guest("word-count"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(0usize));
    let writer = {
        let (stop, sent, url) = (stop.clone(), sent.clone(), s.url.clone());
        std::thread::spawn(move || {
            let c = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let records: Vec<Value> = (0..20)
                    .map(|i| json!({"value": format!("w{} w{} common", (n + i) % 13, i % 3)}))
                    .collect();
                let ok = c
                    .post(format!("{url}/v1/topics/text/records"))
                    .json(&json!({"records": records}))
                    .send()
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    break;
                }
                n += 20;
                *sent.lock().unwrap() = n;
            }
        })
    };
    // Kill while the processor is busy.
    assert!(eventually(DEADLINE, || *sent.lock().unwrap() >= 400));
    std::thread::sleep(Duration::from_millis(300));
    s.kill9();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    s.restart();
    assert!(eventually(DEADLINE, || caught_up(&s, "wc")));
    // What the input really holds (acknowledged or not), counted exactly.
    let mut input = Vec::new();
    for p in 0..2 {
        for r in s.read_all("text", p, 0) {
            input.push(r["value"].as_str().unwrap().to_string());
        }
    }
    assert!(input.len() >= 400, "only {} input records", input.len());
    let exact = word_counts(input.iter().map(String::as_str));
    // At least once: every word counted at least as often as it occurs.
    let ok = eventually(DEADLINE, || {
        let counts = s.latest_by_key("counts");
        exact.iter().all(|(w, n)| {
            counts
                .get(w)
                .and_then(|c| c.parse::<u64>().ok())
                .is_some_and(|c| c >= *n)
        })
    });
    assert!(
        ok,
        "some word is under-counted: {:?} vs {exact:?}",
        s.latest_by_key("counts")
    );
    for (w, n) in &exact {
        let (status, body) = query(&s, "wc", "counts", w);
        assert_eq!(status, 200, "{body}");
        let c: u64 = body["value"].as_str().unwrap().parse().unwrap();
        assert!(c >= *n, "{w}: {c} < {n}");
    }
}

#[test]
fn hostile_guests_fail_only_their_own_task() {
    let s = Server::start(&[]);
    s.create_topic(json!({"name": "h", "partitions": 1}));
    s.deploy(
        &json!({"name": "up", "inputs": ["h"], "outputs": ["up-out"]}),
        guest("uppercase"),
    );
    let hostile = [
        (
            "hostile-loop",
            json!({"cpu_ms_per_call": 300}),
            "limit_exceeded",
        ),
        ("hostile-memory", json!({"memory_bytes": 16 << 20}), ""),
        ("hostile-trap", json!({}), "guest_trap"),
        ("hostile-stack", json!({}), "guest_trap"),
        (
            "hostile-output",
            json!({"max_output_records_per_call": 1000, "cpu_ms_per_call": 2000}),
            "limit_exceeded",
        ),
    ];
    for (name, limits, _) in &hostile {
        s.deploy(
            &json!({"name": name, "inputs": ["h"], "outputs": [format!("{name}-out")],
                    "limits": limits}),
            guest(name),
        );
    }
    s.produce(
        "h",
        vec![
            json!({"value": "a"}),
            json!({"value": "b"}),
            json!({"value": "c"}),
        ],
    );
    for (name, _, code) in &hostile {
        let ok = eventually(DEADLINE, || s.processor(name)["status"] == "failed");
        assert!(ok, "{name} did not fail: {}", s.processor(name));
        let d = s.processor(name);
        let t = &tasks(&d)[0];
        assert_eq!(t["state"], "failed", "{name}: {d}");
        let e = &t["last_error"];
        let got = e["code"].as_str().unwrap();
        if code.is_empty() {
            assert!(
                ["limit_exceeded", "guest_trap"].contains(&got),
                "{name}: {e}"
            );
        } else {
            assert_eq!(got, *code, "{name}: {e}");
        }
        assert_eq!(e["offset"], 0, "{name}: {e}");
        assert_eq!(e["topic"], "h", "{name}: {e}");
        assert!(
            s.read_all(&format!("{name}-out"), 0, 0).is_empty(),
            "{name} emitted"
        );
    }
    // The well-behaved processor kept running and keeps running.
    s.produce("h", vec![json!({"value": "d"})]);
    let ok = eventually(DEADLINE, || {
        let values: Vec<Value> = s
            .read_all("up-out", 0, 0)
            .iter()
            .map(|r| r["value"].clone())
            .collect();
        values == [json!("A"), json!("B"), json!("C"), json!("D")]
    });
    assert!(ok, "up-out: {:?}", s.read_all("up-out", 0, 0));
    assert_eq!(s.processor("up")["status"], "running");
    assert_eq!(s.get("/health").0, 200);
}

#[test]
fn uploads_are_validated() {
    let s = Server::start(&["--max-upload-bytes", "3000000"]);
    s.create_topic(json!({"name": "a", "partitions": 2}));
    s.create_topic(json!({"name": "b", "partitions": 3}));
    let post =
        |spec: Value, wasm: Vec<u8>| s.upload(reqwest::Method::POST, "/v1/processors", &spec, wasm);
    let ok_spec = json!({"name": "p", "inputs": ["a"]});
    let cases = [
        (
            ok_spec.clone(),
            b"definitely not wasm".to_vec(),
            "not_a_component",
        ),
        (ok_spec.clone(), guest("wrong-world"), "wrong_world"),
        (
            json!({"name": "p", "inputs": ["a"], "limits": {"max_module_bytes": 1000}}),
            guest("uppercase"),
            "module_too_large",
        ),
        (
            json!({"name": "p", "inputs": ["a", "b"]}),
            guest("uppercase"),
            "not_co_partitioned",
        ),
        (
            json!({"name": "p", "inputs": ["missing"]}),
            guest("uppercase"),
            "unknown_input",
        ),
        (
            json!({"name": "bad name", "inputs": ["a"]}),
            guest("uppercase"),
            "invalid_spec",
        ),
        (
            json!({"name": "p", "inputs": ["a"], "on_error": "shrug"}),
            guest("uppercase"),
            "invalid_spec",
        ),
    ];
    for (spec, wasm, code) in cases {
        let (status, body) = post(spec.clone(), wasm);
        assert_eq!(status, 400, "{spec}: {body}");
        assert_eq!(body["error"]["code"], code, "{spec}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    // Over the server's upload limit: 413.
    let (status, body) = post(ok_spec.clone(), vec![0u8; 4_000_000]);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large");
    // Nothing was deployed; the server still takes a good upload.
    assert_eq!(s.get("/v1/processors").1["processors"], json!([]));
    s.deploy(&ok_spec, guest("uppercase"));
    let (status, body) = post(ok_spec, guest("uppercase"));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("processor_exists"))
    );
}

#[test]
fn redeploy_keeps_state_and_pause_resume_keep_offsets_via_the_cli() {
    let s = Server::start(&[]);
    s.create_topic(json!({"name": "text", "partitions": 2}));
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("word-count.wasm");
    std::fs::write(&wasm, guest("word-count")).unwrap();
    let wasm = wasm.to_str().unwrap();

    let out = s.cli(
        &[
            "deploy",
            wasm,
            "--name",
            "wc",
            "--input",
            "text",
            "--output",
            "counts",
            "--commit-interval-ms",
            "100",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("deployed processor wc (version 1, 2 tasks)"),
        "{}",
        stdout(&out)
    );
    produce_lines(&s, "text", 2, &["a b a".into(), "a c".into()]);
    assert!(eventually(DEADLINE, || s
        .latest_by_key("counts")
        .get("a")
        .map(String::as_str)
        == Some("3")));

    let out = s.cli(&["processor", "list"], None);
    assert!(
        stdout(&out).lines().nth(1).unwrap_or("").starts_with("wc "),
        "{}",
        stdout(&out)
    );

    // Pause: nothing is processed, offsets stay; resume continues from them.
    let out = s.cli(&["processor", "pause", "wc"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(eventually(DEADLINE, || {
        tasks(&s.processor("wc"))
            .iter()
            .all(|t| t["state"] == "paused")
    }));
    produce_lines(&s, "text", 2, &["a".into(), "a".into()]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.latest_by_key("counts")["a"], "3");
    let d = s.processor("wc");
    assert_eq!(d["status"], "paused");
    assert_eq!(d["lag"], 2, "{d}");
    let out = s.cli(&["processor", "resume", "wc"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(eventually(DEADLINE, || s.latest_by_key("counts")["a"] == "5"));

    // Redeploy: version 2, same state and offsets.
    let out = s.cli(
        &[
            "deploy", wasm, "--name", "wc", "--input", "text", "--output", "counts", "--update",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("updated processor wc (version 2"),
        "{}",
        stdout(&out)
    );
    produce_lines(&s, "text", 2, &["a".into()]);
    assert!(eventually(DEADLINE, || s.latest_by_key("counts")["a"] == "6"));
    assert!(eventually(DEADLINE, || caught_up(&s, "wc")));
    let d = s.processor("wc");
    assert_eq!(d["version"], 2);
    assert!(tasks(&d).iter().all(|t| t["version"] == 2), "{d}");

    let out = s.cli(&["processor", "get", "wc", "counts", "a"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "6\n");
    let out = s.cli(&["processor", "describe", "wc"], None);
    assert!(
        stdout(&out).contains("PARTITION  STATE"),
        "{}",
        stdout(&out)
    );

    // Errors are one line and exit non-zero.
    let out = s.cli(&["processor", "get", "wc", "counts", "zzz"], None);
    assert!(!out.status.success());
    assert_eq!(stderr(&out).trim(), "error: key 'zzz' not found");
    let out = s.cli(&["deploy", "/nonexistent.wasm", "--input", "text"], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).starts_with("error: cannot read /nonexistent.wasm"),
        "{}",
        stderr(&out)
    );
    let out = s.cli(&["processor", "describe", "nope"], None);
    assert_eq!(
        stderr(&out).trim(),
        "error: processor 'nope' does not exist"
    );

    let out = s.cli(&["processor", "delete", "wc"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.get("/v1/processors/wc").0, 404);
    assert_eq!(s.get("/v1/topics/wc.counts.changelog").0, 404);
}

#[test]
fn processors_resume_after_a_restart() {
    let mut s = Server::start(&[]);
    s.create_topic(json!({"name": "in", "partitions": 1}));
    s.deploy(
        &json!({"name": "up", "inputs": ["in"], "outputs": ["up-out"], "start": "latest"}),
        guest("uppercase"),
    );
    s.produce("in", vec![json!({"value": "x"})]);
    assert!(eventually(DEADLINE, || s.read_all("up-out", 0, 0).len() == 1));
    assert!(s.terminate());
    s.restart();
    s.produce("in", vec![json!({"value": "y"})]);
    assert!(eventually(DEADLINE, || s.read_all("up-out", 0, 0).len() == 2));
    let values: Vec<Value> = s
        .read_all("up-out", 0, 0)
        .iter()
        .map(|r| r["value"].clone())
        .collect();
    assert_eq!(values, [json!("X"), json!("Y")]);
}

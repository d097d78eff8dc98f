//! Tests of the task runtime through [`Engine`] with native Rust processors
//! ([`crate::native`]) over a real broker in a temporary directory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_broker::{Broker, BrokerConfig, ProduceRecord, TopicSpec};

use crate::engine::{Engine, EngineConfig};
use crate::log_access::LogAccess;
use crate::native::NativeLoader;
use crate::state::StateBackend;
use crate::state::memory::MemoryBackend;
use crate::state::rocks::RocksBackend;
use crate::task::spec::ProcessorSpec;
use crate::task::status::TaskState;

struct Env {
    dir: tempfile::TempDir,
    broker: Broker,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::new(dir.path().join("log"))).unwrap();
        Env { dir, broker }
    }

    fn engine(&self, backend: Arc<dyn StateBackend>) -> Engine {
        started_engine(
            &EngineConfig::under(self.dir.path()),
            Arc::new(self.broker.clone()),
            backend,
        )
    }

    /// A cluster node's engine (it runs only the tasks assigned to it) under `dir`.
    fn cluster_engine(&self, dir: &str) -> Engine {
        let config = EngineConfig {
            assigned_tasks: true,
            ..EngineConfig::under(&self.dir.path().join(dir))
        };
        started_engine(
            &config,
            Arc::new(self.broker.clone()),
            Arc::new(MemoryBackend::new()),
        )
    }

    fn topic(&self, name: &str, partitions: i32) {
        self.broker
            .create_topic(TopicSpec::new(name, partitions))
            .unwrap();
    }

    fn produce(&self, topic: &str, partition: i32, values: &[&str]) {
        let records = values
            .iter()
            .map(|v| ProduceRecord {
                value: Some(Bytes::copy_from_slice(v.as_bytes())),
                partition: Some(partition),
                ..ProduceRecord::default()
            })
            .collect();
        self.broker.produce(topic, records).unwrap();
    }

    /// Every record of every partition: (key, value, headers).
    fn read_all(&self, topic: &str) -> Vec<(Option<String>, Option<String>, Vec<String>)> {
        let n = self.broker.partition_count(topic).unwrap();
        let mut out = Vec::new();
        for p in 0..n {
            let r = self.broker.read(topic, p, 0, 100_000, 64 << 20).unwrap();
            for rec in r.records {
                let s = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
                let headers = rec
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{k}={}", s(v.clone()).unwrap_or_default()))
                    .collect();
                out.push((s(rec.key), s(rec.value), headers));
            }
        }
        out
    }

    /// Latest value per key in `topic`.
    fn latest(&self, topic: &str) -> BTreeMap<String, String> {
        self.read_all(topic)
            .into_iter()
            .filter_map(|(k, v, _)| Some((k?, v?)))
            .collect()
    }
}

/// An engine over `log` with native processors, opened and started.
fn started_engine(
    config: &EngineConfig,
    log: Arc<dyn LogAccess>,
    backend: Arc<dyn StateBackend>,
) -> Engine {
    let e = Engine::open(config, log, backend, Arc::new(NativeLoader)).unwrap();
    e.start().unwrap();
    e
}

fn spec(json: &str) -> ProcessorSpec {
    serde_json::from_str(json).unwrap()
}

fn module(name: &str) -> Bytes {
    Bytes::from(format!("native:{name}"))
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

fn expected_counts(texts: &[&str]) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, u64> = BTreeMap::new();
    for t in texts {
        for w in t.split_whitespace() {
            *m.entry(w.to_string()).or_default() += 1;
        }
    }
    m.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}

const TEXT: [&[&str]; 3] = [
    &["the quick brown fox", "jumps over the lazy dog"],
    &["the dog sleeps", "a fox runs"],
    &["quick quick the end"],
];

fn all_text() -> Vec<&'static str> {
    TEXT.iter().flat_map(|p| p.iter().copied()).collect()
}

#[test]
fn word_count_is_exact_across_partitions_and_survives_losing_local_state() {
    let env = Env::new();
    env.topic("text", 3);
    for (p, values) in TEXT.iter().enumerate() {
        env.produce("text", p as i32, values);
    }
    let dir = env.dir.path().join("rocks");
    let engine = env.engine(Arc::new(RocksBackend::open(&dir).unwrap()));
    let d = engine
        .deploy(
            spec(r#"{"name":"wc","inputs":["text"],"outputs":["counts"],"commit_interval_ms":50}"#),
            module("word-count"),
        )
        .unwrap();
    assert_eq!(d.partitions, 3);
    let want = expected_counts(&all_text());
    eventually("exact counts", || env.latest("counts") == want);
    eventually("committed state", || {
        engine.query("wc", "counts", b"the").unwrap().as_deref() == Some(&b"4"[..])
    });
    assert_eq!(engine.query("wc", "counts", b"absent").unwrap(), None);
    assert_eq!(
        engine.query("wc", "nope", b"the").unwrap_err().code(),
        "unknown_store"
    );
    // A prefix scan merges the three tasks' stores in key order; pages chain by `next`.
    let scan_all = |prefix: &[u8], limit: usize, max_bytes: usize| {
        let mut out = BTreeMap::new();
        let mut after: Option<(Bytes, i32)> = None;
        let mut pages = 0;
        loop {
            let page = engine
                .scan(
                    "wc",
                    "counts",
                    prefix,
                    after.as_ref().map(|(k, p)| (&k[..], *p)),
                    limit,
                    max_bytes,
                )
                .unwrap();
            pages += 1;
            assert!(page.entries.len() <= limit);
            let keys: Vec<&Bytes> = page.entries.iter().map(|e| &e.key).collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
            for e in page.entries {
                let k = String::from_utf8(e.key.to_vec()).unwrap();
                let v = String::from_utf8(e.value.to_vec()).unwrap();
                assert!(out.insert(k, v).is_none(), "a key twice");
            }
            match page.next {
                Some(n) => after = Some(n),
                None => return (out, pages),
            }
        }
    };
    eventually("the whole state scanned", || {
        scan_all(b"", 100, 1 << 20).0 == want
    });
    assert_eq!(scan_all(b"", 100, 1 << 20).1, 1);
    let (paged, pages) = scan_all(b"", 5, 1 << 20);
    assert_eq!((paged, pages), (want.clone(), want.len().div_ceil(5)));
    // A byte budget of one: one entry per page.
    assert_eq!(scan_all(b"", 100, 1).1, want.len());
    let q: BTreeMap<String, String> = want
        .iter()
        .filter(|(k, _)| k.starts_with("qu"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(scan_all(b"qu", 100, 1 << 20), (q, 1));
    assert_eq!(scan_all(b"zz", 100, 1 << 20), (BTreeMap::new(), 1));
    assert_eq!(
        engine
            .scan("wc", "nope", b"", None, 10, 1 << 20)
            .unwrap_err()
            .code(),
        "unknown_store"
    );
    let described = engine.describe("wc").unwrap();
    assert_eq!(described.status, "running");
    assert_eq!(described.topics.changelogs, ["wc.counts.changelog"]);
    let records_in: u64 = described.tasks.iter().map(|t| t.records_in).sum();
    assert!(records_in >= 5 + 15, "{records_in}");
    engine.shutdown();
    drop(engine);

    // Lose the local state: the store comes back from its changelog.
    std::fs::remove_dir_all(&dir).unwrap();
    let engine = env.engine(Arc::new(RocksBackend::open(&dir).unwrap()));
    eventually("restored", || {
        engine
            .describe("wc")
            .unwrap()
            .tasks
            .iter()
            .all(|t| t.state == TaskState::Running)
    });
    let restored: u64 = engine
        .describe("wc")
        .unwrap()
        .tasks
        .iter()
        .map(|t| t.restore.as_ref().map_or(0, |r| r.records))
        .sum();
    assert!(restored > 0);
    assert_eq!(
        engine.query("wc", "counts", b"quick").unwrap().as_deref(),
        Some(&b"3"[..])
    );
    env.produce("text", 1, &["quick fox"]);
    let mut texts = all_text();
    texts.push("quick fox");
    let want = expected_counts(&texts);
    eventually("counts continue", || env.latest("counts") == want);
}

#[test]
fn inputs_are_checked_at_deploy() {
    let env = Env::new();
    env.topic("a", 2);
    env.topic("b", 3);
    let engine = env.engine(Arc::new(MemoryBackend::new()));
    let e = engine
        .deploy(
            spec(r#"{"name":"p","inputs":["a","b"]}"#),
            module("uppercase"),
        )
        .unwrap_err();
    assert_eq!(e.code(), "not_co_partitioned");
    assert!(e.to_string().contains("'b' has 3"), "{e}");
    let e = engine
        .deploy(
            spec(r#"{"name":"p","inputs":["zzz"]}"#),
            module("uppercase"),
        )
        .unwrap_err();
    assert_eq!(e.code(), "unknown_input");
    let e = engine
        .deploy(
            spec(r#"{"name":"p","inputs":["a"]}"#),
            Bytes::from_static(b"\0asm junk"),
        )
        .unwrap_err();
    assert_eq!(e.code(), "not_a_component");
    let e = engine
        .deploy(
            spec(r#"{"name":"p","inputs":["a"],"limits":{"max_module_bytes":4}}"#),
            module("uppercase"),
        )
        .unwrap_err();
    assert_eq!(e.code(), "module_too_large");
    engine
        .deploy(
            spec(r#"{"name":"p","inputs":["a"],"outputs":["out"]}"#),
            module("uppercase"),
        )
        .unwrap();
    let e = engine
        .deploy(spec(r#"{"name":"p","inputs":["a"]}"#), module("uppercase"))
        .unwrap_err();
    assert_eq!(e.code(), "processor_exists");
    // The output was created with the inputs' partition count.
    assert_eq!(env.broker.partition_count("out").unwrap(), 2);
}

#[test]
fn a_trap_fails_only_its_own_task_with_the_offset() {
    let env = Env::new();
    env.topic("in", 2);
    let engine = env.engine(Arc::new(MemoryBackend::new()));
    engine
        .deploy(
            spec(r#"{"name":"bad","inputs":["in"],"outputs":["bad-out"]}"#),
            module("trap-on:boom"),
        )
        .unwrap();
    engine
        .deploy(
            spec(r#"{"name":"good","inputs":["in"],"outputs":["good-out"]}"#),
            module("uppercase"),
        )
        .unwrap();
    env.produce("in", 0, &["a", "b", "boom", "c"]);
    env.produce("in", 1, &["x"]);
    eventually("bad fails", || {
        engine.describe("bad").unwrap().status == "failed"
    });
    let d = engine.describe("bad").unwrap();
    let t0 = &d.tasks[0];
    assert_eq!(t0.state, TaskState::Failed);
    let e = t0.last_error.as_ref().unwrap();
    assert_eq!(e.code, "guest_trap");
    assert_eq!(e.offset, Some(2));
    assert_eq!(e.topic.as_deref(), Some("in"));
    // Records before the failing one were processed and committed.
    assert_eq!(t0.inputs[0].committed_offset, Some(2));
    eventually("partition 1 of bad", || {
        engine.describe("bad").unwrap().tasks[1].records_in == 1
    });
    assert_eq!(
        engine.describe("bad").unwrap().tasks[1].state,
        TaskState::Running
    );
    eventually("good output", || env.read_all("good-out").len() == 5);

    // Resume restarts the failed task, which fails again on the same record.
    engine.resume("bad").unwrap();
    eventually("fails again", || {
        engine.describe("bad").unwrap().status == "failed"
    });
    let out: Vec<_> = env
        .read_all("bad-out")
        .into_iter()
        .map(|r| r.1.unwrap())
        .collect();
    assert!(out.contains(&"A".to_string()) && out.contains(&"X".to_string()));
    assert!(!out.contains(&"C".to_string()));
}

#[test]
fn skip_and_dead_letter_policies() {
    let env = Env::new();
    env.topic("in", 1);
    let engine = env.engine(Arc::new(MemoryBackend::new()));
    engine
        .deploy(
            spec(r#"{"name":"sk","inputs":["in"],"outputs":["sk-out"],"on_error":"skip"}"#),
            module("error-on:bad"),
        )
        .unwrap();
    engine
        .deploy(
            spec(r#"{"name":"dl","inputs":["in"],"outputs":["dl-out"],"on_error":"dead_letter"}"#),
            module("trap-on:bad"),
        )
        .unwrap();
    engine
        .deploy(
            spec(r#"{"name":"pn","inputs":["in"],"outputs":["pn-out"],"on_error":"skip"}"#),
            module("panic-on:bad"),
        )
        .unwrap();
    env.produce("in", 0, &["a", "bad", "b"]);
    let values =
        |t: &str| -> Vec<String> { env.read_all(t).into_iter().filter_map(|r| r.1).collect() };
    eventually("skip output", || values("sk-out") == ["A", "B"]);
    eventually("dlq output", || values("dl-out") == ["A", "B"]);
    eventually("panic output", || values("pn-out") == ["A", "B"]);
    let sk = &engine.describe("sk").unwrap().tasks[0];
    assert_eq!((sk.skipped, sk.errors), (1, 1));
    assert_eq!(sk.last_error.as_ref().unwrap().code, "guest_error");
    let dlq = env.read_all("dl.dlq");
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].1.as_deref(), Some("bad"));
    assert!(
        dlq[0]
            .2
            .iter()
            .any(|h| h.starts_with("weir.error=guest trapped")),
        "{:?}",
        dlq[0].2
    );
    assert!(dlq[0].2.contains(&"weir.source.offset=1".to_string()));
    eventually("dl counted", || {
        engine.describe("dl").unwrap().tasks[0].dead_lettered == 1
    });
    assert_eq!(
        engine.describe("pn").unwrap().tasks[0]
            .last_error
            .as_ref()
            .unwrap()
            .code,
        "guest_trap"
    );
}

#[test]
fn output_limits_fail_the_call() {
    let env = Env::new();
    env.topic("in", 1);
    let engine = env.engine(Arc::new(MemoryBackend::new()));
    engine
        .deploy(
            spec(
                r#"{"name":"fl","inputs":["in"],"outputs":["fl-out"],
                    "limits":{"max_output_records_per_call":100}}"#,
            ),
            module("flood"),
        )
        .unwrap();
    env.produce("in", 0, &["x"]);
    eventually("limit", || {
        engine.describe("fl").unwrap().status == "failed"
    });
    let d = engine.describe("fl").unwrap();
    assert_eq!(
        d.tasks[0].last_error.as_ref().unwrap().code,
        "limit_exceeded"
    );
    assert!(env.read_all("fl-out").is_empty());
}

#[test]
fn pause_resume_redeploy_and_delete() {
    let env = Env::new();
    env.topic("text", 2);
    let engine = env.engine(Arc::new(MemoryBackend::new()));
    engine
        .deploy(
            spec(r#"{"name":"wc","inputs":["text"],"outputs":["counts"],"commit_interval_ms":20}"#),
            module("word-count"),
        )
        .unwrap();
    env.produce("text", 0, &["a b a"]);
    eventually("counts", || {
        env.latest("counts").get("a").map(String::as_str) == Some("2")
    });

    let d = engine.pause("wc").unwrap();
    assert_eq!(d.status, "paused");
    eventually("paused", || {
        engine
            .describe("wc")
            .unwrap()
            .tasks
            .iter()
            .all(|t| t.state == TaskState::Paused)
    });
    env.produce("text", 1, &["a"]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(env.latest("counts")["a"], "2");
    engine.resume("wc").unwrap();
    eventually("resumed", || env.latest("counts")["a"] == "3");

    // A new version keeps state and offsets.
    let d = engine
        .redeploy(
            "wc",
            spec(r#"{"name":"wc","inputs":["text"],"outputs":["counts"],"commit_interval_ms":20}"#),
            module("word-count"),
        )
        .unwrap();
    assert_eq!(d.version, 2);
    env.produce("text", 0, &["a"]);
    eventually("continued", || env.latest("counts")["a"] == "4");
    assert!(
        engine
            .describe("wc")
            .unwrap()
            .tasks
            .iter()
            .all(|t| t.version == 2)
    );
    let e = engine
        .redeploy(
            "wc",
            spec(r#"{"name":"other","inputs":["text"]}"#),
            module("word-count"),
        )
        .unwrap_err();
    assert_eq!(e.code(), "invalid_spec");

    // Deleting with keep_state, then deploying again, continues.
    engine.delete("wc", true).unwrap();
    assert!(env.broker.topic_info("wc.counts.changelog").is_ok());
    engine
        .deploy(
            spec(r#"{"name":"wc","inputs":["text"],"outputs":["counts"],"commit_interval_ms":20}"#),
            module("word-count"),
        )
        .unwrap();
    env.produce("text", 1, &["a"]);
    eventually("kept state", || env.latest("counts")["a"] == "5");
    // A plain delete removes the internal topics.
    engine.delete("wc", false).unwrap();
    for t in ["wc.counts.changelog", "wc.offsets", "wc.repartition"] {
        assert!(env.broker.topic_info(t).is_err(), "{t} still exists");
    }
    assert_eq!(
        engine.describe("wc").unwrap_err().code(),
        "unknown_processor"
    );
}

#[test]
fn deployments_and_pauses_survive_a_restart() {
    let env = Env::new();
    env.topic("in", 1);
    let backend: Arc<dyn StateBackend> = Arc::new(MemoryBackend::new());
    let engine = env.engine(backend.clone());
    engine
        .deploy(
            spec(r#"{"name":"up","inputs":["in"],"outputs":["up-out"]}"#),
            module("uppercase"),
        )
        .unwrap();
    engine
        .deploy(
            spec(r#"{"name":"held","inputs":["in"],"outputs":["held-out"]}"#),
            module("uppercase"),
        )
        .unwrap();
    engine.pause("held").unwrap();
    env.produce("in", 0, &["a"]);
    eventually("first", || env.read_all("up-out").len() == 1);
    engine.shutdown();
    drop(engine);
    let engine = env.engine(backend);
    env.produce("in", 0, &["b"]);
    eventually("second", || env.read_all("up-out").len() == 2);
    assert_eq!(engine.describe("held").unwrap().status, "paused");
    assert!(env.read_all("held-out").is_empty());
    assert_eq!(engine.describe("up").unwrap().version, 1);
}

#[test]
fn stream_time_timers_fire_and_persist() {
    let env = Env::new();
    env.topic("in", 1);
    let engine = env.engine(Arc::new(MemoryBackend::new()));
    engine
        .deploy(
            spec(r#"{"name":"tm","inputs":["in"],"outputs":["tm-out"],"commit_interval_ms":20}"#),
            module("uppercase"),
        )
        .unwrap();
    let rec = |v: &str, ts: i64| ProduceRecord {
        value: Some(Bytes::copy_from_slice(v.as_bytes())),
        timestamp: Some(ts),
        partition: Some(0),
        ..ProduceRecord::default()
    };
    env.broker.produce("in", vec![rec("timer", 1000)]).unwrap();
    eventually("timer registered", || {
        engine.describe("tm").unwrap().tasks[0].timers == 1
    });
    eventually("committed", || {
        engine.describe("tm").unwrap().tasks[0].lag == 0
    });
    // The timer survives a restart of the task.
    let id = crate::task_id::TaskId::new("tm", 0);
    let def_status = engine.tasks().revoke(&id).unwrap();
    assert_eq!(def_status.timers, 1);
    engine.resume("tm").unwrap();
    eventually("timer reloaded", || {
        engine
            .describe("tm")
            .unwrap()
            .tasks
            .first()
            .is_some_and(|t| t.timers == 1)
    });
    env.broker.produce("in", vec![rec("later", 1015)]).unwrap();
    eventually("fired", || {
        env.read_all("tm-out")
            .iter()
            .any(|r| r.1.as_deref() == Some("fired:1010"))
    });
    eventually("timer gone", || {
        engine.describe("tm").unwrap().tasks[0].timers == 0
    });
}

#[test]
fn committed_offsets_are_in_the_log() {
    let env = Env::new();
    env.topic("in", 1);
    let engine = env.engine(Arc::new(MemoryBackend::new()));
    engine
        .deploy(
            spec(r#"{"name":"up","inputs":["in"],"outputs":["o"],"commit_interval_ms":20}"#),
            module("uppercase"),
        )
        .unwrap();
    env.produce("in", 0, &["a", "b", "c"]);
    let log: &dyn LogAccess = &env.broker;
    eventually("offsets committed", || {
        log.committed_offsets("up", 0)
            .unwrap()
            .is_some_and(|c| c.inputs.get("in/0") == Some(&3))
    });
}

#[test]
fn wall_clock_timers_fire_without_input() {
    let env = Env::new();
    env.topic("in", 1);
    let engine = env.engine(Arc::new(MemoryBackend::new()));
    engine
        .deploy(
            spec(r#"{"name":"wt","inputs":["in"],"outputs":["wt-out"]}"#),
            module("uppercase"),
        )
        .unwrap();
    env.produce("in", 0, &["wall"]);
    eventually("wall-clock timer fired", || {
        env.read_all("wt-out")
            .iter()
            .any(|r| r.1.as_deref().is_some_and(|v| v.starts_with("fired:")))
    });
    eventually("timer gone", || {
        engine.describe("wt").unwrap().tasks[0].timers == 0
    });
}

#[test]
fn a_stuck_delete_does_not_block_operations_on_other_processors() {
    let env = Env::new();
    env.topic("slow-in", 1);
    env.topic("in", 1);
    let engine = env.engine(Arc::new(MemoryBackend::new()));
    engine
        .deploy(
            spec(r#"{"name":"slow","inputs":["slow-in"],"outputs":["slow-out"]}"#),
            module("stall-ms:3000"),
        )
        .unwrap();
    eventually("slow running", || {
        engine.describe("slow").unwrap().status == "running"
    });
    env.produce("slow-in", 0, &["x"]);
    // The task is inside its 3 s call (which ignores interrupts).
    std::thread::sleep(Duration::from_millis(300));
    let deleting = {
        let engine = engine.clone();
        std::thread::spawn(move || engine.delete("slow", false))
    };
    std::thread::sleep(Duration::from_millis(200));
    engine
        .deploy(
            spec(r#"{"name":"up","inputs":["in"],"outputs":["up-out"]}"#),
            module("uppercase"),
        )
        .unwrap();
    engine.pause("up").unwrap();
    engine.resume("up").unwrap();
    assert_eq!(engine.describe("up").unwrap().version, 1);
    assert!(
        !deleting.is_finished(),
        "the operations on 'up' waited for the delete of 'slow'"
    );
    deleting.join().unwrap().unwrap();
    env.produce("in", 0, &["hi"]);
    eventually("up works", || env.read_all("up-out").len() == 1);
}

/// Two cluster nodes' engines over one log: each runs only the tasks assigned to it; a task
/// that moves commits on its old node and is restored from its changelog on the new one
/// before it processes a record, so the counts stay exact.
#[test]
fn assigned_tasks_run_where_assigned_and_move_with_their_state() {
    use crate::assignment::TaskAssignments;
    use crate::task::registry::DeploymentRecord;
    let env = Env::new();
    env.topic("text", 3);
    for (p, values) in TEXT.iter().enumerate() {
        env.produce("text", p as i32, values);
    }
    let node = |dir: &str| env.cluster_engine(dir);
    let (a, b) = (node("a"), node("b"));
    a.deploy(
        spec(r#"{"name":"wc","inputs":["text"],"outputs":["counts"],"commit_interval_ms":50}"#),
        module("word-count"),
    )
    .unwrap();
    // Nothing runs before the cluster assigns.
    assert!(a.describe("wc").unwrap().tasks.is_empty());
    let (record, module) = a.deployment("wc").unwrap();
    b.install(record.clone(), module.clone()).unwrap();
    b.install(record, module).unwrap(); // again: nothing changes
    let v = b.versions()["wc"];
    assert_eq!((v.version, v.paused), (1, false));

    let assign = |e: &Engine, tasks: &[(i32, u64)]| {
        let mut m = TaskAssignments::new();
        m.insert("wc".into(), tasks.iter().copied().collect());
        e.set_assignment(m, Default::default());
    };
    assign(&a, &[(0, 1), (1, 1)]);
    assign(&b, &[(2, 1)]);
    let running = |e: &Engine| -> Vec<i32> {
        e.describe("wc")
            .unwrap()
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Running)
            .map(|t| t.partition)
            .collect()
    };
    eventually("tasks 0, 1 on a and 2 on b", || {
        running(&a) == [0, 1] && running(&b) == [2]
    });
    let want = expected_counts(&all_text());
    eventually("exact counts", || env.latest("counts") == want);

    // Task 1 moves to b under a new epoch: a revokes it (committing), b restores it.
    assign(&a, &[(0, 1)]);
    assign(&b, &[(1, 2), (2, 1)]);
    eventually("task 1 on b", || {
        running(&a) == [0] && running(&b) == [1, 2]
    });
    let t1 = b.describe("wc").unwrap().tasks;
    let restored = t1
        .iter()
        .find(|t| t.partition == 1)
        .and_then(|t| t.restore.as_ref())
        .map_or(0, |r| r.records);
    assert!(restored > 0, "task 1 was not restored on b: {t1:?}");
    env.produce("text", 1, &["quick fox"]);
    let mut texts = all_text();
    texts.push("quick fox");
    let want = expected_counts(&texts);
    eventually("counts continue on b", || env.latest("counts") == want);
    eventually("queries answered where the task runs", || {
        b.query_in("wc", "counts", 1, b"fox")
            .ok()
            .flatten()
            .is_some()
    });
    assert_eq!(
        a.query_in("wc", "counts", 1, b"fox").unwrap_err().code(),
        "unavailable"
    );

    // Deleted and created again under its name while b was away: the new creation
    // replaces b's deployment even at a lower version.
    let (mut again, module) = a.deployment("wc").unwrap();
    b.install(
        DeploymentRecord {
            version: 2,
            ..again.clone()
        },
        module.clone(),
    )
    .unwrap();
    assert_eq!(b.versions()["wc"].version, 2);
    again.created_ms += 1;
    b.install(again.clone(), module).unwrap();
    let v = b.versions()["wc"];
    assert_eq!((v.version, v.created_ms), (1, again.created_ms));

    // Uninstalled on b: its tasks stop, the topics stay (a deletes them).
    b.uninstall("wc").unwrap();
    assert!(b.versions().is_empty());
    assert!(env.broker.topic_info("wc.counts.changelog").is_ok());
    b.uninstall("wc").unwrap();
}

/// A processor deployed on a single node keeps running every task there when the node
/// joins a cluster: it is not the catalog's, and the cluster's assignments leave it alone.
#[test]
fn a_single_nodes_processor_keeps_every_task_when_the_node_joins_a_cluster() {
    use crate::assignment::TaskAssignments;
    let env = Env::new();
    env.topic("text", 3);
    let single = env.engine(Arc::new(MemoryBackend::new()));
    single
        .deploy(
            spec(r#"{"name":"wc","inputs":["text"],"outputs":["counts"]}"#),
            module("word-count"),
        )
        .unwrap();
    single.shutdown();
    drop(single);
    let config = EngineConfig {
        assigned_tasks: true,
        ..EngineConfig::under(env.dir.path())
    };
    let node = started_engine(
        &config,
        Arc::new(env.broker.clone()),
        Arc::new(MemoryBackend::new()),
    );
    assert!(!node.in_catalog("wc"));
    node.set_assignment(TaskAssignments::new(), Default::default());
    let running = || {
        node.describe("wc")
            .unwrap()
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Running)
            .count()
    };
    eventually("every task runs here", || running() == 3);
    env.produce("text", 0, &["the fox"]);
    eventually("it counts", || {
        env.latest("counts").get("fox") == Some(&"1".into())
    });
}

/// A standby tails the changelogs of a task another node runs into a warm store: it answers
/// stale look-ups with its lag, and when the task moves to its node the task restores only
/// what the standby had not applied yet; the former owner then keeps the standby.
#[test]
fn a_standby_keeps_a_warm_store_and_the_task_taking_it_over_restores_only_the_tail() {
    use crate::assignment::{StandbyAssignments, TaskAssignments};
    use crate::engine::AnsweredBy;
    let env = Env::new();
    env.topic("text", 2);
    for (p, values) in TEXT.iter().take(2).enumerate() {
        env.produce("text", p as i32, values);
    }
    let node = |dir: &str| env.cluster_engine(dir);
    let (a, b) = (node("a"), node("b"));
    a.deploy(
        spec(r#"{"name":"wc","inputs":["text"],"outputs":["counts"],"commit_interval_ms":50}"#),
        module("word-count"),
    )
    .unwrap();
    let (record, module) = a.deployment("wc").unwrap();
    b.install(record, module).unwrap();
    let assign = |e: &Engine, tasks: &[(i32, u64)], standbys: &[i32]| {
        let mut m = TaskAssignments::new();
        m.insert("wc".into(), tasks.iter().copied().collect());
        let mut s = StandbyAssignments::new();
        s.insert("wc".into(), standbys.iter().copied().collect());
        e.set_assignment(m, s);
    };
    assign(&a, &[(0, 1), (1, 1)], &[]);
    assign(&b, &[], &[0, 1]);
    let texts: Vec<&str> = TEXT
        .iter()
        .take(2)
        .flat_map(|t| t.iter().copied())
        .collect();
    let want = expected_counts(&texts);
    eventually("exact counts from a", || env.latest("counts") == want);
    // b runs no task, keeps both standbys, and they catch up with a's commits.
    assert!(b.describe("wc").unwrap().tasks.is_empty());
    let (word, count) = want.iter().next().unwrap();
    eventually("b's standby answers like a's task", || {
        b.query_stale("wc", "counts", word.as_bytes())
            .is_ok_and(|s| s.value.as_deref() == Some(count.as_bytes()))
    });
    let answer = b.query_stale("wc", "counts", word.as_bytes()).unwrap();
    assert_eq!(answer.by, AnsweredBy::Standby);
    let by_a = a.query_stale("wc", "counts", word.as_bytes()).unwrap();
    assert_eq!((by_a.by, by_a.lag), (AnsweredBy::Task, 0));
    // A fresh look-up still refuses to answer from a standby.
    assert_eq!(
        b.query("wc", "counts", word.as_bytes()).unwrap_err().code(),
        "unavailable"
    );
    let standbys = b.describe("wc").unwrap().standbys;
    assert_eq!(standbys.len(), 2, "{standbys:?}");
    assert!(standbys.iter().all(|s| s.caught_up && s.state == "standby"));
    let warm: u64 = standbys.iter().map(|s| s.records).sum();
    assert!(warm > 0, "the standbys copied nothing: {standbys:?}");

    // One more line, then the tasks move to b (a revokes them, committing) and a keeps
    // the standbys: b restores no more than what its standbys had not applied yet.
    env.produce("text", 0, &["quick fox"]);
    let mut texts = texts.clone();
    texts.push("quick fox");
    let want = expected_counts(&texts);
    eventually("the new line counted by a", || env.latest("counts") == want);
    // Task 0 first, while b keeps its standby of task 1 (the standby of a task b now owns
    // is handed over to the task, not dropped beside the one b keeps), then task 1.
    assign(&a, &[(1, 1)], &[0]);
    assign(&b, &[(0, 2)], &[1]);
    eventually("task 0 runs on b", || {
        b.describe("wc")
            .unwrap()
            .tasks
            .iter()
            .any(|t| t.state == TaskState::Running)
    });
    assign(&a, &[], &[0, 1]);
    assign(&b, &[(0, 2), (1, 2)], &[]);
    let running = |e: &Engine| {
        e.describe("wc")
            .unwrap()
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Running)
            .count()
    };
    eventually("both tasks run on b", || running(&b) == 2);
    let restored: u64 = b
        .describe("wc")
        .unwrap()
        .tasks
        .iter()
        .filter_map(|t| t.restore.as_ref())
        .map(|r| r.records)
        .sum();
    assert!(
        restored < warm,
        "b restored {restored} records though its standbys had {warm}"
    );
    let carried: u64 = b
        .describe("wc")
        .unwrap()
        .tasks
        .iter()
        .filter_map(|t| t.warmed)
        .map(|w| w.records)
        .sum();
    assert!(
        carried >= warm,
        "the tasks report {carried} warm records, not {warm}"
    );
    assert!(b.describe("wc").unwrap().standbys.is_empty());
    eventually("a keeps both standbys now", || {
        a.describe("wc").unwrap().standbys.len() == 2
    });
    env.produce("text", 1, &["lazy fox"]);
    texts.push("lazy fox");
    let want = expected_counts(&texts);
    eventually("counts continue exactly on b", || {
        env.latest("counts") == want
    });
    eventually("a's standby follows b's task", || {
        a.query_stale("wc", "counts", b"fox")
            .is_ok_and(|s| s.value.as_deref() == want.get("fox").map(|v| v.as_bytes()))
    });
    // Uninstalled: the standbys stop with the tasks.
    a.uninstall("wc").unwrap();
    assert!(a.versions().is_empty());
}

#[test]
fn a_task_failing_on_a_transient_log_error_starts_again_by_itself() {
    let env = Env::new();
    env.topic("text", 1);
    let log = Arc::new(crate::faulty_log::FaultyLog::new(env.broker.clone()));
    let engine = started_engine(
        &EngineConfig::under(env.dir.path()),
        log.clone(),
        Arc::new(RocksBackend::open(&env.dir.path().join("rocks")).unwrap()),
    );
    engine
        .deploy(
            spec(r#"{"name":"wc","inputs":["text"],"outputs":["counts"],"commit_interval_ms":20}"#),
            module("word-count"),
        )
        .unwrap();
    let count = |k: &[u8]| {
        let v = engine.query("wc", "counts", k).ok().flatten()?;
        Some(String::from_utf8_lossy(&v).into_owned())
    };
    env.produce("text", 0, &["a b a"]);
    eventually("counts", || count(b"a").as_deref() == Some("2"));

    // The log goes away: the task fails with the log's error and says when it tries again.
    log.set_down(true);
    env.produce("text", 0, &["a c"]);
    eventually("failed, restart pending", || {
        let t = &engine.describe("wc").unwrap().tasks[0];
        t.state == TaskState::Failed
            && t.next_restart_ms.is_some()
            && t.last_error
                .as_ref()
                .is_some_and(|e| e.code == "cluster_unavailable")
    });
    // Still down at the restart: it fails again, and waits longer.
    eventually("a second restart", || {
        let t = &engine.describe("wc").unwrap().tasks[0];
        t.restarts >= 1 && t.state == TaskState::Failed && t.next_restart_ms.is_some()
    });

    // The log is back: the task runs again from its last commit, nothing counted twice.
    log.set_down(false);
    eventually("running again", || {
        let t = &engine.describe("wc").unwrap().tasks[0];
        t.state == TaskState::Running && t.next_restart_ms.is_none()
    });
    eventually("exact counts", || {
        count(b"a").as_deref() == Some("3") && count(b"c").as_deref() == Some("1")
    });
    assert_eq!(env.latest("counts")["a"], "3");

    // A task waiting to restart stops at once when deleted.
    log.set_down(true);
    env.produce("text", 0, &["d"]);
    eventually("failed again", || {
        engine.describe("wc").unwrap().tasks[0]
            .next_restart_ms
            .is_some()
    });
    log.set_down(false);
    let started = Instant::now();
    engine.delete("wc", true).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_new_task_that_cannot_make_its_first_commit_starts_again_once_the_log_is_back() {
    let env = Env::new();
    env.topic("text", 1);
    let log = Arc::new(crate::faulty_log::FaultyLog::new(env.broker.clone()));
    let engine = started_engine(
        &EngineConfig::under(env.dir.path()),
        log.clone(),
        Arc::new(MemoryBackend::new()),
    );
    // Down before the first commit (the one pinning the start positions).
    log.set_down(true);
    engine
        .deploy(
            spec(r#"{"name":"wc","inputs":["text"],"outputs":["counts"],"commit_interval_ms":20}"#),
            module("word-count"),
        )
        .unwrap();
    eventually("failed, restart pending", || {
        let t = &engine.describe("wc").unwrap().tasks[0];
        t.state == TaskState::Failed && t.next_restart_ms.is_some()
    });
    eventually("tried again", || {
        let t = &engine.describe("wc").unwrap().tasks[0];
        t.restarts >= 1 && t.next_restart_ms.is_some()
    });
    log.set_down(false);
    env.produce("text", 0, &["a a"]);
    eventually("counts", || {
        env.latest("counts").get("a").map(String::as_str) == Some("2")
    });
    assert_eq!(
        engine.describe("wc").unwrap().tasks[0].state,
        TaskState::Running
    );
}

/// Exactly-once: a newer incarnation of a task's producer (what every task start makes
/// first) fences the running one: its next write is refused (`task_fenced`) and the task
/// fails without committing; resumed, it counts exactly from its last commit, and a
/// committed reader of the output sees no update twice. A cluster engine refuses the
/// guarantee.
#[test]
fn exactly_once_tasks_are_fenced_by_a_newer_incarnation_and_resume_exactly() {
    use crate::task::transaction::transactional_id;
    use weir_broker::txn::TxnCoordinator;
    let env = Env::new();
    let _txn = TxnCoordinator::open_local(&env.broker).unwrap();
    env.topic("text", 1);
    env.produce("text", 0, &["a b", "a"]);
    let engine = env.engine(Arc::new(MemoryBackend::new()));
    let eos = r#"{"name":"wc","inputs":["text"],"outputs":["counts"],"commit_interval_ms":50,"guarantee":"exactly_once"}"#;
    engine.deploy(spec(eos), module("word-count")).unwrap();
    // Every update of `counts`, read committed, in order.
    let updates = || {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let r = env
                .broker
                .read_committed("counts", 0, at, 10_000, 1 << 20)
                .unwrap();
            for rec in &r.records {
                let s = |b: &Option<Bytes>| {
                    String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned()
                };
                out.push((s(&rec.key), s(&rec.value)));
            }
            if r.next_offset <= at || r.next_offset >= r.end_offset {
                return out;
            }
            at = r.next_offset;
        }
    };
    let latest = || -> BTreeMap<String, String> { updates().into_iter().collect() };
    let want = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    eventually("first counts", || {
        latest() == want(&[("a", "2"), ("b", "1")])
    });
    // A newer incarnation (as a restart makes) fences the running task.
    let log: &dyn LogAccess = &env.broker;
    log.txn_init(&transactional_id("wc", 0), 60_000).unwrap();
    env.produce("text", 0, &["b c"]);
    eventually("the zombie fenced", || {
        let d = engine.describe("wc").unwrap();
        d.tasks[0].state == TaskState::Failed
            && d.tasks[0]
                .last_error
                .as_ref()
                .is_some_and(|e| e.code == "task_fenced")
    });
    assert_eq!(
        latest(),
        want(&[("a", "2"), ("b", "1")]),
        "the zombie wrote nothing visible"
    );
    engine.resume("wc").unwrap();
    env.produce("text", 0, &["c"]);
    eventually("exact after the resume", || {
        latest() == want(&[("a", "2"), ("b", "2"), ("c", "2")])
    });
    let mut seen = std::collections::BTreeSet::new();
    for u in updates() {
        assert!(seen.insert(u.clone()), "an update twice: {u:?}");
    }
    // A cluster refuses exactly_once (transactions are not replicated).
    let cluster = env.cluster_engine("c");
    let err = cluster
        .deploy(
            spec(&eos.replace("\"wc\"", "\"wc2\"")),
            module("word-count"),
        )
        .unwrap_err();
    assert_eq!(err.code(), "invalid_spec", "{err}");
}

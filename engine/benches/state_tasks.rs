//! State and tasks (BENCHMARKS.md "State and tasks"):
//!
//! 1. Stateful count throughput: one task (one core: the task thread does the reads, the
//!    processor calls, the RocksDB writes and the appends) runs word-count over a
//!    pre-filled one-partition input of one-word records (10,000 distinct words), through the
//!    repartition topic, a RocksDB store and its changelog, committing every 500 ms (the
//!    default). Timed from deploy to the moment every input and repartition record is
//!    processed (the commits that fell due on the way included), and to the moment the next
//!    commit has made all of it durable (up to one commit interval later). Run with the native Rust
//!    word-count and, when `target/guests/word-count.wasm` exists, the Wasm one.
//! 2. Restore throughput: a changelog partition of N records is restored into an empty
//!    RocksDB store (`restore_task`, the path a task takes when it starts on a node without
//!    its state).
//!
//! `cargo bench -p weir-engine --bench state_tasks` (release). Environment:
//! `WEIR_BENCH_RECORDS` (count input, default 1,000,000), `WEIR_BENCH_RESTORE_RECORDS`
//! (default 1,000,000), `WEIR_BENCH_VALUE_BYTES` (restore value size, default 100),
//! `WEIR_BENCH_DIR` (default `target/bench-state`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_broker::{Broker, BrokerConfig, ProduceRecord, TopicSpec};
use weir_engine::engine::{Engine, EngineConfig};
use weir_engine::log_access::LogAccess;
use weir_engine::native::NativeLoader;
use weir_engine::state::StateBackend;
use weir_engine::state::changelog::{changelog_spec, changelog_topic, to_records};
use weir_engine::state::restore::restore_task;
use weir_engine::state::rocks::RocksBackend;
use weir_engine::task::{ModuleLoader, ProcessorSpec, WasmLoader};
use weir_engine::task_id::TaskId;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fresh_dir(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("bench dir");
    d
}

/// Word `i` of a 10,000-word vocabulary.
fn word(i: usize) -> String {
    format!("word{:05}", (i.wrapping_mul(7919)) % 10_000)
}

fn fill_input(broker: &Broker, records: usize) {
    broker
        .create_topic(TopicSpec::new("text", 1))
        .expect("create input");
    let mut i = 0;
    while i < records {
        let n = (records - i).min(10_000);
        let batch = (i..i + n)
            .map(|j| ProduceRecord {
                value: Some(Bytes::from(word(j))),
                timestamp: Some(1_700_000_000_000 + j as i64),
                partition: Some(0),
                ..ProduceRecord::default()
            })
            .collect();
        broker.produce("text", batch).expect("produce");
        i += n;
    }
    broker.flush_all().expect("flush");
}

/// Deploys word-count over the filled input; returns records/s of input processed.
fn count_run(
    base: &Path,
    label: &str,
    loader: Arc<dyn ModuleLoader>,
    module: Bytes,
    records: usize,
) -> f64 {
    let dir = fresh_dir(base, label);
    let broker = Broker::open(BrokerConfig::new(dir.join("log"))).expect("broker");
    fill_input(&broker, records);
    let backend: Arc<dyn StateBackend> =
        Arc::new(RocksBackend::open(&dir.join("rocksdb")).expect("rocksdb"));
    let engine = Engine::open(
        &EngineConfig::under(&dir),
        Arc::new(broker.clone()),
        backend,
        loader,
    )
    .expect("engine");
    let spec: ProcessorSpec =
        serde_json::from_str(r#"{"name":"wc","inputs":["text"],"outputs":["counts"]}"#)
            .expect("spec");
    let start = Instant::now();
    engine.deploy(spec, module).expect("deploy");
    // Processed: every input record and every repartitioned word taken (positions at the
    // ends, with the commits that fell due on the way). Committed: the next commit tick has
    // also made all of it durable (up to one commit interval later, 500 ms by default).
    let mut processed: Option<f64> = None;
    loop {
        let d = engine.describe("wc").expect("describe");
        let input_done = d
            .tasks
            .iter()
            .all(|t| t.inputs.len() == 2 && t.inputs[0].end_offset == records as i64);
        let at_end = input_done
            && d.tasks.iter().all(|t| {
                t.inputs
                    .iter()
                    .all(|i| i.position == i.end_offset && i.end_offset > 0)
            });
        if at_end && processed.is_none() {
            processed = Some(start.elapsed().as_secs_f64());
        }
        let committed = input_done
            && d.tasks.iter().all(|t| {
                t.inputs
                    .iter()
                    .all(|i| i.committed_offset == Some(i.end_offset) && i.end_offset > 0)
            });
        if committed {
            break;
        }
        if let Some(e) = d.tasks.iter().find_map(|t| t.last_error.clone()) {
            panic!("{label}: task failed: {e:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let committed_secs = start.elapsed().as_secs_f64();
    let secs = processed.unwrap_or(committed_secs);
    let d = engine.describe("wc").expect("describe");
    let changelog_end = broker
        .partition_offsets(&changelog_topic("wc", "counts"), 0)
        .expect("changelog")
        .1;
    engine.shutdown();
    let rate = records as f64 / secs;
    println!(
        "| word-count, {label} | {records} | {secs:.2} | {rate:.0} | {committed_secs:.2} | {:.0} | {} | {changelog_end} |",
        records as f64 / committed_secs,
        d.tasks[0].commits
    );
    rate
}

fn restore_run(base: &Path, records: usize, value_bytes: usize) {
    let dir = fresh_dir(base, "restore");
    let broker = Broker::open(BrokerConfig::new(dir.join("log"))).expect("broker");
    let log: &dyn LogAccess = &broker;
    log.ensure_topic(changelog_spec("r", "s", 1))
        .expect("changelog");
    let value = Bytes::from(vec![b'v'; value_bytes]);
    let mut i = 0;
    while i < records {
        let n = (records - i).min(10_000);
        let entries: Vec<(Bytes, Option<Bytes>)> = (i..i + n)
            .map(|j| (Bytes::from(format!("key{j:010}")), Some(value.clone())))
            .collect();
        log.produce(&changelog_topic("r", "s"), to_records(&entries, 0))
            .expect("append");
        i += n;
    }
    broker.flush_all().expect("flush");
    let on_disk = broker
        .describe_topic(&changelog_topic("r", "s"))
        .expect("describe")
        .partition_offsets[0]
        .size_bytes;
    let backend = RocksBackend::open(&dir.join("rocksdb")).expect("rocksdb");
    let state = backend.open(&TaskId::new("r", 0)).expect("open");
    let start = Instant::now();
    let out = restore_task(log, &*state, "r", 0, &["s".to_string()], &mut |_| {}).expect("restore");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(out.records, records as u64);
    println!(
        "| restore {records} × {value_bytes} B values | {:.1} MB/s (key+value) | {:.1} MB/s (changelog on disk) | {:.0} records/s | {secs:.2} s |",
        out.bytes as f64 / secs / 1e6,
        on_disk as f64 / secs / 1e6,
        records as f64 / secs
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let base = PathBuf::from(
        std::env::var("WEIR_BENCH_DIR").unwrap_or_else(|_| "target/bench-state".into()),
    );
    let records = env("WEIR_BENCH_RECORDS", 1_000_000);
    let restore_records = env("WEIR_BENCH_RESTORE_RECORDS", 1_000_000);
    let value_bytes = env("WEIR_BENCH_VALUE_BYTES", 100);

    // `WEIR_BENCH_ONLY=native|wasm|restore` runs one part.
    let only = std::env::var("WEIR_BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only == part;
    println!(
        "| case | input records | s to processed | records/s | s to committed | records/s \
         | commits | changelog records |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    if run("native") {
        count_run(
            &base,
            "native Rust",
            Arc::new(NativeLoader),
            Bytes::from_static(b"native:word-count"),
            records,
        );
    }
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests/word-count.wasm");
    match std::fs::read(&guest).ok().filter(|_| run("wasm")) {
        Some(wasm) => {
            let cache = fresh_dir(&base, "wasm-cache");
            let loader = WasmLoader::new(&cache).expect("wasm engine");
            count_run(
                &base,
                "Wasm guest",
                Arc::new(loader),
                Bytes::from(wasm),
                records,
            );
        }
        None if run("wasm") => println!(
            "| word-count, Wasm guest | skipped: {} missing (scripts/build-guests.sh) | | | | |",
            guest.display()
        ),
        None => {}
    }
    if run("restore") {
        println!();
        restore_run(&base, restore_records, value_bytes);
    }
    let _ = std::fs::remove_dir_all(&base);
}

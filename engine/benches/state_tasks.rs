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
//! 2. Uppercase through a whole task: the same one-task setup over 1M records of a 100-byte
//!    value and an 8-byte key, `examples/uppercase` as a Wasm guest against the same logic
//!    compiled natively (`native:uppercase-example`), three alternating runs each: what a
//!    record costs end to end (read, process, output batches appended, commits).
//! 3. Restore throughput: a changelog partition of N records is restored into an empty
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
use weir_engine::state::restore::{WhenBehind, restore_task};
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

/// Creates the one-partition topic `topic` and appends `records` records, record `j` with
/// the key and value `make(j)` gives and timestamp 1,700,000,000,000 + `j`.
fn fill(
    broker: &Broker,
    topic: &str,
    records: usize,
    make: impl Fn(usize) -> (Option<Bytes>, Bytes),
) {
    broker
        .create_topic(TopicSpec::new(topic, 1))
        .expect("create input");
    let mut i = 0;
    while i < records {
        let n = (records - i).min(10_000);
        let batch = (i..i + n)
            .map(|j| {
                let (key, value) = make(j);
                ProduceRecord {
                    key,
                    value: Some(value),
                    timestamp: Some(1_700_000_000_000 + j as i64),
                    partition: Some(0),
                    ..ProduceRecord::default()
                }
            })
            .collect();
        broker.produce(topic, batch).expect("produce");
        i += n;
    }
    broker.flush_all().expect("flush");
}

/// What a run deploys: word-count (input `text`, through its repartition topic) or uppercase
/// (input `in`, 100-byte values with 8-byte keys, to `out`).
#[derive(Clone, Copy, PartialEq)]
enum Job {
    WordCount,
    Uppercase,
}

/// Record `j` of the uppercase input: an 8-byte key and a 100-byte value.
fn keyed_value(j: usize) -> (Option<Bytes>, Bytes) {
    let mut value = format!("record {j:08} ").into_bytes();
    value.resize(100, b'a' + (j % 26) as u8);
    (Some(Bytes::from(format!("k{j:07}"))), Bytes::from(value))
}

/// Deploys `job` over its filled input; returns records/s of input processed.
fn task_run(
    base: &Path,
    job: Job,
    label: &str,
    loader: Arc<dyn ModuleLoader>,
    module: Bytes,
    records: usize,
) -> f64 {
    let dir = fresh_dir(base, label);
    let broker = Broker::open(BrokerConfig::new(dir.join("log"))).expect("broker");
    // Word-count's repartition topic gets records; uppercase leaves it empty.
    let (spec, name, repartitions) = match job {
        Job::WordCount => {
            fill(&broker, "text", records, |j| (None, Bytes::from(word(j))));
            (
                r#"{"name":"wc","inputs":["text"],"outputs":["counts"]}"#,
                "wc",
                true,
            )
        }
        Job::Uppercase => {
            fill(&broker, "in", records, keyed_value);
            (
                r#"{"name":"up","inputs":["in"],"outputs":["out"]}"#,
                "up",
                false,
            )
        }
    };
    let backend: Arc<dyn StateBackend> =
        Arc::new(RocksBackend::open(&dir.join("rocksdb")).expect("rocksdb"));
    let engine = Engine::open(
        &EngineConfig::under(&dir),
        Arc::new(broker.clone()),
        backend,
        loader,
    )
    .expect("engine");
    let spec: ProcessorSpec = serde_json::from_str(spec).expect("spec");
    let start = Instant::now();
    engine.deploy(spec, module).expect("deploy");
    // Processed: every input record and every repartitioned word taken (positions at the
    // ends, with the commits that fell due on the way). Committed: the next commit tick has
    // also made all of it durable (up to one commit interval later, 500 ms by default).
    let mut processed: Option<f64> = None;
    loop {
        let d = engine.describe(name).expect("describe");
        let input_done = d
            .tasks
            .iter()
            .all(|t| t.inputs.len() == 2 && t.inputs[0].end_offset == records as i64);
        let at_end = input_done
            && d.tasks.iter().all(|t| {
                t.inputs
                    .iter()
                    .all(|i| i.position == i.end_offset && (i.end_offset > 0 || !repartitions))
            });
        if at_end && processed.is_none() {
            processed = Some(start.elapsed().as_secs_f64());
        }
        let committed = input_done
            && d.tasks.iter().all(|t| {
                t.inputs.iter().all(|i| {
                    i.committed_offset == Some(i.end_offset) && (i.end_offset > 0 || !repartitions)
                })
            });
        if committed {
            break;
        }
        if let Some(e) = d.tasks.iter().find_map(|t| t.last_error.clone()) {
            panic!("{label}: task failed: {e:?}");
        }
        if start.elapsed() > Duration::from_secs(120) {
            panic!("{label}: not done after 120 s: {d:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let committed_secs = start.elapsed().as_secs_f64();
    let secs = processed.unwrap_or(committed_secs);
    let d = engine.describe(name).expect("describe");
    let (what, written) = match job {
        Job::WordCount => (
            "word-count",
            broker
                .partition_offsets(&changelog_topic("wc", "counts"), 0)
                .expect("changelog")
                .1,
        ),
        Job::Uppercase => (
            "uppercase",
            broker.partition_offsets("out", 0).expect("out").1,
        ),
    };
    engine.shutdown();
    let rate = records as f64 / secs;
    println!(
        "| {what}, {label} | {records} | {secs:.2} | {rate:.0} | {committed_secs:.2} | {:.0} | {} | {written} |",
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
    let out = restore_task(
        log,
        &*state,
        "r",
        0,
        &["s".to_string()],
        WhenBehind::Wipe,
        &mut |_| {},
    )
    .expect("restore");
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

    // `WEIR_BENCH_ONLY=native|wasm|uppercase|restore` runs one part.
    let only = std::env::var("WEIR_BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only == part;
    println!(
        "| case | input records | s to processed | records/s | s to committed | records/s \
         | commits | changelog / output records |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let guest = |name: &str| {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/guests/{name}.wasm"));
        let wasm = std::fs::read(&path).ok();
        if wasm.is_none() {
            println!(
                "| {name}, Wasm guest | skipped: {} missing (scripts/build-guests.sh) | | | | | | |",
                path.display()
            );
        }
        wasm.map(Bytes::from)
    };
    let wasm_loader = || -> Arc<dyn ModuleLoader> {
        let cache = fresh_dir(&base, "wasm-cache");
        Arc::new(WasmLoader::new(&cache).expect("wasm engine"))
    };
    if run("native") {
        task_run(
            &base,
            Job::WordCount,
            "native Rust",
            Arc::new(NativeLoader),
            Bytes::from_static(b"native:word-count"),
            records,
        );
    }
    if run("wasm")
        && let Some(wasm) = guest("word-count")
    {
        task_run(
            &base,
            Job::WordCount,
            "Wasm guest",
            wasm_loader(),
            wasm,
            records,
        );
    }
    // Uppercase through a whole task (read the input partition, call the processor, build and
    // append the output batches, commit), native and Wasm in alternating runs; the best of
    // three of each counts.
    if run("uppercase")
        && let Some(wasm) = guest("uppercase")
    {
        // Compiled once (into the cache the runs share), as a deployed processor is.
        let loader = wasm_loader();
        loader
            .load(&wasm, &weir_engine::limits::ProcessorLimits::default())
            .map_err(|e| e.message)
            .expect("compile uppercase");
        let (mut native, mut guest) = (0f64, 0f64);
        for _ in 0..3 {
            native = native.max(task_run(
                &base,
                Job::Uppercase,
                "native Rust",
                Arc::new(NativeLoader),
                Bytes::from_static(b"native:uppercase-example"),
                records,
            ));
            guest = guest.max(task_run(
                &base,
                Job::Uppercase,
                "Wasm guest",
                loader.clone(),
                wasm.clone(),
                records,
            ));
        }
        println!(
            "\nuppercase through a task, best of 3: native {:.0} ns/record, Wasm {:.0} ns/record \
             ({:.2}× native)",
            1e9 / native,
            1e9 / guest,
            native / guest
        );
    }
    if run("restore") {
        println!();
        restore_run(&base, restore_records, value_bytes);
    }
    let _ = std::fs::remove_dir_all(&base);
}

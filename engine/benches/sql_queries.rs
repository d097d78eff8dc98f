//! Streaming SQL throughput (BENCHMARKS.md "Streaming SQL"): persistent queries over a
//! pre-filled one-partition stream of JSON orders, each timed from CREATE to the moment every
//! input (and repartition) offset is committed, with RocksDB state and changelogs, beside
//! a baseline measured in the same run: the native `uppercase` processor over the same
//! records (read, call, append, commit, no JSON).
//!
//! Cases: a filter + projection (`WHERE` + arithmetic + `UCASE`), and the windowed count
//! (tumbling 1 minute, GROUP BY a non-key column, so through the repartition topic). Then the
//! per-row cost of a UDF in a query: `SELECT f(customer) FROM orders` with the built-in
//! `UCASE` against the Rust (`MASK`), Python (`PY_UPPER`) and JavaScript (`JS_REVERSE`) UDFs
//! from `target/guests/` (`scripts/build-guests.sh`; missing ones are skipped). The UDF's
//! per-row cost is (query time − built-in query time) / rows. Every case commits every 50 ms
//! (not the default 500 ms), so the end is seen within 50 ms of the work.
//!
//! `cargo bench -p weir-engine --bench sql_queries`. Environment: `WEIR_BENCH_RECORDS`
//! (default 500,000), `WEIR_BENCH_UDF_RECORDS` (default 100,000), `WEIR_BENCH_DIR` (default
//! `target/bench-sql`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_broker::{Broker, BrokerConfig, ProduceRecord, TopicSpec};
use weir_engine::engine::{Engine, EngineConfig};
use weir_engine::native::NativeLoader;
use weir_engine::sql::{NoFunctions, SqlLoader, SqlService};
use weir_engine::state::rocks::RocksBackend;
use weir_engine::task::ProcessorSpec;
use weir_engine::udf::{FunctionCatalog, FunctionRegistry, FunctionRegistryConfig};
use weir_engine::wasm::{WasmConfig, WasmEngine};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Node {
    broker: Broker,
    engine: Engine,
    sql: SqlService,
}

fn node(base: &Path, label: &str, records: usize) -> Node {
    node_with(base, label, records, &[])
}

/// A node whose function registry holds `udfs` (name, guest file in `target/guests/`).
fn node_with(base: &Path, label: &str, records: usize, udfs: &[(&str, &str)]) -> Node {
    let dir = base.join(label.replace(' ', "-"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let broker = Broker::open(BrokerConfig::new(dir.join("log"))).expect("broker");
    broker
        .create_topic(TopicSpec::new("orders", 1))
        .expect("create input");
    let t0: i64 = 1_700_000_000_000;
    let mut i = 0;
    while i < records {
        let n = (records - i).min(10_000);
        let batch = (i..i + n)
            .map(|j| ProduceRecord {
                key: Some(Bytes::from(j.to_string())),
                value: Some(Bytes::from(format!(
                    r#"{{"id":{j},"customer":"customer-{:04}","amount":{}.5,"ts":{}}}"#,
                    (j * 7919) % 1000,
                    j % 100,
                    t0 + j as i64 * 10
                ))),
                partition: Some(0),
                ..ProduceRecord::default()
            })
            .collect();
        broker.produce("orders", batch).expect("fill");
        i += n;
    }
    let functions: Arc<dyn FunctionCatalog> = if udfs.is_empty() {
        Arc::new(NoFunctions)
    } else {
        let wasm = WasmEngine::new(WasmConfig::new(base.join("wasm-cache"))).expect("wasm");
        let registry =
            FunctionRegistry::open(FunctionRegistryConfig::under(&dir), wasm).expect("registry");
        for (name, file) in udfs {
            let module = std::fs::read(guests().join(format!("{file}.wasm"))).expect("guest");
            registry
                .create(name, Bytes::from(module), false)
                .expect("register");
        }
        Arc::new(registry)
    };
    let engine = Engine::open(
        &EngineConfig::under(&dir),
        Arc::new(broker.clone()),
        Arc::new(RocksBackend::open(&dir.join("rocksdb")).expect("rocksdb")),
        Arc::new(SqlLoader::new(Arc::new(NativeLoader), functions.clone())),
    )
    .expect("engine");
    let sql = SqlService::open(
        &dir.join("sql"),
        engine.clone(),
        Arc::new(broker.clone()),
        functions,
        None,
    )
    .expect("sql");
    sql.execute(
        "CREATE STREAM orders (id BIGINT, customer VARCHAR, amount DOUBLE, ts BIGINT) \
         WITH (KAFKA_TOPIC='orders', TIMESTAMP='ts');",
        &BTreeMap::new(),
    )
    .expect("create stream");
    Node {
        broker,
        engine,
        sql,
    }
}

/// Waits until processor `name` has committed every input offset; returns seconds since
/// `start`.
fn wait_done(engine: &Engine, name: &str, records: usize, start: Instant) -> f64 {
    loop {
        let d = engine.describe(name).expect("describe");
        let done = !d.tasks.is_empty()
            && d.tasks.iter().all(|t| {
                !t.inputs.is_empty()
                    && t.inputs
                        .iter()
                        .all(|i| i.committed_offset == Some(i.end_offset))
                    && t.inputs[0].end_offset == records as i64
            });
        if done {
            return start.elapsed().as_secs_f64();
        }
        if let Some(e) = d.tasks.iter().find_map(|t| t.last_error.clone()) {
            panic!("{name}: task failed: {e:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Commits every 50 ms, so that "every offset committed" is within 50 ms of the work done.
fn props() -> BTreeMap<String, String> {
    [("commit.interval.ms".to_string(), "50".to_string())].into()
}

fn guests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests")
}

fn report(case: &str, records: usize, secs: f64, baseline: Option<f64>) -> f64 {
    let rate = records as f64 / secs;
    let ratio = baseline
        .map(|b| format!("{:.2}", b / rate))
        .unwrap_or_else(|| "1.00".into());
    println!("| {case} | {records} | {secs:.2} | {rate:.0} | {ratio} |");
    rate
}

fn main() {
    let base = PathBuf::from(
        std::env::var("WEIR_BENCH_DIR").unwrap_or_else(|_| "target/bench-sql".into()),
    );
    let records = env("WEIR_BENCH_RECORDS", 500_000);
    println!("| case | records | seconds | records/s | cost vs baseline |");
    println!("|---|---:|---:|---:|---:|");

    let n = node(&base, "baseline", records);
    let spec: ProcessorSpec = serde_json::from_str(
        r#"{"name":"up","inputs":["orders"],"outputs":["up"],"commit_interval_ms":50}"#,
    )
    .expect("spec");
    let start = Instant::now();
    n.engine
        .deploy(spec, Bytes::from_static(b"native:uppercase"))
        .expect("deploy");
    let secs = wait_done(&n.engine, "up", records, start);
    let baseline = report("baseline: native uppercase processor", records, secs, None);
    n.engine.shutdown();
    drop(n);

    let cases = [
        (
            "filter + projection",
            "CREATE STREAM big AS SELECT id, UCASE(customer) AS c, amount * 1.2 AS gross \
             FROM orders WHERE amount > 49;",
            "CSAS_BIG_1",
        ),
        (
            "windowed count (tumbling 1 min, GROUP BY non-key)",
            "CREATE TABLE per_min AS SELECT customer, COUNT(*) AS n FROM orders \
             WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY customer;",
            "CTAS_PER_MIN_1",
        ),
    ];
    for (case, statement, id) in cases {
        let n = node(&base, case, records);
        let start = Instant::now();
        n.sql.execute(statement, &props()).expect("create");
        let secs = wait_done(&n.engine, id, records, start);
        report(case, records, secs, Some(baseline));
        let _ = &n.broker;
        n.engine.shutdown();
    }

    // UDF per-row cost against the built-in, in one run.
    let rows = env("WEIR_BENCH_UDF_RECORDS", 100_000);
    println!();
    println!(
        "| function in `SELECT f(customer) AS x FROM orders` | records | seconds | records/s | extra ns/row vs UCASE |"
    );
    println!("|---|---:|---:|---:|---:|");
    let mut builtin_secs = None;
    for (label, func, file) in [
        ("UCASE (built-in)", "UCASE", ""),
        ("MASK (Rust UDF)", "MASK", "udf-mask"),
        ("PY_UPPER (Python UDF)", "PY_UPPER", "udf-py-upper"),
        (
            "JS_REVERSE (JavaScript UDF)",
            "JS_REVERSE",
            "udf-js-reverse",
        ),
    ] {
        if !file.is_empty() && !guests().join(format!("{file}.wasm")).exists() {
            println!("| {label} | skipped: target/guests/{file}.wasm missing | | | |");
            continue;
        }
        let udfs: Vec<(&str, &str)> = if file.is_empty() {
            vec![]
        } else {
            vec![(func, file)]
        };
        let n = node_with(&base, label, rows, &udfs);
        let start = Instant::now();
        n.sql
            .execute(
                &format!("CREATE STREAM out AS SELECT {func}(customer) AS x FROM orders;"),
                &props(),
            )
            .expect("create");
        let secs = wait_done(&n.engine, "CSAS_OUT_1", rows, start);
        let extra = match builtin_secs {
            None => {
                builtin_secs = Some(secs);
                "0".to_string()
            }
            Some(b) => format!("{:.0}", (secs - b) * 1e9 / rows as f64),
        };
        println!(
            "| {label} | {rows} | {secs:.2} | {:.0} | {extra} |",
            rows as f64 / secs
        );
        n.engine.shutdown();
    }
    let _ = std::fs::remove_dir_all(&base);
}

//! The cost of the Wasm boundary, side by side in one run (BENCHMARKS.md, "Wasm processors"):
//!
//! - per-record cost of the `uppercase` guest (examples/uppercase, built by
//!   scripts/build-guests.sh) against the same function compiled natively in two ways
//!   (`weir_engine::native::UppercaseExample`: into a reused buffer, emitted borrowed; and
//!   into a new `Vec` per value, emitted as an owned record), all driven through
//!   `ProcessorLogic` into the same sink `TaskHost`, at batch sizes 1, 16, 256, 4096: once
//!   into a sink that only counts (the boundary alone), once into one that copies every
//!   record into a record batch as the task does;
//! - instantiation time per task (`InstancePre` + pooling allocator), with and without `init`;
//! - compiling a component vs loading it from the on-disk cache.
//!
//! Run: `scripts/build-guests.sh && cargo bench -p weir-engine --bench wasm_boundary`.
//! `-- ab` compares the guest (and a second build of it named by `WEIR_BENCH_WASM_B`) with the
//! lean native port at batch 256 only; `-- profile` runs the guest alone for `perf record`.

use bytes::Bytes;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use weir_broker::batch_builder::BatchBuilder;
use weir_engine::host::{
    HostError, InputRecord, LogLevel, OutputRecord, OutputRef, ProcessorError, ProcessorLogic,
    StoreHandle, TaskHost, TimerKind,
};
use weir_engine::limits::ProcessorLimits;
use weir_engine::native::UppercaseExample;
use weir_engine::wasm::{WasmConfig, WasmEngine};

/// A task that counts what it is given and, with `batch`, also does with it what the real
/// task does (`task::output`): copies it into a record batch (dropped when full instead of
/// appended).
#[derive(Default)]
struct Sink {
    records: u64,
    bytes: u64,
    batch: Option<BatchBuilder>,
}

impl Sink {
    fn batching() -> Sink {
        Sink {
            batch: Some(BatchBuilder::new()),
            ..Sink::default()
        }
    }
}

impl TaskHost for Sink {
    fn partition(&self) -> i32 {
        0
    }
    fn stream_time(&self) -> i64 {
        0
    }
    fn emit(&mut self, output: &str, record: OutputRecord) -> Result<(), HostError> {
        if self.batch.is_none() {
            self.records += 1;
            self.bytes += record.value.map_or(0, |v| v.len() as u64);
            return Ok(());
        }
        // As `TaskContext::emit` does: a borrowed view of the owned record.
        record.with_ref(|r| self.emit_ref(output, r))
    }
    fn emit_ref(&mut self, _output: &str, record: OutputRef<'_>) -> Result<(), HostError> {
        self.records += 1;
        self.bytes += record.value.map_or(0, |v| v.len() as u64);
        if let Some(batch) = &mut self.batch {
            batch.push(
                record.timestamp.unwrap_or(0),
                record.key,
                record.value,
                record.headers.iter().copied(),
            );
            if batch.size() >= 1 << 20 {
                batch.finish();
            }
        }
        Ok(())
    }
    fn log(&mut self, _level: LogLevel, _message: &str) {}
    fn register_timer(&mut self, _kind: TimerKind, _time: i64) -> Result<(), HostError> {
        Ok(())
    }
    fn open_store(&mut self, _name: &str) -> Result<StoreHandle, HostError> {
        Err(HostError("no stores here".into()))
    }
    fn get(&mut self, _: StoreHandle, _: &[u8]) -> Result<Option<Bytes>, HostError> {
        Ok(None)
    }
    fn put(&mut self, _: StoreHandle, _: &[u8], _: &[u8]) -> Result<(), HostError> {
        Ok(())
    }
    fn delete(&mut self, _: StoreHandle, _: &[u8]) -> Result<(), HostError> {
        Ok(())
    }
    fn range(
        &mut self,
        _: StoreHandle,
        _: Option<&[u8]>,
        _: Option<&[u8]>,
        _: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, HostError> {
        Ok(Vec::new())
    }
}

/// `examples/uppercase` compiled natively the plain way: a new `Vec` per value, emitted as an
/// owned `OutputRecord` (the key shared by reference count).
struct NativeUppercaseOwned;

impl ProcessorLogic for NativeUppercaseOwned {
    fn process(
        &mut self,
        host: &mut dyn TaskHost,
        batch: &[InputRecord],
    ) -> Result<(), ProcessorError> {
        for r in batch {
            let value = r.value.as_ref().map(|v| {
                let mut upper = v.to_vec();
                upper.make_ascii_uppercase();
                Bytes::from(upper)
            });
            let out = OutputRecord {
                key: r.key.clone(),
                value,
                headers: r.headers.clone(),
                timestamp: Some(r.timestamp),
            };
            host.emit("", out).map_err(|e| ProcessorError::Guest(e.0))?;
        }
        Ok(())
    }
}

/// `target/guests/{name}.wasm`, or the file `WEIR_BENCH_WASM` names (to compare two builds
/// of a guest: `WEIR_BENCH_WASM=/tmp/a.wasm cargo bench ... -- profile`).
fn guest(name: &str) -> Vec<u8> {
    let path = std::env::var_os("WEIR_BENCH_WASM").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/guests/{name}.wasm")),
        PathBuf::from,
    );
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): run scripts/build-guests.sh first",
            path.display()
        )
    })
}

/// 100-byte values, 8-byte keys, like the measurements in shared/notes/toolchain-facts.md.
fn batch(n: usize) -> Vec<InputRecord> {
    // One topic name shared by all records, as the task shares it per input partition.
    let topic: std::sync::Arc<str> = "in".into();
    (0..n)
        .map(|i| {
            let mut value = format!("record {i:08} ").into_bytes();
            value.resize(100, b'a' + (i % 26) as u8);
            InputRecord {
                topic: topic.clone(),
                partition: 0,
                offset: i as i64,
                key: Some(Bytes::from(format!("k{i:07}"))),
                value: Some(Bytes::from(value)),
                headers: vec![],
                timestamp: 1_700_000_000_000 + i as i64,
            }
        })
        .collect()
}

/// ns per record of each processor: rounds of each alternate (so that a burst of load from
/// elsewhere hits all alike), and the best round of each counts.
fn ns_per_record(
    logics: &mut [&mut dyn ProcessorLogic],
    records: &[InputRecord],
    rounds: usize,
    mut sink: Sink,
) -> Vec<f64> {
    let per_round = 100_000usize.max(records.len());
    let calls = per_round.div_ceil(records.len());
    let mut run = |logic: &mut dyn ProcessorLogic| {
        let started = Instant::now();
        for _ in 0..calls {
            logic.process(&mut sink, records).unwrap();
        }
        started.elapsed().as_nanos() as f64 / (calls * records.len()) as f64
    };
    // Warm-up.
    for l in logics.iter_mut() {
        run(&mut **l);
    }
    let mut best = vec![f64::MAX; logics.len()];
    for _ in 0..rounds {
        for (b, l) in best.iter_mut().zip(logics.iter_mut()) {
            *b = b.min(run(&mut **l));
        }
    }
    assert!(sink.records > 0 && sink.bytes > 0);
    best
}

fn main() {
    // `cargo bench` passes `--bench`. `-- profile` runs only the Wasm guest at batch 256 for
    // 3 s (`WEIR_BENCH_SECS`), with a perf map of the guest's code (for `perf record`).
    let profile = std::env::args().any(|a| a == "profile");
    let cache = tempfile::tempdir().unwrap();
    let mut config = WasmConfig::new(cache.path());
    config.max_instances = 1100;
    config.perf_map = profile;
    let engine = WasmEngine::new(config.clone()).unwrap();
    let wasm = guest("uppercase");
    let limits = ProcessorLimits::default();
    let module = engine.load_processor(&wasm, &limits).unwrap();
    if profile {
        let records = batch(256);
        let mut logic = module.instantiate(&limits, "bench/0").unwrap();
        logic.init(&mut Sink::default(), &[]).unwrap();
        let mut sink = Sink::default();
        let started = Instant::now();
        let mut calls = 0u64;
        let secs: f64 = std::env::var("WEIR_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0);
        while started.elapsed() < Duration::from_secs_f64(secs) {
            logic.process(&mut sink, &records).unwrap();
            calls += 1;
        }
        let ns = started.elapsed().as_nanos() as f64 / (calls * 256) as f64;
        println!(
            "wasm, batch 256: {ns:.1} ns/record ({} records)",
            calls * 256
        );
        return;
    }

    // `-- ab`: batch 256 only, the guest (and a second build of it, `WEIR_BENCH_WASM_B`) against
    // the lean native port in alternating rounds, for comparing two builds of the guest or the
    // host within one run.
    if std::env::args().any(|a| a == "ab") {
        let other = std::env::var_os("WEIR_BENCH_WASM_B").map(|path| {
            let wasm = std::fs::read(&path).unwrap();
            engine.load_processor(&wasm, &limits).unwrap()
        });
        let records = batch(256);
        for batching in [false, true] {
            let mut a = module.instantiate(&limits, "bench/a").unwrap();
            a.init(&mut Sink::default(), &[]).unwrap();
            let mut b = other
                .as_ref()
                .map(|m| m.instantiate(&limits, "bench/b").unwrap());
            if let Some(b) = &mut b {
                b.init(&mut Sink::default(), &[]).unwrap();
            }
            let mut native = UppercaseExample::default();
            let sink = if batching {
                Sink::batching()
            } else {
                Sink::default()
            };
            let mut logics: Vec<&mut dyn ProcessorLogic> = vec![&mut native, a.as_mut()];
            if let Some(b) = &mut b {
                logics.push(b.as_mut());
            }
            let ns = ns_per_record(&mut logics, &records, 25, sink);
            let sink = if batching {
                "batch-building"
            } else {
                "counting"
            };
            print!("{sink} sink, batch 256: native {:.1} ns", ns[0]);
            for (name, wasm) in ["A", "B"].iter().zip(&ns[1..]) {
                print!(" | wasm {name} {wasm:.1} ns = {:.2}×", wasm / ns[0]);
            }
            println!();
        }
        return;
    }

    for (title, batching) in [
        (
            "into a task that only counts the records (the boundary alone)",
            false,
        ),
        (
            "into a task that copies them into a record batch, as the real task does",
            true,
        ),
    ] {
        println!(
            "## uppercase: per-record cost, Wasm guest vs native, {title} \
             (best of 15 alternating rounds)\n"
        );
        println!(
            "| batch | wasm ns/record | native, emit_ref + scratch buffer | wasm / native \
             | native, Vec + OutputRecord | wasm / native |"
        );
        println!("|---:|---:|---:|---:|---:|---:|");
        for n in [1usize, 16, 256, 4096] {
            let records = batch(n);
            let mut wasm_logic = module.instantiate(&limits, "bench/0").unwrap();
            wasm_logic.init(&mut Sink::default(), &[]).unwrap();
            let mut native = UppercaseExample::default();
            let mut owned = NativeUppercaseOwned;
            let sink = if batching {
                Sink::batching()
            } else {
                Sink::default()
            };
            let ns = ns_per_record(
                &mut [wasm_logic.as_mut(), &mut native, &mut owned],
                &records,
                15,
                sink,
            );
            println!(
                "| {n} | {:.1} | {:.1} | {:.2}× | {:.1} | {:.2}× |",
                ns[0],
                ns[1],
                ns[0] / ns[1],
                ns[2],
                ns[0] / ns[2]
            );
        }
        println!();
    }

    println!("\n## instantiation per task (pooling allocator, InstancePre)\n");
    let time_instances = |with_init: bool| {
        let rounds = 1000;
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            for i in 0..rounds {
                let mut p = module.instantiate(&limits, "bench/i").unwrap();
                if with_init {
                    p.init(&mut Sink::default(), &[]).unwrap();
                }
                std::hint::black_box(i);
                drop(p);
            }
            best = best.min(started.elapsed() / rounds);
        }
        best
    };
    let bare = time_instances(false);
    let with_init = time_instances(true);
    // Many alive at once (a node running many tasks): slots are not reused.
    let started = Instant::now();
    let many: Vec<_> = (0..1000)
        .map(|_| module.instantiate(&limits, "bench/many").unwrap())
        .collect();
    let alive = started.elapsed() / 1000;
    drop(many);
    println!("| case | µs per instance |");
    println!("|---|---:|");
    println!(
        "| instantiate (slot reused) | {:.1} |",
        bare.as_secs_f64() * 1e6
    );
    println!(
        "| instantiate + init (slot reused) | {:.1} |",
        with_init.as_secs_f64() * 1e6
    );
    println!(
        "| instantiate 1000 alive at once | {:.1} |",
        alive.as_secs_f64() * 1e6
    );

    println!(
        "\n## compile vs cached load ({} KiB component)\n",
        wasm.len() / 1024
    );
    let mut compile = Duration::MAX;
    let mut cached = Duration::MAX;
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let mut c = WasmConfig::new(dir.path());
        c.max_instances = 4;
        let e1 = WasmEngine::new(c.clone()).unwrap();
        let started = Instant::now();
        let m = e1.load_processor(&wasm, &limits).unwrap();
        compile = compile.min(started.elapsed());
        assert!(!m.from_cache());
        let e2 = WasmEngine::new(c).unwrap();
        let started = Instant::now();
        let m = e2.load_processor(&wasm, &limits).unwrap();
        cached = cached.min(started.elapsed());
        assert!(m.from_cache());
    }
    println!("| case | ms (best of 5, incl. validation and InstancePre) |");
    println!("|---|---:|");
    println!(
        "| compile (Cranelift) + write cache | {:.2} |",
        compile.as_secs_f64() * 1e3
    );
    println!("| load from cache | {:.2} |", cached.as_secs_f64() * 1e3);
}

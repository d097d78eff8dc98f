//! The cost of calling a UDF, per row, side by side in one run (BENCHMARKS.md, "UDF calls"):
//! `mask` (Rust, examples/udf-mask), `py_upper` (Python, componentize-py) and `js_reverse`
//! (JavaScript, componentize-js), each called through [`ScalarUdf::call`] in batches of 256
//! rows, against the same string function compiled natively and called through the same
//! trait (rows in, values out). Then, per component: size, compile vs cached load, and
//! instantiation (one per query task).
//!
//! Run: `scripts/build-guests.sh && cargo bench -p weir-engine --bench udf_calls`.
//! Compiled components are cached in `target/bench-wasm-cache` (the Python and JavaScript
//! ones take seconds to compile); the "compile" column always compiles afresh.

use std::path::PathBuf;
use std::time::{Duration, Instant};
use weir_engine::host::ProcessorError;
use weir_engine::udf::{ScalarUdf, UdfValue};
use weir_engine::wasm::{UdfLimits, UdfModule, WasmConfig, WasmEngine};

const BATCH: usize = 256;
/// Function name, guest language, component file, native twin.
type Case = (&'static str, &'static str, &'static str, fn(&str) -> String);
const ROUNDS: usize = 7;

fn guest(name: &str) -> Vec<u8> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/guests/{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): run scripts/build-guests.sh first",
            path.display()
        )
    })
}

/// A string function compiled natively, behind the same trait as the Wasm ones.
struct Native(fn(&str) -> String);

impl ScalarUdf for Native {
    fn call(&mut self, rows: &[Vec<UdfValue>]) -> Result<Vec<UdfValue>, ProcessorError> {
        rows.iter()
            .map(|row| match row.as_slice() {
                [UdfValue::Text(s)] => Ok(UdfValue::Text((self.0)(s))),
                [UdfValue::Null] => Ok(UdfValue::Null),
                _ => Err(ProcessorError::Guest("expects one STRING".into())),
            })
            .collect()
    }
}

fn native_mask(s: &str) -> String {
    let n = s.chars().count();
    s.chars()
        .enumerate()
        .map(|(i, c)| if i + 4 < n { '*' } else { c })
        .collect()
}

fn native_upper(s: &str) -> String {
    s.to_uppercase()
}

fn native_reverse(s: &str) -> String {
    s.chars().rev().collect()
}

/// 256 rows of one 19-character text argument (a card number).
fn rows() -> Vec<Vec<UdfValue>> {
    (0..BATCH)
        .map(|i| vec![UdfValue::Text(format!("4111-1111-1111-{i:04}"))])
        .collect()
}

/// ns per row of `f` over `rows`: calls for at least `min` per round.
fn round(f: &mut dyn ScalarUdf, rows: &[Vec<UdfValue>], min: Duration) -> f64 {
    let started = Instant::now();
    let mut calls = 0usize;
    while started.elapsed() < min {
        let out = f.call(rows).unwrap();
        assert_eq!(out.len(), rows.len());
        std::hint::black_box(out);
        calls += 1;
    }
    started.elapsed().as_nanos() as f64 / (calls * rows.len()) as f64
}

fn main() {
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-wasm-cache");
    let mut config = WasmConfig::new(&cache);
    config.max_instances = 64;
    config.max_memory_bytes = 512 << 20;
    let engine = WasmEngine::new(config).unwrap();
    let limits = UdfLimits::default();

    let cases: [Case; 3] = [
        ("mask", "Rust", "udf-mask", native_mask),
        ("py_upper", "Python", "udf-py-upper", native_upper),
        ("js_reverse", "JavaScript", "udf-js-reverse", native_reverse),
    ];
    let modules: Vec<(Vec<u8>, UdfModule)> = cases
        .iter()
        .map(|(name, _, file, _)| {
            let wasm = guest(file);
            let m = engine.load_udf(name, &wasm, &limits).unwrap();
            (wasm, m)
        })
        .collect();

    let rows = rows();
    println!(
        "## per-row cost at batch {BATCH}, Wasm vs the same function native \
         (best of {ROUNDS} alternating rounds)\n"
    );
    println!("| function | guest language | wasm ns/row | native ns/row | wasm / native |");
    println!("|---|---|---:|---:|---:|");
    for ((name, lang, _, native), (_, module)) in cases.iter().zip(&modules) {
        let mut wasm = module.scalar().unwrap();
        let mut native = Native(*native);
        assert_eq!(
            wasm.call(&rows[..3]).unwrap(),
            native.call(&rows[..3]).unwrap(),
            "{name}: the Wasm and native results differ"
        );
        let min = Duration::from_millis(200);
        round(wasm.as_mut(), &rows, min);
        round(&mut native, &rows, min);
        let (mut best_w, mut best_n) = (f64::MAX, f64::MAX);
        for _ in 0..ROUNDS {
            best_w = best_w.min(round(wasm.as_mut(), &rows, min));
            best_n = best_n.min(round(&mut native, &rows, min));
        }
        println!(
            "| {name} | {lang} | {best_w:.0} | {best_n:.0} | {:.0}× |",
            best_w / best_n
        );
    }

    println!("\n## loading and instantiation\n");
    println!(
        "| component | size | compile + validate + signature() | load from cache | \
         instantiate (per task) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for ((name, _, _, _), (wasm, module)) in cases.iter().zip(&modules) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = WasmConfig::new(dir.path());
        c.max_instances = 8;
        c.max_memory_bytes = 512 << 20;
        let fresh = WasmEngine::new(c.clone()).unwrap();
        let started = Instant::now();
        let m = fresh.load_udf(name, wasm, &limits).unwrap();
        let compile = started.elapsed();
        assert!(!m.from_cache());
        let mut cached = Duration::MAX;
        for _ in 0..3 {
            let again = WasmEngine::new(c.clone()).unwrap();
            let started = Instant::now();
            let m = again.load_udf(name, wasm, &limits).unwrap();
            cached = cached.min(started.elapsed());
            assert!(m.from_cache());
        }
        let mut instantiate = Duration::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            for _ in 0..20 {
                std::hint::black_box(module.scalar().unwrap());
            }
            instantiate = instantiate.min(started.elapsed() / 20);
        }
        println!(
            "| {name} | {:.1} MB | {:.0} ms | {:.1} ms | {:.0} µs |",
            wasm.len() as f64 / 1e6,
            compile.as_secs_f64() * 1e3,
            cached.as_secs_f64() * 1e3,
            instantiate.as_secs_f64() * 1e6
        );
    }
}

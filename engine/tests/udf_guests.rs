//! The UDF host against the real function components (built by `scripts/build-guests.sh` into
//! `target/guests/`): Rust (`udf-mask`, `udf-geomean`, `udf-trap`), Python (`udf-py-upper`,
//! componentize-py) and JavaScript (`udf-js-reverse`, componentize-js). Signatures, batched
//! calls, aggregates, traps replacing the instance, limits, and load-time validation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use weir_engine::host::ProcessorError;
use weir_engine::udf::{UdfKind, UdfSignature, UdfType, UdfValue};
use weir_engine::wasm::{UdfLimits, UdfModule, WasmConfig, WasmEngine, WasmError};

fn guest(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("WEIR_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/guests"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "guest component {} is missing ({e}): run scripts/build-guests.sh first \
             (scripts/test.sh does)",
            path.display()
        )
    })
}

/// One engine for all tests. Its compiled-component cache lives under `target/` so that the
/// Python and JavaScript guests (seconds to compile) are compiled once across test runs.
fn engine() -> &'static WasmEngine {
    static ENGINE: OnceLock<WasmEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-wasm-cache");
        let mut config = WasmConfig::new(dir);
        config.max_instances = 64;
        config.max_memory_bytes = 512 << 20;
        WasmEngine::new(config).unwrap()
    })
}

fn module(name: &str) -> UdfModule {
    static MODULES: OnceLock<Mutex<HashMap<String, UdfModule>>> = OnceLock::new();
    let modules = MODULES.get_or_init(Default::default);
    if let Some(m) = modules.lock().unwrap().get(name) {
        return m.clone();
    }
    let m = engine()
        .load_udf(name, &guest(name), &UdfLimits::default())
        .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    modules
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_insert(m)
        .clone()
}

fn text(s: &str) -> UdfValue {
    UdfValue::Text(s.to_string())
}

fn rows(values: impl IntoIterator<Item = UdfValue>) -> Vec<Vec<UdfValue>> {
    values.into_iter().map(|v| vec![v]).collect()
}

#[test]
fn mask_keeps_the_last_four_characters_in_batches() {
    let m = module("udf-mask");
    assert_eq!(m.kind(), UdfKind::Scalar);
    assert_eq!(
        m.signature(),
        &UdfSignature {
            params: vec![UdfType::Text],
            returns: UdfType::Text
        }
    );
    let mut f = m.scalar().unwrap();
    let out = f
        .call(&rows([
            text("4111111111111111"),
            UdfValue::Null,
            text("abc"),
            text("héllo wörld"),
            text(""),
        ]))
        .unwrap();
    assert_eq!(
        out,
        vec![
            text("************1111"),
            UdfValue::Null,
            text("abc"),
            text("*******örld"),
            text("")
        ]
    );
    let many: Vec<Vec<UdfValue>> = (0..1000).map(|i| vec![text(&format!("{i:08}"))]).collect();
    let out = f.call(&many).unwrap();
    assert_eq!(out.len(), 1000);
    assert_eq!(out[999], text("****0999"));
    assert!(f.call(&[]).unwrap().is_empty());
    // A wrong argument type is the guest's error; the instance stays usable.
    let err = f.call(&rows([UdfValue::Int(1)])).unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Guest(m) if m.contains("STRING")),
        "{err:?}"
    );
    // A wrong arity never reaches the guest.
    let err = f.call(&[vec![text("a"), text("b")]]).unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Host(m) if m.contains("1 argument")),
        "{err:?}"
    );
    assert_eq!(f.call(&rows([text("12345")])).unwrap(), vec![text("*2345")]);
    assert!(m.aggregate().is_err());
}

#[test]
fn geomean_accumulates_merges_and_finishes() {
    let m = module("udf-geomean");
    assert_eq!(m.kind(), UdfKind::Aggregate);
    assert_eq!(
        m.signature(),
        &UdfSignature {
            params: vec![UdfType::Float],
            returns: UdfType::Float
        }
    );
    let mut f = m.aggregate().unwrap();
    let empty = f.init().unwrap();
    assert_eq!(empty.len(), 16);
    assert_eq!(f.finish(&empty).unwrap(), UdfValue::Null);
    let a = f
        .accumulate(
            empty.clone(),
            &rows([UdfValue::Float(1.0), UdfValue::Null, UdfValue::Float(4.0)]),
        )
        .unwrap();
    let b = f
        .accumulate(empty.clone(), &rows([UdfValue::Float(16.0)]))
        .unwrap();
    let merged = f.merge(a.clone(), b).unwrap();
    match f.finish(&merged).unwrap() {
        UdfValue::Float(x) => assert!((x - 4.0).abs() < 1e-9, "{x}"),
        other => panic!("{other:?}"),
    }
    match f.finish(&a).unwrap() {
        UdfValue::Float(x) => assert!((x - 2.0).abs() < 1e-9, "{x}"),
        other => panic!("{other:?}"),
    }
    let err = f
        .accumulate(empty.clone(), &rows([UdfValue::Float(-1.0)]))
        .unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Guest(m) if m.contains("positive")),
        "{err:?}"
    );
    let err = f.finish(&[1, 2, 3]).unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Guest(m) if m.contains("16 bytes")),
        "{err:?}"
    );
    assert!(m.scalar().is_err());
}

#[test]
fn a_trap_fails_the_batch_and_the_next_call_gets_a_fresh_instance() {
    let m = module("udf-trap");
    assert_eq!(
        m.signature(),
        &UdfSignature {
            params: vec![UdfType::Int],
            returns: UdfType::Int
        }
    );
    let mut f = m.scalar().unwrap();
    assert_eq!(
        f.call(&rows([UdfValue::Int(1), UdfValue::Int(2)])).unwrap(),
        vec![UdfValue::Int(1), UdfValue::Int(2)]
    );
    let err = f
        .call(&rows([
            UdfValue::Int(12),
            UdfValue::Int(13),
            UdfValue::Int(14),
        ]))
        .unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Trap(m) if m.contains("13 is unlucky")),
        "{err:?}"
    );
    assert_eq!(err.code(), "guest_trap");
    for _ in 0..3 {
        assert_eq!(
            f.call(&rows([UdfValue::Int(7), UdfValue::Null])).unwrap(),
            vec![UdfValue::Int(7), UdfValue::Null]
        );
        assert!(f.call(&rows([UdfValue::Int(13)])).is_err());
    }
}

#[test]
fn calls_are_interrupted_when_the_node_shuts_down() {
    // An engine of its own: `interrupt_all` is for good.
    let dir = tempfile::tempdir().unwrap();
    let mut config = WasmConfig::new(dir.path());
    config.max_instances = 4;
    config.max_memory_bytes = 512 << 20;
    let wasm = WasmEngine::new(config).unwrap();
    let m = wasm
        .load_udf("udf-mask", &guest("udf-mask"), &UdfLimits::default())
        .unwrap();
    let mut f = m.scalar().unwrap();
    assert_eq!(f.call(&rows([text("12345")])).unwrap(), vec![text("*2345")]);
    wasm.interrupt_all();
    // A batch long enough to reach a deadline check (every 50 ms) ends interrupted.
    let big: Vec<Vec<UdfValue>> = (0..400_000)
        .map(|_| vec![text("4111111111111111")])
        .collect();
    let mut interrupted = false;
    for _ in 0..20 {
        match f.call(&big) {
            Ok(out) => assert_eq!(out.len(), big.len()),
            Err(e) => {
                assert!(matches!(&e, ProcessorError::Interrupted(_)), "{e:?}");
                interrupted = true;
                break;
            }
        }
    }
    assert!(interrupted, "no 400k-row batch was interrupted");
}

#[test]
fn a_call_over_the_cpu_limit_is_stopped() {
    // udf-trap has no loop; a tiny CPU limit still stops a big enough batch? Not reliably:
    // use the deadline on a Python guest instead when present. Here: check the limit is
    // wired by loading with a 1 ms limit and running many large batches.
    let limits = UdfLimits {
        cpu_ms_per_call: 1,
        ..UdfLimits::default()
    };
    let m = engine()
        .load_udf("mask-1ms", &guest("udf-mask"), &limits)
        .unwrap();
    let mut f = m.scalar().unwrap();
    let big: Vec<Vec<UdfValue>> = (0..200_000)
        .map(|_| vec![text("4111111111111111")])
        .collect();
    let mut stopped = false;
    for _ in 0..20 {
        match f.call(&big) {
            Ok(out) => assert_eq!(out.len(), big.len()),
            Err(e) => {
                assert!(
                    matches!(&e, ProcessorError::Limit(m) if m.contains("cpu time")),
                    "{e:?}"
                );
                stopped = true;
                break;
            }
        }
    }
    assert!(stopped, "a 1 ms limit never stopped a 200k-row batch");
    assert_eq!(f.call(&rows([text("12345")])).unwrap(), vec![text("*2345")]);
}

#[test]
fn the_memory_limit_is_enforced() {
    let limits = UdfLimits {
        memory_bytes: 2 << 20,
        ..UdfLimits::default()
    };
    let m = engine()
        .load_udf("mask-2mb", &guest("udf-mask"), &limits)
        .unwrap();
    let mut f = m.scalar().unwrap();
    let big = vec![vec![text(&"x".repeat(4 << 20))]];
    let err = f.call(&big).unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Limit(m) if m.contains("memory limit")),
        "{err:?}"
    );
    assert_eq!(f.call(&rows([text("12345")])).unwrap(), vec![text("*2345")]);
}

#[test]
fn loading_rejects_what_is_not_a_udf() {
    let limits = UdfLimits::default();
    let err = engine().load_udf("x", b"hello", &limits).unwrap_err();
    assert_eq!(err.code(), "not_a_component");
    // A processor is a component of the wrong world.
    let err = engine()
        .load_udf("x", &guest("uppercase"), &limits)
        .unwrap_err();
    assert!(matches!(&err, WasmError::NotAUdf(_)), "{err:?}");
    assert_eq!(err.code(), "wrong_world");
    let err = engine()
        .load_udf("x", &guest("wrong-world"), &limits)
        .unwrap_err();
    assert!(
        matches!(&err, WasmError::NotAUdf(m) if m.contains("greet")),
        "{err:?}"
    );
    let small = UdfLimits {
        max_module_bytes: 1000,
        ..UdfLimits::default()
    };
    let err = engine()
        .load_udf("x", &guest("udf-mask"), &small)
        .unwrap_err();
    assert_eq!(err.code(), "module_too_large");
    // signature() traps: rejected, quoting the guest's panic.
    let err = engine()
        .load_udf("x", &guest("udf-bad-signature"), &limits)
        .unwrap_err();
    assert!(
        matches!(&err, WasmError::Signature(m) if m.contains("no signature today")),
        "{err:?}"
    );
    assert_eq!(err.code(), "signature_failed");
    assert!(err.is_user_error());
    // A UDF is not a processor either.
    let err = engine()
        .load_processor(&guest("udf-mask"), &Default::default())
        .unwrap_err();
    assert_eq!(err.code(), "wrong_world");
}

#[test]
fn python_py_upper_runs_in_batches() {
    let m = module("udf-py-upper");
    assert_eq!(m.kind(), UdfKind::Scalar);
    assert_eq!(
        m.signature(),
        &UdfSignature {
            params: vec![UdfType::Text],
            returns: UdfType::Text
        }
    );
    let mut f = m.scalar().unwrap();
    let out = f
        .call(&rows([text("hello"), UdfValue::Null, text("straße é")]))
        .unwrap();
    assert_eq!(out, vec![text("HELLO"), UdfValue::Null, text("STRASSE É")]);
    let many: Vec<Vec<UdfValue>> = (0..256).map(|i| vec![text(&format!("row {i}"))]).collect();
    let out = f.call(&many).unwrap();
    assert_eq!(out[255], text("ROW 255"));
    let err = f.call(&rows([UdfValue::Int(3)])).unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Guest(m) if m.contains("STRING")),
        "{err:?}"
    );
    assert_eq!(f.call(&rows([text("ok")])).unwrap(), vec![text("OK")]);
}

#[test]
fn javascript_js_reverse_runs_in_batches() {
    let m = module("udf-js-reverse");
    assert_eq!(m.kind(), UdfKind::Scalar);
    assert_eq!(
        m.signature(),
        &UdfSignature {
            params: vec![UdfType::Text],
            returns: UdfType::Text
        }
    );
    let mut f = m.scalar().unwrap();
    let out = f
        .call(&rows([text("hello"), UdfValue::Null, text("añb😀")]))
        .unwrap();
    assert_eq!(out, vec![text("olleh"), UdfValue::Null, text("😀bña")]);
    let many: Vec<Vec<UdfValue>> = (0..256).map(|i| vec![text(&format!("{i:03}"))]).collect();
    let out = f.call(&many).unwrap();
    assert_eq!(out[123], text("321"));
    let err = f.call(&rows([UdfValue::Boolean(true)])).unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Guest(m) if m.contains("STRING")),
        "{err:?}"
    );
    assert_eq!(f.call(&rows([text("ab")])).unwrap(), vec![text("ba")]);
}

/// A call that never returns (`udf-loop` with a negative argument) ends at its CPU limit as
/// a limit error; one in a task's instance ends as soon as the task's interrupt is raised
/// (the query is terminated), long before that limit, and the instance serves the next call.
#[test]
fn a_looping_call_ends_at_its_cpu_limit_or_when_its_task_is_stopped() {
    use std::time::{Duration, Instant};
    use weir_engine::host::Interrupt;
    let spin = |ms| {
        let limits = UdfLimits {
            cpu_ms_per_call: ms,
            ..UdfLimits::default()
        };
        engine()
            .load_udf(&format!("spin-{ms}"), &guest("udf-loop"), &limits)
            .unwrap()
    };
    let forever = rows([UdfValue::Int(-1)]);

    let mut f = spin(200).scalar().unwrap();
    match f.call(&forever) {
        Err(ProcessorError::Limit(m)) => assert!(m.contains("cpu time"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        f.call(&rows([UdfValue::Int(7)])).unwrap(),
        vec![UdfValue::Int(7)]
    );

    // A minute of CPU allowed; the task asks the call to stop after 300 ms.
    let stop = Interrupt::new();
    let mut f = spin(60_000).scalar_until(Some(&stop)).unwrap();
    let raiser = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            stop.request();
        })
    };
    let started = Instant::now();
    let result = f.call(&forever);
    let took = started.elapsed();
    raiser.join().unwrap();
    assert!(
        matches!(result, Err(ProcessorError::Interrupted(_))),
        "{result:?}"
    );
    assert!(took < Duration::from_secs(10), "the call ran {took:?}");
    stop.clear();
    assert_eq!(
        f.call(&rows([UdfValue::Int(7)])).unwrap(),
        vec![UdfValue::Int(7)]
    );
}

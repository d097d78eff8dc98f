//! The Wasm host against the real guest components of `examples/` (built by
//! `scripts/build-guests.sh` into `target/guests/`), driven through `ProcessorLogic` with a
//! small in-memory `TaskHost`: the examples' behaviour, hostile guests failing with the right
//! error while the process carries on, upload validation, and the compiled-component cache.

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use weir_engine::host::{
    HostError, InputRecord, LogLevel, OutputRecord, ProcessorError, ProcessorLogic, StoreHandle,
    TaskHost, TimerKind,
};
use weir_engine::limits::ProcessorLimits;
use weir_engine::wasm::{ProcessorModule, WasmConfig, WasmEngine, WasmError};

// ---------------------------------------------------------------------------------------------
// Harness

/// The component `name` built by scripts/build-guests.sh.
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

/// One engine for the tests that do not test the engine itself (compiles once per guest).
fn shared_engine() -> &'static WasmEngine {
    static ENGINE: OnceLock<(WasmEngine, tempfile::TempDir)> = OnceLock::new();
    &ENGINE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let mut config = WasmConfig::new(dir.path());
            config.max_instances = 64;
            config.max_memory_bytes = 256 << 20;
            (WasmEngine::new(config).unwrap(), dir)
        })
        .0
}

fn module(name: &str) -> ProcessorModule {
    static MODULES: OnceLock<Mutex<HashMap<String, ProcessorModule>>> = OnceLock::new();
    let modules = MODULES.get_or_init(Default::default);
    if let Some(m) = modules.lock().unwrap().get(name) {
        return m.clone();
    }
    let m = shared_engine()
        .load_processor(&guest(name), &ProcessorLimits::default())
        .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    modules
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_insert(m)
        .clone()
}

fn instance(name: &str, limits: &ProcessorLimits) -> Box<dyn ProcessorLogic> {
    module(name)
        .instantiate(limits, &format!("{name}/0"))
        .unwrap()
}

/// An in-memory task: records what the guest does.
#[derive(Default)]
struct MemHost {
    partition: i32,
    stream_time: i64,
    emitted: Vec<(String, OutputRecord)>,
    logs: Vec<(LogLevel, String)>,
    timers: BTreeSet<(u8, i64)>,
    store_names: Vec<String>,
    stores: Vec<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemHost {
    fn new(partition: i32) -> MemHost {
        MemHost {
            partition,
            stream_time: i64::MIN,
            ..MemHost::default()
        }
    }

    fn store(&self, name: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.store_names
            .iter()
            .position(|n| n == name)
            .map(|i| self.stores[i].clone())
            .unwrap_or_default()
    }

    fn take(&mut self) -> Vec<(String, OutputRecord)> {
        std::mem::take(&mut self.emitted)
    }
}

impl TaskHost for MemHost {
    fn partition(&self) -> i32 {
        self.partition
    }
    fn stream_time(&self) -> i64 {
        self.stream_time
    }
    fn emit(&mut self, output: &str, record: OutputRecord) -> Result<(), HostError> {
        if !["", "repartition", "shout", "kept"].contains(&output) {
            return Err(HostError(format!("unknown output '{output}'")));
        }
        self.emitted.push((output.to_string(), record));
        Ok(())
    }
    fn log(&mut self, level: LogLevel, message: &str) {
        self.logs.push((level, message.to_string()));
    }
    fn register_timer(&mut self, kind: TimerKind, time: i64) -> Result<(), HostError> {
        self.timers.insert((kind as u8, time));
        Ok(())
    }
    fn open_store(&mut self, name: &str) -> Result<StoreHandle, HostError> {
        if name.is_empty() {
            return Err(HostError("empty store name".into()));
        }
        let i = match self.store_names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.store_names.push(name.to_string());
                self.stores.push(BTreeMap::new());
                self.stores.len() - 1
            }
        };
        Ok(StoreHandle(i as u32))
    }
    fn get(&mut self, store: StoreHandle, key: &[u8]) -> Result<Option<Bytes>, HostError> {
        Ok(self.stores[store.0 as usize]
            .get(key)
            .map(|v| Bytes::copy_from_slice(v)))
    }
    fn put(&mut self, store: StoreHandle, key: &[u8], value: &[u8]) -> Result<(), HostError> {
        self.stores[store.0 as usize].insert(key.to_vec(), value.to_vec());
        Ok(())
    }
    fn delete(&mut self, store: StoreHandle, key: &[u8]) -> Result<(), HostError> {
        self.stores[store.0 as usize].remove(key);
        Ok(())
    }
    fn range(
        &mut self,
        store: StoreHandle,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, HostError> {
        use std::ops::Bound;
        let lo = start.map_or(Bound::Unbounded, |s| Bound::Included(s.to_vec()));
        let hi = end.map_or(Bound::Unbounded, |e| Bound::Excluded(e.to_vec()));
        Ok(self.stores[store.0 as usize]
            .range((lo, hi))
            .take(limit)
            .map(|(k, v)| (Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)))
            .collect())
    }
}

fn rec(topic: &str, offset: i64, ts: i64, key: Option<&str>, value: Option<&str>) -> InputRecord {
    InputRecord {
        topic: topic.into(),
        partition: 0,
        offset,
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        headers: vec![],
        timestamp: ts,
    }
}

fn text(b: &Option<Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Examples

#[test]
fn uppercase_maps_values_and_keeps_the_rest() {
    let mut p = instance("uppercase", &ProcessorLimits::default());
    let mut host = MemHost::new(0);
    p.init(&mut host, &[]).unwrap();
    let mut with_headers = rec("in", 1, 1001, Some("k1"), Some("hello, World"));
    with_headers.headers = vec![
        ("trace".into(), Some(Bytes::from_static(b"abc"))),
        ("empty".into(), None),
    ];
    let batch = vec![
        rec("in", 0, 1000, None, Some("abc")),
        with_headers,
        rec("in", 2, 1002, Some("k2"), None),
    ];
    p.process(&mut host, &batch).unwrap();
    let out = host.take();
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|(o, _)| o.is_empty()));
    assert_eq!(text(&out[0].1.value).as_deref(), Some("ABC"));
    assert_eq!(out[0].1.key, None);
    assert_eq!(out[0].1.timestamp, Some(1000));
    assert_eq!(text(&out[1].1.value).as_deref(), Some("HELLO, WORLD"));
    assert_eq!(text(&out[1].1.key).as_deref(), Some("k1"));
    assert_eq!(
        out[1].1.headers,
        vec![
            ("trace".to_string(), Some(Bytes::from_static(b"abc"))),
            ("empty".to_string(), None)
        ]
    );
    assert_eq!(out[2].1.value, None);
    // An empty batch is fine, and a second batch reuses the instance.
    p.process(&mut host, &[]).unwrap();
    p.process(&mut host, &[rec("in", 3, 5, None, Some("x"))])
        .unwrap();
    assert_eq!(text(&host.take()[0].1.value).as_deref(), Some("X"));
}

#[test]
fn uppercase_writes_to_the_output_named_in_config() {
    let mut p = instance("uppercase", &ProcessorLimits::default());
    let mut host = MemHost::new(0);
    p.init(&mut host, &config(&[("output", "shout")])).unwrap();
    p.process(&mut host, &[rec("in", 0, 0, None, Some("a"))])
        .unwrap();
    assert_eq!(host.take()[0].0, "shout");
    // An output the task does not know: the guest's error comes back as a guest error.
    let mut p = instance("uppercase", &ProcessorLimits::default());
    p.init(&mut host, &config(&[("output", "nope")])).unwrap();
    let err = p
        .process(&mut host, &[rec("in", 0, 0, None, Some("a"))])
        .unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Guest(m) if m.contains("unknown output 'nope'")),
        "{err:?}"
    );
    // A guest error does not poison the instance.
    p.process(&mut host, &[]).unwrap();
}

#[test]
fn filter_keeps_records_passing_the_predicate() {
    let mut p = instance("filter", &ProcessorLimits::default());
    let mut host = MemHost::new(0);
    p.init(
        &mut host,
        &config(&[("field", "amount"), ("op", "gt"), ("value", "100")]),
    )
    .unwrap();
    let batch = vec![
        rec(
            "orders",
            0,
            0,
            Some("a"),
            Some(r#"{"amount": 150, "id": 1}"#),
        ),
        rec("orders", 1, 0, Some("b"), Some(r#"{"amount": 5, "id": 2}"#)),
        rec("orders", 2, 0, Some("c"), Some("not json")),
        rec("orders", 3, 0, Some("d"), Some(r#"{"id": 4}"#)),
        rec("orders", 4, 0, Some("e"), Some(r#"{"amount": 100.5}"#)),
        rec("orders", 5, 0, Some("f"), None),
        rec("orders", 6, 0, Some("g"), Some(r#"{"amount": "200"}"#)),
    ];
    p.process(&mut host, &batch).unwrap();
    let kept: Vec<String> = host
        .take()
        .iter()
        .map(|(_, r)| text(&r.key).unwrap())
        .collect();
    assert_eq!(kept, vec!["a", "e"]);

    // String equality on a nested field, to a named output.
    let mut p = instance("filter", &ProcessorLimits::default());
    p.init(
        &mut host,
        &config(&[
            ("field", "customer.country"),
            ("value", "FR"),
            ("output", "kept"),
        ]),
    )
    .unwrap();
    p.process(
        &mut host,
        &[
            rec(
                "o",
                0,
                0,
                Some("x"),
                Some(r#"{"customer":{"country":"FR"}}"#),
            ),
            rec(
                "o",
                1,
                0,
                Some("y"),
                Some(r#"{"customer":{"country":"DE"}}"#),
            ),
        ],
    )
    .unwrap();
    let out = host.take();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, "kept");
    assert_eq!(text(&out[0].1.key).as_deref(), Some("x"));
}

#[test]
fn filter_rejects_bad_config_with_a_guest_error() {
    let mut host = MemHost::new(0);
    let mut p = instance("filter", &ProcessorLimits::default());
    let err = p
        .init(&mut host, &config(&[("field", "amount"), ("op", "zz")]))
        .unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Guest(m) if m.contains("op")),
        "{err:?}"
    );
    let mut p = instance("filter", &ProcessorLimits::default());
    let err = p.init(&mut host, &[]).unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Guest(m) if m.contains("`field` is required")),
        "{err:?}"
    );
    // Not initialized: process fails with a guest error, not a trap.
    let err = p.process(&mut host, &[]).unwrap_err();
    assert!(matches!(err, ProcessorError::Guest(_)), "{err:?}");
}

/// Runs word-count as two tasks, routing `repartition` output by key as the engine would.
#[test]
fn word_count_counts_exactly_across_partitions() {
    const PARTS: usize = 2;
    let mut tasks: Vec<(Box<dyn ProcessorLogic>, MemHost)> = (0..PARTS)
        .map(|p| {
            let mut host = MemHost::new(p as i32);
            let mut logic = module("word-count")
                .instantiate(&ProcessorLimits::default(), &format!("wc/{p}"))
                .unwrap();
            logic.init(&mut host, &[]).unwrap();
            (logic, host)
        })
        .collect();
    let owner = |word: &[u8]| word.iter().map(|b| *b as usize).sum::<usize>() % PARTS;
    let inputs = [
        vec!["the quick brown fox", "the lazy dog"],
        vec!["the dog barks", "quick quick"],
    ];
    let mut finals: BTreeMap<String, String> = BTreeMap::new();
    let mut repartitioned: Vec<Vec<InputRecord>> = vec![Vec::new(); PARTS];
    for (p, lines) in inputs.iter().enumerate() {
        let batch: Vec<InputRecord> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| rec("text", i as i64, 100, None, Some(l)))
            .collect();
        let (logic, host) = &mut tasks[p];
        logic.process(host, &batch).unwrap();
        for (output, r) in host.take() {
            assert_eq!(output, "repartition", "input records are only re-keyed");
            let key = r.key.clone().unwrap();
            let n = repartitioned[owner(&key)].len() as i64;
            repartitioned[owner(&key)].push(InputRecord {
                topic: "wc.repartition".into(),
                partition: owner(&key) as i32,
                offset: n,
                key: r.key,
                value: r.value,
                headers: r.headers,
                timestamp: r.timestamp.unwrap_or(0),
            });
        }
    }
    for (p, batch) in repartitioned.into_iter().enumerate() {
        let (logic, host) = &mut tasks[p];
        logic.process(host, &batch).unwrap();
        for (output, r) in host.take() {
            assert_eq!(output, "");
            finals.insert(text(&r.key).unwrap(), text(&r.value).unwrap());
        }
    }
    let want: BTreeMap<String, String> = [
        ("the", "3"),
        ("quick", "3"),
        ("brown", "1"),
        ("fox", "1"),
        ("lazy", "1"),
        ("dog", "2"),
        ("barks", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(finals, want);
    // Each word's count lives only in its owner's store, as a decimal string.
    for (p, (_, host)) in tasks.iter().enumerate() {
        for (k, v) in host.store("counts") {
            assert_eq!(owner(&k), p);
            assert_eq!(
                want[&String::from_utf8(k).unwrap()],
                String::from_utf8(v).unwrap()
            );
        }
    }
}

#[test]
fn dedupe_drops_repeats_within_the_window_and_expires_keys() {
    let mut p = instance("dedupe", &ProcessorLimits::default());
    let mut host = MemHost::new(0);
    p.init(&mut host, &config(&[("window_ms", "1000")]))
        .unwrap();
    let batch = vec![
        rec("in", 0, 0, Some("a"), Some("1")),
        rec("in", 1, 500, Some("a"), Some("2")),
        rec("in", 2, 600, Some("b"), Some("3")),
        rec("in", 3, 700, None, Some("4")),
        rec("in", 4, 1000, Some("a"), Some("5")),
        rec("in", 5, 1500, Some("a"), Some("6")),
    ];
    p.process(&mut host, &batch).unwrap();
    let passed: Vec<String> = host
        .take()
        .iter()
        .map(|(_, r)| text(&r.value).unwrap())
        .collect();
    assert_eq!(passed, vec!["1", "3", "4", "5"]);
    assert_eq!(host.store("seen").len(), 2);
    // Stream-time timers at window end, rounded up to a tenth of the window.
    let stream = TimerKind::StreamTime as u8;
    assert!(host.timers.contains(&(stream, 1100)), "{:?}", host.timers);
    assert!(host.timers.contains(&(stream, 1700)), "{:?}", host.timers);
    assert!(host.timers.contains(&(stream, 2100)), "{:?}", host.timers);
    // At 1700, b (seen at 600) expires; a (seen again at 1000) does not.
    p.on_timer(&mut host, TimerKind::StreamTime, 1700).unwrap();
    let seen = host.store("seen");
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        vec![b"a".to_vec()]
    );
    p.on_timer(&mut host, TimerKind::StreamTime, 2100).unwrap();
    assert!(host.store("seen").is_empty());
    assert!(host.store("expiry").is_empty());
    p.process(&mut host, &[rec("in", 6, 2200, Some("a"), Some("7"))])
        .unwrap();
    assert_eq!(host.take().len(), 1);
}

#[test]
fn dedupe_expires_more_keys_than_one_scan_page() {
    let mut p = instance("dedupe", &ProcessorLimits::default());
    let mut host = MemHost::new(0);
    p.init(&mut host, &config(&[("window_ms", "10")])).unwrap();
    let batch: Vec<InputRecord> = (0..1000)
        .map(|i| {
            let key = format!("key-{i:04}");
            rec("in", i, i % 7, Some(&key), Some("v"))
        })
        .collect();
    p.process(&mut host, &batch).unwrap();
    assert_eq!(host.take().len(), 1000);
    assert_eq!(host.store("seen").len(), 1000);
    p.on_timer(&mut host, TimerKind::StreamTime, 100).unwrap();
    assert!(host.store("seen").is_empty());
    assert!(host.store("expiry").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Hostile guests: each fails its own call with the right error; the process carries on.

#[test]
fn infinite_loop_hits_the_cpu_limit() {
    let limits = ProcessorLimits {
        cpu_ms_per_call: 200,
        ..ProcessorLimits::default()
    };
    let mut p = instance("hostile-loop", &limits);
    let mut host = MemHost::new(0);
    p.init(&mut host, &[]).unwrap();
    let started = Instant::now();
    let err = p
        .process(&mut host, &[rec("in", 0, 0, None, Some("x"))])
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, ProcessorError::Limit(m) if m.contains("cpu time") && m.contains("200 ms")),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(190),
        "stopped too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "stopped too late: {took:?}");
    // The instance is poisoned; a new one from the same module works.
    let err = p.process(&mut host, &[]).unwrap_err();
    assert!(matches!(err, ProcessorError::Host(_)), "{err:?}");
    let mut fresh = instance("hostile-loop", &limits);
    fresh.init(&mut host, &[]).unwrap();
    let err = fresh.process(&mut host, &[]).unwrap_err();
    assert!(matches!(err, ProcessorError::Limit(_)), "{err:?}");
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let limits = ProcessorLimits {
        memory_bytes: 16 << 20,
        ..ProcessorLimits::default()
    };
    let mut p = instance("hostile-memory", &limits);
    let mut host = MemHost::new(0);
    p.init(&mut host, &[]).unwrap();
    let err = p
        .process(&mut host, &[rec("in", 0, 0, None, Some("x"))])
        .unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Limit(m) if m.contains("memory limit") && m.contains("16777216")),
        "{err:?}"
    );
    let err = p.process(&mut host, &[]).unwrap_err();
    assert!(matches!(err, ProcessorError::Host(_)), "{err:?}");
}

#[test]
fn panic_is_a_trap_with_the_panic_message() {
    let mut p = instance("hostile-trap", &ProcessorLimits::default());
    let mut host = MemHost::new(0);
    p.init(&mut host, &[]).unwrap();
    // An empty batch does not panic.
    p.process(&mut host, &[]).unwrap();
    let err = p
        .process(&mut host, &[rec("in", 41, 0, None, Some("x"))])
        .unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Trap(m) if m.contains("deliberate panic at offset 41")),
        "{err:?}"
    );
    let err = p.process(&mut host, &[]).unwrap_err();
    assert!(matches!(err, ProcessorError::Host(_)), "{err:?}");
}

#[test]
fn unbounded_recursion_is_a_trap() {
    let mut p = instance("hostile-stack", &ProcessorLimits::default());
    let mut host = MemHost::new(0);
    p.init(&mut host, &[]).unwrap();
    let err = p
        .process(&mut host, &[rec("in", 0, 0, None, Some("x"))])
        .unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Trap(m) if m.contains("stack")),
        "{err:?}"
    );
}

#[test]
fn output_flood_hits_the_output_limits() {
    let limits = ProcessorLimits {
        max_output_records_per_call: 10_000,
        ..ProcessorLimits::default()
    };
    let mut p = instance("hostile-output", &limits);
    let mut host = MemHost::new(0);
    p.init(&mut host, &[]).unwrap();
    let err = p
        .process(&mut host, &[rec("in", 0, 0, None, Some("x"))])
        .unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Limit(m) if m.contains("10000 records")),
        "{err:?}"
    );
    assert!(host.take().len() <= 10_000);

    let limits = ProcessorLimits {
        max_output_bytes_per_call: 1 << 20,
        ..ProcessorLimits::default()
    };
    let mut p = instance("hostile-output", &limits);
    p.init(&mut host, &[]).unwrap();
    let err = p
        .process(&mut host, &[rec("in", 0, 0, None, Some("x"))])
        .unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Limit(m) if m.contains("1048576 bytes")),
        "{err:?}"
    );
    let emitted: usize = host
        .take()
        .iter()
        .map(|(_, r)| r.value.as_ref().map_or(0, |v| v.len()))
        .sum();
    assert!(emitted <= 1 << 20);
}

#[test]
fn hostile_guests_leave_other_instances_running() {
    let limits = ProcessorLimits {
        cpu_ms_per_call: 100,
        memory_bytes: 8 << 20,
        ..ProcessorLimits::default()
    };
    let mut good = instance("uppercase", &limits);
    let mut host = MemHost::new(0);
    good.init(&mut host, &[]).unwrap();
    for name in [
        "hostile-loop",
        "hostile-memory",
        "hostile-trap",
        "hostile-stack",
    ] {
        let mut bad = instance(name, &limits);
        let mut bad_host = MemHost::new(0);
        bad.init(&mut bad_host, &[]).unwrap();
        assert!(
            bad.process(&mut bad_host, &[rec("in", 0, 0, None, Some("x"))])
                .is_err()
        );
        good.process(&mut host, &[rec("in", 0, 0, None, Some("ok"))])
            .unwrap();
        assert_eq!(text(&host.take()[0].1.value).as_deref(), Some("OK"));
    }
}

// ---------------------------------------------------------------------------------------------
// Validation at load

fn load(wasm: &[u8]) -> Result<ProcessorModule, WasmError> {
    shared_engine().load_processor(wasm, &ProcessorLimits::default())
}

#[test]
fn random_bytes_are_not_a_component() {
    let err = load(b"definitely not wasm, just some random bytes").unwrap_err();
    assert!(matches!(err, WasmError::NotAComponent(_)), "{err:?}");
    assert_eq!(err.code(), "not_a_component");
    let err = load(&[]).unwrap_err();
    assert!(matches!(err, WasmError::NotAComponent(_)), "{err:?}");
}

#[test]
fn a_core_module_is_not_a_component() {
    // The smallest valid core module.
    let err = load(b"\0asm\x01\0\0\0").unwrap_err();
    assert!(
        matches!(&err, WasmError::NotAComponent(m) if m.contains("core WebAssembly module")),
        "{err:?}"
    );
}

#[test]
fn a_component_of_another_world_is_rejected() {
    let err = load(&guest("wrong-world")).unwrap_err();
    assert!(
        matches!(&err, WasmError::WrongWorld(m) if m.contains("init") && m.contains("greet")),
        "{err:?}"
    );
    assert_eq!(err.code(), "wrong_world");
    // The empty component: valid, exports nothing.
    let err = load(b"\0asm\x0d\0\x01\0").unwrap_err();
    assert!(
        matches!(&err, WasmError::WrongWorld(m) if m.contains("exports: none")),
        "{err:?}"
    );
}

#[test]
fn a_corrupt_component_fails_to_compile() {
    let mut wasm = guest("uppercase");
    let mid = wasm.len() / 2;
    for b in &mut wasm[mid..mid + 64] {
        *b = 0xff;
    }
    let err = load(&wasm).unwrap_err();
    assert!(matches!(err, WasmError::Compile(_)), "{err:?}");
    let err = load(&wasm[..wasm.len() - 100]).unwrap_err();
    assert!(matches!(err, WasmError::Compile(_)), "{err:?}");
}

#[test]
fn oversized_components_are_rejected_before_compiling() {
    let wasm = guest("uppercase");
    let limits = ProcessorLimits {
        max_module_bytes: 1000,
        ..ProcessorLimits::default()
    };
    let err = shared_engine().load_processor(&wasm, &limits).unwrap_err();
    assert_eq!(
        err,
        WasmError::TooLarge {
            size: wasm.len() as u64,
            limit: 1000
        }
    );
    assert_eq!(err.code(), "module_too_large");
}

// ---------------------------------------------------------------------------------------------
// Engine: cache, pool

#[test]
fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = guest("uppercase");
    let small = |dir: &std::path::Path| {
        let mut c = WasmConfig::new(dir);
        c.max_instances = 4;
        WasmEngine::new(c).unwrap()
    };
    let first = small(dir.path())
        .load_processor(&wasm, &ProcessorLimits::default())
        .unwrap();
    assert!(!first.from_cache());
    eprintln!("uppercase: compiled in {:?}", first.load_time());
    let artifacts: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert!(artifacts[0].ends_with(".cwasm"));
    // A new engine (a restart) on the same directory loads the artifact.
    let engine = small(dir.path());
    let second = engine
        .load_processor(&wasm, &ProcessorLimits::default())
        .unwrap();
    assert!(second.from_cache());
    eprintln!(
        "uppercase: loaded from the cache in {:?}",
        second.load_time()
    );
    let mut p = second
        .instantiate(&ProcessorLimits::default(), "cached/0")
        .unwrap();
    let mut host = MemHost::new(0);
    p.init(&mut host, &[]).unwrap();
    p.process(&mut host, &[rec("in", 0, 0, None, Some("c"))])
        .unwrap();
    assert_eq!(text(&host.take()[0].1.value).as_deref(), Some("C"));
    // A damaged artifact is compiled again, not trusted.
    let path = dir.path().join(&artifacts[0]);
    std::fs::write(&path, b"garbage").unwrap();
    let third = engine
        .load_processor(&wasm, &ProcessorLimits::default())
        .unwrap();
    assert!(!third.from_cache());
    assert!(std::fs::metadata(&path).unwrap().len() > 1000);
}

#[test]
fn instances_beyond_the_pool_fail_cleanly_and_slots_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = WasmConfig::new(dir.path());
    c.max_instances = 2;
    let engine = WasmEngine::new(c).unwrap();
    let m = engine
        .load_processor(&guest("uppercase"), &ProcessorLimits::default())
        .unwrap();
    let limits = ProcessorLimits::default();
    let a = m.instantiate(&limits, "p/0").unwrap();
    let _b = m.instantiate(&limits, "p/1").unwrap();
    let Err(err) = m.instantiate(&limits, "p/2") else {
        panic!("a third instance fit in a pool of two")
    };
    assert!(
        matches!(&err, WasmError::Instantiate(m) if m.contains("raise max_instances")),
        "{err:?}"
    );
    drop(a);
    let mut c = m.instantiate(&limits, "p/2").unwrap();
    let mut host = MemHost::new(2);
    c.init(&mut host, &[]).unwrap();
    // Memory limits above the node's maximum are refused.
    let huge = ProcessorLimits {
        memory_bytes: 8 << 30,
        ..ProcessorLimits::default()
    };
    let Err(err) = m.instantiate(&huge, "p/3") else {
        panic!("memory_bytes over the node's maximum was accepted")
    };
    assert!(matches!(err, WasmError::Instantiate(_)), "{err:?}");
}

#[test]
fn instances_do_not_share_state() {
    let mut a = instance("word-count", &ProcessorLimits::default());
    let mut b = instance("word-count", &ProcessorLimits::default());
    let mut ha = MemHost::new(0);
    let mut hb = MemHost::new(1);
    a.init(&mut ha, &[]).unwrap();
    b.init(&mut hb, &[]).unwrap();
    let r = |word: &str, n: &str| InputRecord {
        topic: "wc.repartition".into(),
        partition: 0,
        offset: 0,
        key: Some(Bytes::copy_from_slice(word.as_bytes())),
        value: Some(Bytes::copy_from_slice(n.as_bytes())),
        headers: vec![],
        timestamp: 0,
    };
    a.process(&mut ha, &[r("x", "2")]).unwrap();
    b.process(&mut hb, &[r("x", "5")]).unwrap();
    assert_eq!(text(&ha.take()[0].1.value).as_deref(), Some("2"));
    assert_eq!(text(&hb.take()[0].1.value).as_deref(), Some("5"));
}

// ---------------------------------------------------------------------------------------------
// Sandbox

/// Log lines written while `f` runs on this thread.
fn capture_logs(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buf.0.lock().unwrap().clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn guests_see_no_environment_files_clock_or_network() {
    let mut p = module("sandbox-probe")
        .instantiate(&ProcessorLimits::default(), "probe/7")
        .unwrap();
    let mut host = MemHost::new(7);
    host.stream_time = 1234;
    p.init(&mut host, &[]).unwrap();
    let logs = capture_logs(|| {
        p.process(&mut host, &[rec("in", 0, 0, None, Some("x"))])
            .unwrap();
    });
    let seen: BTreeMap<String, String> = host
        .take()
        .into_iter()
        .map(|(_, r)| (text(&r.key).unwrap(), text(&r.value).unwrap()))
        .collect();
    assert_eq!(seen["env"], "0");
    assert_eq!(seen["args"], "0");
    assert!(seen["fs"].starts_with("error"), "{seen:?}");
    assert_eq!(seen["clock"], "0");
    assert!(seen["net"].starts_with("error"), "{seen:?}");
    assert_eq!(seen["stream_time"], "1234");
    // stdout and stderr go to the server log, tagged with the instance; `context.log` goes
    // to the task.
    assert!(
        logs.contains("probe stdout: 1 records") && logs.contains("probe/7"),
        "{logs}"
    );
    assert!(logs.contains("probe stderr: partition 7"), "{logs}");
    assert_eq!(
        host.logs,
        vec![(LogLevel::Warn, "probe log message".to_string())]
    );
}

#[test]
fn cpu_limit_holds_after_the_engine_handle_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = WasmConfig::new(dir.path());
    c.max_instances = 2;
    let engine = WasmEngine::new(c).unwrap();
    let limits = ProcessorLimits {
        cpu_ms_per_call: 100,
        ..ProcessorLimits::default()
    };
    let module = engine
        .load_processor(&guest("hostile-loop"), &limits)
        .unwrap();
    let mut p = module.instantiate(&limits, "loop/0").unwrap();
    drop(module);
    drop(engine);
    let mut host = MemHost::new(0);
    p.init(&mut host, &[]).unwrap();
    let err = p.process(&mut host, &[]).unwrap_err();
    assert!(matches!(err, ProcessorError::Limit(_)), "{err:?}");
}

#[test]
fn a_spinning_call_ends_when_its_task_asks_it_to_stop() {
    let limits = ProcessorLimits {
        cpu_ms_per_call: 86_400_000,
        ..ProcessorLimits::default()
    };
    let interrupt = weir_engine::host::Interrupt::new();
    let mut p = module("hostile-loop")
        .instantiate_interruptible(&limits, "loop/0", &interrupt)
        .unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let spinning = std::thread::spawn(move || {
        let mut host = MemHost::new(0);
        p.init(&mut host, &[]).unwrap();
        let err = p.process(&mut host, &[]).unwrap_err();
        done_tx.send(()).unwrap();
        err
    });
    // Still spinning after a while: only the request ends it.
    assert!(
        done_rx
            .recv_timeout(std::time::Duration::from_millis(500))
            .is_err()
    );
    interrupt.request();
    done_rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the call did not end after the stop request");
    let err = spinning.join().unwrap();
    assert!(matches!(err, ProcessorError::Interrupted(_)), "{err:?}");
    assert_eq!(err.code(), "interrupted");
}

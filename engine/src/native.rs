//! Processors written in Rust against [`ProcessorLogic`], for tests and benchmarks of the
//! task runtime without Wasm: `word-count` (the same logic as `examples/word-count`),
//! `uppercase-example` (the same logic as `examples/uppercase`), `uppercase` (a test
//! processor with timers on demand), and misbehaving ones (`trap-on:<text>`,
//! `error-on:<text>`, `panic`, `flood`, `stall-ms:<ms>`: a call that blocks without
//! looking at its interrupt, like a stuck host call), plus a [`ModuleLoader`] that accepts module bytes
//! `native:<name>` and refuses
//! anything else with the codes the Wasm host uses.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::host::{
    InputRecord, OutputRecord, OutputRef, ProcessorError, ProcessorLogic, StoreHandle, TaskHost,
    TimerKind,
};
use crate::limits::ProcessorLimits;
use crate::task::factory::{LoadError, LogicFactory, ModuleLoader};

fn host_err(e: crate::host::HostError) -> ProcessorError {
    ProcessorError::Guest(e.0)
}

fn is_repartitioned(r: &InputRecord) -> bool {
    r.topic.ends_with(".repartition")
}

/// Word count with a repartition step: words of input records go, keyed by word, to the
/// repartition topic with their count in the batch; the owning task adds them to the store
/// `counts` (decimal text) and emits `word -> count` to the default output.
#[derive(Default)]
pub struct WordCount {
    counts: Option<StoreHandle>,
}

impl ProcessorLogic for WordCount {
    fn init(
        &mut self,
        host: &mut dyn TaskHost,
        _config: &[(String, String)],
    ) -> Result<(), ProcessorError> {
        self.counts = Some(host.open_store("counts").map_err(host_err)?);
        Ok(())
    }

    fn process(
        &mut self,
        host: &mut dyn TaskHost,
        batch: &[InputRecord],
    ) -> Result<(), ProcessorError> {
        let counts = self
            .counts
            .ok_or_else(|| ProcessorError::Guest("not initialised".into()))?;
        let mut words: HashMap<&[u8], u64> = HashMap::new();
        let mut order: Vec<&[u8]> = Vec::new();
        for r in batch {
            if is_repartitioned(r) {
                let (Some(word), Some(v)) = (&r.key, &r.value) else {
                    continue;
                };
                let add: u64 = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| ProcessorError::Guest("bad repartitioned count".into()))?;
                let old: u64 = match host.get(counts, word).map_err(host_err)? {
                    Some(b) => std::str::from_utf8(&b)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                    None => 0,
                };
                let n = (old + add).to_string();
                host.put(counts, word, n.as_bytes()).map_err(host_err)?;
                host.emit(
                    "",
                    OutputRecord {
                        key: Some(word.clone()),
                        value: Some(Bytes::from(n)),
                        ..OutputRecord::default()
                    },
                )
                .map_err(host_err)?;
            } else if let Some(v) = &r.value {
                for w in v
                    .split(|b| b.is_ascii_whitespace())
                    .filter(|w| !w.is_empty())
                {
                    let c = words.entry(w).or_insert(0);
                    if *c == 0 {
                        order.push(w);
                    }
                    *c += 1;
                }
            }
        }
        for w in order {
            host.emit(
                "repartition",
                OutputRecord {
                    key: Some(Bytes::copy_from_slice(w)),
                    value: Some(Bytes::from(words[w].to_string())),
                    ..OutputRecord::default()
                },
            )
            .map_err(host_err)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _host: &mut dyn TaskHost,
        _kind: TimerKind,
        _time: i64,
    ) -> Result<(), ProcessorError> {
        Ok(())
    }
}

/// What a misbehaving test processor does with a record whose value equals its trigger.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Misbehaviour {
    Trap,
    Error,
    Panic,
}

/// Uppercases values to the default output; with a trigger, misbehaves on matching records.
/// Registers a stream-time timer at `timestamp + 10` for values `timer`, a wall-clock timer
/// 50 ms ahead for values `wall`, and emits `fired:<time>` when one fires.
pub struct Uppercase {
    trigger: Option<(Misbehaviour, Vec<u8>)>,
}

impl ProcessorLogic for Uppercase {
    fn init(
        &mut self,
        _host: &mut dyn TaskHost,
        config: &[(String, String)],
    ) -> Result<(), ProcessorError> {
        if config.iter().any(|(k, _)| k == "fail_init") {
            return Err(ProcessorError::Guest("init refused".into()));
        }
        Ok(())
    }

    fn process(
        &mut self,
        host: &mut dyn TaskHost,
        batch: &[InputRecord],
    ) -> Result<(), ProcessorError> {
        for r in batch {
            let v = r.value.clone().unwrap_or_default();
            if let Some((m, t)) = &self.trigger
                && v.as_ref() == t.as_slice()
            {
                match m {
                    Misbehaviour::Trap => {
                        return Err(ProcessorError::Trap("wasm trap: unreachable".into()));
                    }
                    Misbehaviour::Error => return Err(ProcessorError::Guest("bad record".into())),
                    Misbehaviour::Panic => panic!("native processor panic"),
                }
            }
            if v.as_ref() == b"timer" {
                host.register_timer(TimerKind::StreamTime, r.timestamp + 10)
                    .map_err(host_err)?;
            }
            if v.as_ref() == b"wall" {
                host.register_timer(TimerKind::WallClock, crate::clock::now_ms() + 50)
                    .map_err(host_err)?;
            }
            host.emit(
                "",
                OutputRecord {
                    key: r.key.clone(),
                    value: Some(Bytes::from(v.to_ascii_uppercase())),
                    ..OutputRecord::default()
                },
            )
            .map_err(host_err)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        host: &mut dyn TaskHost,
        _kind: TimerKind,
        time: i64,
    ) -> Result<(), ProcessorError> {
        host.emit(
            "",
            OutputRecord {
                value: Some(Bytes::from(format!("fired:{time}"))),
                ..OutputRecord::default()
            },
        )
        .map_err(host_err)
    }
}

/// `examples/uppercase` compiled natively, the lean way: every record goes to the default
/// output with its value's ASCII letters upper-cased (copied into a reused scratch buffer, as
/// the guest copies it into its reused output buffer) and emitted as a borrowed record
/// ([`TaskHost::emit_ref`]: no allocation or reference count per record); key, headers and
/// timestamp are kept. The native baseline of the Wasm benchmarks.
#[derive(Default)]
pub struct UppercaseExample {
    scratch: Vec<u8>,
}

impl ProcessorLogic for UppercaseExample {
    fn process(
        &mut self,
        host: &mut dyn TaskHost,
        batch: &[InputRecord],
    ) -> Result<(), ProcessorError> {
        let mut headers: Vec<(&str, Option<&[u8]>)> = Vec::new();
        for r in batch {
            self.scratch.clear();
            if let Some(v) = &r.value {
                self.scratch.extend_from_slice(v);
                self.scratch.make_ascii_uppercase();
            }
            headers.clear();
            headers.extend(r.headers.iter().map(|(n, v)| (n.as_str(), v.as_deref())));
            let out = OutputRef {
                key: r.key.as_deref(),
                value: r.value.as_ref().map(|_| &self.scratch[..]),
                headers: &headers,
                timestamp: Some(r.timestamp),
            };
            host.emit_ref("", out).map_err(host_err)?;
        }
        Ok(())
    }
}

/// Emits 1000 records per input record (to hit output limits).
struct Flood;

impl ProcessorLogic for Flood {
    fn init(&mut self, _: &mut dyn TaskHost, _: &[(String, String)]) -> Result<(), ProcessorError> {
        Ok(())
    }

    fn process(
        &mut self,
        host: &mut dyn TaskHost,
        batch: &[InputRecord],
    ) -> Result<(), ProcessorError> {
        for _ in batch {
            for _ in 0..1000 {
                host.emit("", OutputRecord::default()).map_err(host_err)?;
            }
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _: &mut dyn TaskHost,
        _: TimerKind,
        _: i64,
    ) -> Result<(), ProcessorError> {
        Ok(())
    }
}

/// Blocks every `process` call for `ms` milliseconds, ignoring interrupts.
struct Stall {
    ms: u64,
}

impl ProcessorLogic for Stall {
    fn process(&mut self, _: &mut dyn TaskHost, _: &[InputRecord]) -> Result<(), ProcessorError> {
        std::thread::sleep(std::time::Duration::from_millis(self.ms));
        Ok(())
    }

    fn on_timer(
        &mut self,
        _: &mut dyn TaskHost,
        _: TimerKind,
        _: i64,
    ) -> Result<(), ProcessorError> {
        Ok(())
    }
}

/// Makes instances of one native processor.
pub struct NativeFactory {
    name: String,
}

impl NativeFactory {
    pub fn new(name: &str) -> Option<Self> {
        let known = ["word-count", "uppercase", "uppercase-example", "flood"].contains(&name)
            || ["trap-on:", "error-on:", "panic-on:", "stall-ms:"]
                .iter()
                .any(|p| name.starts_with(p));
        known.then(|| NativeFactory {
            name: name.to_string(),
        })
    }
}

impl LogicFactory for NativeFactory {
    fn instantiate(
        &self,
        _label: &str,
        _interrupt: &crate::host::Interrupt,
    ) -> Result<Box<dyn ProcessorLogic>, ProcessorError> {
        let n = self.name.as_str();
        let with = |m, t: &str| Uppercase {
            trigger: Some((m, t.as_bytes().to_vec())),
        };
        Ok(match n {
            "word-count" => Box::new(WordCount::default()),
            "uppercase" => Box::new(Uppercase { trigger: None }),
            "uppercase-example" => Box::new(UppercaseExample::default()),
            "flood" => Box::new(Flood),
            _ => {
                if let Some(t) = n.strip_prefix("trap-on:") {
                    Box::new(with(Misbehaviour::Trap, t))
                } else if let Some(t) = n.strip_prefix("error-on:") {
                    Box::new(with(Misbehaviour::Error, t))
                } else if let Some(t) = n.strip_prefix("panic-on:") {
                    Box::new(with(Misbehaviour::Panic, t))
                } else if let Some(ms) = n.strip_prefix("stall-ms:").and_then(|m| m.parse().ok()) {
                    Box::new(Stall { ms })
                } else {
                    return Err(ProcessorError::Host(format!(
                        "unknown native processor {n}"
                    )));
                }
            }
        })
    }
}

/// Loads `native:<name>` modules; anything else is refused like the Wasm host refuses a
/// file that is not a component.
#[derive(Default)]
pub struct NativeLoader;

impl ModuleLoader for NativeLoader {
    fn load(
        &self,
        module: &[u8],
        limits: &ProcessorLimits,
    ) -> Result<Arc<dyn LogicFactory>, LoadError> {
        if module.len() as u64 > limits.max_module_bytes {
            return Err(LoadError {
                code: "module_too_large",
                message: format!(
                    "module of {} bytes is over limits.max_module_bytes ({})",
                    module.len(),
                    limits.max_module_bytes
                ),
                internal: false,
            });
        }
        let name = std::str::from_utf8(module)
            .ok()
            .and_then(|s| s.strip_prefix("native:"))
            .and_then(NativeFactory::new)
            .ok_or_else(|| LoadError {
                code: "not_a_component",
                message: "not a WebAssembly component".into(),
                internal: false,
            })?;
        Ok(Arc::new(name))
    }
}

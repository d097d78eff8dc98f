//! A loaded processor ([`ProcessorModule`]: an `InstancePre`, cheap to clone) and its
//! per-task instances (`WasmProcessor`: one `Store`, one linear memory), which implement
//! [`ProcessorLogic`] with the processor's limits: an epoch deadline per call (CPU time), the
//! memory limiter, the output meter, and poisoning after a trap.

use super::bindings::{Processor, ProcessorPre};
use super::codec;
use super::deadline::{self, CallClock, Ended};
use super::engine::WasmEngine;
use super::error::WasmError;
use super::imports::HostState;
use crate::host::{InputRecord, Interrupt, ProcessorError, ProcessorLogic, TaskHost, TimerKind};
use crate::limits::ProcessorLimits;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Store, Trap};

/// A validated, compiled processor component, ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct ProcessorModule {
    inner: Arc<ModuleInner>,
}

struct ModuleInner {
    engine: WasmEngine,
    pre: ProcessorPre<HostState>,
    from_cache: bool,
    load_time: Duration,
}

impl std::fmt::Debug for ProcessorModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorModule")
            .field("from_cache", &self.inner.from_cache)
            .field("load_time", &self.inner.load_time)
            .finish()
    }
}

impl ProcessorModule {
    pub(crate) fn new(
        engine: WasmEngine,
        pre: ProcessorPre<HostState>,
        from_cache: bool,
        load_time: Duration,
    ) -> ProcessorModule {
        ProcessorModule {
            inner: Arc::new(ModuleInner {
                engine,
                pre,
                from_cache,
                load_time,
            }),
        }
    }

    /// Whether the compiled code came from the on-disk cache (rather than being compiled).
    pub fn from_cache(&self) -> bool {
        self.inner.from_cache
    }

    /// How long compiling (or loading from the cache) took.
    pub fn load_time(&self) -> Duration {
        self.inner.load_time
    }

    /// One instance for one task (its own `Store` and linear memory). `label` tags its log
    /// output, e.g. `"wc/3"` (processor/partition). The task calls `init` on it next.
    pub fn instantiate(
        &self,
        limits: &ProcessorLimits,
        label: &str,
    ) -> Result<Box<dyn ProcessorLogic>, WasmError> {
        Ok(Box::new(self.instantiate_concrete(limits, label, None)?))
    }

    /// [`instantiate`](Self::instantiate) for a task: a call in progress ends with
    /// [`ProcessorError::Interrupted`] soon after `interrupt` is raised.
    pub fn instantiate_interruptible(
        &self,
        limits: &ProcessorLimits,
        label: &str,
        interrupt: &Interrupt,
    ) -> Result<Box<dyn ProcessorLogic>, WasmError> {
        Ok(Box::new(self.instantiate_concrete(
            limits,
            label,
            Some(interrupt.clone()),
        )?))
    }

    fn instantiate_concrete(
        &self,
        limits: &ProcessorLimits,
        label: &str,
        interrupt: Option<Interrupt>,
    ) -> Result<WasmProcessor, WasmError> {
        let engine = &self.inner.engine.inner;
        if limits.memory_bytes > engine.config.max_memory_bytes {
            return Err(WasmError::Instantiate(format!(
                "limits.memory_bytes ({}) is over this node's maximum ({})",
                limits.memory_bytes, engine.config.max_memory_bytes
            )));
        }
        let tick_ms = engine.config.epoch_tick.as_millis().max(1) as u64;
        // One more tick than the limit: the first tick may come at once.
        let deadline_ticks = limits.cpu_ms_per_call.div_ceil(tick_ms).saturating_add(1);
        let clock = CallClock::new(deadline_ticks, interrupt, engine.stopping.clone());
        let mut store = Store::new(&engine.engine, HostState::new(limits, label, clock));
        store.limiter(|s| s);
        deadline::install(&mut store);
        deadline::start_call(&mut store, 0);
        let bindings = self
            .inner
            .pre
            .instantiate(&mut store)
            .map_err(|e| WasmError::Instantiate(instantiate_message(&e, &store)))?;
        Ok(WasmProcessor {
            _engine: self.inner.engine.clone(),
            store,
            bindings,
            cpu_ms: limits.cpu_ms_per_call,
            poisoned: None,
            batch_buf: Vec::new(),
            label: label.to_string(),
        })
    }
}

fn instantiate_message(e: &wasmtime::Error, store: &Store<HostState>) -> String {
    super::engine::instantiate_message(e, store.data().limit_hit.as_deref())
}

/// One instance of a processor, serving one task.
struct WasmProcessor {
    /// Keeps the epoch ticker (the CPU limit) running while the instance lives.
    _engine: WasmEngine,
    store: Store<HostState>,
    bindings: Processor,
    cpu_ms: u64,
    /// Why the instance can no longer be used (after a trap or a limit).
    poisoned: Option<String>,
    /// Reused for encoding batches.
    batch_buf: Vec<u8>,
    label: String,
}

impl WasmProcessor {
    /// Runs one guest call for `task` under the processor's limits, and classifies how it
    /// failed.
    fn call(
        &mut self,
        task: &mut dyn TaskHost,
        what: &str,
        f: impl FnOnce(&mut Store<HostState>, &Processor) -> wasmtime::Result<Result<(), String>>,
    ) -> Result<(), ProcessorError> {
        if let Some(reason) = &self.poisoned {
            return Err(ProcessorError::Host(format!(
                "this instance failed earlier ({reason}) and cannot be called again; \
                 instantiate a new one"
            )));
        }
        self.store.data_mut().begin_call(task);
        deadline::start_call(&mut self.store, 0);
        let result = catch_unwind(AssertUnwindSafe(|| f(&mut self.store, &self.bindings)));
        self.store.data_mut().end_call();
        let error = match result {
            Ok(Ok(Ok(()))) => return Ok(()),
            Ok(Ok(Err(message))) => return Err(ProcessorError::Guest(message)),
            Ok(Err(e)) => self.classify(e),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                ProcessorError::Host(format!("the host panicked during `{what}`: {message}"))
            }
        };
        tracing::debug!(instance = %self.label, call = what, error = %error, "guest call failed");
        self.poisoned = Some(error.to_string());
        Err(error)
    }

    fn classify(&self, e: wasmtime::Error) -> ProcessorError {
        let data = self.store.data();
        if let Some(reason) = &data.limit_hit {
            return ProcessorError::Limit(reason.clone());
        }
        if data.clock.ended == Some(Ended::Interrupted) {
            return ProcessorError::Interrupted(
                "the task was asked to pause or stop during the call".into(),
            );
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => ProcessorError::Limit(format!(
                "cpu time limit exceeded: the call ran longer than {} ms",
                self.cpu_ms
            )),
            Some(trap) => {
                let mut message = trap.to_string();
                if let Some(stderr) = data.log.stderr_tail() {
                    message.push_str("; guest stderr: ");
                    message.push_str(&stderr);
                }
                ProcessorError::Trap(message)
            }
            // An error raised by the host on the guest's behalf (e.g. a resource misuse).
            None => ProcessorError::Trap(format!("{e:#}")),
        }
    }
}

impl ProcessorLogic for WasmProcessor {
    fn init(
        &mut self,
        host: &mut dyn TaskHost,
        config: &[(String, String)],
    ) -> Result<(), ProcessorError> {
        self.call(host, "init", |store, p| p.call_init(store, config))
    }

    fn process(
        &mut self,
        host: &mut dyn TaskHost,
        batch: &[InputRecord],
    ) -> Result<(), ProcessorError> {
        let mut buf = std::mem::take(&mut self.batch_buf);
        codec::encode_batch(batch, &mut buf);
        let result = self.call(host, "process", |store, p| p.call_process(store, &buf));
        // Keep the allocation unless a huge batch made it huge.
        if buf.capacity() <= 16 << 20 {
            self.batch_buf = buf;
        }
        result
    }

    fn on_timer(
        &mut self,
        host: &mut dyn TaskHost,
        kind: TimerKind,
        time: i64,
    ) -> Result<(), ProcessorError> {
        self.call(host, "on-timer", |store, p| {
            p.call_on_timer(store, kind.into(), time)
        })
    }
}

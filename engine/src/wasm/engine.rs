//! [`WasmEngine`]: the one wasmtime `Engine` and `Linker` of a node (pooling allocator, epoch
//! ticker, compiled-component cache), and [`WasmEngine::load_processor`], which validates an
//! uploaded component and compiles it (or loads it from the cache) into a
//! [`ProcessorModule`]. UDF components load through the same engine and cache
//! ([`WasmEngine::load_udf`], in `udf.rs`).

use super::bindings::ProcessorPre;
use super::cache::{ArtifactCache, Origin};
use super::error::WasmError;
use super::imports::HostState;
use super::instance::ProcessorModule;
use super::udf::UdfState;
use crate::limits::ProcessorLimits;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// Exports a processor component must have (world-level functions of `processor`).
const REQUIRED_EXPORTS: [&str; 3] = ["init", "process", "on-timer"];
/// Import namespaces a processor may use: the WIT package, and WASI 0.2 (linked empty).
const ALLOWED_IMPORTS: [&str; 2] = ["weir:processor/", "wasi:"];

/// Settings of a node's Wasm engine.
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// Directory of compiled components (`<sha256>.cwasm`), kept across restarts.
    pub cache_dir: PathBuf,
    /// Most processor instances alive at once on this node (one per running task): the size
    /// of the pooling allocator's pools.
    pub max_instances: u32,
    /// Largest `limits.memory_bytes` any processor may be given: the size of one linear
    /// memory slot of the pool (virtual address space, not resident memory).
    pub max_memory_bytes: u64,
    /// Period of the epoch ticker that enforces `limits.cpu_ms_per_call` (its resolution).
    pub epoch_tick: Duration,
    /// Writes `/tmp/perf-<pid>.map` so that `perf` names guest functions (for profiling).
    pub perf_map: bool,
}

impl WasmConfig {
    /// Defaults: 256 instances, 4 GiB memories, a 2 ms epoch tick.
    pub fn new(cache_dir: impl Into<PathBuf>) -> WasmConfig {
        WasmConfig {
            cache_dir: cache_dir.into(),
            max_instances: 256,
            max_memory_bytes: 4 << 30,
            epoch_tick: Duration::from_millis(2),
            perf_map: false,
        }
    }
}

/// The Wasm engine of a node: compiles and caches components, and owns the pools all their
/// instances come from. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct WasmEngine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) engine: Engine,
    linker: Linker<HostState>,
    /// WASI (empty) and the `weir:udf` types: all a UDF component may import.
    pub(crate) udf_linker: Linker<UdfState>,
    pub(crate) cache: ArtifactCache,
    pub(crate) config: WasmConfig,
    /// Set when the node shuts down: every running guest call ends at its next check.
    pub(crate) stopping: Arc<AtomicBool>,
    _ticker: Ticker,
}

/// Increments the engine's epoch every `epoch_tick` until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl WasmEngine {
    pub fn new(config: WasmConfig) -> Result<WasmEngine, WasmError> {
        if config.max_instances == 0 {
            return Err(WasmError::Engine("max_instances must be positive".into()));
        }
        if config.epoch_tick.is_zero() {
            return Err(WasmError::Engine("epoch_tick must be positive".into()));
        }
        let max_memory = usize::try_from(config.max_memory_bytes)
            .map_err(|_| WasmError::Engine("max_memory_bytes is too large".into()))?;
        let n = config.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(8))
            .max_tables_per_module(4)
            .table_elements(65_536)
            .max_memory_size(max_memory);
        let mut c = Config::new();
        c.wasm_component_model(true)
            .epoch_interruption(true)
            // No component-model async here: saves 300–400 ns per call.
            .concurrency_support(false)
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if config.perf_map {
            c.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&c).map_err(|e| WasmError::Engine(format!("{e:#}")))?;

        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| WasmError::Engine(format!("linking WASI: {e:#}")))?;
        super::bindings::Processor::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| WasmError::Engine(format!("linking weir:processor: {e:#}")))?;
        super::imports::link_emit_batch(&mut linker)
            .map_err(|e| WasmError::Engine(format!("linking emit-batch: {e:#}")))?;

        let udf_linker = super::udf::linker(&engine)?;
        let cache = ArtifactCache::open(&config.cache_dir, &engine)?;

        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let engine = engine.clone();
            let stop = stop.clone();
            let tick = config.epoch_tick;
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::park_timeout(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| WasmError::Engine(format!("cannot start the epoch thread: {e}")))?
        };

        Ok(WasmEngine {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                udf_linker,
                cache,
                config,
                stopping: Arc::new(AtomicBool::new(false)),
                _ticker: Ticker {
                    stop,
                    thread: Some(thread),
                },
            }),
        })
    }

    /// Ends every guest call running now or later (processors and UDFs) at its next
    /// deadline check: the node is shutting down.
    pub fn interrupt_all(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
    }

    /// The slots of the pooling allocator: most instances alive at once.
    pub fn max_instances(&self) -> u32 {
        self.inner.config.max_instances
    }

    /// Validates a processor component (a component, of the right world, with its exports,
    /// no larger than `limits.max_module_bytes`) and compiles it, or loads it from the cache.
    pub fn load_processor(
        &self,
        wasm: &[u8],
        limits: &ProcessorLimits,
    ) -> Result<ProcessorModule, WasmError> {
        let size = wasm.len() as u64;
        if size > limits.max_module_bytes {
            return Err(WasmError::TooLarge {
                size,
                limit: limits.max_module_bytes,
            });
        }
        check_header(wasm)?;
        let engine = &self.inner.engine;
        let started = Instant::now();
        let (component, origin) = self.inner.cache.load_or_compile(engine, wasm, || {
            Component::new(engine, wasm).map_err(|e| WasmError::Compile(format!("{e:#}")))
        })?;
        let load_time = started.elapsed();
        check_world(engine, &component)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| WasmError::WrongWorld(format!("{e:#}")))?;
        let pre = ProcessorPre::new(pre).map_err(|e| WasmError::WrongWorld(format!("{e:#}")))?;
        tracing::debug!(
            bytes = size,
            ?origin,
            ?load_time,
            "processor component loaded"
        );
        Ok(ProcessorModule::new(
            self.clone(),
            pre,
            origin == Origin::Cached,
            load_time,
        ))
    }
}

/// Checks the preamble: `\0asm`, then the component-model version/layer (a cheap test that
/// bytes are a component at all, without compiling them).
pub fn check_header(wasm: &[u8]) -> Result<(), WasmError> {
    const MAGIC: &[u8; 4] = b"\0asm";
    const CORE: [u8; 4] = [1, 0, 0, 0];
    const COMPONENT: [u8; 4] = [0x0d, 0, 1, 0];
    if wasm.len() < 8 || &wasm[..4] != MAGIC {
        return Err(WasmError::NotAComponent(
            "the file does not start with the WebAssembly magic number (\\0asm)".into(),
        ));
    }
    let version = [wasm[4], wasm[5], wasm[6], wasm[7]];
    if version == CORE {
        return Err(WasmError::NotAComponent(
            "this is a core WebAssembly module; processors are components (build Rust with \
             `--target wasm32-wasip2`, or wrap a module with `wasm-tools component new`)"
                .into(),
        ));
    }
    if version != COMPONENT {
        return Err(WasmError::NotAComponent(format!(
            "unsupported WebAssembly version/layer {version:02x?} (expected a component, \
             {COMPONENT:02x?})"
        )));
    }
    Ok(())
}

/// Checks imports and exports against the `processor` world, naming what does not fit.
fn check_world(engine: &Engine, component: &Component) -> Result<(), WasmError> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        if !ALLOWED_IMPORTS.iter().any(|p| name.starts_with(p)) {
            return Err(WasmError::WrongWorld(format!(
                "it imports `{name}`, which Weir does not provide (a processor may import \
                 weir:processor/* and the WASI 0.2 interfaces a language runtime needs)"
            )));
        }
    }
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let missing: Vec<&str> = REQUIRED_EXPORTS
        .iter()
        .copied()
        .filter(|e| !exports.contains(e))
        .collect();
    if !missing.is_empty() {
        let has = if exports.is_empty() {
            "none".to_string()
        } else {
            exports.join(", ")
        };
        return Err(WasmError::WrongWorld(format!(
            "missing export(s) {} (it exports: {has}); implement the `processor` world of \
             wit/processor.wit (weir:processor@0.1.0)",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// Why an instantiation failed, for a processor's or a UDF's instance: the limit the
/// instance hit while starting (`limit_hit`), else wasmtime's error, with a hint when the
/// pooling allocator has no free slot.
pub(super) fn instantiate_message(e: &wasmtime::Error, limit_hit: Option<&str>) -> String {
    if let Some(reason) = limit_hit {
        return reason.to_string();
    }
    let msg = format!("{e:#}");
    if msg.contains("maximum concurrent limit") {
        format!("{msg} (all instance slots of this node are in use: raise max_instances)")
    } else {
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks_name_the_problem() {
        let e = check_header(b"hello world").unwrap_err();
        assert_eq!(e.code(), "not_a_component");
        let e = check_header(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(e.to_string().contains("core WebAssembly module"), "{e}");
        let e = check_header(b"\0asm\x0e\0\x01\0").unwrap_err();
        assert!(e.to_string().contains("unsupported"), "{e}");
        check_header(b"\0asm\x0d\0\x01\0").unwrap();
    }
}

//! The wasmtime host: runs processor components (`wit/processor.wit`, world
//! `weir:processor/processor`) in sandboxed instances, one per task.
//!
//! - [`WasmEngine`] (one per node): wasmtime `Engine` + `Linker` (WASI 0.2 with nothing in it,
//!   and the `state`/`context` imports), pooling allocator, epoch ticker thread, on-disk cache
//!   of compiled components. [`WasmEngine::load_processor`] validates and compiles an upload.
//! - [`ProcessorModule`] (one per processor version): an `InstancePre`;
//!   [`ProcessorModule::instantiate`] gives one [`ProcessorLogic`](crate::host::ProcessorLogic)
//!   per task, with its own `Store` and linear memory.
//! - Limits ([`ProcessorLimits`](crate::limits::ProcessorLimits)): CPU time per call (epoch
//!   deadline), memory (a `ResourceLimiter`), records and bytes emitted per call (counted in
//!   the `emit` imports), module size (at load). A trap or a limit fails the call and poisons
//!   the instance; the task makes a new one.
//!
//! - UDFs (`wit/udf/udf.wit`, worlds `weir:udf/scalar-udf` and `aggregate-udf`):
//!   [`WasmEngine::load_udf`] validates a function component, compiles it (same cache) and
//!   calls its `signature()`; a [`UdfModule`] makes per-task instances implementing
//!   [`ScalarUdf`](crate::udf::ScalarUdf) / [`AggregateUdf`](crate::udf::AggregateUdf) under
//!   [`UdfLimits`] (CPU per call, memory; a trapped instance is replaced on the next call).
//!
//! This module knows nothing of tasks, RocksDB or the log: guests reach them only through
//! the [`TaskHost`](crate::host::TaskHost) of the call in progress.

mod bindings;
mod cache;
mod codec;
mod deadline;
mod engine;
mod error;
mod growth;
mod guest_log;
mod imports;
mod instance;
mod udf;
mod udf_instance;

pub use engine::{WasmConfig, WasmEngine, check_header as check_component_header};
pub use error::WasmError;
pub use instance::ProcessorModule;
pub use udf::{UdfLimits, UdfModule};

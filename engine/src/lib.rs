//! `weir-engine` runs user code compiled to WebAssembly components over the log: the
//! wasmtime host (`wasm`), per-partition tasks (`task`), RocksDB state stores with changelogs
//! (`state`), and later streaming SQL. It depends on `weir-broker` for the log and never the
//! other way round; the broker knows nothing of Wasm.
//!
//! [`host`] is the contract between the task runtime and a running processor;
//! [`log_access`] is everything the engine asks of the log (implemented by the local
//! `Broker`); [`Engine`] is the facade the HTTP API uses (deploy, describe, query, …);
//! [`native`] holds Rust processors for tests and benchmarks.

mod admission;
pub mod assignment;
pub mod catalog;
pub mod clock;
pub mod engine;
pub mod error;
#[cfg(test)]
pub(crate) mod faulty_log;
pub mod host;
pub mod limits;
pub mod log_access;
pub mod native;
pub mod sql;
pub mod state;
pub mod task;
pub mod task_id;
pub mod udf;
pub mod wasm;

pub use engine::{Engine, EngineConfig};
pub use error::{EngineError, ErrorKind};

//! `weir-engine` runs user code compiled to WebAssembly components over the log: the
//! wasmtime host (`wasm`), per-partition tasks (`task`), RocksDB state stores with changelogs
//! (`state`), and later streaming SQL. It depends on `weir-broker` for the log and never the
//! other way round; the broker knows nothing of Wasm.
//!
//! [`host`] is the contract between the task runtime and a running processor.

pub mod host;
pub mod limits;

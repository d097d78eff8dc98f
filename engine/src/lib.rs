//! `weir-engine` will run user code compiled to WebAssembly components over the log: the
//! wasmtime host, per-partition tasks, RocksDB state stores with changelogs, and streaming
//! SQL. It depends on `weir-broker` for the log and never the other way round.
//!
//! Nothing is implemented yet; this crate exists so the workspace has its final shape.

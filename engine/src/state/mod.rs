//! State stores: the key-value stores a processor's tasks keep, their changelogs and their
//! restoration. [`StateBackend`] is the node's storage (RocksDB in [`rocks`], a map in
//! [`memory`]); it hands each task one [`StateStore`] that holds all of that task's named
//! stores and nothing of any other task's. The traits know nothing of RocksDB, the log or
//! Wasm; [`changelog`] and [`restore`] connect stores to the log through
//! [`crate::log_access::LogAccess`]; [`write_buffer`] holds a task's uncommitted writes.
//!
//! It does not decide when to commit (that is the task runtime, `crate::task`).

pub mod changelog;
mod error;
pub mod keys;
pub mod memory;
pub mod restore;
pub mod rocks;
pub mod write_buffer;

#[cfg(test)]
pub(crate) mod conformance;

use std::sync::Arc;

use bytes::Bytes;

pub use error::StateError;

use crate::task_id::TaskId;

/// The writes of one store in a batch: `(key, Some(value))` puts, `(key, None)` deletes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreWrites {
    pub store: String,
    pub entries: Vec<(Bytes, Option<Bytes>)>,
}

/// Writes applied together: every store's entries and the engine's bookkeeping (`meta`:
/// `(name, Some(value))` sets, `(name, None)` removes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreBatch {
    pub stores: Vec<StoreWrites>,
    pub meta: Vec<(String, Option<Bytes>)>,
}

impl StoreBatch {
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty() && self.stores.iter().all(|s| s.entries.is_empty())
    }
}

/// One task's stores. Shared (`Arc`) between the task, which writes, and interactive
/// queries, which read what the task has committed.
pub trait StateStore: Send + Sync {
    /// The committed value of `key` in `store`.
    fn get(&self, store: &str, key: &[u8]) -> Result<Option<Bytes>, StateError>;
    /// Committed entries with `start <= key < end` (unbounded where `None`), in key order, at
    /// most `limit`.
    fn range(
        &self,
        store: &str,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StateError>;
    /// Applies a batch atomically; once it returns, the batch survives a crash of the process.
    fn write(&self, batch: &StoreBatch) -> Result<(), StateError>;
    /// Applies a batch atomically but possibly only in memory (for bulk restoration): it may
    /// be lost in a crash until [`StateStore::flush`] returns.
    fn write_unlogged(&self, batch: &StoreBatch) -> Result<(), StateError>;
    /// Makes every earlier write durable.
    fn flush(&self) -> Result<(), StateError>;
    /// An engine bookkeeping value (see [`StoreBatch::meta`]).
    fn meta(&self, name: &str) -> Result<Option<Bytes>, StateError>;
    /// Removes every store and bookkeeping value of the task (durably).
    fn clear(&self) -> Result<(), StateError>;
}

/// The node's state storage: one [`StateStore`] per task.
pub trait StateBackend: Send + Sync {
    /// Opens (creating if needed) the state of `task`.
    fn open(&self, task: &TaskId) -> Result<Arc<dyn StateStore>, StateError>;
    /// Removes the state of `task`; handles still open fail from then on.
    fn destroy(&self, task: &TaskId) -> Result<(), StateError>;
    /// Tasks that have state on this node.
    fn tasks(&self) -> Result<Vec<TaskId>, StateError>;
    /// `rocksdb` or `memory`, for logs.
    fn kind(&self) -> &'static str;
}

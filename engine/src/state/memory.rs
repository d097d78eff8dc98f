//! An in-memory [`StateBackend`]: one ordered map per task, kept for the life of the
//! backend (so a task closed and reopened finds its state, as on RocksDB). For tests and
//! for benchmarks that leave the disk out; nothing survives the process.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use super::keys::{self, data_key, meta_key, range_bounds};
use super::{StateBackend, StateError, StateStore, StoreBatch};
use crate::task_id::TaskId;

/// Every task's state in memory.
#[derive(Default)]
pub struct MemoryBackend {
    tasks: Mutex<HashMap<TaskId, Arc<MemoryStore>>>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        MemoryBackend::default()
    }
}

/// One task's state in memory.
pub struct MemoryStore {
    task: String,
    map: RwLock<BTreeMap<Vec<u8>, Bytes>>,
    removed: AtomicBool,
}

impl MemoryStore {
    fn check(&self) -> Result<(), StateError> {
        if self.removed.load(Ordering::Acquire) {
            return Err(StateError::TaskRemoved(self.task.clone()));
        }
        Ok(())
    }

    fn apply(&self, batch: &StoreBatch) -> Result<(), StateError> {
        self.check()?;
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        for s in &batch.stores {
            keys::check_store_name(&s.store)?;
            for (k, v) in &s.entries {
                let key = data_key(&s.store, k);
                match v {
                    Some(v) => map.insert(key, v.clone()),
                    None => map.remove(&key),
                };
            }
        }
        for (name, v) in &batch.meta {
            let key = meta_key(name);
            match v {
                Some(v) => map.insert(key, v.clone()),
                None => map.remove(&key),
            };
        }
        Ok(())
    }
}

impl StateStore for MemoryStore {
    fn get(&self, store: &str, key: &[u8]) -> Result<Option<Bytes>, StateError> {
        self.check()?;
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        Ok(map.get(&data_key(store, key)).cloned())
    }

    fn range(
        &self,
        store: &str,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StateError> {
        self.check()?;
        let (lower, upper) = range_bounds(store, start, end);
        if lower >= upper {
            return Ok(Vec::new());
        }
        let prefix = 1 + store.len();
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        Ok(map
            .range::<Vec<u8>, _>((Bound::Included(&lower), Bound::Excluded(&upper)))
            .take(limit)
            .map(|(k, v)| (Bytes::copy_from_slice(&k[prefix..]), v.clone()))
            .collect())
    }

    fn write(&self, batch: &StoreBatch) -> Result<(), StateError> {
        self.apply(batch)
    }

    fn write_unlogged(&self, batch: &StoreBatch) -> Result<(), StateError> {
        self.apply(batch)
    }

    fn flush(&self) -> Result<(), StateError> {
        self.check()
    }

    fn meta(&self, name: &str) -> Result<Option<Bytes>, StateError> {
        self.check()?;
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        Ok(map.get(&meta_key(name)).cloned())
    }

    fn clear(&self) -> Result<(), StateError> {
        self.check()?;
        self.map.write().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }
}

impl StateBackend for MemoryBackend {
    fn open(&self, task: &TaskId) -> Result<Arc<dyn StateStore>, StateError> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let store = tasks.entry(task.clone()).or_insert_with(|| {
            Arc::new(MemoryStore {
                task: task.to_string(),
                map: RwLock::default(),
                removed: AtomicBool::new(false),
            })
        });
        Ok(store.clone())
    }

    fn destroy(&self, task: &TaskId) -> Result<(), StateError> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = tasks.remove(task) {
            store.removed.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn tasks(&self) -> Result<Vec<TaskId>, StateError> {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<TaskId> = tasks.keys().cloned().collect();
        v.sort();
        Ok(v)
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        super::super::conformance::run_all(&MemoryBackend::new());
    }
}

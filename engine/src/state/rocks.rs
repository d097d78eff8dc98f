//! The RocksDB [`StateBackend`]: one database per node (`<data_dir>/state/rocksdb`), one
//! column family per task (named `<processor>/<partition>`), keys laid out as in [`keys`].
//! Memtables update values in place (state is mostly keys rewritten over and over).
//! Commits are WriteBatches with the WAL on (a process crash loses nothing written;
//! `fsync` is left to RocksDB's own WAL policy, so power loss may lose the tail — the
//! changelog has it). Restoration writes without the WAL and flushes at the end.
//!
//! A database that cannot be opened (corrupt, or from an incompatible version) is moved
//! aside and recreated empty: every task then restores from its changelogs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rocksdb::{
    BoundColumnFamily, DBWithThreadMode, MultiThreaded, Options, ReadOptions, WriteBatch,
    WriteOptions,
};

use super::keys::{self, ALL_LOWER, ALL_UPPER, data_key, meta_key, range_bounds};
use super::{StateBackend, StateError, StateStore, StoreBatch};
use crate::task_id::TaskId;

type Db = DBWithThreadMode<MultiThreaded>;

/// The node's RocksDB database.
pub struct RocksBackend {
    db: Arc<Db>,
    path: PathBuf,
}

fn options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    o.set_keep_log_file_num(2);
    o.set_max_background_jobs(2);
    o.increase_parallelism(2);
    // State is mostly counters and aggregates: the same keys rewritten commit after commit.
    // In-place memtable updates keep one entry per key instead of one per version (2-3×
    // faster commits here). It rules out snapshot-consistent iteration under concurrent
    // writes, which nothing uses: a store has one writer, its task.
    o.set_allow_concurrent_memtable_write(false);
    o.set_inplace_update_support(true);
    o
}

impl RocksBackend {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<RocksBackend, StateError> {
        std::fs::create_dir_all(path).map_err(|e| StateError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        match Self::open_existing(path) {
            Ok(b) => Ok(b),
            Err(e) => {
                let aside = path.with_extension(format!("corrupt-{}", crate::clock::now_ms()));
                tracing::warn!(
                    path = %path.display(), error = %e,
                    "cannot open the state database; moving it to {} and starting empty \
                     (tasks restore from their changelogs)",
                    aside.display()
                );
                std::fs::rename(path, &aside).map_err(|io| StateError::Io {
                    path: path.to_path_buf(),
                    message: io.to_string(),
                })?;
                std::fs::create_dir_all(path).map_err(|io| StateError::Io {
                    path: path.to_path_buf(),
                    message: io.to_string(),
                })?;
                Self::open_existing(path)
            }
        }
    }

    fn open_existing(path: &Path) -> Result<RocksBackend, StateError> {
        let opts = options();
        let mut cfs = Db::list_cf(&opts, path).unwrap_or_default();
        if !cfs.iter().any(|c| c == "default") {
            cfs.push("default".to_string());
        }
        let db = Db::open_cf(&opts, path, &cfs).map_err(|e| backend(path, e))?;
        Ok(RocksBackend {
            db: Arc::new(db),
            path: path.to_path_buf(),
        })
    }
}

fn backend(path: &Path, e: rocksdb::Error) -> StateError {
    StateError::Backend {
        path: path.to_path_buf(),
        message: e.into_string(),
    }
}

/// One task's column family.
pub struct RocksStore {
    db: Arc<Db>,
    cf: String,
    path: PathBuf,
}

impl RocksStore {
    fn cf(&self) -> Result<Arc<BoundColumnFamily<'_>>, StateError> {
        self.db
            .cf_handle(&self.cf)
            .ok_or_else(|| StateError::TaskRemoved(self.cf.clone()))
    }

    fn err(&self, e: rocksdb::Error) -> StateError {
        backend(&self.path, e)
    }

    fn batch(&self, batch: &StoreBatch) -> Result<WriteBatch, StateError> {
        let cf = self.cf()?;
        let mut wb = WriteBatch::default();
        let mut key = Vec::new();
        for s in &batch.stores {
            keys::check_store_name(&s.store)?;
            let prefix = keys::store_prefix(&s.store);
            for (k, v) in &s.entries {
                key.clear();
                key.extend_from_slice(&prefix);
                key.extend_from_slice(k);
                match v {
                    Some(v) => wb.put_cf(&cf, &key, v),
                    None => wb.delete_cf(&cf, &key),
                }
            }
        }
        for (name, v) in &batch.meta {
            match v {
                Some(v) => wb.put_cf(&cf, meta_key(name), v),
                None => wb.delete_cf(&cf, meta_key(name)),
            }
        }
        Ok(wb)
    }
}

impl StateStore for RocksStore {
    fn get(&self, store: &str, key: &[u8]) -> Result<Option<Bytes>, StateError> {
        let cf = self.cf()?;
        let v = self
            .db
            .get_cf(&cf, data_key(store, key))
            .map_err(|e| self.err(e))?;
        Ok(v.map(Bytes::from))
    }

    fn range(
        &self,
        store: &str,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StateError> {
        let cf = self.cf()?;
        let (lower, upper) = range_bounds(store, start, end);
        if lower >= upper || limit == 0 {
            return Ok(Vec::new());
        }
        let prefix = 1 + store.len();
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(upper);
        let mut it = self.db.raw_iterator_cf_opt(&cf, ro);
        it.seek(&lower);
        let mut out = Vec::new();
        while it.valid() && out.len() < limit {
            if let (Some(k), Some(v)) = (it.key(), it.value()) {
                out.push((
                    Bytes::copy_from_slice(&k[prefix..]),
                    Bytes::copy_from_slice(v),
                ));
            }
            it.next();
        }
        it.status().map_err(|e| self.err(e))?;
        Ok(out)
    }

    fn write(&self, batch: &StoreBatch) -> Result<(), StateError> {
        let wb = self.batch(batch)?;
        self.db.write(wb).map_err(|e| self.err(e))
    }

    fn write_unlogged(&self, batch: &StoreBatch) -> Result<(), StateError> {
        let wb = self.batch(batch)?;
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.db.write_opt(wb, &wo).map_err(|e| self.err(e))
    }

    fn flush(&self) -> Result<(), StateError> {
        let cf = self.cf()?;
        self.db.flush_cf(&cf).map_err(|e| self.err(e))
    }

    fn meta(&self, name: &str) -> Result<Option<Bytes>, StateError> {
        let cf = self.cf()?;
        let v = self
            .db
            .get_cf(&cf, meta_key(name))
            .map_err(|e| self.err(e))?;
        Ok(v.map(Bytes::from))
    }

    fn clear(&self) -> Result<(), StateError> {
        let cf = self.cf()?;
        let mut wb = WriteBatch::default();
        wb.delete_range_cf(&cf, ALL_LOWER, ALL_UPPER);
        self.db.write(wb).map_err(|e| self.err(e))
    }
}

impl StateBackend for RocksBackend {
    fn open(&self, task: &TaskId) -> Result<Arc<dyn StateStore>, StateError> {
        let name = task.to_string();
        if self.db.cf_handle(&name).is_none() {
            self.db
                .create_cf(&name, &options())
                .map_err(|e| backend(&self.path, e))?;
        }
        Ok(Arc::new(RocksStore {
            db: self.db.clone(),
            cf: name,
            path: self.path.clone(),
        }))
    }

    fn destroy(&self, task: &TaskId) -> Result<(), StateError> {
        let name = task.to_string();
        if self.db.cf_handle(&name).is_none() {
            return Ok(());
        }
        self.db.drop_cf(&name).map_err(|e| backend(&self.path, e))
    }

    fn tasks(&self) -> Result<Vec<TaskId>, StateError> {
        let names = Db::list_cf(&options(), &self.path).map_err(|e| backend(&self.path, e))?;
        let mut v: Vec<TaskId> = names.iter().filter_map(|n| TaskId::parse(n)).collect();
        v.sort();
        Ok(v)
    }

    fn kind(&self) -> &'static str {
        "rocksdb"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StoreWrites;

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let backend = RocksBackend::open(&dir.path().join("rocksdb")).unwrap();
        crate::state::conformance::run_all(&backend);
    }

    #[test]
    fn state_survives_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rocksdb");
        let task = TaskId::new("p", 0);
        {
            let b = RocksBackend::open(&path).unwrap();
            let s = b.open(&task).unwrap();
            s.write(&StoreBatch {
                stores: vec![StoreWrites {
                    store: "counts".into(),
                    entries: vec![(Bytes::from_static(b"k"), Some(Bytes::from_static(b"1")))],
                }],
                meta: vec![("checkpoint".into(), Some(Bytes::from_static(b"9")))],
            })
            .unwrap();
            // Unlogged writes survive once flushed.
            s.write_unlogged(&StoreBatch {
                stores: vec![StoreWrites {
                    store: "counts".into(),
                    entries: vec![(Bytes::from_static(b"u"), Some(Bytes::from_static(b"2")))],
                }],
                meta: vec![],
            })
            .unwrap();
            s.flush().unwrap();
        }
        let b = RocksBackend::open(&path).unwrap();
        assert_eq!(b.tasks().unwrap(), vec![task.clone()]);
        let s = b.open(&task).unwrap();
        assert_eq!(s.get("counts", b"k").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(s.get("counts", b"u").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(s.meta("checkpoint").unwrap().as_deref(), Some(&b"9"[..]));
    }

    #[test]
    fn an_unreadable_database_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rocksdb");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("CURRENT"), b"garbage\n").unwrap();
        let b = RocksBackend::open(&path).unwrap();
        assert!(b.tasks().unwrap().is_empty());
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("corrupt")
            })
            .count();
        assert_eq!(aside, 1);
    }
}

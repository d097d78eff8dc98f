//! The RocksDB [`StateBackend`]: one database per node (`<data_dir>/state/rocksdb`), one
//! column family per task (named `<processor>/<partition>`), keys laid out as in [`keys`].
//! Commits are WriteBatches with the WAL on (a process crash loses nothing written;
//! `fsync` is left to RocksDB's own WAL policy, so power loss may lose the tail — the
//! changelog has it). Restoration writes large chunks as sorted SST files ingested into the
//! column family (`<path>.ingest/` holds them meanwhile), smaller ones without the WAL, and
//! flushes at the end.
//!
//! A database that cannot be opened (corrupt, or from an incompatible version) is moved
//! aside and recreated empty: every task then restores from its changelogs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rocksdb::{
    BoundColumnFamily, DBCompressionType, DBWithThreadMode, IngestExternalFileOptions,
    MultiThreaded, Options, ReadOptions, SstFileWriter, WriteBatch, WriteOptions,
};

use super::keys::{self, ALL_LOWER, ALL_UPPER, data_key, meta_key, range_bounds};
use super::{StateBackend, StateError, StateStore, StoreBatch};
use crate::task_id::TaskId;

type Db = DBWithThreadMode<MultiThreaded>;

/// Unlogged batches at least this large are ingested as SST files.
const INGEST_MIN_ENTRIES: usize = 10_000;

/// Numbers the SST files written for ingestion.
static INGEST_FILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Directory (beside the database) for SST files waiting to be ingested.
fn ingest_dir(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".ingest");
    path.with_file_name(name)
}

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
        let ingest = ingest_dir(path);
        let _ = std::fs::remove_dir_all(&ingest);
        std::fs::create_dir_all(&ingest).map_err(|e| StateError::Io {
            path: ingest.clone(),
            message: e.to_string(),
        })?;
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
    ingest_dir: PathBuf,
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

impl RocksStore {
    /// Writes a large batch as a sorted SST file and ingests it into the column family:
    /// no memtable, no WAL (restoration's bulk path; several times faster than inserting).
    /// The ingested file gets a sequence number above everything in the store, so it
    /// overrides older values as a write would. Durable once this returns.
    fn ingest(&self, batch: &StoreBatch) -> Result<(), StateError> {
        let cf = self.cf()?;
        let mut entries: Vec<(Vec<u8>, Option<&Bytes>)> = Vec::new();
        for s in &batch.stores {
            keys::check_store_name(&s.store)?;
            for (k, v) in &s.entries {
                entries.push((data_key(&s.store, k), v.as_ref()));
            }
        }
        // Stable: for a key written twice, the later write stays after the earlier one.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let n = INGEST_FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = self
            .ingest_dir
            .join(format!("{}-{n}.sst", self.cf.replace('/', "_")));
        let result = (|| {
            // Uncompressed: compaction recompresses later, off the restoration's path.
            let mut opts = Options::default();
            opts.set_compression_type(DBCompressionType::None);
            let mut writer = SstFileWriter::create(&opts);
            writer.open(&file)?;
            for (i, (k, v)) in entries.iter().enumerate() {
                // Keys must be strictly increasing: keep only the last write of each.
                if entries.get(i + 1).is_some_and(|next| next.0 == *k) {
                    continue;
                }
                match v {
                    Some(v) => writer.put(k, v)?,
                    None => writer.delete(k)?,
                }
            }
            writer.finish()?;
            let mut io = IngestExternalFileOptions::default();
            io.set_move_files(true);
            self.db.ingest_external_file_cf_opts(&cf, &io, vec![&file])
        })();
        let _ = std::fs::remove_file(&file);
        result.map_err(|e| self.err(e))
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
        let entries: usize = batch.stores.iter().map(|s| s.entries.len()).sum();
        if entries >= INGEST_MIN_ENTRIES && batch.meta.is_empty() {
            return self.ingest(batch);
        }
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
            ingest_dir: ingest_dir(&self.path),
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
    fn large_unlogged_batches_are_ingested_with_write_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let b = RocksBackend::open(&dir.path().join("rocksdb")).unwrap();
        let s = b.open(&TaskId::new("p", 1)).unwrap();
        let put = |k: &str, v: Option<&str>| {
            (
                Bytes::copy_from_slice(k.as_bytes()),
                v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            )
        };
        // Older values in the memtable, to be overridden or deleted.
        s.write(&StoreBatch {
            stores: vec![StoreWrites {
                store: "s".into(),
                entries: vec![put("k00001", Some("old")), put("k00002", Some("old"))],
            }],
            meta: vec![],
        })
        .unwrap();
        let mut entries: Vec<(Bytes, Option<Bytes>)> = (0..INGEST_MIN_ENTRIES + 10)
            .rev()
            .map(|i| put(&format!("k{i:05}"), Some("v1")))
            .collect();
        // The same key twice in one batch: the later write wins.
        entries.push(put("k00003", Some("v2")));
        entries.push(put("k00002", None));
        s.write_unlogged(&StoreBatch {
            stores: vec![StoreWrites {
                store: "s".into(),
                entries,
            }],
            meta: vec![],
        })
        .unwrap();
        assert_eq!(s.get("s", b"k00001").unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(s.get("s", b"k00002").unwrap(), None);
        assert_eq!(s.get("s", b"k00003").unwrap().as_deref(), Some(&b"v2"[..]));
        assert_eq!(
            s.range("s", None, None, usize::MAX).unwrap().len(),
            INGEST_MIN_ENTRIES + 9
        );
        // Other tasks see none of it; later writes override the ingested values.
        assert_eq!(
            b.open(&TaskId::new("p", 2))
                .unwrap()
                .get("s", b"k00001")
                .unwrap(),
            None
        );
        s.write(&StoreBatch {
            stores: vec![StoreWrites {
                store: "s".into(),
                entries: vec![put("k00001", Some("new"))],
            }],
            meta: vec![],
        })
        .unwrap();
        assert_eq!(s.get("s", b"k00001").unwrap().as_deref(), Some(&b"new"[..]));
        assert_eq!(
            std::fs::read_dir(dir.path().join("rocksdb.ingest"))
                .unwrap()
                .count(),
            0
        );
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

//! The Raft log and vote on disk: [`LogStore`], openraft's `RaftLogStorage` over a RocksDB
//! database of its own (`<dir>/raft-log`, column families `logs` — entry index, big-endian →
//! JSON entry — and `meta` — vote, last purged log id, committed log id).
//!
//! Invariant 2 lives here: every append, truncation, purge and vote is one RocksDB
//! `WriteBatch` written with `sync = true` (the write-ahead log is fsynced) *before* the call
//! returns or openraft's flush callback fires, so an entry never counts toward a quorum and
//! a vote is never granted before it is on disk. The committed log id is written without
//! sync (openraft only uses it to re-apply entries faster after a restart). Blocking RocksDB
//! calls run on tokio's blocking pool. This module knows nothing of the commands inside
//! entries.

// openraft's storage traits fix the error type (`StorageError`, large); the helpers here
// return it too rather than box and unbox it on every call.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::{LogEntry, TypeConfig};
use crate::cluster::NodeId;

const CF_LOGS: &str = "logs";
const CF_META: &str = "meta";
const KEY_VOTE: &[u8] = b"vote";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
const KEY_COMMITTED: &[u8] = b"committed";

type StoreResult<T> = Result<T, StorageError<NodeId>>;

/// The node's Raft log and vote. openraft owns it; when it is dropped (Raft stopped) the
/// database closes, even while a [`LogReader`] is still around.
pub struct LogStore {
    db: Arc<DB>,
    path: PathBuf,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.path)
            .finish()
    }
}

/// A reader of the log for openraft's replication tasks. It does not keep the database
/// open: once the [`LogStore`] is gone, reads fail (the tasks are stopping anyway), so a
/// stopped node's directory can be reopened at once.
#[derive(Clone)]
pub struct LogReader {
    db: Weak<DB>,
}

/// Watches whether a log's database is still open (see [`LogStore::closed_watch`]).
#[derive(Clone)]
pub struct LogClosed {
    db: Weak<DB>,
}

impl LogClosed {
    pub fn is_closed(&self) -> bool {
        self.db.strong_count() == 0
    }
}

fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::error(e.to_string())).into()
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

fn encode<T: Serialize>(v: &T, subject: ErrorSubject<NodeId>) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| io_err(subject, ErrorVerb::Write, e))
}

fn decode<T: DeserializeOwned>(bytes: &[u8], subject: ErrorSubject<NodeId>) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| io_err(subject, ErrorVerb::Read, e))
}

fn sync_write() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
}

fn cf<'a>(db: &'a DB, name: &str) -> StoreResult<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name).ok_or_else(|| {
        io_err(
            ErrorSubject::Store,
            ErrorVerb::Read,
            format!("no column family {name}"),
        )
    })
}

fn get_meta<T: DeserializeOwned>(
    db: &DB,
    key: &[u8],
    subject: ErrorSubject<NodeId>,
) -> StoreResult<Option<T>> {
    let cf = cf(db, CF_META)?;
    match db
        .get_cf(cf, key)
        .map_err(|e| io_err(subject.clone(), ErrorVerb::Read, e))?
    {
        Some(bytes) => decode(&bytes, subject).map(Some),
        None => Ok(None),
    }
}

fn last_log_id(db: &DB) -> StoreResult<Option<LogId<NodeId>>> {
    let cf = cf(db, CF_LOGS)?;
    let mut it = db.iterator_cf(cf, IteratorMode::End);
    match it.next() {
        Some(item) => {
            let (_, value) = item.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let entry: LogEntry = decode(&value, ErrorSubject::Logs)?;
            Ok(Some(entry.log_id))
        }
        None => Ok(None),
    }
}

/// The entries with index in `range`, in order.
fn read_range<RB: RangeBounds<u64>>(db: &DB, range: RB) -> StoreResult<Vec<LogEntry>> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => Some(e.saturating_add(1)),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    let cf = cf(db, CF_LOGS)?;
    let mut out = Vec::new();
    let from = index_key(start);
    for item in db.iterator_cf(cf, IteratorMode::From(&from, Direction::Forward)) {
        let (key, value) = item.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let Some(index) = key_index(&key) else {
            return Err(io_err(
                ErrorSubject::Logs,
                ErrorVerb::Read,
                "malformed log key",
            ));
        };
        if end.is_some_and(|end| index >= end) {
            break;
        }
        out.push(decode(&value, ErrorSubject::LogIndex(index))?);
    }
    Ok(out)
}

impl LogStore {
    /// Opens (or creates) the log under `dir/raft-log`.
    pub fn open(dir: &Path) -> Result<LogStore, String> {
        let path = dir.join("raft-log");
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(2);
        opts.set_max_background_jobs(1);
        let cfs = [CF_LOGS, CF_META]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, &path, cfs)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(LogStore {
            db: Arc::new(db),
            path,
        })
    }

    /// Tells when this log's database has closed (the store and every read in flight gone).
    pub fn closed_watch(&self) -> LogClosed {
        LogClosed {
            db: Arc::downgrade(&self.db),
        }
    }

    /// Runs a blocking write on tokio's blocking pool.
    async fn blocking<F>(&self, f: F) -> StoreResult<()>
    where
        F: FnOnce(&DB) -> StoreResult<()> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<LogEntry>> {
        let db = self
            .db
            .upgrade()
            .ok_or_else(|| io_err(ErrorSubject::Logs, ErrorVerb::Read, "the log is closed"))?;
        read_range(&db, range)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<LogEntry>> {
        read_range(&self.db, range)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        let last_purged: Option<LogId<NodeId>> =
            get_meta(&self.db, KEY_LAST_PURGED, ErrorSubject::Store)?;
        let last = last_log_id(&self.db)?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            db: Arc::downgrade(&self.db),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        let bytes = encode(vote, ErrorSubject::Vote)?;
        self.blocking(move |s| {
            let cf = cf(s, CF_META)?;
            s.put_cf_opt(cf, KEY_VOTE, bytes, &sync_write())
                .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
        })
        .await
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        get_meta(&self.db, KEY_VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        let bytes = encode(&committed, ErrorSubject::Store)?;
        let cf = cf(&self.db, CF_META)?;
        self.db
            .put_cf(cf, KEY_COMMITTED, bytes)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        Ok(
            get_meta::<Option<LogId<NodeId>>>(&self.db, KEY_COMMITTED, ErrorSubject::Store)?
                .flatten(),
        )
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = LogEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = encode(&entry, ErrorSubject::Log(entry.log_id))?;
            encoded.push((entry.log_id.index, bytes));
        }
        let result = self
            .blocking(move |s| {
                let cf = cf(s, CF_LOGS)?;
                let mut batch = WriteBatch::default();
                for (index, bytes) in &encoded {
                    batch.put_cf(cf, index_key(*index), bytes);
                }
                s.write_opt(batch, &sync_write())
                    .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))
            })
            .await;
        // Only now, with the entries fsynced, may openraft count them (invariant 2).
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        self.blocking(move |s| {
            let cf = cf(s, CF_LOGS)?;
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(cf, index_key(log_id.index), index_key(u64::MAX));
            batch.delete_cf(cf, index_key(u64::MAX));
            s.write_opt(batch, &sync_write())
                .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        let bytes = encode(&log_id, ErrorSubject::Store)?;
        self.blocking(move |s| {
            let logs = cf(s, CF_LOGS)?;
            let meta = cf(s, CF_META)?;
            let mut batch = WriteBatch::default();
            batch.put_cf(meta, KEY_LAST_PURGED, bytes);
            batch.delete_range_cf(
                logs,
                index_key(0),
                index_key(log_id.index.saturating_add(1)),
            );
            s.write_opt(batch, &sync_write())
                .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
        })
        .await
    }
}

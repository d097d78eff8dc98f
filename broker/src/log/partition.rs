//! The log of one partition: an ordered set of segments in one directory, the last of them
//! active. Owns offset assignment, rolling, reads across segments, flushing and retention,
//! and the log's side of replication: the leader epoch stamped in every batch, the
//! leader-epoch cache ([`LeaderEpochCache`]), appends that keep a leader's offsets
//! ([`PartitionLog::append_as_follower`]) and truncation ([`PartitionLog::truncate_to`]).
//! Callers serialise access (one `Mutex<PartitionLog>` per partition). Segment files are
//! opened through the node's [`FileCache`]; a partition holds no descriptor of its own.
//!
//! Invariants kept here (the replication layer relies on them):
//! - every batch is written with the log's current leader epoch
//!   ([`PartitionLog::set_leader_epoch`]; `-1` on a log that is not replicated) in its
//!   `partition_leader_epoch` field, except a follower's, which keep the leader's;
//! - an epoch is in the epoch cache (fsynced) before the first batch of it is written, and
//!   epochs never decrease along the log;
//! - a truncation removes segment data durably before it touches the epoch cache, so a crash
//!   at any point reopens a prefix of the old log with a cache that covers it (entries past
//!   the log end are dropped at open).
//!
//! The log start offset (Kafka's low watermark) is the first segment's base offset unless
//! DeleteRecords moved it further ([`PartitionLog::delete_records_before`]): then it is kept
//! in the file `log-start-offset` (written to a temporary file, synced, renamed, the
//! directory synced) before it takes effect, so a restart never serves records a client was
//! told are deleted. It never decreases, except when a follower's log is emptied and
//! restarted at its leader's start ([`PartitionLog::truncate_fully_and_start_at`]); it
//! never passes the log end. Segments wholly below it are deleted (the active one stays).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::epoch::{CheckpointState, EpochEntry, LeaderEpochCache};
use super::file_cache::FileCache;
use super::segment::{Recovery, Segment};
use crate::batch;
use crate::config::FsyncPolicy;
use crate::error::{BrokerError, Result};

/// The settings a partition log runs with (topic overrides merged over server defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionSettings {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub index_interval_bytes: u64,
    pub fsync: FsyncPolicy,
    pub max_batch_bytes: usize,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<i64>,
    pub compacted: bool,
    pub delete_retention_ms: i64,
}

/// The log of one partition.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    settings: PartitionSettings,
    segments: BTreeMap<i64, Segment>,
    next_offset: i64,
    dirty: bool,
    cache: Arc<FileCache>,
    epochs: LeaderEpochCache,
    /// Written into every batch this log appends as a leader (`-1`: not replicated).
    leader_epoch: i32,
    /// The start offset DeleteRecords set (persisted in [`LOG_START_FILE`]); the log starts
    /// at the larger of it and the first segment's base.
    log_start: i64,
}

/// The file holding a partition's log start offset once DeleteRecords moved it.
pub const LOG_START_FILE: &str = "log-start-offset";

/// Reads the persisted log start offset (`0` when there is none). A file that cannot be
/// parsed is an error: serving records a client deleted would be worse than not opening.
fn load_log_start(dir: &Path) -> Result<i64> {
    let path = dir.join(LOG_START_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|o| *o >= 0)
            .ok_or_else(|| BrokerError::CorruptFile {
                path,
                reason: format!("not a log start offset: {:?}", text.trim()),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(BrokerError::io(&path, e)),
    }
}

/// Persists the log start offset crash-safely (temporary file, sync, rename, directory sync).
fn store_log_start(dir: &Path, offset: i64) -> Result<()> {
    let path = dir.join(LOG_START_FILE);
    let tmp = dir.join(format!("{LOG_START_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = File::create(&tmp)?;
        f.write_all(format!("{offset}\n").as_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| BrokerError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| BrokerError::io(&path, e))?;
    sync_dir(dir)
}

fn parse_stem(name: &str, ext: &str) -> Option<i64> {
    let stem = name.strip_suffix(ext)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

impl PartitionLog {
    /// Opens the partition in `dir` (created if missing), recovering the active segment, with
    /// a file cache of its own ([`FileCache::default`]).
    pub fn open(dir: &Path, settings: PartitionSettings) -> Result<PartitionLog> {
        Self::open_in(dir, settings, &Arc::new(FileCache::default()))
    }

    /// [`open`](Self::open) with the node's shared file cache.
    pub fn open_in(
        dir: &Path,
        settings: PartitionSettings,
        cache: &Arc<FileCache>,
    ) -> Result<PartitionLog> {
        std::fs::create_dir_all(dir).map_err(|e| BrokerError::io(dir, e))?;
        let mut bases = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| BrokerError::io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| BrokerError::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(base) = parse_stem(&name, ".log") {
                bases.push(base);
            } else if name.ends_with(".cleaned") {
                // A compaction that did not finish: the original segment is intact.
                let p = entry.path();
                std::fs::remove_file(&p).map_err(|e| BrokerError::io(&p, e))?;
            }
        }
        bases.sort_unstable();
        // Index files whose log is gone are left-overs of a deletion.
        for entry in std::fs::read_dir(dir)
            .map_err(|e| BrokerError::io(dir, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let base = parse_stem(&name, ".index").or_else(|| parse_stem(&name, ".timeindex"));
            if base.is_some_and(|b| bases.binary_search(&b).is_err()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let mut segments = BTreeMap::new();
        let last = bases.last().copied();
        for base in bases {
            let recovery = if Some(base) == last {
                Recovery::Full
            } else {
                Recovery::Tail
            };
            let seg = Segment::open(dir, base, settings.index_interval_bytes, recovery, cache)?;
            segments.insert(base, seg);
        }
        if segments.is_empty() {
            segments.insert(
                0,
                Segment::create(dir, 0, settings.index_interval_bytes, cache)?,
            );
        }
        let next_offset = segments
            .values()
            .map(|s| s.next_offset())
            .max()
            .unwrap_or(0);
        let (epochs, state) = LeaderEpochCache::load(dir)?;
        // A start past the recovered end (a torn tail cut below it) is clamped to the end.
        let log_start = load_log_start(dir)?.min(next_offset);
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            settings,
            segments,
            next_offset,
            dirty: false,
            cache: Arc::clone(cache),
            epochs,
            leader_epoch: -1,
            log_start,
        };
        log.reconcile_epochs(state)?;
        Ok(log)
    }

    /// Makes the epoch cache agree with the recovered log: entries past its end (a crash
    /// after the cache was written but before the batch was) or before its start (retention)
    /// go; a checkpoint that is corrupt, or that lacks the epoch of the log's last batch, is
    /// rebuilt from the batches' epochs.
    fn reconcile_epochs(&mut self, state: CheckpointState) -> Result<()> {
        let last_batch_epoch = self
            .segments
            .values()
            .rev()
            .find(|s| s.size() > 0)
            .map_or(-1, |s| s.last_epoch());
        let covered = last_batch_epoch < 0
            || self
                .epochs
                .latest_epoch()
                .is_some_and(|e| e >= last_batch_epoch);
        let rebuild = match &state {
            CheckpointState::Corrupt(reason) => {
                tracing::warn!(
                    dir = %self.dir.display(),
                    reason = %reason,
                    "leader epoch checkpoint is corrupt; rebuilding it from the log"
                );
                true
            }
            CheckpointState::Missing | CheckpointState::Loaded => !covered,
        };
        if rebuild {
            let entries = self.scan_epochs()?;
            self.epochs.replace(entries)?;
        }
        self.epochs.truncate_from_end(self.next_offset)?;
        self.epochs.truncate_from_start(self.start_offset())?;
        Ok(())
    }

    /// The epoch transitions of the batches in the log (epochs below the newest seen so far,
    /// or undefined, are skipped).
    fn scan_epochs(&self) -> Result<Vec<EpochEntry>> {
        let mut entries: Vec<EpochEntry> = Vec::new();
        let mut next = self.start_offset();
        while next < self.next_offset {
            let bytes = self.read(next, 1 << 20)?;
            if bytes.is_empty() {
                break;
            }
            let mut last = next;
            for (h, _) in batch::split(&bytes)? {
                if h.partition_leader_epoch >= 0
                    && entries
                        .last()
                        .is_none_or(|e| e.epoch < h.partition_leader_epoch)
                {
                    entries.push(EpochEntry {
                        epoch: h.partition_leader_epoch,
                        start_offset: h.base_offset,
                    });
                }
                last = h.next_offset();
            }
            if last <= next {
                break;
            }
            next = last;
        }
        Ok(entries)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn settings(&self) -> &PartitionSettings {
        &self.settings
    }

    /// First offset still in the log (Kafka's log start offset, the low watermark).
    pub fn start_offset(&self) -> i64 {
        self.segments
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_offset)
            .max(self.log_start)
            .min(self.next_offset)
    }

    /// DeleteRecords: moves the log start offset up to `offset` (at most the log end; a
    /// lower one than the current start changes nothing), persisted before it takes effect,
    /// and removes the closed segments wholly below it, returned so the caller deletes
    /// their files outside the partition lock. Returns the new start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<(i64, Vec<Segment>)> {
        if offset < 0 || offset > self.next_offset {
            return Err(BrokerError::OffsetOutOfRange {
                topic: String::new(),
                partition: -1,
                offset,
                start: self.start_offset(),
                end: self.next_offset,
            });
        }
        if offset <= self.start_offset() {
            return Ok((self.start_offset(), Vec::new()));
        }
        store_log_start(&self.dir, offset)?;
        self.log_start = offset;
        let closed: Vec<i64> = self.segments.keys().rev().skip(1).rev().copied().collect();
        let mut gone = Vec::new();
        for base in closed {
            // A closed segment ends where the next one starts.
            let next_base = self
                .segments
                .range(base + 1..)
                .next()
                .map_or(self.next_offset, |(b, _)| *b);
            if next_base > offset {
                break;
            }
            if let Some(seg) = self.segments.remove(&base) {
                gone.push(seg);
            }
        }
        if let Err(e) = self.epochs.truncate_from_start(self.start_offset()) {
            // The checkpoint keeps epochs of deleted records; the next open drops them.
            tracing::warn!(dir = %self.dir.display(), error = %e, "leader epoch checkpoint not updated");
        }
        Ok((self.start_offset(), gone))
    }

    /// Applies new settings to the open log (a topic's configs altered): later appends,
    /// rolls, retention and compaction use them.
    pub fn set_settings(&mut self, settings: PartitionSettings) {
        self.settings = settings;
    }

    /// Offset the next appended record gets.
    pub fn end_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size()).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The epoch written into batches this log appends as a leader (`-1`: none).
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// Makes this log a leader's at `epoch`: later appends carry it, and the epoch starts at
    /// the current log end in the epoch cache (persisted before this returns), as a Kafka
    /// leader records it when it takes over. An epoch older than the newest in the cache is
    /// refused: a log never goes back in epochs.
    pub fn set_leader_epoch(&mut self, epoch: i32) -> Result<()> {
        if epoch < 0 {
            self.leader_epoch = -1;
            return Ok(());
        }
        if let Some(latest) = self.epochs.latest_epoch()
            && latest > epoch
        {
            return Err(BrokerError::ReplicaConflict(format!(
                "leader epoch {epoch} is older than the log's newest epoch {latest}"
            )));
        }
        self.epochs.assign(epoch, self.next_offset)?;
        self.leader_epoch = epoch;
        Ok(())
    }

    /// Stops stamping a leader epoch (the log now follows another leader's).
    pub fn clear_leader_epoch(&mut self) {
        self.leader_epoch = -1;
    }

    /// The newest epoch in the log's epoch cache (its last fetched epoch, as a follower).
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// The epoch cache's entries, oldest first.
    pub fn epoch_entries(&self) -> &[EpochEntry] {
        self.epochs.entries()
    }

    /// OffsetForLeaderEpoch: `(largest epoch <= epoch in this log, end offset of it)`; see
    /// [`LeaderEpochCache::end_offset_for`].
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.next_offset)
    }

    /// Appends a leader's batches (a fetch response's records: whole batches, back to back)
    /// keeping their offsets and leader epochs. Each batch is validated (framing and CRC);
    /// offsets must move forward from the log end (a batch starting before it is refused;
    /// one starting after it is a gap the leader's log has too, as compaction leaves), and
    /// epochs must not go back. A new epoch is recorded in the cache before its first batch
    /// is written. Returns the log end after the append.
    pub fn append_as_follower(&mut self, records: &Bytes) -> Result<i64> {
        for (_, bytes) in batch::split(records)? {
            let header = batch::validate(&bytes)?;
            if header.base_offset < self.next_offset {
                return Err(BrokerError::ReplicaConflict(format!(
                    "a replicated batch starts at offset {} before the log end {}",
                    header.base_offset, self.next_offset
                )));
            }
            let epoch = header.partition_leader_epoch;
            if epoch >= 0 {
                if self
                    .epochs
                    .latest_epoch()
                    .is_some_and(|latest| latest > epoch)
                {
                    return Err(BrokerError::ReplicaConflict(format!(
                        "a replicated batch at offset {} has epoch {epoch}, older than the log's",
                        header.base_offset
                    )));
                }
                self.epochs.assign(epoch, header.base_offset)?;
            }
            self.write_at(&bytes, header)?;
        }
        Ok(self.next_offset)
    }

    /// Removes every record at or after `offset` (a batch holding `offset` goes whole) and
    /// the epochs that start at or after the new end, durably: segments past the cut are
    /// deleted newest first (the directory synced after each), the segment holding the cut
    /// is cut and synced, and only then the epoch cache changes. A cut at or below the log
    /// start empties the log and restarts it at `offset`. Returns the new log end.
    pub fn truncate_to(&mut self, offset: i64) -> Result<i64> {
        let offset = offset.max(0);
        if offset <= self.start_offset() && offset < self.next_offset {
            self.truncate_fully_and_start_at(offset)?;
            return Ok(self.next_offset);
        }
        if offset < self.next_offset {
            let doomed: Vec<i64> = self.segments.range(offset..).map(|(b, _)| *b).collect();
            for base in doomed.into_iter().rev() {
                if let Some(seg) = self.segments.remove(&base) {
                    seg.delete_files()?;
                    sync_dir(&self.dir)?;
                }
            }
            let active =
                self.segments
                    .values_mut()
                    .next_back()
                    .ok_or_else(|| BrokerError::CorruptFile {
                        path: self.dir.clone(),
                        reason: "partition has no segment".into(),
                    })?;
            active.truncate_to(offset)?;
            self.next_offset = active.next_offset();
            self.dirty = false;
        }
        self.epochs.truncate_from_end(self.next_offset)?;
        Ok(self.next_offset)
    }

    /// Deletes every segment and epoch and starts the log empty at `offset` (a follower whose
    /// log ends below the leader's log start).
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        let offset = offset.max(0);
        let all: Vec<i64> = self.segments.keys().copied().collect();
        for base in all.into_iter().rev() {
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete_files()?;
                sync_dir(&self.dir)?;
            }
        }
        let seg = Segment::create(
            &self.dir,
            offset,
            self.settings.index_interval_bytes,
            &self.cache,
        )?;
        sync_dir(&self.dir)?;
        self.segments.insert(offset, seg);
        self.next_offset = offset;
        self.dirty = false;
        if self.log_start != 0 || self.dir.join(LOG_START_FILE).exists() {
            store_log_start(&self.dir, offset)?;
            self.log_start = offset;
        }
        self.epochs.clear()
    }

    /// Base offset of the newest segments that together hold at least `min_bytes` (all of
    /// them if the log is smaller): where a scan of the log's recent tail starts.
    pub fn recent_start_offset(&self, min_bytes: u64) -> i64 {
        let mut size = 0u64;
        let mut start = self.start_offset();
        for (base, seg) in self.segments.iter().rev() {
            start = *base;
            size += seg.size();
            if size >= min_bytes {
                break;
            }
        }
        start
    }

    fn active(&self) -> Result<&Segment> {
        self.segments
            .values()
            .next_back()
            .ok_or_else(|| BrokerError::CorruptFile {
                path: self.dir.clone(),
                reason: "partition has no segment".into(),
            })
    }

    /// Appends one batch: validates it, assigns offsets from the end of the log (rewriting
    /// its base offset), rolls the active segment when due, and syncs under
    /// [`FsyncPolicy::Batch`]. Returns the first and last offsets assigned.
    pub fn append(&mut self, batch_bytes: &mut [u8]) -> Result<(i64, i64)> {
        self.check_size(batch_bytes.len())?;
        let header = batch::validate(batch_bytes)?;
        let range = self.write(batch_bytes, header)?;
        batch::set_base_offset(batch_bytes, range.0);
        batch_bytes[12..16].copy_from_slice(&self.leader_epoch.to_be_bytes());
        Ok(range)
    }

    /// [`append`](Self::append) for a batch [`batch::validate_records`] already checked: it
    /// is not checked again, and it is not copied to set its base offset (the stored copy
    /// gets it as it is written).
    pub fn append_checked(&mut self, batch: &batch::CheckedBatch) -> Result<(i64, i64)> {
        self.check_size(batch.bytes().len())?;
        self.write(batch.bytes(), *batch.header())
    }

    fn check_size(&self, len: usize) -> Result<()> {
        if len > self.settings.max_batch_bytes {
            return Err(BrokerError::BatchTooLarge {
                size: len,
                limit: self.settings.max_batch_bytes,
            });
        }
        Ok(())
    }

    /// Writes a valid batch at the end of the log with offsets from the end and the log's
    /// leader epoch (recorded in the epoch cache first if it is new).
    fn write(&mut self, batch_bytes: &[u8], mut header: batch::BatchHeader) -> Result<(i64, i64)> {
        header.base_offset = self.next_offset;
        header.partition_leader_epoch = self.leader_epoch;
        if self.leader_epoch >= 0 && self.epochs.latest_epoch() != Some(self.leader_epoch) {
            self.epochs.assign(self.leader_epoch, self.next_offset)?;
        }
        self.write_at(batch_bytes, header)
    }

    /// Writes a valid batch at the end of the log with the offset and epoch of `header`.
    fn write_at(&mut self, batch_bytes: &[u8], header: batch::BatchHeader) -> Result<(i64, i64)> {
        self.maybe_roll(batch_bytes.len())?;
        let fsync = self.settings.fsync;
        let seg =
            self.segments
                .values_mut()
                .next_back()
                .ok_or_else(|| BrokerError::CorruptFile {
                    path: self.dir.clone(),
                    reason: "partition has no segment".into(),
                })?;
        seg.append(batch_bytes, &header)?;
        if fsync == FsyncPolicy::Batch {
            // The active segment's indexes are rebuilt by recovery; only the log must be synced.
            seg.sync_log()?;
        } else {
            self.dirty = true;
        }
        self.next_offset = header.next_offset();
        Ok((header.base_offset, header.last_offset()))
    }

    fn maybe_roll(&mut self, incoming: usize) -> Result<()> {
        let active = self.active()?;
        let full = active.size() + incoming as u64 > self.settings.segment_bytes;
        let old = super::now_ms() - active.created_ms() > self.settings.segment_ms;
        if active.size() > 0 && (full || old) {
            // A closed segment is durable before the next one exists.
            active.flush()?;
            let seg = Segment::create(
                &self.dir,
                self.next_offset,
                self.settings.index_interval_bytes,
                &self.cache,
            )?;
            self.segments.insert(self.next_offset, seg);
        }
        Ok(())
    }

    /// Whole batches starting with the one holding `offset` (or the first one after it, past
    /// gaps), about `max_bytes` of them. Empty when `offset` is at the end.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        let from = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        for seg in self.segments.range(from..).map(|(_, s)| s) {
            if let Some(bytes) = seg.read(offset.max(seg.base_offset()), max_bytes)? {
                return Ok(bytes);
            }
        }
        Ok(Bytes::new())
    }

    /// First offset at or after the log start whose timestamp is at or after `timestamp`.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<i64>> {
        let start = self.start_offset();
        for seg in self.segments.values() {
            if let Some(o) = seg.offset_for_timestamp(timestamp)? {
                return Ok(Some(o.max(start)));
            }
        }
        Ok(None)
    }

    /// The active segment's file if it has unsynced writes (clears the flag). Sync it
    /// without holding the partition lock. (A descriptor reopened after the cache closed
    /// the one written through syncs the same file: `fdatasync` flushes the inode.)
    pub fn take_dirty(&mut self) -> Result<Option<Arc<File>>> {
        if !self.dirty {
            return Ok(None);
        }
        let file = self.active()?.file()?;
        self.dirty = false;
        Ok(Some(file))
    }

    /// Syncs the active segment's log if it has unsynced appends (closed segments were
    /// synced when they were rolled; the active segment's indexes are rebuilt by recovery),
    /// so a shutdown of a node with many idle partitions does not sync every file.
    pub fn flush(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.active()?.sync_log()?;
        self.dirty = false;
        Ok(())
    }

    /// Removes closed segments past the retention limits; returns them so the caller can
    /// delete their files outside the partition lock.
    pub fn take_expired(&mut self, now_ms: i64) -> Vec<Segment> {
        let mut expired = Vec::new();
        let closed: Vec<i64> = self.segments.keys().rev().skip(1).rev().copied().collect();
        let mut total = self.size_bytes() as i64;
        for base in closed {
            let Some(seg) = self.segments.get(&base) else {
                break;
            };
            let by_time = self
                .settings
                .retention_ms
                .is_some_and(|ms| seg.max_timestamp() < now_ms.saturating_sub(ms));
            let by_size = self
                .settings
                .retention_bytes
                .is_some_and(|limit| total - seg.size() as i64 >= limit);
            if !(by_time || by_size) {
                break;
            }
            total -= seg.size() as i64;
            if let Some(seg) = self.segments.remove(&base) {
                expired.push(seg);
            }
        }
        if !expired.is_empty()
            && let Err(e) = self.epochs.truncate_from_start(self.start_offset())
        {
            // The checkpoint keeps epochs of deleted records; the next open drops them.
            tracing::warn!(dir = %self.dir.display(), error = %e, "leader epoch checkpoint not updated");
        }
        expired
    }

    /// Closed segments as (base offset, log path); the cleaner reads them without the lock.
    pub fn closed_segments(&self) -> Vec<(i64, PathBuf)> {
        let n = self.segments.len();
        self.segments
            .values()
            .take(n.saturating_sub(1))
            .map(|s| (s.base_offset(), s.log_path().to_path_buf()))
            .collect()
    }

    /// The active segment as (base offset, log path, size now).
    pub fn active_snapshot(&self) -> Result<(i64, PathBuf, u64)> {
        let a = self.active()?;
        Ok((a.base_offset(), a.log_path().to_path_buf(), a.size()))
    }

    /// Swaps a closed segment for its compacted copy at `cleaned` (or removes it when
    /// `cleaned` is `None`, i.e. nothing survived). Index files are deleted before the
    /// rename so a crash in between leaves an index that is rebuilt, never a stale one.
    pub fn replace_closed_segment(&mut self, base: i64, cleaned: Option<&Path>) -> Result<()> {
        let is_closed = self
            .segments
            .keys()
            .next_back()
            .is_some_and(|last| *last != base);
        let Some(old) = self.segments.get(&base).filter(|_| is_closed) else {
            if let Some(p) = cleaned {
                let _ = std::fs::remove_file(p);
            }
            return Ok(());
        };
        for p in old.index_paths() {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(BrokerError::io(p, e)),
            }
        }
        match cleaned {
            Some(cleaned) => {
                let log_path = old.log_path().to_path_buf();
                std::fs::rename(cleaned, &log_path).map_err(|e| BrokerError::io(&log_path, e))?;
                sync_dir(&self.dir)?;
                let seg = Segment::open(
                    &self.dir,
                    base,
                    self.settings.index_interval_bytes,
                    Recovery::Full,
                    &self.cache,
                )?;
                self.segments.insert(base, seg);
            }
            None => {
                if let Some(seg) = self.segments.remove(&base) {
                    seg.delete_files()?;
                }
            }
        }
        Ok(())
    }
}

/// Makes a rename or file creation in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| BrokerError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{EncodeRecord, encode};
    use proptest::prelude::*;

    fn settings() -> PartitionSettings {
        PartitionSettings {
            segment_bytes: 4096,
            segment_ms: i64::MAX / 2,
            index_interval_bytes: 512,
            fsync: FsyncPolicy::Os,
            max_batch_bytes: 1 << 20,
            retention_ms: None,
            retention_bytes: None,
            compacted: false,
            delete_retention_ms: 0,
        }
    }

    fn batch(n: usize, tag: u8) -> Vec<u8> {
        let recs: Vec<EncodeRecord> = (0..n)
            .map(|i| EncodeRecord {
                offset: i as i64,
                timestamp: 1_000 + i as i64,
                key: Some(Bytes::from(vec![tag])),
                value: Some(Bytes::from(vec![tag; 50 + i])),
                headers: vec![],
            })
            .collect();
        encode(&recs).unwrap().to_vec()
    }

    #[test]
    fn delete_records_moves_the_start_durably_and_an_emptied_follower_resets_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), settings()).unwrap();
        for i in 0..60 {
            log.append(&mut batch(5, i as u8)).unwrap();
        }
        let segments = log.segment_count();
        assert!(segments > 2);
        assert!(log.delete_records_before(301).is_err(), "past the end");
        let (start, gone) = log.delete_records_before(252).unwrap();
        assert_eq!(start, 252);
        assert_eq!(log.segment_count() + gone.len(), segments);
        assert!(!gone.is_empty());
        for seg in gone {
            seg.delete_files().unwrap();
        }
        // Lower: nothing changes.
        assert_eq!(log.delete_records_before(10).unwrap().0, 252);
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(252));
        drop(log);
        let mut log = PartitionLog::open(dir.path(), settings()).unwrap();
        assert_eq!((log.start_offset(), log.end_offset()), (252, 300));
        // A follower emptied and restarted below the deleted start starts there.
        log.truncate_fully_and_start_at(30).unwrap();
        assert_eq!((log.start_offset(), log.end_offset()), (30, 30));
        drop(log);
        let log = PartitionLog::open(dir.path(), settings()).unwrap();
        assert_eq!(log.start_offset(), 30);
    }

    #[test]
    fn a_checked_batch_is_stored_like_an_appended_one_and_left_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), settings()).unwrap();
        let mut first = batch(3, 1);
        assert_eq!(log.append(&mut first).unwrap(), (0, 2));
        let sent = Bytes::from(batch(2, 2));
        let checked = crate::batch::validate_records(&sent).unwrap();
        assert_eq!(log.append_checked(&checked).unwrap(), (3, 4));
        // The producer's bytes still carry base offset 0; the stored copy carries 3.
        assert_eq!(&checked.bytes()[..8], &0i64.to_be_bytes());
        let stored = log.read(3, 1 << 20).unwrap();
        let mut want = sent.to_vec();
        crate::batch::set_base_offset(&mut want, 3);
        assert_eq!(&stored[..], &want[..]);
        crate::batch::validate(&stored).unwrap();
        // Over the size limit: refused like any other batch.
        let mut small = settings();
        small.max_batch_bytes = 64;
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small).unwrap();
        assert!(matches!(
            log.append_checked(&checked),
            Err(BrokerError::BatchTooLarge { .. })
        ));
        assert_eq!(log.end_offset(), 0);
    }

    fn read_all(log: &PartitionLog) -> Vec<i64> {
        let mut out = Vec::new();
        let mut offset = log.start_offset();
        loop {
            let bytes = log.read(offset, 1 << 20).unwrap();
            if bytes.is_empty() {
                return out;
            }
            for (h, b) in batch::split(&bytes).unwrap() {
                for r in batch::decode(b).unwrap() {
                    if r.offset >= offset {
                        out.push(r.offset);
                    }
                }
                offset = h.next_offset();
            }
        }
    }

    #[test]
    fn appends_roll_and_read_back_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), settings()).unwrap();
        for i in 0..100u8 {
            let (first, last) = log.append(&mut batch(3, i)).unwrap();
            assert_eq!(first, i as i64 * 3);
            assert_eq!(last, first + 2);
        }
        assert!(log.segment_count() > 5);
        assert_eq!(read_all(&log), (0..300).collect::<Vec<_>>());
        // Reading from the middle of a batch returns that batch.
        let b = log.read(151, 1).unwrap();
        assert_eq!(batch::validate(&b).unwrap().base_offset, 150);
        drop(log);
        let log = PartitionLog::open(dir.path(), settings()).unwrap();
        assert_eq!(log.end_offset(), 300);
        assert_eq!(read_all(&log), (0..300).collect::<Vec<_>>());
    }

    #[test]
    fn segments_roll_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings();
        s.segment_bytes = 1 << 20;
        s.segment_ms = 20;
        let mut log = PartitionLog::open(dir.path(), s).unwrap();
        log.append(&mut batch(2, 1)).unwrap();
        log.append(&mut batch(2, 2)).unwrap();
        assert_eq!(log.segment_count(), 1);
        std::thread::sleep(std::time::Duration::from_millis(40));
        log.append(&mut batch(2, 3)).unwrap();
        assert_eq!(log.segment_count(), 2);
        assert_eq!(read_all(&log), (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn retention_by_size_drops_oldest_closed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings();
        s.retention_bytes = Some(8192);
        let mut log = PartitionLog::open(dir.path(), s).unwrap();
        for i in 0..100u8 {
            log.append(&mut batch(3, i)).unwrap();
        }
        let before = log.size_bytes();
        let expired = log.take_expired(0);
        assert!(!expired.is_empty());
        assert!(log.size_bytes() < before);
        assert!(log.size_bytes() as i64 >= 8192 - 4096);
        assert!(log.start_offset() > 0);
        let offsets = read_all(&log);
        assert_eq!(offsets.first().copied(), Some(log.start_offset()));
        assert_eq!(offsets.last().copied(), Some(299));
    }

    fn epochs(log: &PartitionLog) -> Vec<(i32, i64)> {
        log.epoch_entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    fn batch_epochs(log: &PartitionLog) -> Vec<(i64, i32)> {
        let bytes = log.read(log.start_offset(), 1 << 30).unwrap();
        let mut out = Vec::new();
        let mut next = log.start_offset();
        let mut bytes = bytes;
        while !bytes.is_empty() {
            for (h, _) in batch::split(&bytes).unwrap() {
                out.push((h.base_offset, h.partition_leader_epoch));
                next = h.next_offset();
            }
            bytes = log.read(next, 1 << 30).unwrap();
        }
        out
    }

    #[test]
    fn a_leader_stamps_its_epoch_and_records_where_each_epoch_starts() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), settings()).unwrap();
        log.append(&mut batch(2, 0)).unwrap();
        assert_eq!(
            log.latest_epoch(),
            None,
            "an unreplicated log has no epochs"
        );
        assert!(
            !dir.path()
                .join(super::super::epoch::CHECKPOINT_FILE)
                .exists()
        );
        log.set_leader_epoch(3).unwrap();
        let mut b = batch(2, 1);
        log.append(&mut b).unwrap();
        assert_eq!(
            &b[12..16],
            &3i32.to_be_bytes(),
            "the caller's copy says the epoch too"
        );
        let sent = Bytes::from(batch(3, 2));
        log.append_checked(&batch::validate_records(&sent).unwrap())
            .unwrap();
        log.set_leader_epoch(5).unwrap();
        log.append(&mut batch(1, 3)).unwrap();
        assert_eq!(epochs(&log), vec![(3, 2), (5, 7)]);
        assert_eq!(batch_epochs(&log), vec![(0, -1), (2, 3), (4, 3), (7, 5)]);
        assert_eq!(log.end_offset_for_epoch(3), (3, 7));
        assert_eq!(log.end_offset_for_epoch(4), (3, 7));
        assert_eq!(log.end_offset_for_epoch(5), (5, 8));
        assert!(
            matches!(
                log.set_leader_epoch(4),
                Err(BrokerError::ReplicaConflict(_))
            ),
            "a log never goes back in epochs"
        );
        drop(log);
        let log = PartitionLog::open(dir.path(), settings()).unwrap();
        assert_eq!(epochs(&log), vec![(3, 2), (5, 7)]);
        assert_eq!(
            log.leader_epoch(),
            -1,
            "the role is given again after a restart"
        );
    }

    #[test]
    fn a_follower_keeps_the_leaders_offsets_and_epochs() {
        let leader_dir = tempfile::tempdir().unwrap();
        let mut leader = PartitionLog::open(leader_dir.path(), settings()).unwrap();
        leader.set_leader_epoch(1).unwrap();
        for i in 0..10u8 {
            leader.append(&mut batch(3, i)).unwrap();
        }
        leader.set_leader_epoch(2).unwrap();
        for i in 10..20u8 {
            leader.append(&mut batch(3, i)).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let mut follower = PartitionLog::open(dir.path(), settings()).unwrap();
        while follower.end_offset() < leader.end_offset() {
            let bytes = leader.read(follower.end_offset(), 700).unwrap();
            follower.append_as_follower(&bytes).unwrap();
        }
        assert_eq!(follower.end_offset(), 60);
        assert_eq!(epochs(&follower), epochs(&leader));
        assert_eq!(batch_epochs(&follower), batch_epochs(&leader));
        assert_eq!(
            follower.read(0, 1 << 30).unwrap(),
            leader.read(0, 1 << 30).unwrap()
        );
        // Offsets must move forward: the same batches again are refused, and so is a torn one.
        let again = leader.read(30, 1).unwrap();
        assert!(matches!(
            follower.append_as_follower(&again),
            Err(BrokerError::ReplicaConflict(_))
        ));
        let mut torn = leader.read(57, 1).unwrap().to_vec();
        torn[40] ^= 1;
        let dir2 = tempfile::tempdir().unwrap();
        let mut f2 = PartitionLog::open(dir2.path(), settings()).unwrap();
        assert!(f2.append_as_follower(&Bytes::from(torn)).is_err());
        // A batch of an older epoch than the follower has is refused.
        let old = leader.read(0, 1).unwrap();
        let mut stale = old.to_vec();
        batch::set_base_offset(&mut stale, 60);
        assert!(matches!(
            follower.append_as_follower(&Bytes::from(stale)),
            Err(BrokerError::ReplicaConflict(_))
        ));
        assert_eq!(follower.end_offset(), 60);
    }

    #[test]
    fn truncation_cuts_segments_and_epochs_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), settings()).unwrap();
        log.set_leader_epoch(1).unwrap();
        for i in 0..60u8 {
            log.append(&mut batch(3, i)).unwrap();
        }
        log.set_leader_epoch(2).unwrap();
        for i in 60..100u8 {
            log.append(&mut batch(3, i)).unwrap();
        }
        assert!(log.segment_count() > 5);
        // Into the middle of a batch: the whole batch goes.
        assert_eq!(log.truncate_to(200).unwrap(), 198);
        assert_eq!(log.end_offset(), 198);
        assert_eq!(read_all(&log), (0..198).collect::<Vec<_>>());
        assert_eq!(epochs(&log), vec![(1, 0), (2, 180)]);
        // Below the start of epoch 2: its entry goes too.
        assert_eq!(log.truncate_to(150).unwrap(), 150);
        assert_eq!(epochs(&log), vec![(1, 0)]);
        let segments = log.segment_count();
        // Appends continue from the cut, in the current epoch.
        log.set_leader_epoch(3).unwrap();
        assert_eq!(log.append(&mut batch(2, 200)).unwrap(), (150, 151));
        assert_eq!(epochs(&log), vec![(1, 0), (3, 150)]);
        drop(log);
        let mut log = PartitionLog::open(dir.path(), settings()).unwrap();
        assert_eq!(log.end_offset(), 152);
        assert_eq!(log.segment_count(), segments);
        assert_eq!(read_all(&log), (0..152).collect::<Vec<_>>());
        assert_eq!(epochs(&log), vec![(1, 0), (3, 150)]);
        assert_eq!(log.offset_for_timestamp(1_000).unwrap(), Some(0));
        // A cut at the log start empties it; a cut below the start restarts it there.
        assert_eq!(log.truncate_to(0).unwrap(), 0);
        assert_eq!(read_all(&log), Vec::<i64>::new());
        assert_eq!(epochs(&log), vec![]);
        log.truncate_fully_and_start_at(40).unwrap();
        assert_eq!((log.start_offset(), log.end_offset()), (40, 40));
        log.append(&mut batch(2, 1)).unwrap();
        drop(log);
        let log = PartitionLog::open(dir.path(), settings()).unwrap();
        assert_eq!((log.start_offset(), log.end_offset()), (40, 42));
    }

    #[test]
    fn a_crash_between_log_and_cache_reopens_consistently() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), settings()).unwrap();
        log.set_leader_epoch(1).unwrap();
        for i in 0..10u8 {
            log.append(&mut batch(3, i)).unwrap();
        }
        log.set_leader_epoch(2).unwrap();
        log.append(&mut batch(3, 10)).unwrap();
        let checkpoint =
            std::fs::read(dir.path().join(super::super::epoch::CHECKPOINT_FILE)).unwrap();
        // The log was cut (as a truncation does first) but the cache not yet: at open the
        // epoch past the end goes.
        log.truncate_to(30).unwrap();
        drop(log);
        std::fs::write(
            dir.path().join(super::super::epoch::CHECKPOINT_FILE),
            &checkpoint,
        )
        .unwrap();
        let log = PartitionLog::open(dir.path(), settings()).unwrap();
        assert_eq!(epochs(&log), vec![(1, 0)]);
        drop(log);
        // A corrupt or lost checkpoint is rebuilt from the batches' epochs.
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), settings()).unwrap();
        log.append(&mut batch(3, 0)).unwrap();
        log.set_leader_epoch(4).unwrap();
        log.append(&mut batch(3, 1)).unwrap();
        log.set_leader_epoch(7).unwrap();
        log.append(&mut batch(3, 2)).unwrap();
        drop(log);
        let path = dir.path().join(super::super::epoch::CHECKPOINT_FILE);
        std::fs::write(&path, "0\n2\n7 0\n4 3\n").unwrap();
        let log = PartitionLog::open(dir.path(), settings()).unwrap();
        assert_eq!(epochs(&log), vec![(4, 3), (7, 6)]);
        drop(log);
        std::fs::remove_file(&path).unwrap();
        let log = PartitionLog::open(dir.path(), settings()).unwrap();
        assert_eq!(epochs(&log), vec![(4, 3), (7, 6)]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Cutting the active segment at any byte reopens at the last whole batch, and
        /// appends continue from there.
        #[test]
        fn truncation_at_any_byte_recovers_to_last_whole_batch(cut_frac in 0.0f64..1.0) {
            let dir = tempfile::tempdir().unwrap();
            let mut s = settings();
            s.segment_bytes = 1 << 20;
            let mut log = PartitionLog::open(dir.path(), s.clone()).unwrap();
            let mut ends = vec![0u64];
            for i in 0..20u8 {
                log.append(&mut batch(2, i)).unwrap();
                ends.push(log.size_bytes());
            }
            drop(log);
            let path = dir.path().join("00000000000000000000.log");
            let total = std::fs::metadata(&path).unwrap().len();
            let cut = (total as f64 * cut_frac) as u64;
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(cut).unwrap();
            drop(f);
            let whole = ends.iter().filter(|e| **e <= cut).count() as i64 - 1;
            let mut log = PartitionLog::open(dir.path(), s).unwrap();
            prop_assert_eq!(log.end_offset(), whole * 2);
            prop_assert_eq!(read_all(&log), (0..whole * 2).collect::<Vec<_>>());
            let (first, _) = log.append(&mut batch(2, 99)).unwrap();
            prop_assert_eq!(first, whole * 2);
            prop_assert_eq!(read_all(&log), (0..whole * 2 + 2).collect::<Vec<_>>());
        }

        /// Garbage written over the tail is detected by CRC and cut off.
        #[test]
        fn corrupt_tail_is_truncated(pos_frac in 0.0f64..1.0, byte in any::<u8>()) {
            let dir = tempfile::tempdir().unwrap();
            let mut s = settings();
            s.segment_bytes = 1 << 20;
            let mut log = PartitionLog::open(dir.path(), s.clone()).unwrap();
            let mut ends = vec![0u64];
            for i in 0..10u8 {
                log.append(&mut batch(2, i)).unwrap();
                ends.push(log.size_bytes());
            }
            drop(log);
            let path = dir.path().join("00000000000000000000.log");
            let mut data = std::fs::read(&path).unwrap();
            let at = ((data.len() as f64) * pos_frac) as usize;
            // Base offset, length and leader epoch are outside the CRC (as in Kafka).
            if data[at] == byte || ends.iter().any(|e| (at as u64) >= *e && (at as u64) < e + 16) {
                return Ok(());
            }
            data[at] = byte;
            std::fs::write(&path, &data).unwrap();
            let log = PartitionLog::open(dir.path(), s).unwrap();
            // Everything before the damaged batch survives; nothing from it on is served.
            let damaged = ends.iter().filter(|e| **e <= at as u64).count() as i64 - 1;
            prop_assert_eq!(log.end_offset(), damaged * 2);
            prop_assert_eq!(read_all(&log), (0..damaged * 2).collect::<Vec<_>>());
        }
    }
}

//! The leader-epoch cache of one partition (Kafka's `LeaderEpochFileCache`, KIP-101): for
//! every leader epoch that wrote to the log, the offset of its first record, kept in memory
//! and in the file `leader-epoch-checkpoint` next to the segments. It answers
//! OffsetForLeaderEpoch ([`LeaderEpochCache::end_offset_for`]) so a follower, or a returning
//! old leader, can find where its log stops agreeing with the leader's.
//!
//! It owns that file and nothing else; [`super::PartitionLog`] decides when entries are added
//! or dropped. Rules it keeps:
//! - entries are strictly increasing in epoch and non-decreasing in start offset; an entry
//!   that would break that removes the entries it conflicts with (as Kafka's `assign`);
//! - every change is written to a temporary file, fsynced, renamed over the checkpoint and
//!   the directory fsynced before the call returns, so the file on disk is always a whole
//!   checkpoint (the old one or the new one);
//! - the partition log records an epoch here *before* it writes a batch of that epoch, and
//!   truncates its segments *before* it truncates this cache, so after a crash the cache
//!   covers at least what the log holds; entries past the log end are dropped when the log
//!   opens.
//!
//! File format (text, as Kafka's): a version line (`0`), a count line, then `epoch offset`
//! lines.

use std::path::{Path, PathBuf};

use crate::error::{BrokerError, Result};

/// The checkpoint's file name in a partition directory.
pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// The temporary file `fsutil::write_atomic` writes first.
const CHECKPOINT_TMP: &str = "leader-epoch-checkpoint.tmp";
const VERSION: &str = "0";
/// A partition with more epochs than this in its checkpoint is corrupt (a cap on what a
/// damaged file can make us allocate; a leader change every second for 30 years is less).
const MAX_ENTRIES: usize = 1 << 30;

/// No epoch (Kafka's `UNDEFINED_EPOCH`): a batch written without one, or an answer that the
/// cache knows nothing of the epoch asked for.
pub const UNDEFINED_EPOCH: i32 = -1;
/// No offset (Kafka's `UNDEFINED_EPOCH_OFFSET`).
pub const UNDEFINED_OFFSET: i64 = -1;

/// One epoch and the offset of its first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// What [`LeaderEpochCache::load`] found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointState {
    /// No checkpoint (a log that never had a leader epoch, e.g. a single node's).
    Missing,
    /// A well-formed checkpoint.
    Loaded,
    /// A checkpoint that does not parse or breaks the ordering rules: the caller rebuilds
    /// the cache from the batches' epochs.
    Corrupt(String),
}

/// The epochs of one partition's log.
#[derive(Debug)]
pub struct LeaderEpochCache {
    dir: PathBuf,
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// An empty cache for the partition in `dir` (nothing written until an entry is added).
    pub fn empty(dir: &Path) -> LeaderEpochCache {
        LeaderEpochCache {
            dir: dir.to_path_buf(),
            entries: Vec::new(),
        }
    }

    /// Reads the checkpoint in `dir`. A corrupt one yields an empty cache and says so.
    pub fn load(dir: &Path) -> Result<(LeaderEpochCache, CheckpointState)> {
        let mut cache = LeaderEpochCache::empty(dir);
        // A temporary file is a write that did not finish: the checkpoint beside it is whole.
        let tmp = dir.join(CHECKPOINT_TMP);
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BrokerError::io(&tmp, e)),
        }
        let path = dir.join(CHECKPOINT_FILE);
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((cache, CheckpointState::Missing));
            }
            Err(e) => return Err(BrokerError::io(&path, e)),
        };
        match parse(&text) {
            Ok(entries) => {
                cache.entries = entries;
                Ok((cache, CheckpointState::Loaded))
            }
            Err(reason) => Ok((cache, CheckpointState::Corrupt(reason))),
        }
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Offset of the first record of `epoch`, if the cache has it.
    pub fn start_offset_of(&self, epoch: i32) -> Option<i64> {
        self.entries
            .iter()
            .find(|e| e.epoch == epoch)
            .map(|e| e.start_offset)
    }

    /// Records that `epoch` starts at `start_offset` and persists the change. Negative epochs
    /// are ignored; the same epoch again changes nothing unless it would start earlier.
    /// Entries with an epoch at or above `epoch`, or a start at or after `start_offset`, are
    /// removed first (they can only be left from a log that was since truncated). Returns
    /// whether anything changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<bool> {
        if epoch < 0 {
            return Ok(false);
        }
        if let Some(last) = self.entries.last()
            && last.epoch == epoch
            && last.start_offset <= start_offset
        {
            return Ok(false);
        }
        let before = self.entries.len();
        self.entries
            .retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        if self.entries.len() != before {
            tracing::warn!(
                dir = %self.dir.display(),
                epoch,
                start_offset,
                removed = before - self.entries.len(),
                "leader epoch cache: a new epoch replaced entries it conflicts with"
            );
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.persist()?;
        Ok(true)
    }

    /// Drops every epoch that starts at or after `end_offset` (the log was truncated there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> Result<bool> {
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        if keep == self.entries.len() {
            return Ok(false);
        }
        self.entries.truncate(keep);
        self.persist()?;
        Ok(true)
    }

    /// Drops epochs that ended before `start_offset` (retention removed their records); the
    /// epoch holding `start_offset` is moved to start there.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> Result<bool> {
        let below = self
            .entries
            .partition_point(|e| e.start_offset < start_offset);
        if below == 0 {
            return Ok(false);
        }
        let mut moved = self.entries[below - 1];
        let covered = self
            .entries
            .get(below)
            .is_some_and(|e| e.start_offset == start_offset);
        self.entries.drain(..below);
        if !covered {
            moved.start_offset = start_offset;
            self.entries.insert(0, moved);
        }
        self.persist()?;
        Ok(true)
    }

    /// Removes every entry (the log was emptied).
    pub fn clear(&mut self) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        self.entries.clear();
        self.persist()
    }

    /// Replaces the entries with `entries` (already ordered) and persists them.
    pub fn replace(&mut self, entries: Vec<EpochEntry>) -> Result<()> {
        self.entries = entries;
        self.persist()
    }

    /// OffsetForLeaderEpoch as Kafka answers it, for a log whose end is `log_end_offset`:
    /// `(largest epoch <= requested, end offset of that epoch)`, where the end offset of an
    /// epoch is the start of the next one, or the log end for the newest epoch. A requested
    /// epoch older than every entry answers `(requested, start of the oldest)`; one newer
    /// than every entry (or an empty cache) answers `(UNDEFINED_EPOCH, UNDEFINED_OFFSET)`.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        if requested < 0 {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let higher = self.entries.partition_point(|e| e.epoch <= requested);
        let Some(next) = self.entries.get(higher) else {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        };
        match higher.checked_sub(1).map(|i| self.entries[i]) {
            Some(floor) => (floor.epoch, next.start_offset),
            None => (requested, next.start_offset),
        }
    }

    /// Writes the entries crash-safely ([`crate::fsutil::write_atomic`]: temporary file,
    /// fsync, rename, directory fsync).
    fn persist(&self) -> Result<()> {
        let mut text = format!("{VERSION}\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        let path = self.dir.join(CHECKPOINT_FILE);
        crate::fsutil::write_atomic(&path, text.as_bytes()).map_err(|e| BrokerError::io(&path, e))
    }
}

/// Parses a checkpoint, checking its ordering rules.
fn parse(bytes: &[u8]) -> std::result::Result<Vec<EpochEntry>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let mut lines = text.lines();
    match lines.next() {
        Some(VERSION) => {}
        other => return Err(format!("unknown version line {other:?}")),
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("missing or bad entry count")?;
    if count > MAX_ENTRIES {
        return Err(format!("{count} entries is more than a checkpoint holds"));
    }
    let mut entries: Vec<EpochEntry> = Vec::new();
    for i in 0..count {
        let line = lines.next().ok_or(format!("entry {i} is missing"))?;
        let mut parts = line.split_whitespace();
        let (Some(epoch), Some(offset), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("entry {i} is not 'epoch offset'"));
        };
        let epoch: i32 = epoch.parse().map_err(|_| format!("entry {i}: bad epoch"))?;
        let start_offset: i64 = offset
            .parse()
            .map_err(|_| format!("entry {i}: bad offset"))?;
        if epoch < 0 || start_offset < 0 {
            return Err(format!("entry {i} is negative"));
        }
        if let Some(last) = entries.last()
            && (last.epoch >= epoch || last.start_offset > start_offset)
        {
            return Err(format!("entry {i} is out of order"));
        }
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err("entries after the count".into());
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(cache: &LeaderEpochCache) -> Vec<(i32, i64)> {
        cache
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn answers_offset_for_leader_epoch_as_kafka_does() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::empty(dir.path());
        assert_eq!(c.end_offset_for(0, 10), (UNDEFINED_EPOCH, UNDEFINED_OFFSET));
        c.assign(2, 5).unwrap();
        c.assign(4, 20).unwrap();
        c.assign(5, 30).unwrap();
        // The newest epoch ends at the log end.
        assert_eq!(c.end_offset_for(5, 42), (5, 42));
        // An epoch in the cache ends where the next starts.
        assert_eq!(c.end_offset_for(2, 42), (2, 20));
        assert_eq!(c.end_offset_for(4, 42), (4, 30));
        // An epoch the log never had: the largest one below it, ending where the next starts.
        assert_eq!(c.end_offset_for(3, 42), (2, 20));
        // Older than every entry: the requested epoch, ending at the first entry's start.
        assert_eq!(c.end_offset_for(1, 42), (1, 5));
        // Newer than every entry: undefined.
        assert_eq!(c.end_offset_for(6, 42), (UNDEFINED_EPOCH, UNDEFINED_OFFSET));
        assert_eq!(
            c.end_offset_for(UNDEFINED_EPOCH, 42),
            (UNDEFINED_EPOCH, UNDEFINED_OFFSET)
        );
    }

    #[test]
    fn persists_and_reloads_and_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::empty(dir.path());
        assert!(
            !c.assign(-1, 0).unwrap(),
            "an undefined epoch is not recorded"
        );
        assert!(c.assign(1, 0).unwrap());
        assert!(
            !c.assign(1, 7).unwrap(),
            "the same epoch again is no change"
        );
        assert!(c.assign(3, 10).unwrap());
        assert!(c.assign(4, 15).unwrap());
        let (loaded, state) = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(state, CheckpointState::Loaded);
        assert_eq!(entries(&loaded), vec![(1, 0), (3, 10), (4, 15)]);
        assert!(c.truncate_from_end(15).unwrap());
        assert!(!c.truncate_from_end(15).unwrap());
        assert!(c.truncate_from_start(12).unwrap());
        assert_eq!(entries(&c), vec![(3, 12)]);
        let (loaded, _) = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(entries(&loaded), vec![(3, 12)]);
        // A lower epoch assigned later replaces what it conflicts with.
        c.assign(5, 20).unwrap();
        c.assign(4, 18).unwrap();
        assert_eq!(entries(&c), vec![(3, 12), (4, 18)]);
    }

    #[test]
    fn a_damaged_checkpoint_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let (_, state) = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(state, CheckpointState::Missing);
        for bad in [
            "1\n0\n",
            "0\n2\n1 0\n",
            "0\n2\n3 0\n2 5\n",
            "0\n1\n1 x\n",
            "0\n1\n1 0\n2 3\n",
            "garbage",
        ] {
            std::fs::write(dir.path().join(CHECKPOINT_FILE), bad).unwrap();
            let (c, state) = LeaderEpochCache::load(dir.path()).unwrap();
            assert!(matches!(state, CheckpointState::Corrupt(_)), "{bad:?}");
            assert!(c.entries().is_empty());
        }
        // A leftover temporary file (a crash mid-write) is removed; the checkpoint stands.
        std::fs::write(dir.path().join(CHECKPOINT_FILE), "0\n1\n2 9\n").unwrap();
        std::fs::write(dir.path().join(CHECKPOINT_TMP), "0\n1\n").unwrap();
        let (c, state) = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(state, CheckpointState::Loaded);
        assert_eq!(entries(&c), vec![(2, 9)]);
        assert!(!dir.path().join(CHECKPOINT_TMP).exists());
    }
}

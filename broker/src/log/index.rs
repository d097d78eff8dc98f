//! Sparse indexes of one segment, kept in memory and appended to a file as they grow.
//! - offset index: 8-byte entries (offset relative to the segment base u32, file position
//!   u32), one per `index_interval_bytes` of log, pointing at a batch start;
//! - time index: 12-byte entries (largest timestamp so far i64, relative offset u32 of the
//!   batch that follows it in scan order).
//!
//! Index files are a cache: when one does not match its log it is rebuilt from the log.
//! They are written through the node's [`FileCache`] (reopened when it closed them).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::file_cache::{CachedFile, FileCache, Reopen};

use crate::error::{BrokerError, Result};

/// One sparse offset-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// One time-index entry: `max_timestamp` is the largest timestamp of every batch up to and
/// including the batch that starts at `relative_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub max_timestamp: i64,
    pub relative_offset: u32,
}

const OFFSET_ENTRY: usize = 8;
const TIME_ENTRY: usize = 12;

/// Both indexes of a segment.
#[derive(Debug)]
pub struct SegmentIndex {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
    offset_file: CachedFile,
    time_file: CachedFile,
}

fn open_rw(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| BrokerError::io(path, e))
}

impl SegmentIndex {
    /// Opens both index files and loads them; entries that fail basic checks (size, order,
    /// positions within `log_size`) make the load return `None` so the caller rebuilds.
    pub fn open(
        offset_path: PathBuf,
        time_path: PathBuf,
        log_size: u64,
        cache: &Arc<FileCache>,
    ) -> Result<(Self, bool)> {
        let mut offset_file = open_rw(&offset_path)?;
        let raw_o = read_all(&mut offset_file, &offset_path)?;
        let offset_file =
            CachedFile::with_open(cache, offset_path, offset_file, Reopen::CreateIfMissing);
        let mut time_file = open_rw(&time_path)?;
        let raw_t = read_all(&mut time_file, &time_path)?;
        let time_file = CachedFile::with_open(cache, time_path, time_file, Reopen::CreateIfMissing);
        let mut idx = SegmentIndex {
            offsets: Vec::new(),
            times: Vec::new(),
            offset_file,
            time_file,
        };
        let mut valid = raw_o.len() % OFFSET_ENTRY == 0 && raw_t.len() % TIME_ENTRY == 0;
        if valid {
            idx.offsets = raw_o
                .chunks_exact(OFFSET_ENTRY)
                .map(|c| OffsetEntry {
                    relative_offset: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                    position: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                })
                .collect();
            idx.times = raw_t
                .chunks_exact(TIME_ENTRY)
                .map(|c| TimeEntry {
                    max_timestamp: i64::from_be_bytes([
                        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
                    ]),
                    relative_offset: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                })
                .collect();
            valid = idx.offsets.windows(2).all(|w| {
                w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position
            }) && idx.offsets.iter().all(|e| (e.position as u64) < log_size)
                && idx.times.windows(2).all(|w| {
                    w[0].max_timestamp <= w[1].max_timestamp
                        && w[0].relative_offset < w[1].relative_offset
                });
        }
        if !valid {
            idx.clear()?;
        }
        Ok((idx, valid))
    }

    /// Drops every entry (memory and files).
    pub fn clear(&mut self) -> Result<()> {
        self.offsets.clear();
        self.times.clear();
        set_len(&self.offset_file, 0)?;
        set_len(&self.time_file, 0)
    }

    /// Appends an offset entry and a time entry for a batch starting at `position`.
    pub fn push(&mut self, relative_offset: u32, position: u32, max_timestamp: i64) -> Result<()> {
        if self
            .offsets
            .last()
            .is_some_and(|l| l.relative_offset >= relative_offset)
        {
            return Ok(());
        }
        let at = (self.offsets.len() * OFFSET_ENTRY) as u64;
        let mut e = [0u8; OFFSET_ENTRY];
        e[..4].copy_from_slice(&relative_offset.to_be_bytes());
        e[4..].copy_from_slice(&position.to_be_bytes());
        write_at(&self.offset_file, &e, at)?;
        self.offsets.push(OffsetEntry {
            relative_offset,
            position,
        });

        let ts = self
            .times
            .last()
            .map_or(max_timestamp, |l| l.max_timestamp.max(max_timestamp));
        let at = (self.times.len() * TIME_ENTRY) as u64;
        let mut t = [0u8; TIME_ENTRY];
        t[..8].copy_from_slice(&ts.to_be_bytes());
        t[8..].copy_from_slice(&relative_offset.to_be_bytes());
        write_at(&self.time_file, &t, at)?;
        self.times.push(TimeEntry {
            max_timestamp: ts,
            relative_offset,
        });
        Ok(())
    }

    /// Drops entries at or past `position` (after a truncation).
    pub fn truncate_to_position(&mut self, position: u64) -> Result<()> {
        let keep = self
            .offsets
            .partition_point(|e| (e.position as u64) < position);
        if keep == self.offsets.len() {
            return Ok(());
        }
        self.offsets.truncate(keep);
        let last_rel = self.offsets.last().map(|e| e.relative_offset);
        self.times
            .retain(|t| last_rel.is_some_and(|r| t.relative_offset <= r));
        set_len(
            &self.offset_file,
            (self.offsets.len() * OFFSET_ENTRY) as u64,
        )?;
        set_len(&self.time_file, (self.times.len() * TIME_ENTRY) as u64)
    }

    /// Largest indexed entry at or before `relative_offset`.
    pub fn floor(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let i = self
            .offsets
            .partition_point(|e| e.relative_offset <= relative_offset);
        i.checked_sub(1).map(|i| self.offsets[i])
    }

    /// Relative offset to start scanning from to find the first record with a timestamp
    /// at or after `timestamp`: the last entry whose running max is still below it.
    pub fn time_floor(&self, timestamp: i64) -> Option<u32> {
        let i = self.times.partition_point(|t| t.max_timestamp < timestamp);
        i.checked_sub(1).map(|i| self.times[i].relative_offset)
    }

    pub fn sync(&self) -> Result<()> {
        for f in [&self.offset_file, &self.time_file] {
            f.get()
                .and_then(|file| file.sync_data())
                .map_err(|e| BrokerError::io(f.path(), e))?;
        }
        Ok(())
    }

    pub fn paths(&self) -> [&Path; 2] {
        [self.offset_file.path(), self.time_file.path()]
    }

    /// Gives both descriptors back to the cache.
    pub fn close_files(&self) {
        self.offset_file.close();
        self.time_file.close();
    }
}

fn read_all(file: &mut File, path: &Path) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    file.read_to_end(&mut raw)
        .map_err(|e| BrokerError::io(path, e))?;
    Ok(raw)
}

fn set_len(f: &CachedFile, len: u64) -> Result<()> {
    f.get()
        .and_then(|file| file.set_len(len))
        .map_err(|e| BrokerError::io(f.path(), e))
}

fn write_at(f: &CachedFile, bytes: &[u8], at: u64) -> Result<()> {
    f.get()
        .and_then(|file| file.write_all_at(bytes, at))
        .map_err(|e| BrokerError::io(f.path(), e))
}

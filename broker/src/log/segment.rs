//! One segment: a `.log` file of whole RecordBatch v2 batches with its indexes. It owns
//! recovery of its own file (validate batches, truncate a torn or corrupt tail), positional
//! reads of whole batches, and appends. It never decodes records except to answer a
//! timestamp lookup. Its files are reached through the node's [`FileCache`], so a segment
//! holds no descriptor unless the cache keeps one open for it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::file_cache::{CachedFile, FileCache, Reopen};
use super::index::SegmentIndex;
use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::error::{BrokerError, Result};

/// File name stem of the segment starting at `base_offset`.
pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// A segment of a partition log.
#[derive(Debug)]
pub struct Segment {
    base_offset: i64,
    log: CachedFile,
    size: u64,
    next_offset: i64,
    max_timestamp: i64,
    /// Leader epoch of the last batch (`-1` when empty or written without one).
    last_epoch: i32,
    created_ms: i64,
    index: SegmentIndex,
    bytes_since_index: u64,
    index_interval: u64,
}

/// How much checking [`Segment::open`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Validate every batch (the active segment after an unclean stop).
    Full,
    /// Trust a consistent index; validate only the batches after its last entry.
    Tail,
}

impl Segment {
    /// Creates an empty segment.
    pub fn create(
        dir: &Path,
        base_offset: i64,
        index_interval: u64,
        cache: &Arc<FileCache>,
    ) -> Result<Segment> {
        let stem = file_stem(base_offset);
        let log_path = dir.join(format!("{stem}.log"));
        let log = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .map_err(|e| BrokerError::io(&log_path, e))?;
        let log = CachedFile::with_open(cache, log_path, log, Reopen::MustExist);
        let (mut index, _) = SegmentIndex::open(
            dir.join(format!("{stem}.index")),
            dir.join(format!("{stem}.timeindex")),
            0,
            cache,
        )?;
        index.clear()?;
        Ok(Segment {
            base_offset,
            log,
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            last_epoch: -1,
            created_ms: super::now_ms(),
            index,
            bytes_since_index: 0,
            index_interval,
        })
    }

    /// Opens an existing segment, recovering its tail and rebuilding indexes that do not
    /// match the log.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        index_interval: u64,
        recovery: Recovery,
        cache: &Arc<FileCache>,
    ) -> Result<Segment> {
        let stem = file_stem(base_offset);
        let log_path = dir.join(format!("{stem}.log"));
        let log = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(|e| BrokerError::io(&log_path, e))?;
        let size = log
            .metadata()
            .map_err(|e| BrokerError::io(&log_path, e))?
            .len();
        let log = CachedFile::with_open(cache, log_path, log, Reopen::MustExist);
        let (index, index_ok) = SegmentIndex::open(
            dir.join(format!("{stem}.index")),
            dir.join(format!("{stem}.timeindex")),
            size,
            cache,
        )?;
        let mut seg = Segment {
            base_offset,
            log,
            size,
            next_offset: base_offset,
            max_timestamp: -1,
            last_epoch: -1,
            created_ms: super::now_ms(),
            index,
            bytes_since_index: 0,
            index_interval,
        };
        let trust_index = index_ok && recovery == Recovery::Tail && seg.index_points_at_batches();
        let from = if trust_index {
            // Everything before the last entry is covered by the index; its running max
            // timestamp covers those batches.
            seg.max_timestamp = seg.index.times.last().map_or(-1, |t| t.max_timestamp);
            seg.index.offsets.last().map_or(0, |e| e.position as u64)
        } else {
            seg.index.clear()?;
            0
        };
        seg.scan_and_recover(from, !trust_index)?;
        Ok(seg)
    }

    /// True if the first and last index entries point at batch headers with the offsets
    /// they claim (cheap check that the index belongs to this log).
    fn index_points_at_batches(&self) -> bool {
        let Ok(file) = self.file() else {
            return false;
        };
        let check = |e: Option<&super::index::OffsetEntry>| match e {
            None => true,
            Some(e) => self
                .read_header(&file, e.position as u64)
                .ok()
                .flatten()
                .is_some_and(|h| h.base_offset == self.base_offset + e.relative_offset as i64),
        };
        check(self.index.offsets.first()) && check(self.index.offsets.last())
    }

    /// Reads the batch header at `pos`, or `None` if fewer than a header's bytes remain.
    fn read_header(&self, file: &File, pos: u64) -> Result<Option<BatchHeader>> {
        if pos + HEADER_LEN as u64 > self.size {
            return Ok(None);
        }
        let mut buf = [0u8; HEADER_LEN];
        file.read_exact_at(&mut buf, pos)
            .map_err(|e| BrokerError::io(self.log_path(), e))?;
        BatchHeader::parse(&buf).map(Some)
    }

    /// Validates batches from `from` to the end; truncates the file at the first torn or
    /// corrupt batch. Rebuilds index entries for what it scans when `index` is set.
    fn scan_and_recover(&mut self, from: u64, index: bool) -> Result<()> {
        let mut pos = from;
        let mut expected_min = self.base_offset;
        self.bytes_since_index = 0;
        let mut buf = Vec::new();
        let file = self.file()?;
        while pos < self.size {
            let header = match self.read_header(&file, pos) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(BrokerError::CorruptBatch(_)) => break,
                Err(e) => return Err(e),
            };
            let len = header.total_len() as u64;
            if pos + len > self.size || header.base_offset < expected_min {
                break;
            }
            buf.resize(len as usize, 0);
            file.read_exact_at(&mut buf, pos)
                .map_err(|e| BrokerError::io(self.log_path(), e))?;
            if batch::validate(&buf).is_err() {
                break;
            }
            if index && (pos == 0 || self.bytes_since_index >= self.index_interval) {
                if pos > 0 {
                    self.push_index(&header, pos)?;
                }
                self.bytes_since_index = 0;
            }
            self.bytes_since_index += len;
            self.next_offset = header.next_offset();
            self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
            self.last_epoch = header.partition_leader_epoch;
            expected_min = header.next_offset();
            pos += len;
        }
        if pos < self.size {
            tracing::warn!(
                segment = %self.log_path().display(),
                valid_bytes = pos,
                file_bytes = self.size,
                "truncating torn or corrupt tail of segment"
            );
            file.set_len(pos)
                .map_err(|e| BrokerError::io(self.log_path(), e))?;
            file.sync_all()
                .map_err(|e| BrokerError::io(self.log_path(), e))?;
            self.size = pos;
            self.index.truncate_to_position(pos)?;
        }
        Ok(())
    }

    fn push_index(&mut self, header: &BatchHeader, pos: u64) -> Result<()> {
        let rel = u32::try_from(header.base_offset - self.base_offset).map_err(|_| {
            BrokerError::CorruptFile {
                path: self.log_path().to_path_buf(),
                reason: "offset too far from segment base".into(),
            }
        })?;
        self.index.push(rel, pos as u32, header.max_timestamp)
    }

    /// Appends one whole, validated batch, written with the base offset and partition leader
    /// epoch of `header` in place of its own (neither is covered by the CRC).
    pub fn append(&mut self, batch: &[u8], header: &BatchHeader) -> Result<()> {
        let pos = self.size;
        let file = self.file()?;
        if let Err(e) = write_batch_at(
            &file,
            header.base_offset,
            header.partition_leader_epoch,
            batch,
            pos,
        ) {
            // Leave no partial batch behind: the file ends where our size says it does.
            let _ = file.set_len(pos);
            return Err(BrokerError::io(self.log_path(), e));
        }
        if pos > 0 && self.bytes_since_index >= self.index_interval {
            self.push_index(header, pos)?;
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += batch.len() as u64;
        self.size += batch.len() as u64;
        self.next_offset = header.next_offset();
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        self.last_epoch = header.partition_leader_epoch;
        Ok(())
    }

    /// Removes every batch whose last offset is at or after `offset` (a batch holding
    /// `offset` goes whole), durably (the file is cut and synced before this returns).
    /// Indexes drop the entries past the cut; the batches after the last remaining index
    /// entry are rescanned for the segment's end offset, largest timestamp and last epoch.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        if offset >= self.next_offset {
            return Ok(());
        }
        let file = self.file()?;
        let rel = u32::try_from((offset - self.base_offset).max(0)).unwrap_or(u32::MAX);
        let mut pos = self.index.floor(rel).map_or(0, |e| e.position as u64);
        while let Some(h) = self.read_header(&file, pos)? {
            if h.last_offset() >= offset {
                break;
            }
            pos += h.total_len() as u64;
        }
        let pos = pos.min(self.size);
        file.set_len(pos)
            .and_then(|()| file.sync_all())
            .map_err(|e| BrokerError::io(self.log_path(), e))?;
        self.size = pos;
        self.index.truncate_to_position(pos)?;
        self.next_offset = self.base_offset;
        self.last_epoch = -1;
        self.max_timestamp = self.index.times.last().map_or(-1, |t| t.max_timestamp);
        let from = self.index.offsets.last().map_or(0, |e| e.position as u64);
        self.scan_and_recover(from, false)
    }

    /// Whole batches starting with the one that holds `offset`, about `max_bytes` of them
    /// (always at least one). `None` when the segment holds nothing at or after `offset`.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Option<Bytes>> {
        if offset >= self.next_offset || self.size == 0 {
            return Ok(None);
        }
        let rel = u32::try_from((offset - self.base_offset).max(0)).unwrap_or(u32::MAX);
        let mut pos = self.index.floor(rel).map_or(0, |e| e.position as u64);
        let file = self.file()?;
        let first = loop {
            match self.read_header(&file, pos)? {
                None => return Ok(None),
                Some(h) if h.last_offset() >= offset => break h,
                Some(h) => pos += h.total_len() as u64,
            }
        };
        let mut end = pos + first.total_len() as u64;
        while end < self.size {
            match self.read_header(&file, end)? {
                Some(h) if (end - pos) as usize + h.total_len() <= max_bytes => {
                    end += h.total_len() as u64
                }
                _ => break,
            }
        }
        let end = end.min(self.size);
        let buf = read_uninit_at(&file, (end - pos) as usize, pos)
            .map_err(|e| BrokerError::io(self.log_path(), e))?;
        Ok(Some(Bytes::from(buf)))
    }

    /// First offset in this segment whose record timestamp is at or after `timestamp`.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<i64>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let mut pos = self
            .index
            .time_floor(timestamp)
            .and_then(|rel| self.index.floor(rel))
            .map_or(0, |e| e.position as u64);
        let file = self.file()?;
        while let Some(h) = self.read_header(&file, pos)? {
            if h.max_timestamp >= timestamp {
                let mut buf = BytesMut::zeroed(h.total_len());
                file.read_exact_at(&mut buf, pos)
                    .map_err(|e| BrokerError::io(self.log_path(), e))?;
                if let Some(r) = batch::decode(buf.freeze())?
                    .into_iter()
                    .find(|r| r.timestamp >= timestamp)
                {
                    return Ok(Some(r.offset));
                }
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Forces the log file (not its indexes, which are rebuilt if lost) to disk.
    pub fn sync_log(&self) -> Result<()> {
        self.file()?
            .sync_data()
            .map_err(|e| BrokerError::io(self.log_path(), e))
    }

    /// Forces the log and its indexes to disk.
    pub fn flush(&self) -> Result<()> {
        self.sync_log()?;
        self.index.sync()
    }

    /// Removes the segment's files.
    pub fn delete_files(&self) -> Result<()> {
        self.close_files();
        for p in [self.log_path()].into_iter().chain(self.index.paths()) {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(BrokerError::io(p, e)),
            }
        }
        Ok(())
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    pub fn last_epoch(&self) -> i32 {
        self.last_epoch
    }
    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }
    pub fn log_path(&self) -> &Path {
        self.log.path()
    }
    pub fn index_paths(&self) -> [&Path; 2] {
        self.index.paths()
    }
    /// A shared handle to the log file, reopened if the cache closed it (to sync without
    /// holding the partition lock, or for the several reads of one operation).
    #[inline]
    pub fn file(&self) -> Result<Arc<File>> {
        self.log
            .get()
            .map_err(|e| BrokerError::io(self.log_path(), e))
    }

    /// Gives the segment's descriptors back to the cache (they reopen on the next use).
    pub fn close_files(&self) {
        self.log.close();
        self.index.close_files();
    }
}

/// Bytes of a batch up to the end of its partition leader epoch field.
const HEAD_LEN: usize = 16;

/// Writes `batch` at `pos` with `base_offset` and `leader_epoch` in place of its base offset
/// and partition leader epoch fields, in one `pwritev`: the caller's bytes are neither
/// changed nor copied.
fn write_batch_at(
    file: &File,
    base_offset: i64,
    leader_epoch: i32,
    batch: &[u8],
    pos: u64,
) -> std::io::Result<()> {
    let (Some(length), Some(rest)) = (batch.get(8..12), batch.get(HEAD_LEN..)) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a batch is shorter than its leader epoch field",
        ));
    };
    let mut head = [0u8; HEAD_LEN];
    head[..8].copy_from_slice(&base_offset.to_be_bytes());
    head[8..12].copy_from_slice(length);
    head[12..].copy_from_slice(&leader_epoch.to_be_bytes());
    let total = head.len() + rest.len();
    let mut done = 0usize;
    while done < total {
        let parts = if done < head.len() {
            [
                std::io::IoSlice::new(&head[done..]),
                std::io::IoSlice::new(rest),
            ]
        } else {
            [
                std::io::IoSlice::new(&rest[done - head.len()..]),
                std::io::IoSlice::new(&[]),
            ]
        };
        match rustix::io::pwritev(file, &parts, pos + done as u64) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "the segment file took no bytes",
                ));
            }
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads exactly `len` bytes at `pos` into a new buffer without zeroing it first (fetches
/// read megabytes at a time: zeroing them cost as much as the read itself).
fn read_uninit_at(file: &File, len: usize, pos: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let at = pos + buf.len() as u64;
        let want = len - buf.len();
        // Reads into the spare capacity and extends `buf` by what was read.
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("segment ended {want} bytes early at position {at}"),
                ));
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    // `with_capacity` may have given more room than asked for.
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{EncodeRecord, encode};

    fn batch_at(offset: i64, n: usize, ts: i64) -> BytesMut {
        let recs: Vec<EncodeRecord> = (0..n)
            .map(|i| EncodeRecord {
                offset: offset + i as i64,
                timestamp: ts + i as i64,
                key: None,
                value: Some(Bytes::from(vec![b'x'; 100])),
                headers: vec![],
            })
            .collect();
        encode(&recs).unwrap()
    }

    #[test]
    fn reopen_rebuilds_a_corrupt_index() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(FileCache::new(4));
        let mut seg = Segment::create(dir.path(), 0, 200, &cache).unwrap();
        for i in 0..20 {
            let b = batch_at(i * 3, 3, 1000 + i * 10);
            let h = batch::validate(&b).unwrap();
            seg.append(&b, &h).unwrap();
        }
        let entries = seg.index.offsets.clone();
        assert!(entries.len() > 3);
        drop(seg);
        // Garbage in the index file: it must be rebuilt, not trusted.
        std::fs::write(dir.path().join("00000000000000000000.index"), [0xffu8; 16]).unwrap();
        let seg = Segment::open(dir.path(), 0, 200, Recovery::Tail, &cache).unwrap();
        assert_eq!(seg.index.offsets, entries);
        assert_eq!(seg.next_offset(), 60);
        assert_eq!(seg.offset_for_timestamp(1055).unwrap(), Some(18));
        assert_eq!(seg.offset_for_timestamp(1051).unwrap(), Some(16));
        assert_eq!(seg.offset_for_timestamp(5000).unwrap(), None);
        let first = seg.read(31, 1).unwrap().unwrap();
        assert_eq!(batch::validate(&first).unwrap().base_offset, 30);
    }
}

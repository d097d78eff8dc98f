//! Compaction of one partition: keep the latest record per key in closed segments, drop
//! tombstones older than the delete-retention period. Offsets are preserved (the rewritten
//! batches have gaps, as in Kafka). The active segment is never rewritten, only read to learn
//! which keys have newer values.
//!
//! The cleaner reads and writes files without the partition lock and takes the lock only to
//! swap a rewritten segment in, so appends are not blocked while it works.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;

use super::partition::PartitionLog;
use crate::batch::{self, BatchHeader, EncodeRecord, HEADER_LEN};
use crate::error::{BrokerError, Result};
use crate::types::StoredRecord;

/// What one compaction pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactionOutcome {
    pub segments_rewritten: usize,
    pub records_removed: u64,
}

/// Calls `f` with every record in the first `limit` bytes of the segment at `path`.
fn for_each_record(path: &Path, limit: u64, mut f: impl FnMut(StoredRecord)) -> Result<()> {
    let file = File::open(path).map_err(|e| BrokerError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file.take(limit));
    let mut header = [0u8; HEADER_LEN];
    loop {
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(BrokerError::io(path, e)),
        }
        let h = BatchHeader::parse(&header)?;
        let mut buf = vec![0u8; h.total_len()];
        buf[..HEADER_LEN].copy_from_slice(&header);
        reader
            .read_exact(&mut buf[HEADER_LEN..])
            .map_err(|e| BrokerError::io(path, e))?;
        for r in batch::decode(Bytes::from(buf))? {
            f(r);
        }
    }
}

fn lock(log: &Mutex<PartitionLog>) -> std::sync::MutexGuard<'_, PartitionLog> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs one compaction pass over the partition.
pub fn compact(log: &Mutex<PartitionLog>, now_ms: i64) -> Result<CompactionOutcome> {
    let (closed, active, delete_retention_ms) = {
        let l = lock(log);
        if !l.settings().compacted {
            return Ok(CompactionOutcome::default());
        }
        (
            l.closed_segments(),
            l.active_snapshot()?,
            l.settings().delete_retention_ms,
        )
    };
    if closed.is_empty() {
        return Ok(CompactionOutcome::default());
    }
    // Pass 1: the latest offset of every key, over everything written so far.
    let mut latest: HashMap<Bytes, i64> = HashMap::new();
    let mut note = |r: StoredRecord| {
        if let Some(k) = r.key {
            latest.insert(k, r.offset);
        }
    };
    for (_, path) in &closed {
        for_each_record(path, u64::MAX, &mut note)?;
    }
    for_each_record(&active.1, active.2, &mut note)?;

    // Pass 2: rewrite each closed segment that has something to drop.
    let mut outcome = CompactionOutcome::default();
    for (base, path) in closed {
        let mut keep = Vec::new();
        let mut total = 0u64;
        for_each_record(&path, u64::MAX, |r| {
            total += 1;
            let Some(key) = &r.key else { return };
            let is_latest = latest.get(key) == Some(&r.offset);
            let expired_tombstone =
                r.value.is_none() && r.timestamp.saturating_add(delete_retention_ms) <= now_ms;
            if is_latest && !expired_tombstone {
                keep.push(EncodeRecord {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                });
            }
        })?;
        if keep.len() as u64 == total {
            continue;
        }
        let cleaned = if keep.is_empty() {
            None
        } else {
            Some(write_cleaned(&path, &keep)?)
        };
        lock(log).replace_closed_segment(base, cleaned.as_deref())?;
        outcome.segments_rewritten += 1;
        outcome.records_removed += total - keep.len() as u64;
    }
    Ok(outcome)
}

/// Writes `records` as batches of about 1 MiB to `<segment>.cleaned`, synced.
fn write_cleaned(segment: &Path, records: &[EncodeRecord]) -> Result<PathBuf> {
    let mut name = segment.as_os_str().to_owned();
    name.push(".cleaned");
    let path = PathBuf::from(name);
    let mut out =
        std::io::BufWriter::new(File::create(&path).map_err(|e| BrokerError::io(&path, e))?);
    let mut start = 0;
    while start < records.len() {
        let mut end = start;
        let mut bytes = 0usize;
        while end < records.len() && (end == start || bytes < 1 << 20) {
            let r = &records[end];
            bytes += r.key.as_ref().map_or(0, |k| k.len())
                + r.value.as_ref().map_or(0, |v| v.len())
                + 32;
            end += 1;
        }
        let encoded = batch::encode(&records[start..end])?;
        out.write_all(&encoded)
            .map_err(|e| BrokerError::io(&path, e))?;
        start = end;
    }
    let file = out
        .into_inner()
        .map_err(|e| BrokerError::io(&path, e.into_error()))?;
    file.sync_all().map_err(|e| BrokerError::io(&path, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FsyncPolicy;
    use crate::log::PartitionSettings;

    #[test]
    fn keeps_latest_per_key_and_preserves_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let settings = PartitionSettings {
            segment_bytes: 2048,
            segment_ms: i64::MAX / 2,
            index_interval_bytes: 256,
            fsync: FsyncPolicy::Os,
            max_batch_bytes: 1 << 20,
            retention_ms: None,
            retention_bytes: None,
            compacted: true,
            delete_retention_ms: 1000,
        };
        let log = Mutex::new(PartitionLog::open(dir.path(), settings.clone()).unwrap());
        let now = 10_000_000;
        // 200 records over 10 keys; key 3 ends with a tombstone older than delete retention.
        for i in 0..200i64 {
            let key = format!("k{}", i % 10);
            let value = if i == 193 {
                None
            } else {
                Some(Bytes::from(format!("v{i}-{}", "x".repeat(40))))
            };
            let mut b = batch::encode(&[EncodeRecord {
                offset: 0,
                timestamp: i,
                key: Some(key.into()),
                value,
                headers: vec![],
            }])
            .unwrap();
            lock(&log).append(&mut b).unwrap();
        }
        let out = compact(&log, now).unwrap();
        assert!(out.segments_rewritten > 0);
        drop(log);
        // Reopen from disk: the result must be durable and readable.
        let log = PartitionLog::open(dir.path(), settings).unwrap();
        let mut seen: Vec<(i64, String, Option<String>)> = Vec::new();
        let mut offset = log.start_offset();
        loop {
            let bytes = log.read(offset, 1 << 20).unwrap();
            if bytes.is_empty() {
                break;
            }
            for (h, b) in batch::split(&bytes).unwrap() {
                for r in batch::decode(b).unwrap() {
                    if r.offset >= offset {
                        seen.push((
                            r.offset,
                            String::from_utf8_lossy(r.key.as_ref().unwrap()).into(),
                            r.value.map(|v| String::from_utf8_lossy(&v).into()),
                        ));
                    }
                }
                offset = h.next_offset();
            }
        }
        assert_eq!(log.end_offset(), 200);
        // Offsets ascend and the last value of every key is the one written last.
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
        let mut last: HashMap<String, (i64, Option<String>)> = HashMap::new();
        for (o, k, v) in &seen {
            last.insert(k.clone(), (*o, v.clone()));
        }
        for k in 0..10 {
            let (o, v) = &last[&format!("k{k}")];
            let expected = 190 + k as i64;
            if k == 3 {
                // The tombstone is in the active segment or removed; either way no older value survives.
                assert!(*o == 193 && v.is_none(), "k3 -> {o} {v:?}");
            } else {
                assert_eq!(*o, expected);
                assert!(v.as_ref().unwrap().starts_with(&format!("v{expected}-")));
            }
        }
        // Closed segments hold at most one record per key.
        assert!(seen.len() < 60, "{} records survived", seen.len());
    }
}

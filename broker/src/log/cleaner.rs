//! Compaction of one partition: keep the latest record per key in closed segments, drop
//! tombstones older than the delete-retention period and the records of aborted
//! transactions; transaction markers are kept. Offsets are preserved (the rewritten
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

/// What one compaction pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactionOutcome {
    pub segments_rewritten: usize,
    pub records_removed: u64,
}

/// Calls `f` with every batch (header and bytes) in the first `limit` bytes of the segment
/// at `path`.
fn for_each_batch(path: &Path, limit: u64, mut f: impl FnMut(&BatchHeader, Bytes)) -> Result<()> {
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
        f(&h, Bytes::from(buf));
    }
}

fn lock(log: &Mutex<PartitionLog>) -> std::sync::MutexGuard<'_, PartitionLog> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// What pass 1 learns of transactions, walking the partition in offset order: which
/// transactional records were aborted, and where the oldest transaction without a marker
/// yet starts.
#[derive(Default)]
struct Transactions {
    /// Producer id → (first offset, last offset, keys with offsets) of its open transaction.
    open: HashMap<i64, (i64, Vec<(Bytes, i64)>)>,
    /// Producer id → (first offset, marker offset) of its aborted transactions.
    aborted: HashMap<i64, Vec<(i64, i64)>>,
}

impl Transactions {
    fn is_aborted(&self, producer_id: i64, offset: i64) -> bool {
        self.aborted
            .get(&producer_id)
            .is_some_and(|v| v.iter().any(|(f, l)| *f <= offset && offset <= *l))
    }

    fn first_open(&self) -> Option<i64> {
        self.open.values().map(|(f, _)| *f).min()
    }
}

/// Runs one compaction pass over the partition.
///
/// Transactions (see `kafka::producer`): records of aborted transactions are dropped, those
/// of committed ones are kept like any other record (rewritten without their producer id),
/// records of a transaction without a marker yet count for nothing and every segment at or
/// after its first offset is left as it is, and markers (control batches) are always kept
/// byte for byte, so a replay of the log finds every transaction closed that was closed.
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
    // Pass 1: the latest offset of every key, over everything written and committed so far.
    let mut latest: HashMap<Bytes, i64> = HashMap::new();
    let mut txns = Transactions::default();
    let mut failed: Option<BrokerError> = None;
    let mut note = |h: &BatchHeader, b: Bytes| {
        if h.is_control() {
            let Some((first, keys)) = txns.open.remove(&h.producer_id) else {
                return;
            };
            match batch::marker_of(&b) {
                Some(batch::Marker::Commit) => {
                    for (k, o) in keys {
                        latest.insert(k, o);
                    }
                }
                _ => txns
                    .aborted
                    .entry(h.producer_id)
                    .or_default()
                    .push((first, h.base_offset)),
            }
            return;
        }
        let records = match batch::decode(b) {
            Ok(r) => r,
            Err(e) => {
                failed.get_or_insert(e);
                return;
            }
        };
        if h.is_transactional() && h.producer_id >= 0 {
            let open = txns
                .open
                .entry(h.producer_id)
                .or_insert_with(|| (h.base_offset, Vec::new()));
            open.1
                .extend(records.into_iter().filter_map(|r| Some((r.key?, r.offset))));
            return;
        }
        for r in records {
            if let Some(k) = r.key {
                latest.insert(k, r.offset);
            }
        }
    };
    for (_, path) in &closed {
        for_each_batch(path, u64::MAX, &mut note)?;
    }
    for_each_batch(&active.1, active.2, &mut note)?;
    if let Some(e) = failed {
        return Err(e);
    }
    let first_open = txns.first_open();

    // Pass 2: rewrite each closed segment that has something to drop.
    let mut outcome = CompactionOutcome::default();
    for (i, (base, path)) in closed.iter().enumerate() {
        let next_base = closed.get(i + 1).map_or(active.0, |(b, _)| *b);
        if first_open.is_some_and(|o| o < next_base) {
            // From here on a transaction may still commit or abort: left as it is.
            break;
        }
        let mut keep: Vec<Kept> = Vec::new();
        let mut total = 0u64;
        let mut failed: Option<BrokerError> = None;
        for_each_batch(path, u64::MAX, |h, b| {
            if h.is_control() {
                total += 1;
                keep.push(Kept::Raw(b));
                return;
            }
            let records = match batch::decode(b) {
                Ok(r) => r,
                Err(e) => {
                    failed.get_or_insert(e);
                    return;
                }
            };
            for r in records {
                total += 1;
                let Some(key) = &r.key else { continue };
                let aborted = h.is_transactional() && txns.is_aborted(h.producer_id, r.offset);
                let is_latest = latest.get(key) == Some(&r.offset);
                let expired_tombstone =
                    r.value.is_none() && r.timestamp.saturating_add(delete_retention_ms) <= now_ms;
                if is_latest && !expired_tombstone && !aborted {
                    keep.push(Kept::Record(EncodeRecord {
                        offset: r.offset,
                        timestamp: r.timestamp,
                        key: r.key,
                        value: r.value,
                        headers: r.headers,
                    }));
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        if keep.len() as u64 == total {
            continue;
        }
        let cleaned = if keep.is_empty() {
            None
        } else {
            Some(write_cleaned(path, &keep)?)
        };
        lock(log).replace_closed_segment(*base, cleaned.as_deref())?;
        outcome.segments_rewritten += 1;
        outcome.records_removed += total - keep.len() as u64;
    }
    Ok(outcome)
}

/// What a rewritten segment keeps, in offset order.
enum Kept {
    Record(EncodeRecord),
    /// A control batch, byte for byte.
    Raw(Bytes),
}

/// Writes `kept` to `<segment>.cleaned` (records as batches of about 1 MiB, control
/// batches as they were), synced.
fn write_cleaned(segment: &Path, kept: &[Kept]) -> Result<PathBuf> {
    let mut name = segment.as_os_str().to_owned();
    name.push(".cleaned");
    let path = PathBuf::from(name);
    let mut out =
        std::io::BufWriter::new(File::create(&path).map_err(|e| BrokerError::io(&path, e))?);
    let mut run: Vec<EncodeRecord> = Vec::new();
    let mut bytes = 0usize;
    let flush = |run: &mut Vec<EncodeRecord>, out: &mut std::io::BufWriter<File>| {
        if run.is_empty() {
            return Ok(());
        }
        let encoded = batch::encode(run)?;
        run.clear();
        out.write_all(&encoded)
            .map_err(|e| BrokerError::io(&path, e))
    };
    for k in kept {
        match k {
            Kept::Record(r) => {
                bytes += r.key.as_ref().map_or(0, |k| k.len())
                    + r.value.as_ref().map_or(0, |v| v.len())
                    + 32;
                run.push(r.clone());
                if bytes >= 1 << 20 {
                    flush(&mut run, &mut out)?;
                    bytes = 0;
                }
            }
            Kept::Raw(b) => {
                flush(&mut run, &mut out)?;
                bytes = 0;
                out.write_all(b).map_err(|e| BrokerError::io(&path, e))?;
            }
        }
    }
    flush(&mut run, &mut out)?;
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

    /// A one-record batch; transactional for `Some(producer id)`.
    fn one(key: &str, value: &str, producer: Option<i64>) -> bytes::BytesMut {
        let mut b = batch::encode(&[EncodeRecord {
            offset: 0,
            timestamp: 1,
            key: Some(Bytes::from(key.to_string())),
            value: Some(Bytes::from(format!("{value}-{}", "x".repeat(40)))),
            headers: vec![],
        }])
        .unwrap();
        if let Some(pid) = producer {
            b[21..23].copy_from_slice(&batch::TRANSACTIONAL_FLAG.to_be_bytes());
            b[43..51].copy_from_slice(&pid.to_be_bytes());
            b[51..53].copy_from_slice(&0i16.to_be_bytes());
            b[53..57].copy_from_slice(&0i32.to_be_bytes());
            let crc = crc32c::crc32c(&b[21..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        b
    }

    /// A compacted partition's settings with `segment_bytes` per segment.
    fn compacted_settings(segment_bytes: u64) -> PartitionSettings {
        PartitionSettings {
            segment_bytes,
            segment_ms: i64::MAX / 2,
            index_interval_bytes: 256,
            fsync: FsyncPolicy::Os,
            max_batch_bytes: 1 << 20,
            retention_ms: None,
            retention_bytes: None,
            compacted: true,
            delete_retention_ms: 1000,
        }
    }

    #[test]
    fn drops_aborted_records_keeps_committed_ones_and_every_marker() {
        let dir = tempfile::tempdir().unwrap();
        let settings = compacted_settings(1024);
        let log = Mutex::new(PartitionLog::open(dir.path(), settings.clone()).unwrap());
        let marker = |pid, m| {
            bytes::BytesMut::from(&batch::control_batch(pid, 0, m, 0, 1).unwrap().bytes()[..])
        };
        let append = |mut b: bytes::BytesMut| lock(&log).append(&mut b).unwrap();
        append(one("k1", "a", None)); // 0
        append(one("k1", "b", Some(7))); // 1
        append(marker(7, batch::Marker::Commit)); // 2
        append(one("k2", "x", Some(8))); // 3
        append(one("k1", "aborted", Some(8))); // 4
        append(marker(8, batch::Marker::Abort)); // 5
        for i in 0..60 {
            append(one("k9", &format!("f{i}"), None)); // 6..=65
        }
        append(one("k3", "open", Some(9))); // 66, no marker yet
        let out = compact(&log, 10_000_000).unwrap();
        assert!(out.segments_rewritten > 0);
        drop(log);
        let log = PartitionLog::open(dir.path(), settings).unwrap();
        let mut records: Vec<(i64, String)> = Vec::new();
        let mut markers = Vec::new();
        let mut offset = log.start_offset();
        loop {
            let bytes = log.read(offset, 1 << 20).unwrap();
            if bytes.is_empty() {
                break;
            }
            for (h, b) in batch::split(&bytes).unwrap() {
                offset = h.next_offset();
                if h.is_control() {
                    markers.push((h.base_offset, batch::marker_of(&b).unwrap()));
                    continue;
                }
                for r in batch::decode(b).unwrap() {
                    let v = String::from_utf8_lossy(r.value.as_ref().unwrap()).to_string();
                    records.push((r.offset, v.split('-').next().unwrap().to_string()));
                }
            }
        }
        assert_eq!(
            markers,
            vec![(2, batch::Marker::Commit), (5, batch::Marker::Abort)]
        );
        assert!(records.contains(&(1, "b".into())), "{records:?}");
        assert!(!records.iter().any(|(o, _)| *o == 0 || *o == 3 || *o == 4));
        assert!(records.contains(&(66, "open".into())));
    }

    #[test]
    fn keeps_latest_per_key_and_preserves_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let settings = compacted_settings(2048);
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

//! Append and sequential-read throughput of the partition log, side by side with the disk's
//! own sequential write bandwidth measured in the same run.
//!
//! Run: `cargo bench -p weir-broker --bench log_throughput`
//! Env: `WEIR_BENCH_DIR` (default `target/bench-log`, must be on the disk under test),
//! `WEIR_BENCH_MB` (bytes written per case, default 1024), `WEIR_BENCH_SECS` (time cap per
//! case, default 10).
//!
//! Not a criterion bench on purpose: the figure that matters is a ratio against the plain
//! file write measured in the same run, printed as a table for BENCHMARKS.md.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_broker::batch::{self, EncodeRecord};
use weir_broker::log::{PartitionLog, PartitionSettings};
use weir_broker::{Broker, BrokerConfig, FsyncPolicy, ProduceRecord, TopicSpec};

const RECORD: usize = 1024;
const INTERVAL: Duration = Duration::from_secs(1);

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn settings(fsync: FsyncPolicy) -> PartitionSettings {
    PartitionSettings {
        segment_bytes: 256 << 20,
        segment_ms: i64::MAX / 2,
        index_interval_bytes: 4096,
        fsync,
        max_batch_bytes: 16 << 20,
        retention_ms: None,
        retention_bytes: None,
        compacted: false,
        delete_retention_ms: 0,
    }
}

struct Figure {
    bytes: u64,
    records: u64,
    elapsed: Duration,
}

impl Figure {
    fn mb_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
    fn rec_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
}

/// Plain `write(2)` of 1 MiB chunks, synced once per second and at the end: the bandwidth
/// the log is measured against.
fn disk_baseline(dir: &Path, total: u64, cap: Duration) -> Figure {
    let path = dir.join("baseline.bin");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xabu8; 1 << 20];
    let start = Instant::now();
    let mut last_sync = start;
    let mut written = 0u64;
    while written < total && start.elapsed() < cap {
        f.write_all(&chunk).unwrap();
        written += chunk.len() as u64;
        if last_sync.elapsed() >= INTERVAL {
            f.sync_data().unwrap();
            last_sync = Instant::now();
        }
    }
    f.sync_data().unwrap();
    let fig = Figure {
        bytes: written,
        records: written / RECORD as u64,
        elapsed: start.elapsed(),
    };
    std::fs::remove_file(path).unwrap();
    fig
}

/// Same, but one `fdatasync` after each write of `batch_bytes` (the per-batch baseline).
fn disk_baseline_synced(dir: &Path, batch_bytes: usize, total: u64, cap: Duration) -> Figure {
    let path = dir.join("baseline-synced.bin");
    let f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xabu8; batch_bytes];
    let start = Instant::now();
    let mut written = 0u64;
    while written < total && start.elapsed() < cap {
        f.write_all_at(&chunk, written).unwrap();
        f.sync_data().unwrap();
        written += chunk.len() as u64;
    }
    let fig = Figure {
        bytes: written,
        records: written / RECORD as u64,
        elapsed: start.elapsed(),
    };
    std::fs::remove_file(path).unwrap();
    fig
}

fn encoded_batch(n: usize) -> Vec<u8> {
    let value = Bytes::from(vec![b'v'; RECORD]);
    let records: Vec<EncodeRecord> = (0..n)
        .map(|i| EncodeRecord {
            offset: i as i64,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(value.clone()),
            headers: vec![],
        })
        .collect();
    batch::encode(&records).unwrap().to_vec()
}

/// Appends pre-encoded batches of `n` records: validation, offset assignment, write, index,
/// and syncing per the policy (interval: every second, as the background flusher does).
fn append_case(dir: &Path, n: usize, fsync: FsyncPolicy, total: u64, cap: Duration) -> Figure {
    let _ = std::fs::remove_dir_all(dir);
    let mut log = PartitionLog::open(dir, settings(fsync)).unwrap();
    let template = encoded_batch(n);
    let mut buf = template.clone();
    let start = Instant::now();
    let mut last_sync = start;
    let mut bytes = 0u64;
    let mut records = 0u64;
    while bytes < total && start.elapsed() < cap {
        buf.copy_from_slice(&template);
        log.append(&mut buf).unwrap();
        bytes += buf.len() as u64;
        records += n as u64;
        if fsync == FsyncPolicy::Interval && last_sync.elapsed() >= INTERVAL {
            if let Some(f) = log.take_dirty().unwrap() {
                f.sync_data().unwrap();
            }
            last_sync = Instant::now();
        }
    }
    log.flush().unwrap();
    Figure {
        bytes,
        records,
        elapsed: start.elapsed(),
    }
}

/// Reads the partition back from offset 0 in 1 MiB fetches (raw batches).
fn read_case(dir: &Path) -> Figure {
    let log = PartitionLog::open(dir, settings(FsyncPolicy::Os)).unwrap();
    let start = Instant::now();
    let mut offset = 0;
    let (mut bytes, mut records) = (0u64, 0u64);
    loop {
        let b = log.read(offset, 1 << 20).unwrap();
        if b.is_empty() {
            break;
        }
        for (h, _) in batch::split(&b).unwrap() {
            records += h.record_count as u64;
            offset = h.next_offset();
        }
        bytes += b.len() as u64;
    }
    Figure {
        bytes,
        records,
        elapsed: start.elapsed(),
    }
}

/// The whole `Broker::produce` path (partitioning, encoding, append) and `Broker::read`
/// (decoding every record), as the HTTP API uses them.
fn broker_cases(dir: &Path, total: u64, cap: Duration) -> (Figure, Figure) {
    let _ = std::fs::remove_dir_all(dir);
    let b = Broker::open(BrokerConfig::new(dir)).unwrap();
    b.create_topic(TopicSpec::new("bench", 1)).unwrap();
    let value = Bytes::from(vec![b'v'; RECORD]);
    let batch: Vec<ProduceRecord> = (0..1000)
        .map(|_| ProduceRecord {
            value: Some(value.clone()),
            ..Default::default()
        })
        .collect();
    let start = Instant::now();
    let (mut bytes, mut records) = (0u64, 0u64);
    while bytes < total && start.elapsed() < cap {
        b.produce("bench", batch.clone()).unwrap();
        bytes += (1000 * RECORD) as u64;
        records += 1000;
    }
    b.flush_all().unwrap();
    let produce = Figure {
        bytes,
        records,
        elapsed: start.elapsed(),
    };
    let start = Instant::now();
    let mut offset = 0;
    let (mut rbytes, mut rrecords) = (0u64, 0u64);
    loop {
        let r = b.read("bench", 0, offset, 10_000, 4 << 20).unwrap();
        if r.records.is_empty() {
            break;
        }
        rrecords += r.records.len() as u64;
        rbytes += r
            .records
            .iter()
            .map(|r| r.value.as_ref().map_or(0, |v| v.len()) as u64)
            .sum::<u64>();
        offset = r.next_offset;
    }
    (
        produce,
        Figure {
            bytes: rbytes,
            records: rrecords,
            elapsed: start.elapsed(),
        },
    )
}

fn main() {
    let dir = PathBuf::from(
        std::env::var("WEIR_BENCH_DIR").unwrap_or_else(|_| "target/bench-log".into()),
    );
    let total = env_num("WEIR_BENCH_MB", 1024) << 20;
    let cap = Duration::from_secs(env_num("WEIR_BENCH_SECS", 10));
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "log throughput: 1 KiB records, up to {} MiB or {:?} per case, dir {}",
        total >> 20,
        cap,
        dir.display()
    );
    println!(
        "each case is paired with a plain-file baseline written just before it (same bytes, same sync pattern)"
    );
    println!(
        "\n{:<40} {:>9} {:>11} {:>13} {:>9}",
        "case", "MB/s", "records/s", "baseline MB/s", "ratio"
    );
    let row = |name: &str, f: &Figure, baseline: &Figure| {
        println!(
            "{:<40} {:>9.1} {:>11.0} {:>13.1} {:>8.0}%",
            name,
            f.mb_s(),
            f.rec_s(),
            baseline.mb_s(),
            100.0 * f.mb_s() / baseline.mb_s()
        );
    };
    for fsync in [FsyncPolicy::Interval, FsyncPolicy::Batch] {
        for n in [1usize, 100, 1000] {
            let case_dir = dir.join(format!("append-{fsync}-{n}"));
            let (name, base) = if fsync == FsyncPolicy::Interval {
                (
                    format!("append batch={n} fsync=interval(1s)"),
                    disk_baseline(&dir, total, cap),
                )
            } else {
                (
                    format!("append batch={n} fsync=batch"),
                    disk_baseline_synced(&dir, encoded_batch(n).len(), total, cap),
                )
            };
            let f = append_case(&case_dir, n, fsync, total, cap);
            row(&name, &f, &base);
            if n == 1000 && fsync == FsyncPolicy::Interval {
                let r = read_case(&case_dir);
                row("read raw batches, 1 MiB fetches", &r, &base);
            }
            let _ = std::fs::remove_dir_all(&case_dir);
        }
    }
    let base = disk_baseline(&dir, total, cap);
    let (produce, read) = broker_cases(&dir.join("broker"), total, cap);
    row(
        "Broker::produce 1000 x 1 KiB, flush at end",
        &produce,
        &base,
    );
    row("Broker::read, decoded records", &read, &base);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\nbaselines: interval rows = write(2) of 1 MiB chunks + fdatasync every 1 s and at the end;"
    );
    println!(
        "batch rows = write(2) of one batch's bytes + fdatasync after each. Reads come from the page cache."
    );
}

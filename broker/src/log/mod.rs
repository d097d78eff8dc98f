//! The on-disk log of one partition: a directory of segments, each a `.log` file of
//! RecordBatch v2 bytes with a sparse `.index` (offset → file position) and a `.timeindex`
//! (timestamp → offset), and a `leader-epoch-checkpoint` ([`epoch`]: where each leader epoch
//! starts, for replication's truncation). This module owns files, recovery, rolling,
//! retention, compaction, and the log side of replication (epoch stamping, follower appends,
//! truncation); it knows nothing of topics, partitioning, roles or transports. Every segment and
//! index file is opened through one bounded [`FileCache`] per node.

pub mod cleaner;
pub mod epoch;
pub mod file_cache;
mod index;
mod partition;
mod segment;

pub use epoch::{EpochEntry, LeaderEpochCache, UNDEFINED_EPOCH, UNDEFINED_OFFSET};
pub use file_cache::{FileCache, FileCacheStats};
pub use partition::{PartitionLog, PartitionSettings, sync_dir};
pub use segment::Segment;

/// Current wall-clock time in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

//! Broker configuration: one serde struct per concern, each with defaults and `validate()`.
//! The binary maps its CLI flags (with env overrides) onto these.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{BrokerError, Result};

/// When appended data is forced to disk.
///
/// Every policy survives a crash of the Weir process itself (data written with `write(2)` is in
/// the kernel's page cache). They differ in what survives a power loss or kernel crash:
/// - `batch`: `fdatasync` before an append is acknowledged: nothing acknowledged is lost.
/// - `interval`: a background flusher syncs every `fsync_interval_ms`: at most that window
///   of acknowledged appends can be lost.
/// - `os`: Weir never syncs the log on its own; the kernel writes back when it chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    Batch,
    Interval,
    Os,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "batch" => Ok(FsyncPolicy::Batch),
            "interval" => Ok(FsyncPolicy::Interval),
            "os" => Ok(FsyncPolicy::Os),
            other => Err(format!(
                "unknown fsync policy '{other}' (expected batch, interval or os)"
            )),
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FsyncPolicy::Batch => "batch",
            FsyncPolicy::Interval => "interval",
            FsyncPolicy::Os => "os",
        })
    }
}

/// Defaults for every partition log; topics may override some of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// Roll the active segment when it reaches this size.
    pub segment_bytes: u64,
    /// Roll the active segment when its first record is older than this (ms).
    pub segment_ms: i64,
    /// Write one offset-index and one time-index entry every this many bytes.
    pub index_interval_bytes: u64,
    /// Default durability policy.
    pub fsync: FsyncPolicy,
    /// Period of the background flusher under [`FsyncPolicy::Interval`] (ms).
    pub fsync_interval_ms: u64,
    /// How often retention and compaction run (ms).
    pub cleanup_interval_ms: u64,
    /// Default tombstone retention for compacted topics (ms).
    pub delete_retention_ms: i64,
    /// Largest record batch accepted by one append.
    pub max_batch_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 256 * 1024 * 1024,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: 1000,
            cleanup_interval_ms: 30_000,
            delete_retention_ms: 24 * 3600 * 1000,
            max_batch_bytes: 16 * 1024 * 1024,
        }
    }
}

impl LogConfig {
    /// Checks that every value is usable.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(BrokerError::InvalidConfig(m.to_string()));
        if self.segment_bytes < 1024 {
            return bad("segment_bytes must be at least 1024");
        }
        if self.segment_ms < 1 {
            return bad("segment_ms must be positive");
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes must be positive");
        }
        if self.fsync_interval_ms == 0 {
            return bad("fsync_interval_ms must be positive");
        }
        if self.cleanup_interval_ms == 0 {
            return bad("cleanup_interval_ms must be positive");
        }
        if self.delete_retention_ms < 0 {
            return bad("delete_retention_ms must not be negative");
        }
        if self.max_batch_bytes < 1024 {
            return bad("max_batch_bytes must be at least 1024");
        }
        Ok(())
    }

    pub fn fsync_interval(&self) -> Duration {
        Duration::from_millis(self.fsync_interval_ms)
    }

    pub fn cleanup_interval(&self) -> Duration {
        Duration::from_millis(self.cleanup_interval_ms)
    }
}

/// How many files the log keeps open and how many partitions the node admits. A node serves
/// partitions through a bounded cache of open segment and index files
/// ([`crate::log::FileCache`]); `weir serve` derives both values from its file-descriptor
/// limit ([`crate::fd_limit::FileBudget`]) unless told otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FilesConfig {
    /// Segment and index files held open at once (the file cache's capacity).
    pub max_open_files: usize,
    /// Partitions, over every topic, the node admits: creating a topic that would go past
    /// it is refused before anything is written.
    pub max_partitions: usize,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            max_open_files: 1024,
            max_partitions: 100_000,
        }
    }
}

impl FilesConfig {
    pub fn validate(&self) -> Result<()> {
        if self.max_open_files < 2 {
            return Err(BrokerError::InvalidConfig(
                "max_open_log_files must be at least 2".into(),
            ));
        }
        if self.max_partitions < 1 {
            return Err(BrokerError::InvalidConfig(
                "max_partitions must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Everything [`crate::Broker::open`] needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerConfig {
    /// Root of the data directory; topics live in `<data_dir>/topics/<name>/<partition>/`.
    pub data_dir: PathBuf,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub files: FilesConfig,
}

impl BrokerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        BrokerConfig {
            data_dir: data_dir.into(),
            log: LogConfig::default(),
            files: FilesConfig::default(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.log.validate()?;
        self.files.validate()
    }
}

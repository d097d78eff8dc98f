//! The process's open-file limit (`RLIMIT_NOFILE`): [`raise`] lifts the soft limit to the
//! hard one at start (`weir serve` calls it once, before opening the log), and
//! [`FilesConfig`] values are derived from the result. It owns nothing else: it neither opens
//! files nor knows what they are for.

use crate::config::FilesConfig;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Soft limit used when the hard limit is "unlimited" (Linux refuses soft limits above
/// `fs.nr_open`, 1,048,576 by default).
const UNLIMITED_FALLBACK: u64 = 1 << 20;

/// The open-file limit after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit now in force (what `open` runs into).
    pub soft: u64,
    /// The hard limit (`None`: unlimited).
    pub hard: Option<u64>,
    /// The soft limit before, if [`raise`] changed it.
    pub raised_from: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. Never fails: when the limit cannot be
/// raised the current one is returned (and the caller logs it).
pub fn raise() -> FdLimit {
    let before = getrlimit(Resource::Nofile);
    let soft = before.current.unwrap_or(UNLIMITED_FALLBACK);
    let hard = before.maximum;
    let target = hard.unwrap_or(UNLIMITED_FALLBACK);
    if before.current.is_none() || soft >= target {
        return FdLimit {
            soft,
            hard,
            raised_from: None,
        };
    }
    let to = |v| Rlimit {
        current: Some(v),
        maximum: hard,
    };
    // An unlimited hard limit may still be capped by fs.nr_open: fall back to its default.
    let attempts = [target, UNLIMITED_FALLBACK.min(target)];
    for v in attempts {
        if setrlimit(Resource::Nofile, to(v)).is_ok() {
            return FdLimit {
                soft: v,
                hard,
                raised_from: Some(soft),
            };
        }
    }
    FdLimit {
        soft,
        hard,
        raised_from: None,
    }
}

/// Descriptors kept aside from the log's file cache for everything else the node opens:
/// listeners and connections, RocksDB, the Wasm cache, metadata files, `read_dir`s. A
/// quarter of the limit, at least 64 and at most 4,096.
pub fn reserved(soft_limit: u64) -> u64 {
    (soft_limit / 4).clamp(64, 4096)
}

impl FilesConfig {
    /// The log's share of a process limit of `soft_limit` open files: the file cache gets
    /// what [`reserved`] leaves, and the node admits one partition per cached file (so every
    /// partition can keep its active segment open).
    pub fn from_fd_limit(soft_limit: u64) -> FilesConfig {
        let files = soft_limit.saturating_sub(reserved(soft_limit)).max(16);
        let files = usize::try_from(files).unwrap_or(usize::MAX);
        FilesConfig {
            max_open_files: files,
            max_partitions: files,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_twice_is_stable_and_reaches_the_hard_limit() {
        let first = raise();
        let again = raise();
        assert_eq!(again.raised_from, None);
        assert_eq!(first.soft, again.soft);
        if let Some(hard) = first.hard {
            assert_eq!(first.soft, hard);
        }
    }

    #[test]
    fn budget_leaves_room_for_the_rest_of_the_node() {
        let c = FilesConfig::from_fd_limit(20_000);
        assert_eq!(c.max_open_files, 20_000 - 4096);
        assert!(c.max_partitions >= 10_000);
        let c = FilesConfig::from_fd_limit(1024);
        assert_eq!(c.max_open_files, 768);
        let c = FilesConfig::from_fd_limit(10);
        assert_eq!(c.max_open_files, 16);
    }
}

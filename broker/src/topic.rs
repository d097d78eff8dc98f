//! A topic: its persisted config and its partitions.
use serde::{Deserialize, Serialize};

/// Persisted per-topic settings (stored as `topic.json` in the topic directory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicConfig {}

/// Counters for one topic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicStats {
    pub records_appended: u64,
    pub bytes_appended: u64,
    pub records_read: u64,
    pub bytes_read: u64,
}

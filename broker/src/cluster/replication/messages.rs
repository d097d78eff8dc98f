//! The messages of the data plane between nodes: a follower's fetch and the leader's answer
//! (Kafka's replica Fetch with KIP-320's current leader epoch and KIP-595's last fetched
//! epoch / diverging epoch). Plain typed values: the RPC layer (`cluster::rpc`) carries them
//! postcard-encoded (serde derives here, `Bytes` through bytes' `serde` feature) and must
//! carry every field; this module knows nothing of transports.
//!
//! Wire rule: postcard encodes fields and variants by position, so a field or variant is
//! only ever appended, and changing one is a new `rpc::message::PROTOCOL_VERSION`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cluster::NodeId;

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// A follower's fetch from one leader, for every partition it follows there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    /// The fetching follower.
    pub replica_id: NodeId,
    /// How long the leader may hold the request when it has nothing new to send.
    pub max_wait_ms: u64,
    pub partitions: Vec<PartitionFetch>,
}

/// One partition of a [`FetchRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionFetch {
    pub tp: TopicPartition,
    /// The leader epoch the follower follows under; the leader refuses any other (fencing).
    pub current_leader_epoch: i32,
    /// The follower's log end offset: where it wants records from.
    pub fetch_offset: i64,
    /// The epoch of the follower's last record (its newest epoch), checked against the
    /// leader's log: when the leader's log does not hold that epoch up to `fetch_offset`, the
    /// answer is a diverging epoch instead of records. `None`: the follower has no epoch yet.
    pub last_fetched_epoch: Option<i32>,
    /// The high watermark the follower knows, so the leader answers at once with a newer one.
    pub high_watermark: i64,
    /// Bytes of records wanted at most (at least one whole batch is sent).
    pub max_bytes: usize,
}

/// The leader's answer, one entry per requested partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchResponse {
    pub partitions: Vec<PartitionFetchResponse>,
}

/// One partition of a [`FetchResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionFetchResponse {
    pub tp: TopicPartition,
    pub result: Result<FetchedData, FetchError>,
}

/// What the leader sends for a partition it leads at the follower's epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedData {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Set when the follower's log diverges from the leader's: the largest epoch the leader
    /// has at or below the follower's last fetched epoch, and where it ends. No records then.
    pub diverging_epoch: Option<EpochEndOffset>,
    /// Whole batches from `fetch_offset`, byte for byte as the leader stores them.
    pub records: Bytes,
}

/// An epoch and its end offset (an OffsetForLeaderEpoch answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochEndOffset {
    pub epoch: i32,
    pub end_offset: i64,
}

/// Why a leader refused a partition of a fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FetchError {
    /// The node does not lead the partition (`NOT_LEADER_OR_FOLLOWER`).
    #[error("not the leader of the partition")]
    NotLeaderOrFollower,
    /// The follower's epoch is older than the leader's (`FENCED_LEADER_EPOCH`).
    #[error("leader epoch {request} is older than the leader's {current}")]
    FencedLeaderEpoch { request: i32, current: i32 },
    /// The follower's epoch is newer than the leader knows of (`UNKNOWN_LEADER_EPOCH`): this
    /// node has not yet applied the metadata that made it leader, or was replaced.
    #[error("leader epoch {request} is newer than the leader's {current}")]
    UnknownLeaderEpoch { request: i32, current: i32 },
    /// The fetch offset is outside the leader's log (`OFFSET_OUT_OF_RANGE`).
    #[error("offset {offset} is outside the leader's log {log_start_offset}..={log_end_offset}")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// The node has no such partition (`UNKNOWN_TOPIC_OR_PARTITION`).
    #[error("unknown partition")]
    UnknownTopicOrPartition,
    /// The leader's log failed (`KAFKA_STORAGE_ERROR`).
    #[error("storage error: {0}")]
    Storage(String),
}

impl FetchError {
    /// The Kafka error code of this refusal.
    pub fn kafka_code(&self) -> i16 {
        match self {
            FetchError::NotLeaderOrFollower => 6,
            FetchError::FencedLeaderEpoch { .. } => 74,
            FetchError::UnknownLeaderEpoch { .. } => 75,
            FetchError::OffsetOutOfRange { .. } => 1,
            FetchError::UnknownTopicOrPartition => 3,
            FetchError::Storage(_) => 56,
        }
    }
}

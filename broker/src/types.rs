//! Plain data types that cross the broker's public API: what callers produce, what reads
//! return, and how topics are described. No I/O here.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::FsyncPolicy;

/// One record header: a name and an optional value (Kafka allows null header values).
pub type Header = (String, Option<Bytes>);

/// A record handed to [`crate::Broker::produce`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProduceRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Event time in ms since the epoch; `None` means "now" (append time).
    pub timestamp: Option<i64>,
    /// Explicit partition; `None` means the default partitioner (murmur2 of the key, or
    /// round robin for unkeyed records).
    pub partition: Option<i32>,
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// The answer to a read: records at or after the requested offset, and where to continue.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadResult {
    pub records: Vec<StoredRecord>,
    /// Offset to ask for next (one past the last record returned, or past a compaction gap).
    pub next_offset: i64,
    /// Current end of the partition (offset the next appended record will get).
    pub end_offset: i64,
}

/// A request to create a topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub name: String,
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    #[serde(default)]
    pub compacted: bool,
    #[serde(default)]
    pub retention_ms: Option<i64>,
    #[serde(default)]
    pub retention_bytes: Option<i64>,
    /// Per-topic durability; the server default when absent.
    #[serde(default)]
    pub fsync: Option<FsyncPolicy>,
    /// Per-topic segment size; the server default when absent.
    #[serde(default)]
    pub segment_bytes: Option<u64>,
    /// Per-topic segment age before it is rolled; the server default when absent.
    #[serde(default)]
    pub segment_ms: Option<i64>,
    /// Compacted topics: how long tombstones are kept after they are cleaned.
    #[serde(default)]
    pub delete_retention_ms: Option<i64>,
    /// Set on the topics the server owns (a processor's changelogs, offsets and repartition
    /// topic, `__consumer_offsets`): clients may read them but not write or delete them, and
    /// no client request may set it (see [`crate::Broker::create_topic`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal: Option<InternalTopic>,
    /// Cluster mode: how many nodes keep a copy of each partition (default min(3, nodes)).
    /// Ignored on a single node only when absent or 1; more is refused there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<u16>,
    /// Cluster mode: the in-sync replicas an `acks=all` write needs (default
    /// min(2, replication_factor)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_insync_replicas: Option<u16>,
    /// Set on a topic the cluster's metadata created on this node (never by a client):
    /// its partitions are written and read only through their replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterTopic>,
}

/// The marker of a replicated topic, persisted in its spec (`"cluster":{…}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTopic {
    /// The topic's id in the cluster metadata (a recreated topic gets a new one).
    pub topic_id: u64,
    pub replication_factor: u16,
    pub min_insync_replicas: u16,
}

/// The marker of an internal topic, persisted in its spec (`"internal":{"owner":"…"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalTopic {
    /// Who owns the topic: `processor:<name>`, [`InternalTopic::GROUP_COORDINATOR`] or
    /// [`InternalTopic::TXN_COORDINATOR`].
    pub owner: String,
}

impl InternalTopic {
    /// The owner of `__consumer_offsets`.
    pub const GROUP_COORDINATOR: &'static str = "group-coordinator";
    /// The owner of `__transaction_state`.
    pub const TXN_COORDINATOR: &'static str = "transaction-coordinator";

    /// The marker of a topic owned by processor (or query) `name`.
    pub fn processor(name: &str) -> Self {
        InternalTopic {
            owner: format!("processor:{name}"),
        }
    }

    /// The processor named by an owner string (`processor:<name>`), if it names one.
    pub fn processor_of(owner: &str) -> Option<&str> {
        owner.strip_prefix("processor:")
    }
}

fn default_partitions() -> i32 {
    1
}

impl TopicSpec {
    /// A spec with `partitions` partitions and every other setting at its default.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            compacted: false,
            retention_ms: None,
            retention_bytes: None,
            fsync: None,
            segment_bytes: None,
            segment_ms: None,
            delete_retention_ms: None,
            internal: None,
            replication_factor: None,
            min_insync_replicas: None,
            cluster: None,
        }
    }

    /// This spec with the internal-topic marker of `owner`.
    pub fn owned_by(mut self, owner: InternalTopic) -> Self {
        self.internal = Some(owner);
        self
    }
}

/// Summary of a topic as listed by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: i32,
    pub compacted: bool,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<i64>,
    pub fsync: FsyncPolicy,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub delete_retention_ms: i64,
    /// The internal-topic marker, if the server owns this topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal: Option<InternalTopic>,
    /// Cluster mode: the topic's replication (factor, min in-sync, id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterTopic>,
}

/// Offsets of one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub partition: i32,
    /// First offset still in the log.
    pub start_offset: i64,
    /// Offset the next record will get.
    pub end_offset: i64,
    /// Bytes on disk (segments only).
    pub size_bytes: u64,
    /// Number of segment files.
    pub segments: usize,
    /// Whether the partition serves (`offline`: it could not be opened at start).
    #[serde(default)]
    pub status: PartitionStatus,
    /// Why the partition is offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Cluster mode: the partition's replication as this node knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<PartitionReplication>,
}

/// A replicated partition's leader, replicas and in-sync set (from the applied metadata)
/// and this node's replica's offsets. `end_offset` of [`PartitionInfo`] is the high
/// watermark on a replicated partition; `log_end_offset` is where this replica's log ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionReplication {
    pub leader: Option<u64>,
    pub leader_epoch: i32,
    pub replicas: Vec<u64>,
    pub isr: Vec<u64>,
    pub log_end_offset: i64,
}

/// Whether a partition serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionStatus {
    #[default]
    Online,
    Offline,
}

/// A topic with its partitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicDescription {
    #[serde(flatten)]
    pub topic: TopicInfo,
    pub partition_offsets: Vec<PartitionInfo>,
}

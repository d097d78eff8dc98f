//! The broker's error type, and [`ErrorKind`], the one coarse classification of errors that
//! every layer above (engine, SQL, functions) reuses. Every variant a user can see maps to a
//! stable, machine-readable code (see [`BrokerError::code`]) and a kind that the transports
//! (HTTP, Kafka) turn into a status once, at their edge. Internal I/O details stay in the
//! message, never in the code.

use std::path::PathBuf;

/// Result alias for the broker.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

/// Coarse classes of error, used by transports to pick a status code. Shared by every layer
/// (the engine's, SQL's and the function registry's errors classify themselves with it), so
/// that a status is chosen in one place per transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The named thing does not exist.
    NotFound,
    /// The thing being created already exists.
    AlreadyExists,
    /// The request conflicts with the current state (in use by an owner, busy).
    Conflict,
    /// The caller sent something invalid (including values above a server maximum).
    InvalidInput,
    /// The caller sent something too large.
    TooLarge,
    /// The caller did not prove an identity.
    Unauthenticated,
    /// The caller's identity may not do this (or the target is reserved, e.g. internal).
    Forbidden,
    /// The caller must slow down (a cap on concurrent work or failed logins).
    TooManyRequests,
    /// The node has not the resources (files, memory, instances) to take this on.
    InsufficientResources,
    /// Data on disk is not what it must be.
    Corrupt,
    /// The service cannot take the request now (shutting down); retrying later may work.
    Unavailable,
    /// Anything else (I/O failures, …).
    Internal,
}

/// Errors returned by the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("topic '{topic}' has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A partition count a topic cannot take (CreatePartitions below or at the current one).
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("offset {offset} is out of range for {topic}/{partition} (valid: {start}..={end})")]
    OffsetOutOfRange {
        topic: String,
        partition: i32,
        offset: i64,
        start: i64,
        end: i64,
    },
    #[error("record batch of {size} bytes exceeds the limit of {limit} bytes")]
    BatchTooLarge { size: usize, limit: usize },
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    #[error("corrupt data in {path}: {reason}")]
    CorruptFile { path: PathBuf, reason: String },
    // The cause is part of the message (users see only the message), so it is not also
    // exposed as `source()` (a field named `source` would be), which prints it twice.
    #[error("I/O error on {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("data directory {0} is in use by another Weir process")]
    DataDirLocked(PathBuf),
    #[error("the broker is shutting down")]
    ShuttingDown,
    /// Cluster mode: this node became the partition's leader and does not know yet where
    /// the partition ends (its high watermark is below the start of its epoch until its
    /// followers fetch; Kafka's `OFFSET_NOT_AVAILABLE`). Retriable.
    #[error(
        "{topic}/{partition}: its new leader does not know the end offset yet (its followers \
         have not caught up with its epoch); retry shortly"
    )]
    OffsetNotAvailable { topic: String, partition: i32 },
    /// A request the node refuses by policy (a limit it would exceed), before touching disk.
    #[error("{0}")]
    PolicyViolation(String),
    /// A partition that could not be opened at start; the rest of the node serves.
    #[error("partition {partition} of topic '{topic}' is offline: {reason}")]
    PartitionOffline {
        topic: String,
        partition: i32,
        reason: String,
    },
    #[error(
        "topic '{topic}' is an internal topic of {owner}: clients may read it but not write or delete it"
    )]
    InternalTopic { topic: String, owner: String },
    #[error("topic '{topic}' is in use by {user}; stop or delete it first")]
    TopicInUse { topic: String, user: String },
    /// A topic the server needs as an internal topic of `owner` exists, created by a
    /// client (not marked as `owner`'s): it is not adopted.
    #[error(
        "topic '{topic}' exists but is not an internal topic of {owner} (a client created it); \
         delete or rename it, or choose another name"
    )]
    TopicConflict { topic: String, owner: String },
    /// A replicated log's offsets or leader epochs disagree with what it is asked to do
    /// (a stale leader epoch, a replicated batch that goes back in offsets or epochs).
    #[error("replica conflict: {0}")]
    ReplicaConflict(String),
    /// Cluster mode: this node does not lead the partition (or has no replica of it yet);
    /// `leader` names the node that does, when known. Retriable after a metadata refresh.
    #[error("this node is not the leader of {topic}/{partition}{}", leader_hint(*leader))]
    NotLeader {
        topic: String,
        partition: i32,
        leader: Option<u64>,
    },
    /// Cluster mode: `acks=all` refused before the append, the in-sync set being smaller
    /// than the topic's `min_insync_replicas`.
    #[error(
        "{topic}/{partition} has {isr} in-sync replicas, fewer than min_insync_replicas \
         {min_insync}: the write was refused"
    )]
    NotEnoughReplicas {
        topic: String,
        partition: i32,
        isr: usize,
        min_insync: usize,
    },
    /// Cluster mode: written on the leader, but the in-sync set shrank below
    /// `min_insync_replicas` before it was replicated: not acknowledged.
    #[error(
        "{topic}/{partition} was written on the leader but its in-sync set shrank to {isr}, \
         below min_insync_replicas {min_insync}: not acknowledged"
    )]
    NotEnoughReplicasAfterAppend {
        topic: String,
        partition: i32,
        isr: usize,
        min_insync: usize,
    },
    /// Cluster mode: the in-sync replicas did not confirm a write in time; it may or may
    /// not be kept (retry with an idempotent producer).
    #[error("{topic}/{partition}: the in-sync replicas did not confirm the write in time")]
    ReplicationTimeout { topic: String, partition: i32 },
    /// Cluster mode: a replication factor (or min in-sync count) the cluster cannot honour.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// Cluster mode: the controller could not be reached or did not commit in time.
    #[error("the cluster cannot take the change now: {0}")]
    ClusterUnavailable(String),
    /// Cluster mode: the controller refused a node administration request (decommission of
    /// an unknown or retired node, or one whose replicas would not fit on the others).
    #[error(transparent)]
    ClusterRefused(crate::cluster::metadata::MetadataError),
    /// A task's commit from a node that no longer owns the task (or under an older
    /// assignment epoch): a zombie's write, refused.
    #[error("fenced: {0}")]
    TaskFenced(String),
    /// Another node refused an owner's log request (its code and message; the retried
    /// class never ends here, see `cluster::cluster_log`).
    #[error("node {node} refused: {message} ({code})")]
    PeerRefused {
        node: u64,
        code: String,
        message: String,
    },
}

fn leader_hint(leader: Option<u64>) -> String {
    match leader {
        Some(n) => format!(" (node {n} leads it)"),
        None => " (it has no leader now)".to_string(),
    }
}

impl BrokerError {
    /// Stable machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            BrokerError::UnknownTopic(_) => "unknown_topic",
            BrokerError::UnknownPartition { .. } => "unknown_partition",
            BrokerError::TopicExists(_) => "topic_exists",
            BrokerError::InvalidTopicName { .. } => "invalid_topic_name",
            BrokerError::InvalidConfig(_) => "invalid_config",
            BrokerError::InvalidPartitions(_) => "invalid_partitions",
            BrokerError::InvalidRecord(_) => "invalid_record",
            BrokerError::OffsetOutOfRange { .. } => "offset_out_of_range",
            BrokerError::BatchTooLarge { .. } => "too_large",
            BrokerError::CorruptBatch(_) => "corrupt_batch",
            BrokerError::CorruptFile { .. } => "corrupt_data",
            BrokerError::Io { .. } => "io_error",
            BrokerError::DataDirLocked(_) => "data_dir_locked",
            BrokerError::ShuttingDown => "shutting_down",
            BrokerError::OffsetNotAvailable { .. } => "offset_not_available",
            BrokerError::PolicyViolation(_) => "policy_violation",
            BrokerError::PartitionOffline { .. } => "partition_offline",
            BrokerError::InternalTopic { .. } => "internal_topic",
            BrokerError::TopicInUse { .. } => "topic_in_use",
            BrokerError::TopicConflict { .. } => "topic_conflict",
            BrokerError::ReplicaConflict(_) => "replica_conflict",
            BrokerError::NotLeader { .. } => "not_leader",
            BrokerError::NotEnoughReplicas { .. } => "not_enough_replicas",
            BrokerError::NotEnoughReplicasAfterAppend { .. } => "not_enough_replicas_after_append",
            BrokerError::ReplicationTimeout { .. } => "replication_timeout",
            BrokerError::InvalidReplicationFactor(_) => "invalid_replication_factor",
            BrokerError::ClusterUnavailable(_) => "cluster_unavailable",
            BrokerError::ClusterRefused(e) => e.code(),
            BrokerError::PeerRefused { .. } => "peer_refused",
            BrokerError::TaskFenced(_) => "task_fenced",
        }
    }

    /// Coarse class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. } => {
                ErrorKind::NotFound
            }
            BrokerError::TopicExists(_) => ErrorKind::AlreadyExists,
            BrokerError::InvalidTopicName { .. }
            | BrokerError::InvalidConfig(_)
            | BrokerError::InvalidPartitions(_)
            | BrokerError::InvalidRecord(_)
            | BrokerError::OffsetOutOfRange { .. }
            | BrokerError::CorruptBatch(_) => ErrorKind::InvalidInput,
            BrokerError::BatchTooLarge { .. } => ErrorKind::TooLarge,
            BrokerError::CorruptFile { .. } => ErrorKind::Corrupt,
            BrokerError::Io { .. } | BrokerError::DataDirLocked(_) => ErrorKind::Internal,
            BrokerError::ShuttingDown
            | BrokerError::PartitionOffline { .. }
            | BrokerError::OffsetNotAvailable { .. } => ErrorKind::Unavailable,
            BrokerError::PolicyViolation(_) => ErrorKind::InvalidInput,
            BrokerError::InternalTopic { .. } => ErrorKind::Forbidden,
            BrokerError::TopicInUse { .. }
            | BrokerError::TopicConflict { .. }
            | BrokerError::ReplicaConflict(_) => ErrorKind::Conflict,
            BrokerError::NotLeader { .. }
            | BrokerError::NotEnoughReplicas { .. }
            | BrokerError::NotEnoughReplicasAfterAppend { .. }
            | BrokerError::ReplicationTimeout { .. }
            | BrokerError::ClusterUnavailable(_) => ErrorKind::Unavailable,
            BrokerError::InvalidReplicationFactor(_) => ErrorKind::InvalidInput,
            BrokerError::ClusterRefused(e) => e.kind(),
            BrokerError::PeerRefused { .. } => ErrorKind::Internal,
            BrokerError::TaskFenced(_) => ErrorKind::Conflict,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BrokerError::Io {
            path: path.into(),
            cause: source,
        }
    }
}

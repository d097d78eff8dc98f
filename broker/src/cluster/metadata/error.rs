//! The metadata plane's errors: [`MetadataError`], what the state machine answers when it
//! refuses a command (deterministic, so every node refuses the same command the same way, and
//! serialisable, because the answer travels back to the proposer through the Raft log), and
//! [`NodeError`], what a [`super::MetadataNode`] call can fail with (not the controller, Raft
//! stopped, storage broken). Both have stable `code()`s and a [`crate::ErrorKind`].

use serde::{Deserialize, Serialize};

use crate::ErrorKind;
use crate::cluster::NodeId;

/// A command the state machine refused. Nothing changed.
///
/// Serialised adjacently tagged (`{"error": "topic_exists", "detail": "t"}`): it travels
/// back to a node that proposed through the controller (`cluster::control`), and internal
/// tagging cannot carry the variants that hold a bare string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", content = "detail", rename_all = "snake_case")]
pub enum MetadataError {
    #[error(
        "replication factor {requested} is invalid: it must be between 1 and the {live} live node(s)"
    )]
    InvalidReplicationFactor { requested: u16, live: usize },
    #[error("min_insync_replicas {requested} is invalid: it must be between 1 and {rf}")]
    InvalidMinInsync { requested: u16, rf: u16 },
    #[error("{partitions} partitions is invalid: it must be between 1 and {max}")]
    InvalidPartitions { partitions: i32, max: i32 },
    #[error("invalid replica assignment: {0}")]
    InvalidAssignment(String),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopicName { name: String, reason: String },
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("topic '{topic}' has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("node {0} is not registered")]
    UnknownNode(NodeId),
    #[error("node {node} still holds replicas of {partitions} partition(s)")]
    NodeInUse { node: NodeId, partitions: usize },
    /// A user, token or ACL change the records refuse (the store's own error, as text).
    #[error("{0}")]
    AuthRefused(String),
    #[error("node id {0} was decommissioned and may not be used again")]
    NodeRetired(NodeId),
    #[error("node {node} cannot be decommissioned: {reason}")]
    CannotDecommission { node: NodeId, reason: String },
    #[error("{topic}/{partition}: a reassignment is already in progress")]
    ReassignmentInProgress { topic: String, partition: i32 },
    #[error("{topic}/{partition}: {reason}")]
    CannotCompleteReassignment {
        topic: String,
        partition: i32,
        reason: String,
    },
    /// A leader change or in-sync-set change made under an epoch that is not the current one
    /// (a zombie leader, or a controller decision taken on old metadata).
    #[error(
        "{topic}/{partition}: leader epoch {given} is stale (current {current}, a leader change must name current + 1)"
    )]
    FencedLeaderEpoch {
        topic: String,
        partition: i32,
        given: i32,
        current: i32,
    },
    /// An in-sync-set change based on an older version of the partition than the current one.
    #[error("{topic}/{partition}: partition epoch {given} is stale (current {current})")]
    StalePartitionEpoch {
        topic: String,
        partition: i32,
        given: i32,
        current: i32,
    },
    #[error("{topic}/{partition}: node {node} is not the leader (leader: {leader:?})")]
    NotLeader {
        topic: String,
        partition: i32,
        node: NodeId,
        leader: Option<NodeId>,
    },
    /// The proposed leader may not lead (not a replica, not in the in-sync set without unclean
    /// election allowed, fenced, unknown).
    #[error("{topic}/{partition}: node {node} is not eligible as leader: {reason}")]
    IneligibleLeader {
        topic: String,
        partition: i32,
        node: NodeId,
        reason: String,
    },
    #[error("{topic}/{partition}: invalid in-sync set: {reason}")]
    InvalidIsr {
        topic: String,
        partition: i32,
        reason: String,
    },
    #[error("a batch of {len} commands is over the limit of {max}")]
    BatchTooLarge { len: usize, max: usize },
    #[error("a batch may not contain another batch")]
    NestedBatch,
    /// One command of a batch failed; the batch as a whole changed nothing.
    #[error("command {index} of the batch failed: {source}")]
    InBatch {
        index: usize,
        source: Box<MetadataError>,
    },
    #[error("producer ids are exhausted")]
    ProducerIdsExhausted,
    /// A processor record the catalog refuses (name, partitions, lists, component).
    #[error("invalid processor '{name}': {reason}")]
    InvalidProcessor { name: String, reason: String },
    #[error("the spec of processor '{name}' is {bytes} bytes; at most {max}")]
    ProcessorSpecTooLarge {
        name: String,
        bytes: usize,
        max: usize,
    },
    #[error("the cluster has {max} processors already; delete one first")]
    TooManyProcessors { max: usize },
    #[error("processor '{0}' already exists")]
    ProcessorExists(String),
    /// A function or SQL catalog record the cluster refuses (name, hash, sizes, count).
    #[error("invalid {what} '{name}': {reason}")]
    InvalidCatalogObject {
        what: String,
        name: String,
        reason: String,
    },
    #[error("function '{0}' already exists (replace it to change it)")]
    FunctionExists(String),
    /// A SQL create whose name the cluster's catalog has already (another node's).
    #[error("{what} '{name}' already exists in the cluster")]
    SqlObjectExists { what: String, name: String },
    #[error("function '{0}' does not exist")]
    UnknownFunction(String),
    #[error("processor '{0}' does not exist")]
    UnknownProcessor(String),
    /// A redeploy or assignment decided on another version of the processor than the current.
    #[error("processor '{name}': version {given} is stale (current {current})")]
    StaleProcessorVersion {
        name: String,
        given: u64,
        current: u64,
    },
    #[error(
        "processor '{name}' has {current} partitions; a redeploy may not change it to {given} \
         (delete and deploy it again)"
    )]
    PartitionCountChanged {
        name: String,
        current: i32,
        given: i32,
    },
    #[error("processor '{processor}' has no task {partition}")]
    UnknownTask { processor: String, partition: i32 },
    /// A task move decided under an assignment epoch that is not the task's current one.
    #[error("{processor} task {partition}: assignment epoch {given} is stale (current {current})")]
    StaleTaskEpoch {
        processor: String,
        partition: i32,
        given: u64,
        current: u64,
    },
    /// A node that does not own the task (at that epoch) tried to act as its owner.
    #[error("{processor} task {partition}: node {node} is not its owner (owner: {owner:?})")]
    NotTaskOwner {
        processor: String,
        partition: i32,
        node: NodeId,
        owner: Option<NodeId>,
    },
    /// A task move the state machine refuses (owner not assignable, standbys invalid).
    #[error("{processor} task {partition}: {reason}")]
    InvalidTaskAssignment {
        processor: String,
        partition: i32,
        reason: String,
    },
    /// A command written by a newer version of Weir than this node understands.
    #[error("command format version {version} is newer than the supported {supported}")]
    UnsupportedVersion { version: u16, supported: u16 },
}

impl MetadataError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            MetadataError::InvalidReplicationFactor { .. } => "invalid_replication_factor",
            MetadataError::InvalidMinInsync { .. } => "invalid_config",
            MetadataError::InvalidPartitions { .. } => "invalid_partitions",
            MetadataError::InvalidAssignment(_) => "invalid_replica_assignment",
            MetadataError::InvalidTopicName { .. } => "invalid_topic_name",
            MetadataError::TopicExists(_) => "topic_exists",
            MetadataError::UnknownTopic(_) => "unknown_topic",
            MetadataError::UnknownPartition { .. } => "unknown_partition",
            MetadataError::UnknownNode(_) => "unknown_node",
            MetadataError::NodeInUse { .. } => "node_in_use",
            MetadataError::NodeRetired(_) => "node_retired",
            MetadataError::AuthRefused(_) => "auth_refused",
            MetadataError::CannotDecommission { .. } => "cannot_decommission",
            MetadataError::ReassignmentInProgress { .. } => "reassignment_in_progress",
            MetadataError::CannotCompleteReassignment { .. } => "reassignment_not_ready",
            MetadataError::FencedLeaderEpoch { .. } => "fenced_leader_epoch",
            MetadataError::StalePartitionEpoch { .. } => "invalid_update_version",
            MetadataError::NotLeader { .. } => "not_leader_or_follower",
            MetadataError::IneligibleLeader { .. } => "ineligible_replica",
            MetadataError::InvalidIsr { .. } => "invalid_isr",
            MetadataError::BatchTooLarge { .. } => "too_large",
            MetadataError::NestedBatch => "invalid_request",
            MetadataError::InBatch { source, .. } => source.code(),
            MetadataError::ProducerIdsExhausted => "producer_ids_exhausted",
            MetadataError::UnsupportedVersion { .. } => "unsupported_version",
            MetadataError::InvalidProcessor { .. } => "invalid_processor",
            MetadataError::ProcessorSpecTooLarge { .. } => "too_large",
            MetadataError::TooManyProcessors { .. } => "too_many_processors",
            MetadataError::ProcessorExists(_) => "processor_exists",
            MetadataError::InvalidCatalogObject { .. } => "invalid_catalog_object",
            MetadataError::FunctionExists(_) => "function_exists",
            MetadataError::SqlObjectExists { .. } => "sql_object_exists",
            MetadataError::UnknownFunction(_) => "unknown_function",
            MetadataError::UnknownProcessor(_) => "unknown_processor",
            MetadataError::StaleProcessorVersion { .. } => "stale_processor_version",
            MetadataError::PartitionCountChanged { .. } => "partition_count_changed",
            MetadataError::UnknownTask { .. } => "unknown_task",
            MetadataError::StaleTaskEpoch { .. } => "stale_task_epoch",
            MetadataError::NotTaskOwner { .. } => "not_task_owner",
            MetadataError::InvalidTaskAssignment { .. } => "invalid_task_assignment",
        }
    }

    /// Coarse class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MetadataError::InvalidReplicationFactor { .. }
            | MetadataError::InvalidMinInsync { .. }
            | MetadataError::InvalidPartitions { .. }
            | MetadataError::InvalidAssignment(_)
            | MetadataError::InvalidTopicName { .. }
            | MetadataError::InvalidIsr { .. }
            | MetadataError::NestedBatch
            | MetadataError::InvalidProcessor { .. }
            | MetadataError::InvalidCatalogObject { .. }
            | MetadataError::PartitionCountChanged { .. }
            | MetadataError::InvalidTaskAssignment { .. } => ErrorKind::InvalidInput,
            MetadataError::BatchTooLarge { .. } | MetadataError::ProcessorSpecTooLarge { .. } => {
                ErrorKind::TooLarge
            }
            MetadataError::TooManyProcessors { .. } => ErrorKind::InsufficientResources,
            MetadataError::TopicExists(_)
            | MetadataError::ProcessorExists(_)
            | MetadataError::FunctionExists(_)
            | MetadataError::SqlObjectExists { .. } => ErrorKind::AlreadyExists,
            MetadataError::UnknownTopic(_)
            | MetadataError::UnknownPartition { .. }
            | MetadataError::UnknownNode(_)
            | MetadataError::UnknownProcessor(_)
            | MetadataError::UnknownFunction(_)
            | MetadataError::UnknownTask { .. } => ErrorKind::NotFound,
            MetadataError::NodeInUse { .. }
            | MetadataError::NodeRetired(_)
            | MetadataError::AuthRefused(_)
            | MetadataError::CannotDecommission { .. }
            | MetadataError::ReassignmentInProgress { .. }
            | MetadataError::CannotCompleteReassignment { .. }
            | MetadataError::FencedLeaderEpoch { .. }
            | MetadataError::StalePartitionEpoch { .. }
            | MetadataError::NotLeader { .. }
            | MetadataError::IneligibleLeader { .. }
            | MetadataError::StaleProcessorVersion { .. }
            | MetadataError::StaleTaskEpoch { .. }
            | MetadataError::NotTaskOwner { .. } => ErrorKind::Conflict,
            MetadataError::InBatch { source, .. } => source.kind(),
            MetadataError::ProducerIdsExhausted | MetadataError::UnsupportedVersion { .. } => {
                ErrorKind::Internal
            }
        }
    }
}

/// A call on a [`super::MetadataNode`] failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Only the controller (the Raft leader) proposes; `leader` is who is, when known.
    #[error("this node is not the controller (controller: {leader:?})")]
    NotController { leader: Option<NodeId> },
    /// The state machine refused the command (committed as a no-op on every node).
    #[error(transparent)]
    Rejected(#[from] MetadataError),
    /// The proposal's fate is unknown: it may or may not commit (leadership lost meanwhile,
    /// or the wait timed out). Read the metadata before retrying.
    #[error("the outcome of the proposal is unknown: {0}")]
    Unknown(String),
    /// Raft stopped on this node (shut down, or a storage error it cannot continue after).
    #[error("the metadata plane is stopped: {0}")]
    Stopped(String),
    /// The Raft log or snapshot store could not be opened or written.
    #[error("metadata storage at {path}: {reason}")]
    Storage { path: String, reason: String },
    /// The node's configuration is invalid (timeouts, voters).
    #[error("invalid metadata configuration: {0}")]
    Config(String),
}

impl NodeError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            NodeError::NotController { .. } => "not_controller",
            NodeError::Rejected(e) => e.code(),
            NodeError::Unknown(_) => "request_timed_out",
            NodeError::Stopped(_) => "shutting_down",
            NodeError::Storage { .. } => "metadata_storage",
            NodeError::Config(_) => "invalid_config",
        }
    }

    /// Coarse class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NodeError::NotController { .. } | NodeError::Unknown(_) | NodeError::Stopped(_) => {
                ErrorKind::Unavailable
            }
            NodeError::Rejected(e) => e.kind(),
            NodeError::Storage { .. } => ErrorKind::Internal,
            NodeError::Config(_) => ErrorKind::InvalidInput,
        }
    }
}

//! The metadata plane's vocabulary: the openraft [`TypeConfig`], a node's addresses
//! ([`NodeInfo`]), the one typed command enum ([`MetadataCommand`]) in its versioned envelope
//! ([`VersionedCommand`], what a Raft log entry carries) and the answers
//! ([`MetadataResponse`]). Plain data, no I/O.
//!
//! **Compatibility.** Commands are stored in the Raft log and snapshots as JSON with a
//! `"type"` tag per variant; fields added later must be `#[serde(default)]` so older entries
//! still read. A change that old nodes cannot apply correctly bumps
//! [`COMMAND_FORMAT_VERSION`]; a node that meets a newer version refuses to apply it and stops
//! (it never skips a committed command, which would make its state diverge).

use std::collections::BTreeMap;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use super::error::MetadataError;
use crate::cluster::NodeId;
use crate::config::FsyncPolicy;

/// The version of the command format this build writes and the newest it applies.
/// 2: replica reassignment and decommission (`ReassignPartition`, `CompleteReassignment`,
/// `DecommissionNode`; partitions' `adding`/`removing`, nodes' `draining`, retired ids),
/// users, tokens and ACLs (`Auth`, the metadata's `auth`).
/// 3: the engine's catalog and task placement (`UpsertProcessor`, `DeleteProcessor`,
/// `SetProcessorPaused`, `AssignTasks`; the metadata's `processors`, `tasks` and
/// `max_task_epoch`).
/// 4: warm-up replicas of tasks (`TaskMove::warmups`, `TaskAssignment::warmups`),
/// processors' `acceptable_recovery_lag` (KIP-441's probing moves) and `task_footprint`, and
/// forced moves (`TaskMove::force`); later in the same format, as variants old entries never
/// hold: the cluster's functions (`UpsertFunction`, `DeleteFunction`) and SQL catalog
/// (`UpsertSqlSource`, `DeleteSqlSource`, `UpsertSqlQuery`, `DeleteSqlQuery`), and creates
/// refused when the name is taken (`CreateSqlSource`, `CreateSqlQuery`).
pub const COMMAND_FORMAT_VERSION: u16 = 4;

openraft::declare_raft_types!(
    /// openraft's type configuration for the metadata plane.
    pub TypeConfig:
        D = VersionedCommand,
        R = CommandResult,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The openraft handle of the metadata plane.
pub type MetadataRaft = openraft::Raft<TypeConfig>;
/// One Raft log entry.
pub type LogEntry = openraft::Entry<TypeConfig>;
/// What applying one command produced (the refusal, too, is a committed outcome).
pub type CommandResult = Result<MetadataResponse, MetadataError>;

/// Where a node is reached: its cluster RPC address (what Raft and replication use), the
/// address Kafka clients are told, and its HTTP address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeInfo {
    pub cluster_addr: String,
    #[serde(default)]
    pub kafka_addr: String,
    #[serde(default)]
    pub http_addr: String,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cluster={} kafka={} http={}",
            self.cluster_addr, self.kafka_addr, self.http_addr
        )
    }
}

/// A command in the Raft log: the format version it was written in and the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionedCommand {
    pub version: u16,
    pub command: MetadataCommand,
}

impl VersionedCommand {
    /// `command` in the format this build writes.
    pub fn new(command: MetadataCommand) -> VersionedCommand {
        VersionedCommand {
            version: COMMAND_FORMAT_VERSION,
            command,
        }
    }
}

/// The per-topic settings the cluster keeps (the topic's config on every replica). The same
/// fields as a [`crate::TopicSpec`]'s; absent means the server default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    #[serde(default)]
    pub compacted: bool,
    #[serde(default)]
    pub retention_ms: Option<i64>,
    #[serde(default)]
    pub retention_bytes: Option<i64>,
    #[serde(default)]
    pub fsync: Option<FsyncPolicy>,
    #[serde(default)]
    pub segment_bytes: Option<u64>,
    #[serde(default)]
    pub segment_ms: Option<i64>,
    #[serde(default)]
    pub delete_retention_ms: Option<i64>,
    /// Whether a replica outside the in-sync set may be elected when no in-sync replica is
    /// alive (Kafka's `unclean.leader.election.enable`; it can lose acknowledged records).
    #[serde(default)]
    pub unclean_leader_election: bool,
}

impl TopicConfig {
    /// The config part of a topic creation request.
    pub fn from_spec(spec: &crate::TopicSpec) -> TopicConfig {
        TopicConfig {
            compacted: spec.compacted,
            retention_ms: spec.retention_ms,
            retention_bytes: spec.retention_bytes,
            fsync: spec.fsync,
            segment_bytes: spec.segment_bytes,
            segment_ms: spec.segment_ms,
            delete_retention_ms: spec.delete_retention_ms,
            unclean_leader_election: false,
        }
    }
}

/// Create a topic with an explicit replica assignment (the controller computes it with
/// [`super::controller::assign_replicas`]; the state machine checks it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopic {
    pub name: String,
    pub replication_factor: u16,
    pub min_insync_replicas: u16,
    #[serde(default)]
    pub config: TopicConfig,
    /// The owner of an internal topic (`processor:<name>`, `group-coordinator`).
    #[serde(default)]
    pub internal_owner: Option<String>,
    /// `assignment[p]` is partition `p`'s replica list, preferred leader first.
    pub assignment: Vec<Vec<NodeId>>,
}

/// Every change to the cluster's metadata. Only the controller proposes them (invariant 1);
/// the state machine ([`super::ClusterMetadata::apply`]) validates each against the applied
/// state and refuses what is stale or invalid.
///
/// Broker sessions (heartbeats) are **not** commands: like KRaft's, they live in the
/// controller's memory ([`super::controller::Sessions`]), and only their consequences are
/// logged ([`MetadataCommand::FenceNode`], elections, [`MetadataCommand::RegisterNode`] when a
/// node comes back). The engine's catalog is here too: processors
/// ([`MetadataCommand::UpsertProcessor`], deleted, paused) and the assignment of their tasks
/// to nodes ([`MetadataCommand::AssignTasks`], the controller's alone), user-defined
/// functions ([`MetadataCommand::UpsertFunction`]) and the SQL catalog's streams, tables and
/// queries ([`MetadataCommand::UpsertSqlSource`], [`MetadataCommand::UpsertSqlQuery`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataCommand {
    /// A node (re)joins as a broker with these addresses; it is unfenced.
    RegisterNode {
        node: NodeId,
        info: NodeInfo,
    },
    /// A node lost its session or shuts down: it may not be elected leader or join an in-sync
    /// set until it registers again. Its leaderships are moved by [`MetadataCommand::ElectLeader`]
    /// commands (usually in the same [`MetadataCommand::Batch`]).
    FenceNode {
        node: NodeId,
    },
    /// A node leaves the cluster for good; refused while it holds a replica. Its id is
    /// retired: it is never registered again.
    UnregisterNode {
        node: NodeId,
    },
    /// Decommission a node (`weir cluster decommission`): it is marked draining, gets no new
    /// replicas, and the controller moves the ones it holds elsewhere
    /// ([`MetadataCommand::ReassignPartition`]) before it unregisters it. Refused when the
    /// other nodes could not hold the replication factor of a topic it has replicas of.
    DecommissionNode {
        node: NodeId,
    },
    /// The controller starts moving a partition's replicas to `target` (KIP-455): the nodes
    /// `target` adds become replicas outside the in-sync set (they fetch from the leader and
    /// the leader adds them to the set when caught up); the ones it drops stay replicas until
    /// [`MetadataCommand::CompleteReassignment`]. `target` holds `replication_factor` distinct
    /// nodes, every new one live and not draining. Carries the partition epoch it was decided
    /// under; refused while another reassignment of the partition is in progress.
    ReassignPartition {
        topic: String,
        partition: i32,
        partition_epoch: i32,
        target: Vec<NodeId>,
    },
    /// The controller finishes a reassignment whose added replicas are all in the in-sync
    /// set: the removed replicas leave the replicas and the in-sync set; a removed leader is
    /// replaced (next leader epoch) by the first target replica that is in sync and live.
    CompleteReassignment {
        topic: String,
        partition: i32,
        partition_epoch: i32,
    },
    CreateTopic(CreateTopic),
    DeleteTopic {
        name: String,
    },
    /// The controller changes a partition's leader (or confirms it under a new epoch, or
    /// takes it offline with `leader: None`) and sets the in-sync set. `leader_epoch` must be
    /// exactly the current epoch + 1; `isr` must be a subset of the current in-sync set that
    /// holds the leader (for an unclean election: `[leader]`).
    ElectLeader {
        topic: String,
        partition: i32,
        leader: Option<NodeId>,
        leader_epoch: i32,
        isr: Vec<NodeId>,
    },
    /// The partition's leader shrinks or expands its in-sync set. Carries the leader epoch and
    /// partition epoch it was decided under; either stale → refused (invariant 6).
    AlterPartition {
        topic: String,
        partition: i32,
        leader: NodeId,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<NodeId>,
    },
    /// A block of [`super::PRODUCER_ID_BLOCK_SIZE`] producer ids for `node` (KIP-730).
    AllocateProducerIds {
        node: NodeId,
    },
    /// A change of the users, tokens and ACLs (`--auth`): the records every node's user store
    /// follows. Validated by the same function a single node's store applies.
    Auth {
        change: crate::auth::AuthChange,
    },
    /// Create a processor (`expected_version: None`, refused if it exists) or redeploy it
    /// (`expected_version` = its current version, refused if stale): the state machine sets
    /// the record's `version` (1, then current + 1) and, on a redeploy, keeps its `paused`
    /// flag (pause and resume are [`MetadataCommand::SetProcessorPaused`]). A redeploy may not
    /// change the number of partitions (tasks). A new processor's tasks have no owner until
    /// the controller assigns them.
    UpsertProcessor {
        record: ProcessorRecord,
        #[serde(default)]
        expected_version: Option<u64>,
    },
    /// Remove a processor and its tasks' assignments.
    DeleteProcessor {
        name: String,
    },
    /// Pause or resume a processor (its version is unchanged; its tasks keep their owners).
    SetProcessorPaused {
        name: String,
        paused: bool,
    },
    /// The controller (re)assigns tasks of one processor (`metadata::placement` decides).
    /// `version`, when given, must be the processor's current version; each move carries the
    /// task's assignment epoch it was decided under (refused if stale). Applying bumps a
    /// task's epoch when its owner changes.
    AssignTasks {
        processor: String,
        #[serde(default)]
        version: Option<u64>,
        assignments: Vec<TaskMove>,
    },
    /// Commands applied atomically: all of them, or none if one fails. Not nested; at most
    /// [`super::MAX_BATCH_COMMANDS`].
    Batch {
        commands: Vec<MetadataCommand>,
    },
    /// The owner of a task being moved gracefully has stopped it after a final commit: the
    /// task goes to its `moving_to` node under the next epoch. Proposed by the owner itself
    /// (`node`), under the epoch it ran the task with; refused if either is stale. A release
    /// whose target is no longer assignable leaves the task with its owner.
    ReleaseTask {
        processor: String,
        partition: i32,
        epoch: u64,
        node: NodeId,
    },
    /// Register a user-defined function (`replace: false`, refused if one of that name
    /// exists, unless it is exactly this record: a retried proposal) or replace it. The
    /// state machine sets the record's `version` (1, then current + 1 on a change).
    UpsertFunction {
        record: FunctionRecord,
        #[serde(default)]
        replace: bool,
    },
    /// Remove a function; refused if there is none of that name.
    DeleteFunction {
        name: String,
    },
    /// Create or replace a stream or table of the SQL catalog (the SQL engine decided
    /// under its catalog lock whether it may; here the last write wins).
    UpsertSqlSource {
        record: SqlRecord,
    },
    /// Remove a stream or table of the SQL catalog (done if there is none).
    DeleteSqlSource {
        name: String,
    },
    /// Create or replace a persistent query of the SQL catalog (its processor is a
    /// [`MetadataCommand::UpsertProcessor`] of its own).
    UpsertSqlQuery {
        record: SqlRecord,
    },
    /// Remove a persistent query of the SQL catalog (done if there is none).
    DeleteSqlQuery {
        id: String,
    },
    /// Create a stream or table of the SQL catalog: refused
    /// ([`MetadataError::SqlObjectExists`]) when the cluster has another of that name (two
    /// nodes creating the same name at once: the first applied wins); the same record
    /// again (a retried proposal) changes nothing.
    CreateSqlSource {
        record: SqlRecord,
    },
    /// Create a persistent query of the SQL catalog, refused as
    /// [`MetadataCommand::CreateSqlSource`] when the id is taken.
    CreateSqlQuery {
        record: SqlRecord,
    },
    /// Name an uploaded artifact (`PUT /v1/artifacts/{name}` at some node): the last upload
    /// of a name wins. Its bytes stay at the nodes that have them; a node that registers a
    /// function from it fetches them by hash.
    PutArtifact {
        record: ArtifactRecord,
    },
}

/// An uploaded artifact as the metadata keeps it: its name and the hash of its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// `[A-Za-z0-9_][A-Za-z0-9_.-]*`, at most [`super::MAX_FUNCTION_NAME`] characters.
    pub name: String,
    /// The content hash: `sha256:` and 64 lower-case hex digits.
    pub hash: String,
    pub bytes: u64,
}

/// A user-defined function as the metadata keeps it: what a node needs to register it
/// (the module, fetched by its hash from a peer) and to list it. `kind` and `signature` are
/// the engine's, opaque here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// The engine's (upper-case) name: `[A-Za-z_][A-Za-z0-9_]*`, at most
    /// [`super::MAX_FUNCTION_NAME`] characters.
    pub name: String,
    /// 1 when registered, +1 per replacement; set by the state machine.
    #[serde(default)]
    pub version: u64,
    /// `scalar` or `aggregate` (the engine's word, at most 32 characters).
    pub kind: String,
    /// The engine's encoding of the signature; at most
    /// [`super::MAX_FUNCTION_SIGNATURE_BYTES`] as JSON.
    #[serde(default)]
    pub signature: serde_json::Value,
    /// The module's content hash: `sha256:` and 64 lower-case hex digits.
    pub module: String,
    #[serde(default)]
    pub module_bytes: u64,
    /// When it was registered (or replaced) at the node that took the statement, ms since the
    /// epoch: with `module`, what tells a node its copy is the catalog's.
    #[serde(default)]
    pub created_ms: i64,
}

/// A stream, table or persistent query of the SQL catalog: its name (or query id) and the
/// SQL engine's own encoding of its definition, opaque here (at most
/// [`super::MAX_SQL_DEFINITION_BYTES`] as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlRecord {
    pub name: String,
    #[serde(default)]
    pub definition: serde_json::Value,
}

/// A processor of the engine's catalog, as the metadata keeps it. The broker reads only what
/// placement needs (partitions, inputs, state topics, standbys); `spec` and `component` are
/// the engine's, opaque here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessorRecord {
    pub name: String,
    /// 1 when created, +1 per redeploy; set by the state machine (what a proposal carries
    /// here is ignored).
    #[serde(default)]
    pub version: u64,
    /// The number of tasks (task `p` reads partition `p` of every input).
    pub partitions: i32,
    /// Input topics: placement prefers the node leading partition `p` of an input for task `p`.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Changelog topics of the processor's stores: standbys of task `p` prefer nodes holding
    /// a replica of partition `p` of one of them.
    #[serde(default)]
    pub state_topics: Vec<String>,
    /// Standby replicas per task (capped by the other assignable nodes).
    #[serde(default)]
    pub standby_replicas: u16,
    /// How many changelog records a node's copy of a task's state may be behind for the
    /// task to move there at once (KIP-441's `acceptable.recovery.lag`); a move onto a node
    /// further behind warms it up first.
    #[serde(default = "default_acceptable_recovery_lag")]
    pub acceptable_recovery_lag: u64,
    /// What one task takes from a node's Wasm budget (placement keeps every node within
    /// its budget).
    #[serde(default)]
    pub task_footprint: TaskFootprint,
    #[serde(default)]
    pub paused: bool,
    /// The engine's own (versioned) encoding of the processor spec; never interpreted here.
    /// At most [`super::MAX_PROCESSOR_SPEC_BYTES`] as JSON.
    #[serde(default)]
    pub spec: serde_json::Value,
    /// The content hash of the uploaded component (`sha256:…`); opaque here.
    #[serde(default)]
    pub component: Option<String>,
}

impl Default for ProcessorRecord {
    fn default() -> Self {
        ProcessorRecord {
            name: String::new(),
            version: 0,
            partitions: 0,
            inputs: Vec::new(),
            state_topics: Vec::new(),
            standby_replicas: 0,
            acceptable_recovery_lag: DEFAULT_ACCEPTABLE_RECOVERY_LAG,
            task_footprint: TaskFootprint::default(),
            paused: false,
            spec: serde_json::Value::Null,
            component: None,
        }
    }
}

/// What one task of a processor takes from a node's Wasm budget: instance slots and linear
/// memory (the engine's admission counts the same).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFootprint {
    pub instances: u32,
    pub memory_bytes: u64,
}

/// A node's Wasm budget for tasks (`--wasm-instance-pool`, `--wasm-memory-budget-bytes`),
/// as it reports it with its heartbeats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBudget {
    pub instances: u32,
    pub memory_bytes: u64,
}

/// Kafka Streams' default `acceptable.recovery.lag`.
pub const DEFAULT_ACCEPTABLE_RECOVERY_LAG: u64 = 10_000;

fn default_acceptable_recovery_lag() -> u64 {
    DEFAULT_ACCEPTABLE_RECOVERY_LAG
}

/// One task's assignment: the node running it, the epoch of that assignment and the nodes
/// keeping warm standby copies of its state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAssignment {
    /// `None` until the controller first assigns the task.
    pub owner: Option<NodeId>,
    /// +1 every time the owner changes, never reused (also across a delete and re-create of
    /// the processor), kept across redeploys. An owner's commits carry it: a commit under an
    /// older epoch comes from a zombie and is refused.
    pub epoch: u64,
    /// Distinct live nodes other than the owner, at most the processor's `standby_replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standbys: Vec<NodeId>,
    /// A graceful move in progress: the task goes to this node once its live owner has
    /// committed and released it ([`MetadataCommand::ReleaseTask`]); until then the owner
    /// and the epoch stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving_to: Option<NodeId>,
    /// Nodes warming up a copy of the task's state (kept like a standby's) because placement
    /// wants to move the task there and their copy is not within the processor's
    /// `acceptable_recovery_lag` yet: the move is made once it is (KIP-441). At most
    /// [`super::catalog::MAX_TASK_WARMUPS`], live, distinct from the owner and the standbys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warmups: Vec<NodeId>,
}

/// One task's new assignment in [`MetadataCommand::AssignTasks`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMove {
    pub partition: i32,
    /// The task's epoch the decision was taken under (must be the current one).
    pub epoch: u64,
    /// The owner: when it changes, a live node that is not draining.
    pub owner: NodeId,
    #[serde(default)]
    pub standbys: Vec<NodeId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warmups: Vec<NodeId>,
    /// The owner changes now even though the current owner is live (it did not release a
    /// graceful move in time): the epoch is bumped at once, fencing it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// What an applied command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataResponse {
    /// The command took effect (or was already in effect).
    Done,
    TopicCreated {
        topic_id: u64,
    },
    /// The partition's state after a leader or in-sync-set change.
    Partition {
        leader: Option<NodeId>,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<NodeId>,
    },
    /// Producer ids `first .. first + count` belong to the node that asked.
    ProducerIds {
        first: i64,
        count: i64,
    },
    Batch {
        responses: Vec<MetadataResponse>,
    },
    /// An `Auth` change added this ACL (its id is the cluster's next).
    AclAdded {
        acl: crate::auth::AclRecord,
    },
    /// The processor's version after an `UpsertProcessor`.
    Processor {
        version: u64,
    },
    /// The function's version after an `UpsertFunction`.
    Function {
        version: u64,
    },
}

/// The voters of a new cluster (the `--peers` list), with their addresses.
pub type Voters = BTreeMap<NodeId, NodeInfo>;

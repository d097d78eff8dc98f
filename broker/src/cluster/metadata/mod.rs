//! The metadata plane: one openraft group (the stable 0.9 line) whose replicated state
//! machine is the cluster's truth — nodes, topics, per partition its replicas, leader, leader
//! epoch, partition epoch and in-sync set, producer-id blocks, users and ACLs, and the
//! engine's processors with their task assignments. The Raft leader is the
//! *controller*. This module owns the command vocabulary, the state machine, the Raft log and
//! snapshots on disk, the controller's pure decisions, and the node handle; it does not
//! know the transport (HTTP/2 lives in `cluster::rpc` and plugs in through
//! [`MetadataTransport`]), partition data (`cluster::replication`) or the broker's files.
//!
//! | file | what it owns |
//! |---|---|
//! | `types.rs` | the openraft [`TypeConfig`], [`NodeInfo`], [`MetadataCommand`] (one typed enum in a versioned envelope), [`MetadataResponse`] |
//! | `state.rs` | [`ClusterMetadata`] and its pure, deterministic `apply` |
//! | `controller.rs` | the controller's decisions as pure functions: replica assignment, elections after a node is lost, sessions |
//! | `reassignment.rs` | the state machine's side of moving replicas: reassignment (KIP-455) and decommission |
//! | `balance.rs` | the controller's decisions of which replicas to move: off decommissioned nodes, onto joined ones, completions |
//! | `sql_catalog.rs` | the state machine's side of the cluster's user-defined functions (bounded records naming modules by hash, versions) and SQL catalog (streams, tables, queries as opaque definitions) |
//! | `catalog.rs` | the state machine's side of the engine's catalog: processors (bounded records, versions) and task assignments (epochs) |
//! | `placement.rs` | the controller's decisions of which node runs each task and keeps its standbys: balanced, sticky, near the data |
//! | `log_store.rs` | the Raft log and vote in RocksDB, fsynced before they are acknowledged |
//! | `state_machine.rs` | the applied state, published through `watch`; atomic snapshot files |
//! | `network.rs` | [`MetadataTransport`], openraft's network over it, the in-process [`SimTransport`] |
//! | `node.rs` | [`MetadataNode`]: start, propose, read, metrics, RPC handlers, shutdown |
//!
//! # Invariants this module enforces
//!
//! 1. **Only the controller proposes** ([`MetadataNode::propose`] fails with
//!    [`NodeError::NotController`] elsewhere), and readers see only *applied* metadata
//!    ([`MetadataNode::current`], [`MetadataNode::subscribe`]). (cluster invariant 1)
//! 2. **A Raft entry or vote is fsynced before openraft is told it is written**: appends,
//!    truncations, purges and votes are synchronous RocksDB write batches; openraft's flush
//!    callback fires only after. Snapshots are written atomically (temp file, fsync, rename,
//!    directory fsync) before the log behind them may be purged. (cluster invariant 2)
//! 3. **Applying is deterministic and total**: [`ClusterMetadata::apply`] depends only on the
//!    state and the command (no clock, no randomness, ordered maps), so every node that has
//!    applied the same log prefix has the same [`ClusterMetadata`] (same `version`). A
//!    refused command changes nothing and is the same refusal everywhere. A command in a
//!    format newer than this build stops the node instead of being skipped.
//! 4. **Epochs fence**: a leader change must name exactly the current leader epoch + 1 (so an
//!    epoch has at most one leader and epochs only increase); an in-sync-set change must come
//!    from the current leader under the current leader epoch and partition epoch; otherwise it
//!    is refused. (cluster invariants 3 and 6)
//! 5. **Leaders come from the in-sync set**: a leader is a live replica in the in-sync set
//!    (an unclean election, only where the topic allows it, resets the set to the leader);
//!    the in-sync set always holds the leader, lists only replicas and grows only by live
//!    nodes. (cluster invariant 7)
//! 6. **A replication factor above the live nodes is refused** (`invalid_replication_factor`).
//! 7. **Moving a replica never undercuts the replication factor or the in-sync rule**: an
//!    added replica joins the in-sync set only through its leader's `AlterPartition` once it
//!    has caught up; the removed ones leave only when every added one is in the set
//!    (`reassignment.rs`). A decommissioned node's id is retired and never registered again.
//! 8. **Tasks are assigned by the controller alone, under epochs**: an owner change bumps
//!    the task's assignment epoch (never reused, also across a delete and re-create of the
//!    processor) and names the epoch it was decided under, or is refused; a new owner is live
//!    and not draining, standbys are distinct live nodes other than the owner
//!    (`catalog.rs`). Placement is a fixed point on a settled cluster: it moves a task only
//!    off a node that is gone, draining or over its bound (`placement.rs`).
//!
//! Broker sessions are kept in the controller's memory ([`controller::Sessions`]), not in the
//! log: a heartbeat costs no consensus round; only fencing and re-registration are commands.

pub mod balance;
mod catalog;
pub mod controller;
mod error;
mod log_store;
mod network;
mod node;
pub mod placement;
mod reassignment;
mod sql_catalog;
mod state;
mod state_machine;
mod types;

#[cfg(test)]
mod tests;

pub use catalog::{
    MAX_COMPONENT_LEN, MAX_PROCESSOR_NAME, MAX_PROCESSOR_PARTITIONS, MAX_PROCESSOR_SPEC_BYTES,
    MAX_PROCESSOR_TOPICS, MAX_PROCESSORS, MAX_STANDBY_REPLICAS, MAX_TASK_WARMUPS,
};
pub use error::{MetadataError, NodeError};
pub use log_store::LogStore;
pub use network::{
    AppendResult, MetadataTransport, SimRegistry, SimTransport, SnapshotResult, TransportError,
    VoteResult,
};
pub use node::{MetadataConfig, MetadataMetrics, MetadataNode};
/// openraft's RPC messages, for transports that carry them.
pub use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
pub use sql_catalog::{
    MAX_ARTIFACTS, MAX_FUNCTION_NAME, MAX_FUNCTION_SIGNATURE_BYTES, MAX_FUNCTIONS,
    MAX_SQL_DEFINITION_BYTES, MAX_SQL_NAME, MAX_SQL_OBJECTS,
};
pub use state::{
    ClusterMetadata, MAX_BATCH_COMMANDS, MAX_PARTITIONS_PER_TOPIC, NodeState,
    PRODUCER_ID_BLOCK_SIZE, PartitionState, TopicMetadata,
};
pub use state_machine::StateMachineStore;
pub use types::{
    ArtifactRecord, COMMAND_FORMAT_VERSION, CommandResult, CreateTopic,
    DEFAULT_ACCEPTABLE_RECOVERY_LAG, FunctionRecord, LogEntry, MetadataCommand, MetadataRaft,
    MetadataResponse, NodeBudget, NodeInfo, ProcessorRecord, SqlRecord, TaskAssignment,
    TaskFootprint, TaskMove, TopicConfig, TypeConfig, VersionedCommand, Voters,
};

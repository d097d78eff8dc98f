//! The cluster: several `weir serve` processes acting as one service (issue #13, design in
//! DESIGN.md "The cluster"). This module owns the two planes and the rules between them; it
//! does not know about HTTP, the CLI, WebAssembly or the stream engine.
//!
//! - [`metadata`]: the *metadata plane*, one openraft group whose state machine is the
//!   cluster's truth (nodes, topics, partition replicas, leader + leader epoch + in-sync set,
//!   producer-id blocks, users and ACLs, the engine's processors and their task assignments
//!   with assignment epochs). Its commands are one typed, versioned enum.
//! - [`replication`]: the *data plane*, per-partition replication leader → followers by
//!   follower fetch, outside Raft, with a high watermark and leader-epoch truncation as
//!   KRaft-era Kafka does it (KIP-101, KIP-279).
//! - [`rpc`]: typed messages between nodes over the cluster listener (HTTP/2).
//! - [`metadata_rpc`]: the metadata plane over [`rpc`] (Raft transport and service).
//! - [`applier`]: applied metadata → local topics, replicas and roles on this node.
//! - [`routing`]: what the client-facing edges need from the cluster (brokers, leaders,
//!   topic changes through the controller).
//! - [`replication_rpc`]: the data plane over [`rpc`] (follower fetch transport and service).
//! - [`service`]: the node's one peer service, routing each request to its plane.
//! - [`blob_rpc`]: content-addressed blobs (uploaded components) fetched from peers.
//! - [`cluster_log`] and [`log_rpc`]: the log as a topic's owner (the stream engine) sees it
//!   on a cluster node — its topics created through the controller, written at each
//!   partition's leader (over [`rpc`] when another node leads) and read from it.
//! - [`control`]: the controller over [`rpc`]: proposals from any node, broker heartbeats
//!   and sessions (fencing, unfencing, re-elections), `--join` as a learner, replica moves
//!   and decommission.
//! - [`auth_sync`]: users, tokens and ACLs (`--auth`) replicated through the metadata and
//!   followed by every node's user store.
//! - [`identity`]: which cluster and node a data directory belongs to.
//! - [`config`]: a node's cluster flags and the rules between them.
//! - [`sim`]: a simulated network for the in-process cluster harness (partition, delay,
//!   stop, heal), deterministic, used by the metadata and replication tests alike.
//!
//! # Invariants (who may write what, which epoch fences whom, what is durable before an ack)
//!
//! 1. **Only the Raft leader (the controller) proposes metadata commands**; every node acts
//!    only on metadata it has *applied* from the Raft log. No node changes leadership, the
//!    in-sync set or a replica list on its own say-so. Other nodes ask the controller to
//!    propose for them, and only what a broker may decide (topics, its own in-sync-set
//!    changes and producer-id blocks, processors); node sessions, fencing, elections and
//!    task assignments are the controller's alone (`control`).
//! 2. **Raft entries are fsynced before they are acknowledged** to the leader (log storage
//!    flushes before it reports an append done); a vote is fsynced before it is granted.
//! 3. **A partition has at most one leader per leader epoch.** The controller bumps the
//!    leader epoch on every leader change; a broker accepts produce for a partition only while
//!    the latest applied metadata names it leader at that epoch. Every record batch a leader
//!    appends carries its leader epoch.
//! 4. **Followers fetch with their leader epoch; a request made under a stale epoch is
//!    refused** (`FENCED_LEADER_EPOCH` / `NOT_LEADER_OR_FOLLOWER`). That one rule fences zombie
//!    leaders, zombie tasks and zombie producers alike.
//! 5. **The high watermark is the minimum log end offset over the in-sync set**, and never
//!    moves backwards on a leader. Consumers never read past it. `acks=all` completes only
//!    when every member of the in-sync set has the batch *and* the set has at least
//!    `min_insync_replicas` members, else `NOT_ENOUGH_REPLICAS`; never a silent ack.
//! 6. **Only the leader shrinks or expands the in-sync set, and only through the
//!    controller** (an `AlterPartition`-style command carrying the leader epoch); a change
//!    made under a stale epoch is rejected by the state machine.
//! 7. **A new leader is chosen from the in-sync set** (no unclean election unless the topic
//!    allows it). A follower, or a returning old leader, truncates its log to the end of the
//!    last epoch it shares with the leader (OffsetForLeaderEpoch) before fetching, so replica
//!    logs never diverge below the high watermark.
//! 8. **Node ids are never reused silently**: a data directory records its cluster id and
//!    node id, and a node whose flags disagree with it refuses to start.
//! 9. **A topic owner writes a replicated partition only at its leader, like any producer
//!    with `acks=all`** (`cluster_log`): the owners' topics (the engine's changelogs, offsets,
//!    outputs) get the same durability and fencing as clients' topics; a node forwards an
//!    owner's write to the leader the applied metadata names, and the leader's partition
//!    refuses it if that is stale.

pub mod applier;
#[cfg(test)]
mod applier_tests;
pub mod auth_sync;
pub mod blob_rpc;
pub mod cluster_log;
pub mod config;
pub mod control;
#[cfg(test)]
mod control_tests;
pub mod identity;
pub mod log_rpc;
pub mod metadata;
pub mod metadata_rpc;
#[cfg(test)]
mod metadata_rpc_tests;
pub mod replication;
pub mod replication_rpc;
#[cfg(test)]
mod replication_rpc_tests;
pub mod routing;
pub mod rpc;
pub mod service;
pub mod sim;

/// A node's id: the `--node-id` flag, the Raft node id and the Kafka broker id.
pub type NodeId = u64;

//! The data plane: per-partition replication, leader → followers by follower fetch, outside
//! Raft, as KRaft-era Kafka does it (KIP-101 and KIP-279 leader-epoch truncation, KIP-320
//! fencing by the current leader epoch, KIP-595's fetch-based divergence detection, KIP-841's
//! maximal in-sync set for the high watermark).
//!
//! This module owns the replicas' rules and the follower fetch loop. It does not elect
//! leaders or commit in-sync sets (the controller does, in `cluster::metadata`; the caller
//! hands its decisions in), does not carry bytes between nodes (a [`ReplicaTransport`]
//! does: `cluster::rpc` in a node, the simulated network in tests), and does not touch
//! files (the partition log, `crate::log`, does: epoch stamping, the leader-epoch cache,
//! follower appends and truncation).
//!
//! - [`messages`]: the fetch request and answer;
//! - [`leader`]: a leader's bookkeeping (followers, in-sync set, high watermark rule);
//! - [`replica`]: one partition's replica: roles, produce, serving fetches, applying them;
//! - [`fetcher`]: a follower's fetch loop per leader node;
//! - [`throttle`]: the byte rate shared by the fetches of replicas a reassignment adds;
//! - [`manager`]: the node's replicas and fetchers.
//!
//! # Invariants enforced here (numbers refer to `cluster`'s list)
//!
//! 1. **A replica acts only on a role the caller gives it with a leader epoch, and never
//!    goes back in epochs** (3): `become_leader`/`become_follower` with an epoch older
//!    than the replica's are refused; a log refuses to stamp an epoch older than its newest.
//! 2. **Every batch a leader appends carries its leader epoch**, recorded (fsynced) in the
//!    log's epoch cache before the batch is written (3). A follower's appends keep the
//!    leader's offsets and epochs byte for byte.
//! 3. **A fetch made under any epoch but the leader's current one is refused**:
//!    older → `FENCED_LEADER_EPOCH`, newer → `UNKNOWN_LEADER_EPOCH`, not leading →
//!    `NOT_LEADER_OR_FOLLOWER` (4). A refused fetch changes nothing on the leader, so a
//!    zombie leader learns nothing from the new leader's followers and cannot advance its
//!    high watermark with them; a follower answer that arrives after its role or epoch
//!    changed is dropped.
//! 4. **A follower's position counts only after its log is known to match the leader's up
//!    to it**: when the follower's last fetched epoch does not end at or after its fetch
//!    offset in the leader's log, the leader answers with the diverging epoch and does not
//!    record the position; the follower truncates to the end of the last epoch both logs
//!    share (7) before fetching on.
//! 5. **The high watermark is the smallest log end offset over the maximal in-sync set**
//!    (committed set plus members being added, plus caught-up followers), and it never
//!    moves backwards on a leader (5). Consumers read only below it
//!    ([`PartitionReplica::read_committed`]).
//!    A new leader's high watermark (learnt as a follower) can still be below what its
//!    predecessor acknowledged, so until it reaches the start of the leader's epoch the
//!    end is *not known* ([`replica::Progress::end_known`]): reads serve below it, but
//!    no end offset is handed out from it (`OFFSET_NOT_AVAILABLE` to ListOffsets, a
//!    retried refusal to the engine's owners, whose restorations treat the end as a bound
//!    already reached — Kafka's KIP-207).
//! 6. **`acks=all` is acknowledged only when the high watermark covers the batch and the
//!    committed in-sync set has at least `min_insync_replicas` members**; with fewer
//!    members it is refused before the append (`NOT_ENOUGH_REPLICAS`), or after it
//!    (`NOT_ENOUGH_REPLICAS_AFTER_APPEND`); when the replica stops leading at the batch's
//!    epoch the wait fails (`NOT_LEADER_OR_FOLLOWER`); after the timeout it fails
//!    (`REQUEST_TIMED_OUT`). Never a silent ack (5).
//! 7. **The in-sync set changes only through the controller** (6): leaders return
//!    proposals (a member lagging for more than `replica_lag_time_max` out, a follower that
//!    has the high watermark and the current epoch's start in) and apply a set only when
//!    handed it with their own current epoch.

pub mod fetcher;
pub mod leader;
pub mod manager;
pub mod messages;
pub mod replica;
pub mod throttle;

#[cfg(test)]
pub(crate) mod harness_tests;

use std::time::Duration;

pub use fetcher::ReplicaTransport;
pub use leader::{FollowerState, IsrProposal, LeaderState};
pub use manager::ReplicaManager;
pub use messages::{
    EpochEndOffset, FetchError, FetchRequest, FetchResponse, FetchedData, PartitionFetch,
    PartitionFetchResponse, TopicPartition,
};
pub use replica::{
    Acks, Appended, FollowerOutcome, LeaderAndIsr, PartitionReplica, Progress, ReplicaStatus,
};

use crate::cluster::NodeId;
use crate::error::{BrokerError, ErrorKind};

/// Tunables of the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// A follower that has not caught up for this long leaves the in-sync set (Kafka's
    /// `replica.lag.time.max.ms`, 30 s there; shorter here to meet the 5 s failover goal's
    /// spirit for lagging replicas too).
    pub replica_lag_time_max: Duration,
    /// How long a leader holds a follower's fetch that has nothing new.
    pub fetch_max_wait: Duration,
    /// Bytes of records per partition in one fetch (4 MiB: a follower catching up copies
    /// several producer batches per round trip; the cluster RPC's flow-control windows let
    /// an answer this size cross in one go).
    pub fetch_partition_max_bytes: usize,
    /// Bytes of records in one fetch answer, over all partitions (at least one batch; below
    /// the cluster RPC's message limit, 64 MiB by default, which bounds it anyway).
    pub fetch_response_max_bytes: usize,
    /// Partitions in one fetch (a cap on what a request can ask a leader to do).
    pub fetch_max_partitions: usize,
    /// Pause after a failed or refused fetch.
    pub fetch_backoff: Duration,
    /// A fetch not answered in this long is abandoned and retried.
    pub fetch_timeout: Duration,
    /// Bytes per second the replicas a reassignment adds on this node may fetch in all until
    /// they join the in-sync set (`--replication-throttle-bytes`); `None`: unthrottled.
    /// Replicas that were already replicas (a restarted follower catching up) are never
    /// throttled.
    pub reassignment_throttle: Option<u64>,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            replica_lag_time_max: Duration::from_secs(10),
            fetch_max_wait: Duration::from_millis(500),
            fetch_partition_max_bytes: 4 << 20,
            fetch_response_max_bytes: 16 << 20,
            fetch_max_partitions: 10_000,
            fetch_backoff: Duration::from_millis(100),
            fetch_timeout: Duration::from_secs(10),
            reassignment_throttle: None,
        }
    }
}

/// A fetch could not reach the leader (the transport's own error, as text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replica fetch transport: {0}")]
pub struct TransportError(pub String);

impl From<crate::cluster::sim::Unreachable> for TransportError {
    fn from(e: crate::cluster::sim::Unreachable) -> Self {
        TransportError(e.to_string())
    }
}

/// Errors of the data plane.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("this node is not the leader of {0}")]
    NotLeaderOrFollower(TopicPartition),
    #[error("leader epoch {epoch} for {tp} is older than the epoch {current} already applied")]
    StaleLeaderEpoch {
        tp: TopicPartition,
        epoch: i32,
        current: i32,
    },
    #[error("{0}: {1}")]
    Fetch(TopicPartition, FetchError),
    #[error(
        "{tp} has {isr} in-sync replicas, fewer than min_insync_replicas {min_insync}: acks=all refused"
    )]
    NotEnoughReplicas {
        tp: TopicPartition,
        isr: usize,
        min_insync: usize,
    },
    #[error(
        "{tp} was written but its in-sync set shrank to {isr}, below min_insync_replicas {min_insync}"
    )]
    NotEnoughReplicasAfterAppend {
        tp: TopicPartition,
        isr: usize,
        min_insync: usize,
    },
    #[error("{0}: the in-sync replicas did not confirm the write in time")]
    RequestTimedOut(TopicPartition),
    #[error("no replica of {0} on this node")]
    UnknownPartition(TopicPartition),
    #[error("the replica manager must be created inside a Tokio runtime")]
    NoRuntime,
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Log(#[from] BrokerError),
}

impl ReplicationError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ReplicationError::NotLeaderOrFollower(_) => "not_leader_or_follower",
            ReplicationError::StaleLeaderEpoch { .. } => "fenced_leader_epoch",
            ReplicationError::Fetch(_, e) => match e {
                FetchError::NotLeaderOrFollower => "not_leader_or_follower",
                FetchError::FencedLeaderEpoch { .. } => "fenced_leader_epoch",
                FetchError::UnknownLeaderEpoch { .. } => "unknown_leader_epoch",
                FetchError::OffsetOutOfRange { .. } => "offset_out_of_range",
                FetchError::UnknownTopicOrPartition => "unknown_partition",
                FetchError::Storage(_) => "storage_error",
            },
            ReplicationError::NotEnoughReplicas { .. } => "not_enough_replicas",
            ReplicationError::NotEnoughReplicasAfterAppend { .. } => {
                "not_enough_replicas_after_append"
            }
            ReplicationError::RequestTimedOut(_) => "request_timed_out",
            ReplicationError::UnknownPartition(_) => "unknown_partition",
            ReplicationError::NoRuntime => "internal",
            ReplicationError::Transport(_) => "unreachable",
            ReplicationError::Log(e) => e.code(),
        }
    }

    /// Coarse class (the transports pick a status from it).
    pub fn kind(&self) -> ErrorKind {
        match self {
            ReplicationError::NotLeaderOrFollower(_)
            | ReplicationError::NotEnoughReplicas { .. }
            | ReplicationError::NotEnoughReplicasAfterAppend { .. }
            | ReplicationError::RequestTimedOut(_)
            | ReplicationError::Transport(_) => ErrorKind::Unavailable,
            ReplicationError::StaleLeaderEpoch { .. } => ErrorKind::Conflict,
            ReplicationError::Fetch(_, e) => match e {
                FetchError::OffsetOutOfRange { .. } => ErrorKind::InvalidInput,
                FetchError::UnknownTopicOrPartition => ErrorKind::NotFound,
                FetchError::Storage(_) => ErrorKind::Internal,
                _ => ErrorKind::Unavailable,
            },
            ReplicationError::UnknownPartition(_) => ErrorKind::NotFound,
            ReplicationError::NoRuntime => ErrorKind::Internal,
            ReplicationError::Log(e) => e.kind(),
        }
    }

    /// The log layer's error for this one (what the broker facade returns to its callers);
    /// `leader` is the node the caller believes leads, for the not-leader hint.
    pub fn into_broker(self, leader: Option<NodeId>) -> BrokerError {
        let tp_of = |tp: TopicPartition| (tp.topic, tp.partition);
        match self {
            ReplicationError::NotLeaderOrFollower(tp)
            | ReplicationError::UnknownPartition(tp)
            | ReplicationError::StaleLeaderEpoch { tp, .. }
            | ReplicationError::Fetch(tp, _) => {
                let (topic, partition) = tp_of(tp);
                BrokerError::NotLeader {
                    topic,
                    partition,
                    leader,
                }
            }
            ReplicationError::NotEnoughReplicas {
                tp,
                isr,
                min_insync,
            } => {
                let (topic, partition) = tp_of(tp);
                BrokerError::NotEnoughReplicas {
                    topic,
                    partition,
                    isr,
                    min_insync,
                }
            }
            ReplicationError::NotEnoughReplicasAfterAppend {
                tp,
                isr,
                min_insync,
            } => {
                let (topic, partition) = tp_of(tp);
                BrokerError::NotEnoughReplicasAfterAppend {
                    topic,
                    partition,
                    isr,
                    min_insync,
                }
            }
            ReplicationError::RequestTimedOut(tp) => {
                let (topic, partition) = tp_of(tp);
                BrokerError::ReplicationTimeout { topic, partition }
            }
            ReplicationError::Log(e) => e,
            e @ (ReplicationError::NoRuntime | ReplicationError::Transport(_)) => {
                BrokerError::ReplicaConflict(e.to_string())
            }
        }
    }

    /// The Kafka error code a produce or fetch answer carries for this error.
    pub fn kafka_code(&self) -> i16 {
        match self {
            ReplicationError::NotLeaderOrFollower(_) => 6,
            ReplicationError::StaleLeaderEpoch { .. } => 74,
            ReplicationError::Fetch(_, e) => e.kafka_code(),
            ReplicationError::NotEnoughReplicas { .. } => 19,
            ReplicationError::NotEnoughReplicasAfterAppend { .. } => 20,
            ReplicationError::RequestTimedOut(_) => 7,
            ReplicationError::UnknownPartition(_) => 3,
            ReplicationError::NoRuntime | ReplicationError::Transport(_) => -1,
            ReplicationError::Log(e) => match e {
                BrokerError::OffsetOutOfRange { .. } => 1,
                BrokerError::CorruptBatch(_) => 2,
                BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. } => 3,
                BrokerError::BatchTooLarge { .. } => 10,
                BrokerError::ReplicaConflict(_) => 6,
                // KAFKA_STORAGE_ERROR: the Kafka edge may map the rest more finely.
                _ => 56,
            },
        }
    }
}

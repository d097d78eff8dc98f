//! The owners' log over the cluster RPC: what a node asks the leader of a replicated
//! partition it does not lead, on behalf of a topic's owner (the engine's tasks and SQL
//! queries, through [`super::cluster_log::ClusterLog`]): append a batch, read batches below
//! the high watermark, and the partition's offsets (optionally waiting for the end to move).
//! [`LogService`] answers them with the local [`Broker`].
//!
//! It owns the messages and the leader's side only. It does not choose leaders (the
//! metadata does), retry (the caller does), or check a client's permissions: a peer is an
//! authenticated member of the cluster (the RPC layer checks the cluster id, and the sender
//! under mutual TLS), and writes for owners may target internal topics, as
//! [`Broker::append_owned`] does on the node itself.
//!
//! # Invariants
//!
//! 1. **Only a replicated partition this node leads is written**: an append for a local
//!    (unreplicated) topic is refused (`replica_conflict`), one for a partition led elsewhere
//!    gets `not_leader` from the partition itself; the append is answered once the in-sync
//!    set has it (`acks=all`, `min_insync_replicas`), exactly as a local owner's append.
//! 2. **Nothing above the high watermark is read**: reads and offsets go through the
//!    partition's readable end, as every reader's.
//! 3. **Every answer is bounded**: a read's `max_bytes` is capped by the RPC message budget;
//!    a wait for the end offset by [`MAX_WAIT`] whatever the request asks; an appended
//!    batch was bounded by the RPC message limit before it arrived, and is validated
//!    (CRC, framing) before the log sees it.
//! 4. **Blocking work runs off the runtime** (disk reads, the wait for the in-sync set).
//! 5. **A task's commit is taken only from its current owner** (zombie fencing, as Kafka's
//!    producer epochs fence an old transactional producer): an append carrying a
//!    [`TaskFence`] is refused (`task_fenced`) unless this node's applied metadata names the
//!    sender the task's owner at exactly that assignment epoch. The check and the append
//!    are not atomic with a metadata change racing them; the new owner starts only after
//!    the move is committed, and a fenced write is refused before anything is appended.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::NodeId;
use super::config::RpcSettings;
use super::metadata::{ClusterMetadata, MetadataError};
use super::rpc::{PeerRequest, PeerResponse, PeerService, Refusal, ServiceFuture};
use crate::Broker;
use crate::batch;
use crate::error::BrokerError;

/// The longest a request for offsets waits for the end to move.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// Room left in an answer for the envelope and its fixed fields.
const ENVELOPE_ROOM: usize = 1024;

/// What a node asks a partition's leader for a topic's owner. Append variants at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogRequest {
    /// Append one RecordBatch v2 (acks=all); answered with [`LogResponse::Appended`].
    Append {
        topic: String,
        partition: i32,
        batch: Bytes,
        /// The task whose commit this is (a changelog append, committed offsets): the
        /// leader takes it only from the task's current owner at its current assignment
        /// epoch (invariant 5).
        fence: Option<TaskFence>,
    },
    /// Whole batches from the one holding `offset` (an offset below the log start reads
    /// from the start), about `max_bytes`; answered with [`LogResponse::Batches`].
    Read {
        topic: String,
        partition: i32,
        offset: i64,
        max_bytes: u32,
    },
    /// The partition's start and readable end; with `wait_past`, once the end is past it
    /// or `max_wait_ms` (at most [`MAX_WAIT`]) passed. Answered with [`LogResponse::Offsets`].
    Offsets {
        topic: String,
        partition: i32,
        wait_past: Option<i64>,
        max_wait_ms: u32,
    },
}

impl LogRequest {
    /// The variant's name, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            LogRequest::Append { .. } => "log_append",
            LogRequest::Read { .. } => "log_read",
            LogRequest::Offsets { .. } => "log_offsets",
        }
    }
}

/// Who writes a task's commit: the processor, the task's partition and the assignment
/// epoch the writing node runs it under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFence {
    pub processor: String,
    pub partition: i32,
    pub epoch: u64,
}

/// How long a leader waits for its metadata to reach an assignment epoch newer than it knows.
const FENCE_WAIT: Duration = Duration::from_secs(5);

/// Admits a task's commit written by `node` under `fence` (invariant 5): refused
/// ([`BrokerError::TaskFenced`]) unless the applied metadata names `node` the task's owner
/// at exactly that epoch. An epoch newer than this node applied is waited for (briefly: the
/// writer applied it first); an older one is refused at once.
pub async fn admit(
    mut versions: watch::Receiver<Arc<ClusterMetadata>>,
    node: NodeId,
    fence: &TaskFence,
) -> Result<(), BrokerError> {
    let check = |m: &ClusterMetadata| {
        m.check_task_owner(&fence.processor, fence.partition, node, fence.epoch)
    };
    let newer = |m: &ClusterMetadata| {
        matches!(
            check(m),
            Err(MetadataError::StaleTaskEpoch { given, current, .. }) if given > current
        )
    };
    if newer(&versions.borrow()) {
        let _ = tokio::time::timeout(FENCE_WAIT, versions.wait_for(|m| !newer(m))).await;
    }
    let verdict = check(&versions.borrow());
    verdict.map_err(|e| {
        BrokerError::TaskFenced(format!(
            "a commit of task {}/{} by node {node} under assignment epoch {}: {e}",
            fence.processor, fence.partition, fence.epoch
        ))
    })
}

/// The answer to a [`LogRequest`], variant for variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogResponse {
    Appended {
        first: i64,
        last: i64,
    },
    Batches {
        /// Raw stored batches (possibly empty), all below `end`.
        batches: Bytes,
        /// The offset the read started from (the request's, or the log start if that was
        /// below it).
        from: i64,
        start: i64,
        end: i64,
    },
    Offsets {
        start: i64,
        end: i64,
    },
}

/// The refusal a broker error travels as: its stable code and message (the caller turns the
/// code back into an error, or retries).
pub fn refusal(e: &BrokerError) -> Refusal {
    Refusal::Service {
        code: e.code().to_string(),
        message: e.to_string(),
    }
}

/// Answers peers' [`LogRequest`]s with the local broker (install it in the node's routing
/// service, `cluster::service::NodeService::set_log`).
pub struct LogService {
    broker: Broker,
    /// The applied metadata, for fenced appends (invariant 5).
    versions: watch::Receiver<Arc<ClusterMetadata>>,
    /// Bytes of batches one answer may carry (invariant 3).
    budget: usize,
}

impl LogService {
    pub fn new(broker: Broker, versions: watch::Receiver<Arc<ClusterMetadata>>) -> LogService {
        LogService {
            broker,
            versions,
            budget: budget_for(RpcSettings::default().max_message_bytes),
        }
    }

    /// Bounds every answer by the RPC's `max_message_bytes` (the server's limit).
    pub fn with_max_message_bytes(mut self, max_message_bytes: usize) -> LogService {
        self.budget = budget_for(max_message_bytes);
        self
    }

    async fn serve(&self, from: NodeId, request: LogRequest) -> Result<LogResponse, BrokerError> {
        let broker = self.broker.clone();
        match request {
            LogRequest::Append {
                topic,
                partition,
                batch,
                fence,
            } => {
                if let Some(fence) = &fence {
                    admit(self.versions.clone(), from, fence).await?;
                }
                blocking(move || {
                    if broker.replica_progress(&topic, partition).is_none() {
                        // A local topic, or no replica here: not this node's to write.
                        broker.topic_info(&topic)?;
                        return Err(BrokerError::ReplicaConflict(format!(
                            "{topic}/{partition} has no replica on this node"
                        )));
                    }
                    let checked = batch::validate_records(&batch)?;
                    let (first, last) = broker.append_owned(&topic, partition, &checked)?;
                    Ok(LogResponse::Appended { first, last })
                })
                .await
            }
            LogRequest::Read {
                topic,
                partition,
                offset,
                max_bytes,
            } => {
                let max_bytes = (max_bytes as usize).min(self.budget);
                blocking(move || {
                    let (start, _) = broker.partition_offsets(&topic, partition)?;
                    let from = offset.max(start);
                    let (batches, end) = broker.read_batches(&topic, partition, from, max_bytes)?;
                    Ok(LogResponse::Batches {
                        batches,
                        from,
                        start,
                        end,
                    })
                })
                .await
            }
            LogRequest::Offsets {
                topic,
                partition,
                wait_past,
                max_wait_ms,
            } => {
                if let Some(past) = wait_past {
                    let mut end = broker.watch_end(&topic, partition)?;
                    let wait = Duration::from_millis(u64::from(max_wait_ms)).min(MAX_WAIT);
                    // A closed channel (topic deleted) or the timeout: answer what there is.
                    let _ = tokio::time::timeout(wait, end.wait_for(|e| *e > past)).await;
                }
                let (start, end) = broker.known_offsets(&topic, partition)?;
                Ok(LogResponse::Offsets { start, end })
            }
        }
    }
}

fn budget_for(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_sub(ENVELOPE_ROOM).max(1)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(BrokerError::ClusterUnavailable(format!(
            "log task failed: {e}"
        )))
    })
}

impl PeerService for LogService {
    fn call(&self, from: NodeId, request: PeerRequest) -> ServiceFuture<'_> {
        Box::pin(async move {
            match request {
                PeerRequest::Log(request) => self
                    .serve(from, request)
                    .await
                    .map(PeerResponse::Log)
                    .map_err(|e| refusal(&e)),
                other => Err(Refusal::NotServed(other.kind().to_string())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata::{ProcessorRecord, TaskAssignment};

    fn owned_by(owner: NodeId, epoch: u64) -> ClusterMetadata {
        let mut m = ClusterMetadata::default();
        m.processors.insert(
            "wc".into(),
            ProcessorRecord {
                name: "wc".into(),
                partitions: 1,
                ..ProcessorRecord::default()
            },
        );
        m.tasks.insert(
            "wc".into(),
            vec![TaskAssignment {
                owner: Some(owner),
                epoch,
                ..TaskAssignment::default()
            }],
        );
        m
    }

    fn fence(epoch: u64) -> TaskFence {
        TaskFence {
            processor: "wc".into(),
            partition: 0,
            epoch,
        }
    }

    #[tokio::test]
    async fn only_the_current_owner_at_its_epoch_may_commit() {
        let (tx, rx) = watch::channel(Arc::new(owned_by(2, 5)));
        admit(rx.clone(), 2, &fence(5)).await.unwrap();
        // A zombie: the former owner, or the owner under an older epoch.
        let refused = admit(rx.clone(), 3, &fence(5)).await.unwrap_err();
        assert_eq!(refused.code(), "task_fenced");
        assert_eq!(
            admit(rx.clone(), 2, &fence(4)).await.unwrap_err().code(),
            "task_fenced"
        );
        let other = TaskFence {
            processor: "gone".into(),
            ..fence(5)
        };
        assert_eq!(
            admit(rx.clone(), 2, &other).await.unwrap_err().code(),
            "task_fenced"
        );
        // A newer epoch than this node applied: waited for, then admitted.
        let (rx6, f6) = (rx.clone(), fence(6));
        let waiting = tokio::spawn(async move { admit(rx6, 3, &f6).await });
        tokio::task::yield_now().await;
        tx.send(Arc::new(owned_by(3, 6))).unwrap();
        waiting.await.unwrap().unwrap();
        // …and the old owner is refused from then on.
        assert_eq!(
            admit(rx.clone(), 2, &fence(5)).await.unwrap_err().code(),
            "task_fenced"
        );
        // A newer epoch that never arrives is refused after the wait.
        assert_eq!(
            admit(rx, 3, &fence(9)).await.unwrap_err().code(),
            "task_fenced"
        );
    }
}

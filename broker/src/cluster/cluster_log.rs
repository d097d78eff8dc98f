//! The log as a topic's owner sees it on a cluster node: [`ClusterLog`] is what the engine's
//! tasks and SQL queries write and read through (the engine implements its `LogAccess` over
//! it), so that their topics — outputs, changelogs, offsets, repartition topics — are the
//! cluster's replicated topics wherever the task runs. A topic the metadata holds is
//! replicated: it is created and deleted through the controller (internal topics with their
//! owner's marker), appended to at its partition's leader (this node's log when it leads,
//! else the leader's over [`super::log_rpc`]) and read from the leader below the high
//! watermark. A topic only this node holds (a single-node data directory's, or any topic
//! before the node is attached to the cluster) stays local, exactly as on a single node.
//!
//! It owns the choice of where each operation goes and the retries across leader changes;
//! it decides nothing the controller decides (leaders, replicas) and checks no client
//! permissions (owners only; clients go through the edges).
//!
//! # Invariants
//!
//! 1. **Writes go to the leader the applied metadata names, and only there** (the
//!    partition refuses a write it does not lead): an owner's append is acknowledged only
//!    when the leader's in-sync set has it (`acks=all`, `min_insync_replicas`).
//! 2. **Reads come from the leader, below its high watermark**, so a task restoring a store
//!    or reading its committed offsets sees everything acknowledged before it asked (a
//!    follower's high watermark may lag).
//! 3. **Leader changes are retried, nothing else is**: an answer of the "unavailable" class
//!    (not the leader, offline, not enough replicas, an unreachable peer) is retried with
//!    back-off for at most [`RETRY_FOR`] as the metadata moves on; any other error is the
//!    caller's. An append retried after a lost answer may land twice (at-least-once, like
//!    a Kafka producer without idempotence).
//! 4. **Every wait is bounded**: each remote call by its timeout, the retries by
//!    [`RETRY_FOR`]. Methods block the calling thread: call them off the async runtime.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use super::NodeId;
use super::log_rpc::{LogRequest, LogResponse, MAX_WAIT, TaskFence, admit};
use super::metadata::TopicMetadata;
use super::routing::ClusterRouting;
use super::rpc::{PeerRequest, PeerResponse, Peers, Refusal, RpcError};
use crate::batch::{self, CheckedBatch};
use crate::batch_builder::BatchBuilder;
use crate::broker::by_partition;
use crate::error::BrokerError;
use crate::types::{ProduceRecord, ReadResult, TopicInfo, TopicSpec};
use crate::{Broker, InternalTopic};

/// How long an operation keeps retrying across leader changes (invariant 3).
pub const RETRY_FOR: Duration = Duration::from_secs(60);
/// The wait for a remote append (the leader waits for its in-sync set).
const APPEND_TIMEOUT: Duration = Duration::from_secs(30);
/// The wait for a remote read or offsets.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Payload per batch when records are produced (as `Broker::produce` chunks them).
const PRODUCE_CHUNK_BYTES: usize = 1 << 20;

/// A topic as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedTopic {
    pub partitions: i32,
    pub compacted: bool,
    /// The owner of an internal topic.
    pub owner: Option<String>,
}

impl OwnedTopic {
    fn local(info: &TopicInfo) -> OwnedTopic {
        OwnedTopic {
            partitions: info.partitions,
            compacted: info.compacted,
            owner: info.internal.as_ref().map(|m| m.owner.clone()),
        }
    }

    fn replicated(t: &TopicMetadata) -> OwnedTopic {
        OwnedTopic {
            partitions: t.partitions.len() as i32,
            compacted: t.config.compacted,
            owner: t.internal_owner.clone(),
        }
    }
}

/// What the node needs to reach the cluster, once it has it.
struct Attached {
    routing: ClusterRouting,
    peers: Arc<Peers>,
    runtime: tokio::runtime::Handle,
}

impl Attached {
    /// Runs `f` on the node's runtime and waits for it on this (non-async) thread.
    fn block_on<T: Send + 'static>(
        &self,
        f: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, BrokerError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv()
            .map_err(|_| BrokerError::ClusterUnavailable("the node's runtime stopped".into()))
    }

    /// One log request to `node`, its refusal turned back into a broker error.
    fn call(
        &self,
        node: NodeId,
        request: LogRequest,
        timeout: Duration,
    ) -> Result<LogResponse, BrokerError> {
        let client = self.peers.client(node).ok_or_else(|| {
            BrokerError::ClusterUnavailable(format!("no cluster address known for node {node}"))
        })?;
        let answer = self.block_on(async move {
            client
                .call_with_timeout(PeerRequest::Log(request), timeout)
                .await
        })?;
        answer_of(node, answer)
    }
}

fn answer_of(
    node: NodeId,
    answer: Result<PeerResponse, RpcError>,
) -> Result<LogResponse, BrokerError> {
    match answer {
        Ok(PeerResponse::Log(r)) => Ok(r),
        Ok(_) => Err(BrokerError::ClusterUnavailable(format!(
            "node {node} answered a log request with another kind"
        ))),
        Err(RpcError::Refused {
            refusal: Refusal::Service { code, message },
            ..
        }) => Err(remote_error(node, &code, message)),
        Err(e) => Err(BrokerError::ClusterUnavailable(format!("node {node}: {e}"))),
    }
}

/// A leader's refusal as this node's error: the retried class stays retried
/// ([`BrokerError::ClusterUnavailable`]), anything else is the peer's refusal with its code.
fn remote_error(node: NodeId, code: &str, message: String) -> BrokerError {
    match code {
        "not_leader"
        | "not_enough_replicas"
        | "not_enough_replicas_after_append"
        | "replication_timeout"
        | "partition_offline"
        | "cluster_unavailable"
        | "shutting_down"
        | "offset_not_available"
        // The metadata names it the leader, but it has not applied that yet.
        | "unknown_topic"
        | "unknown_partition"
        | "replica_conflict" => BrokerError::ClusterUnavailable(format!("node {node}: {message}")),
        "task_fenced" => {
            let reason = message.strip_prefix("fenced: ").unwrap_or(&message);
            BrokerError::TaskFenced(format!("{reason} (refused by node {node})"))
        }
        _ => BrokerError::PeerRefused {
            node,
            code: code.to_string(),
            message,
        },
    }
}

/// Whether an error is of the class retried across leader changes (invariant 3). A
/// missing topic or partition is one while the metadata still has it (this node has not
/// created its replica yet); [`ClusterLog::at_leader`] looks the topic up again each time.
fn retried(e: &BrokerError) -> bool {
    matches!(
        e,
        BrokerError::NotLeader { .. }
            | BrokerError::UnknownTopic(_)
            | BrokerError::UnknownPartition { .. }
            | BrokerError::ReplicaConflict(_)
            | BrokerError::NotEnoughReplicas { .. }
            | BrokerError::NotEnoughReplicasAfterAppend { .. }
            | BrokerError::ReplicationTimeout { .. }
            | BrokerError::PartitionOffline { .. }
            | BrokerError::OffsetNotAvailable { .. }
            | BrokerError::ClusterUnavailable(_)
    )
}

/// Where an operation on a partition goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Local,
    Leader(NodeId),
}

/// The owners' log of one node (see the module doc). Cheap to share.
pub struct ClusterLog {
    broker: Broker,
    cluster: OnceLock<Attached>,
    retry_for: Duration,
    /// The partition of the next call's unkeyed records.
    round_robin: AtomicU32,
}

impl std::fmt::Debug for ClusterLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLog")
            .field("attached", &self.cluster.get().is_some())
            .finish_non_exhaustive()
    }
}

impl ClusterLog {
    /// The log of `broker`, local until [`ClusterLog::attach`]ed to the cluster.
    pub fn new(broker: Broker) -> ClusterLog {
        ClusterLog {
            broker,
            cluster: OnceLock::new(),
            retry_for: RETRY_FOR,
            round_robin: AtomicU32::new(0),
        }
    }

    /// Retries across leader changes for at most `d` (tests).
    pub fn with_retry_for(mut self, d: Duration) -> ClusterLog {
        self.retry_for = d;
        self
    }

    /// The node's local log.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// From now on, topics the metadata holds are the cluster's. Call once, from the node's
    /// runtime (its handle runs the remote calls); a second call is ignored.
    pub fn attach(&self, routing: ClusterRouting, peers: Arc<Peers>) {
        let attached = Attached {
            routing,
            peers,
            runtime: tokio::runtime::Handle::current(),
        };
        if self.cluster.set(attached).is_err() {
            tracing::warn!("the owners' log was attached to the cluster twice");
        }
    }

    /// The cluster's record of a replicated topic, if attached and it has one.
    fn replicated(&self, topic: &str) -> Option<(&Attached, TopicMetadata)> {
        let c = self.cluster.get()?;
        let t = c.routing.metadata().topics.get(topic)?.clone();
        Some((c, t))
    }

    /// A topic's partitions, compaction and owner; `None` if neither the cluster nor this
    /// node has it.
    pub fn topic(&self, topic: &str) -> Result<Option<OwnedTopic>, BrokerError> {
        if let Some((_, t)) = self.replicated(topic) {
            return Ok(Some(OwnedTopic::replicated(&t)));
        }
        match self.broker.topic_info(topic) {
            Ok(info) => Ok(Some(OwnedTopic::local(&info))),
            Err(BrokerError::UnknownTopic(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every topic's name: the cluster's and this node's, sorted, once each.
    pub fn list_topics(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .broker
            .list_topics()
            .into_iter()
            .map(|t| t.name)
            .collect();
        if let Some(c) = self.cluster.get() {
            names.extend(c.routing.topics());
        }
        names.sort();
        names.dedup();
        names
    }

    /// Creates the topic unless it exists (see `LogAccess::ensure_topic`): through the
    /// controller on a cluster, unless this node has a local topic of that name. With
    /// `adopt`, an existing local topic without the marker is marked (data dirs older than
    /// the markers).
    pub fn ensure_topic(&self, spec: TopicSpec, adopt: bool) -> Result<OwnedTopic, BrokerError> {
        let name = spec.name.clone();
        if let Some((_, t)) = self.replicated(&name) {
            check_owner(&name, &t, spec.internal.as_ref())?;
            return Ok(OwnedTopic::replicated(&t));
        }
        let local = self.broker.topic_info(&name).is_ok();
        let Some(c) = self.cluster.get().filter(|_| !local) else {
            let info = match (&spec.internal, adopt) {
                (Some(_), true) => self.broker.adopt_internal_topic(spec)?,
                (Some(_), false) => self.broker.ensure_internal_topic(spec)?,
                (None, _) => match self.broker.create_topic(spec) {
                    Err(BrokerError::TopicExists(_)) => self.broker.topic_info(&name)?,
                    created => created?,
                },
            };
            return Ok(OwnedTopic::local(&info));
        };
        self.broker.check_topic_spec(&spec)?;
        let routing = c.routing.clone();
        let create = spec.clone();
        match c.block_on(async move { routing.create_topic(&create).await })? {
            Ok(()) | Err(BrokerError::TopicExists(_)) => {}
            Err(e) => return Err(e),
        }
        let (_, t) = self
            .replicated(&name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.clone()))?;
        check_owner(&name, &t, spec.internal.as_ref())?;
        Ok(OwnedTopic::replicated(&t))
    }

    /// Checks a topic spec as creating it would, without creating anything.
    pub fn check_topic(&self, spec: &TopicSpec) -> Result<(), BrokerError> {
        self.broker.check_topic_spec(spec).map(|_| ())
    }

    /// Deletes a topic an owner owns (through the controller when it is replicated); a
    /// missing topic is not an error.
    pub fn delete_topic(&self, topic: &str) -> Result<(), BrokerError> {
        if let Some((c, _)) = self.replicated(topic) {
            let routing = c.routing.clone();
            let name = topic.to_string();
            return match c.block_on(async move { routing.delete_topic(&name).await })? {
                Ok(()) | Err(BrokerError::UnknownTopic(_)) => Ok(()),
                Err(e) => Err(e),
            };
        }
        match self.broker.delete_owned_topic(topic) {
            Ok(()) | Err(BrokerError::UnknownTopic(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs `op` where the partition's leader is, again as the metadata moves while it
    /// fails with a leader change (invariant 3).
    fn at_leader<T>(
        &self,
        c: &Attached,
        topic: &str,
        partition: i32,
        mut op: impl FnMut(Place) -> Result<T, BrokerError>,
    ) -> Result<T, BrokerError> {
        let deadline = Instant::now() + self.retry_for;
        let mut pause = Duration::from_millis(50);
        loop {
            let route = match c.routing.routes(topic) {
                None => return Err(BrokerError::UnknownTopic(topic.to_string())),
                Some(routes) => usize::try_from(partition)
                    .ok()
                    .and_then(|i| routes.get(i).cloned()),
            };
            let Some(route) = route else {
                return Err(BrokerError::UnknownPartition {
                    topic: topic.to_string(),
                    partition,
                });
            };
            let place = match route.leader {
                Some(n) if n == c.routing.node() => Ok(Place::Local),
                Some(n) => Ok(Place::Leader(n)),
                None => Err(BrokerError::ClusterUnavailable(format!(
                    "{topic}/{partition} has no leader now"
                ))),
            };
            // A local replicated write waits for its in-sync set on the node's runtime.
            let result = {
                let _runtime = c.runtime.enter();
                place.and_then(&mut op)
            };
            match result {
                Err(e) if retried(&e) && Instant::now() < deadline => {
                    tracing::debug!(topic, partition, error = %e, "retrying at the leader");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    /// Appends one checked batch to a partition (at its leader, `acks=all`); returns the
    /// first and last offsets it got.
    pub fn append(
        &self,
        topic: &str,
        partition: i32,
        batch: &CheckedBatch,
    ) -> Result<(i64, i64), BrokerError> {
        self.append_fenced(topic, partition, batch, None)
    }

    /// [`ClusterLog::append`] of a task's commit: the leader takes it only from the task's
    /// current owner at `fence`'s assignment epoch ([`BrokerError::TaskFenced`] otherwise,
    /// never retried). A local topic is not fenced.
    pub fn append_fenced(
        &self,
        topic: &str,
        partition: i32,
        batch: &CheckedBatch,
        fence: Option<&TaskFence>,
    ) -> Result<(i64, i64), BrokerError> {
        let Some((c, _)) = self.replicated(topic) else {
            return self.broker.append_owned(topic, partition, batch);
        };
        self.at_leader(c, topic, partition, |place| match place {
            Place::Local => {
                if let Some(f) = fence {
                    let (versions, node, f) = (c.routing.subscribe(), c.routing.node(), f.clone());
                    c.block_on(async move { admit(versions, node, &f).await })??;
                }
                self.broker.append_owned(topic, partition, batch)
            }
            Place::Leader(node) => {
                let request = LogRequest::Append {
                    topic: topic.to_string(),
                    partition,
                    batch: batch.bytes().clone(),
                    fence: fence.cloned(),
                };
                match c.call(node, request, APPEND_TIMEOUT)? {
                    LogResponse::Appended { first, last } => Ok((first, last)),
                    other => Err(unexpected(node, &other)),
                }
            }
        })
    }

    /// Appends records, each to its partition (explicit, by key as Kafka's partitioner, or
    /// one partition chosen round robin for unkeyed ones); returns `(partition, offset)` for
    /// each, in order.
    pub fn produce(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
    ) -> Result<Vec<(i32, i64)>, BrokerError> {
        self.produce_fenced(topic, records, None)
    }

    /// [`ClusterLog::produce`] of a task's commit (see [`ClusterLog::append_fenced`]).
    pub fn produce_fenced(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
        fence: Option<&TaskFence>,
    ) -> Result<Vec<(i32, i64)>, BrokerError> {
        let Some((_, t)) = self.replicated(topic) else {
            return self.broker.produce_owned(topic, records);
        };
        let n = t.partitions.len() as i32;
        if n == 0 {
            return Err(BrokerError::UnknownTopic(topic.to_string()));
        }
        let turn = self.round_robin.fetch_add(1, Ordering::Relaxed);
        let unkeyed = (turn % n as u32) as i32;
        let by_partition = by_partition(topic, &records, n, t.config.compacted, unkeyed)?;
        let now = now_ms();
        let mut result = vec![(0i32, 0i64); records.len()];
        let mut builder = BatchBuilder::new();
        for (p, indices) in by_partition.iter().enumerate() {
            let p = p as i32;
            let mut start = 0usize;
            while start < indices.len() {
                let mut size = 0usize;
                let mut end = start;
                while end < indices.len() && (end == start || size < PRODUCE_CHUNK_BYTES) {
                    let r = &records[indices[end]];
                    size += r.key.as_ref().map_or(0, |k| k.len())
                        + r.value.as_ref().map_or(0, |v| v.len());
                    builder.push(
                        r.timestamp.unwrap_or(now),
                        r.key.as_deref(),
                        r.value.as_deref(),
                        r.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
                    );
                    end += 1;
                }
                if let Some(batch) = builder.finish_checked() {
                    let (first, _) = self.append_fenced(topic, p, &batch, fence)?;
                    for (rel, &i) in indices[start..end].iter().enumerate() {
                        result[i] = (p, first + rel as i64);
                    }
                }
                start = end;
            }
        }
        Ok(result)
    }

    /// Up to `max_records` records (about `max_bytes`) at or after `offset`, read at the
    /// partition's leader below its high watermark (an offset below the log start reads
    /// from the start).
    pub fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadResult, BrokerError> {
        let Some((c, _)) = self.replicated(topic) else {
            return self
                .broker
                .read(topic, partition, offset, max_records, max_bytes);
        };
        self.at_leader(c, topic, partition, |place| match place {
            Place::Local => self
                .broker
                .read(topic, partition, offset, max_records, max_bytes),
            Place::Leader(node) => {
                let request = LogRequest::Read {
                    topic: topic.to_string(),
                    partition,
                    offset,
                    max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
                };
                match c.call(node, request, READ_TIMEOUT)? {
                    LogResponse::Batches {
                        batches, from, end, ..
                    } => records_of(batches, from, end, max_records),
                    other => Err(unexpected(node, &other)),
                }
            }
        })
    }

    /// `(start, end)` offsets of a partition (the end at the high watermark), from its
    /// leader. Never an end below one handed out before: a new leader that does not know
    /// the end yet refuses ([`BrokerError::OffsetNotAvailable`]) and is asked again.
    pub fn offsets(&self, topic: &str, partition: i32) -> Result<(i64, i64), BrokerError> {
        let Some((c, _)) = self.replicated(topic) else {
            return self.broker.known_offsets(topic, partition);
        };
        self.at_leader(c, topic, partition, |place| match place {
            Place::Local => self.broker.known_offsets(topic, partition),
            Place::Leader(node) => {
                let request = LogRequest::Offsets {
                    topic: topic.to_string(),
                    partition,
                    wait_past: None,
                    max_wait_ms: 0,
                };
                match c.call(node, request, READ_TIMEOUT)? {
                    LogResponse::Offsets { start, end } => Ok((start, end)),
                    other => Err(unexpected(node, &other)),
                }
            }
        })
    }

    /// The partition's end offset, updated as it grows (to wake a waiting task): this node's
    /// replica's when it has one, else the leader's, long-polled in the background until
    /// every receiver is gone or the topic is deleted (then the channel closes).
    pub fn watch_end(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<watch::Receiver<i64>, BrokerError> {
        let Some((c, _)) = self.replicated(topic) else {
            return self.broker.watch_end(topic, partition);
        };
        if self.broker.replica_progress(topic, partition).is_some() {
            return self.broker.watch_end(topic, partition);
        }
        let (_, end) = self.offsets(topic, partition)?;
        let (tx, rx) = watch::channel(end);
        let routing = c.routing.clone();
        let peers = c.peers.clone();
        let topic = topic.to_string();
        c.runtime.spawn(async move {
            poll_end(routing, peers, topic, partition, end, tx).await;
        });
        Ok(rx)
    }
}

/// Keeps `tx` at the leader's end offset of a partition this node has no replica of.
async fn poll_end(
    routing: ClusterRouting,
    peers: Arc<Peers>,
    topic: String,
    partition: i32,
    mut last: i64,
    tx: watch::Sender<i64>,
) {
    loop {
        let leader = match routing.routes(&topic) {
            None => return, // deleted: the channel closes
            Some(routes) => routes.get(partition as usize).and_then(|r| r.leader),
        };
        let answer = match leader.and_then(|n| Some((n, peers.client(n)?))) {
            Some((node, client)) => {
                let request = PeerRequest::Log(LogRequest::Offsets {
                    topic: topic.clone(),
                    partition,
                    wait_past: Some(last),
                    max_wait_ms: MAX_WAIT.as_millis() as u32,
                });
                tokio::select! {
                    () = tx.closed() => return,
                    a = client.call_with_timeout(request, MAX_WAIT + READ_TIMEOUT) => {
                        answer_of(node, a)
                    }
                }
            }
            None => Err(BrokerError::ClusterUnavailable("no leader".into())),
        };
        if let Ok(LogResponse::Offsets { end, .. }) = answer {
            if end != last {
                last = end;
                if tx.send(end).is_err() {
                    return;
                }
            }
            continue;
        }
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Refuses an internal topic of another owner, and a client's topic as an internal one.
fn check_owner(
    name: &str,
    t: &TopicMetadata,
    wanted: Option<&InternalTopic>,
) -> Result<(), BrokerError> {
    let Some(wanted) = wanted else {
        return Ok(());
    };
    match &t.internal_owner {
        Some(owner) if *owner == wanted.owner => Ok(()),
        Some(owner) => Err(BrokerError::InternalTopic {
            topic: name.to_string(),
            owner: owner.clone(),
        }),
        None => Err(BrokerError::TopicConflict {
            topic: name.to_string(),
            owner: wanted.owner.clone(),
        }),
    }
}

/// The records of raw batches read from `from`: those at or after it, at most
/// `max_records`, and where to read next (past a compaction gap too).
fn records_of(
    batches: Bytes,
    from: i64,
    end: i64,
    max_records: usize,
) -> Result<ReadResult, BrokerError> {
    let mut records = Vec::new();
    let next = batch::take_records(&batches, from, max_records, &mut records)?;
    Ok(ReadResult {
        records,
        next_offset: next.min(end.max(from)),
        end_offset: end,
    })
}

fn unexpected(node: NodeId, answer: &LogResponse) -> BrokerError {
    BrokerError::ClusterUnavailable(format!(
        "node {node} answered with an unexpected {answer:?}"
    ))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored batch of `values` whose first record has offset `base`.
    fn stored(base: i64, values: &[&str]) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for v in values {
            b.push(1, None, Some(v.as_bytes()), std::iter::empty());
        }
        let mut bytes = b.finish().unwrap().to_vec();
        batch::set_base_offset(&mut bytes, base);
        bytes
    }

    fn offsets(r: &ReadResult) -> Vec<i64> {
        r.records.iter().map(|r| r.offset).collect()
    }

    #[test]
    fn remote_batches_are_cut_at_the_offset_asked_and_the_record_limit() {
        // Offsets 0..3, then a compaction gap, then 10.
        let mut bytes = stored(0, &["a", "b", "c"]);
        bytes.extend(stored(10, &["k"]));
        let bytes = Bytes::from(bytes);

        let all = records_of(bytes.clone(), 0, 11, 100).unwrap();
        assert_eq!((offsets(&all), all.next_offset), (vec![0, 1, 2, 10], 11));
        // From the middle of the first batch: the records before it are left out.
        let mid = records_of(bytes.clone(), 1, 11, 100).unwrap();
        assert_eq!((offsets(&mid), mid.next_offset), (vec![1, 2, 10], 11));
        // The record limit: continue right after the last record returned.
        let two = records_of(bytes.clone(), 1, 11, 2).unwrap();
        assert_eq!((offsets(&two), two.next_offset), (vec![1, 2], 3));
        let three = records_of(bytes.clone(), 0, 11, 3).unwrap();
        assert_eq!((offsets(&three), three.next_offset), (vec![0, 1, 2], 3));
        // Inside the gap: the next record is the one after it.
        let gap = records_of(bytes, 3, 11, 100).unwrap();
        assert_eq!((offsets(&gap), gap.next_offset), (vec![10], 11));
        // Nothing to read: stay where asked.
        let none = records_of(Bytes::new(), 11, 11, 100).unwrap();
        assert_eq!(
            (offsets(&none), none.next_offset, none.end_offset),
            (vec![], 11, 11)
        );
        // Bytes that are not batches are refused, not guessed at.
        assert!(records_of(Bytes::from_static(b"not a batch at all"), 0, 1, 1).is_err());
    }

    #[test]
    fn a_leaders_refusals_are_retried_only_for_leader_changes() {
        for code in [
            "not_leader",
            "not_enough_replicas",
            "replication_timeout",
            "cluster_unavailable",
            "shutting_down",
            "offset_not_available",
            "unknown_topic",
        ] {
            assert!(retried(&remote_error(2, code, "m".into())), "{code}");
        }
        for code in ["corrupt_batch", "too_large", "io_error", "invalid_record"] {
            let e = remote_error(2, code, "m".into());
            assert!(!retried(&e), "{code}");
            assert_eq!(e.code(), "peer_refused");
        }
    }
}

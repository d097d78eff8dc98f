//! The metadata applier: makes this node's log follow the cluster metadata it has applied
//! from the Raft log. For every partition the metadata assigns to this node it keeps a
//! local copy of the topic (created on first sight, with the topic's `cluster` marker), a
//! replica attached to the partition, and the role the controller decided (leader at an
//! epoch, or follower of the leader); it forwards each replica's high watermark to the
//! partition's readers; and it takes the in-sync set changes this node's leaders want to
//! the controller. It decides nothing itself: it does not elect, assign or change in-sync
//! sets (the controller does), and it does not move bytes (the replica manager and its
//! fetchers do).
//!
//! # Invariants
//!
//! 1. **Roles come only from applied metadata** (cluster invariant 1): a replica becomes
//!    leader or follower only when a metadata version names it so, with that version's
//!    leader epoch; a replica refuses an older epoch than one it has seen (it never goes
//!    back), so applying versions late or twice is harmless.
//! 2. **A partition without a leader in the metadata has no leader here**: the local
//!    replica stops (writes and reads refused) until a newer epoch names one.
//! 3. **A partition or topic the metadata no longer assigns here is detached first**, then
//!    its replica removed and its records deleted, then (topic deleted, or no partition of
//!    it left here) the topic's files: no write lands after the metadata said the replica
//!    or topic is gone.
//! 4. **In-sync set changes leave this node only as `AlterPartition` proposals carrying the
//!    leader epoch and partition epoch it leads at**; the state machine refuses a stale one
//!    (cluster invariant 6). The replica applies a set only when the metadata commits it.
//! 5. **Nothing is applied before the node has caught up** with the controller's metadata
//!    ([`Applier::run`]'s `ready`): a restarted node's own log may say it leads at an epoch
//!    the cluster replaced while it was down.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::NodeId;
use super::metadata::{
    ClusterMetadata, MetadataCommand, MetadataError, MetadataResponse, TopicMetadata,
};
use super::replication::manager::ReplicaManager;
use super::replication::messages::TopicPartition;
use super::replication::replica::{LeaderAndIsr, PartitionReplica};
use crate::broker::Broker;
use crate::types::{ClusterTopic, InternalTopic, TopicSpec};

/// How often leaders' wanted in-sync set changes are sent to the controller.
pub const ISR_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Sends a metadata command to the controller (from any node).
pub trait Proposer: Send + Sync + 'static {
    fn propose(
        &self,
        command: MetadataCommand,
    ) -> BoxFuture<'_, Result<MetadataResponse, ProposeFailure>>;
}

/// Why a proposal did not commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeFailure {
    /// Committed and refused by the state machine (nothing changed).
    #[error(transparent)]
    Refused(#[from] MetadataError),
    /// Not committed: no controller reachable in time (it may still commit later).
    #[error("{0}")]
    Unavailable(String),
}

/// What the applier last applied for one local replica.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Applied {
    topic_id: u64,
    leader: Option<NodeId>,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: Vec<NodeId>,
    replicas: Vec<NodeId>,
    /// A reassignment is adding this node's replica and it is not in sync yet (its fetches
    /// are throttled).
    adding: bool,
}

struct Local {
    applied: Applied,
    replica: Arc<PartitionReplica>,
    forwarder: JoinHandle<()>,
}

/// The applier of one node.
pub struct Applier {
    node: NodeId,
    broker: Broker,
    manager: Arc<ReplicaManager>,
    local: HashMap<TopicPartition, Local>,
    counters: Arc<ApplierCounters>,
    /// Turns true once [`Applier::run`] has applied its first version after catching up.
    applied: Arc<watch::Sender<bool>>,
}

/// Leadership and in-sync set changes this node applied, for metrics. Counted where the
/// change is applied, by the partition's leader: an election by the node it makes leader
/// (this node named leader where another node or none led in the version applied here
/// before; a first leadership at creation or after a restart is not counted), an in-sync
/// set shrink or expand by the leader that applies the new set. Summed over the nodes they
/// are the cluster's totals.
#[derive(Debug, Default)]
pub struct ApplierCounters {
    pub leader_elections: std::sync::atomic::AtomicU64,
    pub isr_shrinks: std::sync::atomic::AtomicU64,
    pub isr_expands: std::sync::atomic::AtomicU64,
}

impl ApplierCounters {
    /// Counts what applying `new` over `old` (both applied here) changed, if this node
    /// leads after it.
    fn count(&self, node: NodeId, old: &Applied, new: &Applied) {
        use std::sync::atomic::Ordering::Relaxed;
        if old.leader_epoch < 0 || new.leader != Some(node) {
            return;
        }
        if old.leader != new.leader {
            self.leader_elections.fetch_add(1, Relaxed);
        } else {
            if old.isr.iter().any(|n| !new.isr.contains(n)) {
                self.isr_shrinks.fetch_add(1, Relaxed);
            }
            if new.isr.iter().any(|n| !old.isr.contains(n)) {
                self.isr_expands.fetch_add(1, Relaxed);
            }
        }
    }
}

/// The local spec of a replicated topic as the metadata describes it.
pub fn topic_spec(name: &str, t: &TopicMetadata) -> TopicSpec {
    let c = &t.config;
    let mut spec = TopicSpec::new(name, t.partitions.len() as i32);
    spec.compacted = c.compacted;
    spec.retention_ms = c.retention_ms;
    spec.retention_bytes = c.retention_bytes;
    spec.fsync = c.fsync;
    spec.segment_bytes = c.segment_bytes;
    spec.segment_ms = c.segment_ms;
    spec.delete_retention_ms = c.delete_retention_ms;
    spec.internal = t
        .internal_owner
        .clone()
        .map(|owner| InternalTopic { owner });
    spec.cluster = Some(ClusterTopic {
        topic_id: t.topic_id,
        replication_factor: t.replication_factor,
        min_insync_replicas: t.min_insync_replicas,
    });
    spec
}

impl Applier {
    pub fn new(node: NodeId, broker: Broker, manager: Arc<ReplicaManager>) -> Applier {
        Applier {
            node,
            broker,
            manager,
            local: HashMap::new(),
            counters: Arc::default(),
            applied: Arc::new(watch::channel(false).0),
        }
    }

    /// Turns true once [`Applier::run`] has caught up and applied the metadata once: this
    /// node's leaderships and replicas are then those of the cluster, not those of a stale
    /// local metadata log. The Kafka listener serves only from then on, as a KRaft broker
    /// enables request processing only after its first metadata publish; answering before
    /// (`NOT_LEADER_OR_FOLLOWER` for the partitions it is about to lead) makes a producer's
    /// pipelined batches fail out of order and librdkafka bump its epoch, which can store a
    /// batch of another partition twice.
    pub fn applied(&self) -> watch::Receiver<bool> {
        self.applied.subscribe()
    }

    /// The leadership and in-sync set changes this applier counts (shared; for metrics).
    pub fn counters(&self) -> Arc<ApplierCounters> {
        Arc::clone(&self.counters)
    }

    /// Applies one metadata version (blocking: it may create topics and fsync epoch caches;
    /// run it off the async threads). Errors are logged per topic and partition: one that
    /// cannot be applied does not keep the others from being applied, and is retried with
    /// the next version.
    pub fn apply(&mut self, meta: &ClusterMetadata) {
        let mut wanted: BTreeMap<TopicPartition, (u64, u16)> = BTreeMap::new();
        for (name, t) in &meta.topics {
            let mine: Vec<i32> = t
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.replicas.contains(&self.node))
                .map(|(i, _)| i as i32)
                .collect();
            if mine.is_empty() {
                continue;
            }
            if let Err(e) = self.broker.ensure_replicated_topic(topic_spec(name, t)) {
                tracing::error!(topic = %name, error = %e, "cannot create the local copy of a replicated topic");
                continue;
            }
            for p in mine {
                wanted.insert(
                    TopicPartition::new(name.clone(), p),
                    (t.topic_id, t.min_insync_replicas),
                );
            }
        }
        // Invariant 3: what is no longer ours is detached before anything else changes.
        let gone: Vec<TopicPartition> = self
            .local
            .iter()
            .filter(|(tp, l)| {
                wanted
                    .get(*tp)
                    .is_none_or(|(id, _)| *id != l.applied.topic_id)
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in gone {
            self.remove(&tp);
        }
        for (name, id) in self.broker.replicated_topics() {
            if meta.topics.get(&name).is_none_or(|t| t.topic_id != id)
                || !wanted.keys().any(|tp| tp.topic == name)
            {
                match self.broker.delete_owned_topic(&name) {
                    Ok(()) => {
                        tracing::info!(topic = %name, "deleted the local copy of a topic no longer replicated here")
                    }
                    Err(e) => {
                        tracing::warn!(topic = %name, error = %e, "cannot delete the local copy of a removed topic")
                    }
                }
            }
        }
        for (tp, (topic_id, min_insync)) in wanted {
            let Some(state) = meta.partition(&tp.topic, tp.partition) else {
                continue;
            };
            let applied = Applied {
                topic_id,
                leader: state.leader,
                leader_epoch: state.leader_epoch,
                partition_epoch: state.partition_epoch,
                isr: state.isr.clone(),
                replicas: state.replicas.clone(),
                // Throttled while copying; once in the in-sync set it must keep up with the
                // leader (acks=all waits for it), so no longer.
                adding: state.adding.contains(&self.node) && !state.isr.contains(&self.node),
            };
            if let Err(e) = self.apply_partition(&tp, applied, min_insync) {
                tracing::warn!(topic = %tp.topic, partition = tp.partition, error = %e, "cannot apply the partition's metadata yet");
            }
        }
    }

    fn apply_partition(
        &mut self,
        tp: &TopicPartition,
        applied: Applied,
        min_insync: u16,
    ) -> Result<(), String> {
        if let Some(l) = self.local.get(tp)
            && l.applied == applied
        {
            return Ok(());
        }
        if !self.local.contains_key(tp) {
            let replica = self
                .broker
                .attach_replica(
                    &tp.topic,
                    tp.partition,
                    &self.manager,
                    usize::from(min_insync),
                )
                .map_err(|e| e.to_string())?;
            let forwarder = spawn_forwarder(&self.broker, tp, &replica);
            self.local.insert(
                tp.clone(),
                Local {
                    applied: Applied {
                        leader: None,
                        leader_epoch: -1,
                        partition_epoch: -1,
                        ..applied.clone()
                    },
                    replica,
                    forwarder,
                },
            );
        }
        if let Some(l) = self.local.get(tp) {
            l.replica.set_throttled(applied.adding);
        }
        let result = match applied.leader {
            Some(leader) => {
                let change = LeaderAndIsr {
                    leader,
                    leader_epoch: applied.leader_epoch,
                    replicas: applied.replicas.clone(),
                    isr: applied.isr.clone(),
                };
                self.manager
                    .apply_leadership(tp, &change)
                    .map_err(|e| e.to_string())
            }
            None => {
                // Invariant 2: offline here too.
                if let Some(l) = self.local.get(tp) {
                    l.replica.stop();
                }
                Ok(())
            }
        };
        if result.is_ok()
            && let Some(l) = self.local.get_mut(tp)
        {
            if l.applied.leader != applied.leader || l.applied.leader_epoch != applied.leader_epoch
            {
                tracing::info!(
                    topic = %tp.topic,
                    partition = tp.partition,
                    leader = ?applied.leader,
                    epoch = applied.leader_epoch,
                    isr = ?applied.isr,
                    "partition leadership applied"
                );
            }
            self.counters.count(self.node, &l.applied, &applied);
            l.applied = applied;
        }
        result
    }

    fn remove(&mut self, tp: &TopicPartition) {
        self.broker.detach_replica(&tp.topic, tp.partition);
        let local = self.local.remove(tp);
        if let Some(l) = &local {
            l.forwarder.abort();
        }
        self.manager.remove_partition(tp);
        // No longer a replica here (moved away, or the topic went): its records go too, as
        // Kafka deletes a removed replica's log. Were the partition to come back, it would
        // copy everything from its leader again, like a new replica.
        if let Some(l) = local {
            let mut log = l.replica.log().lock().unwrap_or_else(|p| p.into_inner());
            match log.truncate_fully_and_start_at(0) {
                Ok(()) => {
                    tracing::info!(topic = %tp.topic, partition = tp.partition, "removed the local replica and its records")
                }
                Err(e) => {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, error = %e, "cannot delete the records of a removed replica")
                }
            }
        }
    }

    /// The `AlterPartition` commands for the in-sync set changes this node's leaders want,
    /// each under the leader and partition epochs it leads at (invariant 4).
    pub fn isr_proposals(&self) -> Vec<MetadataCommand> {
        self.manager
            .isr_changes_wanted()
            .into_iter()
            .filter_map(|(tp, p)| {
                let l = self.local.get(&tp)?;
                (l.applied.leader == Some(p.leader) && l.applied.leader_epoch == p.leader_epoch)
                    .then(|| MetadataCommand::AlterPartition {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        partition_epoch: l.applied.partition_epoch,
                        isr: p.isr,
                    })
            })
            .collect()
    }

    /// Applies every metadata version `versions` yields, and sends wanted in-sync set
    /// changes through `proposer`, until `stop` turns true.
    /// `ready` resolves once this node has caught up with the controller's metadata (a
    /// restarted node's local log may be stale): nothing is applied before (invariant 5).
    pub async fn run(
        self,
        mut versions: watch::Receiver<Arc<ClusterMetadata>>,
        proposer: Arc<dyn Proposer>,
        ready: impl std::future::Future<Output = bool> + Send,
        mut stop: watch::Receiver<bool>,
    ) {
        tokio::select! {
            () = stopped(&mut stop) => return,
            ok = ready => if !ok {
                return;
            },
        }
        tracing::info!(
            node = self.node,
            "caught up with the cluster metadata; applying it"
        );
        let applied = Arc::clone(&self.applied);
        let applier = Arc::new(std::sync::Mutex::new(self));
        let mut tick = tokio::time::interval(ISR_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = 0u64;
        loop {
            let meta = versions.borrow_and_update().clone();
            if meta.version != seen || seen == 0 {
                seen = meta.version;
                let a = Arc::clone(&applier);
                let done = tokio::task::spawn_blocking(move || {
                    a.lock().unwrap_or_else(|p| p.into_inner()).apply(&meta);
                })
                .await;
                if let Err(e) = done {
                    tracing::error!(error = %e, "applying cluster metadata failed");
                }
                applied.send_replace(true);
            }
            tokio::select! {
                () = stopped(&mut stop) => break,
                changed = versions.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = tick.tick() => {
                    let proposals = applier.lock().unwrap_or_else(|p| p.into_inner()).isr_proposals();
                    for cmd in proposals {
                        if let Err(e) = proposer.propose(cmd.clone()).await {
                            tracing::debug!(error = %e, command = ?cmd, "in-sync set change not committed");
                        }
                    }
                }
            }
        }
        let mut a = applier.lock().unwrap_or_else(|p| p.into_inner());
        let tps: Vec<TopicPartition> = a.local.keys().cloned().collect();
        for tp in tps {
            if let Some(l) = a.local.remove(&tp) {
                l.forwarder.abort();
            }
        }
        a.manager.shutdown();
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Forwards a replica's high watermark to the partition's readers (followers of the log).
fn spawn_forwarder(
    broker: &Broker,
    tp: &TopicPartition,
    replica: &Arc<PartitionReplica>,
) -> JoinHandle<()> {
    let mut progress = replica.subscribe();
    let broker = broker.clone();
    let tp = tp.clone();
    tokio::runtime::Handle::current().spawn(async move {
        let mut last = -1;
        loop {
            let hw = progress.borrow_and_update().high_watermark;
            if hw != last {
                last = hw;
                broker.publish_readable_end(&tp.topic, tp.partition, hw);
            }
            if progress.changed().await.is_err() {
                break;
            }
        }
    })
}

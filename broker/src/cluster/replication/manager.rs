//! The node's replicas: every partition replica on this node, the leader side of follower
//! fetches (with long polling), the follower side's fetchers (one per leader node), the
//! controller's leadership decisions applied to replicas, and the in-sync set changes the
//! leaders want. It owns which fetcher a partition is in; the rules live in
//! [`PartitionReplica`]. It does not talk to the controller: callers take
//! [`ReplicaManager::isr_changes_wanted`] to it and hand back what it committed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::fetcher::{self, FetcherPartitions, ReplicaTransport};
use super::leader::IsrProposal;
use super::messages::{
    FetchError, FetchRequest, FetchResponse, PartitionFetchResponse, TopicPartition,
};
use super::replica::{LeaderAndIsr, PartitionReplica, ReplicaStatus};
use super::throttle::Throttle;
use super::{ReplicationConfig, ReplicationError};
use crate::cluster::NodeId;
use crate::log::PartitionLog;

struct Fetcher {
    partitions: Arc<FetcherPartitions>,
    task: JoinHandle<()>,
}

/// Every replica on one node.
pub struct ReplicaManager {
    node: NodeId,
    config: ReplicationConfig,
    transport: Arc<dyn ReplicaTransport>,
    runtime: tokio::runtime::Handle,
    started: tokio::time::Instant,
    replicas: RwLock<HashMap<TopicPartition, Arc<PartitionReplica>>>,
    fetchers: Mutex<HashMap<NodeId, Fetcher>>,
    /// Which leader's fetcher each followed partition is in.
    following: Mutex<HashMap<TopicPartition, NodeId>>,
    /// Shared by every fetcher for the replicas a reassignment adds.
    throttle: Option<Arc<Throttle>>,
}

impl std::fmt::Debug for ReplicaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaManager")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl ReplicaManager {
    /// A manager for `node`. Must be called inside a Tokio runtime (fetchers run on it).
    pub fn new(
        node: NodeId,
        config: ReplicationConfig,
        transport: Arc<dyn ReplicaTransport>,
    ) -> Result<Arc<ReplicaManager>, ReplicationError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| ReplicationError::NoRuntime)?;
        let throttle = config
            .reassignment_throttle
            .map(|rate| Arc::new(Throttle::new(rate)));
        Ok(Arc::new(ReplicaManager {
            node,
            config,
            transport,
            runtime,
            started: tokio::time::Instant::now(),
            replicas: RwLock::new(HashMap::new()),
            fetchers: Mutex::new(HashMap::new()),
            following: Mutex::new(HashMap::new()),
            throttle,
        }))
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    pub fn config(&self) -> &ReplicationConfig {
        &self.config
    }

    /// Milliseconds on this manager's monotonic clock (what `now` means in its calls).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Registers the replica of `tp` over `log` (no role until told one).
    pub fn add_partition(
        &self,
        tp: TopicPartition,
        log: Arc<Mutex<PartitionLog>>,
        min_insync: usize,
    ) -> Arc<PartitionReplica> {
        let replica = Arc::new(PartitionReplica::new(
            tp.clone(),
            self.node,
            log,
            min_insync,
            self.config.replica_lag_time_max,
        ));
        self.replicas
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tp, Arc::clone(&replica));
        replica
    }

    /// Stops and forgets the replica of `tp` (its log is the caller's).
    pub fn remove_partition(&self, tp: &TopicPartition) {
        let removed = self
            .replicas
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tp);
        if let Some(r) = removed {
            r.stop();
        }
        self.unfollow(tp);
    }

    pub fn partition(&self, tp: &TopicPartition) -> Option<Arc<PartitionReplica>> {
        self.replicas
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tp)
            .cloned()
    }

    fn replica(&self, tp: &TopicPartition) -> Result<Arc<PartitionReplica>, ReplicationError> {
        self.partition(tp)
            .ok_or_else(|| ReplicationError::UnknownPartition(tp.clone()))
    }

    /// Applies the controller's decision for `tp`: leader here, or follower of another node.
    pub fn apply_leadership(
        &self,
        tp: &TopicPartition,
        change: &LeaderAndIsr,
    ) -> Result<(), ReplicationError> {
        if change.leader == self.node {
            self.become_leader(tp, change)
        } else {
            self.become_follower(tp, change.leader, change.leader_epoch)
        }
    }

    /// Makes this node the leader of `tp` at `change.leader_epoch`.
    pub fn become_leader(
        &self,
        tp: &TopicPartition,
        change: &LeaderAndIsr,
    ) -> Result<(), ReplicationError> {
        let replica = self.replica(tp)?;
        replica.become_leader(change, self.now_ms())?;
        self.unfollow(tp);
        Ok(())
    }

    /// Makes this node a follower of `leader` for `tp` at `epoch`, fetching from it.
    pub fn become_follower(
        &self,
        tp: &TopicPartition,
        leader: NodeId,
        epoch: i32,
    ) -> Result<(), ReplicationError> {
        let replica = self.replica(tp)?;
        replica.become_follower(leader, epoch)?;
        let previous = self
            .following
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tp.clone(), leader);
        if let Some(old) = previous.filter(|old| *old != leader) {
            self.leave_fetcher(old, tp);
        }
        let mut fetchers = self.fetchers.lock().unwrap_or_else(PoisonError::into_inner);
        let fetcher = fetchers.entry(leader).or_insert_with(|| {
            let partitions = Arc::new(FetcherPartitions::default());
            let task = self.runtime.spawn(fetcher::run(
                self.node,
                leader,
                Arc::clone(&partitions),
                Arc::clone(&self.transport),
                self.config.clone(),
                self.throttle.clone(),
            ));
            Fetcher { partitions, task }
        });
        fetcher.partitions.insert(replica);
        Ok(())
    }

    fn unfollow(&self, tp: &TopicPartition) {
        let old = self
            .following
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tp);
        if let Some(old) = old {
            self.leave_fetcher(old, tp);
        }
    }

    fn leave_fetcher(&self, leader: NodeId, tp: &TopicPartition) {
        let mut fetchers = self.fetchers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = fetchers.get(&leader)
            && f.partitions.remove(tp)
            && let Some(f) = fetchers.remove(&leader)
        {
            f.task.abort();
        }
    }

    /// Installs an in-sync set the controller committed for `tp` under `leader_epoch`.
    pub fn apply_isr(
        &self,
        tp: &TopicPartition,
        leader_epoch: i32,
        isr: &[NodeId],
    ) -> Result<(), ReplicationError> {
        self.replica(tp)?
            .apply_isr(leader_epoch, isr, self.now_ms())
    }

    /// A snapshot of every replica on this node (the map's lock is not held after).
    fn all_replicas(&self) -> Vec<Arc<PartitionReplica>> {
        self.replicas
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Every replica on this node with its status, sorted by partition (for `GET /v1/cluster`
    /// and metrics; blocking: each status takes the replica's state and log locks).
    pub fn statuses(&self) -> Vec<(TopicPartition, ReplicaStatus)> {
        let replicas = self.all_replicas();
        let mut out: Vec<(TopicPartition, ReplicaStatus)> = replicas
            .iter()
            .map(|r| (r.topic_partition().clone(), r.status()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The in-sync set changes this node's leaders want now (for the controller).
    pub fn isr_changes_wanted(&self) -> Vec<(TopicPartition, IsrProposal)> {
        let now = self.now_ms();
        let replicas = self.all_replicas();
        replicas
            .iter()
            .filter_map(|r| {
                r.isr_change_wanted(now)
                    .map(|p| (r.topic_partition().clone(), p))
            })
            .collect()
    }

    /// Answers a follower's fetch as the leader of its partitions. When nothing new is to be
    /// sent (no records, no error, no divergence, no newer high watermark) the answer waits
    /// until a partition's log or high watermark changes, at most `max_wait_ms` (capped by
    /// the config), then answers once more. Partitions are capped at the configured number.
    pub async fn serve_fetch(&self, request: FetchRequest) -> FetchResponse {
        let mut parts = request.partitions;
        parts.truncate(self.config.fetch_max_partitions);
        let replicas: Vec<Option<Arc<PartitionReplica>>> =
            parts.iter().map(|p| self.partition(&p.tp)).collect();
        let mut watchers: Vec<_> = replicas.iter().flatten().map(|r| r.subscribe()).collect();
        for w in &mut watchers {
            w.borrow_and_update();
        }
        let max_wait = Duration::from_millis(request.max_wait_ms).min(self.config.fetch_max_wait);
        let deadline = tokio::time::Instant::now() + max_wait;
        let follower = request.replica_id;
        let budget = self.config.fetch_response_max_bytes;
        let parts = Arc::new(parts);
        let replicas = Arc::new(replicas);
        loop {
            let now = self.now_ms();
            let (p, r) = (Arc::clone(&parts), Arc::clone(&replicas));
            let answer = tokio::task::spawn_blocking(move || {
                let mut budget = budget;
                p.iter()
                    .zip(r.iter())
                    .map(|(part, replica)| match replica {
                        None => PartitionFetchResponse {
                            tp: part.tp.clone(),
                            result: Err(FetchError::UnknownTopicOrPartition),
                        },
                        Some(replica) => {
                            let mut part = part.clone();
                            part.max_bytes = part.max_bytes.min(budget).max(1);
                            let resp = replica.serve_fetch(follower, &part, now);
                            if let Ok(d) = &resp.result {
                                budget = budget.saturating_sub(d.records.len());
                            }
                            resp
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            let answer = match answer {
                Ok(a) => a,
                Err(e) => parts
                    .iter()
                    .map(|p| PartitionFetchResponse {
                        tp: p.tp.clone(),
                        result: Err(FetchError::Storage(e.to_string())),
                    })
                    .collect(),
            };
            let worth_sending = answer
                .iter()
                .zip(parts.iter())
                .any(|(a, p)| match &a.result {
                    Err(_) => true,
                    Ok(d) => {
                        !d.records.is_empty()
                            || d.diverging_epoch.is_some()
                            || d.high_watermark > p.high_watermark
                    }
                });
            if worth_sending || tokio::time::Instant::now() >= deadline || watchers.is_empty() {
                return FetchResponse { partitions: answer };
            }
            let changed = futures_util::future::select_all(
                watchers.iter_mut().map(|w| Box::pin(w.changed())),
            );
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                // One more pass at the deadline picks up nothing new but the latest state.
                continue;
            }
        }
    }

    /// Stops every fetcher (replicas keep their state).
    pub fn shutdown(&self) {
        let mut fetchers = self.fetchers.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, f) in fetchers.drain() {
            f.task.abort();
        }
        self.following
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Drop for ReplicaManager {
    fn drop(&mut self) {
        self.shutdown();
    }
}

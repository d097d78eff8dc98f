//! A follower's fetcher for one leader node: one task that fetches, for every partition this
//! node follows on that leader, in one request at a time over a [`ReplicaTransport`], and
//! hands each partition's answer to its [`PartitionReplica`] (which truncates or appends).
//! It owns the loop, its pacing and back-off (and the replication throttle's share for the
//! replicas a reassignment adds); it decides nothing about logs or roles.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::future::BoxFuture;
use tokio::sync::Notify;

use super::messages::{FetchRequest, FetchResponse, TopicPartition};
use super::replica::{FollowerOutcome, PartitionReplica};
use super::throttle::Throttle;
use super::{ReplicationConfig, TransportError};
use crate::cluster::NodeId;

/// How a follower reaches a leader: the RPC layer's client in a real node, the simulated
/// network in tests. A fetch may take up to the request's `max_wait_ms` on the leader.
pub trait ReplicaTransport: Send + Sync + 'static {
    fn fetch(
        &self,
        leader: NodeId,
        request: FetchRequest,
    ) -> BoxFuture<'_, Result<FetchResponse, TransportError>>;
}

/// The partitions one fetcher serves, shared with the manager that adds and removes them.
#[derive(Debug, Default)]
pub(super) struct FetcherPartitions {
    partitions: Mutex<BTreeMap<TopicPartition, Arc<PartitionReplica>>>,
    changed: Notify,
}

impl FetcherPartitions {
    pub(super) fn insert(&self, replica: Arc<PartitionReplica>) {
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(replica.topic_partition().clone(), replica);
        self.changed.notify_one();
    }

    pub(super) fn remove(&self, tp: &TopicPartition) -> bool {
        let mut p = self
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        p.remove(tp);
        p.is_empty()
    }

    fn snapshot(&self) -> Vec<Arc<PartitionReplica>> {
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

/// Runs the fetch loop for `leader` until aborted.
pub(super) async fn run(
    node: NodeId,
    leader: NodeId,
    partitions: Arc<FetcherPartitions>,
    transport: Arc<dyn ReplicaTransport>,
    config: ReplicationConfig,
    throttle: Option<Arc<Throttle>>,
) {
    loop {
        let replicas = partitions.snapshot();
        // What the throttled replicas may fetch in this round, in all.
        let mut allowance = throttle.as_ref().map(|t| t.available());
        let mut by_tp = BTreeMap::new();
        let mut request = FetchRequest {
            replica_id: node,
            max_wait_ms: config.fetch_max_wait.as_millis() as u64,
            partitions: Vec::new(),
        };
        for r in replicas {
            if request.partitions.len() >= config.fetch_max_partitions {
                break;
            }
            let mut max_bytes = config.fetch_partition_max_bytes;
            if r.is_throttled()
                && let Some(left) = allowance.as_mut()
            {
                if *left == 0 {
                    continue;
                }
                max_bytes = max_bytes.min(*left);
                *left -= max_bytes;
            }
            if let Some(p) = r.follower_fetch(leader, max_bytes) {
                by_tp.insert(p.tp.clone(), (r, p.clone()));
                request.partitions.push(p);
            }
        }
        if request.partitions.is_empty() {
            // Nothing to fetch now: wait for a partition to be added (or a role to change).
            let _ = tokio::time::timeout(config.fetch_backoff, partitions.changed.notified()).await;
            continue;
        }
        let answer = tokio::time::timeout(config.fetch_timeout, transport.fetch(leader, request));
        let response = match answer.await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(node, leader, error = %e, "replica fetch failed");
                tokio::time::sleep(config.fetch_backoff).await;
                continue;
            }
            Err(_) => {
                tracing::debug!(node, leader, "replica fetch timed out");
                tokio::time::sleep(config.fetch_backoff).await;
                continue;
            }
        };
        let mut answered = Vec::with_capacity(response.partitions.len());
        for part in response.partitions {
            let Some((replica, req)) = by_tp.remove(&part.tp) else {
                continue;
            };
            if let (Some(t), Ok(data)) = (&throttle, &part.result)
                && replica.is_throttled()
            {
                t.spend(data.records.len());
            }
            answered.push((replica, req, part.result));
        }
        // Every partition's answer applied in one blocking call (one hand-off to the blocking
        // pool and back, not one per partition); the next fetch, which tells the leader where
        // this follower now ends, is sent as soon as it returns.
        let applied = tokio::task::spawn_blocking(move || {
            answered
                .into_iter()
                .map(|(replica, req, result)| replica.apply_fetch(leader, &req, &result))
                .collect::<Vec<_>>()
        })
        .await;
        let mut progressed = false;
        match applied {
            Ok(outcomes) => {
                for outcome in outcomes {
                    match outcome {
                        Ok(FollowerOutcome::Appended | FollowerOutcome::Truncated(_)) => {
                            progressed = true
                        }
                        Ok(FollowerOutcome::Refused | FollowerOutcome::Stale) => {}
                        Err(e) => tracing::warn!(
                            node,
                            leader,
                            error = %e,
                            "applying a replica fetch failed"
                        ),
                    }
                }
            }
            Err(e) => tracing::warn!(node, leader, error = %e, "replica fetch task failed"),
        }
        if !progressed {
            tokio::time::sleep(config.fetch_backoff).await;
        }
    }
}

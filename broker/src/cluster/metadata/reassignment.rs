//! The state machine's side of moving replicas: [`MetadataCommand::ReassignPartition`],
//! [`MetadataCommand::CompleteReassignment`] and [`MetadataCommand::DecommissionNode`], as
//! further `impl` blocks of [`ClusterMetadata`] (pure, deterministic, validate-then-change,
//! like the rest of `apply`). The decisions of *what* to move live in `balance.rs`.
//!
//! A reassignment follows KIP-455 as KRaft runs it:
//! 1. `ReassignPartition` sets `replicas = target ++ removing`, `adding = target − old`,
//!    `removing = old − target` and bumps the partition epoch. Added replicas are followers
//!    outside the in-sync set; the leader (unchanged) adds each to the set through the usual
//!    `AlterPartition` once it has caught up, so nothing is ever acknowledged on the word of
//!    a replica that does not have it.
//! 2. `CompleteReassignment`, accepted only once every added replica is in the in-sync set,
//!    drops the removed replicas from `replicas` and the in-sync set (never emptying it) and,
//!    if the leader is removed, names the first target replica that is in sync and live
//!    under the next leader epoch (an election from the in-sync set, cluster invariant 7).
//!
//! At no point does the in-sync set hold a node that has not caught up, and the partition
//! always keeps at least the replicas it had: the replication factor is exceeded during a
//! move, never undercut.

use std::collections::BTreeSet;

use super::error::MetadataError;
use super::state::{ClusterMetadata, check_partition_epoch, normalized, partition_response};
use super::types::MetadataResponse;
use crate::cluster::NodeId;

impl ClusterMetadata {
    pub(super) fn decommission_node(
        &mut self,
        node: NodeId,
    ) -> Result<MetadataResponse, MetadataError> {
        let Some(state) = self.nodes.get(&node) else {
            return Err(if self.retired.contains(&node) {
                MetadataError::NodeRetired(node)
            } else {
                MetadataError::UnknownNode(node)
            });
        };
        if state.draining {
            return Ok(MetadataResponse::Done);
        }
        // Every topic must fit on the nodes that stay (not only the ones with a replica on
        // `node`: the replicas of nodes already draining need homes too, and a node that
        // holds nothing today may be the one they would move to).
        let staying = self
            .nodes
            .iter()
            .filter(|(id, n)| **id != node && !n.draining)
            .count();
        for (name, t) in &self.topics {
            if usize::from(t.replication_factor) > staying {
                return Err(MetadataError::CannotDecommission {
                    node,
                    reason: format!(
                        "topic '{name}' has replication factor {} and only {staying} other \
                         node(s) would remain; add a node first",
                        t.replication_factor
                    ),
                });
            }
        }
        if let Some(n) = self.nodes.get_mut(&node) {
            n.draining = true;
        }
        Ok(MetadataResponse::Done)
    }

    pub(super) fn reassign_partition(
        &mut self,
        topic: &str,
        partition: i32,
        partition_epoch: i32,
        target: &[NodeId],
    ) -> Result<MetadataResponse, MetadataError> {
        let assignable: BTreeSet<NodeId> = self.assignable_nodes().collect();
        let rf = self
            .topics
            .get(topic)
            .map(|t| t.replication_factor)
            .ok_or_else(|| MetadataError::UnknownTopic(topic.to_string()))?;
        let (_, state) = self.partition_mut(topic, partition)?;
        check_partition_epoch(topic, partition, state, partition_epoch)?;
        if state.reassigning() {
            return Err(MetadataError::ReassignmentInProgress {
                topic: topic.to_string(),
                partition,
            });
        }
        let bad = |reason: String| {
            MetadataError::InvalidAssignment(format!("{topic}/{partition}: {reason}"))
        };
        if target.len() != usize::from(rf) {
            return Err(bad(format!(
                "the target names {} replicas, the replication factor is {rf}",
                target.len()
            )));
        }
        if normalized(target).is_none() {
            return Err(bad("the target names a node twice".into()));
        }
        let adding: Vec<NodeId> = target
            .iter()
            .copied()
            .filter(|n| !state.replicas.contains(n))
            .collect();
        if let Some(n) = adding.iter().find(|n| !assignable.contains(n)) {
            return Err(bad(format!(
                "node {n} is not a live registered node that takes replicas"
            )));
        }
        let removing: Vec<NodeId> = state
            .replicas
            .iter()
            .copied()
            .filter(|n| !target.contains(n))
            .collect();
        state.replicas = target.iter().chain(&removing).copied().collect();
        state.adding = adding;
        state.removing = removing;
        state.partition_epoch = state.partition_epoch.saturating_add(1);
        Ok(partition_response(state))
    }

    pub(super) fn complete_reassignment(
        &mut self,
        topic: &str,
        partition: i32,
        partition_epoch: i32,
    ) -> Result<MetadataResponse, MetadataError> {
        let live: BTreeSet<NodeId> = self.live_nodes().collect();
        let (_, state) = self.partition_mut(topic, partition)?;
        let refuse = |reason: String| MetadataError::CannotCompleteReassignment {
            topic: topic.to_string(),
            partition,
            reason,
        };
        check_partition_epoch(topic, partition, state, partition_epoch)?;
        if !state.reassigning() {
            return Err(refuse("no reassignment is in progress".into()));
        }
        if let Some(n) = state.adding.iter().find(|n| !state.isr.contains(n)) {
            return Err(refuse(format!(
                "the added replica {n} has not joined the in-sync set yet"
            )));
        }
        let replicas: Vec<NodeId> = state.target_replicas().collect();
        let isr: Vec<NodeId> = state
            .isr
            .iter()
            .copied()
            .filter(|n| !state.removing.contains(n))
            .collect();
        if isr.is_empty() {
            return Err(refuse(
                "no replica of the target is in the in-sync set".into(),
            ));
        }
        let leader = match state.leader {
            Some(l) if !state.removing.contains(&l) => Some(l),
            Some(_) => {
                let next = replicas
                    .iter()
                    .copied()
                    .find(|r| isr.contains(r) && live.contains(r));
                match next {
                    Some(n) => Some(n),
                    None => {
                        return Err(refuse(
                            "the leader is removed and no target replica is in sync and live"
                                .into(),
                        ));
                    }
                }
            }
            None => None,
        };
        if leader != state.leader {
            state.leader_epoch = state.leader_epoch.saturating_add(1);
        }
        state.leader = leader;
        state.replicas = replicas;
        state.isr = isr;
        state.adding.clear();
        state.removing.clear();
        state.partition_epoch = state.partition_epoch.saturating_add(1);
        Ok(partition_response(state))
    }
}

//! The controller's decisions of which replicas to move, as pure functions of the applied
//! [`ClusterMetadata`] (no I/O, no clock; ties broken by node id, topic and partition so
//! replays choose the same): reassignments off decommissioned (draining) nodes, reassignments
//! that even out replica counts after a node joins, the completions of reassignments whose
//! added replicas have caught up, which drained nodes may leave, and the balancing of
//! leaderships (replica lists reordered so each node is preferred leader of its share, then
//! preferred-leader elections). The state machine re-checks each command when it is applied
//! (`reassignment.rs`, `state.rs`).
//!
//! Rules:
//! - at most `max_in_flight` partitions are being reassigned at once (each move copies a
//!   partition to a new node; the copies share the replication throttle);
//! - a move replaces one replica by the node holding the fewest replicas among the nodes
//!   that take replicas (live, not draining) and are not replicas of the partition yet, in
//!   the same position in the replica list;
//! - rebalancing runs only while every registered node is live and none is draining: a node
//!   that is down for a while keeps its replicas (it catches up when it returns, as in
//!   Kafka), and a decommission is not raced by balancing moves;
//! - counts are balanced when the most and the fewest replicas differ by at most one;
//! - leaderships are balanced only on a [`settled`] cluster (the controller also waits until
//!   it has been settled for a while, so a failed-over leadership does not bounce back at
//!   once): first the preferred leaders (first replicas) are spread within one of each other
//!   by swapping an in-sync replica to the front, then each partition whose preferred replica
//!   is live and in sync but not leading elects it (as Kafka's automatic preferred-leader
//!   election does).

use std::collections::BTreeMap;

use super::state::{ClusterMetadata, PartitionState};
use super::types::MetadataCommand;
use crate::cluster::NodeId;

/// Partitions reassigned at once, by default.
pub const DEFAULT_MAX_MOVES_IN_FLIGHT: usize = 4;

/// How many partitions are being reassigned now.
pub fn moves_in_flight(meta: &ClusterMetadata) -> usize {
    partitions(meta).filter(|(_, _, p)| p.reassigning()).count()
}

fn partitions(meta: &ClusterMetadata) -> impl Iterator<Item = (&String, i32, &PartitionState)> {
    meta.topics.iter().flat_map(|(name, t)| {
        t.partitions
            .iter()
            .enumerate()
            .map(move |(i, p)| (name, i as i32, p))
    })
}

/// Replicas each node that takes replicas will hold once the moves in flight are done.
fn replica_counts(meta: &ClusterMetadata) -> BTreeMap<NodeId, usize> {
    let mut counts: BTreeMap<NodeId, usize> = meta.assignable_nodes().map(|n| (n, 0)).collect();
    for (_, _, p) in partitions(meta) {
        for r in p.target_replicas() {
            if let Some(c) = counts.get_mut(&r) {
                *c += 1;
            }
        }
    }
    counts
}

/// The node with the fewest replicas in `counts` that is not in `exclude` (ties: lowest id).
fn least_loaded(counts: &BTreeMap<NodeId, usize>, exclude: &[NodeId]) -> Option<NodeId> {
    counts
        .iter()
        .filter(|(n, _)| !exclude.contains(n))
        .min_by_key(|(n, c)| (**c, **n))
        .map(|(n, _)| *n)
}

fn reassign(
    topic: &str,
    partition: i32,
    p: &PartitionState,
    from: NodeId,
    to: NodeId,
) -> MetadataCommand {
    MetadataCommand::ReassignPartition {
        topic: topic.to_string(),
        partition,
        partition_epoch: p.partition_epoch,
        target: p
            .replicas
            .iter()
            .map(|&r| if r == from { to } else { r })
            .collect(),
    }
}

/// Completions of reassignments whose added replicas are all in the in-sync set (and whose
/// partition has a leader), as one batch; `None` if there is none.
pub fn completion_commands(meta: &ClusterMetadata) -> Option<MetadataCommand> {
    let commands: Vec<MetadataCommand> = partitions(meta)
        .filter(|(_, _, p)| {
            p.reassigning() && p.leader.is_some() && p.adding.iter().all(|n| p.isr.contains(n))
        })
        .filter(|(_, _, p)| {
            // A removed leader needs a target replica in sync and live to hand over to.
            p.leader.is_some_and(|l| !p.removing.contains(&l))
                || p.target_replicas()
                    .any(|r| p.isr.contains(&r) && meta.is_live(r))
        })
        .map(
            |(topic, partition, p)| MetadataCommand::CompleteReassignment {
                topic: topic.clone(),
                partition,
                partition_epoch: p.partition_epoch,
            },
        )
        .collect();
    (!commands.is_empty()).then_some(MetadataCommand::Batch { commands })
}

/// Reassignments moving replicas off draining nodes, at most `max_in_flight` partitions in
/// flight in all; empty when none can start (nothing to move, no room, or no node to take
/// a replica).
pub fn decommission_moves(meta: &ClusterMetadata, max_in_flight: usize) -> Vec<MetadataCommand> {
    let draining: Vec<NodeId> = meta
        .nodes
        .iter()
        .filter(|(_, n)| n.draining)
        .map(|(&id, _)| id)
        .collect();
    if draining.is_empty() {
        return Vec::new();
    }
    let mut room = max_in_flight.saturating_sub(moves_in_flight(meta));
    let mut counts = replica_counts(meta);
    let mut out = Vec::new();
    for (topic, partition, p) in partitions(meta) {
        if room == 0 {
            break;
        }
        if p.reassigning() {
            continue;
        }
        let Some(&from) = p.replicas.iter().find(|r| draining.contains(r)) else {
            continue;
        };
        let Some(to) = least_loaded(&counts, &p.replicas) else {
            continue;
        };
        *counts.entry(to).or_default() += 1;
        out.push(reassign(topic, partition, p, from, to));
        room -= 1;
    }
    out
}

/// Reassignments that even out the replica counts (after a node joined), at most
/// `max_in_flight` partitions in flight in all; empty when balanced or when a registered
/// node is fenced or draining. A partition whose leader is on the most loaded node is moved
/// last (moving a follower changes no leadership).
pub fn rebalance_moves(meta: &ClusterMetadata, max_in_flight: usize) -> Vec<MetadataCommand> {
    if meta.nodes.values().any(|n| n.fenced || n.draining) || meta.nodes.len() < 2 {
        return Vec::new();
    }
    let mut room = max_in_flight.saturating_sub(moves_in_flight(meta));
    let mut counts = replica_counts(meta);
    let mut moved: Vec<(&String, i32)> = Vec::new();
    let mut out = Vec::new();
    while room > 0 {
        let Some((&hi, &most)) = counts
            .iter()
            .max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n)))
        else {
            break;
        };
        let Some((&lo, &fewest)) = counts.iter().min_by_key(|(n, c)| (**c, **n)) else {
            break;
        };
        if most <= fewest + 1 {
            break;
        }
        let candidates: Vec<_> = partitions(meta)
            .filter(|(topic, partition, p)| {
                !p.reassigning()
                    && p.replicas.contains(&hi)
                    && !p.replicas.contains(&lo)
                    && !moved.contains(&(*topic, *partition))
            })
            .collect();
        let pick = candidates
            .iter()
            .find(|(_, _, p)| p.leader != Some(hi))
            .or_else(|| candidates.first())
            .copied();
        let Some((topic, partition, p)) = pick else {
            break;
        };
        if let Some(c) = counts.get_mut(&hi) {
            *c -= 1;
        }
        if let Some(c) = counts.get_mut(&lo) {
            *c += 1;
        }
        moved.push((topic, partition));
        out.push(reassign(topic, partition, p, hi, lo));
        room -= 1;
    }
    out
}

/// Draining nodes that hold no replica and own no task any more: ready to leave the quorum
/// and unregister.
pub fn drained_nodes(meta: &ClusterMetadata) -> Vec<NodeId> {
    meta.nodes
        .iter()
        .filter(|(id, n)| {
            n.draining
                && !partitions(meta).any(|(_, _, p)| p.replicas.contains(id))
                && meta.owned_tasks(**id).next().is_none()
        })
        .map(|(&id, _)| id)
        .collect()
}

/// Whether nothing is moving, failing or out of sync: every registered node live and not
/// draining, no partition reassigning or without a leader, every in-sync set full.
pub fn settled(meta: &ClusterMetadata) -> bool {
    meta.nodes.values().all(|n| !n.fenced && !n.draining)
        && partitions(meta).all(|(_, _, p)| {
            !p.reassigning() && p.leader.is_some() && p.isr.len() == p.replicas.len()
        })
}

/// Reorderings of replica lists (the same replicas, another first one) that even out how
/// many partitions prefer each node as leader, as reassignments that complete at once (no
/// copy: the set is unchanged); at most `max`. Only a replica in the in-sync set is moved to
/// the front. Empty unless [`settled`].
pub fn preferred_reorders(meta: &ClusterMetadata, max: usize) -> Vec<MetadataCommand> {
    if !settled(meta) {
        return Vec::new();
    }
    let mut preferred: BTreeMap<NodeId, usize> = meta.assignable_nodes().map(|n| (n, 0)).collect();
    for (_, _, p) in partitions(meta) {
        if let Some(c) = p.replicas.first().and_then(|f| preferred.get_mut(f)) {
            *c += 1;
        }
    }
    let mut touched: Vec<(&String, i32)> = Vec::new();
    let mut out = Vec::new();
    while out.len() < max {
        let Some((&hi, &most)) = preferred
            .iter()
            .max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n)))
        else {
            break;
        };
        // The least preferred node that can take over one of `hi`'s partitions.
        let mut candidates: Vec<(NodeId, usize)> = preferred
            .iter()
            .filter(|(n, c)| **c + 1 < most && **n != hi)
            .map(|(n, c)| (*n, *c))
            .collect();
        candidates.sort_by_key(|(n, c)| (*c, *n));
        let pick = candidates.iter().find_map(|(lo, _)| {
            partitions(meta)
                .find(|(topic, partition, p)| {
                    p.replicas.first() == Some(&hi)
                        && p.replicas.contains(lo)
                        && p.isr.contains(lo)
                        && !touched.contains(&(*topic, *partition))
                })
                .map(|found| (*lo, found))
        });
        let Some((lo, (topic, partition, p))) = pick else {
            break;
        };
        let target: Vec<NodeId> = p
            .replicas
            .iter()
            .map(|&r| match r {
                r if r == hi => lo,
                r if r == lo => hi,
                r => r,
            })
            .collect();
        out.push(MetadataCommand::ReassignPartition {
            topic: topic.clone(),
            partition,
            partition_epoch: p.partition_epoch,
            target,
        });
        touched.push((topic, partition));
        if let Some(c) = preferred.get_mut(&hi) {
            *c -= 1;
        }
        if let Some(c) = preferred.get_mut(&lo) {
            *c += 1;
        }
    }
    out
}

/// Elections that give each partition back to its preferred leader (its first replica)
/// where that replica is live, in the in-sync set and not leading (Kafka's automatic
/// preferred-leader election), as one batch of at most `max`; `None` unless [`settled`] or
/// when every preferred replica leads.
pub fn preferred_leader_elections(meta: &ClusterMetadata, max: usize) -> Option<MetadataCommand> {
    if !settled(meta) {
        return None;
    }
    let commands: Vec<MetadataCommand> = partitions(meta)
        .filter_map(|(topic, partition, p)| {
            let preferred = *p.replicas.first()?;
            (p.leader != Some(preferred) && meta.is_live(preferred) && p.isr.contains(&preferred))
                .then(|| MetadataCommand::ElectLeader {
                    topic: topic.clone(),
                    partition,
                    leader: Some(preferred),
                    leader_epoch: p.leader_epoch.saturating_add(1),
                    isr: p.isr.clone(),
                })
        })
        .take(max)
        .collect();
    (!commands.is_empty()).then_some(MetadataCommand::Batch { commands })
}

//! The controller's decisions as pure functions of the applied [`ClusterMetadata`]: where a
//! new topic's replicas go, which partitions a lost node leads, which leader each of them gets
//! next, and which broker sessions have expired. They turn state into [`MetadataCommand`]s;
//! nothing here proposes, does I/O or reads a clock (the caller passes `now`).
//!
//! A decision is taken on the controller's applied state and re-checked by the state machine
//! when it is applied: if the state moved in between (a concurrent in-sync-set change), the
//! epochs no longer match, the command is refused as a whole, and the controller decides
//! again on the newer state. Everything is deterministic (ties broken by node id), so tests
//! and replays see the same choices.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::error::MetadataError;
use super::state::{ClusterMetadata, MAX_PARTITIONS_PER_TOPIC, PartitionState};
use super::types::{CreateTopic, MetadataCommand, TopicConfig};
use crate::cluster::NodeId;

/// The replication factor of a topic that does not name one: min(3, live nodes that take
/// replicas).
pub fn default_replication_factor(meta: &ClusterMetadata) -> u16 {
    let live = meta.assignable_nodes().count();
    u16::try_from(live.min(3)).unwrap_or(3).max(1)
}

/// The `min_insync_replicas` of a topic that does not name one: min(2, rf).
pub fn default_min_insync(rf: u16) -> u16 {
    rf.clamp(1, 2)
}

/// Replica lists for `partitions` new partitions of `rf` replicas each over the live nodes,
/// preferred leader first. Balanced against the replicas and leaderships the live nodes
/// already hold: each partition's leader is the node leading least (then holding least), its
/// followers the nodes holding least (then leading most, which keeps the replica counts
/// within one of each other on a fresh cluster); ties go round-robin from the partition
/// number. Refuses `rf` above the number of live nodes.
pub fn assign_replicas(
    meta: &ClusterMetadata,
    partitions: i32,
    rf: u16,
) -> Result<Vec<Vec<NodeId>>, MetadataError> {
    let live: Vec<NodeId> = meta.assignable_nodes().collect();
    if rf == 0 || usize::from(rf) > live.len() {
        return Err(MetadataError::InvalidReplicationFactor {
            requested: rf,
            live: live.len(),
        });
    }
    if partitions <= 0 || partitions > MAX_PARTITIONS_PER_TOPIC {
        return Err(MetadataError::InvalidPartitions {
            partitions,
            max: MAX_PARTITIONS_PER_TOPIC,
        });
    }
    let mut leaders: HashMap<NodeId, usize> = live.iter().map(|&n| (n, 0)).collect();
    let mut replicas: HashMap<NodeId, usize> = leaders.clone();
    for p in meta.topics.values().flat_map(|t| &t.partitions) {
        if let Some(l) = p.leader.and_then(|l| leaders.get_mut(&l)) {
            *l += 1;
        }
        for r in &p.replicas {
            if let Some(c) = replicas.get_mut(r) {
                *c += 1;
            }
        }
    }
    let n = live.len();
    let mut out = Vec::with_capacity(partitions as usize);
    for p in 0..partitions as usize {
        // Round-robin tie-break: position of the node counted from partition p's start slot.
        let rotation = |i: usize| (i + n - p % n) % n;
        let leader_idx = (0..n)
            .min_by_key(|&i| (leaders[&live[i]], replicas[&live[i]], rotation(i)))
            .unwrap_or(0);
        let mut chosen = vec![live[leader_idx]];
        while chosen.len() < usize::from(rf) {
            let next = (0..n)
                .filter(|&i| !chosen.contains(&live[i]))
                .min_by_key(|&i| {
                    let node = live[i];
                    (
                        replicas[&node],
                        std::cmp::Reverse(leaders[&node]),
                        (i + n - leader_idx) % n,
                    )
                })
                .map(|i| live[i]);
            match next {
                Some(node) => chosen.push(node),
                None => break,
            }
        }
        *leaders.entry(chosen[0]).or_default() += 1;
        for r in &chosen {
            *replicas.entry(*r).or_default() += 1;
        }
        out.push(chosen);
    }
    Ok(out)
}

/// What a caller asks for when creating a topic; `None` means the cluster default.
#[derive(Debug, Clone, Default)]
pub struct TopicRequest {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: Option<u16>,
    pub min_insync_replicas: Option<u16>,
    pub config: TopicConfig,
    pub internal_owner: Option<String>,
}

/// The [`MetadataCommand::CreateTopic`] for `req`, with defaults filled in and replicas
/// assigned by [`assign_replicas`].
pub fn create_topic_command(
    meta: &ClusterMetadata,
    req: &TopicRequest,
) -> Result<MetadataCommand, MetadataError> {
    let rf = req
        .replication_factor
        .unwrap_or_else(|| default_replication_factor(meta));
    let min_insync = req
        .min_insync_replicas
        .unwrap_or_else(|| default_min_insync(rf));
    let assignment = assign_replicas(meta, req.partitions, rf)?;
    Ok(MetadataCommand::CreateTopic(CreateTopic {
        name: req.name.clone(),
        replication_factor: rf,
        min_insync_replicas: min_insync,
        config: req.config.clone(),
        internal_owner: req.internal_owner.clone(),
        assignment,
    }))
}

/// The partitions `node` leads, in topic then partition order.
pub fn partitions_led_by(meta: &ClusterMetadata, node: NodeId) -> Vec<(String, i32)> {
    meta.topics
        .iter()
        .flat_map(|(name, t)| {
            t.partitions
                .iter()
                .enumerate()
                .filter(move |(_, p)| p.leader == Some(node))
                .map(move |(i, _)| (name.clone(), i as i32))
        })
        .collect()
}

/// The partitions without a leader (offline), in topic then partition order.
pub fn offline_partitions(meta: &ClusterMetadata) -> Vec<(String, i32)> {
    meta.topics
        .iter()
        .flat_map(|(name, t)| {
            t.partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.leader.is_none())
                .map(move |(i, _)| (name.clone(), i as i32))
        })
        .collect()
}

/// The leader and in-sync set a partition gets when `lost` (if any) is gone and only nodes
/// `live` may lead: the current leader if it is live and not lost; else the first replica (in
/// preference order) of the in-sync set that is live; else, if `unclean` is allowed, the
/// first live replica with an in-sync set of itself alone; else no leader. The lost node
/// leaves the in-sync set unless it is its last member (kept, as KRaft does, so that the set
/// still names who has every acknowledged record).
fn next_leadership(
    p: &PartitionState,
    lost: Option<NodeId>,
    is_live: impl Fn(NodeId) -> bool,
    unclean: bool,
) -> (Option<NodeId>, Vec<NodeId>) {
    let mut isr: Vec<NodeId> = p.isr.iter().copied().filter(|&n| Some(n) != lost).collect();
    if isr.is_empty() {
        isr = p.isr.clone();
    }
    let eligible = |n: NodeId| Some(n) != lost && is_live(n);
    if let Some(l) = p.leader.filter(|&l| eligible(l) && isr.contains(&l)) {
        return (Some(l), isr);
    }
    if let Some(&l) = p
        .replicas
        .iter()
        .find(|&&r| eligible(r) && isr.contains(&r))
    {
        return (Some(l), isr);
    }
    // Never a replica a reassignment is still adding: it may have nothing yet.
    if unclean
        && let Some(&l) = p
            .replicas
            .iter()
            .find(|&&r| eligible(r) && !p.adding.contains(&r))
    {
        return (Some(l), vec![l]);
    }
    (None, isr)
}

/// What the controller proposes when `node` loses its session or shuts down: one atomic
/// batch that fences it and, for every partition whose in-sync set holds it, elects a leader
/// under the next epoch ([`next_leadership`]) with the node out of the in-sync set.
pub fn fence_node_commands(meta: &ClusterMetadata, node: NodeId) -> MetadataCommand {
    let mut commands = vec![MetadataCommand::FenceNode { node }];
    let is_live = |n: NodeId| meta.is_live(n) && n != node;
    for (name, t) in &meta.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.leader != Some(node) && !p.isr.contains(&node) {
                continue;
            }
            let (leader, isr) =
                next_leadership(p, Some(node), is_live, t.config.unclean_leader_election);
            if leader == p.leader && isr == p.isr {
                continue;
            }
            commands.push(MetadataCommand::ElectLeader {
                topic: name.clone(),
                partition: i as i32,
                leader,
                leader_epoch: p.leader_epoch.saturating_add(1),
                isr,
            });
        }
    }
    MetadataCommand::Batch { commands }
}

/// Elections for partitions without a leader that now have an eligible replica (a node of
/// their in-sync set registered again), as one batch; `None` if there is none.
pub fn elect_offline_commands(meta: &ClusterMetadata) -> Option<MetadataCommand> {
    let mut commands = Vec::new();
    for (name, t) in &meta.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.leader.is_some() {
                continue;
            }
            let (leader, isr) = next_leadership(
                p,
                None,
                |n| meta.is_live(n),
                t.config.unclean_leader_election,
            );
            if leader.is_some() {
                commands.push(MetadataCommand::ElectLeader {
                    topic: name.clone(),
                    partition: i as i32,
                    leader,
                    leader_epoch: p.leader_epoch.saturating_add(1),
                    isr,
                });
            }
        }
    }
    (!commands.is_empty()).then_some(MetadataCommand::Batch { commands })
}

/// Broker sessions, kept in the controller's memory (not in the Raft log, as in KRaft): the
/// last heartbeat of each broker. A new controller starts every known broker's session afresh
/// ([`Sessions::reset`]), so a controller change never fences a broker by itself.
#[derive(Debug, Default, Clone)]
pub struct Sessions {
    last_seen: BTreeMap<NodeId, Instant>,
}

impl Sessions {
    pub fn new() -> Sessions {
        Sessions::default()
    }

    /// Every node in `nodes` is considered seen at `now` (on becoming controller).
    pub fn reset(&mut self, nodes: impl IntoIterator<Item = NodeId>, now: Instant) {
        self.last_seen = nodes.into_iter().map(|n| (n, now)).collect();
    }

    pub fn heartbeat(&mut self, node: NodeId, now: Instant) {
        self.last_seen.insert(node, now);
    }

    pub fn remove(&mut self, node: NodeId) {
        self.last_seen.remove(&node);
    }

    /// Whether `node` has a session (seen since this controller began).
    pub fn contains(&self, node: NodeId) -> bool {
        self.last_seen.contains_key(&node)
    }

    /// Whether `node` has a session whose last heartbeat is at most `timeout` before `now`.
    pub fn is_alive(&self, node: NodeId, now: Instant, timeout: Duration) -> bool {
        self.last_seen
            .get(&node)
            .is_some_and(|seen| now.saturating_duration_since(*seen) <= timeout)
    }

    /// The nodes whose last heartbeat is more than `timeout` before `now`.
    pub fn expired(&self, now: Instant, timeout: Duration) -> Vec<NodeId> {
        self.last_seen
            .iter()
            .filter(|(_, seen)| now.saturating_duration_since(**seen) > timeout)
            .map(|(&n, _)| n)
            .collect()
    }
}

//! [`ClusterMetadata`]: the state machine of the metadata plane — nodes, topics, and per
//! partition its replicas, leader, leader epoch, partition epoch and in-sync set, plus the
//! producer-id allocator. [`ClusterMetadata::apply`] is pure and deterministic: the same
//! commands in the same order give the same state on every node, and a command it refuses
//! changes nothing (the refusal is the committed outcome). No I/O, no clock, no randomness.
//!
//! What `apply` enforces (the cluster invariants it owns, numbered as in `cluster/mod.rs`):
//! - (3) a leader change names exactly the current leader epoch + 1, so epochs only increase
//!   and an epoch names at most one leader;
//! - (6) an in-sync-set change is accepted only from the current leader under the current
//!   leader epoch and partition epoch;
//! - (7) a leader is a replica in the in-sync set, registered and not fenced (outside the
//!   in-sync set only when the topic allows unclean election, and then the set becomes the
//!   leader alone);
//! - the in-sync set is a non-empty duplicate-free subset of the replicas and holds the leader;
//!   it only grows by live (unfenced) nodes;
//! - a replication factor above the number of live nodes is refused.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::error::MetadataError;
use super::types::{
    ArtifactRecord, COMMAND_FORMAT_VERSION, CreateTopic, FunctionRecord, MetadataCommand,
    MetadataResponse, NodeInfo, ProcessorRecord, SqlRecord, TaskAssignment, TopicConfig,
    VersionedCommand,
};
use crate::cluster::NodeId;

/// Producer ids handed out per [`MetadataCommand::AllocateProducerIds`] (KIP-730 uses 1000).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;
/// The most commands one [`MetadataCommand::Batch`] may hold.
pub const MAX_BATCH_COMMANDS: usize = 10_000;
/// The most partitions one topic may have (the HTTP and Kafka edges have their own, lower,
/// configurable caps; this one bounds what the log can be asked to hold).
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 100_000;

/// A broker known to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub info: NodeInfo,
    /// Fenced: lost its session or shut down; it leads nothing new and joins no in-sync set.
    pub fenced: bool,
    /// Being decommissioned: it gets no new replicas, the controller moves the ones it holds
    /// to other nodes, then removes it from the cluster ([`MetadataCommand::DecommissionNode`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
}

/// One partition's replication state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The replicas, preferred leader first.
    pub replicas: Vec<NodeId>,
    /// `None`: offline (no eligible replica).
    pub leader: Option<NodeId>,
    /// Bumped on every leader election (also when the same node is confirmed leader).
    pub leader_epoch: i32,
    /// Bumped on every change of this partition (election or in-sync-set change).
    pub partition_epoch: i32,
    /// The in-sync set (sorted by node id).
    pub isr: Vec<NodeId>,
    /// A reassignment in progress (KIP-455): replicas added by it that have not joined the
    /// in-sync set yet when it started (they are in `replicas` too)…
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<NodeId>,
    /// …and the replicas it removes once every added one is in the in-sync set (also still
    /// in `replicas`, after the target replicas).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<NodeId>,
}

impl PartitionState {
    /// Whether a reassignment of this partition is in progress.
    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas the partition keeps: all of them but those a reassignment removes.
    pub fn target_replicas(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
    }
}

/// A topic of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    /// Unique over the cluster's life (a deleted and recreated topic gets a new id): the log
    /// index of the command that created it.
    pub topic_id: u64,
    pub replication_factor: u16,
    pub min_insync_replicas: u16,
    pub config: TopicConfig,
    #[serde(default)]
    pub internal_owner: Option<String>,
    pub partitions: Vec<PartitionState>,
}

/// The cluster's metadata as applied from the Raft log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    /// The Raft log index of the last entry applied (0 before any): a version every node
    /// agrees on for the same prefix of the log.
    pub version: u64,
    pub nodes: BTreeMap<NodeId, NodeState>,
    pub topics: BTreeMap<String, TopicMetadata>,
    /// The first producer id of the next block.
    pub next_producer_id: i64,
    /// Users, tokens and ACLs (`--auth`), which every node's user store follows.
    #[serde(default)]
    pub auth: crate::auth::AuthData,
    /// Node ids that left the cluster for good ([`MetadataCommand::UnregisterNode`]); never
    /// registered again (cluster invariant 8).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub retired: BTreeSet<NodeId>,
    /// The engine's processors, by name (`catalog.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub processors: BTreeMap<String, ProcessorRecord>,
    /// The assignment of every processor's tasks: `tasks[name][p]` is task `p`'s. Written only
    /// by the controller's [`MetadataCommand::AssignTasks`] (`placement.rs` decides).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tasks: BTreeMap<String, Vec<TaskAssignment>>,
    /// The highest assignment epoch any task has had: a created processor's tasks start
    /// from it, so an epoch is never reused even by a processor deleted and created again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_task_epoch: u64,
    /// The cluster's user-defined functions, by (upper-case) name (`sql_catalog.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub functions: BTreeMap<String, FunctionRecord>,
    /// The SQL catalog's streams and tables, by name (`sql_catalog.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sql_sources: BTreeMap<String, SqlRecord>,
    /// The SQL catalog's persistent queries, by id (`sql_catalog.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sql_queries: BTreeMap<String, SqlRecord>,
    /// Uploaded artifacts, by name (`sql_catalog.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifacts: BTreeMap<String, ArtifactRecord>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ClusterMetadata {
    /// Nodes registered and not fenced.
    pub fn live_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes
            .iter()
            .filter(|(_, n)| !n.fenced)
            .map(|(&id, _)| id)
    }

    pub fn is_live(&self, node: NodeId) -> bool {
        self.nodes.get(&node).is_some_and(|n| !n.fenced)
    }

    /// Nodes that may receive new replicas: live and not being decommissioned.
    pub fn assignable_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes
            .iter()
            .filter(|(_, n)| !n.fenced && !n.draining)
            .map(|(&id, _)| id)
    }

    pub fn is_assignable(&self, node: NodeId) -> bool {
        self.nodes
            .get(&node)
            .is_some_and(|n| !n.fenced && !n.draining)
    }

    /// Task `partition` of `processor`'s assignment.
    pub fn task(&self, processor: &str, partition: i32) -> Option<&TaskAssignment> {
        let tasks = self.tasks.get(processor)?;
        usize::try_from(partition).ok().and_then(|p| tasks.get(p))
    }

    /// A partition's state.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        let t = self.topics.get(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get(p))
    }

    /// Applies the command of one log entry at `index`. A command in a newer format than this
    /// build understands is an `Err` of [`MetadataError::UnsupportedVersion`] that the caller
    /// must treat as fatal (skipping it would make this node's state diverge).
    pub fn apply_entry(
        &mut self,
        index: u64,
        entry: &VersionedCommand,
    ) -> Result<Result<MetadataResponse, MetadataError>, MetadataError> {
        if entry.version > COMMAND_FORMAT_VERSION {
            return Err(MetadataError::UnsupportedVersion {
                version: entry.version,
                supported: COMMAND_FORMAT_VERSION,
            });
        }
        self.version = index;
        Ok(self.apply(&entry.command))
    }

    /// Applies `cmd`: validates it against the current state and either changes the state
    /// and answers, or refuses it and changes nothing.
    pub fn apply(&mut self, cmd: &MetadataCommand) -> Result<MetadataResponse, MetadataError> {
        match cmd {
            MetadataCommand::Batch { commands } => {
                if commands.len() > MAX_BATCH_COMMANDS {
                    return Err(MetadataError::BatchTooLarge {
                        len: commands.len(),
                        max: MAX_BATCH_COMMANDS,
                    });
                }
                let mut next = self.clone();
                let mut responses = Vec::with_capacity(commands.len());
                for (index, c) in commands.iter().enumerate() {
                    if matches!(c, MetadataCommand::Batch { .. }) {
                        return Err(MetadataError::NestedBatch);
                    }
                    let r = next.apply_one(c).map_err(|e| MetadataError::InBatch {
                        index,
                        source: Box::new(e),
                    })?;
                    responses.push(r);
                }
                *self = next;
                Ok(MetadataResponse::Batch { responses })
            }
            other => self.apply_one(other),
        }
    }

    /// One non-batch command. Validates everything before changing anything.
    fn apply_one(&mut self, cmd: &MetadataCommand) -> Result<MetadataResponse, MetadataError> {
        match cmd {
            MetadataCommand::RegisterNode { node, info } => {
                if self.retired.contains(node) {
                    return Err(MetadataError::NodeRetired(*node));
                }
                let draining = self.nodes.get(node).is_some_and(|n| n.draining);
                self.nodes.insert(
                    *node,
                    NodeState {
                        info: info.clone(),
                        fenced: false,
                        draining,
                    },
                );
                Ok(MetadataResponse::Done)
            }
            MetadataCommand::FenceNode { node } => {
                let state = self
                    .nodes
                    .get_mut(node)
                    .ok_or(MetadataError::UnknownNode(*node))?;
                state.fenced = true;
                Ok(MetadataResponse::Done)
            }
            MetadataCommand::UnregisterNode { node } => {
                if !self.nodes.contains_key(node) {
                    return Err(MetadataError::UnknownNode(*node));
                }
                let holding = self
                    .topics
                    .values()
                    .flat_map(|t| &t.partitions)
                    .filter(|p| p.replicas.contains(node))
                    .count();
                if holding > 0 {
                    return Err(MetadataError::NodeInUse {
                        node: *node,
                        partitions: holding,
                    });
                }
                self.nodes.remove(node);
                self.retired.insert(*node);
                Ok(MetadataResponse::Done)
            }
            MetadataCommand::DecommissionNode { node } => self.decommission_node(*node),
            MetadataCommand::Auth { change } => match self.auth.apply(change) {
                Ok(crate::auth::AuthOutcome::Done) => Ok(MetadataResponse::Done),
                Ok(crate::auth::AuthOutcome::AclAdded(acl)) => {
                    Ok(MetadataResponse::AclAdded { acl })
                }
                Err(e) => Err(MetadataError::AuthRefused(e.to_string())),
            },
            MetadataCommand::ReassignPartition {
                topic,
                partition,
                partition_epoch,
                target,
            } => self.reassign_partition(topic, *partition, *partition_epoch, target),
            MetadataCommand::CompleteReassignment {
                topic,
                partition,
                partition_epoch,
            } => self.complete_reassignment(topic, *partition, *partition_epoch),
            MetadataCommand::CreateTopic(create) => self.create_topic(create),
            MetadataCommand::DeleteTopic { name } => {
                if self.topics.remove(name).is_none() {
                    return Err(MetadataError::UnknownTopic(name.clone()));
                }
                Ok(MetadataResponse::Done)
            }
            MetadataCommand::ElectLeader {
                topic,
                partition,
                leader,
                leader_epoch,
                isr,
            } => self.elect_leader(topic, *partition, *leader, *leader_epoch, isr),
            MetadataCommand::AlterPartition {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => self.alter_partition(
                topic,
                *partition,
                *leader,
                *leader_epoch,
                *partition_epoch,
                isr,
            ),
            MetadataCommand::AllocateProducerIds { node } => {
                if !self.nodes.contains_key(node) {
                    return Err(MetadataError::UnknownNode(*node));
                }
                let first = self.next_producer_id;
                let next = first
                    .checked_add(PRODUCER_ID_BLOCK_SIZE)
                    .ok_or(MetadataError::ProducerIdsExhausted)?;
                self.next_producer_id = next;
                Ok(MetadataResponse::ProducerIds {
                    first,
                    count: PRODUCER_ID_BLOCK_SIZE,
                })
            }
            MetadataCommand::UpsertProcessor {
                record,
                expected_version,
            } => self.upsert_processor(record, *expected_version),
            MetadataCommand::DeleteProcessor { name } => self.delete_processor(name),
            MetadataCommand::SetProcessorPaused { name, paused } => {
                self.set_processor_paused(name, *paused)
            }
            MetadataCommand::AssignTasks {
                processor,
                version,
                assignments,
            } => self.assign_tasks(processor, *version, assignments),
            MetadataCommand::ReleaseTask {
                processor,
                partition,
                epoch,
                node,
            } => self.release_task(processor, *partition, *epoch, *node),
            MetadataCommand::UpsertFunction { record, replace } => {
                self.upsert_function(record, *replace)
            }
            MetadataCommand::DeleteFunction { name } => self.delete_function(name),
            MetadataCommand::UpsertSqlSource { record } => self.upsert_sql_source(record),
            MetadataCommand::DeleteSqlSource { name } => self.delete_sql_source(name),
            MetadataCommand::UpsertSqlQuery { record } => self.upsert_sql_query(record),
            MetadataCommand::DeleteSqlQuery { id } => self.delete_sql_query(id),
            MetadataCommand::CreateSqlSource { record } => self.create_sql_source(record),
            MetadataCommand::CreateSqlQuery { record } => self.create_sql_query(record),
            MetadataCommand::PutArtifact { record } => self.put_artifact(record),
            MetadataCommand::Batch { .. } => Err(MetadataError::NestedBatch),
        }
    }

    fn create_topic(&mut self, c: &CreateTopic) -> Result<MetadataResponse, MetadataError> {
        crate::topic::validate_name(&c.name).map_err(|e| MetadataError::InvalidTopicName {
            name: c.name.clone(),
            reason: e.to_string(),
        })?;
        if self.topics.contains_key(&c.name) {
            return Err(MetadataError::TopicExists(c.name.clone()));
        }
        let partitions = c.assignment.len();
        if partitions == 0 || partitions > MAX_PARTITIONS_PER_TOPIC as usize {
            return Err(MetadataError::InvalidPartitions {
                partitions: i32::try_from(partitions).unwrap_or(i32::MAX),
                max: MAX_PARTITIONS_PER_TOPIC,
            });
        }
        let live = self.assignable_nodes().count();
        let rf = c.replication_factor;
        if rf == 0 || usize::from(rf) > live {
            return Err(MetadataError::InvalidReplicationFactor {
                requested: rf,
                live,
            });
        }
        if c.min_insync_replicas == 0 || c.min_insync_replicas > rf {
            return Err(MetadataError::InvalidMinInsync {
                requested: c.min_insync_replicas,
                rf,
            });
        }
        for (p, replicas) in c.assignment.iter().enumerate() {
            if replicas.len() != usize::from(rf) {
                return Err(MetadataError::InvalidAssignment(format!(
                    "partition {p} has {} replicas, the replication factor is {rf}",
                    replicas.len()
                )));
            }
            let distinct: BTreeSet<_> = replicas.iter().collect();
            if distinct.len() != replicas.len() {
                return Err(MetadataError::InvalidAssignment(format!(
                    "partition {p} names a node twice"
                )));
            }
            if let Some(bad) = replicas.iter().find(|&&n| !self.is_assignable(n)) {
                return Err(MetadataError::InvalidAssignment(format!(
                    "partition {p}: node {bad} is not a live registered node that takes replicas"
                )));
            }
        }
        let partitions = c
            .assignment
            .iter()
            .map(|replicas| {
                let mut isr = replicas.clone();
                isr.sort_unstable();
                PartitionState {
                    replicas: replicas.clone(),
                    leader: replicas.first().copied(),
                    leader_epoch: 0,
                    partition_epoch: 0,
                    isr,
                    adding: Vec::new(),
                    removing: Vec::new(),
                }
            })
            .collect();
        let topic_id = self.version;
        self.topics.insert(
            c.name.clone(),
            TopicMetadata {
                topic_id,
                replication_factor: rf,
                min_insync_replicas: c.min_insync_replicas,
                config: c.config.clone(),
                internal_owner: c.internal_owner.clone(),
                partitions,
            },
        );
        Ok(MetadataResponse::TopicCreated { topic_id })
    }

    pub(super) fn partition_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<(&TopicConfig, &mut PartitionState), MetadataError> {
        let t = self
            .topics
            .get_mut(topic)
            .ok_or_else(|| MetadataError::UnknownTopic(topic.to_string()))?;
        let unknown = || MetadataError::UnknownPartition {
            topic: topic.to_string(),
            partition,
        };
        let p = usize::try_from(partition).map_err(|_| unknown())?;
        let state = t.partitions.get_mut(p).ok_or_else(unknown)?;
        Ok((&t.config, state))
    }

    fn elect_leader(
        &mut self,
        topic: &str,
        partition: i32,
        leader: Option<NodeId>,
        leader_epoch: i32,
        isr: &[NodeId],
    ) -> Result<MetadataResponse, MetadataError> {
        let live: BTreeSet<NodeId> = self.live_nodes().collect();
        let (config, state) = self.partition_mut(topic, partition)?;
        if state.leader_epoch.checked_add(1) != Some(leader_epoch) {
            return Err(MetadataError::FencedLeaderEpoch {
                topic: topic.to_string(),
                partition,
                given: leader_epoch,
                current: state.leader_epoch,
            });
        }
        let bad_isr = |reason: String| MetadataError::InvalidIsr {
            topic: topic.to_string(),
            partition,
            reason,
        };
        let new_isr = normalized(isr).ok_or_else(|| bad_isr("names a node twice".into()))?;
        let mut unclean = false;
        if let Some(node) = leader {
            let ineligible = |reason: &str| MetadataError::IneligibleLeader {
                topic: topic.to_string(),
                partition,
                node,
                reason: reason.to_string(),
            };
            if !state.replicas.contains(&node) {
                return Err(ineligible("not a replica"));
            }
            if !live.contains(&node) {
                return Err(ineligible("not a live registered node"));
            }
            if !state.isr.contains(&node) {
                if !config.unclean_leader_election {
                    return Err(ineligible(
                        "not in the in-sync set and the topic does not allow unclean election",
                    ));
                }
                unclean = true;
            }
            if !new_isr.contains(&node) {
                return Err(bad_isr(format!("does not hold the leader {node}")));
            }
        }
        if unclean {
            if new_isr.len() != 1 {
                return Err(bad_isr(
                    "an unclean election resets the in-sync set to the leader alone".into(),
                ));
            }
        } else {
            if new_isr.is_empty() {
                return Err(bad_isr("is empty".into()));
            }
            if let Some(n) = new_isr.iter().find(|n| !state.isr.contains(n)) {
                return Err(bad_isr(format!(
                    "an election may only shrink it, and node {n} is not in it"
                )));
            }
        }
        state.leader = leader;
        state.leader_epoch = leader_epoch;
        state.partition_epoch = state.partition_epoch.saturating_add(1);
        state.isr = new_isr;
        Ok(partition_response(state))
    }

    fn alter_partition(
        &mut self,
        topic: &str,
        partition: i32,
        leader: NodeId,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[NodeId],
    ) -> Result<MetadataResponse, MetadataError> {
        let live: BTreeSet<NodeId> = self.live_nodes().collect();
        let (_, state) = self.partition_mut(topic, partition)?;
        if leader_epoch != state.leader_epoch {
            return Err(MetadataError::FencedLeaderEpoch {
                topic: topic.to_string(),
                partition,
                given: leader_epoch,
                current: state.leader_epoch,
            });
        }
        if state.leader != Some(leader) {
            return Err(MetadataError::NotLeader {
                topic: topic.to_string(),
                partition,
                node: leader,
                leader: state.leader,
            });
        }
        check_partition_epoch(topic, partition, state, partition_epoch)?;
        let bad_isr = |reason: String| MetadataError::InvalidIsr {
            topic: topic.to_string(),
            partition,
            reason,
        };
        let new_isr = normalized(isr).ok_or_else(|| bad_isr("names a node twice".into()))?;
        if !new_isr.contains(&leader) {
            return Err(bad_isr(format!("does not hold the leader {leader}")));
        }
        if let Some(n) = new_isr.iter().find(|n| !state.replicas.contains(n)) {
            return Err(bad_isr(format!("node {n} is not a replica")));
        }
        if let Some(n) = new_isr
            .iter()
            .find(|n| !state.isr.contains(n) && !live.contains(n))
        {
            return Err(bad_isr(format!("node {n} is fenced and may not join it")));
        }
        state.isr = new_isr;
        state.partition_epoch = state.partition_epoch.saturating_add(1);
        Ok(partition_response(state))
    }
}

/// Refuses a change decided on another version of the partition than the current one.
pub(super) fn check_partition_epoch(
    topic: &str,
    partition: i32,
    state: &PartitionState,
    given: i32,
) -> Result<(), MetadataError> {
    if given != state.partition_epoch {
        return Err(MetadataError::StalePartitionEpoch {
            topic: topic.to_string(),
            partition,
            given,
            current: state.partition_epoch,
        });
    }
    Ok(())
}

pub(super) fn partition_response(state: &PartitionState) -> MetadataResponse {
    MetadataResponse::Partition {
        leader: state.leader,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        isr: state.isr.clone(),
    }
}

/// `isr` sorted, or `None` if it names a node twice.
pub(super) fn normalized(isr: &[NodeId]) -> Option<Vec<NodeId>> {
    let set: BTreeSet<NodeId> = isr.iter().copied().collect();
    (set.len() == isr.len()).then(|| set.into_iter().collect())
}

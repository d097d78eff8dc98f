//! The state machine's side of the engine's catalog: [`MetadataCommand::UpsertProcessor`],
//! [`MetadataCommand::DeleteProcessor`], [`MetadataCommand::SetProcessorPaused`] and
//! [`MetadataCommand::AssignTasks`], as further `impl` blocks of [`ClusterMetadata`] (pure,
//! deterministic, validate-then-change, like the rest of `apply`). Which node runs which task
//! is decided in `placement.rs`; this file checks and records it.
//!
//! What it enforces:
//! - a processor record is bounded: name ([`MAX_PROCESSOR_NAME`] of `[A-Za-z0-9_-]`),
//!   partitions (1..=[`MAX_PROCESSOR_PARTITIONS`]), inputs and state topics (valid topic
//!   names, at most [`MAX_PROCESSOR_TOPICS`] each), standbys ([`MAX_STANDBY_REPLICAS`]), spec
//!   ([`MAX_PROCESSOR_SPEC_BYTES`] as JSON), component hash ([`MAX_COMPONENT_LEN`]), and
//!   the cluster holds at most [`MAX_PROCESSORS`];
//! - versions: a create is refused if the processor exists, a redeploy unless it names the
//!   current version (compare-and-set); the version goes 1, 2, … and a redeploy keeps the
//!   partition count (refused otherwise) and the paused flag;
//! - assignment epochs fence: a task move must name the task's current epoch; the epoch goes
//!   up by one exactly when the owner changes, and a created processor's tasks start at the
//!   highest epoch any task ever had, so an epoch is never handed out twice for one task
//!   name, even across a delete and re-create;
//! - a new owner is a live node that is not draining; standbys are distinct live nodes other
//!   than the owner, at most the processor's `standby_replicas`; warm-ups (nodes copying a
//!   task's state before it moves there) at most [`MAX_TASK_WARMUPS`], nodes that take
//!   tasks, neither the owner nor a standby; a node a task moves to stops being its warm-up;
//! - a move off a live owner waits for its release (`moving_to`) unless it is forced (the
//!   controller forces one the owner did not release in time): then the epoch moves at once.

use std::collections::BTreeSet;

use super::error::MetadataError;
use super::state::ClusterMetadata;
use super::types::{MetadataResponse, ProcessorRecord, TaskAssignment, TaskMove};
use crate::cluster::NodeId;

/// Longest processor name (the engine's own limit, so derived topic names fit).
pub const MAX_PROCESSOR_NAME: usize = 100;
/// Most tasks (partitions) one processor may have.
pub const MAX_PROCESSOR_PARTITIONS: i32 = 10_000;
/// Most input topics, and most state (changelog) topics, one processor may name.
pub const MAX_PROCESSOR_TOPICS: usize = 64;
/// Most warm-ups per task (KIP-441's warm-up replicas, one per task here).
pub const MAX_TASK_WARMUPS: usize = 1;
/// Most standby replicas per task.
pub const MAX_STANDBY_REPLICAS: u16 = 8;
/// Largest processor spec, as JSON.
pub const MAX_PROCESSOR_SPEC_BYTES: usize = 1 << 20;
/// Longest component hash (`sha256:` and 64 hex digits fit many times).
pub const MAX_COMPONENT_LEN: usize = 256;
/// Most processors a cluster holds.
pub const MAX_PROCESSORS: usize = 1_000;

/// Checks everything about a record that does not depend on the state.
fn validate(record: &ProcessorRecord) -> Result<(), MetadataError> {
    let name = &record.name;
    let invalid = |reason: String| MetadataError::InvalidProcessor {
        name: name.clone(),
        reason,
    };
    if name.is_empty() || name.len() > MAX_PROCESSOR_NAME {
        return Err(invalid(format!(
            "a processor name has 1 to {MAX_PROCESSOR_NAME} characters"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "a processor name has only letters, digits, '_' and '-'".into(),
        ));
    }
    if record.partitions <= 0 || record.partitions > MAX_PROCESSOR_PARTITIONS {
        return Err(MetadataError::InvalidPartitions {
            partitions: record.partitions,
            max: MAX_PROCESSOR_PARTITIONS,
        });
    }
    for (what, topics) in [("input", &record.inputs), ("state", &record.state_topics)] {
        if topics.len() > MAX_PROCESSOR_TOPICS {
            return Err(invalid(format!(
                "{} {what} topics; at most {MAX_PROCESSOR_TOPICS}",
                topics.len()
            )));
        }
        for t in topics {
            crate::topic::validate_name(t)
                .map_err(|e| invalid(format!("{what} topic '{t}': {e}")))?;
        }
    }
    if record.standby_replicas > MAX_STANDBY_REPLICAS {
        return Err(invalid(format!(
            "{} standby replicas; at most {MAX_STANDBY_REPLICAS}",
            record.standby_replicas
        )));
    }
    if let Some(c) = &record.component
        && (c.is_empty() || c.len() > MAX_COMPONENT_LEN || !c.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(invalid(format!(
            "a component hash has 1 to {MAX_COMPONENT_LEN} visible ASCII characters"
        )));
    }
    let bytes = serde_json::to_vec(&record.spec)
        .map_err(|e| invalid(format!("spec: {e}")))?
        .len();
    if bytes > MAX_PROCESSOR_SPEC_BYTES {
        return Err(MetadataError::ProcessorSpecTooLarge {
            name: name.clone(),
            bytes,
            max: MAX_PROCESSOR_SPEC_BYTES,
        });
    }
    Ok(())
}

impl ClusterMetadata {
    /// The tasks `node` owns: processor, partition and assignment (with its epoch).
    pub fn owned_tasks(&self, node: NodeId) -> impl Iterator<Item = (&str, i32, &TaskAssignment)> {
        self.all_tasks()
            .filter(move |(_, _, t)| t.owner == Some(node))
    }

    /// The tasks `node` keeps a standby of (a warm-up is kept like a standby).
    pub fn standby_tasks(
        &self,
        node: NodeId,
    ) -> impl Iterator<Item = (&str, i32, &TaskAssignment)> {
        self.all_tasks()
            .filter(move |(_, _, t)| t.standbys.contains(&node) || t.warmups.contains(&node))
    }

    /// Every task: processor, partition, assignment; by processor then partition.
    pub fn all_tasks(&self) -> impl Iterator<Item = (&str, i32, &TaskAssignment)> {
        self.tasks.iter().flat_map(|(name, tasks)| {
            tasks
                .iter()
                .enumerate()
                .map(move |(p, t)| (name.as_str(), i32::try_from(p).unwrap_or(i32::MAX), t))
        })
    }

    /// Whether `node` may commit for task `partition` of `processor` under assignment
    /// `epoch`: it must be the task's owner at exactly the current epoch. What the log asks
    /// before it takes a task's commit (input offsets, changelog appends): a former owner
    /// (a zombie, paused or partitioned while the task moved) is refused.
    pub fn check_task_owner(
        &self,
        processor: &str,
        partition: i32,
        node: NodeId,
        epoch: u64,
    ) -> Result<(), MetadataError> {
        if !self.processors.contains_key(processor) {
            return Err(MetadataError::UnknownProcessor(processor.to_string()));
        }
        let task = self
            .task(processor, partition)
            .ok_or_else(|| MetadataError::UnknownTask {
                processor: processor.to_string(),
                partition,
            })?;
        if epoch != task.epoch {
            return Err(MetadataError::StaleTaskEpoch {
                processor: processor.to_string(),
                partition,
                given: epoch,
                current: task.epoch,
            });
        }
        if task.owner != Some(node) {
            return Err(MetadataError::NotTaskOwner {
                processor: processor.to_string(),
                partition,
                node,
                owner: task.owner,
            });
        }
        Ok(())
    }

    pub(super) fn upsert_processor(
        &mut self,
        record: &ProcessorRecord,
        expected_version: Option<u64>,
    ) -> Result<MetadataResponse, MetadataError> {
        validate(record)?;
        let name = &record.name;
        let mut next = record.clone();
        match (self.processors.get(name), expected_version) {
            (None, None) => {
                if self.processors.len() >= MAX_PROCESSORS {
                    return Err(MetadataError::TooManyProcessors {
                        max: MAX_PROCESSORS,
                    });
                }
                next.version = 1;
                let task = TaskAssignment {
                    owner: None,
                    epoch: self.max_task_epoch,
                    standbys: Vec::new(),
                    moving_to: None,
                    warmups: Vec::new(),
                };
                // `partitions` is within 1..=MAX_PROCESSOR_PARTITIONS (validated).
                let tasks = vec![task; record.partitions as usize];
                self.tasks.insert(name.clone(), tasks);
            }
            (None, Some(_)) => return Err(MetadataError::UnknownProcessor(name.clone())),
            (Some(_), None) => return Err(MetadataError::ProcessorExists(name.clone())),
            (Some(current), Some(given)) => {
                if given != current.version {
                    return Err(MetadataError::StaleProcessorVersion {
                        name: name.clone(),
                        given,
                        current: current.version,
                    });
                }
                if record.partitions != current.partitions {
                    return Err(MetadataError::PartitionCountChanged {
                        name: name.clone(),
                        current: current.partitions,
                        given: record.partitions,
                    });
                }
                next.version = current.version.saturating_add(1);
                next.paused = current.paused;
                let keep = usize::from(record.standby_replicas);
                let floor = self.max_task_epoch;
                let tasks = self.tasks.entry(name.clone()).or_insert_with(|| {
                    let task = TaskAssignment {
                        owner: None,
                        epoch: floor,
                        standbys: Vec::new(),
                        moving_to: None,
                        warmups: Vec::new(),
                    };
                    vec![task; record.partitions as usize]
                });
                for t in tasks.iter_mut() {
                    t.standbys.truncate(keep);
                }
            }
        }
        let version = next.version;
        self.processors.insert(name.clone(), next);
        Ok(MetadataResponse::Processor { version })
    }

    pub(super) fn delete_processor(
        &mut self,
        name: &str,
    ) -> Result<MetadataResponse, MetadataError> {
        if self.processors.remove(name).is_none() {
            return Err(MetadataError::UnknownProcessor(name.to_string()));
        }
        self.tasks.remove(name);
        Ok(MetadataResponse::Done)
    }

    pub(super) fn set_processor_paused(
        &mut self,
        name: &str,
        paused: bool,
    ) -> Result<MetadataResponse, MetadataError> {
        let record = self
            .processors
            .get_mut(name)
            .ok_or_else(|| MetadataError::UnknownProcessor(name.to_string()))?;
        record.paused = paused;
        Ok(MetadataResponse::Done)
    }

    pub(super) fn assign_tasks(
        &mut self,
        processor: &str,
        version: Option<u64>,
        moves: &[TaskMove],
    ) -> Result<MetadataResponse, MetadataError> {
        let assignable: BTreeSet<NodeId> = self.assignable_nodes().collect();
        let live: BTreeSet<NodeId> = self.live_nodes().collect();
        let unknown = || MetadataError::UnknownProcessor(processor.to_string());
        let record = self.processors.get(processor).ok_or_else(unknown)?;
        if let Some(given) = version
            && given != record.version
        {
            return Err(MetadataError::StaleProcessorVersion {
                name: processor.to_string(),
                given,
                current: record.version,
            });
        }
        let max_standbys = usize::from(record.standby_replicas);
        let tasks = self.tasks.get_mut(processor).ok_or_else(unknown)?;
        let mut seen = BTreeSet::new();
        let mut changes = Vec::with_capacity(moves.len());
        for m in moves {
            let p = m.partition;
            let invalid = |reason: String| MetadataError::InvalidTaskAssignment {
                processor: processor.to_string(),
                partition: p,
                reason,
            };
            let index = usize::try_from(p)
                .ok()
                .filter(|i| *i < tasks.len())
                .ok_or_else(|| MetadataError::UnknownTask {
                    processor: processor.to_string(),
                    partition: p,
                })?;
            if !seen.insert(index) {
                return Err(invalid("the task is named twice".into()));
            }
            let current = &tasks[index];
            if m.epoch != current.epoch {
                return Err(MetadataError::StaleTaskEpoch {
                    processor: processor.to_string(),
                    partition: p,
                    given: m.epoch,
                    current: current.epoch,
                });
            }
            let moved = current.owner != Some(m.owner);
            if moved && !assignable.contains(&m.owner) {
                return Err(invalid(format!(
                    "node {} is not a live registered node that takes tasks",
                    m.owner
                )));
            }
            if m.standbys.len() > max_standbys {
                return Err(invalid(format!(
                    "{} standbys; the processor has {max_standbys}",
                    m.standbys.len()
                )));
            }
            let distinct: BTreeSet<&NodeId> = m.standbys.iter().collect();
            if distinct.len() != m.standbys.len() {
                return Err(invalid("the standbys name a node twice".into()));
            }
            if m.standbys.contains(&m.owner) {
                return Err(invalid(format!(
                    "the owner {} may not be its own standby",
                    m.owner
                )));
            }
            if let Some(n) = m.standbys.iter().find(|n| !live.contains(n)) {
                return Err(invalid(format!(
                    "standby {n} is not a live registered node"
                )));
            }
            if m.warmups.len() > MAX_TASK_WARMUPS {
                return Err(invalid(format!(
                    "{} warm-ups; at most {MAX_TASK_WARMUPS}",
                    m.warmups.len()
                )));
            }
            if let Some(n) = m
                .warmups
                .iter()
                .find(|n| **n == m.owner || m.standbys.contains(n) || !assignable.contains(n))
            {
                return Err(invalid(format!(
                    "warm-up {n} is the owner, a standby, or not a node that takes tasks"
                )));
            }
            changes.push((index, moved));
        }
        let mut max_epoch = self.max_task_epoch;
        for (m, (index, moved)) in moves.iter().zip(changes) {
            let t = &mut tasks[index];
            t.standbys = m.standbys.clone();
            t.warmups = m.warmups.clone();
            if !moved {
                // Back to its owner: a graceful move in progress is called off.
                t.moving_to = None;
                continue;
            }
            if !m.force && t.owner.is_some_and(|o| live.contains(&o)) {
                // A live owner commits and releases the task first (ReleaseTask).
                t.moving_to = Some(m.owner);
                continue;
            }
            t.epoch = t.epoch.saturating_add(1);
            max_epoch = max_epoch.max(t.epoch);
            t.owner = Some(m.owner);
            t.moving_to = None;
        }
        self.max_task_epoch = max_epoch;
        Ok(MetadataResponse::Done)
    }

    pub(super) fn release_task(
        &mut self,
        processor: &str,
        partition: i32,
        epoch: u64,
        node: NodeId,
    ) -> Result<MetadataResponse, MetadataError> {
        let assignable: BTreeSet<NodeId> = self.assignable_nodes().collect();
        let unknown_task = || MetadataError::UnknownTask {
            processor: processor.to_string(),
            partition,
        };
        let t = self
            .tasks
            .get_mut(processor)
            .ok_or_else(|| MetadataError::UnknownProcessor(processor.to_string()))?
            .get_mut(usize::try_from(partition).map_err(|_| unknown_task())?)
            .ok_or_else(unknown_task)?;
        if t.epoch != epoch {
            return Err(MetadataError::StaleTaskEpoch {
                processor: processor.to_string(),
                partition,
                given: epoch,
                current: t.epoch,
            });
        }
        if t.owner != Some(node) {
            return Err(MetadataError::NotTaskOwner {
                processor: processor.to_string(),
                partition,
                node,
                owner: t.owner,
            });
        }
        let Some(next) = t.moving_to.take() else {
            return Ok(MetadataResponse::Done);
        };
        if assignable.contains(&next) {
            t.epoch = t.epoch.saturating_add(1);
            t.owner = Some(next);
            t.standbys.retain(|s| *s != next);
            t.warmups.retain(|s| *s != next);
            self.max_task_epoch = self.max_task_epoch.max(t.epoch);
        }
        Ok(MetadataResponse::Done)
    }
}

//! The controller's decisions of which node runs each task of every processor, and which
//! nodes keep its standbys, as pure functions of the applied [`ClusterMetadata`] (no I/O, no
//! clock; ties broken by node id, processor and partition, so replays choose the same). The
//! output is [`MetadataCommand::AssignTasks`] commands; the state machine re-checks each
//! when it is applied (`catalog.rs`).
//!
//! # Invariants
//!
//! 1. **Only the controller writes an assignment.** `AssignTasks` is proposed by the
//!    controller alone (peers are refused, `cluster::control` invariant 2), from
//!    [`placement_commands`] on its applied metadata; a node runs a task only when the
//!    applied metadata names it the owner.
//! 2. **The assignment epoch fences.** Every owner change bumps the task's epoch (never
//!    reused); a move names the epoch it was decided under and is refused if the task moved
//!    meanwhile. The owner's commits (input offsets, changelog appends) carry the epoch, so a
//!    paused or partitioned former owner can no longer commit once the task has moved.
//! 3. **Placement is a fixed point on a settled cluster**: when every task is owned by an
//!    assignable node (live, not draining) within its capacity, the counts are balanced and
//!    every task has its standbys, it returns nothing. A task moves only when it must:
//!    - its owner is fenced, draining, gone or was never set (it moves at once);
//!    - its owner is over its capacity, or holds more tasks than balance allows (max − min ≤
//!      1 over all tasks of all processors, among the nodes below their capacity): then only
//!      as many tasks move as balance needs, onto the nodes that have too few (a joined node
//!      gets its share and nothing else moves).
//!
//! Where a task goes, among the nodes whose count may grow without breaking the balance or
//! their capacity: a node whose copy of its state is within the processor's
//! `acceptable_recovery_lag` (as the nodes report them, [`TaskCopies`]), then the node whose
//! copy is least behind, then a node that keeps a standby or warm-up of it (its state is warm
//! but unreported), then the node leading partition `p` of its inputs (reads are local), then
//! the node with the fewest tasks, then the fewest of this processor's, then the lowest id.
//!
//! **Warm-up moves (KIP-441).** A task with state that balance (or a capacity) moves off a
//! live owner moves only onto a node whose copy is within `acceptable_recovery_lag`. Onto any
//! other node it does not move yet: that node becomes the task's warm-up (it copies the
//! state like a standby) and the task stays with its owner; a later decision moves it once
//! the node reports its copy caught up. A task without a live owner (its node died or left)
//! is never held back: it goes at once to a node whose copy is within the acceptable lag —
//! the least behind, even if that node is then above the balance (within its capacity; a
//! later decision restores the balance by warm-up moves) — or else to the most caught-up
//! node there is room on. Tasks without state (no node reported a changelog for them) move
//! at once. Which task a node gives up:
//! one a node with too few could take warm or locally, then one whose input it does not lead,
//! then one of the processor it holds most of.
//!
//! Standbys: `standby_replicas` per task (capped by the other assignable nodes), never the
//! owner, distinct; existing ones stay while their node is assignable (sticky); new ones go
//! first to the task's previous owner (its state is warm), then to nodes holding a replica of
//! partition `p` of a state (changelog) topic, then to the nodes keeping fewest standbys.
//! Standbys do not count against a node's task capacity.
//!
//! A move off a live owner is graceful (the state machine keeps the owner and epoch and
//! records `moving_to` until the owner releases the task, `ReleaseTask`); placement counts
//! such a task as its target's already, so it does not move it again meanwhile.
//!
//! At most `max_moves` tasks change per call (owner moves first, tasks without a live owner
//! before the balancing ones); the controller calls again on the applied result.

use std::collections::{BTreeMap, BTreeSet};

use super::state::ClusterMetadata;
use super::types::{MetadataCommand, NodeBudget, ProcessorRecord, TaskAssignment, TaskMove};
use crate::cluster::NodeId;

/// Tasks the controller moves in one decision, by default.
pub const DEFAULT_MAX_TASK_MOVES: usize = 64;

/// The most tasks each node may own (its instance budget); a node absent has no limit.
pub type TaskCapacity = BTreeMap<NodeId, u32>;

/// The most tasks each node with a reported Wasm budget may own: its budget divided by the
/// largest task footprint among the processors (instance slots and memory alike), so that
/// whatever tasks it is given fit (conservative when footprints differ). Nodes without a
/// report, and a catalog whose tasks take nothing, have no bound.
pub fn capacity_from_budgets(
    meta: &ClusterMetadata,
    budgets: &BTreeMap<NodeId, NodeBudget>,
) -> TaskCapacity {
    let instances = meta
        .processors
        .values()
        .map(|p| p.task_footprint.instances)
        .max()
        .unwrap_or(0);
    let memory = meta
        .processors
        .values()
        .map(|p| p.task_footprint.memory_bytes)
        .max()
        .unwrap_or(0);
    budgets
        .iter()
        .filter_map(|(node, b)| {
            let by_instances = (instances > 0).then(|| b.instances / instances);
            let by_memory =
                (memory > 0).then(|| u32::try_from(b.memory_bytes / memory).unwrap_or(u32::MAX));
            let cap = match (by_instances, by_memory) {
                (Some(a), Some(m)) => a.min(m),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => return None,
            };
            Some((*node, cap))
        })
        .collect()
}

/// The tighter of two capacities per node (a node absent from one is bound by the other).
pub fn merge_capacity(a: &TaskCapacity, b: &TaskCapacity) -> TaskCapacity {
    let mut out = a.clone();
    for (node, cap) in b {
        out.entry(*node)
            .and_modify(|c| *c = (*c).min(*cap))
            .or_insert(*cap);
    }
    out
}

/// What the nodes report of their copies of tasks' state (KIP-441's task lags), as the
/// controller last heard them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskCopies {
    /// Tasks that have state (changelogs): processor → partitions. Only their moves wait
    /// for a warm copy.
    pub stateful: BTreeMap<String, BTreeSet<i32>>,
    /// Changelog records each node's copy of a task is behind (the owner's: 0), once the
    /// copy has been made: processor → partition → node → lag.
    pub lags: BTreeMap<String, BTreeMap<i32, BTreeMap<NodeId, u64>>>,
}

impl TaskCopies {
    /// Records what `node` reports of its copy of task `partition` of `processor`.
    pub fn add(
        &mut self,
        node: NodeId,
        processor: &str,
        partition: i32,
        lag: Option<u64>,
        stateful: bool,
    ) {
        if stateful {
            self.stateful
                .entry(processor.to_string())
                .or_default()
                .insert(partition);
        }
        if let Some(lag) = lag {
            self.lags
                .entry(processor.to_string())
                .or_default()
                .entry(partition)
                .or_default()
                .insert(node, lag);
        }
    }

    fn is_stateful(&self, processor: &str, partition: i32) -> bool {
        self.stateful
            .get(processor)
            .is_some_and(|ps| ps.contains(&partition))
    }

    fn lag(&self, processor: &str, partition: i32, node: NodeId) -> Option<u64> {
        self.lags
            .get(processor)?
            .get(&partition)?
            .get(&node)
            .copied()
    }
}

/// One task as placement sees it.
struct Task<'a> {
    processor: &'a str,
    record: &'a ProcessorRecord,
    partition: i32,
    current: &'a TaskAssignment,
    /// Leaders of partition `p` of the inputs (a node once per input it leads).
    input_leaders: Vec<NodeId>,
    /// Replicas of partition `p` of the state topics (once per topic).
    changelog_replicas: Vec<NodeId>,
}

impl Task<'_> {
    fn leads(&self, node: NodeId) -> usize {
        self.input_leaders.iter().filter(|n| **n == node).count()
    }

    fn warm_on(&self, node: NodeId) -> bool {
        self.current.standbys.contains(&node) || self.current.warmups.contains(&node)
    }

    /// Whether the task may move onto `node` without a warm-up: it has no state, or
    /// `node`'s copy is within the processor's acceptable recovery lag.
    fn caught_up_on(&self, copies: &TaskCopies, node: NodeId) -> bool {
        !copies.is_stateful(self.processor, self.partition)
            || copies
                .lag(self.processor, self.partition, node)
                .is_some_and(|l| l <= self.record.acceptable_recovery_lag)
    }

    /// How good a place `node` is for the task's state (lower is better): a reported copy
    /// within the acceptable lag, then the least behind, then an unreported warm copy.
    fn copy_rank(&self, copies: &TaskCopies, node: NodeId) -> (bool, u64, bool) {
        let lag = copies.lag(self.processor, self.partition, node);
        let within = copies.is_stateful(self.processor, self.partition)
            && lag.is_some_and(|l| l <= self.record.acceptable_recovery_lag);
        (!within, lag.unwrap_or(u64::MAX), !self.warm_on(node))
    }
}

fn tasks_of(meta: &ClusterMetadata) -> Vec<Task<'_>> {
    let mut out = Vec::new();
    for (name, record) in &meta.processors {
        let Some(tasks) = meta.tasks.get(name) else {
            continue;
        };
        for (p, current) in tasks.iter().enumerate() {
            let partition = i32::try_from(p).unwrap_or(i32::MAX);
            let input_leaders = record
                .inputs
                .iter()
                .filter_map(|t| meta.partition(t, partition)?.leader)
                .collect();
            let changelog_replicas = record
                .state_topics
                .iter()
                .filter_map(|t| meta.partition(t, partition))
                .flat_map(|s| s.target_replicas())
                .collect();
            out.push(Task {
                processor: name,
                record,
                partition,
                current,
                input_leaders,
                changelog_replicas,
            });
        }
    }
    out
}

/// The per-node bounds a balanced assignment of `total` tasks keeps: every node ends with
/// between `lo` and `hi` tasks, and exactly `extra` nodes end above their `lo`. When the
/// nodes cannot hold every task, `lo = hi = capacity` (and `extra = 0`).
struct Bounds {
    lo: BTreeMap<NodeId, usize>,
    hi: BTreeMap<NodeId, usize>,
    extra: usize,
}

fn bounds(caps: &BTreeMap<NodeId, usize>, total: usize) -> Bounds {
    let room: usize = caps.values().fold(0usize, |a, c| a.saturating_add(*c));
    if room < total {
        return Bounds {
            lo: caps.clone(),
            hi: caps.clone(),
            extra: 0,
        };
    }
    let fits = |level: usize| {
        caps.values()
            .fold(0usize, |a, c| a.saturating_add((*c).min(level)))
            >= total
    };
    // The smallest level at which every task fits (room >= total, so `total` does).
    let (mut low, mut high) = (0usize, total);
    while low < high {
        let mid = low + (high - low) / 2;
        if fits(mid) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    let level = low;
    let lo: BTreeMap<NodeId, usize> = caps
        .iter()
        .map(|(n, c)| (*n, (*c).min(level.saturating_sub(1))))
        .collect();
    let hi = caps.iter().map(|(n, c)| (*n, (*c).min(level))).collect();
    let extra = total.saturating_sub(lo.values().sum());
    Bounds { lo, hi, extra }
}

/// The owners being planned, and what balance needs to know of them.
struct Plan<'a> {
    /// Each task's owner; `None` while it has to be placed.
    owner: Vec<Option<NodeId>>,
    /// Tasks per assignable node.
    count: BTreeMap<NodeId, usize>,
    /// Tasks per processor and node.
    per_processor: BTreeMap<(&'a str, NodeId), usize>,
}

impl<'a> Plan<'a> {
    /// Every task stays with its owner if that is assignable (a key of `caps`); a task
    /// being moved gracefully counts as its target's already.
    fn new(tasks: &[Task<'a>], nodes: &[NodeId], caps: &BTreeMap<NodeId, usize>) -> Plan<'a> {
        let mut plan = Plan {
            owner: vec![None; tasks.len()],
            count: nodes.iter().map(|n| (*n, 0)).collect(),
            per_processor: BTreeMap::new(),
        };
        for (i, t) in tasks.iter().enumerate() {
            let assignable = |o: &NodeId| caps.contains_key(o);
            if let Some(o) = t
                .current
                .moving_to
                .filter(assignable)
                .or(t.current.owner.filter(assignable))
            {
                plan.assign(t, i, o);
            }
        }
        plan
    }

    fn assign(&mut self, t: &Task<'a>, i: usize, node: NodeId) {
        self.owner[i] = Some(node);
        *self.count.entry(node).or_default() += 1;
        *self.per_processor.entry((t.processor, node)).or_default() += 1;
    }

    fn of_processor(&self, processor: &str, node: NodeId) -> usize {
        self.per_processor
            .get(&(processor, node))
            .copied()
            .unwrap_or(0)
    }

    /// How far the nodes are above their lower bounds, in all.
    fn above(&self, b: &Bounds) -> usize {
        self.count
            .iter()
            .map(|(n, c)| c.saturating_sub(b.lo.get(n).copied().unwrap_or(0)))
            .sum()
    }

    /// `node` gives up one task (see the module doc for which); returns it.
    fn shed(
        &mut self,
        tasks: &[Task<'a>],
        deficit: &BTreeSet<NodeId>,
        node: NodeId,
    ) -> Option<usize> {
        let i = (0..tasks.len())
            .filter(|i| self.owner[*i] == Some(node))
            .min_by_key(|i| {
                let t = &tasks[*i];
                let wanted = deficit.iter().any(|d| t.warm_on(*d) || t.leads(*d) > 0);
                (
                    !wanted,
                    t.leads(node),
                    std::cmp::Reverse(self.of_processor(t.processor, node)),
                    t.processor,
                    std::cmp::Reverse(t.partition),
                )
            })?;
        self.owner[i] = None;
        if let Some(c) = self.count.get_mut(&node) {
            *c = c.saturating_sub(1);
        }
        if let Some(c) = self.per_processor.get_mut(&(tasks[i].processor, node)) {
            *c = c.saturating_sub(1);
        }
        Some(i)
    }
}

/// The [`MetadataCommand::AssignTasks`] to propose now (one per processor with a change;
/// at most `max_moves` tasks changed in all); empty on a settled assignment (invariant 3).
/// `capacity` bounds the tasks a node may own; `copies` is what the nodes report of their
/// copies of tasks' state (warm-up moves).
pub fn placement_commands(
    meta: &ClusterMetadata,
    capacity: &TaskCapacity,
    copies: &TaskCopies,
    max_moves: usize,
) -> Vec<MetadataCommand> {
    let nodes: Vec<NodeId> = meta.assignable_nodes().collect();
    let tasks = tasks_of(meta);
    if nodes.is_empty() || tasks.is_empty() || max_moves == 0 {
        return Vec::new();
    }
    let caps: BTreeMap<NodeId, usize> = nodes
        .iter()
        .map(|n| {
            let cap = capacity
                .get(n)
                .map_or(usize::MAX, |c| usize::try_from(*c).unwrap_or(usize::MAX));
            (*n, cap)
        })
        .collect();
    let b = bounds(&caps, tasks.len());

    let mut plan = Plan::new(&tasks, &nodes, &caps);
    // Tasks without an assignable owner come first, then the ones given up for balance.
    let mut unplaced: Vec<usize> = (0..tasks.len())
        .filter(|i| plan.owner[*i].is_none())
        .collect();
    let deficit: BTreeSet<NodeId> = nodes
        .iter()
        .copied()
        .filter(|n| plan.count[n] < b.lo[n])
        .collect();
    // Over their bound (capacity, or more than balance allows): give up the excess. No more
    // than the budget can place: the rest waits for the next decision (until then, only
    // nodes below their lower bound may grow, so every move made is one balance needs).
    for n in &nodes {
        for _ in b.hi[n]..plan.count[n] {
            if unplaced.len() >= max_moves {
                break;
            }
            unplaced.extend(plan.shed(&tasks, &deficit, *n));
        }
    }
    // More nodes above their lower bound than the balance has room for: the fullest give one.
    let mut used = plan.above(&b);
    while used > b.extra && unplaced.len() < max_moves {
        let Some(n) = nodes
            .iter()
            .copied()
            .filter(|n| plan.count[n] > b.lo[n])
            .max_by_key(|n| {
                (
                    plan.count[n] - b.lo[n],
                    plan.count[n],
                    std::cmp::Reverse(*n),
                )
            })
        else {
            break;
        };
        unplaced.extend(plan.shed(&tasks, &deficit, n));
        used = plan.above(&b);
    }

    // Place, within the budget: a node may grow while below its lower bound, or below its
    // upper bound while the balance has room for one more node above its lower bound.
    let mut owner_moves = 0usize;
    // Tasks held back with their live owner while the node they go to warms up.
    let mut warming: Vec<Option<NodeId>> = vec![None; tasks.len()];
    for i in unplaced {
        if owner_moves >= max_moves {
            break;
        }
        let t = &tasks[i];
        // A task without a live owner goes to a caught-up copy of its state when there is
        // one with room under its capacity, even above the balance (KIP-441: the task
        // resumes warm at once; balance is restored later by warm-up moves).
        let orphan = t.current.owner.is_none_or(|o| !caps.contains_key(&o));
        let warm_pick = nodes
            .iter()
            .copied()
            .filter(|n| orphan && plan.count[n] < caps[n])
            .filter(|n| !t.copy_rank(copies, *n).0)
            .min_by_key(|n| (t.copy_rank(copies, *n), plan.count[n], *n));
        if let Some(n) = warm_pick {
            plan.assign(t, i, n);
            used = plan.above(&b);
            owner_moves += 1;
            continue;
        }
        let pick = nodes
            .iter()
            .copied()
            .filter(|n| {
                let c = plan.count[n];
                c < b.lo[n] || (c < b.hi[n] && used < b.extra)
            })
            .filter(|n| t.current.owner != Some(*n))
            .min_by_key(|n| {
                (
                    t.copy_rank(copies, *n),
                    std::cmp::Reverse(t.leads(*n)),
                    plan.count[n],
                    plan.of_processor(t.processor, *n),
                    *n,
                )
            });
        let Some(n) = pick else { continue };
        // Off a live owner onto a node whose copy is not caught up: warm it up first.
        if let Some(o) = t.current.owner.filter(|o| caps.contains_key(o))
            && !t.caught_up_on(copies, n)
        {
            plan.assign(t, i, o);
            used = plan.above(&b);
            warming[i] = Some(n);
            owner_moves += 1;
            continue;
        }
        if plan.count[&n] >= b.lo[&n] {
            used += 1;
        }
        plan.assign(t, i, n);
        owner_moves += 1;
    }
    // What could not be placed (no room, or beyond the budget) stays where it is.
    let owner: Vec<Option<NodeId>> = plan
        .owner
        .iter()
        .zip(&tasks)
        .map(|(planned, t)| planned.or(t.current.owner))
        .collect();

    let standbys = plan_standbys(&tasks, &owner, &nodes);

    let mut moves: BTreeMap<&str, Vec<TaskMove>> = BTreeMap::new();
    let mut standby_moves = 0usize;
    for (((t, o), s), w) in tasks.iter().zip(&owner).zip(standbys).zip(warming) {
        let Some(o) = *o else { continue };
        // A node already keeping a standby of the task warms up as that standby.
        let warmups: Vec<NodeId> = w
            .filter(|n| *n != o && !s.contains(n))
            .into_iter()
            .collect();
        // Where the task is or is going (a graceful move in progress counts as done).
        let moved = t.current.moving_to.or(t.current.owner) != Some(o);
        if !moved && s == t.current.standbys && warmups == t.current.warmups {
            continue;
        }
        if !moved {
            if owner_moves + standby_moves >= max_moves {
                continue;
            }
            standby_moves += 1;
        }
        moves.entry(t.processor).or_default().push(TaskMove {
            partition: t.partition,
            epoch: t.current.epoch,
            owner: o,
            standbys: s,
            warmups,
            force: false,
        });
    }
    moves
        .into_iter()
        .map(|(processor, assignments)| MetadataCommand::AssignTasks {
            processor: processor.to_string(),
            version: meta.processors.get(processor).map(|r| r.version),
            assignments,
        })
        .collect()
}

/// Each task's standbys given its planned `owner` (see the module doc).
fn plan_standbys(
    tasks: &[Task<'_>],
    owner: &[Option<NodeId>],
    nodes: &[NodeId],
) -> Vec<Vec<NodeId>> {
    let mut load: BTreeMap<NodeId, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    let mut out: Vec<Vec<NodeId>> = Vec::with_capacity(tasks.len());
    let mut wanted: Vec<usize> = Vec::with_capacity(tasks.len());
    for (t, o) in tasks.iter().zip(owner) {
        let others = nodes.iter().filter(|n| Some(**n) != *o).count();
        let k = usize::from(t.record.standby_replicas).min(others);
        let mut keep: Vec<NodeId> = Vec::new();
        for s in &t.current.standbys {
            if keep.len() < k && Some(*s) != *o && load.contains_key(s) && !keep.contains(s) {
                keep.push(*s);
            }
        }
        for s in &keep {
            *load.entry(*s).or_default() += 1;
        }
        out.push(keep);
        wanted.push(k);
    }
    for (i, t) in tasks.iter().enumerate() {
        let o = owner[i];
        let previous = t.current.owner.filter(|p| Some(*p) != o);
        while out[i].len() < wanted[i] {
            let pick = nodes
                .iter()
                .copied()
                .filter(|n| Some(*n) != o && !out[i].contains(n))
                .min_by_key(|n| {
                    (
                        previous != Some(*n),
                        std::cmp::Reverse(t.changelog_replicas.iter().filter(|r| *r == n).count()),
                        load[n],
                        *n,
                    )
                });
            let Some(n) = pick else { break };
            *load.entry(n).or_default() += 1;
            out[i].push(n);
        }
    }
    out
}

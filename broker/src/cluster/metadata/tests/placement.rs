//! Task placement (`placement.rs`) driven through the state machine: unit cases (leaders
//! preferred, a settled assignment is a fixed point, a join takes only its share, a death
//! moves only the dead node's tasks, to their standbys, capacity) and property tests over
//! random joins, failures, returns, decommissions, deploys and capacities: every task one
//! live owner, balance, capacity, standbys, epochs, fixed point.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::super::balance;
use super::super::controller::fence_node_commands;
use super::super::placement::{
    TaskCapacity, TaskCopies, capacity_from_budgets, merge_capacity, placement_commands,
};
use super::super::*;
use super::catalog::record;
use super::state::{create, register, with_nodes};
use crate::cluster::NodeId;

/// Deploys processor `name` over topic `input` (created with `partitions` partitions and
/// replication factor `rf` if missing) with `standbys` standby replicas.
fn deploy(m: &mut ClusterMetadata, name: &str, input: &str, partitions: i32, standbys: u16) {
    if !m.topics.contains_key(input) {
        let rf = u16::try_from(m.assignable_nodes().count().min(2)).unwrap();
        create(m, input, partitions, rf);
    }
    let mut r = record(name, partitions);
    r.inputs = vec![input.into()];
    r.state_topics = vec![];
    r.standby_replicas = standbys;
    m.apply(&MetadataCommand::UpsertProcessor {
        record: r,
        expected_version: None,
    })
    .unwrap();
}

type Owners = BTreeMap<(String, i32), (Option<NodeId>, u64)>;

fn owners(m: &ClusterMetadata) -> Owners {
    m.all_tasks()
        .map(|(p, i, t)| ((p.to_string(), i), (t.owner, t.epoch)))
        .collect()
}

fn counts(m: &ClusterMetadata) -> BTreeMap<NodeId, usize> {
    let mut c: BTreeMap<NodeId, usize> = m.assignable_nodes().map(|n| (n, 0)).collect();
    for (_, _, t) in m.all_tasks() {
        if let Some(o) = t.owner
            && let Some(n) = c.get_mut(&o)
        {
            *n += 1;
        }
    }
    c
}

/// Applies placement's decisions until it has none; checks each applies, changes at most
/// `max_moves` tasks, and bumps an epoch exactly when an owner changes. Returns the rounds.
fn settle(
    m: &mut ClusterMetadata,
    cap: &TaskCapacity,
    max_moves: usize,
) -> Result<usize, TestCaseError> {
    for round in 0..200 {
        let commands = placement_commands(m, cap, &TaskCopies::default(), max_moves);
        if commands.is_empty() {
            return Ok(round);
        }
        let moved: usize = commands
            .iter()
            .map(|c| match c {
                MetadataCommand::AssignTasks { assignments, .. } => assignments.len(),
                other => panic!("not an assignment: {other:?}"),
            })
            .sum();
        prop_assert!(moved <= max_moves, "{} moves > {}", moved, max_moves);
        let before = owners(m);
        let r = m.apply(&MetadataCommand::Batch { commands });
        prop_assert!(r.is_ok(), "placement's decision refused: {:?}", r);
        // The owners release what moves off them gracefully.
        super::catalog::release_all(m);
        for (task, (owner, epoch)) in owners(m) {
            let (was, was_epoch) = before[&task];
            if owner != was {
                prop_assert_eq!(epoch, was_epoch + 1, "{:?}: owner changed", task);
            } else {
                prop_assert_eq!(epoch, was_epoch, "{:?}: owner kept", task);
            }
        }
    }
    Err(TestCaseError::fail(format!(
        "placement never settled: {m:#?}"
    )))
}

/// What a settled assignment guarantees.
fn check(m: &ClusterMetadata, cap: &TaskCapacity) -> Result<(), TestCaseError> {
    let nodes: Vec<NodeId> = m.assignable_nodes().collect();
    let limit = |n: NodeId| cap.get(&n).map_or(usize::MAX, |c| *c as usize);
    let room: usize = nodes.iter().map(|n| limit(*n).min(1 << 20)).sum();
    let total = m.all_tasks().count();
    let c = counts(m);
    if !nodes.is_empty() && room >= total {
        for (p, i, t) in m.all_tasks() {
            prop_assert!(
                t.owner.is_some_and(|o| m.is_assignable(o)),
                "{}/{} has no assignable owner: {:?}",
                p,
                i,
                t
            );
        }
        for n in &nodes {
            prop_assert!(c[n] <= limit(*n), "node {} over its capacity: {:?}", n, c);
        }
    }
    // Balanced: a node has at most one task more than any other, unless the other is full.
    for a in &nodes {
        for b in &nodes {
            prop_assert!(
                c[a] <= c[b] + 1 || c[b] >= limit(*b),
                "unbalanced: {:?} (capacity {:?})",
                c,
                cap
            );
        }
    }
    for (p, i, t) in m.all_tasks() {
        if nodes.is_empty() || t.owner.is_none() {
            continue;
        }
        let want = usize::from(m.processors[p].standby_replicas);
        let others = nodes.iter().filter(|n| Some(**n) != t.owner).count();
        prop_assert_eq!(t.standbys.len(), want.min(others), "{}/{}: {:?}", p, i, t);
        let mut distinct = t.standbys.clone();
        distinct.sort_unstable();
        distinct.dedup();
        prop_assert_eq!(distinct.len(), t.standbys.len(), "{}/{}: {:?}", p, i, t);
        prop_assert!(t.owner.is_none_or(|o| !t.standbys.contains(&o)));
        prop_assert!(t.standbys.iter().all(|s| m.is_assignable(*s)));
    }
    prop_assert!(
        placement_commands(m, cap, &TaskCopies::default(), usize::MAX).is_empty(),
        "a settled assignment is not a fixed point"
    );
    Ok(())
}

fn settled(m: &mut ClusterMetadata) {
    settle(m, &TaskCapacity::new(), 64).unwrap();
    check(m, &TaskCapacity::new()).unwrap();
}

#[test]
fn a_new_processor_goes_to_the_input_leaders_two_tasks_per_node() {
    let mut m = with_nodes(3);
    deploy(&mut m, "wc", "words", 6, 0);
    settled(&mut m);
    assert_eq!(
        counts(&m).values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2]
    );
    for (_, p, t) in m.all_tasks() {
        let leader = m.partition("words", p).unwrap().leader;
        assert_eq!(t.owner, leader, "task {p} is not with its input's leader");
        assert_eq!(t.epoch, 1);
    }
    assert!(placement_commands(&m, &TaskCapacity::new(), &TaskCopies::default(), 64).is_empty());
}

#[test]
fn ties_spread_each_processor_over_the_nodes() {
    let mut m = with_nodes(3);
    for (name, partitions) in [("a", 2), ("b", 4), ("c", 3)] {
        let mut r = record(name, partitions);
        r.inputs = vec![];
        r.standby_replicas = 0;
        m.apply(&MetadataCommand::UpsertProcessor {
            record: r,
            expected_version: None,
        })
        .unwrap();
        settled(&mut m);
    }
    assert_eq!(
        counts(&m).values().copied().collect::<Vec<_>>(),
        vec![3, 3, 3]
    );
    for name in ["a", "b", "c"] {
        let per: Vec<usize> = (1..=3)
            .map(|n| m.owned_tasks(n).filter(|(p, _, _)| *p == name).count())
            .collect();
        let (lo, hi) = (per.iter().min().unwrap(), per.iter().max().unwrap());
        assert!(hi - lo <= 1, "{name} not spread: {per:?}");
    }
}

#[test]
fn a_joined_node_takes_only_its_share() {
    let mut m = with_nodes(3);
    deploy(&mut m, "wc", "words", 6, 1);
    deploy(&mut m, "other", "words", 6, 0);
    settled(&mut m);
    let before = owners(&m);
    register(&mut m, 4);
    settled(&mut m);
    let after = owners(&m);
    let moved: Vec<_> = after.iter().filter(|(k, v)| before[*k].0 != v.0).collect();
    assert!(moved.iter().all(|(_, (o, _))| *o == Some(4)), "{moved:?}");
    assert_eq!(moved.len(), 3, "12 tasks on 4 nodes: 3 move, no more");
    assert_eq!(counts(&m)[&4], 3);
}

#[test]
fn a_dead_nodes_tasks_move_to_their_standbys_and_nothing_else_moves() {
    let mut m = with_nodes(3);
    deploy(&mut m, "wc", "words", 6, 1);
    settled(&mut m);
    let before = m.clone();
    m.apply(&fence_node_commands(&m, 2)).unwrap();
    settled(&mut m);
    for (p, i, t) in m.all_tasks() {
        let was = before.task(p, i).unwrap();
        if was.owner == Some(2) {
            assert_eq!(t.epoch, was.epoch + 1);
            let full = |n: &NodeId| counts(&m)[n] == 3;
            assert!(
                was.standbys.contains(&t.owner.unwrap()) || was.standbys.iter().all(full),
                "not moved to its standby though it had room: {was:?} → {t:?}"
            );
        } else {
            assert_eq!((t.owner, t.epoch), (was.owner, was.epoch), "task {i} moved");
        }
        assert!(!t.standbys.contains(&2));
    }
    assert_eq!(counts(&m).values().copied().collect::<Vec<_>>(), vec![3, 3]);
    // It comes back: it gets its share again, and only it.
    let dead = owners(&m);
    register(&mut m, 2);
    settled(&mut m);
    for (k, (o, _)) in owners(&m) {
        assert!(o == dead[&k].0 || o == Some(2));
    }
    assert_eq!(
        counts(&m).values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2]
    );
}

#[test]
fn a_draining_nodes_tasks_move_and_it_is_drained_only_then() {
    let mut m = with_nodes(3);
    deploy(&mut m, "wc", "words", 4, 0);
    settled(&mut m);
    // The input topic has replication factor 2: two nodes stay.
    m.apply(&MetadataCommand::DecommissionNode { node: 3 })
        .unwrap();
    let moves = placement_commands(&m, &TaskCapacity::new(), &TaskCopies::default(), 64);
    assert!(!moves.is_empty());
    settled(&mut m);
    assert_eq!(m.owned_tasks(3).count(), 0);
    assert_eq!(counts(&m).values().copied().collect::<Vec<_>>(), vec![2, 2]);

    // A drained node owns no task: it may leave only once its tasks have moved.
    let mut m = with_nodes(2);
    let mut r = record("local", 2);
    r.inputs = vec![];
    r.standby_replicas = 0;
    m.apply(&MetadataCommand::UpsertProcessor {
        record: r,
        expected_version: None,
    })
    .unwrap();
    settled(&mut m);
    m.apply(&MetadataCommand::DecommissionNode { node: 2 })
        .unwrap();
    assert!(
        balance::drained_nodes(&m).is_empty(),
        "node 2 still owns a task"
    );
    settled(&mut m);
    assert_eq!(balance::drained_nodes(&m), vec![2]);
}

#[test]
fn capacity_bounds_a_node_and_a_full_cluster_leaves_the_rest_where_it_is() {
    let mut m = with_nodes(3);
    deploy(&mut m, "wc", "words", 6, 0);
    let cap: TaskCapacity = [(1, 1)].into_iter().collect();
    settle(&mut m, &cap, 64).unwrap();
    check(&m, &cap).unwrap();
    let c = counts(&m);
    assert_eq!((c[&1], c[&2] + c[&3]), (1, 5));
    // Not enough room for every task: the ones placed stay, nothing loops.
    let tight: TaskCapacity = [(1, 1), (2, 1), (3, 1)].into_iter().collect();
    let mut m = with_nodes(3);
    deploy(&mut m, "wc", "words", 6, 0);
    settle(&mut m, &tight, 64).unwrap();
    assert_eq!(
        counts(&m).values().copied().collect::<Vec<_>>(),
        vec![1, 1, 1]
    );
    assert_eq!(
        m.all_tasks().filter(|(_, _, t)| t.owner.is_none()).count(),
        3
    );
}

#[test]
fn standbys_prefer_the_changelog_replicas() {
    let mut m = with_nodes(4);
    create(&mut m, "words", 4, 2);
    create(&mut m, "wc.counts.changelog", 4, 2);
    let mut r = record("wc", 4);
    r.inputs = vec!["words".into()];
    r.state_topics = vec!["wc.counts.changelog".into()];
    r.standby_replicas = 1;
    m.apply(&MetadataCommand::UpsertProcessor {
        record: r,
        expected_version: None,
    })
    .unwrap();
    settled(&mut m);
    for (_, p, t) in m.all_tasks() {
        let replicas = &m.partition("wc.counts.changelog", p).unwrap().replicas;
        let owner = t.owner.unwrap();
        if replicas.iter().any(|r| *r != owner) {
            assert!(
                replicas.contains(&t.standbys[0]),
                "task {p}: {t:?}, changelog on {replicas:?}"
            );
        }
    }
}

#[test]
fn moves_are_bounded_per_decision() {
    let mut m = with_nodes(3);
    deploy(&mut m, "wc", "words", 30, 1);
    let rounds = settle(&mut m, &TaskCapacity::new(), 4).unwrap();
    assert!(
        rounds >= 8,
        "{rounds} rounds for 30 tasks and 30 standbys, 4 at a time"
    );
    check(&m, &TaskCapacity::new()).unwrap();
}

#[derive(Debug, Clone)]
enum Step {
    Join,
    Fence(u8),
    Register(u8),
    Decommission(u8),
    Deploy { partitions: i32, standbys: u16 },
    Redeploy { pick: u8, standbys: u16 },
    Delete(u8),
    Settle { max_moves: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => Just(Step::Join),
        2 => (0u8..8).prop_map(Step::Fence),
        2 => (0u8..8).prop_map(Step::Register),
        1 => (0u8..8).prop_map(Step::Decommission),
        2 => (1i32..10, 0u16..3).prop_map(|(partitions, standbys)| Step::Deploy { partitions, standbys }),
        1 => (0u8..8, 0u16..3).prop_map(|(pick, standbys)| Step::Redeploy { pick, standbys }),
        1 => (0u8..8).prop_map(Step::Delete),
        4 => (1usize..6).prop_map(|max_moves| Step::Settle { max_moves }),
    ]
}

fn nth<T: Clone>(items: impl Iterator<Item = T>, i: u8) -> Option<T> {
    let all: Vec<T> = items.collect();
    (!all.is_empty()).then(|| all[usize::from(i) % all.len()].clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever joins, failures, returns, decommissions, deploys and redeploys happen, every
    /// decision applies, changes at most its bound, bumps epochs exactly on owner changes,
    /// and settles to a balanced fixed point within the capacities.
    #[test]
    fn placement_settles_balanced_within_capacity(
        steps in proptest::collection::vec(step(), 1..40),
        caps in proptest::collection::btree_map(1u64..10, 1u32..6, 0..4),
    ) {
        let mut m = with_nodes(3);
        create(&mut m, "in", 10, 1);
        let mut next_node = 4;
        let mut next_processor = 0;
        for s in steps {
            match s {
                Step::Join => { register(&mut m, next_node); next_node += 1; }
                Step::Fence(i) => {
                    if let Some(n) = nth(m.live_nodes(), i) && m.live_nodes().count() > 1 {
                        m.apply(&fence_node_commands(&m, n)).unwrap();
                    }
                }
                Step::Register(i) => {
                    if let Some(n) = nth(m.nodes.keys().copied(), i) { register(&mut m, n); }
                }
                Step::Decommission(i) => {
                    if let Some(n) = nth(m.nodes.keys().copied(), i) {
                        let _ = m.apply(&MetadataCommand::DecommissionNode { node: n });
                    }
                }
                Step::Deploy { partitions, standbys } => {
                    let mut r = record(&format!("p{next_processor}"), partitions);
                    next_processor += 1;
                    r.inputs = vec!["in".into()];
                    r.standby_replicas = standbys;
                    m.apply(&MetadataCommand::UpsertProcessor { record: r, expected_version: None }).unwrap();
                }
                Step::Redeploy { pick, standbys } => {
                    if let Some(mut r) = nth(m.processors.values().cloned(), pick) {
                        r.standby_replicas = standbys;
                        let v = r.version;
                        m.apply(&MetadataCommand::UpsertProcessor { record: r, expected_version: Some(v) }).unwrap();
                    }
                }
                Step::Delete(i) => {
                    if let Some(name) = nth(m.processors.keys().cloned(), i) {
                        m.apply(&MetadataCommand::DeleteProcessor { name }).unwrap();
                    }
                }
                Step::Settle { max_moves } => {
                    settle(&mut m, &caps, max_moves)?;
                    check(&m, &caps)?;
                }
            }
        }
        settle(&mut m, &caps, 64)?;
        check(&m, &caps)?;
    }

    /// From a settled assignment, a joined node takes tasks and nothing else moves; a dead
    /// node's tasks move and nothing else does.
    #[test]
    fn placement_is_sticky(
        nodes in 1u64..6,
        processors in proptest::collection::vec((1i32..12, 0u16..3), 1..4),
        dies in 0u8..8,
    ) {
        let mut m = with_nodes(nodes);
        create(&mut m, "in", 12, 1);
        for (i, (partitions, standbys)) in processors.iter().enumerate() {
            let mut r = record(&format!("p{i}"), *partitions);
            r.inputs = vec!["in".into()];
            r.standby_replicas = *standbys;
            m.apply(&MetadataCommand::UpsertProcessor { record: r, expected_version: None }).unwrap();
        }
        let none = TaskCapacity::new();
        settle(&mut m, &none, 64)?;
        check(&m, &none)?;

        let before = owners(&m);
        register(&mut m, 100);
        settle(&mut m, &none, 64)?;
        check(&m, &none)?;
        for (k, (o, _)) in owners(&m) {
            prop_assert!(o == before[&k].0 || o == Some(100), "{:?} moved elsewhere than the new node", k);
        }

        if m.live_nodes().count() > 1 {
            let dead = nth(m.live_nodes(), dies).unwrap();
            let before = owners(&m);
            m.apply(&fence_node_commands(&m, dead)).unwrap();
            settle(&mut m, &none, 64)?;
            check(&m, &none)?;
            for (k, (o, e)) in owners(&m) {
                let (was, was_epoch) = before[&k];
                if was == Some(dead) {
                    prop_assert!(o != Some(dead));
                    prop_assert_eq!(e, was_epoch + 1);
                } else {
                    prop_assert_eq!((o, e), (was, was_epoch), "{:?} moved though its owner lives", k);
                }
            }
        }
    }
}

/// What the nodes would report of their copies: every task stateful, the owner caught up,
/// each standby or warm-up copy behind by `lag(partition, node)` (`None`: not made yet).
fn copies_of(m: &ClusterMetadata, lag: impl Fn(i32, NodeId) -> Option<u64>) -> TaskCopies {
    let mut c = TaskCopies::default();
    for (p, i, t) in m.all_tasks() {
        if let Some(o) = t.owner {
            c.add(o, p, i, Some(0), true);
        }
        for n in t.standbys.iter().chain(&t.warmups) {
            c.add(*n, p, i, lag(i, *n), true);
        }
    }
    c
}

/// Applies one round of placement's decisions under the copies `lag` describes
/// ([`copies_of`]); the number of tasks whose owner changed.
fn round(m: &mut ClusterMetadata, lag: impl Fn(i32, NodeId) -> Option<u64>) -> usize {
    let copies = copies_of(m, lag);
    let commands = placement_commands(m, &TaskCapacity::new(), &copies, 64);
    if commands.is_empty() {
        return 0;
    }
    let before = owners(m);
    m.apply(&MetadataCommand::Batch { commands }).unwrap();
    super::catalog::release_all(m);
    owners(m)
        .iter()
        .filter(|(k, v)| before[*k].0 != v.0)
        .count()
}

#[test]
fn a_task_with_state_moves_onto_a_joined_node_only_once_its_copy_there_is_warm() {
    let mut m = with_nodes(3);
    deploy(&mut m, "wc", "words", 9, 1);
    settled(&mut m);
    let before = owners(&m);
    register(&mut m, 4);
    // Node 4 has no copy yet: two tasks (its share) start warming up there, none moves.
    let cold = |_: i32, n: NodeId| (n != 4).then_some(5);
    assert_eq!(round(&mut m, cold), 0);
    assert_eq!(owners(&m), before);
    let warming: Vec<i32> = m
        .all_tasks()
        .filter(|(_, _, t)| t.warmups == [4])
        .map(|(_, i, _)| i)
        .collect();
    assert_eq!(warming.len(), 2, "{:#?}", m.tasks);
    assert_eq!(
        m.standby_tasks(4).count(),
        2,
        "a warm-up is kept like a standby"
    );
    // While they warm up (first pass, then still too far behind), nothing changes.
    assert!(placement_commands(&m, &TaskCapacity::new(), &copies_of(&m, cold), 64).is_empty());
    let far = |_: i32, n: NodeId| Some(if n == 4 { 50_000 } else { 5 });
    assert!(placement_commands(&m, &TaskCapacity::new(), &copies_of(&m, far), 64).is_empty());
    // Caught up within the acceptable lag: exactly those tasks move to node 4.
    let warm = |_: i32, _: NodeId| Some(100);
    assert_eq!(round(&mut m, warm), 2);
    for (_, i, t) in m.all_tasks() {
        if warming.contains(&i) {
            assert_eq!(t.owner, Some(4), "task {i}");
            assert!(t.warmups.is_empty());
        } else {
            assert_eq!(t.owner, before[&("wc".to_string(), i)].0, "task {i} moved");
        }
    }
    assert_eq!(round(&mut m, warm), 0);
    let mut c: Vec<usize> = counts(&m).values().copied().collect();
    c.sort_unstable();
    assert_eq!(c, vec![2, 2, 2, 3]);
}

#[test]
fn a_dead_owners_task_goes_at_once_to_the_least_lagging_copy() {
    let mut m = with_nodes(4);
    deploy(&mut m, "wc", "words", 4, 2);
    settled(&mut m);
    let t0 = m.task("wc", 0).unwrap().clone();
    let dead = t0.owner.unwrap();
    let (far, near) = (t0.standbys[0], t0.standbys[1]);
    m.apply(&fence_node_commands(&m, dead)).unwrap();
    // The nearer copy wins, whatever the standbys' order; nobody waits for a warm-up.
    let lags = |i: i32, n: NodeId| Some(if i == 0 && n == far { 90_000 } else { 7 });
    round(&mut m, lags);
    assert_eq!(m.task("wc", 0).unwrap().owner, Some(near));
    // Far behind the acceptable lag, the only copy still takes it (it must run somewhere).
    let mut m = with_nodes(3);
    deploy(&mut m, "wc", "words", 3, 1);
    settled(&mut m);
    let t0 = m.task("wc", 0).unwrap().clone();
    m.apply(&fence_node_commands(&m, t0.owner.unwrap()))
        .unwrap();
    let behind = |_: i32, _: NodeId| Some(1_000_000);
    round(&mut m, behind);
    assert_eq!(m.task("wc", 0).unwrap().owner, Some(t0.standbys[0]));
}

#[test]
fn a_dead_owners_tasks_go_to_a_caught_up_copy_even_above_balance_then_rebalance_warm() {
    let mut m = with_nodes(3);
    deploy(&mut m, "wc", "words", 6, 0);
    settled(&mut m);
    let dead = 3;
    let orphans: Vec<i32> = m.owned_tasks(dead).map(|(_, i, _)| i).collect();
    let keeper = 1;
    m.apply(&fence_node_commands(&m, dead)).unwrap();
    // Only node 1 has caught-up copies of node 3's tasks (say, from before): they all go
    // there at once, though node 2 would be the balanced choice for one of them.
    let mut copies = copies_of(&m, |_, _| None);
    for p in &orphans {
        copies.add(keeper, "wc", *p, Some(3), true);
    }
    let commands = placement_commands(&m, &TaskCapacity::new(), &copies, 64);
    m.apply(&MetadataCommand::Batch { commands }).unwrap();
    for p in &orphans {
        assert_eq!(m.task("wc", *p).unwrap().owner, Some(keeper), "task {p}");
    }
    assert_eq!(counts(&m)[&keeper], 4);
    // Then balance: node 2 warms up one of them first, and takes it once caught up.
    assert_eq!(round(&mut m, |_, _| None), 0);
    assert_eq!(counts(&m)[&keeper], 4);
    assert_eq!(m.standby_tasks(2).count(), 1);
    assert_eq!(round(&mut m, |_, _| Some(10)), 1);
    assert_eq!(round(&mut m, |_, _| Some(10)), 0);
    assert_eq!(counts(&m).values().copied().collect::<Vec<_>>(), vec![3, 3]);
}

#[test]
fn each_node_is_held_within_its_reported_wasm_budget() {
    let mut m = with_nodes(3);
    let mut r = record("wc", 6);
    r.inputs = vec![];
    r.standby_replicas = 0;
    r.task_footprint = TaskFootprint {
        instances: 1,
        memory_bytes: 64 << 20,
    };
    m.apply(&MetadataCommand::UpsertProcessor {
        record: r,
        expected_version: None,
    })
    .unwrap();
    let mut sql = record("q", 2);
    sql.inputs = vec![];
    sql.standby_replicas = 0;
    sql.task_footprint = TaskFootprint {
        instances: 2,
        memory_bytes: 16 << 20,
    };
    m.apply(&MetadataCommand::UpsertProcessor {
        record: sql,
        expected_version: None,
    })
    .unwrap();
    // Node 1 has room for one task of the largest footprint (2 slots, 64 MiB); node 2 is
    // bound by its memory (3 × 64 MiB); node 3 reported nothing.
    let budgets = BTreeMap::from([
        (
            1,
            NodeBudget {
                instances: 3,
                memory_bytes: 1 << 30,
            },
        ),
        (
            2,
            NodeBudget {
                instances: 64,
                memory_bytes: 200 << 20,
            },
        ),
    ]);
    let cap = capacity_from_budgets(&m, &budgets);
    assert_eq!(cap, BTreeMap::from([(1, 1), (2, 3)]));
    let cap = merge_capacity(&BTreeMap::from([(2, 2), (3, 5)]), &cap);
    assert_eq!(cap, BTreeMap::from([(1, 1), (2, 2), (3, 5)]));
    settle(&mut m, &cap, 64).unwrap();
    check(&m, &cap).unwrap();
    assert_eq!(counts(&m), BTreeMap::from([(1, 1), (2, 2), (3, 5)]));
    // Nothing deployed takes anything: no bound.
    assert!(capacity_from_budgets(&with_nodes(2), &budgets).is_empty());
}

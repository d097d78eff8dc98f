//! Replica moves: the state machine's rules for `ReassignPartition`,
//! `CompleteReassignment` and `DecommissionNode`, and the controller's decisions
//! (`balance.rs`) driven to a fixed point, with a property test that the replication factor
//! is never undercut and the in-sync rules hold at every step.

use proptest::prelude::*;

use super::super::balance::{
    DEFAULT_MAX_MOVES_IN_FLIGHT, completion_commands, decommission_moves, drained_nodes,
    preferred_leader_elections, preferred_reorders, rebalance_moves, settled,
};
use super::super::controller::{self, fence_node_commands};
use super::super::*;
use super::state::{create, register, with_nodes};
use crate::cluster::NodeId;

/// Runs the controller's move decisions (and the leaders' catch-up) until nothing is left
/// to do; returns how many rounds it took.
fn settle(m: &mut ClusterMetadata) -> usize {
    for round in 0..1000 {
        catch_up(m);
        let mut progressed = false;
        if let Some(c) = completion_commands(m) {
            m.apply(&c).unwrap();
            progressed = true;
        }
        let mut moves = decommission_moves(m, DEFAULT_MAX_MOVES_IN_FLIGHT);
        if moves.is_empty() {
            moves = rebalance_moves(m, DEFAULT_MAX_MOVES_IN_FLIGHT);
        }
        if !moves.is_empty() {
            m.apply(&MetadataCommand::Batch { commands: moves })
                .unwrap();
            progressed = true;
        }
        check(m).unwrap();
        if !progressed
            && !m
                .topics
                .values()
                .flat_map(|t| &t.partitions)
                .any(|p| p.reassigning())
        {
            return round;
        }
    }
    panic!("the moves did not settle: {m:#?}");
}

fn replica_counts(m: &ClusterMetadata) -> std::collections::BTreeMap<NodeId, usize> {
    let mut c: std::collections::BTreeMap<NodeId, usize> =
        m.nodes.keys().map(|n| (*n, 0)).collect();
    for p in m.topics.values().flat_map(|t| &t.partitions) {
        for r in &p.replicas {
            *c.entry(*r).or_default() += 1;
        }
    }
    c
}

fn check(m: &ClusterMetadata) -> Result<(), TestCaseError> {
    for (name, t) in &m.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            let rf = usize::from(t.replication_factor);
            prop_assert_eq!(p.target_replicas().count(), rf, "{}/{}: {:?}", name, i, p);
            prop_assert!(
                p.replicas.len() >= rf,
                "{}/{}: rf undercut {:?}",
                name,
                i,
                p
            );
            prop_assert!(!p.isr.is_empty(), "{}/{}: empty isr", name, i);
            prop_assert!(
                p.isr.iter().all(|n| p.replicas.contains(n)),
                "{}/{}: isr ⊄ replicas",
                name,
                i
            );
            if let Some(l) = p.leader {
                prop_assert!(p.isr.contains(&l), "{}/{}: leader outside isr", name, i);
            }
            prop_assert!(p.adding.iter().all(|n| p.replicas.contains(n)));
            prop_assert!(p.removing.iter().all(|n| p.replicas.contains(n)));
        }
    }
    Ok(())
}

#[test]
fn a_reassignment_adds_outside_the_isr_and_completes_only_when_caught_up() {
    let mut m = with_nodes(4);
    create(&mut m, "t", 1, 3);
    let p = m.partition("t", 0).unwrap().clone();
    let out = *[1, 2, 3, 4]
        .iter()
        .find(|n| !p.replicas.contains(n))
        .unwrap();
    let gone = p.replicas[2];
    let target: Vec<NodeId> = p
        .replicas
        .iter()
        .map(|&r| if r == gone { out } else { r })
        .collect();
    // A stale partition epoch is refused.
    let stale = m.apply(&MetadataCommand::ReassignPartition {
        topic: "t".into(),
        partition: 0,
        partition_epoch: p.partition_epoch + 7,
        target: target.clone(),
    });
    assert_eq!(stale.unwrap_err().code(), "invalid_update_version");
    // A target of the wrong size, or naming a node twice, is refused.
    for bad in [vec![1, 2], vec![out, out, p.replicas[0]]] {
        let r = m.apply(&MetadataCommand::ReassignPartition {
            topic: "t".into(),
            partition: 0,
            partition_epoch: p.partition_epoch,
            target: bad,
        });
        assert_eq!(r.unwrap_err().code(), "invalid_replica_assignment");
    }
    m.apply(&MetadataCommand::ReassignPartition {
        topic: "t".into(),
        partition: 0,
        partition_epoch: p.partition_epoch,
        target: target.clone(),
    })
    .unwrap();
    let q = m.partition("t", 0).unwrap().clone();
    assert_eq!(q.adding, vec![out]);
    assert_eq!(q.removing, vec![gone]);
    assert_eq!(q.replicas.len(), 4, "{q:?}");
    assert!(
        !q.isr.contains(&out),
        "an added replica starts outside the in-sync set"
    );
    assert_eq!(q.leader, p.leader, "no leader change to start a move");
    // A second move of the same partition waits for this one.
    let again = m.apply(&MetadataCommand::ReassignPartition {
        topic: "t".into(),
        partition: 0,
        partition_epoch: q.partition_epoch,
        target: p.replicas.clone(),
    });
    assert_eq!(again.unwrap_err().code(), "reassignment_in_progress");
    // Not complete before the new replica is in sync.
    assert!(completion_commands(&m).is_none());
    let early = m.apply(&MetadataCommand::CompleteReassignment {
        topic: "t".into(),
        partition: 0,
        partition_epoch: q.partition_epoch,
    });
    assert_eq!(early.unwrap_err().code(), "reassignment_not_ready");
    catch_up(&mut m);
    let done = completion_commands(&m).unwrap();
    m.apply(&done).unwrap();
    let r = m.partition("t", 0).unwrap();
    assert_eq!(r.replicas, target);
    assert!(!r.isr.contains(&gone) && r.isr.contains(&out), "{r:?}");
    assert!(!r.reassigning());
}

#[test]
fn a_removed_leader_hands_over_to_an_in_sync_target_replica_under_the_next_epoch() {
    let mut m = with_nodes(4);
    create(&mut m, "t", 1, 3);
    let p = m.partition("t", 0).unwrap().clone();
    let leader = p.leader.unwrap();
    let out = *[1, 2, 3, 4]
        .iter()
        .find(|n| !p.replicas.contains(n))
        .unwrap();
    let target: Vec<NodeId> = p
        .replicas
        .iter()
        .map(|&r| if r == leader { out } else { r })
        .collect();
    m.apply(&MetadataCommand::ReassignPartition {
        topic: "t".into(),
        partition: 0,
        partition_epoch: p.partition_epoch,
        target: target.clone(),
    })
    .unwrap();
    assert_eq!(
        m.partition("t", 0).unwrap().replicas[0],
        out,
        "the target's order first"
    );
    catch_up(&mut m);
    m.apply(&completion_commands(&m).unwrap()).unwrap();
    let r = m.partition("t", 0).unwrap();
    assert_ne!(r.leader, Some(leader));
    assert!(
        r.leader
            .is_some_and(|l| r.isr.contains(&l) && target.contains(&l))
    );
    assert_eq!(r.leader_epoch, p.leader_epoch + 1);
}

#[test]
fn decommission_is_refused_when_the_others_cannot_hold_the_replicas_and_for_unknown_nodes() {
    let mut m = with_nodes(3);
    create(&mut m, "t", 2, 3);
    let r = m.apply(&MetadataCommand::DecommissionNode { node: 3 });
    assert_eq!(r.unwrap_err().code(), "cannot_decommission");
    assert!(!m.nodes[&3].draining, "a refusal changes nothing");
    let r = m.apply(&MetadataCommand::DecommissionNode { node: 9 });
    assert_eq!(r.unwrap_err().code(), "unknown_node");
}

#[test]
fn decommission_moves_every_replica_off_the_node_then_its_id_is_retired() {
    let mut m = with_nodes(4);
    create(&mut m, "a", 6, 3);
    create(&mut m, "b", 3, 2);
    let before = replica_counts(&m)[&2];
    assert!(before > 0);
    m.apply(&MetadataCommand::DecommissionNode { node: 2 })
        .unwrap();
    assert!(m.nodes[&2].draining);
    // A draining node gets no new topic.
    create(&mut m, "c", 4, 3);
    assert!(
        m.topics["c"]
            .partitions
            .iter()
            .all(|p| !p.replicas.contains(&2))
    );
    let moves = decommission_moves(&m, 2);
    assert_eq!(moves.len(), 2, "bounded by the moves in flight");
    settle(&mut m);
    assert_eq!(replica_counts(&m)[&2], 0);
    assert_eq!(drained_nodes(&m), vec![2]);
    m.apply(&MetadataCommand::UnregisterNode { node: 2 })
        .unwrap();
    assert!(m.retired.contains(&2));
    let back = m.apply(&MetadataCommand::RegisterNode {
        node: 2,
        info: NodeInfo::default(),
    });
    assert_eq!(back.unwrap_err().code(), "node_retired");
    // Three nodes are left and two topics have factor 3: none more may go.
    m.apply(&MetadataCommand::DecommissionNode { node: 3 })
        .unwrap_err();
}

#[test]
fn a_joined_node_gets_its_share_and_a_balanced_cluster_moves_nothing() {
    let mut m = with_nodes(3);
    create(&mut m, "a", 6, 3);
    create(&mut m, "b", 6, 1);
    assert!(rebalance_moves(&m, 4).is_empty(), "balanced: nothing to do");
    register(&mut m, 4);
    assert!(!rebalance_moves(&m, 4).is_empty());
    // Not while a node is fenced.
    let mut fenced = m.clone();
    fenced.apply(&fence_node_commands(&fenced, 1)).unwrap();
    assert!(rebalance_moves(&fenced, 4).is_empty());
    settle(&mut m);
    let counts = replica_counts(&m);
    let (lo, hi) = (
        counts.values().min().unwrap(),
        counts.values().max().unwrap(),
    );
    assert!(hi - lo <= 1, "{counts:?}");
    assert!(counts[&4] >= 5, "{counts:?}");
    assert!(rebalance_moves(&m, 4).is_empty(), "settled");
}

#[test]
fn leaderships_are_spread_over_a_joined_node_and_go_back_to_preferred_replicas() {
    let mut m = with_nodes(3);
    create(&mut m, "a", 8, 3);
    register(&mut m, 4);
    settle(&mut m);
    let leaders = |m: &ClusterMetadata| {
        let mut c: std::collections::BTreeMap<NodeId, usize> =
            m.nodes.keys().map(|n| (*n, 0)).collect();
        for p in m.topics.values().flat_map(|t| &t.partitions) {
            *c.entry(p.leader.unwrap()).or_default() += 1;
        }
        c
    };
    assert_eq!(
        leaders(&m)[&4],
        0,
        "moving followers gave node 4 no leadership"
    );
    assert!(settled(&m));
    for _ in 0..10 {
        let reorders = preferred_reorders(&m, 16);
        if !reorders.is_empty() {
            m.apply(&MetadataCommand::Batch { commands: reorders })
                .unwrap();
            check(&m).unwrap();
            continue;
        }
        match preferred_leader_elections(&m, 16) {
            Some(c) => m.apply(&c).unwrap(),
            None => break,
        };
    }
    let counts = leaders(&m);
    let (lo, hi) = (
        counts.values().min().unwrap(),
        counts.values().max().unwrap(),
    );
    assert!(hi - lo <= 1, "{counts:?}");
    assert!(
        m.topics["a"]
            .partitions
            .iter()
            .all(|p| p.leader == p.replicas.first().copied()),
        "every partition led by its preferred replica"
    );
    // A failover moves a leadership away; once the node is back and in sync it returns,
    // never while the cluster is not settled.
    let before = m.clone();
    m.apply(&fence_node_commands(&m, 2)).unwrap();
    assert!(preferred_leader_elections(&m, 16).is_none() && preferred_reorders(&m, 16).is_empty());
    register(&mut m, 2);
    assert!(
        preferred_leader_elections(&m, 16).is_none(),
        "2 is not in sync yet"
    );
    catch_up(&mut m);
    let back = preferred_leader_elections(&m, 16).unwrap();
    m.apply(&back).unwrap();
    for (p, q) in m.topics["a"]
        .partitions
        .iter()
        .zip(&before.topics["a"].partitions)
    {
        assert_eq!(p.leader, q.leader);
    }
}

/// What leaders do when their followers catch up: every live replica of a led partition
/// (one a move adds, one back from a failure) joins its in-sync set.
fn catch_up(m: &mut ClusterMetadata) {
    let mut alters = Vec::new();
    for (name, t) in &m.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            let Some(leader) = p.leader else { continue };
            let isr: Vec<NodeId> = p
                .replicas
                .iter()
                .copied()
                .filter(|r| m.is_live(*r))
                .collect();
            if isr.len() != p.isr.len() {
                alters.push(MetadataCommand::AlterPartition {
                    topic: name.clone(),
                    partition: i as i32,
                    leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    isr,
                });
            }
        }
    }
    for a in alters {
        m.apply(&a).unwrap();
    }
}

#[test]
fn a_draining_node_keeps_the_mark_when_it_registers_again() {
    let mut m = with_nodes(4);
    create(&mut m, "a", 2, 2);
    m.apply(&MetadataCommand::DecommissionNode { node: 4 })
        .unwrap();
    m.apply(&fence_node_commands(&m, 4)).unwrap();
    register(&mut m, 4);
    assert!(m.nodes[&4].draining);
}

#[derive(Debug, Clone)]
enum Step {
    Join,
    Decommission(u8),
    Fence(u8),
    Register(u8),
    CatchUp,
    Decide,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => Just(Step::Join),
        1 => (0u8..8).prop_map(Step::Decommission),
        2 => (0u8..8).prop_map(Step::Fence),
        2 => (0u8..8).prop_map(Step::Register),
        4 => Just(Step::CatchUp),
        6 => Just(Step::Decide),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// Whatever joins, decommissions, failures and returns happen between the controller's
    /// decisions, no partition ever has fewer replicas than its factor, the in-sync rules
    /// hold, and once the failures heal every decommission finishes.
    #[test]
    fn moves_never_undercut_the_replication_factor(steps in proptest::collection::vec(step(), 1..60)) {
        let mut m = with_nodes(4);
        create(&mut m, "a", 5, 3);
        create(&mut m, "b", 3, 2);
        let mut next = 5;
        for s in steps {
            let nth = |m: &ClusterMetadata, i: u8| m.nodes.keys().nth(usize::from(i) % m.nodes.len()).copied();
            match s {
                Step::Join => { register(&mut m, next); next += 1; }
                Step::Decommission(i) => { if let Some(n) = nth(&m, i) { let _ = m.apply(&MetadataCommand::DecommissionNode { node: n }); } }
                Step::Fence(i) => {
                    if let Some(n) = nth(&m, i) && m.is_live(n) && m.live_nodes().count() > 1 {
                        m.apply(&fence_node_commands(&m, n)).unwrap();
                    }
                }
                Step::Register(i) => { if let Some(n) = nth(&m, i) { register(&mut m, n); } }
                Step::CatchUp => catch_up(&mut m),
                Step::Decide => {
                    if let Some(c) = completion_commands(&m) { m.apply(&c).unwrap(); }
                    let moves = decommission_moves(&m, 3);
                    if !moves.is_empty() { m.apply(&MetadataCommand::Batch { commands: moves }).unwrap(); }
                    let moves = rebalance_moves(&m, 3);
                    if !moves.is_empty() { m.apply(&MetadataCommand::Batch { commands: moves }).unwrap(); }
                    let reorders = preferred_reorders(&m, 3);
                    if !reorders.is_empty() { m.apply(&MetadataCommand::Batch { commands: reorders }).unwrap(); }
                    if let Some(c) = preferred_leader_elections(&m, 3) { m.apply(&c).unwrap(); }
                }
            }
            check(&m)?;
        }
        // Heal: every node registered again; offline partitions elected; then settle.
        let ids: Vec<NodeId> = m.nodes.keys().copied().collect();
        for id in ids { register(&mut m, id); }
        if let Some(c) = controller::elect_offline_commands(&m) { m.apply(&c).unwrap(); }
        settle(&mut m);
        let draining: Vec<NodeId> = m.nodes.iter().filter(|(_, n)| n.draining).map(|(id, _)| *id).collect();
        for d in draining {
            prop_assert_eq!(replica_counts(&m)[&d], 0, "node {} still holds replicas", d);
        }
    }
}

//! The state machine's validation and the controller's decisions: unit tests, and property
//! tests over random command sequences for the invariants (at most one leader per partition
//! and epoch, leader in the in-sync set, epochs only increase, refusals change nothing,
//! apply deterministic, snapshots faithful).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::super::controller::{
    self, Sessions, TopicRequest, assign_replicas, create_topic_command, fence_node_commands,
};
use super::super::*;
use crate::cluster::NodeId;

pub(super) fn info(id: NodeId) -> NodeInfo {
    NodeInfo {
        cluster_addr: format!("10.0.0.{id}:9093"),
        kafka_addr: format!("10.0.0.{id}:9092"),
        http_addr: format!("10.0.0.{id}:8080"),
    }
}

/// Registers node `id` (live) at its test addresses.
pub(super) fn register(m: &mut ClusterMetadata, id: NodeId) {
    m.apply(&MetadataCommand::RegisterNode {
        node: id,
        info: info(id),
    })
    .unwrap();
}

pub(super) fn with_nodes(n: u64) -> ClusterMetadata {
    let mut m = ClusterMetadata::default();
    for id in 1..=n {
        register(&mut m, id);
    }
    m
}

pub(super) fn create(m: &mut ClusterMetadata, name: &str, partitions: i32, rf: u16) {
    let cmd = create_topic_command(
        m,
        &TopicRequest {
            name: name.into(),
            partitions,
            replication_factor: Some(rf),
            ..TopicRequest::default()
        },
    )
    .unwrap();
    m.apply(&cmd).unwrap();
}

#[test]
fn create_topic_sets_leaders_isr_and_defaults() {
    let mut m = with_nodes(3);
    let cmd = create_topic_command(
        &m,
        &TopicRequest {
            name: "t".into(),
            partitions: 3,
            ..TopicRequest::default()
        },
    )
    .unwrap();
    m.version = 7;
    assert_eq!(
        m.apply(&cmd).unwrap(),
        MetadataResponse::TopicCreated { topic_id: 7 }
    );
    let t = &m.topics["t"];
    assert_eq!((t.replication_factor, t.min_insync_replicas), (3, 2));
    for p in &t.partitions {
        assert_eq!(p.leader, Some(p.replicas[0]));
        assert_eq!(p.isr, vec![1, 2, 3]);
        assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
    }
    let leaders: BTreeSet<_> = t.partitions.iter().map(|p| p.leader).collect();
    assert_eq!(leaders.len(), 3, "leaders spread over the nodes");
    assert_eq!(m.apply(&cmd), Err(MetadataError::TopicExists("t".into())));
}

#[test]
fn replication_factor_above_live_nodes_is_refused() {
    let mut m = with_nodes(3);
    m.apply(&MetadataCommand::FenceNode { node: 3 }).unwrap();
    let err = assign_replicas(&m, 1, 3).unwrap_err();
    assert_eq!(err.code(), "invalid_replication_factor");
    assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
    // A proposal that names a fenced node is refused by the state machine too.
    let cmd = MetadataCommand::CreateTopic(CreateTopic {
        name: "t".into(),
        replication_factor: 3,
        min_insync_replicas: 2,
        config: TopicConfig::default(),
        internal_owner: None,
        assignment: vec![vec![1, 2, 3]],
    });
    let before = m.clone();
    assert_eq!(
        m.apply(&cmd),
        Err(MetadataError::InvalidReplicationFactor {
            requested: 3,
            live: 2
        })
    );
    assert_eq!(m, before);
}

#[test]
fn create_topic_validation() {
    let mut m = with_nodes(3);
    let base = CreateTopic {
        name: "t".into(),
        replication_factor: 2,
        min_insync_replicas: 2,
        config: TopicConfig::default(),
        internal_owner: None,
        assignment: vec![vec![1, 2]],
    };
    let cases = [
        (
            CreateTopic {
                name: "bad name".into(),
                ..base.clone()
            },
            "invalid_topic_name",
        ),
        (
            CreateTopic {
                min_insync_replicas: 3,
                ..base.clone()
            },
            "invalid_config",
        ),
        (
            CreateTopic {
                assignment: vec![vec![1, 1]],
                ..base.clone()
            },
            "invalid_replica_assignment",
        ),
        (
            CreateTopic {
                assignment: vec![vec![1, 9]],
                ..base.clone()
            },
            "invalid_replica_assignment",
        ),
        (
            CreateTopic {
                assignment: vec![vec![1]],
                ..base.clone()
            },
            "invalid_replica_assignment",
        ),
        (
            CreateTopic {
                assignment: vec![],
                ..base.clone()
            },
            "invalid_partitions",
        ),
    ];
    for (c, code) in cases {
        let err = m
            .apply(&MetadataCommand::CreateTopic(c.clone()))
            .unwrap_err();
        assert_eq!(err.code(), code, "{c:?}: {err}");
    }
    assert!(m.topics.is_empty());
    m.apply(&MetadataCommand::CreateTopic(base)).unwrap();
}

#[test]
fn elect_leader_needs_the_next_epoch_and_an_in_sync_live_replica() {
    let mut m = with_nodes(3);
    create(&mut m, "t", 1, 3);
    let p = m.partition("t", 0).unwrap().clone();
    let elect = |leader, epoch, isr: Vec<NodeId>| MetadataCommand::ElectLeader {
        topic: "t".into(),
        partition: 0,
        leader,
        leader_epoch: epoch,
        isr,
    };
    // Stale and skipping epochs are refused.
    for epoch in [0, 2, -1] {
        let err = m.apply(&elect(Some(2), epoch, vec![2, 3])).unwrap_err();
        assert_eq!(err.code(), "fenced_leader_epoch");
    }
    // The isr must hold the leader and only shrink.
    assert_eq!(
        m.apply(&elect(Some(2), 1, vec![3])).unwrap_err().code(),
        "invalid_isr"
    );
    m.apply(&MetadataCommand::FenceNode { node: 3 }).unwrap();
    assert_eq!(
        m.apply(&elect(Some(3), 1, vec![3])).unwrap_err().code(),
        "ineligible_replica",
        "a fenced node does not lead"
    );
    let r = m.apply(&elect(Some(2), 1, vec![2, 3])).unwrap();
    assert_eq!(
        r,
        MetadataResponse::Partition {
            leader: Some(2),
            leader_epoch: 1,
            partition_epoch: 1,
            isr: vec![2, 3]
        }
    );
    // The same epoch cannot be used twice (one leader per epoch).
    assert_eq!(
        m.apply(&elect(Some(3), 1, vec![2, 3])).unwrap_err().code(),
        "fenced_leader_epoch"
    );
    // Not in the isr: refused without unclean election.
    assert_eq!(
        m.apply(&elect(Some(1), 2, vec![1])).unwrap_err().code(),
        "ineligible_replica"
    );
    assert_eq!(p.replicas, m.partition("t", 0).unwrap().replicas);
}

#[test]
fn unclean_election_only_where_allowed_and_resets_the_isr() {
    let mut m = with_nodes(3);
    let mut cmd = create_topic_command(
        &m,
        &TopicRequest {
            name: "u".into(),
            partitions: 1,
            replication_factor: Some(3),
            config: TopicConfig {
                unclean_leader_election: true,
                ..TopicConfig::default()
            },
            ..TopicRequest::default()
        },
    )
    .unwrap();
    if let MetadataCommand::CreateTopic(c) = &mut cmd {
        c.assignment = vec![vec![1, 2, 3]];
    }
    m.apply(&cmd).unwrap();
    m.apply(&MetadataCommand::AlterPartition {
        topic: "u".into(),
        partition: 0,
        leader: 1,
        leader_epoch: 0,
        partition_epoch: 0,
        isr: vec![1],
    })
    .unwrap();
    m.apply(&MetadataCommand::FenceNode { node: 1 }).unwrap();
    let elect = |isr: Vec<NodeId>| MetadataCommand::ElectLeader {
        topic: "u".into(),
        partition: 0,
        leader: Some(2),
        leader_epoch: 1,
        isr,
    };
    assert_eq!(
        m.apply(&elect(vec![1, 2])).unwrap_err().code(),
        "invalid_isr"
    );
    m.apply(&elect(vec![2])).unwrap();
    let p = m.partition("u", 0).unwrap();
    assert_eq!((p.leader, p.isr.clone()), (Some(2), vec![2]));
}

#[test]
fn alter_partition_is_fenced_by_leader_and_partition_epochs() {
    let mut m = with_nodes(3);
    create(&mut m, "t", 1, 3);
    let leader = m.partition("t", 0).unwrap().leader.unwrap();
    let others: Vec<NodeId> = (1..=3).filter(|&n| n != leader).collect();
    let alter = |node, le, pe, isr: Vec<NodeId>| MetadataCommand::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: node,
        leader_epoch: le,
        partition_epoch: pe,
        isr,
    };
    // Shrink to the leader alone.
    m.apply(&alter(leader, 0, 0, vec![leader])).unwrap();
    // A second change based on the old partition epoch is refused.
    let err = m
        .apply(&alter(leader, 0, 0, vec![leader, others[0]]))
        .unwrap_err();
    assert_eq!(err.code(), "invalid_update_version");
    // Only the leader.
    let err = m
        .apply(&alter(others[0], 0, 1, vec![others[0]]))
        .unwrap_err();
    assert_eq!(err.code(), "not_leader_or_follower");
    // A fenced node may not join; a live one may.
    m.apply(&MetadataCommand::FenceNode { node: others[1] })
        .unwrap();
    let err = m
        .apply(&alter(leader, 0, 1, vec![leader, others[1]]))
        .unwrap_err();
    assert_eq!(err.code(), "invalid_isr");
    m.apply(&alter(leader, 0, 1, vec![leader, others[0]]))
        .unwrap();
    // After an election, the old leader's epoch is stale (a zombie leader is fenced).
    m.apply(&MetadataCommand::ElectLeader {
        topic: "t".into(),
        partition: 0,
        leader: Some(others[0]),
        leader_epoch: 1,
        isr: vec![leader, others[0]],
    })
    .unwrap();
    let err = m.apply(&alter(leader, 0, 3, vec![leader])).unwrap_err();
    assert_eq!(err.code(), "fenced_leader_epoch");
    // Never drop the leader from the set.
    let err = m.apply(&alter(others[0], 1, 3, vec![leader])).unwrap_err();
    assert_eq!(err.code(), "invalid_isr");
}

#[test]
fn batches_are_atomic() {
    let mut m = with_nodes(2);
    let before = m.clone();
    let err = m
        .apply(&MetadataCommand::Batch {
            commands: vec![
                MetadataCommand::FenceNode { node: 1 },
                MetadataCommand::FenceNode { node: 9 },
            ],
        })
        .unwrap_err();
    assert!(matches!(err, MetadataError::InBatch { index: 1, .. }));
    assert_eq!(err.code(), "unknown_node");
    assert_eq!(m, before);
    let nested = MetadataCommand::Batch {
        commands: vec![MetadataCommand::Batch { commands: vec![] }],
    };
    assert_eq!(m.apply(&nested), Err(MetadataError::NestedBatch));
}

#[test]
fn producer_id_blocks_do_not_overlap() {
    let mut m = with_nodes(2);
    let a = m
        .apply(&MetadataCommand::AllocateProducerIds { node: 1 })
        .unwrap();
    let b = m
        .apply(&MetadataCommand::AllocateProducerIds { node: 2 })
        .unwrap();
    assert_eq!(
        (a, b),
        (
            MetadataResponse::ProducerIds {
                first: 0,
                count: PRODUCER_ID_BLOCK_SIZE
            },
            MetadataResponse::ProducerIds {
                first: PRODUCER_ID_BLOCK_SIZE,
                count: PRODUCER_ID_BLOCK_SIZE
            }
        )
    );
    assert_eq!(
        m.apply(&MetadataCommand::AllocateProducerIds { node: 7 }),
        Err(MetadataError::UnknownNode(7))
    );
}

#[test]
fn unregister_refused_while_holding_replicas() {
    let mut m = with_nodes(3);
    create(&mut m, "t", 1, 3);
    let err = m
        .apply(&MetadataCommand::UnregisterNode { node: 2 })
        .unwrap_err();
    assert_eq!(err.code(), "node_in_use");
    m.apply(&MetadataCommand::DeleteTopic { name: "t".into() })
        .unwrap();
    m.apply(&MetadataCommand::UnregisterNode { node: 2 })
        .unwrap();
    assert!(!m.nodes.contains_key(&2));
}

#[test]
fn a_newer_command_format_is_not_applied() {
    let mut m = with_nodes(1);
    let before = m.clone();
    let entry = VersionedCommand {
        version: COMMAND_FORMAT_VERSION + 1,
        command: MetadataCommand::FenceNode { node: 1 },
    };
    assert!(matches!(
        m.apply_entry(5, &entry),
        Err(MetadataError::UnsupportedVersion { .. })
    ));
    assert_eq!(m, before);
}

#[test]
fn commands_have_a_stable_tagged_json_form() {
    let cmd = MetadataCommand::ElectLeader {
        topic: "t".into(),
        partition: 0,
        leader: Some(2),
        leader_epoch: 4,
        isr: vec![2, 3],
    };
    let json = serde_json::to_string(&VersionedCommand::new(cmd.clone())).unwrap();
    assert_eq!(
        json,
        r#"{"version":4,"command":{"type":"elect_leader","topic":"t","partition":0,"leader":2,"leader_epoch":4,"isr":[2,3]}}"#
    );
    let back: VersionedCommand = serde_json::from_str(&json).unwrap();
    assert_eq!(back.command, cmd);
}

#[test]
fn assignment_is_balanced_and_deterministic() {
    let m = with_nodes(5);
    let a = assign_replicas(&m, 10, 3).unwrap();
    assert_eq!(a, assign_replicas(&m, 10, 3).unwrap());
    let mut leaders = BTreeMap::new();
    let mut replicas = BTreeMap::new();
    for r in &a {
        *leaders.entry(r[0]).or_insert(0) += 1;
        for n in r {
            *replicas.entry(*n).or_insert(0) += 1;
        }
    }
    assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2; 5]);
    assert_eq!(replicas.values().copied().collect::<Vec<_>>(), vec![6; 5]);
}

#[test]
fn assignment_accounts_for_existing_load() {
    let mut m = with_nodes(3);
    create(&mut m, "a", 1, 1);
    let first = m.partition("a", 0).unwrap().leader.unwrap();
    let next = assign_replicas(&m, 2, 1).unwrap();
    assert!(
        next.iter().all(|r| r[0] != first),
        "new leaders avoid the node already leading: {next:?}"
    );
}

#[test]
fn losing_a_node_moves_its_leaderships_within_the_isr() {
    let mut m = with_nodes(3);
    create(&mut m, "t", 6, 3);
    create(&mut m, "single", 1, 1);
    let lost = 2;
    let led = controller::partitions_led_by(&m, lost);
    assert!(!led.is_empty());
    let cmd = fence_node_commands(&m, lost);
    m.apply(&cmd).unwrap();
    assert!(controller::partitions_led_by(&m, lost).is_empty());
    for (name, t) in &m.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            if let Some(l) = p.leader {
                assert!(p.isr.contains(&l) && l != lost, "{name}/{i}: {p:?}");
                assert!(!p.isr.contains(&lost) || p.isr == vec![lost]);
            }
        }
    }
    // A single-replica partition led by the lost node goes offline (no unclean election)
    // and comes back when the node registers again.
    let offline = controller::offline_partitions(&m);
    let single_on_lost = m.partition("single", 0).unwrap().replicas == vec![lost];
    assert_eq!(offline.is_empty(), !single_on_lost);
    m.apply(&MetadataCommand::RegisterNode {
        node: lost,
        info: info(lost),
    })
    .unwrap();
    if let Some(cmd) = controller::elect_offline_commands(&m) {
        m.apply(&cmd).unwrap();
    }
    assert!(controller::offline_partitions(&m).is_empty());
}

#[test]
fn sessions_expire_after_the_timeout() {
    let start = Instant::now();
    let mut s = Sessions::new();
    s.reset([1, 2, 3], start);
    s.heartbeat(2, start + Duration::from_secs(4));
    let now = start + Duration::from_secs(6);
    assert_eq!(s.expired(now, Duration::from_secs(5)), vec![1, 3]);
    s.remove(1);
    assert_eq!(s.expired(now, Duration::from_secs(5)), vec![3]);
}

/// An abstract step, turned into a concrete command against the current state so that most
/// steps are valid (and the rest exercise the refusals).
#[derive(Debug, Clone)]
enum Step {
    Register(u8),
    Fence(u8),
    FenceWithElections(u8),
    ElectOffline,
    Create {
        partitions: u8,
        rf: u8,
    },
    Delete(u8),
    Elect {
        topic: u8,
        partition: u8,
        leader: Option<u8>,
        epoch_delta: i8,
        isr_mask: u8,
    },
    Alter {
        topic: u8,
        partition: u8,
        as_leader: bool,
        epoch_delta: i8,
        pe_delta: i8,
        isr_mask: u8,
    },
    Producer(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1u8..=5).prop_map(Step::Register),
        (1u8..=5).prop_map(Step::Fence),
        (1u8..=5).prop_map(Step::FenceWithElections),
        Just(Step::ElectOffline),
        (1u8..=4, 1u8..=4).prop_map(|(partitions, rf)| Step::Create { partitions, rf }),
        (0u8..4).prop_map(Step::Delete),
        (
            0u8..4,
            0u8..4,
            proptest::option::of(1u8..=5),
            -1i8..=2,
            any::<u8>()
        )
            .prop_map(
                |(topic, partition, leader, epoch_delta, isr_mask)| Step::Elect {
                    topic,
                    partition,
                    leader,
                    epoch_delta,
                    isr_mask
                }
            ),
        (
            0u8..4,
            0u8..4,
            any::<bool>(),
            -1i8..=1,
            -1i8..=1,
            any::<u8>()
        )
            .prop_map(
                |(topic, partition, as_leader, epoch_delta, pe_delta, isr_mask)| Step::Alter {
                    topic,
                    partition,
                    as_leader,
                    epoch_delta,
                    pe_delta,
                    isr_mask
                }
            ),
        (1u8..=6).prop_map(Step::Producer),
    ]
}

fn nth_topic(m: &ClusterMetadata, i: u8) -> Option<(String, &TopicMetadata)> {
    let n = m.topics.len();
    (n > 0).then(|| {
        let (name, t) = m.topics.iter().nth(usize::from(i) % n).unwrap();
        (name.clone(), t)
    })
}

fn mask(replicas: &[NodeId], bits: u8) -> Vec<NodeId> {
    replicas
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, &n)| n)
        .collect()
}

fn concrete(m: &ClusterMetadata, step: &Step, counter: &mut u32) -> Option<MetadataCommand> {
    Some(match *step {
        Step::Register(n) => MetadataCommand::RegisterNode {
            node: n.into(),
            info: info(n.into()),
        },
        Step::Fence(n) => MetadataCommand::FenceNode { node: n.into() },
        Step::FenceWithElections(n) => {
            if !m.nodes.contains_key(&n.into()) {
                return None;
            }
            fence_node_commands(m, n.into())
        }
        Step::ElectOffline => controller::elect_offline_commands(m)?,
        Step::Create { partitions, rf } => {
            *counter += 1;
            let req = TopicRequest {
                name: format!("t{counter}"),
                partitions: partitions.into(),
                replication_factor: Some(rf.into()),
                config: TopicConfig {
                    unclean_leader_election: counter.is_multiple_of(3),
                    ..TopicConfig::default()
                },
                ..TopicRequest::default()
            };
            create_topic_command(m, &req).ok()?
        }
        Step::Delete(i) => MetadataCommand::DeleteTopic {
            name: nth_topic(m, i)?.0,
        },
        Step::Elect {
            topic,
            partition,
            leader,
            epoch_delta,
            isr_mask,
        } => {
            let (name, t) = nth_topic(m, topic)?;
            let pi = usize::from(partition) % t.partitions.len();
            let p = &t.partitions[pi];
            MetadataCommand::ElectLeader {
                topic: name,
                partition: pi as i32,
                leader: leader.map(|l| p.replicas[usize::from(l) % p.replicas.len()]),
                leader_epoch: p.leader_epoch + i32::from(epoch_delta),
                isr: mask(&p.replicas, isr_mask),
            }
        }
        Step::Alter {
            topic,
            partition,
            as_leader,
            epoch_delta,
            pe_delta,
            isr_mask,
        } => {
            let (name, t) = nth_topic(m, topic)?;
            let pi = usize::from(partition) % t.partitions.len();
            let p = &t.partitions[pi];
            let leader = match (as_leader, p.leader) {
                (true, Some(l)) => l,
                _ => p.replicas[usize::from(isr_mask) % p.replicas.len()],
            };
            MetadataCommand::AlterPartition {
                topic: name,
                partition: pi as i32,
                leader,
                leader_epoch: p.leader_epoch + i32::from(epoch_delta),
                partition_epoch: p.partition_epoch + i32::from(pe_delta),
                isr: mask(&p.replicas, isr_mask),
            }
        }
        Step::Producer(n) => MetadataCommand::AllocateProducerIds { node: n.into() },
    })
}

fn check_partition_invariants(m: &ClusterMetadata) -> Result<(), TestCaseError> {
    for (name, t) in &m.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            prop_assert!(!p.isr.is_empty(), "{name}/{i}: empty isr");
            prop_assert!(
                p.isr.windows(2).all(|w| w[0] < w[1]),
                "{name}/{i}: isr not a set"
            );
            prop_assert!(
                p.isr.iter().all(|n| p.replicas.contains(n)),
                "{name}/{i}: isr ⊄ replicas"
            );
            if let Some(l) = p.leader {
                prop_assert!(
                    p.isr.contains(&l),
                    "{name}/{i}: leader {l} not in isr {:?}",
                    p.isr
                );
                prop_assert!(p.replicas.contains(&l));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn invariants_hold_over_random_commands(steps in proptest::collection::vec(step(), 1..80)) {
        let mut m = ClusterMetadata::default();
        let mut replay = ClusterMetadata::default();
        let mut counter = 0;
        // (topic_id, partition, leader_epoch) → leader: one leader per epoch.
        let mut leader_of_epoch: BTreeMap<(u64, usize, i32), Option<NodeId>> = BTreeMap::new();
        // (topic_id, partition) → (leader epoch, partition epoch) last seen.
        let mut epochs: BTreeMap<(u64, usize), (i32, i32)> = BTreeMap::new();
        for (index, s) in steps.iter().enumerate() {
            let Some(cmd) = concrete(&m, s, &mut counter) else { continue };
            let entry = VersionedCommand::new(cmd);
            let before = m.clone();
            let outcome = m.apply_entry(index as u64 + 1, &entry).unwrap();
            // Determinism: a second replica applying the same entry gets the same state.
            let outcome2 = replay.apply_entry(index as u64 + 1, &entry).unwrap();
            prop_assert_eq!(&outcome, &outcome2);
            prop_assert_eq!(&m, &replay);
            if outcome.is_err() {
                let mut unchanged = before.clone();
                unchanged.version = m.version;
                prop_assert_eq!(&m, &unchanged, "a refused command changed the state");
            }
            check_partition_invariants(&m)?;
            for t in m.topics.values() {
                for (i, p) in t.partitions.iter().enumerate() {
                    let seen = leader_of_epoch.entry((t.topic_id, i, p.leader_epoch)).or_insert(p.leader);
                    prop_assert_eq!(*seen, p.leader, "two leaders for one epoch");
                    let last = epochs.entry((t.topic_id, i)).or_insert((p.leader_epoch, p.partition_epoch));
                    prop_assert!(p.leader_epoch >= last.0 && p.partition_epoch >= last.1, "an epoch went back");
                    *last = (p.leader_epoch, p.partition_epoch);
                }
            }
        }
        // A snapshot (the JSON form) restores the same state.
        let json = serde_json::to_string(&m).unwrap();
        let back: ClusterMetadata = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, m);
    }

    #[test]
    fn assignment_is_valid_and_balanced(nodes in 1u64..=7, rf_pick in 0u16..7, partitions in 1i32..60) {
        let m = with_nodes(nodes);
        let rf = rf_pick % nodes as u16 + 1;
        let a = assign_replicas(&m, partitions, rf).unwrap();
        prop_assert_eq!(a.len(), partitions as usize);
        let mut leaders: BTreeMap<NodeId, usize> = (1..=nodes).map(|n| (n, 0)).collect();
        let mut replicas = leaders.clone();
        for r in &a {
            prop_assert_eq!(r.len(), usize::from(rf));
            let set: BTreeSet<_> = r.iter().collect();
            prop_assert_eq!(set.len(), r.len());
            *leaders.get_mut(&r[0]).unwrap() += 1;
            for n in r {
                *replicas.get_mut(n).unwrap() += 1;
            }
        }
        let spread = |c: &BTreeMap<NodeId, usize>| c.values().max().unwrap() - c.values().min().unwrap();
        prop_assert!(spread(&leaders) <= 1, "leaders {:?}", leaders);
        prop_assert!(spread(&replicas) <= 1, "replicas {:?}", replicas);
        // The state machine accepts what the controller computed.
        let mut m2 = m.clone();
        let cmd = MetadataCommand::CreateTopic(CreateTopic {
            name: "p".into(),
            replication_factor: rf,
            min_insync_replicas: 1,
            config: TopicConfig::default(),
            internal_owner: None,
            assignment: a,
        });
        prop_assert!(m2.apply(&cmd).is_ok());
    }
}

#[test]
fn user_changes_are_applied_and_refused_by_the_stores_own_rules() {
    use crate::auth::store::UserRecord;
    use crate::auth::{AclAllow, AclResource, AuthChange, Mechanism, Role, ScramCredential};
    let cred = |m| ScramCredential::new(m, "pw", 4096).unwrap();
    let user = UserRecord {
        name: "carol".into(),
        role: Role::Writer,
        scram_sha256: cred(Mechanism::ScramSha256),
        scram_sha512: cred(Mechanism::ScramSha512),
        created_ms: 7,
    };
    let mut m = with_nodes(1);
    let create = MetadataCommand::Auth {
        change: AuthChange::CreateUser(user.clone()),
    };
    assert_eq!(m.apply(&create).unwrap(), MetadataResponse::Done);
    let again = m.apply(&create).unwrap_err();
    assert_eq!(again.code(), "auth_refused");
    assert!(again.to_string().contains("already exists"), "{again}");
    let acl = MetadataCommand::Auth {
        change: AuthChange::AddAcl {
            user: "carol".into(),
            resource: AclResource::Topic,
            prefix: "ok-".into(),
            allow: AclAllow::Write,
        },
    };
    match m.apply(&acl).unwrap() {
        MetadataResponse::AclAdded { acl } => assert_eq!(acl.id, 1),
        other => panic!("{other:?}"),
    }
    // Deterministic: a replay gives the same records, and they survive a snapshot.
    let mut replay = with_nodes(1);
    replay.apply(&create).unwrap();
    replay.apply(&acl).unwrap();
    assert_eq!(replay.auth, m.auth);
    let snapshot: ClusterMetadata =
        serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
    assert_eq!(snapshot, m);
    m.apply(&MetadataCommand::Auth {
        change: AuthChange::DeleteUser {
            name: "carol".into(),
        },
    })
    .unwrap();
    assert!(m.auth.users.is_empty() && m.auth.acls.is_empty());
    assert_eq!(m.auth.next_acl_id, 2, "ids are never reused");
}

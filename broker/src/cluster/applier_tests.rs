//! The metadata applier over real brokers: three `Broker`s on temporary directories, their
//! replica managers fetching from each other over the simulated network, and the test
//! playing the controller (it applies commands to a `ClusterMetadata` and hands every
//! version to each node's applier, or to some of them only). No timing is asserted beyond
//! generous liveness bounds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::NodeId;
use super::applier::Applier;
use super::metadata::controller::{self, TopicRequest};
use super::metadata::{ClusterMetadata, MetadataCommand, NodeInfo, TopicConfig, VersionedCommand};
use super::replication::ReplicationConfig;
use super::replication::harness_tests::{Registry, SimTransport};
use super::replication::manager::ReplicaManager;
use super::sim::SimNetwork;
use crate::error::BrokerError;
use crate::{Broker, BrokerConfig, ProduceRecord};

const LIVENESS: Duration = Duration::from_secs(20);

struct TestNode {
    broker: Broker,
    applier: Applier,
    _dir: tempfile::TempDir,
}

struct Harness {
    net: Arc<SimNetwork>,
    nodes: BTreeMap<NodeId, TestNode>,
    meta: ClusterMetadata,
    index: u64,
}

fn config() -> ReplicationConfig {
    ReplicationConfig {
        replica_lag_time_max: Duration::from_millis(300),
        fetch_max_wait: Duration::from_millis(20),
        fetch_backoff: Duration::from_millis(5),
        fetch_timeout: Duration::from_secs(2),
        ..ReplicationConfig::default()
    }
}

fn record(v: &str) -> ProduceRecord {
    ProduceRecord {
        key: Some(v.as_bytes().to_vec().into()),
        value: Some(v.as_bytes().to_vec().into()),
        partition: Some(0),
        ..ProduceRecord::default()
    }
}

impl Harness {
    fn new(n: u64) -> Harness {
        let net = Arc::new(SimNetwork::new());
        let registry: Registry = Arc::default();
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            let dir = tempfile::tempdir().unwrap();
            let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
            let transport = Arc::new(SimTransport {
                from: id,
                net: Arc::clone(&net),
                nodes: Arc::clone(&registry),
            });
            let manager = ReplicaManager::new(id, config(), transport).unwrap();
            registry
                .write()
                .unwrap()
                .insert(id, Arc::downgrade(&manager));
            let applier = Applier::new(id, broker.clone(), manager);
            nodes.insert(
                id,
                TestNode {
                    broker,
                    applier,
                    _dir: dir,
                },
            );
        }
        let mut h = Harness {
            net,
            nodes,
            meta: ClusterMetadata::default(),
            index: 0,
        };
        for id in 1..=n {
            h.commit(MetadataCommand::RegisterNode {
                node: id,
                info: NodeInfo::default(),
            });
        }
        h
    }

    fn commit(&mut self, cmd: MetadataCommand) {
        self.index += 1;
        self.meta
            .apply_entry(self.index, &VersionedCommand::new(cmd))
            .unwrap()
            .unwrap();
    }

    /// Every node applies the current metadata.
    fn apply_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        self.apply_on(&ids);
    }

    fn apply_on(&mut self, ids: &[NodeId]) {
        for id in ids {
            let meta = self.meta.clone();
            self.nodes.get_mut(id).unwrap().applier.apply(&meta);
        }
    }

    fn create_topic(&mut self, name: &str, partitions: i32, min_insync: u16) {
        let cmd = controller::create_topic_command(
            &self.meta,
            &TopicRequest {
                name: name.into(),
                partitions,
                replication_factor: Some(3),
                min_insync_replicas: Some(min_insync),
                config: TopicConfig::default(),
                internal_owner: None,
            },
        )
        .unwrap();
        self.commit(cmd);
    }

    fn broker(&self, id: NodeId) -> Broker {
        self.nodes[&id].broker.clone()
    }

    fn leader(&self, topic: &str, partition: i32) -> NodeId {
        self.meta
            .partition(topic, partition)
            .unwrap()
            .leader
            .unwrap()
    }
}

/// Produces on `node` from a blocking thread (the facade waits for replication there).
async fn produce(broker: Broker, topic: &str, values: &[&str]) -> crate::Result<Vec<(i32, i64)>> {
    let topic = topic.to_string();
    let records: Vec<ProduceRecord> = values.iter().map(|v| record(v)).collect();
    tokio::task::spawn_blocking(move || broker.produce(&topic, records))
        .await
        .unwrap()
}

/// The values `broker` lets a reader see on `topic`/0, waiting until there are `n`.
async fn wait_values(broker: &Broker, topic: &str, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + LIVENESS;
    loop {
        let got = broker
            .read(topic, 0, 0, 10_000, 1 << 20)
            .map(|r| {
                r.records
                    .iter()
                    .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if got.len() >= n {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} records readable: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_created_topic_is_replicated_to_every_replica_and_only_its_leader_takes_writes() {
    let mut h = Harness::new(3);
    h.create_topic("orders", 1, 2);
    h.apply_all();
    let leader = h.leader("orders", 0);
    let acked = produce(h.broker(leader), "orders", &["a", "b", "c"])
        .await
        .unwrap();
    assert_eq!(acked, vec![(0, 0), (0, 1), (0, 2)]);
    for id in 1..=3 {
        assert_eq!(
            wait_values(&h.broker(id), "orders", 3).await,
            ["a", "b", "c"]
        );
        let info = h.broker(id).topic_info("orders").unwrap();
        assert_eq!(info.cluster.unwrap().replication_factor, 3);
    }
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    match produce(h.broker(follower), "orders", &["x"]).await {
        Err(BrokerError::NotLeader { leader: l, .. }) => assert_eq!(l, Some(leader)),
        other => panic!("a follower took a write: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replicated_partition_refuses_everything_before_its_replica_is_attached() {
    let mut h = Harness::new(3);
    h.create_topic("orders", 1, 2);
    let spec = super::applier::topic_spec("orders", &h.meta.topics["orders"]);
    let dir = tempfile::tempdir().unwrap();
    for _restart in 0..2 {
        // Created as the applier creates it, then reopened: the local copy keeps its marker
        // and refuses reads and writes until a replica is attached.
        let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        broker.ensure_replicated_topic(spec.clone()).unwrap();
        assert!(broker.topic_info("orders").unwrap().cluster.is_some());
        let b = broker.clone();
        let r = tokio::task::spawn_blocking(move || b.produce("orders", vec![record("x")]))
            .await
            .unwrap();
        assert!(matches!(r, Err(BrokerError::NotLeader { .. })), "{r:?}");
        assert!(matches!(
            broker.read("orders", 0, 0, 10, 1 << 20),
            Err(BrokerError::NotLeader { .. })
        ));
        assert!(matches!(
            broker.partition_offsets("orders", 0),
            Err(BrokerError::NotLeader { .. })
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_never_see_past_the_high_watermark() {
    let mut h = Harness::new(3);
    h.create_topic("orders", 1, 1);
    h.apply_all();
    let leader = h.leader("orders", 0);
    produce(h.broker(leader), "orders", &["a"]).await.unwrap();
    for id in 1..=3 {
        wait_values(&h.broker(id), "orders", 1).await;
    }
    // The followers cannot fetch: a write lands on the leader only, and stays invisible.
    for id in (1..=3).filter(|id| *id != leader) {
        h.net.cut(leader, id);
        h.net.cut(id, leader);
    }
    let b = h.broker(leader);
    let batch = batch_of("b");
    let appended =
        tokio::task::spawn_blocking(move || b.append_with_acks("orders", 0, &batch, false))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(appended.first, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = h.broker(leader).read("orders", 0, 0, 100, 1 << 20).unwrap();
    assert_eq!(
        r.records.len(),
        1,
        "a record past the high watermark was read"
    );
    assert_eq!(r.end_offset, 1);
    assert_eq!(
        h.broker(leader).partition_offsets("orders", 0).unwrap(),
        (0, 1)
    );
    h.net.heal();
    assert_eq!(
        wait_values(&h.broker(leader), "orders", 2).await,
        ["a", "b"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_takes_writes_and_the_fenced_one_refuses_them() {
    let mut h = Harness::new(3);
    h.create_topic("orders", 1, 2);
    h.apply_all();
    let old = h.leader("orders", 0);
    produce(h.broker(old), "orders", &["a", "b"]).await.unwrap();
    // The old leader dies (it hears nothing more); the controller fences it and elects.
    for id in (1..=3).filter(|id| *id != old) {
        h.net.cut(old, id);
        h.net.cut(id, old);
    }
    let fence = controller::fence_node_commands(&h.meta, old);
    h.commit(fence);
    let others: Vec<NodeId> = (1..=3).filter(|id| *id != old).collect();
    h.apply_on(&others);
    let new = h.leader("orders", 0);
    assert_ne!(new, old);
    produce(h.broker(new), "orders", &["c"]).await.unwrap();
    for id in &others {
        assert_eq!(
            wait_values(&h.broker(*id), "orders", 3).await,
            ["a", "b", "c"]
        );
    }
    // The old leader, told nothing yet, still leads at its epoch; with min_insync 2 and
    // its followers gone, acks=all cannot complete there: it is never acknowledged.
    let b = h.broker(old);
    let r = tokio::task::spawn_blocking(move || {
        let batch = batch_of("zombie");
        let a = b.append_with_acks("orders", 0, &batch, true)?;
        tokio::runtime::Handle::current()
            .block_on(a.pending.unwrap().wait(Duration::from_millis(300)))
    })
    .await
    .unwrap();
    assert!(r.is_err(), "a fenced leader acknowledged an acks=all write");
    // Once it applies the metadata it follows the new leader and truncates its tail.
    h.net.heal();
    h.apply_on(&[old]);
    assert_eq!(
        wait_values(&h.broker(old), "orders", 3).await,
        ["a", "b", "c"]
    );
    let r = produce(h.broker(old), "orders", &["y"]).await;
    assert!(matches!(r, Err(BrokerError::NotLeader { .. })), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_topic_is_removed_from_every_replica() {
    let mut h = Harness::new(3);
    h.create_topic("orders", 2, 1);
    h.apply_all();
    let leader = h.leader("orders", 0);
    produce(h.broker(leader), "orders", &["a"]).await.unwrap();
    h.commit(MetadataCommand::DeleteTopic {
        name: "orders".into(),
    });
    h.apply_all();
    for id in 1..=3 {
        assert!(h.broker(id).topic_info("orders").is_err(), "node {id}");
    }
    // Recreated under the same name: a new, empty topic everywhere.
    h.create_topic("orders", 1, 1);
    h.apply_all();
    for id in 1..=3 {
        assert_eq!(h.broker(id).partition_count("orders").unwrap(), 1);
    }
    let leader = h.leader("orders", 0);
    let acked = produce(h.broker(leader), "orders", &["z"]).await.unwrap();
    assert_eq!(acked, vec![(0, 0)]);
}

/// One record as a checked batch.
fn batch_of(v: &str) -> crate::batch::CheckedBatch {
    let mut b = crate::batch_builder::BatchBuilder::new();
    b.push(
        0,
        Some(v.as_bytes()),
        Some(v.as_bytes()),
        std::iter::empty(),
    );
    b.finish_checked().unwrap()
}

/// The in-sync set changes the leader wants, committed by the test as the controller would.
async fn commit_isr_changes(h: &mut Harness, leader: NodeId, want_len: usize) {
    let deadline = tokio::time::Instant::now() + LIVENESS;
    loop {
        for cmd in h.nodes[&leader].applier.isr_proposals() {
            h.commit(cmd);
        }
        h.apply_all();
        if h.meta.partition("orders", 0).unwrap().isr.len() == want_len {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "in-sync set never reached {want_len}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_in_sync_set_shrinks_through_the_controller_and_acks_all_is_refused_below_min_insync() {
    let mut h = Harness::new(3);
    h.create_topic("orders", 1, 2);
    h.apply_all();
    let leader = h.leader("orders", 0);
    produce(h.broker(leader), "orders", &["a"]).await.unwrap();
    let followers: Vec<NodeId> = (1..=3).filter(|id| *id != leader).collect();
    // A follower stops fetching; a write it lacks (acks=1) makes it fall behind.
    h.net.cut(followers[0], leader);
    append_acks_1(h.broker(leader), "b").await;
    commit_isr_changes(&mut h, leader, 2).await;
    // Two in sync, min_insync 2: acks=all still works.
    produce(h.broker(leader), "orders", &["c"]).await.unwrap();
    h.net.cut(followers[1], leader);
    append_acks_1(h.broker(leader), "d").await;
    commit_isr_changes(&mut h, leader, 1).await;
    match produce(h.broker(leader), "orders", &["e"]).await {
        Err(BrokerError::NotEnoughReplicas {
            isr: 1,
            min_insync: 2,
            ..
        }) => {}
        other => panic!("acks=all below min_insync was not refused: {other:?}"),
    }
    // Back: the followers catch up and are taken back in.
    h.net.heal();
    commit_isr_changes(&mut h, leader, 3).await;
    produce(h.broker(leader), "orders", &["f"]).await.unwrap();
    for id in 1..=3 {
        assert_eq!(
            wait_values(&h.broker(id), "orders", 5).await,
            ["a", "b", "c", "d", "f"]
        );
    }
}

async fn append_acks_1(broker: Broker, v: &str) {
    let batch = batch_of(v);
    tokio::task::spawn_blocking(move || broker.append_with_acks("orders", 0, &batch, false))
        .await
        .unwrap()
        .unwrap();
}

/// A proposer that is never reached (the test commits nothing through it).
struct NoProposer;

impl super::applier::Proposer for NoProposer {
    fn propose(
        &self,
        _: MetadataCommand,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<super::metadata::MetadataResponse, super::applier::ProposeFailure>,
    > {
        Box::pin(async {
            Err(super::applier::ProposeFailure::Unavailable(
                "no controller in this test".into(),
            ))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_applier_acts_on_nothing_before_the_node_has_caught_up() {
    let mut h = Harness::new(3);
    h.create_topic("orders", 1, 2);
    let node = h.nodes.remove(&1).unwrap();
    let (versions_tx, versions) = tokio::sync::watch::channel(Arc::new(h.meta.clone()));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<bool>();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let broker = node.broker.clone();
    let task = tokio::spawn(node.applier.run(
        versions,
        Arc::new(NoProposer),
        async move { ready_rx.await.unwrap_or(false) },
        stop,
    ));
    // Not caught up: the metadata (which assigns node 1 a replica) is not acted on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        broker.topic_info("orders").is_err(),
        "the applier acted before the node caught up"
    );
    ready_tx.send(true).unwrap();
    let created =
        crate::cluster::applier_tests::eventually(|| broker.topic_info("orders").is_ok()).await;
    assert!(created, "the applier did not act once caught up");
    drop(versions_tx);
    let _ = stop_tx.send(true);
    let _ = task.await;
}

async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + LIVENESS;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unkeyed_records_go_to_the_partitions_this_node_leads() {
    let mut h = Harness::new(3);
    h.create_topic("orders", 3, 1);
    h.apply_all();
    // Each node leads one of the three partitions: unkeyed produce on any node succeeds.
    for id in 1..=3 {
        let led: Vec<i32> = (0..3).filter(|p| h.leader("orders", *p) == id).collect();
        for _ in 0..4 {
            let b = h.broker(id);
            let record = ProduceRecord {
                value: Some(b"v".to_vec().into()),
                ..ProduceRecord::default()
            };
            let acked = tokio::task::spawn_blocking(move || b.produce("orders", vec![record]))
                .await
                .unwrap()
                .unwrap();
            assert!(
                led.contains(&acked[0].0),
                "node {id} wrote partition {} it does not lead",
                acked[0].0
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn elections_and_in_sync_set_changes_are_counted_by_the_leader_that_applies_them() {
    use std::sync::atomic::Ordering::Relaxed;
    let mut h = Harness::new(3);
    h.create_topic("orders", 1, 1);
    h.apply_all();
    let counts = |h: &Harness, id: NodeId| {
        let c = h.nodes[&id].applier.counters();
        (
            c.leader_elections.load(Relaxed),
            c.isr_shrinks.load(Relaxed),
            c.isr_expands.load(Relaxed),
        )
    };
    // A topic's first leaders are no election.
    for id in 1..=3 {
        assert_eq!(counts(&h, id), (0, 0, 0), "node {id}");
    }
    // The leader is lost: another is elected with it out of the in-sync set.
    let old = h.leader("orders", 0);
    let fence = controller::fence_node_commands(&h.meta, old);
    h.commit(fence);
    h.apply_all();
    let new = h.leader("orders", 0);
    assert_ne!(new, old);
    assert_eq!(counts(&h, new), (1, 0, 0));
    // A follower lost too: the new leader's in-sync set shrinks.
    let follower = (1..=3).find(|n| *n != old && *n != new).unwrap();
    let fence = controller::fence_node_commands(&h.meta, follower);
    h.commit(fence);
    h.apply_all();
    assert_eq!(counts(&h, new), (1, 1, 0));
    // Both back and in sync again (as the leader's AlterPartition commits it).
    for node in [old, follower] {
        h.commit(MetadataCommand::RegisterNode {
            node,
            info: NodeInfo::default(),
        });
    }
    let p = h.meta.partition("orders", 0).unwrap().clone();
    h.commit(MetadataCommand::AlterPartition {
        topic: "orders".into(),
        partition: 0,
        leader: new,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        isr: vec![1, 2, 3],
    });
    h.apply_all();
    assert_eq!(counts(&h, new), (1, 1, 1));
    // Nodes that did not lead counted nothing.
    assert_eq!(counts(&h, old), (0, 0, 0));
    assert_eq!(counts(&h, follower), (0, 0, 0));
}

/// The group coordinator on a cluster: the leader of a group's `__consumer_offsets`
/// partition loads it (with the commits a single-node past left on that node) and is the
/// only node that takes the group's commits; when it is fenced the new leader loads the
/// partition and serves every acknowledged commit; the old one, once it applies the
/// change, drops the group and refuses commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_group_coordinator_follows_its_offsets_partition_leader_with_its_commits() {
    use crate::group::{CommittedOffset, OFFSETS_TOPIC, OffsetStore, Ownership, offsets_partition};

    let mut h = Harness::new(3);
    let spec = OffsetStore::cluster_spec();
    let cmd = controller::create_topic_command(
        &h.meta,
        &TopicRequest {
            name: OFFSETS_TOPIC.into(),
            partitions: spec.partitions,
            replication_factor: Some(3),
            min_insync_replicas: Some(2),
            config: TopicConfig::from_spec(&spec),
            internal_owner: spec.internal.as_ref().map(|i| i.owner.clone()),
        },
    )
    .unwrap();
    h.commit(cmd);
    let p = offsets_partition("g");
    let old = h.leader(OFFSETS_TOPIC, p);
    let old_epoch = h.meta.partition(OFFSETS_TOPIC, p).unwrap().leader_epoch;
    let c = |offset| CommittedOffset {
        offset,
        leader_epoch: -1,
        metadata: None,
        commit_timestamp: 1,
    };
    // The leader-to-be was a single node once: its local offsets topic holds a commit.
    {
        let single = OffsetStore::load(h.broker(old)).unwrap();
        single.commit("g", vec![("t".into(), 1, c(7))]).unwrap();
    }
    let stores: BTreeMap<NodeId, Arc<OffsetStore>> = (1..=3)
        .map(|id| (id, Arc::new(OffsetStore::replicated(h.broker(id)).unwrap())))
        .collect();
    assert!(
        h.broker(old).topic_info(OFFSETS_TOPIC).is_err(),
        "the single-node offsets topic was set aside"
    );
    h.apply_all();
    let maintain = |id: NodeId| {
        let s = Arc::clone(&stores[&id]);
        async move {
            tokio::task::spawn_blocking(move || s.maintain())
                .await
                .unwrap()
        }
    };
    let commit = |id: NodeId, offset: i64| {
        let s = Arc::clone(&stores[&id]);
        async move {
            tokio::task::spawn_blocking(move || s.commit("g", vec![("t".into(), 0, c(offset))]))
                .await
                .unwrap()
        }
    };
    let deadline = tokio::time::Instant::now() + LIVENESS;
    while stores[&old].ownership("g") != Ownership::Owned {
        assert!(tokio::time::Instant::now() < deadline, "never loaded");
        maintain(old).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stores[&old].get("g", "t", 1), Some(c(7)), "imported");
    let others: Vec<NodeId> = (1..=3).filter(|id| *id != old).collect();
    for id in &others {
        maintain(*id).await;
        assert_eq!(stores[id].ownership("g"), Ownership::NotOwner);
        let r = commit(*id, 1).await;
        assert!(matches!(r, Err(BrokerError::NotLeader { .. })), "{r:?}");
    }
    commit(old, 10).await.unwrap();
    commit(old, 11).await.unwrap();

    // The coordinator dies; the controller fences it and elects a new leader.
    for id in &others {
        h.net.cut(old, *id);
        h.net.cut(*id, old);
    }
    let fence = controller::fence_node_commands(&h.meta, old);
    h.commit(fence);
    h.apply_on(&others);
    let new = h.leader(OFFSETS_TOPIC, p);
    assert_ne!(new, old);
    let deadline = tokio::time::Instant::now() + LIVENESS;
    while stores[&new].ownership("g") != Ownership::Owned {
        assert!(tokio::time::Instant::now() < deadline, "never loaded");
        maintain(new).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stores[&new].get("g", "t", 0), Some(c(11)));
    assert_eq!(
        stores[&new].get("g", "t", 1),
        Some(c(7)),
        "replicated import"
    );
    commit(new, 12).await.unwrap();
    // OffsetForLeaderEpoch from the new leader's epoch cache: the old epoch ended where the
    // new one began (after the import and two commits).
    let new_epoch = h.meta.partition(OFFSETS_TOPIC, p).unwrap().leader_epoch;
    let b = h.broker(new);
    assert_eq!(
        b.offset_for_leader_epoch(OFFSETS_TOPIC, p, None, old_epoch)
            .unwrap(),
        (old_epoch, 3)
    );
    assert_eq!(
        b.offset_for_leader_epoch(OFFSETS_TOPIC, p, Some(new_epoch), new_epoch)
            .unwrap(),
        (new_epoch, 4)
    );
    assert!(matches!(
        b.offset_for_leader_epoch(OFFSETS_TOPIC, p, Some(old_epoch), old_epoch),
        Err(super::replication::ReplicationError::Fetch(
            _,
            super::replication::messages::FetchError::FencedLeaderEpoch { .. }
        ))
    ));
    let follower = others.iter().copied().find(|id| *id != new).unwrap();
    assert!(matches!(
        h.broker(follower)
            .offset_for_leader_epoch(OFFSETS_TOPIC, p, None, old_epoch),
        Err(super::replication::ReplicationError::NotLeaderOrFollower(_))
    ));

    // The old coordinator learns it: it drops the partition and refuses commits.
    h.net.heal();
    h.apply_on(&[old]);
    assert!(maintain(old).await.contains(&p));
    assert_eq!(stores[&old].ownership("g"), Ownership::NotOwner);
    assert_eq!(stores[&old].get("g", "t", 0), None);
    let r = commit(old, 99).await;
    assert!(matches!(r, Err(BrokerError::NotLeader { .. })), "{r:?}");
    assert_eq!(stores[&new].get("g", "t", 0), Some(c(12)));
}

/// A Kafka client over one connection, enough to send idempotent produce requests.
struct WireClient {
    stream: tokio::net::TcpStream,
    corr: i32,
}

impl WireClient {
    /// Produce v7 to `topic`/0, acks=all, one record with sequence `seq` of producer
    /// (77, 0): the partition's error code.
    async fn produce_seq(&mut self, topic: &str, seq: i32) -> i16 {
        use bytes::BytesMut;
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{
            ApiKey, ProduceRequest, RequestHeader, ResponseHeader, ResponseKind, TopicName,
        };
        use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
        use kafka_protocol::records::{
            Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let record = Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: 77,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: seq,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(bytes::Bytes::from(format!("seq-{seq}"))),
            headers: Default::default(),
            delete_horizon: false,
        };
        let mut records = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut records,
            [record].iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(2000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(topic.into())))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(records.freeze())),
                    ]),
            ]);
        self.corr += 1;
        let version = 7;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.corr)
            .encode(&mut buf, ApiKey::Produce.request_header_version(version))
            .unwrap();
        request.encode(&mut buf, version).unwrap();
        let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&buf);
        self.stream.write_all(&frame).await.unwrap();
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await.unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).await.unwrap();
        let mut body = bytes::Bytes::from(body);
        ResponseHeader::decode(&mut body, ApiKey::Produce.response_header_version(version))
            .unwrap();
        match ResponseKind::decode(ApiKey::Produce, &mut body, version).unwrap() {
            ResponseKind::Produce(r) => r.responses[0].partition_responses[0].error_code,
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn below_min_insync_every_idempotent_batch_is_refused_not_enough_replicas_not_out_of_order() {
    const NOT_ENOUGH_REPLICAS: i16 = 19;
    let mut h = Harness::new(3);
    h.create_topic("orders", 1, 2);
    h.apply_all();
    let leader = h.leader("orders", 0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::kafka::serve(
        h.broker(leader),
        listener,
        crate::kafka::KafkaConfig::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut c = WireClient {
        stream: tokio::net::TcpStream::connect(addr).await.unwrap(),
        corr: 0,
    };
    assert_eq!(c.produce_seq("orders", 0).await, 0);
    // Both followers cut off: once they are out of sync, acks=all is refused before append.
    for id in (1..=3).filter(|id| *id != leader) {
        h.net.cut(leader, id);
        h.net.cut(id, leader);
    }
    // Something the followers lack (a follower level with the leader counts as in sync,
    // as in Kafka, however long silent).
    append_acks_1(h.broker(leader), "x").await;
    let b = h.broker(leader);
    assert!(
        eventually(|| matches!(
            b.check_acks_all("orders", 0),
            Err(BrokerError::NotEnoughReplicas { .. })
        ))
        .await
    );
    // The producer sends its next batches (as librdkafka pipelines them): each must get the
    // same retriable refusal. An OUT_OF_ORDER_SEQUENCE_NUMBER for the second would make
    // librdkafka bump its epoch and resend possibly-stored batches as new ones (duplicates).
    for seq in [1, 2, 3] {
        assert_eq!(
            c.produce_seq("orders", seq).await,
            NOT_ENOUGH_REPLICAS,
            "seq {seq}"
        );
    }
    h.net.heal();
    assert!(eventually(|| b.check_acks_all("orders", 0).is_ok()).await);
    assert_eq!(c.produce_seq("orders", 1).await, 0);
    let _ = stop.send(());
    let _ = server.await;
}

/// Drives a reassignment of `orders`/0 to `target` as the controller would: start it, let
/// the leader take the caught-up new replicas into the in-sync set, complete it.
async fn reassign(h: &mut Harness, target: Vec<NodeId>) {
    let p = h.meta.partition("orders", 0).unwrap().clone();
    h.commit(MetadataCommand::ReassignPartition {
        topic: "orders".into(),
        partition: 0,
        partition_epoch: p.partition_epoch,
        target: target.clone(),
    });
    h.apply_all();
    let deadline = tokio::time::Instant::now() + LIVENESS;
    loop {
        let leader = h.leader("orders", 0);
        for cmd in h.nodes[&leader].applier.isr_proposals() {
            h.commit(cmd);
        }
        h.apply_all();
        if let Some(done) = super::metadata::balance::completion_commands(&h.meta) {
            h.commit(done);
            h.apply_all();
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the added replicas never joined the in-sync set: {:?}",
            h.meta.partition("orders", 0)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.meta.partition("orders", 0).unwrap().replicas, target);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reassigned_replica_copies_the_log_joins_the_in_sync_set_and_the_removed_one_goes() {
    let mut h = Harness::new(4);
    h.create_topic("orders", 1, 2);
    h.apply_all();
    let p = h.meta.partition("orders", 0).unwrap().clone();
    let leader = p.leader.unwrap();
    let newcomer = (1..=4).find(|n| !p.replicas.contains(n)).unwrap();
    let follower = *p.replicas.iter().find(|r| **r != leader).unwrap();
    produce(h.broker(leader), "orders", &["a", "b"])
        .await
        .unwrap();
    // Move a follower: the leader keeps leading and acks=all keeps working throughout.
    let target: Vec<NodeId> = p
        .replicas
        .iter()
        .map(|&r| if r == follower { newcomer } else { r })
        .collect();
    reassign(&mut h, target.clone()).await;
    assert_eq!(h.leader("orders", 0), leader);
    produce(h.broker(leader), "orders", &["c"]).await.unwrap();
    assert_eq!(
        wait_values(&h.broker(newcomer), "orders", 3).await,
        ["a", "b", "c"]
    );
    assert!(
        h.broker(follower).topic_info("orders").is_err(),
        "the removed replica's copy is gone"
    );
    // Now move the leader itself off: the next leader comes from the in-sync target.
    let other = (1..=4).find(|n| !target.contains(n)).unwrap();
    let target2: Vec<NodeId> = target
        .iter()
        .map(|&r| if r == leader { other } else { r })
        .collect();
    reassign(&mut h, target2.clone()).await;
    let new_leader = h.leader("orders", 0);
    assert_ne!(new_leader, leader);
    assert!(target2.contains(&new_leader));
    produce(h.broker(new_leader), "orders", &["d"])
        .await
        .unwrap();
    for id in &target2 {
        assert_eq!(
            wait_values(&h.broker(*id), "orders", 4).await,
            ["a", "b", "c", "d"],
            "node {id}"
        );
    }
    // The old leader refuses writes once it applied the move.
    assert!(produce(h.broker(leader), "orders", &["x"]).await.is_err());
}

//! The in-process cluster harness for the data plane: N replica managers in one process,
//! each with its own partition log in a temporary directory, fetching from each other over
//! [`SimNetwork`]. The test plays the controller (it applies leaderships and in-sync sets).
//! No timing is asserted beyond generous liveness bounds.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::*;
use crate::batch::{self, EncodeRecord};
use crate::cluster::NodeId;
use crate::cluster::sim::SimNetwork;
use crate::config::FsyncPolicy;
use crate::log::{PartitionLog, PartitionSettings};

const LIVENESS: Duration = Duration::from_secs(20);
const LAG: Duration = Duration::from_millis(300);

pub(crate) type Registry = Arc<RwLock<HashMap<NodeId, Weak<ReplicaManager>>>>;

/// Follower fetches over the simulated network: request and answer each cross it once.
pub(crate) struct SimTransport {
    pub(crate) from: NodeId,
    pub(crate) net: Arc<SimNetwork>,
    pub(crate) nodes: Registry,
}

impl ReplicaTransport for SimTransport {
    fn fetch(
        &self,
        leader: NodeId,
        request: FetchRequest,
    ) -> BoxFuture<'_, Result<FetchResponse, TransportError>> {
        Box::pin(async move {
            self.net.deliver(self.from, leader).await?;
            let manager = self
                .nodes
                .read()
                .unwrap()
                .get(&leader)
                .and_then(Weak::upgrade)
                .ok_or_else(|| TransportError(format!("no node {leader}")))?;
            let response = manager.serve_fetch(request).await;
            self.net.deliver(leader, self.from).await?;
            Ok(response)
        })
    }
}

struct Node {
    manager: Arc<ReplicaManager>,
    replica: Arc<PartitionReplica>,
    log: Arc<Mutex<PartitionLog>>,
    _dir: tempfile::TempDir,
}

struct Cluster {
    net: Arc<SimNetwork>,
    nodes: BTreeMap<NodeId, Node>,
    tp: TopicPartition,
    ids: Vec<NodeId>,
    settings: PartitionSettings,
    min_insync: usize,
}

fn settings() -> PartitionSettings {
    PartitionSettings {
        segment_bytes: 2048,
        segment_ms: i64::MAX / 2,
        index_interval_bytes: 256,
        fsync: FsyncPolicy::Os,
        max_batch_bytes: 1 << 20,
        retention_ms: None,
        retention_bytes: None,
        compacted: false,
        delete_retention_ms: 0,
    }
}

fn config() -> ReplicationConfig {
    ReplicationConfig {
        replica_lag_time_max: LAG,
        fetch_max_wait: Duration::from_millis(20),
        fetch_partition_max_bytes: 1000,
        fetch_response_max_bytes: 4000,
        fetch_max_partitions: 100,
        fetch_backoff: Duration::from_millis(5),
        fetch_timeout: Duration::from_secs(2),
        reassignment_throttle: None,
    }
}

/// A batch of `n` records whose values name `tag` and their index.
fn records(n: usize, tag: &str) -> batch::CheckedBatch {
    let recs: Vec<EncodeRecord> = (0..n)
        .map(|i| EncodeRecord {
            offset: i as i64,
            timestamp: 1_000 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("{tag}-{i}"))),
            headers: vec![],
        })
        .collect();
    let bytes = batch::encode(&recs).unwrap().freeze();
    batch::validate_records(&bytes).unwrap()
}

impl Cluster {
    fn new(n: u64, min_insync: usize) -> Cluster {
        Self::with_settings(n, min_insync, settings())
    }

    fn with_settings(n: u64, min_insync: usize, settings: PartitionSettings) -> Cluster {
        Self::with_config(n, min_insync, settings, config())
    }

    fn with_config(
        n: u64,
        min_insync: usize,
        settings: PartitionSettings,
        config: ReplicationConfig,
    ) -> Cluster {
        let net = Arc::new(SimNetwork::new());
        let registry: Registry = Arc::default();
        let tp = TopicPartition::new("orders", 0);
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            let dir = tempfile::tempdir().unwrap();
            let log = Arc::new(Mutex::new(
                PartitionLog::open(&dir.path().join("orders-0"), settings.clone()).unwrap(),
            ));
            let transport = Arc::new(SimTransport {
                from: id,
                net: Arc::clone(&net),
                nodes: Arc::clone(&registry),
            });
            let manager = ReplicaManager::new(id, config.clone(), transport).unwrap();
            let replica = manager.add_partition(tp.clone(), Arc::clone(&log), min_insync);
            registry
                .write()
                .unwrap()
                .insert(id, Arc::downgrade(&manager));
            nodes.insert(
                id,
                Node {
                    manager,
                    replica,
                    log,
                    _dir: dir,
                },
            );
        }
        Cluster {
            net,
            nodes,
            tp,
            ids: (1..=n).collect(),
            settings,
            min_insync,
        }
    }

    /// A crash and restart of node `id`'s replica: its state is gone, its log reopens from
    /// what is on disk, and it has no role until the controller's decision is applied again.
    fn restart(&mut self, id: NodeId) {
        let tp = self.tp.clone();
        let settings = self.settings.clone();
        let min_insync = self.min_insync;
        let node = self.nodes.get_mut(&id).unwrap();
        node.manager.remove_partition(&tp);
        let dir = node.log.lock().unwrap().dir().to_path_buf();
        let log = Arc::new(Mutex::new(PartitionLog::open(&dir, settings).unwrap()));
        node.replica = node.manager.add_partition(tp, Arc::clone(&log), min_insync);
        node.log = log;
    }

    fn node(&self, id: NodeId) -> &Node {
        &self.nodes[&id]
    }

    /// The controller's decision, applied on `to` only (the others have not heard of it).
    fn tell(&self, to: &[NodeId], leader: NodeId, epoch: i32, isr: &[NodeId]) {
        let change = LeaderAndIsr {
            leader,
            leader_epoch: epoch,
            replicas: self.ids.clone(),
            isr: isr.to_vec(),
        };
        for id in to {
            self.node(*id)
                .manager
                .apply_leadership(&self.tp, &change)
                .unwrap();
        }
    }

    /// The controller's decision, applied everywhere.
    fn elect(&self, leader: NodeId, epoch: i32, isr: &[NodeId]) {
        self.tell(&self.ids.clone(), leader, epoch, isr);
    }

    async fn produce(
        &self,
        leader: NodeId,
        n: usize,
        tag: &str,
        acks: Acks,
        timeout: Duration,
    ) -> Result<Appended, ReplicationError> {
        let node = self.node(leader);
        let now = node.manager.now_ms();
        node.replica
            .produce(&records(n, tag), acks, now, timeout)
            .await
    }

    /// Every stored byte of a node's log, segment after segment.
    fn log_bytes(&self, id: NodeId) -> Vec<u8> {
        let log = self.node(id).log.lock().unwrap();
        let mut out = Vec::new();
        let mut next = log.start_offset();
        loop {
            let bytes = log.read(next, 1 << 30).unwrap();
            if bytes.is_empty() {
                return out;
            }
            for (h, _) in batch::split(&bytes).unwrap() {
                next = h.next_offset();
            }
            out.extend_from_slice(&bytes);
        }
    }

    /// The record values in a batch buffer, in offset order.
    fn values(bytes: &[u8]) -> Vec<String> {
        let bytes = Bytes::copy_from_slice(bytes);
        let mut out = Vec::new();
        for (_, b) in batch::split(&bytes).unwrap() {
            for r in batch::decode(b).unwrap() {
                out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
            }
        }
        out
    }

    fn end(&self, id: NodeId) -> i64 {
        self.node(id).log.lock().unwrap().end_offset()
    }

    /// What a consumer of the leader `id` can read: every record below its high watermark.
    fn committed(&self, id: NodeId) -> Vec<String> {
        let replica = &self.node(id).replica;
        let mut out = Vec::new();
        let mut next = 0;
        loop {
            let (bytes, _hw) = replica.read_committed(next, 1 << 20).unwrap();
            if bytes.is_empty() {
                return out;
            }
            for (h, _) in batch::split(&bytes).unwrap() {
                next = h.next_offset();
            }
            out.extend(Self::values(&bytes));
        }
    }

    fn epochs(&self, id: NodeId) -> Vec<(i32, i64)> {
        self.node(id)
            .log
            .lock()
            .unwrap()
            .epoch_entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    /// Waits (within the liveness bound) until `cond` holds.
    async fn until(&self, what: &str, mut cond: impl FnMut(&Cluster) -> bool) {
        let deadline = tokio::time::Instant::now() + LIVENESS;
        while !cond(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not within {LIVENESS:?}: {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until every listed node's log is byte-identical to `leader`'s.
    async fn converged(&self, leader: NodeId, nodes: &[NodeId]) {
        self.until("logs converge", |c| {
            let want = c.log_bytes(leader);
            nodes.iter().all(|n| c.log_bytes(*n) == want)
        })
        .await;
    }
}

fn isr(status: &ReplicaStatus) -> Vec<NodeId> {
    status.isr.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_and_two_followers_replicate_and_the_high_watermark_advances() {
    let c = Cluster::new(3, 2);
    c.elect(1, 1, &[1, 2, 3]);
    for i in 0..30 {
        let a = c
            .produce(1, 3, &format!("b{i}"), Acks::All, LIVENESS)
            .await
            .unwrap();
        assert_eq!(a.leader_epoch, 1);
        assert_eq!(a.base_offset, i * 3);
        // acks=all: every in-sync replica has it.
        assert!(c.node(1).replica.high_watermark() > a.last_offset);
        for f in [2, 3] {
            assert!(
                c.end(f) > a.last_offset,
                "follower {f} lacks an acked batch"
            );
        }
    }
    c.converged(1, &[2, 3]).await;
    assert_eq!(c.node(1).replica.high_watermark(), 90);
    // Followers learn the high watermark on their next fetch.
    c.until("followers learn the high watermark", |c| {
        [2, 3]
            .iter()
            .all(|f| c.node(*f).replica.high_watermark() == 90)
    })
    .await;
    assert_eq!(c.committed(1).len(), 90);
    for id in [1, 2, 3] {
        assert_eq!(c.epochs(id), vec![(1, 0)], "node {id}");
    }
    assert!(
        c.node(2).replica.read_committed(0, 100).is_err(),
        "followers serve no consumers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_never_read_past_the_high_watermark() {
    let c = Cluster::new(3, 2);
    c.elect(1, 1, &[1, 2, 3]);
    c.produce(1, 2, "acked", Acks::All, LIVENESS).await.unwrap();
    c.net.isolate(1, &[2, 3]);
    // acks=1: the leader has it, the followers do not, so consumers do not see it.
    let a = c
        .produce(1, 2, "unreplicated", Acks::Leader, LIVENESS)
        .await
        .unwrap();
    assert_eq!((a.base_offset, c.end(1)), (2, 4));
    assert_eq!(c.node(1).replica.high_watermark(), 2);
    assert_eq!(c.committed(1), vec!["acked-0", "acked-1"]);
    let (bytes, hw) = c.node(1).replica.read_committed(2, 1 << 20).unwrap();
    assert!(bytes.is_empty());
    assert_eq!(hw, 2);
    c.net.heal();
    c.until("the high watermark covers the batch", |c| {
        c.node(1).replica.high_watermark() == 4
    })
    .await;
    assert_eq!(
        c.committed(1),
        vec!["acked-0", "acked-1", "unreplicated-0", "unreplicated-1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_leaves_the_in_sync_set_and_rejoins_when_caught_up() {
    let c = Cluster::new(3, 2);
    c.elect(1, 1, &[1, 2, 3]);
    c.produce(1, 1, "first", Acks::All, LIVENESS).await.unwrap();
    c.net.isolate(3, &[1, 2]);
    for i in 0..40 {
        c.produce(1, 5, &format!("lag{i}"), Acks::Leader, LIVENESS)
            .await
            .unwrap();
    }
    // acks=all waits for node 3, still in the set: not acknowledged.
    let blocked = c
        .produce(1, 1, "blocked", Acks::All, Duration::from_millis(100))
        .await;
    assert!(matches!(blocked, Err(ReplicationError::RequestTimedOut(_))));
    assert_eq!(c.end(3), 1);
    // Behind for longer than the lag time: the leader proposes the set without it.
    tokio::time::sleep(LAG * 2).await;
    let proposals = c.node(1).manager.isr_changes_wanted();
    assert_eq!(proposals.len(), 1);
    let (tp, p) = &proposals[0];
    assert_eq!((tp, p.leader, p.leader_epoch), (&c.tp, 1, 1));
    assert_eq!(p.isr, vec![1, 2]);
    // Nothing changes until the controller commits it.
    assert_eq!(isr(&c.node(1).replica.status()), vec![1, 2, 3]);
    // A set committed under another epoch is refused.
    assert!(c.node(1).manager.apply_isr(&c.tp, 0, &p.isr).is_err());
    c.node(1).manager.apply_isr(&c.tp, 1, &p.isr).unwrap();
    assert_eq!(isr(&c.node(1).replica.status()), vec![1, 2]);
    // The watermark no longer waits for node 3.
    c.produce(1, 1, "two-of-three", Acks::All, LIVENESS)
        .await
        .unwrap();
    let end = c.end(1);
    assert_eq!(c.node(1).replica.high_watermark(), end);
    // Node 3 returns, catches up, and is proposed back.
    c.net.heal();
    c.converged(1, &[3]).await;
    let mut proposal = None;
    c.until("node 3 is proposed back", |c| {
        proposal = c.node(1).manager.isr_changes_wanted().pop();
        proposal.is_some()
    })
    .await;
    let (_, p) = proposal.unwrap();
    assert_eq!(p.isr, vec![1, 2, 3]);
    c.node(1).manager.apply_isr(&c.tp, 1, &p.isr).unwrap();
    c.produce(1, 1, "whole", Acks::All, LIVENESS).await.unwrap();
    assert!(c.end(3) > end);
    assert!(c.node(1).manager.isr_changes_wanted().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_is_refused_below_min_insync_and_succeeds_when_the_set_is_whole() {
    let c = Cluster::new(3, 2);
    c.elect(1, 1, &[1, 2, 3]);
    c.produce(1, 1, "a", Acks::All, LIVENESS).await.unwrap();
    c.net.isolate(1, &[2, 3]);
    // The controller shrank the set to the leader alone (as it would after the lag time).
    c.node(1).manager.apply_isr(&c.tp, 1, &[1]).unwrap();
    let end = c.end(1);
    let refused = c.produce(1, 1, "b", Acks::All, LIVENESS).await;
    match refused {
        Err(e @ ReplicationError::NotEnoughReplicas { .. }) => {
            assert_eq!((e.code(), e.kafka_code()), ("not_enough_replicas", 19));
        }
        other => panic!("expected NOT_ENOUGH_REPLICAS, got {other:?}"),
    }
    assert_eq!(c.end(1), end, "a refused acks=all batch is not written");
    // acks=1 is still taken; with a set of one, the watermark reaches the leader's end once
    // the followers that left are no longer caught up (until then they hold it, as Kafka's
    // caught-up replicas outside the set do). The periodic in-sync check recomputes it.
    c.produce(1, 1, "c", Acks::Leader, LIVENESS).await.unwrap();
    assert!(c.node(1).replica.high_watermark() <= end + 1);
    c.until("the watermark reaches the leader's end", |c| {
        c.node(1).manager.isr_changes_wanted();
        c.node(1).replica.high_watermark() == end + 1
    })
    .await;
    c.net.heal();
    c.converged(1, &[2, 3]).await;
    let mut proposal = None;
    c.until("the followers are proposed back", |c| {
        proposal = c.node(1).manager.isr_changes_wanted().pop();
        proposal.as_ref().is_some_and(|(_, p)| p.isr.len() == 3)
    })
    .await;
    let (_, p) = proposal.unwrap();
    c.node(1).manager.apply_isr(&c.tp, 1, &p.isr).unwrap();
    c.produce(1, 1, "d", Acks::All, LIVENESS).await.unwrap();
    for f in [2, 3] {
        assert_eq!(c.end(f), c.end(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_old_leader_truncates_its_divergent_tail() {
    let c = Cluster::new(3, 2);
    c.elect(1, 1, &[1, 2, 3]);
    for i in 0..5 {
        c.produce(1, 2, &format!("acked{i}"), Acks::All, LIVENESS)
            .await
            .unwrap();
    }
    let acked: Vec<String> = c.committed(1);
    assert_eq!(acked.len(), 10);
    // Node 1 is cut off and keeps writing under epoch 1: a tail nobody else has.
    c.net.isolate(1, &[2, 3]);
    for i in 0..12 {
        c.produce(1, 3, &format!("lost{i}"), Acks::Leader, LIVENESS)
            .await
            .unwrap();
    }
    assert_eq!(c.end(1), 46);
    // The controller (on the majority side) makes node 2 leader at epoch 2.
    c.tell(&[2, 3], 2, 2, &[2, 3]);
    for i in 0..3 {
        c.produce(2, 2, &format!("new{i}"), Acks::All, LIVENESS)
            .await
            .unwrap();
    }
    assert_eq!(c.end(2), 16);
    // Node 1 hears of epoch 2 and comes back as a follower.
    c.net.heal();
    c.tell(&[1], 2, 2, &[2, 3]);
    c.converged(2, &[1, 3]).await;
    let values = Cluster::values(&c.log_bytes(1));
    assert!(values.iter().all(|v| !v.starts_with("lost")), "{values:?}");
    assert_eq!(&values[..10], &acked[..]);
    assert_eq!(values.len(), 16);
    for id in [1, 2, 3] {
        assert_eq!(c.epochs(id), vec![(1, 0), (2, 10)], "node {id}");
    }
    // Every batch carries the epoch it was written under.
    let bytes = Bytes::from(c.log_bytes(1));
    let epochs: Vec<(i64, i32)> = batch::split(&bytes)
        .unwrap()
        .iter()
        .map(|(h, _)| (h.base_offset, h.partition_leader_epoch))
        .collect();
    assert_eq!(
        epochs,
        vec![
            (0, 1),
            (2, 1),
            (4, 1),
            (6, 1),
            (8, 1),
            (10, 2),
            (12, 2),
            (14, 2)
        ]
    );
    // The old leader, a follower now, is back in the set once caught up.
    let mut proposal = None;
    c.until("node 1 is proposed into the set", |c| {
        proposal = c.node(2).manager.isr_changes_wanted().pop();
        proposal.is_some()
    })
    .await;
    assert_eq!(proposal.unwrap().1.isr, vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_side_leader_cannot_advance_its_high_watermark_or_ack() {
    let c = Cluster::new(3, 2);
    c.elect(1, 1, &[1, 2, 3]);
    c.produce(1, 1, "before", Acks::All, LIVENESS)
        .await
        .unwrap();
    let hw = c.node(1).replica.high_watermark();
    c.net.isolate(1, &[2, 3]);
    let waiting = {
        let replica = Arc::clone(&c.node(1).replica);
        let now = c.node(1).manager.now_ms();
        let batch = records(1, "minority");
        tokio::spawn(async move { replica.produce(&batch, Acks::All, now, LIVENESS).await })
    };
    let timed_out = c
        .produce(1, 1, "minority", Acks::All, Duration::from_millis(200))
        .await;
    assert!(matches!(
        timed_out,
        Err(ReplicationError::RequestTimedOut(_))
    ));
    tokio::time::sleep(LAG * 2).await;
    assert_eq!(c.node(1).replica.high_watermark(), hw);
    assert_eq!(c.committed(1), vec!["before-0"]);
    // It wants the others out, but only the controller could do that, and it is on the
    // other side: the majority elects node 2 at epoch 2.
    assert_eq!(c.node(1).manager.isr_changes_wanted()[0].1.isr, vec![1]);
    c.tell(&[2, 3], 2, 2, &[2, 3]);
    c.produce(2, 1, "majority", Acks::All, LIVENESS)
        .await
        .unwrap();
    // When node 1 learns the new epoch, its waiting acks=all fails instead of acking.
    c.net.heal();
    c.tell(&[1], 2, 2, &[2, 3]);
    let outcome = tokio::time::timeout(LIVENESS, waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(outcome, Err(ReplicationError::NotLeaderOrFollower(_))),
        "{outcome:?}"
    );
    c.converged(2, &[1, 3]).await;
    assert_eq!(
        Cluster::values(&c.log_bytes(1)),
        vec!["before-0", "majority-0"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_old_leader_that_wakes_is_fenced() {
    let c = Cluster::new(3, 2);
    c.elect(1, 1, &[1, 2, 3]);
    c.produce(1, 2, "before", Acks::All, LIVENESS)
        .await
        .unwrap();
    let hw = c.node(1).replica.high_watermark();
    // Node 1 is paused (SIGSTOP): nothing reaches it, nothing leaves it.
    c.net.stop(1);
    c.tell(&[2, 3], 2, 2, &[2, 3]);
    c.produce(2, 2, "after", Acks::All, LIVENESS).await.unwrap();
    // It wakes still believing it leads at epoch 1.
    c.net.start(1);
    assert_eq!(c.node(1).replica.leader_epoch(), 1);
    let zombie = c
        .produce(1, 1, "zombie", Acks::All, Duration::from_millis(300))
        .await;
    assert!(matches!(zombie, Err(ReplicationError::RequestTimedOut(_))));
    assert_eq!(c.node(1).replica.high_watermark(), hw);
    assert!(!c.committed(1).iter().any(|v| v.starts_with("zombie")));
    // The new leader's followers fetch under epoch 2: the zombie refuses and learns nothing.
    let req = c.node(3).replica.follower_fetch(2, 1000).unwrap();
    assert_eq!(req.current_leader_epoch, 2);
    let answer = c
        .node(1)
        .manager
        .serve_fetch(FetchRequest {
            replica_id: 3,
            max_wait_ms: 0,
            partitions: vec![req],
        })
        .await;
    assert!(matches!(
        answer.partitions[0].result,
        Err(FetchError::UnknownLeaderEpoch {
            request: 2,
            current: 1
        })
    ));
    assert_eq!(c.node(1).replica.high_watermark(), hw);
    // And the new leader refuses anything under epoch 1.
    let stale = PartitionFetch {
        tp: c.tp.clone(),
        current_leader_epoch: 1,
        fetch_offset: 2,
        last_fetched_epoch: Some(1),
        high_watermark: 0,
        max_bytes: 1000,
    };
    let answer = c
        .node(2)
        .manager
        .serve_fetch(FetchRequest {
            replica_id: 1,
            max_wait_ms: 0,
            partitions: vec![stale],
        })
        .await;
    assert!(matches!(
        answer.partitions[0].result,
        Err(FetchError::FencedLeaderEpoch {
            request: 1,
            current: 2
        })
    ));
    // An older decision cannot be applied after a newer one.
    let stale_leadership = LeaderAndIsr {
        leader: 3,
        leader_epoch: 1,
        replicas: vec![1, 2, 3],
        isr: vec![1, 2, 3],
    };
    assert!(matches!(
        c.node(3).manager.apply_leadership(&c.tp, &stale_leadership),
        Err(ReplicationError::StaleLeaderEpoch { .. })
    ));
    // Told of epoch 2, the old leader steps down, drops its unacknowledged write and follows.
    c.tell(&[1], 2, 2, &[2, 3]);
    c.converged(2, &[1, 3]).await;
    let values = Cluster::values(&c.log_bytes(1));
    assert_eq!(values, vec!["before-0", "before-1", "after-0", "after-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_with_an_empty_log_copies_everything_and_a_restart_resumes() {
    let c = Cluster::new(2, 1);
    c.elect(1, 3, &[1]);
    for i in 0..50 {
        c.produce(1, 4, &format!("r{i}"), Acks::All, LIVENESS)
            .await
            .unwrap();
    }
    c.converged(1, &[2]).await;
    assert!(c.node(2).log.lock().unwrap().segment_count() > 1);
    assert_eq!(c.epochs(2), vec![(3, 0)]);
    // The follower's log reopens (a restart) where it was, with its epochs.
    let dir = c.node(2).log.lock().unwrap().dir().to_path_buf();
    let reopened = PartitionLog::open(&dir, settings()).unwrap();
    assert_eq!(reopened.end_offset(), 200);
    assert_eq!(
        reopened
            .epoch_entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect::<Vec<_>>(),
        vec![(3, 0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_leaders_log_start_restarts_its_log_there() {
    let mut s = settings();
    s.retention_bytes = Some(3000);
    let c = Cluster::with_settings(2, 1, s);
    // Node 2 is down while node 1 writes and retention drops its oldest segments.
    c.net.stop(2);
    c.elect(1, 4, &[1]);
    for i in 0..60 {
        c.produce(1, 4, &format!("r{i}"), Acks::All, LIVENESS)
            .await
            .unwrap();
    }
    let start = {
        let mut log = c.node(1).log.lock().unwrap();
        for seg in log.take_expired(0) {
            seg.delete_files().unwrap();
        }
        log.start_offset()
    };
    assert!(start > 0);
    assert_eq!(c.epochs(1), vec![(4, start)]);
    // Back up, it fetches from 0, is told that is out of range, and starts at the leader's
    // log start.
    c.net.start(2);
    c.converged(1, &[2]).await;
    let log = c.node(2).log.lock().unwrap();
    assert_eq!((log.start_offset(), log.end_offset()), (start, 240));
    drop(log);
    assert_eq!(c.epochs(2), vec![(4, start)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_leader_restarted_with_a_divergent_tail_truncates_it() {
    let mut c = Cluster::new(3, 2);
    c.elect(1, 1, &[1, 2, 3]);
    for i in 0..3 {
        c.produce(1, 2, &format!("acked{i}"), Acks::All, LIVENESS)
            .await
            .unwrap();
    }
    c.net.isolate(1, &[2, 3]);
    for i in 0..5 {
        c.produce(1, 3, &format!("lost{i}"), Acks::Leader, LIVENESS)
            .await
            .unwrap();
    }
    c.tell(&[2, 3], 2, 2, &[2, 3]);
    c.produce(2, 2, "new", Acks::All, LIVENESS).await.unwrap();
    // Node 1 crashes and restarts: its log and epoch cache come back from disk.
    c.restart(1);
    assert_eq!(c.end(1), 21);
    assert_eq!(c.epochs(1), vec![(1, 0)]);
    assert_eq!(c.node(1).replica.leader(), None);
    c.net.heal();
    c.tell(&[1], 2, 2, &[2, 3]);
    c.converged(2, &[1, 3]).await;
    assert_eq!(
        Cluster::values(&c.log_bytes(1)),
        vec![
            "acked0-0", "acked0-1", "acked1-0", "acked1-1", "acked2-0", "acked2-1", "new-0",
            "new-1"
        ]
    );
    assert_eq!(c.epochs(1), vec![(1, 0), (2, 6)]);
    // And once more from disk: the truncation and the new epoch survived.
    c.restart(1);
    assert_eq!(c.end(1), 8);
    assert_eq!(c.epochs(1), vec![(1, 0), (2, 6)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_follower_fetch_is_answered_on_append_not_at_its_max_wait() {
    // A leader holds a fetch with nothing new for up to 30 s: longer than every bound below,
    // so only the append waking the held fetches (and the high watermark's advance waking
    // the other follower's) can make these complete.
    let held = Duration::from_secs(30);
    let config = ReplicationConfig {
        fetch_max_wait: held,
        fetch_timeout: held * 2,
        ..config()
    };
    let c = Cluster::with_config(3, 2, settings(), config);
    c.elect(1, 1, &[1, 2, 3]);
    let bound = Duration::from_secs(10);
    for i in 0..5 {
        // Both followers have everything: their next fetches wait on the leader.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = tokio::time::Instant::now();
        let a = c
            .produce(1, 3, &format!("b{i}"), Acks::All, bound)
            .await
            .unwrap_or_else(|e| panic!("batch {i} not acknowledged within {bound:?}: {e}"));
        assert!(started.elapsed() < bound);
        assert_eq!(a.base_offset, i * 3);
    }
    assert_eq!(c.node(1).replica.high_watermark(), 15);
    // The followers learn it too, from fetches the advance woke (not after `held`).
    c.until("followers learn the high watermark", |c| {
        [2, 3]
            .iter()
            .all(|f| c.node(*f).replica.high_watermark() == 15)
    })
    .await;
}

/// KIP-207: a follower elected leader learnt the high watermark one fetch late, so its own
/// starts below what its predecessor acknowledged. Until its followers have fetched past the
/// start of its epoch it does not know the end (`end_known` false: no end offset is handed
/// out), and once it does, the end is at least everything acknowledged — an end offset never
/// goes backwards across a leader change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_hands_out_no_end_below_what_its_predecessor_acknowledged() {
    let c = Cluster::new(3, 2);
    c.elect(1, 1, &[1, 2, 3]);
    c.produce(1, 2, "before", Acks::All, LIVENESS)
        .await
        .unwrap();
    c.converged(1, &[2, 3]).await;
    // Node 3 is cut off: the acks=all batch waits for it. Node 2 fetches it and reports
    // having it (the high watermark cannot cover it yet), then is cut off too, so it never
    // learns the high watermark that node 3's fetch then moves past the batch.
    c.net.isolate(3, &[1, 2]);
    let (acked, ()) = tokio::join!(c.produce(1, 3, "acked", Acks::All, LIVENESS), async {
        c.until("node 2 reports the batch to the leader", |c| {
            c.node(1).replica.status().followers.contains(&(2, 5))
        })
        .await;
        c.net.isolate(2, &[1, 3]);
        c.net.mend(3, 1);
        c.net.mend(1, 3);
    });
    let acked = acked.unwrap();
    assert_eq!(acked.last_offset, 4);
    assert_eq!(c.node(1).replica.high_watermark(), 5);
    assert!(c.node(2).replica.high_watermark() < 5);
    assert_eq!(c.end(2), 5);

    // Node 1 dies; node 2 leads at epoch 2 with node 3 in its set.
    c.net.heal();
    c.net.stop(1);
    c.tell(&[2, 3], 2, 2, &[2, 3]);
    let p = c.node(2).replica.progress();
    assert_eq!(p.epoch_start_offset, 5);
    assert!(
        !p.end_known(),
        "the new leader's high watermark {} is below the 5 acknowledged, yet taken as the end",
        p.high_watermark
    );
    // Every end it hands out from now on covers what was acknowledged.
    c.until("node 3 fetches under epoch 2", |c| {
        c.node(2).replica.progress().end_known()
    })
    .await;
    let p = c.node(2).replica.progress();
    assert!(p.high_watermark >= 5, "{p:?}");
    assert_eq!(c.committed(2).len(), 5);
}

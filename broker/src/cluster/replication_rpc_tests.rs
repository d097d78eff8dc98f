//! The data plane over the real cluster RPC: replica managers in one process, each with its
//! own partition log in a temporary directory and its own loopback HTTP/2 listener, fetching
//! from each other through [`RpcReplicaTransport`] and answering through [`ReplicaService`]
//! behind the node's [`NodeService`]. The test plays the controller (it applies leaderships),
//! as `replication/harness_tests.rs` does over the simulated network. No timing is asserted
//! beyond generous liveness bounds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::NodeId;
use super::replication::{
    Acks, Appended, FetchError, FetchRequest, FetchResponse, LeaderAndIsr, PartitionFetch,
    PartitionReplica, ReplicaManager, ReplicaTransport, ReplicationConfig, ReplicationError,
    TopicPartition, TransportError,
};
use super::replication_rpc::{ReplicaService, RpcReplicaTransport};
use super::rpc::{ClientConfig, LocalNode, Peers, ServerConfig, serve};
use super::service::NodeService;
use crate::batch::{self, EncodeRecord};
use crate::config::FsyncPolicy;
use crate::log::{PartitionLog, PartitionSettings};

const LIVENESS: Duration = Duration::from_secs(30);
const CLUSTER_ID: &str = "replication-rpc-test";

fn settings() -> PartitionSettings {
    PartitionSettings {
        segment_bytes: 4 << 20,
        segment_ms: i64::MAX / 2,
        index_interval_bytes: 1024,
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
        // Long enough that nobody leaves the in-sync set on a slow machine.
        replica_lag_time_max: Duration::from_secs(60),
        fetch_max_wait: Duration::from_millis(100),
        fetch_partition_max_bytes: 1 << 20,
        fetch_response_max_bytes: 10 << 20,
        fetch_max_partitions: 100,
        fetch_backoff: BACKOFF,
        fetch_timeout: Duration::from_secs(10),
        reassignment_throttle: None,
    }
}

const BACKOFF: Duration = Duration::from_millis(50);

/// The RPC transport, counting the fetches it is asked to send.
struct Counting {
    inner: RpcReplicaTransport,
    calls: Arc<AtomicUsize>,
}

impl ReplicaTransport for Counting {
    fn fetch(
        &self,
        leader: NodeId,
        request: FetchRequest,
    ) -> BoxFuture<'_, Result<FetchResponse, TransportError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch(leader, request)
    }
}

struct Node {
    manager: Arc<ReplicaManager>,
    /// `None` on a node that is no replica of the partition.
    replica: Option<Arc<PartitionReplica>>,
    log: Option<Arc<Mutex<PartitionLog>>>,
    /// Its own client side, to send hand-made fetches as this node.
    transport: RpcReplicaTransport,
    fetches_sent: Arc<AtomicUsize>,
    local: Arc<LocalNode>,
    service: Arc<NodeService>,
    addr: String,
    max_message_bytes: usize,
    server: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    _dir: tempfile::TempDir,
}

impl Node {
    fn replica(&self) -> &Arc<PartitionReplica> {
        self.replica.as_ref().expect("a replica")
    }

    fn start_server(&mut self, listener: TcpListener) {
        let (stop, mut rx) = watch::channel(false);
        let server = tokio::spawn(serve(
            listener,
            ServerConfig::new(self.local.clone(), self.max_message_bytes),
            self.service.clone(),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ));
        self.server = Some((stop, server));
    }

    /// Stops the listener (as a killed process would stop answering); the replica stays.
    async fn stop_server(&mut self) {
        if let Some((stop, server)) = self.server.take() {
            let _ = stop.send(true);
            let _ = server.await;
        }
    }

    /// Serves again on the same address.
    async fn restart_server(&mut self) {
        let listener = TcpListener::bind(&self.addr).await.unwrap();
        self.start_server(listener);
    }
}

struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    tp: TopicPartition,
    replicas: Vec<NodeId>,
}

/// A batch of `n` records whose values name `tag` and their index, `pad` bytes each.
fn records(n: usize, tag: &str, pad: usize) -> batch::CheckedBatch {
    let recs: Vec<EncodeRecord> = (0..n)
        .map(|i| EncodeRecord {
            offset: i as i64,
            timestamp: 1_000 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("{tag}-{i}{}", " ".repeat(pad)))),
            headers: vec![],
        })
        .collect();
    let bytes = batch::encode(&recs).unwrap().freeze();
    batch::validate_records(&bytes).unwrap()
}

impl Cluster {
    /// `n` nodes over loopback RPC; the first `replicas` of them hold the partition.
    async fn start(n: u64, replicas: u64, min_insync: usize, max_message_bytes: usize) -> Cluster {
        Self::start_with(n, replicas, min_insync, max_message_bytes, config()).await
    }

    async fn start_with(
        n: u64,
        replicas: u64,
        min_insync: usize,
        max_message_bytes: usize,
        config: ReplicationConfig,
    ) -> Cluster {
        let tp = TopicPartition::new("orders", 0);
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            listeners.insert(id, TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs: BTreeMap<NodeId, String> = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().unwrap().to_string()))
            .collect();
        let mut nodes = BTreeMap::new();
        for (id, listener) in listeners {
            let local = LocalNode::new(id, addrs[&id].clone(), Some(CLUSTER_ID.into()));
            let mut client = ClientConfig::new(max_message_bytes);
            client.connect_timeout = Duration::from_millis(500);
            client.request_timeout = Duration::from_secs(2);
            let peers = Arc::new(Peers::new(
                local.clone(),
                client,
                addrs.iter().map(|(i, a)| (*i, a.clone())),
            ));
            let fetches_sent = Arc::new(AtomicUsize::new(0));
            let transport = Arc::new(Counting {
                inner: RpcReplicaTransport::new(peers.clone()),
                calls: fetches_sent.clone(),
            });
            let manager = ReplicaManager::new(id, config.clone(), transport).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let (replica, log) = if id <= replicas {
                let log = Arc::new(Mutex::new(
                    PartitionLog::open(&dir.path().join("orders-0"), settings()).unwrap(),
                ));
                let replica = manager.add_partition(tp.clone(), log.clone(), min_insync);
                (Some(replica), Some(log))
            } else {
                (None, None)
            };
            let service = NodeService::new();
            service.set_replica(Arc::new(
                ReplicaService::new(manager.clone()).with_max_message_bytes(max_message_bytes),
            ));
            let mut node = Node {
                manager,
                replica,
                log,
                transport: RpcReplicaTransport::new(peers),
                fetches_sent,
                local,
                service,
                addr: addrs[&id].clone(),
                max_message_bytes,
                server: None,
                _dir: dir,
            };
            node.start_server(listener);
            nodes.insert(id, node);
        }
        Cluster {
            nodes,
            tp,
            replicas: (1..=replicas).collect(),
        }
    }

    fn node(&self, id: NodeId) -> &Node {
        &self.nodes[&id]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes.get_mut(&id).unwrap()
    }

    /// The controller's decision, applied on `to` only.
    fn tell(&self, to: &[NodeId], leader: NodeId, epoch: i32, isr: &[NodeId]) {
        let change = LeaderAndIsr {
            leader,
            leader_epoch: epoch,
            replicas: self.replicas.clone(),
            isr: isr.to_vec(),
        };
        for id in to {
            self.node(*id)
                .manager
                .apply_leadership(&self.tp, &change)
                .unwrap();
        }
    }

    fn elect(&self, leader: NodeId, epoch: i32, isr: &[NodeId]) {
        self.tell(&self.replicas.clone(), leader, epoch, isr);
    }

    async fn produce(
        &self,
        leader: NodeId,
        batch: &batch::CheckedBatch,
        acks: Acks,
    ) -> Result<Appended, ReplicationError> {
        let node = self.node(leader);
        let now = node.manager.now_ms();
        node.replica().produce(batch, acks, now, LIVENESS).await
    }

    fn log_bytes(&self, id: NodeId) -> Vec<u8> {
        let log = self.node(id).log.as_ref().unwrap().lock().unwrap();
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

    fn values(bytes: &[u8]) -> Vec<String> {
        let bytes = Bytes::copy_from_slice(bytes);
        let mut out = Vec::new();
        for (_, b) in batch::split(&bytes).unwrap() {
            for r in batch::decode(b).unwrap() {
                let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                out.push(v.trim_end().to_string());
            }
        }
        out
    }

    fn end(&self, id: NodeId) -> i64 {
        self.node(id)
            .log
            .as_ref()
            .unwrap()
            .lock()
            .unwrap()
            .end_offset()
    }

    fn epochs(&self, id: NodeId) -> Vec<(i32, i64)> {
        self.node(id)
            .log
            .as_ref()
            .unwrap()
            .lock()
            .unwrap()
            .epoch_entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    async fn until(&self, what: &str, mut cond: impl FnMut(&Cluster) -> bool) {
        let deadline = tokio::time::Instant::now() + LIVENESS;
        while !cond(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not within {LIVENESS:?}: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until none of `followers` has a fetch in flight that a stopped server can still
    /// answer. A fetch the leader was holding when its server stopped (a long poll) is
    /// answered on the graceful close, with whatever the leader appended by then; fetches
    /// sent after the stop are refused. Each fetcher sends one fetch at a time, so once a
    /// follower has sent one more fetch after this call, the one it had in flight ended.
    async fn no_fetch_in_flight_from(&self, followers: &[NodeId]) {
        let sent: Vec<usize> = followers
            .iter()
            .map(|f| self.node(*f).fetches_sent.load(Ordering::SeqCst))
            .collect();
        self.until("the followers' fetches in flight end", |c| {
            followers
                .iter()
                .zip(&sent)
                .all(|(f, before)| c.node(*f).fetches_sent.load(Ordering::SeqCst) > *before)
        })
        .await;
    }

    async fn converged(&self, leader: NodeId, nodes: &[NodeId]) {
        self.until("logs converge", |c| {
            let want = c.log_bytes(leader);
            nodes.iter().all(|n| c.log_bytes(*n) == want)
        })
        .await;
    }

    async fn stop(mut self) {
        for node in self.nodes.values_mut() {
            node.manager.shutdown();
            node.stop_server().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_reach_the_followers_over_rpc_and_acks_all_completes() {
    let c = Cluster::start(3, 3, 2, 1 << 20).await;
    c.elect(1, 1, &[1, 2, 3]);
    for i in 0..20 {
        let a = c
            .produce(1, &records(3, &format!("b{i}"), 0), Acks::All)
            .await
            .unwrap();
        assert_eq!((a.leader_epoch, a.base_offset), (1, i * 3));
        // acks=all: every in-sync replica has it, the high watermark covers it.
        assert!(c.node(1).replica().high_watermark() > a.last_offset);
        for f in [2, 3] {
            assert!(
                c.end(f) > a.last_offset,
                "follower {f} lacks an acked batch"
            );
        }
    }
    c.converged(1, &[2, 3]).await;
    assert_eq!(c.node(1).replica().high_watermark(), 60);
    c.until("followers learn the high watermark", |c| {
        [2, 3]
            .iter()
            .all(|f| c.node(*f).replica().high_watermark() == 60)
    })
    .await;
    for id in [1, 2, 3] {
        assert_eq!(c.epochs(id), vec![(1, 0)], "node {id}");
    }
    let status = c.node(1).replica().status();
    assert_eq!(status.isr, vec![1, 2, 3]);
    assert_eq!(status.followers, vec![(2, 60), (3, 60)]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_change_over_rpc_makes_the_old_leader_truncate_its_divergent_tail() {
    let mut c = Cluster::start(3, 3, 2, 1 << 20).await;
    c.elect(1, 1, &[1, 2, 3]);
    for i in 0..4 {
        c.produce(1, &records(2, &format!("acked{i}"), 0), Acks::All)
            .await
            .unwrap();
    }
    c.converged(1, &[2, 3]).await;
    // Node 1 stops answering its followers and keeps writing under epoch 1: a tail nobody
    // else has, never acknowledged to an acks=all producer.
    c.node_mut(1).stop_server().await;
    // A fetch node 1 was holding (a long poll) is still answered on the graceful close, with
    // whatever node 1 appended by then: the tail is written once no such fetch is left.
    c.no_fetch_in_flight_from(&[2, 3]).await;
    for i in 0..5 {
        c.produce(1, &records(3, &format!("lost{i}"), 0), Acks::Leader)
            .await
            .unwrap();
    }
    assert_eq!(c.end(1), 23);
    assert_eq!(c.node(1).replica().high_watermark(), 8);
    assert_eq!((c.end(2), c.end(3)), (8, 8), "a follower got the tail");
    // The controller makes node 2 leader at epoch 2; node 3 follows it over the RPC.
    c.tell(&[2, 3], 2, 2, &[2, 3]);
    for i in 0..3 {
        c.produce(2, &records(2, &format!("new{i}"), 0), Acks::All)
            .await
            .unwrap();
    }
    assert_eq!(c.end(2), 14);
    // Node 1 learns of epoch 2: it becomes a follower of node 2 and truncates its tail.
    c.tell(&[1], 2, 2, &[2, 3]);
    assert!(!c.node(1).replica().status().is_leader);
    c.converged(2, &[1, 3]).await;
    let values = Cluster::values(&c.log_bytes(1));
    assert!(values.iter().all(|v| !v.starts_with("lost")), "{values:?}");
    assert_eq!(values.len(), 14);
    for id in [1, 2, 3] {
        assert_eq!(c.epochs(id), vec![(1, 0), (2, 8)], "node {id}");
    }
    // The old leader, now a caught-up follower, is proposed back into the set.
    let mut proposal = None;
    c.until("node 1 is proposed into the set", |c| {
        proposal = c.node(2).manager.isr_changes_wanted().pop();
        proposal.is_some()
    })
    .await;
    assert_eq!(proposal.unwrap().1.isr, vec![1, 2, 3]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_from_a_node_that_is_not_the_follower_is_refused_and_changes_nothing() {
    // Nodes 1 and 2 hold the partition; node 3 does not.
    let c = Cluster::start(3, 2, 2, 1 << 20).await;
    // Only the leader hears of the decision: follower 2 does not fetch yet, so the high
    // watermark waits for it.
    c.tell(&[1], 1, 1, &[1, 2]);
    c.produce(1, &records(5, "r", 0), Acks::Leader)
        .await
        .unwrap();
    let before = c.node(1).replica().status();
    assert_eq!((before.high_watermark, before.log_end_offset), (0, 5));
    let fetch = |replica_id| FetchRequest {
        replica_id,
        max_wait_ms: 0,
        partitions: vec![PartitionFetch {
            tp: c.tp.clone(),
            current_leader_epoch: 1,
            fetch_offset: 5,
            last_fetched_epoch: Some(1),
            high_watermark: 0,
            max_bytes: 1 << 20,
        }],
    };
    // Node 3 speaking for follower 2 (claiming it has everything): refused by the service.
    let spoofed = c.node(3).transport.fetch(1, fetch(2)).await;
    match spoofed {
        Err(TransportError(m)) => assert!(m.contains("malformed"), "{m}"),
        Ok(a) => panic!("a spoofed fetch was answered: {a:?}"),
    }
    // Node 3 for itself: not a replica, so the partition is refused.
    let own = c.node(3).transport.fetch(1, fetch(3)).await.unwrap();
    assert_eq!(own.partitions.len(), 1);
    assert_eq!(
        own.partitions[0].result,
        Err(FetchError::NotLeaderOrFollower)
    );
    // Nothing moved: not the high watermark, not what the leader knows of its followers.
    assert_eq!(c.node(1).replica().status(), before);
    // The real follower catches up and the high watermark follows.
    c.tell(&[2], 1, 1, &[1, 2]);
    c.converged(1, &[2]).await;
    c.until("the high watermark covers the batch", |c| {
        c.node(1).replica().high_watermark() == 5
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_of_a_stopped_leader_retries_with_back_off_and_resumes_after_restart() {
    let mut c = Cluster::start(2, 2, 1, 1 << 20).await;
    c.elect(1, 1, &[1, 2]);
    c.produce(1, &records(2, "before", 0), Acks::All)
        .await
        .unwrap();
    c.converged(1, &[2]).await;
    c.node_mut(1).stop_server().await;
    // A fetch in flight when the server stopped is still answered (a graceful close):
    // let it end before writing what the follower must not get until the restart.
    c.no_fetch_in_flight_from(&[2]).await;
    c.produce(1, &records(2, "while-down", 0), Acks::Leader)
        .await
        .unwrap();
    let sent = c.node(2).fetches_sent.load(Ordering::SeqCst);
    let window = Duration::from_secs(2);
    tokio::time::sleep(window).await;
    let retries = c.node(2).fetches_sent.load(Ordering::SeqCst) - sent;
    // It keeps trying, but paced by the back-off (one try per 50 ms at most: 40 in the
    // window; five times that is still no spin).
    let most = 5 * (window.as_millis() / BACKOFF.as_millis()) as usize;
    assert!(retries >= 2, "the follower stopped trying: {retries}");
    assert!(retries <= most, "{retries} fetches in {window:?}: spinning");
    assert_eq!(c.end(2), 2);
    // The leader serves again on its address: the follower resumes.
    c.node_mut(1).restart_server().await;
    c.converged(1, &[2]).await;
    assert_eq!(
        Cluster::values(&c.log_bytes(2)),
        vec!["before-0", "before-1", "while-down-0", "while-down-1"]
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_asking_for_huge_max_bytes_is_bounded_by_the_message_limit() {
    // A message limit far below what the leader would send per fetch (10 MiB).
    let limit = 64 << 10;
    let c = Cluster::start(3, 2, 1, limit).await;
    c.tell(&[1], 1, 1, &[1]);
    for i in 0..40 {
        c.produce(1, &records(10, &format!("big{i}"), 1000), Acks::Leader)
            .await
            .unwrap();
    }
    let total = c.log_bytes(1).len();
    assert!(total > 4 * limit, "{total} bytes");
    // The follower asks for everything at once.
    let answer = c
        .node(2)
        .transport
        .fetch(
            1,
            FetchRequest {
                replica_id: 2,
                max_wait_ms: 0,
                partitions: vec![PartitionFetch {
                    tp: c.tp.clone(),
                    current_leader_epoch: 1,
                    fetch_offset: 0,
                    last_fetched_epoch: None,
                    high_watermark: 0,
                    max_bytes: usize::MAX,
                }],
            },
        )
        .await
        .unwrap();
    let Ok(data) = &answer.partitions[0].result else {
        panic!("refused: {answer:?}");
    };
    assert!(!data.records.is_empty());
    assert!(data.records.len() < limit, "{} bytes", data.records.len());
    // And the follower's own fetcher (1 MiB per partition) catches up under the limit.
    c.tell(&[2], 1, 1, &[1]);
    c.converged(1, &[2]).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_replica_plane_is_not_installed_yet_is_retried_until_it_is() {
    // A node serves its listener before its replicas exist (the metadata comes first):
    // follower fetches meanwhile are refused as not served, and retried.
    let mut c = Cluster::start(2, 2, 1, 1 << 20).await;
    let leader = c.node_mut(1);
    leader.stop_server().await;
    leader.service = NodeService::new();
    leader.restart_server().await;
    c.elect(1, 1, &[1, 2]);
    c.produce(1, &records(3, "early", 0), Acks::Leader)
        .await
        .unwrap();
    let refused = c
        .node(2)
        .transport
        .fetch(
            1,
            FetchRequest {
                replica_id: 2,
                max_wait_ms: 0,
                partitions: vec![],
            },
        )
        .await;
    match refused {
        Err(TransportError(m)) => assert!(m.contains("does not serve"), "{m}"),
        Ok(a) => panic!("answered without a replica plane: {a:?}"),
    }
    let sent = c.node(2).fetches_sent.load(Ordering::SeqCst);
    c.until("the follower retries", |c| {
        c.node(2).fetches_sent.load(Ordering::SeqCst) >= sent + 2
    })
    .await;
    assert_eq!(c.end(2), 0);
    // The plane is installed: the follower catches up without being told anything new.
    let manager = c.node(1).manager.clone();
    c.node(1)
        .service
        .set_replica(Arc::new(ReplicaService::new(manager)));
    c.converged(1, &[2]).await;
    assert_eq!(c.end(2), 3);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_most_of_a_mib_are_acked_over_rpc_without_waiting_for_a_fetch_max_wait() {
    // Fetches with nothing new are held 60 s, longer than every bound below: each acks=all
    // completes only because the append answers the followers' held fetches at once and
    // their next fetches (which advance the high watermark) are answered at once too.
    // Batches of ~900 KiB cross the HTTP/2 connections whole (flow-control windows).
    let held = Duration::from_secs(60);
    let config = ReplicationConfig {
        fetch_max_wait: held,
        fetch_timeout: held * 2,
        ..config()
    };
    let c = Cluster::start_with(3, 3, 2, 8 << 20, config).await;
    c.elect(1, 1, &[1, 2, 3]);
    let bound = Duration::from_secs(10);
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let batch = records(900, &format!("big{i}"), 1000);
        assert!(batch.bytes().len() > 900_000, "{}", batch.bytes().len());
        let node = c.node(1);
        let a = node
            .replica()
            .produce(&batch, Acks::All, node.manager.now_ms(), bound)
            .await
            .unwrap_or_else(|e| panic!("batch {i} not acknowledged within {bound:?}: {e}"));
        assert_eq!(a.base_offset, i * 900);
        for f in [2, 3] {
            assert!(
                c.end(f) > a.last_offset,
                "follower {f} lacks acked batch {i}"
            );
        }
    }
    c.converged(1, &[2, 3]).await;
    c.until("followers learn the high watermark", |c| {
        [2, 3]
            .iter()
            .all(|f| c.node(*f).replica().high_watermark() == 7200)
    })
    .await;
    c.stop().await;
}

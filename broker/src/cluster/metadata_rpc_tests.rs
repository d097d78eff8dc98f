//! The metadata quorum over the real cluster RPC: three in-process nodes, each with its own
//! loopback HTTP/2 listener, elect a controller, commit, and survive losing it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::NodeId;
use super::control::{ControlPlane, ControlSettings};
use super::metadata::{MetadataCommand, MetadataConfig, MetadataNode, NodeInfo};
use super::metadata_rpc::{MetadataService, RpcMetadataTransport};
use super::rpc::{
    ClientConfig, LateService, LocalNode, PeerRequest, PeerService, Peers, RaftRequest,
    ServerConfig, ServiceFuture, serve,
};

fn config() -> MetadataConfig {
    MetadataConfig {
        heartbeat_interval: Duration::from_millis(50),
        election_timeout_min: Duration::from_millis(300),
        election_timeout_max: Duration::from_millis(600),
        snapshot_every: 20,
        keep_behind_snapshot: 0,
        propose_timeout: Duration::from_secs(5),
        unreachable_backoff: Duration::from_millis(50),
    }
}

struct Running {
    node: MetadataNode,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    control: ControlPlane,
    snapshots_received: Arc<AtomicUsize>,
}

async fn start_cluster(
    root: &std::path::Path,
    n: u64,
) -> (BTreeMap<NodeId, NodeInfo>, BTreeMap<NodeId, Running>) {
    let mut listeners = BTreeMap::new();
    for id in 1..=n {
        listeners.insert(id, TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let voters: BTreeMap<NodeId, NodeInfo> = listeners
        .iter()
        .map(|(id, l)| {
            let info = NodeInfo {
                cluster_addr: l.local_addr().unwrap().to_string(),
                ..NodeInfo::default()
            };
            (*id, info)
        })
        .collect();
    let mut running = BTreeMap::new();
    for (id, listener) in listeners {
        running.insert(id, start_node(root, id, listener, &voters).await);
    }
    (voters, running)
}

/// Starts node `id` serving on `listener`, its Raft log under `root/<id>`.
async fn start_node(
    root: &std::path::Path,
    id: NodeId,
    listener: TcpListener,
    voters: &BTreeMap<NodeId, NodeInfo>,
) -> Running {
    let local = LocalNode::new(id, voters[&id].cluster_addr.clone(), Some("c".into()));
    let mut client = ClientConfig::new(1 << 20);
    client.connect_timeout = Duration::from_millis(500);
    client.request_timeout = Duration::from_secs(2);
    let peers = Arc::new(Peers::new(
        local.clone(),
        client,
        voters.iter().map(|(i, v)| (*i, v.cluster_addr.clone())),
    ));
    let service = LateService::new();
    let (stop, rx) = watch::channel(false);
    let mut server_stop = rx.clone();
    let server = tokio::spawn(serve(
        listener,
        ServerConfig::new(local, 1 << 20),
        service.clone(),
        async move {
            let _ = server_stop.wait_for(|s| *s).await;
        },
    ));
    tokio::spawn(peers.clone().run(Duration::from_millis(100), rx.clone()));
    let transport = Arc::new(RpcMetadataTransport::new(peers.clone()));
    let node = MetadataNode::start(id, &root.join(id.to_string()), transport, voters, &config())
        .await
        .unwrap();
    let snapshots_received = Arc::new(AtomicUsize::new(0));
    let control = ControlPlane::start(
        node.clone(),
        peers,
        voters[&id].clone(),
        ControlSettings::default(),
        None,
        rx,
    );
    service.set(Arc::new(CountingSnapshots {
        inner: MetadataService::with_controller(node.clone(), control.controller.clone()),
        count: snapshots_received.clone(),
    }));
    Running {
        node,
        stop,
        server,
        control,
        snapshots_received,
    }
}

/// The metadata service, counting the snapshot chunks it receives.
struct CountingSnapshots {
    inner: MetadataService,
    count: Arc<AtomicUsize>,
}

impl PeerService for CountingSnapshots {
    fn call(&self, from: NodeId, request: PeerRequest) -> ServiceFuture<'_> {
        if matches!(request, PeerRequest::Raft(RaftRequest::InstallSnapshot(_))) {
            self.count.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.call(from, request)
    }
}

impl Running {
    async fn stop(self) {
        self.node.shutdown().await.unwrap();
        let _ = self.stop.send(true);
        let _ = self.server.await;
        self.control.stop().await;
    }
}

/// Waits until every running node names the same controller; returns it.
async fn agreed_controller(nodes: &BTreeMap<NodeId, Running>, within: Duration) -> NodeId {
    let deadline = Instant::now() + within;
    loop {
        let seen: Vec<Option<NodeId>> = nodes.values().map(|r| r.node.controller()).collect();
        if let Some(Some(c)) = seen.first()
            && seen.iter().all(|s| *s == Some(*c))
            && nodes.get(c).is_some_and(|r| r.node.is_controller())
        {
            return *c;
        }
        assert!(Instant::now() < deadline, "no agreed controller: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_commit_and_fail_over_over_real_rpc() {
    let root = tempfile::tempdir().unwrap();
    let (voters, mut nodes) = start_cluster(root.path(), 3).await;
    let controller = agreed_controller(&nodes, Duration::from_secs(20)).await;

    // The controller registers every node that heartbeats; all nodes apply the same metadata.
    for r in nodes.values() {
        let m = r
            .node
            .wait_for(Duration::from_secs(20), |m| m.nodes.len() == 3)
            .await;
        assert!(
            m.is_some(),
            "node {} never saw 3 registered nodes",
            r.node.id()
        );
    }
    // Enough commands for a snapshot (every 20 entries).
    for i in 0..25u64 {
        nodes[&controller]
            .node
            .propose(MetadataCommand::RegisterNode {
                node: 100 + i,
                info: NodeInfo::default(),
            })
            .await
            .unwrap();
    }
    let version = nodes[&controller].node.current().version;
    for r in nodes.values() {
        assert!(
            r.node
                .wait_for(Duration::from_secs(10), |m| m.version >= version)
                .await
                .is_some()
        );
    }

    // Lose the controller: the other two elect a new one and still commit.
    nodes.remove(&controller).unwrap().stop().await;
    let next = agreed_controller(&nodes, Duration::from_secs(20)).await;
    assert_ne!(next, controller);
    nodes[&next]
        .node
        .propose(MetadataCommand::RegisterNode {
            node: 999,
            info: NodeInfo::default(),
        })
        .await
        .unwrap();
    for r in nodes.values() {
        assert!(
            r.node
                .wait_for(Duration::from_secs(10), |m| m.nodes.contains_key(&999))
                .await
                .is_some()
        );
        assert!(r.node.metrics().term > 0);
    }

    // While the old controller is down, enough commands that the log behind a snapshot is
    // purged: on its return it catches up by InstallSnapshot over the RPC.
    for i in 0..45u64 {
        nodes[&next]
            .node
            .propose(MetadataCommand::RegisterNode {
                node: 200 + i,
                info: NodeInfo::default(),
            })
            .await
            .unwrap();
    }
    let snapshot = nodes[&next].node.metrics().snapshot_index;
    assert!(snapshot.is_some(), "no snapshot taken");
    let listener = TcpListener::bind(&voters[&controller].cluster_addr)
        .await
        .unwrap();
    nodes.insert(
        controller,
        start_node(root.path(), controller, listener, &voters).await,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while nodes[&controller].node.current() != nodes[&next].node.current() {
        assert!(
            Instant::now() < deadline,
            "the old controller did not catch up: version {} vs {}",
            nodes[&controller].node.current().version,
            nodes[&next].node.current().version
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        nodes[&controller].snapshots_received.load(Ordering::SeqCst) > 0,
        "caught up without a snapshot"
    );
    assert_eq!(
        agreed_controller(&nodes, Duration::from_secs(20)).await,
        next
    );
    for (_, r) in nodes {
        r.stop().await;
    }
}

#[tokio::test]
async fn a_raft_request_carrying_another_nodes_vote_is_refused() {
    use openraft::Vote;
    use openraft::raft::VoteRequest;

    use super::rpc::{Json, PeerResponse, RaftResponse, Refusal};

    let root = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let voters: BTreeMap<NodeId, NodeInfo> = [(
        1,
        NodeInfo {
            cluster_addr: listener.local_addr().unwrap().to_string(),
            ..NodeInfo::default()
        },
    )]
    .into();
    let node = start_node(root.path(), 1, listener, &voters).await;
    let service = MetadataService::new(node.node.clone());
    let vote = |candidate| {
        PeerRequest::Raft(RaftRequest::Vote(
            Json::encode(&VoteRequest::new(Vote::new(9, candidate), None)).unwrap(),
        ))
    };
    // Node 2 asking for node 3's election.
    match service.call(2, vote(3)).await {
        Err(Refusal::Malformed(m)) => assert!(m.contains("node 3"), "{m}"),
        other => panic!("not refused: {other:?}"),
    }
    // Its own: Raft answers (whatever it decides).
    match service.call(3, vote(3)).await {
        Ok(PeerResponse::Raft(RaftResponse::Vote(answer))) => {
            assert!(answer.decode().unwrap().is_ok());
        }
        other => panic!("not answered: {other:?}"),
    }
    node.stop().await;
}

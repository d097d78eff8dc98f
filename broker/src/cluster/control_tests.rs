//! The control plane over the real cluster RPC: in-process nodes, each with its own loopback
//! HTTP/2 listener, its metadata quorum member and its [`ControlPlane`]. Proposals from a
//! follower land; a peer's forged node commands are refused; a node that stops heartbeating
//! is fenced and its leaderships move to in-sync replicas, and is unfenced when it is back; a
//! controller change fences nobody by itself; a `--join` node becomes a learner and a broker;
//! a processor's tasks are placed, move off a dead node and back, and onto a joined one.
//!
//! Every bound below is a generous liveness bound, never a performance assertion.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::NodeId;
use super::control::{ControlPlane, ControlReply, ControlSettings, ProposeError, peer_may_propose};
use super::metadata::controller::{TopicRequest, create_topic_command};
use super::metadata::{
    ClusterMetadata, MetadataCommand, MetadataConfig, MetadataError, MetadataNode,
    MetadataResponse, NodeInfo, ProcessorRecord, TaskMove,
};
use super::metadata_rpc::{MetadataService, RpcMetadataTransport};
use super::rpc::{
    ClientConfig, ControlRequest, Json, LateService, LocalNode, PeerRequest, PeerResponse, Peers,
    ServerConfig, serve,
};

/// The session timeout of these tests: short, but several heartbeats long.
const SESSION: Duration = Duration::from_millis(2000);
/// A generous bound for anything that should happen "soon".
const SOON: Duration = Duration::from_secs(20);

fn raft_config() -> MetadataConfig {
    MetadataConfig {
        heartbeat_interval: Duration::from_millis(50),
        election_timeout_min: Duration::from_millis(300),
        election_timeout_max: Duration::from_millis(600),
        snapshot_every: 1000,
        keep_behind_snapshot: 100,
        propose_timeout: Duration::from_secs(5),
        unreachable_backoff: Duration::from_millis(50),
    }
}

fn info_of(id: NodeId, cluster_addr: String) -> NodeInfo {
    NodeInfo {
        cluster_addr,
        kafka_addr: format!("kafka-{id}.test:9092"),
        http_addr: format!("http-{id}.test:8080"),
    }
}

struct Node {
    info: NodeInfo,
    node: MetadataNode,
    peers: Arc<Peers>,
    service: Arc<LateService>,
    control: Option<ControlPlane>,
    stop_tx: watch::Sender<bool>,
    /// Stops only the control plane (its own channel), to silence a node's heartbeats.
    control_stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    /// What [`Node::start_control`] starts the control plane with.
    settings: ControlSettings,
}

impl Node {
    async fn start(
        root: &std::path::Path,
        id: NodeId,
        listener: TcpListener,
        voters: &BTreeMap<NodeId, NodeInfo>,
        join: Option<String>,
    ) -> Node {
        let addr = listener.local_addr().unwrap().to_string();
        let info = info_of(id, addr.clone());
        let local = LocalNode::new(id, addr, Some("c".into()));
        let mut client = ClientConfig::new(1 << 20);
        client.connect_timeout = Duration::from_millis(500);
        client.request_timeout = Duration::from_secs(2);
        let peers = Arc::new(Peers::new(
            local.clone(),
            client,
            voters.iter().map(|(i, v)| (*i, v.cluster_addr.clone())),
        ));
        let service = LateService::new();
        let (stop_tx, rx) = watch::channel(false);
        let mut server_stop = rx.clone();
        let server = tokio::spawn(serve(
            listener,
            ServerConfig::new(local, 1 << 20),
            service.clone(),
            async move {
                let _ = server_stop.wait_for(|s| *s).await;
            },
        ));
        tokio::spawn(peers.clone().run(Duration::from_millis(200), rx.clone()));
        let transport = Arc::new(RpcMetadataTransport::new(peers.clone()));
        let node = MetadataNode::start(
            id,
            &root.join(id.to_string()),
            transport,
            voters,
            &raft_config(),
        )
        .await
        .unwrap();
        let (control_stop, _) = watch::channel(false);
        let mut n = Node {
            info,
            node,
            peers,
            service,
            control: None,
            stop_tx,
            control_stop,
            server,
            settings: ControlSettings::unchecked(SESSION),
        };
        n.start_control(join);
        n
    }

    /// (Re)starts the control plane and installs its controller in the service.
    fn start_control(&mut self, join: Option<String>) {
        let (control_stop, rx) = watch::channel(false);
        self.control_stop = control_stop;
        let control = ControlPlane::start(
            self.node.clone(),
            self.peers.clone(),
            self.info.clone(),
            self.settings.clone(),
            join,
            rx,
        );
        self.service.set(Arc::new(MetadataService::with_controller(
            self.node.clone(),
            control.controller.clone(),
        )));
        self.control = Some(control);
    }

    /// Stops the control plane only: no more heartbeats (Raft keeps running).
    async fn silence(&mut self) {
        let _ = self.control_stop.send(true);
        if let Some(c) = self.control.take() {
            c.stop().await;
        }
    }

    async fn stop(mut self) {
        self.silence().await;
        self.node.shutdown().await.unwrap();
        let _ = self.stop_tx.send(true);
        let _ = self.server.await;
    }

    fn proposer(&self) -> super::control::Proposer {
        self.control.as_ref().unwrap().proposer.clone()
    }

    /// Sends a raw control request to node `to` (what a misbehaving peer could send).
    async fn send(&self, to: NodeId, request: ControlRequest) -> ControlReply {
        let client = self.peers.client(to).unwrap();
        match client
            .call_with_timeout(PeerRequest::Control(request), Duration::from_secs(10))
            .await
            .unwrap()
        {
            PeerResponse::Control(reply) => reply.decode().unwrap(),
            other => panic!("unexpected answer {other:?}"),
        }
    }
}

async fn start_cluster(root: &std::path::Path, n: u64) -> BTreeMap<NodeId, Node> {
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
    let mut nodes = BTreeMap::new();
    for (id, listener) in listeners {
        nodes.insert(id, Node::start(root, id, listener, &voters, None).await);
    }
    nodes
}

/// Waits until one running node is controller and every node names it; returns it.
async fn agreed_controller(nodes: &BTreeMap<NodeId, Node>) -> NodeId {
    let deadline = Instant::now() + SOON;
    loop {
        let seen: Vec<Option<NodeId>> = nodes.values().map(|n| n.node.controller()).collect();
        if let Some(Some(c)) = seen.first()
            && seen.iter().all(|s| *s == Some(*c))
            && nodes.get(c).is_some_and(|n| n.node.is_controller())
        {
            return *c;
        }
        assert!(Instant::now() < deadline, "no agreed controller: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `pred` holds on node `on`'s applied metadata; panics with `what` otherwise.
async fn until(
    nodes: &BTreeMap<NodeId, Node>,
    on: NodeId,
    what: &str,
    pred: impl FnMut(&ClusterMetadata) -> bool,
) -> Arc<ClusterMetadata> {
    match nodes[&on].node.wait_for(SOON, pred).await {
        Some(m) => m,
        None => panic!(
            "{what}: not seen on node {on}: {:?}",
            nodes[&on].node.current()
        ),
    }
}

/// [`until`], while doing what every owner's engine does with a graceful move: the owner
/// of a task being moved releases it (`ReleaseTask`, proposed by that node).
async fn until_released(
    nodes: &BTreeMap<NodeId, Node>,
    on: NodeId,
    what: &str,
    mut pred: impl FnMut(&ClusterMetadata) -> bool,
) -> Arc<ClusterMetadata> {
    let deadline = Instant::now() + SOON;
    loop {
        let m = nodes[&on].node.current();
        if pred(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not seen on node {on}: {m:?}"
        );
        for (p, i, t) in m.all_tasks() {
            if let (Some(_), Some(owner)) = (t.moving_to, t.owner)
                && let Some(n) = nodes.get(&owner)
            {
                let release = MetadataCommand::ReleaseTask {
                    processor: p.to_string(),
                    partition: i,
                    epoch: t.epoch,
                    node: owner,
                };
                let _ = n.proposer().propose(release).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every node of `ids` registered live with the addresses it heartbeats.
fn all_live(m: &ClusterMetadata, nodes: &BTreeMap<NodeId, Node>, ids: &[NodeId]) -> bool {
    ids.iter().all(|id| {
        m.nodes
            .get(id)
            .is_some_and(|n| !n.fenced && n.info == nodes[id].info)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_register_every_node_and_a_follower_proposes_through_the_controller() {
    let root = tempfile::tempdir().unwrap();
    let nodes = start_cluster(root.path(), 3).await;
    let controller = agreed_controller(&nodes).await;
    for id in 1..=3 {
        until(&nodes, id, "all registered", |m| {
            all_live(m, &nodes, &[1, 2, 3])
        })
        .await;
    }
    // A follower creates a topic: forwarded to the controller, applied everywhere.
    let follower = *nodes.keys().find(|id| **id != controller).unwrap();
    let proposer = nodes[&follower].proposer();
    let request = TopicRequest {
        name: "orders".into(),
        partitions: 3,
        replication_factor: Some(3),
        ..TopicRequest::default()
    };
    let create = create_topic_command(&proposer.current(), &request).unwrap();
    let created = proposer.propose(create.clone()).await.unwrap();
    assert!(
        matches!(created, MetadataResponse::TopicCreated { .. }),
        "{created:?}"
    );
    for id in 1..=3 {
        until(&nodes, id, "topic applied", |m| {
            m.topics.contains_key("orders")
        })
        .await;
    }
    // The state machine's refusal comes back as such.
    match proposer.propose(create).await {
        Err(ProposeError::Rejected(MetadataError::TopicExists(t))) => assert_eq!(t, "orders"),
        other => panic!("not refused: {other:?}"),
    }
    // Producer ids for itself: allowed; the controller proposes it too, locally.
    let ids = proposer
        .propose(MetadataCommand::AllocateProducerIds { node: follower })
        .await
        .unwrap();
    assert!(
        matches!(ids, MetadataResponse::ProducerIds { .. }),
        "{ids:?}"
    );
    let local = nodes[&controller]
        .proposer()
        .propose(MetadataCommand::DeleteTopic {
            name: "orders".into(),
        })
        .await
        .unwrap();
    assert_eq!(local, MetadataResponse::Done);
    for (_, n) in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_forged_node_commands_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let nodes = start_cluster(root.path(), 3).await;
    let controller = agreed_controller(&nodes).await;
    until(&nodes, controller, "all registered", |m| {
        all_live(m, &nodes, &[1, 2, 3])
    })
    .await;
    let mut others = nodes.keys().copied().filter(|id| *id != controller);
    let (a, b) = (others.next().unwrap(), others.next().unwrap());
    let before = nodes[&controller].node.current().version;

    // Node a asks the controller to fence node b, straight over the RPC.
    let forged = [
        MetadataCommand::FenceNode { node: b },
        MetadataCommand::RegisterNode {
            node: b,
            info: NodeInfo::default(),
        },
        MetadataCommand::UnregisterNode { node: b },
        MetadataCommand::Batch {
            commands: vec![
                MetadataCommand::AllocateProducerIds { node: a },
                MetadataCommand::FenceNode { node: b },
            ],
        },
        MetadataCommand::AllocateProducerIds { node: b },
        MetadataCommand::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: b,
            leader_epoch: 0,
            partition_epoch: 0,
            isr: vec![b],
        },
        MetadataCommand::ElectLeader {
            topic: "t".into(),
            partition: 0,
            leader: Some(a),
            leader_epoch: 1,
            isr: vec![a],
        },
    ];
    for cmd in &forged {
        let reply = nodes[&a]
            .send(
                controller,
                ControlRequest::Propose(Json::encode(cmd).unwrap()),
            )
            .await;
        match reply {
            ControlReply::Refused { code, .. } => assert_eq!(code, "forbidden", "{cmd:?}"),
            other => panic!("{cmd:?} not refused: {other:?}"),
        }
    }
    // Through the proposer: the same refusal, as an error with a stable code.
    let e = nodes[&a]
        .proposer()
        .propose(MetadataCommand::FenceNode { node: b })
        .await
        .unwrap_err();
    assert!(matches!(e, ProposeError::Refused { .. }), "{e:?}");
    assert_eq!(e.code(), "forbidden");
    assert_eq!(e.kind(), crate::ErrorKind::Forbidden);
    // Nothing was proposed for them: b is live and no command was applied on their account.
    let m = nodes[&controller].node.current();
    assert!(m.is_live(b), "{m:?}");
    assert!(!m.topics.contains_key("t"));
    assert!(m.next_producer_id == 0, "{m:?} (version {before})");

    // A heartbeat from a node that is not a member of the quorum is refused.
    let stranger = {
        let local = LocalNode::new(77, "127.0.0.1:1", Some("c".into()));
        let client = super::rpc::PeerClient::new(
            nodes[&controller].info.cluster_addr.clone(),
            local,
            ClientConfig::new(1 << 20),
        );
        client
            .call(PeerRequest::Control(ControlRequest::Heartbeat(
                Json::encode(&super::control::HeartbeatBody {
                    info: info_of(77, "127.0.0.1:1".into()),
                    copies: Vec::new(),
                    budget: None,
                })
                .unwrap(),
            )))
            .await
            .unwrap()
    };
    let PeerResponse::Control(reply) = stranger else {
        panic!("{stranger:?}");
    };
    match reply.decode().unwrap() {
        ControlReply::Refused { code, .. } => assert_eq!(code, "not_member"),
        other => panic!("not refused: {other:?}"),
    }
    assert!(!nodes[&controller].node.current().nodes.contains_key(&77));

    // A proposal sent to a follower is redirected to the controller, not forwarded.
    let reply = nodes[&a]
        .send(
            b,
            ControlRequest::Propose(
                Json::encode(&MetadataCommand::AllocateProducerIds { node: a }).unwrap(),
            ),
        )
        .await;
    match reply {
        ControlReply::NotController { leader, addr } => {
            assert_eq!(leader, Some(controller));
            assert_eq!(
                addr.as_deref(),
                Some(&*nodes[&controller].info.cluster_addr)
            );
        }
        other => panic!("not redirected: {other:?}"),
    }
    for (_, n) in nodes {
        n.stop().await;
    }
}

#[test]
fn peers_may_propose_topics_their_own_isr_changes_and_producer_ids_only() {
    let alter = |leader| MetadataCommand::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader,
        leader_epoch: 1,
        partition_epoch: 1,
        isr: vec![leader],
    };
    assert!(peer_may_propose(2, &alter(2)).is_ok());
    assert!(peer_may_propose(2, &alter(3)).is_err());
    assert!(peer_may_propose(2, &MetadataCommand::AllocateProducerIds { node: 2 }).is_ok());
    assert!(peer_may_propose(2, &MetadataCommand::DeleteTopic { name: "t".into() }).is_ok());
    let batch = |c| MetadataCommand::Batch {
        commands: vec![alter(2), c],
    };
    assert!(peer_may_propose(2, &batch(MetadataCommand::FenceNode { node: 3 })).is_err());
    assert!(peer_may_propose(2, &batch(alter(2))).is_ok());
    // The catalog is the users' (forwarded from the node that took the deploy); task
    // assignments are the controller's.
    let name = || "wc".to_string();
    assert!(peer_may_propose(2, &MetadataCommand::DeleteProcessor { name: name() }).is_ok());
    let pause = MetadataCommand::SetProcessorPaused {
        name: name(),
        paused: true,
    };
    assert!(peer_may_propose(2, &pause).is_ok());
    let assign = MetadataCommand::AssignTasks {
        processor: name(),
        version: None,
        assignments: vec![],
    };
    assert!(peer_may_propose(2, &assign).is_err());
    assert!(peer_may_propose(2, &batch(assign)).is_err());
    // Functions and the SQL catalog are users' requests any node takes.
    let f = MetadataCommand::DeleteFunction { name: "F".into() };
    assert!(peer_may_propose(2, &f).is_ok());
    let s = MetadataCommand::UpsertSqlSource {
        record: Default::default(),
    };
    assert!(peer_may_propose(2, &batch(s)).is_ok());
}

/// Leader and in-sync set of every partition of `topic`.
fn leaderships(m: &ClusterMetadata, topic: &str) -> Vec<(Option<NodeId>, Vec<NodeId>)> {
    m.topics[topic]
        .partitions
        .iter()
        .map(|p| (p.leader, p.isr.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_fenced_its_leaderships_move_and_it_is_unfenced_when_back() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3).await;
    let controller = agreed_controller(&nodes).await;
    until(&nodes, controller, "all registered", |m| {
        all_live(m, &nodes, &[1, 2, 3])
    })
    .await;
    let proposer = nodes[&controller].proposer();
    let request = TopicRequest {
        name: "t".into(),
        partitions: 6,
        replication_factor: Some(3),
        ..TopicRequest::default()
    };
    proposer
        .propose(create_topic_command(&proposer.current(), &request).unwrap())
        .await
        .unwrap();
    let silent = *nodes.keys().find(|id| **id != controller).unwrap();
    let led = |m: &ClusterMetadata| {
        leaderships(m, "t")
            .iter()
            .filter(|(l, _)| *l == Some(silent))
            .count()
    };
    assert!(
        led(&nodes[&controller].node.current()) > 0,
        "assignment gave it nothing to lead"
    );

    // It stops heartbeating (its Raft member keeps running): fenced, leaderships moved to
    // in-sync replicas, out of every in-sync set; the others stay live.
    let silenced_at = Instant::now();
    nodes.get_mut(&silent).unwrap().silence().await;
    until(&nodes, controller, "the silent node fenced", |m| {
        m.nodes.get(&silent).is_some_and(|n| n.fenced)
    })
    .await;
    eprintln!("fenced {:?} after it went silent", silenced_at.elapsed());
    let m = until(&nodes, controller, "leaderships moved", |m| led(m) == 0).await;
    for (i, p) in m.topics["t"].partitions.iter().enumerate() {
        let leader = p
            .leader
            .unwrap_or_else(|| panic!("partition {i} offline: {p:?}"));
        assert_ne!(leader, silent);
        assert!(p.replicas.contains(&leader));
        assert!(p.isr.contains(&leader), "{p:?}");
        assert!(!p.isr.contains(&silent), "{p:?}");
    }
    let others: Vec<NodeId> = nodes.keys().copied().filter(|id| *id != silent).collect();
    assert!(all_live(&m, &nodes, &others), "{m:?}");

    // It heartbeats again: unfenced, with its addresses.
    nodes.get_mut(&silent).unwrap().start_control(None);
    until(&nodes, controller, "the node unfenced", |m| {
        all_live(m, &nodes, &[1, 2, 3])
    })
    .await;
    for (_, n) in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_controller_fences_only_the_node_that_is_gone() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3).await;
    let first = agreed_controller(&nodes).await;
    until(&nodes, first, "all registered", |m| {
        all_live(m, &nodes, &[1, 2, 3])
    })
    .await;
    let proposer = nodes[&first].proposer();
    let request = TopicRequest {
        name: "t".into(),
        partitions: 3,
        replication_factor: Some(3),
        ..TopicRequest::default()
    };
    proposer
        .propose(create_topic_command(&proposer.current(), &request).unwrap())
        .await
        .unwrap();
    nodes.remove(&first).unwrap().stop().await;
    let next = agreed_controller(&nodes).await;
    assert_ne!(next, first);
    let m = until(&nodes, next, "the old controller fenced", |m| {
        m.nodes.get(&first).is_some_and(|n| n.fenced)
    })
    .await;
    let others: Vec<NodeId> = nodes.keys().copied().collect();
    assert!(all_live(&m, &nodes, &others), "{m:?}");
    let m = until(
        &nodes,
        next,
        "no partition led by the old controller",
        |m| {
            leaderships(m, "t")
                .iter()
                .all(|(l, isr)| l.is_some_and(|l| l != first) && !isr.contains(&first))
        },
    )
    .await;
    // Well past a session: still nobody else fenced.
    tokio::time::sleep(SESSION * 2).await;
    let m2 = nodes[&next].node.current();
    assert!(all_live(&m2, &nodes, &others), "{m2:?} (was {m:?})");
    for (_, n) in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_becomes_a_learner_and_a_broker_and_is_fenced_when_it_stops() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3).await;
    let controller = agreed_controller(&nodes).await;
    until(&nodes, controller, "all registered", |m| {
        all_live(m, &nodes, &[1, 2, 3])
    })
    .await;
    // Node 4 joins through node 1 (controller or not: it is redirected).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let join = nodes[&1].info.cluster_addr.clone();
    let n4 = Node::start(root.path(), 4, listener, &BTreeMap::new(), Some(join)).await;
    nodes.insert(4, n4);
    for id in [controller, 4] {
        until(&nodes, id, "node 4 registered", |m| {
            all_live(m, &nodes, &[1, 2, 3, 4])
        })
        .await;
    }
    // A learner, not a voter; it can propose through the controller.
    let voters = nodes[&controller].node.metrics().voters;
    assert_eq!(voters.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(nodes[&4].node.metrics().controller, Some(controller));
    let ids = nodes[&4]
        .proposer()
        .propose(MetadataCommand::AllocateProducerIds { node: 4 })
        .await
        .unwrap();
    assert!(
        matches!(ids, MetadataResponse::ProducerIds { .. }),
        "{ids:?}"
    );
    // Another node may not take its id at another address.
    let stranger = LocalNode::new(4, "127.0.0.1:2", Some("c".into()));
    let client = super::rpc::PeerClient::new(
        nodes[&controller].info.cluster_addr.clone(),
        stranger,
        ClientConfig::new(1 << 20),
    );
    let answer = client
        .call(PeerRequest::Control(ControlRequest::Join(
            Json::encode(&info_of(4, "127.0.0.1:2".into())).unwrap(),
        )))
        .await
        .unwrap();
    let PeerResponse::Control(answer) = answer else {
        panic!("{answer:?}");
    };
    match answer.decode().unwrap() {
        ControlReply::Refused { code, .. } => assert_eq!(code, "node_id_in_use"),
        other => panic!("not refused: {other:?}"),
    }
    // It stops: fenced.
    nodes.remove(&4).unwrap().stop().await;
    until(&nodes, controller, "node 4 fenced", |m| {
        m.nodes.get(&4).is_some_and(|n| n.fenced)
    })
    .await;
    for (_, n) in nodes {
        n.stop().await;
    }
}

#[test]
fn every_kind_of_refusal_travels_back_to_the_proposer() {
    let refusals = [
        MetadataError::TopicExists("t".into()),
        MetadataError::InvalidAssignment("why".into()),
        MetadataError::UnknownNode(3),
        MetadataError::NestedBatch,
        MetadataError::InBatch {
            index: 1,
            source: Box::new(MetadataError::UnknownTopic("u".into())),
        },
        MetadataError::FencedLeaderEpoch {
            topic: "t".into(),
            partition: 0,
            given: 1,
            current: 2,
        },
        MetadataError::UnknownProcessor("wc".into()),
        MetadataError::StaleTaskEpoch {
            processor: "wc".into(),
            partition: 1,
            given: 3,
            current: 4,
        },
        MetadataError::NotTaskOwner {
            processor: "wc".into(),
            partition: 1,
            node: 2,
            owner: None,
        },
    ];
    for e in refusals {
        let reply = ControlReply::Proposed { outcome: Err(e) };
        let json = Json::encode(&reply).unwrap();
        assert_eq!(json.decode().unwrap(), reply);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controlled_shutdown_fences_at_once_and_moves_leaderships_away() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3).await;
    let controller = agreed_controller(&nodes).await;
    until(&nodes, controller, "all registered", |m| {
        all_live(m, &nodes, &[1, 2, 3])
    })
    .await;
    let proposer = nodes[&controller].proposer();
    let request = TopicRequest {
        name: "t".into(),
        partitions: 6,
        replication_factor: Some(3),
        ..TopicRequest::default()
    };
    proposer
        .propose(create_topic_command(&proposer.current(), &request).unwrap())
        .await
        .unwrap();
    let leaving = *nodes.keys().find(|id| **id != controller).unwrap();
    let leads = |m: &ClusterMetadata, n: NodeId| {
        leaderships(m, "t")
            .iter()
            .filter(|(l, _)| *l == Some(n))
            .count()
    };
    assert!(leads(&nodes[&controller].node.current(), leaving) > 0);

    // A follower shuts down: when `shutdown` returns, the controller has fenced it and no
    // partition is led by it, without waiting for its session to expire.
    let confirmed = nodes[&leaving]
        .control
        .as_ref()
        .unwrap()
        .shutdown(Duration::from_secs(10))
        .await;
    assert!(confirmed);
    let m = nodes[&controller].node.current();
    assert!(m.nodes[&leaving].fenced, "{m:?}");
    assert_eq!(leads(&m, leaving), 0, "{m:?}");
    for p in &m.topics["t"].partitions {
        assert!(p.leader.is_some_and(|l| p.isr.contains(&l)), "{p:?}");
        assert!(!p.isr.contains(&leaving), "{p:?}");
    }
    // It stays fenced (no late heartbeat unfences it) until it heartbeats again.
    tokio::time::sleep(SESSION).await;
    assert!(nodes[&controller].node.current().nodes[&leaving].fenced);
    nodes.get_mut(&leaving).unwrap().start_control(None);
    until(&nodes, controller, "back after its restart", |m| {
        all_live(m, &nodes, &[1, 2, 3])
    })
    .await;

    // The controller itself shuts down: it fences itself and hands its leaderships over.
    assert!(leads(&nodes[&controller].node.current(), controller) > 0);
    let confirmed = nodes[&controller]
        .control
        .as_ref()
        .unwrap()
        .shutdown(Duration::from_secs(10))
        .await;
    assert!(confirmed);
    let m = nodes[&controller].node.current();
    assert!(m.nodes[&controller].fenced, "{m:?}");
    assert_eq!(leads(&m, controller), 0, "{m:?}");
    tokio::time::sleep(SESSION).await;
    assert!(nodes[&controller].node.current().nodes[&controller].fenced);
    for (_, n) in nodes {
        n.stop().await;
    }
}

#[test]
fn a_new_term_dates_the_sessions_of_silent_nodes_from_when_they_were_last_heard() {
    use super::control::dated_session_start;
    let settings = ControlSettings::unchecked(Duration::from_millis(3000));
    let timeout = settings.session_timeout;
    let now = Instant::now() + Duration::from_secs(3600);
    // Reachable: a whole fresh session.
    assert_eq!(dated_session_start(&settings, now, None), now);
    // Silent for 400 ms: its session runs from then (expires 400 ms sooner).
    let start = dated_session_start(&settings, now, Some(Duration::from_millis(400)));
    assert_eq!(now - start, Duration::from_millis(400));
    // Long silent (or never heard): still three heartbeats left before it expires, so a
    // live node whose hello failed can reach the new controller in time.
    for silent in [Duration::from_secs(60), Duration::MAX] {
        let start = dated_session_start(&settings, now, Some(silent));
        let left = timeout - (now - start);
        assert_eq!(left, settings.heartbeat_interval * 3, "{silent:?}");
        let mut sessions = super::metadata::controller::Sessions::new();
        sessions.heartbeat(7, start);
        assert!(sessions.is_alive(7, now + left, timeout));
        assert_eq!(
            sessions.expired(now + left + Duration::from_millis(1), timeout),
            vec![7]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_old_controller_does_not_count_itself_caught_up_without_a_quorum() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3).await;
    let c = agreed_controller(&nodes).await;
    until(&nodes, c, "all registered", |m| {
        all_live(m, &nodes, &[1, 2, 3])
    })
    .await;
    let voters: BTreeMap<NodeId, NodeInfo> = nodes
        .iter()
        .map(|(id, n)| {
            let info = NodeInfo {
                cluster_addr: n.info.cluster_addr.clone(),
                ..NodeInfo::default()
            };
            (*id, info)
        })
        .collect();
    let addr = nodes[&c].info.cluster_addr.clone();
    for id in [1, 2, 3] {
        nodes.remove(&id).unwrap().stop().await;
    }
    // Alone, the old controller is Raft leader of its committed vote for as long as nobody
    // tells it otherwise; its metadata shows itself registered. It must not take that for
    // being caught up (invariant 8): in a real cluster the others may have moved on.
    let listener = TcpListener::bind(&addr).await.unwrap();
    let alone = Node::start(root.path(), c, listener, &voters, None).await;
    let registered_at = alone.control.as_ref().unwrap().registered_at.clone();
    let until_t = Instant::now() + SESSION * 2;
    while Instant::now() < until_t {
        assert_eq!(*registered_at.borrow(), None, "caught up without a quorum");
        assert!(!alone.node.is_controller());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    alone.stop().await;
}

/// Plays the partition leaders' part of reassignments (there is no data plane here): every
/// replica a move adds is reported caught up by its leader, through the leader's own
/// proposer, as a real leader's `AlterPartition` would.
async fn leaders_take_in_added_replicas(nodes: &BTreeMap<NodeId, Node>, on: NodeId) {
    let meta = nodes[&on].node.current();
    for (name, t) in &meta.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            let Some(leader) = p.leader else { continue };
            let joining: Vec<NodeId> = p
                .adding
                .iter()
                .copied()
                .filter(|n| !p.isr.contains(n))
                .collect();
            if joining.is_empty() || !nodes.contains_key(&leader) {
                continue;
            }
            let mut isr = p.isr.clone();
            isr.extend(joining);
            // Stale epochs are refused and tried again on the next pass.
            let _ = nodes[&leader]
                .proposer()
                .propose(MetadataCommand::AlterPartition {
                    topic: name.clone(),
                    partition: i as i32,
                    leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    isr,
                })
                .await;
        }
    }
}

/// Replicas per node in `m` (being-removed ones included).
fn replica_count(m: &ClusterMetadata, node: NodeId) -> usize {
    m.topics
        .values()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.replicas.contains(&node))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_node_gets_replicas_and_a_decommissioned_voter_is_replaced_and_retired() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3).await;
    let controller = agreed_controller(&nodes).await;
    until(&nodes, controller, "all registered", |m| {
        all_live(m, &nodes, &[1, 2, 3])
    })
    .await;
    let proposer = nodes[&controller].proposer();
    let request = TopicRequest {
        name: "orders".into(),
        partitions: 6,
        replication_factor: Some(3),
        ..TopicRequest::default()
    };
    let create = create_topic_command(&proposer.current(), &request).unwrap();
    proposer.propose(create).await.unwrap();
    // Node 4 joins: the controller moves replicas onto it by itself.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let join = nodes[&1].info.cluster_addr.clone();
    let n4 = Node::start(root.path(), 4, listener, &BTreeMap::new(), Some(join)).await;
    nodes.insert(4, n4);
    let deadline = Instant::now() + SOON;
    loop {
        leaders_take_in_added_replicas(&nodes, controller).await;
        let m = nodes[&controller].node.current();
        let counts: Vec<usize> = (1..=4).map(|n| replica_count(&m, n)).collect();
        let moving = m
            .topics
            .values()
            .flat_map(|t| &t.partitions)
            .any(|p| p.reassigning());
        if !moving && counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1 {
            assert_eq!(counts.iter().sum::<usize>(), 18);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never balanced: {counts:?} {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Decommission a voter that is not the controller, through a follower's proposer.
    let leaving = *[1, 2, 3].iter().find(|n| **n != controller).unwrap();
    let via = *[1, 2, 3, 4]
        .iter()
        .find(|n| **n != controller && **n != leaving)
        .unwrap();
    nodes[&via]
        .proposer()
        .propose(MetadataCommand::DecommissionNode { node: leaving })
        .await
        .unwrap();
    let deadline = Instant::now() + SOON;
    loop {
        leaders_take_in_added_replicas(&nodes, controller).await;
        let m = nodes[&controller].node.current();
        if m.retired.contains(&leaving) {
            assert!(!m.nodes.contains_key(&leaving));
            assert_eq!(replica_count(&m, leaving), 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {leaving} never retired: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The joined learner took the voter's place; the retired id may not join again.
    let voters = nodes[&controller].node.metrics().voters;
    let expected: std::collections::BTreeSet<NodeId> =
        [1, 2, 3, 4].into_iter().filter(|n| *n != leaving).collect();
    assert_eq!(voters, expected);
    match nodes[&leaving]
        .send(
            controller,
            ControlRequest::Join(Json::encode(&nodes[&leaving].info).unwrap()),
        )
        .await
    {
        ControlReply::Refused { code, .. } => assert_eq!(code, "node_retired"),
        other => panic!("a retired id joined again: {other:?}"),
    }
    for (_, n) in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decommissioned_controller_leaves_the_quorum_and_the_next_one_retires_it() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3).await;
    let controller = agreed_controller(&nodes).await;
    until(&nodes, controller, "all registered", |m| {
        all_live(m, &nodes, &[1, 2, 3])
    })
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let join = nodes[&1].info.cluster_addr.clone();
    let n4 = Node::start(root.path(), 4, listener, &BTreeMap::new(), Some(join)).await;
    nodes.insert(4, n4);
    until(&nodes, controller, "node 4 registered", |m| {
        all_live(m, &nodes, &[1, 2, 3, 4])
    })
    .await;
    let proposer = nodes[&controller].proposer();
    let request = TopicRequest {
        name: "orders".into(),
        partitions: 4,
        replication_factor: Some(2),
        ..TopicRequest::default()
    };
    let create = create_topic_command(&proposer.current(), &request).unwrap();
    proposer.propose(create).await.unwrap();
    proposer
        .propose(MetadataCommand::DecommissionNode { node: controller })
        .await
        .unwrap();
    let witness = *[1, 2, 3].iter().find(|n| **n != controller).unwrap();
    let deadline = Instant::now() + SOON;
    loop {
        leaders_take_in_added_replicas(&nodes, witness).await;
        let m = nodes[&witness].node.current();
        if m.retired.contains(&controller) {
            assert_eq!(replica_count(&m, controller), 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the controller {controller} never retired: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let remaining: BTreeMap<NodeId, Node> = {
        let old = nodes.remove(&controller).unwrap();
        old.stop().await;
        nodes
    };
    let next = agreed_controller(&remaining).await;
    assert_ne!(next, controller);
    let voters = remaining[&next].node.metrics().voters;
    assert_eq!(voters, remaining.keys().copied().collect());
    for (_, n) in remaining {
        n.stop().await;
    }
}

/// Tasks owned per node of `ids` in `m` (all processors).
/// Creates topic `words` (6 partitions, rf 3) and the processor `wc` over it (no standbys)
/// through `proposer`; the processor's creation answer.
async fn deploy_wc(proposer: &super::control::Proposer) -> MetadataResponse {
    let request = TopicRequest {
        name: "words".into(),
        partitions: 6,
        replication_factor: Some(3),
        ..TopicRequest::default()
    };
    proposer
        .propose(create_topic_command(&proposer.current(), &request).unwrap())
        .await
        .unwrap();
    let record = ProcessorRecord {
        name: "wc".into(),
        partitions: 6,
        inputs: vec!["words".into()],
        spec: serde_json::json!({"v": 1}),
        component: Some("sha256:abc".into()),
        ..ProcessorRecord::default()
    };
    proposer
        .propose(MetadataCommand::UpsertProcessor {
            record,
            expected_version: None,
        })
        .await
        .unwrap()
}

fn task_counts(m: &ClusterMetadata, ids: &[NodeId]) -> Vec<usize> {
    ids.iter().map(|id| m.owned_tasks(*id).count()).collect()
}

/// Owner and epoch of every task of `processor`.
fn task_owners(m: &ClusterMetadata, processor: &str) -> Vec<(Option<NodeId>, u64)> {
    m.tasks[processor]
        .iter()
        .map(|t| (t.owner, t.epoch))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_placed_and_move_off_a_dead_node_back_to_it_and_onto_a_joined_one() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3).await;
    let controller = agreed_controller(&nodes).await;
    until(&nodes, controller, "all registered", |m| {
        all_live(m, &nodes, &[1, 2, 3])
    })
    .await;
    // A follower deploys: the catalog is the users', so a peer may propose it.
    let follower = *nodes.keys().find(|id| **id != controller).unwrap();
    until(&nodes, follower, "all registered", |m| {
        all_live(m, &nodes, &[1, 2, 3])
    })
    .await;
    let created = deploy_wc(&nodes[&follower].proposer()).await;
    assert_eq!(created, MetadataResponse::Processor { version: 1 });
    let m = until(&nodes, follower, "two tasks per node", |m| {
        task_counts(m, &[1, 2, 3]) == vec![2, 2, 2]
    })
    .await;
    let placed = task_owners(&m, "wc");
    assert!(placed.iter().all(|(_, epoch)| *epoch == 1), "{placed:?}");
    // Only the controller assigns tasks.
    let forged = MetadataCommand::AssignTasks {
        processor: "wc".into(),
        version: None,
        assignments: vec![TaskMove {
            partition: 0,
            epoch: 1,
            owner: follower,
            standbys: vec![],
            warmups: vec![],
            force: false,
        }],
    };
    match nodes[&follower]
        .send(
            controller,
            ControlRequest::Propose(Json::encode(&forged).unwrap()),
        )
        .await
    {
        ControlReply::Refused { code, .. } => assert_eq!(code, "forbidden"),
        other => panic!("a peer assigned a task: {other:?}"),
    }

    // A node stops heartbeating: fenced, its tasks move to the two others under the next
    // epoch; the others' tasks keep their owner and epoch.
    let gone = follower;
    let staying: Vec<NodeId> = [1, 2, 3].into_iter().filter(|n| *n != gone).collect();
    nodes.get_mut(&gone).unwrap().silence().await;
    let m = until(&nodes, controller, "the dead node's tasks moved", |m| {
        m.nodes.get(&gone).is_some_and(|n| n.fenced) && m.owned_tasks(gone).next().is_none()
    })
    .await;
    assert_eq!(task_counts(&m, &staying), vec![3, 3]);
    let moved = task_owners(&m, "wc");
    for ((was, was_epoch), (now, epoch)) in placed.iter().zip(&moved) {
        if *was == Some(gone) {
            assert_eq!(*epoch, was_epoch + 1, "{placed:?} → {moved:?}");
        } else {
            assert_eq!((now, epoch), (was, was_epoch), "{placed:?} → {moved:?}");
        }
    }

    // It comes back: it gets its share again, and nothing else moves.
    nodes.get_mut(&gone).unwrap().start_control(None);
    let m = until_released(&nodes, controller, "balanced again", |m| {
        task_counts(m, &[1, 2, 3]) == vec![2, 2, 2]
    })
    .await;
    let back = task_owners(&m, "wc");
    for ((was, was_epoch), (now, epoch)) in moved.iter().zip(&back) {
        if now != was {
            assert_eq!(*now, Some(gone), "{moved:?} → {back:?}");
            assert_eq!(*epoch, was_epoch + 1);
        } else {
            assert_eq!(epoch, was_epoch);
        }
    }

    // A fourth node joins: it takes tasks until the counts are within one.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let join = nodes[&1].info.cluster_addr.clone();
    let n4 = Node::start(root.path(), 4, listener, &BTreeMap::new(), Some(join)).await;
    nodes.insert(4, n4);
    let m = until_released(&nodes, controller, "the joined node took its share", |m| {
        let c = task_counts(m, &[1, 2, 3, 4]);
        c[3] >= 1 && c.iter().max() <= Some(&(c.iter().min().unwrap() + 1))
    })
    .await;
    assert_eq!(task_counts(&m, &[1, 2, 3, 4]).iter().sum::<usize>(), 6);
    for (_, n) in nodes {
        n.stop().await;
    }
}

/// A task moved gracefully off a live owner that never releases it (a stuck engine) is
/// moved anyway once the controller's release timeout passes: under the next epoch, which
/// fences the stuck owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_move_its_owner_never_releases_is_forced_after_the_timeout() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3).await;
    let controller = agreed_controller(&nodes).await;
    until(&nodes, controller, "all registered", |m| {
        all_live(m, &nodes, &[1, 2, 3])
    })
    .await;
    {
        let n = nodes.get_mut(&controller).unwrap();
        n.silence().await;
        n.settings.release_timeout = Duration::from_millis(500);
        n.start_control(None);
    }
    deploy_wc(&nodes[&controller].proposer()).await;
    until(&nodes, controller, "two tasks per node", |m| {
        task_counts(m, &[1, 2, 3]) == vec![2, 2, 2]
    })
    .await;
    // A follower goes silent: its tasks go to the others at once (it is fenced).
    let gone = *nodes.keys().find(|id| **id != controller).unwrap();
    nodes.get_mut(&gone).unwrap().silence().await;
    let m = until(&nodes, controller, "the silent node's tasks moved", |m| {
        m.owned_tasks(gone).next().is_none()
    })
    .await;
    let moved = task_owners(&m, "wc");
    // It comes back: balance moves tasks back to it gracefully, and no owner releases them
    // (nothing here plays the engine); after the timeout the moves are forced.
    nodes.get_mut(&gone).unwrap().start_control(None);
    let m = until(&nodes, controller, "the moves were forced", |m| {
        task_counts(m, &[1, 2, 3]) == vec![2, 2, 2]
            && m.all_tasks().all(|(_, _, t)| t.moving_to.is_none())
    })
    .await;
    for ((was, was_epoch), (now, epoch)) in moved.iter().zip(task_owners(&m, "wc")) {
        if now == Some(gone) {
            assert_eq!(epoch, was_epoch + 1, "{was:?} → {now:?}");
        } else {
            assert_eq!((now, epoch), (*was, *was_epoch));
        }
    }
    for (_, n) in nodes {
        n.stop().await;
    }
}

/// A heartbeat carries the node's task copies beside its addresses, in a form an older
/// controller reads as the addresses alone (and an older node's heartbeat reads with none).
#[test]
fn heartbeats_carry_task_copies_compatibly() {
    use super::control::{HeartbeatBody, MAX_REPORTED_COPIES, NodeReportBoard, TaskCopyReport};
    let info = info_of(2, "127.0.0.1:9".into());
    let body = HeartbeatBody {
        info: info.clone(),
        copies: vec![TaskCopyReport {
            processor: "wc".into(),
            partition: 3,
            lag: Some(12),
            stateful: true,
        }],
        budget: Some(super::metadata::NodeBudget {
            instances: 64,
            memory_bytes: 1 << 30,
        }),
    };
    let json = serde_json::to_string(&body).unwrap();
    let old: super::metadata::NodeInfo = serde_json::from_str(&json).unwrap();
    assert_eq!(old, info);
    let from_old: HeartbeatBody =
        serde_json::from_str(&serde_json::to_string(&info).unwrap()).unwrap();
    assert_eq!(
        from_old,
        HeartbeatBody {
            info,
            copies: vec![],
            budget: None,
        }
    );
    // A node reports a bounded number of copies.
    let board = NodeReportBoard::default();
    board.set(vec![body.copies[0].clone(); MAX_REPORTED_COPIES + 5]);
    assert_eq!(board.get().len(), MAX_REPORTED_COPIES);
    assert_eq!(board.budget(), None);
    board.set_budget(body.budget.unwrap());
    assert_eq!(board.budget(), body.budget);
}

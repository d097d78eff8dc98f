//! An in-process metadata quorum over the simulated network: N [`MetadataNode`]s in this
//! test process, each with its own data directory, reaching each other through
//! [`SimTransport`]. Short Raft timeouts keep the tests fast; every wait has a generous
//! liveness bound and nothing asserts on timing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::*;
use crate::cluster::NodeId;
use crate::cluster::sim::SimNetwork;

/// How long anything may take before a test gives up (liveness, not performance).
const PATIENCE: Duration = Duration::from_secs(30);

fn test_config() -> MetadataConfig {
    MetadataConfig {
        heartbeat_interval: Duration::from_millis(50),
        election_timeout_min: Duration::from_millis(150),
        election_timeout_max: Duration::from_millis(300),
        snapshot_every: 20,
        keep_behind_snapshot: 0,
        propose_timeout: Duration::from_secs(2),
        unreachable_backoff: Duration::from_millis(50),
    }
}

fn info(id: NodeId) -> NodeInfo {
    NodeInfo {
        cluster_addr: format!("sim://{id}"),
        kafka_addr: format!("sim-kafka://{id}"),
        http_addr: format!("sim-http://{id}"),
    }
}

struct Harness {
    net: Arc<SimNetwork>,
    registry: Arc<SimRegistry>,
    root: tempfile::TempDir,
    voters: Voters,
    running: BTreeMap<NodeId, MetadataNode>,
    config: MetadataConfig,
}

impl Harness {
    fn new(voters: u64) -> Harness {
        Harness {
            net: Arc::new(SimNetwork::new()),
            registry: Arc::new(SimRegistry::new()),
            root: tempfile::tempdir().unwrap(),
            voters: (1..=voters).map(|id| (id, info(id))).collect(),
            running: BTreeMap::new(),
            config: test_config(),
        }
    }

    async fn start_all(n: u64) -> Harness {
        let mut h = Harness::new(n);
        for id in 1..=n {
            h.start(id).await;
        }
        h
    }

    async fn start(&mut self, id: NodeId) {
        self.start_with(id, true).await;
    }

    /// Starts node `id` over its data directory, on the network or cut off from it.
    async fn start_with(&mut self, id: NodeId, connected: bool) {
        let dir = self.root.path().join(format!("node-{id}"));
        let transport = Arc::new(SimTransport::new(
            id,
            self.net.clone(),
            self.registry.clone(),
        ));
        if connected {
            self.net.start(id);
        } else {
            self.net.stop(id);
        }
        let node = MetadataNode::start(id, &dir, transport, &self.voters, &self.config)
            .await
            .unwrap();
        self.registry.register(node.clone());
        self.running.insert(id, node);
    }

    /// Kills the node: off the network, Raft stopped, its storage closed.
    async fn stop(&mut self, id: NodeId) {
        self.net.stop(id);
        self.registry.unregister(id);
        let node = self.running.remove(&id).unwrap();
        node.shutdown().await.unwrap();
    }

    fn node(&self, id: NodeId) -> &MetadataNode {
        &self.running[&id]
    }

    /// The controller among `among` once one of them knows it leads and the others agree.
    async fn controller(&self, among: &[NodeId]) -> NodeId {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let leaders: Vec<NodeId> = among
                .iter()
                .filter(|id| self.node(**id).is_controller())
                .copied()
                .collect();
            if let [leader] = leaders[..] {
                let agreed = among
                    .iter()
                    .all(|id| self.node(*id).controller() == Some(leader));
                if agreed {
                    return leader;
                }
            }
            assert!(Instant::now() < deadline, "no controller among {among:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Proposes through whichever of `among` is the controller, retrying while leadership
    /// moves. Commands used with it are idempotent or tolerate "already exists".
    async fn propose(&self, among: &[NodeId], cmd: MetadataCommand) -> MetadataResponse {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let leader = self.controller(among).await;
            match self.node(leader).propose(cmd.clone()).await {
                Ok(r) => return r,
                Err(NodeError::Rejected(MetadataError::TopicExists(_))) => {
                    return MetadataResponse::Done;
                }
                Err(e @ (NodeError::NotController { .. } | NodeError::Unknown(_))) => {
                    assert!(Instant::now() < deadline, "proposal never committed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("proposal failed: {e}"),
            }
        }
    }

    /// Waits until every node of `ids` has applied a state satisfying `pred`.
    async fn wait_all(&self, ids: &[NodeId], pred: impl Fn(&ClusterMetadata) -> bool) {
        for id in ids {
            let got = self.node(*id).wait_for(PATIENCE, &pred).await;
            assert!(
                got.is_some(),
                "node {id} never got there: {:?}",
                self.node(*id).current()
            );
        }
    }

    /// Waits until `ids` agree: same last log index, everything applied, same state.
    async fn wait_converged(&self, ids: &[NodeId]) -> Arc<ClusterMetadata> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let metrics: Vec<MetadataMetrics> =
                ids.iter().map(|id| self.node(*id).metrics()).collect();
            let states: Vec<Arc<ClusterMetadata>> =
                ids.iter().map(|id| self.node(*id).current()).collect();
            let same_log = metrics
                .iter()
                .all(|m| m.last_log_index == metrics[0].last_log_index);
            let all_applied = metrics.iter().all(|m| m.applied_index == m.last_log_index);
            let same_state = states.iter().all(|s| **s == *states[0]);
            if same_log && all_applied && same_state {
                return states[0].clone();
            }
            assert!(
                Instant::now() < deadline,
                "nodes {ids:?} never converged: {metrics:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn shutdown(mut self) {
        let ids: Vec<NodeId> = self.running.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

fn register(node: NodeId) -> MetadataCommand {
    MetadataCommand::RegisterNode {
        node,
        info: info(node),
    }
}

fn create_topic(name: &str, assignment: Vec<Vec<NodeId>>) -> MetadataCommand {
    MetadataCommand::CreateTopic(CreateTopic {
        name: name.to_string(),
        replication_factor: assignment[0].len() as u16,
        min_insync_replicas: 1,
        config: TopicConfig::default(),
        internal_owner: None,
        assignment,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_quorum_in_any_start_order() {
    for order in [[1, 2, 3], [3, 1, 2], [2, 3, 1]] {
        let mut h = Harness::new(3);
        h.start(order[0]).await;
        // Alone, the first node cannot be elected: no majority.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(h.node(order[0]).controller(), None, "order {order:?}");
        h.start(order[1]).await;
        let first_two = [order[0], order[1]];
        h.controller(&first_two).await;
        h.start(order[2]).await;
        for id in 1..=3 {
            h.propose(&[1, 2, 3], register(id)).await;
        }
        h.propose(
            &[1, 2, 3],
            create_topic("t", vec![vec![1, 2, 3], vec![2, 3, 1]]),
        )
        .await;
        h.wait_all(&[1, 2, 3], |m| m.topics.contains_key("t")).await;
        let state = h.wait_converged(&[1, 2, 3]).await;
        assert_eq!(state.nodes.len(), 3);
        assert_eq!(state.topics["t"].partitions[1].leader, Some(2));
        for id in 1..=3 {
            assert_eq!(h.node(id).metrics().voters.len(), 3);
        }
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_refuses_to_propose_and_names_the_controller() {
    let h = Harness::start_all(3).await;
    let leader = h.controller(&[1, 2, 3]).await;
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    match h.node(follower).propose(register(follower)).await {
        Err(e @ NodeError::NotController { .. }) => {
            assert!(matches!(e, NodeError::NotController { leader: Some(l) } if l == leader));
            assert_eq!(e.code(), "not_controller");
        }
        other => panic!("expected NotController, got {other:?}"),
    }
    // A refused command comes back as the state machine's refusal.
    match h
        .node(leader)
        .propose(MetadataCommand::FenceNode { node: 9 })
        .await
    {
        Err(NodeError::Rejected(MetadataError::UnknownNode(9))) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_failover_loses_nothing_committed() {
    let mut h = Harness::start_all(3).await;
    for id in 1..=3 {
        h.propose(&[1, 2, 3], register(id)).await;
    }
    for i in 0..10 {
        h.propose(
            &[1, 2, 3],
            create_topic(&format!("before-{i}"), vec![vec![1, 2]]),
        )
        .await;
    }
    let old = h.controller(&[1, 2, 3]).await;
    let committed = h.node(old).current();
    h.stop(old).await;
    let rest: Vec<NodeId> = (1..=3).filter(|&n| n != old).collect();
    let new = h.controller(&rest).await;
    assert_ne!(new, old);
    for i in 0..5 {
        h.propose(
            &rest,
            create_topic(&format!("after-{i}"), vec![vec![rest[0]]]),
        )
        .await;
    }
    let state = h.wait_converged(&rest).await;
    for name in committed.topics.keys() {
        assert!(
            state.topics.contains_key(name),
            "{name} lost in the failover"
        );
    }
    assert!(state.version > committed.version);
    // The old controller comes back as a follower and catches up.
    h.start(old).await;
    h.wait_all(&[old], |m| m.topics.contains_key("after-4"))
        .await;
    h.wait_converged(&[1, 2, 3]).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_controller_cannot_commit_and_logs_agree_after_heal() {
    let h = Harness::start_all(3).await;
    for id in 1..=3 {
        h.propose(&[1, 2, 3], register(id)).await;
    }
    let old = h.controller(&[1, 2, 3]).await;
    let majority: Vec<NodeId> = (1..=3).filter(|&n| n != old).collect();
    h.net.partition(&[old], &majority);
    // The isolated controller still believes it leads for a moment; what it is given now
    // cannot reach a quorum.
    let stranded = h
        .node(old)
        .propose(create_topic("stranded", vec![vec![old]]))
        .await;
    assert!(
        matches!(
            stranded,
            Err(NodeError::Unknown(_) | NodeError::NotController { .. })
        ),
        "a minority committed: {stranded:?}"
    );
    assert!(!h.node(old).current().topics.contains_key("stranded"));
    // Nor can it confirm that its metadata is current.
    assert!(h.node(old).read_linearizable().await.is_err());
    // The majority elects a controller of its own and commits.
    h.propose(&majority, create_topic("majority", vec![vec![majority[0]]]))
        .await;
    let new = h.controller(&majority).await;
    let read = h.node(new).read_linearizable().await.unwrap();
    assert!(read.topics.contains_key("majority"));
    h.net.heal();
    h.wait_all(&[1, 2, 3], |m| m.topics.contains_key("majority"))
        .await;
    let state = h.wait_converged(&[1, 2, 3]).await;
    assert!(
        !state.topics.contains_key("stranded"),
        "the minority's entry must have been truncated"
    );
    assert_ne!(h.controller(&[1, 2, 3]).await, 0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_recovers_from_disk_and_catches_up() {
    let mut h = Harness::start_all(3).await;
    for id in 1..=3 {
        h.propose(&[1, 2, 3], register(id)).await;
    }
    for i in 0..25 {
        h.propose(
            &[1, 2, 3],
            create_topic(&format!("early-{i}"), vec![vec![1]]),
        )
        .await;
    }
    let leader = h.controller(&[1, 2, 3]).await;
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    h.wait_all(&[follower], |m| m.topics.contains_key("early-24"))
        .await;
    let before = h.node(follower).current();
    let term_before = h.node(follower).metrics().term;
    h.stop(follower).await;
    // Enough entries while it is away for the others to snapshot and purge their logs.
    let rest: Vec<NodeId> = (1..=3).filter(|&n| n != follower).collect();
    for i in 0..45 {
        h.propose(
            &rest,
            create_topic(&format!("late-{i}"), vec![vec![leader]]),
        )
        .await;
    }
    h.wait_all(&rest, |m| m.topics.contains_key("late-44"))
        .await;
    // Cut off from the others, it restores what it had applied from its own disk.
    h.start_with(follower, false).await;
    let restored = h
        .node(follower)
        .wait_for(PATIENCE, |m| m.version >= before.version)
        .await
        .expect("the applied state is restored from the node's own disk");
    assert!(restored.topics.contains_key("early-24"));
    assert!(h.node(follower).metrics().term >= term_before);
    h.net.start(follower);
    h.wait_all(&[follower], |m| m.topics.contains_key("late-44"))
        .await;
    h.wait_converged(&[1, 2, 3]).await;
    assert!(
        h.running
            .values()
            .any(|n| n.metrics().snapshot_index.is_some()),
        "the test was meant to cross a snapshot"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_with_two_down_still_commit() {
    let mut h = Harness::start_all(5).await;
    for id in 1..=5 {
        h.propose(&[1, 2, 3, 4, 5], register(id)).await;
    }
    let leader = h.controller(&[1, 2, 3, 4, 5]).await;
    // Take the controller and one more down.
    let other = (1..=5).find(|&n| n != leader).unwrap();
    h.stop(leader).await;
    h.stop(other).await;
    let up: Vec<NodeId> = (1..=5).filter(|&n| n != leader && n != other).collect();
    h.propose(&up, create_topic("survivor", vec![up.clone()]))
        .await;
    h.wait_all(&up, |m| m.topics.contains_key("survivor")).await;
    h.wait_converged(&up).await;
    // A third one down: no quorum, nothing commits.
    h.stop(up[0]).await;
    let left = [up[1], up[2]];
    tokio::time::sleep(Duration::from_millis(600)).await;
    for id in left {
        let r = h.node(id).propose(register(id)).await;
        assert!(r.is_err(), "two of five committed: {r:?}");
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_restart_keeps_log_vote_and_state() {
    let mut h = Harness::start_all(1).await;
    h.propose(&[1], register(1)).await;
    for i in 0..30 {
        h.propose(&[1], create_topic(&format!("t{i}"), vec![vec![1]]))
            .await;
    }
    let before = h.node(1).current();
    let metrics = h.node(1).metrics();
    h.stop(1).await;
    h.start(1).await;
    let after = h
        .node(1)
        .wait_for(PATIENCE, |m| m.version >= before.version)
        .await
        .unwrap();
    assert_eq!(after.topics, before.topics);
    h.controller(&[1]).await;
    assert!(h.node(1).metrics().term >= metrics.term);
    h.propose(&[1], create_topic("after-restart", vec![vec![1]]))
        .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_old_controller_alone_leads_in_raft_but_is_never_the_controller() {
    let mut h = Harness::start_all(3).await;
    let c = h.controller(&[1, 2, 3]).await;
    h.propose(&[1, 2, 3], register(c)).await;
    for id in 1..=3 {
        h.stop(id).await;
    }
    // Only the old controller comes back: openraft restores it as leader of its committed
    // vote, but no quorum can acknowledge it, so it must never act as the controller (its
    // metadata may be long stale in a real cluster that moved on without it).
    h.start(c).await;
    let mut raft_leader_seen = false;
    let until = Instant::now() + h.config.election_timeout_max * 4;
    while Instant::now() < until {
        let m = h.node(c).metrics();
        raft_leader_seen |= m.state == openraft::ServerState::Leader;
        assert!(!m.acknowledged, "acknowledged without a quorum: {m:?}");
        assert!(!h.node(c).is_controller(), "{m:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A quorum again: it (or another) is acknowledged and acts.
    let other = if c == 1 { 2 } else { 1 };
    h.start(other).await;
    let now = h.controller(&[c, other]).await;
    assert!(h.node(now).metrics().acknowledged);
    assert!(
        raft_leader_seen,
        "the case did not happen: openraft no longer restores a leader from its vote"
    );
    h.shutdown().await;
}

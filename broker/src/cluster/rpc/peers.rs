//! The node's peers: one [`PeerClient`] per known peer, and what the last greeting to each
//! showed (reachable or not, since when, why not). A background loop greets every peer each
//! `hello_interval`; a joining node greets its `--join` address until it learns the cluster
//! id from it. The snapshot ([`Peers::view`]) is what `GET /v1/cluster` shows.
//!
//! "Reachable" means only that the last hello got a proper answer from the expected node
//! of the same cluster; it says nothing about Raft membership or partition leadership
//! (those come from the metadata plane).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::client::{ClientConfig, PeerClient, RpcError};
use super::message::HelloReply;
use super::server::InboundHello;
use super::{LocalNode, SOFTWARE_VERSION};
use crate::cluster::NodeId;

/// One node as `GET /v1/cluster` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub id: NodeId,
    /// Its cluster address (`None` on a single node, which has no cluster listener).
    pub address: Option<String>,
    pub reachable: bool,
    /// When it last answered a hello (Unix milliseconds).
    pub last_seen_ms: Option<u64>,
    /// Why the last hello failed.
    pub error: Option<String>,
    /// Its software version, from its last answer.
    pub version: Option<String>,
    /// This is the node answering.
    #[serde(rename = "self")]
    pub is_self: bool,
}

/// The cluster as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// `single` (no cluster flags) or `cluster`.
    pub mode: &'static str,
    pub cluster_id: Option<String>,
    pub node_id: NodeId,
    pub nodes: Vec<NodeStatus>,
}

impl ClusterView {
    /// A single node (no cluster flags): itself, as Kafka broker `node_id`.
    pub fn single(node_id: NodeId) -> ClusterView {
        ClusterView {
            mode: "single",
            cluster_id: None,
            node_id,
            nodes: vec![NodeStatus {
                id: node_id,
                address: None,
                reachable: true,
                last_seen_ms: Some(now_ms()),
                error: None,
                version: Some(SOFTWARE_VERSION.to_string()),
                is_self: true,
            }],
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Default)]
struct Seen {
    reachable: bool,
    last_seen_ms: Option<u64>,
    error: Option<String>,
    version: Option<String>,
}

struct Entry {
    client: Arc<PeerClient>,
    seen: Seen,
}

/// Called once when a joining node learns the cluster id (to record it in the data
/// directory); an error stops the node from using the id.
pub type OnLearned = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The peers of this node and their liveness.
pub struct Peers {
    local: Arc<LocalNode>,
    /// How long one greeting may take (a paused peer shows unreachable after this).
    hello_timeout: Duration,
    client_config: ClientConfig,
    /// Known peers by node id.
    peers: Mutex<BTreeMap<NodeId, Entry>>,
    /// `--join`: the member to learn the cluster from, until it answered.
    join: Mutex<Option<(Arc<PeerClient>, Seen)>>,
    on_learned: Option<OnLearned>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("node_id", &self.local.node_id())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Peers {
    /// Peers at `addrs` (id → cluster address), none greeted yet.
    pub fn new(
        local: Arc<LocalNode>,
        client_config: ClientConfig,
        addrs: impl IntoIterator<Item = (NodeId, String)>,
    ) -> Peers {
        let peers = addrs
            .into_iter()
            .filter(|(id, _)| *id != local.node_id())
            .map(|(id, addr)| {
                let client = Arc::new(PeerClient::new(addr, local.clone(), client_config.clone()));
                (
                    id,
                    Entry {
                        client,
                        seen: Seen::default(),
                    },
                )
            })
            .collect();
        Peers {
            local,
            hello_timeout: client_config.request_timeout.min(Duration::from_secs(2)),
            client_config,
            peers: Mutex::new(peers),
            join: Mutex::new(None),
            on_learned: None,
        }
    }

    /// A joining node: greets `addr` until it answers with the cluster id, then calls
    /// `on_learned` and keeps the answering node as a peer.
    pub fn joining(mut self, addr: String, on_learned: OnLearned) -> Peers {
        let client = Arc::new(PeerClient::new(
            addr,
            self.local.clone(),
            self.client_config.clone(),
        ));
        self.join = Mutex::new(Some((client, Seen::default())));
        self.on_learned = Some(on_learned);
        self
    }

    pub fn local(&self) -> &Arc<LocalNode> {
        &self.local
    }

    /// The client of peer `id` (for the Raft network and follower fetches).
    pub fn client(&self, id: NodeId) -> Option<Arc<PeerClient>> {
        lock(&self.peers).get(&id).map(|e| e.client.clone())
    }

    /// Adds or moves a peer (from metadata: a node that joined). Returns its client.
    pub fn upsert(&self, id: NodeId, addr: &str) -> Option<Arc<PeerClient>> {
        if id == self.local.node_id() {
            return None;
        }
        let mut peers = lock(&self.peers);
        if let Some(e) = peers.get(&id)
            && e.client.addr() == addr
        {
            return Some(e.client.clone());
        }
        let client = Arc::new(PeerClient::new(
            addr,
            self.local.clone(),
            self.client_config.clone(),
        ));
        peers.insert(
            id,
            Entry {
                client: client.clone(),
                seen: Seen::default(),
            },
        );
        Some(client)
    }

    /// Forgets peer `id` (a decommissioned node): it is no longer greeted or listed.
    pub fn remove(&self, id: NodeId) {
        lock(&self.peers).remove(&id);
    }

    /// A new client of the node at `addr`, whose id is not known yet (the `--join` target),
    /// with this node's client settings. Not kept among the peers.
    pub fn dial(&self, addr: &str) -> Arc<PeerClient> {
        Arc::new(PeerClient::new(
            addr,
            self.local.clone(),
            self.client_config.clone(),
        ))
    }

    /// Known peer ids.
    pub fn ids(&self) -> Vec<NodeId> {
        lock(&self.peers).keys().copied().collect()
    }

    /// This node and every peer, by id.
    pub fn view(&self) -> ClusterView {
        let local = &self.local;
        let mut nodes = vec![NodeStatus {
            id: local.node_id(),
            address: Some(local.advertised().to_string()),
            reachable: true,
            last_seen_ms: Some(now_ms()),
            error: None,
            version: Some(SOFTWARE_VERSION.to_string()),
            is_self: true,
        }];
        for (id, e) in lock(&self.peers).iter() {
            nodes.push(NodeStatus {
                id: *id,
                address: Some(e.client.addr().to_string()),
                reachable: e.seen.reachable,
                last_seen_ms: e.seen.last_seen_ms,
                error: e.seen.error.clone(),
                version: e.seen.version.clone(),
                is_self: false,
            });
        }
        nodes.sort_by_key(|n| n.id);
        ClusterView {
            mode: "cluster",
            cluster_id: local.cluster_id(),
            node_id: local.node_id(),
            nodes,
        }
    }

    /// Whether peer `id` answered its last hello.
    pub fn is_reachable(&self, id: NodeId) -> bool {
        lock(&self.peers).get(&id).is_some_and(|e| e.seen.reachable)
    }

    /// How long peer `id` has been silent: `None` while its last hello was answered (or it
    /// is not a known peer), else the time since it was last heard from (a hello answered
    /// or a greeting received), `Duration::MAX` if never.
    pub fn silent_for(&self, id: NodeId) -> Option<Duration> {
        let peers = lock(&self.peers);
        let seen = &peers.get(&id)?.seen;
        if seen.reachable {
            return None;
        }
        Some(
            seen.last_seen_ms
                .map(|t| Duration::from_millis(now_ms().saturating_sub(t)))
                .unwrap_or(Duration::MAX),
        )
    }

    /// Greets every peer once, concurrently, and records the outcomes.
    pub async fn greet_all(&self) {
        self.greet_join_target().await;
        let clients: Vec<(NodeId, Arc<PeerClient>)> = lock(&self.peers)
            .iter()
            .map(|(id, e)| (*id, e.client.clone()))
            .collect();
        let timeout = self.hello_timeout;
        let greetings = clients.into_iter().map(|(id, client)| async move {
            let outcome = client.hello_within(timeout).await;
            (id, client, outcome)
        });
        for (id, client, outcome) in futures_util::future::join_all(greetings).await {
            let outcome = outcome.and_then(|reply| self.check_reply(Some(id), &client, reply));
            self.note(id, &client, outcome);
        }
    }

    /// Runs [`greet_all`](Self::greet_all) every `interval` until `stop` turns true.
    pub async fn run(
        self: Arc<Self>,
        interval: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut all_reachable = false;
        loop {
            self.greet_all().await;
            let view = self.view();
            let now_all = view.nodes.iter().all(|n| n.reachable);
            if now_all && !all_reachable && view.nodes.len() > 1 {
                tracing::info!(nodes = view.nodes.len(), "every peer is reachable");
            }
            all_reachable = now_all;
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    async fn greet_join_target(&self) {
        let target = lock(&self.join).as_ref().map(|(c, _)| c.clone());
        let Some(client) = target else { return };
        let outcome = client
            .hello_within(self.hello_timeout)
            .await
            .and_then(|reply| self.check_reply(None, &client, reply));
        let mut join = lock(&self.join);
        let Some((_, seen)) = join.as_mut() else {
            return;
        };
        match outcome {
            Ok(reply) => {
                let Some(cluster_id) = reply.cluster_id.clone() else {
                    seen.error = Some("the --join node does not know its cluster id yet".into());
                    return;
                };
                if self.local.cluster_id().is_none() {
                    if let Some(on_learned) = &self.on_learned
                        && let Err(e) = on_learned(&cluster_id)
                    {
                        tracing::error!(error = %e, "cannot record the cluster id learned from --join");
                        seen.error = Some(e);
                        return;
                    }
                    self.local.learn_cluster_id(&cluster_id);
                    tracing::info!(%cluster_id, via = client.addr(), "joined: learned the cluster id");
                }
                *join = None;
                drop(join);
                if let Some(peer) = self.upsert(reply.node_id, client.addr()) {
                    self.note(reply.node_id, &peer, Ok(reply));
                }
            }
            Err(e) => {
                if seen.error.as_deref() != Some(&e.to_string()) {
                    tracing::warn!(addr = client.addr(), error = %e, "cannot reach the --join node yet");
                }
                seen.error = Some(e.to_string());
            }
        }
    }

    /// A proper answer comes from the node expected at that address, in our cluster.
    fn check_reply(
        &self,
        expected: Option<NodeId>,
        client: &PeerClient,
        reply: HelloReply,
    ) -> Result<HelloReply, RpcError> {
        let mismatch = |got: String| RpcError::Mismatch {
            addr: client.addr().to_string(),
            sent: "hello",
            got,
        };
        if let Some(id) = expected
            && reply.node_id != id
        {
            return Err(mismatch(format!(
                "node {} where --peers says node {id}",
                reply.node_id
            )));
        }
        if let (Some(ours), Some(theirs)) = (self.local.cluster_id(), &reply.cluster_id)
            && &ours != theirs
        {
            return Err(RpcError::Refused {
                addr: client.addr().to_string(),
                refusal: super::message::Refusal::WrongCluster {
                    ours: Some(theirs.clone()),
                    theirs: Some(ours),
                },
            });
        }
        Ok(reply)
    }

    fn note(&self, id: NodeId, client: &PeerClient, outcome: Result<HelloReply, RpcError>) {
        let mut peers = lock(&self.peers);
        let Some(entry) = peers.get_mut(&id) else {
            return;
        };
        if !std::ptr::eq(Arc::as_ptr(&entry.client), client) {
            return; // the peer moved while we greeted its old address
        }
        let seen = &mut entry.seen;
        match outcome {
            Ok(reply) => {
                if !seen.reachable {
                    tracing::info!(peer = id, addr = client.addr(), version = %reply.version, "peer is reachable");
                }
                seen.reachable = true;
                seen.last_seen_ms = Some(now_ms());
                seen.error = None;
                seen.version = Some(reply.version);
            }
            Err(e) => {
                let msg = e.to_string();
                if seen.reachable || seen.error.as_deref() != Some(&msg) {
                    if matches!(e, RpcError::Refused { .. } | RpcError::Mismatch { .. }) {
                        tracing::error!(peer = id, error = %msg, "peer refused or is not who --peers says");
                    } else {
                        tracing::warn!(peer = id, error = %msg, "peer is unreachable");
                    }
                }
                seen.reachable = false;
                seen.error = Some(msg);
            }
        }
    }
}

impl InboundHello for Peers {
    /// A greeting from a peer shows it alive now even before our own hello reaches it.
    fn greeted_by(&self, from: NodeId, advertised: &str, version: &str) {
        let mut peers = lock(&self.peers);
        if let Some(e) = peers.get_mut(&from)
            && e.client.addr() == advertised
        {
            e.seen.last_seen_ms = Some(now_ms());
            e.seen.version = Some(version.to_string());
        }
    }
}

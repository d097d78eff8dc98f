//! `GET /v1/cluster`: the cluster as this node sees it — its id, this node, and each peer
//! with its cluster address, whether its last greeting was answered and when; with the
//! metadata quorum running (`--peers` or `--join`), also the controller as this node knows it, its Raft
//! term and applied index, the applied metadata's version, and per node whether the
//! metadata registers it, fenced or not, whether it votes, and the Kafka and HTTP addresses
//! it advertises. Nodes the metadata knows but this node has no client for are listed too.
//! A single node (no cluster flags) shows itself alone.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use weir_broker::cluster::metadata::MetadataNode;
use weir_broker::cluster::rpc::{ClusterView, NodeStatus};

use super::AppState;

/// The answer of `GET /v1/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    pub mode: &'static str,
    pub cluster_id: Option<String>,
    pub node_id: u64,
    /// `None` where no metadata quorum member runs (a single node).
    pub metadata: Option<MetadataStatus>,
    pub nodes: Vec<NodeRow>,
}

/// This node's view of the metadata quorum.
#[derive(Debug, Serialize)]
pub struct MetadataStatus {
    /// The controller (Raft leader) as this node knows it.
    pub controller: Option<u64>,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    pub term: u64,
    /// The index of the last Raft entry applied on this node.
    pub applied_index: Option<u64>,
    /// The applied metadata's version (the same on every node that applied as much).
    pub version: u64,
    pub voters: Vec<u64>,
}

/// One node: its liveness, and what the metadata says of it (`None` everywhere where no
/// metadata quorum member runs).
#[derive(Debug, Serialize)]
pub struct NodeRow {
    #[serde(flatten)]
    pub status: NodeStatus,
    /// Registered and not fenced: alive as far as the controller's sessions go.
    pub registered: Option<bool>,
    /// Registered but fenced (missed its session, or shut down).
    pub fenced: Option<bool>,
    /// A voter of the metadata quorum (else a learner, or not a member).
    pub voter: Option<bool>,
    /// The address Kafka clients are told, as the node advertised it.
    pub kafka_address: Option<String>,
    /// Its HTTP address, as the node advertised it.
    pub http_address: Option<String>,
}

pub async fn status(State(state): State<AppState>) -> Json<ClusterStatus> {
    let view = match &state.cluster {
        Some(peers) => peers.view(),
        None => ClusterView::single(state.node_id),
    };
    Json(combine(view, state.metadata.as_ref()))
}

fn combine(view: ClusterView, metadata: Option<&MetadataNode>) -> ClusterStatus {
    let applied = metadata.map(|m| m.current());
    let voters = metadata.map(|m| m.metrics().voters);
    let mut statuses = view.nodes;
    if let Some(applied) = &applied {
        // Nodes the metadata knows that this node has no client for (yet).
        for (id, node) in &applied.nodes {
            if !statuses.iter().any(|s| s.id == *id) {
                statuses.push(NodeStatus {
                    id: *id,
                    address: Some(node.info.cluster_addr.clone()).filter(|a| !a.is_empty()),
                    reachable: false,
                    last_seen_ms: None,
                    error: None,
                    version: None,
                    is_self: false,
                });
            }
        }
        statuses.sort_by_key(|s| s.id);
    }
    let nonempty = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
    let nodes = statuses
        .into_iter()
        .map(|status| {
            let known = applied.as_ref().map(|a| a.nodes.get(&status.id));
            NodeRow {
                registered: known.map(|n| n.is_some_and(|n| !n.fenced)),
                fenced: known.map(|n| n.is_some_and(|n| n.fenced)),
                voter: voters.as_ref().map(|v| v.contains(&status.id)),
                kafka_address: known.flatten().and_then(|n| nonempty(&n.info.kafka_addr)),
                http_address: known.flatten().and_then(|n| nonempty(&n.info.http_addr)),
                status,
            }
        })
        .collect();
    let metadata = metadata.zip(applied).map(|(node, applied)| {
        let m = node.metrics();
        MetadataStatus {
            controller: m.controller,
            role: format!("{:?}", m.state).to_lowercase(),
            term: m.term,
            applied_index: m.applied_index,
            version: applied.version,
            voters: m.voters.into_iter().collect(),
        }
    });
    ClusterStatus {
        mode: view.mode,
        cluster_id: view.cluster_id,
        node_id: view.node_id,
        metadata,
        nodes,
    }
}

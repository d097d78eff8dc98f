//! `GET /v1/cluster`: the cluster as this node sees it — its id, this node, and each peer
//! with its cluster address, whether its last greeting was answered and when; with the
//! metadata quorum running (`--peers`), also the controller as this node knows it, its Raft
//! term and applied index, the applied metadata's version, and per node whether the
//! metadata registers it. A single node (no cluster flags) shows itself alone.

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
    /// `None` where no metadata quorum member runs (a single node, `--join`).
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

/// One node: its liveness, and whether the metadata registers it (unfenced).
#[derive(Debug, Serialize)]
pub struct NodeRow {
    #[serde(flatten)]
    pub status: NodeStatus,
    /// `None` where no metadata quorum member runs.
    pub registered: Option<bool>,
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
    let nodes = view
        .nodes
        .into_iter()
        .map(|status| NodeRow {
            registered: applied
                .as_ref()
                .map(|a| a.nodes.get(&status.id).is_some_and(|n| !n.fenced)),
            status,
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

//! `GET /v1/cluster`: the cluster as this node sees it — its id, this node, and each peer
//! with its cluster address, whether its last greeting was answered and when. A single node
//! (no cluster flags) shows itself alone. Liveness only: leadership and replication state
//! come from the metadata plane.

use axum::Json;
use axum::extract::State;
use weir_broker::cluster::rpc::ClusterView;

use super::AppState;

pub async fn status(State(state): State<AppState>) -> Json<ClusterView> {
    Json(match &state.cluster {
        Some(peers) => peers.view(),
        None => ClusterView::single(state.node_id),
    })
}

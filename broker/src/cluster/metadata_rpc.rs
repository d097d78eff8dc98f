//! The metadata plane over the cluster RPC: [`RpcMetadataTransport`] carries a node's Raft
//! requests to its peers as [`PeerRequest::Raft`], [`MetadataService`] answers the ones that
//! arrive by handing them to the local [`MetadataNode`], and [`register_nodes`] is the
//! controller's loop that records the nodes it can reach in the metadata.
//!
//! It owns only the glue: the message types are the RPC's ([`RaftRequest`],
//! [`RaftResponse`]), the consensus is the metadata module's. It does not read the data
//! directory or know about HTTP.
//!
//! # Invariants
//!
//! 1. **A Raft request reaches Raft unchanged and its answer comes back unchanged**: the
//!    remote Raft's refusal is an answer (`Ok(Err(…))`), never a transport error.
//! 2. **No answer is either `Unreachable` or `Failed`**: the peer could not be reached, or
//!    refused the request before its Raft saw it (not served yet, shutting down) →
//!    [`TransportError::Unreachable`] (openraft pauses before retrying); the request may have
//!    arrived but no valid answer came back → [`TransportError::Failed`].
//! 3. **A Raft request is served only from the node whose vote it carries** (the candidate
//!    of a vote, the leader of an append or snapshot): a peer cannot speak for another.
//!    (The RPC layer authenticates `from` only under mutual TLS.)
//! 4. **Only the controller proposes** `RegisterNode` (cluster invariant 1): each node's
//!    registration is done by whichever node is controller, for itself and for every voter
//!    whose greeting it has answered recently; no node proposes for itself elsewhere, so no
//!    forwarding is needed and a controller change simply hands the job to the next one.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::NodeId;
use super::metadata::{
    AppendEntriesRequest, AppendResult, InstallSnapshotRequest, MetadataCommand, MetadataNode,
    MetadataTransport, NodeError, NodeInfo, NodeState, SnapshotResult, TransportError, TypeConfig,
    VoteRequest, VoteResult,
};
use super::rpc::message::{Json, RaftRequest, RaftResponse};
use super::rpc::{PeerRequest, PeerResponse, PeerService, Peers, Refusal, RpcError, ServiceFuture};

/// Sends Raft requests to peers over their [`Peers`] clients. A target not among the peers
/// yet is dialed at the cluster address its membership entry records.
pub struct RpcMetadataTransport {
    peers: Arc<Peers>,
}

impl RpcMetadataTransport {
    pub fn new(peers: Arc<Peers>) -> RpcMetadataTransport {
        RpcMetadataTransport { peers }
    }

    async fn round_trip(
        &self,
        target: NodeId,
        node: &NodeInfo,
        request: RaftRequest,
    ) -> Result<RaftResponse, TransportError> {
        let client = self
            .peers
            .client(target)
            .or_else(|| self.peers.upsert(target, &node.cluster_addr))
            .ok_or_else(|| TransportError::Unreachable {
                target,
                reason: "no client for this node".to_string(),
            })?;
        // openraft bounds every call by its own deadline; the client's bounds the rest.
        match client.call(PeerRequest::Raft(request)).await {
            Ok(PeerResponse::Raft(answer)) => Ok(answer),
            Ok(other) => Err(TransportError::Failed {
                target,
                reason: format!("unexpected answer {other:?}"),
            }),
            Err(e) => Err(transport_error(target, e)),
        }
    }
}

/// Maps a failed call to what openraft should do about it (invariant 2).
fn transport_error(target: NodeId, e: RpcError) -> TransportError {
    let not_seen_by_raft = matches!(
        &e,
        RpcError::Refused {
            refusal: Refusal::NotServed(_) | Refusal::ShuttingDown,
            ..
        }
    );
    let reason = e.to_string();
    if e.is_unreachable() || not_seen_by_raft {
        TransportError::Unreachable { target, reason }
    } else {
        TransportError::Failed { target, reason }
    }
}

fn encode<T: serde::Serialize + serde::de::DeserializeOwned>(
    target: NodeId,
    value: &T,
) -> Result<Json<T>, TransportError> {
    Json::encode(value).map_err(|reason| TransportError::Failed {
        target,
        reason: format!("cannot encode the request: {reason}"),
    })
}

fn decode<T: serde::Serialize + serde::de::DeserializeOwned>(
    target: NodeId,
    json: &Json<T>,
) -> Result<T, TransportError> {
    json.decode().map_err(|reason| TransportError::Failed {
        target,
        reason: format!("undecodable answer: {reason}"),
    })
}

fn mismatch(target: NodeId, got: &RaftResponse) -> TransportError {
    TransportError::Failed {
        target,
        reason: format!("answer of the wrong kind: {got:?}"),
    }
}

impl MetadataTransport for RpcMetadataTransport {
    fn append_entries<'a>(
        &'a self,
        target: NodeId,
        node: &'a NodeInfo,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> BoxFuture<'a, Result<AppendResult, TransportError>> {
        Box::pin(async move {
            let request = RaftRequest::AppendEntries(encode(target, &req)?);
            match self.round_trip(target, node, request).await? {
                RaftResponse::AppendEntries(answer) => decode(target, &answer),
                other => Err(mismatch(target, &other)),
            }
        })
    }

    fn vote<'a>(
        &'a self,
        target: NodeId,
        node: &'a NodeInfo,
        req: VoteRequest<NodeId>,
    ) -> BoxFuture<'a, Result<VoteResult, TransportError>> {
        Box::pin(async move {
            let request = RaftRequest::Vote(encode(target, &req)?);
            match self.round_trip(target, node, request).await? {
                RaftResponse::Vote(answer) => decode(target, &answer),
                other => Err(mismatch(target, &other)),
            }
        })
    }

    fn install_snapshot<'a>(
        &'a self,
        target: NodeId,
        node: &'a NodeInfo,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> BoxFuture<'a, Result<SnapshotResult, TransportError>> {
        Box::pin(async move {
            let request = RaftRequest::InstallSnapshot(encode(target, &req)?);
            match self.round_trip(target, node, request).await? {
                RaftResponse::InstallSnapshot(answer) => decode(target, &answer),
                other => Err(mismatch(target, &other)),
            }
        })
    }
}

/// Answers peers' Raft requests with the local [`MetadataNode`]; install it with
/// `LateService::set` once the node has started. Greetings are answered by the RPC layer
/// before a service sees them.
pub struct MetadataService {
    node: MetadataNode,
}

impl MetadataService {
    pub fn new(node: MetadataNode) -> MetadataService {
        MetadataService { node }
    }

    async fn raft(&self, from: NodeId, request: RaftRequest) -> Result<RaftResponse, Refusal> {
        let malformed = Refusal::Malformed;
        // Every Raft request carries the vote of its sender (the candidate, or the leader
        // replicating): one naming another node is refused before Raft sees it.
        let sender = |vote: &openraft::Vote<NodeId>| match vote.leader_id().voted_for() {
            Some(node) if node != from => Err(Refusal::Malformed(format!(
                "a Raft request sent by node {from} carries the vote of node {node}"
            ))),
            _ => Ok(()),
        };
        let answer = |e: String| Refusal::Service {
            code: "encode".to_string(),
            message: e,
        };
        Ok(match request {
            RaftRequest::AppendEntries(req) => {
                let req = req.decode().map_err(malformed)?;
                sender(&req.vote)?;
                let r = self.node.handle_append_entries(req).await;
                RaftResponse::AppendEntries(Json::encode(&r).map_err(answer)?)
            }
            RaftRequest::Vote(req) => {
                let req = req.decode().map_err(malformed)?;
                sender(&req.vote)?;
                let r = self.node.handle_vote(req).await;
                RaftResponse::Vote(Json::encode(&r).map_err(answer)?)
            }
            RaftRequest::InstallSnapshot(req) => {
                let req = req.decode().map_err(malformed)?;
                sender(&req.vote)?;
                let r = self.node.handle_install_snapshot(req).await;
                RaftResponse::InstallSnapshot(Json::encode(&r).map_err(answer)?)
            }
        })
    }
}

impl PeerService for MetadataService {
    fn call(&self, from: NodeId, request: PeerRequest) -> ServiceFuture<'_> {
        Box::pin(async move {
            match request {
                PeerRequest::Raft(r) => self.raft(from, r).await.map(PeerResponse::Raft),
                other => Err(Refusal::NotServed(other.kind().to_string())),
            }
        })
    }
}

/// How often the controller checks for nodes to register.
pub const REGISTER_INTERVAL: Duration = Duration::from_millis(500);

/// The nodes the controller should (re)register now: itself and every voter reachable from
/// it, whose entry in the metadata is missing, fenced or has other addresses. Each comes with
/// the addresses its membership entry records.
pub fn nodes_to_register(node: &MetadataNode, peers: &Peers) -> Vec<(NodeId, NodeInfo)> {
    let membership = node.raft_metrics().borrow().membership_config.clone();
    let current = node.current();
    membership
        .nodes()
        .filter(|(id, _)| **id == node.id() || peers.is_reachable(**id))
        .filter(|(id, info)| {
            current.nodes.get(*id)
                != Some(&NodeState {
                    info: (*info).clone(),
                    fenced: false,
                })
        })
        .map(|(id, info)| (*id, info.clone()))
        .collect()
}

/// Runs until `stop` turns true: while this node is the controller, registers every node
/// [`nodes_to_register`] names (invariant 3). A failed proposal is retried next round.
pub async fn register_nodes(
    node: MetadataNode,
    peers: Arc<Peers>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if node.is_controller() {
            for (id, info) in nodes_to_register(&node, &peers) {
                match node
                    .propose(MetadataCommand::RegisterNode { node: id, info })
                    .await
                {
                    Ok(_) => tracing::info!(node = id, "registered node in the cluster metadata"),
                    Err(NodeError::NotController { .. }) => break,
                    Err(e) => tracing::debug!(node = id, error = %e, "registering a node failed"),
                }
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(REGISTER_INTERVAL) => {}
        }
    }
}

//! The metadata plane over the cluster RPC: [`RpcMetadataTransport`] carries a node's Raft
//! requests to its peers as [`PeerRequest::Raft`], and [`MetadataService`] answers the ones
//! that arrive by handing them to the local [`MetadataNode`] (and the
//! [`PeerRequest::Control`] ones to the node's [`Controller`], `cluster::control`).
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
//! 4. **Nodes are registered, fenced and unfenced by the controller from broker heartbeats**
//!    (`cluster::control`), not from greetings: reachability says nothing about metadata.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::NodeId;
use super::control::Controller;
use super::metadata::{
    AppendEntriesRequest, AppendResult, InstallSnapshotRequest, MetadataNode, MetadataTransport,
    NodeInfo, SnapshotResult, TransportError, TypeConfig, VoteRequest, VoteResult,
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

/// Answers peers' Raft requests with the local [`MetadataNode`] and, when it has one, their
/// control requests with the node's [`Controller`]; install it with `LateService::set` once
/// the node has started. Greetings are answered by the RPC layer before a service sees them.
pub struct MetadataService {
    node: MetadataNode,
    controller: Option<Arc<Controller>>,
}

impl MetadataService {
    /// Raft only (control requests are not served).
    pub fn new(node: MetadataNode) -> MetadataService {
        MetadataService {
            node,
            controller: None,
        }
    }

    /// Raft and control requests.
    pub fn with_controller(node: MetadataNode, controller: Arc<Controller>) -> MetadataService {
        MetadataService {
            node,
            controller: Some(controller),
        }
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
                PeerRequest::Control(r) => {
                    let Some(c) = &self.controller else {
                        return Err(Refusal::NotServed("control".to_string()));
                    };
                    let reply = c.serve(from, r).await?;
                    Json::encode(&reply)
                        .map(PeerResponse::Control)
                        .map_err(|message| Refusal::Service {
                            code: "encode".to_string(),
                            message,
                        })
                }
                other => Err(Refusal::NotServed(other.kind().to_string())),
            }
        })
    }
}

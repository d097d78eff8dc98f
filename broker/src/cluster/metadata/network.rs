//! How Raft messages leave a node: [`MetadataTransport`], the small trait a transport
//! implements (send one `append_entries`, `vote` or `install_snapshot` request to a node and
//! bring back that node's answer), openraft's `RaftNetworkFactory`/`RaftNetwork` over it, and
//! [`SimTransport`], an in-process transport over the test [`SimNetwork`].
//!
//! Every RPC is bounded by openraft's per-RPC deadline (`RPCOption::hard_ttl`) here, whatever
//! the transport does. A transport reports a peer it could not reach
//! ([`TransportError::Unreachable`]: openraft backs off before retrying) apart from a request
//! whose answer was lost ([`TransportError::Failed`]: retried at once); the answer of the
//! remote Raft, including its refusal, comes back as the `Ok` value. The real transport (the
//! cluster listener's HTTP/2) lives in `cluster::rpc` and plugs in through the trait; the
//! receiving side calls [`super::MetadataNode::handle_append_entries`] and its siblings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use openraft::RPCTypes;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::node::MetadataNode;
use super::types::{NodeInfo, TypeConfig};
use crate::cluster::NodeId;
use crate::cluster::sim::SimNetwork;

/// The remote node's answer to an `append_entries`.
pub type AppendResult = Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>;
/// The remote node's answer to a `vote`.
pub type VoteResult = Result<VoteResponse<NodeId>, RaftError<NodeId>>;
/// The remote node's answer to an `install_snapshot` chunk.
pub type SnapshotResult =
    Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>;

/// What a transport call yields: the remote Raft's answer, or no answer.
type Answer<'a, R, E> = BoxFuture<'a, Result<Result<R, RaftError<NodeId, E>>, TransportError>>;

/// A Raft request did not get an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The request did not reach the node (down, partitioned, refused): retry after a pause.
    #[error("node {target} is unreachable: {reason}")]
    Unreachable { target: NodeId, reason: String },
    /// The request may have arrived but no valid answer came back.
    #[error("request to node {target} failed: {reason}")]
    Failed { target: NodeId, reason: String },
}

/// Carries the metadata plane's Raft requests to other nodes. `node` is the target's
/// addresses as the Raft membership records them.
pub trait MetadataTransport: Send + Sync + 'static {
    fn append_entries<'a>(
        &'a self,
        target: NodeId,
        node: &'a NodeInfo,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> BoxFuture<'a, Result<AppendResult, TransportError>>;

    fn vote<'a>(
        &'a self,
        target: NodeId,
        node: &'a NodeInfo,
        req: VoteRequest<NodeId>,
    ) -> BoxFuture<'a, Result<VoteResult, TransportError>>;

    fn install_snapshot<'a>(
        &'a self,
        target: NodeId,
        node: &'a NodeInfo,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> BoxFuture<'a, Result<SnapshotResult, TransportError>>;
}

/// openraft's network factory over a [`MetadataTransport`].
pub(crate) struct NetworkFactory {
    pub(crate) from: NodeId,
    pub(crate) transport: Arc<dyn MetadataTransport>,
    /// The pause after an unreachable peer before the next try.
    pub(crate) backoff: Duration,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        PeerClient {
            from: self.from,
            target,
            node: node.clone(),
            transport: self.transport.clone(),
            backoff: self.backoff,
        }
    }
}

/// The connection to one peer.
pub(crate) struct PeerClient {
    from: NodeId,
    target: NodeId,
    node: NodeInfo,
    transport: Arc<dyn MetadataTransport>,
    backoff: Duration,
}

impl PeerClient {
    /// Runs `call` within `ttl` and maps its outcome to openraft's RPC error.
    async fn call<R, E>(
        &self,
        action: RPCTypes,
        ttl: Duration,
        call: Answer<'_, R, E>,
    ) -> Result<R, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>
    where
        E: std::error::Error,
    {
        match tokio::time::timeout(ttl, call).await {
            Err(_) => Err(RPCError::Timeout(Timeout {
                action,
                id: self.from,
                target: self.target,
                timeout: ttl,
            })),
            Ok(Err(e @ TransportError::Unreachable { .. })) => {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Ok(Err(e @ TransportError::Failed { .. })) => {
                Err(RPCError::Network(NetworkError::new(&e)))
            }
            Ok(Ok(Err(remote))) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                remote,
            ))),
            Ok(Ok(Ok(resp))) => Ok(resp),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        let call = self.transport.append_entries(self.target, &self.node, rpc);
        self.call(RPCTypes::AppendEntries, option.hard_ttl(), call)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, NodeInfo, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let call = self
            .transport
            .install_snapshot(self.target, &self.node, rpc);
        self.call(RPCTypes::InstallSnapshot, option.hard_ttl(), call)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        let call = self.transport.vote(self.target, &self.node, rpc);
        self.call(RPCTypes::Vote, option.hard_ttl(), call).await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.backoff))
    }
}

/// The metadata nodes of an in-process cluster, by id: where a [`SimTransport`] delivers.
#[derive(Default)]
pub struct SimRegistry {
    nodes: Mutex<HashMap<NodeId, MetadataNode>>,
}

impl SimRegistry {
    pub fn new() -> SimRegistry {
        SimRegistry::default()
    }

    /// `node` receives the messages sent to its id from now on.
    pub fn register(&self, node: MetadataNode) {
        self.lock().insert(node.id(), node);
    }

    /// Messages to `id` find nobody from now on.
    pub fn unregister(&self, id: NodeId) -> Option<MetadataNode> {
        self.lock().remove(&id)
    }

    fn get(&self, id: NodeId) -> Option<MetadataNode> {
        self.lock().get(&id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, MetadataNode>> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A transport over a [`SimNetwork`]: each request and each answer is one
/// [`SimNetwork::deliver`], so the test's cuts, stops and delays apply to both.
pub struct SimTransport {
    from: NodeId,
    net: Arc<SimNetwork>,
    registry: Arc<SimRegistry>,
}

impl SimTransport {
    pub fn new(from: NodeId, net: Arc<SimNetwork>, registry: Arc<SimRegistry>) -> SimTransport {
        SimTransport {
            from,
            net,
            registry,
        }
    }

    /// Delivers the request, lets the target answer it, delivers the answer.
    async fn round_trip<R, F, Fut>(&self, target: NodeId, handle: F) -> Result<R, TransportError>
    where
        F: FnOnce(MetadataNode) -> Fut,
        Fut: std::future::Future<Output = R>,
    {
        self.net
            .deliver(self.from, target)
            .await
            .map_err(|e| TransportError::Unreachable {
                target,
                reason: e.to_string(),
            })?;
        let node = self
            .registry
            .get(target)
            .ok_or_else(|| TransportError::Unreachable {
                target,
                reason: "not running".to_string(),
            })?;
        let answer = handle(node).await;
        self.net
            .deliver(target, self.from)
            .await
            .map_err(|e| TransportError::Failed {
                target,
                reason: format!("the answer was lost: {e}"),
            })?;
        Ok(answer)
    }
}

impl MetadataTransport for SimTransport {
    fn append_entries<'a>(
        &'a self,
        target: NodeId,
        _node: &'a NodeInfo,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> BoxFuture<'a, Result<AppendResult, TransportError>> {
        Box::pin(self.round_trip(
            target,
            |n| async move { n.handle_append_entries(req).await },
        ))
    }

    fn vote<'a>(
        &'a self,
        target: NodeId,
        _node: &'a NodeInfo,
        req: VoteRequest<NodeId>,
    ) -> BoxFuture<'a, Result<VoteResult, TransportError>> {
        Box::pin(self.round_trip(target, |n| async move { n.handle_vote(req).await }))
    }

    fn install_snapshot<'a>(
        &'a self,
        target: NodeId,
        _node: &'a NodeInfo,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> BoxFuture<'a, Result<SnapshotResult, TransportError>> {
        Box::pin(self.round_trip(
            target,
            |n| async move { n.handle_install_snapshot(req).await },
        ))
    }
}

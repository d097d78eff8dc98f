//! Typed messages between nodes over the cluster listener: HTTP/2 (hyper's own client and
//! server connections; no hand-written framing), TLS with rustls when the node has a
//! certificate ([`tls`]), one route `POST /weir.peer/v1` whose bodies are `postcard`-encoded
//! envelopes ([`message`]). [`server`] checks every request and hands it to the node's
//! [`PeerService`]; [`client`] keeps one multiplexed connection per peer; [`peers`] greets
//! every peer in the background and keeps the liveness view `GET /v1/cluster` shows.
//!
//! This module knows nothing of Raft or replication beyond their messages' types: they plug
//! in as [`PeerRequest`]/[`PeerResponse`] variants (the metadata plane's are
//! [`PeerRequest::Raft`], carried by `cluster::metadata_rpc`) and a [`PeerService`] that
//! answers them. It does not read the data directory (the cluster id comes from
//! [`super::identity`]).
//!
//! # Invariants
//!
//! 1. **Two clusters never talk.** Every request carries the sender's cluster id and node
//!    id; the server refuses ([`Refusal::WrongCluster`]) any request whose cluster id is not
//!    its own before a service sees it. The only exception: a node joining through `--join`
//!    that has not learned the id yet may send `Hello` (and only `Hello`), and learns the id
//!    from the reply. A request claiming the server's own node id is refused
//!    ([`Refusal::SameNodeId`]: two processes started with one `--node-id`).
//! 2. **Every message is bounded** by `max_message_bytes` both ways: the client refuses to
//!    send a larger request, the server refuses a larger body (by `Content-Length` before
//!    reading, else as it arrives) and never answers with a larger response; the client
//!    stops reading a larger response.
//! 3. **Every wait is bounded**: connect (TCP + TLS + HTTP/2 handshake), each request to its
//!    answer (the caller's timeout or the default), the server's read of a request body,
//!    idle connections (HTTP/2 pings with a timeout, both sides). A connection that fails or
//!    whose pings go unanswered is dropped; the next call dials again.
//! 4. **Nothing is retried here.** A failed call is reported to its caller, who knows
//!    whether its request may be repeated.
//! 5. **Compatibility**: variants are only appended; [`message::PROTOCOL_VERSION`] names the
//!    envelope format, and a request outside the server's supported range is refused.
//!
//! # Wiring a new message kind (Raft, follower fetch)
//!
//! Append `PeerRequest::Raft(…)`/`PeerResponse::Raft(…)` (serde types of the metadata
//! module), implement [`PeerService::call`] for them, route the variant to its plane in
//! `cluster::service::NodeService` (the node's one service, where each plane is installed
//! once it exists), and call `peers.client(id)?.call_with_timeout(PeerRequest::Raft(…), t)`
//! on the other side.

pub mod client;
pub mod message;
pub mod peers;
pub mod server;
pub mod tls;

#[cfg(test)]
mod tests;

use std::sync::{Arc, RwLock};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

pub use client::{ClientConfig, PeerClient, RpcError};
pub use message::{
    ControlRequest, Hello, HelloReply, Json, PROTOCOL_VERSION, PeerRequest, PeerResponse,
    RaftRequest, RaftResponse, Refusal, ReplicaRequest, ReplicaResponse, RequestEnvelope,
};
pub use peers::{ClusterView, NodeStatus, Peers};
pub use server::{HelloOnly, PeerService, ServerConfig, ServiceFuture, serve};
pub use tls::{ClusterTls, ClusterTlsFiles};

use super::NodeId;

/// The one route of the cluster listener.
pub const RPC_PATH: &str = "/weir.peer/v1";
/// The content type of its bodies.
pub const CONTENT_TYPE_PEER: &str = "application/x-weir-peer";
/// This build's version, sent in greetings.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The HTTP/2 flow-control windows of the cluster connections, `(stream, connection)`: a
/// stream's window holds a whole message up to 16 MiB and the connection's four of them, so
/// a replica fetch answer of a few MiB crosses in one go. Fixed, not hyper's adaptive
/// (BDP-estimated) windows: those start at 64 KiB, and every 64 KiB of an answer then waits
/// for a `WINDOW_UPDATE` from the other process (a wake-up of two tasks in two processes
/// per slice, on loaded cores the most of a follower fetch's time). The windows bound only
/// what a peer may send ahead of being read; every message stays bounded by
/// `max_message_bytes` (invariant 2).
pub(crate) fn flow_windows(max_message_bytes: usize) -> (u32, u32) {
    const STREAM_MAX: usize = 16 << 20;
    const SPEC_MIN: usize = 65_535;
    let stream = max_message_bytes
        .saturating_add(1024)
        .clamp(SPEC_MIN, STREAM_MAX);
    let stream = u32::try_from(stream).unwrap_or(u32::MAX);
    (stream, stream.saturating_mul(4))
}

/// The largest HTTP/2 frame either side accepts (the spec's default is 16 KiB; larger frames
/// mean fewer of them, and fewer wake-ups, per MiB).
pub(crate) const MAX_FRAME_BYTES: u32 = 256 << 10;

/// A byte stream the cluster connections run over (TCP or TLS over TCP).
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Who this node is on the cluster network. The cluster id is known at start (from the
/// data directory or the flags) except on a node joining through `--join`, which learns it
/// once; it never changes after that.
#[derive(Debug)]
pub struct LocalNode {
    node_id: NodeId,
    advertised: String,
    cluster_id: watch::Sender<Option<String>>,
}

impl LocalNode {
    pub fn new(
        node_id: NodeId,
        advertised: impl Into<String>,
        cluster_id: Option<String>,
    ) -> Arc<Self> {
        Arc::new(LocalNode {
            node_id,
            advertised: advertised.into(),
            cluster_id: watch::Sender::new(cluster_id),
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The cluster address peers reach this node at.
    pub fn advertised(&self) -> &str {
        &self.advertised
    }

    pub fn cluster_id(&self) -> Option<String> {
        self.cluster_id.borrow().clone()
    }

    /// Sets the cluster id if it is not known yet; returns whether it is now `id`.
    pub fn learn_cluster_id(&self, id: &str) -> bool {
        let mut same = false;
        self.cluster_id.send_if_modified(|current| match current {
            Some(c) => {
                same = c == id;
                false
            }
            None => {
                *current = Some(id.to_string());
                same = true;
                true
            }
        });
        same
    }

    /// Waits until the cluster id is known.
    pub async fn wait_for_cluster_id(&self) -> String {
        let mut rx = self.cluster_id.subscribe();
        loop {
            if let Some(id) = rx.borrow_and_update().clone() {
                return id;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`: unreachable while `self` is borrowed.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// A [`PeerService`] installed after the listener starts (the Raft node needs the peers'
/// clients before it exists, the listener needs the service). Until then every request
/// beyond hello is refused as not served.
#[derive(Default)]
pub struct LateService {
    inner: RwLock<Option<Arc<dyn PeerService>>>,
}

impl LateService {
    pub fn new() -> Arc<Self> {
        Arc::new(LateService::default())
    }

    pub fn set(&self, service: Arc<dyn PeerService>) {
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = Some(service);
    }
}

impl PeerService for LateService {
    fn call(&self, from: NodeId, request: PeerRequest) -> ServiceFuture<'_> {
        let service = self.inner.read().unwrap_or_else(|p| p.into_inner()).clone();
        Box::pin(async move {
            match service {
                Some(s) => s.call(from, request).await,
                None => Err(Refusal::NotServed(request.kind().to_string())),
            }
        })
    }
}

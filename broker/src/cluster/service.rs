//! The node's one [`PeerService`]: routes each request from a peer to the plane that serves
//! it — Raft (and the controller's requests) to the metadata plane, follower fetches to the
//! data plane, owners' log requests to the log service. The planes start at different times after the listener (the Raft node needs
//! the peers' clients first; replicas need applied metadata), so each is installed when it
//! exists and a request for a plane not installed yet is refused as not served.
//!
//! It owns only the routing; it neither decodes nor checks a request's content (each plane's
//! service does), and knows nothing of the planes beyond their request variants.
//!
//! # Invariants
//!
//! 1. **Every request kind goes to exactly one plane**, chosen by its [`PeerRequest`]
//!    variant in one exhaustive match (no wildcard: a new variant does not compile until it
//!    is routed).
//! 2. **A plane not installed answers [`Refusal::NotServed`]**, which callers treat as "not
//!    ready yet" (the Raft transport as unreachable, the fetcher by backing off). A plane
//!    once installed can be replaced (a restarted plane), never removed.
//! 3. `Hello` is answered by the RPC server before any service sees it; if one arrives here
//!    anyway it is not served.

use std::sync::{Arc, PoisonError, RwLock};

use super::NodeId;
use super::rpc::{PeerRequest, PeerService, Refusal, ServiceFuture};

/// The plane a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plane {
    Metadata,
    Replica,
    Log,
    Blob,
    None,
}

fn plane_of(request: &PeerRequest) -> Plane {
    match request {
        PeerRequest::Hello(_) => Plane::None,
        PeerRequest::Raft(_) | PeerRequest::Control(_) => Plane::Metadata,
        PeerRequest::Replica(_) => Plane::Replica,
        PeerRequest::Log(_) => Plane::Log,
        PeerRequest::Blob(_) => Plane::Blob,
    }
}

/// Routes peers' requests to the installed planes.
#[derive(Default)]
pub struct NodeService {
    metadata: RwLock<Option<Arc<dyn PeerService>>>,
    replica: RwLock<Option<Arc<dyn PeerService>>>,
    log: RwLock<Option<Arc<dyn PeerService>>>,
    blob: RwLock<Option<Arc<dyn PeerService>>>,
}

impl std::fmt::Debug for NodeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &RwLock<Option<Arc<dyn PeerService>>>| {
            s.read().unwrap_or_else(PoisonError::into_inner).is_some()
        };
        f.debug_struct("NodeService")
            .field("metadata", &set(&self.metadata))
            .field("replica", &set(&self.replica))
            .field("log", &set(&self.log))
            .field("blob", &set(&self.blob))
            .finish()
    }
}

impl NodeService {
    pub fn new() -> Arc<NodeService> {
        Arc::new(NodeService::default())
    }

    /// Installs the metadata plane's service (Raft, controller requests).
    pub fn set_metadata(&self, service: Arc<dyn PeerService>) {
        *self
            .metadata
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(service);
    }

    /// Installs the data plane's service (follower fetches).
    pub fn set_replica(&self, service: Arc<dyn PeerService>) {
        *self.replica.write().unwrap_or_else(PoisonError::into_inner) = Some(service);
    }

    /// Installs the owners' log service (appends, reads and offsets at partition leaders).
    pub fn set_log(&self, service: Arc<dyn PeerService>) {
        *self.log.write().unwrap_or_else(PoisonError::into_inner) = Some(service);
    }

    /// Installs the blob service (uploaded components other nodes fetch).
    pub fn set_blob(&self, service: Arc<dyn PeerService>) {
        *self.blob.write().unwrap_or_else(PoisonError::into_inner) = Some(service);
    }

    fn route(&self, plane: Plane) -> Option<Arc<dyn PeerService>> {
        let slot = match plane {
            Plane::Metadata => &self.metadata,
            Plane::Replica => &self.replica,
            Plane::Log => &self.log,
            Plane::Blob => &self.blob,
            Plane::None => return None,
        };
        slot.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl PeerService for NodeService {
    fn call(&self, from: NodeId, request: PeerRequest) -> ServiceFuture<'_> {
        let service = self.route(plane_of(&request));
        Box::pin(async move {
            match service {
                Some(s) => s.call(from, request).await,
                None => Err(Refusal::NotServed(request.kind().to_string())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::log_rpc::LogRequest;
    use crate::cluster::replication::FetchRequest;
    use crate::cluster::rpc::message::{Hello, Json, RaftRequest};
    use crate::cluster::rpc::{PeerResponse, ReplicaRequest};

    /// A plane that refuses everything with its own name (to see where a request went).
    struct Named(&'static str);

    impl PeerService for Named {
        fn call(&self, _from: NodeId, _request: PeerRequest) -> ServiceFuture<'_> {
            let name = self.0;
            Box::pin(async move {
                Err(Refusal::Service {
                    code: name.to_string(),
                    message: String::new(),
                })
            })
        }
    }

    fn routed_to(answer: Result<PeerResponse, Refusal>) -> String {
        match answer {
            Err(Refusal::Service { code, .. }) => code,
            Err(Refusal::NotServed(kind)) => format!("not served: {kind}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn requests_go_to_their_plane_and_unset_planes_are_not_served() {
        let raft = || {
            PeerRequest::Raft(RaftRequest::Vote(
                Json::encode(&openraft::raft::VoteRequest::new(
                    openraft::Vote::new(1, 2),
                    None,
                ))
                .unwrap(),
            ))
        };
        let fetch = || {
            PeerRequest::Replica(ReplicaRequest::Fetch(FetchRequest {
                replica_id: 2,
                max_wait_ms: 0,
                partitions: vec![],
            }))
        };
        let hello = PeerRequest::Hello(Hello {
            cluster_id: None,
            node_id: 2,
            version: String::new(),
            advertised: String::new(),
        });
        let s = NodeService::new();
        assert_eq!(routed_to(s.call(2, raft()).await), "not served: raft_vote");
        assert_eq!(
            routed_to(s.call(2, fetch()).await),
            "not served: replica_fetch"
        );
        s.set_metadata(Arc::new(Named("metadata")));
        assert_eq!(routed_to(s.call(2, raft()).await), "metadata");
        assert_eq!(
            routed_to(s.call(2, fetch()).await),
            "not served: replica_fetch"
        );
        s.set_replica(Arc::new(Named("replica")));
        assert_eq!(routed_to(s.call(2, fetch()).await), "replica");
        assert_eq!(routed_to(s.call(2, raft()).await), "metadata");
        assert_eq!(routed_to(s.call(2, hello).await), "not served: hello");
        // A plane can be replaced (restarted).
        s.set_replica(Arc::new(Named("replica2")));
        assert_eq!(routed_to(s.call(2, fetch()).await), "replica2");
        let read = || {
            PeerRequest::Log(LogRequest::Read {
                topic: "t".into(),
                partition: 0,
                offset: 0,
                max_bytes: 1,
            })
        };
        assert_eq!(routed_to(s.call(2, read()).await), "not served: log_read");
        s.set_log(Arc::new(Named("log")));
        assert_eq!(routed_to(s.call(2, read()).await), "log");
        assert_eq!(routed_to(s.call(2, fetch()).await), "replica2");
    }
}

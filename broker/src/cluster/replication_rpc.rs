//! The data plane over the cluster RPC: [`RpcReplicaTransport`] carries a follower's fetch to
//! the leader node as [`PeerRequest::Replica`], and [`ReplicaService`] answers the fetches
//! that arrive with the local [`ReplicaManager`]'s long-polling `serve_fetch`.
//!
//! It owns only the glue and the bounds of a fetch on the wire: the messages are
//! `replication::messages` (postcard-encoded as they are), the rules (epochs, fencing,
//! high watermark, truncation) are `replication`'s, the pacing and back-off of a follower are
//! its fetcher's. It does not choose leaders, read the data directory, or know about HTTP or
//! Kafka; which peer address a leader has is the [`Peers`]' (whoever learns a node's cluster
//! address from the metadata adds it there with [`Peers::upsert`]).
//!
//! # Invariants
//!
//! 1. **A fetch is served only for the follower that sends it**: a request whose
//!    `replica_id` is not the RPC sender is refused ([`Refusal::Malformed`]) before the
//!    manager sees it, so a node cannot advance the leader's view of another node's log (and
//!    with it the high watermark). A sender that is not a replica of a partition gets
//!    `NOT_LEADER_OR_FOLLOWER` for it from the replica, which records nothing.
//!    (The RPC layer authenticates the sender only under mutual TLS.)
//! 2. **An answer never exceeds the RPC's message limit**: the client-chosen `max_bytes` of
//!    each partition is capped by the service's record budget (the message limit less room
//!    for the envelope), and after the manager answers, records beyond the budget over the
//!    whole answer are left out (the partition still gets its high watermark and log
//!    offsets; the follower fetches the rest next time). Leaving records out is safe: the
//!    leader records a follower's position from its *request*, never from what it sent.
//! 3. **A fetch's wait is bounded both ways**: the leader holds it at most the manager's
//!    `fetch_max_wait` (whatever `max_wait_ms` asks), and the follower waits for the answer
//!    `max_wait_ms` plus a margin ([`DEFAULT_TIMEOUT_MARGIN`]), so a long poll is never
//!    mistaken for a dead leader and a dead leader is noticed within that time.
//! 4. **Every failure to get an answer is a [`TransportError`]** (no client for the node,
//!    unreachable, timed out, refused, an answer of the wrong kind): the fetcher backs off
//!    and asks again; nothing is retried here (the rpc layer's rule).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::NodeId;
use super::config::RpcSettings;
use super::replication::{
    FetchError, FetchRequest, FetchResponse, PartitionFetchResponse, ReplicaManager,
    ReplicaTransport, TransportError,
};
use super::rpc::{
    PeerRequest, PeerResponse, PeerService, Peers, Refusal, ReplicaRequest, ReplicaResponse,
    ServiceFuture,
};

/// How much longer than the fetch's `max_wait_ms` a follower waits for its answer.
pub const DEFAULT_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// Room left in a message for the envelope and the fixed fields of an answer.
const ENVELOPE_ROOM: usize = 1024;
/// An upper bound on one answered partition's encoding beyond its topic name, its records
/// and an error's text (postcard varints: at most 10 bytes per integer, plus tags).
const PARTITION_ROOM: usize = 96;

/// Carries a follower's fetches to leader nodes over their [`Peers`] clients.
pub struct RpcReplicaTransport {
    peers: Arc<Peers>,
    timeout_margin: Duration,
}

impl RpcReplicaTransport {
    pub fn new(peers: Arc<Peers>) -> RpcReplicaTransport {
        RpcReplicaTransport {
            peers,
            timeout_margin: DEFAULT_TIMEOUT_MARGIN,
        }
    }

    /// The wait for an answer beyond the request's `max_wait_ms` (invariant 3).
    pub fn with_timeout_margin(mut self, margin: Duration) -> RpcReplicaTransport {
        self.timeout_margin = margin;
        self
    }
}

impl ReplicaTransport for RpcReplicaTransport {
    fn fetch(
        &self,
        leader: NodeId,
        request: FetchRequest,
    ) -> BoxFuture<'_, Result<FetchResponse, TransportError>> {
        Box::pin(async move {
            let client = self.peers.client(leader).ok_or_else(|| {
                TransportError(format!("no cluster address known for node {leader}"))
            })?;
            let timeout =
                Duration::from_millis(request.max_wait_ms).saturating_add(self.timeout_margin);
            let request = PeerRequest::Replica(ReplicaRequest::Fetch(request));
            match client.call_with_timeout(request, timeout).await {
                Ok(PeerResponse::Replica(ReplicaResponse::Fetch(answer))) => Ok(answer),
                Ok(other) => Err(TransportError(format!(
                    "node {leader} answered a fetch with {}",
                    response_kind(&other)
                ))),
                Err(e) => Err(TransportError(format!("fetch from node {leader}: {e}"))),
            }
        })
    }
}

fn response_kind(response: &PeerResponse) -> &'static str {
    match response {
        PeerResponse::Hello(_) => "hello",
        PeerResponse::Raft(_) => "raft",
        PeerResponse::Replica(_) => "replica",
        PeerResponse::Control(_) => "control",
        PeerResponse::Log(_) => "log",
        PeerResponse::Blob(_) => "blob",
    }
}

/// Answers peers' fetches with the local [`ReplicaManager`] (install it in the node's
/// routing service, `cluster::service::NodeService::set_replica`).
pub struct ReplicaService {
    manager: Arc<ReplicaManager>,
    /// Bytes of records and per-partition fields one answer may carry (invariant 2).
    budget: usize,
}

impl ReplicaService {
    /// A service whose answers fit the default RPC message limit
    /// ([`RpcSettings::default`]); a node with another limit sets it with
    /// [`with_max_message_bytes`](Self::with_max_message_bytes).
    pub fn new(manager: Arc<ReplicaManager>) -> ReplicaService {
        ReplicaService {
            manager,
            budget: budget_for(RpcSettings::default().max_message_bytes),
        }
    }

    /// Bounds every answer by the RPC's `max_message_bytes` (the server's limit).
    pub fn with_max_message_bytes(mut self, max_message_bytes: usize) -> ReplicaService {
        self.budget = budget_for(max_message_bytes);
        self
    }

    /// Bytes of records and per-partition fields one answer may carry.
    pub fn response_budget(&self) -> usize {
        self.budget
    }

    async fn fetch(
        &self,
        from: NodeId,
        mut request: FetchRequest,
    ) -> Result<FetchResponse, Refusal> {
        if request.replica_id != from {
            return Err(Refusal::Malformed(format!(
                "a fetch sent by node {from} names follower {}",
                request.replica_id
            )));
        }
        for p in &mut request.partitions {
            p.max_bytes = p.max_bytes.min(self.budget);
        }
        let answer = self.manager.serve_fetch(request).await;
        Ok(bound_answer(answer, self.budget))
    }
}

fn budget_for(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_sub(ENVELOPE_ROOM).max(1)
}

/// An upper bound on a partition's encoded size without its records.
fn partition_room(p: &PartitionFetchResponse) -> usize {
    let error_text = match &p.result {
        Err(FetchError::Storage(message)) => message.len(),
        _ => 0,
    };
    PARTITION_ROOM + p.tp.topic.len() + error_text
}

/// Leaves records out of `answer` past `budget` bytes, and partitions out when even their
/// fixed fields no longer fit (invariant 2).
fn bound_answer(mut answer: FetchResponse, budget: usize) -> FetchResponse {
    let mut used = 0usize;
    let mut stripped = 0usize;
    let mut keep = answer.partitions.len();
    for (i, p) in answer.partitions.iter_mut().enumerate() {
        used = used.saturating_add(partition_room(p));
        if used > budget {
            keep = i;
            break;
        }
        if let Ok(data) = &mut p.result {
            let len = data.records.len();
            if used.saturating_add(len) > budget {
                if i == 0 {
                    tracing::warn!(
                        tp = %p.tp,
                        bytes = len,
                        budget,
                        "a batch larger than the cluster RPC message limit cannot be replicated; \
                         raise the limit above the topics' max batch size"
                    );
                }
                data.records = bytes::Bytes::new();
                stripped += 1;
            } else {
                used += len;
            }
        }
    }
    if keep < answer.partitions.len() || stripped > 0 {
        tracing::debug!(
            partitions = answer.partitions.len(),
            kept = keep,
            stripped,
            budget,
            "fetch answer bounded by the RPC message limit"
        );
        answer.partitions.truncate(keep);
    }
    answer
}

impl PeerService for ReplicaService {
    fn call(&self, from: NodeId, request: PeerRequest) -> ServiceFuture<'_> {
        Box::pin(async move {
            match request {
                PeerRequest::Replica(ReplicaRequest::Fetch(fetch)) => self
                    .fetch(from, fetch)
                    .await
                    .map(|a| PeerResponse::Replica(ReplicaResponse::Fetch(a))),
                other => Err(Refusal::NotServed(other.kind().to_string())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cluster::replication::{FetchedData, TopicPartition};
    use crate::cluster::rpc::message::{ResponseEnvelope, encode};

    fn data(tp: &str, records: usize) -> PartitionFetchResponse {
        PartitionFetchResponse {
            tp: TopicPartition::new(tp, i32::MAX),
            result: Ok(FetchedData {
                high_watermark: i64::MAX,
                log_start_offset: i64::MIN,
                log_end_offset: i64::MAX,
                diverging_epoch: None,
                records: Bytes::from(vec![7u8; records]),
            }),
        }
    }

    fn encoded_len(answer: &FetchResponse) -> usize {
        let env: ResponseEnvelope = Ok(PeerResponse::Replica(ReplicaResponse::Fetch(
            answer.clone(),
        )));
        encode(&env).unwrap().len()
    }

    #[test]
    fn an_answer_is_bounded_by_the_message_limit() {
        let limit = 10_000;
        let budget = budget_for(limit);
        let answer = FetchResponse {
            partitions: vec![
                data("a", 4000),
                data("b", 4000),
                data("c", 4000),
                PartitionFetchResponse {
                    tp: TopicPartition::new("d", 0),
                    result: Err(FetchError::Storage("x".repeat(100))),
                },
                data("e", 10),
            ],
        };
        assert!(encoded_len(&answer) > limit);
        let bounded = bound_answer(answer, budget);
        assert!(encoded_len(&bounded) <= limit, "{}", encoded_len(&bounded));
        let lens: Vec<Option<usize>> = bounded
            .partitions
            .iter()
            .map(|p| p.result.as_ref().ok().map(|d| d.records.len()))
            .collect();
        // The first two fit, the third is left out (its offsets still go), later ones that
        // fit go too.
        assert_eq!(lens, vec![Some(4000), Some(4000), Some(0), None, Some(10)]);

        // Partitions whose fixed fields alone overflow the budget are left out entirely.
        let many = FetchResponse {
            partitions: (0..200).map(|i| data(&format!("{i:0>100}"), 0)).collect(),
        };
        let bounded = bound_answer(many, budget);
        assert!(!bounded.partitions.is_empty() && bounded.partitions.len() < 200);
        assert!(encoded_len(&bounded) <= limit);
    }

    /// A transport that never reaches anyone (the service side needs none).
    struct Nowhere;

    impl ReplicaTransport for Nowhere {
        fn fetch(
            &self,
            leader: NodeId,
            _request: FetchRequest,
        ) -> BoxFuture<'_, Result<FetchResponse, TransportError>> {
            Box::pin(async move { Err(TransportError(format!("no node {leader}"))) })
        }
    }

    #[tokio::test]
    async fn a_fetch_naming_another_follower_is_refused() {
        let manager = ReplicaManager::new(1, Default::default(), Arc::new(Nowhere)).unwrap();
        let service = ReplicaService::new(manager);
        let fetch = |replica_id| {
            PeerRequest::Replica(ReplicaRequest::Fetch(FetchRequest {
                replica_id,
                max_wait_ms: 0,
                partitions: vec![crate::cluster::replication::PartitionFetch {
                    tp: TopicPartition::new("t", 0),
                    current_leader_epoch: 1,
                    fetch_offset: 0,
                    last_fetched_epoch: None,
                    high_watermark: 0,
                    max_bytes: 100,
                }],
            }))
        };
        match service.call(2, fetch(3)).await {
            Err(Refusal::Malformed(m)) => assert!(m.contains("node 2") && m.contains("3"), "{m}"),
            other => panic!("not refused: {other:?}"),
        }
        // Its own fetch is answered (this node has no such partition).
        match service.call(3, fetch(3)).await {
            Ok(PeerResponse::Replica(ReplicaResponse::Fetch(a))) => {
                assert_eq!(a.partitions.len(), 1);
                assert_eq!(
                    a.partitions[0].result,
                    Err(FetchError::UnknownTopicOrPartition)
                );
            }
            other => panic!("not answered: {other:?}"),
        }
        // Other kinds are not this plane's.
        let hello = PeerRequest::Hello(crate::cluster::rpc::Hello {
            cluster_id: None,
            node_id: 3,
            version: String::new(),
            advertised: String::new(),
        });
        assert!(matches!(
            service.call(3, hello).await,
            Err(Refusal::NotServed(_))
        ));
    }
}

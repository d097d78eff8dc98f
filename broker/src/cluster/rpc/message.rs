//! The typed messages between nodes and their wire encoding: one [`RequestEnvelope`] per
//! HTTP/2 request body, one [`ResponseEnvelope`] per response body, both in `postcard`
//! (compact, schema-less: the order of fields and enum variants *is* the format).
//!
//! # Compatibility rules
//!
//! - New request kinds are new variants **appended** to [`PeerRequest`] / [`PeerResponse`]
//!   (postcard encodes a variant by its index); never reorder or remove one. A node that does
//!   not know a variant answers [`Refusal::Malformed`], which the caller treats as "peer too
//!   old" (check [`HelloReply::protocol`] first when a feature needs a newer peer).
//! - A change to an existing message's fields is a new protocol version: bump
//!   [`PROTOCOL_VERSION`] and keep decoding the old one for a release.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cluster::NodeId;
use crate::cluster::blob_rpc::{BlobRequest, BlobResponse};
use crate::cluster::control::{ControlReply, HeartbeatBody};
use crate::cluster::log_rpc::{LogRequest, LogResponse};
use crate::cluster::metadata::{
    AppendEntriesRequest, AppendResult, InstallSnapshotRequest, MetadataCommand, NodeInfo,
    SnapshotResult, TypeConfig, VoteRequest, VoteResult,
};
use crate::cluster::replication::{FetchRequest, FetchResponse};

/// The protocol version this release speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// The oldest protocol version this release still answers.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// Every request: who sends it, for which cluster, in which protocol version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub protocol: u32,
    /// The sender's cluster id; `None` only from a node joining through `--join` that has
    /// not learned it yet, and then only on [`PeerRequest::Hello`].
    pub cluster_id: Option<String>,
    /// The sender's node id.
    pub from: NodeId,
    pub request: PeerRequest,
}

/// Every response: the answer, or why the request was refused.
pub type ResponseEnvelope = Result<PeerResponse, Refusal>;

/// What one node asks another. Append new variants at the end (Raft messages, follower
/// fetch, …), each with its own reply variant in [`PeerResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Greeting and liveness probe; answered by the RPC layer itself.
    Hello(Hello),
    /// A Raft message of the metadata plane.
    Raft(RaftRequest),
    /// A message of the data plane (follower fetch), served by `cluster::replication_rpc`.
    Replica(ReplicaRequest),
    /// A request to the controller (`cluster::control`): a proposal, a broker heartbeat, a
    /// join.
    Control(ControlRequest),
    /// A topic owner's append, read or offsets at a partition's leader, served by
    /// `cluster::log_rpc`.
    Log(LogRequest),
    /// A content-addressed blob (an uploaded component), served by `cluster::blob_rpc`.
    Blob(BlobRequest),
}

/// The answer to a [`PeerRequest`], variant for variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerResponse {
    Hello(HelloReply),
    Raft(RaftResponse),
    Replica(ReplicaResponse),
    /// The answer to every [`ControlRequest`] (the controller's, or a redirect to it).
    Control(Json<ControlReply>),
    Log(LogResponse),
    Blob(BlobResponse),
}

impl PeerRequest {
    /// The variant's name, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerRequest::Hello(_) => "hello",
            PeerRequest::Raft(RaftRequest::AppendEntries(_)) => "raft_append_entries",
            PeerRequest::Raft(RaftRequest::Vote(_)) => "raft_vote",
            PeerRequest::Raft(RaftRequest::InstallSnapshot(_)) => "raft_install_snapshot",
            PeerRequest::Replica(ReplicaRequest::Fetch(_)) => "replica_fetch",
            PeerRequest::Control(ControlRequest::Propose(_)) => "control_propose",
            PeerRequest::Control(ControlRequest::Heartbeat(_)) => "control_heartbeat",
            PeerRequest::Control(ControlRequest::Join(_)) => "control_join",
            PeerRequest::Control(ControlRequest::Shutdown) => "control_shutdown",
            PeerRequest::Log(request) => request.kind(),
            PeerRequest::Blob(BlobRequest::Get { .. }) => "blob_get",
        }
    }
}

/// A Raft request of the metadata plane (openraft's own messages).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftRequest {
    AppendEntries(Json<AppendEntriesRequest<TypeConfig>>),
    Vote(Json<VoteRequest<NodeId>>),
    InstallSnapshot(Json<InstallSnapshotRequest<TypeConfig>>),
}

/// The remote Raft's answer to a [`RaftRequest`], variant for variant (its refusal, too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftResponse {
    AppendEntries(Json<AppendResult>),
    Vote(Json<VoteResult>),
    InstallSnapshot(Json<SnapshotResult>),
}

/// A request of the data plane. Its types derive serde directly (no JSON inside): they
/// are plain structs and externally tagged enums, which postcard carries as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaRequest {
    /// A follower's fetch from the leader of its partitions.
    Fetch(FetchRequest),
}

/// The answer to a [`ReplicaRequest`], variant for variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaResponse {
    Fetch(FetchResponse),
}

/// A request to the controller (served by `cluster::control::Controller`); the sender is the
/// envelope's `from`. Metadata types travel as [`Json`]. Append new variants at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Propose a metadata command on the sender's behalf (only the commands a broker may
    /// propose; see `cluster::control`).
    Propose(Json<MetadataCommand>),
    /// The sender's broker heartbeat, with the addresses it advertises and its task copies
    /// (a [`NodeInfo`] with one more field: an older peer's heartbeat reads as one).
    Heartbeat(Json<HeartbeatBody>),
    /// The sender (started with `--join`) asks to be added to the metadata quorum as a
    /// learner at these addresses.
    Join(Json<NodeInfo>),
    /// The sender shuts down (SIGTERM): move its leaderships away and fence it now, without
    /// waiting for its session to expire.
    Shutdown,
}

/// A value carried as JSON inside a postcard message. The metadata plane's types are
/// written for a self-describing format (its commands are internally tagged enums, which
/// postcard cannot decode), and openraft's messages are not all `PartialEq`/`Clone`; this
/// wrapper holds the value's JSON (the encoding the Raft log stores too), typed by `T`.
/// JSON triples the size of a snapshot chunk's bytes: openraft's chunks (3 MiB by default)
/// stay far below the RPC's message limit.
pub struct Json<T> {
    bytes: Vec<u8>,
    _type: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Json<T> {
    pub fn encode(value: &T) -> Result<Json<T>, String> {
        serde_json::to_vec(value)
            .map(|bytes| Json {
                bytes,
                _type: PhantomData,
            })
            .map_err(|e| e.to_string())
    }

    pub fn decode(&self) -> Result<T, String> {
        serde_json::from_slice(&self.bytes).map_err(|e| e.to_string())
    }
}

impl<T> std::fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Json({} bytes)", self.bytes.len())
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Json {
            bytes: self.bytes.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> PartialEq for Json<T> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl<T> Eq for Json<T> {}

impl<T> Serialize for Json<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.bytes.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Json<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Json {
            bytes: Vec::<u8>::deserialize(d)?,
            _type: PhantomData,
        })
    }
}

/// A node introduces itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub cluster_id: Option<String>,
    pub node_id: NodeId,
    /// The sender's software version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The cluster address peers reach the sender at.
    pub advertised: String,
}

/// The greeted node introduces itself back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    /// `None` while the answering node is itself joining and has not learned it.
    pub cluster_id: Option<String>,
    pub node_id: NodeId,
    pub version: String,
    /// The newest protocol version the answering node speaks.
    pub protocol: u32,
}

/// Why a node refused a request (before or instead of serving it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error(
        "cluster id mismatch: the peer is in cluster {ours:?}, the request came from cluster {theirs:?}"
    )]
    WrongCluster {
        ours: Option<String>,
        theirs: Option<String>,
    },
    #[error("the peer speaks protocol versions {min}..={max}, the request used {theirs}")]
    UnsupportedProtocol { min: u32, max: u32, theirs: u32 },
    #[error("node id {0} is the peer's own id: two processes were started with the same --node-id")]
    SameNodeId(NodeId),
    #[error("message larger than the peer's limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("the peer does not serve {0} requests")]
    NotServed(String),
    #[error("the peer is shutting down")]
    ShuttingDown,
    #[error("{code}: {message}")]
    Service { code: String, message: String },
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::WrongCluster { .. } => "wrong_cluster",
            Refusal::UnsupportedProtocol { .. } => "unsupported_protocol",
            Refusal::SameNodeId(_) => "same_node_id",
            Refusal::TooLarge { .. } => "too_large",
            Refusal::Malformed(_) => "malformed",
            Refusal::NotServed(_) => "not_served",
            Refusal::ShuttingDown => "shutting_down",
            Refusal::Service { .. } => "service",
        }
    }
}

/// Encodes a message (requests and responses alike).
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, String> {
    // Measured first (a pass that copies nothing), then written into one allocation of the
    // exact size: a fetch answer of a few MiB is not regrown and copied along the way.
    let size = postcard::serialize_with_flavor(message, postcard::ser_flavors::Size::default())
        .map_err(|e| e.to_string())?;
    postcard::serialize_with_flavor(message, Sized(Vec::with_capacity(size)))
        .map_err(|e| e.to_string())
}

/// A postcard output into a vector allocated at the measured size.
struct Sized(Vec<u8>);

impl postcard::ser_flavors::Flavor for Sized {
    type Output = Vec<u8>;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// Decodes a message; trailing bytes are an error (a message is exactly one body).
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    match postcard::take_from_bytes(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(format!("{} trailing bytes", rest.len())),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_stay_small() {
        let req = RequestEnvelope {
            protocol: PROTOCOL_VERSION,
            cluster_id: Some("AAAAAAAAAAAAAAAAAAAAAA".into()),
            from: 3,
            request: PeerRequest::Hello(Hello {
                cluster_id: Some("AAAAAAAAAAAAAAAAAAAAAA".into()),
                node_id: 3,
                version: "0.1.0".into(),
                advertised: "127.0.0.1:9093".into(),
            }),
        };
        let bytes = encode(&req).unwrap();
        assert!(bytes.len() < 100, "{} bytes", bytes.len());
        assert_eq!(decode::<RequestEnvelope>(&bytes).unwrap(), req);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode::<RequestEnvelope>(&longer).is_err());
        assert!(decode::<RequestEnvelope>(&bytes[..bytes.len() - 1]).is_err());
        let refused: ResponseEnvelope = Err(Refusal::TooLarge { limit: 5 });
        let bytes = encode(&refused).unwrap();
        assert_eq!(decode::<ResponseEnvelope>(&bytes).unwrap(), refused);
    }

    #[test]
    fn an_unknown_variant_is_malformed_not_a_panic() {
        // Variant index 200 of PeerRequest does not exist.
        let mut bytes = encode(&RequestEnvelope {
            protocol: 1,
            cluster_id: None,
            from: 1,
            request: PeerRequest::Hello(Hello {
                cluster_id: None,
                node_id: 1,
                version: String::new(),
                advertised: String::new(),
            }),
        })
        .unwrap();
        // protocol(1) + None(0) + from(1) + variant
        bytes[3] = 200;
        assert!(decode::<RequestEnvelope>(&bytes).is_err());
    }

    fn round_trip(request: PeerRequest) -> PeerRequest {
        let env = RequestEnvelope {
            protocol: PROTOCOL_VERSION,
            cluster_id: Some("c".into()),
            from: 1,
            request,
        };
        let back: RequestEnvelope = decode(&encode(&env).unwrap()).unwrap();
        assert_eq!(back, env);
        back.request
    }

    fn reply_round_trip(response: PeerResponse) -> PeerResponse {
        let env: ResponseEnvelope = Ok(response);
        let back: ResponseEnvelope = decode(&encode(&env).unwrap()).unwrap();
        assert_eq!(back, env);
        back.unwrap()
    }

    #[test]
    fn raft_messages_round_trip_through_postcard() {
        use crate::cluster::metadata::{MetadataCommand, NodeInfo, VersionedCommand};
        use openraft::raft::{AppendEntriesResponse, InstallSnapshotResponse, VoteResponse};
        use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};

        let log_id = |i| LogId::new(CommittedLeaderId::new(3, 2), i);
        // An internally tagged command inside an entry: what postcard alone cannot carry.
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 2),
            prev_log_id: Some(log_id(4)),
            entries: vec![
                Entry {
                    log_id: log_id(5),
                    payload: EntryPayload::Normal(VersionedCommand::new(
                        MetadataCommand::RegisterNode {
                            node: 7,
                            info: NodeInfo {
                                cluster_addr: "h:1".into(),
                                kafka_addr: String::new(),
                                http_addr: "h:2".into(),
                            },
                        },
                    )),
                },
                Entry {
                    log_id: log_id(6),
                    payload: EntryPayload::Blank,
                },
            ],
            leader_commit: Some(log_id(5)),
        };
        let req = PeerRequest::Raft(RaftRequest::AppendEntries(Json::encode(&append).unwrap()));
        assert_eq!(req.kind(), "raft_append_entries");
        let PeerRequest::Raft(RaftRequest::AppendEntries(back)) = round_trip(req) else {
            panic!("wrong variant");
        };
        let back = back.decode().unwrap();
        assert_eq!(back.entries.len(), 2);
        assert_eq!(back.entries[0].payload, append.entries[0].payload);
        assert_eq!(back.prev_log_id, append.prev_log_id);
        assert_eq!(back.vote, append.vote);

        let vote = VoteRequest::new(Vote::new(4, 3), Some(log_id(6)));
        let req = PeerRequest::Raft(RaftRequest::Vote(Json::encode(&vote).unwrap()));
        let PeerRequest::Raft(RaftRequest::Vote(back)) = round_trip(req) else {
            panic!("wrong variant");
        };
        assert_eq!(back.decode().unwrap(), vote);

        let snapshot = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 2),
            meta: openraft::SnapshotMeta::default(),
            offset: 10,
            data: vec![0, 1, 255],
            done: true,
        };
        let req = PeerRequest::Raft(RaftRequest::InstallSnapshot(
            Json::encode(&snapshot).unwrap(),
        ));
        let PeerRequest::Raft(RaftRequest::InstallSnapshot(back)) = round_trip(req) else {
            panic!("wrong variant");
        };
        assert_eq!(back.decode().unwrap(), snapshot);

        // Answers, a refusal of the remote Raft included.
        let answers: Vec<AppendResult> = vec![
            Ok(AppendEntriesResponse::Success),
            Ok(AppendEntriesResponse::Conflict),
            Ok(AppendEntriesResponse::HigherVote(Vote::new(9, 1))),
            Err(openraft::error::RaftError::Fatal(
                openraft::error::Fatal::Stopped,
            )),
        ];
        for answer in answers {
            let resp =
                PeerResponse::Raft(RaftResponse::AppendEntries(Json::encode(&answer).unwrap()));
            let PeerResponse::Raft(RaftResponse::AppendEntries(back)) = reply_round_trip(resp)
            else {
                panic!("wrong variant");
            };
            assert_eq!(back.decode().unwrap(), answer);
        }
        let granted: VoteResult = Ok(VoteResponse::new(Vote::new(4, 3), Some(log_id(6)), true));
        let resp = PeerResponse::Raft(RaftResponse::Vote(Json::encode(&granted).unwrap()));
        let PeerResponse::Raft(RaftResponse::Vote(back)) = reply_round_trip(resp) else {
            panic!("wrong variant");
        };
        assert_eq!(back.decode().unwrap(), granted);
        let done: SnapshotResult = Ok(InstallSnapshotResponse {
            vote: Vote::new(3, 2),
        });
        let resp = PeerResponse::Raft(RaftResponse::InstallSnapshot(Json::encode(&done).unwrap()));
        let PeerResponse::Raft(RaftResponse::InstallSnapshot(back)) = reply_round_trip(resp) else {
            panic!("wrong variant");
        };
        assert_eq!(back.decode().unwrap(), done);
    }

    #[test]
    fn replica_fetches_round_trip_through_postcard() {
        use bytes::Bytes;

        use crate::cluster::replication::{
            EpochEndOffset, FetchError, FetchedData, PartitionFetch, PartitionFetchResponse,
            TopicPartition,
        };

        let fetch = FetchRequest {
            replica_id: 3,
            max_wait_ms: 500,
            partitions: vec![
                PartitionFetch {
                    tp: TopicPartition::new("orders", 0),
                    current_leader_epoch: 7,
                    fetch_offset: 1234,
                    last_fetched_epoch: Some(6),
                    high_watermark: 1200,
                    max_bytes: 1 << 20,
                },
                PartitionFetch {
                    tp: TopicPartition::new("t\u{e9}", i32::MAX),
                    current_leader_epoch: 0,
                    fetch_offset: 0,
                    last_fetched_epoch: None,
                    high_watermark: -1,
                    max_bytes: usize::MAX,
                },
            ],
        };
        let req = PeerRequest::Replica(ReplicaRequest::Fetch(fetch.clone()));
        assert_eq!(req.kind(), "replica_fetch");
        let PeerRequest::Replica(ReplicaRequest::Fetch(back)) = round_trip(req) else {
            panic!("wrong variant");
        };
        assert_eq!(back, fetch);

        // Records are carried byte for byte; every refusal keeps its fields.
        let records = Bytes::from((0..=255u8).cycle().take(3000).collect::<Vec<u8>>());
        let tp = TopicPartition::new("orders", 0);
        let errors = [
            FetchError::NotLeaderOrFollower,
            FetchError::FencedLeaderEpoch {
                request: 1,
                current: 2,
            },
            FetchError::UnknownLeaderEpoch {
                request: 5,
                current: 4,
            },
            FetchError::OffsetOutOfRange {
                offset: -1,
                log_start_offset: 10,
                log_end_offset: 20,
            },
            FetchError::UnknownTopicOrPartition,
            FetchError::Storage("disk on fire".into()),
        ];
        let mut partitions = vec![
            PartitionFetchResponse {
                tp: tp.clone(),
                result: Ok(FetchedData {
                    high_watermark: 10,
                    log_start_offset: 0,
                    log_end_offset: 12,
                    diverging_epoch: None,
                    records: records.clone(),
                }),
            },
            PartitionFetchResponse {
                tp: tp.clone(),
                result: Ok(FetchedData {
                    high_watermark: 10,
                    log_start_offset: 0,
                    log_end_offset: 12,
                    diverging_epoch: Some(EpochEndOffset {
                        epoch: 3,
                        end_offset: 9,
                    }),
                    records: Bytes::new(),
                }),
            },
        ];
        partitions.extend(errors.iter().map(|e| PartitionFetchResponse {
            tp: tp.clone(),
            result: Err(e.clone()),
        }));
        let answer = FetchResponse { partitions };
        let resp = PeerResponse::Replica(ReplicaResponse::Fetch(answer.clone()));
        let PeerResponse::Replica(ReplicaResponse::Fetch(back)) = reply_round_trip(resp) else {
            panic!("wrong variant");
        };
        assert_eq!(back, answer);
        let Ok(data) = &back.partitions[0].result else {
            panic!("records lost");
        };
        assert_eq!(data.records, records);
        for (got, want) in back.partitions[2..].iter().zip(errors.iter()) {
            assert_eq!(got.result.as_ref().err(), Some(want));
        }
        // Records cost their length plus a small prefix: no per-byte expansion.
        let encoded = encode(&ResponseEnvelope::Ok(PeerResponse::Replica(
            ReplicaResponse::Fetch(answer),
        )))
        .unwrap();
        assert!(encoded.len() < records.len() + 300, "{}", encoded.len());
    }

    #[test]
    fn postcard_alone_cannot_carry_a_metadata_command() {
        // Why `Json` exists: the command enum is internally tagged.
        use crate::cluster::metadata::MetadataCommand;
        let cmd = MetadataCommand::RegisterNode {
            node: 1,
            info: Default::default(),
        };
        let bytes = encode(&cmd);
        assert!(bytes.is_err() || decode::<MetadataCommand>(&bytes.unwrap()).is_err());
    }
}

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

use serde::{Deserialize, Serialize};

use crate::cluster::NodeId;

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
}

/// The answer to a [`PeerRequest`], variant for variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerResponse {
    Hello(HelloReply),
}

impl PeerRequest {
    /// The variant's name, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerRequest::Hello(_) => "hello",
        }
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
    postcard::to_allocvec(message).map_err(|e| e.to_string())
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
}

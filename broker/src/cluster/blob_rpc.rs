//! Content-addressed blobs between nodes: the bytes of an uploaded component, named by their
//! SHA-256 (`sha256:<hex>`), which a node that did not receive the upload fetches from one
//! that has it (`PeerRequest::Blob`); so are user-defined functions' modules. The metadata
//! names a blob only by its hash; the bytes never go through Raft.
//!
//! It owns the messages, the hash format and the check of what arrives; what holds the
//! blobs (the engine's deployments, the function registry's modules) is a [`BlobSource`] the
//! node installs. It knows nothing
//! of components or processors.
//!
//! # Invariants
//!
//! 1. **A blob is trusted only if its bytes hash to its name**: [`fetch_blob`] checks the
//!    SHA-256 of what a peer sent before returning it, so a faulty or stale peer cannot
//!    substitute another component.
//! 2. **Every blob fits one RPC message** (the node refuses to send a larger one); uploads
//!    above the cluster RPC's message limit cannot be spread (the upload limit is below it
//!    by default).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::NodeId;
use super::rpc::{PeerRequest, PeerResponse, PeerService, Peers, Refusal, RpcError, ServiceFuture};

/// How long a node waits for a blob.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// The name of `bytes`: `sha256:` and the hex digest.
pub fn blob_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut name = String::with_capacity(7 + 64);
    name.push_str("sha256:");
    for b in digest {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

/// A request for a blob. Append variants at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobRequest {
    Get { hash: String },
}

/// The answer to a [`BlobRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobResponse {
    Blob { bytes: Bytes },
}

/// What holds this node's blobs.
pub trait BlobSource: Send + Sync + 'static {
    /// The bytes named `hash`, if this node has them (may block on disk).
    fn blob(&self, hash: &str) -> Option<Bytes>;
}

/// Why a blob could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("no node could send blob {hash}: {reasons}")]
    Unavailable { hash: String, reasons: String },
}

/// Answers peers' [`BlobRequest`]s from the node's [`BlobSource`].
pub struct BlobService {
    source: Arc<dyn BlobSource>,
}

impl BlobService {
    pub fn new(source: Arc<dyn BlobSource>) -> BlobService {
        BlobService { source }
    }
}

impl PeerService for BlobService {
    fn call(&self, _from: NodeId, request: PeerRequest) -> ServiceFuture<'_> {
        let source = self.source.clone();
        Box::pin(async move {
            match request {
                PeerRequest::Blob(BlobRequest::Get { hash }) => {
                    let found = tokio::task::spawn_blocking(move || {
                        let bytes = source.blob(&hash);
                        (hash, bytes)
                    })
                    .await;
                    match found {
                        Ok((_, Some(bytes))) => {
                            Ok(PeerResponse::Blob(BlobResponse::Blob { bytes }))
                        }
                        Ok((hash, None)) => Err(Refusal::Service {
                            code: "blob_not_found".into(),
                            message: format!("no blob {hash} on this node"),
                        }),
                        Err(e) => Err(Refusal::Service {
                            code: "internal".into(),
                            message: e.to_string(),
                        }),
                    }
                }
                other => Err(Refusal::NotServed(other.kind().to_string())),
            }
        })
    }
}

/// Fetches blob `hash` from the first of `nodes` that has it, checking its bytes against
/// the name (invariant 1).
pub async fn fetch_blob(peers: &Peers, nodes: &[NodeId], hash: &str) -> Result<Bytes, BlobError> {
    let mut reasons = Vec::new();
    for &node in nodes {
        let Some(client) = peers.client(node) else {
            reasons.push(format!("node {node}: no address"));
            continue;
        };
        let request = PeerRequest::Blob(BlobRequest::Get {
            hash: hash.to_string(),
        });
        match client.call_with_timeout(request, FETCH_TIMEOUT).await {
            Ok(PeerResponse::Blob(BlobResponse::Blob { bytes })) => {
                if blob_hash(&bytes) == hash {
                    return Ok(bytes);
                }
                reasons.push(format!("node {node}: sent bytes of another hash"));
            }
            Ok(_) => reasons.push(format!("node {node}: answered another kind")),
            Err(RpcError::Refused { refusal, .. }) => {
                reasons.push(format!("node {node}: {refusal}"))
            }
            Err(e) => reasons.push(format!("node {node}: {e}")),
        }
    }
    Err(BlobError::Unavailable {
        hash: hash.to_string(),
        reasons: reasons.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_named_by_its_sha256() {
        assert_eq!(
            blob_hash(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(blob_hash(b"abc"), blob_hash(b"abd"));
    }
}

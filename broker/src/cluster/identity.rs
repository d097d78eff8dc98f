//! Which cluster and which node a data directory belongs to: `<data-dir>/identity.json`,
//! `{"format":1,"cluster_id":…,"node_id":…,"origin":"created"|"adopted"}`, written
//! crash-safely (temporary sibling, fsync, rename, fsync of the directory). This module
//! reads and writes that one file; it opens nothing else in the data directory and does not
//! take the data directory's lock (the broker does: [`record`] is called after it has).
//!
//! # Invariants and rules
//!
//! - **Node ids are never reused silently** (cluster invariant 8). A data directory that
//!   records node *M* never starts as node *N ≠ M*; one that records cluster *A* never starts
//!   as a member of cluster *B*; one that records any cluster never starts as a single node.
//!   Each refusal names both sides ([`IdentityError`]).
//! - **Single node** (no `--peers`/`--join`): a directory without the file opens exactly as
//!   before clustering, and nothing is written (today's release reads the same directory).
//! - **Adoption**: a directory without the file started as a cluster node (with `--peers`
//!   or, once the cluster id is learned, `--join`) is adopted in place: the file is written
//!   with this node's id and the cluster id, `origin: "adopted"` when it already held topics
//!   (a single-node directory: its topics stay on disk untouched; bringing them into the
//!   cluster's metadata is the metadata plane's business), `"created"` otherwise.
//! - **The file is written once** and never changed by a running node; an unknown `format`
//!   (a newer release) is refused rather than guessed at.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::NodeId;
use super::config::check_cluster_id;
use crate::ErrorKind;

/// The file, relative to the data directory.
pub const IDENTITY_FILE: &str = "identity.json";
/// The format this release writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// A larger file is not an identity file.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// What the data directory records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub format: u32,
    pub cluster_id: String,
    pub node_id: NodeId,
    pub origin: Origin,
}

/// How the directory came to belong to its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A fresh directory.
    Created,
    /// A single-node directory that already held topics.
    Adopted,
}

/// What the flags say this node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected<'a> {
    /// No cluster flags.
    Single,
    /// `--node-id` with `--peers` (cluster id known) or `--join` (`None` until learned).
    Member {
        node_id: NodeId,
        cluster_id: Option<&'a str>,
    },
}

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A single node on a directory without identity.
    Single,
    /// The directory is this node's: its recorded identity.
    Known(Identity),
    /// No identity yet: [`record`] this one (under the data directory's lock).
    Record(Identity),
    /// No identity yet and the cluster id is not known (a joining node): record one once
    /// the id is learned (see [`identity_for`]).
    Unrecorded,
}

/// Why a data directory cannot be used as this node.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "data directory {dir} belongs to node {recorded} of cluster {cluster_id}, but this node \
         was started as node {flag} (--node-id); node ids are never reused: start node \
         {recorded} on it, or give node {flag} its own data directory"
    )]
    NodeMismatch {
        dir: PathBuf,
        recorded: NodeId,
        flag: NodeId,
        cluster_id: String,
    },
    #[error(
        "data directory {dir} belongs to cluster {recorded} (node {node_id}), but this node was \
         started for cluster {flag} (--cluster-id, or derived from --peers, which must stay \
         the initial voter set); start it with the flags of cluster {recorded}, or give it a \
         new data directory"
    )]
    ClusterMismatch {
        dir: PathBuf,
        recorded: String,
        flag: String,
        node_id: NodeId,
    },
    #[error(
        "data directory {dir} belongs to node {node_id} of cluster {cluster_id}; it cannot \
         start as a single node: start it with --node-id {node_id} and --peers or --join"
    )]
    MemberStartedAlone {
        dir: PathBuf,
        node_id: NodeId,
        cluster_id: String,
    },
    #[error("{path}: unreadable identity file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: identity format {found} is newer than this release reads ({FORMAT_VERSION})")]
    UnknownFormat { path: PathBuf, found: u32 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl IdentityError {
    pub fn code(&self) -> &'static str {
        match self {
            IdentityError::NodeMismatch { .. } => "node_id_mismatch",
            IdentityError::ClusterMismatch { .. } => "cluster_id_mismatch",
            IdentityError::MemberStartedAlone { .. } => "cluster_member_started_alone",
            IdentityError::Corrupt { .. } | IdentityError::UnknownFormat { .. } => {
                "identity_corrupt"
            }
            IdentityError::Io { .. } => "io",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            IdentityError::NodeMismatch { .. }
            | IdentityError::ClusterMismatch { .. }
            | IdentityError::MemberStartedAlone { .. } => ErrorKind::Conflict,
            IdentityError::Corrupt { .. } | IdentityError::UnknownFormat { .. } => {
                ErrorKind::Corrupt
            }
            IdentityError::Io { .. } => ErrorKind::Internal,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the identity file of `data_dir`, if there is one.
pub fn load(data_dir: &Path) -> Result<Option<Identity>, IdentityError> {
    let path = data_dir.join(IDENTITY_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let mut bytes = Vec::new();
    use std::io::Read;
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(&path))?;
    let corrupt = |reason: String| IdentityError::Corrupt {
        path: path.clone(),
        reason,
    };
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(corrupt(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    // The format first, so a newer file is reported as such rather than as corrupt.
    #[derive(Deserialize)]
    struct Format {
        format: u32,
    }
    let format: Format = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if format.format != FORMAT_VERSION {
        return Err(IdentityError::UnknownFormat {
            path: path.clone(),
            found: format.format,
        });
    }
    let id: Identity = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    check_cluster_id(&id.cluster_id).map_err(|e| corrupt(e.0))?;
    Ok(Some(id))
}

/// Whether `data_dir` already holds a single node's data (any topic directory).
fn holds_topics(data_dir: &Path) -> bool {
    std::fs::read_dir(data_dir.join("topics"))
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false)
}

/// The identity a directory without one gets as node `node_id` of `cluster_id`.
pub fn identity_for(data_dir: &Path, node_id: NodeId, cluster_id: &str) -> Identity {
    Identity {
        format: FORMAT_VERSION,
        cluster_id: cluster_id.to_string(),
        node_id,
        origin: if holds_topics(data_dir) {
            Origin::Adopted
        } else {
            Origin::Created
        },
    }
}

/// Compares the directory's identity with what the flags say; reads only. Call it before
/// the broker opens (a clear error even while the owner runs and holds the lock) and again
/// under the lock before [`record`]ing.
pub fn check(data_dir: &Path, expected: Expected<'_>) -> Result<Verdict, IdentityError> {
    let recorded = load(data_dir)?;
    let dir = data_dir.to_path_buf();
    match (expected, recorded) {
        (Expected::Single, None) => Ok(Verdict::Single),
        (Expected::Single, Some(id)) => Err(IdentityError::MemberStartedAlone {
            dir,
            node_id: id.node_id,
            cluster_id: id.cluster_id,
        }),
        (Expected::Member { node_id, .. }, Some(id)) if id.node_id != node_id => {
            Err(IdentityError::NodeMismatch {
                dir,
                recorded: id.node_id,
                flag: node_id,
                cluster_id: id.cluster_id,
            })
        }
        (
            Expected::Member {
                cluster_id: Some(flag),
                node_id,
            },
            Some(id),
        ) if id.cluster_id != flag => Err(IdentityError::ClusterMismatch {
            dir,
            recorded: id.cluster_id,
            flag: flag.to_string(),
            node_id,
        }),
        (Expected::Member { .. }, Some(id)) => Ok(Verdict::Known(id)),
        (
            Expected::Member {
                node_id,
                cluster_id: Some(cluster_id),
            },
            None,
        ) => Ok(Verdict::Record(identity_for(data_dir, node_id, cluster_id))),
        (
            Expected::Member {
                cluster_id: None, ..
            },
            None,
        ) => Ok(Verdict::Unrecorded),
    }
}

/// Writes `identity` to `data_dir` crash-safely (`crate::fsutil::write_atomic`): a crash
/// leaves no file or the whole file.
pub fn record(data_dir: &Path, identity: &Identity) -> Result<(), IdentityError> {
    let path = data_dir.join(IDENTITY_FILE);
    let mut bytes = serde_json::to_vec_pretty(identity).map_err(|e| IdentityError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
    crate::fsutil::write_atomic(&path, &bytes).map_err(io_err(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(node_id: NodeId, cluster_id: Option<&str>) -> Expected<'_> {
        Expected::Member {
            node_id,
            cluster_id,
        }
    }

    #[test]
    fn a_fresh_directory_is_created_and_then_known() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("data");
        assert_eq!(check(&d, Expected::Single).unwrap(), Verdict::Single);
        let Verdict::Record(id) = check(&d, member(1, Some("c1"))).unwrap() else {
            panic!("expected a record verdict")
        };
        assert_eq!(id.origin, Origin::Created);
        record(&d, &id).unwrap();
        assert!(!d.join("identity.tmp").exists());
        assert_eq!(
            check(&d, member(1, Some("c1"))).unwrap(),
            Verdict::Known(id.clone())
        );
        // A joining node that restarts learns its cluster from the file.
        assert_eq!(check(&d, member(1, None)).unwrap(), Verdict::Known(id));
    }

    #[test]
    fn another_node_or_cluster_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        record(d, &identity_for(d, 2, "alpha")).unwrap();
        let e = check(d, member(1, Some("alpha"))).unwrap_err();
        assert_eq!(e.code(), "node_id_mismatch");
        let msg = e.to_string();
        assert!(msg.contains("node 2") && msg.contains("node 1"), "{msg}");
        let e = check(d, member(2, Some("beta"))).unwrap_err();
        assert_eq!(e.code(), "cluster_id_mismatch");
        let msg = e.to_string();
        assert!(msg.contains("alpha") && msg.contains("beta"), "{msg}");
        let e = check(d, Expected::Single).unwrap_err();
        assert_eq!(e.code(), "cluster_member_started_alone");
        assert_eq!(e.kind(), ErrorKind::Conflict);
    }

    #[test]
    fn a_single_node_directory_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("topics/orders")).unwrap();
        assert_eq!(check(d, Expected::Single).unwrap(), Verdict::Single);
        let Verdict::Record(id) = check(d, member(7, Some("c"))).unwrap() else {
            panic!("expected a record verdict")
        };
        assert_eq!(id.origin, Origin::Adopted);
        assert_eq!(check(d, member(7, None)).unwrap(), Verdict::Unrecorded);
    }

    #[test]
    fn bad_files_are_refused_not_guessed_at() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join(IDENTITY_FILE), "{not json").unwrap();
        assert_eq!(
            check(d, member(1, None)).unwrap_err().code(),
            "identity_corrupt"
        );
        std::fs::write(
            d.join(IDENTITY_FILE),
            r#"{"format":2,"cluster_id":"c","node_id":1,"origin":"created","new":true}"#,
        )
        .unwrap();
        let e = check(d, member(1, None)).unwrap_err();
        assert!(
            matches!(e, IdentityError::UnknownFormat { found: 2, .. }),
            "{e}"
        );
        std::fs::write(
            d.join(IDENTITY_FILE),
            r#"{"format":1,"cluster_id":"","node_id":1,"origin":"created"}"#,
        )
        .unwrap();
        assert!(check(d, member(1, None)).is_err());
    }
}

//! The applied state on a node: [`StateMachineStore`], openraft's `RaftStateMachine` over a
//! [`ClusterMetadata`] in memory, published to readers through a `watch` channel after every
//! applied batch, and its snapshots on disk.
//!
//! The state itself is not written on every apply: it is a pure function of the log, so after
//! a restart it is the last snapshot plus the committed entries openraft applies again.
//! A snapshot (`<dir>/metadata-snapshot.json`: the snapshot's meta, a CRC-32C and the state as
//! JSON) is written atomically — a temporary file, fsynced, renamed over the old one, the
//! directory fsynced — before openraft is told it exists, so the log is purged only behind a
//! durable snapshot. An older snapshot never replaces a newer one. A snapshot that fails its
//! checksum stops the node from starting rather than starting it empty.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::state::ClusterMetadata;
use super::types::{CommandResult, LogEntry, MetadataResponse, NodeInfo, TypeConfig};
use crate::cluster::NodeId;

const SNAPSHOT_FILE: &str = "metadata-snapshot.json";

type StoreResult<T> = Result<T, StorageError<NodeId>>;

fn snap_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::new(
        ErrorSubject::Snapshot(None),
        verb,
        AnyError::error(e.to_string()),
    )
    .into()
}

/// A snapshot read back: its meta and the state as JSON.
type StoredSnapshot = (SnapshotMeta<NodeId, NodeInfo>, String);

/// The snapshot file's content.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, NodeInfo>,
    crc32c: u32,
    /// The [`ClusterMetadata`] as JSON (the bytes openraft ships to followers).
    data: String,
}

/// The snapshot files of one node; shared by the state machine and its snapshot builders,
/// which write under its lock.
#[derive(Debug)]
struct SnapshotDir {
    path: PathBuf,
    /// The last log id of the snapshot on disk.
    current: Mutex<Option<LogId<NodeId>>>,
}

impl SnapshotDir {
    fn file(&self) -> PathBuf {
        self.path.join(SNAPSHOT_FILE)
    }

    fn read(&self) -> Result<Option<StoredSnapshot>, String> {
        let path = self.file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let file: SnapshotFile =
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        if crc32c::crc32c(file.data.as_bytes()) != file.crc32c {
            return Err(format!("{}: checksum mismatch", path.display()));
        }
        Ok(Some((file.meta, file.data)))
    }

    /// Writes a snapshot unless the one on disk is newer. Returns whether it wrote.
    fn write(&self, meta: &SnapshotMeta<NodeId, NodeInfo>, data: &str) -> Result<bool, String> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.is_some() && *current > meta.last_log_id {
            return Ok(false);
        }
        let file = SnapshotFile {
            meta: meta.clone(),
            crc32c: crc32c::crc32c(data.as_bytes()),
            data: data.to_string(),
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
        write_atomic(&self.file(), &bytes).map_err(|e| format!("{}: {e}", self.path.display()))?;
        *current = meta.last_log_id;
        Ok(true)
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The node's applied metadata. openraft owns it; readers see it through
/// [`StateMachineStore::subscribe`].
pub struct StateMachineStore {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, NodeInfo>,
    state: Arc<ClusterMetadata>,
    published: watch::Sender<Arc<ClusterMetadata>>,
    snapshots: Arc<SnapshotDir>,
}

impl StateMachineStore {
    /// Opens the state machine under `dir`, restoring the last snapshot if there is one.
    pub fn open(dir: &Path) -> Result<StateMachineStore, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let snapshots = Arc::new(SnapshotDir {
            path: dir.to_path_buf(),
            current: Mutex::new(None),
        });
        let (last_applied, membership, state) = match snapshots.read()? {
            Some((meta, data)) => {
                let state: ClusterMetadata = serde_json::from_str(&data)
                    .map_err(|e| format!("{}: {e}", snapshots.file().display()))?;
                *snapshots
                    .current
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = meta.last_log_id;
                (meta.last_log_id, meta.last_membership, state)
            }
            None => (
                None,
                StoredMembership::default(),
                ClusterMetadata::default(),
            ),
        };
        let state = Arc::new(state);
        let (published, _) = watch::channel(state.clone());
        Ok(StateMachineStore {
            last_applied,
            membership,
            state,
            published,
            snapshots,
        })
    }

    /// A receiver of the applied state, updated after every applied batch of entries.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.published.subscribe()
    }

    fn publish(&self) {
        self.published.send_replace(self.state.clone());
    }
}

/// Builds a snapshot of the state as it was when openraft asked for the builder.
pub struct SnapshotBuilder {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, NodeInfo>,
    state: Arc<ClusterMetadata>,
    snapshots: Arc<SnapshotDir>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        let data =
            serde_json::to_string(&*self.state).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let snapshot_id = match &self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let snapshots = self.snapshots.clone();
        let (m, d) = (meta.clone(), data.clone());
        tokio::task::spawn_blocking(move || snapshots.write(&m, &d))
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.into_bytes())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, NodeInfo>)> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<CommandResult>>
    where
        I: IntoIterator<Item = LogEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let state = Arc::make_mut(&mut self.state);
        let mut fatal = None;
        for entry in entries {
            let index = entry.log_id.index;
            let response = match entry.payload {
                EntryPayload::Blank => {
                    state.version = index;
                    Ok(MetadataResponse::Done)
                }
                EntryPayload::Normal(cmd) => match state.apply_entry(index, &cmd) {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        // Never skip a committed command: stop applying (openraft shuts the
                        // node down on a storage error) rather than diverge.
                        fatal = Some(StorageError::from(StorageIOError::new(
                            ErrorSubject::Apply(entry.log_id),
                            ErrorVerb::Read,
                            AnyError::error(e.to_string()),
                        )));
                        break;
                    }
                },
                EntryPayload::Membership(m) => {
                    state.version = index;
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    Ok(MetadataResponse::Done)
                }
            };
            self.last_applied = Some(entry.log_id);
            responses.push(response);
        }
        self.publish();
        match fatal {
            Some(e) => Err(e),
            None => Ok(responses),
        }
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            state: self.state.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        let data =
            String::from_utf8(snapshot.into_inner()).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let state: ClusterMetadata =
            serde_json::from_str(&data).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let snapshots = self.snapshots.clone();
        let m = meta.clone();
        tokio::task::spawn_blocking(move || snapshots.write(&m, &data))
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.state = Arc::new(state);
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        let snapshots = self.snapshots.clone();
        let read = tokio::task::spawn_blocking(move || snapshots.read())
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(read.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.into_bytes())),
        }))
    }
}

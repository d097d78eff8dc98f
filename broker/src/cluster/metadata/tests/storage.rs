//! The storage: openraft's own conformance suite over the RocksDB log and the snapshotting
//! state machine, and a reopen from disk that keeps the log, the vote and the snapshot.

use std::io::Cursor;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite, log_id};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StoredMembership, Vote,
};

use super::super::*;
use crate::cluster::NodeId;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().unwrap();
        let log = LogStore::open(dir.path()).unwrap();
        let sm = StateMachineStore::open(dir.path()).unwrap();
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}

fn entry(term: u64, index: u64, command: MetadataCommand) -> LogEntry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(VersionedCommand::new(command)),
    }
}

fn register(node: NodeId) -> MetadataCommand {
    MetadataCommand::RegisterNode {
        node,
        info: NodeInfo {
            cluster_addr: format!("n{node}"),
            ..NodeInfo::default()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_log_vote_committed_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let membership = Membership::new(vec![std::collections::BTreeSet::from([1u64])], None);
    {
        let mut log = LogStore::open(dir.path()).unwrap();
        let mut sm = StateMachineStore::open(dir.path()).unwrap();
        log.save_vote(&Vote::new_committed(3, 1)).await.unwrap();
        let mut entries = vec![Entry {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Membership(membership.clone()),
        }];
        entries.extend((2..=6).map(|i| entry(1, i, register(i))));
        log.blocking_append(entries.clone()).await.unwrap();
        log.save_committed(Some(log_id(1, 1, 6))).await.unwrap();
        let responses = sm.apply(entries[..4].to_vec()).await.unwrap();
        assert!(responses.iter().all(|r| r.is_ok()));
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(1, 1, 4)));
        log.purge(log_id(1, 1, 2)).await.unwrap();
        // A truncation survives too.
        log.truncate(log_id(1, 1, 6)).await.unwrap();
    }
    let mut log = LogStore::open(dir.path()).unwrap();
    let mut sm = StateMachineStore::open(dir.path()).unwrap();
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(3, 1))
    );
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1, 6)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 5)));
    let kept: Vec<u64> = log
        .try_get_log_entries(0..100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    assert_eq!(kept, vec![3, 4, 5]);
    let (applied, stored) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 1, 4)));
    assert_eq!(
        stored,
        StoredMembership::new(Some(log_id(1, 1, 1)), membership)
    );
    let current = sm.subscribe().borrow().clone();
    assert_eq!(current.version, 4);
    assert_eq!(
        current.nodes.keys().copied().collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_snapshot_replaces_the_state_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut source = ClusterMetadata::default();
    for n in 1..=3 {
        source.apply(&register(n)).unwrap();
    }
    source.version = 42;
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(2, 1, 42)),
        last_membership: StoredMembership::default(),
        snapshot_id: "2-1-42".into(),
    };
    {
        let mut sm = StateMachineStore::open(dir.path()).unwrap();
        let rx = sm.subscribe();
        let data = serde_json::to_vec(&source).unwrap();
        sm.install_snapshot(&meta, Box::new(Cursor::new(data)))
            .await
            .unwrap();
        assert_eq!(*rx.borrow().clone(), source);
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, meta);
    }
    let mut sm = StateMachineStore::open(dir.path()).unwrap();
    assert_eq!(*sm.subscribe().borrow().clone(), source);
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(2, 1, 42)));
}

#[test]
fn a_corrupt_snapshot_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata-snapshot.json");
    let file = serde_json::json!({
        "meta": SnapshotMeta::<NodeId, NodeInfo> {
            last_log_id: Some(log_id(1, 1, 1)),
            last_membership: StoredMembership::default(),
            snapshot_id: "x".into(),
        },
        "crc32c": 1,
        "data": "{}",
    });
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    let err = StateMachineStore::open(dir.path()).err().unwrap();
    assert!(err.contains("checksum"), "{err}");
}

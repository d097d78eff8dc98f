//! The coordinator's state machine against a real broker in a temporary directory.

use std::sync::atomic::{AtomicI64, Ordering};

use super::*;
use crate::BrokerConfig;
use crate::group::{GroupConfig, OffsetStore};

struct Node {
    _dir: tempfile::TempDir,
    broker: Broker,
    producers: Arc<ProducerStates>,
    groups: Arc<GroupCoordinator>,
    txn: TxnCoordinator,
}

static IDS: AtomicI64 = AtomicI64::new(1000);

fn fresh() -> i64 {
    IDS.fetch_add(1, Ordering::SeqCst)
}

fn open_at(dir: tempfile::TempDir) -> Node {
    let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
    if broker.partition_count("t").is_err() {
        broker.create_topic(TopicSpec::new("t", 2)).unwrap();
    }
    let producers = Arc::new(ProducerStates::default());
    let groups = Arc::new(GroupCoordinator::new(
        GroupConfig::default(),
        OffsetStore::load(broker.clone()).unwrap(),
    ));
    let txn = TxnCoordinator::new(broker.clone(), producers.clone(), groups.clone());
    txn.load(&fresh).unwrap();
    Node {
        _dir: dir,
        broker,
        producers,
        groups,
        txn,
    }
}

fn node() -> Node {
    open_at(tempfile::tempdir().unwrap())
}

/// Closes the node as a kill would (nothing flushed beyond what each write made durable)
/// and opens it again on the same directory.
fn restart(n: Node) -> Node {
    let Node {
        _dir,
        broker,
        producers,
        groups,
        txn,
    } = n;
    drop(txn);
    drop(groups);
    drop(producers);
    drop(broker);
    open_at(_dir)
}

/// The markers in a partition: (producer id, epoch, marker).
fn markers(b: &Broker, partition: i32) -> Vec<(i64, i16, Marker)> {
    let mut out = Vec::new();
    b.for_each_recent_batch("t", partition, u64::MAX, |h, bytes| {
        if h.is_control() {
            out.push((
                h.producer_id,
                h.producer_epoch,
                batch::marker_of(bytes).unwrap(),
            ));
        }
    })
    .unwrap();
    out
}

fn status(n: &Node, id: &str) -> TxnMeta {
    n.txn.all().into_iter().find(|(k, _)| k == id).unwrap().1
}

fn tp(p: i32) -> (String, i32) {
    ("t".to_string(), p)
}

#[test]
fn init_gives_a_new_id_then_bumps_the_epoch_and_the_old_epoch_is_fenced() {
    let n = node();
    let (pid, e0) = n.txn.init("a", 60_000, None, &fresh).unwrap();
    assert_eq!(e0, 0);
    let (pid2, e1) = n.txn.init("a", 60_000, None, &fresh).unwrap();
    assert_eq!((pid2, e1), (pid, 1));
    assert!(matches!(
        n.txn.add_partitions("a", pid, 0, &[tp(0)]),
        Err(TxnError::ProducerFenced)
    ));
    assert!(matches!(
        n.txn.add_partitions("a", pid + 1, 1, &[tp(0)]),
        Err(TxnError::InvalidProducerIdMapping)
    ));
    assert!(matches!(
        n.txn.add_partitions("nobody", pid, 1, &[tp(0)]),
        Err(TxnError::InvalidProducerIdMapping)
    ));
    // KIP-360: a producer bumping its own epoch must name the current one.
    assert!(matches!(
        n.txn.init("a", 60_000, Some((pid, 0)), &fresh),
        Err(TxnError::ProducerFenced)
    ));
    assert_eq!(
        n.txn.init("a", 60_000, Some((pid, 1)), &fresh).unwrap(),
        (pid, 2)
    );
    assert!(matches!(
        n.txn.init("b", 0, None, &fresh),
        Err(TxnError::InvalidTimeout)
    ));
    assert!(matches!(
        n.txn.init("b", MAX_TIMEOUT_MS + 1, None, &fresh),
        Err(TxnError::InvalidTimeout)
    ));
}

#[test]
fn commit_writes_a_marker_into_every_partition_and_then_the_offsets() {
    let n = node();
    let (pid, e) = n.txn.init("a", 60_000, None, &fresh).unwrap();
    // KIP-890 part 1: nothing may be produced before the partition is added.
    assert!(matches!(
        n.txn.verify(&[(pid, e)], "t", 0),
        Err(TxnError::InvalidTxnState(_))
    ));
    n.txn.add_partitions("a", pid, e, &[tp(0), tp(1)]).unwrap();
    assert!(n.txn.verify(&[(pid, e)], "t", 0).is_ok());
    assert!(matches!(
        n.txn.verify(&[(pid, e - 1)], "t", 0),
        Err(TxnError::ProducerFenced)
    ));
    n.txn.add_offsets("a", pid, e, "g").unwrap();
    assert!(matches!(
        n.txn.commit_offsets("a", pid, e, "other", vec![]),
        Err(TxnError::InvalidTxnState(_))
    ));
    let pending = PendingOffset {
        offset: 42,
        leader_epoch: -1,
        metadata: None,
    };
    n.txn
        .commit_offsets("a", pid, e, "g", vec![("in".into(), 0, pending)])
        .unwrap();
    assert_eq!(status(&n, "a").status, TxnStatus::Ongoing);
    assert_eq!(
        n.groups.offsets().get("g", "in", 0),
        None,
        "not visible before the commit"
    );
    n.txn.end("a", pid, e, true).unwrap();
    assert_eq!(markers(&n.broker, 0), vec![(pid, e, Marker::Commit)]);
    assert_eq!(markers(&n.broker, 1), vec![(pid, e, Marker::Commit)]);
    assert_eq!(n.groups.offsets().get("g", "in", 0).unwrap().offset, 42);
    let m = status(&n, "a");
    assert_eq!(m.status, TxnStatus::CompleteCommit);
    assert!(m.partitions.is_empty());
    // A retried EndTxn is answered the same; the other outcome is refused.
    n.txn.end("a", pid, e, true).unwrap();
    assert!(matches!(
        n.txn.end("a", pid, e, false),
        Err(TxnError::InvalidTxnState(_))
    ));
    // Nothing more may be produced into the completed transaction.
    assert!(n.txn.verify(&[(pid, e)], "t", 0).is_err());
}

#[test]
fn abort_leaves_the_offsets_uncommitted() {
    let n = node();
    let (pid, e) = n.txn.init("a", 60_000, None, &fresh).unwrap();
    n.txn.add_partitions("a", pid, e, &[tp(1)]).unwrap();
    n.txn.add_offsets("a", pid, e, "g").unwrap();
    let pending = PendingOffset {
        offset: 7,
        leader_epoch: -1,
        metadata: None,
    };
    n.txn
        .commit_offsets("a", pid, e, "g", vec![("in".into(), 0, pending)])
        .unwrap();
    n.txn.end("a", pid, e, false).unwrap();
    assert_eq!(markers(&n.broker, 1), vec![(pid, e, Marker::Abort)]);
    assert!(markers(&n.broker, 0).is_empty());
    assert_eq!(n.groups.offsets().get("g", "in", 0), None);
    assert_eq!(status(&n, "a").status, TxnStatus::CompleteAbort);
}

#[test]
fn a_new_producer_aborts_the_ongoing_transaction_of_the_one_it_fences() {
    let n = node();
    let (pid, e) = n.txn.init("a", 60_000, None, &fresh).unwrap();
    n.txn.add_partitions("a", pid, e, &[tp(0)]).unwrap();
    let (pid2, e2) = n.txn.init("a", 60_000, None, &fresh).unwrap();
    assert_eq!(pid2, pid);
    assert!(e2 > e + 1, "the abort's epoch, then the new producer's");
    let m = markers(&n.broker, 0);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].2, Marker::Abort);
    assert!(m[0].1 > e, "the abort marker carries the fencing epoch");
    assert!(matches!(
        n.txn.end("a", pid, e, true),
        Err(TxnError::ProducerFenced)
    ));
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let n = node();
    let (pid, e) = n.txn.init("a", 1, None, &fresh).unwrap();
    n.txn.add_partitions("a", pid, e, &[tp(0)]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    n.txn.tick(&fresh);
    let m = status(&n, "a");
    assert_eq!(m.status, TxnStatus::CompleteAbort);
    assert!(m.epoch > e);
    assert_eq!(markers(&n.broker, 0).len(), 1);
    assert!(matches!(
        n.txn.end("a", pid, e, true),
        Err(TxnError::ProducerFenced)
    ));
}

#[test]
fn a_restart_aborts_ongoing_transactions_and_completes_prepared_ones() {
    let n = node();
    let (pa, ea) = n.txn.init("ongoing", 60_000, None, &fresh).unwrap();
    n.txn.add_partitions("ongoing", pa, ea, &[tp(0)]).unwrap();
    let (pb, eb) = n.txn.init("prepared", 60_000, None, &fresh).unwrap();
    n.txn.add_partitions("prepared", pb, eb, &[tp(1)]).unwrap();
    n.txn.add_offsets("prepared", pb, eb, "g").unwrap();
    let pending = PendingOffset {
        offset: 5,
        leader_epoch: -1,
        metadata: Some("m".into()),
    };
    n.txn
        .commit_offsets("prepared", pb, eb, "g", vec![("in".into(), 3, pending)])
        .unwrap();
    // A crash right after PrepareCommit was made durable, before any marker.
    {
        let mut inner = n.txn.lock();
        let mut m = inner.txns.get("prepared").cloned().unwrap();
        m.status = TxnStatus::PrepareCommit;
        n.txn.persist(&mut inner, "prepared", m).unwrap();
    }
    let n = restart(n);
    let a = status(&n, "ongoing");
    assert_eq!(a.status, TxnStatus::CompleteAbort);
    assert!(a.epoch > ea, "the old producer is fenced");
    assert_eq!(markers(&n.broker, 0).len(), 1);
    assert_eq!(markers(&n.broker, 0)[0].2, Marker::Abort);
    let b = status(&n, "prepared");
    assert_eq!(b.status, TxnStatus::CompleteCommit);
    assert_eq!(b.epoch, eb);
    assert_eq!(markers(&n.broker, 1), vec![(pb, eb, Marker::Commit)]);
    assert_eq!(n.groups.offsets().get("g", "in", 3).unwrap().offset, 5);
    // The restarted producer gets a newer epoch of the same id.
    let (p2, e2) = n.txn.init("ongoing", 60_000, None, &fresh).unwrap();
    assert_eq!(p2, pa);
    assert!(e2 > a.epoch);
    // And the partitions have no open transaction left.
    for p in 0..2 {
        let s = n.producers.partition("t", p);
        let mut s = s.lock().unwrap();
        producer::load(&n.broker, "t", p, &mut s);
        assert_eq!(s.first_unstable_offset(), None);
    }
}

#[test]
fn the_epoch_wraps_to_a_new_producer_id() {
    let n = node();
    let (pid, _) = n.txn.init("a", 60_000, None, &fresh).unwrap();
    {
        let mut inner = n.txn.lock();
        let mut m = inner.txns.get("a").cloned().unwrap();
        m.epoch = i16::MAX - 1;
        n.txn.persist(&mut inner, "a", m).unwrap();
    }
    let (pid2, e) = n.txn.init("a", 60_000, None, &fresh).unwrap();
    assert_ne!(pid2, pid);
    assert_eq!(e, 0);
    assert!(matches!(
        n.txn.verify(&[(pid, i16::MAX - 1)], "t", 0),
        Err(TxnError::InvalidProducerIdMapping)
    ));
}

#[test]
fn a_transaction_left_open_without_its_marker_is_closed_as_it_ended() {
    let n = node();
    let (pid, e) = n.txn.init("a", 60_000, None, &fresh).unwrap();
    n.txn.add_partitions("a", pid, e, &[tp(0)]).unwrap();
    // In flight: left alone.
    {
        let s = n.producers.partition("t", 0);
        let mut s = s.lock().unwrap();
        producer::load(&n.broker, "t", 0, &mut s);
        s.begin_txn(pid, 0);
        s.begin_txn(424_242, 0); // a producer id nobody knows
    }
    assert!(n.txn.close_stale("t", 0, &[pid, 424_242]));
    {
        let s = n.producers.partition("t", 0);
        let s = s.lock().unwrap();
        assert_eq!(s.open_producers(), vec![pid]);
    }
    assert_eq!(markers(&n.broker, 0), vec![(424_242, 0, Marker::Abort)]);
    assert!(!n.txn.close_stale("t", 0, &[pid]));
    // Committed, but its marker lost: the commit marker is written again.
    n.txn.end("a", pid, e, true).unwrap();
    {
        let s = n.producers.partition("t", 0);
        let mut s = s.lock().unwrap();
        s.begin_txn(pid, 5);
    }
    assert!(n.txn.close_stale("t", 0, &[pid]));
    let m = markers(&n.broker, 0);
    assert_eq!(m.last(), Some(&(pid, e, Marker::Commit)));
    let s = n.producers.partition("t", 0);
    assert_eq!(s.lock().unwrap().first_unstable_offset(), None);
}

#[test]
fn an_idle_transactional_id_expires_and_stays_forgotten_after_a_restart() {
    let n = node();
    let (pid, e) = n.txn.init("idle", 60_000, None, &fresh).unwrap();
    n.txn.init("busy", 60_000, None, &fresh).unwrap();
    {
        let mut inner = n.txn.lock();
        for id in ["idle", "busy"] {
            if let Some(m) = inner.txns.get_mut(id) {
                m.update_ms = 0;
            }
        }
        let busy = inner.txns.get_mut("busy").unwrap();
        busy.status = TxnStatus::Ongoing;
        busy.start_ms = now_ms();
    }
    n.txn.tick(&fresh);
    let ids: Vec<String> = n.txn.all().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        ids,
        vec!["busy".to_string()],
        "an id in a transaction is kept"
    );
    assert!(matches!(
        n.txn.add_partitions("idle", pid, e, &[tp(0)]),
        Err(TxnError::InvalidProducerIdMapping)
    ));
    let n = restart(n);
    assert!(n.txn.all().iter().all(|(k, _)| k != "idle"));
    let (pid2, e2) = n.txn.init("idle", 60_000, None, &fresh).unwrap();
    assert_ne!(pid2, pid);
    assert_eq!(e2, 0);
}

#[test]
fn a_transaction_is_bounded_in_partitions_and_a_refused_add_changes_nothing() {
    let n = node();
    let (pid, e) = n.txn.init("a", 60_000, None, &fresh).unwrap();
    let too_many: Vec<_> = (0..=MAX_TXN_PARTITIONS as i32).map(tp).collect();
    assert!(matches!(
        n.txn.add_partitions("a", pid, e, &too_many),
        Err(TxnError::TooLarge(MAX_TXN_PARTITIONS))
    ));
    // Nothing was added: producing to the first of them is still refused (KIP-890).
    assert!(matches!(
        n.txn.verify(&[(pid, e)], "t", 0),
        Err(TxnError::InvalidTxnState(_))
    ));
    n.txn.add_partitions("a", pid, e, &[tp(0)]).unwrap();
    assert!(n.txn.verify(&[(pid, e)], "t", 0).is_ok());
}

/// An owner's transactional appends (`append_owned`, the engine's exactly-once tasks) and
/// the committed read every engine, HTTP and SQL reader uses (`txn::committed`): aborted
/// batches and an open transaction's are never returned; the end reported is the last
/// stable offset; a fenced epoch appends nothing.
#[test]
fn owned_transactional_appends_are_read_committed_only_once_committed() {
    use crate::batch_builder::BatchBuilder;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
    broker.create_topic(TopicSpec::new("o", 1)).unwrap();
    let txn = TxnCoordinator::open_local(&broker).unwrap();
    assert!(broker.txn_coordinator().is_some());
    let batch = |values: &[&str]| {
        let mut b = BatchBuilder::new();
        for v in values {
            b.push(
                1,
                Some(v.as_bytes()),
                Some(v.as_bytes()),
                std::iter::empty(),
            );
        }
        b.finish_checked().unwrap()
    };
    let values = |r: &crate::ReadResult| -> Vec<String> {
        r.records
            .iter()
            .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .collect()
    };
    let id = "__weir.task.p-0";
    let (pid, epoch) = txn
        .init(id, 60_000, None, &|| broker.producer_ids().allocate_local())
        .unwrap();
    let part = [("o".to_string(), 0)];
    // Not added: refused (KIP-890).
    assert!(
        txn.append_owned(pid, epoch, "o", 0, &batch(&["x"]))
            .is_err()
    );
    // Committed.
    txn.add_partitions(id, pid, epoch, &part).unwrap();
    txn.append_owned(pid, epoch, "o", 0, &batch(&["c1", "c2"]))
        .unwrap();
    // Open: nothing visible, the end is the last stable offset.
    let r = broker.read_committed("o", 0, 0, 100, 1 << 20).unwrap();
    assert!(r.records.is_empty());
    assert_eq!(r.end_offset, 0);
    assert_eq!(
        broker.read("o", 0, 0, 100, 1 << 20).unwrap().records.len(),
        2
    );
    txn.end(id, pid, epoch, true).unwrap();
    // Aborted.
    txn.add_partitions(id, pid, epoch, &part).unwrap();
    txn.append_owned(pid, epoch, "o", 0, &batch(&["a1"]))
        .unwrap();
    txn.end(id, pid, epoch, false).unwrap();
    // Committed again, in two batches.
    txn.add_partitions(id, pid, epoch, &part).unwrap();
    txn.append_owned(pid, epoch, "o", 0, &batch(&["c3"]))
        .unwrap();
    txn.append_owned(pid, epoch, "o", 0, &batch(&["c4"]))
        .unwrap();
    txn.end(id, pid, epoch, true).unwrap();
    let (_, end) = broker.partition_offsets("o", 0).unwrap();
    let r = broker.read_committed("o", 0, 0, 100, 1 << 20).unwrap();
    assert_eq!(values(&r), ["c1", "c2", "c3", "c4"]);
    assert_eq!(r.end_offset, end);
    assert_eq!(r.next_offset, end);
    // From inside the aborted batch's range too.
    let r = broker.read_committed("o", 0, 3, 100, 1 << 20).unwrap();
    assert_eq!(values(&r), ["c3", "c4"]);
    // Uncommitted readers see all five records, never a marker.
    assert_eq!(
        values(&broker.read("o", 0, 0, 100, 1 << 20).unwrap()),
        ["c1", "c2", "a1", "c3", "c4"]
    );
    // A new incarnation fences the old epoch, aborting what it left open.
    txn.add_partitions(id, pid, epoch, &part).unwrap();
    txn.append_owned(pid, epoch, "o", 0, &batch(&["zombie"]))
        .unwrap();
    let (pid2, epoch2) = txn
        .init(id, 60_000, None, &|| broker.producer_ids().allocate_local())
        .unwrap();
    assert!(epoch2 > epoch || pid2 != pid);
    assert!(matches!(
        txn.append_owned(pid, epoch, "o", 0, &batch(&["late"])),
        Err(TxnError::ProducerFenced
            | TxnError::InvalidProducerEpoch
            | TxnError::InvalidTxnState(_))
    ));
    let r = broker.read_committed("o", 0, 0, 100, 1 << 20).unwrap();
    assert_eq!(values(&r), ["c1", "c2", "c3", "c4"]);
    let (_, end) = broker.partition_offsets("o", 0).unwrap();
    assert_eq!(
        r.end_offset, end,
        "the zombie's transaction was aborted: stable again"
    );
}

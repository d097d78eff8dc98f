//! Idempotent-producer state: producer id allocation (InitProducerId) and, per partition, the
//! last sequence number and the last few batches of each producer, so that a retried batch is
//! answered with its original offsets instead of being appended twice, and a gap in sequence
//! numbers is rejected (as Kafka's `ProducerStateManager` does).
//!
//! The state lives in memory and is rebuilt after a restart from the batch headers at the
//! tail of the log (the produce handler replays them with [`PartitionProducers::record`]
//! before the first idempotent batch a partition gets), so that a batch retried across a
//! restart is still recognised. A producer whose last batch is older than that tail is
//! accepted at whatever sequence it sends, as Kafka does once a producer id has expired.
//! It knows nothing of the wire protocol or of how batches are stored.
//!
//! # Transactions on a partition (the log side of KIP-98)
//!
//! The same per-partition state, under the same lock, tracks the transactions that touch
//! the partition: the *open* ones (producer id → offset of its first transactional batch
//! since its last marker) and an index of *aborted* ones (producer id, first offset, offset
//! of the abort marker). Invariants:
//!
//! 1. A transactional data batch appended opens its producer's transaction here unless one
//!    is open; a marker written ([`PartitionProducers::complete`]) closes it, and an abort
//!    marker records it in the aborted index. Both happen under the partition's lock, with
//!    the append, so the state always describes the log.
//! 2. The last stable offset is the first offset of the oldest open transaction, else the
//!    end of the log: a read_committed reader never reads at or past it.
//! 3. After a restart the state is rebuilt from the same log tail as sequence numbers
//!    ([`load`]): data batches and markers replayed in offset order give back the open
//!    transactions and the aborted transactions of that tail (64 MiB of the partition's
//!    newest segments).
//! 4. Aborted transactions older than that tail come from the partition's aborted-index
//!    file (`<data dir>/transactions/aborted/<topic>/<partition>.idx`, 24 bytes per entry:
//!    producer id, first offset, marker offset), which every abort marker the coordinator
//!    writes appends to. It is not synced on its own: an entry lost with unsynced writes is
//!    one of the newest, which the tail replay gives back. An entry of a deleted and
//!    recreated topic names a producer id the new topic's batches do not carry (ids are
//!    not reused), so it hides nothing.
//! 5. The aborted index keeps at most [`MAX_ABORTED`] entries per partition (the oldest go).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::BrokerError;

/// Batches remembered per producer and partition (Kafka keeps 5, the most a producer may
/// have in flight with idempotence).
const RECENT_BATCHES: usize = 5;

/// Allocates producer ids. On a single node they are seeded from the clock (ms × 1000), so
/// ids are not reused across restarts unless more than 1000 ids per millisecond of uptime
/// were handed out. On a cluster they come from blocks the controller allocates
/// ([`ProducerIds::cluster`], KIP-730): a block belongs to one node forever, so ids are
/// unique in the cluster whichever node hands them out, and across restarts.
pub struct ProducerIds {
    next: AtomicI64,
    /// Cluster mode: the node's current block (`next..end`); one allocation at a time
    /// fetches the next block from the controller.
    block: Option<tokio::sync::Mutex<(i64, i64)>>,
}

impl Default for ProducerIds {
    fn default() -> Self {
        ProducerIds {
            next: AtomicI64::new(crate::log::now_ms().max(0).saturating_mul(1000)),
            block: None,
        }
    }
}

impl ProducerIds {
    /// Cluster mode: ids from blocks the controller allocates to this node.
    pub fn cluster() -> ProducerIds {
        ProducerIds {
            next: AtomicI64::new(0),
            block: Some(tokio::sync::Mutex::new((0, 0))),
        }
    }

    /// The next id of a single node's ([`ProducerIds::default`]) clock-seeded sequence,
    /// without waiting (the transaction coordinator's, which serves single nodes only).
    pub fn allocate_local(&self) -> i64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The next id. On a cluster `fetch_block` asks the controller for a new block
    /// (`(first, count)`) when this node's is used up; its error is returned as is and
    /// nothing is handed out.
    pub async fn allocate<F, Fut>(&self, fetch_block: F) -> Result<i64, BrokerError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(i64, i64), BrokerError>>,
    {
        let Some(block) = &self.block else {
            return Ok(self.next.fetch_add(1, Ordering::Relaxed));
        };
        let mut b = block.lock().await;
        if b.0 >= b.1 {
            let (first, count) = fetch_block().await?;
            if count <= 0 || first < 0 {
                return Err(BrokerError::ClusterUnavailable(format!(
                    "the controller handed out an unusable producer-id block ({first}, {count})"
                )));
            }
            *b = (first, first.saturating_add(count));
        }
        let id = b.0;
        b.0 += 1;
        Ok(id)
    }
}

/// The verdict on one batch from an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New and in order: append it, then [`PartitionProducers::record`] it.
    Append,
    /// A retry of a batch already appended at these offsets.
    Duplicate { base_offset: i64 },
    /// The producer's epoch is older than one already seen (a fenced zombie).
    StaleEpoch,
    /// A gap or a reordering in sequence numbers.
    OutOfOrder { expected: i32, got: i32 },
}

#[derive(Debug)]
struct Entry {
    epoch: i16,
    last_seq: i32,
    /// (first sequence, last sequence, base offset) of the latest batches.
    recent: VecDeque<(i32, i32, i64)>,
}

/// Aborted transactions remembered per partition (module docs, invariant 4).
pub const MAX_ABORTED: usize = 100_000;

/// One aborted transaction of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of its abort marker.
    pub last_offset: i64,
}

/// Producer state of one partition. Lock it across check, append and record.
#[derive(Debug, Default)]
pub struct PartitionProducers {
    producers: HashMap<i64, Entry>,
    /// Open transactions: producer id → first offset (module docs).
    open: HashMap<i64, i64>,
    /// Aborted transactions, by marker offset.
    aborted: VecDeque<AbortedTxn>,
    /// The last marker offset read from the aborted-index file at load: a replayed abort
    /// at or below it is already in `aborted`.
    indexed_upto: i64,
    /// Whether the state of the log's tail has been replayed into it.
    loaded: bool,
    /// The leader epoch it was replayed at (`None`: a local topic). A replica that leads
    /// again at another epoch replays its log again: what it knew as a follower is stale.
    loaded_epoch: Option<i32>,
}

/// The sequence number of the last record of a batch (sequences wrap at `i32::MAX`).
pub fn last_sequence(base_sequence: i32, last_offset_delta: i32) -> i32 {
    ((base_sequence as i64 + last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
}

fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

impl PartitionProducers {
    /// Whether [`mark_loaded`](Self::mark_loaded) was called at `epoch`: the log's batches
    /// were replayed while this node led at that epoch (or, `None`, for a local topic).
    pub fn is_loaded(&self, epoch: Option<i32>) -> bool {
        self.loaded && self.loaded_epoch == epoch
    }

    /// Forgets everything (before replaying the log again at a new leader epoch).
    pub fn reset(&mut self) {
        self.producers.clear();
        self.open.clear();
        self.aborted.clear();
        self.indexed_upto = -1;
        self.loaded = false;
    }

    /// A transactional data batch of `producer_id` was appended at `base_offset`: opens its
    /// transaction here unless one is open.
    pub fn begin_txn(&mut self, producer_id: i64, base_offset: i64) {
        self.open.entry(producer_id).or_insert(base_offset);
    }

    /// A marker of `producer_id` was appended at `marker_offset`: closes its open
    /// transaction (a marker without one, e.g. rewritten after a restart, changes nothing).
    /// Returns the aborted transaction an abort marker recorded.
    pub fn complete(
        &mut self,
        producer_id: i64,
        marker: crate::batch::Marker,
        marker_offset: i64,
    ) -> Option<AbortedTxn> {
        let first_offset = self.open.remove(&producer_id)?;
        if marker != crate::batch::Marker::Abort || marker_offset <= self.indexed_upto {
            return None;
        }
        let a = AbortedTxn {
            producer_id,
            first_offset,
            last_offset: marker_offset,
        };
        self.push_aborted(a);
        Some(a)
    }

    fn push_aborted(&mut self, a: AbortedTxn) {
        if self.aborted.len() >= MAX_ABORTED {
            self.aborted.pop_front();
        }
        self.aborted.push_back(a);
    }

    /// The first offset of the oldest open transaction, if any (the last stable offset).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.open.values().min().copied()
    }

    /// The sequence number `producer_id`'s next batch here starts at (0 for a producer
    /// not seen at `epoch`).
    pub fn next_sequence(&self, producer_id: i64, epoch: i16) -> i32 {
        match self.producers.get(&producer_id) {
            Some(e) if e.epoch == epoch => next_sequence(e.last_seq),
            _ => 0,
        }
    }

    /// The producers with an open transaction here.
    pub fn open_producers(&self) -> Vec<i64> {
        self.open.keys().copied().collect()
    }

    /// Whether `producer_id` has an open transaction on this partition.
    pub fn is_open(&self, producer_id: i64) -> bool {
        self.open.contains_key(&producer_id)
    }

    /// The aborted transactions a read of offsets `from..=to` overlaps (what a
    /// read_committed Fetch lists so the client drops their records).
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset <= to)
            .copied()
            .collect()
    }

    /// Replays one stored batch (oldest first) into the state.
    fn replay(&mut self, h: &crate::batch::BatchHeader, bytes: &[u8]) {
        if h.is_control() {
            if let Some(m) = crate::batch::marker_of(bytes) {
                let _ = self.complete(h.producer_id, m, h.base_offset);
            }
            return;
        }
        if h.producer_id >= 0 && h.base_sequence >= 0 {
            self.record(
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                last_sequence(h.base_sequence, h.last_offset_delta),
                h.base_offset,
            );
        }
        if h.is_transactional() && h.producer_id >= 0 {
            self.begin_txn(h.producer_id, h.base_offset);
        }
    }

    pub fn mark_loaded(&mut self, epoch: Option<i32>) {
        self.loaded = true;
        self.loaded_epoch = epoch;
    }

    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> SequenceCheck {
        let Some(e) = self.producers.get(&producer_id) else {
            // Unknown here (new producer, or state lost in a restart): accept where it starts.
            return SequenceCheck::Append;
        };
        if epoch < e.epoch {
            return SequenceCheck::StaleEpoch;
        }
        if epoch > e.epoch {
            return if first_seq == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder {
                    expected: 0,
                    got: first_seq,
                }
            };
        }
        if let Some((_, _, base)) = e
            .recent
            .iter()
            .find(|(f, l, _)| *f == first_seq && *l == last_seq)
        {
            return SequenceCheck::Duplicate { base_offset: *base };
        }
        let expected = next_sequence(e.last_seq);
        if first_seq != expected {
            return SequenceCheck::OutOfOrder {
                expected,
                got: first_seq,
            };
        }
        SequenceCheck::Append
    }

    pub fn record(
        &mut self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
        base_offset: i64,
    ) {
        let e = self.producers.entry(producer_id).or_insert(Entry {
            epoch,
            last_seq,
            recent: VecDeque::new(),
        });
        if epoch != e.epoch {
            e.recent.clear();
        }
        e.epoch = epoch;
        e.last_seq = last_seq;
        if e.recent.len() == RECENT_BATCHES {
            e.recent.pop_front();
        }
        e.recent.push_back((first_seq, last_seq, base_offset));
    }
}

/// How much of a partition's log (its newest segments, whole) is replayed to rebuild the
/// producer state after a restart: enough for the batches a producer may retry.
const PRODUCER_STATE_LOG_BYTES: u64 = 64 << 20;

const ABORTED_ENTRY: usize = 24;

/// The aborted-index file of a partition (module docs, invariant 4).
fn aborted_index_path(broker: &crate::Broker, topic: &str, partition: i32) -> std::path::PathBuf {
    broker
        .config()
        .data_dir
        .join("transactions")
        .join("aborted")
        .join(topic)
        .join(format!("{partition}.idx"))
}

/// Appends one aborted transaction to the partition's aborted-index file (not synced).
pub fn index_aborted(
    broker: &crate::Broker,
    topic: &str,
    partition: i32,
    a: &AbortedTxn,
) -> Result<(), BrokerError> {
    use std::io::Write;
    let path = aborted_index_path(broker, topic, partition);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| BrokerError::io(dir, e))?;
    }
    let mut entry = [0u8; ABORTED_ENTRY];
    entry[..8].copy_from_slice(&a.producer_id.to_be_bytes());
    entry[8..16].copy_from_slice(&a.first_offset.to_be_bytes());
    entry[16..].copy_from_slice(&a.last_offset.to_be_bytes());
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(&entry))
        .map_err(|e| BrokerError::io(&path, e))
}

/// Reads the partition's aborted-index file into `state` (a torn last entry is ignored).
fn read_aborted_index(
    broker: &crate::Broker,
    topic: &str,
    partition: i32,
    state: &mut PartitionProducers,
) {
    let path = aborted_index_path(broker, topic, partition);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read an aborted-transaction index");
            return;
        }
    };
    let entries = bytes.len() / ABORTED_ENTRY;
    let skip = entries.saturating_sub(MAX_ABORTED);
    let be = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        i64::from_be_bytes(a)
    };
    for e in bytes.chunks_exact(ABORTED_ENTRY).skip(skip) {
        let a = AbortedTxn {
            producer_id: be(&e[..8]),
            first_offset: be(&e[8..16]),
            last_offset: be(&e[16..]),
        };
        if a.last_offset > state.indexed_upto {
            state.indexed_upto = a.last_offset;
            state.push_aborted(a);
        }
    }
}

/// Replays the batches at the tail of the partition's log into `state` unless it was loaded
/// at the partition's current leader epoch (once per partition after a start). A log that
/// cannot be read leaves the state as it is, with a warning: producers are then accepted at
/// the sequence they send.
pub fn load(broker: &crate::Broker, topic: &str, partition: i32, state: &mut PartitionProducers) {
    let epoch = broker.leader_epoch(topic, partition);
    if state.is_loaded(epoch) {
        return;
    }
    state.reset();
    read_aborted_index(broker, topic, partition, state);
    let started = std::time::Instant::now();
    let mut batches = 0u64;
    let result =
        broker.for_each_recent_batch(topic, partition, PRODUCER_STATE_LOG_BYTES, |h, b| {
            batches += 1;
            state.replay(h, b);
        });
    match result {
        Ok(()) => tracing::debug!(
            topic,
            partition,
            batches,
            open_transactions = state.open.len(),
            ms = started.elapsed().as_millis() as u64,
            "producer state rebuilt from the log"
        ),
        Err(e) => tracing::warn!(
            topic,
            partition,
            error = %e,
            "could not rebuild the producer state from the log; sequences of producers \
             seen before the restart are not checked"
        ),
    }
    state.mark_loaded(epoch);
}

type ByPartition = HashMap<(String, i32), Arc<Mutex<PartitionProducers>>>;

/// Producer state of every partition this node has seen idempotent batches for.
#[derive(Default)]
pub struct ProducerStates {
    partitions: Mutex<ByPartition>,
}

impl ProducerStates {
    pub fn partition(&self, topic: &str, partition: i32) -> Arc<Mutex<PartitionProducers>> {
        let mut all = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        all.entry((topic.to_string(), partition))
            .or_default()
            .clone()
    }

    /// Forgets a deleted topic's producers.
    pub fn forget_topic(&self, topic: &str) {
        let mut all = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|(t, _), _| t != topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_gaps_and_epochs() {
        let mut p = PartitionProducers::default();
        assert_eq!(p.check(7, 0, 0, 9), SequenceCheck::Append);
        p.record(7, 0, 0, 9, 100);
        assert_eq!(p.check(7, 0, 10, 19), SequenceCheck::Append);
        p.record(7, 0, 10, 19, 110);
        // A retry of either batch gets its original offsets.
        assert_eq!(
            p.check(7, 0, 0, 9),
            SequenceCheck::Duplicate { base_offset: 100 }
        );
        assert_eq!(
            p.check(7, 0, 10, 19),
            SequenceCheck::Duplicate { base_offset: 110 }
        );
        // A gap is rejected.
        assert_eq!(
            p.check(7, 0, 25, 30),
            SequenceCheck::OutOfOrder {
                expected: 20,
                got: 25
            }
        );
        // Older epochs are fenced; a new epoch starts again at 0.
        assert_eq!(
            p.check(7, 1, 5, 6),
            SequenceCheck::OutOfOrder {
                expected: 0,
                got: 5
            }
        );
        assert_eq!(p.check(7, 1, 0, 0), SequenceCheck::Append);
        p.record(7, 1, 0, 0, 120);
        assert_eq!(p.check(7, 0, 20, 21), SequenceCheck::StaleEpoch);
        // Other producers are independent.
        assert_eq!(p.check(8, 0, 3, 3), SequenceCheck::Append);
    }

    #[test]
    fn open_and_aborted_transactions_give_the_lso_and_the_aborted_list() {
        use crate::batch::Marker;
        let mut p = PartitionProducers::default();
        assert_eq!(p.first_unstable_offset(), None);
        p.begin_txn(1, 10);
        p.begin_txn(1, 12); // a later batch of the same transaction
        p.begin_txn(2, 11);
        assert_eq!(p.first_unstable_offset(), Some(10));
        p.complete(1, Marker::Commit, 13);
        assert_eq!(p.first_unstable_offset(), Some(11));
        p.complete(2, Marker::Abort, 14);
        assert_eq!(p.first_unstable_offset(), None);
        let a = AbortedTxn {
            producer_id: 2,
            first_offset: 11,
            last_offset: 14,
        };
        assert_eq!(p.aborted_between(0, 11), vec![a]);
        assert_eq!(p.aborted_between(14, 20), vec![a]);
        assert_eq!(p.aborted_between(15, 20), vec![]);
        assert_eq!(p.aborted_between(0, 10), vec![]);
        // A marker rewritten after a restart closes nothing.
        p.complete(2, Marker::Abort, 15);
        assert_eq!(p.aborted_between(0, 100).len(), 1);
        // Replayed from stored batches: the same state.
        let mut q = PartitionProducers::default();
        let m = crate::batch::control_batch(5, 0, Marker::Abort, 0, 0).unwrap();
        let mut data = crate::batch::control_batch(5, 0, Marker::Abort, 0, 0)
            .unwrap()
            .header()
            .to_owned();
        data.attributes = crate::batch::TRANSACTIONAL_FLAG;
        data.base_offset = 3;
        q.replay(&data, &[]);
        assert_eq!(q.first_unstable_offset(), Some(3));
        let mut mh = *m.header();
        mh.base_offset = 4;
        q.replay(&mh, m.bytes());
        assert_eq!(q.first_unstable_offset(), None);
        assert_eq!(q.aborted_between(0, 10).len(), 1);
    }

    #[test]
    fn aborted_transactions_older_than_the_replayed_tail_come_from_the_index_file() {
        use crate::batch::Marker;
        let dir = tempfile::tempdir().unwrap();
        let b = crate::Broker::open(crate::BrokerConfig::new(dir.path())).unwrap();
        b.create_topic(crate::TopicSpec::new("t", 1)).unwrap();
        let old = AbortedTxn {
            producer_id: 9,
            first_offset: 3,
            last_offset: 7,
        };
        index_aborted(&b, "t", 0, &old).unwrap();
        // A marker in the replayed tail that is also in the index is not listed twice.
        let m = crate::batch::control_batch(9, 0, Marker::Abort, 0, 0).unwrap();
        let mut data = *m.header();
        data.attributes = crate::batch::TRANSACTIONAL_FLAG;
        let mut p = PartitionProducers::default();
        load(&b, "t", 0, &mut p);
        assert_eq!(p.aborted_between(0, 100), vec![old]);
        data.base_offset = 5;
        p.replay(&data, &[]);
        let mut mh = *m.header();
        mh.base_offset = 7;
        p.replay(&mh, m.bytes());
        assert_eq!(p.aborted_between(0, 100), vec![old]);
        // A newer abort is recorded.
        data.base_offset = 8;
        p.replay(&data, &[]);
        mh.base_offset = 9;
        p.replay(&mh, m.bytes());
        assert_eq!(p.aborted_between(8, 9).len(), 1);
        // A torn entry at the end of the file is ignored.
        let path = aborted_index_path(&b, "t", 0);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&path, bytes).unwrap();
        let mut q = PartitionProducers::default();
        load(&b, "t", 0, &mut q);
        assert_eq!(q.aborted_between(0, 100), vec![old]);
    }

    #[test]
    fn sequences_wrap() {
        assert_eq!(last_sequence(i32::MAX, 0), i32::MAX);
        assert_eq!(last_sequence(i32::MAX, 1), 0);
        let mut p = PartitionProducers::default();
        p.record(1, 0, i32::MAX - 1, i32::MAX, 0);
        assert_eq!(p.check(1, 0, 0, 4), SequenceCheck::Append);
    }

    async fn no_block() -> Result<(i64, i64), BrokerError> {
        panic!("a single node asks no controller")
    }

    #[tokio::test]
    async fn ids_are_unique_and_increasing() {
        let ids = ProducerIds::default();
        let a = ids.allocate(no_block).await.unwrap();
        let b = ids.allocate(no_block).await.unwrap();
        assert!(a >= 0 && b > a);
    }

    #[tokio::test]
    async fn cluster_ids_come_from_the_controllers_blocks_one_block_at_a_time() {
        let ids = ProducerIds::cluster();
        let fetched = std::sync::atomic::AtomicI64::new(0);
        let fetch = || async {
            let n = fetched.fetch_add(1, Ordering::SeqCst);
            Ok((n * 1000, 2))
        };
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(ids.allocate(fetch).await.unwrap());
        }
        assert_eq!(got, vec![0, 1, 1000, 1001, 2000]);
        let refused = ProducerIds::cluster()
            .allocate(|| async { Err(BrokerError::ClusterUnavailable("no controller".into())) })
            .await;
        assert!(refused.is_err());
    }
}

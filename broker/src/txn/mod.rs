//! The transaction coordinator (Kafka's KIP-98 as clients use it): the state of every
//! transactional id this node coordinates, its producer id and epoch, the partitions and
//! groups of its current transaction, and the transitions InitProducerId, AddPartitionsToTxn,
//! AddOffsetsToTxn, TxnOffsetCommit and EndTxn make. It writes its state to the internal
//! compacted topic [`TXN_STATE_TOPIC`] (format in `log.rs`) and transaction markers (control
//! batches) into the partitions of each transaction.
//!
//! It owns `__transaction_state` and the markers; it does not own the wire protocol (the
//! Kafka handlers decode requests and map [`TxnError`] to Kafka's codes), the open/aborted
//! bookkeeping of a partition (`kafka::producer`, which it updates under the partition's
//! lock as it writes a marker), nor committed offsets (it hands a committed transaction's
//! offsets to the group coordinator's [`OffsetStore`]).
//!
//! Single node only: on a cluster the Kafka edge refuses transactional ids (see README).
//!
//! # Invariants
//!
//! 1. **Who writes what.** Only this coordinator writes [`TXN_STATE_TOPIC`] (clients are
//!    refused by the internal-topic guard) and markers; a transaction's markers are written
//!    by the coordinator of its transactional id only, and a client can never produce a
//!    control batch (the Produce handler refuses them).
//! 2. **Durable before answered.** Every transition a client is told of is in
//!    [`TXN_STATE_TOPIC`] first (durable under the topic's fsync policy): a new or bumped
//!    epoch, the partitions and groups of an Ongoing transaction (so a restart knows where
//!    to write abort markers), the pending offsets of TxnOffsetCommit, and PrepareCommit /
//!    PrepareAbort before any marker. EndTxn is answered once every marker is written, the
//!    offsets are committed (commit only) and CompleteCommit / CompleteAbort is written.
//! 3. **The epoch fences.** For a transactional id only its current (producer id, epoch)
//!    may add partitions, commit offsets, end a transaction or produce transactional
//!    batches. InitProducerId bumps the epoch (a new producer id when the epoch is
//!    exhausted), first aborting an Ongoing transaction of the previous producer with the
//!    bumped epoch; a transaction timeout does the same. An older epoch gets
//!    `PRODUCER_FENCED` from the coordinator APIs (`INVALID_PRODUCER_EPOCH` for the request
//!    versions before it existed, and for Produce).
//! 4. **No transactional batch outside a transaction (KIP-890 part 1).** A transactional
//!    batch is appended only if its producer's transaction is Ongoing with that partition
//!    added, checked under this coordinator's lock held across the append, so a marker can
//!    never be followed by a stray batch of the transaction it closed.
//! 5. **Recovery.** At start-up the latest state of every id is read back; PrepareCommit /
//!    PrepareAbort are completed (markers written again: a second marker for a closed
//!    transaction changes nothing), Ongoing ones are aborted with a bumped epoch. A
//!    partition that still shows a transaction open that is not in flight here (a marker
//!    lost with unsynced writes) gets the marker of how it ended when a read_committed
//!    reader finds it ([`TxnCoordinator::close_stale`]).
//!
//! Lock order: this coordinator's lock, then a partition's producer-state lock.

mod committed;
mod log;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::batch::{self, CheckedBatch, Marker};
use crate::error::BrokerError;
use crate::group::{CommittedOffset, GroupCoordinator};
use crate::kafka::producer::{self, ProducerStates};
use crate::log::now_ms;
use crate::{Broker, InternalTopic, ProduceRecord, TopicSpec};

/// Name of the internal topic holding transaction state (as in Kafka).
pub const TXN_STATE_TOPIC: &str = "__transaction_state";
/// Largest transaction timeout a producer may ask for (Kafka's
/// `transaction.max.timeout.ms` default).
pub const MAX_TIMEOUT_MS: i32 = 900_000;
/// Partitions one transaction may span.
pub const MAX_TXN_PARTITIONS: usize = 10_000;
/// Group offsets one transaction may carry.
pub const MAX_TXN_OFFSETS: usize = 100_000;
/// Transactional ids one node keeps.
pub const MAX_TRANSACTIONAL_IDS: usize = 100_000;
/// A transactional id with no transaction in flight is forgotten after this long without a
/// request (Kafka's `transactional.id.expiration.ms` default, 7 days).
pub const TXN_ID_EXPIRATION_MS: i64 = 7 * 24 * 3600 * 1000;
/// The coordinator epoch written in markers (one node: always this).
const COORDINATOR_EPOCH: i32 = 0;

/// Transaction status, numbered as Kafka's `TransactionState` in its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStatus {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
}

impl TxnStatus {
    fn from_i8(v: i8) -> Option<TxnStatus> {
        Some(match v {
            0 => TxnStatus::Empty,
            1 => TxnStatus::Ongoing,
            2 => TxnStatus::PrepareCommit,
            3 => TxnStatus::PrepareAbort,
            4 => TxnStatus::CompleteCommit,
            5 => TxnStatus::CompleteAbort,
            _ => return None,
        })
    }

    /// Kafka's name (DescribeTransactions, ListTransactions).
    pub fn as_str(self) -> &'static str {
        match self {
            TxnStatus::Empty => "Empty",
            TxnStatus::Ongoing => "Ongoing",
            TxnStatus::PrepareCommit => "PrepareCommit",
            TxnStatus::PrepareAbort => "PrepareAbort",
            TxnStatus::CompleteCommit => "CompleteCommit",
            TxnStatus::CompleteAbort => "CompleteAbort",
        }
    }
}

/// An offset a transaction commits for a group when it commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// The state of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMeta {
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: i32,
    pub status: TxnStatus,
    pub partitions: BTreeSet<(String, i32)>,
    pub groups: BTreeSet<String>,
    /// (group, topic, partition) → offset.
    pub offsets: BTreeMap<(String, String, i32), PendingOffset>,
    pub start_ms: i64,
    pub update_ms: i64,
}

impl TxnMeta {
    fn new(producer_id: i64, timeout_ms: i32, now: i64) -> TxnMeta {
        TxnMeta {
            producer_id,
            epoch: 0,
            timeout_ms,
            status: TxnStatus::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            offsets: BTreeMap::new(),
            start_ms: -1,
            update_ms: now,
        }
    }
}

/// Why a transactional request is refused (mapped to Kafka's codes by the handlers).
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error("the producer's epoch is older than the transactional id's: fenced")]
    ProducerFenced,
    #[error("the producer's epoch does not match the transactional id's")]
    InvalidProducerEpoch,
    #[error("the producer id does not belong to this transactional id")]
    InvalidProducerIdMapping,
    #[error("the request does not fit the transaction's state ({0})")]
    InvalidTxnState(&'static str),
    #[error("the transaction timeout must be between 1 and {MAX_TIMEOUT_MS} ms")]
    InvalidTimeout,
    #[error("a transaction may span at most {0} partitions or offsets")]
    TooLarge(usize),
    #[error("this node already keeps {MAX_TRANSACTIONAL_IDS} transactional ids")]
    TooManyIds,
    #[error("transaction state not loaded yet")]
    Loading,
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

type Result<T> = std::result::Result<T, TxnError>;

struct Inner {
    txns: HashMap<String, TxnMeta>,
    /// Producer id → transactional id.
    by_pid: HashMap<i64, String>,
    loaded: bool,
}

/// The transaction coordinator of a single node. Every method blocks (disk writes).
pub struct TxnCoordinator {
    broker: Broker,
    producers: Arc<ProducerStates>,
    /// Where a committed transaction's group offsets go: set at once by [`Self::new`], or
    /// by the Kafka listener ([`Self::attach_groups`]) for a coordinator the node opened
    /// before it ([`Self::open_local`]). Until then a commit carrying group offsets stays
    /// prepared (retried by [`Self::tick`]).
    groups: OnceLock<Arc<GroupCoordinator>>,
    inner: Mutex<Inner>,
}

/// What the Produce handler holds across the append of a transactional batch
/// (invariant 4).
pub struct Verified<'a>(#[allow(dead_code)] MutexGuard<'a, Inner>);

impl TxnCoordinator {
    pub fn new(
        broker: Broker,
        producers: Arc<ProducerStates>,
        groups: Arc<GroupCoordinator>,
    ) -> TxnCoordinator {
        let cell = OnceLock::new();
        let _ = cell.set(groups);
        TxnCoordinator {
            broker,
            producers,
            groups: cell,
            inner: Mutex::new(Inner {
                txns: HashMap::new(),
                by_pid: HashMap::new(),
                loaded: false,
            }),
        }
    }

    /// The coordinator of a single node, opened with the node (before the Kafka listener,
    /// which attaches its group coordinator): over the broker's own producer state and
    /// producer ids, its state loaded and recovered (invariant 5), and registered with the
    /// broker ([`Broker::txn_coordinator`]) for the engine's exactly-once tasks and
    /// committed readers. The caller keeps it alive.
    pub fn open_local(broker: &Broker) -> Result<Arc<TxnCoordinator>> {
        let t = Arc::new(TxnCoordinator {
            broker: broker.clone(),
            producers: broker.producer_states(),
            groups: OnceLock::new(),
            inner: Mutex::new(Inner {
                txns: HashMap::new(),
                by_pid: HashMap::new(),
                loaded: false,
            }),
        });
        let ids = broker.producer_ids();
        t.load(&|| ids.allocate_local())?;
        broker.set_txn_coordinator(&t);
        Ok(t)
    }

    /// Gives a coordinator opened by [`Self::open_local`] the group coordinator committed
    /// transactions hand their offsets to (once; later calls change nothing).
    pub fn attach_groups(&self, groups: Arc<GroupCoordinator>) {
        let _ = self.groups.set(groups);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spec() -> TopicSpec {
        let mut spec = TopicSpec::new(TXN_STATE_TOPIC, 1).owned_by(InternalTopic {
            owner: InternalTopic::TXN_COORDINATOR.into(),
        });
        spec.compacted = true;
        spec
    }

    /// Reads the latest state of every transactional id back and recovers what was in
    /// flight (invariant 5). `fresh_id` hands out producer ids for exhausted epochs.
    pub fn load(&self, fresh_id: &dyn Fn() -> i64) -> Result<()> {
        let mut txns: HashMap<String, TxnMeta> = HashMap::new();
        if self.broker.partition_count(TXN_STATE_TOPIC).is_ok() {
            let mut offset = 0;
            loop {
                let r = self
                    .broker
                    .read(TXN_STATE_TOPIC, 0, offset, 10_000, 4 << 20)?;
                if r.records.is_empty() {
                    break;
                }
                for rec in &r.records {
                    let Some(id) = rec.key.as_deref().and_then(log::decode_key) else {
                        continue;
                    };
                    match rec.value.as_deref() {
                        None => {
                            txns.remove(&id);
                        }
                        Some(v) => match log::decode_value(v) {
                            Some(m) => {
                                txns.insert(id, m);
                            }
                            None => tracing::warn!(
                                offset = rec.offset,
                                "skipping an unreadable transaction state"
                            ),
                        },
                    }
                }
                if r.next_offset <= offset {
                    break;
                }
                offset = r.next_offset;
            }
        }
        let mut inner = self.lock();
        inner.by_pid = txns
            .iter()
            .map(|(id, m)| (m.producer_id, id.clone()))
            .collect();
        inner.txns = txns;
        inner.loaded = true;
        let ids: Vec<String> = inner.txns.keys().cloned().collect();
        let mut recovered = 0;
        for id in ids {
            let Some(m) = inner.txns.get(&id) else {
                continue;
            };
            match m.status {
                TxnStatus::PrepareCommit | TxnStatus::PrepareAbort | TxnStatus::Ongoing => {
                    recovered += 1;
                    if let Err(e) = self.finish_or_abort(&mut inner, &id, fresh_id) {
                        tracing::warn!(transactional_id = %id, error = %e, "recovering a transaction failed; retried on the next tick");
                    }
                }
                _ => {}
            }
        }
        tracing::info!(
            transactional_ids = inner.txns.len(),
            recovered,
            "loaded transaction state"
        );
        Ok(())
    }

    /// Completes a prepared transaction, or aborts an Ongoing one with a bumped epoch.
    fn finish_or_abort(
        &self,
        inner: &mut Inner,
        id: &str,
        fresh_id: &dyn Fn() -> i64,
    ) -> Result<()> {
        let Some(m) = inner.txns.get(id).cloned() else {
            return Ok(());
        };
        match m.status {
            TxnStatus::PrepareCommit => self.complete(inner, id, m, Marker::Commit),
            TxnStatus::PrepareAbort => self.complete(inner, id, m, Marker::Abort),
            TxnStatus::Ongoing => {
                let m = self.bump(inner, id, m, fresh_id)?;
                self.prepare_and_complete(inner, id, m, Marker::Abort)
            }
            _ => Ok(()),
        }
    }

    /// Writes `m` as `id`'s state (durable), then makes it current.
    fn persist(&self, inner: &mut Inner, id: &str, mut m: TxnMeta) -> Result<()> {
        m.update_ms = now_ms();
        if self.broker.partition_count(TXN_STATE_TOPIC).is_err() {
            self.broker.ensure_internal_topic(Self::spec())?;
        }
        self.broker.produce_owned(
            TXN_STATE_TOPIC,
            vec![ProduceRecord {
                key: Some(log::encode_key(id)),
                value: Some(log::encode_value(&m)),
                headers: Vec::new(),
                timestamp: Some(m.update_ms),
                partition: Some(0),
            }],
        )?;
        if let Some(old) = inner.txns.get(id)
            && old.producer_id != m.producer_id
        {
            inner.by_pid.remove(&old.producer_id);
        }
        inner.by_pid.insert(m.producer_id, id.to_string());
        inner.txns.insert(id.to_string(), m);
        Ok(())
    }

    /// The next epoch of `m` (a new producer id once the epoch is exhausted), durable.
    fn bump(
        &self,
        inner: &mut Inner,
        id: &str,
        mut m: TxnMeta,
        fresh_id: &dyn Fn() -> i64,
    ) -> Result<TxnMeta> {
        if m.epoch >= i16::MAX - 1 {
            m.producer_id = fresh_id();
            m.epoch = 0;
        } else {
            m.epoch += 1;
        }
        self.persist(inner, id, m.clone())?;
        Ok(m)
    }

    /// PrepareCommit/PrepareAbort (durable), then [`Self::complete`].
    fn prepare_and_complete(
        &self,
        inner: &mut Inner,
        id: &str,
        mut m: TxnMeta,
        marker: Marker,
    ) -> Result<()> {
        m.status = match marker {
            Marker::Commit => TxnStatus::PrepareCommit,
            Marker::Abort => TxnStatus::PrepareAbort,
        };
        self.persist(inner, id, m.clone())?;
        self.complete(inner, id, m, marker)
    }

    /// Writes the markers of a prepared transaction into each of its partitions, commits
    /// its offsets (commit only), then CompleteCommit/CompleteAbort (durable).
    fn complete(&self, inner: &mut Inner, id: &str, mut m: TxnMeta, marker: Marker) -> Result<()> {
        for (topic, partition) in &m.partitions {
            self.write_marker(topic, *partition, m.producer_id, m.epoch, marker, false)?;
        }
        if marker == Marker::Commit {
            let mut by_group: BTreeMap<&str, Vec<(String, i32, CommittedOffset)>> = BTreeMap::new();
            let now = now_ms();
            for ((g, t, p), o) in &m.offsets {
                by_group.entry(g.as_str()).or_default().push((
                    t.clone(),
                    *p,
                    CommittedOffset {
                        offset: o.offset,
                        leader_epoch: o.leader_epoch,
                        metadata: o.metadata.clone(),
                        commit_timestamp: now,
                    },
                ));
            }
            if !by_group.is_empty() {
                let Some(groups) = self.groups.get() else {
                    // Stays prepared; completed once the Kafka listener attached its groups.
                    return Err(TxnError::Loading);
                };
                for (g, offsets) in by_group {
                    groups.offsets().commit(g, offsets)?;
                }
            }
        }
        m.status = match marker {
            Marker::Commit => TxnStatus::CompleteCommit,
            Marker::Abort => TxnStatus::CompleteAbort,
        };
        m.partitions.clear();
        m.groups.clear();
        m.offsets.clear();
        m.start_ms = -1;
        self.persist(inner, id, m)
    }

    /// Appends one marker to a partition and closes the producer's transaction there
    /// (under the partition's producer-state lock; with `only_if_open`, only if the
    /// partition still shows it open). A deleted topic has nothing to close.
    fn write_marker(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        marker: Marker,
        only_if_open: bool,
    ) -> Result<()> {
        let state = self.producers.partition(topic, partition);
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        producer::load(&self.broker, topic, partition, &mut state);
        if only_if_open && !state.is_open(producer_id) {
            return Ok(());
        }
        let b = batch::control_batch(producer_id, epoch, marker, COORDINATOR_EPOCH, now_ms())?;
        match self.broker.append_owned(topic, partition, &b) {
            Ok((offset, _)) => {
                if let Some(a) = state.complete(producer_id, marker, offset)
                    && let Err(e) = producer::index_aborted(&self.broker, topic, partition, &a)
                {
                    // Only reads of this part of the log after a restart older than the
                    // replayed tail miss it (see `kafka::producer`).
                    tracing::warn!(topic, partition, error = %e, "could not index an aborted transaction");
                }
                Ok(())
            }
            Err(BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. }) => {
                tracing::info!(
                    topic,
                    partition,
                    "no marker for a deleted partition of a transaction"
                );
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn current<'a>(inner: &'a Inner, id: &str, pid: i64, epoch: i16) -> Result<&'a TxnMeta> {
        if !inner.loaded {
            return Err(TxnError::Loading);
        }
        let m = inner
            .txns
            .get(id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        if m.producer_id != pid {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if epoch < m.epoch {
            return Err(TxnError::ProducerFenced);
        }
        if epoch != m.epoch {
            return Err(TxnError::InvalidProducerEpoch);
        }
        Ok(m)
    }

    /// InitProducerId with a transactional id: `(producer id, epoch)` for the producer
    /// (invariant 3). `expected` is the (id, epoch) a producer asking to bump its own
    /// epoch gives (KIP-360), `None` for a new producer.
    pub fn init(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        fresh_id: &dyn Fn() -> i64,
    ) -> Result<(i64, i16)> {
        if timeout_ms <= 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(TxnError::InvalidTimeout);
        }
        let mut inner = self.lock();
        if !inner.loaded {
            return Err(TxnError::Loading);
        }
        let Some(m) = inner.txns.get(id).cloned() else {
            if inner.txns.len() >= MAX_TRANSACTIONAL_IDS {
                return Err(TxnError::TooManyIds);
            }
            let m = TxnMeta::new(fresh_id(), timeout_ms, now_ms());
            let r = (m.producer_id, m.epoch);
            self.persist(&mut inner, id, m)?;
            return Ok(r);
        };
        if let Some((pid, epoch)) = expected
            && (pid != m.producer_id || epoch != m.epoch)
        {
            return Err(TxnError::ProducerFenced);
        }
        // Whatever the previous producer left: completed if prepared, aborted if Ongoing
        // (with a bumped epoch, which fences it).
        self.finish_or_abort(&mut inner, id, fresh_id)?;
        let mut m = inner.txns.get(id).cloned().unwrap_or(m);
        m.timeout_ms = timeout_ms;
        m.status = TxnStatus::Empty;
        let m = self.bump(&mut inner, id, m, fresh_id)?;
        Ok((m.producer_id, m.epoch))
    }

    /// AddPartitionsToTxn (partitions already checked to exist): the transaction becomes
    /// (or stays) Ongoing with them, durable before the answer.
    pub fn add_partitions(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<()> {
        let mut inner = self.lock();
        let mut m = Self::current(&inner, id, pid, epoch)?.clone();
        match m.status {
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => {
                return Err(TxnError::InvalidTxnState("a transaction is ending"));
            }
            TxnStatus::Ongoing
                if partitions
                    .iter()
                    .all(|(t, p)| m.partitions.contains(&(t.clone(), *p))) =>
            {
                return Ok(());
            }
            _ => {}
        }
        if m.status != TxnStatus::Ongoing {
            m.start_ms = now_ms();
            m.status = TxnStatus::Ongoing;
        }
        m.partitions.extend(partitions.iter().cloned());
        if m.partitions.len() > MAX_TXN_PARTITIONS {
            return Err(TxnError::TooLarge(MAX_TXN_PARTITIONS));
        }
        self.persist(&mut inner, id, m)
    }

    /// AddOffsetsToTxn: the group's offsets may be committed in the transaction.
    pub fn add_offsets(&self, id: &str, pid: i64, epoch: i16, group: &str) -> Result<()> {
        let mut inner = self.lock();
        let mut m = Self::current(&inner, id, pid, epoch)?.clone();
        match m.status {
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => {
                return Err(TxnError::InvalidTxnState("a transaction is ending"));
            }
            TxnStatus::Ongoing if m.groups.contains(group) => return Ok(()),
            TxnStatus::Ongoing => {}
            _ => {
                m.start_ms = now_ms();
                m.status = TxnStatus::Ongoing;
            }
        }
        if m.groups.len() >= MAX_TXN_PARTITIONS {
            return Err(TxnError::TooLarge(MAX_TXN_PARTITIONS));
        }
        m.groups.insert(group.to_string());
        self.persist(&mut inner, id, m)
    }

    /// TxnOffsetCommit: offsets of a group added with AddOffsetsToTxn, visible in the
    /// group only when the transaction commits. Durable before the answer.
    pub fn commit_offsets(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        group: &str,
        offsets: Vec<(String, i32, PendingOffset)>,
    ) -> Result<()> {
        let mut inner = self.lock();
        let mut m = Self::current(&inner, id, pid, epoch)?.clone();
        if m.status != TxnStatus::Ongoing || !m.groups.contains(group) {
            return Err(TxnError::InvalidTxnState(
                "the group was not added to an ongoing transaction",
            ));
        }
        for (t, p, o) in offsets {
            m.offsets.insert((group.to_string(), t, p), o);
        }
        if m.offsets.len() > MAX_TXN_OFFSETS {
            return Err(TxnError::TooLarge(MAX_TXN_OFFSETS));
        }
        self.persist(&mut inner, id, m)
    }

    /// EndTxn: commits or aborts the Ongoing transaction (answered once complete). A retry
    /// of an EndTxn that completed is answered the same; the other outcome is refused.
    pub fn end(&self, id: &str, pid: i64, epoch: i16, commit: bool) -> Result<()> {
        let mut inner = self.lock();
        let m = Self::current(&inner, id, pid, epoch)?.clone();
        let marker = if commit {
            Marker::Commit
        } else {
            Marker::Abort
        };
        match (m.status, marker) {
            (TxnStatus::Ongoing, _) => self.prepare_and_complete(&mut inner, id, m, marker),
            (TxnStatus::PrepareCommit, Marker::Commit)
            | (TxnStatus::PrepareAbort, Marker::Abort) => self.complete(&mut inner, id, m, marker),
            (TxnStatus::CompleteCommit, Marker::Commit)
            | (TxnStatus::CompleteAbort, Marker::Abort) => Ok(()),
            _ => Err(TxnError::InvalidTxnState(
                "no ongoing transaction to end this way",
            )),
        }
    }

    /// Aborts every Ongoing transaction older than its timeout (bumping the epoch, which
    /// fences its producer, as Kafka does), retries completing prepared ones whose markers
    /// failed, and forgets ids idle for [`TXN_ID_EXPIRATION_MS`]. Call it periodically.
    pub fn tick(&self, fresh_id: &dyn Fn() -> i64) {
        let mut inner = self.lock();
        if !inner.loaded {
            return;
        }
        let now = now_ms();
        let due: Vec<String> = inner
            .txns
            .iter()
            .filter(|(_, m)| match m.status {
                TxnStatus::Ongoing => m.start_ms.saturating_add(i64::from(m.timeout_ms)) <= now,
                TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => true,
                _ => false,
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            tracing::info!(transactional_id = %id, "aborting a transaction past its timeout (or completing a prepared one)");
            if let Err(e) = self.finish_or_abort(&mut inner, &id, fresh_id) {
                tracing::warn!(transactional_id = %id, error = %e, "could not end a transaction; retrying");
            }
        }
        let expired: Vec<String> = inner
            .txns
            .iter()
            .filter(|(_, m)| {
                !matches!(
                    m.status,
                    TxnStatus::Ongoing | TxnStatus::PrepareCommit | TxnStatus::PrepareAbort
                ) && m.update_ms.saturating_add(TXN_ID_EXPIRATION_MS) <= now
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Err(e) = self.forget(&mut inner, &id) {
                tracing::warn!(transactional_id = %id, error = %e, "could not expire a transactional id; retrying");
            }
        }
    }

    /// Forgets an idle transactional id: a tombstone in [`TXN_STATE_TOPIC`] (durable), then
    /// out of memory. Its next InitProducerId starts it afresh with a new producer id.
    fn forget(&self, inner: &mut Inner, id: &str) -> Result<()> {
        self.broker.produce_owned(
            TXN_STATE_TOPIC,
            vec![ProduceRecord {
                key: Some(log::encode_key(id)),
                value: None,
                headers: Vec::new(),
                timestamp: Some(now_ms()),
                partition: Some(0),
            }],
        )?;
        if let Some(m) = inner.txns.remove(id) {
            inner.by_pid.remove(&m.producer_id);
        }
        tracing::info!(transactional_id = %id, "expired an idle transactional id");
        Ok(())
    }

    /// KIP-890 part 1 for the transactional batches of one Produce partition, given as
    /// their (producer id, epoch): the guard to hold across their append, or why they are
    /// refused (invariant 4).
    pub fn verify(
        &self,
        batches: &[(i64, i16)],
        topic: &str,
        partition: i32,
    ) -> Result<Verified<'_>> {
        let inner = self.lock();
        if !inner.loaded {
            return Err(TxnError::Loading);
        }
        for (pid, epoch) in batches {
            let m = inner
                .by_pid
                .get(pid)
                .and_then(|id| inner.txns.get(id))
                .filter(|m| m.producer_id == *pid)
                .ok_or(TxnError::InvalidProducerIdMapping)?;
            if *epoch < m.epoch {
                return Err(TxnError::ProducerFenced);
            }
            if *epoch != m.epoch {
                return Err(TxnError::InvalidProducerEpoch);
            }
            if m.status != TxnStatus::Ongoing
                || !m.partitions.contains(&(topic.to_string(), partition))
            {
                return Err(TxnError::InvalidTxnState(
                    "the partition was not added to the transaction",
                ));
            }
        }
        Ok(Verified(inner))
    }

    /// Appends `batch` to a partition as a transactional batch of the Ongoing transaction
    /// of `(producer_id, epoch)`, for a producer inside this node (the engine's
    /// exactly-once tasks; internal topics allowed, as `Broker::append_owned`). The batch
    /// is stamped with the producer's id, epoch and next sequence number; the partition
    /// must have been added to the transaction ([`Self::add_partitions`]). Checked and
    /// appended under this coordinator's lock, then the partition's (invariant 4): a
    /// fenced producer appends nothing. Returns the first and last offsets.
    pub fn append_owned(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
        batch: &CheckedBatch,
    ) -> Result<(i64, i64)> {
        let _verified = self.verify(&[(producer_id, epoch)], topic, partition)?;
        let state = self.producers.partition(topic, partition);
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        producer::load(&self.broker, topic, partition, &mut state);
        let seq = state.next_sequence(producer_id, epoch);
        let b = batch.transactional(producer_id, epoch, seq);
        let delta = b.header().last_offset_delta;
        let (first, last) = self.broker.append_owned(topic, partition, &b)?;
        state.record(
            producer_id,
            epoch,
            seq,
            producer::last_sequence(seq, delta),
            first,
        );
        state.begin_txn(producer_id, first);
        Ok((first, last))
    }

    /// Closes the transactions a partition's state shows open (`open`: their producer ids)
    /// that this coordinator does not have in flight there, by writing the marker of how
    /// they ended: their transactional id's CompleteCommit or CompleteAbort, an abort for a
    /// producer id it does not know or a transactional id since reset to Empty. Only a lost
    /// marker (a crash losing unsynced writes) leaves such a transaction; without this, the
    /// partition's last stable offset would never move again. Skipped while the coordinator
    /// is busy (the next read tries again). Returns whether the partition may have changed.
    pub fn close_stale(&self, topic: &str, partition: i32, open: &[i64]) -> bool {
        let Ok(inner) = self.inner.try_lock() else {
            return false;
        };
        if !inner.loaded {
            return false;
        }
        let mut wrote = false;
        for pid in open {
            let meta = inner.by_pid.get(pid).and_then(|id| inner.txns.get(id));
            let (epoch, marker) = match meta {
                Some(m)
                    if matches!(
                        m.status,
                        TxnStatus::Ongoing | TxnStatus::PrepareCommit | TxnStatus::PrepareAbort
                    ) && m.partitions.contains(&(topic.to_string(), partition)) =>
                {
                    continue;
                }
                Some(m) if m.status == TxnStatus::CompleteCommit => (m.epoch, Marker::Commit),
                Some(m) => (m.epoch, Marker::Abort),
                None => (0, Marker::Abort),
            };
            tracing::warn!(
                topic,
                partition,
                producer_id = pid,
                ?marker,
                "closing a transaction left open without its marker"
            );
            // Only if still open: an EndTxn may have closed it since the caller looked.
            match self.write_marker(topic, partition, *pid, epoch, marker, true) {
                Ok(()) => wrote = true,
                Err(e) => {
                    tracing::warn!(topic, partition, error = %e, "could not close a stale transaction")
                }
            }
        }
        wrote
    }

    /// The state of one transactional id (DescribeTransactions).
    pub fn get(&self, id: &str) -> Option<TxnMeta> {
        self.lock().txns.get(id).cloned()
    }

    /// Every transactional id with its state (ListTransactions).
    pub fn all(&self) -> Vec<(String, TxnMeta)> {
        let inner = self.lock();
        let mut v: Vec<_> = inner
            .txns
            .iter()
            .map(|(k, m)| (k.clone(), m.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests;

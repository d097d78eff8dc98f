//! [`LogAccess`]: everything the engine asks of the log, as a trait the engine owns. Tasks
//! append, read from an offset, wait for new records, create their internal topics and
//! commit their input offsets through it, so they do not care which node leads a partition:
//! the local [`Broker`] implements it here, and on a cluster node [`ClusterLog`] (the
//! cluster's replicated topics at their leaders, wherever the task runs).
//!
//! Committed input offsets live in the log too (provided methods over append and read): one
//! compacted topic per processor, `<processor>.offsets`, partition *p* holding task *p*'s
//! latest commit under one key. A task that moves to another node finds them there.
//!
//! Reads in committed mode ([`LogAccess::read_committed`]) never return records of aborted
//! transactions nor records at or past a partition's last stable offset: tasks read their
//! inputs, restores and standbys read changelogs, and committed offsets are read that way
//! (the broker's `txn::committed`, the one implementation Kafka's read_committed Fetch uses
//! too). Exactly-once tasks write through the `txn_*` methods: the broker's own transaction
//! coordinator, with one transactional id per task (`task::transaction`).
//!
//! Assignment (which node runs which task) is not here: the [`crate::task::TaskManager`]'s
//! `assign` / `revoke` are what a cluster controller calls.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use weir_broker::batch::CheckedBatch;
use weir_broker::cluster::cluster_log::{ClusterLog, OwnedTopic};
use weir_broker::cluster::log_rpc::TaskFence;
use weir_broker::txn::TxnError;
use weir_broker::{
    Broker, BrokerError, ErrorKind, InternalTopic, ProduceRecord, StoredRecord, TopicSpec,
};

/// Key of the one record per partition of `<processor>.offsets`.
const OFFSETS_KEY: &[u8] = b"offsets";

/// Segment size of the offsets topics: small, so compaction keeps them short.
const OFFSETS_SEGMENT_BYTES: u64 = 1 << 20;

/// Why a log operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    /// Any other failure of the log, with the log's own stable code and class (a user's
    /// mistake the log refused stays a user's mistake in every layer above).
    #[error("{message}")]
    Log {
        code: &'static str,
        kind: ErrorKind,
        message: String,
    },
    #[error("corrupt committed offsets in '{topic}': {reason}")]
    CorruptOffsets { topic: String, reason: String },
}

impl LogError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            LogError::UnknownTopic(_) => "unknown_topic",
            LogError::Log { code, .. } => code,
            LogError::CorruptOffsets { .. } => "corrupt_offsets",
        }
    }

    /// Coarse class, as the broker classified it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LogError::UnknownTopic(_) => ErrorKind::NotFound,
            LogError::Log { kind, .. } => *kind,
            LogError::CorruptOffsets { .. } => ErrorKind::Corrupt,
        }
    }
}

impl From<BrokerError> for LogError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::UnknownTopic(t) => LogError::UnknownTopic(t),
            e => LogError::Log {
                code: e.code(),
                kind: e.kind(),
                message: e.to_string(),
            },
        }
    }
}

/// What the engine needs to know about a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    pub partitions: i32,
    pub compacted: bool,
    /// The owner of an internal topic (`processor:<name>`, `group-coordinator`): the
    /// engine's tasks may write it, processors' outputs and SQL's targets may not be it.
    pub owner: Option<String>,
}

impl TopicMeta {
    fn of(info: weir_broker::TopicInfo) -> Self {
        TopicMeta {
            partitions: info.partitions,
            compacted: info.compacted,
            owner: info.internal.map(|m| m.owner),
        }
    }

    fn owned(t: OwnedTopic) -> Self {
        TopicMeta {
            partitions: t.partitions,
            compacted: t.compacted,
            owner: t.owner,
        }
    }
}

/// Records read from one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRead {
    pub records: Vec<StoredRecord>,
    /// Where to read next (past the last record returned, or past a compaction gap).
    pub next_offset: i64,
    /// The partition's end offset when it was read.
    pub end_offset: i64,
}

/// A task's committed position: the next offset to process in each input partition
/// (`"<topic>/<partition>"` → offset) and its stream time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetCommit {
    pub inputs: BTreeMap<String, i64>,
    /// Largest event time the task had seen (`i64::MIN` before the first record).
    pub stream_time: i64,
    /// Processor version that made the commit.
    #[serde(default)]
    pub version: u64,
}

/// A transactional producer inside the node: an exactly-once task's id and epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnProducer {
    pub transactional_id: String,
    pub producer_id: i64,
    pub epoch: i16,
}

/// The error of a `txn_*` method on a log without transactions (a cluster: transactions
/// are not replicated yet).
pub fn transactions_unsupported() -> LogError {
    LogError::Log {
        code: "transactions_unsupported",
        kind: ErrorKind::InvalidInput,
        message: "exactly_once needs transactions, which a cluster does not replicate yet; \
                  use at_least_once on a cluster"
            .into(),
    }
}

impl From<TxnError> for LogError {
    fn from(e: TxnError) -> Self {
        let (code, kind) = match &e {
            TxnError::Broker(b) => {
                return LogError::Log {
                    code: b.code(),
                    kind: b.kind(),
                    message: e.to_string(),
                };
            }
            TxnError::ProducerFenced | TxnError::InvalidProducerEpoch => {
                ("task_fenced", ErrorKind::Conflict)
            }
            TxnError::Loading => ("unavailable", ErrorKind::Unavailable),
            TxnError::TooLarge(_) | TxnError::TooManyIds => {
                ("transaction_too_large", ErrorKind::InsufficientResources)
            }
            _ => ("transaction_failed", ErrorKind::Internal),
        };
        LogError::Log {
            code,
            kind,
            message: e.to_string(),
        }
    }
}

/// The record of one commit in `<processor>.offsets` (partition `partition`).
pub fn offsets_record(
    processor: &str,
    partition: i32,
    commit: &OffsetCommit,
) -> Result<ProduceRecord, LogError> {
    let value = serde_json::to_vec(commit).map_err(|e| LogError::CorruptOffsets {
        topic: offsets_topic(processor),
        reason: e.to_string(),
    })?;
    Ok(ProduceRecord {
        key: Some(Bytes::from_static(OFFSETS_KEY)),
        value: Some(Bytes::from(value)),
        partition: Some(partition),
        ..ProduceRecord::default()
    })
}

/// The offsets topic of a processor.
pub fn offsets_topic(processor: &str) -> String {
    format!("{processor}.offsets")
}

/// The spec of a processor's offsets topic: compacted, an internal topic of the processor.
pub fn offsets_spec(processor: &str, partitions: i32) -> TopicSpec {
    let mut spec = TopicSpec::new(offsets_topic(processor), partitions)
        .owned_by(InternalTopic::processor(processor));
    spec.compacted = true;
    spec.segment_bytes = Some(OFFSETS_SEGMENT_BYTES);
    spec
}

/// The log as the engine sees it. Methods block (disk or network): call them off the async
/// runtime.
pub trait LogAccess: Send + Sync + 'static {
    /// Partition count and compaction of a topic, `None` if it does not exist.
    fn topic_meta(&self, topic: &str) -> Result<Option<TopicMeta>, LogError>;
    /// Names of every topic.
    fn list_topics(&self) -> Result<Vec<String>, LogError>;
    /// Creates the topic unless it exists; returns the partition count it has. A spec with
    /// an internal-topic marker (`TopicSpec::owned_by`) creates the topic marked; an existing
    /// one must carry that marker already (an unmarked one is a client's: `topic_conflict`).
    fn ensure_topic(&self, spec: TopicSpec) -> Result<TopicMeta, LogError>;
    /// [`LogAccess::ensure_topic`] of an internal topic that marks an existing unmarked one:
    /// only for the topics of a deployment from a data dir older than the markers.
    fn adopt_topic(&self, spec: TopicSpec) -> Result<TopicMeta, LogError>;
    /// Deletes a topic, internal or not (the engine deletes its own); a missing topic is not
    /// an error. Writes through this trait may target internal topics too: the engine is
    /// their owner, and checks that processors' outputs and SQL's targets are not internal.
    fn delete_topic(&self, topic: &str) -> Result<(), LogError>;
    /// Checks a topic spec as creating it would (name, partitions, configs), without creating
    /// anything (so a script can be checked before any of it runs).
    fn check_topic(&self, _spec: &TopicSpec) -> Result<(), LogError> {
        Ok(())
    }
    /// Appends records, each naming its partition; returns `(partition, offset)` for each,
    /// in order, once durable under the topic's fsync policy.
    fn produce(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
    ) -> Result<Vec<(i32, i64)>, LogError>;
    /// Appends one RecordBatch v2 built with `weir_broker::batch_builder` (or validated) to a
    /// partition; returns the first and last offsets it got, once durable under the topic's
    /// fsync policy.
    fn append_batch(
        &self,
        topic: &str,
        partition: i32,
        batch: &CheckedBatch,
    ) -> Result<(i64, i64), LogError>;
    /// Up to `max_records` records (about `max_bytes`) at or after `offset`.
    fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<LogRead, LogError>;
    /// [`LogAccess::read`] in committed mode (module docs): `end_offset` is the last
    /// stable offset. A log without transactions reads as [`LogAccess::read`].
    fn read_committed(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<LogRead, LogError> {
        self.read(topic, partition, offset, max_records, max_bytes)
    }

    /// Exactly-once: the producer of `transactional_id` with a new epoch, which fences
    /// every older one (its transaction in flight is aborted first). Refused
    /// ([`transactions_unsupported`]) by a log without transactions.
    fn txn_init(&self, _transactional_id: &str, _timeout_ms: i32) -> Result<TxnProducer, LogError> {
        Err(transactions_unsupported())
    }

    /// Adds partitions to the producer's transaction (starting one), durably.
    fn txn_add_partitions(
        &self,
        _producer: &TxnProducer,
        _partitions: &[(String, i32)],
    ) -> Result<(), LogError> {
        Err(transactions_unsupported())
    }

    /// Appends a batch (of a partition added to the transaction) as the producer's
    /// transactional batch: invisible to committed readers until the transaction commits.
    fn txn_append(
        &self,
        _producer: &TxnProducer,
        _topic: &str,
        _partition: i32,
        _batch: &CheckedBatch,
    ) -> Result<(i64, i64), LogError> {
        Err(transactions_unsupported())
    }

    /// Commits (or aborts) the producer's transaction: returns once every marker is
    /// written and the outcome is durable in `__transaction_state`.
    fn txn_end(&self, _producer: &TxnProducer, _commit: bool) -> Result<(), LogError> {
        Err(transactions_unsupported())
    }

    /// `(start, end)` offsets of a partition.
    fn offsets(&self, topic: &str, partition: i32) -> Result<(i64, i64), LogError>;
    /// The partition's end offset, updated after every append (to wake a waiting task). The
    /// channel closes when the topic is deleted.
    fn watch_end(&self, topic: &str, partition: i32) -> Result<watch::Receiver<i64>, LogError>;

    /// Creates `<processor>.offsets` (compacted, `partitions` partitions) unless it exists.
    fn ensure_offsets_topic(&self, processor: &str, partitions: i32) -> Result<(), LogError> {
        self.ensure_topic(offsets_spec(processor, partitions))
            .map(|_| ())
    }

    /// [`LogAccess::produce`] of a task's commit on a cluster: refused
    /// (`task_fenced`) unless the writing node owns the task at `fence`'s assignment epoch.
    /// Unfenced where there is no cluster.
    fn produce_fenced(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
        _fence: &TaskFence,
    ) -> Result<Vec<(i32, i64)>, LogError> {
        self.produce(topic, records)
    }

    /// [`LogAccess::append_batch`] of a task's output on a cluster, fenced as
    /// [`LogAccess::produce_fenced`].
    fn append_batch_fenced(
        &self,
        topic: &str,
        partition: i32,
        batch: &CheckedBatch,
        _fence: &TaskFence,
    ) -> Result<(i64, i64), LogError> {
        self.append_batch(topic, partition, batch)
    }

    /// Records task `partition`'s committed position (replacing the previous one), under
    /// its `fence` on a cluster.
    fn commit_offsets(
        &self,
        processor: &str,
        partition: i32,
        commit: &OffsetCommit,
        fence: Option<&TaskFence>,
    ) -> Result<(), LogError> {
        let topic = offsets_topic(processor);
        let record = offsets_record(processor, partition, commit)?;
        match fence {
            Some(f) => self.produce_fenced(&topic, vec![record], f).map(|_| ()),
            None => self.produce(&topic, vec![record]).map(|_| ()),
        }
    }

    /// Task `partition`'s last committed position, `None` if it never committed.
    fn committed_offsets(
        &self,
        processor: &str,
        partition: i32,
    ) -> Result<Option<OffsetCommit>, LogError> {
        let topic = offsets_topic(processor);
        let (start, end) = match self.offsets(&topic, partition) {
            Ok(o) => o,
            Err(LogError::UnknownTopic(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        // Only one key is ever written, and the active segment is never compacted, so the
        // last committed record is the latest commit. It is read in committed mode (an
        // exactly-once task's offsets are transactional, and the newest batches may be
        // markers or an aborted commit), from a window before the end that grows until a
        // record is found.
        if end <= start {
            return Ok(None);
        }
        let mut window: i64 = 16;
        let record = loop {
            let from = end.saturating_sub(window).max(start);
            let mut last = None;
            let mut at = from;
            loop {
                let read = self.read_committed(&topic, partition, at, 1024, 4 << 20)?;
                if let Some(r) = read.records.into_iter().last() {
                    last = Some(r);
                }
                if read.next_offset <= at || read.next_offset >= read.end_offset {
                    break;
                }
                at = read.next_offset;
            }
            if last.is_some() || from <= start {
                break last;
            }
            window = window.saturating_mul(16);
        };
        let Some(record) = record else {
            return Ok(None);
        };
        let Some(value) = record.value else {
            return Ok(None);
        };
        serde_json::from_slice(&value)
            .map(Some)
            .map_err(|e| LogError::CorruptOffsets {
                topic,
                reason: e.to_string(),
            })
    }
}

impl LogAccess for Broker {
    fn topic_meta(&self, topic: &str) -> Result<Option<TopicMeta>, LogError> {
        match self.topic_info(topic) {
            Ok(info) => Ok(Some(TopicMeta::of(info))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn list_topics(&self) -> Result<Vec<String>, LogError> {
        Ok(Broker::list_topics(self)
            .into_iter()
            .map(|t| t.name)
            .collect())
    }

    fn ensure_topic(&self, spec: TopicSpec) -> Result<TopicMeta, LogError> {
        if spec.internal.is_some() {
            return Ok(TopicMeta::of(self.ensure_internal_topic(spec)?));
        }
        let name = spec.name.clone();
        match self.create_topic(spec) {
            Ok(info) => Ok(TopicMeta::of(info)),
            Err(BrokerError::TopicExists(_)) => {
                self.topic_meta(&name)?.ok_or(LogError::UnknownTopic(name))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn adopt_topic(&self, spec: TopicSpec) -> Result<TopicMeta, LogError> {
        Ok(TopicMeta::of(self.adopt_internal_topic(spec)?))
    }

    fn check_topic(&self, spec: &TopicSpec) -> Result<(), LogError> {
        self.check_topic_spec(spec)
            .map(|_| ())
            .map_err(LogError::from)
    }

    fn delete_topic(&self, topic: &str) -> Result<(), LogError> {
        match Broker::delete_owned_topic(self, topic) {
            Ok(()) => {
                // Committed offsets of it go with it (SQL `DROP … DELETE TOPIC` included).
                self.topic_deleted_by_client(topic);
                Ok(())
            }
            Err(BrokerError::UnknownTopic(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn produce(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
    ) -> Result<Vec<(i32, i64)>, LogError> {
        Ok(Broker::produce_owned(self, topic, records)?)
    }

    fn append_batch(
        &self,
        topic: &str,
        partition: i32,
        batch: &CheckedBatch,
    ) -> Result<(i64, i64), LogError> {
        Ok(Broker::append_owned(self, topic, partition, batch)?)
    }

    fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<LogRead, LogError> {
        let r = Broker::read(self, topic, partition, offset, max_records, max_bytes)?;
        Ok(LogRead {
            records: r.records,
            next_offset: r.next_offset,
            end_offset: r.end_offset,
        })
    }

    fn read_committed(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<LogRead, LogError> {
        let r = Broker::read_committed(self, topic, partition, offset, max_records, max_bytes)?;
        Ok(LogRead {
            records: r.records,
            next_offset: r.next_offset,
            end_offset: r.end_offset,
        })
    }

    fn txn_init(&self, transactional_id: &str, timeout_ms: i32) -> Result<TxnProducer, LogError> {
        let txn = self.txn_coordinator().ok_or_else(no_coordinator)?;
        let ids = self.producer_ids();
        let (producer_id, epoch) =
            txn.init(transactional_id, timeout_ms, None, &|| ids.allocate_local())?;
        Ok(TxnProducer {
            transactional_id: transactional_id.to_string(),
            producer_id,
            epoch,
        })
    }

    fn txn_add_partitions(
        &self,
        p: &TxnProducer,
        partitions: &[(String, i32)],
    ) -> Result<(), LogError> {
        let txn = self.txn_coordinator().ok_or_else(no_coordinator)?;
        Ok(txn.add_partitions(&p.transactional_id, p.producer_id, p.epoch, partitions)?)
    }

    fn txn_append(
        &self,
        p: &TxnProducer,
        topic: &str,
        partition: i32,
        batch: &CheckedBatch,
    ) -> Result<(i64, i64), LogError> {
        let txn = self.txn_coordinator().ok_or_else(no_coordinator)?;
        Ok(txn.append_owned(p.producer_id, p.epoch, topic, partition, batch)?)
    }

    fn txn_end(&self, p: &TxnProducer, commit: bool) -> Result<(), LogError> {
        let txn = self.txn_coordinator().ok_or_else(no_coordinator)?;
        Ok(txn.end(&p.transactional_id, p.producer_id, p.epoch, commit)?)
    }

    fn offsets(&self, topic: &str, partition: i32) -> Result<(i64, i64), LogError> {
        Ok(self.known_offsets(topic, partition)?)
    }

    fn watch_end(&self, topic: &str, partition: i32) -> Result<watch::Receiver<i64>, LogError> {
        Ok(Broker::watch_end(self, topic, partition)?)
    }
}

/// A broker with no transaction coordinator running (`TxnCoordinator::open_local` was not
/// called: a test, or a node being shut down).
fn no_coordinator() -> LogError {
    LogError::Log {
        code: "unavailable",
        kind: ErrorKind::Unavailable,
        message: "the node's transaction coordinator is not running".into(),
    }
}

/// On a cluster node: the cluster's replicated topics wherever the task runs (writes at the
/// partition's leader, reads from it below the high watermark, internal topics created
/// through the controller), this node's local topics as [`Broker`] serves them.
impl LogAccess for ClusterLog {
    fn topic_meta(&self, topic: &str) -> Result<Option<TopicMeta>, LogError> {
        Ok(ClusterLog::topic(self, topic)?.map(TopicMeta::owned))
    }

    fn list_topics(&self) -> Result<Vec<String>, LogError> {
        Ok(ClusterLog::list_topics(self))
    }

    fn ensure_topic(&self, spec: TopicSpec) -> Result<TopicMeta, LogError> {
        Ok(TopicMeta::owned(ClusterLog::ensure_topic(
            self, spec, false,
        )?))
    }

    fn adopt_topic(&self, spec: TopicSpec) -> Result<TopicMeta, LogError> {
        Ok(TopicMeta::owned(ClusterLog::ensure_topic(
            self, spec, true,
        )?))
    }

    fn check_topic(&self, spec: &TopicSpec) -> Result<(), LogError> {
        Ok(ClusterLog::check_topic(self, spec)?)
    }

    fn delete_topic(&self, topic: &str) -> Result<(), LogError> {
        Ok(ClusterLog::delete_topic(self, topic)?)
    }

    fn produce(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
    ) -> Result<Vec<(i32, i64)>, LogError> {
        Ok(ClusterLog::produce(self, topic, records)?)
    }

    fn produce_fenced(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
        fence: &TaskFence,
    ) -> Result<Vec<(i32, i64)>, LogError> {
        Ok(ClusterLog::produce_fenced(
            self,
            topic,
            records,
            Some(fence),
        )?)
    }

    fn append_batch_fenced(
        &self,
        topic: &str,
        partition: i32,
        batch: &CheckedBatch,
        fence: &TaskFence,
    ) -> Result<(i64, i64), LogError> {
        Ok(ClusterLog::append_fenced(
            self,
            topic,
            partition,
            batch,
            Some(fence),
        )?)
    }

    fn append_batch(
        &self,
        topic: &str,
        partition: i32,
        batch: &CheckedBatch,
    ) -> Result<(i64, i64), LogError> {
        Ok(ClusterLog::append(self, topic, partition, batch)?)
    }

    fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<LogRead, LogError> {
        let r = ClusterLog::read(self, topic, partition, offset, max_records, max_bytes)?;
        Ok(LogRead {
            records: r.records,
            next_offset: r.next_offset,
            end_offset: r.end_offset,
        })
    }

    fn offsets(&self, topic: &str, partition: i32) -> Result<(i64, i64), LogError> {
        Ok(ClusterLog::offsets(self, topic, partition)?)
    }

    fn watch_end(&self, topic: &str, partition: i32) -> Result<watch::Receiver<i64>, LogError> {
        Ok(ClusterLog::watch_end(self, topic, partition)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_broker::BrokerConfig;

    #[test]
    fn offsets_round_trip_through_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        let log: &dyn LogAccess = &broker;
        assert_eq!(log.committed_offsets("p", 0).unwrap(), None);
        log.ensure_offsets_topic("p", 2).unwrap();
        log.ensure_offsets_topic("p", 2).unwrap();
        assert_eq!(log.committed_offsets("p", 1).unwrap(), None);
        let mut c = OffsetCommit {
            stream_time: 7,
            version: 1,
            ..OffsetCommit::default()
        };
        c.inputs.insert("t/1".into(), 5);
        log.commit_offsets("p", 1, &c, None).unwrap();
        c.inputs.insert("t/1".into(), 9);
        log.commit_offsets("p", 1, &c, None).unwrap();
        assert_eq!(log.committed_offsets("p", 1).unwrap(), Some(c));
        assert_eq!(log.committed_offsets("p", 0).unwrap(), None);
        let meta = log.topic_meta("p.offsets").unwrap().unwrap();
        assert!(meta.compacted);
        assert_eq!(meta.partitions, 2);
        assert_eq!(log.topic_meta("nope").unwrap(), None);
        log.delete_topic("nope").unwrap();
    }
}

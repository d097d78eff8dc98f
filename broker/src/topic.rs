//! A topic on this node: its persisted spec (`topic.json`), its partitions (each a locked
//! [`PartitionLog`] plus a watch of its end offset for followers, or the reason it could not
//! be opened) and its counters.
//!
//! A [`Topic`] value is immutable: altering a topic's configs or adding partitions builds a
//! new one ([`Topic::altered`]) that shares the existing partitions (their logs, end-offset
//! watches and replicas) and counters, and the broker swaps it into its registry after the
//! new spec is in `topic.json`. Callers holding the old value keep a consistent view.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::watch;

use crate::cluster::replication::manager::ReplicaManager;
use crate::cluster::replication::replica::{self, Acks, PartitionReplica};
use crate::config::LogConfig;
use crate::error::{BrokerError, Result};
use crate::log::{FileCache, PartitionLog, PartitionSettings};
use crate::types::{InternalTopic, TopicInfo, TopicSpec};

/// Name of the file holding a topic's spec.
pub const SPEC_FILE: &str = "topic.json";

/// Counters for one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicStats {
    pub records_appended: u64,
    pub bytes_appended: u64,
    pub records_read: u64,
    pub bytes_read: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub records_appended: AtomicU64,
    pub bytes_appended: AtomicU64,
    pub records_read: AtomicU64,
    pub bytes_read: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> TopicStats {
        TopicStats {
            records_appended: self.records_appended.load(Ordering::Relaxed),
            bytes_appended: self.bytes_appended.load(Ordering::Relaxed),
            records_read: self.records_read.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
        }
    }
}

/// One partition: its log and a watch of its readable end offset, or why it could not be
/// opened (an offline partition answers every call with [`BrokerError::PartitionOffline`]).
///
/// A partition of a replicated topic (cluster mode) is written only through its replica
/// once the metadata applier attached it: appends go through
/// [`PartitionReplica::append_as_leader`] (refused unless this node leads at the current
/// epoch) and reads stop at the replica's high watermark. Until a replica is attached, or
/// after it is detached, the partition refuses both ([`BrokerError::NotLeader`]); it is
/// never written as a plain local log.
pub(crate) struct Partition {
    topic: String,
    index: i32,
    log: std::result::Result<Arc<Mutex<PartitionLog>>, String>,
    /// Single node: the log end after every append. Replicated: the high watermark.
    end: watch::Sender<i64>,
    replicated: bool,
    replica: RwLock<Option<Attached>>,
}

/// A replica attached to a partition, with the manager whose clock it runs on.
#[derive(Clone)]
struct Attached {
    replica: Arc<PartitionReplica>,
    manager: Arc<ReplicaManager>,
}

/// Where an append landed, and (replicated, `acks=all`) what it still waits for.
pub struct Appended {
    pub first: i64,
    pub last: i64,
    pub pending: Option<PendingReplication>,
}

/// An `acks=all` append waiting for the in-sync set ([`PendingReplication::wait`]).
pub struct PendingReplication {
    replica: Arc<PartitionReplica>,
    appended: replica::Appended,
}

impl PendingReplication {
    /// Resolves when the whole in-sync set has the batch (and it still has
    /// `min_insync_replicas` members); fails when leadership moves, the set shrinks below
    /// the minimum, or `timeout` passes. Never acknowledges what the in-sync set lacks.
    pub async fn wait(self, timeout: std::time::Duration) -> Result<()> {
        let leader = self.replica.leader();
        self.replica
            .wait_replicated(self.appended, timeout)
            .await
            .map_err(|e| e.into_broker(leader))
    }
}

impl Partition {
    pub fn lock(&self) -> Result<MutexGuard<'_, PartitionLog>> {
        Ok(self.log_mutex()?.lock().unwrap_or_else(|p| p.into_inner()))
    }
    pub fn log_mutex(&self) -> Result<&Mutex<PartitionLog>> {
        self.shared_log().map(|l| &**l)
    }
    /// The log, shared (the replica of a replicated partition holds it too).
    pub fn shared_log(&self) -> Result<&Arc<Mutex<PartitionLog>>> {
        self.log
            .as_ref()
            .map_err(|reason| BrokerError::PartitionOffline {
                topic: self.topic.clone(),
                partition: self.index,
                reason: reason.clone(),
            })
    }
    /// Why the partition is offline, or `None` when it serves.
    pub fn offline_reason(&self) -> Option<&str> {
        self.log.as_ref().err().map(String::as_str)
    }
    pub fn publish_end(&self, end: i64) {
        self.end.send_replace(end);
    }
    /// Whether the topic is replicated (cluster mode).
    pub fn is_replicated(&self) -> bool {
        self.replicated
    }
    fn attached(&self) -> Option<Attached> {
        self.replica
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    /// The attached replica, if any.
    pub fn replica(&self) -> Option<Arc<PartitionReplica>> {
        self.attached().map(|a| a.replica)
    }
    /// Attaches this node's replica (the metadata applier, once per replica).
    pub fn attach(&self, replica: Arc<PartitionReplica>, manager: Arc<ReplicaManager>) {
        *self.replica.write().unwrap_or_else(|p| p.into_inner()) =
            Some(Attached { replica, manager });
    }
    /// Detaches the replica: the partition refuses reads and writes again.
    pub fn detach(&self) {
        *self.replica.write().unwrap_or_else(|p| p.into_inner()) = None;
    }
    fn not_leader(&self, leader: Option<u64>) -> BrokerError {
        BrokerError::NotLeader {
            topic: self.topic.clone(),
            partition: self.index,
            leader,
        }
    }
    /// The end a reader may read up to, given the log's end: the log end on a single
    /// node, the high watermark of the attached replica when replicated (any replica may
    /// serve reads below its high watermark; the Kafka edge also checks leadership).
    pub fn readable_end(&self, log_end: i64) -> Result<i64> {
        if !self.replicated {
            return Ok(log_end);
        }
        // From the replica's published progress, not its state: callers hold the log lock,
        // and the replica takes its state lock before the log's (lock order state → log).
        match self.replica() {
            Some(r) => Ok(r.progress().high_watermark.min(log_end)),
            None => Err(self.not_leader(None)),
        }
    }
    /// [`Partition::readable_end`], refused while this replica leads and does not know the
    /// end yet ([`crate::cluster::replication::replica::Progress::end_known`]).
    pub fn known_end(&self, log_end: i64) -> Result<i64> {
        if self.replicated
            && let Some(r) = self.replica()
            && !r.progress().end_known()
        {
            return Err(BrokerError::OffsetNotAvailable {
                topic: self.topic.clone(),
                partition: self.index,
            });
        }
        self.readable_end(log_end)
    }
    /// Appends a checked batch ([`PartitionLog::append_checked`]) and publishes the new end.
    /// Replicated: as the leader, refused unless this node leads; `acks_all` refuses it
    /// before writing when the in-sync set is below `min_insync_replicas` and returns the
    /// wait for the in-sync set.
    pub fn append(&self, batch: &crate::batch::CheckedBatch, acks_all: bool) -> Result<Appended> {
        self.append_at(batch, acks_all, None)
    }
    /// [`Partition::append`]; replicated, refused unless this node leads at exactly
    /// `leader_epoch` when one is given (checked with the append).
    pub fn append_at(
        &self,
        batch: &crate::batch::CheckedBatch,
        acks_all: bool,
        leader_epoch: Option<i32>,
    ) -> Result<Appended> {
        if self.replicated {
            let Some(a) = self.attached() else {
                return Err(self.not_leader(None));
            };
            let acks = if acks_all { Acks::All } else { Acks::Leader };
            let done = a
                .replica
                .append_as_leader_at(batch, acks, a.manager.now_ms(), leader_epoch)
                .map_err(|e| e.into_broker(a.replica.leader()))?;
            return Ok(Appended {
                first: done.base_offset,
                last: done.last_offset,
                pending: acks_all.then(|| PendingReplication {
                    replica: a.replica,
                    appended: done,
                }),
            });
        }
        let (range, end) = {
            let mut log = self.lock()?;
            let range = log.append_checked(batch)?;
            (range, log.end_offset())
        };
        self.publish_end(end);
        Ok(Appended {
            first: range.0,
            last: range.1,
            pending: None,
        })
    }
    /// Replicated: whether an `acks=all` append would be accepted now (leader, enough of
    /// the in-sync set in sync); always for a local topic.
    pub fn check_acks_all(&self) -> Result<()> {
        if !self.replicated {
            return Ok(());
        }
        let Some(a) = self.attached() else {
            return Err(self.not_leader(None));
        };
        a.replica
            .check_acks_all(a.manager.now_ms())
            .map_err(|e| e.into_broker(a.replica.leader()))
    }

    pub fn watch_end(&self) -> watch::Receiver<i64> {
        self.end.subscribe()
    }
    /// Replicated: the wait for records `first..=last` already in this leader's log (a
    /// producer's retry of a batch appended before) to be covered by the high watermark.
    pub fn pending_for(&self, first: i64, last: i64) -> Option<PendingReplication> {
        let a = self.attached()?;
        let leader_epoch = a.replica.leader_epoch();
        Some(PendingReplication {
            replica: a.replica,
            appended: replica::Appended {
                base_offset: first,
                last_offset: last,
                leader_epoch,
            },
        })
    }
}

/// A topic and its partitions.
pub(crate) struct Topic {
    pub info: TopicInfo,
    pub dir: PathBuf,
    pub partitions: Vec<Arc<Partition>>,
    pub counters: Arc<Counters>,
    pub round_robin: AtomicU32,
    /// The internal-topic marker (`info.internal` as opened; it may be set later, when an
    /// owner adopts a topic of an older data dir).
    internal: RwLock<Option<InternalTopic>>,
}

/// Checks a topic name with Kafka's rules.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(BrokerError::InvalidTopicName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > 249 {
        return bad("must be at most 249 characters");
    }
    if name == "." || name == ".." {
        return bad("must not be '.' or '..'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("may contain only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// Checks a spec and resolves it against the server defaults.
pub fn resolve(spec: &TopicSpec, defaults: &LogConfig) -> Result<TopicInfo> {
    validate_name(&spec.name)?;
    let bad = |m: String| Err(BrokerError::InvalidConfig(m));
    if !(1..=10_000).contains(&spec.partitions) {
        return bad(format!(
            "partitions must be between 1 and 10000, got {}",
            spec.partitions
        ));
    }
    if spec.retention_ms.is_some_and(|v| v < 1) {
        return bad("retention_ms must be positive (or null for no limit)".into());
    }
    if spec.retention_bytes.is_some_and(|v| v < 1) {
        return bad("retention_bytes must be positive (or null for no limit)".into());
    }
    let segment_bytes = spec.segment_bytes.unwrap_or(defaults.segment_bytes);
    if !(1024..=1 << 30).contains(&segment_bytes) {
        return bad(format!(
            "segment_bytes must be between 1024 and 1073741824, got {segment_bytes}"
        ));
    }
    let segment_ms = spec.segment_ms.unwrap_or(defaults.segment_ms);
    if segment_ms < 1 {
        return bad("segment_ms must be positive".into());
    }
    let delete_retention_ms = spec
        .delete_retention_ms
        .unwrap_or(defaults.delete_retention_ms);
    if delete_retention_ms < 0 {
        return bad("delete_retention_ms must not be negative".into());
    }
    if spec.replication_factor == Some(0) {
        return bad("replication_factor must be at least 1".into());
    }
    if spec.min_insync_replicas == Some(0) {
        return bad("min_insync_replicas must be at least 1".into());
    }
    if let (Some(rf), Some(min)) = (spec.replication_factor, spec.min_insync_replicas)
        && min > rf
    {
        return bad(format!(
            "min_insync_replicas ({min}) must not exceed replication_factor ({rf})"
        ));
    }
    Ok(TopicInfo {
        name: spec.name.clone(),
        partitions: spec.partitions,
        compacted: spec.compacted,
        retention_ms: spec.retention_ms,
        retention_bytes: spec.retention_bytes,
        fsync: spec.fsync.unwrap_or(defaults.fsync),
        segment_bytes,
        segment_ms,
        delete_retention_ms,
        internal: spec.internal.clone(),
        cluster: spec.cluster.clone(),
    })
}

impl Topic {
    /// Counts `appended` (the records of `batch`) in the topic's append counters.
    pub fn count_appended(&self, appended: &Appended, batch: &crate::batch::CheckedBatch) {
        self.counters.records_appended.fetch_add(
            (appended.last - appended.first + 1) as u64,
            Ordering::Relaxed,
        );
        self.counters
            .bytes_appended
            .fetch_add(batch.bytes().len() as u64, Ordering::Relaxed);
    }

    /// Opens the partitions of a topic whose directory and spec exist. A partition that
    /// cannot be opened is kept offline with the reason (and logged); the others serve.
    pub fn open(
        dir: &Path,
        info: TopicInfo,
        defaults: &LogConfig,
        cache: &Arc<FileCache>,
    ) -> Result<Topic> {
        Self::open_partitions(dir, info, defaults, cache, false)
    }

    /// Opens a topic just created: every partition must open, or the first error returns.
    pub fn open_new(
        dir: &Path,
        info: TopicInfo,
        defaults: &LogConfig,
        cache: &Arc<FileCache>,
    ) -> Result<Topic> {
        Self::open_partitions(dir, info, defaults, cache, true)
    }

    fn open_partitions(
        dir: &Path,
        info: TopicInfo,
        defaults: &LogConfig,
        cache: &Arc<FileCache>,
        strict: bool,
    ) -> Result<Topic> {
        let mut partitions = Vec::with_capacity(info.partitions as usize);
        for p in 0..info.partitions {
            partitions.push(Arc::new(open_partition(
                dir, &info, defaults, cache, p, strict,
            )?));
        }
        Ok(Topic {
            internal: RwLock::new(info.internal.clone()),
            info,
            dir: dir.to_path_buf(),
            partitions,
            counters: Arc::new(Counters::default()),
            round_robin: AtomicU32::new(0),
        })
    }

    /// This topic with new settings `info` (its partitions' logs switched to them) and, when
    /// `info` has more partitions, the new ones opened empty (a directory left over from an
    /// interrupted grow is removed first). The existing partitions and counters are shared.
    pub fn altered(
        &self,
        info: TopicInfo,
        defaults: &LogConfig,
        cache: &Arc<FileCache>,
    ) -> Result<Topic> {
        let settings = settings_for(&info, defaults);
        let mut partitions = self.partitions.clone();
        for p in self.info.partitions..info.partitions {
            let pdir = self.dir.join(p.to_string());
            match std::fs::remove_dir_all(&pdir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(BrokerError::io(&pdir, e)),
            }
            partitions.push(Arc::new(open_partition(
                &self.dir, &info, defaults, cache, p, true,
            )?));
        }
        crate::log::sync_dir(&self.dir)?;
        for p in &self.partitions {
            if let Ok(mut log) = p.lock() {
                log.set_settings(settings.clone());
            }
        }
        Ok(Topic {
            internal: RwLock::new(self.internal()),
            info,
            dir: self.dir.clone(),
            partitions,
            counters: Arc::clone(&self.counters),
            round_robin: AtomicU32::new(self.round_robin.load(Ordering::Relaxed)),
        })
    }

    /// Writes `spec` as the topic's `topic.json` (a temporary file, synced, renamed over the
    /// old one, the directory synced).
    pub fn write_spec(&self, spec: &TopicSpec) -> Result<()> {
        let path = self.dir.join(SPEC_FILE);
        let json = serde_json::to_vec_pretty(spec)
            .map_err(|e| BrokerError::InvalidConfig(e.to_string()))?;
        let tmp = self.dir.join(format!("{SPEC_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()
        };
        write().map_err(|e| BrokerError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| BrokerError::io(&path, e))?;
        crate::log::sync_dir(&self.dir)
    }

    /// The topic's spec as persisted in `topic.json`.
    pub fn read_spec(&self) -> Result<TopicSpec> {
        let path = self.dir.join(SPEC_FILE);
        let raw = std::fs::read(&path).map_err(|e| BrokerError::io(&path, e))?;
        serde_json::from_slice(&raw).map_err(|e| BrokerError::CorruptFile {
            path: path.clone(),
            reason: e.to_string(),
        })
    }

    /// Partitions that could not be opened, with the reason.
    pub fn offline(&self) -> impl Iterator<Item = (i32, &str)> {
        self.partitions
            .iter()
            .filter_map(|p| p.offline_reason().map(|r| (p.index, r)))
    }

    /// The internal-topic marker, if the server owns this topic.
    pub fn internal(&self) -> Option<InternalTopic> {
        self.internal
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The topic's settings with its current marker.
    pub fn current_info(&self) -> TopicInfo {
        TopicInfo {
            internal: self.internal(),
            ..self.info.clone()
        }
    }

    /// Marks the topic as owned by `owner`, in `topic.json` (written to a temporary file,
    /// synced, renamed over the old one) and then in memory.
    pub fn set_internal(&self, owner: InternalTopic) -> Result<()> {
        let mut spec = self.read_spec()?;
        spec.internal = Some(owner.clone());
        self.write_spec(&spec)?;
        *self.internal.write().unwrap_or_else(|p| p.into_inner()) = Some(owner);
        Ok(())
    }

    pub fn partition(&self, p: i32) -> Result<&Partition> {
        usize::try_from(p)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .map(|p| &**p)
            .ok_or_else(|| BrokerError::UnknownPartition {
                topic: self.info.name.clone(),
                partition: p,
            })
    }
}

/// The settings the partitions of `info` run with.
fn settings_for(info: &TopicInfo, defaults: &LogConfig) -> PartitionSettings {
    PartitionSettings {
        segment_bytes: info.segment_bytes,
        segment_ms: info.segment_ms,
        index_interval_bytes: defaults.index_interval_bytes,
        fsync: info.fsync,
        max_batch_bytes: defaults.max_batch_bytes,
        retention_ms: info.retention_ms,
        retention_bytes: info.retention_bytes,
        compacted: info.compacted,
        delete_retention_ms: info.delete_retention_ms,
    }
}

/// Opens partition `p` of the topic in `dir`: strictly (its error returned) or kept offline
/// with the reason (logged).
fn open_partition(
    dir: &Path,
    info: &TopicInfo,
    defaults: &LogConfig,
    cache: &Arc<FileCache>,
    p: i32,
    strict: bool,
) -> Result<Partition> {
    let settings = settings_for(info, defaults);
    let log = match PartitionLog::open_in(&dir.join(p.to_string()), settings, cache) {
        Ok(log) => Ok(Arc::new(Mutex::new(log))),
        Err(e) if strict => return Err(e),
        Err(e) => {
            tracing::error!(topic = %info.name, partition = p, error = %e, "partition is offline: it could not be opened");
            Err(e.to_string())
        }
    };
    let end_offset = log.as_ref().map_or(0, |l| {
        l.lock().unwrap_or_else(|p| p.into_inner()).end_offset()
    });
    let (end, _) = watch::channel(end_offset);
    Ok(Partition {
        topic: info.name.clone(),
        index: p,
        log,
        end,
        replicated: info.cluster.is_some(),
        replica: RwLock::new(None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["a", "orders", "my.topic_1-x", &"x".repeat(249)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ü", &"x".repeat(250)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}

//! The [`Broker`] facade: the registry of topics on one node and the only entry point the
//! layers above (HTTP, CLI, engine, Kafka handlers) use to touch the log. It owns the data
//! directory layout (`topics/<name>/topic.json`, `topics/<name>/<partition>/`), partition
//! choice for produced records, and the background flusher and cleaner. It admits a topic
//! only if the node's partition budget (`FilesConfig`) has room, creates it atomically
//! (staged under `staging/`, renamed into `topics/`, removed again if it cannot be opened),
//! and at start opens every topic it can: a topic or partition that cannot be opened is
//! reported (log, [`Broker::unavailable`], describe) and the rest of the node serves.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::batch;
use crate::batch_builder::BatchBuilder;
use crate::cluster::replication::ReplicationError;
use crate::cluster::replication::manager::ReplicaManager;
use crate::cluster::replication::messages::{FetchError, TopicPartition};
use crate::cluster::replication::replica::{PartitionReplica, Progress};
use crate::config::{BrokerConfig, FsyncPolicy};
use crate::error::{BrokerError, Result};
use crate::guard::{self, TopicGuard};
use crate::kafka::producer::{ProducerIds, ProducerStates};
use crate::log::{FileCache, FileCacheStats, cleaner, now_ms};
use crate::partitioner::partition_for_key;
use crate::topic::{self, Appended, PendingReplication, SPEC_FILE, Topic, TopicStats};
use crate::txn::TxnCoordinator;
use crate::types::{
    PartitionInfo, PartitionStatus, ProduceRecord, ReadResult, StoredRecord, TopicDescription,
    TopicInfo, TopicSpec,
};

/// What [`Broker::on_client_topic_deleted`] registers.
pub type TopicDeletedHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Records of one produce request are split into batches of about this many bytes.
const PRODUCE_CHUNK_BYTES: usize = 1 << 20;

/// Handle to the node's log. Cheap to clone; all clones share the same topics.
///
/// Methods that touch disk are blocking: call them from `spawn_blocking` in async code.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    config: BrokerConfig,
    topics_dir: PathBuf,
    trash_dir: PathBuf,
    staging_dir: PathBuf,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Topic directories found at start that could not be opened: (name, reason).
    broken_topics: RwLock<Vec<(String, String)>>,
    /// Every segment and index file of the node is opened through this bounded cache.
    files: Arc<FileCache>,
    /// Serialises topic creation and deletion (not appends or reads).
    admin: std::sync::Mutex<()>,
    /// Who owns and uses topics (the engine), asked before a client deletes one.
    guard: RwLock<Option<Arc<dyn TopicGuard>>>,
    /// Called with the name of every topic a client deleted (the group coordinator deletes
    /// the committed offsets of it).
    deleted_hooks: RwLock<Vec<TopicDeletedHook>>,
    /// Idempotent and transactional producer state of every partition
    /// (`kafka::producer`): one per node, shared by the Kafka listener, the transaction
    /// coordinator and read_committed readers ([`Broker::read_committed`]).
    producers: Arc<ProducerStates>,
    /// A single node's producer ids (the Kafka listener's and the engine's transactions').
    producer_ids: Arc<ProducerIds>,
    /// The single node's transaction coordinator once one runs (`txn::TxnCoordinator::
    /// open_local`); weak because it holds this broker.
    txn: RwLock<Weak<TxnCoordinator>>,
    /// Held (flock) for the broker's lifetime so two processes never share a data dir.
    _lock: std::fs::File,
}

/// Background work (interval fsync, retention, compaction) started by
/// [`Broker::start_background`]. [`BackgroundTasks::stop`] ends it.
pub struct BackgroundTasks {
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl BackgroundTasks {
    /// Stops the tasks (work in progress on a blocking thread finishes on its own).
    pub async fn stop(self) {
        for h in &self.handles {
            h.abort();
        }
        for h in self.handles {
            let _ = h.await;
        }
    }
}

/// What one cleanup pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    pub segments_deleted: usize,
    pub segments_compacted: usize,
    pub records_compacted_away: u64,
}

/// How long a replicated write waits for its in-sync set before it fails (Kafka's default
/// `request.timeout.ms`).
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits (blocking) for replicated writes: used by the blocking facade methods, which run
/// on a Tokio blocking thread (`spawn_blocking`) where the runtime can be entered.
fn wait_replicated(pending: impl IntoIterator<Item = PendingReplication>) -> Result<()> {
    let pending: Vec<_> = pending.into_iter().collect();
    if pending.is_empty() {
        return Ok(());
    }
    let handle = tokio::runtime::Handle::try_current().map_err(|_| {
        BrokerError::ReplicaConflict("a replicated write needs the Tokio runtime".into())
    })?;
    handle.block_on(async move {
        for p in pending {
            p.wait(REPLICATION_TIMEOUT).await?;
        }
        Ok(())
    })
}

/// The indices of `records` per partition of a topic of `n` partitions: each record's
/// explicit partition, else its key's (Kafka's partitioner), else `unkeyed`; refused whole
/// when one names a partition the topic lacks, lacks the key a compacted topic needs, or
/// has a negative timestamp.
pub(crate) fn by_partition(
    topic: &str,
    records: &[ProduceRecord],
    n: i32,
    compacted: bool,
    unkeyed: i32,
) -> Result<Vec<Vec<usize>>> {
    let mut by_partition: Vec<Vec<usize>> = vec![Vec::new(); usize::try_from(n).unwrap_or(0)];
    for (i, r) in records.iter().enumerate() {
        let p = match (r.partition, &r.key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, n),
            (None, None) => unkeyed,
        };
        let slot = usize::try_from(p)
            .ok()
            .filter(|p| *p < by_partition.len())
            .ok_or_else(|| BrokerError::UnknownPartition {
                topic: topic.to_string(),
                partition: p,
            })?;
        if compacted && r.key.is_none() {
            return Err(BrokerError::InvalidRecord(format!(
                "record {i}: compacted topic '{topic}' requires a key"
            )));
        }
        if r.timestamp.is_some_and(|ts| ts < 0) {
            return Err(BrokerError::InvalidRecord(format!(
                "record {i}: negative timestamp"
            )));
        }
        by_partition[slot].push(i);
    }
    Ok(by_partition)
}

fn remove_dir(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BrokerError::io(path, e)),
    }
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| BrokerError::io(path, e))
}

impl Broker {
    /// Opens (or creates) the data directory and recovers every topic found in it.
    pub fn open(config: BrokerConfig) -> Result<Broker> {
        config.validate()?;
        create_dir(&config.data_dir)?;
        let lock_path = config.data_dir.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| BrokerError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(BrokerError::DataDirLocked(config.data_dir.clone()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(BrokerError::io(&lock_path, e)),
        }
        let topics_dir = config.data_dir.join("topics");
        let trash_dir = config.data_dir.join("trash");
        let staging_dir = config.data_dir.join("staging");
        // Deletions and creations interrupted by a crash are finished or undone here.
        remove_dir(&trash_dir)?;
        remove_dir(&staging_dir)?;
        for d in [&topics_dir, &trash_dir, &staging_dir] {
            create_dir(d)?;
        }
        let files = Arc::new(FileCache::new(config.files.max_open_files));
        let mut topics = HashMap::new();
        let mut broken = Vec::new();
        let entries =
            std::fs::read_dir(&topics_dir).map_err(|e| BrokerError::io(&topics_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| BrokerError::io(&topics_dir, e))?;
            let dir = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            // One topic that cannot be opened never keeps the node from starting.
            match open_topic(&dir, &config, &files) {
                Ok(t) => {
                    let offline = t.offline().count();
                    if offline > 0 {
                        tracing::error!(topic = %t.info.name, offline, "topic opened with offline partitions");
                    } else {
                        tracing::info!(topic = %t.info.name, partitions = t.info.partitions, "opened topic");
                    }
                    topics.insert(t.info.name.clone(), Arc::new(t));
                }
                Err(e) => {
                    tracing::error!(topic = %name, error = %e, "topic is unavailable: it could not be opened");
                    broken.push((name, e.to_string()));
                }
            }
        }
        let total: usize = topics.values().map(|t| t.info.partitions as usize).sum();
        if total > config.files.max_partitions {
            tracing::warn!(
                partitions = total,
                max_partitions = config.files.max_partitions,
                "the node holds more partitions than it admits; new topics will be refused"
            );
        }
        Ok(Broker {
            inner: Arc::new(Inner {
                config,
                topics_dir,
                trash_dir,
                staging_dir,
                topics: RwLock::new(topics),
                broken_topics: RwLock::new(broken),
                files,
                admin: std::sync::Mutex::new(()),
                guard: RwLock::new(None),
                deleted_hooks: RwLock::new(Vec::new()),
                producers: Arc::new(ProducerStates::default()),
                producer_ids: Arc::new(ProducerIds::default()),
                txn: RwLock::new(Weak::new()),
                _lock: lock,
            }),
        })
    }

    /// Topics and partitions that could not be opened at start, as
    /// (topic, partition or `None` for the whole topic, reason), sorted.
    pub fn unavailable(&self) -> Vec<(String, Option<i32>, String)> {
        let mut v: Vec<_> = self
            .inner
            .broken_topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(t, r)| (t.clone(), None, r.clone()))
            .collect();
        for t in self.all_topics() {
            v.extend(
                t.offline()
                    .map(|(p, r)| (t.info.name.clone(), Some(p), r.to_string())),
            );
        }
        v.sort();
        v
    }

    /// Partitions of `name` that could not be opened at start (they answer with
    /// [`BrokerError::PartitionOffline`]).
    pub fn offline_partitions(&self, name: &str) -> Result<Vec<i32>> {
        Ok(self.topic(name)?.offline().map(|(p, _)| p).collect())
    }

    /// The open-file cache's size and counters.
    pub fn file_cache_stats(&self) -> FileCacheStats {
        self.inner.files.stats()
    }

    /// Partitions over every topic of the node.
    pub fn total_partitions(&self) -> usize {
        self.all_topics()
            .iter()
            .map(|t| t.info.partitions as usize)
            .sum()
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// Checks a topic spec against the rules and defaults [`Broker::create_topic`] applies,
    /// without touching the disk (SQL checks a whole script before running any of it).
    pub fn check_topic_spec(&self, spec: &TopicSpec) -> Result<TopicInfo> {
        topic::resolve(spec, &self.inner.config.log)
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        let topics = self.inner.topics.read().unwrap_or_else(|p| p.into_inner());
        topics
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))
    }

    fn all_topics(&self) -> Vec<Arc<Topic>> {
        let topics = self.inner.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.values().cloned().collect()
    }

    /// Creates a topic for a client (HTTP, Kafka): a spec may not carry the internal-topic
    /// marker, which only the topics' owners set ([`Broker::ensure_internal_topic`]).
    pub fn create_topic(&self, spec: TopicSpec) -> Result<TopicInfo> {
        guard::check_client_spec(&spec)?;
        self.create(spec)
    }

    /// Creates (marked) the internal topic `spec` names for `spec.internal`'s owner, or
    /// returns it if it exists marked for that owner. An existing topic without the marker
    /// was made by a client and is not adopted ([`BrokerError::TopicConflict`]); one marked
    /// for another owner is [`BrokerError::InternalTopic`].
    pub fn ensure_internal_topic(&self, spec: TopicSpec) -> Result<TopicInfo> {
        self.ensure_marked(spec, false)
    }

    /// [`Broker::ensure_internal_topic`] that also marks an existing unmarked topic: only
    /// for a data dir older than the markers, where the owner's own topics carry none, and
    /// for names no client may create (`__consumer_offsets`).
    pub fn adopt_internal_topic(&self, spec: TopicSpec) -> Result<TopicInfo> {
        self.ensure_marked(spec, true)
    }

    fn ensure_marked(&self, spec: TopicSpec, adopt: bool) -> Result<TopicInfo> {
        let Some(owner) = spec.internal.clone() else {
            return Err(BrokerError::InvalidConfig(format!(
                "internal topic '{}' needs an owner",
                spec.name
            )));
        };
        let name = spec.name.clone();
        match self.create(spec) {
            Err(BrokerError::TopicExists(_)) => {}
            created => return created,
        }
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        let t = self.topic(&name)?;
        match t.internal() {
            Some(m) if m == owner => {}
            Some(m) => {
                return Err(BrokerError::InternalTopic {
                    topic: name,
                    owner: m.owner,
                });
            }
            None if !adopt => {
                return Err(BrokerError::TopicConflict {
                    topic: name,
                    owner: owner.owner,
                });
            }
            None => {
                t.set_internal(owner.clone())?;
                tracing::info!(topic = %name, owner = %owner.owner, "marked as an internal topic");
            }
        }
        Ok(t.current_info())
    }

    /// Cluster mode (the metadata applier): makes sure the local copy of the replicated
    /// topic `spec` describes (its `cluster` marker set) exists. A local copy of an older
    /// topic of the same name (another topic id: deleted and recreated while this node was
    /// away) is deleted first; a local topic without the marker (a single-node topic) is a
    /// conflict and stays as it is. Returns whether it created the topic.
    pub fn ensure_replicated_topic(&self, spec: TopicSpec) -> Result<bool> {
        let Some(marker) = spec.cluster.clone() else {
            return Err(BrokerError::InvalidConfig(format!(
                "replicated topic '{}' needs its cluster marker",
                spec.name
            )));
        };
        if let Ok(t) = self.topic(&spec.name) {
            match &t.info.cluster {
                Some(m) if m.topic_id == marker.topic_id => return Ok(false),
                Some(m) => {
                    tracing::info!(topic = %spec.name, old_id = m.topic_id, new_id = marker.topic_id, "replacing the local copy of a deleted topic");
                    self.delete_owned_topic(&spec.name)?;
                }
                None => {
                    return Err(BrokerError::TopicConflict {
                        topic: spec.name.clone(),
                        owner: "the cluster".into(),
                    });
                }
            }
        }
        self.create(spec)?;
        Ok(true)
    }

    /// Cluster mode: the local replicated topics and their topic ids.
    pub fn replicated_topics(&self) -> Vec<(String, u64)> {
        self.all_topics()
            .iter()
            .filter_map(|t| Some((t.info.name.clone(), t.info.cluster.as_ref()?.topic_id)))
            .collect()
    }

    /// Cluster mode: registers this node's replica of a partition of a replicated topic
    /// with `manager` over the partition's log and attaches it, so that appends and reads
    /// go through it. Returns the replica already attached, if any.
    pub fn attach_replica(
        &self,
        topic: &str,
        partition: i32,
        manager: &Arc<ReplicaManager>,
        min_insync: usize,
    ) -> Result<Arc<PartitionReplica>> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        if let Some(r) = p.replica() {
            return Ok(r);
        }
        if !p.is_replicated() {
            return Err(BrokerError::ReplicaConflict(format!(
                "{topic}/{partition} is a local topic, not replicated"
            )));
        }
        let log = Arc::clone(p.shared_log()?);
        let replica = manager.add_partition(TopicPartition::new(topic, partition), log, min_insync);
        p.attach(Arc::clone(&replica), Arc::clone(manager));
        Ok(replica)
    }

    /// Cluster mode: detaches a partition's replica (the partition refuses reads and writes
    /// until one is attached again).
    pub fn detach_replica(&self, topic: &str, partition: i32) {
        if let Ok(t) = self.topic(topic)
            && let Ok(p) = t.partition(partition)
        {
            p.detach();
        }
    }

    /// A client's append (Kafka Produce) with its acks: [`Broker::append_with_acks`] after
    /// the internal-topic check.
    pub fn append_client(
        &self,
        topic: &str,
        partition: i32,
        batch: &batch::CheckedBatch,
        acks_all: bool,
    ) -> Result<Appended> {
        guard::check_write(topic, self.topic(topic)?.internal().as_ref())?;
        self.append_with_acks(topic, partition, batch, acks_all)
    }

    /// Whether this node serves clients for the partition: always for a local topic; for
    /// a replicated one only while its replica leads ([`BrokerError::NotLeader`] names the
    /// leader it follows otherwise).
    pub fn check_leader(&self, topic: &str, partition: i32) -> Result<()> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        if !p.is_replicated() {
            return Ok(());
        }
        match p.replica() {
            Some(r) if r.progress().is_leader => Ok(()),
            r => Err(BrokerError::NotLeader {
                topic: topic.to_string(),
                partition,
                leader: r.and_then(|r| r.leader()),
            }),
        }
    }

    /// Whether an `acks=all` append to the partition would be accepted now (for a
    /// replicated one: this node leads and enough of the in-sync set is in sync, else
    /// `NotLeader` / `NotEnoughReplicas`). The Kafka edge checks it before sequence numbers.
    pub fn check_acks_all(&self, topic: &str, partition: i32) -> Result<()> {
        self.topic(topic)?.partition(partition)?.check_acks_all()
    }

    /// Replicated: the wait for records `first..=last` already in the leader's log (an
    /// idempotent producer's retry) to be replicated; `None` for a local topic.
    pub fn pending_replication(
        &self,
        topic: &str,
        partition: i32,
        first: i64,
        last: i64,
    ) -> Option<PendingReplication> {
        let t = self.topic(topic).ok()?;
        t.partition(partition).ok()?.pending_for(first, last)
    }

    /// The leader epoch this node's replica of the partition is at (`None` for a local
    /// topic or a replicated partition without a replica yet).
    pub fn leader_epoch(&self, topic: &str, partition: i32) -> Option<i32> {
        let t = self.topic(topic).ok()?;
        let p = t.partition(partition).ok()?;
        p.replica().map(|r| r.leader_epoch())
    }

    /// Publishes a partition's readable end (the metadata applier forwards a replica's high
    /// watermark here, for the readers that follow the partition).
    pub fn publish_readable_end(&self, topic: &str, partition: i32, end: i64) {
        if let Ok(t) = self.topic(topic)
            && let Ok(p) = t.partition(partition)
        {
            p.publish_end(end);
        }
    }

    /// The node's producer state (idempotence, open and aborted transactions).
    pub fn producer_states(&self) -> Arc<ProducerStates> {
        self.inner.producers.clone()
    }

    /// A single node's producer-id allocator.
    pub fn producer_ids(&self) -> Arc<ProducerIds> {
        self.inner.producer_ids.clone()
    }

    /// Registers the node's running transaction coordinator (kept weakly).
    pub fn set_txn_coordinator(&self, txn: &Arc<TxnCoordinator>) {
        *self.inner.txn.write().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(txn);
    }

    /// The node's transaction coordinator, if one runs.
    pub fn txn_coordinator(&self) -> Option<Arc<TxnCoordinator>> {
        self.inner
            .txn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade()
    }

    /// Registers who owns and uses topics (the engine); deletes by clients ask it.
    pub fn set_topic_guard(&self, g: Arc<dyn TopicGuard>) {
        *self.inner.guard.write().unwrap_or_else(|p| p.into_inner()) = Some(g);
    }

    /// Creates a topic, atomically: it is refused before anything is written if the node's
    /// partition budget has no room for it; its directory appears under `topics/` only once
    /// complete; and if its partitions cannot be opened there it is removed again, so a
    /// failed create leaves nothing behind.
    fn create(&self, spec: TopicSpec) -> Result<TopicInfo> {
        let info = topic::resolve(&spec, &self.inner.config.log)?;
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        self.check_new_topic(&spec)?;
        let final_dir = self.inner.topics_dir.join(&spec.name);
        let staged = self.inner.staging_dir.join(&spec.name);
        if let Err(e) = stage_topic(&staged, &spec) {
            discard(&staged);
            return Err(e);
        }
        if let Err(e) = std::fs::rename(&staged, &final_dir) {
            discard(&staged);
            return Err(BrokerError::io(&final_dir, e));
        }
        let opened = crate::log::sync_dir(&self.inner.topics_dir).and_then(|()| {
            Topic::open_new(
                &final_dir,
                info.clone(),
                &self.inner.config.log,
                &self.inner.files,
            )
        });
        let t = match opened {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(topic = %spec.name, error = %e, "could not open the new topic; removing it");
                self.discard_created(&spec.name, &final_dir);
                return Err(e);
            }
        };
        let mut topics = self.inner.topics.write().unwrap_or_else(|p| p.into_inner());
        topics.insert(spec.name.clone(), Arc::new(t));
        tracing::info!(topic = %spec.name, partitions = spec.partitions, "created topic");
        Ok(info)
    }

    /// Whether [`create_topic`](Self::create_topic) would accept `spec` now (a dry run:
    /// validation, name taken, partition budget), without writing anything.
    pub fn check_new_topic(&self, spec: &TopicSpec) -> Result<()> {
        topic::resolve(spec, &self.inner.config.log)?;
        let final_dir = self.inner.topics_dir.join(&spec.name);
        // A directory left by a topic that could not be opened at start also takes the name.
        if self.topic(&spec.name).is_ok() || final_dir.symlink_metadata().is_ok() {
            return Err(BrokerError::TopicExists(spec.name.clone()));
        }
        self.admit_partitions(&spec.name, spec.partitions)
    }

    /// Refuses `partitions` more partitions if the node would then hold more than it admits
    /// (each partition may need its active segment open; see `FilesConfig`).
    fn admit_partitions(&self, topic: &str, partitions: i32) -> Result<()> {
        let limit = self.inner.config.files.max_partitions;
        let total = self.total_partitions();
        let after = total.saturating_add(usize::try_from(partitions).unwrap_or(usize::MAX));
        if after > limit {
            return Err(BrokerError::PolicyViolation(format!(
                "topic '{topic}' with {partitions} partitions would bring this node to {after} \
                 partitions, over its limit of {limit} (--max-partitions, derived from the \
                 open-file limit); {} are in use",
                total
            )));
        }
        Ok(())
    }

    /// Undoes a create whose directory is already under `topics/`: moved to `trash/` (one
    /// rename, so a crash leaves no half-topic) and removed.
    fn discard_created(&self, name: &str, dir: &Path) {
        let trash = self.inner.trash_dir.join(format!("{name}-{}", now_ms()));
        match std::fs::rename(dir, &trash) {
            Ok(()) => {
                let _ = crate::log::sync_dir(&self.inner.topics_dir);
                discard(&trash);
            }
            Err(e) => {
                tracing::error!(topic = %name, error = %e, "could not move the failed topic away; removing it in place");
                discard(dir);
            }
        }
    }

    /// Deletes a topic and its data for a client (HTTP, Kafka, SQL): refused for an
    /// internal topic whose owner exists, and for a topic a processor or query reads or
    /// writes ([`guard::check_delete`]).
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        self.check_client_delete(name)?;
        self.delete_owned_topic(name)?;
        self.topic_deleted_by_client(name);
        Ok(())
    }

    /// Registers `hook`, called (blocking, no broker lock held) with the name of every
    /// topic a client or the engine deletes ([`Broker::delete_topic`]; the engine's log
    /// access and, on a cluster after the controller deleted a replicated topic, the Kafka
    /// and HTTP edges call [`Broker::topic_deleted_by_client`]). Not when a cluster node
    /// drops its local copy of a topic that lives on elsewhere.
    /// The hook must not hold the broker (a cycle would keep the data dir locked).
    pub fn on_client_topic_deleted(&self, hook: TopicDeletedHook) {
        self.inner
            .deleted_hooks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    /// Runs the hooks of [`Broker::on_client_topic_deleted`] for `name`.
    pub fn topic_deleted_by_client(&self, name: &str) {
        let hooks = self
            .inner
            .deleted_hooks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for h in hooks {
            h(name);
        }
    }

    /// Whether a client may delete `name` now ([`Broker::delete_topic`]'s checks, without
    /// deleting: cluster mode deletes through the controller after asking this).
    pub fn check_client_delete(&self, name: &str) -> Result<()> {
        let internal = self.topic(name)?.internal();
        let g = self
            .inner
            .guard
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        guard::check_delete(name, internal.as_ref(), g.as_deref())
    }

    /// Deletes a topic and its data, internal or not: for the topics' owners (the engine
    /// deleting a processor).
    pub fn delete_owned_topic(&self, name: &str) -> Result<()> {
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        let t = {
            let mut topics = self.inner.topics.write().unwrap_or_else(|p| p.into_inner());
            topics
                .remove(name)
                .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?
        };
        let trash = self.inner.trash_dir.join(format!("{name}-{}", now_ms()));
        std::fs::rename(&t.dir, &trash).map_err(|e| BrokerError::io(&t.dir, e))?;
        crate::log::sync_dir(&self.inner.topics_dir)?;
        if let Err(e) = remove_dir(&trash) {
            // The topic is gone either way; start-up empties trash/.
            tracing::warn!(topic = %name, error = %e, "could not remove deleted topic's files yet");
        }
        tracing::info!(topic = %name, "deleted topic");
        Ok(())
    }

    /// CreatePartitions for a client (Kafka API 37): grows a topic to `count` partitions.
    /// Only growth: a count at or below the current one is
    /// [`BrokerError::InvalidPartitions`], as Kafka refuses it (a shrink would lose data and
    /// move keys). The new partitions are opened empty before the new count is written to
    /// `topic.json`, and only then served; a crash in between leaves the old topic (the
    /// left-over directories are removed by the next grow). With `validate_only` nothing
    /// changes. Refused for internal topics, topics a processor or query uses
    /// ([`BrokerError::TopicInUse`]) and, for now, replicated topics (the cluster's metadata
    /// cannot grow a topic yet). Blocking.
    pub fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<()> {
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        let t = self.topic(name)?;
        guard::check_write(name, t.internal().as_ref())?;
        if t.info.cluster.is_some() {
            return Err(BrokerError::PolicyViolation(format!(
                "adding partitions to the replicated topic '{name}' is not served on a cluster yet"
            )));
        }
        // A processor or query reading the topic has one task per partition it saw at
        // deploy: new partitions would go unread (as Kafka Streams' inputs must not grow).
        let g = self
            .inner
            .guard
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(user) = g.and_then(|g| g.user_of(name)) {
            return Err(BrokerError::TopicInUse {
                topic: name.to_string(),
                user,
            });
        }
        let current = t.info.partitions;
        if count <= current {
            return Err(BrokerError::InvalidPartitions(format!(
                "topic '{name}' has {current} partitions; the count can only grow (asked {count})"
            )));
        }
        let mut spec = t.read_spec()?;
        spec.partitions = count;
        let info = topic::resolve(&spec, &self.inner.config.log)
            .map_err(|e| BrokerError::InvalidPartitions(e.to_string()))?;
        self.admit_partitions(name, count - current)?;
        if validate_only {
            return Ok(());
        }
        let grown = t.altered(
            TopicInfo {
                internal: t.internal(),
                ..info
            },
            &self.inner.config.log,
            &self.inner.files,
        )?;
        t.write_spec(&spec)?;
        self.swap_topic(name, &t, grown);
        tracing::info!(topic = %name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// Alters a client topic's configs (Kafka IncrementalAlterConfigs): `change` edits its
    /// persisted spec; the result is validated as a create would be, written to
    /// `topic.json` and applied to the open partitions at once (retention, segment size and
    /// age, cleanup policy). Partitions, the internal marker and the cluster marker cannot be
    /// changed this way. With `validate_only` nothing changes. Refused for internal topics
    /// and, for now, replicated topics. Returns the new settings. Blocking.
    pub fn alter_topic(
        &self,
        name: &str,
        validate_only: bool,
        change: impl FnOnce(&mut TopicSpec) -> Result<()>,
    ) -> Result<TopicInfo> {
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        let t = self.topic(name)?;
        guard::check_write(name, t.internal().as_ref())?;
        if t.info.cluster.is_some() {
            return Err(BrokerError::PolicyViolation(format!(
                "altering the configs of the replicated topic '{name}' is not served on a cluster yet"
            )));
        }
        let before = t.read_spec()?;
        let mut spec = before.clone();
        change(&mut spec)?;
        if spec.name != before.name
            || spec.partitions != before.partitions
            || spec.internal != before.internal
            || spec.cluster != before.cluster
            || spec.replication_factor != before.replication_factor
        {
            return Err(BrokerError::InvalidConfig(
                "only a topic's configs can be altered".into(),
            ));
        }
        let info = topic::resolve(&spec, &self.inner.config.log)?;
        let info = TopicInfo {
            internal: t.internal(),
            ..info
        };
        if validate_only || spec == before {
            return Ok(info);
        }
        // Persisted first: a restart never runs the topic under settings a client was not
        // told were applied.
        t.write_spec(&spec)?;
        let altered = t.altered(info.clone(), &self.inner.config.log, &self.inner.files)?;
        self.swap_topic(name, &t, altered);
        tracing::info!(topic = %name, "altered topic configs");
        Ok(info)
    }

    /// Replaces `old` in the registry by `new` (under the admin lock).
    fn swap_topic(&self, name: &str, old: &Arc<Topic>, new: Topic) {
        let mut topics = self.inner.topics.write().unwrap_or_else(|p| p.into_inner());
        if topics.get(name).is_some_and(|cur| Arc::ptr_eq(cur, old)) {
            topics.insert(name.to_string(), Arc::new(new));
        }
    }

    /// Every topic, sorted by name.
    pub fn list_topics(&self) -> Vec<TopicInfo> {
        let mut v: Vec<TopicInfo> = self.all_topics().iter().map(|t| t.current_info()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// A topic with the offsets and sizes of its partitions.
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let t = self.topic(name)?;
        let partition_offsets = t
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| match p.lock() {
                Ok(log) => PartitionInfo {
                    partition: i as i32,
                    start_offset: log.start_offset(),
                    // A replicated partition without a replica yet shows its local log.
                    end_offset: p.readable_end(log.end_offset()).unwrap_or(log.end_offset()),
                    size_bytes: log.size_bytes(),
                    segments: log.segment_count(),
                    status: PartitionStatus::Online,
                    error: None,
                    replication: None,
                },
                Err(_) => PartitionInfo {
                    partition: i as i32,
                    start_offset: 0,
                    end_offset: 0,
                    size_bytes: 0,
                    segments: 0,
                    status: PartitionStatus::Offline,
                    error: p.offline_reason().map(str::to_string),
                    replication: None,
                },
            })
            .collect();
        Ok(TopicDescription {
            topic: t.current_info(),
            partition_offsets,
        })
    }

    /// A topic's settings (no disk access).
    pub fn topic_info(&self, name: &str) -> Result<TopicInfo> {
        Ok(self.topic(name)?.current_info())
    }

    /// `(start, end)` offsets of one partition: the first offset still in the log and the
    /// offset the next record will get (no disk access).
    pub fn partition_offsets(&self, topic: &str, partition: i32) -> Result<(i64, i64)> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        let log = p.lock()?;
        Ok((log.start_offset(), p.readable_end(log.end_offset())?))
    }

    /// [`Broker::partition_offsets`], refused with [`BrokerError::OffsetNotAvailable`]
    /// while this node is the partition's new leader and its high watermark is below the
    /// start of its epoch (an end given from it could be lower than one its predecessor
    /// gave). For whoever takes the end as a bound it must reach: ListOffsets, the engine's
    /// restorations and lags, other nodes' owners.
    pub fn known_offsets(&self, topic: &str, partition: i32) -> Result<(i64, i64)> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        let log = p.lock()?;
        Ok((log.start_offset(), p.known_end(log.end_offset())?))
    }

    /// Where this node's log of a partition ends (past the high watermark on a replicated
    /// partition; for describe).
    pub fn local_log_end(&self, topic: &str, partition: i32) -> Result<i64> {
        let t = self.topic(topic)?;
        let log = t.partition(partition)?.lock()?;
        Ok(log.end_offset())
    }

    /// Number of partitions of a topic.
    pub fn partition_count(&self, name: &str) -> Result<i32> {
        Ok(self.topic(name)?.info.partitions)
    }

    /// Appends records; returns `(partition, offset)` for each, in request order. Returns only
    /// when the records are durable under the topic's fsync policy. Keyed records without an
    /// explicit partition go where Kafka's default partitioner puts them; the unkeyed records
    /// of one call all go to one partition, chosen round robin across calls.
    ///
    /// This is a client's produce: refused for internal topics ([`guard::check_write`]).
    pub fn produce(&self, topic: &str, records: Vec<ProduceRecord>) -> Result<Vec<(i32, i64)>> {
        guard::check_write(topic, self.topic(topic)?.internal().as_ref())?;
        self.produce_owned(topic, records)
    }

    /// [`Broker::produce`] to any topic, internal or not: for the topics' owners (the
    /// engine's tasks through `LogAccess`, the group coordinator).
    pub fn produce_owned(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
    ) -> Result<Vec<(i32, i64)>> {
        let t = self.topic(topic)?;
        let n = t.info.partitions;
        let turn = t.round_robin.fetch_add(1, Ordering::Relaxed);
        // Replicated: unkeyed records go round robin over the partitions this node leads (a
        // write elsewhere would be refused); all partitions when it leads none.
        let led: Vec<i32> = t
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.is_replicated() && p.replica().is_some_and(|r| r.progress().is_leader)
            })
            .map(|(i, _)| i as i32)
            .collect();
        let sticky = if led.is_empty() {
            (turn % n as u32) as i32
        } else {
            led[turn as usize % led.len()]
        };
        let now = now_ms();
        let by_partition = by_partition(topic, &records, n, t.info.compacted, sticky)?;
        let mut result = vec![(0i32, 0i64); records.len()];
        let mut appended_bytes = 0u64;
        let mut pending = Vec::new();
        let mut builder = BatchBuilder::new();
        for (p, indices) in by_partition.iter().enumerate() {
            if indices.is_empty() {
                continue;
            }
            let partition = t.partition(p as i32)?;
            // Appends one finished batch holding the records `run` names, in order.
            let mut append = |batch: Option<batch::CheckedBatch>, run: &[usize]| -> Result<()> {
                let Some(batch) = batch else {
                    return Ok(());
                };
                let appended = partition.append(&batch, true)?;
                let base = appended.first;
                pending.extend(appended.pending);
                appended_bytes += batch.bytes().len() as u64;
                for (rel, &i) in run.iter().enumerate() {
                    result[i] = (p as i32, base + rel as i64);
                }
                Ok(())
            };
            // Runs whose payload stays near PRODUCE_CHUNK_BYTES (at least one record each);
            // each record's bytes are copied once, straight into its batch.
            let (mut start, mut size) = (0usize, 0usize);
            for (j, &i) in indices.iter().enumerate() {
                let r = &records[i];
                let len = payload_len(r);
                if j > start && size + len > PRODUCE_CHUNK_BYTES {
                    append(builder.finish_checked(), &indices[start..j])?;
                    (start, size) = (j, 0);
                }
                size += len;
                builder.push(
                    r.timestamp.unwrap_or(now),
                    r.key.as_deref(),
                    r.value.as_deref(),
                    r.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
                );
            }
            append(builder.finish_checked(), &indices[start..])?;
        }
        wait_replicated(pending)?;
        t.counters
            .records_appended
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        t.counters
            .bytes_appended
            .fetch_add(appended_bytes, Ordering::Relaxed);
        Ok(result)
    }

    /// Whole stored batches starting with the one that holds `offset` (raw bytes, as a Kafka
    /// Fetch returns them), about `max_bytes` of them, plus the partition's end offset.
    pub fn read_batches(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<(Bytes, i64)> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        let log = p.lock()?;
        let (start, log_end) = (log.start_offset(), log.end_offset());
        let end = p.readable_end(log_end)?;
        if offset < start || offset > log_end {
            return Err(BrokerError::OffsetOutOfRange {
                topic: topic.into(),
                partition,
                offset,
                start,
                end,
            });
        }
        if offset >= end {
            return Ok((Bytes::new(), end));
        }
        let bytes = log.read(offset, max_bytes)?;
        drop(log);
        let bytes = if end < log_end {
            batch::below(&bytes, end)?
        } else {
            bytes
        };
        t.counters
            .bytes_read
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok((bytes, end))
    }

    /// Calls `f` with the header and bytes of every batch in the newest segments of the partition that
    /// together hold at least `min_bytes` (whole segments, so possibly more), oldest first.
    /// Reads one chunk at a time without holding the partition's lock across the scan.
    pub fn for_each_recent_batch(
        &self,
        topic: &str,
        partition: i32,
        min_bytes: u64,
        mut f: impl FnMut(&batch::BatchHeader, &Bytes),
    ) -> Result<()> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        let (mut next, end) = {
            let log = p.lock()?;
            (log.recent_start_offset(min_bytes), log.end_offset())
        };
        while next < end {
            let bytes = {
                let log = p.lock()?;
                // Retention may have moved the start past `next` since the last chunk.
                next = next.max(log.start_offset());
                log.read(next, 4 << 20)?
            };
            if bytes.is_empty() {
                break;
            }
            let mut last = next;
            for (h, b) in batch::split(&bytes)? {
                f(&h, &b);
                last = h.next_offset();
            }
            if last <= next {
                break;
            }
            next = last;
        }
        Ok(())
    }

    /// DeleteRecords for a client (Kafka API 21): moves the partition's log start offset (its
    /// low watermark) up to `offset` (`-1`: the end, Kafka's high watermark), durably, and
    /// deletes the segments wholly below it. Readers from the earliest offset then start
    /// there; an offset below the current start changes nothing. Refused for internal topics
    /// ([`guard::check_write`]) and, for now, for replicated topics (the followers would not
    /// learn the new start: [`BrokerError::PolicyViolation`]). Returns the new start offset.
    /// Blocking.
    pub fn delete_records(&self, topic: &str, partition: i32, offset: i64) -> Result<i64> {
        let t = self.topic(topic)?;
        guard::check_write(topic, t.internal().as_ref())?;
        let p = t.partition(partition)?;
        if p.is_replicated() {
            return Err(BrokerError::PolicyViolation(format!(
                "deleting records of the replicated topic '{topic}' is not served on a cluster yet"
            )));
        }
        let (start, gone) = {
            let mut log = p.lock()?;
            let end = log.end_offset();
            let target = if offset == -1 { end } else { offset };
            log.delete_records_before(target).map_err(|e| match e {
                BrokerError::OffsetOutOfRange { start, end, .. } => BrokerError::OffsetOutOfRange {
                    topic: topic.to_string(),
                    partition,
                    offset,
                    start,
                    end,
                },
                e => e,
            })?
        };
        for seg in gone {
            tracing::info!(
                topic,
                partition,
                base_offset = seg.base_offset(),
                "deleted segment below the log start offset"
            );
            seg.delete_files()?;
        }
        tracing::info!(
            topic,
            partition,
            log_start_offset = start,
            "records deleted"
        );
        Ok(start)
    }

    /// Appends one RecordBatch v2 that [`batch::validate_records`] checked (a Kafka
    /// producer's) or `batch_builder` made: given offsets from the end of the partition and
    /// stored byte for byte except its base offset, without checking or copying it again.
    /// Returns (first, last).
    ///
    /// This is a client's append (Kafka Produce): refused for internal topics.
    pub fn append_checked(
        &self,
        topic: &str,
        partition: i32,
        batch: &batch::CheckedBatch,
    ) -> Result<(i64, i64)> {
        let appended = self.append_client(topic, partition, batch, true)?;
        let range = (appended.first, appended.last);
        wait_replicated(appended.pending)?;
        Ok(range)
    }

    /// [`Broker::append_checked`] to any topic, internal or not: for the topics' owners.
    pub fn append_owned(
        &self,
        topic: &str,
        partition: i32,
        batch: &batch::CheckedBatch,
    ) -> Result<(i64, i64)> {
        let appended = self.append_with_acks(topic, partition, batch, true)?;
        let range = (appended.first, appended.last);
        wait_replicated(appended.pending)?;
        Ok(range)
    }

    /// [`Broker::append_owned`] to a replicated partition, refused ([`BrokerError::NotLeader`])
    /// unless this node leads it at exactly `leader_epoch`; returns once the in-sync set has
    /// the batch (`acks=all`). For an owner whose state was loaded at that epoch (the group
    /// coordinator): a write under another epoch could overwrite what another leader wrote.
    pub fn append_owned_at_epoch(
        &self,
        topic: &str,
        partition: i32,
        batch: &batch::CheckedBatch,
        leader_epoch: i32,
    ) -> Result<(i64, i64)> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        if !p.is_replicated() {
            return Err(BrokerError::ReplicaConflict(format!(
                "{topic}/{partition} is a local topic, not replicated"
            )));
        }
        let appended = p.append_at(batch, true, Some(leader_epoch))?;
        t.count_appended(&appended, batch);
        let range = (appended.first, appended.last);
        wait_replicated(appended.pending)?;
        Ok(range)
    }

    /// OffsetForLeaderEpoch (Kafka API 23) for one partition: `(largest epoch <= epoch in
    /// the log, its end offset)`. Replicated: answered by the leader from its epoch cache,
    /// refused elsewhere, and checked against `current_leader_epoch` when one is given
    /// (fenced or unknown epoch). A local topic is one epoch, 0, from start to end (what
    /// Metadata reports on a single node).
    pub fn offset_for_leader_epoch(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: Option<i32>,
        epoch: i32,
    ) -> std::result::Result<(i32, i64), ReplicationError> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        if p.is_replicated() {
            let replica = p.replica().ok_or_else(|| {
                ReplicationError::NotLeaderOrFollower(TopicPartition::new(topic, partition))
            })?;
            let e = replica.offset_for_leader_epoch(current_leader_epoch, epoch)?;
            return Ok((e.epoch, e.end_offset));
        }
        if let Some(c) = current_leader_epoch.filter(|c| *c > 0) {
            return Err(ReplicationError::Fetch(
                TopicPartition::new(topic, partition),
                FetchError::UnknownLeaderEpoch {
                    request: c,
                    current: 0,
                },
            ));
        }
        let end = p.lock()?.end_offset();
        Ok(if epoch == 0 { (0, end) } else { (-1, -1) })
    }

    /// Cluster mode: the published progress (role, leader epoch, high watermark, log end)
    /// of this node's replica of a partition; `None` for a local topic or a partition
    /// without a replica here.
    pub fn replica_progress(&self, topic: &str, partition: i32) -> Option<Progress> {
        let t = self.topic(topic).ok()?;
        t.partition(partition).ok()?.replica().map(|r| r.progress())
    }

    /// Appends one checked batch to any topic and returns where it landed without waiting
    /// for replication: with `acks_all` on a replicated partition the caller awaits
    /// [`Appended::pending`] (the Kafka edge does, off the blocking thread). A client's
    /// append must pass [`guard::check_write`] first ([`Broker::append_checked`]).
    pub fn append_with_acks(
        &self,
        topic: &str,
        partition: i32,
        batch: &batch::CheckedBatch,
        acks_all: bool,
    ) -> Result<Appended> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        let appended = p.append(batch, acks_all)?;
        t.count_appended(&appended, batch);
        Ok(appended)
    }

    /// Reads up to `max_records` records (and about `max_bytes` of batches) at or after
    /// `offset`. An offset below the start of the log (retention, compaction) reads from the
    /// start; an offset at the end returns no records; past the end is an error.
    pub fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadResult> {
        self.read_below(
            topic,
            partition,
            offset,
            max_records,
            max_bytes,
            None,
            &|_| false,
        )
    }

    /// [`Broker::read`] below `limit` (when given: the end offset it reports is at most
    /// `limit`), passing over the batches `skip` names as if they were a gap (the read
    /// committed path, `txn::committed`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn read_below(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_records: usize,
        max_bytes: usize,
        limit: Option<i64>,
        skip: &dyn Fn(&batch::BatchHeader) -> bool,
    ) -> Result<ReadResult> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        let mut records: Vec<StoredRecord> = Vec::new();
        let mut next = offset;
        let mut bytes_read = 0usize;
        let end = loop {
            let (bytes, end) = {
                let log = p.lock()?;
                let (start, log_end) = (log.start_offset(), log.end_offset());
                let end = p.readable_end(log_end)?;
                let end = limit.map_or(end, |l| l.min(end));
                if next > log_end {
                    return Err(BrokerError::OffsetOutOfRange {
                        topic: topic.into(),
                        partition,
                        offset: next,
                        start,
                        end,
                    });
                }
                next = next.max(start);
                if next >= end {
                    break end;
                }
                let bytes = log.read(next, max_bytes.saturating_sub(bytes_read).max(1))?;
                let bytes = if end < log_end {
                    batch::below(&bytes, end)?
                } else {
                    bytes
                };
                (bytes, end)
            };
            if bytes.is_empty() {
                break end;
            }
            bytes_read += bytes.len();
            next = batch::take_records_except(&bytes, next, max_records, &mut records, skip)?;
            if records.len() >= max_records || bytes_read >= max_bytes || next >= end {
                break end;
            }
        };
        t.counters
            .records_read
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        t.counters
            .bytes_read
            .fetch_add(bytes_read as u64, Ordering::Relaxed);
        Ok(ReadResult {
            records,
            next_offset: next,
            end_offset: end,
        })
    }

    /// A receiver of the partition's end offset, updated after every append (for follow).
    /// It reports a closed channel when the topic is deleted.
    pub fn watch_end(&self, topic: &str, partition: i32) -> Result<watch::Receiver<i64>> {
        Ok(self.topic(topic)?.partition(partition)?.watch_end())
    }

    /// First offset whose timestamp is >= `timestamp`, or `None` if there is none.
    pub fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<Option<i64>> {
        let t = self.topic(topic)?;
        let p = t.partition(partition)?;
        let log = p.lock()?;
        let end = p.readable_end(log.end_offset())?;
        Ok(log.offset_for_timestamp(timestamp)?.filter(|o| *o < end))
    }

    /// Per-topic counters (records/bytes appended and read) for metrics, sorted by topic.
    pub fn stats(&self) -> Vec<(String, TopicStats)> {
        let mut v: Vec<_> = self
            .all_topics()
            .iter()
            .map(|t| (t.info.name.clone(), t.counters.snapshot()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Flushes every partition to disk (used at shutdown).
    pub fn flush_all(&self) -> Result<()> {
        for t in self.all_topics() {
            // Offline partitions have nothing to flush.
            for mut log in t.partitions.iter().filter_map(|p| p.lock().ok()) {
                log.flush()?;
            }
        }
        Ok(())
    }

    /// Syncs partitions with unsynced appends (the `interval` policy's flusher). A partition
    /// that fails does not keep the others from being synced; the first error is returned.
    pub fn flush_dirty(&self) -> Result<()> {
        let mut first_error = None;
        for t in self.all_topics() {
            if t.info.fsync == FsyncPolicy::Os {
                continue;
            }
            for p in &t.partitions {
                // Offline partitions have nothing to sync.
                let Ok(mut log) = p.lock() else { continue };
                let file = log.take_dirty();
                let dir = log.dir().to_path_buf();
                drop(log);
                let synced = file.and_then(|f| match f {
                    Some(f) => f.sync_data().map_err(|e| BrokerError::io(&dir, e)),
                    None => Ok(()),
                });
                // A topic deleted since the pass began has nothing left to sync.
                if let Err(e) = synced
                    && self
                        .topic(&t.info.name)
                        .is_ok_and(|now| Arc::ptr_eq(&now, &t))
                {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// One pass of retention (every topic) and compaction (compacted topics).
    pub fn run_cleanup(&self) -> Result<CleanupReport> {
        let mut report = CleanupReport::default();
        let now = now_ms();
        for t in self.all_topics() {
            for (i, p) in t.partitions.iter().enumerate() {
                let Ok(mut log) = p.lock() else { continue };
                let expired = log.take_expired(now);
                drop(log);
                for seg in expired {
                    tracing::info!(topic = %t.info.name, partition = i, base_offset = seg.base_offset(), "retention deleted segment");
                    seg.delete_files()?;
                    report.segments_deleted += 1;
                }
                if t.info.compacted {
                    let out = cleaner::compact(p.log_mutex()?, now)?;
                    if out.segments_rewritten > 0 {
                        tracing::info!(topic = %t.info.name, partition = i, segments = out.segments_rewritten, removed = out.records_removed, "compacted");
                    }
                    report.segments_compacted += out.segments_rewritten;
                    report.records_compacted_away += out.records_removed;
                }
            }
        }
        Ok(report)
    }

    /// Spawns the interval flusher and the cleaner on the current tokio runtime.
    pub fn start_background(&self) -> BackgroundTasks {
        let flush = {
            let broker = self.clone();
            let period = self.inner.config.log.fsync_interval();
            tokio::spawn(
                async move { periodic(period, broker, "flush", |b| b.flush_dirty()).await },
            )
        };
        let cleanup = {
            let broker = self.clone();
            let period = self.inner.config.log.cleanup_interval();
            tokio::spawn(async move {
                periodic(period, broker, "cleanup", |b| b.run_cleanup().map(|_| ())).await
            })
        };
        BackgroundTasks {
            handles: vec![flush, cleanup],
        }
    }
}

async fn periodic(
    period: Duration,
    broker: Broker,
    what: &'static str,
    f: fn(&Broker) -> Result<()>,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let b = broker.clone();
        match tokio::task::spawn_blocking(move || f(&b)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(task = what, error = %e, "background task failed"),
            Err(e) => tracing::error!(task = what, error = %e, "background task panicked"),
        }
    }
}

/// Opens the topic in `dir` (spec, then partitions; offline partitions are kept as such).
fn open_topic(dir: &Path, config: &BrokerConfig, files: &Arc<FileCache>) -> Result<Topic> {
    let spec_path = dir.join(SPEC_FILE);
    let raw = std::fs::read(&spec_path).map_err(|e| BrokerError::io(&spec_path, e))?;
    let spec: TopicSpec = serde_json::from_slice(&raw).map_err(|e| BrokerError::CorruptFile {
        path: spec_path.clone(),
        reason: e.to_string(),
    })?;
    let info = topic::resolve(&spec, &config.log)?;
    Topic::open(dir, info, &config.log, files)
}

/// Writes a new topic's directory under `staging/`: its spec and one empty directory per
/// partition (segment files are created when the partitions are opened).
fn stage_topic(staged: &Path, spec: &TopicSpec) -> Result<()> {
    remove_dir(staged)?;
    create_dir(staged)?;
    let spec_path = staged.join(SPEC_FILE);
    let json =
        serde_json::to_vec_pretty(spec).map_err(|e| BrokerError::InvalidConfig(e.to_string()))?;
    std::fs::write(&spec_path, json).map_err(|e| BrokerError::io(&spec_path, e))?;
    for p in 0..spec.partitions {
        create_dir(&staged.join(p.to_string()))?;
    }
    Ok(())
}

/// Removes what a failed create wrote (best effort: start-up empties `staging/` and `trash/`).
fn discard(dir: &Path) {
    if let Err(e) = remove_dir(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove a failed topic's files yet");
    }
}

/// Bytes of a record's payload (key, value, headers) plus a rough per-record overhead.
fn payload_len(r: &ProduceRecord) -> usize {
    r.key.as_ref().map_or(0, |k| k.len())
        + r.value.as_ref().map_or(0, |v| v.len())
        + r.headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()))
            .sum::<usize>()
        + 24
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::types::InternalTopic;

    /// A guard under which processor 'p' reads topic `used`.
    struct UsedBy;
    impl TopicGuard for UsedBy {
        fn owner_exists(&self, _: &str) -> bool {
            true
        }
        fn user_of(&self, topic: &str) -> Option<String> {
            (topic == "used").then(|| "processor 'p'".to_string())
        }
    }

    #[test]
    fn partitions_only_grow_configs_alter_and_both_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let b = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        b.create_topic(TopicSpec::new("t", 2)).unwrap();
        b.create_topic(TopicSpec::new("used", 1)).unwrap();
        b.set_topic_guard(Arc::new(UsedBy));
        for bad in [1, 2] {
            assert!(matches!(
                b.create_partitions("t", bad, false),
                Err(BrokerError::InvalidPartitions(_))
            ));
        }
        assert!(matches!(
            b.create_partitions("used", 4, false),
            Err(BrokerError::TopicInUse { .. })
        ));
        b.create_partitions("t", 4, true).unwrap();
        assert_eq!(b.partition_count("t").unwrap(), 2, "validate only");
        b.create_partitions("t", 4, false).unwrap();
        assert_eq!(b.partition_count("t").unwrap(), 4);
        b.produce(
            "t",
            vec![ProduceRecord {
                partition: Some(3),
                ..rec(Some("k"), "v")
            }],
        )
        .unwrap();
        b.alter_topic("t", false, |s| {
            s.retention_ms = Some(60_000);
            s.compacted = true;
            Ok(())
        })
        .unwrap();
        // Only configs: the partition count cannot be changed this way.
        assert!(
            b.alter_topic("t", false, |s| {
                s.partitions = 9;
                Ok(())
            })
            .is_err()
        );
        drop(b);
        let b = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        let info = b.topic_info("t").unwrap();
        assert_eq!(
            (info.partitions, info.retention_ms, info.compacted),
            (4, Some(60_000), true)
        );
        assert_eq!(b.partition_offsets("t", 3).unwrap(), (0, 1));
    }

    fn rec(key: Option<&str>, value: &str) -> ProduceRecord {
        ProduceRecord {
            key: key.map(|k| Bytes::from(k.to_string())),
            value: Some(Bytes::from(value.to_string())),
            ..Default::default()
        }
    }

    #[test]
    fn an_unmarked_topic_is_not_adopted_as_internal_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let b = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        let wc = || TopicSpec::new("wc.offsets", 1).owned_by(InternalTopic::processor("wc"));
        // A client's topic named like one the server owns is not taken over.
        b.create_topic(TopicSpec::new("wc.offsets", 1)).unwrap();
        let e = b.ensure_internal_topic(wc()).unwrap_err();
        assert_eq!(e.code(), "topic_conflict");
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.to_string().contains("wc.offsets"), "{e}");
        assert_eq!(b.topic_info("wc.offsets").unwrap().internal, None);
        // Adopting (a data dir older than the markers) marks it; then it is the owner's.
        b.adopt_internal_topic(wc()).unwrap();
        assert_eq!(
            b.topic_info("wc.offsets").unwrap().internal,
            Some(InternalTopic::processor("wc"))
        );
        b.ensure_internal_topic(wc()).unwrap();
        // Another owner's topic is neither ensured nor adopted.
        let other = TopicSpec::new("wc.offsets", 1).owned_by(InternalTopic::processor("x"));
        assert_eq!(
            b.adopt_internal_topic(other).unwrap_err().code(),
            "internal_topic"
        );
        // A new one is created marked.
        let fresh = TopicSpec::new("x.offsets", 1).owned_by(InternalTopic::processor("x"));
        assert!(b.ensure_internal_topic(fresh).unwrap().internal.is_some());
    }

    #[test]
    fn topics_persist_and_records_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let b = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        b.create_topic(TopicSpec::new("t", 3)).unwrap();
        assert!(matches!(
            b.create_topic(TopicSpec::new("t", 3)),
            Err(BrokerError::TopicExists(_))
        ));
        let recs: Vec<_> = (0..300)
            .map(|i| rec(Some(&format!("k{}", i % 17)), &format!("v{i}")))
            .collect();
        let offsets = b.produce("t", recs).unwrap();
        for (i, (p, _)) in offsets.iter().enumerate() {
            assert_eq!(*p, partition_for_key(format!("k{}", i % 17).as_bytes(), 3));
        }
        drop(b);
        let b = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        let d = b.describe_topic("t").unwrap();
        assert_eq!(
            d.partition_offsets
                .iter()
                .map(|p| p.end_offset)
                .sum::<i64>(),
            300
        );
        for p in 0..3 {
            let r = b.read("t", p, 0, 1000, 1 << 20).unwrap();
            let expected: Vec<String> = offsets
                .iter()
                .enumerate()
                .filter(|(_, (pp, _))| *pp == p)
                .map(|(i, _)| format!("v{i}"))
                .collect();
            let got: Vec<String> = r
                .records
                .iter()
                .map(|r| String::from_utf8_lossy(r.value.as_ref().unwrap()).into())
                .collect();
            assert_eq!(got, expected);
            assert_eq!(r.next_offset, r.end_offset);
        }
        b.delete_topic("t").unwrap();
        assert!(matches!(
            b.read("t", 0, 0, 1, 1),
            Err(BrokerError::UnknownTopic(_))
        ));
        drop(b);
        let b = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        assert!(b.list_topics().is_empty());
    }

    /// A produce bigger than one batch is split into several, and every record (with its
    /// headers and timestamp) lands at the offset `produce` reported for it.
    #[test]
    fn big_produces_split_into_batches_and_keep_request_order() {
        let dir = tempfile::tempdir().unwrap();
        let b = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        b.create_topic(TopicSpec::new("t", 2)).unwrap();
        let value = "x".repeat(10_000);
        let recs: Vec<ProduceRecord> = (0..500)
            .map(|i| ProduceRecord {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("{i}:{value}"))),
                headers: vec![(format!("h{i}"), Some(Bytes::from(format!("hv{i}"))))],
                timestamp: Some(1_000 + i),
                partition: Some((i % 2) as i32),
            })
            .collect();
        let offsets = b.produce("t", recs).unwrap();
        let mut batches = 0;
        for p in 0..2 {
            let r = b.read("t", p, 0, 1000, 64 << 20).unwrap();
            assert_eq!(r.records.len(), 250);
            for rec in &r.records {
                let (i, rest) = std::str::from_utf8(rec.value.as_ref().unwrap())
                    .unwrap()
                    .split_once(':')
                    .unwrap();
                let i: usize = i.parse().unwrap();
                assert_eq!(offsets[i], (p, rec.offset));
                assert_eq!(rest.len(), value.len());
                assert_eq!(rec.key.as_deref(), Some(format!("k{i}").as_bytes()));
                assert_eq!(rec.timestamp, 1_000 + i as i64);
                assert_eq!(
                    rec.headers,
                    vec![(format!("h{i}"), Some(Bytes::from(format!("hv{i}"))))]
                );
            }
            let (bytes, _) = b.read_batches("t", p, 0, 64 << 20).unwrap();
            let mut pos = 0;
            while pos < bytes.len() {
                pos += batch::BatchHeader::parse(&bytes[pos..])
                    .unwrap()
                    .total_len();
                batches += 1;
            }
        }
        // 2.5 MB per partition in batches of about 1 MiB.
        assert!(batches >= 6, "{batches} batches");
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_create_over_the_partition_budget_is_refused_before_touching_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::new(dir.path());
        config.files.max_partitions = 10;
        let b = Broker::open(config).unwrap();
        b.create_topic(TopicSpec::new("a", 6)).unwrap();
        for spec in [TopicSpec::new("b", 5), TopicSpec::new("c", 10_000)] {
            assert!(matches!(
                b.check_new_topic(&spec),
                Err(BrokerError::PolicyViolation(_))
            ));
            let e = b.create_topic(spec).unwrap_err();
            assert_eq!(e.code(), "policy_violation");
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
        }
        assert_eq!(entries(&dir.path().join("topics")), vec!["a"]);
        assert!(entries(&dir.path().join("staging")).is_empty());
        b.create_topic(TopicSpec::new("b", 4)).unwrap();
        b.delete_topic("a").unwrap();
        b.create_topic(TopicSpec::new("c", 6)).unwrap();
    }

    /// Many more partitions than the file cache holds: every one is written, read back and
    /// recovered, and no more files than the cache's capacity stay open.
    #[test]
    fn partitions_outnumbering_the_file_cache_all_serve() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::new(dir.path());
        config.files.max_open_files = 16;
        let b = Broker::open(config.clone()).unwrap();
        b.create_topic(TopicSpec::new("t", 200)).unwrap();
        for round in 0..3 {
            let recs: Vec<_> = (0..200)
                .map(|p| ProduceRecord {
                    partition: Some(p),
                    ..rec(None, &format!("r{round}p{p}"))
                })
                .collect();
            b.produce("t", recs).unwrap();
            assert!(b.file_cache_stats().open <= 16);
        }
        b.flush_all().unwrap();
        for p in 0..200 {
            let r = b.read("t", p, 0, 10, 1 << 20).unwrap();
            assert_eq!(r.records.len(), 3);
            assert_eq!(
                r.records[2].value.as_deref(),
                Some(format!("r2p{p}").as_bytes())
            );
        }
        assert!(b.file_cache_stats().evictions > 0);
        drop(b);
        let b = Broker::open(config).unwrap();
        assert!(b.file_cache_stats().open <= 16);
        let d = b.describe_topic("t").unwrap();
        assert!(d.partition_offsets.iter().all(|p| p.end_offset == 3));
    }

    #[test]
    fn a_partition_or_topic_that_cannot_be_opened_leaves_the_rest_serving() {
        let dir = tempfile::tempdir().unwrap();
        let b = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        b.create_topic(TopicSpec::new("t", 3)).unwrap();
        b.create_topic(TopicSpec::new("u", 1)).unwrap();
        b.create_topic(TopicSpec::new("v", 1)).unwrap();
        b.produce("t", vec![rec(Some("k"), "v")]).unwrap();
        drop(b);
        let part = dir.path().join("topics/t/1");
        std::fs::remove_dir_all(&part).unwrap();
        std::fs::write(&part, b"x").unwrap();
        std::fs::write(dir.path().join("topics/u/topic.json"), b"{").unwrap();

        let b = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        let unavailable = b.unavailable();
        assert_eq!(unavailable.len(), 2, "{unavailable:?}");
        assert_eq!(
            (unavailable[0].0.as_str(), unavailable[0].1),
            ("t", Some(1))
        );
        assert_eq!((unavailable[1].0.as_str(), unavailable[1].1), ("u", None));
        let d = b.describe_topic("t").unwrap();
        assert_eq!(d.partition_offsets[1].status, PartitionStatus::Offline);
        assert!(d.partition_offsets[1].error.is_some());
        assert_eq!(b.offline_partitions("t").unwrap(), vec![1]);
        let mut r = rec(None, "x");
        r.partition = Some(1);
        assert_eq!(
            b.produce("t", vec![r]).unwrap_err().code(),
            "partition_offline"
        );
        for p in [0, 2] {
            let mut r = rec(None, "x");
            r.partition = Some(p);
            b.produce("t", vec![r]).unwrap();
        }
        b.produce("v", vec![rec(None, "x")]).unwrap();
        b.flush_all().unwrap();
        b.flush_dirty().unwrap();
        b.run_cleanup().unwrap();
        assert!(matches!(
            b.create_topic(TopicSpec::new("u", 1)),
            Err(BrokerError::TopicExists(_))
        ));
    }

    #[test]
    fn a_data_dir_has_one_owner_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let b = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        assert!(matches!(
            Broker::open(BrokerConfig::new(dir.path())),
            Err(BrokerError::DataDirLocked(_))
        ));
        drop(b);
        Broker::open(BrokerConfig::new(dir.path())).unwrap();
    }

    #[test]
    fn read_respects_max_records_and_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let b = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        b.create_topic(TopicSpec::new("t", 1)).unwrap();
        for chunk in 0..10 {
            let recs: Vec<_> = (0..10)
                .map(|i| rec(None, &format!("{}", chunk * 10 + i)))
                .collect();
            b.produce("t", recs).unwrap();
        }
        let r = b.read("t", 0, 35, 7, 1 << 20).unwrap();
        assert_eq!(
            r.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            (35..42).collect::<Vec<_>>()
        );
        assert_eq!(r.next_offset, 42);
        assert!(b.read("t", 0, 100, 7, 1 << 20).unwrap().records.is_empty());
        assert!(matches!(
            b.read("t", 0, 101, 7, 1 << 20),
            Err(BrokerError::OffsetOutOfRange { .. })
        ));
        assert!(matches!(
            b.read("t", 1, 0, 7, 1 << 20),
            Err(BrokerError::UnknownPartition { .. })
        ));
        assert_eq!(b.offset_for_timestamp("t", 0, 0).unwrap(), Some(0));
    }

    #[test]
    fn bad_specs_and_records_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let b = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        assert!(matches!(
            b.create_topic(TopicSpec::new("a b", 1)),
            Err(BrokerError::InvalidTopicName { .. })
        ));
        assert!(matches!(
            b.create_topic(TopicSpec::new("x", 0)),
            Err(BrokerError::InvalidConfig(_))
        ));
        let mut spec = TopicSpec::new("c", 1);
        spec.compacted = true;
        b.create_topic(spec).unwrap();
        assert!(matches!(
            b.produce("c", vec![rec(None, "v")]),
            Err(BrokerError::InvalidRecord(_))
        ));
        let mut r = rec(Some("k"), "v");
        r.partition = Some(5);
        assert!(matches!(
            b.produce("c", vec![r]),
            Err(BrokerError::UnknownPartition { .. })
        ));
    }
}

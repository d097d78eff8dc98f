//! Committed offsets of consumer groups, durable in the internal compacted topic
//! [`OFFSETS_TOPIC`]. Each commit appends one record per partition, keyed by
//! (group, topic, partition) so compaction keeps the latest. Keys and values use the layout
//! of Kafka's own `__consumer_offsets` (offset-commit key v1, value v3), so Kafka tooling
//! that decodes that topic can read it.
//!
//! The same topic keeps each group's metadata ([`GroupMeta`]: protocol type, generation,
//! protocol), under Kafka's group-metadata key (v2) with a value v3 that lists no members
//! (members rejoin after a restart), so a group's generation survives a restart and an empty
//! group keeps its protocol type. Deleting offsets (OffsetDelete, a deleted topic) or a
//! group (DeleteGroups) appends tombstones for their keys; a record is made visible only
//! once written, as commits are.
//!
//! It owns the storage format of commits and which node may write a group's commits; not
//! the rules of who in a group may commit (that is the coordinator) nor the wire protocol
//! (the Kafka handlers).
//!
//! # Two modes
//!
//! - **Single node** ([`OffsetStore::load`]): a local topic of one partition, every group's
//!   commits in memory, rebuilt from the topic at start-up. Unchanged since before clusters.
//! - **Cluster** ([`OffsetStore::replicated`]): [`OFFSETS_TOPIC`] is a replicated topic of
//!   [`OFFSETS_PARTITIONS`] partitions created through the controller with the cluster's
//!   default replication (the Kafka edge creates it on the first FindCoordinator). Group `g`
//!   lives in partition [`offsets_partition`]`(g)` (Kafka's own mapping: the Java hash of
//!   the group id modulo the partition count), and the node leading that partition is the
//!   group's coordinator. The count is fixed for the life of a cluster (changing it would
//!   move groups away from their commits): 8 spreads the coordinators of many groups over
//!   the nodes of a small cluster at little cost (Kafka's 50 would cost 150 replicas of a
//!   mostly empty topic on a 3-node cluster), and is kept as a constant, not a flag.
//!
//! # Invariants (cluster mode)
//!
//! 1. **Only the leader of a group's offsets partition writes the group's offsets**, and
//!    only this module writes that topic (clients are refused by `guard`). A node serves a
//!    group ([`Ownership::Owned`]) only while its replica leads the partition at the epoch
//!    it loaded the partition at; elsewhere the group is [`Ownership::NotOwner`] (Kafka's
//!    `NOT_COORDINATOR`: the client looks for the coordinator again).
//! 2. **The leader epoch fences a stale coordinator.** A partition is loaded for one leader
//!    epoch; every commit is appended only if the replica still leads at exactly that epoch
//!    (checked under the replica's lock, with the append), and is acknowledged only once the
//!    whole in-sync set has it at that epoch (`acks=all`; a failure is answered with a
//!    retriable error and nothing is made visible). A node that lost leadership, or lost and
//!    regained it (a new epoch: another leader may have written in between), drops what it
//!    had loaded and loads again from the log.
//! 3. **A partition is loaded only from what the in-sync set has.** A new leader waits
//!    until its high watermark reaches its log end (nothing more can arrive meanwhile: it
//!    writes nothing while loading) and then reads the whole partition; until then its
//!    groups are [`Ownership::Loading`] (`COORDINATOR_LOAD_IN_PROGRESS`).
//! 4. **What a client reads was acknowledged**: a commit becomes visible to OffsetFetch only
//!    after it is replicated, and only on the node that wrote it (others load it from the
//!    log when they lead).
//! 5. **A single-node data dir adopted by a cluster keeps its commits**: its local
//!    `__consumer_offsets` (one unreplicated partition) is read once, saved to
//!    `groups/single-node-offsets.json` (fsynced) and deleted, making room for the
//!    replicated topic of that name; whenever this node loads a partition as its leader, the
//!    saved commits of that partition's groups that the log does not have yet are appended
//!    to it first (so they are replicated from then on). Offsets committed on the cluster
//!    always win over saved ones.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch_builder::BatchBuilder;
use crate::be_reader::Reader;
use crate::error::{BrokerError, Result};
use crate::log::now_ms;
use crate::{Broker, InternalTopic, ProduceRecord, TopicSpec};

/// Name of the internal topic holding committed offsets (as in Kafka).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp: i64,
}

type GroupOffsets = HashMap<(String, i32), CommittedOffset>;

/// What survives of a group between its generations and across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMeta {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
}

/// Kafka's group-metadata key: version 2, the group id.
fn encode_meta_key(group: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + group.len());
    b.put_i16(2);
    put_str(&mut b, group);
    b.freeze()
}

/// Kafka's group-metadata value v3 without members: protocol type, generation, protocol,
/// leader (none), current-state timestamp, an empty member array.
fn encode_meta_value(m: &GroupMeta) -> Bytes {
    let mut b = BytesMut::with_capacity(32 + m.protocol_type.len());
    b.put_i16(3);
    put_str(&mut b, &m.protocol_type);
    b.put_i32(m.generation);
    match &m.protocol {
        Some(p) => put_str(&mut b, p),
        None => b.put_i16(-1),
    }
    b.put_i16(-1);
    b.put_i64(now_ms());
    b.put_i32(0);
    b.freeze()
}

/// The protocol type, generation and protocol of a group-metadata value (versions 0–3 all
/// start with them).
fn decode_meta_value(value: &[u8]) -> Option<GroupMeta> {
    let mut r = Reader(value);
    if !(0..=3).contains(&r.i16()?) {
        return None;
    }
    let protocol_type = r.str()?;
    let generation = r.i32()?;
    let protocol = r.opt_str()?;
    Some(GroupMeta {
        protocol_type,
        generation,
        protocol,
    })
}

/// What one record of [`OFFSETS_TOPIC`] is about.
enum Key {
    Offset(String, String, i32),
    Meta(String),
}

fn decode_any_key(key: &[u8]) -> Option<Key> {
    let mut r = Reader(key);
    match r.i16()? {
        0 | 1 => decode_key(key).map(|(g, t, p)| Key::Offset(g, t, p)),
        2 => Some(Key::Meta(r.opt_str()??)),
        _ => None,
    }
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len().min(i16::MAX as usize) as i16);
    buf.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn encode_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::with_capacity(10 + group.len() + topic.len());
    b.put_i16(1);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

fn encode_value(c: &CommittedOffset) -> Bytes {
    let mut b = BytesMut::with_capacity(32);
    b.put_i16(3);
    b.put_i64(c.offset);
    b.put_i32(c.leader_epoch);
    match &c.metadata {
        Some(m) => put_str(&mut b, m),
        None => b.put_i16(-1),
    }
    b.put_i64(c.commit_timestamp);
    b.freeze()
}

fn decode_key(key: &[u8]) -> Option<(String, String, i32)> {
    let mut r = Reader(key);
    if !(0..=1).contains(&r.i16()?) {
        return None;
    }
    let group = r.opt_str()??;
    let topic = r.opt_str()??;
    let partition = r.i32()?;
    Some((group, topic, partition))
}

fn decode_value(value: &[u8]) -> Option<CommittedOffset> {
    let mut r = Reader(value);
    let version = r.i16()?;
    if !(1..=3).contains(&version) {
        return None;
    }
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.opt_str()?;
    let commit_timestamp = r.i64()?;
    Some(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

/// Partitions of the replicated [`OFFSETS_TOPIC`] on a cluster (see the module docs).
pub const OFFSETS_PARTITIONS: i32 = 8;

/// The partition of [`OFFSETS_TOPIC`] holding `group`'s commits on a cluster: Kafka's
/// `Utils.abs(groupId.hashCode) % partitions`, with Java's `String.hashCode` (UTF-16 units).
pub fn offsets_partition(group: &str) -> i32 {
    let mut h: i32 = 0;
    for u in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(u));
    }
    (h & 0x7fff_ffff) % OFFSETS_PARTITIONS
}

/// Whether this node may serve a group now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// This node coordinates the group (always on a single node).
    Owned,
    /// This node leads the group's partition and is loading it.
    Loading,
    /// Another node leads the group's partition, or none does.
    NotOwner,
}

/// What one partition of the offsets topic holds in memory.
struct Shard {
    /// `None` on a single node; the leader epoch it was (or is being) loaded at.
    epoch: Option<i32>,
    loaded: bool,
    groups: HashMap<String, GroupOffsets>,
    meta: HashMap<String, GroupMeta>,
}

/// What one partition of [`OFFSETS_TOPIC`] holds, as read from the log.
#[derive(Default)]
struct Loaded {
    groups: HashMap<String, GroupOffsets>,
    meta: HashMap<String, GroupMeta>,
}

/// The committed offsets of every group this node coordinates.
pub struct OffsetStore {
    broker: Broker,
    replicated: bool,
    /// By offsets partition.
    shards: Mutex<HashMap<i32, Shard>>,
    /// Cluster mode: commits of this data dir's single-node past (invariant 5).
    legacy: HashMap<String, GroupOffsets>,
}

/// One saved commit of a single-node data dir (invariant 5).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedCommit {
    group: String,
    topic: String,
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: Option<String>,
    commit_timestamp: i64,
}

/// Where a cluster node keeps the commits of its single-node past.
const LEGACY_FILE: &str = "groups/single-node-offsets.json";

/// Reads every commit and group metadata of one partition of [`OFFSETS_TOPIC`] into `into`
/// (the latest per key wins; a tombstone removes it). Returns the commits read. Blocking.
fn read_partition(broker: &Broker, partition: i32, into: &mut Loaded) -> Result<usize> {
    let mut offset = 0;
    let mut n = 0usize;
    loop {
        let r = broker.read(OFFSETS_TOPIC, partition, offset, 10_000, 4 << 20)?;
        if r.records.is_empty() {
            break;
        }
        for rec in &r.records {
            let Some(key) = rec.key.as_deref().and_then(decode_any_key) else {
                tracing::warn!(offset = rec.offset, "skipping unreadable offsets-topic key");
                continue;
            };
            match (key, rec.value.as_deref()) {
                (Key::Offset(group, topic, part), None) => {
                    if let Some(g) = into.groups.get_mut(&group) {
                        g.remove(&(topic, part));
                        if g.is_empty() {
                            into.groups.remove(&group);
                        }
                    }
                }
                (Key::Offset(group, topic, part), Some(v)) => match decode_value(v) {
                    Some(c) => {
                        into.groups
                            .entry(group)
                            .or_default()
                            .insert((topic, part), c);
                        n += 1;
                    }
                    None => tracing::warn!(
                        offset = rec.offset,
                        "skipping unreadable offset-commit value"
                    ),
                },
                (Key::Meta(group), None) => {
                    into.meta.remove(&group);
                }
                (Key::Meta(group), Some(v)) => match decode_meta_value(v) {
                    Some(m) => {
                        into.meta.insert(group, m);
                    }
                    None => tracing::warn!(
                        offset = rec.offset,
                        "skipping unreadable group-metadata value"
                    ),
                },
            }
        }
        if r.next_offset <= offset {
            break;
        }
        offset = r.next_offset;
    }
    Ok(n)
}

/// The (key, value) records of one commit.
fn commit_records(
    group: &str,
    offsets: &[(String, i32, CommittedOffset)],
) -> Vec<(Bytes, Option<Bytes>)> {
    offsets
        .iter()
        .map(|(t, p, c)| (encode_key(group, t, *p), Some(encode_value(c))))
        .collect()
}

impl OffsetStore {
    /// Single node: loads every committed offset from [`OFFSETS_TOPIC`] (if it exists; a
    /// topic from a data dir older than internal-topic markers is marked first). Blocking.
    pub fn load(broker: Broker) -> Result<OffsetStore> {
        let mut loaded = Loaded::default();
        if broker.partition_count(OFFSETS_TOPIC).is_ok() {
            // No client can create this name, so an unmarked one is from an older data dir.
            broker.adopt_internal_topic(Self::spec())?;
            let n = read_partition(&broker, 0, &mut loaded)?;
            tracing::info!(
                groups = loaded.groups.len(),
                records = n,
                "loaded committed offsets"
            );
        }
        let shard = Shard {
            epoch: None,
            loaded: true,
            groups: loaded.groups,
            meta: loaded.meta,
        };
        Ok(OffsetStore {
            broker,
            replicated: false,
            shards: Mutex::new(HashMap::from([(0, shard)])),
            legacy: HashMap::new(),
        })
    }

    /// Cluster mode: nothing is loaded until this node leads a partition of the replicated
    /// [`OFFSETS_TOPIC`] ([`OffsetStore::maintain`]). A local single-node `__consumer_offsets`
    /// is saved aside and deleted first (invariant 5). Blocking.
    pub fn replicated(broker: Broker) -> Result<OffsetStore> {
        let path = broker.config().data_dir.join(LEGACY_FILE);
        if let Ok(info) = broker.topic_info(OFFSETS_TOPIC)
            && info.cluster.is_none()
        {
            let mut loaded = Loaded::default();
            for p in 0..info.partitions {
                read_partition(&broker, p, &mut loaded)?;
            }
            let saved: Vec<SavedCommit> = loaded
                .groups
                .into_iter()
                .flat_map(|(group, offsets)| {
                    offsets
                        .into_iter()
                        .map(move |((topic, partition), c)| SavedCommit {
                            group: group.clone(),
                            topic,
                            partition,
                            offset: c.offset,
                            leader_epoch: c.leader_epoch,
                            metadata: c.metadata,
                            commit_timestamp: c.commit_timestamp,
                        })
                })
                .collect();
            let bytes = serde_json::to_vec(&saved)
                .map_err(|e| BrokerError::InvalidConfig(e.to_string()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| BrokerError::io(dir, e))?;
            }
            crate::fsutil::write_atomic(&path, &bytes).map_err(|e| BrokerError::io(&path, e))?;
            broker.delete_owned_topic(OFFSETS_TOPIC)?;
            tracing::info!(
                commits = saved.len(),
                file = %path.display(),
                "saved the single-node committed offsets for the cluster's replicated offsets topic"
            );
        }
        let mut legacy: HashMap<String, GroupOffsets> = HashMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let saved: Vec<SavedCommit> =
                    serde_json::from_slice(&bytes).map_err(|e| BrokerError::CorruptFile {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                for s in saved {
                    legacy.entry(s.group).or_default().insert(
                        (s.topic, s.partition),
                        CommittedOffset {
                            offset: s.offset,
                            leader_epoch: s.leader_epoch,
                            metadata: s.metadata,
                            commit_timestamp: s.commit_timestamp,
                        },
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BrokerError::io(&path, e)),
        }
        Ok(OffsetStore {
            broker,
            replicated: true,
            shards: Mutex::new(HashMap::new()),
            legacy,
        })
    }

    /// The spec of [`OFFSETS_TOPIC`] on a single node: compacted, owned by the group
    /// coordinator.
    fn spec() -> TopicSpec {
        let mut spec = TopicSpec::new(OFFSETS_TOPIC, 1).owned_by(InternalTopic {
            owner: InternalTopic::GROUP_COORDINATOR.into(),
        });
        spec.compacted = true;
        spec
    }

    /// The spec of the replicated [`OFFSETS_TOPIC`] a cluster creates through its
    /// controller: [`OFFSETS_PARTITIONS`] partitions, compacted, owned by the group
    /// coordinator, the cluster's default replication.
    pub fn cluster_spec() -> TopicSpec {
        let mut spec = Self::spec();
        spec.partitions = OFFSETS_PARTITIONS;
        spec
    }

    /// Whether this is the cluster mode store.
    pub fn is_replicated(&self) -> bool {
        self.replicated
    }

    /// The partition of [`OFFSETS_TOPIC`] holding `group`'s commits.
    pub fn partition_for(&self, group: &str) -> i32 {
        if self.replicated {
            offsets_partition(group)
        } else {
            0
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Shard>> {
        self.shards.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The leader epoch this node leads `partition` at, if it leads it.
    fn leading(&self, partition: i32) -> Option<(i32, i64, i64)> {
        let p = self.broker.replica_progress(OFFSETS_TOPIC, partition)?;
        p.is_leader
            .then_some((p.leader_epoch, p.high_watermark, p.log_end_offset))
    }

    /// Whether this node may serve `group` now (invariant 1).
    pub fn ownership(&self, group: &str) -> Ownership {
        if !self.replicated {
            return Ownership::Owned;
        }
        let partition = offsets_partition(group);
        let Some((epoch, _, _)) = self.leading(partition) else {
            return Ownership::NotOwner;
        };
        match self.lock().get(&partition) {
            Some(s) if s.epoch == Some(epoch) && s.loaded => Ownership::Owned,
            _ => Ownership::Loading,
        }
    }

    /// Cluster mode: follows this node's leadership of the offsets partitions — loads a
    /// partition it newly leads (once its high watermark covers its log; invariant 3) and
    /// drops one it stopped leading or leads at another epoch (invariant 2). Returns the
    /// partitions dropped, whose groups the coordinator forgets. Blocking; call it
    /// periodically.
    pub fn maintain(&self) -> Vec<i32> {
        if !self.replicated {
            return Vec::new();
        }
        let mut dropped = Vec::new();
        for partition in 0..OFFSETS_PARTITIONS {
            let leading = self.leading(partition);
            let load_at = {
                let mut shards = self.lock();
                match (leading, shards.get(&partition)) {
                    (None, Some(_)) => {
                        shards.remove(&partition);
                        dropped.push(partition);
                        tracing::info!(
                            partition,
                            "no longer the coordinator of this offsets partition's groups"
                        );
                        None
                    }
                    (None, None) => None,
                    (Some((epoch, _, _)), Some(s)) if s.epoch == Some(epoch) && s.loaded => None,
                    (Some((epoch, hw, end)), existing) => {
                        if existing.is_some_and(|s| s.epoch != Some(epoch)) {
                            dropped.push(partition);
                        }
                        shards.insert(
                            partition,
                            Shard {
                                epoch: Some(epoch),
                                loaded: false,
                                groups: HashMap::new(),
                                meta: HashMap::new(),
                            },
                        );
                        (hw >= end).then_some(epoch)
                    }
                }
            };
            if let Some(epoch) = load_at
                && let Err(e) = self.load_partition(partition, epoch)
            {
                tracing::warn!(partition, epoch, error = %e, "loading committed offsets failed; retrying");
            }
        }
        dropped
    }

    /// Loads one partition this node leads at `epoch`, imports the saved single-node
    /// commits of its groups that the log lacks, and marks it loaded (if it still leads at
    /// that epoch). Blocking.
    fn load_partition(&self, partition: i32, epoch: i32) -> Result<()> {
        let mut loaded = Loaded::default();
        let n = read_partition(&self.broker, partition, &mut loaded)?;
        let Loaded { mut groups, meta } = loaded;
        let mut imported = 0usize;
        for (group, offsets) in &self.legacy {
            if offsets_partition(group) != partition {
                continue;
            }
            let have = groups.get(group);
            let missing: Vec<(String, i32, CommittedOffset)> = offsets
                .iter()
                .filter(|(k, _)| have.is_none_or(|h| !h.contains_key(*k)))
                .map(|((t, p), c)| (t.clone(), *p, c.clone()))
                .collect();
            if missing.is_empty() {
                continue;
            }
            self.append(partition, epoch, commit_records(group, &missing))?;
            imported += missing.len();
            let g = groups.entry(group.clone()).or_default();
            for (t, p, c) in missing {
                g.insert((t, p), c);
            }
        }
        let mut shards = self.lock();
        match shards.get_mut(&partition) {
            Some(s) if s.epoch == Some(epoch) && !s.loaded => {
                s.groups = groups;
                s.meta = meta;
                s.loaded = true;
                tracing::info!(
                    partition,
                    epoch,
                    records = n,
                    imported,
                    groups = s.groups.len(),
                    "loaded committed offsets: coordinating this partition's groups"
                );
            }
            _ => {}
        }
        Ok(())
    }

    /// Appends `records` (a tombstone when the value is `None`) to `partition` as its leader
    /// at `epoch`, acknowledged by the in-sync set (invariant 2). Blocking.
    fn append(
        &self,
        partition: i32,
        epoch: i32,
        records: Vec<(Bytes, Option<Bytes>)>,
    ) -> Result<()> {
        let now = now_ms();
        let mut builder = BatchBuilder::new();
        for (k, v) in records {
            builder.push(now, Some(&k), v.as_deref(), std::iter::empty());
        }
        let Some(batch) = builder.finish_checked() else {
            return Ok(());
        };
        self.broker
            .append_owned_at_epoch(OFFSETS_TOPIC, partition, &batch, epoch)?;
        Ok(())
    }

    fn ensure_topic(&self) -> Result<()> {
        if self.broker.partition_count(OFFSETS_TOPIC).is_ok() {
            return Ok(());
        }
        self.broker.ensure_internal_topic(Self::spec()).map(|_| ())
    }

    /// Durably records `offsets` for `group`, then makes them visible to
    /// [`OffsetStore::get`]. Single node: returns once durable under the topic's fsync
    /// policy. Cluster: only as the loaded leader of the group's partition, once the
    /// in-sync set has the commit (else [`BrokerError::NotLeader`], `NOT_ENOUGH_REPLICAS`,
    /// a timeout…: nothing is made visible). Blocking.
    pub fn commit(&self, group: &str, offsets: Vec<(String, i32, CommittedOffset)>) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.write(group, commit_records(group, &offsets), |s| {
            let g = s.groups.entry(group.to_string()).or_default();
            for (t, p, c) in offsets {
                g.insert((t, p), c);
            }
        })
    }

    /// Deletes `group`'s committed offsets of `partitions` (tombstones), then forgets them.
    /// Blocking; as [`OffsetStore::commit`].
    pub fn delete_offsets(&self, group: &str, partitions: &[(String, i32)]) -> Result<()> {
        if partitions.is_empty() {
            return Ok(());
        }
        let records = partitions
            .iter()
            .map(|(t, p)| (encode_key(group, t, *p), None))
            .collect();
        self.write(group, records, |s| {
            if let Some(g) = s.groups.get_mut(group) {
                for k in partitions {
                    g.remove(k);
                }
                if g.is_empty() {
                    s.groups.remove(group);
                }
            }
        })
    }

    /// Deletes a group: tombstones for its metadata and every committed offset, then
    /// forgets them. Blocking; as [`OffsetStore::commit`].
    pub fn delete_group(&self, group: &str) -> Result<()> {
        let mut records: Vec<(Bytes, Option<Bytes>)> = self
            .all_for(group)
            .into_iter()
            .map(|(t, p, _)| (encode_key(group, &t, p), None))
            .collect();
        records.push((encode_meta_key(group), None));
        self.write(group, records, |s| {
            s.groups.remove(group);
            s.meta.remove(group);
        })
    }

    /// Durably records `group`'s metadata (a new generation, or the group became empty).
    /// Blocking; as [`OffsetStore::commit`].
    pub fn store_meta(&self, group: &str, meta: GroupMeta) -> Result<()> {
        let value = encode_meta_value(&meta);
        self.write(group, vec![(encode_meta_key(group), Some(value))], |s| {
            s.meta.insert(group.to_string(), meta);
        })
    }

    /// The stored metadata of `group`, if any.
    pub fn meta(&self, group: &str) -> Option<GroupMeta> {
        let shards = self.lock();
        shards
            .get(&self.partition_for(group))
            .filter(|s| s.loaded)
            .and_then(|s| s.meta.get(group).cloned())
    }

    /// A topic was deleted: every group's committed offsets of it are deleted too (as
    /// Kafka's coordinator does), so a topic created again under that name starts clean.
    /// On a cluster only the groups this node coordinates now. Blocking.
    pub fn forget_topic(&self, topic: &str) {
        if topic == OFFSETS_TOPIC {
            return;
        }
        let affected: Vec<(String, Vec<(String, i32)>)> = {
            let shards = self.lock();
            shards
                .values()
                .filter(|s| s.loaded)
                .flat_map(|s| s.groups.iter())
                .filter_map(|(g, offsets)| {
                    let parts: Vec<(String, i32)> = offsets
                        .keys()
                        .filter(|(t, _)| t == topic)
                        .cloned()
                        .collect();
                    (!parts.is_empty()).then(|| (g.clone(), parts))
                })
                .collect()
        };
        for (group, parts) in affected {
            match self.delete_offsets(&group, &parts) {
                Ok(()) => {
                    tracing::info!(group = %group, topic, partitions = parts.len(), "deleted the committed offsets of a deleted topic")
                }
                Err(e) => {
                    tracing::warn!(group = %group, topic, error = %e, "could not delete the committed offsets of a deleted topic")
                }
            }
        }
    }

    /// Writes `records` to `group`'s partition (as its loaded leader on a cluster), then
    /// applies `update` to the partition's shard if it is still the one written under.
    fn write(
        &self,
        group: &str,
        records: Vec<(Bytes, Option<Bytes>)>,
        update: impl FnOnce(&mut Shard),
    ) -> Result<()> {
        let partition = self.partition_for(group);
        let epoch = if self.replicated {
            let not_leader = || BrokerError::NotLeader {
                topic: OFFSETS_TOPIC.to_string(),
                partition,
                leader: None,
            };
            let (epoch, _, _) = self.leading(partition).ok_or_else(not_leader)?;
            match self.lock().get(&partition) {
                Some(s) if s.epoch == Some(epoch) && s.loaded => {}
                _ => return Err(not_leader()),
            }
            self.append(partition, epoch, records)?;
            Some(epoch)
        } else {
            self.ensure_topic()?;
            let now = now_ms();
            let records = records
                .into_iter()
                .map(|(k, v)| ProduceRecord {
                    key: Some(k),
                    value: v,
                    headers: Vec::new(),
                    timestamp: Some(now),
                    partition: Some(0),
                })
                .collect();
            self.broker.produce_owned(OFFSETS_TOPIC, records)?;
            None
        };
        let mut shards = self.lock();
        if let Some(s) = shards.get_mut(&partition)
            && s.epoch == epoch
        {
            update(s);
        }
        Ok(())
    }

    fn with_group<T>(&self, group: &str, f: impl FnOnce(Option<&GroupOffsets>) -> T) -> T {
        let shards = self.lock();
        let g = shards
            .get(&self.partition_for(group))
            .filter(|s| s.loaded)
            .and_then(|s| s.groups.get(group));
        f(g)
    }

    /// The committed offset of one partition, if any.
    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<CommittedOffset> {
        self.with_group(group, |g| g?.get(&(topic.to_string(), partition)).cloned())
    }

    /// Every committed offset of a group, sorted by topic and partition.
    pub fn all_for(&self, group: &str) -> Vec<(String, i32, CommittedOffset)> {
        let mut v: Vec<_> = self.with_group(group, |g| {
            g.map(|g| {
                g.iter()
                    .map(|((t, p), c)| (t.clone(), *p, c.clone()))
                    .collect()
            })
            .unwrap_or_default()
        });
        v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        v
    }

    /// Groups with committed offsets or stored metadata that this node coordinates.
    pub fn groups(&self) -> Vec<String> {
        let shards = self.lock();
        let mut v: Vec<String> = shards
            .values()
            .filter(|s| s.loaded)
            .flat_map(|s| {
                s.groups
                    .iter()
                    .filter(|(_, g)| !g.is_empty())
                    .map(|(k, _)| k)
                    .chain(s.meta.keys())
            })
            .cloned()
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BrokerConfig;

    fn c(offset: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: Some("m".into()),
            commit_timestamp: 5,
        }
    }

    #[test]
    fn groups_map_to_partitions_as_kafka_maps_them() {
        // Java's String.hashCode: "hello" is 99162322, "Aa" and "BB" collide at 2112; a
        // negative hash is masked, as Kafka's Utils.abs does.
        assert_eq!(offsets_partition(""), 0);
        assert_eq!(offsets_partition("hello"), 99_162_322 % OFFSETS_PARTITIONS);
        assert_eq!(offsets_partition("Aa"), 2112 % OFFSETS_PARTITIONS);
        assert_eq!(offsets_partition("BB"), offsets_partition("Aa"));
        // "polygenelubricants".hashCode() == i32::MIN.
        assert_eq!(offsets_partition("polygenelubricants"), 0);
        let spread: std::collections::HashSet<i32> = (0..100)
            .map(|i| offsets_partition(&format!("group-{i}")))
            .collect();
        assert_eq!(spread.len(), OFFSETS_PARTITIONS as usize);
    }

    #[test]
    fn key_and_value_round_trip() {
        let k = encode_key("g", "orders", 3);
        assert_eq!(decode_key(&k), Some(("g".into(), "orders".into(), 3)));
        let v = encode_value(&c(42));
        assert_eq!(decode_value(&v), Some(c(42)));
        assert_eq!(decode_key(&[0, 1, 0]), None);
        assert_eq!(decode_value(&[]), None);
    }

    #[test]
    fn commits_survive_a_restart_and_the_latest_wins() {
        let dir = tempfile::tempdir().unwrap();
        let b = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        let s = OffsetStore::load(b.clone()).unwrap();
        assert!(
            b.list_topics().is_empty(),
            "the topic is created on first commit"
        );
        s.commit("g", vec![("t".into(), 0, c(10)), ("t".into(), 1, c(20))])
            .unwrap();
        s.commit("g", vec![("t".into(), 0, c(11))]).unwrap();
        s.commit("h", vec![("u".into(), 0, c(1))]).unwrap();
        drop(s);
        drop(b);
        let b = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        let s = OffsetStore::load(b).unwrap();
        assert_eq!(s.get("g", "t", 0), Some(c(11)));
        assert_eq!(s.get("g", "t", 1), Some(c(20)));
        assert_eq!(s.get("h", "u", 0), Some(c(1)));
        assert_eq!(s.get("h", "t", 0), None);
        let mut groups = s.groups();
        groups.sort();
        assert_eq!(groups, vec!["g", "h"]);
        assert_eq!(s.all_for("g").len(), 2);
    }
}

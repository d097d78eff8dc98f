//! Committed offsets of consumer groups, durable in the internal compacted topic
//! [`OFFSETS_TOPIC`] (one partition). Each commit appends one record per partition, keyed by
//! (group, topic, partition) so compaction keeps the latest; the in-memory map is rebuilt from
//! that topic at start-up. Keys and values use the layout of Kafka's own `__consumer_offsets`
//! (offset-commit key v1, value v3), so Kafka tooling that decodes that topic can read it.
//!
//! It owns the storage format of commits, not the rules of who may commit (that is the
//! coordinator) nor the wire protocol (the Kafka handlers).

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::Result;
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

/// The committed offsets of every group on this node.
pub struct OffsetStore {
    broker: Broker,
    committed: Mutex<HashMap<String, GroupOffsets>>,
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

/// Minimal reader for the big-endian fields of keys and values.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            i64::from_be_bytes(a)
        })
    }
    fn string(&mut self) -> Option<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Some(None);
        }
        let b = self.take(len as usize)?;
        Some(Some(String::from_utf8_lossy(b).into_owned()))
    }
}

fn decode_key(key: &[u8]) -> Option<(String, String, i32)> {
    let mut r = Reader(key);
    if r.i16()? != 1 {
        return None;
    }
    let group = r.string()??;
    let topic = r.string()??;
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
    let metadata = r.string()?;
    let commit_timestamp = r.i64()?;
    Some(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

impl OffsetStore {
    /// Loads every committed offset from [`OFFSETS_TOPIC`] (if it exists; a topic from a
    /// data dir older than internal-topic markers is marked first). Blocking.
    pub fn load(broker: Broker) -> Result<OffsetStore> {
        let mut committed: HashMap<String, GroupOffsets> = HashMap::new();
        if broker.partition_count(OFFSETS_TOPIC).is_ok() {
            // No client can create this name, so an unmarked one is from an older data dir.
            broker.adopt_internal_topic(Self::spec())?;
            let mut offset = 0;
            let mut n = 0usize;
            loop {
                let r = broker.read(OFFSETS_TOPIC, 0, offset, 10_000, 4 << 20)?;
                if r.records.is_empty() {
                    break;
                }
                for rec in &r.records {
                    let Some((group, topic, partition)) = rec.key.as_deref().and_then(decode_key)
                    else {
                        tracing::warn!(
                            offset = rec.offset,
                            "skipping unreadable offset-commit key"
                        );
                        continue;
                    };
                    match rec.value.as_deref() {
                        None => {
                            if let Some(g) = committed.get_mut(&group) {
                                g.remove(&(topic, partition));
                            }
                        }
                        Some(v) => match decode_value(v) {
                            Some(c) => {
                                committed
                                    .entry(group)
                                    .or_default()
                                    .insert((topic, partition), c);
                                n += 1;
                            }
                            None => tracing::warn!(
                                offset = rec.offset,
                                "skipping unreadable offset-commit value"
                            ),
                        },
                    }
                }
                offset = r.next_offset;
            }
            tracing::info!(
                groups = committed.len(),
                records = n,
                "loaded committed offsets"
            );
        }
        Ok(OffsetStore {
            broker,
            committed: Mutex::new(committed),
        })
    }

    /// The spec of [`OFFSETS_TOPIC`]: compacted, owned by the group coordinator.
    fn spec() -> TopicSpec {
        let mut spec = TopicSpec::new(OFFSETS_TOPIC, 1).owned_by(InternalTopic {
            owner: InternalTopic::GROUP_COORDINATOR.into(),
        });
        spec.compacted = true;
        spec
    }

    fn ensure_topic(&self) -> Result<()> {
        if self.broker.partition_count(OFFSETS_TOPIC).is_ok() {
            return Ok(());
        }
        self.broker.ensure_internal_topic(Self::spec()).map(|_| ())
    }

    /// Durably records `offsets` for `group` (returns once durable under the topic's fsync
    /// policy), then makes them visible to [`OffsetStore::fetch`]. Blocking.
    pub fn commit(&self, group: &str, offsets: Vec<(String, i32, CommittedOffset)>) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.ensure_topic()?;
        let now = now_ms();
        let records = offsets
            .iter()
            .map(|(t, p, c)| ProduceRecord {
                key: Some(encode_key(group, t, *p)),
                value: Some(encode_value(c)),
                headers: Vec::new(),
                timestamp: Some(now),
                partition: Some(0),
            })
            .collect();
        self.broker.produce_owned(OFFSETS_TOPIC, records)?;
        let mut all = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        let g = all.entry(group.to_string()).or_default();
        for (t, p, c) in offsets {
            g.insert((t, p), c);
        }
        Ok(())
    }

    /// The committed offset of one partition, if any.
    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<CommittedOffset> {
        let all = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        all.get(group)?
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// Every committed offset of a group, sorted by topic and partition.
    pub fn all_for(&self, group: &str) -> Vec<(String, i32, CommittedOffset)> {
        let all = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = all
            .get(group)
            .map(|g| {
                g.iter()
                    .map(|((t, p), c)| (t.clone(), *p, c.clone()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        v
    }

    /// Groups that have committed offsets.
    pub fn groups(&self) -> Vec<String> {
        let all = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        all.iter()
            .filter(|(_, g)| !g.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
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

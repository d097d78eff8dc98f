//! A task's input partitions: partition *p* of every input topic and of the processor's
//! repartition topic. Tracks, per partition, the next offset to process (`position`, what
//! gets committed), a read-ahead buffer, and the end offset (a watch that wakes the task when
//! records arrive). Batches are cut in offset order per partition and, across partitions, by
//! event time among the records available (the lowest timestamp first; ties by input order).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use tokio::sync::watch;
use weir_broker::StoredRecord;

use super::spec::StartFrom;
use crate::host::InputRecord;
use crate::log_access::{LogAccess, LogError, OffsetCommit};

/// Bytes read ahead per partition per read.
const READ_BYTES: usize = 128 << 10;

/// One input partition of a task.
pub struct InputPartition {
    pub topic: Arc<str>,
    pub partition: i32,
    /// Next offset to process.
    pub position: i64,
    /// Position as of the last commit.
    pub committed: Option<i64>,
    fetch_offset: i64,
    buffer: VecDeque<StoredRecord>,
    end: Option<watch::Receiver<i64>>,
    known_end: i64,
    /// The `known_end` at which a read came back empty without moving (the rest is an open
    /// transaction, past the last stable offset): caught up until the end moves again.
    stalled_at: Option<i64>,
}

impl InputPartition {
    /// `"<topic>/<partition>"`, the key of its committed offset.
    pub fn key(&self) -> String {
        input_key(&self.topic, self.partition)
    }

    pub fn known_end(&self) -> i64 {
        self.known_end
    }

    fn caught_up(&self) -> bool {
        self.buffer.is_empty()
            && (self.fetch_offset >= self.known_end || self.stalled_at == Some(self.known_end))
    }
}

/// The key of an input partition in an [`OffsetCommit`].
pub fn input_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// A batch to process, with the index of the input each record came from.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<InputRecord>,
    pub sources: Vec<usize>,
}

/// All input partitions of one task.
pub struct Inputs {
    parts: Vec<InputPartition>,
}

impl Inputs {
    /// Opens partition `partition` of `topics` at the committed offsets, or where `start`
    /// says for those without one. `internal` topics (the repartition topic) always start
    /// at the earliest offset.
    pub fn open(
        log: &dyn LogAccess,
        topics: &[String],
        internal: &[String],
        partition: i32,
        committed: Option<&OffsetCommit>,
        start: StartFrom,
    ) -> Result<Inputs, LogError> {
        let mut parts = Vec::new();
        for (topic, is_internal) in topics
            .iter()
            .map(|t| (t, false))
            .chain(internal.iter().map(|t| (t, true)))
        {
            let (log_start, log_end) = log.offsets(topic, partition)?;
            let end = log.watch_end(topic, partition)?;
            let key = input_key(topic, partition);
            let committed_offset = committed.and_then(|c| c.inputs.get(&key).copied());
            let position = match committed_offset {
                Some(o) if o > log_end => {
                    tracing::warn!(
                        topic = %topic, partition, committed = o, end = log_end,
                        "committed offset is past the end of the partition (topic recreated?); \
                         continuing from the end"
                    );
                    log_end
                }
                Some(o) => o,
                None if is_internal => log_start,
                None => match start {
                    StartFrom::Earliest => log_start,
                    StartFrom::Latest => log_end,
                },
            };
            parts.push(InputPartition {
                topic: Arc::from(topic.as_str()),
                partition,
                position,
                committed: committed_offset,
                fetch_offset: position,
                buffer: VecDeque::new(),
                end: Some(end),
                known_end: log_end,
                stalled_at: None,
            });
        }
        Ok(Inputs { parts })
    }

    pub fn parts(&self) -> &[InputPartition] {
        &self.parts
    }

    /// Reads ahead into every buffer holding fewer than `want` records. Returns whether
    /// anything was read.
    pub fn fill(&mut self, log: &dyn LogAccess, want: usize) -> Result<bool, LogError> {
        let mut read_any = false;
        for p in &mut self.parts {
            if let Some(rx) = &mut p.end {
                p.known_end = p.known_end.max(*rx.borrow_and_update());
            }
            if p.buffer.len() >= want
                || p.fetch_offset >= p.known_end
                || p.stalled_at == Some(p.known_end)
            {
                continue;
            }
            // Committed only: no record of an aborted transaction, none past the last
            // stable offset (`end_offset` is that offset).
            let r = log.read_committed(
                &p.topic,
                p.partition,
                p.fetch_offset,
                want.max(64) * 8,
                READ_BYTES,
            )?;
            p.stalled_at =
                (r.records.is_empty() && r.next_offset <= p.fetch_offset).then_some(p.known_end);
            p.known_end = p.known_end.max(r.end_offset);
            read_any |= !r.records.is_empty();
            p.buffer.extend(r.records);
            p.fetch_offset = p.fetch_offset.max(r.next_offset);
        }
        Ok(read_any)
    }

    /// Whether any buffered record waits.
    pub fn has_buffered(&self) -> bool {
        self.parts.iter().any(|p| !p.buffer.is_empty())
    }

    /// Whether every partition is read to its known end.
    pub fn caught_up(&self) -> bool {
        self.parts.iter().all(InputPartition::caught_up)
    }

    /// Takes up to `max` buffered records, lowest timestamp first across partitions. Stops
    /// early when a partition that is not caught up runs dry (its next record might be
    /// earlier than the others').
    pub fn next_batch(&mut self, max: usize) -> Batch {
        let mut batch = Batch::default();
        while batch.records.len() < max {
            let mut best: Option<(usize, i64)> = None;
            let mut blocked = false;
            for (i, p) in self.parts.iter().enumerate() {
                match p.buffer.front() {
                    Some(r) => {
                        if best.is_none_or(|(_, ts)| r.timestamp < ts) {
                            best = Some((i, r.timestamp));
                        }
                    }
                    None => blocked |= !p.caught_up(),
                }
            }
            let Some((i, _)) = best else { break };
            if blocked && !batch.records.is_empty() {
                break;
            }
            let p = &mut self.parts[i];
            let Some(r) = p.buffer.pop_front() else { break };
            batch.records.push(InputRecord {
                topic: p.topic.clone(),
                partition: p.partition,
                offset: r.offset,
                key: r.key,
                value: r.value,
                headers: r.headers,
                timestamp: r.timestamp,
            });
            batch.sources.push(i);
        }
        batch
    }

    /// Forgets what was read ahead (including records taken by a batch that was abandoned):
    /// the next [`Inputs::fill`] reads again from each position.
    pub fn unread(&mut self) {
        for p in &mut self.parts {
            p.buffer.clear();
            p.fetch_offset = p.position;
        }
    }

    /// Marks `offset` of input `source` processed.
    pub fn advance(&mut self, source: usize, offset: i64) {
        if let Some(p) = self.parts.get_mut(source) {
            p.position = p.position.max(offset + 1);
        }
    }

    /// Moves every position over gaps with nothing left to process (compacted or deleted
    /// records), so the committed offsets reach the end. Only between batches: a record
    /// taken by [`Inputs::next_batch`] must be processed (and advanced) first.
    pub fn skip_gaps(&mut self) {
        for p in &mut self.parts {
            if p.buffer.is_empty() {
                p.position = p.position.max(p.fetch_offset);
            }
        }
    }

    /// The positions to commit, by input key.
    pub fn positions(&self) -> BTreeMap<String, i64> {
        self.parts.iter().map(|p| (p.key(), p.position)).collect()
    }

    /// Records the positions as committed.
    pub fn mark_committed(&mut self) {
        for p in &mut self.parts {
            p.committed = Some(p.position);
        }
    }

    /// Whether the positions moved since the last commit.
    pub fn moved(&self) -> bool {
        self.parts.iter().any(|p| p.committed != Some(p.position))
    }

    /// Waits until some partition's end offset moves (or a partition's topic is deleted).
    pub async fn changed(&mut self) {
        let mut waits = Vec::new();
        for p in &mut self.parts {
            if let Some(rx) = &mut p.end {
                waits.push(Box::pin(async move {
                    if rx.changed().await.is_err() {
                        // The topic is gone; the next read says so.
                        return false;
                    }
                    true
                }));
            }
        }
        if waits.is_empty() {
            std::future::pending::<()>().await;
        }
        let (open, index, _) = futures_util::future::select_all(waits).await;
        if !open {
            let mut n = 0;
            for p in &mut self.parts {
                if p.end.is_some() {
                    if n == index {
                        p.end = None;
                        // Force a read, which reports the missing topic.
                        p.known_end = p.known_end.max(p.fetch_offset + 1);
                        break;
                    }
                    n += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use weir_broker::{Broker, BrokerConfig, ProduceRecord, TopicSpec};

    fn rec(ts: i64, v: &str) -> ProduceRecord {
        ProduceRecord {
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            timestamp: Some(ts),
            partition: Some(0),
            ..ProduceRecord::default()
        }
    }

    #[test]
    fn batches_merge_by_timestamp_and_positions_advance() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        let log: &dyn LogAccess = &broker;
        log.ensure_topic(TopicSpec::new("a", 1)).unwrap();
        log.ensure_topic(TopicSpec::new("b", 1)).unwrap();
        log.produce("a", vec![rec(1, "a1"), rec(5, "a5"), rec(9, "a9")])
            .unwrap();
        log.produce("b", vec![rec(2, "b2"), rec(3, "b3")]).unwrap();
        let mut inputs = Inputs::open(
            log,
            &["a".into()],
            &["b".into()],
            0,
            None,
            StartFrom::Earliest,
        )
        .unwrap();
        assert!(inputs.fill(log, 10).unwrap());
        let batch = inputs.next_batch(4);
        let values: Vec<_> = batch
            .records
            .iter()
            .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(values, ["a1", "b2", "b3", "a5"]);
        for (r, s) in batch.records.iter().zip(&batch.sources) {
            inputs.advance(*s, r.offset);
        }
        let pos = inputs.positions();
        assert_eq!(pos["a/0"], 2);
        assert_eq!(pos["b/0"], 2);
        assert!(inputs.moved());
        inputs.mark_committed();
        assert!(!inputs.moved());
        assert_eq!(inputs.next_batch(10).records.len(), 1);
        assert!(inputs.caught_up());

        // Committed offsets win over `start`; `latest` starts at the end.
        let mut c = OffsetCommit::default();
        c.inputs.insert("a/0".into(), 1);
        let inputs = Inputs::open(log, &["a".into()], &[], 0, Some(&c), StartFrom::Latest).unwrap();
        assert_eq!(inputs.positions()["a/0"], 1);
        let inputs = Inputs::open(log, &["a".into()], &[], 0, None, StartFrom::Latest).unwrap();
        assert_eq!(inputs.positions()["a/0"], 3);
    }
}

//! Test builds only: the broker as the engine sees it, with faults a cluster's log has —
//! writes refused as `Unavailable` (no leader now) while [`FaultyLog::down`] is set, and
//! reads that stop at [`FaultyLog::visible`] while offsets still say the whole partition (a
//! leader that changed between the two and exposes less for now), or fail there
//! ([`FaultyLog::reads_fail`]: the leader died under the read). It owns nothing else and
//! forwards everything to the real broker.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use tokio::sync::watch;
use weir_broker::batch::CheckedBatch;
use weir_broker::{Broker, BrokerError, ProduceRecord, TopicSpec};

use crate::log_access::{LogAccess, LogError, LogRead, TopicMeta};

pub struct FaultyLog {
    pub broker: Broker,
    /// Writes fail with `cluster_unavailable` while set.
    pub down: AtomicBool,
    /// Reads return nothing at or past this offset.
    pub visible: AtomicI64,
    /// Reads at or past `visible` fail with `cluster_unavailable` (the leader died) instead.
    pub reads_fail: AtomicBool,
}

impl FaultyLog {
    pub fn new(broker: Broker) -> FaultyLog {
        FaultyLog {
            broker,
            down: AtomicBool::new(false),
            visible: AtomicI64::new(i64::MAX),
            reads_fail: AtomicBool::new(false),
        }
    }

    /// Reads at or past [`FaultyLog::visible`] fail rather than come back empty.
    pub fn set_reads_fail(&self, fail: bool) {
        self.reads_fail.store(fail, Ordering::SeqCst);
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn set_visible(&self, offset: i64) {
        self.visible.store(offset, Ordering::SeqCst);
    }

    fn writable(&self) -> Result<(), LogError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BrokerError::ClusterUnavailable("no leader now".into()).into());
        }
        Ok(())
    }
}

impl LogAccess for FaultyLog {
    fn topic_meta(&self, topic: &str) -> Result<Option<TopicMeta>, LogError> {
        self.broker.topic_meta(topic)
    }
    fn list_topics(&self) -> Result<Vec<String>, LogError> {
        LogAccess::list_topics(&self.broker)
    }
    fn ensure_topic(&self, spec: TopicSpec) -> Result<TopicMeta, LogError> {
        self.broker.ensure_topic(spec)
    }
    fn adopt_topic(&self, spec: TopicSpec) -> Result<TopicMeta, LogError> {
        self.broker.adopt_topic(spec)
    }
    fn delete_topic(&self, topic: &str) -> Result<(), LogError> {
        LogAccess::delete_topic(&self.broker, topic)
    }
    fn produce(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
    ) -> Result<Vec<(i32, i64)>, LogError> {
        self.writable()?;
        LogAccess::produce(&self.broker, topic, records)
    }
    fn append_batch(
        &self,
        topic: &str,
        partition: i32,
        batch: &CheckedBatch,
    ) -> Result<(i64, i64), LogError> {
        self.writable()?;
        self.broker.append_batch(topic, partition, batch)
    }
    fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<LogRead, LogError> {
        let visible = self.visible.load(Ordering::SeqCst);
        if offset >= visible && self.reads_fail.load(Ordering::SeqCst) {
            return Err(BrokerError::ClusterUnavailable("the leader died".into()).into());
        }
        let mut r = LogAccess::read(
            &self.broker,
            topic,
            partition,
            offset,
            max_records,
            max_bytes,
        )?;
        r.records.retain(|rec| rec.offset < visible);
        r.next_offset = r.next_offset.min(visible).max(offset);
        r.end_offset = r.end_offset.min(visible);
        Ok(r)
    }
    fn offsets(&self, topic: &str, partition: i32) -> Result<(i64, i64), LogError> {
        LogAccess::offsets(&self.broker, topic, partition)
    }
    fn watch_end(&self, topic: &str, partition: i32) -> Result<watch::Receiver<i64>, LogError> {
        LogAccess::watch_end(&self.broker, topic, partition)
    }
}

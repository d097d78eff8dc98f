//! `weir serve`: maps flags (each with a `WEIR_*` environment override) onto the broker's
//! [`BrokerConfig`] and the HTTP settings, sets up logging and runs a node until SIGINT or
//! SIGTERM.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use tracing_subscriber::EnvFilter;
use weir_broker::kafka::KafkaConfig;
use weir_broker::{BrokerConfig, BrokerError, LogConfig};

use super::FsyncArg;
use crate::http::{DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_UPLOAD_BYTES, HttpConfig};
use crate::node::{self, AuthConfig, NodeConfig, Secret};
use weir_broker::auth::LoginLimits;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory (created if missing)
    #[arg(
        long,
        env = "WEIR_DATA_DIR",
        value_name = "DIR",
        default_value = "./weir-data"
    )]
    pub data_dir: PathBuf,
    /// HTTP listen address (port 0 picks a free port)
    #[arg(
        long,
        env = "WEIR_HTTP",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http: String,
    /// Default durability: fsync every append (batch), on an interval, or leave it to the OS
    #[arg(long, env = "WEIR_FSYNC", value_enum, default_value_t = LogConfig::default().fsync.into())]
    pub fsync: FsyncArg,
    /// Period of the background fsync under `--fsync interval`
    #[arg(long, env = "WEIR_FSYNC_INTERVAL_MS", value_name = "MS",
          default_value_t = LogConfig::default().fsync_interval_ms)]
    pub fsync_interval_ms: u64,
    /// Default size at which a partition's active segment is rolled
    #[arg(long, env = "WEIR_SEGMENT_BYTES", value_name = "B",
          default_value_t = LogConfig::default().segment_bytes)]
    pub segment_bytes: u64,
    /// Default age at which a partition's active segment is rolled
    #[arg(long, env = "WEIR_SEGMENT_MS", value_name = "MS",
          default_value_t = LogConfig::default().segment_ms)]
    pub segment_ms: i64,
    /// How often retention and compaction run
    #[arg(long, env = "WEIR_CLEANUP_INTERVAL_MS", value_name = "MS",
          default_value_t = LogConfig::default().cleanup_interval_ms)]
    pub cleanup_interval_ms: u64,
    /// Default tombstone retention for compacted topics
    #[arg(long, env = "WEIR_DELETE_RETENTION_MS", value_name = "MS",
          default_value_t = LogConfig::default().delete_retention_ms)]
    pub delete_retention_ms: i64,
    /// Largest record batch one append may write
    #[arg(long, env = "WEIR_MAX_BATCH_BYTES", value_name = "B",
          default_value_t = LogConfig::default().max_batch_bytes)]
    pub max_batch_bytes: usize,
    /// Kafka protocol listen address, or `off` to serve no Kafka listener
    #[arg(
        long,
        env = "WEIR_KAFKA",
        value_name = "ADDR",
        default_value = "127.0.0.1:9092"
    )]
    pub kafka: String,
    /// Address Kafka clients are told to connect to (default: the address they reached)
    #[arg(long, env = "WEIR_KAFKA_ADVERTISED", value_name = "HOST:PORT")]
    pub kafka_advertised: Option<String>,
    /// Largest HTTP request body accepted (larger ones get a 413)
    #[arg(long, env = "WEIR_MAX_REQUEST_BYTES", value_name = "B",
          default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// Largest processor upload accepted (module + spec; larger ones get a 413)
    #[arg(long, env = "WEIR_MAX_UPLOAD_BYTES", value_name = "B",
          default_value_t = DEFAULT_MAX_UPLOAD_BYTES)]
    pub max_upload_bytes: usize,
    /// Require an identity on the HTTP API and the Kafka listener (users, tokens, SASL).
    /// At the first start, env WEIR_ADMIN_PASSWORD creates the user `admin`
    #[arg(long, env = "WEIR_AUTH")]
    pub auth: bool,
    /// Under --auth, require an identity for /metrics too (/health stays open)
    #[arg(long, env = "WEIR_AUTH_METRICS")]
    pub auth_metrics: bool,
    /// Failed logins allowed per client address within --auth-failure-window-secs;
    /// further attempts are refused (HTTP 429) until the window ends
    #[arg(long, env = "WEIR_AUTH_MAX_FAILURES", value_name = "N",
          default_value_t = LoginLimits::default().max_failures)]
    pub auth_max_failures: u32,
    /// Window over which failed logins are counted
    #[arg(long, env = "WEIR_AUTH_FAILURE_WINDOW_SECS", value_name = "S",
          default_value_t = LoginLimits::default().window.as_secs())]
    pub auth_failure_window_secs: u64,
}

impl ServeArgs {
    fn node_config(&self) -> Result<NodeConfig> {
        let log = LogConfig {
            fsync: self.fsync.into(),
            fsync_interval_ms: self.fsync_interval_ms,
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            cleanup_interval_ms: self.cleanup_interval_ms,
            delete_retention_ms: self.delete_retention_ms,
            max_batch_bytes: self.max_batch_bytes,
            ..LogConfig::default()
        };
        let broker = BrokerConfig {
            data_dir: self.data_dir.clone(),
            log,
        };
        match broker.validate() {
            Ok(()) => {}
            Err(BrokerError::InvalidConfig(reason)) => bail!("invalid server setting: {reason}"),
            Err(e) => bail!("invalid server setting: {e}"),
        }
        if self.max_request_bytes == 0 {
            bail!("invalid server setting: max_request_bytes must be positive");
        }
        if self.max_upload_bytes == 0 {
            bail!("invalid server setting: max_upload_bytes must be positive");
        }
        let kafka = if self.kafka.eq_ignore_ascii_case("off") {
            None
        } else {
            let config = KafkaConfig {
                advertised: self.kafka_advertised.clone(),
                ..KafkaConfig::default()
            };
            if let Err(e) = config.validate() {
                bail!("invalid server setting: {e}");
            }
            Some((self.kafka.clone(), config))
        };
        if self.auth_max_failures == 0 || self.auth_failure_window_secs == 0 {
            bail!(
                "invalid server setting: auth_max_failures and auth_failure_window_secs must be positive"
            );
        }
        let auth = AuthConfig {
            required: self.auth,
            protect_metrics: self.auth_metrics,
            limits: LoginLimits {
                max_failures: self.auth_max_failures,
                window: std::time::Duration::from_secs(self.auth_failure_window_secs),
            },
            admin_password: std::env::var("WEIR_ADMIN_PASSWORD")
                .ok()
                .filter(|p| !p.is_empty())
                .map(Secret),
        };
        Ok(NodeConfig {
            auth,
            broker,
            kafka,
            http_addr: self.http.clone(),
            http: HttpConfig {
                max_request_bytes: self.max_request_bytes,
                max_upload_bytes: self.max_upload_bytes,
            },
        })
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
fn init_logging() {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Fails only if a subscriber is already set, which is harmless.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let config = args.node_config()?;
    init_logging();
    let shutdown = node::shutdown_signal().context("cannot install signal handlers")?;
    node::run(config, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn defaults_match_the_broker_defaults() {
        let t = T::try_parse_from(["weir"]).unwrap();
        let c = t.serve.node_config().unwrap();
        assert_eq!(c.broker.log, LogConfig::default());
        assert_eq!(c.http_addr, "127.0.0.1:8080");
        assert_eq!(c.http.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
        assert_eq!(c.kafka.map(|k| k.0).as_deref(), Some("127.0.0.1:9092"));
        let t = T::try_parse_from(["weir", "--kafka", "off"]).unwrap();
        assert!(t.serve.node_config().unwrap().kafka.is_none());
    }

    #[test]
    fn flags_override_and_are_validated() {
        let t = T::try_parse_from(["weir", "--fsync", "batch", "--segment-bytes", "4096"]).unwrap();
        let c = t.serve.node_config().unwrap();
        assert_eq!(c.broker.log.fsync, weir_broker::FsyncPolicy::Batch);
        assert_eq!(c.broker.log.segment_bytes, 4096);

        let t = T::try_parse_from(["weir", "--segment-bytes", "10"]).unwrap();
        let e = t.serve.node_config().unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid server setting: segment_bytes must be at least 1024"
        );

        assert!(T::try_parse_from(["weir", "--fsync", "sometimes"]).is_err());
    }
}

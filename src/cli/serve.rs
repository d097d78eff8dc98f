//! `weir serve`: maps flags (each with a `WEIR_*` environment override) onto the broker's
//! [`BrokerConfig`] and the HTTP settings, sets up logging, raises the open-file limit
//! (soft to hard; the log's file budget is derived from it) and runs a node until SIGINT or
//! SIGTERM.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use tracing_subscriber::EnvFilter;
use weir_broker::fd_limit;
use weir_broker::kafka::KafkaConfig;
use weir_broker::{BrokerConfig, BrokerError, FilesConfig, LogConfig};

use super::FsyncArg;
use crate::http::{DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_UPLOAD_BYTES, HttpConfig};
use crate::node::{self, NodeConfig};

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
    /// Segment and index files the log keeps open at once (a cache: others are reopened on
    /// demand) [default: the open-file limit minus a reserve of a quarter of it, 64..4096]
    #[arg(long, env = "WEIR_MAX_OPEN_LOG_FILES", value_name = "N")]
    pub max_open_log_files: Option<usize>,
    /// Partitions, over every topic, the node admits; a create past it is refused (400 /
    /// POLICY_VIOLATION) [default: --max-open-log-files, so each can keep its active segment
    /// open]
    #[arg(long, env = "WEIR_MAX_PARTITIONS", value_name = "N")]
    pub max_partitions: Option<usize>,
}

impl ServeArgs {
    /// The node's settings for a process whose open-file soft limit is `fd_limit`.
    fn node_config(&self, fd_limit: u64) -> Result<NodeConfig> {
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
        let derived = FilesConfig::from_fd_limit(fd_limit);
        let max_open_files = self.max_open_log_files.unwrap_or(derived.max_open_files);
        let files = FilesConfig {
            max_open_files,
            max_partitions: self.max_partitions.unwrap_or(max_open_files),
        };
        let broker = BrokerConfig {
            data_dir: self.data_dir.clone(),
            log,
            files,
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
        Ok(NodeConfig {
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
    let limit = fd_limit::raise();
    let config = args.node_config(limit.soft)?;
    init_logging();
    if let Some(from) = limit.raised_from {
        tracing::info!(
            from,
            to = limit.soft,
            "raised the open-file limit to the hard limit"
        );
    }
    tracing::info!(
        open_files = limit.soft,
        hard = ?limit.hard,
        max_open_log_files = config.broker.files.max_open_files,
        max_partitions = config.broker.files.max_partitions,
        "open-file limit"
    );
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
        let c = t.serve.node_config(20_000).unwrap();
        assert_eq!(c.broker.log, LogConfig::default());
        assert_eq!(c.http_addr, "127.0.0.1:8080");
        assert_eq!(c.http.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
        assert_eq!(c.kafka.map(|k| k.0).as_deref(), Some("127.0.0.1:9092"));
        assert_eq!(c.broker.files, FilesConfig::from_fd_limit(20_000));
        assert_eq!(c.broker.files.max_open_files, 20_000 - 4096);
        let t = T::try_parse_from(["weir", "--max-partitions", "50000"]).unwrap();
        let c = t.serve.node_config(20_000).unwrap();
        assert_eq!(c.broker.files.max_partitions, 50_000);
        let t = T::try_parse_from(["weir", "--max-open-log-files", "1"]).unwrap();
        assert!(t.serve.node_config(20_000).is_err());
        let t = T::try_parse_from(["weir", "--kafka", "off"]).unwrap();
        assert!(t.serve.node_config(20_000).unwrap().kafka.is_none());
    }

    #[test]
    fn flags_override_and_are_validated() {
        let t = T::try_parse_from(["weir", "--fsync", "batch", "--segment-bytes", "4096"]).unwrap();
        let c = t.serve.node_config(20_000).unwrap();
        assert_eq!(c.broker.log.fsync, weir_broker::FsyncPolicy::Batch);
        assert_eq!(c.broker.log.segment_bytes, 4096);

        let t = T::try_parse_from(["weir", "--segment-bytes", "10"]).unwrap();
        let e = t.serve.node_config(20_000).unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid server setting: segment_bytes must be at least 1024"
        );

        assert!(T::try_parse_from(["weir", "--fsync", "sometimes"]).is_err());
    }
}

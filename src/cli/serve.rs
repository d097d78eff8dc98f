//! `weir serve`: maps flags (each with a `WEIR_*` environment override) onto the broker's
//! [`BrokerConfig`], the HTTP and Kafka listener settings (timeouts, connection caps, TLS
//! files, loaded here so a bad file fails the start), sets up logging, raises the open-file
//! limit (soft to hard; the log's file budget is derived from it) and runs a node until
//! SIGINT or SIGTERM. The cluster flags (`--node-id`, `--cluster-listen`,
//! `--cluster-advertised`, `--peers`, `--join`, `--cluster-id`, `--cluster-ca`) become a
//! validated `ClusterConfig`; without `--peers`/`--join` the node runs alone as before.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use tracing_subscriber::EnvFilter;
use weir_broker::cluster::config::{ClusterConfig, parse_peers};
use weir_broker::cluster::rpc::{ClusterTls, ClusterTlsFiles};
use weir_broker::fd_limit;
use weir_broker::kafka::KafkaConfig;
use weir_broker::net::limits::{DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP};
use weir_broker::net::{ConnLimits, TlsFiles, TlsServer};
use weir_broker::{BrokerConfig, BrokerError, FilesConfig, LogConfig};
use weir_engine::limits::NodeLimits;

use super::FsyncArg;
use crate::http::serve::{self, ServeConfig};
use crate::http::uploads::DEFAULT_MAX_CONCURRENT_UPLOADS;
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
    /// Segment and index files the log keeps open at once (a cache: others are reopened on
    /// demand) [default: the open-file limit minus a reserve of a quarter of it, 64..4096]
    #[arg(long, env = "WEIR_MAX_OPEN_LOG_FILES", value_name = "N")]
    pub max_open_log_files: Option<usize>,
    /// Partitions, over every topic, the node admits; a create past it is refused (400 /
    /// POLICY_VIOLATION) [default: --max-open-log-files, so each can keep its active segment
    /// open]
    #[arg(long, env = "WEIR_MAX_PARTITIONS", value_name = "N")]
    pub max_partitions: Option<usize>,
    /// Uploads (processors, functions, artifacts) served at once; more get a 503
    #[arg(long, env = "WEIR_MAX_CONCURRENT_UPLOADS", value_name = "N",
          default_value_t = DEFAULT_MAX_CONCURRENT_UPLOADS)]
    pub max_concurrent_uploads: usize,
    /// Largest `limits.cpu_ms_per_call` a processor spec may set (larger ones get a 400)
    #[arg(long, env = "WEIR_MAX_CPU_MS_PER_CALL", value_name = "MS",
          default_value_t = NodeLimits::for_memory(0).max_cpu_ms_per_call)]
    pub max_cpu_ms_per_call: u64,
    /// CPU time one UDF call (a batch of rows) may take before it fails; at most
    /// --max-cpu-ms-per-call
    #[arg(long, env = "WEIR_UDF_CPU_MS_PER_CALL", value_name = "MS",
          default_value_t = NodeLimits::for_memory(0).udf_cpu_ms_per_call)]
    pub udf_cpu_ms_per_call: u64,
    /// Largest `limits.memory_bytes` a processor spec may set [default: 1/8 of the
    /// machine's memory, within 64 MiB..=1 GiB]
    #[arg(long, env = "WEIR_MAX_TASK_MEMORY_BYTES", value_name = "B")]
    pub max_task_memory_bytes: Option<u64>,
    /// Total Wasm memory (memory limit × tasks, over every processor) this node admits
    /// [default: half of the machine's memory]
    #[arg(long, env = "WEIR_WASM_MEMORY_BUDGET_BYTES", value_name = "B")]
    pub wasm_memory_budget_bytes: Option<u64>,
    /// Wasm instances alive at once (one per task of a Wasm processor) [default: one per
    /// 32 MiB of the machine's memory, within 64..=1024]
    #[arg(long, env = "WEIR_WASM_INSTANCE_POOL", value_name = "N")]
    pub wasm_instance_pool: Option<u32>,
    /// Most open connections per listener (HTTP and Kafka each); more are closed at once
    #[arg(long, env = "WEIR_MAX_CONNECTIONS", value_name = "N",
          default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Most open connections from one client address, per listener
    #[arg(long, env = "WEIR_MAX_CONNECTIONS_PER_IP", value_name = "N",
          default_value_t = DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,
    /// An HTTP request's headers must arrive within this time
    #[arg(long, env = "WEIR_HTTP_HEADER_TIMEOUT_MS", value_name = "MS",
          default_value_t = serve::DEFAULT_HEADER_TIMEOUT_MS)]
    pub http_header_timeout_ms: u64,
    /// An HTTP connection with no request in flight for this long is closed
    #[arg(long, env = "WEIR_HTTP_IDLE_TIMEOUT_MS", value_name = "MS",
          default_value_t = serve::DEFAULT_IDLE_TIMEOUT_MS)]
    pub http_idle_timeout_ms: u64,
    /// An HTTP request body that sends nothing for this long fails
    #[arg(long, env = "WEIR_HTTP_BODY_TIMEOUT_MS", value_name = "MS",
          default_value_t = serve::DEFAULT_BODY_TIMEOUT_MS)]
    pub http_body_timeout_ms: u64,
    /// Largest Kafka request accepted (a larger one closes the connection)
    #[arg(long, env = "WEIR_KAFKA_MAX_REQUEST_BYTES", value_name = "B",
          default_value_t = KafkaConfig::default().max_request_bytes)]
    pub kafka_max_request_bytes: usize,
    /// Node-wide budget of Kafka request bytes in flight (queued.max.request.bytes)
    #[arg(long, env = "WEIR_KAFKA_QUEUED_MAX_REQUEST_BYTES", value_name = "B",
          default_value_t = KafkaConfig::default().queued_max_request_bytes)]
    pub kafka_queued_max_request_bytes: usize,
    /// A Kafka connection with no request for this long is closed (connections.max.idle.ms)
    #[arg(long, env = "WEIR_KAFKA_IDLE_TIMEOUT_MS", value_name = "MS",
          default_value_t = KafkaConfig::default().idle_timeout_ms)]
    pub kafka_idle_timeout_ms: u64,
    /// A started Kafka request must arrive whole within this time
    #[arg(long, env = "WEIR_KAFKA_FRAME_TIMEOUT_MS", value_name = "MS",
          default_value_t = KafkaConfig::default().frame_timeout_ms)]
    pub kafka_frame_timeout_ms: u64,
    /// PEM certificate chain: serve HTTPS and Kafka over TLS (`SSL`); needs --tls-key
    #[arg(long, env = "WEIR_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "WEIR_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: require client certificates signed by them (the CN is the
    /// principal)
    #[arg(
        long,
        env = "WEIR_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,
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
    /// This node's id in a cluster (also its Kafka broker id, 0..=2147483647); needs
    /// --peers or --join. Recorded in the data directory, which then refuses another id
    #[arg(long, env = "WEIR_NODE_ID", value_name = "ID")]
    pub node_id: Option<u64>,
    /// Address of the cluster listener (node-to-node RPC) under --peers/--join
    #[arg(long, env = "WEIR_CLUSTER_LISTEN", value_name = "ADDR",
          default_value = weir_broker::cluster::config::DEFAULT_CLUSTER_LISTEN)]
    pub cluster_listen: String,
    /// Cluster address peers dial to reach this node [default: --cluster-listen]
    #[arg(long, env = "WEIR_CLUSTER_ADVERTISED", value_name = "HOST:PORT")]
    pub cluster_advertised: Option<String>,
    /// The initial voter set, `id@host:port,…` (cluster addresses), this node included;
    /// every node of a new cluster gets the same list. Without --peers and --join the node
    /// runs alone
    #[arg(
        long,
        env = "WEIR_PEERS",
        value_name = "ID@HOST:PORT,…",
        conflicts_with = "join"
    )]
    pub peers: Option<String>,
    /// Join a running cluster through the cluster address of one of its members
    #[arg(long, env = "WEIR_JOIN", value_name = "HOST:PORT")]
    pub join: Option<String>,
    /// Cluster id [default: derived from --peers, the same on every node]
    #[arg(long, env = "WEIR_CLUSTER_ID", value_name = "ID")]
    pub cluster_id: Option<String>,
    /// PEM CA that signs every node's certificate: with --tls-cert the cluster listener
    /// requires peers' certificates signed by it, and peers' servers are verified against
    /// it [default: --tls-client-ca]
    #[arg(
        long,
        env = "WEIR_CLUSTER_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub cluster_ca: Option<PathBuf>,
    /// A node whose heartbeats the controller has not heard for this long is fenced: it
    /// loses its partition leaderships (1000..=300000)
    #[arg(long, env = "WEIR_BROKER_SESSION_TIMEOUT_MS", value_name = "MS",
          default_value_t = weir_broker::cluster::control::DEFAULT_SESSION_TIMEOUT_MS)]
    pub broker_session_timeout_ms: u64,
    /// Bytes per second that replicas being moved onto this node (a rebalance onto a joined
    /// node, a decommission) may copy in all; replicas catching up after a restart are not
    /// throttled [default: unthrottled]
    #[arg(long, env = "WEIR_REPLICATION_THROTTLE_BYTES", value_name = "BYTES")]
    pub replication_throttle_bytes: Option<u64>,
    /// Do not move replicas onto joined nodes automatically (the controller's decision; a
    /// decommission moves replicas either way)
    #[arg(long, env = "WEIR_NO_AUTO_REBALANCE")]
    pub no_auto_rebalance: bool,
    /// How long the cluster must have been settled (every node up, nothing moving, every
    /// in-sync set full) before the controller moves leaderships back to preferred replicas
    /// and spreads them over the nodes (not with --no-auto-rebalance)
    #[arg(
        long,
        env = "WEIR_LEADER_BALANCE_DELAY_MS",
        value_name = "MS",
        default_value_t = 30_000
    )]
    pub leader_balance_delay_ms: u64,
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
        if self.max_concurrent_uploads == 0 {
            bail!("invalid server setting: max_concurrent_uploads must be positive");
        }
        let mut limits = NodeLimits {
            max_cpu_ms_per_call: self.max_cpu_ms_per_call,
            udf_cpu_ms_per_call: self.udf_cpu_ms_per_call,
            ..NodeLimits::default()
        };
        if let Some(b) = self.max_task_memory_bytes {
            limits.max_task_memory_bytes = b;
        }
        if let Some(b) = self.wasm_memory_budget_bytes {
            limits.wasm_memory_budget_bytes = b;
        }
        if let Some(n) = self.wasm_instance_pool {
            limits.wasm_instance_pool = n;
        }
        if let Err(e) = limits.validate() {
            bail!("invalid server setting: {e}");
        }
        let conn_limits = ConnLimits {
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
        };
        let tls_files = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            }),
            _ => None,
        };
        let tls = |alpn: &[&[u8]]| -> Result<Option<TlsServer>> {
            match &tls_files {
                None => Ok(None),
                Some(files) => Ok(Some(TlsServer::load(files, alpn)?)),
            }
        };
        let http_serve = ServeConfig {
            header_timeout: Duration::from_millis(self.http_header_timeout_ms),
            idle_timeout: Duration::from_millis(self.http_idle_timeout_ms),
            body_timeout: Duration::from_millis(self.http_body_timeout_ms),
            limits: conn_limits,
            tls: tls(&[b"http/1.1"])?,
        };
        if let Err(e) = http_serve.validate() {
            bail!("invalid server setting: {e}");
        }
        let kafka = if self.kafka.eq_ignore_ascii_case("off") {
            None
        } else {
            let config = KafkaConfig {
                advertised: self.kafka_advertised.clone(),
                max_request_bytes: self.kafka_max_request_bytes,
                queued_max_request_bytes: self.kafka_queued_max_request_bytes,
                idle_timeout_ms: self.kafka_idle_timeout_ms,
                frame_timeout_ms: self.kafka_frame_timeout_ms,
                limits: conn_limits,
                tls: tls(&[])?,
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
        let cluster = self.cluster_config()?;
        let cluster_tls = match (&tls_files, cluster.is_clustered()) {
            (Some(files), true) => {
                let Some(ca) = self
                    .cluster_ca
                    .clone()
                    .or_else(|| self.tls_client_ca.clone())
                else {
                    bail!(
                        "invalid cluster setting: with --tls-cert the cluster listener needs \
                         --cluster-ca (or --tls-client-ca): the CA that signs every node's \
                         certificate"
                    );
                };
                Some(ClusterTls::load(&ClusterTlsFiles {
                    cert: files.cert.clone(),
                    key: files.key.clone(),
                    ca,
                })?)
            }
            _ => None,
        };
        let kafka = kafka.map(|(addr, mut config)| {
            if let Some(id) = cluster.node_id {
                // Validated: node ids fit a Kafka broker id.
                config.node_id = i32::try_from(id).unwrap_or(i32::MAX);
            }
            (addr, config)
        });
        Ok(NodeConfig {
            cluster,
            cluster_tls,
            auth,
            broker,
            kafka,
            limits,
            http_addr: self.http.clone(),
            http: HttpConfig {
                max_request_bytes: self.max_request_bytes,
                max_upload_bytes: self.max_upload_bytes,
                max_concurrent_uploads: self.max_concurrent_uploads,
                upload_dir: Some(self.data_dir.join("uploads")),
            },
            http_serve,
        })
    }
}

impl ServeArgs {
    /// The cluster flags as a validated [`ClusterConfig`].
    fn cluster_config(&self) -> Result<ClusterConfig> {
        let peers = match &self.peers {
            Some(p) => parse_peers(p)?,
            None => Vec::new(),
        };
        let config = ClusterConfig {
            node_id: self.node_id,
            listen: self.cluster_listen.clone(),
            advertised: self.cluster_advertised.clone(),
            peers,
            join: self.join.clone(),
            cluster_id: self.cluster_id.clone(),
            broker_session_timeout_ms: self.broker_session_timeout_ms,
            replication_throttle_bytes: self.replication_throttle_bytes,
            auto_rebalance: !self.no_auto_rebalance,
            leader_balance_delay_ms: self.leader_balance_delay_ms,
            ..ClusterConfig::default()
        };
        config.validate()?;
        Ok(config)
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

    #[test]
    fn node_limits_come_from_flags_and_are_validated() {
        let t = T::try_parse_from([
            "weir",
            "--max-cpu-ms-per-call",
            "10000",
            "--max-task-memory-bytes",
            "134217728",
            "--wasm-memory-budget-bytes",
            "1073741824",
            "--wasm-instance-pool",
            "32",
        ])
        .unwrap();
        let l = t.serve.node_config(20_000).unwrap().limits;
        assert_eq!(
            (
                l.max_cpu_ms_per_call,
                l.max_task_memory_bytes,
                l.wasm_memory_budget_bytes,
                l.wasm_instance_pool
            ),
            (10_000, 128 << 20, 1 << 30, 32)
        );
        let t = T::try_parse_from(["weir", "--udf-cpu-ms-per-call", "60000"]).unwrap();
        let e = t.serve.node_config(20_000).unwrap_err().to_string();
        assert!(e.contains("udf_cpu_ms_per_call"), "{e}");
        let t = T::try_parse_from([
            "weir",
            "--udf-cpu-ms-per-call",
            "60000",
            "--max-cpu-ms-per-call",
            "60000",
        ])
        .unwrap();
        assert_eq!(
            t.serve
                .node_config(20_000)
                .unwrap()
                .limits
                .udf_cpu_ms_per_call,
            60_000
        );
        let t = T::try_parse_from(["weir", "--wasm-instance-pool", "0"]).unwrap();
        let e = t.serve.node_config(20_000).unwrap_err().to_string();
        assert!(e.contains("wasm_instance_pool"), "{e}");
        let t = T::try_parse_from(["weir", "--max-task-memory-bytes", "8589934592"]).unwrap();
        assert!(t.serve.node_config(20_000).is_err());
    }

    #[test]
    fn cluster_flags_make_a_validated_cluster_config() {
        let t = T::try_parse_from(["weir"]).unwrap();
        let c = t.serve.node_config(20_000).unwrap();
        assert!(!c.cluster.is_clustered());
        assert_eq!(c.kafka.unwrap().1.node_id, 0);

        let peers = "1@127.0.0.1:7001,2@127.0.0.1:7002,3@127.0.0.1:7003";
        let t = T::try_parse_from([
            "weir",
            "--node-id",
            "2",
            "--cluster-listen",
            "127.0.0.1:7002",
            "--peers",
            peers,
        ])
        .unwrap();
        let c = t.serve.node_config(20_000).unwrap();
        assert_eq!(c.cluster.node_id, Some(2));
        assert_eq!(c.cluster.peers.len(), 3);
        assert!(c.cluster.configured_cluster_id().is_some());
        // The node id is the Kafka broker id.
        assert_eq!(c.kafka.unwrap().1.node_id, 2);

        let err = |args: &[&str]| {
            let t = T::try_parse_from(args).unwrap();
            t.serve.node_config(20_000).unwrap_err().to_string()
        };
        let e = err(&[
            "weir",
            "--node-id",
            "4",
            "--cluster-listen",
            "127.0.0.1:7004",
            "--peers",
            peers,
        ]);
        assert!(e.contains("does not list this node"), "{e}");
        let e = err(&["weir", "--peers", peers]);
        assert!(e.contains("need --node-id"), "{e}");
        let e = err(&["weir", "--node-id", "1"]);
        assert!(e.contains("needs --peers"), "{e}");
        assert!(
            T::try_parse_from(["weir", "--node-id", "1", "--peers", peers, "--join", "h:1"])
                .is_err()
        );
        let e = err(&["weir", "--node-id", "1", "--peers", "1@h:1,x@h:2"]);
        assert!(e.contains("node id 'x'"), "{e}");
        assert_eq!(c.cluster.broker_session_timeout_ms, 3_000);
        let e = err(&[
            "weir",
            "--node-id",
            "1",
            "--cluster-listen",
            "h:1",
            "--peers",
            "1@h:1",
            "--broker-session-timeout-ms",
            "500",
        ]);
        assert!(e.contains("--broker-session-timeout-ms"), "{e}");
    }
}

//! One Weir node: opens the [`Broker`] (recovering the data directory), starts its background
//! tasks, opens the stream [`Engine`] (RocksDB state under `<data_dir>/state/rocksdb`, the
//! Wasm host with its compiled-component cache under `<data_dir>/wasm-cache`, deployments
//! under `<data_dir>/processors`) and resumes every deployed processor, opens the
//! user-defined function registry (`<data_dir>/functions`, artifacts under
//! `<data_dir>/artifacts`) on the same Wasm engine, opens the user store
//! (`<data_dir>/auth/auth.json`; under `--auth` it creates `admin` from
//! `WEIR_ADMIN_PASSWORD` at first start, or refuses to start without users or with a store it
//! cannot read; without `--auth` an unreadable store is a warning), serves the HTTP API
//! until told to stop, then shuts down in order: stop accepting and end follow streams, drain
//! in-flight requests (bounded), stop every task (each commits), stop the background tasks
//! and flush every partition. With `--peers`/`--join` it also checks and records the data
//! directory's identity and runs the cluster listener (`crate::node_cluster`).

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use weir_broker::auth::{AuthError, AuthStore, LoginLimits};
use weir_broker::cluster::applier::{self, Applier};
use weir_broker::cluster::auth_sync::{self, ClusterAuth};
use weir_broker::cluster::blob_rpc::BlobService;
use weir_broker::cluster::cluster_log::ClusterLog;
use weir_broker::cluster::config::ClusterConfig;
use weir_broker::cluster::control;
use weir_broker::cluster::log_rpc::LogService;
use weir_broker::cluster::replication::ReplicationConfig;
use weir_broker::cluster::replication::manager::ReplicaManager;
use weir_broker::cluster::replication_rpc::{ReplicaService, RpcReplicaTransport};
use weir_broker::cluster::routing::ClusterRouting;
use weir_broker::cluster::rpc::ClusterTls;
use weir_broker::kafka::{self, KafkaConfig, KafkaError};
use weir_broker::txn::TxnCoordinator;
use weir_broker::{Broker, BrokerConfig, BrokerError};
use weir_engine::limits::NodeLimits;
use weir_engine::log_access::LogAccess;
use weir_engine::sql::{SqlError, SqlLoader, SqlService};
use weir_engine::state::StateError;
use weir_engine::state::rocks::RocksBackend;
use weir_engine::task::WasmLoader;
use weir_engine::udf::{FunctionCatalog, FunctionError, FunctionRegistry, FunctionRegistryConfig};
use weir_engine::wasm::{WasmConfig, WasmEngine, WasmError};
use weir_engine::{Engine, EngineConfig, EngineError};

use crate::engine_cluster::{EngineBlobs, EngineCluster};
use crate::http::auth::HttpAuth;
use crate::http::metrics::Metrics;
use crate::http::serve::ServeConfig;
use crate::http::{self, AppState, HttpConfig};
use crate::node_cluster::{self, ClusterNode};

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub broker: BrokerConfig,
    /// Address to listen on for HTTP (`host:port`; port 0 picks a free one).
    pub http_addr: String,
    pub http: HttpConfig,
    /// Connection handling of the HTTP listener: timeouts, caps, TLS.
    pub http_serve: ServeConfig,
    /// Kafka listen address and settings; `None` serves no Kafka listener.
    pub kafka: Option<(String, KafkaConfig)>,
    /// Maxima on processor specs and the Wasm capacity (instance pool, memory budget).
    pub limits: NodeLimits,
    /// Identities on both listeners (`--auth`). Without it, a listener bound to a
    /// non-loopback address logs a warning at start.
    pub auth: AuthConfig,
    /// Cluster flags (`--node-id`, `--peers`, `--join`, …); the default is a single node.
    pub cluster: ClusterConfig,
    /// Mutual TLS between nodes (with `--tls-cert` under `--peers`/`--join`).
    pub cluster_tls: Option<ClusterTls>,
}

/// Authentication settings (`--auth` and friends).
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Both listeners require an identity.
    pub required: bool,
    /// `/metrics` requires one too.
    pub protect_metrics: bool,
    /// Failed logins allowed per client address and window.
    pub limits: LoginLimits,
    /// `WEIR_ADMIN_PASSWORD`: creates `admin` when `required` and no user exists.
    pub admin_password: Option<Secret>,
}

/// A string kept out of `Debug` output.
#[derive(Clone, Default)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a node failed to start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot open data directory {path}: {source}")]
    Open { path: PathBuf, source: BrokerError },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("Kafka listener failed: {0}")]
    Kafka(#[from] KafkaError),
    #[error("HTTP server failed: {0}")]
    Serve(io::Error),
    #[error("cannot open the state stores: {0}")]
    State(#[from] StateError),
    #[error("cannot start the Wasm host: {0}")]
    Wasm(#[from] WasmError),
    #[error("cannot start the stream engine: {0}")]
    Engine(#[from] EngineError),
    #[error("cannot open the function registry: {0}")]
    Functions(#[from] FunctionError),
    #[error("cannot open the SQL catalog: {0}")]
    Sql(#[from] SqlError),
    #[error("flushing the log at shutdown failed: {0}")]
    Flush(BrokerError),
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("a node task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("{0}")]
    Identity(weir_broker::cluster::identity::IdentityError),
    #[error("cannot start the metadata quorum member: {0}")]
    Metadata(String),
    #[error("cannot load the transaction state: {0}")]
    Transactions(weir_broker::txn::TxnError),
    #[error(transparent)]
    Forwarder(#[from] http::forward::ForwarderError),
}

/// Runs a node until `shutdown` completes, then stops it cleanly.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    // Bind first: a busy port should not touch the data directory.
    let listener = TcpListener::bind(&config.http_addr)
        .await
        .map_err(|source| NodeError::Bind {
            addr: config.http_addr.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| NodeError::Bind {
        addr: config.http_addr.clone(),
        source,
    })?;

    warn_if_exposed("HTTP", local, config.auth.required);

    let kafka_listener = match &config.kafka {
        None => None,
        Some((addr, kafka_config)) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| NodeError::Bind {
                    addr: addr.clone(),
                    source,
                })?;
            if let Ok(a) = l.local_addr() {
                warn_if_exposed("Kafka", a, config.auth.required);
            }
            Some((l, kafka_config.clone()))
        }
    };

    let cluster_listener = node_cluster::bind(&config.cluster).await?;

    let data_dir = config.broker.data_dir.clone();
    // Before the log opens: a data directory of another node or cluster is refused with
    // that reason even while its owner runs (and holds the lock).
    node_cluster::check_identity(&data_dir, &config.cluster).await?;
    tracing::info!(data_dir = %data_dir.display(), "opening the log");
    let broker_config = config.broker.clone();
    let broker = tokio::task::spawn_blocking(move || Broker::open(broker_config))
        .await?
        .map_err(|source| NodeError::Open {
            path: data_dir.clone(),
            source,
        })?;
    let topics = broker.list_topics().len();
    tracing::info!(topics, "log opened");
    // Under the lock now: record the identity of a directory that has none.
    let cluster_id = node_cluster::establish_identity(&data_dir, &config.cluster).await?;
    let cluster_id_for_kafka = cluster_id.clone();

    let auth_store = open_auth(&config).await?;

    let background = broker.start_background();
    // On a cluster the engine's topics are the cluster's (`ClusterLog`, attached below once
    // the metadata runs), and its processors start once this node applied the metadata.
    let cluster_log = cluster_listener
        .as_ref()
        .map(|_| Arc::new(ClusterLog::new(broker.clone())));
    // A single node's transaction coordinator opens with the log (its state read back and
    // what was in flight completed or aborted) before the engine's exactly-once tasks and
    // the Kafka listener use it; kept alive here for the node's lifetime (the broker holds
    // it weakly). A cluster does not replicate transactions yet.
    let _txn = if cluster_log.is_none() {
        let b = broker.clone();
        let opened = tokio::task::spawn_blocking(move || TxnCoordinator::open_local(&b)).await?;
        Some(opened.map_err(NodeError::Transactions)?)
    } else {
        None
    };
    let engine_log: Arc<dyn LogAccess> = match &cluster_log {
        Some(log) => log.clone(),
        None => Arc::new(broker.clone()),
    };
    let (engine, sql, functions, wasm) = open_engine(
        &broker,
        engine_log,
        &config.broker.data_dir,
        &config.limits,
        cluster_log.is_some(),
    )
    .await?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut cluster = cluster_listener.map(|listener| {
        ClusterNode::start(
            listener,
            &config.cluster,
            config.cluster_tls.clone(),
            cluster_id,
            data_dir.clone(),
            shutdown_rx.clone(),
        )
    });
    if let Some(c) = &mut cluster {
        let kafka = kafka_listener
            .as_ref()
            .map(|(l, k)| (l, k.advertised.as_deref()));
        let served = node_cluster::ServedAddrs::new(local, kafka);
        c.start_metadata(&config.cluster, &data_dir, &served)
            .await?;
    }
    // Cluster mode: replicas over the peer RPC, the applier following the metadata, and
    // the edges' routing (Kafka and HTTP).
    let mut routing = None;
    let mut applier_task = None;
    // Cluster mode: the Kafka listener serves once the applier has caught up and applied.
    let mut kafka_ready = None;
    let mut replication = None;
    let mut forwarder = None;
    let mut engine_cluster = None;
    if let Some(c) = &cluster
        && let (Some(meta), Some(proposer)) = (&c.metadata, &c.proposer)
    {
        let node_id = config.cluster.node_id.unwrap_or(0);
        let transport = Arc::new(RpcReplicaTransport::new(c.peers.clone()));
        let replica_config = ReplicationConfig {
            reassignment_throttle: config.cluster.replication_throttle_bytes,
            ..ReplicationConfig::default()
        };
        let manager = ReplicaManager::new(node_id, replica_config, transport)
            .map_err(|e| NodeError::Metadata(e.to_string()))?;
        c.service.set_replica(Arc::new(
            ReplicaService::new(manager.clone())
                .with_max_message_bytes(config.cluster.rpc.max_message_bytes),
        ));
        let proposer: Arc<dyn applier::Proposer> = Arc::new(proposer.clone());
        let applier = Applier::new(node_id, broker.clone(), manager.clone());
        kafka_ready = Some(applier.applied());
        replication = Some(http::cluster::ReplicationSource {
            manager,
            counters: applier.counters(),
        });
        forwarder = Some(Arc::new(http::forward::Forwarder::new(
            node_id,
            config.http_serve.tls.is_some(),
            config.cluster_tls.as_ref(),
        )?));
        // A restarted node acts on its metadata only once it caught up with the controller.
        applier_task = Some(tokio::spawn(applier.run(
            meta.subscribe(),
            proposer.clone(),
            caught_up(meta.clone(), c.registered_at()),
            shutdown_rx.clone(),
        )));
        // Users, tokens and ACLs are the cluster's: changes go through the metadata and the
        // store follows it once this node caught up.
        if let Some(store) = &auth_store
            && let Some(control_proposer) = c.proposer.clone()
        {
            store.set_replicator(Arc::new(ClusterAuth::new(
                control_proposer.clone(),
                meta.clone(),
                store,
            )));
            tokio::spawn(auth_sync::run_follower(
                meta.clone(),
                control_proposer,
                store.clone(),
                caught_up(meta.clone(), c.registered_at()),
                shutdown_rx.clone(),
            ));
        }
        let m = meta.clone();
        let r = ClusterRouting::new(
            node_id,
            meta.subscribe(),
            proposer,
            Arc::new(move || m.controller()),
        )
        .with_partition_budget(config.broker.files.max_partitions);
        // The engine's log: other nodes' tasks append and read here when this node leads.
        c.service.set_log(Arc::new(
            LogService::new(broker.clone(), r.subscribe())
                .with_max_message_bytes(config.cluster.rpc.max_message_bytes),
        ));
        if let Some(log) = &cluster_log {
            log.attach(r.clone(), c.peers.clone());
            // Processors are the cluster's: components other nodes fetch, the catalog
            // followed and the tasks placed here run once the metadata is applied.
            c.service
                .set_blob(Arc::new(BlobService::new(Arc::new(EngineBlobs(
                    engine.clone(),
                    Some(functions.clone()),
                )))));
            // So are functions and the SQL catalog.
            let ec = EngineCluster::new(
                engine.clone(),
                node_id,
                r.clone(),
                c.peers.clone(),
                c.task_copies(),
                functions.clone(),
                sql.clone(),
            );
            engine.set_catalog(ec.clone());
            functions.set_publisher(ec.clone());
            sql.set_publisher(ec.clone());
            engine_cluster = Some(ec.clone());
            if let Some(applied) = &kafka_ready {
                tokio::spawn(start_engine_when_applied(
                    engine.clone(),
                    ec,
                    applied.clone(),
                    shutdown_rx.clone(),
                ));
            }
        }
        routing = Some(r);
    }
    let mut metrics = Metrics::new(broker.clone());
    if let (Some(meta), Some(r)) = (
        cluster.as_ref().and_then(|c| c.metadata.clone()),
        &replication,
    ) {
        metrics.register_cluster(config.cluster.node_id.unwrap_or(0), meta, r.clone());
    }
    // Filled by the Kafka listener once committed offsets are loaded.
    let groups_view = weir_broker::group::GroupsView::new(config.cluster.node_id.unwrap_or(0));
    let state = AppState {
        broker: broker.clone(),
        engine: engine.clone(),
        functions,
        sql: Some(sql),
        metrics: Arc::new(metrics),
        shutdown: shutdown_rx.clone(),
        auth: auth_store.clone().map(|store| HttpAuth {
            store,
            required: config.auth.required,
            protect_metrics: config.auth.protect_metrics,
        }),
        cluster: cluster.as_ref().map(|c| c.peers.clone()),
        metadata: cluster.as_ref().and_then(|c| c.metadata.clone()),
        node_id: config.cluster.node_id.unwrap_or(0),
        routing: routing.clone(),
        forwarder,
        replication,
        groups: groups_view.clone(),
        engine_cluster,
    };
    if let Some(dir) = &config.http.upload_dir {
        // Uploads interrupted by a crash or a stop leave their spool files here.
        if let Err(e) = http::uploads::reset_dir(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot empty the upload directory");
        }
    }
    let app = http::router(state, &config.http);

    let kafka_task = kafka_listener.map(|(listener, mut kafka_config)| {
        if config.auth.required {
            kafka_config.auth = auth_store.clone();
        }
        if let Some(r) = &routing {
            kafka_config.cluster = Some(r.clone());
            if let Some(id) = &cluster_id_for_kafka {
                kafka_config.cluster_id = id.clone();
            }
        }
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("kafka protocol listening on {addr}");
        }
        let mut stop = shutdown_rx.clone();
        let broker = broker.clone();
        let ready = kafka_ready.take();
        tokio::spawn(async move {
            // As a KRaft broker enables request processing only after its first metadata
            // publish: until then connections wait in the listener's backlog rather than
            // get NOT_LEADER_OR_FOLLOWER for the partitions this node is about to lead.
            if let Some(mut ready) = ready {
                tokio::select! {
                    r = ready.wait_for(|applied| *applied) => {
                        if r.is_err() {
                            return Ok(());
                        }
                    }
                    _ = stop.wait_for(|stop| *stop) => return Ok(()),
                }
            }
            let served =
                kafka::serve_with_groups(broker, listener, kafka_config, groups_view, async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(e) = &served {
                tracing::error!(error = %e, "Kafka listener stopped");
            }
            served
        })
    });

    let server = http::serve::serve(listener, app, config.http_serve.clone(), shutdown_rx);
    let mut server = tokio::spawn(server);
    let scheme = if config.http_serve.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!("listening on {local} ({scheme})");

    let early_exit = tokio::select! {
        () = shutdown => None,
        result = &mut server => Some(result),
    };
    let served = match early_exit {
        Some(result) => result,
        None => {
            tracing::info!("shutting down");
            if let Some(c) = &cluster {
                // Tasks commit first, while this node still owns them and reaches the
                // partitions' leaders (a graceful move: their new owners reprocess
                // nothing); then leaderships and tasks move to other nodes while this one
                // still answers.
                let (engine, wasm) = (engine.clone(), wasm.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    wasm.interrupt_all();
                    engine.shutdown();
                })
                .await;
                c.controlled_shutdown().await;
            }
            let _ = shutdown_tx.send(true);
            match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(
                        "requests still running after {}s; closing them",
                        DRAIN_TIMEOUT.as_secs()
                    );
                    server.abort();
                    Ok(Ok(()))
                }
            }
        }
    };

    let _ = shutdown_tx.send(true);
    if let Some(task) = applier_task
        && tokio::time::timeout(DRAIN_TIMEOUT, task).await.is_err()
    {
        tracing::warn!("the metadata applier did not stop within the drain timeout");
    }
    if let Some(cluster) = cluster
        && tokio::time::timeout(DRAIN_TIMEOUT, cluster.stopped())
            .await
            .is_err()
    {
        tracing::warn!("cluster connections still open after the drain timeout");
    }
    let kafka_result = match kafka_task {
        Some(task) => match tokio::time::timeout(DRAIN_TIMEOUT, task).await {
            Ok(joined) => joined?,
            Err(_) => {
                tracing::warn!("Kafka connections still open after the drain timeout");
                Ok(())
            }
        },
        None => Ok(()),
    };
    // Tasks commit before the log is flushed. Guest calls in progress are interrupted:
    // each task's by its own stop request, UDF calls by the node's.
    tokio::task::spawn_blocking(move || {
        wasm.interrupt_all();
        engine.shutdown();
    })
    .await?;
    background.stop().await;
    let flushed = tokio::task::spawn_blocking(move || broker.flush_all()).await?;
    served?.map_err(NodeError::Serve)?;
    kafka_result?;
    flushed.map_err(NodeError::Flush)?;
    tracing::info!("stopped");
    Ok(())
}

/// Opens the user store (the data directory is locked by the broker by now); under `--auth`
/// creates `admin` from `WEIR_ADMIN_PASSWORD` if no user exists, or fails without one. A
/// store that cannot be read (corrupt, unreadable) stops a start with `--auth` (fail
/// closed; the error names the file); without `--auth` nothing needs it, so the node logs a
/// warning and serves without a store (`None`: the user endpoints answer that it is
/// missing), leaving the file as it is for the operator to repair.
async fn open_auth(config: &NodeConfig) -> Result<Option<Arc<AuthStore>>, NodeError> {
    let data_dir = config.broker.data_dir.clone();
    let auth = config.auth.clone();
    let clustered = config.cluster.is_clustered();
    tokio::task::spawn_blocking(move || -> Result<_, NodeError> {
        let store = match AuthStore::open(&data_dir, auth.limits) {
            Ok(store) => store,
            Err(e) if !auth.required => {
                tracing::warn!(
                    error = %e,
                    "cannot read the user store; serving without it (--auth is off). \
                     Repair or remove {} before starting with --auth",
                    AuthStore::path_under(&data_dir).display()
                );
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if auth.required {
            let password = auth.admin_password.as_ref().map(|s| s.0.as_str());
            if clustered && password.is_none() && store.has_no_users() {
                // A node joining a cluster gets the cluster's users once it caught up.
                tracing::info!("no local users: this cluster node takes the cluster's");
            } else if store.bootstrap_admin(password)? {
                tracing::info!("created user 'admin' from WEIR_ADMIN_PASSWORD");
            }
            tracing::info!(users = store.list_users().len(), "authentication required");
        }
        Ok(Some(Arc::new(store)))
    })
    .await?
}

/// Resolves once this cluster node has caught up with the controller's metadata
/// (`control::wait_caught_up`; at once without a control plane): what the applier and the
/// user store's follower wait for before they act on the metadata.
async fn caught_up(
    meta: weir_broker::cluster::metadata::MetadataNode,
    registered_at: Option<tokio::sync::watch::Receiver<Option<u64>>>,
) -> bool {
    match registered_at {
        Some(r) => control::wait_caught_up(&meta, r).await,
        None => true,
    }
}

/// Warns that a listener reachable from other hosts runs without authentication: anyone who
/// can reach it can deploy code to this node.
fn warn_if_exposed(listener: &str, addr: std::net::SocketAddr, auth_enabled: bool) {
    if !auth_enabled && !addr.ip().is_loopback() {
        tracing::warn!(
            "the {listener} listener on {addr} is reachable beyond this host and --auth is off: \
             anyone who can reach the port can read and write data and run code on this node"
        );
    }
}

/// Opens the engine over `broker` (the Wasm host for processors, query plans for SQL),
/// resumes every deployed processor and persistent query, and opens the SQL catalog. The
/// function registry opens first, on the processors' Wasm engine (one set of pools, one
/// compiled-artifact cache), so that persistent queries calling UDFs find them when they
/// resume; SQL gets it as its `FunctionCatalog` and `FunctionAdmin`.
/// Cluster mode: starts the engine's processors once the applier has applied the metadata
/// (their topics are the cluster's), then follows the catalog and this node's task
/// assignments, unless the node stops first.
async fn start_engine_when_applied(
    engine: Engine,
    cluster: Arc<EngineCluster>,
    mut applied: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        r = applied.wait_for(|a| *a) => {
            if r.is_err() {
                return;
            }
        }
        _ = stop.wait_for(|s| *s) => return,
    }
    match tokio::task::spawn_blocking(move || engine.start()).await {
        Ok(Ok(started)) => tracing::info!(processors = started, "stream engine started"),
        Ok(Err(e)) => tracing::error!(error = %e, "the stream engine could not start"),
        Err(e) => tracing::error!(error = %e, "the stream engine's start failed"),
    }
    cluster.run(stop).await;
}

/// Opens the engine, SQL and the function registry over `log`; a single node brings back
/// every processor now (a `cluster` node once the metadata is applied, and only the tasks
/// assigned to it).
async fn open_engine(
    broker: &Broker,
    log: Arc<dyn LogAccess>,
    data_dir: &std::path::Path,
    limits: &NodeLimits,
    cluster: bool,
) -> Result<(Engine, SqlService, Arc<FunctionRegistry>, WasmEngine), NodeError> {
    let broker = broker.clone();
    let data_dir = data_dir.to_path_buf();
    let limits = limits.clone();
    let opened = tokio::task::spawn_blocking(move || -> Result<_, NodeError> {
        let backend = RocksBackend::open(&data_dir.join("state").join("rocksdb"))?;
        let mut wasm_config = WasmConfig::new(data_dir.join("wasm-cache"));
        wasm_config.max_instances = limits.wasm_instance_pool;
        let wasm = WasmEngine::new(wasm_config)?;
        let mut functions_config = FunctionRegistryConfig::under(&data_dir)
            .with_reserved(weir_engine::sql::functions::reserved_names());
        functions_config.limits.cpu_ms_per_call = limits.udf_cpu_ms_per_call;
        let registry = Arc::new(FunctionRegistry::open(functions_config, wasm.clone())?);
        tracing::info!(
            functions = registry.list().len(),
            "function registry opened"
        );
        let functions: Arc<dyn FunctionCatalog> = registry.clone();
        let loader = SqlLoader::new(
            Arc::new(WasmLoader::with_engine(wasm.clone())),
            functions.clone(),
        );
        let engine_config = EngineConfig {
            limits,
            // On a cluster a node runs the tasks the controller assigns it.
            assigned_tasks: cluster,
            ..EngineConfig::under(&data_dir)
        };
        let engine = Engine::open(
            &engine_config,
            log.clone(),
            Arc::new(backend),
            Arc::new(loader),
        )?;
        // Deletes by clients ask the engine who owns and uses a topic.
        broker.set_topic_guard(engine.topic_guard());
        if !cluster {
            let started = engine.start()?;
            tracing::info!(processors = started, "stream engine started");
        }
        let sql = SqlService::open(
            &data_dir.join("sql"),
            engine.clone(),
            log,
            functions,
            Some(registry.clone()),
        )?;
        Ok((engine, sql, registry, wasm))
    })
    .await??;
    Ok(opened)
}

/// Installs SIGINT (Ctrl-C) and SIGTERM handlers now and returns a future that completes
/// when either arrives. Installing eagerly means a signal sent as soon as the node logs
/// "listening on" is never missed.
#[cfg(unix)]
pub fn shutdown_signal() -> io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("received SIGINT"),
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
        }
    })
}

/// Returns a future that completes on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> io::Result<impl Future<Output = ()>> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("received Ctrl-C");
        }
    })
}

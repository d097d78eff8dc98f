//! The cluster side of `weir serve` (with `--peers` or `--join`): checks that the data
//! directory belongs to this node and cluster (before the log opens, and again under the
//! data directory's lock before recording an identity), binds the cluster listener, serves
//! peers over it and greets them in the background. Without cluster flags it only checks
//! that the data directory is not a cluster member's.
//!
//! It also runs this node's member of the metadata quorum ([`ClusterNode::start_metadata`]):
//! the Raft log under `<data-dir>/cluster/metadata`; with `--peers` the initial voters (each
//! known by its cluster address), with `--join` a learner that asks the controller to admit
//! it; the Raft and control services installed on the listener, and the control plane
//! (`weir_broker::cluster::control`): heartbeats to the controller with this node's cluster,
//! Kafka and HTTP addresses, the controller's sessions (fencing, unfencing, re-elections)
//! while this node is the controller, and the [`Proposer`] through which any node proposes.
//!
//! It owns no cluster state of its own: identity rules live in
//! `weir_broker::cluster::identity`, the RPC in `weir_broker::cluster::rpc`, the quorum in
//! `weir_broker::cluster::metadata` and its wiring in `weir_broker::cluster::metadata_rpc`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_broker::cluster::config::{ClusterConfig, Mode};
use weir_broker::cluster::control::{
    ControlPlane, ControlSettings, NodeReportBoard, Proposer, SHUTDOWN_WAIT,
};
use weir_broker::cluster::identity::{self, Expected, IdentityError, Verdict};
use weir_broker::cluster::metadata::{MetadataConfig, MetadataNode, NodeInfo};
use weir_broker::cluster::metadata_rpc::{MetadataService, RpcMetadataTransport};
use weir_broker::cluster::rpc::{ClientConfig, ClusterTls, LocalNode, Peers, ServerConfig, serve};
use weir_broker::cluster::service::NodeService;

use crate::node::NodeError;

/// Compares the data directory's identity with the flags (reads only).
pub async fn check_identity(data_dir: &Path, config: &ClusterConfig) -> Result<Verdict, NodeError> {
    let data_dir = data_dir.to_path_buf();
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let cluster_id = config.configured_cluster_id();
        let expected = match config.mode() {
            Mode::Single => Expected::Single,
            Mode::Bootstrap { node_id, .. } | Mode::Join { node_id, .. } => Expected::Member {
                node_id,
                cluster_id: cluster_id.as_deref(),
            },
        };
        identity::check(&data_dir, expected)
    })
    .await?
    .map_err(NodeError::Identity)
}

/// Checks again (now under the data directory's lock) and records the identity of a
/// directory that has none; returns the cluster id, if known.
pub async fn establish_identity(
    data_dir: &Path,
    config: &ClusterConfig,
) -> Result<Option<String>, NodeError> {
    let verdict = check_identity(data_dir, config).await?;
    match verdict {
        Verdict::Single | Verdict::Unrecorded => Ok(None),
        Verdict::Known(id) => Ok(Some(id.cluster_id)),
        Verdict::Record(id) => {
            let dir = data_dir.to_path_buf();
            let recorded = id.clone();
            tokio::task::spawn_blocking(move || identity::record(&dir, &recorded)).await??;
            tracing::info!(
                cluster_id = %id.cluster_id,
                node_id = id.node_id,
                origin = ?id.origin,
                "recorded this node's identity in the data directory"
            );
            Ok(Some(id.cluster_id))
        }
    }
}

/// Binds the cluster listener of a clustered node.
pub async fn bind(config: &ClusterConfig) -> Result<Option<TcpListener>, NodeError> {
    if !config.is_clustered() {
        return Ok(None);
    }
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|source| NodeError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
    Ok(Some(listener))
}

/// A running cluster listener and greeter.
pub struct ClusterNode {
    pub peers: Arc<Peers>,
    /// Where the metadata plane (Raft, controller requests) and replication (follower
    /// fetch) install their request handlers: `set_metadata` / `set_replica` (a plane not
    /// installed yet is refused as not served).
    pub service: Arc<NodeService>,
    /// This node's member of the metadata quorum, once started.
    pub metadata: Option<MetadataNode>,
    /// Proposes metadata commands from this node (through the controller), once started.
    pub proposer: Option<Proposer>,
    server: JoinHandle<()>,
    greeter: JoinHandle<()>,
    control: Option<ControlPlane>,
    stop: watch::Receiver<bool>,
}

/// The addresses this node advertises besides its cluster address: where Kafka clients
/// and HTTP clients reach it (empty: not served).
#[derive(Debug, Clone, Default)]
pub struct ServedAddrs {
    pub kafka: String,
    pub http: String,
}

impl ServedAddrs {
    /// From the bound listeners: the HTTP address, and the Kafka listener's with its
    /// `--kafka-advertised` address if one is set.
    pub fn new(
        http: std::net::SocketAddr,
        kafka: Option<(&TcpListener, Option<&str>)>,
    ) -> ServedAddrs {
        let kafka = match kafka {
            Some((_, Some(advertised))) => advertised.to_string(),
            Some((l, None)) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            None => String::new(),
        };
        ServedAddrs {
            kafka,
            http: http.to_string(),
        }
    }
}

/// Where a node keeps its metadata quorum's log and snapshots, under its data directory.
pub fn metadata_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster").join("metadata")
}

impl ClusterNode {
    /// Starts serving peers on `listener` and greeting them, until `stop` turns true.
    pub fn start(
        listener: TcpListener,
        config: &ClusterConfig,
        tls: Option<ClusterTls>,
        cluster_id: Option<String>,
        data_dir: PathBuf,
        stop: watch::Receiver<bool>,
    ) -> ClusterNode {
        let node_id = config.node_id.unwrap_or_default();
        let local = LocalNode::new(node_id, config.advertised_addr(), cluster_id);
        let rpc = &config.rpc;
        let mut client = ClientConfig::new(rpc.max_message_bytes);
        client.connect_timeout = rpc.connect_timeout();
        client.request_timeout = rpc.request_timeout();
        client.tls = tls.as_ref().map(|t| t.client.clone());
        let peers = Peers::new(
            local.clone(),
            client,
            config.peers.iter().map(|p| (p.id, p.addr.clone())),
        );
        let peers = match (&config.join, local.cluster_id()) {
            (Some(addr), None) => peers.joining(
                addr.clone(),
                Box::new(move |cluster_id: &str| {
                    let id = identity::identity_for(&data_dir, node_id, cluster_id);
                    identity::record(&data_dir, &id).map_err(|e| e.to_string())
                }),
            ),
            _ => peers,
        };
        let peers = Arc::new(peers);
        let service = NodeService::new();
        let mut server_config = ServerConfig::new(local.clone(), rpc.max_message_bytes);
        server_config.tls = tls.map(|t| t.server);
        server_config.inbound = Some(peers.clone());
        if let Ok(addr) = listener.local_addr() {
            let scheme = if server_config.tls.is_some() {
                "TLS"
            } else {
                "plaintext"
            };
            tracing::info!(
                node_id,
                advertised = local.advertised(),
                cluster_id = ?local.cluster_id(),
                "cluster listener on {addr} ({scheme})"
            );
            if server_config.tls.is_none() && !addr.ip().is_loopback() {
                tracing::warn!(
                    "the cluster listener on {addr} is reachable beyond this host without TLS: \
                     anyone who can reach it and knows the cluster id can talk to this node \
                     as a peer; give the nodes --tls-cert/--tls-key and --cluster-ca"
                );
            }
        }
        let mut server_stop = stop.clone();
        let server = tokio::spawn(serve(
            listener,
            server_config,
            service.clone(),
            async move {
                let _ = server_stop.wait_for(|s| *s).await;
            },
        ));
        let greeter = tokio::spawn(peers.clone().run(rpc.hello_interval(), stop.clone()));
        ClusterNode {
            peers,
            service,
            metadata: None,
            proposer: None,
            server,
            greeter,
            control: None,
            stop,
        }
    }

    /// Where this node's engine reports its copies of task state (once the control plane
    /// started).
    pub fn task_copies(&self) -> Option<NodeReportBoard> {
        self.control.as_ref().map(|c| c.task_copies.clone())
    }

    /// Once started: `Some(v)` after the controller said this node is registered (`v` its
    /// applied version then); see `control::wait_caught_up`.
    pub fn registered_at(&self) -> Option<watch::Receiver<Option<u64>>> {
        self.control.as_ref().map(|c| c.registered_at.clone())
    }

    /// Starts this node's metadata quorum member under `<data-dir>/cluster/metadata` (with
    /// `--peers` a voter of the initial set, with `--join` a learner that asks to be
    /// admitted), serves Raft and control requests to the peers, and starts the control
    /// plane: heartbeats with this node's addresses (`served`), the controller's sessions
    /// (`--broker-session-timeout-ms`) and the [`Proposer`].
    pub async fn start_metadata(
        &mut self,
        config: &ClusterConfig,
        data_dir: &Path,
        served: &ServedAddrs,
    ) -> Result<(), NodeError> {
        let (node_id, voters, join) = match config.mode() {
            Mode::Single => return Ok(()),
            Mode::Bootstrap { node_id, peers } => {
                let mut voters: BTreeMap<_, _> = peers
                    .iter()
                    .map(|p| {
                        let info = NodeInfo {
                            cluster_addr: p.addr.clone(),
                            ..NodeInfo::default()
                        };
                        (p.id, info)
                    })
                    .collect();
                voters.entry(node_id).or_insert_with(|| NodeInfo {
                    cluster_addr: config.advertised_addr().to_string(),
                    ..NodeInfo::default()
                });
                (node_id, voters, None)
            }
            Mode::Join { node_id, addr } => (node_id, BTreeMap::new(), Some(addr.to_string())),
        };
        let mut settings =
            ControlSettings::with_session_timeout_ms(config.broker_session_timeout_ms)
                .map_err(|e| NodeError::Metadata(e.to_string()))?;
        settings.auto_rebalance = config.auto_rebalance;
        settings.leader_balance_delay =
            std::time::Duration::from_millis(config.leader_balance_delay_ms);
        let dir = metadata_dir(data_dir);
        let create = dir.clone();
        // The metadata holds users' salted SCRAM keys and token hashes (`--auth`): private to
        // this user, like `auth/auth.json`.
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&create)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&create, std::fs::Permissions::from_mode(0o700))?;
            }
            Ok(())
        })
        .await?
        .map_err(|e| NodeError::Metadata(format!("{}: {e}", dir.display())))?;
        let transport = Arc::new(RpcMetadataTransport::new(self.peers.clone()));
        let node = MetadataNode::start(
            node_id,
            &dir,
            transport,
            &voters,
            &MetadataConfig::default(),
        )
        .await
        .map_err(|e| NodeError::Metadata(e.to_string()))?;
        let local = NodeInfo {
            cluster_addr: config.advertised_addr().to_string(),
            kafka_addr: served.kafka.clone(),
            http_addr: served.http.clone(),
        };
        let control = ControlPlane::start(
            node.clone(),
            self.peers.clone(),
            local,
            settings,
            join,
            self.stop.clone(),
        );
        self.service
            .set_metadata(Arc::new(MetadataService::with_controller(
                node.clone(),
                control.controller.clone(),
            )));
        tracing::info!(
            node_id,
            voters = ?voters.keys().collect::<Vec<_>>(),
            learner = voters.is_empty(),
            dir = %dir.display(),
            "metadata quorum member started"
        );
        self.proposer = Some(control.proposer.clone());
        self.control = Some(control);
        self.metadata = Some(node);
        Ok(())
    }

    /// A controlled shutdown (on SIGTERM, before the quorum member stops): this node stops
    /// heartbeating and the controller fences it and moves its partition leaderships to
    /// in-sync replicas; at most [`SHUTDOWN_WAIT`]. Returns whether the controller confirmed
    /// it. [`stopped`](Self::stopped) does it too; calling it earlier (before the Kafka and
    /// HTTP listeners close) lets clients move to the new leaders while this node still
    /// answers.
    pub async fn controlled_shutdown(&self) -> bool {
        match &self.control {
            Some(control) => control.shutdown(SHUTDOWN_WAIT).await,
            None => true,
        }
    }

    /// Waits for the listener and the greeter to end (after `stop` turned true), after a
    /// controlled shutdown and stopping the metadata quorum member (its log is closed when
    /// this returns).
    pub async fn stopped(self) {
        if let Some(control) = self.control {
            // Leaderships move away before the quorum member stops (bounded).
            control.shutdown(SHUTDOWN_WAIT).await;
            // A proposal in flight may be dropped: it commits or not, and the next
            // controller decides again on what it applied.
            control.stop().await;
        }
        if let Some(node) = &self.metadata {
            match node.shutdown().await {
                Ok(()) => tracing::info!("metadata quorum member stopped"),
                Err(e) => tracing::warn!(error = %e, "stopping the metadata quorum member"),
            }
        }
        let _ = self.greeter.await;
        let _ = self.server.await;
    }
}

impl From<IdentityError> for NodeError {
    fn from(e: IdentityError) -> Self {
        NodeError::Identity(e)
    }
}

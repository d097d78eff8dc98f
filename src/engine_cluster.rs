//! The stream engine on a cluster node (issue #14): its processors are the cluster's. A
//! deploy, redeploy, pause, resume or delete made through any node's engine (its HTTP API
//! or SQL) is published to the replicated catalog (`MetadataCommand::UpsertProcessor` …,
//! through the controller); every node follows the applied catalog — it installs a processor it does not have (the
//! component fetched by its hash from a node that has it), takes a new version or the
//! paused flag, uninstalls a deleted one — and runs exactly the tasks the controller's
//! placement assigned to it ([`Engine::set_assignment`]), keeping warm standbys of the tasks
//! the placement names it a standby of. A task the controller moves off
//! this node while it is live is stopped here first (its final commit is taken: the epoch
//! has not moved) and then released (`ReleaseTask`); only then does its next owner start
//! it, so a graceful move (a join, a decommission, rebalancing) reprocesses nothing.
//!
//! It owns that following and the publishing; placement is the controller's
//! (`metadata::placement`), running tasks the engine's. It knows nothing of HTTP.
//!
//! # Invariants
//!
//! 1. **The catalog is the truth**: a processor runs on a node only while the applied
//!    metadata has it, at the version the metadata names (a node that was down catches up
//!    when it applies the catalog again), and a task only on the node the metadata assigns
//!    it to — a node never starts a task on its own say-so.
//! 2. **A change made on this node is published before it is answered**, by the engine
//!    itself ([`CatalogPublisher`]: HTTP and SQL changes alike); the follower leaves alone a
//!    processor whose change is being published (the engine checks the catalog again under
//!    the processor's operation), and a new deployment the catalog refuses is undone here.
//! 3. **Components are trusted by hash**: the catalog names a component by its SHA-256 and
//!    [`fetch_blob`] checks the bytes before the engine loads them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use weir_broker::BrokerError;
use weir_broker::cluster::NodeId;
use weir_broker::cluster::blob_rpc::{BlobSource, blob_hash, fetch_blob};
use weir_broker::cluster::control::{NodeReportBoard, TaskCopyReport};
use weir_broker::cluster::metadata::{
    ClusterMetadata, DEFAULT_ACCEPTABLE_RECOVERY_LAG, MetadataCommand, NodeBudget, ProcessorRecord,
    TaskFootprint,
};
use weir_broker::cluster::routing::ClusterRouting;
use weir_broker::cluster::rpc::Peers;
use weir_engine::assignment::{StandbyAssignments, TaskAssignments};
use weir_engine::catalog::CatalogPublisher;
use weir_engine::log_access::LogError;
use weir_engine::task::Footprint;
use weir_engine::task::registry::DeploymentRecord;
use weir_engine::task::spec::DEFAULT_STANDBY_REPLICAS;
use weir_engine::{Engine, EngineError};

/// How often this node reports its copies of task state to the controller (with its
/// heartbeats).
const REPORT_COPIES: Duration = Duration::from_millis(500);

/// How long the follower waits before it tries a failed step again (doubling up to
/// [`MAX_RETRY`] while it keeps failing).
const RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Where one task runs (`GET /v1/processors/{name}` on a cluster).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskPlace {
    pub partition: i32,
    /// `None` until the controller assigns it.
    pub node: Option<NodeId>,
    /// The assignment epoch (bumped whenever the task moves).
    pub epoch: u64,
    pub standbys: Vec<NodeId>,
}

/// Why a catalog change could not be published.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Cluster(#[from] BrokerError),
    #[error("cannot encode the deployment: {0}")]
    Encode(String),
}

/// The engine's part of one cluster node. Cheap to share.
pub struct EngineCluster {
    engine: Engine,
    node: NodeId,
    routing: ClusterRouting,
    peers: Arc<Peers>,
    /// Where this node's copies of task state are reported (its heartbeats carry them).
    copies: Option<NodeReportBoard>,
    /// Runs the proposals of the engine's (blocking) catalog calls.
    runtime: tokio::runtime::Handle,
}

/// The catalog's record of a deployment.
fn catalog_record(
    record: &DeploymentRecord,
    module: &[u8],
    footprint: Footprint,
) -> Result<ProcessorRecord, CatalogError> {
    Ok(ProcessorRecord {
        name: record.spec.name.clone(),
        version: record.version,
        partitions: record.partitions,
        inputs: record.spec.inputs.clone(),
        state_topics: Vec::new(),
        standby_replicas: record
            .spec
            .standby_replicas
            .unwrap_or(DEFAULT_STANDBY_REPLICAS),
        acceptable_recovery_lag: record
            .spec
            .acceptable_recovery_lag
            .unwrap_or(DEFAULT_ACCEPTABLE_RECOVERY_LAG),
        task_footprint: TaskFootprint {
            instances: footprint.instances,
            memory_bytes: footprint.memory_bytes,
        },
        paused: record.paused,
        spec: serde_json::to_value(record).map_err(|e| CatalogError::Encode(e.to_string()))?,
        component: Some(blob_hash(module)),
    })
}

impl EngineCluster {
    pub fn new(
        engine: Engine,
        node: NodeId,
        routing: ClusterRouting,
        peers: Arc<Peers>,
        copies: Option<NodeReportBoard>,
    ) -> Arc<EngineCluster> {
        Arc::new(EngineCluster {
            engine,
            node,
            routing,
            peers,
            copies,
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Reports this node's copies of task state every [`REPORT_COPIES`] until `stop`.
    async fn report_copies(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let Some(board) = self.copies.clone() else {
            return;
        };
        let (instances, memory_bytes) = self.engine.task_budget();
        board.set_budget(NodeBudget {
            instances,
            memory_bytes,
        });
        loop {
            let engine = self.engine.clone();
            if let Ok(copies) = tokio::task::spawn_blocking(move || engine.task_copies()).await {
                board.set(
                    copies
                        .into_iter()
                        .map(|c| TaskCopyReport {
                            processor: c.processor,
                            partition: c.partition,
                            lag: c.lag,
                            stateful: c.stateful,
                        })
                        .collect(),
                );
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(REPORT_COPIES) => {}
            }
        }
    }

    /// Runs `f` on the node's runtime and waits for it on this (non-async) thread.
    fn block_on<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, CatalogError>> + Send + 'static,
    ) -> Result<T, EngineError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(f.await);
        });
        match rx.recv() {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(CatalogError::Cluster(e))) => Err(LogError::from(e).into()),
            Ok(Err(e)) => Err(EngineError::Unavailable(e.to_string())),
            Err(_) => Err(EngineError::Unavailable(
                "the node's runtime stopped".into(),
            )),
        }
    }

    /// Publishes a deployment made here: returns once this node applied the catalog with
    /// it. `expected` is the version the catalog must hold now (`None` for a new processor).
    async fn publish_deployment(
        routing: ClusterRouting,
        record: ProcessorRecord,
        expected: Option<u64>,
    ) -> Result<(), CatalogError> {
        let name = record.name.clone();
        let replaced = expected.unwrap_or(0);
        let command = MetadataCommand::UpsertProcessor {
            record,
            expected_version: expected,
        };
        routing
            .propose_catalog(command, move |m| {
                m.processors
                    .get(&name)
                    .is_some_and(|p| p.version > replaced)
            })
            .await?;
        Ok(())
    }

    /// Publishes a pause or resume made here.
    async fn publish_paused(
        routing: ClusterRouting,
        name: String,
        paused: bool,
    ) -> Result<(), CatalogError> {
        let n = name.clone();
        routing
            .propose_catalog(
                MetadataCommand::SetProcessorPaused { name, paused },
                move |m| m.processors.get(&n).is_none_or(|p| p.paused == paused),
            )
            .await?;
        Ok(())
    }

    /// Publishes a delete made here (the other nodes uninstall it).
    async fn publish_delete(routing: ClusterRouting, name: String) -> Result<(), CatalogError> {
        let n = name.clone();
        routing
            .propose_catalog(MetadataCommand::DeleteProcessor { name }, move |m| {
                !m.processors.contains_key(&n)
            })
            .await?;
        Ok(())
    }

    /// The catalog's record of `name`, as this node applied it.
    pub fn catalog(&self, name: &str) -> Option<ProcessorRecord> {
        self.routing.metadata().processors.get(name).cloned()
    }

    /// Where each task of `name` runs, as this node applied it.
    pub fn assignment(&self, name: &str) -> Vec<TaskPlace> {
        let meta = self.routing.metadata();
        meta.tasks
            .get(name)
            .map(|tasks| {
                tasks
                    .iter()
                    .enumerate()
                    .map(|(p, t)| TaskPlace {
                        partition: p as i32,
                        node: t.owner,
                        epoch: t.epoch,
                        standbys: t.standbys.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Follows the applied catalog and this node's task assignments until `stop`.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        tokio::spawn(self.clone().report_copies(stop.clone()));
        let mut versions = self.routing.subscribe();
        let mut retry = RETRY;
        loop {
            let meta = versions.borrow_and_update().clone();
            let settled = self.clone().follow(meta).await;
            let pause = retry;
            // A step that keeps failing (a component that cannot load here) is retried
            // less and less often, and at once when the metadata changes.
            retry = if settled {
                RETRY
            } else {
                (retry * 2).min(MAX_RETRY)
            };
            let wait = async {
                if settled {
                    versions.changed().await.is_ok()
                } else {
                    // A closed channel: the metadata stopped, and this node with it.
                    !matches!(
                        tokio::time::timeout(pause, versions.changed()).await,
                        Ok(Err(_))
                    )
                }
            };
            tokio::select! {
                more = wait => if !more { return },
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One pass over the applied metadata; whether everything in it was followed.
    async fn follow(self: Arc<Self>, meta: Arc<ClusterMetadata>) -> bool {
        let mut settled = true;
        // Install or update what the catalog has.
        for (name, entry) in &meta.processors {
            let record: DeploymentRecord = match serde_json::from_value(entry.spec.clone()) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(processor = %name, "the catalog's record cannot be read: {e}");
                    continue;
                }
            };
            let engine = self.engine.clone();
            let local = engine
                .versions()
                .get(name)
                .copied()
                .filter(|v| v.created_ms == record.created_ms);
            let wanted = (record.version, entry.paused);
            if local.is_some_and(|v| (v.version, v.paused) == wanted || v.version > record.version)
            {
                continue;
            }
            let module = match (local, &entry.component) {
                // Only the paused flag.
                (Some(v), _) if v.version == record.version => Bytes::new(),
                (_, Some(hash)) => match self.fetch(&meta, hash).await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(processor = %name, "cannot fetch its component yet: {e}");
                        settled = false;
                        continue;
                    }
                },
                (_, None) => continue,
            };
            let record = DeploymentRecord {
                paused: entry.paused,
                ..record
            };
            let name = name.clone();
            let installed =
                tokio::task::spawn_blocking(move || engine.install(record, module)).await;
            match installed {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(processor = %name, "cannot install: {e}");
                    settled = false;
                }
                Err(e) => {
                    tracing::error!(processor = %name, "install failed: {e}");
                    settled = false;
                }
            }
        }
        // Uninstall what it no longer has (the engine skips a processor published
        // meanwhile by this node).
        for name in self.engine.versions().into_keys() {
            // A processor this node kept from before it joined is not the catalog's.
            if meta.processors.contains_key(&name) || !self.engine.in_catalog(&name) {
                continue;
            }
            let engine = self.engine.clone();
            let n = name.clone();
            match tokio::task::spawn_blocking(move || engine.uninstall(&n)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(processor = %name, "cannot uninstall: {e}");
                    settled = false;
                }
                Err(e) => tracing::error!(processor = %name, "uninstall failed: {e}"),
            }
        }
        // Run exactly the tasks assigned here; a task being moved off this node gracefully
        // is stopped (it commits first) and then released to its next owner.
        let mut assigned = TaskAssignments::new();
        let mut releasing = Vec::new();
        for (processor, partition, task) in meta.owned_tasks(self.node) {
            if task.moving_to.is_some() {
                releasing.push(MetadataCommand::ReleaseTask {
                    processor: processor.to_string(),
                    partition,
                    epoch: task.epoch,
                    node: self.node,
                });
                continue;
            }
            assigned
                .entry(processor.to_string())
                .or_default()
                .insert(partition, task.epoch);
        }
        // And keep warm standbys of the tasks it is a standby for.
        let mut standbys = StandbyAssignments::new();
        for (processor, partition, _) in meta.standby_tasks(self.node) {
            standbys
                .entry(processor.to_string())
                .or_default()
                .insert(partition);
        }
        let engine = self.engine.clone();
        if tokio::task::spawn_blocking(move || engine.set_assignment(assigned, standbys))
            .await
            .is_err()
        {
            return false;
        }
        for release in releasing {
            let MetadataCommand::ReleaseTask {
                processor,
                partition,
                epoch,
                ..
            } = &release
            else {
                continue;
            };
            let (processor, partition, epoch) = (processor.clone(), *partition, *epoch);
            let done = move |m: &ClusterMetadata| {
                m.task(&processor, partition)
                    .is_none_or(|t| t.epoch != epoch || t.moving_to.is_none())
            };
            if let Err(e) = self.routing.propose_catalog(release, done).await {
                tracing::debug!("a task's release was not taken: {e}");
                settled = false;
            }
        }
        settled
    }

    /// The component `hash` from another live node.
    async fn fetch(&self, meta: &ClusterMetadata, hash: &str) -> Result<Bytes, String> {
        let nodes: Vec<NodeId> = meta.live_nodes().filter(|n| *n != self.node).collect();
        fetch_blob(&self.peers, &nodes, hash)
            .await
            .map_err(|e| e.to_string())
    }
}

impl CatalogPublisher for EngineCluster {
    fn version(&self, name: &str) -> Option<u64> {
        self.catalog(name).map(|p| p.version)
    }

    fn deployed(
        &self,
        record: &DeploymentRecord,
        module: &[u8],
        footprint: Footprint,
        expected: Option<u64>,
    ) -> Result<(), EngineError> {
        let entry = catalog_record(record, module, footprint)
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        self.block_on(Self::publish_deployment(
            self.routing.clone(),
            entry,
            expected,
        ))
    }

    fn paused(&self, name: &str, paused: bool) -> Result<(), EngineError> {
        self.block_on(Self::publish_paused(
            self.routing.clone(),
            name.to_string(),
            paused,
        ))
    }

    fn deleted(&self, name: &str) -> Result<(), EngineError> {
        self.block_on(Self::publish_delete(self.routing.clone(), name.to_string()))
    }
}

/// The node's components, for peers that fetch them by hash.
pub struct EngineBlobs(pub Engine);

impl BlobSource for EngineBlobs {
    fn blob(&self, hash: &str) -> Option<Bytes> {
        self.0.versions().into_keys().find_map(|name| {
            let (_, module) = self.0.deployment(&name)?;
            (blob_hash(&module) == hash).then_some(module)
        })
    }
}

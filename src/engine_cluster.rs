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
//! 4. **Functions and the SQL catalog are the cluster's too**, by the same rules: a
//!    function registered, replaced or dropped here ([`FunctionPublisher`]) and a stream,
//!    table or query created or dropped here ([`SqlCatalogPublisher`]) is published before it
//!    is answered; the follower installs the functions the metadata has (the module fetched
//!    by its hash, checked) and drops the others, and makes the node's SQL catalog the
//!    metadata's — functions first, then the SQL catalog, then processors, so a query's
//!    processor finds the functions and sources it uses. Each step re-checks the applied
//!    metadata under the registry's or the catalog's lock, so a change being published here
//!    is never undone by a pass over older metadata.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use weir_broker::BrokerError;
use weir_broker::cluster::NodeId;
use weir_broker::cluster::blob_rpc::{BlobError, BlobSource, blob_hash, fetch_blob};
use weir_broker::cluster::control::{NodeReportBoard, TaskCopyReport};
use weir_broker::cluster::metadata::{
    ArtifactRecord, ClusterMetadata, DEFAULT_ACCEPTABLE_RECOVERY_LAG, FunctionRecord,
    MetadataCommand, MetadataError, NodeBudget, ProcessorRecord, SqlRecord, TaskFootprint,
};
use weir_broker::cluster::routing::ClusterRouting;
use weir_broker::cluster::rpc::Peers;
use weir_engine::assignment::{StandbyAssignments, TaskAssignments};
use weir_engine::catalog::{CatalogPublisher, FunctionPublisher, SqlCatalogPublisher};
use weir_engine::log_access::LogError;
use weir_engine::sql::catalog::{QueryDef, SourceDef};
use weir_engine::sql::{SqlError, SqlService};
use weir_engine::task::Footprint;
use weir_engine::task::registry::DeploymentRecord;
use weir_engine::task::spec::DEFAULT_STANDBY_REPLICAS;
use weir_engine::udf::{ArtifactInfo, FunctionError, FunctionInfo, FunctionRegistry, UdfKind};
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

impl TaskPlace {
    /// Whom a read that accepts a stale answer asks, in turn, at node `me`: the owner, then
    /// `me` if it keeps a standby, then the other standbys as placed; each once.
    pub fn stale_ask_order(&self, me: NodeId) -> Vec<NodeId> {
        let mut order: Vec<NodeId> = self.node.into_iter().collect();
        if self.standbys.contains(&me) {
            order.push(me);
        }
        for n in &self.standbys {
            if !order.contains(n) {
                order.push(*n);
            }
        }
        order
    }
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
    /// The node's functions and SQL (followed when set).
    functions: Option<Arc<FunctionRegistry>>,
    sql: Option<SqlService>,
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
    /// The engine's part of the node, following (and publishing) its processors, its
    /// functions and its SQL catalog.
    pub fn new(
        engine: Engine,
        node: NodeId,
        routing: ClusterRouting,
        peers: Arc<Peers>,
        copies: Option<NodeReportBoard>,
        functions: Arc<FunctionRegistry>,
        sql: SqlService,
    ) -> Arc<EngineCluster> {
        Arc::new(EngineCluster {
            engine,
            node,
            routing,
            peers,
            copies,
            runtime: tokio::runtime::Handle::current(),
            functions: Some(functions),
            sql: Some(sql),
        })
    }

    /// Runs `f` on the node's runtime and waits for its result on this (non-async) thread;
    /// `None` if the runtime stopped.
    fn wait<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().ok()
    }

    /// Proposes a change of the functions or the SQL catalog and waits until this node
    /// applied it (`done`).
    fn propose(
        &self,
        command: MetadataCommand,
        done: impl Fn(&ClusterMetadata) -> bool + Send + Sync + 'static,
    ) -> Result<(), BrokerError> {
        let routing = self.routing.clone();
        self.wait(async move { routing.propose_catalog(command, done).await })
            .unwrap_or(Err(BrokerError::ShuttingDown))
            .map(|_| ())
    }

    /// Functions first, then the SQL catalog: whether both were followed.
    async fn follow_functions_and_sql(&self, meta: &ClusterMetadata) -> bool {
        let mut settled = true;
        if let Some(registry) = &self.functions {
            settled &= self.follow_functions(meta, registry).await;
        }
        if let Some(sql) = self.sql.clone() {
            let routing = self.routing.clone();
            let followed = tokio::task::spawn_blocking(move || {
                sql.follow_catalog(|| sql_catalog_of(&routing.metadata()))
            })
            .await;
            match followed {
                Ok(Ok(true)) => tracing::info!("SQL catalog updated from the cluster's"),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::warn!("cannot take the cluster's SQL catalog: {e}");
                    settled = false;
                }
                Err(_) => settled = false,
            }
        }
        settled
    }

    /// Installs the functions the metadata has and this node lacks (or has another version
    /// of), drops those it does not have.
    async fn follow_functions(
        &self,
        meta: &ClusterMetadata,
        registry: &Arc<FunctionRegistry>,
    ) -> bool {
        let mut settled = true;
        for (name, f) in &meta.functions {
            let hex = f.module.strip_prefix("sha256:").unwrap_or_default();
            if registry.has(name, hex, f.created_ms) {
                continue;
            }
            let module = match registry.module_by_hash(&f.module) {
                Some(m) => m,
                None => match self.fetch(meta, &f.module).await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(function = %name, "cannot fetch its module yet: {e}");
                        settled = false;
                        continue;
                    }
                },
            };
            let (registry, routing) = (registry.clone(), self.routing.clone());
            let (name, hash, created) = (name.clone(), f.module.clone(), f.created_ms);
            let installed = tokio::task::spawn_blocking(move || {
                registry.install(&name, module, created, || {
                    routing
                        .metadata()
                        .functions
                        .get(&name)
                        .is_some_and(|f| f.module == hash && f.created_ms == created)
                })
            })
            .await;
            match installed {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!("cannot install a function of the cluster's catalog: {e}");
                    settled = false;
                }
                Err(_) => settled = false,
            }
        }
        for info in registry.list() {
            if meta.functions.contains_key(&info.name) {
                continue;
            }
            let (registry, routing) = (registry.clone(), self.routing.clone());
            let removed = tokio::task::spawn_blocking(move || {
                registry.uninstall(&info.name, || {
                    !routing.metadata().functions.contains_key(&info.name)
                })
            })
            .await;
            if !matches!(removed, Ok(Ok(_))) {
                settled = false;
            }
        }
        settled
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
        let mut settled = self.follow_functions_and_sql(&meta).await;
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

/// The node's components and function modules, for peers that fetch them by hash.
pub struct EngineBlobs(pub Engine, pub Option<Arc<FunctionRegistry>>);

impl BlobSource for EngineBlobs {
    fn blob(&self, hash: &str) -> Option<Bytes> {
        if let Some(module) = self.1.as_ref().and_then(|f| f.module_by_hash(hash)) {
            return Some(module);
        }
        if let (Some(f), Some(hex)) = (&self.1, hash.strip_prefix("sha256:"))
            && let Some(artifact) = f.artifact_by_hash(hex)
        {
            return Some(artifact);
        }
        self.0.versions().into_keys().find_map(|name| {
            let (_, module) = self.0.deployment(&name)?;
            (blob_hash(&module) == hash).then_some(module)
        })
    }
}

/// The SQL catalog the metadata holds (a record that cannot be read is left out, logged).
fn sql_catalog_of(
    meta: &ClusterMetadata,
) -> (BTreeMap<String, SourceDef>, BTreeMap<String, QueryDef>) {
    fn decode<T: serde::de::DeserializeOwned>(
        records: &BTreeMap<String, SqlRecord>,
    ) -> BTreeMap<String, T> {
        records
            .iter()
            .filter_map(
                |(name, r)| match serde_json::from_value(r.definition.clone()) {
                    Ok(d) => Some((name.clone(), d)),
                    Err(e) => {
                        tracing::error!(name = %name, "a SQL catalog record cannot be read: {e}");
                        None
                    }
                },
            )
            .collect()
    }
    (decode(&meta.sql_sources), decode(&meta.sql_queries))
}

fn sql_record<T: serde::Serialize>(name: &str, def: &T) -> Result<SqlRecord, SqlError> {
    Ok(SqlRecord {
        name: name.to_string(),
        definition: serde_json::to_value(def)
            .map_err(|e| SqlError::new("internal", format!("cannot encode {name}: {e}")))?,
    })
}

/// A failed publication of a SQL catalog change, as SQL reports it.
fn sql_error(e: BrokerError) -> SqlError {
    match e {
        BrokerError::ClusterRefused(e @ MetadataError::SqlObjectExists { .. }) => {
            SqlError::new("exists", e.to_string())
        }
        BrokerError::ClusterRefused(e) => SqlError::new("invalid_statement", e.to_string()),
        e => SqlError::new(
            "unavailable",
            format!("the cluster did not take the change: {e}"),
        ),
    }
}

impl FunctionPublisher for EngineCluster {
    fn registered(&self, info: &FunctionInfo, replace: bool) -> Result<(), FunctionError> {
        let kind = match info.kind {
            UdfKind::Scalar => "scalar",
            UdfKind::Aggregate => "aggregate",
        };
        let record = FunctionRecord {
            name: info.name.clone(),
            version: 0,
            kind: kind.into(),
            signature: serde_json::to_value(&info.signature)
                .map_err(|e| FunctionError::Cluster(e.to_string()))?,
            module: format!("sha256:{}", info.sha256),
            module_bytes: info.module_bytes,
            created_ms: info.created_ms,
        };
        let (name, module, created) = (
            record.name.clone(),
            record.module.clone(),
            record.created_ms,
        );
        let done = move |m: &ClusterMetadata| {
            m.functions
                .get(&name)
                .is_some_and(|f| f.module == module && f.created_ms == created)
        };
        self.propose(MetadataCommand::UpsertFunction { record, replace }, done)
            .map_err(|e| match e {
                BrokerError::ClusterRefused(MetadataError::FunctionExists(n)) => {
                    FunctionError::Exists(n)
                }
                e => FunctionError::Cluster(e.to_string()),
            })
    }

    fn deleted(&self, name: &str) -> Result<(), FunctionError> {
        let n = name.to_string();
        let done = move |m: &ClusterMetadata| !m.functions.contains_key(&n);
        let command = MetadataCommand::DeleteFunction {
            name: name.to_string(),
        };
        self.propose(command, done).map_err(|e| match e {
            BrokerError::ClusterRefused(MetadataError::UnknownFunction(n)) => {
                FunctionError::NotFound(n)
            }
            e => FunctionError::Cluster(e.to_string()),
        })
    }

    fn artifact_put(&self, info: &ArtifactInfo) -> Result<(), FunctionError> {
        let record = ArtifactRecord {
            name: info.name.clone(),
            hash: format!("sha256:{}", info.sha256),
            bytes: info.bytes,
        };
        let r = record.clone();
        let done = move |m: &ClusterMetadata| m.artifacts.get(&r.name) == Some(&r);
        self.propose(MetadataCommand::PutArtifact { record }, done)
            .map_err(|e| FunctionError::Cluster(e.to_string()))
    }

    fn artifact_sha256(&self, name: &str) -> Option<String> {
        let meta = self.routing.metadata();
        let hash = &meta.artifacts.get(name)?.hash;
        hash.strip_prefix("sha256:").map(str::to_string)
    }

    fn fetch_module(&self, sha256: &str) -> Result<Bytes, FunctionError> {
        let meta = self.routing.metadata();
        let nodes: Vec<NodeId> = meta.live_nodes().filter(|n| *n != self.node).collect();
        let (peers, hash) = (self.peers.clone(), format!("sha256:{sha256}"));
        self.wait(async move { fetch_blob(&peers, &nodes, &hash).await })
            .unwrap_or_else(|| {
                Err(BlobError::Unavailable {
                    hash: sha256.to_string(),
                    reasons: "the node is stopping".into(),
                })
            })
            .map_err(|e| FunctionError::Cluster(e.to_string()))
    }
}

impl SqlCatalogPublisher for EngineCluster {
    fn source_put(&self, def: &SourceDef, create: bool) -> Result<(), SqlError> {
        let record = sql_record(&def.name, def)?;
        let r = record.clone();
        let done = move |m: &ClusterMetadata| m.sql_sources.get(&r.name) == Some(&r);
        let command = if create {
            MetadataCommand::CreateSqlSource { record }
        } else {
            MetadataCommand::UpsertSqlSource { record }
        };
        self.propose(command, done).map_err(sql_error)
    }

    fn source_removed(&self, name: &str) -> Result<(), SqlError> {
        let n = name.to_string();
        let done = move |m: &ClusterMetadata| !m.sql_sources.contains_key(&n);
        let command = MetadataCommand::DeleteSqlSource {
            name: name.to_string(),
        };
        self.propose(command, done).map_err(sql_error)
    }

    fn query_put(&self, def: &QueryDef, create: bool) -> Result<(), SqlError> {
        let record = sql_record(&def.id, def)?;
        let r = record.clone();
        let done = move |m: &ClusterMetadata| m.sql_queries.get(&r.name) == Some(&r);
        let command = if create {
            MetadataCommand::CreateSqlQuery { record }
        } else {
            MetadataCommand::UpsertSqlQuery { record }
        };
        self.propose(command, done).map_err(sql_error)
    }

    fn query_removed(&self, id: &str) -> Result<(), SqlError> {
        let n = id.to_string();
        let done = move |m: &ClusterMetadata| !m.sql_queries.contains_key(&n);
        let command = MetadataCommand::DeleteSqlQuery { id: id.to_string() };
        self.propose(command, done).map_err(sql_error)
    }
}

#[cfg(test)]
mod tests {
    use super::TaskPlace;

    #[test]
    fn a_stale_read_asks_the_owner_then_this_nodes_standby_then_the_others_once_each() {
        let place = TaskPlace {
            partition: 0,
            node: Some(1),
            epoch: 3,
            standbys: vec![2, 3],
        };
        assert_eq!(place.stale_ask_order(3), vec![1, 3, 2]);
        assert_eq!(place.stale_ask_order(1), vec![1, 2, 3]);
        let unplaced = TaskPlace {
            node: None,
            ..place
        };
        assert_eq!(unplaced.stale_ask_order(4), vec![2, 3]);
    }
}

//! [`Engine`]: processors on one node, as the HTTP API sees them. Deploy (validate the spec,
//! check it against the server's maxima, check the inputs are co-partitioned, load the
//! module, admit its tasks against the node's Wasm capacity, create the processor's topics,
//! persist the deployment, start its tasks in the background), redeploy, pause, resume,
//! delete, describe, and interactive queries of task state. On start it brings back every
//! persisted deployment.
//!
//! It owns the decisions about processors; running tasks is the [`TaskManager`]'s, storing
//! state the [`StateBackend`]'s, making instances the [`ModuleLoader`]'s, counting capacity
//! the `admission` ledger's. Operations on one processor are serialised; no lock is held
//! across another processor's operation. All methods block (disk, log, joining task
//! threads): call them off the async runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::JoinHandle;

use bytes::Bytes;
use serde::Serialize;
use weir_broker::partitioner::partition_for_key;
use weir_broker::{BrokerError, InternalTopic, TopicGuard, TopicSpec};

use crate::admission::Admission;
use crate::assignment::{Assignment, StandbyAssignments, TaskAssignments};
use crate::catalog::CatalogPublisher;
use crate::clock::now_ms;
use crate::error::EngineError;
use crate::limits::NodeLimits;
use crate::log_access::{LogAccess, LogError, OffsetCommit, offsets_spec};
use crate::state::changelog::{changelog_spec, changelog_topic, stores_with_changelogs};
use crate::state::{StateBackend, keys};
use crate::task::inputs::input_key;
use crate::task::registry::{DeploymentRecord, Registry};
use crate::task::spec::{Guarantee, OnError, ProcessorSpec, StartFrom};
use crate::task::standby::StandbyStatus;
use crate::task::{LogicFactory, ModuleLoader, TaskDefinition, TaskManager, TaskState, TaskStatus};
use crate::task_id::TaskId;

/// How a processor's error starts when the tasks assigned to this node do not fit its
/// budget (cleared once they fit again).
const OVER_BUDGET: &str = "tasks assigned here do not fit";

/// Where the engine keeps its files.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Deployments (`deployment.json` + module per processor).
    pub processors_dir: PathBuf,
    /// The server's maxima on specs and the node's Wasm capacity (admission).
    pub limits: NodeLimits,
    /// A cluster node runs only the tasks the cluster assigns it
    /// ([`Engine::set_assignment`]); a single node runs every task.
    pub assigned_tasks: bool,
}

impl EngineConfig {
    /// The layout under a node's data directory: `<data_dir>/processors`.
    pub fn under(data_dir: &std::path::Path) -> Self {
        EngineConfig {
            processors_dir: data_dir.join("processors"),
            limits: NodeLimits::default(),
            assigned_tasks: false,
        }
    }
}

struct Deployed {
    record: DeploymentRecord,
    /// `None` when the module could not be loaded at start-up (`load_error` says why).
    factory: Option<Arc<dyn LogicFactory>>,
    /// Why the processor cannot run (its module failed to load, or it does not fit the
    /// node's limits at start-up).
    load_error: Option<String>,
    /// Assigns tasks in the background (after a deploy, a pause or resume of tasks not
    /// started yet, and at start-up).
    starter: Option<Starter>,
    /// Why an earlier starter failed to start a task.
    start_error: Option<String>,
}

impl Deployed {
    /// A deployment whose module loaded, with no task started yet.
    fn loaded(record: DeploymentRecord, factory: Arc<dyn LogicFactory>) -> Deployed {
        Deployed {
            record,
            factory: Some(factory),
            load_error: None,
            starter: None,
            start_error: None,
        }
    }

    fn starting(&self) -> bool {
        self.starter.as_ref().is_some_and(|s| !s.progress.done())
    }

    fn error(&self) -> Option<String> {
        self.load_error
            .clone()
            .or_else(|| self.start_error.clone())
            .or_else(|| self.starter.as_ref().and_then(|s| s.progress.error()))
    }
}

/// A thread assigning a processor's tasks one by one.
struct Starter {
    cancel: Arc<AtomicBool>,
    progress: Arc<StartProgress>,
    thread: JoinHandle<()>,
}

#[derive(Default)]
struct StartProgress {
    done: AtomicBool,
    error: Mutex<Option<String>>,
}

impl StartProgress {
    fn done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    fn error(&self) -> Option<String> {
        lock(&self.error).clone()
    }
}

/// Names of the processors an operation (deploy, redeploy, pause, resume, delete) is
/// running on: operations on one processor wait for each other, never for another's.
#[derive(Default)]
struct Busy {
    names: Mutex<BTreeSet<String>>,
    freed: Condvar,
}

/// Holds one processor's name in [`Busy`] until dropped.
struct OpGuard<'a> {
    busy: &'a Busy,
    name: String,
}

impl Drop for OpGuard<'_> {
    fn drop(&mut self) {
        lock(&self.busy.names).remove(&self.name);
        self.busy.freed.notify_all();
    }
}

struct Inner {
    log: Arc<dyn LogAccess>,
    loader: Arc<dyn ModuleLoader>,
    registry: Registry,
    tasks: TaskManager,
    processors: Mutex<BTreeMap<String, Deployed>>,
    /// Serialises the operations on each processor (no lock is held across another
    /// processor's operation).
    busy: Busy,
    admission: Admission,
    /// Which tasks this node runs (shared with the task manager: the epochs tasks commit
    /// under).
    assignment: Arc<Assignment>,
    /// The cluster's catalog this node publishes its changes to (none on a single node).
    catalog: OnceLock<Arc<dyn CatalogPublisher>>,
    /// Set by [`Engine::shutdown`]: no task starts again.
    stopping: AtomicBool,
}

/// The processors of this node. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Which deployment of a processor a node has ([`Engine::versions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeployedVersion {
    pub version: u64,
    pub paused: bool,
    pub created_ms: i64,
}

/// A processor as listed.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessorSummary {
    pub name: String,
    pub version: u64,
    /// `starting` (tasks are being started), `running`, `restoring`, `paused`, `stopped`
    /// or `failed` (any task failed, or the processor cannot run).
    pub status: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub partitions: i32,
    pub tasks_running: usize,
    pub tasks_failed: usize,
    pub lag: i64,
}

/// A processor with its spec and every task's status.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessorDescription {
    pub name: String,
    pub version: u64,
    pub status: String,
    pub spec: ProcessorSpec,
    pub partitions: i32,
    pub paused: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub module_bytes: u64,
    /// Why the processor cannot run at all (its module failed to load at start-up, it no
    /// longer fits the node's limits, or a task could not be started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub lag: i64,
    /// The processor's internal topics.
    pub topics: InternalTopics,
    pub tasks: Vec<TaskStatus>,
    /// Cluster mode: the standbys of other nodes' tasks this node keeps.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub standbys: Vec<StandbyStatus>,
}

/// A copy of one task's state on this node ([`Engine::task_copies`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCopy {
    pub processor: String,
    pub partition: i32,
    /// Changelog records it is behind (0 for a running task); `None` while a standby's
    /// first pass runs.
    pub lag: Option<u64>,
    /// Whether the processor has state (changelogs).
    pub stateful: bool,
}

/// Names of a processor's internal topics.
#[derive(Debug, Clone, Serialize)]
pub struct InternalTopics {
    pub repartition: String,
    pub offsets: String,
    pub dead_letter: Option<String>,
    pub changelogs: Vec<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// Opens the engine: reads the persisted deployments (their modules are loaded by
    /// [`Engine::start`]).
    pub fn open(
        config: &EngineConfig,
        log: Arc<dyn LogAccess>,
        backend: Arc<dyn StateBackend>,
        loader: Arc<dyn ModuleLoader>,
    ) -> Result<Engine, EngineError> {
        let registry = Registry::open(&config.processors_dir)?;
        let assignment = Arc::new(if config.assigned_tasks {
            Assignment::assigned()
        } else {
            Assignment::all()
        });
        Ok(Engine {
            inner: Arc::new(Inner {
                tasks: TaskManager::new(log.clone(), backend).with_assignment(assignment.clone()),
                log,
                loader,
                registry,
                processors: Mutex::new(BTreeMap::new()),
                busy: Busy::default(),
                admission: Admission::new(config.limits.clone()),
                assignment,
                catalog: OnceLock::new(),
                stopping: AtomicBool::new(false),
            }),
        })
    }

    /// Brings back every persisted deployment; its tasks start in the background. Returns
    /// how many processors were started; one that cannot be loaded, or no longer fits the
    /// node's limits, is kept with an error status.
    pub fn start(&self) -> Result<usize, EngineError> {
        let mut started = 0;
        for loaded in self.inner.registry.load_all()? {
            let (record, module) = match loaded {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("skipping a deployment that cannot be read: {e}");
                    continue;
                }
            };
            let name = record.spec.name.clone();
            let _op = self.op(&name);
            let loaded = self
                .check_limits(&record.spec)
                .map_err(|e| format!("{}: {e}", e.code()))
                .and_then(|()| {
                    self.inner
                        .loader
                        .load(&module, &record.spec.limits)
                        .map_err(|e| format!("{}: {}", e.code, e.message))
                })
                .and_then(|f| {
                    self.admit(&name, &*f, record.partitions)
                        .map_err(|e| format!("{}: {e}", e.code()))?;
                    Ok(f)
                });
            let (factory, load_error) = match loaded {
                Ok(f) => (Some(f), None),
                Err(e) => {
                    tracing::error!(processor = %name, "cannot start the processor: {e}");
                    (None, Some(e))
                }
            };
            let mut deployed = Deployed {
                record,
                factory,
                load_error,
                starter: None,
                start_error: None,
            };
            self.mark_internal_topics(&deployed.record);
            if self.inner.assignment.is_assigned() && !deployed.record.in_catalog {
                tracing::info!(
                    processor = %name,
                    "deployed before this node joined the cluster: it keeps every task here"
                );
                self.inner.assignment.run_locally(&name);
            }
            if let Some(def) = self.definition(&deployed) {
                let owned = self
                    .inner
                    .assignment
                    .owned(&name, deployed.record.partitions);
                deployed.starter = Some(self.start_tasks(&name, def, owned)?);
                started += 1;
            }
            lock(&self.inner.processors).insert(name, deployed);
        }
        Ok(started)
    }

    /// Stops every task after a final commit (node shutdown); guest calls in progress are
    /// interrupted.
    /// From then on no task starts again (a cluster's assignment changes are ignored).
    pub fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let names: Vec<String> = lock(&self.inner.processors).keys().cloned().collect();
        for name in names {
            self.stop_starter(&name);
        }
        self.inner.tasks.revoke_all();
    }

    /// Cluster mode: publishes every change made through this engine to `catalog`, and
    /// checks deployments against it (set once, before the node serves requests).
    pub fn set_catalog(&self, catalog: Arc<dyn CatalogPublisher>) {
        if self.inner.catalog.set(catalog).is_err() {
            tracing::warn!("the engine's catalog was set twice");
        }
    }

    fn catalog(&self) -> Option<&Arc<dyn CatalogPublisher>> {
        self.inner.catalog.get()
    }

    /// The catalog a change of `record`'s processor is published to: none for a processor
    /// deployed before this node joined a cluster (it stays this node's).
    fn catalog_of(&self, record: &DeploymentRecord) -> Option<&Arc<dyn CatalogPublisher>> {
        self.catalog().filter(|_| record.in_catalog)
    }

    /// Whether `name` is the cluster's (deployed or installed through its catalog), not a
    /// processor this node kept from before it joined.
    pub fn in_catalog(&self, name: &str) -> bool {
        lock(&self.inner.processors)
            .get(name)
            .is_some_and(|d| d.record.in_catalog)
    }

    /// Cluster mode: the tasks the cluster assigns this node now, and the tasks of other
    /// nodes it keeps standbys of. Tasks it no longer runs (or runs under a new assignment
    /// epoch) are revoked — each commits first, so a graceful move reprocesses nothing — and
    /// the ones it gained start in the background, restoring their state from the changelogs
    /// before they process a record (from a standby's warm store when this node kept one).
    /// Ignored on a single node.
    pub fn set_assignment(&self, new: TaskAssignments, standbys: StandbyAssignments) {
        if !self.inner.assignment.is_assigned() || self.inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let old = self.inner.assignment.replace(new.clone());
        let old_standbys = self.inner.assignment.replace_standbys(standbys.clone());
        let names: Vec<String> = lock(&self.inner.processors).keys().cloned().collect();
        for name in names {
            let (before, after) = (old.get(&name), new.get(&name));
            if before == after && old_standbys.get(&name) == standbys.get(&name) {
                continue;
            }
            let _op = self.op(&name);
            self.stop_starter(&name);
            for (p, epoch) in before.into_iter().flatten() {
                if after.and_then(|a| a.get(p)) != Some(epoch) {
                    self.inner.tasks.revoke(&TaskId::new(&name, *p));
                    tracing::info!(processor = %name, partition = p, "task revoked");
                }
            }
            self.follow_standbys(&name);
            // Tasks start only within this node's budget (placement keeps it so).
            if !self.readmit(&name) {
                continue;
            }
            if let Err(e) = self.start_missing(&name) {
                tracing::error!(processor = %name, "cannot start assigned tasks: {e}");
            }
        }
    }

    /// Starts the standbys of `name` this node should keep and stops the others (the
    /// caller holds its operation; tasks it no longer runs are revoked first, so a former
    /// owner's store becomes a standby's).
    fn follow_standbys(&self, name: &str) {
        let Ok(record) = self.record(name) else {
            return;
        };
        let wanted: BTreeSet<i32> = self
            .inner
            .assignment
            .standbys(name)
            .into_iter()
            .filter(|p| (0..record.partitions).contains(p))
            .filter(|p| !self.inner.assignment.owns(name, *p))
            .collect();
        for id in self.inner.tasks.standby_ids() {
            // The standby of a task this node now owns is not dropped here: the task's start
            // takes it over (its warm store and what it last reported, `warmed`). Dropped,
            // its handle could be swept as finished before the start looked for it.
            if id.processor == name
                && !wanted.contains(&id.partition)
                && !self.inner.assignment.owns(name, id.partition)
            {
                self.inner.tasks.drop_standby(&id);
                tracing::info!(task = %id, "standby dropped");
            }
        }
        for p in wanted {
            if let Err(e) = self.inner.tasks.keep_standby(&TaskId::new(name, p)) {
                tracing::error!(processor = %name, partition = p, "cannot keep a standby: {e}");
            }
        }
    }

    /// Cluster mode: this node's copies of task state, for the cluster's placement — every
    /// task it runs (lag 0) and every standby it keeps (its lag once its first pass has
    /// finished) — each with whether its processor has state (changelogs) at all.
    pub fn task_copies(&self) -> Vec<TaskCopy> {
        let names: Vec<String> = lock(&self.inner.processors)
            .iter()
            .filter(|(_, d)| d.record.in_catalog)
            .map(|(n, _)| n.clone())
            .collect();
        let running: BTreeSet<TaskId> = self.inner.tasks.assigned().into_iter().collect();
        let mut out = Vec::new();
        for name in names {
            let stateful = stores_with_changelogs(&*self.inner.log, &name)
                .map(|s| !s.is_empty())
                .unwrap_or(true);
            for id in running.iter().filter(|id| id.processor == name) {
                out.push(TaskCopy {
                    processor: name.clone(),
                    partition: id.partition,
                    lag: Some(0),
                    stateful,
                });
            }
            for id in self.inner.tasks.standby_ids() {
                if id.processor != name {
                    continue;
                }
                let Some(s) = self.inner.tasks.standby_status(&id) else {
                    continue;
                };
                out.push(TaskCopy {
                    processor: name.clone(),
                    partition: id.partition,
                    lag: s.caught_up.then(|| u64::try_from(s.lag).unwrap_or(0)),
                    stateful,
                });
            }
        }
        out
    }

    /// The task manager (what a cluster controller drives).
    pub fn tasks(&self) -> &TaskManager {
        &self.inner.tasks
    }

    /// The server's maxima and the node's Wasm capacity.
    pub fn limits(&self) -> &NodeLimits {
        self.inner.admission.limits()
    }

    /// Waits until no other operation runs on `name`, and holds it until dropped.
    fn op(&self, name: &str) -> OpGuard<'_> {
        let busy = &self.inner.busy;
        let mut names = lock(&busy.names);
        while names.contains(name) {
            names = busy.freed.wait(names).unwrap_or_else(|p| p.into_inner());
        }
        names.insert(name.to_string());
        OpGuard {
            busy,
            name: name.to_string(),
        }
    }

    /// Refuses a spec asking for more than the server's maxima.
    /// `exactly_once` needs the transaction coordinator, which a cluster does not replicate
    /// yet: refused there (400) rather than silently weakened.
    fn check_guarantee(&self, spec: &ProcessorSpec) -> Result<(), EngineError> {
        if spec.guarantee == Guarantee::ExactlyOnce && self.inner.assignment.is_assigned() {
            return Err(EngineError::InvalidSpec(
                "guarantee exactly_once is not available on a cluster yet: transactions are \
                 not replicated; use at_least_once"
                    .into(),
            ));
        }
        Ok(())
    }

    fn check_limits(&self, spec: &ProcessorSpec) -> Result<(), EngineError> {
        self.limits()
            .check(&spec.limits)
            .map_err(|e| EngineError::LimitExceeded {
                limit: e.limit,
                message: e.message,
            })
    }

    /// Reserves what the tasks of `name` (of `partitions`) this node runs take with
    /// `factory`, or refuses the processor: every task on a single node (and for a
    /// processor kept from before the node joined a cluster), on a cluster node only the
    /// tasks assigned to it (the cluster's placement keeps each node within its budget;
    /// [`Engine::set_assignment`] reserves again as the assignment changes).
    fn admit(
        &self,
        name: &str,
        factory: &dyn LogicFactory,
        partitions: i32,
    ) -> Result<(), EngineError> {
        let tasks = if self.inner.assignment.is_assigned() {
            i32::try_from(self.inner.assignment.owned(name, partitions).len()).unwrap_or(i32::MAX)
        } else {
            partitions
        };
        self.inner
            .admission
            .reserve(name, factory.footprint(), tasks)
            .map_err(EngineError::InsufficientResources)
    }

    /// Cluster mode: reserves again what `name`'s tasks assigned here take; `false` (with
    /// the reason kept as the processor's error) when they do not fit this node's budget.
    fn readmit(&self, name: &str) -> bool {
        let factory = {
            let processors = lock(&self.inner.processors);
            let Some(d) = processors.get(name) else {
                return false;
            };
            let Some(f) = d.factory.clone() else {
                return false;
            };
            (f, d.record.partitions)
        };
        match self.admit(name, &*factory.0, factory.1) {
            Ok(()) => {
                if let Some(d) = lock(&self.inner.processors).get_mut(name)
                    && d.start_error
                        .as_ref()
                        .is_some_and(|e| e.starts_with(OVER_BUDGET))
                {
                    d.start_error = None;
                }
                true
            }
            Err(e) => {
                tracing::error!(processor = %name, "the tasks assigned here do not fit: {e}");
                if let Some(d) = lock(&self.inner.processors).get_mut(name) {
                    d.start_error = Some(format!("{OVER_BUDGET}: {e}"));
                }
                false
            }
        }
    }

    /// This node's Wasm budget for tasks, for the cluster's placement: (instance slots,
    /// linear-memory bytes).
    pub fn task_budget(&self) -> (u32, u64) {
        let l = self.limits();
        (l.wasm_instance_pool, l.wasm_memory_budget_bytes)
    }

    /// [`Engine::definition`] of the processor `name`.
    fn definition_of(&self, name: &str) -> Result<Option<Arc<TaskDefinition>>, EngineError> {
        let processors = lock(&self.inner.processors);
        let d = processors
            .get(name)
            .ok_or_else(|| EngineError::UnknownProcessor(name.to_string()))?;
        Ok(self.definition(d))
    }

    fn definition(&self, d: &Deployed) -> Option<Arc<TaskDefinition>> {
        Some(Arc::new(TaskDefinition {
            spec: d.record.spec.clone(),
            version: d.record.version,
            partitions: d.record.partitions,
            factory: d.factory.clone()?,
            paused: d.record.paused,
        }))
    }

    /// Assigns the tasks of `partitions` on a thread of their own (a task's start opens
    /// its state, which takes a while with thousands of tasks).
    fn start_tasks(
        &self,
        name: &str,
        def: Arc<TaskDefinition>,
        partitions: Vec<i32>,
    ) -> Result<Starter, EngineError> {
        let cancel = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(StartProgress::default());
        let inner = self.inner.clone();
        let name = name.to_string();
        let thread = {
            let (cancel, progress) = (cancel.clone(), progress.clone());
            std::thread::Builder::new()
                .name(format!("start {name}"))
                .spawn(move || {
                    for p in partitions {
                        if cancel.load(Ordering::SeqCst) {
                            break;
                        }
                        if let Err(e) = inner.tasks.assign(TaskId::new(&name, p), def.clone()) {
                            tracing::error!(processor = %name, partition = p, "{e}");
                            *lock(&progress.error) = Some(format!("internal: {e}"));
                            break;
                        }
                    }
                    progress.done.store(true, Ordering::SeqCst);
                })
                .map_err(|e| {
                    EngineError::Unavailable(format!("cannot start a thread for the tasks: {e}"))
                })?
        };
        Ok(Starter {
            cancel,
            progress,
            thread,
        })
    }

    /// Stops the background start of `name`'s tasks (tasks already started keep running)
    /// and waits for it; keeps the error it met.
    fn stop_starter(&self, name: &str) {
        let starter = lock(&self.inner.processors)
            .get_mut(name)
            .and_then(|d| d.starter.take());
        let Some(s) = starter else {
            return;
        };
        s.cancel.store(true, Ordering::SeqCst);
        let _ = s.thread.join();
        if let Some(e) = s.progress.error()
            && let Some(d) = lock(&self.inner.processors).get_mut(name)
        {
            d.start_error = Some(e);
        }
    }

    /// Partitions of `name` this node runs with no task started yet.
    fn unassigned(&self, name: &str, partitions: i32) -> Vec<i32> {
        let assigned: BTreeSet<TaskId> = self.inner.tasks.assigned().into_iter().collect();
        self.inner
            .assignment
            .owned(name, partitions)
            .into_iter()
            .filter(|p| !assigned.contains(&TaskId::new(name, *p)))
            .collect()
    }

    /// Starts (in the background) the tasks of `name` that are not running here.
    fn start_missing(&self, name: &str) -> Result<(), EngineError> {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        let def = self.definition_of(name)?;
        let Some(def) = def else {
            return Ok(());
        };
        let missing = self.unassigned(name, def.partitions);
        if missing.is_empty() {
            return Ok(());
        }
        let starter = self.start_tasks(name, def, missing)?;
        if let Some(d) = lock(&self.inner.processors).get_mut(name) {
            d.starter = Some(starter);
        }
        Ok(())
    }

    /// Checks the inputs exist and are co-partitioned; returns their partition count.
    fn input_partitions(&self, spec: &ProcessorSpec) -> Result<i32, EngineError> {
        let mut counts = Vec::new();
        for i in &spec.inputs {
            let meta = self
                .inner
                .log
                .topic_meta(i)?
                .ok_or_else(|| EngineError::UnknownInput(i.clone()))?;
            counts.push((i.as_str(), meta.partitions));
        }
        let n = counts[0].1;
        if counts.iter().any(|(_, c)| *c != n) {
            let list: Vec<String> = counts
                .iter()
                .map(|(t, c)| format!("'{t}' has {c}"))
                .collect();
            return Err(EngineError::NotCoPartitioned(format!(
                "every input needs the same number of partitions ({})",
                list.join(", ")
            )));
        }
        Ok(n)
    }

    fn load(
        &self,
        spec: &ProcessorSpec,
        module: &[u8],
    ) -> Result<Arc<dyn LogicFactory>, EngineError> {
        self.inner.loader.load(module, &spec.limits).map_err(|e| {
            if e.internal {
                EngineError::LoadFailed(e.message)
            } else {
                EngineError::InvalidModule {
                    code: e.code,
                    message: e.message,
                }
            }
        })
    }

    /// The topics that exist now under the names of `spec`'s internal topics (its
    /// changelogs, then its repartition and offsets topics), with their markers.
    fn named_like_own(
        &self,
        spec: &ProcessorSpec,
    ) -> Result<Vec<(String, Option<String>)>, EngineError> {
        let log = &self.inner.log;
        let mut names: Vec<String> = stores_with_changelogs(&**log, &spec.name)?
            .iter()
            .map(|s| changelog_topic(&spec.name, s))
            .collect();
        names.extend([spec.repartition_topic(), spec.offsets_topic()]);
        let mut topics = Vec::new();
        for t in names {
            if let Some(meta) = log.topic_meta(&t)? {
                topics.push((t, meta.owner));
            }
        }
        Ok(topics)
    }

    /// `spec`'s internal topics: those named like them and marked as its own (a client's
    /// topic that only has such a name is not the processor's to delete).
    fn own_topics(&self, spec: &ProcessorSpec) -> Result<Vec<String>, EngineError> {
        let mine = InternalTopic::processor(&spec.name).owner;
        Ok(self
            .named_like_own(spec)?
            .into_iter()
            .filter(|(_, owner)| owner.as_deref() == Some(mine.as_str()))
            .map(|(t, _)| t)
            .collect())
    }

    /// Refuses a deploy whose internal topics (repartition, offsets, changelogs) exist but
    /// are not marked as this processor's: a client made them (e.g. `x.offsets` before `x`
    /// was deployed), and adopting them would run the processor on forged offsets or state.
    /// Its own topics, kept by `delete ?keep_state=true`, are marked and taken back. (A
    /// changelog a client makes later, for a store the processor has not opened yet, is
    /// refused when the task opens the store: `LogAccess::ensure_topic` adopts nothing.)
    fn check_own_topics(&self, spec: &ProcessorSpec) -> Result<(), EngineError> {
        let mine = InternalTopic::processor(&spec.name).owner;
        for (topic, owner) in self.named_like_own(spec)? {
            let refused = match owner {
                Some(owner) if owner == mine => continue,
                Some(owner) => BrokerError::InternalTopic { topic, owner },
                None => BrokerError::TopicConflict { topic, owner: mine },
            };
            return Err(LogError::from(refused).into());
        }
        Ok(())
    }

    /// Marks the internal topics of a processor resumed from a data dir older than the
    /// markers (its repartition and changelog topics, then its offsets topic). Such a data
    /// dir is recognised by an offsets topic without the marker (every deploy since the
    /// markers creates it marked, and clients cannot delete it while the processor exists):
    /// otherwise nothing is marked, so that a client's topic named like one of the
    /// processor's is never adopted at a restart. The offsets topic is marked last, so a
    /// start interrupted half-way marks the rest at the next one. A topic that cannot be
    /// marked is logged, and the processor resumes anyway.
    fn mark_internal_topics(&self, record: &DeploymentRecord) {
        let log = &self.inner.log;
        let name = &record.spec.name;
        match log.topic_meta(&record.spec.offsets_topic()) {
            Ok(Some(m)) if m.owner.is_some() => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(processor = %name, "cannot read the offsets topic: {e}");
                return;
            }
        }
        let owner = InternalTopic::processor(name);
        let mut specs = vec![
            TopicSpec::new(record.spec.repartition_topic(), record.partitions)
                .owned_by(owner.clone()),
        ];
        match stores_with_changelogs(&**log, name) {
            Ok(stores) => specs.extend(
                stores
                    .iter()
                    .map(|s| changelog_spec(name, s, record.partitions)),
            ),
            Err(e) => tracing::warn!(processor = %name, "cannot list changelogs: {e}"),
        }
        specs.push(offsets_spec(name, record.partitions));
        for spec in specs {
            let topic = spec.name.clone();
            if let Ok(Some(m)) = log.topic_meta(&topic)
                && m.owner.is_none()
            {
                match log.adopt_topic(spec) {
                    Ok(_) => {
                        tracing::info!(processor = %name, %topic, "marked as internal (older data dir)")
                    }
                    Err(e) => {
                        tracing::warn!(processor = %name, %topic, "cannot mark as internal: {e}")
                    }
                }
            }
        }
    }

    /// Refuses to delete `spec`'s internal topics while another processor or query reads
    /// one (a processor may take another's changelog as an input, as a Kafka Streams
    /// application may consume another's changelog): the rule for every topic in use, that
    /// it is not deleted from under its reader, holds for internal topics too. The delete
    /// is refused as a whole, before anything stops, naming the reader; deleting the reader
    /// first, or this processor with `keep_state`, resolves it. (Keeping the shared topic
    /// and deleting the rest instead would leave a changelog nobody writes, silently.)
    fn check_no_readers(&self, spec: &ProcessorSpec) -> Result<(), EngineError> {
        let topics = self.own_topics(spec)?;
        let processors = lock(&self.inner.processors);
        for topic in topics {
            if let Some(reader) = processors
                .values()
                .find(|d| d.record.spec.name != spec.name && uses(d, &topic))
            {
                let user = format!("processor '{}'", reader.record.spec.name);
                return Err(LogError::from(BrokerError::TopicInUse { topic, user }).into());
            }
        }
        Ok(())
    }

    /// Refuses outputs that are internal topics (another processor's changelog, offsets,
    /// `__consumer_offsets`, …): a processor must not forge another's state or offsets. An
    /// output marked as the processor's own (a push query's rows topic) is its to write.
    fn check_outputs(&self, spec: &ProcessorSpec) -> Result<(), EngineError> {
        let mine = InternalTopic::processor(&spec.name).owner;
        for o in &spec.outputs {
            if let Some(owner) = self.inner.log.topic_meta(o)?.and_then(|m| m.owner)
                && owner != mine
            {
                return Err(EngineError::InternalTopic {
                    topic: o.clone(),
                    owner,
                });
            }
        }
        Ok(())
    }

    /// Creates the processor's topics that do not exist yet: outputs (with the inputs'
    /// partition count), repartition, offsets and (for `dead_letter`) the dead-letter topic.
    /// The repartition and offsets topics (and the changelogs, made by the tasks) are
    /// internal topics of the processor; outputs and the dead-letter topic are not (users
    /// read them), but are not deleted while the processor exists ([`Engine::user_of`]).
    fn create_topics(&self, spec: &ProcessorSpec, partitions: i32) -> Result<(), EngineError> {
        let log = &self.inner.log;
        self.check_outputs(spec)?;
        for o in &spec.outputs {
            log.ensure_topic(TopicSpec::new(o, partitions))?;
        }
        let repartition = spec.repartition_topic();
        let meta = log.ensure_topic(
            TopicSpec::new(&repartition, partitions).owned_by(InternalTopic::processor(&spec.name)),
        )?;
        if meta.partitions != partitions {
            return Err(EngineError::Conflict(format!(
                "topic '{repartition}' (kept from an earlier deployment?) has {} partitions, \
                 the inputs {partitions}; delete it first",
                meta.partitions
            )));
        }
        log.ensure_offsets_topic(&spec.name, partitions)?;
        if let Some(m) = log.topic_meta(&spec.offsets_topic())?
            && m.partitions != partitions
        {
            return Err(EngineError::Conflict(format!(
                "topic '{}' has {} partitions, the inputs {partitions}; delete it first",
                spec.offsets_topic(),
                m.partitions
            )));
        }
        if spec.on_error == OnError::DeadLetter {
            log.ensure_topic(TopicSpec::new(spec.dlq_topic(), partitions))?;
        }
        Ok(())
    }

    /// `start: latest` means "what is appended after the deploy returns": the end offsets
    /// are committed now for every task that has no committed offsets yet.
    fn pin_latest(&self, spec: &ProcessorSpec, partitions: i32) -> Result<(), EngineError> {
        let log = &self.inner.log;
        for p in 0..partitions {
            if log.committed_offsets(&spec.name, p)?.is_some() {
                continue;
            }
            let mut commit = OffsetCommit {
                stream_time: i64::MIN,
                version: 1,
                ..OffsetCommit::default()
            };
            for i in &spec.inputs {
                commit.inputs.insert(input_key(i, p), log.offsets(i, p)?.1);
            }
            log.commit_offsets(&spec.name, p, &commit, None)?;
        }
        Ok(())
    }

    /// Deploys a new processor: `module` is the component, `spec` its deployment. The spec
    /// is checked against the server's maxima and the tasks against what is left of the
    /// node's capacity before anything is created; the tasks then start in the background
    /// (the processor is `starting` until they all run).
    pub fn deploy(
        &self,
        spec: ProcessorSpec,
        module: Bytes,
    ) -> Result<ProcessorDescription, EngineError> {
        spec.validate().map_err(EngineError::InvalidSpec)?;
        self.check_guarantee(&spec)?;
        self.check_limits(&spec)?;
        let _op = self.op(&spec.name);
        let in_catalog = self
            .catalog()
            .is_some_and(|c| c.version(&spec.name).is_some());
        if in_catalog || lock(&self.inner.processors).contains_key(&spec.name) {
            return Err(EngineError::ProcessorExists(spec.name));
        }
        let partitions = self.input_partitions(&spec)?;
        self.check_own_topics(&spec)?;
        let factory = self.load(&spec, &module)?;
        let name = spec.name.clone();
        self.admit(&name, &*factory, partitions)?;
        let now = now_ms();
        let record = DeploymentRecord {
            spec,
            version: 1,
            partitions,
            paused: false,
            created_ms: now,
            updated_ms: now,
            module_bytes: module.len() as u64,
            in_catalog: self.catalog().is_some(),
        };
        let created = self
            .create_topics(&record.spec, partitions)
            .and_then(|()| match record.spec.start {
                StartFrom::Latest => self.pin_latest(&record.spec, partitions),
                _ => Ok(()),
            })
            .and_then(|()| Ok(self.inner.registry.save(&record, Some(&module))?));
        if let Err(e) = created {
            self.inner.admission.release(&name);
            return Err(e);
        }
        let footprint = factory.footprint();
        let mut deployed = Deployed::loaded(record, factory);
        if let Some(def) = self.definition(&deployed) {
            let owned = self.inner.assignment.owned(&name, partitions);
            deployed.starter = Some(self.start_tasks(&name, def, owned)?);
        }
        tracing::info!(processor = %name, partitions, "processor deployed");
        let published = deployed.record.clone();
        lock(&self.inner.processors).insert(name.clone(), deployed);
        if let Some(c) = self.catalog()
            && let Err(e) = c.deployed(&published, &module, footprint, None)
        {
            // Not in the catalog: undone here; its topics stay for whoever holds the name.
            self.forget(&name)?;
            return Err(e);
        }
        self.describe(&name)
    }

    /// Replaces a processor's module and spec, keeping its state and offsets: each task
    /// commits, stops (a guest call in progress is interrupted), and starts again on the
    /// new version.
    pub fn redeploy(
        &self,
        name: &str,
        spec: ProcessorSpec,
        module: Bytes,
    ) -> Result<ProcessorDescription, EngineError> {
        if spec.name != name {
            return Err(EngineError::InvalidSpec(format!(
                "the spec names '{}' but the request is for '{name}'",
                spec.name
            )));
        }
        spec.validate().map_err(EngineError::InvalidSpec)?;
        self.check_guarantee(&spec)?;
        self.check_limits(&spec)?;
        let _op = self.op(name);
        let (old, old_factory) = lock(&self.inner.processors)
            .get(name)
            .map(|d| (d.record.clone(), d.factory.clone()))
            .ok_or_else(|| EngineError::UnknownProcessor(name.to_string()))?;
        let partitions = self.input_partitions(&spec)?;
        if partitions != old.partitions {
            return Err(EngineError::NotCoPartitioned(format!(
                "the inputs have {partitions} partitions but the processor has {} tasks; \
                 deploy under a new name to change the partition count",
                old.partitions
            )));
        }
        let expected = self.catalog_of(&old).and_then(|c| c.version(name));
        let factory = self.load(&spec, &module)?;
        self.admit(name, &*factory, partitions)?;
        let record = DeploymentRecord {
            spec,
            version: old.version + 1,
            partitions,
            paused: old.paused,
            created_ms: old.created_ms,
            updated_ms: now_ms(),
            module_bytes: module.len() as u64,
            in_catalog: old.in_catalog,
        };
        let saved = self
            .create_topics(&record.spec, partitions)
            .and_then(|()| Ok(self.inner.registry.save(&record, Some(&module))?));
        if let Err(e) = saved {
            // Back to what the running version holds.
            match &old_factory {
                Some(f) => {
                    let _ = self.admit(name, &**f, partitions);
                }
                None => self.inner.admission.release(name),
            }
            return Err(e);
        }
        self.stop_starter(name);
        let footprint = factory.footprint();
        let deployed = Deployed::loaded(record, factory);
        // `assign` revokes the running task first: its final commit is the swap point.
        if let Some(def) = self.definition(&deployed) {
            for p in self.inner.assignment.owned(name, partitions) {
                self.inner.tasks.assign(TaskId::new(name, p), def.clone())?;
            }
        }
        tracing::info!(processor = %name, version = deployed.record.version, "processor redeployed");
        let published = deployed.record.clone();
        lock(&self.inner.processors).insert(name.to_string(), deployed);
        if let Some(c) = self.catalog_of(&published) {
            c.deployed(&published, &module, footprint, expected)?;
        }
        self.describe(name)
    }

    fn record(&self, name: &str) -> Result<DeploymentRecord, EngineError> {
        lock(&self.inner.processors)
            .get(name)
            .map(|d| d.record.clone())
            .ok_or_else(|| EngineError::UnknownProcessor(name.to_string()))
    }

    fn set_paused(&self, name: &str, paused: bool) -> Result<(), EngineError> {
        let mut record = self.record(name)?;
        record.paused = paused;
        record.updated_ms = now_ms();
        self.inner.registry.save(&record, None)?;
        if let Some(d) = lock(&self.inner.processors).get_mut(name) {
            d.record = record;
        }
        Ok(())
    }

    /// Pauses every task (each commits first; a guest call in progress is interrupted and
    /// its input processed again on resume); the pause survives restarts.
    pub fn pause(&self, name: &str) -> Result<ProcessorDescription, EngineError> {
        let _op = self.op(name);
        // Tasks not started yet start paused.
        self.apply_paused(name, true)?;
        if let Some(c) = self.catalog_of(&self.record(name)?) {
            c.paused(name, true)?;
        }
        self.describe(name)
    }

    /// Resumes a paused processor; failed tasks start again from their last commit.
    pub fn resume(&self, name: &str) -> Result<ProcessorDescription, EngineError> {
        let _op = self.op(name);
        if self.definition_of(name)?.is_none() {
            return Err(EngineError::Unavailable(format!(
                "processor '{name}' cannot run: its module failed to load"
            )));
        }
        self.apply_paused(name, false)?;
        if let Some(c) = self.catalog_of(&self.record(name)?) {
            c.paused(name, false)?;
        }
        self.describe(name)
    }

    /// Deletes a processor: stops its tasks (interrupting guest calls in progress),
    /// forgets the deployment and, unless `keep_state`, removes its local state and its
    /// changelog, repartition and offsets topics (those marked as its own; its outputs and
    /// dead-letter topic stay).
    /// With `keep_state`, deploying the same name again continues from the kept state and
    /// offsets. Unless `keep_state`, refused (`topic_in_use`, nothing changed) while another
    /// processor reads one of those topics ([`Engine::check_no_readers`]).
    pub fn delete(&self, name: &str, keep_state: bool) -> Result<(), EngineError> {
        let _op = self.op(name);
        let record = self.record(name)?;
        if !keep_state {
            self.check_no_readers(&record.spec)?;
        }
        self.stop_starter(name);
        for p in 0..record.partitions {
            self.inner.tasks.revoke(&TaskId::new(name, p));
            self.inner.tasks.drop_standby(&TaskId::new(name, p));
        }
        self.inner.registry.remove(name)?;
        lock(&self.inner.processors).remove(name);
        self.inner.admission.release(name);
        if !keep_state {
            for id in self.inner.tasks.local_state()? {
                if id.processor == name {
                    self.inner.tasks.destroy_state(&id)?;
                }
            }
            for topic in self.own_topics(&record.spec)? {
                self.inner.log.delete_topic(&topic)?;
            }
        }
        tracing::info!(processor = %name, keep_state, "processor deleted");
        if let Some(c) = self.catalog_of(&record) {
            c.deleted(name)?;
        }
        Ok(())
    }

    /// Cluster mode: the deployments this node has, as `(record, module)` of each (what
    /// another node installs from).
    pub fn deployment(&self, name: &str) -> Option<(DeploymentRecord, Bytes)> {
        let (record, module) = self.inner.registry.load(name).ok()?;
        Some((record, Bytes::from(module)))
    }

    /// Every deployed processor's name and which deployment it is: version, paused flag
    /// and creation time (a processor deleted and created again under its name has another).
    pub fn versions(&self) -> BTreeMap<String, DeployedVersion> {
        lock(&self.inner.processors)
            .iter()
            .map(|(n, d)| {
                let r = &d.record;
                let v = DeployedVersion {
                    version: r.version,
                    paused: r.paused,
                    created_ms: r.created_ms,
                };
                (n.clone(), v)
            })
            .collect()
    }

    /// Cluster mode: installs a deployment made on another node (or brings this node's to
    /// its version): the record and module are saved here and the tasks this node is
    /// assigned start, without creating or checking topics (the deploying node did). An
    /// older or equal version already here only takes the paused flag.
    pub fn install(&self, record: DeploymentRecord, module: Bytes) -> Result<(), EngineError> {
        let name = record.spec.name.clone();
        let _op = self.op(&name);
        // Deleted from the catalog meanwhile (by an operation that held this processor).
        if self.catalog().is_some_and(|c| c.version(&name).is_none()) {
            return Ok(());
        }
        let current = lock(&self.inner.processors)
            .get(&name)
            .map(|d| (d.record.version, d.record.paused, d.record.created_ms));
        // The same deployment at this version or a later one: only the paused flag. Another
        // creation under the name (deleted and created again while this node was away)
        // replaces it whatever its version.
        if let Some((version, paused, created_ms)) = current
            && created_ms == record.created_ms
            && version >= record.version
        {
            if paused != record.paused {
                self.apply_paused(&name, record.paused)?;
            }
            return Ok(());
        }
        let record = DeploymentRecord {
            in_catalog: true,
            ..record
        };
        self.check_limits(&record.spec)?;
        let factory = self.load(&record.spec, &module)?;
        self.admit(&name, &*factory, record.partitions)?;
        if let Err(e) = self.inner.registry.save(&record, Some(&module)) {
            if current.is_none() {
                self.inner.admission.release(&name);
            }
            return Err(e.into());
        }
        self.stop_starter(&name);
        let partitions = record.partitions;
        let mut deployed = Deployed::loaded(record, factory);
        if let Some(def) = self.definition(&deployed) {
            let owned = self.inner.assignment.owned(&name, partitions);
            if current.is_some() {
                // `assign` revokes the running task first: its final commit is the swap.
                for p in owned {
                    self.inner
                        .tasks
                        .assign(TaskId::new(&name, p), def.clone())?;
                }
            } else {
                deployed.starter = Some(self.start_tasks(&name, def, owned)?);
            }
        }
        tracing::info!(processor = %name, version = deployed.record.version, "processor installed");
        lock(&self.inner.processors).insert(name.clone(), deployed);
        self.follow_standbys(&name);
        Ok(())
    }

    /// Pauses or resumes `name`'s tasks on this node (the caller holds its operation).
    fn apply_paused(&self, name: &str, paused: bool) -> Result<(), EngineError> {
        self.set_paused(name, paused)?;
        self.stop_starter(name);
        let partitions = self.record(name)?.partitions;
        for p in 0..partitions {
            let id = TaskId::new(name, p);
            if paused {
                self.inner.tasks.pause(&id);
            } else {
                self.inner.tasks.resume(&id)?;
            }
        }
        self.start_missing(name)
    }

    /// Cluster mode: forgets a deployment deleted through another node: stops its tasks
    /// here (each commits first), removes the deployment and its local state, and leaves
    /// the topics to the deleting node. A processor not here is not an error.
    pub fn uninstall(&self, name: &str) -> Result<(), EngineError> {
        let _op = self.op(name);
        // Published meanwhile (by a deploy here that held this processor).
        if self.catalog().is_some_and(|c| c.version(name).is_some()) {
            return Ok(());
        }
        self.forget(name)
    }

    /// Stops `name`'s tasks here, removes its deployment and local state, keeps its topics
    /// (the caller holds its operation). A processor not here is not an error.
    fn forget(&self, name: &str) -> Result<(), EngineError> {
        let Ok(record) = self.record(name) else {
            return Ok(());
        };
        self.stop_starter(name);
        for p in 0..record.partitions {
            self.inner.tasks.revoke(&TaskId::new(name, p));
            self.inner.tasks.drop_standby(&TaskId::new(name, p));
        }
        self.inner.registry.remove(name)?;
        lock(&self.inner.processors).remove(name);
        self.inner.admission.release(name);
        for id in self.inner.tasks.local_state()? {
            if id.processor == name {
                self.inner.tasks.destroy_state(&id)?;
            }
        }
        tracing::info!(processor = %name, "processor uninstalled");
        Ok(())
    }

    fn status_of(record: &DeploymentRecord, error: bool, tasks: &[TaskStatus]) -> String {
        let any = |s: TaskState| tasks.iter().any(|t| t.state == s);
        if error || any(TaskState::Failed) {
            "failed"
        } else if record.paused {
            "paused"
        } else if any(TaskState::Starting) {
            "starting"
        } else if any(TaskState::Restoring) {
            "restoring"
        } else if any(TaskState::Stopped) {
            "stopped"
        } else {
            "running"
        }
        .to_string()
    }

    /// The status of every task; while tasks are being started, those not started yet
    /// are `starting`.
    fn task_statuses(&self, record: &DeploymentRecord, starting: bool) -> Vec<TaskStatus> {
        let name = &record.spec.name;
        (0..record.partitions)
            .filter_map(|p| {
                self.inner.tasks.status(&TaskId::new(name, p)).or_else(|| {
                    (starting && self.inner.assignment.owns(name, p))
                        .then(|| TaskStatus::new(p, record.version))
                })
            })
            .collect()
    }

    /// Every processor, sorted by name.
    pub fn list(&self) -> Vec<ProcessorSummary> {
        let deployed: Vec<(DeploymentRecord, bool, bool)> = lock(&self.inner.processors)
            .values()
            .map(|d| (d.record.clone(), d.error().is_some(), d.starting()))
            .collect();
        deployed
            .into_iter()
            .map(|(r, error, starting)| {
                let tasks = self.task_statuses(&r, starting);
                ProcessorSummary {
                    name: r.spec.name.clone(),
                    version: r.version,
                    status: Self::status_of(&r, error, &tasks),
                    inputs: r.spec.inputs.clone(),
                    outputs: r.spec.outputs.clone(),
                    partitions: r.partitions,
                    tasks_running: tasks
                        .iter()
                        .filter(|t| t.state == TaskState::Running)
                        .count(),
                    tasks_failed: tasks
                        .iter()
                        .filter(|t| t.state == TaskState::Failed)
                        .count(),
                    lag: tasks.iter().map(|t| t.lag).sum(),
                }
            })
            .collect()
    }

    /// One processor with every task's status.
    pub fn describe(&self, name: &str) -> Result<ProcessorDescription, EngineError> {
        let (record, error, starting) = {
            let processors = lock(&self.inner.processors);
            let d = processors
                .get(name)
                .ok_or_else(|| EngineError::UnknownProcessor(name.to_string()))?;
            (d.record.clone(), d.error(), d.starting())
        };
        let tasks = self.task_statuses(&record, starting);
        let changelogs = stores_with_changelogs(&*self.inner.log, name)?
            .iter()
            .map(|s| changelog_topic(name, s))
            .collect();
        Ok(ProcessorDescription {
            name: name.to_string(),
            version: record.version,
            status: Self::status_of(&record, error.is_some(), &tasks),
            partitions: record.partitions,
            paused: record.paused,
            created_ms: record.created_ms,
            updated_ms: record.updated_ms,
            module_bytes: record.module_bytes,
            error,
            lag: tasks.iter().map(|t| t.lag).sum(),
            topics: InternalTopics {
                repartition: record.spec.repartition_topic(),
                offsets: record.spec.offsets_topic(),
                dead_letter: (record.spec.on_error == OnError::DeadLetter)
                    .then(|| record.spec.dlq_topic()),
                changelogs,
            },
            standbys: (0..record.partitions)
                .filter_map(|p| self.inner.tasks.standby_status(&TaskId::new(name, p)))
                .collect(),
            spec: record.spec,
            tasks,
        })
    }

    /// Who reads or writes `topic` among the deployed processors and queries (its inputs,
    /// outputs and dead-letter topic), e.g. `processor 'wc'`.
    pub fn user_of(&self, topic: &str) -> Option<String> {
        user_of(&lock(&self.inner.processors), topic)
    }

    /// The names of every deployed processor and query that reads or writes `topic`.
    pub fn users_of(&self, topic: &str) -> Vec<String> {
        lock(&self.inner.processors)
            .values()
            .filter(|d| uses(d, topic))
            .map(|d| d.record.spec.name.clone())
            .collect()
    }

    /// What the broker asks before a client deletes a topic: whether an internal topic's
    /// owner exists, and who uses a topic. Holds the engine weakly (the broker outlives it).
    pub fn topic_guard(&self) -> Arc<dyn TopicGuard> {
        Arc::new(Guard(Arc::downgrade(&self.inner)))
    }

    /// The stored module of a processor (a query's plan, for SQL).
    pub fn module_of(&self, name: &str) -> Option<Vec<u8>> {
        self.inner.registry.load(name).ok().map(|(_, m)| m)
    }

    /// The record of `name`, checking that it has a store `store` (one with a changelog).
    fn record_with_store(&self, name: &str, store: &str) -> Result<DeploymentRecord, EngineError> {
        let record = self.record(name)?;
        let unknown = || EngineError::UnknownStore {
            processor: name.to_string(),
            store: store.to_string(),
        };
        keys::check_user_store_name(store).map_err(|_| unknown())?;
        if self
            .inner
            .log
            .topic_meta(&changelog_topic(name, store))?
            .is_none()
        {
            return Err(unknown());
        }
        Ok(record)
    }

    /// Interactive query: the committed value of `key` in store `store`, read from the task
    /// owning the key's partition (`murmur2(key) % partitions`, where records keyed so by
    /// the repartition topic are counted). `Ok(None)` if the key is absent.
    pub fn query(&self, name: &str, store: &str, key: &[u8]) -> Result<Option<Bytes>, EngineError> {
        let record = self.record_with_store(name, store)?;
        let partition = partition_for_key(key, record.partitions);
        self.query_in(name, store, partition, key)
    }

    /// Interactive query of one task's store: the committed value of `key` in store
    /// `store` of the task for `partition` (for stores whose keys are not the record keys
    /// the partition was chosen by, as SQL queries' are).
    pub fn query_in(
        &self,
        name: &str,
        store: &str,
        partition: i32,
        key: &[u8],
    ) -> Result<Option<Bytes>, EngineError> {
        let record = self.record(name)?;
        let unknown = || EngineError::UnknownStore {
            processor: name.to_string(),
            store: store.to_string(),
        };
        if partition < 0 || partition >= record.partitions {
            return Err(unknown());
        }
        let id = TaskId::new(name, partition);
        let Some((state, task_state)) = self.inner.tasks.state_of(&id) else {
            return Err(EngineError::Unavailable(format!(
                "task {id} does not run on this node"
            )));
        };
        if task_state == TaskState::Restoring {
            return Err(EngineError::Unavailable(format!(
                "task {id} is restoring its state; try again shortly"
            )));
        }
        Ok(state.get(store, key)?)
    }

    /// Whether task `partition` of processor `name` is this node's to run (always on a
    /// single node; on a cluster, when the cluster assigned it here).
    pub fn task_placed_here(&self, name: &str, partition: i32) -> bool {
        self.inner.assignment.owns(name, partition)
    }

    /// Whether this node holds a store of task `partition` of `name`: the task's, or a
    /// standby's (what [`Engine::query_stale_in`] may answer from).
    pub fn has_copy_here(&self, name: &str, partition: i32) -> bool {
        let id = TaskId::new(name, partition);
        self.inner.tasks.state_of(&id).is_some() || self.inner.tasks.standby_state(&id).is_some()
    }

    /// Interactive query that accepts a stale answer (`?allow_stale=true`): from the task
    /// when it runs here, else from its store while it restores from a checkpoint, else
    /// from this node's standby of it once its first pass has finished — each with how many
    /// changelog records it is behind. [`EngineError::Unavailable`] when none of them can
    /// answer here.
    pub fn query_stale(
        &self,
        name: &str,
        store: &str,
        key: &[u8],
    ) -> Result<StaleAnswer, EngineError> {
        let record = self.record_with_store(name, store)?;
        self.query_stale_in(name, store, partition_for_key(key, record.partitions), key)
    }

    /// [`Engine::query_stale`] of `key` in task `partition` (a store whose keys are not
    /// partitioned by themselves, as SQL's aggregates).
    pub fn query_stale_in(
        &self,
        name: &str,
        store: &str,
        partition: i32,
        key: &[u8],
    ) -> Result<StaleAnswer, EngineError> {
        let record = self.record_with_store(name, store)?;
        if partition < 0 || partition >= record.partitions {
            return Err(EngineError::UnknownStore {
                processor: name.to_string(),
                store: store.to_string(),
            });
        }
        let id = TaskId::new(name, partition);
        if let Some((state, task_state)) = self.inner.tasks.state_of(&id) {
            if task_state != TaskState::Restoring && task_state != TaskState::Starting {
                return Ok(StaleAnswer {
                    value: state.get(store, key)?,
                    lag: 0,
                    by: AnsweredBy::Task,
                });
            }
            let reported = self.inner.tasks.reported(&id);
            let restore = reported.as_ref().and_then(|s| s.restore.clone());
            let warmed = reported.as_ref().and_then(|s| s.warmed);
            // Restoring from a checkpoint: the store holds a consistent prefix plus part of
            // the tail. (From offset 0 — no checkpoint, or wiped — it holds only part.)
            if let Some(r) = restore.filter(|r| {
                task_state == TaskState::Restoring && !r.from_empty && r.start_offset > 0
            }) {
                return Ok(StaleAnswer {
                    value: state.get(store, key)?,
                    lag: r.end_offset.saturating_sub(r.offset).max(0),
                    by: AnsweredBy::Restoring,
                });
            }
            // About to restore a store a caught-up standby handed over: it is that standby's
            // copy, as stale as the standby was.
            if let Some(w) = warmed.filter(|_| task_state == TaskState::Starting) {
                return Ok(StaleAnswer {
                    value: state.get(store, key)?,
                    lag: w.lag,
                    by: AnsweredBy::Restoring,
                });
            }
            return Err(EngineError::Unavailable(format!(
                "task {id} is starting or restoring its state from empty; try again shortly"
            )));
        }
        match self.inner.tasks.standby_state(&id) {
            Some((state, status)) if status.caught_up => {
                let value = state.get(store, key)?;
                if value.is_none() {
                    tracing::debug!(
                        task = %id, store, lag = status.lag,
                        checkpoint = ?state.meta(&crate::state::restore::checkpoint_meta(store)).ok().flatten(),
                        "standby has no such key"
                    );
                }
                Ok(StaleAnswer {
                    value,
                    lag: status.lag,
                    by: AnsweredBy::Standby,
                })
            }
            Some(_) => Err(EngineError::Unavailable(format!(
                "the standby of task {id} has not caught up yet"
            ))),
            None => Err(EngineError::Unavailable(format!(
                "task {id} has neither its task nor a standby on this node"
            ))),
        }
    }
}

/// Where a look-up that accepts a stale answer was answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnsweredBy {
    /// The running task (up to date as of its last commit).
    Task,
    /// The task while it restores its store from a checkpoint (not from empty).
    Restoring,
    /// This node's standby of the task.
    Standby,
}

impl AnsweredBy {
    pub fn as_str(self) -> &'static str {
        match self {
            AnsweredBy::Task => "task",
            AnsweredBy::Restoring => "restoring",
            AnsweredBy::Standby => "standby",
        }
    }
}

/// The answer of [`Engine::query_stale`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleAnswer {
    pub value: Option<Bytes>,
    /// Changelog records the answering store is known to be behind (0 from a running task).
    pub lag: i64,
    pub by: AnsweredBy,
}

/// One entry of a prefix scan: a key of one task's store and its committed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEntry {
    pub partition: i32,
    pub key: Bytes,
    pub value: Bytes,
}

/// A page of a prefix scan ([`Engine::scan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    /// In key order, then partition order (tasks' keys may repeat across tasks).
    pub entries: Vec<ScanEntry>,
    /// Where the next page starts (the last entry's key and partition), when there may be
    /// more.
    pub next: Option<(Bytes, i32)>,
}

impl Engine {
    /// Interactive query over every task of a processor: the committed entries of store
    /// `store` whose key starts with `prefix`, in (key, partition) order, strictly after
    /// `after` (the `next` of an earlier page), at most `limit` of them and no more than
    /// `max_bytes` of keys and values (always at least one entry when there is one). Every
    /// task must run on this node and not be restoring ([`EngineError::Unavailable`]).
    pub fn scan(
        &self,
        name: &str,
        store: &str,
        prefix: &[u8],
        after: Option<(&[u8], i32)>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<ScanPage, EngineError> {
        let limit = limit.max(1);
        let partitions: Vec<i32> = (0..self.record(name)?.partitions).collect();
        let found = self.scan_tasks(name, store, &partitions, prefix, after, limit)?;
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        let total = found.len();
        for e in found {
            let size = e.key.len() + e.value.len();
            if entries.len() == limit || (!entries.is_empty() && bytes + size > max_bytes) {
                break;
            }
            bytes += size;
            entries.push(e);
        }
        let next = if entries.len() < total {
            entries.last().map(|e| (e.key.clone(), e.partition))
        } else {
            None
        };
        Ok(ScanPage { entries, next })
    }
}

impl Engine {
    /// The committed entries of store `store` of the tasks `partitions` (each must run on
    /// this node and not be restoring) whose key starts with `prefix`, strictly after
    /// `after` in (key, partition) order: at most `limit + 1` per task, in (key, partition)
    /// order — what [`Engine::scan`] pages, and what a scan merged over a cluster's nodes
    /// asks each node for.
    pub fn scan_tasks(
        &self,
        name: &str,
        store: &str,
        partitions: &[i32],
        prefix: &[u8],
        after: Option<(&[u8], i32)>,
        limit: usize,
    ) -> Result<Vec<ScanEntry>, EngineError> {
        let record = self.record_with_store(name, store)?;
        let end = prefix_end(prefix);
        let mut found: Vec<ScanEntry> = Vec::new();
        for &partition in partitions {
            if !(0..record.partitions).contains(&partition) {
                return Err(EngineError::UnknownStore {
                    processor: name.to_string(),
                    store: store.to_string(),
                });
            }
            let id = TaskId::new(name, partition);
            let Some((state, task_state)) = self.inner.tasks.state_of(&id) else {
                return Err(EngineError::Unavailable(format!(
                    "task {id} does not run on this node"
                )));
            };
            if task_state == TaskState::Restoring {
                return Err(EngineError::Unavailable(format!(
                    "task {id} is restoring its state; try again shortly"
                )));
            }
            // This task's first key: the prefix, or past `after` (inclusive of the same key
            // in a later partition).
            let mut start = prefix.to_vec();
            if let Some((key, p)) = after {
                let mut from = key.to_vec();
                if partition <= p {
                    from.push(0);
                }
                if from > start {
                    start = from;
                }
            }
            if end.as_deref().is_some_and(|e| start.as_slice() >= e) {
                continue;
            }
            let entries =
                state.range(store, Some(&start), end.as_deref(), limit.saturating_add(1))?;
            found.extend(entries.into_iter().map(|(key, value)| ScanEntry {
                partition,
                key,
                value,
            }));
        }
        found.sort_by(|a, b| (&a.key, a.partition).cmp(&(&b.key, b.partition)));
        Ok(found)
    }
}

/// The smallest key above every key starting with `prefix` (`None`: no bound, for an empty
/// prefix or one of only `0xff` bytes).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Whether a deployment reads or writes `topic` (inputs, outputs, dead-letter topic).
fn uses(d: &Deployed, topic: &str) -> bool {
    let spec = &d.record.spec;
    spec.inputs.iter().any(|t| t == topic)
        || spec.outputs.iter().any(|t| t == topic)
        || (spec.on_error == OnError::DeadLetter && spec.dlq_topic() == topic)
}

fn user_of(processors: &BTreeMap<String, Deployed>, topic: &str) -> Option<String> {
    processors
        .values()
        .find(|d| uses(d, topic))
        .map(|d| format!("processor '{}'", d.record.spec.name))
}

/// The engine as the broker's [`TopicGuard`].
struct Guard(Weak<Inner>);

impl TopicGuard for Guard {
    fn owner_exists(&self, owner: &str) -> bool {
        let Some(inner) = self.0.upgrade() else {
            return true;
        };
        match InternalTopic::processor_of(owner) {
            Some(name) => lock(&inner.processors).contains_key(name),
            None => true,
        }
    }

    fn user_of(&self, topic: &str) -> Option<String> {
        user_of(&lock(&self.0.upgrade()?.processors), topic)
    }
}

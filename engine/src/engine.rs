//! [`Engine`]: processors on one node, as the HTTP API sees them. Deploy (validate the spec,
//! check the inputs are co-partitioned, load the module, create the processor's topics,
//! persist the deployment, assign its tasks), redeploy, pause, resume, delete, describe,
//! and interactive queries of task state. On start it brings back every persisted
//! deployment.
//!
//! It owns the decisions about processors; running tasks is the [`TaskManager`]'s, storing
//! state the [`StateBackend`]'s, making instances the [`ModuleLoader`]'s. All methods block
//! (disk, log, joining task threads): call them off the async runtime.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use serde::Serialize;
use weir_broker::partitioner::partition_for_key;
use weir_broker::{InternalTopic, TopicGuard, TopicSpec};

use crate::clock::now_ms;
use crate::error::EngineError;
use crate::log_access::{LogAccess, OffsetCommit};
use crate::state::changelog::{changelog_spec, changelog_topic, stores_with_changelogs};
use crate::state::{StateBackend, keys};
use crate::task::inputs::input_key;
use crate::task::registry::{DeploymentRecord, Registry};
use crate::task::spec::{OnError, ProcessorSpec, StartFrom};
use crate::task::{LogicFactory, ModuleLoader, TaskDefinition, TaskManager, TaskState, TaskStatus};
use crate::task_id::TaskId;

/// Where the engine keeps its files.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Deployments (`deployment.json` + module per processor).
    pub processors_dir: PathBuf,
}

impl EngineConfig {
    /// The layout under a node's data directory: `<data_dir>/processors`.
    pub fn under(data_dir: &std::path::Path) -> Self {
        EngineConfig {
            processors_dir: data_dir.join("processors"),
        }
    }
}

struct Deployed {
    record: DeploymentRecord,
    /// `None` when the module could not be loaded at start-up (`load_error` says why).
    factory: Option<Arc<dyn LogicFactory>>,
    load_error: Option<String>,
}

struct Inner {
    log: Arc<dyn LogAccess>,
    loader: Arc<dyn ModuleLoader>,
    registry: Registry,
    tasks: TaskManager,
    processors: Mutex<BTreeMap<String, Deployed>>,
    /// Serialises deploy / redeploy / pause / resume / delete.
    admin: Mutex<()>,
}

/// The processors of this node. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// A processor as listed.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessorSummary {
    pub name: String,
    pub version: u64,
    /// `running`, `restoring`, `paused` or `failed` (any task failed).
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
    /// Why the processor cannot run at all (its module failed to load at start-up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub lag: i64,
    /// The processor's internal topics.
    pub topics: InternalTopics,
    pub tasks: Vec<TaskStatus>,
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
        Ok(Engine {
            inner: Arc::new(Inner {
                tasks: TaskManager::new(log.clone(), backend),
                log,
                loader,
                registry,
                processors: Mutex::new(BTreeMap::new()),
                admin: Mutex::new(()),
            }),
        })
    }

    /// Brings back every persisted deployment and assigns all its tasks to this node.
    /// Returns how many processors were started; one that cannot be loaded is kept with an
    /// error status.
    pub fn start(&self) -> Result<usize, EngineError> {
        let _admin = lock(&self.inner.admin);
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
            let (factory, load_error) = match self.inner.loader.load(&module, &record.spec.limits) {
                Ok(f) => (Some(f), None),
                Err(e) => {
                    tracing::error!(processor = %name, "cannot load the module: {e}");
                    (None, Some(format!("{}: {}", e.code, e.message)))
                }
            };
            let deployed = Deployed {
                record,
                factory,
                load_error,
            };
            self.mark_internal_topics(&deployed.record);
            if deployed.factory.is_some() {
                self.assign_all(&deployed)?;
                started += 1;
            }
            lock(&self.inner.processors).insert(name, deployed);
        }
        Ok(started)
    }

    /// Stops every task after a final commit (node shutdown).
    pub fn shutdown(&self) {
        let _admin = lock(&self.inner.admin);
        self.inner.tasks.revoke_all();
    }

    /// The task manager (what a cluster controller drives).
    pub fn tasks(&self) -> &TaskManager {
        &self.inner.tasks
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

    fn assign_all(&self, d: &Deployed) -> Result<(), EngineError> {
        let Some(def) = self.definition(d) else {
            return Ok(());
        };
        for p in 0..d.record.partitions {
            self.inner
                .tasks
                .assign(TaskId::new(&d.record.spec.name, p), def.clone())?;
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

    /// Marks the internal topics of a processor resumed from a data dir older than the
    /// markers (its repartition, offsets and changelog topics). A topic that cannot be
    /// marked is logged, and the processor resumes anyway.
    fn mark_internal_topics(&self, record: &DeploymentRecord) {
        let log = &self.inner.log;
        let name = &record.spec.name;
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
        for spec in specs {
            let topic = spec.name.clone();
            if let Ok(Some(m)) = log.topic_meta(&topic)
                && m.owner.is_none()
                && let Err(e) = log.ensure_topic(spec)
            {
                tracing::warn!(processor = %name, %topic, "cannot mark as internal: {e}");
            }
        }
        if let Ok(Some(m)) = log.topic_meta(&record.spec.offsets_topic())
            && m.owner.is_none()
            && let Err(e) = log.ensure_offsets_topic(name, record.partitions)
        {
            tracing::warn!(processor = %name, "cannot mark the offsets topic as internal: {e}");
        }
    }

    /// Refuses outputs that are internal topics (another processor's changelog, offsets,
    /// `__consumer_offsets`, …): a processor must not forge another's state or offsets.
    fn check_outputs(&self, spec: &ProcessorSpec) -> Result<(), EngineError> {
        for o in &spec.outputs {
            if let Some(owner) = self.inner.log.topic_meta(o)?.and_then(|m| m.owner) {
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
            log.commit_offsets(&spec.name, p, &commit)?;
        }
        Ok(())
    }

    /// Deploys a new processor: `module` is the component, `spec` its deployment.
    pub fn deploy(
        &self,
        spec: ProcessorSpec,
        module: Bytes,
    ) -> Result<ProcessorDescription, EngineError> {
        spec.validate().map_err(EngineError::InvalidSpec)?;
        let _admin = lock(&self.inner.admin);
        if lock(&self.inner.processors).contains_key(&spec.name) {
            return Err(EngineError::ProcessorExists(spec.name));
        }
        let partitions = self.input_partitions(&spec)?;
        let factory = self.load(&spec, &module)?;
        self.create_topics(&spec, partitions)?;
        if spec.start == StartFrom::Latest {
            self.pin_latest(&spec, partitions)?;
        }
        let now = now_ms();
        let record = DeploymentRecord {
            spec,
            version: 1,
            partitions,
            paused: false,
            created_ms: now,
            updated_ms: now,
            module_bytes: module.len() as u64,
        };
        self.inner.registry.save(&record, Some(&module))?;
        let name = record.spec.name.clone();
        let deployed = Deployed {
            record,
            factory: Some(factory),
            load_error: None,
        };
        self.assign_all(&deployed)?;
        tracing::info!(processor = %name, partitions, "processor deployed");
        lock(&self.inner.processors).insert(name.clone(), deployed);
        self.describe(&name)
    }

    /// Replaces a processor's module and spec, keeping its state and offsets: each task
    /// commits, stops, and starts again on the new version.
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
        let _admin = lock(&self.inner.admin);
        let old = lock(&self.inner.processors)
            .get(name)
            .map(|d| d.record.clone())
            .ok_or_else(|| EngineError::UnknownProcessor(name.to_string()))?;
        let partitions = self.input_partitions(&spec)?;
        if partitions != old.partitions {
            return Err(EngineError::NotCoPartitioned(format!(
                "the inputs have {partitions} partitions but the processor has {} tasks; \
                 deploy under a new name to change the partition count",
                old.partitions
            )));
        }
        let factory = self.load(&spec, &module)?;
        self.create_topics(&spec, partitions)?;
        let record = DeploymentRecord {
            spec,
            version: old.version + 1,
            partitions,
            paused: old.paused,
            created_ms: old.created_ms,
            updated_ms: now_ms(),
            module_bytes: module.len() as u64,
        };
        self.inner.registry.save(&record, Some(&module))?;
        let deployed = Deployed {
            record,
            factory: Some(factory),
            load_error: None,
        };
        // `assign` revokes the running task first: its final commit is the swap point.
        self.assign_all(&deployed)?;
        tracing::info!(processor = %name, version = deployed.record.version, "processor redeployed");
        lock(&self.inner.processors).insert(name.to_string(), deployed);
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

    /// Pauses every task (each commits first); the pause survives restarts.
    pub fn pause(&self, name: &str) -> Result<ProcessorDescription, EngineError> {
        let _admin = lock(&self.inner.admin);
        self.set_paused(name, true)?;
        let partitions = self.record(name)?.partitions;
        for p in 0..partitions {
            self.inner.tasks.pause(&TaskId::new(name, p));
        }
        self.describe(name)
    }

    /// Resumes a paused processor; failed tasks start again from their last commit.
    pub fn resume(&self, name: &str) -> Result<ProcessorDescription, EngineError> {
        let _admin = lock(&self.inner.admin);
        self.set_paused(name, false)?;
        let def = {
            let processors = lock(&self.inner.processors);
            let d = processors
                .get(name)
                .ok_or_else(|| EngineError::UnknownProcessor(name.to_string()))?;
            self.definition(d)
        };
        let Some(def) = def else {
            return Err(EngineError::Unavailable(format!(
                "processor '{name}' cannot run: its module failed to load"
            )));
        };
        for p in 0..def.partitions {
            let id = TaskId::new(name, p);
            if !self.inner.tasks.resume(&id)? {
                self.inner.tasks.assign(id, def.clone())?;
            }
        }
        self.describe(name)
    }

    /// Deletes a processor: stops its tasks, forgets the deployment and, unless
    /// `keep_state`, removes its local state and its changelog, offsets and repartition
    /// topics (its outputs and dead-letter topic stay). With `keep_state`, deploying the
    /// same name again continues from the kept state and offsets.
    pub fn delete(&self, name: &str, keep_state: bool) -> Result<(), EngineError> {
        let _admin = lock(&self.inner.admin);
        let record = self.record(name)?;
        for p in 0..record.partitions {
            self.inner.tasks.revoke(&TaskId::new(name, p));
        }
        self.inner.registry.remove(name)?;
        lock(&self.inner.processors).remove(name);
        if !keep_state {
            for id in self.inner.tasks.local_state()? {
                if id.processor == name {
                    self.inner.tasks.destroy_state(&id)?;
                }
            }
            let log = &self.inner.log;
            for store in stores_with_changelogs(&**log, name)? {
                log.delete_topic(&changelog_topic(name, &store))?;
            }
            log.delete_topic(&record.spec.offsets_topic())?;
            log.delete_topic(&record.spec.repartition_topic())?;
        }
        tracing::info!(processor = %name, keep_state, "processor deleted");
        Ok(())
    }

    fn status_of(record: &DeploymentRecord, error: bool, tasks: &[TaskStatus]) -> String {
        let any = |s: TaskState| tasks.iter().any(|t| t.state == s);
        if error || any(TaskState::Failed) {
            "failed"
        } else if record.paused {
            "paused"
        } else if any(TaskState::Restoring) {
            "restoring"
        } else if any(TaskState::Stopped) {
            "stopped"
        } else {
            "running"
        }
        .to_string()
    }

    fn task_statuses(&self, record: &DeploymentRecord) -> Vec<TaskStatus> {
        (0..record.partitions)
            .filter_map(|p| self.inner.tasks.status(&TaskId::new(&record.spec.name, p)))
            .collect()
    }

    /// Every processor, sorted by name.
    pub fn list(&self) -> Vec<ProcessorSummary> {
        let deployed: Vec<(DeploymentRecord, bool)> = lock(&self.inner.processors)
            .values()
            .map(|d| (d.record.clone(), d.load_error.is_some()))
            .collect();
        deployed
            .into_iter()
            .map(|(r, error)| {
                let tasks = self.task_statuses(&r);
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
        let (record, error) = {
            let processors = lock(&self.inner.processors);
            let d = processors
                .get(name)
                .ok_or_else(|| EngineError::UnknownProcessor(name.to_string()))?;
            (d.record.clone(), d.load_error.clone())
        };
        let tasks = self.task_statuses(&record);
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

    /// Interactive query: the committed value of `key` in store `store`, read from the task
    /// owning the key's partition (`murmur2(key) % partitions`, where records keyed so by
    /// the repartition topic are counted). `Ok(None)` if the key is absent.
    pub fn query(&self, name: &str, store: &str, key: &[u8]) -> Result<Option<Bytes>, EngineError> {
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

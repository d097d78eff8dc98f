//! [`TaskManager`]: the tasks this node runs. `assign` starts a task (restoring its state
//! from its checkpoint or changelogs, then resuming from its committed offsets); `revoke`
//! stops it after a final commit, keeping its local state for a later assignment. This is
//! the interface a cluster controller drives when it moves tasks between nodes; on a single
//! node the [`crate::engine::Engine`] assigns every task of every processor to itself.
//!
//! Each task runs on its own OS thread (see [`super::runner`]); the manager holds its
//! control channel and shared status. On a cluster it also keeps this node's standbys
//! ([`super::standby`]): a standby and the task never share the task's store at once — the
//! task's start stops the node's standby of it and waits for its thread before it opens the
//! store (the standby's warm store is what the task then restores from).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use super::runner::{Control, TaskDefinition, TaskSetup, TaskShared, run_task};
use super::standby::{StandbyShared, StandbyStatus, run_standby};
use super::status::{TaskState, TaskStatus, WarmCopy};
use weir_broker::cluster::log_rpc::TaskFence;

use crate::assignment::Assignment;
use crate::host::Interrupt;
use crate::log_access::LogAccess;
use crate::state::{StateBackend, StateError, StateStore};
use crate::task_id::TaskId;

/// Stack of task threads (guest code runs on it).
const TASK_STACK_BYTES: usize = 8 << 20;

struct TaskHandle {
    def: Arc<TaskDefinition>,
    control: mpsc::UnboundedSender<Control>,
    shared: Arc<TaskShared>,
    state: Arc<dyn StateStore>,
    thread: Option<JoinHandle<()>>,
}

struct StandbyHandle {
    shared: Arc<StandbyShared>,
    state: Arc<dyn StateStore>,
    thread: Option<JoinHandle<()>>,
    /// Asked to stop; its thread may still finish a pass.
    stopping: bool,
}

impl StandbyHandle {
    fn join(mut self) {
        self.shared.request_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The tasks running on this node.
pub struct TaskManager {
    log: Arc<dyn LogAccess>,
    backend: Arc<dyn StateBackend>,
    tasks: Mutex<HashMap<TaskId, TaskHandle>>,
    /// Standbys of tasks other nodes run (cluster mode).
    standbys: Mutex<HashMap<TaskId, StandbyHandle>>,
    /// Cluster mode: the epochs tasks commit under.
    assignment: Option<Arc<Assignment>>,
}

/// Why a task could not be started.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AssignError {
    #[error("cannot open the state of task {task}: {source}")]
    State { task: TaskId, source: StateError },
    #[error("cannot start a thread for task {task}: {message}")]
    Thread { task: TaskId, message: String },
}

impl TaskManager {
    pub fn new(log: Arc<dyn LogAccess>, backend: Arc<dyn StateBackend>) -> Self {
        TaskManager {
            log,
            backend,
            tasks: Mutex::new(HashMap::new()),
            standbys: Mutex::new(HashMap::new()),
            assignment: None,
        }
    }

    /// Cluster mode: each task commits under the assignment epoch `assignment` gives it
    /// (its changelog appends and committed offsets are refused once the task moved on).
    pub fn with_assignment(mut self, assignment: Arc<Assignment>) -> Self {
        self.assignment = Some(assignment);
        self
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, TaskHandle>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `id` running `def` on this node (replacing, after a final commit, the task
    /// already running under that id).
    pub fn assign(&self, id: TaskId, def: Arc<TaskDefinition>) -> Result<(), AssignError> {
        self.revoke(&id);
        // The standby of it, if this node kept one, hands its warm store over.
        let warmed = self
            .stop_standby_and_wait(&id)
            .filter(|s| s.caught_up)
            .map(|s| WarmCopy {
                records: s.records,
                bytes: s.bytes,
                lag: s.lag,
            });
        let state = self
            .backend
            .open(&id)
            .map_err(|source| AssignError::State {
                task: id.clone(),
                source,
            })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(TaskShared {
            status: Mutex::new(TaskStatus {
                warmed,
                ..TaskStatus::new(id.partition, def.version)
            }),
            interrupt: Interrupt::new(),
        });
        let fence = self.assignment.as_ref().and_then(|a| {
            Some(TaskFence {
                processor: id.processor.clone(),
                partition: id.partition,
                epoch: a.epoch(&id.processor, id.partition)?,
            })
        });
        let setup = TaskSetup {
            id: id.clone(),
            fence,
            def: def.clone(),
            log: self.log.clone(),
            state: state.clone(),
            shared: shared.clone(),
            control: rx,
        };
        let thread = std::thread::Builder::new()
            .name(format!("task {id}"))
            .stack_size(TASK_STACK_BYTES)
            .spawn(move || run_task(setup))
            .map_err(|e| AssignError::Thread {
                task: id.clone(),
                message: e.to_string(),
            })?;
        tracing::info!(task = %id, version = def.version, "task assigned");
        self.tasks().insert(
            id,
            TaskHandle {
                def,
                control: tx,
                shared,
                state,
                thread: Some(thread),
            },
        );
        Ok(())
    }

    /// Stops `id` after a final commit and waits for it; its local state stays. Returns its
    /// last status, or `None` if it was not running here.
    pub fn revoke(&self, id: &TaskId) -> Option<TaskStatus> {
        let mut handle = self.tasks().remove(id)?;
        let _ = handle.control.send(Control::Stop);
        handle.shared.interrupt.request();
        if let Some(t) = handle.thread.take() {
            let _ = t.join();
        }
        Some(handle.shared.snapshot())
    }

    fn standbys(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, StandbyHandle>> {
        self.standbys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a standby of `id` (a task another node runs) on this node: its changelogs are
    /// tailed into the task's local store here. Nothing happens when one runs already.
    pub fn keep_standby(&self, id: &TaskId) -> Result<(), AssignError> {
        if self.tasks().contains_key(id) {
            return Ok(());
        }
        let previous = {
            let mut standbys = self.standbys();
            standbys.retain(|_, h| !h.thread.as_ref().is_some_and(|t| t.is_finished()));
            match standbys.get(id) {
                Some(h) if !h.stopping => return Ok(()),
                Some(_) => standbys.remove(id),
                None => None,
            }
        };
        // One asked to stop may still be in a pass: it finishes before the next one starts.
        if let Some(h) = previous {
            h.join();
        }
        let state = self.backend.open(id).map_err(|source| AssignError::State {
            task: id.clone(),
            source,
        })?;
        let shared = StandbyShared::new(id.partition);
        let thread = {
            let (task, log, state, shared) =
                (id.clone(), self.log.clone(), state.clone(), shared.clone());
            std::thread::Builder::new()
                .name(format!("standby {id}"))
                .spawn(move || run_standby(task, log, state, shared))
                .map_err(|e| AssignError::Thread {
                    task: id.clone(),
                    message: e.to_string(),
                })?
        };
        self.standbys().insert(
            id.clone(),
            StandbyHandle {
                shared,
                state,
                thread: Some(thread),
                stopping: false,
            },
        );
        Ok(())
    }

    /// Stops the standby of `id` after its pass in progress, without waiting for it.
    pub fn drop_standby(&self, id: &TaskId) {
        if let Some(h) = self.standbys().get_mut(id) {
            h.stopping = true;
            h.shared.request_stop();
        }
    }

    /// Stops the standby of `id` and waits for its thread; what it last reported.
    fn stop_standby_and_wait(&self, id: &TaskId) -> Option<StandbyStatus> {
        let handle = self.standbys().remove(id)?;
        let shared = handle.shared.clone();
        handle.join();
        Some(shared.snapshot())
    }

    /// The standbys this node keeps (not those stopping).
    pub fn standby_ids(&self) -> Vec<TaskId> {
        let mut v: Vec<TaskId> = self
            .standbys()
            .iter()
            .filter(|(_, h)| !h.stopping)
            .map(|(id, _)| id.clone())
            .collect();
        v.sort();
        v
    }

    /// What the standby of `id` reports.
    pub fn standby_status(&self, id: &TaskId) -> Option<StandbyStatus> {
        let standbys = self.standbys();
        let h = standbys.get(id).filter(|h| !h.stopping)?;
        Some(h.shared.snapshot())
    }

    /// The standby of `id`'s store and what it reports (for look-ups that accept stale
    /// answers).
    pub fn standby_state(&self, id: &TaskId) -> Option<(Arc<dyn StateStore>, StandbyStatus)> {
        let standbys = self.standbys();
        let h = standbys.get(id).filter(|h| !h.stopping)?;
        Some((h.state.clone(), h.shared.snapshot()))
    }

    /// Stops every task (node shutdown).
    pub fn revoke_all(&self) {
        let ids: Vec<TaskId> = self.tasks().keys().cloned().collect();
        // Ask all first so they commit in parallel, then wait.
        for h in self.tasks().values() {
            let _ = h.control.send(Control::Stop);
            h.shared.interrupt.request();
        }
        for id in ids {
            self.revoke(&id);
        }
        let standbys: Vec<StandbyHandle> = self.standbys().drain().map(|(_, h)| h).collect();
        for h in &standbys {
            h.shared.request_stop();
        }
        for h in standbys {
            h.join();
        }
    }

    /// Removes the local state of a task that is not running here.
    pub fn destroy_state(&self, id: &TaskId) -> Result<(), StateError> {
        self.stop_standby_and_wait(id);
        self.backend.destroy(id)
    }

    /// Tasks with local state on this node.
    pub fn local_state(&self) -> Result<Vec<TaskId>, StateError> {
        self.backend.tasks()
    }

    /// Pauses a task: a guest call in progress is interrupted (its input is read again on
    /// resume).
    pub fn pause(&self, id: &TaskId) -> bool {
        let tasks = self.tasks();
        let Some(h) = tasks.get(id) else {
            return false;
        };
        let sent = h.control.send(Control::Pause).is_ok();
        h.shared.interrupt.request();
        sent
    }

    /// Resumes a paused task; a failed (or stopped) task is started again from its last
    /// commit.
    pub fn resume(&self, id: &TaskId) -> Result<bool, AssignError> {
        let restart = {
            let tasks = self.tasks();
            let Some(h) = tasks.get(id) else {
                return Ok(false);
            };
            match h.shared.snapshot().state {
                TaskState::Failed | TaskState::Stopped => Some(h.def.clone()),
                _ => {
                    let _ = h.control.send(Control::Resume);
                    None
                }
            }
        };
        if let Some(def) = restart {
            let def = Arc::new(TaskDefinition {
                spec: def.spec.clone(),
                version: def.version,
                partitions: def.partitions,
                factory: def.factory.clone(),
                paused: false,
            });
            self.assign(id.clone(), def)?;
        }
        Ok(true)
    }

    /// The task's status with fresh end offsets and lag.
    pub fn status(&self, id: &TaskId) -> Option<TaskStatus> {
        let mut s = self.tasks().get(id)?.shared.snapshot();
        for i in &mut s.inputs {
            if let Ok((_, end)) = self.log.offsets(&i.topic, i.partition) {
                i.end_offset = end;
                i.lag = (end - i.committed_offset.unwrap_or(i.position)).max(0);
            }
        }
        s.lag = s.inputs.iter().map(|i| i.lag).sum();
        Some(s)
    }

    /// The task's committed state and its lifecycle state (for interactive queries).
    pub fn state_of(&self, id: &TaskId) -> Option<(Arc<dyn StateStore>, TaskState)> {
        let tasks = self.tasks();
        let h = tasks.get(id)?;
        let state = h
            .shared
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .state;
        Some((h.state.clone(), state))
    }

    /// The task's status as it last reported it (without fresh end offsets).
    pub fn reported(&self, id: &TaskId) -> Option<TaskStatus> {
        Some(self.tasks().get(id)?.shared.snapshot())
    }

    /// Ids of the tasks assigned to this node.
    pub fn assigned(&self) -> Vec<TaskId> {
        let mut v: Vec<TaskId> = self.tasks().keys().cloned().collect();
        v.sort();
        v
    }
}

impl Drop for TaskManager {
    fn drop(&mut self) {
        self.revoke_all();
    }
}

//! [`TaskManager`]: the tasks this node runs. `assign` starts a task (restoring its state
//! from its checkpoint or changelogs, then resuming from its committed offsets); `revoke`
//! stops it after a final commit, keeping its local state for a later assignment. This is
//! the interface a cluster controller drives when it moves tasks between nodes; on a single
//! node the [`crate::engine::Engine`] assigns every task of every processor to itself.
//!
//! Each task runs on its own OS thread (see [`super::runner`]); the manager holds its
//! control channel and shared status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use super::runner::{Control, TaskDefinition, TaskSetup, TaskShared, run_task};
use super::status::{TaskState, TaskStatus};
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

/// The tasks running on this node.
pub struct TaskManager {
    log: Arc<dyn LogAccess>,
    backend: Arc<dyn StateBackend>,
    tasks: Mutex<HashMap<TaskId, TaskHandle>>,
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
        let state = self
            .backend
            .open(&id)
            .map_err(|source| AssignError::State {
                task: id.clone(),
                source,
            })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(TaskShared {
            status: Mutex::new(TaskStatus::new(id.partition, def.version)),
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
    }

    /// Removes the local state of a task that is not running here.
    pub fn destroy_state(&self, id: &TaskId) -> Result<(), StateError> {
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

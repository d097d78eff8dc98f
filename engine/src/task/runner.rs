//! The task runner: the loop one task runs on its own OS thread. It restores the task's
//! stores, positions its inputs at the committed offsets, then reads batches, calls the
//! processor, appends what it emits, fires timers, applies the error policy, and commits on
//! an interval, until it is stopped, fails, or its thread is asked to pause.
//!
//! The commit protocol (at-least-once), in this order:
//! 1. the pending state writes go to the task's store in one atomic batch, flagged `dirty`;
//! 2. the same writes are appended to each store's changelog partition;
//! 3. the input positions (and stream time) are committed to `<processor>.offsets`;
//! 4. the new changelog offsets are recorded as the checkpoint and `dirty` is cleared.
//!
//! Emitted records are appended after every successful call, so they are in the log before
//! the offsets that produced them are committed. A crash anywhere replays input from the
//! last committed offsets; a crash between 1 and 4 leaves `dirty` set, so the next start
//! rebuilds the store from its changelog instead of trusting it.
//!
//! Under `"guarantee": "exactly_once"` (`task::transaction`) every write between two
//! commits (outputs as they are emitted, dead letters, then at commit steps 2 and 3) is
//! one transaction of the task's producer, committed after step 3 and before step 4; the
//! task's start begins with InitProducerId, fencing any earlier incarnation, before the
//! restore. The protocol is otherwise the same, so the order above still holds.
//!
//! A task that fails on an error the log calls transient (`Unavailable`: no leader, not
//! enough replicas, a cluster that cannot answer now) starts again on its own thread after a
//! backoff (1 s doubling to 60 s), from its last commit exactly as a `resume` would: the
//! attempt that failed committed nothing more, and a `dirty` store is rebuilt. Every other
//! failure (the processor's own errors, a fenced owner, corrupt data) stays `failed` until
//! someone resumes or redeploys it. While it waits, the task answers `Stop`, `Pause` and
//! `Resume` (which restarts it at once).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use weir_broker::ProduceRecord;

use super::context::{CallError, ContextParts, HostFailure, OutputTarget, TaskContext};
use super::factory::LogicFactory;
use super::inputs::{Batch, Inputs};
use super::spec::{Guarantee, OnError, ProcessorSpec};
use super::status::{InputStatus, RestoreStatus, TaskErrorInfo, TaskState, TaskStatus};
use super::transaction::TaskTxn;
use crate::clock::now_ms;
use crate::host::{InputRecord, Interrupt, ProcessorError, ProcessorLogic, TimerKind};
use weir_broker::cluster::log_rpc::TaskFence;

use crate::log_access::{LogAccess, LogError, OffsetCommit, offsets_record, offsets_topic};
use crate::state::changelog::{changelog_topic, stores_with_changelogs, to_records};
use crate::state::restore::{
    BEHIND_GRACE, BEHIND_RETRY, META_DIRTY, RestoreError, WhenBehind, checkpoint_meta, restore_task,
};
use crate::state::{StateStore, StoreBatch, StoreWrites};
use crate::task_id::TaskId;
use weir_broker::ErrorKind;

/// Most timers fired in one round (a processor that keeps registering due timers cannot
/// starve its inputs).
const MAX_TIMERS_PER_ROUND: usize = 10_000;

/// Longest idle wait before the loop looks around again.
const MAX_IDLE_WAIT: Duration = Duration::from_secs(1);

/// First wait before a task that failed on a transient error starts again.
pub const RESTART_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait between automatic restarts.
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// An attempt that ran this long resets the backoff.
const RESTART_BACKOFF_RESET: Duration = Duration::from_secs(60);

/// What a task runs: one version of a processor.
pub struct TaskDefinition {
    pub spec: ProcessorSpec,
    pub version: u64,
    /// The processor's partition count (its number of tasks).
    pub partitions: i32,
    pub factory: Arc<dyn LogicFactory>,
    /// Start paused.
    pub paused: bool,
}

/// Messages from the manager to a running task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    /// Commit and exit.
    Stop,
}

/// What the runner shares with the manager.
pub struct TaskShared {
    pub status: Mutex<TaskStatus>,
    /// Raised by the manager with a `Pause` or `Stop` so that a guest call in progress ends
    /// (the runner clears it before it reads its messages).
    pub interrupt: Interrupt,
}

impl TaskShared {
    pub fn snapshot(&self) -> TaskStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut TaskStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Everything a task thread starts with.
pub struct TaskSetup {
    pub id: TaskId,
    /// Cluster mode: the assignment this task writes under (its changelog appends,
    /// committed offsets and outputs are refused once it moved on: a zombie can neither
    /// commit nor emit).
    pub fence: Option<TaskFence>,
    pub def: Arc<TaskDefinition>,
    pub log: Arc<dyn LogAccess>,
    pub state: Arc<dyn StateStore>,
    pub shared: Arc<TaskShared>,
    pub control: mpsc::UnboundedReceiver<Control>,
}

/// Why a task stopped with an error.
struct Failure {
    info: Box<TaskErrorInfo>,
    /// Whether the work done before the failure may be committed (true for processor
    /// errors: the failed call left nothing behind; false for host failures, which may
    /// have left a call half applied).
    commit: bool,
    /// Whether the cause is transient (the log is unavailable now): the task starts again
    /// by itself after a backoff.
    retriable: bool,
}

impl Failure {
    fn host(code: &str, message: String) -> Failure {
        Failure {
            info: Box::new(TaskErrorInfo {
                code: code.to_string(),
                message,
                topic: None,
                partition: None,
                offset: None,
                timer: None,
                at_ms: now_ms(),
            }),
            commit: false,
            retriable: false,
        }
    }

    fn log(what: &str, e: LogError) -> Failure {
        Failure {
            retriable: e.kind() == ErrorKind::Unavailable,
            ..Failure::host(e.code(), format!("{what}: {e}"))
        }
    }
}

impl From<HostFailure> for Failure {
    fn from(f: HostFailure) -> Self {
        Failure::host(f.code, f.message)
    }
}

/// Runs a task to its end: stopped, or failed (the status says which). Never panics out.
pub fn run_task(setup: TaskSetup) {
    let shared = setup.shared.clone();
    let id = setup.id.clone();
    let outcome = catch_unwind(AssertUnwindSafe(move || run(setup)));
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(f)) => Some(f.info),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Some(Failure::host("internal", format!("task panicked: {message}")).info)
        }
    };
    match failure {
        None => {
            tracing::info!(task = %id, "task stopped");
            shared.update(|s| {
                s.state = TaskState::Stopped;
                s.next_restart_ms = None;
            });
        }
        Some(info) => {
            tracing::error!(
                task = %id, code = %info.code, offset = ?info.offset,
                "task failed: {}", info.message
            );
            shared.update(|s| {
                s.state = TaskState::Failed;
                s.last_error = Some(*info);
                s.next_restart_ms = None;
            });
        }
    }
}

/// Runs attempts of the task until it stops or fails on an error that is not transient.
fn run(mut setup: TaskSetup) -> Result<(), Failure> {
    let mut backoff = RESTART_BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let failure = match attempt(&mut setup) {
            Ok(()) => return Ok(()),
            Err(f) if !f.retriable => return Err(f),
            Err(f) => f,
        };
        if started.elapsed() >= RESTART_BACKOFF_RESET {
            backoff = RESTART_BACKOFF_MIN;
        }
        let info = *failure.info;
        tracing::warn!(
            task = %setup.id, code = %info.code, retry_in_ms = backoff.as_millis() as u64,
            "task failed on a transient error; starting it again: {}", info.message
        );
        let wait = backoff;
        setup.shared.update(|s| {
            s.state = TaskState::Failed;
            s.last_error = Some(info);
            s.next_restart_ms =
                Some(now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)));
        });
        match wait_to_restart(&mut setup, wait) {
            Restart::Stop => return Ok(()),
            Restart::Now => {}
        }
        backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
        setup.shared.update(|s| {
            s.restarts += 1;
            s.next_restart_ms = None;
            s.state = TaskState::Starting;
        });
    }
}

enum Restart {
    Now,
    Stop,
}

/// Waits `d` before a restart, answering the manager's messages meanwhile: `Stop` ends the
/// task, `Pause` makes the next attempt start paused, `Resume` restarts at once.
fn wait_to_restart(setup: &mut TaskSetup, d: Duration) -> Restart {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return Restart::Stop;
    };
    let deadline = tokio::time::Instant::now() + d;
    loop {
        let msg = rt.block_on(async {
            tokio::select! {
                m = setup.control.recv() => Some(m.unwrap_or(Control::Stop)),
                _ = tokio::time::sleep_until(deadline) => None,
            }
        });
        match msg {
            None => return Restart::Now,
            Some(Control::Stop) => return Restart::Stop,
            Some(Control::Pause) => setup.def = with_paused(&setup.def, true),
            Some(Control::Resume) => {
                setup.def = with_paused(&setup.def, false);
                return Restart::Now;
            }
        }
    }
}

fn with_paused(def: &Arc<TaskDefinition>, paused: bool) -> Arc<TaskDefinition> {
    Arc::new(TaskDefinition {
        spec: def.spec.clone(),
        version: def.version,
        partitions: def.partitions,
        factory: def.factory.clone(),
        paused,
    })
}

/// One attempt: restore, then the main loop until stopped or failed. The control channel
/// stays in `setup` for the next attempt.
fn attempt(setup: &mut TaskSetup) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| Failure::host("internal", format!("cannot start the task's timer: {e}")))?;
    let mut runner = Runner::start(setup, rt)?;
    let result = runner.main_loop();
    let result = match result {
        Ok(()) => Ok(()),
        Err(f) => {
            if f.commit
                && let Err(e) = runner.commit(false)
            {
                tracing::warn!(task = %runner.id, "commit after failure failed: {}", e.info.message);
            }
            Err(f)
        }
    };
    std::mem::swap(&mut setup.control, &mut runner.control);
    result
}

struct Runner {
    id: TaskId,
    fence: Option<TaskFence>,
    def: Arc<TaskDefinition>,
    log: Arc<dyn LogAccess>,
    state: Arc<dyn StateStore>,
    shared: Arc<TaskShared>,
    control: mpsc::UnboundedReceiver<Control>,
    rt: tokio::runtime::Runtime,
    ctx: TaskContext,
    logic: Option<Box<dyn ProcessorLogic>>,
    inputs: Inputs,
    /// Changelog end offset of every store (what the local store reflects once committed).
    checkpoints: BTreeMap<String, i64>,
    committed_stream_time: i64,
    last_commit: Instant,
    paused: bool,
    /// A stop arrived while a batch was being searched for its failing record.
    stopping: bool,
    /// The last call was interrupted (its input is read again): the loop goes back to its
    /// messages before calling the processor again.
    interrupted: bool,
    dlq: Option<OutputTarget>,
    /// `exactly_once`: the task's producer and its transaction in progress.
    txn: Option<TaskTxn>,
}

impl Runner {
    /// Restores the task's stores and opens its inputs. The control channel is borrowed
    /// from `setup` (swapped back by [`attempt`]).
    fn start(setup: &mut TaskSetup, rt: tokio::runtime::Runtime) -> Result<Runner, Failure> {
        let id = setup.id.clone();
        let fence = setup.fence.clone();
        let def = setup.def.clone();
        let log = setup.log.clone();
        let state = setup.state.clone();
        let shared = setup.shared.clone();
        let spec = &def.spec;
        let p = id.partition;
        shared.update(|s| s.state = TaskState::Restoring);

        // Exactly-once: fence every earlier incarnation (aborting its transaction in
        // flight) before anything is read (`task::transaction`, invariants 3 and 4).
        let txn = match spec.guarantee {
            Guarantee::AtLeastOnce => None,
            Guarantee::ExactlyOnce => Some(
                TaskTxn::begin(&*log, &spec.name, p, spec.commit_interval_ms)
                    .map_err(|e| Failure::log("cannot start the task's transactions", e))?,
            ),
        };

        // Restore every store that has a changelog.
        let stores = stores_with_changelogs(&*log, &spec.name)
            .map_err(|e| Failure::log("cannot list changelogs", e))?;
        let started = Instant::now();
        let outcome = loop {
            // A changelog ending before the checkpoint is given time to come back (a
            // cluster's new leader) before the local state is taken as stale and wiped.
            let when_behind = if started.elapsed() < BEHIND_GRACE {
                WhenBehind::Refuse
            } else {
                WhenBehind::Wipe
            };
            let restored = restore_task(
                &*log,
                &*state,
                &spec.name,
                p,
                &stores,
                when_behind,
                &mut |progress| {
                    shared.update(|s| {
                        s.restore = Some(RestoreStatus::from_progress(
                            progress,
                            progress.from_empty,
                            false,
                        ))
                    });
                },
            );
            match restored {
                Err(RestoreError::ChangelogBehind { .. }) => {
                    std::thread::sleep(BEHIND_RETRY);
                }
                // Read up to a leader that exposes less for now: what was read is
                // checkpointed; go on from there (past the grace, fail and start again).
                Err(e @ RestoreError::ChangelogShort { .. })
                    if started.elapsed() < BEHIND_GRACE =>
                {
                    tracing::info!(task = %id, "restoration goes on: {e}");
                    std::thread::sleep(BEHIND_RETRY);
                }
                other => {
                    break other.map_err(|e| Failure {
                        retriable: e.retriable(),
                        ..Failure::host(e.code(), format!("restoration failed: {e}"))
                    })?;
                }
            }
        };
        shared.update(|s| {
            let r = s.restore.get_or_insert_with(|| {
                RestoreStatus::from_progress(&Default::default(), false, false)
            });
            r.done = true;
            r.eta_ms = None;
            r.from_empty = outcome.from_empty;
            r.records = outcome.records;
            r.bytes = outcome.bytes;
            r.percent = 100.0;
            r.ms = Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        });
        if outcome.records > 0 {
            tracing::info!(
                task = %id, records = outcome.records, bytes = outcome.bytes,
                from_empty = outcome.from_empty, ms = started.elapsed().as_millis() as u64,
                "restored state from changelogs"
            );
        }

        // Outputs, then the repartition topic (last).
        let mut targets = Vec::new();
        for o in &spec.outputs {
            targets.push(target(&*log, o, def.partitions)?);
        }
        targets.push(target(&*log, &spec.repartition_topic(), def.partitions)?);
        let dlq = match spec.on_error {
            OnError::DeadLetter => Some(target(&*log, &spec.dlq_topic(), def.partitions)?),
            _ => None,
        };

        let committed = log
            .committed_offsets(&spec.name, p)
            .map_err(|e| Failure::log("cannot read committed offsets", e))?;
        let inputs = Inputs::open(
            &*log,
            &spec.inputs,
            &[spec.repartition_topic()],
            p,
            committed.as_ref(),
            spec.start,
        )
        .map_err(|e| Failure::log("cannot open the inputs", e))?;
        let mut ctx = TaskContext::new(ContextParts {
            processor: spec.name.clone(),
            partition: p,
            partitions: def.partitions,
            targets,
            limits: spec.limits.clone(),
            log: log.clone(),
            state: state.clone(),
        });
        let stream_time = committed.as_ref().map_or(i64::MIN, |c| c.stream_time);
        ctx.stream_time = stream_time;
        ctx.load_timers()?;

        let mut runner = Runner {
            id,
            fence,
            paused: def.paused,
            def,
            log,
            state,
            shared,
            control: std::mem::replace(&mut setup.control, mpsc::unbounded_channel().1),
            rt,
            ctx,
            logic: None,
            inputs,
            checkpoints: outcome.checkpoints,
            committed_stream_time: stream_time,
            last_commit: Instant::now(),
            stopping: false,
            interrupted: false,
            dlq,
            txn,
        };
        let begun = (|| {
            if committed.is_none() {
                // Pin the start positions (`latest` must not move on a restart).
                runner.commit(false)?;
            }
            runner.instantiate()
        })();
        if let Err(f) = begun {
            // The control channel goes back to `setup` for the next attempt.
            std::mem::swap(&mut setup.control, &mut runner.control);
            return Err(f);
        }
        runner.publish_status();
        runner.shared.update(|s| {
            s.state = if runner.paused {
                TaskState::Paused
            } else {
                TaskState::Running
            }
        });
        Ok(runner)
    }

    fn spec(&self) -> &ProcessorSpec {
        &self.def.spec
    }

    fn main_loop(&mut self) -> Result<(), Failure> {
        let interval = Duration::from_millis(self.spec().commit_interval_ms);
        let batch_size = self.spec().batch_size;
        loop {
            if self.stopping {
                return self.handle(Control::Stop).map(|_| ());
            }
            // A request raised with a message is cleared before the message is read, so
            // none is lost (a request raised after its message was read only interrupts
            // one call spuriously: its input is read again).
            self.shared.interrupt.clear();
            self.interrupted = false;
            while let Ok(msg) = self.control.try_recv() {
                if self.handle(msg)? {
                    return Ok(());
                }
            }
            if self.paused {
                self.commit(true)?;
                let msg = self.rt.block_on(self.control.recv());
                if self.handle(msg.unwrap_or(Control::Stop))? {
                    return Ok(());
                }
                continue;
            }
            self.inputs
                .fill(&*self.log, batch_size)
                .map_err(|e| Failure::log("cannot read the inputs", e))?;
            let batch = self.inputs.next_batch(batch_size);
            let worked = !batch.records.is_empty();
            if worked {
                self.process(batch)?;
                if self.interrupted {
                    continue;
                }
                self.fire_stream_timers()?;
                self.publish_status();
            }
            self.fire_wall_timers()?;
            if self.interrupted {
                continue;
            }
            if self.last_commit.elapsed() >= interval {
                self.commit(true)?;
            }
            if worked || !self.inputs.caught_up() {
                continue;
            }
            // Idle: wait for records, a message, the next wall-clock timer or the commit.
            let mut wait = MAX_IDLE_WAIT;
            if self.uncommitted() {
                wait = wait.min(interval.saturating_sub(self.last_commit.elapsed()));
            }
            if let Some(t) = self.ctx.timers.next_wall() {
                let ms = t.saturating_sub(now_ms()).max(0) as u64;
                wait = wait.min(Duration::from_millis(ms));
            }
            let control = &mut self.control;
            let inputs = &mut self.inputs;
            let msg = self.rt.block_on(async {
                tokio::select! {
                    m = control.recv() => Some(m.unwrap_or(Control::Stop)),
                    () = inputs.changed() => None,
                    () = tokio::time::sleep(wait) => None,
                }
            });
            if let Some(m) = msg
                && self.handle(m)?
            {
                return Ok(());
            }
        }
    }

    /// Whether a stop was asked for (other messages met on the way are applied).
    fn stop_requested(&mut self) -> bool {
        if self.stopping {
            return true;
        }
        while let Ok(msg) = self.control.try_recv() {
            match msg {
                Control::Stop => self.stopping = true,
                Control::Pause => {
                    self.paused = true;
                    self.shared.update(|s| s.state = TaskState::Paused);
                }
                Control::Resume => {
                    self.paused = false;
                    self.shared.update(|s| s.state = TaskState::Running);
                }
            }
        }
        self.stopping
    }

    /// Applies a control message; true when the task must exit.
    fn handle(&mut self, msg: Control) -> Result<bool, Failure> {
        match msg {
            Control::Stop => {
                self.commit(true)?;
                Ok(true)
            }
            Control::Pause => {
                if !self.paused {
                    self.paused = true;
                    self.commit(true)?;
                    self.shared.update(|s| s.state = TaskState::Paused);
                    tracing::info!(task = %self.id, "task paused");
                }
                Ok(false)
            }
            Control::Resume => {
                if self.paused {
                    self.paused = false;
                    self.shared.update(|s| s.state = TaskState::Running);
                    tracing::info!(task = %self.id, "task resumed");
                }
                Ok(false)
            }
        }
    }

    /// A fresh processor instance, initialised with the spec's config.
    fn instantiate(&mut self) -> Result<(), Failure> {
        self.logic = None;
        let logic = self
            .def
            .factory
            .instantiate(self.ctx.label(), &self.shared.interrupt)
            .map_err(|e| Failure::host(e.code(), format!("cannot instantiate: {e}")))?;
        self.logic = Some(logic);
        let config = self.spec().config_pairs();
        let ts = self.ctx.stream_time.max(0);
        match self.call(ts, |logic, ctx| logic.init(ctx, &config)) {
            Ok(()) => self.flush_emitted(),
            Err(CallError::Host(f)) => Err(f.into()),
            Err(CallError::Processor(ProcessorError::Interrupted(_))) => {
                // Made again when it is next needed.
                self.logic = None;
                self.interrupted = true;
                Ok(())
            }
            Err(CallError::Processor(e)) => {
                self.logic = None;
                Err(Failure {
                    info: Box::new(error_info(&e, None, None, format!("init failed: {e}"))),
                    commit: true,
                    retriable: false,
                })
            }
        }
    }

    /// Makes the instance if an interrupted `init` left none; false when it is still
    /// missing (interrupted again).
    fn ensure_instance(&mut self) -> Result<bool, Failure> {
        if self.logic.is_none() {
            self.instantiate()?;
        }
        Ok(self.logic.is_some())
    }

    /// One processor call, with the context set up and torn down around it.
    fn call(
        &mut self,
        timestamp: i64,
        f: impl FnOnce(&mut dyn ProcessorLogic, &mut TaskContext) -> Result<(), ProcessorError>,
    ) -> Result<(), CallError> {
        let Some(logic) = self.logic.as_mut() else {
            return Err(CallError::Processor(ProcessorError::Host(
                "no processor instance".into(),
            )));
        };
        self.ctx.begin_call(timestamp);
        let ctx = &mut self.ctx;
        let result = catch_unwind(AssertUnwindSafe(|| f(logic.as_mut(), ctx)))
            .unwrap_or_else(|_| Err(ProcessorError::Trap("the processor panicked".into())));
        self.ctx.end_call(result)
    }

    /// After a failed call: an instance that trapped, hit a limit or failed in the host is
    /// replaced (its state may be corrupt); one that returned its own error is kept.
    fn recover(&mut self, e: &ProcessorError) -> Result<(), Failure> {
        if !matches!(e, ProcessorError::Guest(_)) {
            self.instantiate()?;
        }
        Ok(())
    }

    fn process(&mut self, batch: Batch) -> Result<(), Failure> {
        let Some(max_ts) = batch.records.iter().map(|r| r.timestamp).max() else {
            return Ok(());
        };
        if !self.ensure_instance()? {
            self.inputs.unread();
            return Ok(());
        }
        self.ctx.stream_time = self.ctx.stream_time.max(max_ts);
        let records = &batch.records;
        match self.call(max_ts, |logic, ctx| logic.process(ctx, records)) {
            Ok(()) => {
                self.flush_emitted()?;
                for (r, s) in batch.records.iter().zip(&batch.sources) {
                    self.inputs.advance(*s, r.offset);
                }
                let n = batch.records.len() as u64;
                self.shared.update(|s| s.records_in += n);
                Ok(())
            }
            Err(CallError::Host(f)) => Err(f.into()),
            Err(CallError::Processor(ProcessorError::Interrupted(_))) => {
                // Not the batch's fault: it is read again after the messages are handled.
                self.logic = None;
                self.interrupted = true;
                self.inputs.unread();
                Ok(())
            }
            Err(CallError::Processor(e)) => {
                self.recover(&e)?;
                if batch.records.len() == 1 {
                    return self.on_record_error(&batch.records[0], batch.sources[0], e);
                }
                // Find the failing record(s): one call per record. Each may take up to the
                // CPU limit, so a stop request ends the search (the rest is read again).
                for (r, s) in batch.records.into_iter().zip(batch.sources) {
                    if self.interrupted || self.stop_requested() {
                        self.inputs.unread();
                        return Ok(());
                    }
                    self.process(Batch {
                        records: vec![r],
                        sources: vec![s],
                    })?;
                }
                Ok(())
            }
        }
    }

    /// Applies the error policy to a record whose call failed.
    fn on_record_error(
        &mut self,
        record: &InputRecord,
        source: usize,
        e: ProcessorError,
    ) -> Result<(), Failure> {
        let info = error_info(&e, Some(record), None, e.to_string());
        self.shared.update(|s| {
            s.errors += 1;
            s.last_error = Some(info.clone());
        });
        match self.spec().on_error {
            OnError::Fail => Err(Failure {
                info: Box::new(info),
                commit: true,
                retriable: false,
            }),
            OnError::Skip => {
                tracing::warn!(
                    task = %self.id, topic = %record.topic, offset = record.offset,
                    code = e.code(), "skipping record: {e}"
                );
                self.inputs.advance(source, record.offset);
                self.shared.update(|s| s.skipped += 1);
                Ok(())
            }
            OnError::DeadLetter => {
                let Some(dlq) = &self.dlq else {
                    return Err(Failure::host("internal", "no dead-letter topic".into()));
                };
                let topic = dlq.topic.clone();
                let partition = record.partition % dlq.partitions.max(1);
                let dead = dead_letter(record, &e, partition);
                match (&mut self.txn, &self.fence) {
                    (Some(t), _) => t.produce(&*self.log, &topic, &[dead]),
                    (None, Some(f)) => self.log.produce_fenced(&topic, vec![dead], f),
                    (None, None) => self.log.produce(&topic, vec![dead]),
                }
                .map_err(|e| Failure::log("cannot append to the dead-letter topic", e))?;
                tracing::warn!(
                    task = %self.id, topic = %record.topic, offset = record.offset,
                    code = e.code(), "record sent to {topic}: {e}"
                );
                self.inputs.advance(source, record.offset);
                self.shared.update(|s| s.dead_lettered += 1);
                Ok(())
            }
        }
    }

    fn fire_stream_timers(&mut self) -> Result<(), Failure> {
        for _ in 0..MAX_TIMERS_PER_ROUND {
            if self.interrupted {
                break;
            }
            let Some(t) = self
                .ctx
                .timers
                .pop_due(TimerKind::StreamTime, self.ctx.stream_time)
            else {
                break;
            };
            self.fire(TimerKind::StreamTime, t)?;
        }
        Ok(())
    }

    fn fire_wall_timers(&mut self) -> Result<(), Failure> {
        for _ in 0..MAX_TIMERS_PER_ROUND {
            if self.interrupted {
                break;
            }
            let Some(t) = self.ctx.timers.pop_due(TimerKind::WallClock, now_ms()) else {
                break;
            };
            self.fire(TimerKind::WallClock, t)?;
        }
        Ok(())
    }

    fn fire(&mut self, kind: TimerKind, time: i64) -> Result<(), Failure> {
        if !self.ensure_instance()? {
            self.ctx.timers.insert(kind, time);
            return Ok(());
        }
        self.ctx.consume_timer(kind, time)?;
        match self.call(time.max(0), |logic, ctx| logic.on_timer(ctx, kind, time)) {
            Ok(()) => self.flush_emitted(),
            Err(CallError::Host(f)) => Err(f.into()),
            Err(CallError::Processor(ProcessorError::Interrupted(_))) => {
                self.logic = None;
                self.interrupted = true;
                Ok(self.ctx.restore_timer(kind, time)?)
            }
            Err(CallError::Processor(e)) => {
                let info = error_info(&e, None, Some(time), format!("on_timer({time}): {e}"));
                self.shared.update(|s| {
                    s.errors += 1;
                    s.last_error = Some(info.clone());
                });
                self.recover(&e)?;
                match self.spec().on_error {
                    OnError::Fail => Err(Failure {
                        info: Box::new(info),
                        commit: true,
                        retriable: false,
                    }),
                    // A timer has no input record to dead-letter: it is skipped.
                    OnError::Skip | OnError::DeadLetter => {
                        tracing::warn!(task = %self.id, time, "skipping failed timer: {e}");
                        self.shared.update(|s| s.skipped += 1);
                        Ok(())
                    }
                }
            }
        }
    }

    /// Appends what successful calls emitted.
    fn flush_emitted(&mut self) -> Result<(), Failure> {
        let (batches, n) = self.ctx.take_output();
        if batches.is_empty() {
            return Ok(());
        }
        if let Some(txn) = &mut self.txn {
            let targets = self.ctx.targets();
            txn.add_all(
                &*self.log,
                batches
                    .iter()
                    .map(|(t, p, _)| (targets[*t].topic.as_str(), *p)),
            )
            .map_err(|e| Failure::log("cannot add outputs to the transaction", e))?;
        }
        for (t, partition, batch) in batches {
            let topic = &self.ctx.targets()[t].topic;
            // Fenced too: a zombie's outputs (and repartitioned records) would be counted
            // again, or overwrite newer results, downstream.
            match (&mut self.txn, &self.fence) {
                (Some(t), _) => t.append(&*self.log, topic, partition, &batch),
                (None, Some(f)) => self.log.append_batch_fenced(topic, partition, &batch, f),
                (None, None) => self.log.append_batch(topic, partition, &batch),
            }
            .map_err(|e| Failure::log(&format!("cannot append to '{topic}'"), e))?;
        }
        self.shared.update(|s| s.records_out += n);
        Ok(())
    }

    fn uncommitted(&self) -> bool {
        self.txn.as_ref().is_some_and(TaskTxn::in_progress)
            || self.ctx.writes.has_pending()
            || self.inputs.moved()
            || self.ctx.stream_time != self.committed_stream_time
    }

    /// The commit protocol (see the module docs). `between_batches`: no record is in
    /// flight, so positions may move over trailing gaps.
    fn commit(&mut self, between_batches: bool) -> Result<(), Failure> {
        self.last_commit = Instant::now();
        if between_batches {
            self.inputs.skip_gaps();
        }
        if !self.uncommitted() {
            return Ok(());
        }
        let p = self.id.partition;
        let processor = self.def.spec.name.clone();
        let has_writes = self.ctx.writes.has_pending();
        // The handle of each store in `batch.stores`.
        let mut handles = Vec::new();
        let mut batch = StoreBatch::default();
        if has_writes {
            // 1. The store, flagged dirty until the changelog has the same writes.
            for (i, entries) in self.ctx.writes.take_pending().into_iter().enumerate() {
                if !entries.is_empty() {
                    handles.push(i);
                    batch.stores.push(StoreWrites {
                        store: self.ctx.stores()[i].clone(),
                        entries,
                    });
                }
            }
            batch
                .meta
                .push((META_DIRTY.to_string(), Some(Bytes::from_static(b"1"))));
            self.state
                .write(&batch)
                .map_err(|e| Failure::host(e.code(), format!("state write failed: {e}")))?;
            // 2. The changelogs (with the offsets' partition, added to the transaction in
            // one write of the coordinator).
            if let Some(txn) = &mut self.txn {
                let topics: Vec<String> = batch
                    .stores
                    .iter()
                    .map(|w| changelog_topic(&processor, &w.store))
                    .chain([offsets_topic(&processor)])
                    .collect();
                txn.add_all(&*self.log, topics.iter().map(|t| (t.as_str(), p)))
                    .map_err(|e| Failure::log("cannot add changelogs to the transaction", e))?;
            }
            for w in &batch.stores {
                let topic = changelog_topic(&processor, &w.store);
                let records = to_records(&w.entries, p);
                let offsets = match (&mut self.txn, &self.fence) {
                    (Some(t), _) => t.produce(&*self.log, &topic, &records),
                    (None, Some(f)) => self.log.produce_fenced(&topic, records, f),
                    (None, None) => self.log.produce(&topic, records),
                }
                .map_err(|e| Failure::log(&format!("cannot append to '{topic}'"), e))?;
                if let Some((_, last)) = offsets.last() {
                    self.checkpoints.insert(w.store.clone(), last + 1);
                }
            }
        }
        // 3. The input offsets.
        let commit = OffsetCommit {
            inputs: self.inputs.positions(),
            stream_time: self.ctx.stream_time,
            version: self.def.version,
        };
        match &mut self.txn {
            // Exactly-once: the offsets in the transaction, which then commits: every
            // write of the interval becomes visible at once (`task::transaction`).
            Some(t) => offsets_record(&processor, p, &commit)
                .and_then(|r| t.produce(&*self.log, &offsets_topic(&processor), &[r]))
                .and_then(|_| t.commit(&*self.log)),
            None => self
                .log
                .commit_offsets(&processor, p, &commit, self.fence.as_ref()),
        }
        .map_err(|e| Failure::log("cannot commit input offsets", e))?;
        self.inputs.mark_committed();
        self.committed_stream_time = self.ctx.stream_time;
        // 4. The checkpoint.
        if has_writes {
            let mut meta: Vec<(String, Option<Bytes>)> = self
                .checkpoints
                .iter()
                .map(|(s, o)| (checkpoint_meta(s), Some(Bytes::from(o.to_string()))))
                .collect();
            meta.push((META_DIRTY.to_string(), None));
            self.state
                .write(&StoreBatch {
                    stores: vec![],
                    meta,
                })
                .map_err(|e| Failure::host(e.code(), format!("checkpoint write failed: {e}")))?;
            // What was just committed is what the store now holds.
            for (i, w) in handles.into_iter().zip(batch.stores) {
                for (k, v) in w.entries {
                    self.ctx.writes.remember(i, k, v);
                }
            }
        }
        let at = now_ms();
        self.shared.update(|s| {
            s.commits += 1;
            s.last_commit_ms = Some(at);
        });
        self.publish_status();
        Ok(())
    }

    /// Copies positions, stream time and timers into the shared status.
    fn publish_status(&self) {
        let inputs: Vec<InputStatus> = self
            .inputs
            .parts()
            .iter()
            .map(|p| InputStatus {
                topic: p.topic.to_string(),
                partition: p.partition,
                committed_offset: p.committed,
                position: p.position,
                end_offset: p.known_end(),
                lag: (p.known_end() - p.committed.unwrap_or(p.position)).max(0),
            })
            .collect();
        let stream_time = (self.ctx.stream_time != i64::MIN).then_some(self.ctx.stream_time);
        let timers = self.ctx.timers.len();
        self.shared.update(|s| {
            s.lag = inputs.iter().map(|i| i.lag).sum();
            s.inputs = inputs;
            s.stream_time = stream_time;
            s.timers = timers;
        });
    }
}

/// Looks up (creating if needed, with the processor's partition count) a topic to emit to.
fn target(log: &dyn LogAccess, topic: &str, partitions: i32) -> Result<OutputTarget, Failure> {
    let meta = log
        .ensure_topic(weir_broker::TopicSpec::new(topic, partitions))
        .map_err(|e| Failure::log(&format!("cannot create topic '{topic}'"), e))?;
    Ok(OutputTarget {
        topic: topic.to_string(),
        partitions: meta.partitions,
        compacted: meta.compacted,
    })
}

fn error_info(
    e: &ProcessorError,
    record: Option<&InputRecord>,
    timer: Option<i64>,
    message: String,
) -> TaskErrorInfo {
    TaskErrorInfo {
        code: e.code().to_string(),
        message,
        topic: record.map(|r| r.topic.to_string()),
        partition: record.map(|r| r.partition),
        offset: record.map(|r| r.offset),
        timer,
        at_ms: now_ms(),
    }
}

/// The dead-letter copy of `record`: same key, value, headers and timestamp, plus
/// `weir.error` (the message), `weir.error.code`, and where it came from.
fn dead_letter(record: &InputRecord, e: &ProcessorError, partition: i32) -> ProduceRecord {
    let mut headers = record.headers.clone();
    let h = |k: &str, v: String| (k.to_string(), Some(Bytes::from(v)));
    headers.push(h("weir.error", e.to_string()));
    headers.push(h("weir.error.code", e.code().to_string()));
    headers.push(h("weir.source.topic", record.topic.to_string()));
    headers.push(h("weir.source.partition", record.partition.to_string()));
    headers.push(h("weir.source.offset", record.offset.to_string()));
    ProduceRecord {
        key: record.key.clone(),
        value: record.value.clone(),
        headers,
        timestamp: Some(record.timestamp.max(0)),
        partition: Some(partition),
    }
}

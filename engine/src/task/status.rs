//! What a task reports about itself (the `tasks` of `GET /v1/processors/{name}`): its state,
//! input positions and lag, counters, last error and restoration progress. The runner
//! updates a [`TaskStatus`] behind a mutex; readers take snapshots.

use serde::Serialize;

use crate::state::restore::RestoreProgress;

/// Lifecycle state of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Assigned (or about to be), its thread not yet restoring.
    Starting,
    /// Rebuilding its stores from their changelogs (also while starting).
    Restoring,
    Running,
    Paused,
    /// Stopped by an error; `last_error` says which and at what offset.
    Failed,
    /// Revoked from this node (or the node is stopping).
    Stopped,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Starting => "starting",
            TaskState::Restoring => "restoring",
            TaskState::Running => "running",
            TaskState::Paused => "paused",
            TaskState::Failed => "failed",
            TaskState::Stopped => "stopped",
        }
    }
}

/// An error a task met, and where.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskErrorInfo {
    /// Stable code: `guest_trap`, `limit_exceeded`, `guest_error`, `host_error`, or a log or
    /// state error's code.
    pub code: String,
    pub message: String,
    /// The input record being processed, when the error is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// The timer being fired, when the error is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timer: Option<i64>,
    /// When it happened (ms since the epoch).
    pub at_ms: i64,
}

/// Restoration progress: while restoring, of the store being restored; once `done`, the
/// totals over every store of the task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreStatus {
    /// The store being (or last) restored; empty if the task had no stores to restore.
    pub store: String,
    /// Changelog records applied.
    pub records: u64,
    /// Key and value bytes applied.
    pub bytes: u64,
    pub percent: f64,
    pub start_offset: i64,
    pub end_offset: i64,
    pub offset: i64,
    /// Changelog offsets to read in all (`end_offset - start_offset`; records, less what
    /// compaction removed).
    pub total: i64,
    /// Estimated time left (ms) at the rate so far, while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_ms: Option<u64>,
    /// Whether the local state was discarded and rebuilt from empty.
    pub from_empty: bool,
    pub done: bool,
    /// How long the whole restoration took, once done (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
}

impl RestoreStatus {
    pub fn from_progress(p: &RestoreProgress, from_empty: bool, done: bool) -> Self {
        RestoreStatus {
            store: p.store.clone(),
            records: p.records,
            bytes: p.bytes,
            percent: (p.percent() * 10.0).round() / 10.0,
            start_offset: p.start_offset,
            end_offset: p.end_offset,
            offset: p.offset,
            total: p.end_offset.saturating_sub(p.start_offset).max(0),
            eta_ms: if done {
                None
            } else {
                p.eta_ms(crate::clock::now_ms())
            },
            from_empty,
            done,
            ms: None,
        }
    }
}

/// What a standby had copied before it became the task ([`TaskStatus::warmed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WarmCopy {
    /// Changelog records it applied.
    pub records: u64,
    /// Key and value bytes it applied.
    pub bytes: u64,
    /// Changelog records it was behind at its last check.
    pub lag: i64,
}

/// One input partition of a task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputStatus {
    pub topic: String,
    pub partition: i32,
    /// Next offset to process as of the last commit (`null` before the first).
    pub committed_offset: Option<i64>,
    /// Next offset to process.
    pub position: i64,
    /// The partition's end offset.
    pub end_offset: i64,
    /// `end_offset - committed_offset` (or `- position` before the first commit).
    pub lag: i64,
}

/// A task's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskStatus {
    pub partition: i32,
    pub state: TaskState,
    /// Processor version the task runs.
    pub version: u64,
    pub inputs: Vec<InputStatus>,
    /// Sum of the inputs' lag.
    pub lag: i64,
    /// Records processed (handed to the processor and accepted).
    pub records_in: u64,
    /// Records emitted and appended (outputs and repartition topic).
    pub records_out: u64,
    /// Failed processor calls on records or timers (whatever the policy did with them).
    pub errors: u64,
    pub skipped: u64,
    pub dead_lettered: u64,
    pub last_error: Option<TaskErrorInfo>,
    /// The current or last restoration.
    pub restore: Option<RestoreStatus>,
    /// On a cluster: what this node's standby (or warm-up) of the task had copied from the
    /// changelogs before the task started here (its restoration then read only the rest),
    /// when that standby had caught up once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmed: Option<WarmCopy>,
    /// Largest event time seen (`null` before the first record).
    pub stream_time: Option<i64>,
    /// Timers registered and not yet fired.
    pub timers: usize,
    pub commits: u64,
    pub last_commit_ms: Option<i64>,
    /// Times the task started again by itself after a transient error.
    pub restarts: u32,
    /// When a task that failed on a transient error starts again (ms since the epoch);
    /// absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_restart_ms: Option<i64>,
}

impl TaskStatus {
    pub fn new(partition: i32, version: u64) -> Self {
        TaskStatus {
            partition,
            state: TaskState::Starting,
            version,
            inputs: Vec::new(),
            lag: 0,
            records_in: 0,
            records_out: 0,
            errors: 0,
            skipped: 0,
            dead_lettered: 0,
            last_error: None,
            restore: None,
            warmed: None,
            stream_time: None,
            timers: 0,
            commits: 0,
            last_commit_ms: None,
            restarts: 0,
            next_restart_ms: None,
        }
    }
}

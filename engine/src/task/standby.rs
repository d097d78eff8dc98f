//! Standby tasks: a warm copy of a task that runs on another node. A standby tails the task's
//! changelog partitions into this node's local store for the task (the same store the task
//! would open here), so that when the cluster moves the task to this node its restoration
//! reads only the records appended since the standby's last pass, not the whole changelog
//! (Kafka Streams' standby replicas).
//!
//! It owns only the tailing loop and what it reports ([`StandbyStatus`]); which tasks this
//! node keeps standbys of is the cluster's decision, and starting, stopping and handing a
//! standby's store over to the task is the [`super::TaskManager`]'s.
//!
//! # Invariants
//!
//! 1. **A standby only reads the log.** It writes nothing but its own node's local store (the
//!    same restoration a task does before it starts: changelog records applied in order, the
//!    checkpoint moved after them, `dirty` while a pass is under way), so it needs no fence.
//! 2. **A standby and the task never share a store at once**: the manager stops a standby and
//!    waits for its thread before the task's state is opened on the node (a pass in progress
//!    is finished first: its work is what the task's restoration would do anyway).
//! 3. **What a standby answers is stale and says so**: a look-up served from it carries how
//!    many records it was behind at its last check ([`StandbyStatus::lag`]); a standby whose
//!    first pass has not finished answers nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::status::RestoreStatus;
use crate::clock::now_ms;
use crate::log_access::LogAccess;
use crate::state::StateStore;
use crate::state::changelog::stores_with_changelogs;
use crate::state::restore::{
    BEHIND_GRACE, RestoreError, RestoreProgress, WhenBehind, restore_task,
};
use crate::task_id::TaskId;

/// How often a caught-up standby looks for new changelog records.
pub const STANDBY_POLL: Duration = Duration::from_millis(200);
/// Longest wait before a standby whose pass failed tries again.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// What a standby reports (`standbys` of `GET /v1/processors/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StandbyStatus {
    pub partition: i32,
    /// Always `standby`.
    pub state: &'static str,
    /// Whether a whole pass has finished: the store holds a consistent prefix of the
    /// changelogs.
    pub caught_up: bool,
    /// Changelog records it is behind: while a pass copies, the records left in the store
    /// being copied; between passes, what the last pass had to copy.
    pub lag: i64,
    /// Changelog records applied since the standby started.
    pub records: u64,
    /// Key and value bytes applied since the standby started.
    pub bytes: u64,
    /// The pass under way, or the last one.
    pub restore: Option<RestoreStatus>,
    /// When the last pass finished (ms since the epoch).
    pub checked_ms: Option<i64>,
    /// Why the last pass failed (it is tried again).
    pub last_error: Option<String>,
}

impl StandbyStatus {
    fn new(partition: i32) -> Self {
        StandbyStatus {
            partition,
            state: "standby",
            caught_up: false,
            lag: 0,
            records: 0,
            bytes: 0,
            restore: None,
            checked_ms: None,
            last_error: None,
        }
    }
}

/// What the manager shares with a standby's thread.
pub struct StandbyShared {
    pub status: Mutex<StandbyStatus>,
    stop: AtomicBool,
    wake: Condvar,
    sleeping: Mutex<()>,
}

impl StandbyShared {
    pub fn new(partition: i32) -> Arc<Self> {
        Arc::new(StandbyShared {
            status: Mutex::new(StandbyStatus::new(partition)),
            stop: AtomicBool::new(false),
            wake: Condvar::new(),
            sleeping: Mutex::new(()),
        })
    }

    pub fn snapshot(&self) -> StandbyStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut StandbyStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Asks the thread to stop after its pass in progress (it does not wait).
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _guard = self.sleeping.lock().unwrap_or_else(|p| p.into_inner());
        self.wake.notify_all();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps `d` or until asked to stop; whether to go on.
    fn pause(&self, d: Duration) -> bool {
        let guard = self.sleeping.lock().unwrap_or_else(|p| p.into_inner());
        if self.stopping() {
            return false;
        }
        let _ = self
            .wake
            .wait_timeout(guard, d)
            .unwrap_or_else(|p| p.into_inner());
        !self.stopping()
    }
}

/// A standby's loop: a pass over the task's changelogs every [`STANDBY_POLL`] until stopped.
pub fn run_standby(
    id: TaskId,
    log: Arc<dyn LogAccess>,
    state: Arc<dyn StateStore>,
    shared: Arc<StandbyShared>,
) {
    tracing::info!(task = %id, "standby started");
    let mut retry = STANDBY_POLL;
    // Since when a changelog has ended before the store's checkpoint (see `WhenBehind`).
    let mut behind_since: Option<Instant> = None;
    loop {
        if shared.stopping() {
            break;
        }
        let when_behind = match behind_since {
            Some(t) if t.elapsed() >= BEHIND_GRACE => WhenBehind::Wipe,
            _ => WhenBehind::Refuse,
        };
        match pass(&id, &*log, &*state, &shared, when_behind) {
            Ok(()) => {
                retry = STANDBY_POLL;
                behind_since = None;
            }
            Err(e) => {
                tracing::debug!(task = %id, "standby pass failed: {e}");
                if matches!(e, RestoreError::ChangelogBehind { .. }) {
                    behind_since.get_or_insert_with(Instant::now);
                    retry = STANDBY_POLL;
                } else if let RestoreError::ChangelogShort { reached, end, .. } = e {
                    // What it read is checkpointed; it is behind by the rest.
                    shared.update(|s| s.lag = s.lag.max(end.saturating_sub(reached)));
                    retry = STANDBY_POLL;
                } else {
                    retry = (retry * 2).min(MAX_RETRY);
                }
                shared.update(|s| s.last_error = Some(e.to_string()));
            }
        }
        if !shared.pause(retry) {
            break;
        }
    }
    tracing::info!(task = %id, "standby stopped");
}

/// Applies the changelog records appended since the last pass.
fn pass(
    id: &TaskId,
    log: &dyn LogAccess,
    state: &dyn StateStore,
    shared: &StandbyShared,
    when_behind: WhenBehind,
) -> Result<(), RestoreError> {
    let stores =
        stores_with_changelogs(log, &id.processor).map_err(|source| RestoreError::Log {
            topic: format!("{}.*.changelog", id.processor),
            source,
        })?;
    let first = !shared.snapshot().caught_up;
    let mut on_progress = |p: &RestoreProgress| {
        shared.update(|s| {
            // Rebuilding from empty, the store holds only part of the state: no longer a
            // copy to answer from until the pass ends.
            s.caught_up &= !p.from_empty;
            // How far behind it is now, while a pass copies (what a stale answer says).
            s.lag = p.end_offset.saturating_sub(p.offset);
            if first || p.from_empty {
                s.restore = Some(RestoreStatus::from_progress(p, p.from_empty, false));
            }
        });
    };
    let outcome = restore_task(
        log,
        state,
        &id.processor,
        id.partition,
        &stores,
        when_behind,
        &mut on_progress,
    )?;
    if outcome.records > 0 {
        tracing::debug!(
            task = %id, checkpoints = ?outcome.checkpoints, records = outcome.records,
            "standby pass applied"
        );
    }
    if first {
        tracing::debug!(
            task = %id, ?stores, checkpoints = ?outcome.checkpoints, records = outcome.records,
            from_empty = outcome.from_empty, "standby caught up"
        );
    }
    let lag = i64::try_from(outcome.records).unwrap_or(i64::MAX);
    shared.update(|s| {
        s.caught_up = true;
        s.lag = lag;
        s.records += outcome.records;
        s.bytes += outcome.bytes;
        if outcome.records > 0 || s.restore.is_none() {
            let r = s.restore.get_or_insert_with(|| {
                RestoreStatus::from_progress(&Default::default(), false, false)
            });
            r.done = true;
            r.eta_ms = None;
            r.from_empty = outcome.from_empty;
            r.records = outcome.records;
            r.bytes = outcome.bytes;
            r.percent = 100.0;
        }
        s.checked_ms = Some(now_ms());
        s.last_error = None;
    });
    Ok(())
}

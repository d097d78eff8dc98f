//! [`TaskContext`]: the [`TaskHost`] a task gives its processor. It resolves output names
//! to topics and partitions, enforces the per-call output limits, keeps state writes and
//! timers of the call in progress apart (so a failed call leaves no trace), opens stores
//! (creating their changelog topics), and reads through the uncommitted writes to the
//! task's [`StateStore`].
//!
//! It does not append anything to the log nor commit: emitted records go into record batches
//! ([`super::output`]) that the runner appends after a successful call, and the runner takes
//! the pending writes at commit time.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use weir_broker::partitioner::partition_for_key;

use super::output::{OutputBatch, PendingOutput};
use super::spec::REPARTITION_OUTPUT;
use super::timers::{self, TIMERS_STORE, TimerSet};
use crate::host::{
    HostError, LogLevel, OutputRecord, OutputRef, ProcessorError, StoreHandle, TaskHost, TimerKind,
};
use crate::limits::ProcessorLimits;
use crate::log_access::LogAccess;
use crate::state::changelog::changelog_spec;
use crate::state::write_buffer::{WriteBuffer, merge_range};
use crate::state::{StateStore, keys};

/// A topic records can be emitted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputTarget {
    pub topic: String,
    pub partitions: i32,
    pub compacted: bool,
}

/// A failure of the host itself (state store, log) during a call: fails the task whatever
/// the error policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFailure {
    pub code: &'static str,
    pub message: String,
}

/// How a call ended, from the task's point of view.
#[derive(Debug)]
pub enum CallError {
    /// The processor failed (trap, limit, its own error): subject to the error policy.
    Processor(ProcessorError),
    /// The host failed: the task fails.
    Host(HostFailure),
}

/// The task's side of the processor contract.
pub struct TaskContext {
    processor: String,
    partition: i32,
    /// Partition count of the processor (its changelogs get as many).
    partitions: i32,
    label: String,
    pub stream_time: i64,
    /// Timestamp of emitted records that carry none (the batch's latest event time, or the
    /// timer's time).
    default_timestamp: i64,
    targets: Vec<OutputTarget>,
    target_index: HashMap<String, usize>,
    /// The output name looked up last and its target: consecutive emits mostly name the same
    /// output, and comparing a short name is cheaper than hashing it.
    last_target: Option<(String, usize)>,
    limits: ProcessorLimits,
    log: Arc<dyn LogAccess>,
    state: Arc<dyn StateStore>,
    stores: Vec<String>,
    store_index: HashMap<String, usize>,
    pub writes: WriteBuffer,
    output: PendingOutput,
    call_records: u64,
    call_bytes: u64,
    pub timers: TimerSet,
    staged_timers: Vec<(TimerKind, i64)>,
    violation: Option<ProcessorError>,
    failure: Option<HostFailure>,
}

/// Everything a context needs at creation.
pub struct ContextParts {
    pub processor: String,
    pub partition: i32,
    pub partitions: i32,
    /// Spec outputs in order, then the repartition topic (last).
    pub targets: Vec<OutputTarget>,
    pub limits: ProcessorLimits,
    pub log: Arc<dyn LogAccess>,
    pub state: Arc<dyn StateStore>,
}

impl TaskContext {
    pub fn new(parts: ContextParts) -> Self {
        let output = PendingOutput::new(parts.targets.iter().map(|t| t.partitions));
        let mut target_index = HashMap::new();
        let n = parts.targets.len();
        for (i, t) in parts.targets.iter().enumerate() {
            let name = if i + 1 == n {
                REPARTITION_OUTPUT.to_string()
            } else {
                t.topic.clone()
            };
            target_index.insert(name, i);
        }
        if n > 1 {
            target_index.insert(String::new(), 0);
        }
        TaskContext {
            label: format!("{}/{}", parts.processor, parts.partition),
            processor: parts.processor,
            partition: parts.partition,
            partitions: parts.partitions,
            stream_time: i64::MIN,
            default_timestamp: 0,
            targets: parts.targets,
            target_index,
            last_target: None,
            limits: parts.limits,
            log: parts.log,
            state: parts.state,
            stores: Vec::new(),
            store_index: HashMap::new(),
            writes: WriteBuffer::new(),
            output,
            call_records: 0,
            call_bytes: 0,
            timers: TimerSet::default(),
            staged_timers: Vec::new(),
            violation: None,
            failure: None,
        }
    }

    /// The target an output name refers to (see `last_target`).
    fn target_of(&mut self, output: &str) -> Option<usize> {
        // Lengths first: most processors emit to one output, often the default one (""),
        // and this runs once per emitted record.
        if let Some((name, t)) = &self.last_target
            && name.len() == output.len()
            && (output.is_empty() || name == output)
        {
            return Some(*t);
        }
        let t = *self.target_index.get(output)?;
        self.last_target = Some((output.to_string(), t));
        Some(t)
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn targets(&self) -> &[OutputTarget] {
        &self.targets
    }

    /// Names of the stores opened so far (index = handle).
    pub fn stores(&self) -> &[String] {
        &self.stores
    }

    /// The task's committed state.
    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.state
    }

    /// Starts a call whose emitted records default to `timestamp`.
    pub fn begin_call(&mut self, timestamp: i64) {
        self.default_timestamp = timestamp;
        self.call_records = 0;
        self.call_bytes = 0;
        self.violation = None;
    }

    /// Ends a call: on success its writes, timers and emitted records are kept (emitted
    /// records wait for [`TaskContext::take_output`]); on failure they are dropped. A limit
    /// hit or a host failure during the call fails it even if the processor returned `Ok`.
    pub fn end_call(&mut self, result: Result<(), ProcessorError>) -> Result<(), CallError> {
        let outcome = if let Some(f) = self.failure.take() {
            Err(CallError::Host(f))
        } else if let Some(v) = self.violation.take() {
            Err(CallError::Processor(v))
        } else {
            result.map_err(CallError::Processor)
        };
        match outcome {
            Ok(()) => {
                self.writes.promote();
                for (kind, time) in self.staged_timers.drain(..) {
                    self.timers.insert(kind, time);
                }
            }
            Err(_) => {
                self.writes.discard();
                self.staged_timers.clear();
                self.output.discard();
            }
        }
        outcome
    }

    /// What successful calls emitted since the last take, as record batches per (target
    /// index, partition), and how many records they hold.
    pub fn take_output(&mut self) -> (Vec<OutputBatch>, u64) {
        self.output.take()
    }

    /// Opens a store the engine keeps for itself (no name restrictions beyond the format).
    pub fn open_internal_store(&mut self, name: &str) -> Result<usize, HostFailure> {
        keys::check_store_name(name).map_err(|e| HostFailure {
            code: e.code(),
            message: e.to_string(),
        })?;
        self.open_checked(name)
    }

    fn open_checked(&mut self, name: &str) -> Result<usize, HostFailure> {
        if let Some(&i) = self.store_index.get(name) {
            return Ok(i);
        }
        self.log
            .ensure_topic(changelog_spec(&self.processor, name, self.partitions))
            .map_err(|e| HostFailure {
                code: e.code(),
                message: format!("cannot create the changelog of store '{name}': {e}"),
            })?;
        let i = self.stores.len();
        self.stores.push(name.to_string());
        self.store_index.insert(name.to_string(), i);
        Ok(i)
    }

    /// Loads the timers of the `__timers` store (after restoration). The store (and its
    /// changelog) is only created when a first timer is registered.
    pub fn load_timers(&mut self) -> Result<(), HostFailure> {
        let entries = self
            .state
            .range(TIMERS_STORE, None, None, usize::MAX)
            .map_err(|e| HostFailure {
                code: e.code(),
                message: e.to_string(),
            })?;
        for (k, _) in entries {
            if let Some((kind, time)) = timers::decode(&k) {
                self.timers.insert(kind, time);
            }
        }
        Ok(())
    }

    /// Removes a timer that is about to fire (kept removed even if the call fails: a timer
    /// fires once).
    pub fn consume_timer(&mut self, kind: TimerKind, time: i64) -> Result<(), HostFailure> {
        let store = self.open_internal_store(TIMERS_STORE)?;
        self.writes
            .write_pending(store, timers::encode(kind, time), None);
        Ok(())
    }

    /// Puts back a timer consumed for a call that was interrupted (it fires again later).
    pub fn restore_timer(&mut self, kind: TimerKind, time: i64) -> Result<(), HostFailure> {
        let store = self.open_internal_store(TIMERS_STORE)?;
        self.writes
            .write_pending(store, timers::encode(kind, time), Some(Bytes::new()));
        self.timers.insert(kind, time);
        Ok(())
    }

    fn store_name(&self, store: StoreHandle) -> Result<(usize, &str), HostError> {
        let i = store.0 as usize;
        self.stores
            .get(i)
            .map(|n| (i, n.as_str()))
            .ok_or_else(|| HostError(format!("unknown store handle {}", store.0)))
    }

    fn fail_host(&mut self, code: &'static str, message: String) -> HostError {
        let e = HostError(message.clone());
        if self.failure.is_none() {
            self.failure = Some(HostFailure { code, message });
        }
        e
    }

    fn limit(&mut self, message: String) -> HostError {
        if self.violation.is_none() {
            self.violation = Some(ProcessorError::Limit(message.clone()));
        }
        HostError(message)
    }
}

impl TaskHost for TaskContext {
    fn partition(&self) -> i32 {
        self.partition
    }

    fn stream_time(&self) -> i64 {
        self.stream_time
    }

    fn emit(&mut self, output: &str, record: OutputRecord) -> Result<(), HostError> {
        record.with_ref(|r| self.emit_ref(output, r))
    }

    fn emit_ref(&mut self, output: &str, record: OutputRef<'_>) -> Result<(), HostError> {
        let Some(target) = self.target_of(output) else {
            return Err(if output.is_empty() {
                HostError("this processor has no outputs".to_string())
            } else {
                HostError(format!("unknown output '{output}'"))
            });
        };
        self.call_records += 1;
        self.call_bytes += record.payload_bytes();
        if self.call_records > u64::from(self.limits.max_output_records_per_call) {
            return Err(self.limit(format!(
                "more than {} records emitted in one call (limits.max_output_records_per_call)",
                self.limits.max_output_records_per_call
            )));
        }
        if self.call_bytes > self.limits.max_output_bytes_per_call {
            return Err(self.limit(format!(
                "more than {} bytes emitted in one call (limits.max_output_bytes_per_call)",
                self.limits.max_output_bytes_per_call
            )));
        }
        let t = &self.targets[target];
        // The log takes no negative timestamps (Kafka's -1 means "none"): such records get
        // the call's time, or now.
        let mut timestamp = record.timestamp.unwrap_or(self.default_timestamp);
        if timestamp < 0 {
            timestamp = if self.default_timestamp >= 0 {
                self.default_timestamp
            } else {
                crate::clock::now_ms()
            };
        }
        if t.compacted && record.key.is_none() {
            return Err(HostError(format!(
                "output '{}' is a compacted topic: records need a key",
                t.topic
            )));
        }
        // Keyed records go where Kafka's default partitioner puts them; unkeyed records stay
        // in the task's own partition (wrapped if the target has fewer partitions).
        let partition = match record.key {
            Some(k) => partition_for_key(k, t.partitions),
            None => self.partition % t.partitions.max(1),
        };
        if !self.output.push(target, partition, timestamp, &record) {
            return Err(HostError(format!(
                "output '{}' has no partition {partition}",
                t.topic
            )));
        }
        Ok(())
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        let task = self.label.as_str();
        match level {
            LogLevel::Trace => tracing::trace!(task, "guest: {message}"),
            LogLevel::Debug => tracing::debug!(task, "guest: {message}"),
            LogLevel::Info => tracing::info!(task, "guest: {message}"),
            LogLevel::Warn => tracing::warn!(task, "guest: {message}"),
            LogLevel::Error => tracing::error!(task, "guest: {message}"),
        }
    }

    fn register_timer(&mut self, kind: TimerKind, time: i64) -> Result<(), HostError> {
        let store = self
            .open_internal_store(TIMERS_STORE)
            .map_err(|f| self.fail_host(f.code, f.message))?;
        self.writes
            .stage(store, timers::encode(kind, time), Some(Bytes::new()));
        self.staged_timers.push((kind, time));
        Ok(())
    }

    fn open_store(&mut self, name: &str) -> Result<StoreHandle, HostError> {
        keys::check_user_store_name(name).map_err(|e| HostError(e.to_string()))?;
        let i = self
            .open_checked(name)
            .map_err(|f| self.fail_host(f.code, f.message))?;
        Ok(StoreHandle(i as u32))
    }

    fn get(&mut self, store: StoreHandle, key: &[u8]) -> Result<Option<Bytes>, HostError> {
        let (i, name) = self.store_name(store)?;
        if let Some(v) = self.writes.get(i, key) {
            return Ok(v);
        }
        if let Some(v) = self.writes.cached(i, key) {
            return Ok(v);
        }
        match self.state.get(name, key) {
            Ok(v) => {
                self.writes
                    .remember(i, Bytes::copy_from_slice(key), v.clone());
                Ok(v)
            }
            Err(e) => Err(self.fail_host(e.code(), e.to_string())),
        }
    }

    fn put(&mut self, store: StoreHandle, key: &[u8], value: &[u8]) -> Result<(), HostError> {
        let (i, _) = self.store_name(store)?;
        self.writes.stage(
            i,
            Bytes::copy_from_slice(key),
            Some(Bytes::copy_from_slice(value)),
        );
        Ok(())
    }

    fn delete(&mut self, store: StoreHandle, key: &[u8]) -> Result<(), HostError> {
        let (i, _) = self.store_name(store)?;
        self.writes.stage(i, Bytes::copy_from_slice(key), None);
        Ok(())
    }

    fn range(
        &mut self,
        store: StoreHandle,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, HostError> {
        let (i, name) = self.store_name(store)?;
        let buffered = self.writes.range(i, start, end);
        // Each buffered entry hides at most one stored one.
        let want = limit.saturating_add(buffered.len());
        let stored = match self.state.range(name, start, end, want) {
            Ok(v) => v,
            Err(e) => return Err(self.fail_host(e.code(), e.to_string())),
        };
        Ok(merge_range(stored, buffered, limit))
    }
}

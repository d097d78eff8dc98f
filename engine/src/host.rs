//! The contract between the two halves of the engine: what a running processor (today a Wasm
//! component, see `wasm`) can ask of its task (`TaskHost`: state, emit, timers, logging), and
//! what a task can ask of a processor (`ProcessorLogic`: init, process a batch, fire a timer).
//!
//! Neither side knows the other's implementation: the task runtime drives any
//! `ProcessorLogic`, and the Wasm host turns guest imports into `TaskHost` calls. Nothing here
//! touches wasmtime, RocksDB or the log.

use bytes::Bytes;
use std::sync::Arc;

/// A record handed to a processor: where it came from, and its contents.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRecord {
    /// Topic it was read from (an input topic, or the processor's repartition topic); shared
    /// by every record read from that topic, not allocated per record.
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Event time, ms since the epoch.
    pub timestamp: i64,
}

/// A record a processor emits.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OutputRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Event time; `None` means the time of the input record being processed (or the timer).
    pub timestamp: Option<i64>,
}

impl OutputRecord {
    /// Calls `f` with a borrowed view of this record (for [`TaskHost::emit_ref`]).
    pub fn with_ref<R>(&self, f: impl FnOnce(OutputRef<'_>) -> R) -> R {
        let headers: Vec<(&str, Option<&[u8]>)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_deref()))
            .collect();
        f(OutputRef {
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: &headers,
            timestamp: self.timestamp,
        })
    }
}

/// A record a processor emits, borrowed from wherever it was built (the Wasm host hands out
/// views into the guest's output buffer): emitting it copies each field once, into the
/// batch that goes to the log, with no `Bytes` per field.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OutputRef<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
    /// As in [`OutputRecord::timestamp`].
    pub timestamp: Option<i64>,
}

impl OutputRef<'_> {
    /// An owned copy.
    pub fn to_owned_record(&self) -> OutputRecord {
        OutputRecord {
            key: self.key.map(Bytes::copy_from_slice),
            value: self.value.map(Bytes::copy_from_slice),
            headers: self
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.map(Bytes::copy_from_slice)))
                .collect(),
            timestamp: self.timestamp,
        }
    }

    /// Bytes the record counts against `max_output_bytes_per_call`: key, value, header names
    /// and values.
    #[inline]
    pub fn payload_bytes(&self) -> u64 {
        (self.key.map_or(0, <[u8]>::len)
            + self.value.map_or(0, <[u8]>::len)
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.map_or(0, <[u8]>::len))
                .sum::<usize>()) as u64
    }
}

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// Fires when the task's stream time (largest event time seen) reaches it.
    StreamTime,
    /// Fires when the wall clock reaches it.
    WallClock,
}

/// Guest log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// An error a host call reports back to the guest (the guest sees the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostError(pub String);

/// Handle to a store opened by a task (index into the task's open stores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreHandle(pub u32);

/// What the task gives a running processor. One `TaskHost` per task; the processor sees only
/// this task's partition and this task's stores.
pub trait TaskHost: Send {
    /// The partition this task owns.
    fn partition(&self) -> i32;
    /// Largest event time the task has seen (ms), or `i64::MIN` before the first record.
    fn stream_time(&self) -> i64;
    /// Emits a record to one of the processor's outputs, named as in its spec, or to
    /// `"repartition"` (the processor's own repartition topic; the key picks the partition).
    fn emit(&mut self, output: &str, record: OutputRecord) -> Result<(), HostError>;
    /// [`emit`](Self::emit) for a borrowed record. The default copies it into an
    /// [`OutputRecord`]; the task's own host copies it straight into the output batch.
    fn emit_ref(&mut self, output: &str, record: OutputRef<'_>) -> Result<(), HostError> {
        self.emit(output, record.to_owned_record())
    }
    fn log(&mut self, level: LogLevel, message: &str);
    /// Registers a timer; registering the same (kind, time) twice fires it once.
    fn register_timer(&mut self, kind: TimerKind, time: i64) -> Result<(), HostError>;
    /// Opens (creating if needed) the named store of this task.
    fn open_store(&mut self, name: &str) -> Result<StoreHandle, HostError>;
    fn get(&mut self, store: StoreHandle, key: &[u8]) -> Result<Option<Bytes>, HostError>;
    fn put(&mut self, store: StoreHandle, key: &[u8], value: &[u8]) -> Result<(), HostError>;
    fn delete(&mut self, store: StoreHandle, key: &[u8]) -> Result<(), HostError>;
    /// Entries with `start <= key < end` (unbounded where `None`), in key order, at most
    /// `limit` of them; reads see this task's uncommitted writes.
    fn range(
        &mut self,
        store: StoreHandle,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, HostError>;
}

/// Why a processor call failed. Every variant fails only the task that made the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessorError {
    /// The guest trapped (panic, unreachable, out-of-bounds, stack overflow…).
    #[error("guest trapped: {0}")]
    Trap(String),
    /// A limit was hit (memory, CPU time per call, output records or bytes per call).
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The guest returned an error of its own.
    #[error("guest error: {0}")]
    Guest(String),
    /// The host could not run the call (instantiation, internal failure).
    #[error("host error: {0}")]
    Host(String),
    /// The call was stopped because its task was asked to pause or stop (or the node is
    /// shutting down): not the record's fault; the task reads the record again later.
    #[error("interrupted: {0}")]
    Interrupted(String),
}

impl ProcessorError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ProcessorError::Trap(_) => "guest_trap",
            ProcessorError::Limit(_) => "limit_exceeded",
            ProcessorError::Guest(_) => "guest_error",
            ProcessorError::Host(_) => "host_error",
            ProcessorError::Interrupted(_) => "interrupted",
        }
    }
}

/// A task's "stop what you are doing" flag, shared by the task (which clears it), its
/// manager (which raises it on pause, stop, delete, redeploy and shutdown) and the processor
/// instance (whose running guest call checks it, e.g. on every Wasm epoch deadline, and
/// ends with [`ProcessorError::Interrupted`]). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<std::sync::atomic::AtomicBool>);

impl Interrupt {
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// Asks the call in progress (if any) to stop.
    pub fn request(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Forgets an earlier request (the task does this before it looks at its messages).
    pub fn clear(&self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_requested(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A processor as a task drives it: today a Wasm component instance; in tests, any Rust
/// implementation.
pub trait ProcessorLogic: Send {
    /// Called once per task before the first batch (and after a redeploy). The default does
    /// nothing.
    fn init(
        &mut self,
        host: &mut dyn TaskHost,
        config: &[(String, String)],
    ) -> Result<(), ProcessorError> {
        let _ = (host, config);
        Ok(())
    }
    /// Processes a batch of records (in offset order per input partition).
    fn process(
        &mut self,
        host: &mut dyn TaskHost,
        batch: &[InputRecord],
    ) -> Result<(), ProcessorError>;
    /// A registered timer is due. The default does nothing.
    fn on_timer(
        &mut self,
        host: &mut dyn TaskHost,
        kind: TimerKind,
        time: i64,
    ) -> Result<(), ProcessorError> {
        let _ = (host, kind, time);
        Ok(())
    }
}

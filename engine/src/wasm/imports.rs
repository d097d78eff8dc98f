//! What a guest imports, implemented over the calling task's [`TaskHost`]: the `state` and
//! `context` interfaces of `wit/processor.wit`, plus an empty WASI (no files, sockets,
//! environment or clocks; stdout/stderr go to the server log). Also the per-instance host
//! state ([`HostState`]): the memory limiter and the output meter that enforce the
//! processor's limits.

use super::bindings::weir::processor::{context, state, types};
use super::codec;
use super::deadline::{CallClock, HasClock};
use super::growth;
use super::guest_log::{GuestLog, GuestPipe};
use crate::host::{HostError, LogLevel, OutputRef, StoreHandle, TaskHost, TimerKind};
use crate::limits::ProcessorLimits;
use std::ptr::NonNull;
use std::time::Duration;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Most entries one `entries.next` call returns.
const MAX_SCAN_PAGE: u32 = 4096;

/// A store the guest opened (the `store` resource).
pub struct OpenStore {
    handle: StoreHandle,
}

/// A range scan in progress (the `entries` resource): the next page starts at `next`.
pub struct ScanCursor {
    store: StoreHandle,
    next: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
    done: bool,
}

/// The `&mut dyn TaskHost` of the call in progress, with its lifetime erased.
///
/// Set by [`HostState::begin_call`] from the `&mut dyn TaskHost` the task passes to
/// `ProcessorLogic`, and cleared by [`HostState::end_call`] before that borrow ends; host
/// functions only run inside a call (the instance's `Store` is driven by the same
/// `&mut self` that holds the borrow), so the pointer is never used after the borrow ends.
struct TaskSlot(Option<NonNull<dyn TaskHost>>);

// SAFETY: the pointer is only dereferenced during a guest call, on the thread that holds the
// `&mut dyn TaskHost` it came from (and `TaskHost: Send`).
unsafe impl Send for TaskSlot {}

/// Counts what one call emits against the processor's limits.
#[derive(Clone, Copy)]
struct OutputMeter {
    records: u32,
    bytes: u64,
    max_records: u32,
    max_bytes: u64,
}

impl OutputMeter {
    /// Counts one record of `bytes` payload bytes: `Err(reason)` once over a limit.
    #[inline]
    fn charge(&mut self, bytes: u64) -> Result<(), String> {
        self.records += 1;
        self.bytes += bytes;
        if self.records > self.max_records || self.bytes > self.max_bytes {
            return Err(self.over());
        }
        Ok(())
    }

    /// Which limit was passed.
    #[cold]
    fn over(&self) -> String {
        if self.records > self.max_records {
            format!(
                "output limit exceeded: more than {} records emitted in one call",
                self.max_records
            )
        } else {
            format!(
                "output limit exceeded: more than {} bytes emitted in one call",
                self.max_bytes
            )
        }
    }
}

/// The data of one instance's `Store`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    task: TaskSlot,
    meter: OutputMeter,
    memory_limit: usize,
    /// Set when a limit stopped the guest (memory, output): the reason for the trap.
    pub(crate) limit_hit: Option<String>,
    pub(crate) log: GuestLog,
    /// CPU time per call and the task's stop request.
    pub(super) clock: CallClock,
}

impl HasClock for HostState {
    fn clock(&mut self) -> &mut CallClock {
        &mut self.clock
    }
}

impl HostState {
    pub(super) fn new(limits: &ProcessorLimits, label: &str, clock: CallClock) -> HostState {
        let log = GuestLog::new(label);
        let wasi = WasiCtx::builder()
            .stdout(GuestPipe::stdout(&log))
            .stderr(GuestPipe::stderr(&log))
            .wall_clock(NoClock)
            .monotonic_clock(NoClock)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            task: TaskSlot(None),
            meter: OutputMeter {
                records: 0,
                bytes: 0,
                max_records: limits.max_output_records_per_call,
                max_bytes: limits.max_output_bytes_per_call,
            },
            memory_limit: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
            limit_hit: None,
            log,
            clock,
        }
    }

    /// Starts a guest call made for `task`: the pointer must be cleared with
    /// [`end_call`](Self::end_call) before the borrow of `task` ends.
    pub(crate) fn begin_call(&mut self, task: &mut dyn TaskHost) {
        let ptr: NonNull<dyn TaskHost + '_> = NonNull::from(task);
        // SAFETY: only the lifetime is changed; see `TaskSlot` for why the pointer does not
        // outlive the borrow.
        let ptr: NonNull<dyn TaskHost + 'static> = unsafe { std::mem::transmute(ptr) };
        self.task = TaskSlot(Some(ptr));
        self.meter.records = 0;
        self.meter.bytes = 0;
        self.limit_hit = None;
        self.log.begin_call();
    }

    pub(crate) fn end_call(&mut self) {
        self.task = TaskSlot(None);
        self.log.end_call();
    }

    #[inline]
    fn task(&mut self) -> wasmtime::Result<&mut dyn TaskHost> {
        match self.task.0 {
            // SAFETY: set by `begin_call` for the duration of the current call.
            Some(mut p) => Ok(unsafe { p.as_mut() }),
            None => Err(no_call()),
        }
    }

    /// Counts one record of `bytes` payload bytes against the output limits: `Err` (a trap)
    /// once over them.
    #[inline]
    fn charge_output(&mut self, bytes: u64) -> wasmtime::Result<()> {
        self.meter
            .charge(bytes)
            .map_err(|reason| self.limit(reason))
    }

    /// Records `reason` as the limit that stopped the guest, and returns the trap.
    #[cold]
    fn limit(&mut self, reason: String) -> wasmtime::Error {
        self.limit_hit = Some(reason.clone());
        wasmtime::format_err!(reason)
    }

    #[inline]
    fn emit(
        &mut self,
        output: &str,
        record: OutputRef<'_>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.charge_output(record.payload_bytes())?;
        Ok(self.task()?.emit_ref(output, record).map_err(|e| e.0))
    }

    /// `emit-batch` of `records`: decodes them into the calling task, counting them against
    /// the output limits (a trap once over them).
    fn emit_batch_buffer(
        task: Option<NonNull<dyn TaskHost>>,
        meter: &mut OutputMeter,
        records: &[u8],
    ) -> Result<Result<(), String>, EmitStop> {
        let Some(mut task) = task else {
            return Err(EmitStop::NoCall);
        };
        let mut over = None;
        let decoded = codec::decode_outputs(records, |output, record| {
            if let Err(reason) = meter.charge(record.payload_bytes()) {
                over = Some(reason);
                return Err(String::new());
            }
            // SAFETY: as in `task`: set by `begin_call` for the duration of the current call;
            // the task is not part of the `Store` that `records` may borrow.
            unsafe { task.as_mut() }
                .emit_ref(output, record)
                .map_err(|e| e.0)
        });
        match over {
            Some(reason) => Err(EmitStop::Limit(reason)),
            None => Ok(decoded.unwrap_or_else(|e| Err(e.to_string()))),
        }
    }

    /// Stores the meter back after [`emit_batch_buffer`](Self::emit_batch_buffer) and turns a
    /// stop into its trap.
    fn finish_emit_batch(
        &mut self,
        meter: OutputMeter,
        result: Result<Result<(), String>, EmitStop>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.meter = meter;
        match result {
            Ok(result) => Ok(result),
            Err(EmitStop::NoCall) => Err(no_call()),
            Err(EmitStop::Limit(reason)) => Err(self.limit(reason)),
        }
    }
}

/// Why `emit-batch` stopped before the end of its buffer, other than the task's own error.
enum EmitStop {
    NoCall,
    Limit(String),
}

/// Links `emit-batch` in place of the binding `bindgen!` generated, which lifts the buffer into
/// a new `Vec` (an allocation and a copy of every emitted byte): this one decodes the records
/// where the guest wrote them, in its linear memory.
pub(crate) fn link_emit_batch(
    linker: &mut wasmtime::component::Linker<HostState>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let linked = linker
        .instance("weir:processor/context@0.1.0")
        .and_then(|mut context| {
            context.func_wrap(
                "emit-batch",
                |mut store: wasmtime::StoreContextMut<'_, HostState>,
                 (records,): (wasmtime::component::WasmList<u8>,)| {
                    // The task and a copy of the meter are taken out of the state first, so
                    // that the buffer can borrow the `Store` while the records are emitted.
                    let state = store.data();
                    let (task, mut meter) = (state.task.0, state.meter);
                    let result =
                        HostState::emit_batch_buffer(task, &mut meter, records.as_le_slice(&store));
                    let result = store.data_mut().finish_emit_batch(meter, result);
                    result.map(|result| (result,))
                },
            )
        });
    linker.allow_shadowing(false);
    linked
}

fn no_call() -> wasmtime::Error {
    wasmtime::format_err!("a host function was called outside of a processor call")
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime::ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let verdict = growth::memory(desired, self.memory_limit, "the guest");
        Ok(growth::allow(verdict, &mut self.limit_hit))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(growth::allow(growth::table(desired), &mut self.limit_hit))
    }
}

/// A clock that never moves: guests get time only from records and `stream-time`.
pub(super) struct NoClock;

impl wasmtime_wasi::HostWallClock for NoClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for NoClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

fn host_err(e: HostError) -> String {
    e.0
}

impl types::Host for HostState {}

impl state::Host for HostState {}

impl state::HostStore for HostState {
    fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<OpenStore>, String>> {
        let handle = match self.task()?.open_store(&name) {
            Ok(h) => h,
            Err(e) => return Ok(Err(host_err(e))),
        };
        Ok(Ok(self.table.push(OpenStore { handle })?))
    }

    fn get(
        &mut self,
        store: Resource<OpenStore>,
        key: Vec<u8>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, String>> {
        let handle = self.table.get(&store)?.handle;
        Ok(self
            .task()?
            .get(handle, &key)
            .map(|v| v.map(|b| b.to_vec()))
            .map_err(host_err))
    }

    fn put(
        &mut self,
        store: Resource<OpenStore>,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        let handle = self.table.get(&store)?.handle;
        Ok(self.task()?.put(handle, &key, &value).map_err(host_err))
    }

    fn delete(
        &mut self,
        store: Resource<OpenStore>,
        key: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        let handle = self.table.get(&store)?.handle;
        Ok(self.task()?.delete(handle, &key).map_err(host_err))
    }

    fn scan(
        &mut self,
        store: Resource<OpenStore>,
        start: Option<Vec<u8>>,
        end: Option<Vec<u8>>,
    ) -> wasmtime::Result<Result<Resource<ScanCursor>, String>> {
        let handle = self.table.get(&store)?.handle;
        let cursor = ScanCursor {
            store: handle,
            next: start,
            end,
            done: false,
        };
        Ok(Ok(self.table.push(cursor)?))
    }

    fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl state::HostEntries for HostState {
    fn next(
        &mut self,
        entries: Resource<ScanCursor>,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<(Vec<u8>, Vec<u8>)>, String>> {
        let limit = max.clamp(1, MAX_SCAN_PAGE) as usize;
        let (store, next, end) = {
            let c = self.table.get_mut(&entries)?;
            if c.done {
                return Ok(Ok(Vec::new()));
            }
            (c.store, c.next.take(), c.end.clone())
        };
        let page = match self
            .task()?
            .range(store, next.as_deref(), end.as_deref(), limit)
        {
            Ok(page) => page,
            Err(e) => {
                self.table.get_mut(&entries)?.done = true;
                return Ok(Err(host_err(e)));
            }
        };
        let c = self.table.get_mut(&entries)?;
        match page.last() {
            Some((last, _)) if page.len() >= limit => {
                // The next page starts just after the last key.
                let mut after = last.to_vec();
                after.push(0);
                c.next = Some(after);
            }
            _ => c.done = true,
        }
        Ok(Ok(page
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()))
    }

    fn drop(&mut self, entries: Resource<ScanCursor>) -> wasmtime::Result<()> {
        self.table.delete(entries)?;
        Ok(())
    }
}

impl From<types::TimerKind> for TimerKind {
    fn from(k: types::TimerKind) -> TimerKind {
        match k {
            types::TimerKind::StreamTime => TimerKind::StreamTime,
            types::TimerKind::WallClock => TimerKind::WallClock,
        }
    }
}

impl From<TimerKind> for types::TimerKind {
    fn from(k: TimerKind) -> types::TimerKind {
        match k {
            TimerKind::StreamTime => types::TimerKind::StreamTime,
            TimerKind::WallClock => types::TimerKind::WallClock,
        }
    }
}

impl context::Host for HostState {
    fn emit(
        &mut self,
        output: String,
        record: context::OutputRecord,
    ) -> wasmtime::Result<Result<(), String>> {
        let headers: Vec<(&str, Option<&[u8]>)> = record
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_deref()))
            .collect();
        let record = OutputRef {
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &headers,
            timestamp: record.timestamp,
        };
        HostState::emit(self, &output, record)
    }

    /// Not linked (see [`link_emit_batch`]), which does the same without copying the buffer.
    /// Debug builds (the tests) insist: a call here means the shadowing stopped applying, e.g.
    /// after the WIT package's name or version changed.
    fn emit_batch(&mut self, records: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        debug_assert!(
            false,
            "the generated emit-batch binding was called: link_emit_batch no longer shadows it"
        );
        let mut meter = self.meter;
        let result = HostState::emit_batch_buffer(self.task.0, &mut meter, &records);
        self.finish_emit_batch(meter, result)
    }

    fn log(&mut self, level: types::LogLevel, message: String) -> wasmtime::Result<()> {
        let level = match level {
            types::LogLevel::Trace => LogLevel::Trace,
            types::LogLevel::Debug => LogLevel::Debug,
            types::LogLevel::Info => LogLevel::Info,
            types::LogLevel::Warn => LogLevel::Warn,
            types::LogLevel::Error => LogLevel::Error,
        };
        // The task logs it (tagged with the processor and partition); the per-call budget
        // shared with stdout/stderr is enforced here.
        if self.log.admit(&message) {
            self.task()?.log(level, &message);
        }
        Ok(())
    }

    fn register_timer(
        &mut self,
        kind: types::TimerKind,
        time: i64,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self
            .task()?
            .register_timer(kind.into(), time)
            .map_err(host_err))
    }

    fn partition(&mut self) -> wasmtime::Result<i32> {
        Ok(self.task()?.partition())
    }

    fn stream_time(&mut self) -> wasmtime::Result<i64> {
        Ok(self.task()?.stream_time())
    }
}

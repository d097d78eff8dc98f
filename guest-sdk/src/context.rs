//! The task as a processor sees it during a call: emitting records (buffered and sent to the
//! host in one `emit-batch` call), timers, logging, partition and stream time, stores.

use crate::batch::Record;
use crate::bindings::weir::processor::context as host;
use crate::output::{Emit, OutputBuffer};
use crate::{Error, LogLevel, Result, Store, TimerKind};
use std::cell::Cell;

thread_local! {
    /// Timestamp given to emitted records that do not set one: the input record last taken
    /// from the batch, or the timer's time.
    static CURRENT_TIMESTAMP: Cell<Option<i64>> = const { Cell::new(None) };
}

#[inline]
pub(crate) fn set_current_timestamp(ts: i64) {
    CURRENT_TIMESTAMP.with(|c| c.set(Some(ts)));
}

pub(crate) fn reset_current_timestamp(ts: Option<i64>) {
    CURRENT_TIMESTAMP.with(|c| c.set(ts));
}

/// Handed to every [`Processor`](crate::Processor) call.
///
/// Emitted records are buffered and sent to the host in one call at the end of the
/// processor call (or when the buffer grows large), which is much cheaper than one host call
/// per record. If the processor call returns an error, records still in the buffer are
/// dropped.
pub struct Context {
    out: OutputBuffer,
}

impl Context {
    pub(crate) fn new() -> Context {
        Context {
            out: OutputBuffer::default(),
        }
    }

    /// Emits a record (see [`Emit`] for the output names).
    ///
    /// ```no_run
    /// # use weir_guest::{Context, Emit, Result};
    /// # fn f(ctx: &mut Context) -> Result<()> {
    /// ctx.emit(Emit::new().key("user-1").value("HELLO"))?;
    /// ctx.emit(Emit::to("repartition").key("hello").value("1"))?;
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn emit(&mut self, record: Emit<'_>) -> Result<()> {
        let ts = CURRENT_TIMESTAMP.with(Cell::get);
        self.out.push(&record, ts);
        if self.out.should_flush() {
            self.flush()?;
        }
        Ok(())
    }

    /// Emits `record` with a value written by `write` straight into the output buffer (no
    /// intermediate allocation or copy): `write` appends the value's bytes to the `Vec` it is
    /// given. `record`'s own value, if any, is ignored. The value is present even if `write`
    /// appends nothing.
    ///
    /// ```no_run
    /// # use weir_guest::{Context, Emit, Result};
    /// # fn f(ctx: &mut Context, input: &[u8]) -> Result<()> {
    /// ctx.emit_with(Emit::new(), |out| out.extend(input.iter().map(u8::to_ascii_uppercase)))?;
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn emit_with(&mut self, record: Emit<'_>, write: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        let ts = CURRENT_TIMESTAMP.with(Cell::get);
        self.out.push_with(&record, ts, Some(write));
        if self.out.should_flush() {
            self.flush()?;
        }
        Ok(())
    }

    /// Emits `record` unchanged (key, value, headers, timestamp) to `output`.
    pub fn forward(&mut self, output: &str, record: &Record<'_>) -> Result<()> {
        let mut e = Emit::to(output).timestamp(record.timestamp());
        e.key = record.key();
        e.value = record.value();
        e.headers = record.headers().collect();
        self.emit(e)
    }

    /// Sends buffered records to the host now (the SDK does this at the end of every call).
    pub fn flush(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = host::emit_batch(self.out.bytes());
        self.out.clear();
        result.map_err(|e| Error::new(format!("emit: {e}")))
    }

    pub(crate) fn discard(&mut self) {
        self.out.clear();
    }

    /// Asks for an [`on_timer`](crate::Processor::on_timer) call once `kind`'s clock reaches
    /// `time` (ms). Registering the same (kind, time) twice fires once.
    pub fn register_timer(&mut self, kind: TimerKind, time: i64) -> Result<()> {
        host::register_timer(kind, time).map_err(|e| Error::new(format!("register timer: {e}")))
    }

    /// The partition this task owns.
    pub fn partition(&self) -> i32 {
        host::partition()
    }

    /// The largest event time the task has seen (ms), or `i64::MIN` before the first record.
    pub fn stream_time(&self) -> i64 {
        host::stream_time()
    }

    /// Opens one of this task's state stores (see [`Store::open`]).
    pub fn store(&mut self, name: &str) -> Result<Store> {
        Store::open(name)
    }

    /// Writes to the server log, tagged with the processor and partition.
    pub fn log(&self, level: LogLevel, message: &str) {
        host::log(level, message);
    }

    pub fn info(&self, message: &str) {
        self.log(LogLevel::Info, message);
    }

    pub fn warn(&self, message: &str) {
        self.log(LogLevel::Warn, message);
    }

    pub fn debug(&self, message: &str) {
        self.log(LogLevel::Debug, message);
    }
}

//! `weir-guest`: write Weir stream processors in plain Rust. Implement [`Processor`], export it
//! with [`export_processor!`], build for `wasm32-wasip2`, deploy the `.wasm` component.
//!
//! The SDK hides the generated bindings of the `weir:processor` WIT world (`wit/` in the Weir
//! repository): batches arrive as one buffer that [`Batch`] decodes lazily, emitted records are
//! buffered and sent to the engine in one host call, and state stores come with byte, string
//! and JSON helpers ([`Store`]). It does not own anything of the engine: partitioning,
//! commits, changelogs, limits and error policies are the engine's.
//!
//! # Example
//!
//! ```no_run
//! use weir_guest::{Batch, Config, Context, Emit, Processor, Result, Store};
//!
//! /// Counts values per key, emitting `key -> count` on every change.
//! struct CountByKey {
//!     counts: Store,
//! }
//!
//! impl Processor for CountByKey {
//!     fn init(_ctx: &mut Context, _config: &Config) -> Result<Self> {
//!         Ok(CountByKey { counts: Store::open("counts")? })
//!     }
//!
//!     fn process(&mut self, ctx: &mut Context, batch: &Batch<'_>) -> Result<()> {
//!         for record in batch {
//!             let Some(key) = record.key() else { continue };
//!             let n = self.counts.get_json::<u64>(key)?.unwrap_or(0) + 1;
//!             self.counts.put_json(key, &n)?;
//!             ctx.emit(Emit::new().key(key).value(&n.to_string()))?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! weir_guest::export_processor!(CountByKey);
//! ```
//!
//! Build it as a `cdylib` crate:
//!
//! ```text
//! rustup target add wasm32-wasip2
//! cargo build --release --target wasm32-wasip2   # → target/wasm32-wasip2/release/<crate>.wasm
//! ```
//!
//! # Outputs
//!
//! [`Emit::new`] writes to the processor's default output (the first `outputs` entry of its
//! deployment spec); [`Emit::to`] names another output, or [`REPARTITION`] to re-key records
//! through the processor's repartition topic: they come back to [`Processor::process`] in
//! the task that owns their key, with [`Record::is_repartitioned`] true.
//!
//! # Errors and limits
//!
//! Returning an [`Error`] fails the call with its message (`guest error: …`); a panic traps
//! the instance (`guest trapped: …`, with the panic message). The engine limits memory, CPU
//! time per call and output per call; what happens to the task then is the processor's
//! `on_error` policy.

extern crate self as weir_guest;

mod batch;
mod config;
mod context;
mod error;
mod output;
mod store;

/// The bindings generated from `wit/processor.wit` (wit-bindgen). Most processors never need
/// them: the rest of the SDK wraps them.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "processor",
        ownership: Borrowing { duplicate_if_necessary: false },
        pub_export_macro: true,
        export_macro_name: "__export_weir_processor",
        default_bindings_module: "weir_guest::bindings",
        runtime_path: "weir_guest::__wit_bindgen::rt",
    });
}

pub use batch::{Batch, Headers, Record, Records};
pub use bindings::weir::processor::types::{LogLevel, TimerKind};
pub use config::Config;
pub use context::Context;
pub use error::{Error, Result};
pub use output::Emit;
pub use store::{Scan, Store};

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// The output name of the processor's repartition topic (see the crate docs).
pub const REPARTITION: &str = "repartition";

/// A timer that is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    pub kind: TimerKind,
    /// The time it was registered for (ms).
    pub time: i64,
}

/// A stream processor. The engine creates one instance per task (one per input partition):
/// [`init`](Processor::init) once, then [`process`](Processor::process) for every batch and
/// [`on_timer`](Processor::on_timer) for every due timer, one call at a time.
pub trait Processor: Sized + 'static {
    /// Builds the processor from the deployment's `config`. Open stores here.
    fn init(ctx: &mut Context, config: &Config) -> Result<Self>;

    /// Processes a batch of records (in offset order per input partition).
    fn process(&mut self, ctx: &mut Context, batch: &Batch<'_>) -> Result<()>;

    /// A timer registered with [`Context::register_timer`] is due. The default does nothing.
    fn on_timer(&mut self, ctx: &mut Context, timer: Timer) -> Result<()> {
        let _ = (ctx, timer);
        Ok(())
    }
}

/// Exports a [`Processor`] type as the component's `weir:processor/processor` world. Use it
/// once, at the root of a `cdylib` crate.
///
/// ```no_run
/// # use weir_guest::*;
/// struct Passthrough;
/// impl Processor for Passthrough {
///     fn init(_: &mut Context, _: &Config) -> Result<Self> { Ok(Passthrough) }
///     fn process(&mut self, ctx: &mut Context, batch: &Batch<'_>) -> Result<()> {
///         for r in batch { ctx.forward("", &r)?; }
///         Ok(())
///     }
/// }
/// weir_guest::export_processor!(Passthrough);
/// ```
#[macro_export]
macro_rules! export_processor {
    ($ty:ty) => {
        const _: () = {
            struct __WeirProcessorExport;

            ::std::thread_local! {
                static __WEIR_STATE: $crate::__rt::State<$ty> =
                    const { $crate::__rt::State::new() };
            }

            impl $crate::__rt::Guest for __WeirProcessorExport {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    __WEIR_STATE.with(|s| s.init(config))
                }

                fn process(
                    batch: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    __WEIR_STATE.with(|s| s.process(&batch))
                }

                fn on_timer(
                    kind: $crate::TimerKind,
                    time: i64,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    __WEIR_STATE.with(|s| s.on_timer(kind, time))
                }
            }

            $crate::bindings::__export_weir_processor!(__WeirProcessorExport with_types_in $crate::bindings);
        };
    };
}

/// Runtime glue used by [`export_processor!`]; not a public API.
#[doc(hidden)]
pub mod __rt {
    use crate::context::reset_current_timestamp;
    use crate::{Batch, Config, Context, Processor, Timer, TimerKind};
    use std::cell::RefCell;

    pub use crate::bindings::Guest;

    /// The instance's processor and context, created by `init`.
    pub struct State<P> {
        inner: RefCell<Option<(P, Context)>>,
    }

    impl<P: Processor> State<P> {
        #[allow(clippy::new_without_default)]
        pub const fn new() -> State<P> {
            State {
                inner: RefCell::new(None),
            }
        }

        pub fn init(&self, config: Vec<(String, String)>) -> Result<(), String> {
            let mut ctx = Context::new();
            reset_current_timestamp(None);
            let config = Config::new(config);
            let processor = match P::init(&mut ctx, &config) {
                Ok(p) => p,
                Err(e) => {
                    ctx.discard();
                    return Err(e.to_string());
                }
            };
            ctx.flush().map_err(|e| e.to_string())?;
            let mut inner = self.inner.try_borrow_mut().map_err(|_| reentered())?;
            *inner = Some((processor, ctx));
            Ok(())
        }

        pub fn process(&self, buf: &[u8]) -> Result<(), String> {
            self.with(None, |p, ctx| {
                let batch = Batch::decode(buf)?;
                p.process(ctx, &batch)
            })
        }

        pub fn on_timer(&self, kind: TimerKind, time: i64) -> Result<(), String> {
            self.with(Some(time), |p, ctx| p.on_timer(ctx, Timer { kind, time }))
        }

        fn with(
            &self,
            timestamp: Option<i64>,
            f: impl FnOnce(&mut P, &mut Context) -> crate::Result<()>,
        ) -> Result<(), String> {
            let mut inner = self.inner.try_borrow_mut().map_err(|_| reentered())?;
            let Some((p, ctx)) = inner.as_mut() else {
                return Err("the processor was called before init succeeded".into());
            };
            reset_current_timestamp(timestamp);
            match f(p, ctx) {
                Ok(()) => ctx.flush().map_err(|e| e.to_string()),
                Err(e) => {
                    ctx.discard();
                    Err(e.to_string())
                }
            }
        }
    }

    fn reentered() -> String {
        "the processor was re-entered".into()
    }
}

//! Per-task instances of a UDF: [`UdfModule::scalar`] and [`UdfModule::aggregate`] give a
//! [`ScalarUdf`] / [`AggregateUdf`] backed by one wasmtime `Store` (its own linear memory).
//! Every call runs under the function's limits (an epoch deadline for CPU time, the memory
//! limiter); a call that traps or hits a limit fails with [`ProcessorError`] and drops the
//! instance, and the next call gets a fresh one from the `InstancePre`. A `result::err` from
//! the guest is a [`ProcessorError::Guest`] and keeps the instance. An instance made for a
//! task (a SQL query's) takes the task's [`Interrupt`]: when the task is stopped (TERMINATE,
//! DROP, pause, redeploy) or the node shuts down, a call in progress ends within an epoch
//! check with [`ProcessorError::Interrupted`], whatever its CPU limit.
//!
//! Also checks what crosses the boundary: rows must have the declared arity, a scalar must
//! return one value per row, results must fit the declared type.

use super::error::WasmError;
use super::udf::bindings::aggregate::AggregateUdf as AggregateWorld;
use super::udf::bindings::scalar::ScalarUdf as ScalarWorld;
use super::udf::bindings::types;
use super::udf::{
    UdfModule, UdfModuleInner, UdfPre, UdfState, signature_from_wit, value_fits, value_from_wit,
    value_to_wit, value_type_name,
};
use crate::host::{Interrupt, ProcessorError};
use crate::udf::{AggregateUdf, ScalarUdf, UdfKind, UdfSignature, UdfValue};
use std::panic::{AssertUnwindSafe, catch_unwind};
use wasmtime::{Store, Trap};

/// The instance a [`Runner`] drives, by world.
trait World: Sized + Send + 'static {
    fn instantiate(
        module: &UdfModuleInner,
        store: &mut Store<UdfState>,
    ) -> Result<Self, wasmtime::Error>;
}

impl World for ScalarWorld {
    fn instantiate(
        module: &UdfModuleInner,
        store: &mut Store<UdfState>,
    ) -> Result<Self, wasmtime::Error> {
        match &module.pre {
            UdfPre::Scalar(pre) => pre.instantiate(store),
            UdfPre::Aggregate(_) => Err(wasmtime::format_err!(
                "{} is an aggregate function",
                module.name
            )),
        }
    }
}

impl World for AggregateWorld {
    fn instantiate(
        module: &UdfModuleInner,
        store: &mut Store<UdfState>,
    ) -> Result<Self, wasmtime::Error> {
        match &module.pre {
            UdfPre::Aggregate(pre) => pre.instantiate(store),
            UdfPre::Scalar(_) => Err(wasmtime::format_err!(
                "{} is a scalar function",
                module.name
            )),
        }
    }
}

/// One instance and its store.
struct Live<W> {
    store: Store<UdfState>,
    world: W,
}

/// Runs guest calls on an instance of `module`, replacing the instance after a trap.
struct Runner<W> {
    module: UdfModule,
    live: Option<Live<W>>,
    /// The task's stop flag, which every instance's calls watch.
    stop: Option<Interrupt>,
}

impl<W: World> Runner<W> {
    fn new(module: &UdfModule, stop: Option<&Interrupt>) -> Result<Runner<W>, ProcessorError> {
        let mut runner = Runner {
            module: module.clone(),
            live: None,
            stop: stop.cloned(),
        };
        runner.live = Some(runner.instantiate()?);
        Ok(runner)
    }

    fn instantiate(&self) -> Result<Live<W>, ProcessorError> {
        let inner = &self.module.inner;
        let mut store = inner.new_store(self.stop.clone());
        match W::instantiate(inner, &mut store) {
            Ok(world) => Ok(Live { store, world }),
            Err(_) if store.data().clock.ended == Some(super::deadline::Ended::Interrupted) => {
                Err(interrupted())
            }
            Err(e) => Err(ProcessorError::Host(format!(
                "cannot instantiate function {}: {}",
                inner.name,
                instantiate_message(&e, &store)
            ))),
        }
    }

    /// Runs one guest call under the limits and classifies how it failed.
    fn run<R>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Store<UdfState>, &W) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, ProcessorError> {
        if self.live.is_none() {
            self.live = Some(self.instantiate()?);
        }
        let Some(live) = self.live.as_mut() else {
            return Err(ProcessorError::Host("no instance".into()));
        };
        let inner = &self.module.inner;
        live.store.data_mut().begin_call();
        super::deadline::start_call(&mut live.store, 0);
        let result = catch_unwind(AssertUnwindSafe(|| f(&mut live.store, &live.world)));
        live.store.data_mut().end_call();
        let error = match result {
            Ok(Ok(Ok(r))) => return Ok(r),
            Ok(Ok(Err(message))) => return Err(ProcessorError::Guest(message)),
            Ok(Err(e)) => classify(e, &live.store, inner.limits.cpu_ms_per_call),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                ProcessorError::Host(format!("the host panicked during `{what}`: {message}"))
            }
        };
        tracing::debug!(function = %inner.name, call = what, error = %error,
            "UDF call failed; the next call gets a fresh instance");
        // Poisoned: whatever the guest's memory holds now is not trusted again.
        self.live = None;
        Err(error)
    }
}

fn instantiate_message(e: &wasmtime::Error, store: &Store<UdfState>) -> String {
    super::engine::instantiate_message(e, store.data().limit_hit.as_deref())
}

fn interrupted() -> ProcessorError {
    ProcessorError::Interrupted(
        "the function call was stopped: its query is stopping or the node is shutting down".into(),
    )
}

/// A failed call as a [`ProcessorError`]: a limit, or a trap (with the guest's stderr, e.g.
/// a Rust panic message or a Python traceback).
fn classify(e: wasmtime::Error, store: &Store<UdfState>, cpu_ms: u64) -> ProcessorError {
    let data = store.data();
    if let Some(reason) = &data.limit_hit {
        return ProcessorError::Limit(reason.clone());
    }
    if data.clock.ended == Some(super::deadline::Ended::Interrupted) {
        return interrupted();
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => ProcessorError::Limit(format!(
            "cpu time limit exceeded: the call ran longer than {cpu_ms} ms"
        )),
        Some(trap) => {
            let mut message = trap.to_string();
            if let Some(stderr) = data.log.stderr_tail() {
                message.push_str("; guest stderr: ");
                message.push_str(&stderr);
            }
            ProcessorError::Trap(message)
        }
        None => ProcessorError::Trap(format!("{e:#}")),
    }
}

/// Calls `signature()` in a throw-away instance of `module` (at load).
pub(crate) fn call_signature(module: &UdfModuleInner) -> Result<UdfSignature, WasmError> {
    let mut store = module.new_store(None);
    let signature = match &module.pre {
        UdfPre::Scalar(pre) => {
            let world = pre
                .instantiate(&mut store)
                .map_err(|e| WasmError::Instantiate(instantiate_message(&e, &store)))?;
            run_signature(&mut store, |s| world.call_signature(s))
        }
        UdfPre::Aggregate(pre) => {
            let world = pre
                .instantiate(&mut store)
                .map_err(|e| WasmError::Instantiate(instantiate_message(&e, &store)))?;
            run_signature(&mut store, |s| world.call_signature(s))
        }
    };
    let signature = signature.map_err(|e| {
        WasmError::Signature(classify(e, &store, module.limits.cpu_ms_per_call).to_string())
    })?;
    signature_from_wit(signature).map_err(WasmError::Signature)
}

fn run_signature(
    store: &mut Store<UdfState>,
    f: impl FnOnce(&mut Store<UdfState>) -> wasmtime::Result<types::Signature>,
) -> wasmtime::Result<types::Signature> {
    store.data_mut().begin_call();
    let result = f(store);
    store.data_mut().end_call();
    result
}

/// Checks that every row has the function's arity, and converts the rows.
fn rows_to_wit(
    name: &str,
    signature: &UdfSignature,
    rows: &[Vec<UdfValue>],
) -> Result<Vec<Vec<types::Value>>, ProcessorError> {
    let arity = signature.params.len();
    rows.iter()
        .map(|row| {
            if row.len() != arity {
                return Err(ProcessorError::Host(format!(
                    "function {name} takes {arity} argument(s), a row has {}",
                    row.len()
                )));
            }
            Ok(row.iter().map(value_to_wit).collect())
        })
        .collect()
}

/// Converts a result and checks it against the declared result type.
fn result_from_wit(
    name: &str,
    signature: &UdfSignature,
    v: types::Value,
) -> Result<UdfValue, ProcessorError> {
    let v = value_from_wit(v);
    if !value_fits(&v, signature.returns) {
        return Err(ProcessorError::Guest(format!(
            "function {name} returned a {} value, but its signature says it returns {}",
            value_type_name(&v),
            signature.returns.sql_name()
        )));
    }
    Ok(v)
}

impl UdfModule {
    /// A scalar instance (fails if the function is an aggregate or no instance can be
    /// made); its calls are ended by their CPU limit and the node's shutdown.
    pub fn scalar(&self) -> Result<Box<dyn ScalarUdf>, ProcessorError> {
        self.scalar_until(None)
    }

    /// [`UdfModule::scalar`] for a task: its calls also end when `stop` is raised.
    pub fn scalar_until(
        &self,
        stop: Option<&Interrupt>,
    ) -> Result<Box<dyn ScalarUdf>, ProcessorError> {
        if self.kind() != UdfKind::Scalar {
            return Err(ProcessorError::Host(format!(
                "{} is an aggregate function, not a scalar one",
                self.name()
            )));
        }
        Ok(Box::new(WasmScalarUdf {
            runner: Runner::new(self, stop)?,
        }))
    }

    /// An aggregate instance (fails if the function is a scalar or no instance can be
    /// made); its calls are ended by their CPU limit and the node's shutdown.
    pub fn aggregate(&self) -> Result<Box<dyn AggregateUdf>, ProcessorError> {
        self.aggregate_until(None)
    }

    /// [`UdfModule::aggregate`] for a task: its calls also end when `stop` is raised.
    pub fn aggregate_until(
        &self,
        stop: Option<&Interrupt>,
    ) -> Result<Box<dyn AggregateUdf>, ProcessorError> {
        if self.kind() != UdfKind::Aggregate {
            return Err(ProcessorError::Host(format!(
                "{} is a scalar function, not an aggregate one",
                self.name()
            )));
        }
        Ok(Box::new(WasmAggregateUdf {
            runner: Runner::new(self, stop)?,
        }))
    }
}

/// A scalar UDF instance.
struct WasmScalarUdf {
    runner: Runner<ScalarWorld>,
}

impl ScalarUdf for WasmScalarUdf {
    fn call(&mut self, rows: &[Vec<UdfValue>]) -> Result<Vec<UdfValue>, ProcessorError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let module = self.runner.module.clone();
        let (name, signature) = (&module.inner.name, &module.inner.signature);
        let wit_rows = rows_to_wit(name, signature, rows)?;
        let out = self
            .runner
            .run("call", |store, w| w.call_call(store, &wit_rows))?;
        if out.len() != rows.len() {
            return Err(ProcessorError::Guest(format!(
                "function {name} returned {} values for {} rows",
                out.len(),
                rows.len()
            )));
        }
        out.into_iter()
            .map(|v| result_from_wit(name, signature, v))
            .collect()
    }
}

/// An aggregate UDF instance.
struct WasmAggregateUdf {
    runner: Runner<AggregateWorld>,
}

impl AggregateUdf for WasmAggregateUdf {
    fn init(&mut self) -> Result<Vec<u8>, ProcessorError> {
        self.runner
            .run("init", |store, w| w.call_init(store).map(Ok))
    }

    fn accumulate(
        &mut self,
        state: Vec<u8>,
        rows: &[Vec<UdfValue>],
    ) -> Result<Vec<u8>, ProcessorError> {
        if rows.is_empty() {
            return Ok(state);
        }
        let module = self.runner.module.clone();
        let wit_rows = rows_to_wit(&module.inner.name, &module.inner.signature, rows)?;
        self.runner.run("accumulate", |store, w| {
            w.call_accumulate(store, &state, &wit_rows)
        })
    }

    fn merge(&mut self, a: Vec<u8>, b: Vec<u8>) -> Result<Vec<u8>, ProcessorError> {
        self.runner
            .run("merge", |store, w| w.call_merge(store, &a, &b))
    }

    fn finish(&mut self, state: &[u8]) -> Result<UdfValue, ProcessorError> {
        let module = self.runner.module.clone();
        let v = self
            .runner
            .run("finish", |store, w| w.call_finish(store, state))?;
        result_from_wit(&module.inner.name, &module.inner.signature, v)
    }
}

//! The task runtime: a deployed processor with N input partitions becomes N tasks; task *p*
//! reads partition *p* of every input (and of the processor's repartition topic), calls the
//! processor in batches, appends what it emits, keeps its state in the node's
//! [`crate::state`] stores with changelogs, fires timers, applies the error policy, and
//! commits on an interval.
//!
//! - [`spec`]: the deployment spec and the names of a processor's topics;
//! - [`factory`]: how processor instances are made (the Wasm host or native test code);
//!   [`wasm_loader`] adapts the Wasm host ([`crate::wasm`]) to it;
//! - [`manager`]: [`TaskManager`], assign / revoke / pause / resume tasks on this node;
//! - [`runner`]: one task's loop and commit protocol; [`context`]: its `TaskHost`;
//!   [`output`]: what its calls emitted, as record batches waiting to be appended;
//! - [`inputs`], [`timers`], [`status`]: input positions, timers, reported status;
//! - [`standby`]: warm copies of tasks other nodes run (their changelogs tailed here);
//! - [`registry`]: deployments persisted under the data directory.
//!
//! The runner does not know what a processor is made of (Wasm or not: only `wasm_loader`
//! names the Wasm host), nor where the log lives (everything goes through
//! [`crate::log_access::LogAccess`]).

pub mod context;
pub mod factory;
pub mod inputs;
pub mod manager;
pub mod output;
pub mod registry;
pub mod runner;
pub mod spec;
pub mod standby;
pub mod status;
pub mod timers;
pub mod transaction;
pub mod wasm_loader;

#[cfg(test)]
mod tests;

pub use factory::{Footprint, LoadError, LogicFactory, ModuleLoader};
pub use manager::{AssignError, TaskManager};
pub use runner::TaskDefinition;
pub use spec::{Guarantee, OnError, ProcessorSpec, StartFrom};
pub use status::{TaskErrorInfo, TaskState, TaskStatus};
pub use wasm_loader::WasmLoader;

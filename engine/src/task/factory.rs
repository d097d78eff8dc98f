//! How tasks get their processor instances: a [`ModuleLoader`] validates and compiles an
//! uploaded module once per processor version into a [`LogicFactory`], which makes one
//! [`ProcessorLogic`] instance per task (and a fresh one after a trap). The Wasm host
//! implements them (`wasm_loader`); tests implement them with native Rust processors.

use std::sync::Arc;

use crate::host::{Interrupt, ProcessorError, ProcessorLogic};
use crate::limits::ProcessorLimits;

/// What one task of a processor takes from the node's Wasm host: instance slots of the
/// pooling allocator and linear memory (at its limit). Admission adds these up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    pub instances: u32,
    pub memory_bytes: u64,
}

/// Makes instances of one processor version.
pub trait LogicFactory: Send + Sync {
    /// A new instance for one task; `label` (`<processor>/<partition>`) tags its logs. A
    /// call in progress should end soon (with [`ProcessorError::Interrupted`]) once
    /// `interrupt` is raised; implementations whose calls are short may ignore it.
    fn instantiate(
        &self,
        label: &str,
        interrupt: &Interrupt,
    ) -> Result<Box<dyn ProcessorLogic>, ProcessorError>;

    /// What one task's instance takes (nothing, for processors that are not Wasm).
    fn footprint(&self) -> Footprint {
        Footprint::default()
    }
}

/// Why an uploaded module was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LoadError {
    /// Stable code (the Wasm host's: `not_a_component`, `wrong_world`, `too_large`, …).
    pub code: &'static str,
    pub message: String,
    /// The module cannot be used for a reason of the server's, not of the upload's.
    pub internal: bool,
}

/// Turns uploaded module bytes into a [`LogicFactory`] (validate + compile).
pub trait ModuleLoader: Send + Sync {
    fn load(
        &self,
        module: &[u8],
        limits: &ProcessorLimits,
    ) -> Result<Arc<dyn LogicFactory>, LoadError>;
}

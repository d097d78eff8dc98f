//! How tasks get their processor instances: a [`ModuleLoader`] validates and compiles an
//! uploaded module once per processor version into a [`LogicFactory`], which makes one
//! [`ProcessorLogic`] instance per task (and a fresh one after a trap). The Wasm host
//! implements them (`wasm_loader`); tests implement them with native Rust processors.

use std::sync::Arc;

use crate::host::{ProcessorError, ProcessorLogic};
use crate::limits::ProcessorLimits;

/// Makes instances of one processor version.
pub trait LogicFactory: Send + Sync {
    /// A new instance for one task; `label` (`<processor>/<partition>`) tags its logs.
    fn instantiate(&self, label: &str) -> Result<Box<dyn ProcessorLogic>, ProcessorError>;
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

//! [`EngineError`]: what the engine's public operations (deploy, describe, query, …) can
//! fail with. Every variant has a stable code and a coarse [`EngineErrorKind`] that the HTTP
//! layer turns into a status.

use crate::log_access::LogError;
use crate::state::StateError;
use crate::task::AssignError;
use crate::task::registry::RegistryError;

/// Coarse classes of engine errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineErrorKind {
    NotFound,
    InvalidInput,
    Conflict,
    /// Not possible right now (restoring, task not running here); retry later.
    Unavailable,
    /// A spec asks for more than a server maximum allows (a user mistake: 400).
    LimitExceeded,
    /// The node has no room for what was asked (instance slots, memory budget): 507.
    InsufficientResources,
    Internal,
}

/// Errors of the engine's operations.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("invalid processor spec: {0}")]
    InvalidSpec(String),
    #[error("input topic '{0}' does not exist")]
    UnknownInput(String),
    #[error("inputs are not co-partitioned: {0}")]
    NotCoPartitioned(String),
    #[error("invalid module: {message}")]
    InvalidModule { code: &'static str, message: String },
    #[error("processor '{0}' already exists")]
    ProcessorExists(String),
    #[error("processor '{0}' does not exist")]
    UnknownProcessor(String),
    #[error("processor '{processor}' has no store '{store}'")]
    UnknownStore { processor: String, store: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("module could not be loaded: {0}")]
    LoadFailed(String),
    /// `limit` names the server maximum (`max_cpu_ms_per_call`, …).
    #[error("{message}")]
    LimitExceeded {
        limit: &'static str,
        message: String,
    },
    #[error("insufficient resources: {0}")]
    InsufficientResources(String),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Assign(#[from] AssignError),
}

impl EngineError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::InvalidSpec(_) => "invalid_spec",
            EngineError::UnknownInput(_) => "unknown_input",
            EngineError::NotCoPartitioned(_) => "not_co_partitioned",
            EngineError::InvalidModule { code, .. } => code,
            EngineError::ProcessorExists(_) => "processor_exists",
            EngineError::UnknownProcessor(_) => "unknown_processor",
            EngineError::UnknownStore { .. } => "unknown_store",
            EngineError::Conflict(_) => "conflict",
            EngineError::Unavailable(_) => "unavailable",
            EngineError::LoadFailed(_) => "load_failed",
            EngineError::LimitExceeded { .. } => "limit_exceeded",
            EngineError::InsufficientResources(_) => "insufficient_resources",
            EngineError::Log(e) => e.code(),
            EngineError::State(e) => e.code(),
            EngineError::Registry(e) => e.code(),
            EngineError::Assign(_) => "internal",
        }
    }

    pub fn kind(&self) -> EngineErrorKind {
        match self {
            EngineError::InvalidSpec(_)
            | EngineError::UnknownInput(_)
            | EngineError::NotCoPartitioned(_)
            | EngineError::InvalidModule { .. } => EngineErrorKind::InvalidInput,
            EngineError::UnknownProcessor(_) | EngineError::UnknownStore { .. } => {
                EngineErrorKind::NotFound
            }
            EngineError::ProcessorExists(_) | EngineError::Conflict(_) => EngineErrorKind::Conflict,
            EngineError::Unavailable(_) => EngineErrorKind::Unavailable,
            EngineError::LimitExceeded { .. } => EngineErrorKind::LimitExceeded,
            EngineError::InsufficientResources(_) => EngineErrorKind::InsufficientResources,
            EngineError::LoadFailed(_)
            | EngineError::Log(_)
            | EngineError::State(_)
            | EngineError::Registry(_)
            | EngineError::Assign(_) => EngineErrorKind::Internal,
        }
    }
}

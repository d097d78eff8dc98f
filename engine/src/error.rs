//! [`EngineError`]: what the engine's public operations (deploy, describe, query, …) can
//! fail with. Every variant has a stable code and a coarse [`ErrorKind`] (the broker's: one
//! classification for every layer) that the HTTP layer turns into a status.

pub use weir_broker::ErrorKind;

use crate::log_access::LogError;
use crate::state::StateError;
use crate::task::AssignError;
use crate::task::registry::RegistryError;

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
    #[error("topic '{topic}' is an internal topic of {owner}; processors may not write to it")]
    InternalTopic { topic: String, owner: String },
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
            EngineError::InternalTopic { .. } => "internal_topic",
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

    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::InvalidSpec(_)
            | EngineError::UnknownInput(_)
            | EngineError::NotCoPartitioned(_)
            | EngineError::InvalidModule { .. }
            | EngineError::InternalTopic { .. } => ErrorKind::InvalidInput,
            EngineError::UnknownProcessor(_) | EngineError::UnknownStore { .. } => {
                ErrorKind::NotFound
            }
            EngineError::ProcessorExists(_) | EngineError::Conflict(_) => ErrorKind::Conflict,
            EngineError::Unavailable(_) => ErrorKind::Unavailable,
            EngineError::Log(e) => e.kind(),
            EngineError::LimitExceeded { .. } => ErrorKind::InvalidInput,
            EngineError::InsufficientResources(_) => ErrorKind::InsufficientResources,
            EngineError::LoadFailed(_)
            | EngineError::State(_)
            | EngineError::Registry(_)
            | EngineError::Assign(_) => ErrorKind::Internal,
        }
    }
}

//! Errors of the state stores, each with a stable code.

use std::path::PathBuf;

/// Why a state store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    #[error("invalid store name '{name}': {reason}")]
    InvalidStoreName { name: String, reason: &'static str },
    #[error("the state of task {0} is gone (the task was removed)")]
    TaskRemoved(String),
    #[error("state store error in {path}: {message}")]
    Backend { path: PathBuf, message: String },
    #[error("state store I/O error on {path}: {message}")]
    Io { path: PathBuf, message: String },
}

impl StateError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            StateError::InvalidStoreName { .. } => "invalid_store_name",
            StateError::TaskRemoved(_) => "task_removed",
            StateError::Backend { .. } => "state_error",
            StateError::Io { .. } => "io_error",
        }
    }
}

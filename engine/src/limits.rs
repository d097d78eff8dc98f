//! Per-processor sandbox limits: the `limits` object of a processor spec. Every field has a
//! default; `validate` rejects values that cannot work. Enforced by the Wasm host (memory,
//! CPU per call, module size) and by the task's `TaskHost` (output per call).

use serde::{Deserialize, Serialize};

/// Limits for one processor (all its tasks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorLimits {
    /// Largest linear memory (and tables) one instance may grow to, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock CPU time one guest call (init, process, on-timer) may take, in ms.
    pub cpu_ms_per_call: u64,
    /// Most records one guest call may emit.
    pub max_output_records_per_call: u32,
    /// Most bytes (keys + values + headers) one guest call may emit.
    pub max_output_bytes_per_call: u64,
    /// Largest component accepted at upload, in bytes.
    pub max_module_bytes: u64,
}

impl Default for ProcessorLimits {
    fn default() -> Self {
        ProcessorLimits {
            memory_bytes: 64 << 20,
            cpu_ms_per_call: 5_000,
            max_output_records_per_call: 100_000,
            max_output_bytes_per_call: 64 << 20,
            max_module_bytes: 64 << 20,
        }
    }
}

impl ProcessorLimits {
    /// Checks that every limit is usable.
    pub fn validate(&self) -> Result<(), String> {
        if self.memory_bytes < (1 << 20) {
            return Err("limits.memory_bytes must be at least 1048576".into());
        }
        if self.cpu_ms_per_call == 0 {
            return Err("limits.cpu_ms_per_call must be positive".into());
        }
        if self.max_output_records_per_call == 0 || self.max_output_bytes_per_call == 0 {
            return Err("limits.max_output_* must be positive".into());
        }
        if self.max_module_bytes == 0 {
            return Err("limits.max_module_bytes must be positive".into());
        }
        Ok(())
    }
}

//! Per-processor sandbox limits: the `limits` object of a processor spec. Every field has a
//! default; `validate` rejects values that cannot work. Enforced by the Wasm host (memory,
//! CPU per call, module size) and by the task's `TaskHost` (output per call). [`NodeLimits`]
//! are the server's maxima over every spec and the node's Wasm capacity.

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

/// The server's maxima on what a processor spec may ask, and this node's Wasm capacity
/// (`weir serve --max-cpu-ms-per-call`, `--max-task-memory-bytes`,
/// `--wasm-memory-budget-bytes`, `--wasm-instance-pool`), and the CPU time of one UDF call
/// (`--udf-cpu-ms-per-call`). Specs over a maximum are refused
/// (`limit_exceeded`); deploys whose tasks do not fit what is left of the capacity are
/// refused before anything is created (`insufficient_resources`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLimits {
    /// Largest `limits.cpu_ms_per_call` a spec may set.
    pub max_cpu_ms_per_call: u64,
    /// Largest `limits.memory_bytes` a spec may set (one task's linear memory).
    pub max_task_memory_bytes: u64,
    /// Sum of the memory limits of every Wasm instance of every task on this node.
    pub wasm_memory_budget_bytes: u64,
    /// Wasm instances alive at once (the pooling allocator's slots): one per task of a Wasm
    /// processor, one per UDF per task of a query calling UDFs.
    pub wasm_instance_pool: u32,
    /// CPU time one UDF call (one batch of rows) may take, in ms; at most
    /// `max_cpu_ms_per_call`.
    pub udf_cpu_ms_per_call: u64,
}

/// Largest linear memory a 32-bit Wasm instance can have.
pub const MAX_WASM32_MEMORY: u64 = 4 << 30;

/// Largest `--wasm-instance-pool` (each slot reserves virtual address space).
pub const MAX_INSTANCE_POOL: u32 = 4096;

impl Default for NodeLimits {
    /// Sized from this machine's memory ([`total_memory_bytes`]; 4 GiB when unknown).
    fn default() -> Self {
        NodeLimits::for_memory(total_memory_bytes().unwrap_or(4 << 30))
    }
}

impl NodeLimits {
    /// Defaults for a machine with `total` bytes of memory: 30 s per call (5 s per UDF
    /// call); a task's memory
    /// up to 1/8 of it (64 MiB ..= 1 GiB); half of it for all Wasm memories; one instance
    /// slot per 32 MiB (64 ..= 1024).
    pub fn for_memory(total: u64) -> NodeLimits {
        NodeLimits {
            max_cpu_ms_per_call: 30_000,
            max_task_memory_bytes: (total / 8).clamp(64 << 20, 1 << 30),
            wasm_memory_budget_bytes: (total / 2).max(256 << 20),
            wasm_instance_pool: (total / (32 << 20)).clamp(64, 1024) as u32,
            udf_cpu_ms_per_call: 5_000,
        }
    }

    /// Checks the settings themselves.
    pub fn validate(&self) -> Result<(), String> {
        let d = ProcessorLimits::default();
        if self.max_cpu_ms_per_call < d.cpu_ms_per_call {
            return Err(format!(
                "max_cpu_ms_per_call must be at least the default cpu_ms_per_call ({})",
                d.cpu_ms_per_call
            ));
        }
        if self.max_task_memory_bytes < d.memory_bytes
            || self.max_task_memory_bytes > MAX_WASM32_MEMORY
        {
            return Err(format!(
                "max_task_memory_bytes must be between the default memory_bytes ({}) and \
                 {MAX_WASM32_MEMORY}",
                d.memory_bytes
            ));
        }
        if self.wasm_memory_budget_bytes < self.max_task_memory_bytes {
            return Err("wasm_memory_budget_bytes must be at least max_task_memory_bytes".into());
        }
        if self.udf_cpu_ms_per_call == 0 || self.udf_cpu_ms_per_call > self.max_cpu_ms_per_call {
            return Err("udf_cpu_ms_per_call must be between 1 and max_cpu_ms_per_call".into());
        }
        if self.wasm_instance_pool == 0 || self.wasm_instance_pool > MAX_INSTANCE_POOL {
            return Err(format!(
                "wasm_instance_pool must be between 1 and {MAX_INSTANCE_POOL}"
            ));
        }
        Ok(())
    }

    /// Refuses a processor's limits over a maximum, naming the limit and its flag.
    pub fn check(&self, limits: &ProcessorLimits) -> Result<(), LimitExceeded> {
        if limits.cpu_ms_per_call > self.max_cpu_ms_per_call {
            return Err(LimitExceeded {
                limit: "max_cpu_ms_per_call",
                message: format!(
                    "limits.cpu_ms_per_call ({}) is over this server's maximum of {} ms \
                     (--max-cpu-ms-per-call)",
                    limits.cpu_ms_per_call, self.max_cpu_ms_per_call
                ),
            });
        }
        if limits.memory_bytes > self.max_task_memory_bytes {
            return Err(LimitExceeded {
                limit: "max_task_memory_bytes",
                message: format!(
                    "limits.memory_bytes ({}) is over this server's maximum of {} bytes \
                     (--max-task-memory-bytes)",
                    limits.memory_bytes, self.max_task_memory_bytes
                ),
            });
        }
        Ok(())
    }
}

/// A spec asked for more than a server maximum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LimitExceeded {
    /// The maximum's name (`max_cpu_ms_per_call`, `max_task_memory_bytes`).
    pub limit: &'static str,
    pub message: String,
}

/// `MemTotal` of `/proc/meminfo`, in bytes (`None` where there is no such file).
pub fn total_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_defaults_follow_the_machine_and_are_valid() {
        let small = NodeLimits::for_memory(2 << 30);
        assert_eq!(small.max_task_memory_bytes, 256 << 20);
        assert_eq!(small.wasm_memory_budget_bytes, 1 << 30);
        assert_eq!(small.wasm_instance_pool, 64);
        small.validate().unwrap();
        let big = NodeLimits::for_memory(64 << 30);
        assert_eq!(big.max_task_memory_bytes, 1 << 30);
        assert_eq!(big.wasm_instance_pool, 1024);
        big.validate().unwrap();
        NodeLimits::default().validate().unwrap();
        assert_eq!(
            parse_mem_total("MemTotal:       24683784 kB\nMemFree: 1 kB\n"),
            Some(24683784 * 1024)
        );
        assert_eq!(parse_mem_total("nothing"), None);
    }

    #[test]
    fn specs_over_a_maximum_name_it() {
        let node = NodeLimits::for_memory(2 << 30);
        let mut l = ProcessorLimits {
            cpu_ms_per_call: 1_000_000_000_000,
            ..ProcessorLimits::default()
        };
        let e = node.check(&l).unwrap_err();
        assert_eq!(e.limit, "max_cpu_ms_per_call");
        assert!(e.message.contains("--max-cpu-ms-per-call"), "{e}");
        l.cpu_ms_per_call = 1000;
        l.memory_bytes = 4 << 30;
        assert_eq!(node.check(&l).unwrap_err().limit, "max_task_memory_bytes");
        l.memory_bytes = 64 << 20;
        node.check(&l).unwrap();
    }
}

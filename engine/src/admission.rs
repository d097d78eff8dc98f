//! Admission of processors onto this node: the ledger of what every deployed processor's
//! tasks take from the Wasm host (instance slots of the pooling allocator, linear memory at
//! their limits) against the node's capacity ([`NodeLimits`]). A deploy reserves its share
//! before anything is created and is refused with the reason when it does not fit; a delete
//! releases it. Knows nothing of tasks, Wasm or the log.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::limits::NodeLimits;
use crate::task::Footprint;

/// What one processor holds: its tasks' footprint summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Held {
    instances: u64,
    memory_bytes: u64,
}

pub(crate) struct Admission {
    limits: NodeLimits,
    held: Mutex<BTreeMap<String, Held>>,
}

impl Admission {
    pub(crate) fn new(limits: NodeLimits) -> Admission {
        Admission {
            limits,
            held: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn limits(&self) -> &NodeLimits {
        &self.limits
    }

    /// Reserves `per_task × partitions` for `processor`, replacing what it held; `Err` says
    /// why it does not fit (and nothing changes).
    pub(crate) fn reserve(
        &self,
        processor: &str,
        per_task: Footprint,
        partitions: i32,
    ) -> Result<(), String> {
        let tasks = u64::try_from(partitions.max(0)).unwrap_or(0);
        let want = Held {
            instances: u64::from(per_task.instances).saturating_mul(tasks),
            memory_bytes: per_task.memory_bytes.saturating_mul(tasks),
        };
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let others = held
            .iter()
            .filter(|(name, _)| name.as_str() != processor)
            .fold(Held::default(), |a, (_, h)| Held {
                instances: a.instances + h.instances,
                memory_bytes: a.memory_bytes.saturating_add(h.memory_bytes),
            });
        let pool = u64::from(self.limits.wasm_instance_pool);
        if want.instances > pool.saturating_sub(others.instances) {
            return Err(format!(
                "processor '{processor}' needs {} Wasm instances ({} per task × {tasks} \
                 tasks) but this node has {pool} instance slots and {} are taken \
                 (--wasm-instance-pool)",
                want.instances, per_task.instances, others.instances
            ));
        }
        let budget = self.limits.wasm_memory_budget_bytes;
        if want.memory_bytes > budget.saturating_sub(others.memory_bytes) {
            return Err(format!(
                "processor '{processor}' needs {} bytes of Wasm memory ({} per task × \
                 {tasks} tasks) but this node's budget is {budget} bytes and {} are taken \
                 (--wasm-memory-budget-bytes)",
                want.memory_bytes, per_task.memory_bytes, others.memory_bytes
            ));
        }
        held.insert(processor.to_string(), want);
        Ok(())
    }

    /// Gives back what `processor` held.
    pub(crate) fn release(&self, processor: &str) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(processor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm(memory_bytes: u64) -> Footprint {
        Footprint {
            instances: 1,
            memory_bytes,
        }
    }

    #[test]
    fn reservations_add_up_to_the_capacity_and_are_replaced_and_released() {
        let a = Admission::new(NodeLimits {
            max_cpu_ms_per_call: 30_000,
            max_task_memory_bytes: 64 << 20,
            wasm_memory_budget_bytes: 640 << 20,
            wasm_instance_pool: 16,
            udf_cpu_ms_per_call: 5_000,
        });
        a.reserve("a", wasm(64 << 20), 8).unwrap();
        let e = a.reserve("b", wasm(1 << 20), 9).unwrap_err();
        assert!(
            e.contains("needs 9 Wasm instances") && e.contains("8 are taken"),
            "{e}"
        );
        let e = a.reserve("b", wasm(64 << 20), 3).unwrap_err();
        assert!(e.contains("--wasm-memory-budget-bytes"), "{e}");
        a.reserve("b", wasm(64 << 20), 2).unwrap();
        // A redeploy replaces its own reservation.
        a.reserve("a", wasm(32 << 20), 14).unwrap();
        a.release("a");
        a.reserve("c", wasm(1 << 20), 14).unwrap();
        // Processors that are not Wasm take nothing.
        a.reserve("native", Footprint::default(), 1000).unwrap();
    }
}

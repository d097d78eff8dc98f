//! The Wasm host as a [`ModuleLoader`]: an upload is validated and compiled (or found in the
//! on-disk cache) once per processor version by [`WasmEngine::load_processor`]; each task gets
//! its own instance from the version's [`ProcessorModule`] (`InstancePre`).

use std::path::Path;
use std::sync::Arc;

use super::factory::{Footprint, LoadError, LogicFactory, ModuleLoader};
use crate::host::{Interrupt, ProcessorError, ProcessorLogic};
use crate::limits::ProcessorLimits;
use crate::wasm::{ProcessorModule, WasmConfig, WasmEngine, WasmError};

/// Loads processor components with the node's [`WasmEngine`].
#[derive(Clone)]
pub struct WasmLoader {
    engine: WasmEngine,
}

impl WasmLoader {
    /// A loader caching compiled components in `cache_dir`.
    pub fn new(cache_dir: &Path) -> Result<WasmLoader, WasmError> {
        Ok(WasmLoader {
            engine: WasmEngine::new(WasmConfig::new(cache_dir))?,
        })
    }

    pub fn with_engine(engine: WasmEngine) -> WasmLoader {
        WasmLoader { engine }
    }
}

struct WasmFactory {
    module: ProcessorModule,
    limits: ProcessorLimits,
}

impl LogicFactory for WasmFactory {
    fn instantiate(
        &self,
        label: &str,
        interrupt: &Interrupt,
    ) -> Result<Box<dyn ProcessorLogic>, ProcessorError> {
        self.module
            .instantiate_interruptible(&self.limits, label, interrupt)
            .map_err(|e| ProcessorError::Host(e.to_string()))
    }

    fn footprint(&self) -> Footprint {
        Footprint {
            instances: 1,
            memory_bytes: self.limits.memory_bytes,
        }
    }
}

impl ModuleLoader for WasmLoader {
    fn load(
        &self,
        module: &[u8],
        limits: &ProcessorLimits,
    ) -> Result<Arc<dyn LogicFactory>, LoadError> {
        let module = self
            .engine
            .load_processor(module, limits)
            .map_err(|e| LoadError {
                code: e.code(),
                message: e.to_string(),
                internal: !e.is_user_error(),
            })?;
        Ok(Arc::new(WasmFactory {
            module,
            limits: limits.clone(),
        }))
    }
}

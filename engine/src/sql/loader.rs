//! Persistent queries as processor deployments: a query's "module" is its plan, serialised
//! as `weir-sql/1\n<JSON plan>`. [`SqlLoader`] recognises those and makes [`SqlLogic`]
//! instances; anything else goes to the wrapped loader (the Wasm host). So queries are
//! deployed, persisted, restored from changelogs and resumed at restart by the same
//! machinery as processors.

use std::sync::Arc;

use serde::Deserialize;

use super::error::SqlError;
use super::limits;
use super::plan::QueryPlan;
use super::runtime::SqlLogic;
use crate::host::{Interrupt, ProcessorError, ProcessorLogic};
use crate::limits::ProcessorLimits;
use crate::task::factory::{Footprint, LoadError, LogicFactory, ModuleLoader};
use crate::udf::FunctionCatalog;
use crate::wasm::UdfLimits;

/// The prefix of a query plan "module".
pub const PLAN_MAGIC: &[u8] = b"weir-sql/1\n";

/// Serialises a plan into deployable module bytes.
pub fn plan_module(plan: &QueryPlan) -> Vec<u8> {
    let mut out = PLAN_MAGIC.to_vec();
    out.extend(serde_json::to_vec(plan).unwrap_or_default());
    out
}

/// Reads a plan back from module bytes (`None` if they are not a plan). A stored plan is
/// client-shaped data read again at every start: its JSON nesting is measured first (without
/// recursion) and refused past `MAX_PLAN_JSON_DEPTH`, it is deserialised on the SQL thread's
/// large stack, and its expressions are checked against `limits` before anything else walks
/// them.
pub fn module_plan(module: &[u8]) -> Option<Result<QueryPlan, String>> {
    let body = module.strip_prefix(PLAN_MAGIC)?;
    Some(read_plan(body))
}

fn read_plan(body: &[u8]) -> Result<QueryPlan, String> {
    let depth = limits::json_depth(body, limits::MAX_PLAN_JSON_DEPTH);
    if depth > limits::MAX_PLAN_JSON_DEPTH {
        return Err(format!(
            "the plan nests more than {} levels deep",
            limits::MAX_PLAN_JSON_DEPTH
        ));
    }
    limits::on_sql_stack(|| {
        let mut de = serde_json::Deserializer::from_slice(body);
        // Bounded above by `json_depth`; serde_json's own limit (128) is below what a plan
        // within `MAX_EXPR_DEPTH` may need.
        de.disable_recursion_limit();
        let plan = QueryPlan::deserialize(&mut de)
            .and_then(|p| de.end().map(|()| p))
            .map_err(|e| SqlError::new("invalid_plan", e.to_string()))?;
        plan.check_limits()?;
        Ok(plan)
    })
    .map_err(|e| e.message)
}

/// Loads query plans itself and delegates every other module.
pub struct SqlLoader {
    inner: Arc<dyn ModuleLoader>,
    functions: Arc<dyn FunctionCatalog>,
}

impl SqlLoader {
    pub fn new(inner: Arc<dyn ModuleLoader>, functions: Arc<dyn FunctionCatalog>) -> SqlLoader {
        SqlLoader { inner, functions }
    }
}

struct SqlFactory {
    plan: Arc<QueryPlan>,
    functions: Arc<dyn FunctionCatalog>,
}

impl LogicFactory for SqlFactory {
    fn instantiate(
        &self,
        _label: &str,
        interrupt: &Interrupt,
    ) -> Result<Box<dyn ProcessorLogic>, ProcessorError> {
        Ok(Box::new(SqlLogic::new(
            self.plan.clone(),
            self.functions.clone(),
            interrupt.clone(),
        )))
    }

    /// One instance of every UDF the plan calls, each at the UDF memory limit. (The task's
    /// interrupt ends their calls in progress when the query is stopped.)
    fn footprint(&self) -> Footprint {
        let (scalar, aggregate) = self.plan.udfs();
        let n = (scalar.len() + aggregate.len()) as u32;
        Footprint {
            instances: n,
            memory_bytes: u64::from(n) * UdfLimits::default().memory_bytes,
        }
    }
}

impl ModuleLoader for SqlLoader {
    fn load(
        &self,
        module: &[u8],
        limits: &ProcessorLimits,
    ) -> Result<Arc<dyn LogicFactory>, LoadError> {
        match module_plan(module) {
            None => self.inner.load(module, limits),
            Some(Err(e)) => Err(LoadError {
                code: "invalid_plan",
                message: format!("query plan cannot be read: {e}"),
                internal: false,
            }),
            Some(Ok(plan)) => {
                let (scalar, aggregate) = plan.udfs();
                for f in scalar.iter().chain(&aggregate) {
                    if self.functions.lookup(f).is_none() {
                        return Err(LoadError {
                            code: "unknown_function",
                            message: format!(
                                "query {} calls function {f}, which is not registered",
                                plan.id
                            ),
                            internal: false,
                        });
                    }
                }
                Ok(Arc::new(SqlFactory {
                    plan: Arc::new(plan),
                    functions: self.functions.clone(),
                }))
            }
        }
    }
}

/// A function catalog with no UDFs (built-ins only).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFunctions;

impl FunctionCatalog for NoFunctions {
    fn lookup(&self, _name: &str) -> Option<(crate::udf::UdfKind, crate::udf::UdfSignature)> {
        None
    }

    fn scalar(
        &self,
        name: &str,
        _stop: Option<&Interrupt>,
    ) -> Result<Box<dyn crate::udf::ScalarUdf>, ProcessorError> {
        Err(ProcessorError::Host(format!("unknown function {name}")))
    }

    fn aggregate(
        &self,
        name: &str,
        _stop: Option<&Interrupt>,
    ) -> Result<Box<dyn crate::udf::AggregateUdf>, ProcessorError> {
        Err(ProcessorError::Host(format!("unknown function {name}")))
    }
}

//! User-defined functions as streaming SQL sees them: the value and type model shared with
//! the `weir:udf` WIT package (`wit/udf.wit`), a function's declared signature, and the
//! traits a running scalar or aggregate UDF implements for one task. The Wasm host
//! (`crate::wasm::udf`) implements the traits; the SQL engine (`crate::sql`) calls them in
//! batches. Nothing here touches wasmtime or the log.
//!
//! [`registry`] holds the node's registered functions (persisted under
//! `<data_dir>/functions`, uploaded artifacts under `<data_dir>/artifacts`);
//! [`FunctionRegistry`] implements [`FunctionCatalog`] (calls) and
//! [`FunctionAdmin`](crate::sql::FunctionAdmin) (SQL's `CREATE`/`DROP FUNCTION`, in
//! `admin.rs`).

mod admin;
pub mod registry;

pub use registry::{
    ArtifactInfo, FunctionError, FunctionInfo, FunctionRegistry, FunctionRegistryConfig,
};

use serde::{Deserialize, Serialize};

use crate::host::{Interrupt, ProcessorError};

/// A UDF parameter or result type (the WIT `data-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UdfType {
    Boolean,
    Int,
    Float,
    Text,
    Bytes,
    /// Any value (the function checks at run time).
    Any,
}

impl UdfType {
    /// The SQL spelling shown by `SHOW FUNCTIONS`.
    pub fn sql_name(self) -> &'static str {
        match self {
            UdfType::Boolean => "BOOLEAN",
            UdfType::Int => "BIGINT",
            UdfType::Float => "DOUBLE",
            UdfType::Text => "STRING",
            UdfType::Bytes => "BYTES",
            UdfType::Any => "ANY",
        }
    }
}

/// A value crossing the UDF boundary (the WIT `value` variant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UdfValue {
    Null,
    Boolean(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

/// What a UDF declares about itself (`signature()` export).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdfSignature {
    pub params: Vec<UdfType>,
    pub returns: UdfType,
}

/// Scalar or aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UdfKind {
    Scalar,
    Aggregate,
}

/// One task's instance of a scalar UDF.
pub trait ScalarUdf: Send {
    /// Calls the function once per row; returns one result per row, in order.
    fn call(&mut self, rows: &[Vec<UdfValue>]) -> Result<Vec<UdfValue>, ProcessorError>;
}

/// One task's instance of an aggregate UDF. State is opaque bytes the engine keeps in the
/// query's state store.
pub trait AggregateUdf: Send {
    /// The state of an empty aggregate.
    fn init(&mut self) -> Result<Vec<u8>, ProcessorError>;
    /// Folds rows (each the function's arguments) into `state`.
    fn accumulate(
        &mut self,
        state: Vec<u8>,
        rows: &[Vec<UdfValue>],
    ) -> Result<Vec<u8>, ProcessorError>;
    /// Combines two states (session windows merging).
    fn merge(&mut self, a: Vec<u8>, b: Vec<u8>) -> Result<Vec<u8>, ProcessorError>;
    /// The aggregate's value for `state`.
    fn finish(&mut self, state: &[u8]) -> Result<UdfValue, ProcessorError>;
}

/// Finds UDFs by name for the SQL planner (signature, kind) and makes per-task instances.
/// Names are case-insensitive. An instance made with a task's `stop` flag ends a call in
/// progress when the task is stopped (a query's TERMINATE or DROP, pause, shutdown); one
/// made with `None` (a pull query's) is bounded by its CPU limit and the node's shutdown.
pub trait FunctionCatalog: Send + Sync {
    /// `(kind, signature)` of a registered UDF.
    fn lookup(&self, name: &str) -> Option<(UdfKind, UdfSignature)>;
    fn scalar(
        &self,
        name: &str,
        stop: Option<&Interrupt>,
    ) -> Result<Box<dyn ScalarUdf>, ProcessorError>;
    fn aggregate(
        &self,
        name: &str,
        stop: Option<&Interrupt>,
    ) -> Result<Box<dyn AggregateUdf>, ProcessorError>;
}

//! The cluster's catalog of processors as the engine sees it: on a cluster node every change
//! made through this node's engine (deploy, redeploy, pause, resume, delete — from the HTTP
//! API or from SQL) is published to the replicated catalog, and deployments made elsewhere
//! arrive through [`crate::Engine::install`] / [`crate::Engine::uninstall`]. A single node
//! has no catalog.
//!
//! The same holds for user-defined functions ([`FunctionPublisher`], called by the
//! [`crate::udf::FunctionRegistry`] for every registration, replacement and drop, from HTTP or
//! SQL) and for the SQL catalog's streams, tables and queries ([`SqlCatalogPublisher`], called
//! by [`crate::sql::catalog::Catalog`] for every change): what other nodes made arrives through
//! the registry's and the SQL service's `follow` methods.
//!
//! It is only the contract; the cluster side implements it (the binary's `engine_cluster`).
//! Every method blocks until this node has applied the catalog with the change.

use crate::error::EngineError;
use crate::sql::SqlError;
use crate::sql::catalog::{QueryDef, SourceDef};
use crate::task::Footprint;
use crate::task::registry::DeploymentRecord;
use bytes::Bytes;

use crate::udf::{ArtifactInfo, FunctionError, FunctionInfo};

/// Where the engine publishes its processors' changes.
pub trait CatalogPublisher: Send + Sync + 'static {
    /// The catalog's version of `name`, `None` if it has no such processor.
    fn version(&self, name: &str) -> Option<u64>;
    /// A deploy (`expected` `None`) or redeploy (`expected`: the catalog's version it
    /// replaces) made on this node, with its module and what one of its tasks takes from a
    /// node's Wasm budget.
    fn deployed(
        &self,
        record: &DeploymentRecord,
        module: &[u8],
        footprint: Footprint,
        expected: Option<u64>,
    ) -> Result<(), EngineError>;
    /// A pause or resume made on this node.
    fn paused(&self, name: &str, paused: bool) -> Result<(), EngineError>;
    /// A delete made on this node.
    fn deleted(&self, name: &str) -> Result<(), EngineError>;
}

/// Where the function registry publishes its changes.
pub trait FunctionPublisher: Send + Sync + 'static {
    /// A function registered (`replace`: or replaced) on this node; its module is served to
    /// peers by its hash. Refused with [`FunctionError::Exists`] if the cluster has another
    /// function of that name and `replace` is false.
    fn registered(&self, info: &FunctionInfo, replace: bool) -> Result<(), FunctionError>;
    /// A function dropped on this node ([`FunctionError::NotFound`] if the cluster has none).
    fn deleted(&self, name: &str) -> Result<(), FunctionError>;
    /// An artifact stored on this node under `info.name`: the cluster's name now points at
    /// its bytes (the last upload of a name wins); peers fetch them by hash.
    fn artifact_put(&self, info: &ArtifactInfo) -> Result<(), FunctionError>;
    /// The SHA-256 (hex) of the cluster's artifact `name`, if it names one.
    fn artifact_sha256(&self, name: &str) -> Option<String>;
    /// The bytes whose SHA-256 is `sha256` (hex) from another node, checked against it.
    fn fetch_module(&self, sha256: &str) -> Result<Bytes, FunctionError>;
}

/// Where the SQL catalog publishes its changes (the catalog's lock is held meanwhile).
/// `create`: the statement creates the name; refused with code `exists` when the cluster has
/// another stream, table or query of that name (made at another node meanwhile).
pub trait SqlCatalogPublisher: Send + Sync + 'static {
    fn source_put(&self, def: &SourceDef, create: bool) -> Result<(), SqlError>;
    fn source_removed(&self, name: &str) -> Result<(), SqlError>;
    fn query_put(&self, def: &QueryDef, create: bool) -> Result<(), SqlError>;
    fn query_removed(&self, id: &str) -> Result<(), SqlError>;
}

//! The cluster's catalog of processors as the engine sees it: on a cluster node every change
//! made through this node's engine (deploy, redeploy, pause, resume, delete — from the HTTP
//! API or from SQL) is published to the replicated catalog, and deployments made elsewhere
//! arrive through [`crate::Engine::install`] / [`crate::Engine::uninstall`]. A single node
//! has no catalog.
//!
//! It is only the contract; the cluster side implements it (the binary's `engine_cluster`).
//! Every method blocks until this node has applied the catalog with the change.

use crate::error::EngineError;
use crate::task::Footprint;
use crate::task::registry::DeploymentRecord;

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

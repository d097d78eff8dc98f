//! Tests of the metadata plane: the state machine and the controller's decisions (unit tests
//! and property tests of the invariants; the catalog and task placement in `catalog.rs` and
//! `placement.rs`; functions and the SQL catalog in `sql_catalog.rs`), the storage
//! (openraft's conformance suite and a reopen from disk), and an in-process cluster over the
//! simulated network.

mod catalog;
mod cluster;
mod placement;
mod reassignment;
mod sql_catalog;
mod state;
mod storage;

//! Streaming SQL in the style of ksqlDB: statements are parsed (`parser`, on sqlparser),
//! resolved against the catalog of streams and tables (`catalog`) into plans (`plan`), and
//! persistent queries run as ordinary processors — one task per input partition, with state
//! stores and changelogs — whose logic is a compiled plan (`runtime`) instead of a Wasm
//! component. Scalar and aggregate UDFs are Wasm components called in batches through
//! `crate::udf`.

pub mod aggregate;
pub mod ast;
pub mod catalog;
pub mod error;
pub mod expr;
pub mod functions;
pub mod limits;
pub mod loader;
pub mod parser;
pub mod plan;
pub mod runtime;
pub mod service;
pub mod types;
pub mod validate;

pub use error::{Position, SqlError};
pub use loader::{NoFunctions, SqlLoader};
pub use service::{
    FunctionAdmin, FunctionListing, PushQuery, QueryStart, ScriptError, SqlService, StatementResult,
};

#[cfg(test)]
mod tests;

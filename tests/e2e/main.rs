//! End-to-end tests: each starts the real `weir` binary on a free port with a temporary data
//! directory and talks to it over HTTP and through the CLI, as a user would.

mod auth;
mod cli;
mod common;
mod crash;
mod errors;
mod functions;
mod kafka;
mod maintenance;
mod processors;
mod records;
mod sql;
mod topics;

//! End-to-end tests: each starts the real `weir` binary on a free port with a temporary data
//! directory and talks to it over HTTP and through the CLI, as a user would.

mod access;
mod auth;
mod chaos;
mod cli;
mod cluster;
mod cluster_auth;
mod cluster_groups;
mod cluster_ops;
mod cluster_processors;
mod cluster_queries;
mod cluster_sql;
mod common;
mod connections;
mod console;
mod crash;
mod errors;
mod exactly_once;
mod functions;
mod internal_topics;
mod kafka;
mod kafka_admin;
mod limits;
mod maintenance;
mod membership;
mod partitions;
mod processors;
mod records;
mod replication;
mod secure;
mod sql;
#[path = "../../broker/src/net/test_pki.rs"]
mod test_pki;
mod tls;
mod topics;
mod transactions;
mod uploads;

//! The `weir` command line (clap derive): `serve` runs a node; `topic`, `produce`,
//! `consume`, `deploy`, `processor`, `sql`, `function` and `artifact` talk to a running
//! node's HTTP API at `--url` (env `WEIR_URL`), with the credentials of `--user`/`--password`
//! or `--token` when the node runs with `--auth`; `user`, `token` and `acl` manage them.

pub mod access;
pub mod client;
pub mod cluster;
pub mod consume;
pub mod deploy;
pub mod function;
pub mod output;
pub mod processor;
pub mod produce;
pub mod serve;
pub mod sql;
pub mod topic;
pub mod upload;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use weir_broker::FsyncPolicy;

use self::client::Client;

/// Weir: a partitioned log and a Wasm stream engine in one server.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, propagate_version = true)]
pub struct Cli {
    /// Base URL of the Weir server's HTTP API
    #[arg(
        long,
        global = true,
        env = "WEIR_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// PEM CA certificate to trust for an https:// --url (e.g. the server's own CA)
    #[arg(long, global = true, env = "WEIR_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub auth: client::AuthArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a Weir node: the log and its HTTP API
    Serve(Box<serve::ServeArgs>),
    /// Create, list, describe and delete topics
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Send records read from stdin (one per line) to a topic
    Produce(produce::ProduceArgs),
    /// Print a topic's records
    Consume(consume::ConsumeArgs),
    /// Deploy a processor (a WebAssembly component) over input topics
    Deploy(deploy::DeployArgs),
    /// List, describe, pause, resume and delete processors; query their state
    #[command(subcommand)]
    Processor(processor::ProcessorCommand),
    /// Run SQL statements: an interactive shell, or -e STATEMENTS / -f FILE
    Sql(sql::SqlArgs),
    /// Create, list and delete user-defined SQL functions (WebAssembly components)
    #[command(subcommand)]
    Function(function::FunctionCommand),
    /// Upload artifacts (files the server keeps by name)
    #[command(subcommand)]
    Artifact(function::ArtifactCommand),
    /// Create, list and delete users (for servers run with --auth)
    #[command(subcommand)]
    User(access::UserCommand),
    /// Create, list and revoke bearer tokens
    #[command(subcommand)]
    Token(access::TokenCommand),
    /// Add, list and remove ACLs (topic and group name prefixes per user)
    #[command(subcommand)]
    Acl(access::AclCommand),
    /// Show the cluster: its id, this node and every peer
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

/// `--fsync` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FsyncArg {
    /// fdatasync before acknowledging each append: nothing acknowledged is lost
    Batch,
    /// fdatasync on an interval: a power loss may lose the last interval
    Interval,
    /// Never fsync; the OS writes back when it chooses
    Os,
}

impl From<FsyncArg> for FsyncPolicy {
    fn from(a: FsyncArg) -> Self {
        match a {
            FsyncArg::Batch => FsyncPolicy::Batch,
            FsyncArg::Interval => FsyncPolicy::Interval,
            FsyncArg::Os => FsyncPolicy::Os,
        }
    }
}

impl From<FsyncPolicy> for FsyncArg {
    fn from(p: FsyncPolicy) -> Self {
        match p {
            FsyncPolicy::Batch => FsyncArg::Batch,
            FsyncPolicy::Interval => FsyncArg::Interval,
            FsyncPolicy::Os => FsyncArg::Os,
        }
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> Result<()> {
    let client = || {
        Client::with_ca_cert(&cli.url, cli.ca_cert.as_deref()).and_then(|c| c.with_auth(&cli.auth))
    };
    match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Topic(command) => topic::run(&client()?, command).await,
        Command::Produce(args) => produce::run(&client()?, args).await,
        Command::Consume(args) => consume::run(&client()?, args).await,
        Command::Deploy(args) => deploy::run(&client()?, args).await,
        Command::Processor(command) => processor::run(&client()?, command).await,
        Command::Sql(args) => sql::run(&client()?, args).await,
        Command::Function(command) => function::run(&client()?, command).await,
        Command::Artifact(command) => function::run_artifact(&client()?, command).await,
        Command::User(command) => access::run_user(&client()?, command).await,
        Command::Token(command) => access::run_token(&client()?, command).await,
        Command::Acl(command) => access::run_acl(&client()?, command).await,
        Command::Cluster(command) => cluster::run(&client()?, command).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn offset_conflicts_with_from_beginning() {
        let r = Cli::try_parse_from(["weir", "consume", "t", "--offset", "3", "--from-beginning"]);
        assert!(r.is_err());
        let r = Cli::try_parse_from(["weir", "consume", "t", "--offset", "-1"]);
        assert!(r.is_err());
    }

    #[test]
    fn sql_flags() {
        let cli = Cli::try_parse_from([
            "weir",
            "sql",
            "-e",
            "SHOW STREAMS;",
            "--property",
            "auto.offset.reset=earliest",
            "--property",
            "a=b=c",
            "--output",
            "json",
        ])
        .unwrap();
        let Command::Sql(args) = cli.command else {
            panic!("not sql")
        };
        assert_eq!(args.execute.as_deref(), Some("SHOW STREAMS;"));
        assert_eq!(
            args.properties,
            [
                ("auto.offset.reset".to_string(), "earliest".to_string()),
                ("a".to_string(), "b=c".to_string())
            ]
        );
        assert_eq!(args.output, sql::SqlOutput::Json);
        assert!(Cli::try_parse_from(["weir", "sql", "-e", "X;", "-f", "x.sql"]).is_err());
        assert!(Cli::try_parse_from(["weir", "sql", "--property", "novalue"]).is_err());
        let cli = Cli::try_parse_from(["weir", "function", "create", "f", "f.wasm", "--replace"])
            .unwrap();
        assert!(matches!(
            cli.command,
            Command::Function(function::FunctionCommand::Create { replace: true, .. })
        ));
        assert!(Cli::try_parse_from(["weir", "artifact", "put", "a"]).is_err());
    }
}

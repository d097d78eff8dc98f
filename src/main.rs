//! The `weir` binary: parses the command line, runs the command on a tokio runtime, and
//! turns any failure into `error: <one line>` on stderr and exit status 1.

mod cli;
mod engine_cluster;
mod http;
mod node;
mod node_cluster;
#[cfg(test)]
#[path = "../broker/src/net/test_pki.rs"]
mod test_pki;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // One TLS crypto provider for the process (the server's listeners and the CLI's HTTPS
    // client): ring. Fails only if one is installed already, which is fine.
    weir_broker::net::tls::install_default_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cli::run(cli));
    // Do not wait for leftover tasks (e.g. a stdin reader blocked on a terminal).
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// Joins an error and its causes with ": ", skipping a cause whose text the message already
/// contains (many errors repeat their source in their own message).
fn one_line(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_skips_repeated_causes() {
        let io = std::io::Error::other("disk on fire");
        let e = anyhow::Error::new(io)
            .context("write failed: disk on fire")
            .context("saving");
        assert_eq!(one_line(&e), "saving: write failed: disk on fire");
        let e = anyhow::anyhow!("two\nlines");
        assert_eq!(one_line(&e), "two lines");
    }
}

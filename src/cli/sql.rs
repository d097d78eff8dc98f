//! `weir sql`: streaming SQL against a Weir server. `-e "…"` runs statements, `-f FILE` runs
//! a script (stdin when it is not a terminal), and with neither an interactive shell starts
//! ([`shell`]). Statements are split on the client ([`split`]); `SET 'k'='v';` and
//! `UNSET 'k';` change the session's properties locally; a statement whose first keyword is
//! `SELECT` streams its rows from `POST /v1/query` (NDJSON) until the server ends it or Ctrl-C;
//! every other statement goes to `POST /v1/sql`. Results print as bordered tables
//! ([`render`]) or, with `--output json`, as one JSON object per line.

mod render;
mod shell;
mod split;

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use self::render::StreamTable;
use self::split::{Local, Open, Statement, first_keyword, local_command, split};
use super::client::{ApiFailure, Client};
use super::deploy::parse_pair;
use super::output::is_broken_pipe;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SqlOutput {
    /// Aligned tables and messages
    Table,
    /// One JSON object per line: each result of /v1/sql, each line of a query's stream
    Json,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// Run these statements (separated by ';') and exit
    #[arg(
        short = 'e',
        long = "execute",
        value_name = "SQL",
        conflicts_with = "file"
    )]
    pub execute: Option<String>,
    /// Run the statements of a script file ('-' for stdin) and exit
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A property sent with every statement (e.g. auto.offset.reset=earliest); repeat for several
    #[arg(long = "property", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub properties: Vec<(String, String)>,
    /// Output format
    #[arg(long, value_enum, default_value_t = SqlOutput::Table)]
    pub output: SqlOutput,
}

pub async fn run(client: &Client, args: SqlArgs) -> Result<()> {
    let mut session = Session {
        client: client.clone(),
        output: args.output,
        properties: args.properties.into_iter().collect(),
        interactive: false,
        sink: Sink::Stdout,
    };
    if let Some(sql) = &args.execute {
        return session.run_script(sql).await;
    }
    let script = match &args.file {
        Some(path) if path.as_os_str() != "-" => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        Some(_) => read_stdin()?,
        None if io::stdin().is_terminal() => {
            session.interactive = true;
            return shell::run(&mut session).await;
        }
        None => read_stdin()?,
    };
    session.run_script(&script).await
}

fn read_stdin() -> Result<String> {
    let mut text = String::new();
    io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the script from stdin")?;
    Ok(text)
}

/// Whether to go on after a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop without an error (stdout closed, or Ctrl-C ended a query in a script).
    Quit,
}

/// Where results go.
#[derive(Debug, Clone, Default)]
enum Sink {
    #[default]
    Stdout,
    /// Collected in memory (tests).
    #[cfg(test)]
    Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>),
}

impl Sink {
    /// Writes and flushes.
    fn write(&self, text: &str) -> io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut stdout = io::stdout().lock();
                stdout.write_all(text.as_bytes())?;
                stdout.flush()
            }
            #[cfg(test)]
            Sink::Buffer(b) => {
                b.lock().unwrap().extend_from_slice(text.as_bytes());
                Ok(())
            }
        }
    }
}

/// Resolves on Ctrl-C (never, if the handler cannot be installed).
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A connection to the server with its session properties.
pub struct Session {
    client: Client,
    output: SqlOutput,
    properties: BTreeMap<String, String>,
    /// In the shell, Ctrl-C cancels the statement running and the shell goes on.
    interactive: bool,
    sink: Sink,
}

impl Session {
    /// The server's URL, for the shell's greeting.
    pub fn url(&self) -> String {
        self.client.url(&[]).to_string()
    }

    /// Runs every statement of `script` in order; stops at the first error.
    async fn run_script(&mut self, script: &str) -> Result<()> {
        let split = split(script);
        match split.open {
            Some(Open::Quote(q)) => bail!("unterminated quoted string (missing {q})"),
            Some(Open::Comment) => bail!("unterminated comment (missing */)"),
            None => {}
        }
        let mut statements = split.statements;
        // The last statement may omit its `;`.
        if let Some(mut last) = split.rest {
            last.text.push(';');
            statements.push(last);
        }
        let several = statements.len() > 1;
        for statement in &statements {
            match self.execute(statement).await {
                Ok(Flow::Continue) => {}
                Ok(Flow::Quit) => break,
                Err(e) => return Err(locate(e, statement, several)),
            }
        }
        Ok(())
    }

    /// Runs one statement.
    pub async fn execute(&mut self, statement: &Statement) -> Result<Flow> {
        if let Some(local) = local_command(&statement.text) {
            let message = match local.map_err(|e| anyhow!(e))? {
                Local::Set(name, value) => {
                    let m = format!("Property '{name}' set to '{value}'\n");
                    self.properties.insert(name, value);
                    m
                }
                Local::Unset(name) => match self.properties.remove(&name) {
                    Some(_) => format!("Property '{name}' unset\n"),
                    None => format!("Property '{name}' was not set\n"),
                },
            };
            if self.output == SqlOutput::Table {
                return self.write(&message);
            }
            return Ok(Flow::Continue);
        }
        if first_keyword(&statement.text) == "SELECT" {
            self.query(&statement.text).await
        } else {
            self.statement(&statement.text).await
        }
    }

    fn body(&self, sql: &str) -> Value {
        json!({"sql": sql, "properties": self.properties})
    }

    /// Prints `text`; a closed stdout quits.
    fn write(&self, text: &str) -> Result<Flow> {
        match self.sink.write(text) {
            Ok(()) => Ok(Flow::Continue),
            Err(e) if is_broken_pipe(&e) => Ok(Flow::Quit),
            Err(e) => Err(e).context("cannot write to stdout"),
        }
    }

    /// What Ctrl-C during a statement means.
    fn cancelled(&self, query: bool) -> Result<Flow> {
        if self.interactive {
            Ok(Flow::Continue)
        } else if query {
            Ok(Flow::Quit)
        } else {
            bail!("interrupted")
        }
    }

    /// `POST /v1/sql` with one statement; prints each result.
    async fn statement(&mut self, sql: &str) -> Result<Flow> {
        let request = self.client.post(&["v1", "sql"]).json(&self.body(sql));
        let answer: Value = tokio::select! {
            r = self.client.json(request) => r?,
            () = interrupted() => {
                if self.interactive {
                    eprintln!("cancelled (the server may still complete the statement)");
                }
                return self.cancelled(false);
            }
        };
        let Some(results) = answer.get("results").and_then(Value::as_array) else {
            bail!("unexpected response from the server: no \"results\"");
        };
        for result in results {
            let text = match self.output {
                SqlOutput::Table => render::result(result),
                SqlOutput::Json => format!("{result}\n"),
            };
            if self.write(&text)? == Flow::Quit {
                return Ok(Flow::Quit);
            }
        }
        Ok(Flow::Continue)
    }

    /// `POST /v1/query`: prints the rows as they arrive until the server ends the stream or
    /// Ctrl-C (which closes the connection, ending the query on the server).
    async fn query(&mut self, sql: &str) -> Result<Flow> {
        let request = self.client.post(&["v1", "query"]).json(&self.body(sql));
        let (tx, mut rx) = mpsc::channel::<Result<Vec<u8>>>(256);
        let client = self.client.clone();
        // Reads the stream; aborting it (on Ctrl-C or any return) drops the connection.
        let reader = AbortOnDrop(tokio::spawn(async move {
            let response = match client.send(request).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let lines = client.ndjson_lines(response);
            let mut lines = std::pin::pin!(lines);
            while let Some(line) = lines.next().await {
                let failed = line.is_err();
                if tx.send(line).await.is_err() || failed {
                    return;
                }
            }
        }));
        let mut table: Option<StreamTable> = None;
        let result = loop {
            let line = tokio::select! {
                line = rx.recv() => line,
                () = interrupted() => {
                    drop(reader);
                    // On a terminal, the border overwrites the `^C` the terminal echoed.
                    let cr = if io::stdout().is_terminal() { "\r" } else { "" };
                    if let Some(t) = &table
                        && self.write(&format!(
                            "{cr}{}Query terminated after {} row{}\n",
                            t.footer(),
                            t.rows(),
                            if t.rows() == 1 { "" } else { "s" }
                        ))? == Flow::Quit
                    {
                        return Ok(Flow::Quit);
                    }
                    return self.cancelled(true);
                }
            };
            let Some(line) = line else {
                break Ok(Flow::Continue);
            };
            match line.and_then(|l| self.query_line(&l, &mut table)) {
                Ok(Flow::Continue) => {}
                other => break other,
            }
        };
        drop(reader);
        if let Some(t) = &table
            && !matches!(result, Ok(Flow::Quit))
            && self.write(&t.footer())? == Flow::Quit
        {
            return Ok(Flow::Quit);
        }
        result
    }

    /// Handles one line of a query's stream: `{"header":{"columns":[…]}}`, `{"row":[…]}` or
    /// `{"error":{…}}` (other lines are passed through with `--output json`, else ignored).
    fn query_line(&self, line: &[u8], table: &mut Option<StreamTable>) -> Result<Flow> {
        let value: Value = serde_json::from_slice(line).map_err(|e| {
            anyhow!(
                "unexpected line in the query stream ({e}): {}",
                String::from_utf8_lossy(line)
            )
        })?;
        if value.get("error").is_some() {
            return Err(ApiFailure::from_json(StatusCode::OK, line)
                .map(anyhow::Error::from)
                .unwrap_or_else(|| anyhow!("query failed: {}", value["error"])));
        }
        if self.output == SqlOutput::Json {
            return self.write(&format!("{}\n", String::from_utf8_lossy(line)));
        }
        if let Some(header) = value.get("header") {
            let columns: Vec<String> = header
                .get("columns")
                .and_then(Value::as_array)
                .map(|c| {
                    c.iter()
                        .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let t = StreamTable::new(&columns);
            let text = t.header(&columns);
            *table = Some(t);
            return self.write(&text);
        }
        if let Some(row) = value.get("row") {
            let values = render::row_values(row);
            let t = table.get_or_insert_with(|| StreamTable::new(&[]));
            let text = t.row(&values);
            return self.write(&text);
        }
        Ok(Flow::Continue)
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Puts a failed statement's error in context: a server's `line`/`column` become positions
/// in the script (or shell input); without them, a script of several statements names the
/// line where the failed statement starts.
pub fn locate(e: anyhow::Error, statement: &Statement, several: bool) -> anyhow::Error {
    if let Some(f) = e.downcast_ref::<ApiFailure>()
        && let Some(line) = f.line
    {
        let (line, column) = statement.position_in_source(line, f.column.unwrap_or(1));
        return match f.column {
            Some(_) => anyhow!("line {line}, column {column}: {}", f.message),
            None => anyhow!("line {line}: {}", f.message),
        };
    }
    if several {
        e.context(format!("statement at line {}", statement.line))
    } else {
        e
    }
}

#[cfg(test)]
mod tests;

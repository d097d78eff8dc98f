//! `weir produce TOPIC`: reads records from stdin, one per line, and sends them to the topic
//! in batches (up to 1,000 records or about 1 MiB per request; a batch goes out as soon as
//! stdin has nothing more ready, so interactive input is sent line by line). Prints a
//! summary to stderr.

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use clap::builder::NonEmptyStringValueParser;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use super::client::Client;

/// Most records per request.
const BATCH_RECORDS: usize = 1_000;
/// A batch is sent once its keys and values reach about this size.
const BATCH_BYTES: usize = 1024 * 1024;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to produce to
    pub topic: String,
    /// Split each line at the first SEP into key and value (lines without SEP get no key)
    #[arg(long, short = 'K', value_name = "SEP", value_parser = NonEmptyStringValueParser::new())]
    pub key_separator: Option<String>,
    /// Send every record to this partition (default: by key, or spread when unkeyed)
    #[arg(long, short = 'p', value_name = "P")]
    pub partition: Option<i32>,
}

#[derive(Debug, Serialize, PartialEq)]
struct OutRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<i32>,
}

impl OutRecord {
    fn bytes(&self) -> usize {
        self.key.as_ref().map_or(0, String::len) + self.value.len()
    }
}

#[derive(Serialize)]
struct ProduceBody<'a> {
    records: &'a [OutRecord],
}

#[derive(Deserialize)]
struct ProduceAnswer {
    offsets: Vec<serde_json::Value>,
}

/// Splits `line` into key and value at the first `sep`.
fn split_line(line: String, sep: Option<&str>, partition: Option<i32>) -> OutRecord {
    if let Some(sep) = sep
        && let Some((key, value)) = line.split_once(sep)
    {
        return OutRecord {
            key: Some(key.to_string()),
            value: value.to_string(),
            partition,
        };
    }
    OutRecord {
        key: None,
        value: line,
        partition,
    }
}

/// Reads stdin line by line into `tx` (without the line ending).
async fn read_lines(tx: mpsc::Sender<Result<String>>) {
    let mut reader = BufReader::new(tokio::io::stdin());
    let mut buf = Vec::new();
    let mut number = 0u64;
    loop {
        buf.clear();
        let line = match reader.read_until(b'\n', &mut buf).await {
            Ok(0) => return,
            Ok(_) => {
                number += 1;
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                }
                String::from_utf8(std::mem::take(&mut buf))
                    .map_err(|_| anyhow!("line {number} of stdin is not valid UTF-8"))
            }
            Err(e) => Err(anyhow!("cannot read stdin: {e}")),
        };
        let failed = line.is_err();
        if tx.send(line).await.is_err() || failed {
            return;
        }
    }
}

pub async fn run(client: &Client, args: ProduceArgs) -> Result<()> {
    // Fail fast on an unknown topic, before waiting for stdin.
    client
        .send(client.get(&["v1", "topics", &args.topic]))
        .await?;
    let (tx, mut rx) = mpsc::channel(8 * BATCH_RECORDS);
    tokio::spawn(read_lines(tx));

    let sep = args.key_separator.as_deref();
    let mut records = 0u64;
    let mut bytes = 0u64;
    let result: Result<()> = async {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![split_line(first?, sep, args.partition)];
            let mut batch_bytes = batch[0].bytes();
            while batch.len() < BATCH_RECORDS && batch_bytes < BATCH_BYTES {
                match rx.try_recv() {
                    Ok(line) => {
                        let record = split_line(line?, sep, args.partition);
                        batch_bytes += record.bytes();
                        batch.push(record);
                    }
                    Err(_) => break,
                }
            }
            let request = client
                .post(&["v1", "topics", &args.topic, "records"])
                .json(&ProduceBody { records: &batch });
            let answer: ProduceAnswer = client.json(request).await?;
            if answer.offsets.len() != batch.len() {
                bail!(
                    "server acknowledged {} of {} records",
                    answer.offsets.len(),
                    batch.len()
                );
            }
            records += batch.len() as u64;
            bytes += batch_bytes as u64;
        }
        Ok(())
    }
    .await;

    let plural = if records == 1 { "" } else { "s" };
    let summary = format!(
        "produced {records} record{plural} ({bytes} bytes) to topic {}",
        args.topic
    );
    match result {
        Ok(()) => {
            eprintln!("{summary}");
            Ok(())
        }
        Err(e) if records > 0 => Err(e).with_context(|| format!("{summary}, then failed")),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_separator() {
        let r = split_line("k:v:w".into(), Some(":"), None);
        assert_eq!(
            r,
            OutRecord {
                key: Some("k".into()),
                value: "v:w".into(),
                partition: None
            }
        );
        let r = split_line("no separator".into(), Some(":"), Some(2));
        assert_eq!(
            r,
            OutRecord {
                key: None,
                value: "no separator".into(),
                partition: Some(2)
            }
        );
        let r = split_line("a::b".into(), Some("::"), None);
        assert_eq!(r.key.as_deref(), Some("a"));
        assert_eq!(r.value, "b");
        let r = split_line("k:v".into(), None, None);
        assert_eq!(r.key, None);
        assert_eq!(r.value, "k:v");
        assert_eq!(
            split_line(":v".into(), Some(":"), None).key.as_deref(),
            Some("")
        );
    }

    #[test]
    fn records_serialize_without_absent_fields() {
        let r = split_line("v".into(), None, None);
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"value":"v"}"#);
        assert_eq!(r.bytes(), 1);
    }
}

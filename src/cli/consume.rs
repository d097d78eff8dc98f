//! `weir consume TOPIC`: prints a topic's records. Without `--follow` it reads each partition
//! (or the one given) from the start offset up to the end offset seen when it started,
//! partition 0 first, then 1, ...; with `--follow` it streams every partition at once and
//! keeps waiting for new records. `--max N` stops after N records in total.

use std::io::{self, BufWriter, Write};

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use weir_broker::TopicDescription;

use super::client::Client;
use super::output::is_broken_pipe;
use crate::http::records::Headers;

/// Records per request when reading pages.
const PAGE_RECORDS: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per record: partition, offset, key, value, timestamp, headers
    Json,
    /// Only the values, one per line (null values print as empty lines)
    Value,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read
    pub topic: String,
    /// Read only this partition (default: all)
    #[arg(long, short = 'p', value_name = "P")]
    pub partition: Option<i32>,
    /// Start at this offset in each partition read
    #[arg(long, short = 'o', value_name = "N", conflicts_with = "from_beginning",
          value_parser = clap::value_parser!(i64).range(0..))]
    pub offset: Option<i64>,
    /// Start at the beginning of each partition (the default)
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop after N records in total
    #[arg(long, short = 'n', value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max: Option<u64>,
    /// Keep waiting for new records
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only records of committed transactions, below each partition's last stable offset
    /// (as a Kafka consumer with isolation.level=read_committed)
    #[arg(long)]
    pub read_committed: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

/// A record as read from the API and as printed by `--format json`.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    #[serde(default)]
    partition: i32,
    offset: i64,
    key: Option<String>,
    value: Option<String>,
    timestamp: i64,
    #[serde(default)]
    headers: Headers,
}

#[derive(Debug, Deserialize)]
struct Page {
    records: Vec<Record>,
    next_offset: i64,
}

/// Where to read in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    partition: i32,
    start: i64,
    /// End offset seen at start (exclusive).
    end: i64,
}

/// Picks the partitions and start offsets to read.
fn plan(d: &TopicDescription, partition: Option<i32>, offset: Option<i64>) -> Result<Vec<Range>> {
    if let Some(p) = partition
        && !d.partition_offsets.iter().any(|info| info.partition == p)
    {
        bail!("topic '{}' has no partition {p}", d.topic.name);
    }
    let mut ranges: Vec<Range> = d
        .partition_offsets
        .iter()
        .filter(|info| partition.is_none_or(|p| p == info.partition))
        .map(|info| Range {
            partition: info.partition,
            start: offset.unwrap_or(info.start_offset),
            end: info.end_offset,
        })
        .collect();
    ranges.sort_by_key(|r| r.partition);
    Ok(ranges)
}

/// Writes records to stdout in the chosen format.
struct Printer {
    out: BufWriter<io::Stdout>,
    format: Format,
}

impl Printer {
    fn new(format: Format) -> Self {
        Printer {
            out: BufWriter::new(io::stdout()),
            format,
        }
    }

    fn write(&mut self, record: &Record) -> io::Result<()> {
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut self.out, record)?;
                self.out.write_all(b"\n")
            }
            Format::Value => {
                self.out
                    .write_all(record.value.as_deref().unwrap_or("").as_bytes())?;
                self.out.write_all(b"\n")
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Why printing stopped.
enum Stop {
    /// Reached `--max` or stdout closed: a normal end.
    Done,
    Failed(anyhow::Error),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        if is_broken_pipe(&e) {
            Stop::Done
        } else {
            Stop::Failed(e.into())
        }
    }
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Failed(e)
    }
}

pub async fn run(client: &Client, args: ConsumeArgs) -> Result<()> {
    let description: TopicDescription = client
        .json(client.get(&["v1", "topics", &args.topic]))
        .await?;
    let ranges = plan(&description, args.partition, args.offset)?;
    let mut printer = Printer::new(args.format);
    let result = if args.follow {
        follow(client, &args, &ranges, &mut printer).await
    } else {
        read_ranges(client, &args, &ranges, &mut printer).await
    };
    let result = match result {
        Ok(()) => printer.flush().map_err(Stop::from),
        Err(e) => {
            let _ = printer.flush();
            Err(e)
        }
    };
    match result {
        Ok(()) | Err(Stop::Done) => Ok(()),
        Err(Stop::Failed(e)) => Err(e),
    }
}

/// The API's `isolation` query value.
fn isolation(committed: bool) -> &'static str {
    if committed {
        "read_committed"
    } else {
        "read_uncommitted"
    }
}

/// Reads each range in turn, page by page, up to its end offset.
async fn read_ranges(
    client: &Client,
    args: &ConsumeArgs,
    ranges: &[Range],
    printer: &mut Printer,
) -> Result<(), Stop> {
    let mut remaining = args.max.unwrap_or(u64::MAX);
    for range in ranges {
        let partition = range.partition.to_string();
        let mut offset = range.start;
        while offset < range.end && remaining > 0 {
            let max = remaining.min(PAGE_RECORDS);
            let request = client.get_query(
                &[
                    "v1",
                    "topics",
                    &args.topic,
                    "partitions",
                    &partition,
                    "records",
                ],
                &[
                    ("offset", offset.to_string()),
                    ("max", max.to_string()),
                    ("isolation", isolation(args.read_committed).to_string()),
                ],
            );
            let page: Page = client.json(request).await?;
            for mut record in page.records {
                if record.offset >= range.end || remaining == 0 {
                    break;
                }
                record.partition = range.partition;
                printer.write(&record)?;
                remaining -= 1;
            }
            if page.next_offset <= offset {
                break; // no progress: nothing more to read
            }
            offset = page.next_offset;
        }
        if remaining == 0 {
            break;
        }
    }
    Ok(())
}

enum Event {
    Record(Record),
    Ended,
    Failed(anyhow::Error),
}

/// Streams every range concurrently and prints records as they arrive.
async fn follow(
    client: &Client,
    args: &ConsumeArgs,
    ranges: &[Range],
    printer: &mut Printer,
) -> Result<(), Stop> {
    let (tx, mut rx) = mpsc::channel::<Event>(1024);
    for range in ranges {
        let task = follow_partition(
            client.clone(),
            args.topic.clone(),
            *range,
            args.max,
            args.read_committed,
            tx.clone(),
        );
        tokio::spawn(task);
    }
    drop(tx);
    let mut remaining = args.max.unwrap_or(u64::MAX);
    let mut open = ranges.len();
    while remaining > 0 {
        if open == 0 {
            printer.flush()?;
            eprintln!("the server ended the stream (topic deleted or server shutting down)");
            break;
        }
        let Some(event) = rx.recv().await else { break };
        match event {
            Event::Record(record) => {
                printer.write(&record)?;
                remaining -= 1;
                if rx.is_empty() {
                    printer.flush()?;
                }
            }
            Event::Ended => open -= 1,
            Event::Failed(e) => return Err(Stop::Failed(e)),
        }
    }
    Ok(())
}

/// Follows one partition, sending each record (then `Ended`, or `Failed`) to `tx`.
async fn follow_partition(
    client: Client,
    topic: String,
    range: Range,
    max: Option<u64>,
    committed: bool,
    tx: mpsc::Sender<Event>,
) {
    let event = match stream_partition(&client, &topic, range, max, committed, &tx).await {
        Ok(()) => Event::Ended,
        Err(e) => Event::Failed(e),
    };
    let _ = tx.send(event).await;
}

async fn stream_partition(
    client: &Client,
    topic: &str,
    range: Range,
    max: Option<u64>,
    committed: bool,
    tx: &mpsc::Sender<Event>,
) -> Result<()> {
    let partition = range.partition.to_string();
    let mut query = vec![
        ("offset", range.start.to_string()),
        ("follow", "true".to_string()),
        ("isolation", isolation(committed).to_string()),
    ];
    if let Some(max) = max {
        query.push(("max", max.to_string()));
    }
    let request = client.get_query(
        &["v1", "topics", topic, "partitions", &partition, "records"],
        &query,
    );
    let response = client.send(request).await?;
    let lines = client.ndjson_lines(response);
    let mut lines = std::pin::pin!(lines);
    while let Some(line) = lines.next().await {
        let mut record: Record = serde_json::from_slice(&line?)
            .map_err(|e| anyhow::anyhow!("unexpected record in the stream: {e}"))?;
        record.partition = range.partition;
        if tx.send(Event::Record(record)).await.is_err() {
            return Ok(()); // the printer is done
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_broker::{PartitionInfo, TopicInfo};

    fn description() -> TopicDescription {
        let info: TopicInfo = serde_json::from_value(serde_json::json!({
            "name": "t", "partitions": 2, "compacted": false, "retention_ms": null,
            "retention_bytes": null, "fsync": "batch", "segment_bytes": 1024,
            "segment_ms": 1, "delete_retention_ms": 0
        }))
        .unwrap();
        let p = |partition, start_offset, end_offset| PartitionInfo {
            partition,
            start_offset,
            end_offset,
            size_bytes: 0,
            segments: 1,
            status: Default::default(),
            error: None,
            replication: None,
        };
        TopicDescription {
            topic: info,
            partition_offsets: vec![p(1, 5, 9), p(0, 2, 4)],
        }
    }

    #[test]
    fn plan_reads_every_partition_from_its_start() {
        let ranges = plan(&description(), None, None).unwrap();
        assert_eq!(
            ranges,
            vec![
                Range {
                    partition: 0,
                    start: 2,
                    end: 4
                },
                Range {
                    partition: 1,
                    start: 5,
                    end: 9
                }
            ]
        );
    }

    #[test]
    fn plan_applies_offset_and_partition() {
        let ranges = plan(&description(), Some(1), Some(7)).unwrap();
        assert_eq!(
            ranges,
            vec![Range {
                partition: 1,
                start: 7,
                end: 9
            }]
        );
        let err = plan(&description(), Some(2), None).unwrap_err();
        assert_eq!(err.to_string(), "topic 't' has no partition 2");
    }

    #[test]
    fn records_print_in_a_fixed_field_order() {
        let r: Record = serde_json::from_str(
            r#"{"offset":1,"key":null,"value":"v","timestamp":3,"headers":{"b":"1","a":null}}"#,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"partition":0,"offset":1,"key":null,"value":"v","timestamp":3,"headers":{"b":"1","a":null}}"#
        );
    }
}

//! `weir topic create|list|describe|delete`: topic administration through the HTTP API,
//! printed as aligned tables.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Deserialize;
use weir_broker::{PartitionStatus, TopicDescription, TopicInfo, TopicSpec};

use super::FsyncArg;
use super::client::Client;
use super::output::{fields, print, table};

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic
    Create(CreateArgs),
    /// List topics
    List,
    /// Show a topic's settings and its partitions' offsets
    Describe {
        /// Topic name
        name: String,
    },
    /// Delete a topic and all its data
    Delete {
        /// Topic name
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Topic name
    pub name: String,
    /// Number of partitions
    #[arg(long, short = 'p', default_value_t = 1)]
    pub partitions: i32,
    /// Keep only the latest record per key (log compaction)
    #[arg(long)]
    pub compacted: bool,
    /// Delete closed segments older than this (ms)
    #[arg(long, value_name = "MS")]
    pub retention_ms: Option<i64>,
    /// Delete the oldest closed segments beyond this size per partition (bytes)
    #[arg(long, value_name = "B")]
    pub retention_bytes: Option<i64>,
    /// Durability for this topic (server default when absent)
    #[arg(long, value_enum)]
    pub fsync: Option<FsyncArg>,
    /// Roll segments at this size (server default when absent)
    #[arg(long, value_name = "B")]
    pub segment_bytes: Option<u64>,
    /// Roll segments at this age (server default when absent)
    #[arg(long, value_name = "MS")]
    pub segment_ms: Option<i64>,
    /// Compacted topics: keep tombstones this long (server default when absent)
    #[arg(long, value_name = "MS")]
    pub delete_retention_ms: Option<i64>,
    /// Cluster: copies of each partition (default min(3, nodes))
    #[arg(long, value_name = "N")]
    pub replicas: Option<u16>,
    /// Cluster: in-sync copies an acks=all write needs (default min(2, replicas))
    #[arg(long, value_name = "N")]
    pub min_insync: Option<u16>,
}

impl CreateArgs {
    fn spec(&self) -> TopicSpec {
        TopicSpec {
            compacted: self.compacted,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            fsync: self.fsync.map(Into::into),
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            delete_retention_ms: self.delete_retention_ms,
            replication_factor: self.replicas,
            min_insync_replicas: self.min_insync,
            ..TopicSpec::new(self.name.clone(), self.partitions)
        }
    }
}

#[derive(Deserialize)]
struct TopicList {
    topics: Vec<TopicInfo>,
}

pub async fn run(client: &Client, command: TopicCommand) -> Result<()> {
    match command {
        TopicCommand::Create(args) => {
            let info: TopicInfo = client
                .json(client.post(&["v1", "topics"]).json(&args.spec()))
                .await?;
            let plural = if info.partitions == 1 { "" } else { "s" };
            print(&format!(
                "created topic {} ({} partition{plural}{})\n",
                info.name,
                info.partitions,
                if info.compacted { ", compacted" } else { "" }
            ))?;
        }
        TopicCommand::List => {
            let list: TopicList = client.json(client.get(&["v1", "topics"])).await?;
            print(&list_table(&list.topics))?;
        }
        TopicCommand::Describe { name } => {
            let d: TopicDescription = client.json(client.get(&["v1", "topics", &name])).await?;
            print(&describe_text(&d))?;
        }
        TopicCommand::Delete { name } => {
            client.send(client.delete(&["v1", "topics", &name])).await?;
            print(&format!("deleted topic {name}\n"))?;
        }
    }
    Ok(())
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn list_table(topics: &[TopicInfo]) -> String {
    let rows: Vec<Vec<String>> = topics
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.partitions.to_string(),
                t.compacted.to_string(),
                opt(t.retention_ms),
                opt(t.retention_bytes),
                t.fsync.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "PARTITIONS",
            "COMPACTED",
            "RETENTION_MS",
            "RETENTION_BYTES",
            "FSYNC",
        ],
        &rows,
    )
}

fn describe_text(d: &TopicDescription) -> String {
    let t = &d.topic;
    let mut fields_rows = vec![
        ("name", t.name.clone()),
        ("partitions", t.partitions.to_string()),
    ];
    if let Some(c) = &t.cluster {
        fields_rows.push(("replication_factor", c.replication_factor.to_string()));
        fields_rows.push(("min_insync_replicas", c.min_insync_replicas.to_string()));
    }
    fields_rows.extend([
        ("compacted", t.compacted.to_string()),
        ("retention_ms", opt(t.retention_ms)),
        ("retention_bytes", opt(t.retention_bytes)),
        ("fsync", t.fsync.to_string()),
        ("segment_bytes", t.segment_bytes.to_string()),
        ("segment_ms", t.segment_ms.to_string()),
        ("delete_retention_ms", t.delete_retention_ms.to_string()),
    ]);
    let mut out = fields(&fields_rows);
    out.push('\n');
    let replicated = d.partition_offsets.iter().any(|p| p.replication.is_some());
    let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let rows: Vec<Vec<String>> = d
        .partition_offsets
        .iter()
        .map(|p| {
            let mut row = vec![
                p.partition.to_string(),
                p.start_offset.to_string(),
                p.end_offset.to_string(),
                p.size_bytes.to_string(),
                p.segments.to_string(),
                match p.status {
                    PartitionStatus::Online => "online".to_string(),
                    PartitionStatus::Offline => format!(
                        "offline: {}",
                        p.error.as_deref().unwrap_or("could not be opened")
                    ),
                },
            ];
            if replicated {
                match &p.replication {
                    Some(r) => row.extend([
                        r.leader.map_or("none".to_string(), |l| l.to_string()),
                        r.leader_epoch.to_string(),
                        ids(&r.replicas),
                        ids(&r.isr),
                        r.log_end_offset.to_string(),
                    ]),
                    None => row.extend(std::iter::repeat_n(String::new(), 5)),
                }
            }
            row
        })
        .collect();
    let mut headers = vec![
        "PARTITION",
        "START_OFFSET",
        "END_OFFSET",
        "SIZE_BYTES",
        "SEGMENTS",
        "STATUS",
    ];
    if replicated {
        headers.extend(["LEADER", "EPOCH", "REPLICAS", "ISR", "LOG_END"]);
    }
    out.push_str(&table(&headers, &rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_broker::{FsyncPolicy, PartitionInfo};

    fn info() -> TopicInfo {
        TopicInfo {
            name: "orders".into(),
            partitions: 2,
            compacted: false,
            retention_ms: Some(1000),
            retention_bytes: None,
            fsync: FsyncPolicy::Batch,
            segment_bytes: 1 << 20,
            segment_ms: 60_000,
            delete_retention_ms: 10,
            internal: None,
            cluster: None,
        }
    }

    #[test]
    fn list_shows_one_row_per_topic() {
        let t = list_table(&[info()]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("NAME "));
        assert!(lines[1].starts_with("orders "));
        assert!(lines[1].contains("1000"));
        assert!(lines[1].ends_with("batch"));
    }

    #[test]
    fn describe_shows_partitions() {
        let d = TopicDescription {
            topic: info(),
            partition_offsets: vec![PartitionInfo {
                partition: 0,
                start_offset: 3,
                end_offset: 10,
                size_bytes: 512,
                segments: 1,
                status: PartitionStatus::Online,
                error: None,
                replication: None,
            }],
        };
        let text = describe_text(&d);
        assert!(text.contains("name:                 orders"), "{text}");
        assert!(text.contains("PARTITION  START_OFFSET"), "{text}");
        assert!(
            text.lines().last().unwrap().starts_with("0          3 "),
            "{text}"
        );
    }

    #[test]
    fn create_args_map_to_a_spec() {
        let args = CreateArgs {
            name: "t".into(),
            partitions: 3,
            compacted: true,
            retention_ms: None,
            retention_bytes: Some(5),
            fsync: Some(FsyncArg::Os),
            segment_bytes: None,
            segment_ms: None,
            delete_retention_ms: None,
            replicas: Some(3),
            min_insync: Some(2),
        };
        let spec = args.spec();
        assert_eq!(spec.partitions, 3);
        assert_eq!(spec.replication_factor, Some(3));
        assert_eq!(spec.min_insync_replicas, Some(2));
        assert!(spec.compacted);
        assert_eq!(spec.retention_bytes, Some(5));
        assert_eq!(spec.fsync, Some(FsyncPolicy::Os));
    }
}

//! `weir cluster status`: the cluster as the node behind `--url` sees it (`GET /v1/cluster`),
//! printed as the node's identity, a table of nodes (with the partitions each leads and its
//! replication lag), and tables of the under-replicated, offline and reassigning partitions.
//! `weir cluster decommission N`: moves every replica off node N, then removes it
//! (`POST /v1/cluster/nodes/{id}/decommission`); with `--wait`, until it is done.

use anyhow::Result;
use clap::Subcommand;
use serde::Deserialize;

use super::client::Client;
use super::output::{fields, print, table};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the cluster id, this node and every peer (address, reachable, last seen,
    /// partitions led, replication lag, registered or fenced, Kafka and HTTP addresses), and
    /// the under-replicated and offline partitions
    Status {
        /// Print the JSON answer as is
        #[arg(long)]
        json: bool,
    },
    /// Decommission a node: the controller moves every replica it holds to the other nodes
    /// (throttled by their --replication-throttle-bytes), then removes it from the metadata
    /// quorum and retires its id. The node can be stopped once it is gone from `status`
    Decommission {
        /// The node id
        node: u64,
        /// Wait until the node holds no replica and has left the cluster, printing progress
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds
        #[arg(long, default_value_t = 600, value_name = "SECONDS")]
        timeout: u64,
    },
}

#[derive(Debug, Deserialize)]
struct View {
    mode: String,
    cluster_id: Option<String>,
    node_id: u64,
    #[serde(default)]
    metadata: Option<Metadata>,
    nodes: Vec<Node>,
    #[serde(default)]
    under_replicated: Vec<Partition>,
    #[serde(default)]
    offline: Vec<Partition>,
    #[serde(default)]
    reassigning: Vec<Move>,
    #[serde(default)]
    retired: Vec<u64>,
}

/// A partition being reassigned.
#[derive(Debug, Deserialize)]
struct Move {
    topic: String,
    partition: i32,
    leader: Option<u64>,
    replicas: Vec<u64>,
    isr: Vec<u64>,
    adding: Vec<u64>,
    removing: Vec<u64>,
}

/// An under-replicated or offline partition.
#[derive(Debug, Deserialize)]
struct Partition {
    topic: String,
    partition: i32,
    leader: Option<u64>,
    replicas: Vec<u64>,
    isr: Vec<u64>,
}

/// The metadata quorum as the answering node sees it (absent on a single node).
#[derive(Debug, Deserialize)]
struct Metadata {
    controller: Option<u64>,
    role: String,
    term: u64,
    applied_index: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Node {
    id: u64,
    address: Option<String>,
    reachable: bool,
    last_seen_ms: Option<u64>,
    error: Option<String>,
    #[serde(rename = "self")]
    is_self: bool,
    #[serde(default)]
    registered: Option<bool>,
    #[serde(default)]
    fenced: Option<bool>,
    #[serde(default)]
    draining: Option<bool>,
    #[serde(default)]
    replicas: Option<usize>,
    #[serde(default)]
    kafka_address: Option<String>,
    #[serde(default)]
    http_address: Option<String>,
    #[serde(default)]
    partitions_led: Option<usize>,
    #[serde(default)]
    replication_lag: Option<i64>,
}

pub async fn run(client: &Client, command: ClusterCommand) -> Result<()> {
    match command {
        ClusterCommand::Status { json } => {
            let value: serde_json::Value = client.json(client.get(&["v1", "cluster"])).await?;
            if json {
                print(&format!("{}\n", serde_json::to_string_pretty(&value)?))?;
                return Ok(());
            }
            let view: View = serde_json::from_value(value)?;
            print(&render(&view, now_ms()))?;
            Ok(())
        }
        ClusterCommand::Decommission {
            node,
            wait,
            timeout,
        } => {
            let path = ["v1", "cluster", "nodes", &node.to_string(), "decommission"];
            let answer: serde_json::Value = client.json(client.post(&path)).await?;
            let message = answer["message"].as_str().unwrap_or("decommissioning");
            print(&format!("{message}\n"))?;
            if wait {
                wait_decommissioned(client, node, timeout).await?;
            }
            Ok(())
        }
    }
}

/// Polls `GET /v1/cluster` until `node` is retired, printing how many replicas it holds.
async fn wait_decommissioned(client: &Client, node: u64, timeout: u64) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let mut last = None;
    loop {
        let view: View = client.json(client.get(&["v1", "cluster"])).await?;
        if view.retired.contains(&node) {
            print(&format!(
                "node {node} is decommissioned: it holds no replica and has left the cluster; \
                 it can be stopped\n"
            ))?;
            return Ok(());
        }
        let held = view
            .nodes
            .iter()
            .find(|n| n.id == node)
            .and_then(|n| n.replicas);
        if held != last {
            let moving = view.reassigning.len();
            match held {
                Some(h) => print(&format!(
                    "node {node}: {h} replica(s) left, {moving} partition(s) moving\n"
                ))?,
                None => print(&format!("node {node}: waiting for the cluster's answer\n"))?,
            }
            last = held;
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!("node {node} is still being decommissioned after {timeout} s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ago(now: u64, then: Option<u64>) -> String {
    match then {
        None => "never".into(),
        Some(t) => {
            let ms = now.saturating_sub(t);
            if ms < 1000 {
                "just now".into()
            } else {
                format!("{:.1}s ago", ms as f64 / 1000.0)
            }
        }
    }
}

fn render(view: &View, now: u64) -> String {
    let mut rows = vec![
        ("mode", view.mode.clone()),
        (
            "cluster id",
            view.cluster_id.clone().unwrap_or_else(|| "-".into()),
        ),
        ("this node", view.node_id.to_string()),
    ];
    if let Some(m) = &view.metadata {
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        rows.push(("controller", opt(m.controller)));
        rows.push(("role", m.role.clone()));
        rows.push(("raft term", m.term.to_string()));
        rows.push(("applied index", opt(m.applied_index)));
    }
    let mut out = fields(&rows);
    out.push('\n');
    let rows: Vec<Vec<String>> = view
        .nodes
        .iter()
        .map(|n| {
            vec![
                if n.is_self {
                    format!("{}*", n.id)
                } else {
                    n.id.to_string()
                },
                n.address.clone().unwrap_or_else(|| "-".into()),
                if n.reachable { "yes" } else { "no" }.into(),
                if n.is_self {
                    "-".into()
                } else {
                    ago(now, n.last_seen_ms)
                },
                n.error.clone().unwrap_or_default(),
                n.partitions_led
                    .map_or_else(|| "-".into(), |v| v.to_string()),
                n.replication_lag
                    .map_or_else(|| "-".into(), |v| v.to_string()),
                n.replicas.map_or_else(|| "-".into(), |v| v.to_string()),
                match (n.registered, n.fenced) {
                    (None, _) => "-".into(),
                    (Some(true), _) if n.draining == Some(true) => "draining".into(),
                    (Some(true), _) => "yes".into(),
                    (Some(false), Some(true)) => "fenced".into(),
                    (Some(false), _) => "no".into(),
                },
                n.kafka_address.clone().unwrap_or_else(|| "-".into()),
                n.http_address.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "ID",
            "ADDRESS",
            "REACHABLE",
            "LAST SEEN",
            "ERROR",
            "LED",
            "LAG",
            "REPLICAS",
            "REGISTERED",
            "KAFKA",
            "HTTP",
        ],
        &rows,
    ));
    if view.metadata.is_some() {
        for (title, list) in [
            ("under-replicated partitions", &view.under_replicated),
            ("offline partitions", &view.offline),
        ] {
            out.push('\n');
            if list.is_empty() {
                out.push_str(&format!("{title}: none\n"));
                continue;
            }
            out.push_str(&format!("{title}: {}\n", list.len()));
            out.push_str(&partition_table(list));
        }
        if !view.reassigning.is_empty() {
            out.push_str(&format!(
                "\nreassigning partitions: {}\n",
                view.reassigning.len()
            ));
            let rows: Vec<Vec<String>> = view
                .reassigning
                .iter()
                .map(|m| {
                    vec![
                        m.topic.clone(),
                        m.partition.to_string(),
                        m.leader.map_or_else(|| "none".into(), |l| l.to_string()),
                        ids(&m.replicas),
                        ids(&m.isr),
                        ids(&m.adding),
                        ids(&m.removing),
                    ]
                })
                .collect();
            out.push_str(&table(
                &[
                    "TOPIC",
                    "PARTITION",
                    "LEADER",
                    "REPLICAS",
                    "ISR",
                    "ADDING",
                    "REMOVING",
                ],
                &rows,
            ));
        }
        if !view.retired.is_empty() {
            out.push_str(&format!("\nretired node ids: {}\n", ids(&view.retired)));
        }
    }
    out
}

fn ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn partition_table(list: &[Partition]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.topic.clone(),
                p.partition.to_string(),
                p.leader.map_or_else(|| "none".into(), |l| l.to_string()),
                ids(&p.replicas),
                ids(&p.isr),
            ]
        })
        .collect();
    table(&["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_table_with_this_node_starred() {
        let view: View = serde_json::from_value(serde_json::json!({
            "mode": "cluster", "cluster_id": "abc", "node_id": 1,
            "nodes": [
                {"id": 1, "address": "h:1", "reachable": true, "last_seen_ms": 100_000, "error": null, "self": true},
                {"id": 2, "address": "h:2", "reachable": false, "last_seen_ms": 97_500, "error": "refused", "self": false},
                {"id": 3, "address": "h:3", "reachable": false, "last_seen_ms": null, "error": null, "self": false}
            ]
        }))
        .unwrap();
        let text = render(&view, 100_000);
        assert!(text.contains("cluster id:  abc"), "{text}");
        assert!(text.contains("1*  h:1      yes        -"), "{text}");
        assert!(
            text.contains("2   h:2      no         2.5s ago   refused"),
            "{text}"
        );
        assert!(text.contains("never"), "{text}");
    }

    #[test]
    fn shows_fenced_nodes_and_advertised_addresses() {
        let view: View = serde_json::from_value(serde_json::json!({
            "mode": "cluster", "cluster_id": "abc", "node_id": 1,
            "metadata": {"controller": 1, "role": "leader", "term": 2, "applied_index": 9},
            "nodes": [
                {"id": 1, "address": "h:1", "reachable": true, "last_seen_ms": 1, "error": null, "self": true,
                 "registered": true, "fenced": false, "kafka_address": "k:1", "http_address": "w:1"},
                {"id": 2, "address": "h:2", "reachable": false, "last_seen_ms": null, "error": null, "self": false,
                 "registered": false, "fenced": true, "kafka_address": "k:2", "http_address": "w:2"}
            ]
        }))
        .unwrap();
        let text = render(&view, 1);
        assert!(text.contains("KAFKA"), "{text}");
        let row2 = text.lines().find(|l| l.starts_with("2 ")).unwrap();
        assert!(row2.contains("fenced"), "{text}");
        assert!(
            row2.trim_end().ends_with("fenced      k:2    w:2"),
            "{text}"
        );
    }

    #[test]
    fn shows_partitions_led_lag_and_partition_issues() {
        let view: View = serde_json::from_value(serde_json::json!({
            "mode": "cluster", "cluster_id": "abc", "node_id": 1,
            "metadata": {"controller": 1, "role": "leader", "term": 2, "applied_index": 9},
            "nodes": [
                {"id": 1, "address": "h:1", "reachable": true, "last_seen_ms": 1, "error": null, "self": true,
                 "registered": true, "fenced": false, "partitions_led": 4, "replication_lag": 0},
                {"id": 2, "address": "h:2", "reachable": false, "last_seen_ms": null, "error": null, "self": false,
                 "registered": false, "fenced": true, "partitions_led": 0, "replication_lag": 1234}
            ],
            "under_replicated": [{"topic": "orders", "partition": 1, "leader": 1, "leader_epoch": 3,
                                  "replicas": [1, 2, 3], "isr": [1, 3]}],
            "offline": []
        }))
        .unwrap();
        let text = render(&view, 1);
        assert!(text.contains("LED  LAG"), "{text}");
        let row2 = text.lines().find(|l| l.starts_with("2 ")).unwrap();
        assert!(row2.contains(" 0    1234 "), "{text}");
        assert!(text.contains("under-replicated partitions: 1"), "{text}");
        assert!(
            text.contains("orders  1          1       1,2,3     1,3"),
            "{text}"
        );
        assert!(text.contains("offline partitions: none"), "{text}");
    }

    #[test]
    fn shows_the_controller_term_and_registration() {
        let view: View = serde_json::from_value(serde_json::json!({
            "mode": "cluster", "cluster_id": "abc", "node_id": 2,
            "metadata": {"controller": 3, "role": "follower", "term": 7, "applied_index": 42,
                         "version": 42, "voters": [1, 2, 3]},
            "nodes": [
                {"id": 2, "address": "h:2", "reachable": true, "last_seen_ms": 1, "error": null, "self": true, "registered": true},
                {"id": 3, "address": "h:3", "reachable": true, "last_seen_ms": 1, "error": null, "self": false, "registered": false}
            ]
        }))
        .unwrap();
        let text = render(&view, 1);
        assert!(text.contains("controller:"), "{text}");
        assert!(text.contains("3\n"), "{text}");
        assert!(text.contains("raft term:"), "{text}");
        assert!(text.contains("applied index:  42"), "{text}");
        assert!(text.contains("REGISTERED"), "{text}");
        let row3 = text.lines().find(|l| l.starts_with("3 ")).unwrap();
        assert!(row3.trim_end().ends_with("no          -      -"), "{text}");
    }
}

//! `weir processor list|describe|pause|resume|delete|get`: processors through the HTTP API,
//! printed as aligned tables (task states, lag, errors, restoration progress).

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

use super::client::Client;
use super::output::{fields, print, table};

#[derive(Debug, Subcommand)]
pub enum ProcessorCommand {
    /// List processors
    List,
    /// Show a processor and the status of each of its tasks
    Describe {
        /// Processor name
        name: String,
    },
    /// Pause every task of a processor (offsets are kept)
    Pause {
        /// Processor name
        name: String,
    },
    /// Resume a paused processor; failed tasks start again from their last commit
    Resume {
        /// Processor name
        name: String,
    },
    /// Stop a processor and remove its state, changelogs and offsets
    Delete {
        /// Processor name
        name: String,
        /// Keep state, changelogs and offsets (deploying the same name again continues)
        #[arg(long)]
        keep_state: bool,
    },
    /// Print the value of a key in a processor's state store (interactive query)
    Get {
        /// Processor name
        name: String,
        /// Store name
        store: String,
        /// Key
        key: String,
    },
}

pub async fn run(client: &Client, command: ProcessorCommand) -> Result<()> {
    match command {
        ProcessorCommand::List => {
            let list: Value = client.json(client.get(&["v1", "processors"])).await?;
            print(&list_table(&list))?;
        }
        ProcessorCommand::Describe { name } => {
            let d: Value = client
                .json(client.get(&["v1", "processors", &name]))
                .await?;
            print(&describe_text(&d))?;
        }
        ProcessorCommand::Pause { name } => {
            client
                .send(client.post(&["v1", "processors", &name, "pause"]))
                .await?;
            print(&format!("paused processor {name}\n"))?;
        }
        ProcessorCommand::Resume { name } => {
            client
                .send(client.post(&["v1", "processors", &name, "resume"]))
                .await?;
            print(&format!("resumed processor {name}\n"))?;
        }
        ProcessorCommand::Delete { name, keep_state } => {
            let query = [("keep_state", keep_state.to_string())];
            client
                .send(client.delete_query(&["v1", "processors", &name], &query))
                .await?;
            let kept = if keep_state { " (state kept)" } else { "" };
            print(&format!("deleted processor {name}{kept}\n"))?;
        }
        ProcessorCommand::Get { name, store, key } => {
            let v: Value = client
                .json(client.get(&["v1", "processors", &name, "stores", &store, "keys", &key]))
                .await?;
            let text = match (v["value"].as_str(), v["value_b64"].as_str()) {
                (Some(s), _) => s.to_string(),
                (None, Some(b)) => format!("base64:{b}"),
                _ => String::new(),
            };
            print(&format!("{text}\n"))?;
        }
    }
    Ok(())
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".to_string(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn list_table(list: &Value) -> String {
    let empty = Vec::new();
    let rows: Vec<Vec<String>> = list["processors"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|p| {
            vec![
                s(&p["name"]),
                s(&p["version"]),
                s(&p["status"]),
                s(&p["inputs"]),
                s(&p["outputs"]),
                format!("{}/{}", s(&p["tasks_running"]), s(&p["partitions"])),
                s(&p["lag"]),
            ]
        })
        .collect();
    table(
        &[
            "NAME", "VERSION", "STATUS", "INPUTS", "OUTPUTS", "RUNNING", "LAG",
        ],
        &rows,
    )
}

/// `records (percent%)` of a restoration, or `-`.
fn restore_cell(r: &Value) -> String {
    // Nothing to restore (no stores, or already up to date).
    if r.is_null() || (r["done"].as_bool() == Some(true) && r["records"].as_u64() == Some(0)) {
        return "-".into();
    }
    let state = if r["done"].as_bool() == Some(true) {
        "done".to_string()
    } else {
        match r["eta_ms"].as_u64() {
            Some(ms) => format!("running, ETA {:.1} s", ms as f64 / 1000.0),
            None => "running".to_string(),
        }
    };
    let records = match r["total"].as_i64() {
        Some(total) => format!("{} of {total}", s(&r["records"])),
        None => s(&r["records"]),
    };
    format!(
        "{records} records, {} bytes, {}% {state}",
        s(&r["bytes"]),
        s(&r["percent"])
    )
}

fn error_cell(e: &Value) -> String {
    if e.is_null() {
        return "-".into();
    }
    let mut text = format!("{}: {}", s(&e["code"]), s(&e["message"]));
    if !e["offset"].is_null() {
        text.push_str(&format!(
            " (at {}/{} offset {})",
            s(&e["topic"]),
            s(&e["partition"]),
            s(&e["offset"])
        ));
    }
    text
}

fn describe_text(d: &Value) -> String {
    let spec = &d["spec"];
    let mut pairs = vec![
        ("name", s(&d["name"])),
        ("version", s(&d["version"])),
        ("status", s(&d["status"])),
        ("inputs", s(&spec["inputs"])),
        ("outputs", s(&spec["outputs"])),
        ("on_error", s(&spec["on_error"])),
        ("guarantee", s(&spec["guarantee"])),
        ("commit_interval_ms", s(&spec["commit_interval_ms"])),
        ("partitions", s(&d["partitions"])),
        ("lag", s(&d["lag"])),
        ("changelogs", s(&d["topics"]["changelogs"])),
    ];
    if !d["error"].is_null() {
        pairs.push(("error", s(&d["error"])));
    }
    let mut out = fields(&pairs);
    out.push('\n');
    let empty = Vec::new();
    let tasks = d["tasks"].as_array().unwrap_or(&empty);
    // On a cluster each task carries the node running it.
    let with_node = tasks.iter().any(|t| t.get("node").is_some());
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let mut row = vec![s(&t["partition"])];
            if with_node {
                row.push(s(&t["node"]));
            }
            row.extend([
                s(&t["state"]),
                s(&t["records_in"]),
                s(&t["records_out"]),
                s(&t["errors"]),
                s(&t["lag"]),
                restore_cell(&t["restore"]),
                error_cell(&t["last_error"]),
            ]);
            row
        })
        .collect();
    // Standbys (a cluster): a row each, after the tasks, with how far behind they are.
    let mut rows = rows;
    for t in d["standbys"].as_array().unwrap_or(&empty) {
        let mut row = vec![s(&t["partition"])];
        if with_node {
            row.push(s(&t["node"]));
        }
        let error = t["last_error"].as_str().unwrap_or("-").to_string();
        row.extend([
            s(&t["state"]),
            "-".into(),
            "-".into(),
            "-".into(),
            s(&t["lag"]),
            restore_cell(&t["restore"]),
            error,
        ]);
        rows.push(row);
    }
    let mut headers = vec!["PARTITION"];
    if with_node {
        headers.push("NODE");
    }
    headers.extend([
        "STATE",
        "IN",
        "OUT",
        "ERRORS",
        "LAG",
        "RESTORE",
        "LAST_ERROR",
    ]);
    out.push_str(&table(&headers, &rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn describe_shows_tasks_errors_and_restores() {
        let d = json!({
            "name": "wc", "version": 2, "status": "failed", "partitions": 2, "lag": 3,
            "spec": {"inputs": ["text"], "outputs": ["counts"], "on_error": "fail"},
            "topics": {"changelogs": ["wc.counts.changelog"]},
            "tasks": [
                {"partition": 0, "state": "running", "records_in": 10, "records_out": 12,
                 "errors": 0, "lag": 0, "last_error": null,
                 "restore": {"records": 5, "bytes": 50, "percent": 100.0, "done": true}},
                {"partition": 1, "state": "failed", "records_in": 1, "records_out": 0,
                 "errors": 1, "lag": 3, "restore": null,
                 "last_error": {"code": "guest_trap", "message": "boom", "topic": "text",
                                "partition": 1, "offset": 7}},
                {"partition": 2, "state": "restoring", "records_in": 0, "records_out": 0,
                 "errors": 0, "lag": 0, "last_error": null,
                 "restore": {"records": 400, "total": 1000, "bytes": 4000, "percent": 40.0,
                             "done": false, "eta_ms": 1500}}
            ]
        });
        let text = describe_text(&d);
        assert!(text.contains("status:"), "{text}");
        assert!(text.contains("5 records, 50 bytes, 100.0% done"), "{text}");
        assert!(
            text.contains("400 of 1000 records, 4000 bytes, 40.0% running, ETA 1.5 s"),
            "{text}"
        );
        assert!(
            text.contains("guest_trap: boom (at text/1 offset 7)"),
            "{text}"
        );
        assert!(!text.contains("NODE"), "{text}");
        // On a cluster: a NODE column; a task whose node did not answer is `unknown`.
        let d = json!({
            "name": "wc", "version": 1, "status": "unknown", "partitions": 2, "lag": 0,
            "spec": {"inputs": ["text"], "outputs": ["counts"], "on_error": "fail"},
            "topics": {"changelogs": []},
            "tasks": [
                {"partition": 0, "node": 2, "state": "running", "records_in": 3,
                 "records_out": 3, "errors": 0, "lag": 0, "last_error": null, "restore": null},
                {"partition": 1, "node": 3, "state": "unknown"}
            ],
            "standbys": [
                {"partition": 0, "node": 3, "state": "standby", "lag": 4, "last_error": null,
                 "restore": {"records": 9, "bytes": 90, "percent": 100.0, "done": true}}
            ]
        });
        let text = describe_text(&d);
        let lines: Vec<&str> = text.lines().collect();
        let header = lines
            .iter()
            .position(|l| l.starts_with("PARTITION"))
            .unwrap();
        let cells = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            cells(lines[header])[..3],
            ["PARTITION", "NODE", "STATE"],
            "{text}"
        );
        assert_eq!(
            cells(lines[header + 1])[..3],
            ["0", "2", "running"],
            "{text}"
        );
        assert_eq!(
            cells(lines[header + 2])[..3],
            ["1", "3", "unknown"],
            "{text}"
        );
        let standby = cells(lines[header + 3]);
        assert_eq!(standby[..3], ["0", "3", "standby"], "{text}");
        assert_eq!(standby[6], "4", "{text}");
        let list = list_table(&json!({"processors": [
            {"name": "wc", "version": 1, "status": "running", "inputs": ["a", "b"],
             "outputs": [], "tasks_running": 2, "partitions": 2, "lag": 0}
        ]}));
        assert!(list.lines().nth(1).unwrap().starts_with("wc  "), "{list}");
        assert!(list.contains("a,b"), "{list}");
    }
}

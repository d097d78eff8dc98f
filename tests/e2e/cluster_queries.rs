//! Interactive queries and describe from any node of a cluster of three real `weir serve
//! --peers` processes: a word-count's six tasks are spread over the nodes, and every node
//! answers every key look-up (sent to the key's task's owner), every prefix scan (merged
//! from every owner's tasks) and a describe listing every task with its node — also after
//! a kill -9 of a node, once its tasks have moved.
//!
//! No timed assertions: everything polls with a generous deadline.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::cluster_processors::{DEADLINE, owners, placed_on, produce_each};
use crate::common::{Server, eventually, guest, stdout};
use crate::processors::{as_strings, caught_up, query, sample_lines, tasks, word_counts};
use crate::replication::{create_replicated, fully_replicated, start_cluster};

/// Each word's count as `s` answers its look-up (words it cannot answer are left out).
fn looked_up(s: &Server, words: &BTreeMap<String, u64>) -> BTreeMap<String, String> {
    words
        .keys()
        .filter_map(|w| {
            let (status, body) = query(s, "wc", "counts", w);
            (status == 200)
                .then(|| body["value"].as_str().map(|v| (w.clone(), v.to_string())))
                .flatten()
        })
        .collect()
}

/// Every entry of the `counts` store whose key starts with `prefix`, read at `s` in pages
/// of `limit`: each key with its value, in the order given; `Err` with the answer when a
/// page is refused.
fn scanned(s: &Server, prefix: &str, limit: usize) -> Result<Vec<(String, String)>, Value> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) = s.get(&format!(
            "/v1/processors/wc/stores/counts/keys?prefix={prefix}&limit={limit}&after={after}"
        ));
        if status != 200 {
            return Err(page);
        }
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        assert!(entries.len() <= limit, "page over the limit: {page}");
        for e in entries {
            out.push((
                e["key"].as_str().unwrap_or_default().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            ));
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_string(),
            None => return Ok(out),
        }
    }
}

/// The describe of `wc` at `s` lists every task once, in partition order, each with the
/// node the assignment names; `Err` says what is not so.
fn describes_every_task(s: &Server) -> Result<Vec<Value>, String> {
    let d = s.processor("wc");
    let t = tasks(&d);
    let placed: Vec<Option<u64>> = owners(s, "wc");
    let partitions: Vec<i64> = t.iter().filter_map(|t| t["partition"].as_i64()).collect();
    if partitions != (0..6).collect::<Vec<_>>() {
        return Err(format!("tasks {partitions:?} in {d}"));
    }
    for task in &t {
        let p = task["partition"].as_i64().unwrap_or(-1) as usize;
        if task["node"].as_u64() != placed.get(p).copied().flatten() {
            return Err(format!("task {p} not on its node {placed:?}: {task}"));
        }
    }
    Ok(t)
}

#[test]
fn every_node_answers_every_key_scan_and_task_of_a_processor_spread_over_the_cluster() {
    let mut nodes = start_cluster();
    create_replicated(
        &nodes[0],
        json!({"name": "text", "partitions": 6, "replication_factor": 3}),
    );
    assert!(eventually(DEADLINE, || nodes
        .iter()
        .all(|n| fully_replicated(n, "text", 6))));
    nodes[1].deploy(
        &json!({"name": "wc", "inputs": ["text"], "outputs": ["counts"]}),
        guest("word-count"),
    );
    assert!(
        eventually(DEADLINE, || placed_on(&nodes, "wc", &[1, 2, 3], 6)),
        "tasks not placed: {:?}",
        owners(&nodes[0], "wc")
    );
    let lines = sample_lines();
    produce_each(&nodes[2], "text", 6, &lines);
    let want = word_counts(lines.iter().map(String::as_str));
    let want_s = as_strings(&want);

    // Every word's count, answered identically by every node (two thirds of them from
    // another node's tasks).
    assert!(
        eventually(DEADLINE, || nodes
            .iter()
            .all(|n| looked_up(n, &want) == want_s)),
        "look-ups: {:?}\nwant {want_s:?}",
        nodes
            .iter()
            .map(|n| looked_up(n, &want))
            .collect::<Vec<_>>()
    );
    assert!(eventually(DEADLINE, || caught_up(&nodes[0], "wc")));

    // A prefix scan at any node gives every word once, in key order, whatever the page size.
    let sorted: Vec<(String, String)> = want_s.clone().into_iter().collect();
    for n in &nodes {
        for limit in [1, 4, 1000] {
            assert_eq!(scanned(n, "", limit), Ok(sorted.clone()), "limit {limit}");
        }
        let t: Vec<(String, String)> = sorted
            .iter()
            .filter(|(k, _)| k.starts_with('t'))
            .cloned()
            .collect();
        assert!(!t.is_empty());
        assert_eq!(scanned(n, "t", 2), Ok(t));
    }

    // Describe at any node lists all six tasks with their node and status; so does the CLI.
    for n in &nodes {
        let t = describes_every_task(n).unwrap();
        assert!(t.iter().all(|t| t["state"] == "running"), "{t:?}");
        let d = n.processor("wc");
        assert_eq!(d["status"], "running", "{d}");
        let out = n.cli(&["processor", "describe", "wc"], None);
        assert!(out.status.success(), "{out:?}");
        let text = stdout(&out);
        let header = text
            .lines()
            .find(|l| l.starts_with("PARTITION"))
            .unwrap_or_default();
        assert!(header.contains("NODE"), "{text}");
        assert_eq!(
            text.lines()
                .filter(|l| {
                    let cells: Vec<&str> = l.split_whitespace().collect();
                    cells.len() > 2 && cells[0].parse::<u32>().is_ok() && cells[2] == "running"
                })
                .count(),
            6,
            "{text}"
        );
    }
    let (status, list) = nodes[0].get("/v1/processors");
    assert_eq!(status, 200);
    assert_eq!(list["processors"][0]["tasks_running"], 6, "{list}");

    // kill -9 of node 3: while its tasks are still assigned to it, they are described as
    // `unknown` on node 3, and their look-ups are `503 task_unavailable` naming the node.
    nodes[2].kill9();
    let d = nodes[0].processor("wc");
    for t in tasks(&d).iter().filter(|t| t["node"] == 3) {
        assert_eq!(t["state"], "unknown", "{t}");
    }
    for w in want.keys() {
        let (status, body) = query(&nodes[0], "wc", "counts", w);
        match status {
            200 => {}
            503 => {
                let code = body["error"]["code"].as_str().unwrap_or_default();
                assert!(
                    matches!(code, "task_unavailable" | "unavailable"),
                    "{w}: {body}"
                );
            }
            other => panic!("{w}: {other} {body}"),
        }
    }

    // Once its tasks have moved, every look-up and scan is answered again, by both nodes.
    assert!(
        eventually(DEADLINE, || placed_on(&nodes, "wc", &[1, 2], 6)),
        "tasks did not move off node 3: {:?}",
        owners(&nodes[0], "wc")
    );
    let answered = |n: &Server| {
        let got = looked_up(n, &want);
        got.len() == want.len()
            && want
                .iter()
                .all(|(w, c)| got[w].parse::<u64>().is_ok_and(|g| g >= *c))
    };
    assert!(
        eventually(DEADLINE, || answered(&nodes[0]) && answered(&nodes[1])),
        "look-ups after the kill: {:?} {:?}",
        looked_up(&nodes[0], &want),
        looked_up(&nodes[1], &want)
    );
    assert_eq!(looked_up(&nodes[0], &want), looked_up(&nodes[1], &want));
    for n in &nodes[..2] {
        let t = describes_every_task(n).unwrap();
        assert!(
            t.iter().all(|t| matches!(t["node"].as_u64(), Some(1 | 2))),
            "{t:?}"
        );
        let all = scanned(n, "", 5).unwrap();
        let keys: Vec<&String> = all.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, want.keys().collect::<Vec<_>>());
    }
}

//! Interactive queries and describe from any node of a cluster of three real `weir serve
//! --peers` processes: a word-count's six tasks are spread over the nodes, and every node
//! answers every key look-up (sent to the key's task's owner), every prefix scan (merged
//! from every owner's tasks) and a describe listing every task with its node — also after
//! a kill -9 of a node, once its tasks have moved.
//!
//! Under `--auth` the caller's credentials go along to the node answering, which checks
//! them again.
//!
//! No timed assertions: everything polls with a generous deadline.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::cluster_processors::{DEADLINE, cluster_with_text, owners, placed_on, produce_each};
use crate::common::{Server, eventually, guest, stdout};
use crate::processors::{as_strings, caught_up, query, sample_lines, tasks, word_counts};
use crate::replication::start_cluster_with;

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
    let mut nodes = cluster_with_text();
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

const ADMIN_PW: &str = "Adm1n-S3cret-pw";

/// `method path` on `s` with Basic credentials `user`/`pw` (none when `user` is empty) and a
/// JSON or raw multipart body.
fn call_as(
    s: &Server,
    user: &str,
    pw: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
) -> (u16, Value) {
    let mut req = s.http.request(method, format!("{}{path}", s.url));
    if !user.is_empty() {
        req = req.basic_auth(user, Some(pw));
    }
    if let Some((content_type, bytes)) = body {
        req = req.header("content-type", content_type).body(bytes);
    }
    match req.send() {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().unwrap_or(Value::Null))
        }
        Err(e) => (0, json!(e.to_string())),
    }
}

fn json_body(v: &Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", v.to_string().into_bytes()))
}

#[test]
fn under_auth_a_look_up_answered_by_another_node_carries_the_callers_credentials() {
    use reqwest::Method;
    let nodes = start_cluster_with(&["--auth"], &[("WEIR_ADMIN_PASSWORD", ADMIN_PW)]);
    let admin = |s: &Server, m: Method, path: &str, body: Option<&Value>| {
        call_as(s, "admin", ADMIN_PW, m, path, body.and_then(json_body))
    };
    let topic = json!({"name": "text", "partitions": 6, "replication_factor": 3});
    assert!(
        eventually(DEADLINE, || {
            let (status, _) = admin(&nodes[0], Method::POST, "/v1/topics", Some(&topic));
            status == 201 || status == 409
        }),
        "the cluster never formed"
    );
    // Deployed at node 2 by the admin (retried while node 2 applies the topic).
    let boundary = "weir-e2e-boundary-7d3f";
    let spec = json!({"name": "wc", "inputs": ["text"], "outputs": ["counts"]});
    let mut upload = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"spec\"\r\n\r\n{spec}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"wasm\"; \
         filename=\"processor.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
    )
    .into_bytes();
    upload.extend_from_slice(&guest("word-count"));
    upload.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let mut last = (0, Value::Null);
    assert!(
        eventually(DEADLINE, || {
            last = call_as(
                &nodes[1],
                "admin",
                ADMIN_PW,
                Method::POST,
                "/v1/processors",
                Some((&content_type, upload.clone())),
            );
            last.0 == 201 || last.0 == 409
        }),
        "deploy: {last:?}"
    );
    // dave may read everything; carol only topics under `other.` (not wc's changelog).
    for (user, acl) in [("dave", None), ("carol", Some("other."))] {
        let u = json!({"name": user, "password": "pa55-w0rd-long", "role": "reader"});
        let (status, body) = admin(&nodes[0], Method::POST, "/v1/users", Some(&u));
        assert_eq!(status, 201, "{body}");
        if let Some(prefix) = acl {
            let acl = json!({"user": user, "resource": "topic", "prefix": prefix, "allow": "read"});
            let (status, body) = admin(&nodes[0], Method::POST, "/v1/acls", Some(&acl));
            assert!(status == 200 || status == 201, "{body}");
        }
    }
    let lines: Vec<String> = (0..12)
        .map(|i| format!("alpha beta {} gamma", i % 3))
        .collect();
    for (i, l) in lines.iter().enumerate() {
        let body = json!({"records": [{"value": l, "partition": i % 6}]});
        assert!(eventually(DEADLINE, || admin(
            &nodes[0],
            Method::POST,
            "/v1/topics/text/records",
            Some(&body)
        )
        .0 == 200));
    }
    let want = as_strings(&word_counts(lines.iter().map(String::as_str)));
    let look_up = |s: &Server, user: &str, w: &str| {
        call_as(
            s,
            user,
            "pa55-w0rd-long",
            Method::GET,
            &format!("/v1/processors/wc/stores/counts/keys/{w}"),
            None,
        )
    };
    // dave's look-ups are answered by every node, most of them by another node that
    // checked his credentials again.
    assert!(
        eventually(DEADLINE, || nodes.iter().all(|n| want.iter().all(
            |(w, c)| {
                let (status, body) = look_up(n, "dave", w);
                status == 200 && body["value"] == json!(c)
            }
        ))),
        "dave's look-ups: {:?}",
        nodes
            .iter()
            .map(|n| look_up(n, "dave", "alpha"))
            .collect::<Vec<_>>()
    );
    // carol is refused at every node, and so is a caller without credentials.
    for n in &nodes {
        for w in want.keys() {
            assert_eq!(look_up(n, "carol", w).0, 403, "carol, {w}");
            assert_eq!(look_up(n, "", w).0, 401, "anonymous, {w}");
        }
    }
    // dave's scan and describe at node 3 cover every task.
    let (status, page) = call_as(
        &nodes[2],
        "dave",
        "pa55-w0rd-long",
        Method::GET,
        "/v1/processors/wc/stores/counts/keys?limit=1000",
        None,
    );
    assert_eq!(status, 200, "{page}");
    let keys: Vec<&str> = page["entries"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["key"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(keys, want.keys().map(String::as_str).collect::<Vec<_>>());
    let (status, d) = call_as(
        &nodes[2],
        "dave",
        "pa55-w0rd-long",
        Method::GET,
        "/v1/processors/wc",
        None,
    );
    assert_eq!(status, 200, "{d}");
    let t = tasks(&d);
    assert_eq!(t.len(), 6, "{d}");
    assert!(
        t.iter()
            .all(|t| t["state"] == "running" && t["node"].is_u64()),
        "{d}"
    );
}

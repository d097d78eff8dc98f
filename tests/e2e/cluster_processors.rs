//! Processors on a cluster of three real `weir serve --peers` processes: a processor
//! deployed at any node is installed on every node and its tasks are spread over them by the
//! controller's placement; its topics (output, changelog, offsets) are the cluster's
//! replicated topics, written at each partition's leader. When a node is killed (kill -9)
//! its tasks move to the others and resume from their changelogs and committed offsets
//! (every word counted at least once); when it returns it gets its share back with a
//! graceful move that changes no count; a node that lost its state directory rebuilds its
//! tasks' stores exactly from the changelogs other nodes hold.
//!
//! No timed assertions: everything polls with a generous deadline.

use std::time::Duration;

use serde_json::json;

use crate::common::{Server, eventually, guest};
use crate::processors::{as_strings, caught_up, query, sample_lines, tasks, word_counts};
use crate::replication::{
    create_replicated, fully_replicated, routes, start_cluster, start_cluster_with,
};

pub(crate) const DEADLINE: Duration = Duration::from_secs(120);

/// Three nodes and a topic `text` of 6 partitions, replication factor 3, on every node.
pub(crate) fn cluster_with_text() -> Vec<Server> {
    let nodes = start_cluster();
    create_replicated(
        &nodes[0],
        json!({"name": "text", "partitions": 6, "replication_factor": 3}),
    );
    assert!(eventually(DEADLINE, || nodes
        .iter()
        .all(|n| fully_replicated(n, "text", 6))));
    nodes
}

/// Produces `lines` round robin over explicit partitions, one record per request, each
/// retried while the partition's leader moves (a request either stores its one record or
/// fails as a whole, so nothing is produced twice).
pub(crate) fn produce_each(s: &Server, topic: &str, partitions: i64, lines: &[String]) {
    for (i, l) in lines.iter().enumerate() {
        let body = json!({"records": [{"value": l, "partition": i as i64 % partitions}]});
        let mut last = json!(null);
        let ok = eventually(DEADLINE, || {
            let (status, answer) = s.post(&format!("/v1/topics/{topic}/records"), &body);
            last = answer;
            status == 200
        });
        assert!(ok, "produce {body}: {last}");
    }
}

#[test]
fn a_processors_topics_are_replicated_and_a_wiped_node_rebuilds_its_tasks_state() {
    let mut nodes = cluster_with_text();
    let lines = sample_lines();
    produce_each(&nodes[1], "text", 6, &lines);
    let d = nodes[0].deploy(
        &json!({"name": "wc", "inputs": ["text"], "outputs": ["counts"]}),
        guest("word-count"),
    );
    assert_eq!(d["partitions"], 6);
    // exactly_once is refused on a cluster, saying why (transactions are not replicated).
    let (status, body) = nodes[1].upload(
        reqwest::Method::POST,
        "/v1/processors",
        &json!({"name": "wc-eos", "inputs": ["text"], "outputs": ["counts-eos"],
                "guarantee": "exactly_once"}),
        guest("word-count"),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_spec", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not replicated")),
        "{body}"
    );

    // Its topics are the cluster's: every node describes them, three replicas each.
    for topic in ["counts", "wc.offsets", "wc.counts.changelog"] {
        assert!(
            eventually(DEADLINE, || fully_replicated(&nodes[2], topic, 6)),
            "{topic} is not replicated: {:?}",
            routes(&nodes[2], topic)
        );
    }
    let want = as_strings(&word_counts(lines.iter().map(String::as_str)));
    assert!(
        eventually(DEADLINE, || nodes[2].latest_by_key("counts") == want),
        "counts read at node 3: {:?}",
        nodes[2].latest_by_key("counts")
    );
    assert!(eventually(DEADLINE, || placed_on(
        &nodes,
        "wc",
        &[1, 2, 3],
        6
    )));
    assert!(eventually(DEADLINE, || nodes
        .iter()
        .all(|n| caught_up(n, "wc"))));

    // Node 1 loses its state directory: the tasks it gets back rebuild their stores from
    // the replicated changelogs, exactly.
    assert!(nodes[0].terminate(), "clean shutdown");
    std::fs::remove_dir_all(nodes[0].data_dir().join("state").join("rocksdb")).unwrap();
    nodes[0].start_again();
    assert!(eventually(DEADLINE, || placed_on(
        &nodes,
        "wc",
        &[1, 2, 3],
        6
    )));
    assert!(eventually(DEADLINE, || nodes
        .iter()
        .all(|n| caught_up(n, "wc"))));
    let d = nodes[0].processor("wc");
    // Copied from the changelogs on node 1: by the task's own restoration, or first by
    // the warm-up copy it was moved onto once caught up (`warmed`).
    let restored: i64 = tasks(&d)
        .iter()
        .filter(|t| t["node"] == d["node"])
        .map(|t| {
            t["restore"]["records"].as_i64().unwrap_or(0)
                + t["warmed"]["records"].as_i64().unwrap_or(0)
        })
        .sum();
    assert!(restored > 0, "node 1 restored nothing: {d}");
    assert_eq!(nodes[0].latest_by_key("counts"), want);
    for w in ["the", "fox", "end", "dog"] {
        let answers: Vec<_> = nodes
            .iter()
            .map(|s| query(s, "wc", "counts", w))
            .filter(|(status, _)| *status == 200)
            .collect();
        // Every node answers, from the node running the key's task.
        assert_eq!(answers.len(), 3, "{w}: every node answers: {answers:?}");
        assert!(
            answers.iter().all(|a| a.1 == answers[0].1),
            "{w}: {answers:?}"
        );
        assert_eq!(answers[0].1["value"], json!(want[w]), "{w}");
    }
}

/// Partitions of `wc`'s tasks running on `s` (none while it is down or not installed).
pub(crate) fn running(s: &Server, name: &str) -> Vec<i64> {
    let (status, d) = s.get(&format!("/v1/processors/{name}"));
    if status != 200 {
        return Vec::new();
    }
    // A cluster's describe lists every task with its node; `node` is the node answering.
    tasks(&d)
        .iter()
        .filter(|t| t["state"] == "running" && t["node"] == d["node"])
        .filter_map(|t| t["partition"].as_i64())
        .collect()
}

/// The node of each task of `name`, as `s` sees the cluster's assignment.
pub(crate) fn owners(s: &Server, name: &str) -> Vec<Option<u64>> {
    let (status, d) = s.get(&format!("/v1/processors/{name}"));
    if status != 200 {
        return Vec::new();
    }
    d["assignment"]
        .as_array()
        .map(|a| a.iter().map(|t| t["node"].as_u64()).collect())
        .unwrap_or_default()
}

/// Every task of `name` runs on exactly the node the assignment names, and `nodes` (by id)
/// share them within one of each other.
pub(crate) fn placed_on(all: &[Server], name: &str, nodes: &[u64], partitions: i64) -> bool {
    let owners = owners(&all[nodes[0] as usize - 1], name);
    if owners.len() != partitions as usize || owners.iter().any(|o| o.is_none()) {
        return false;
    }
    let counts: Vec<usize> = nodes
        .iter()
        .map(|n| owners.iter().filter(|o| **o == Some(*n)).count())
        .collect();
    let balanced = counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1;
    let mut union: Vec<i64> = Vec::new();
    for &n in nodes {
        let mine: Vec<i64> = (0..partitions)
            .filter(|p| owners[*p as usize] == Some(n))
            .collect();
        let run = running(&all[n as usize - 1], name);
        if run != mine {
            return false;
        }
        union.extend(run);
    }
    union.sort();
    balanced && union == (0..partitions).collect::<Vec<_>>()
}

#[test]
fn a_processors_tasks_spread_over_the_cluster_and_move_when_a_node_dies_or_returns() {
    let mut nodes = cluster_with_text();
    // Deployed at node 2: every node installs it, the cluster places two tasks on each.
    nodes[1].deploy(
        &json!({"name": "wc", "inputs": ["text"], "outputs": ["counts"]}),
        guest("word-count"),
    );
    assert!(
        eventually(DEADLINE, || placed_on(&nodes, "wc", &[1, 2, 3], 6)),
        "tasks not placed: {:?}, running {:?} {:?} {:?}",
        owners(&nodes[0], "wc"),
        running(&nodes[0], "wc"),
        running(&nodes[1], "wc"),
        running(&nodes[2], "wc")
    );
    let lines = sample_lines();
    produce_each(&nodes[2], "text", 6, &lines);
    let want = word_counts(lines.iter().map(String::as_str));
    let want_s = as_strings(&want);
    assert!(
        eventually(DEADLINE, || nodes[0].latest_by_key("counts") == want_s),
        "counts: {:?}",
        nodes[0].latest_by_key("counts")
    );

    // kill -9 of node 3: its tasks move to nodes 1 and 2, restored from the changelogs.
    let before_kill = owners(&nodes[0], "wc");
    nodes[2].kill9();
    assert!(
        eventually(DEADLINE, || placed_on(&nodes, "wc", &[1, 2], 6)),
        "tasks did not move off node 3: {:?}",
        owners(&nodes[0], "wc")
    );
    let after_kill = owners(&nodes[0], "wc");
    for (p, (b, a)) in before_kill.iter().zip(&after_kill).enumerate() {
        if *b != Some(3) {
            assert_eq!(a, b, "task {p} moved though its node lived");
        }
    }
    let more: Vec<String> = (0..30)
        .map(|i| format!("after the kill {}", i % 4))
        .collect();
    produce_each(&nodes[0], "text", 6, &more);
    let want = word_counts(lines.iter().chain(&more).map(String::as_str));
    let counted = |s: &Server| -> std::collections::BTreeMap<String, u64> {
        s.latest_by_key("counts")
            .into_iter()
            .map(|(k, v)| (k, v.parse().unwrap_or(0)))
            .collect()
    };
    // At least once: what the killed node had processed but not committed is processed
    // again by the task's new owner.
    assert!(
        eventually(DEADLINE, || {
            let c = counted(&nodes[0]);
            c.len() == want.len() && want.iter().all(|(w, n)| c.get(w).is_some_and(|m| m >= n))
        }),
        "counts after the kill: {:?}\nwant at least {want:?}",
        counted(&nodes[0])
    );
    assert!(eventually(DEADLINE, || caught_up(&nodes[0], "wc")
        && caught_up(&nodes[1], "wc")));
    let settled = counted(&nodes[0]);

    // Node 3 returns while words keep coming: it gets its share back by graceful moves
    // (each task commits on its old owner and is released before it starts on node 3), so
    // every word produced meanwhile is counted exactly once.
    nodes[2].start_again();
    let during: Vec<String> = (0..300)
        .map(|i| format!("during the move {}", i % 5))
        .collect();
    produce_each(&nodes[0], "text", 6, &during);
    assert!(
        eventually(DEADLINE, || placed_on(&nodes, "wc", &[1, 2, 3], 6)),
        "node 3 got no tasks back: {:?}",
        owners(&nodes[0], "wc")
    );
    assert!(eventually(DEADLINE, || nodes
        .iter()
        .all(|n| caught_up(n, "wc"))));
    let mut settled = settled;
    for (w, n) in word_counts(during.iter().map(String::as_str)) {
        *settled.entry(w).or_default() += n;
    }
    assert!(
        eventually(DEADLINE, || counted(&nodes[0]) == settled),
        "counts after the graceful moves: {:?}\nwant exactly {settled:?}",
        counted(&nodes[0])
    );
    for (w, n) in [("the", settled["the"]), ("kill", settled["kill"])] {
        let found = nodes
            .iter()
            .map(|s| query(s, "wc", "counts", w))
            .find(|(status, _)| *status == 200);
        assert_eq!(
            found.map(|(_, b)| b["value"].clone()),
            Some(json!(n.to_string())),
            "{w}"
        );
    }
}

/// A node paused (SIGSTOP) past its session while its tasks had work in flight: the tasks
/// move to the other nodes under new epochs, and when it resumes — a zombie that still
/// thinks it owns them — its commits are refused by the partitions' leaders (fenced), it
/// drops the tasks once it applied the new assignment, and later gets its share back. The
/// counts end at least at what was produced, and every node agrees on them.
#[test]
fn a_paused_owner_is_fenced_when_it_resumes_and_its_tasks_stay_with_their_new_owners() {
    let nodes = cluster_with_text();
    nodes[0].deploy(
        &json!({"name": "wc", "inputs": ["text"], "outputs": ["counts"]}),
        guest("word-count"),
    );
    assert!(eventually(DEADLINE, || placed_on(
        &nodes,
        "wc",
        &[1, 2, 3],
        6
    )));
    let lines = sample_lines();
    produce_each(&nodes[0], "text", 6, &lines);
    // Node 3 stops mid-stream (it may hold processed but uncommitted work).
    nodes[2].pause();
    let more: Vec<String> = (0..30).map(|i| format!("while paused {}", i % 3)).collect();
    produce_each(&nodes[0], "text", 6, &more);
    assert!(
        eventually(DEADLINE, || placed_on(&nodes, "wc", &[1, 2], 6)),
        "the paused node's tasks did not move: {:?}",
        owners(&nodes[0], "wc")
    );
    nodes[2].resume();
    let after: Vec<String> = (0..30).map(|i| format!("after resume {}", i % 3)).collect();
    produce_each(&nodes[1], "text", 6, &after);
    assert!(
        eventually(DEADLINE, || placed_on(&nodes, "wc", &[1, 2, 3], 6)),
        "node 3 did not get its share back: {:?}",
        owners(&nodes[0], "wc")
    );
    assert!(eventually(DEADLINE, || nodes
        .iter()
        .all(|n| caught_up(n, "wc"))));
    let want = word_counts(lines.iter().chain(&more).chain(&after).map(String::as_str));
    let counted = |s: &Server| -> std::collections::BTreeMap<String, u64> {
        s.latest_by_key("counts")
            .into_iter()
            .map(|(k, v)| (k, v.parse().unwrap_or(0)))
            .collect()
    };
    let c = counted(&nodes[0]);
    assert!(
        c.len() == want.len() && want.iter().all(|(w, n)| c.get(w).is_some_and(|m| m >= n)),
        "counts {c:?}\nwant at least {want:?}"
    );
    // The stores agree with the output: no zombie write overwrote a newer count (every
    // node answers, from the task's owner).
    for w in ["the", "paused", "resume", "fox"] {
        for s in &nodes {
            let (status, body) = query(s, "wc", "counts", w);
            assert_eq!(
                (status, &body["value"]),
                (200, &json!(c[w].to_string())),
                "{w}"
            );
        }
    }
}

/// Standby replicas: every task of a processor has a warm standby on another node (the
/// default on a cluster), tailing its changelogs. A look-up with `?allow_stale=true` says
/// what answered it and how far behind; when the owner of a key's task is killed (kill -9),
/// its standby answers such look-ups until the task has moved, the tasks move to their
/// standbys (which restore only what they had not copied yet) and the counts stay.
#[test]
fn standbys_answer_while_a_killed_owners_tasks_move_to_them_warm() {
    let mut nodes = cluster_with_text();
    let lines = sample_lines();
    produce_each(&nodes[0], "text", 6, &lines);
    nodes[1].deploy(
        &json!({"name": "wc", "inputs": ["text"], "outputs": ["counts"]}),
        guest("word-count"),
    );
    assert!(eventually(DEADLINE, || placed_on(
        &nodes,
        "wc",
        &[1, 2, 3],
        6
    )));
    let want = as_strings(&word_counts(lines.iter().map(String::as_str)));
    assert!(eventually(DEADLINE, || nodes
        .iter()
        .all(|n| caught_up(n, "wc"))));
    // One standby per task, on another node than its owner, caught up with every commit
    // (lag 0: a standby only copies what the owner committed, and answers with what it has
    // and how far behind it is — the answers below must all be the final counts).
    let standbys_ready = |s: &Server| {
        let d = s.processor("wc");
        let places = d["assignment"].as_array().cloned().unwrap_or_default();
        let standbys = d["standbys"].as_array().cloned().unwrap_or_default();
        places.len() == 6
            && places.iter().all(|p| {
                p["standbys"].as_array().is_some_and(|s| s.len() == 1)
                    && p["standbys"][0] != p["node"]
            })
            && standbys.len() == 6
            && standbys
                .iter()
                .all(|t| t["state"] == "standby" && t["caught_up"] == true && t["lag"] == 0)
    };
    assert!(
        eventually(DEADLINE, || standbys_ready(&nodes[0])),
        "standbys: {}",
        nodes[0].processor("wc")
    );

    // The owner answers a stale look-up itself, 0 behind.
    let path = "/v1/processors/wc/stores/counts/keys/the?allow_stale=true";
    let (status, headers, body) = nodes[2].get_with_headers(path).unwrap();
    assert_eq!(
        (status, &body["value"]),
        (200, &json!(want["the"])),
        "{body}"
    );
    assert_eq!(headers["x-weir-answered-by"], "task", "{headers:?}");
    assert_eq!(headers["x-weir-lag"], "0", "{headers:?}");
    let owner: u64 = headers["x-weir-node"].parse().unwrap();
    let before = owners(&nodes[0], "wc");

    // kill -9 of that owner: until its tasks have moved, its standby answers; afterwards the
    // task's new owner (its former standby) does. Nothing new is produced, so every answer
    // is the count as it was.
    nodes[owner as usize - 1].kill9();
    let alive: Vec<u64> = (1..=3).filter(|n| *n != owner).collect();
    let mut by = std::collections::BTreeMap::<String, usize>::new();
    let mut unanswered = 0usize;
    let moved = eventually(DEADLINE, || {
        for n in &alive {
            match nodes[*n as usize - 1].get_with_headers(path) {
                Some((200, h, b)) => {
                    assert_eq!(b["value"], json!(want["the"]), "{h:?} {b}");
                    *by.entry(h["x-weir-answered-by"].clone()).or_default() += 1;
                }
                _ => unanswered += 1,
            }
        }
        placed_on(&nodes, "wc", &alive, 6)
            && alive
                .iter()
                .all(|n| caught_up(&nodes[*n as usize - 1], "wc"))
    });
    assert!(
        moved,
        "the tasks did not move: {:?}",
        owners(&nodes[0], "wc")
    );
    assert!(
        by.contains_key("standby"),
        "no standby answered while the owner was down: {by:?}, {unanswered} unanswered"
    );
    // Each moved task went to its standby and started from the standby's copy.
    let after = owners(&nodes[alive[0] as usize - 1], "wc");
    for n in &alive {
        let d = nodes[*n as usize - 1].processor("wc");
        for t in tasks(&d).iter().filter(|t| t["node"] == d["node"]) {
            let p = t["partition"].as_u64().unwrap() as usize;
            if before[p] == Some(owner) {
                assert_eq!(after[p], Some(*n));
                assert!(
                    t["warmed"]["records"].as_u64().unwrap_or(0) > 0
                        && t["restore"]["from_empty"] == false,
                    "task {p} did not start from its standby's copy: {t}"
                );
            }
        }
    }
    let counted = nodes[alive[0] as usize - 1].latest_by_key("counts");
    for (w, n) in &want {
        let c: u64 = counted[w].parse().unwrap();
        assert!(c >= n.parse::<u64>().unwrap(), "{w}: {c} < {n}");
    }
}

/// Node budgets on a cluster: every node has room for 4 Wasm tasks
/// (`--wasm-instance-pool 4`). A processor of 6 tasks deploys (each node admits only the
/// tasks it runs), a second one fills every node (4 each), and a third finds no room: its
/// tasks stay unassigned and no node goes over its budget; deleting one frees the room.
#[test]
fn placement_keeps_each_node_within_its_wasm_budget() {
    let nodes = start_cluster_with(&["--wasm-instance-pool", "4"], &[]);
    create_replicated(
        &nodes[0],
        json!({"name": "text", "partitions": 6, "replication_factor": 3}),
    );
    assert!(eventually(DEADLINE, || nodes
        .iter()
        .all(|n| fully_replicated(n, "text", 6))));
    let spec = |name: &str| {
        json!({"name": name, "inputs": ["text"], "outputs": [format!("{name}-out")],
               "standby_replicas": 0})
    };
    nodes[0].deploy(&spec("a"), guest("word-count"));
    assert!(eventually(DEADLINE, || placed_on(
        &nodes,
        "a",
        &[1, 2, 3],
        6
    )));
    nodes[1].deploy(&spec("b"), guest("word-count"));
    assert!(eventually(DEADLINE, || placed_on(
        &nodes,
        "b",
        &[1, 2, 3],
        6
    )));
    let per_node = |s: &Server| -> Vec<usize> {
        let mut c = vec![0usize; 3];
        for name in ["a", "b", "c"] {
            for o in owners(s, name).into_iter().flatten() {
                c[o as usize - 1] += 1;
            }
        }
        c
    };
    assert_eq!(per_node(&nodes[0]), vec![4, 4, 4]);
    // No room left: c deploys, but its tasks wait unassigned.
    nodes[2].deploy(&spec("c"), guest("word-count"));
    assert!(eventually(DEADLINE, || owners(&nodes[0], "c").len() == 6));
    std::thread::sleep(Duration::from_secs(2));
    assert!(owners(&nodes[0], "c").iter().all(Option::is_none));
    assert_eq!(per_node(&nodes[0]), vec![4, 4, 4]);
    let d = nodes[0].processor("c");
    assert!(tasks(&d).iter().all(|t| t["state"] == "unassigned"), "{d}");
    // a goes: c takes its room.
    assert_eq!(nodes[0].delete("/v1/processors/a"), 204);
    assert!(
        eventually(DEADLINE, || placed_on(&nodes, "c", &[1, 2, 3], 6)),
        "c not placed: {:?}",
        owners(&nodes[0], "c")
    );
    assert_eq!(per_node(&nodes[0]), vec![4, 4, 4]);
}

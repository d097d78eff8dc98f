//! Functions and the SQL catalog on a cluster of three real `weir serve --peers`
//! processes: a function registered at node 1 (while node 3 is down) and a stream created at
//! node 2 are used by a persistent query created at node 3; node 3, restarted, caught up with
//! the registration; every node lists the same functions, streams and queries; drops made at
//! one node apply on every node. A pull query reading an aggregate table's state is answered
//! at every node (sent to the node running the key's task).
//!
//! No timed assertions: everything polls with a generous deadline.

use serde_json::{Value, json};

use crate::cluster_processors::{DEADLINE, produce_each};
use crate::common::{Server, eventually, guest};
use crate::replication::start_cluster;

/// Runs SQL statements at `s`; asserts success and returns the results.
fn sql(s: &Server, statements: &str) -> Vec<Value> {
    let mut last = json!(null);
    let mut results = Vec::new();
    // A statement may be refused while the cluster settles (a leader moving): retried.
    let ok = eventually(DEADLINE, || {
        let (status, body) = s.post(
            "/v1/sql",
            &json!({"sql": statements, "properties": {"commit.interval.ms": 100}}),
        );
        last = body.clone();
        results = body["results"].as_array().cloned().unwrap_or_default();
        status == 200
    });
    assert!(ok, "{statements}: {last}");
    results
}

/// The names `SHOW <what>` lists at `s` (empty if it cannot answer).
fn shown(s: &Server, what: &str) -> String {
    let (status, body) = s.post("/v1/sql", &json!({"sql": format!("SHOW {what};")}));
    if status != 200 {
        return String::new();
    }
    body.to_string()
}

/// The rows a pull query answers at `s` over `POST /v1/query`; `Err` with the answer if it
/// is refused.
fn pull(s: &Server, sql: &str) -> Result<Vec<Value>, String> {
    let r = s
        .http
        .post(format!("{}/v1/query", s.url))
        .json(&json!({ "sql": sql }))
        .send()
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let text = r.text().map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{status}: {text}"));
    }
    let lines: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{e}: {text}"))?;
    Ok(lines.iter().filter_map(|l| l.get("row").cloned()).collect())
}

fn has_function(s: &Server, name: &str) -> bool {
    s.get(&format!("/v1/functions/{name}")).0 == 200
}

/// The `CARD` of every record of `masked`, read at `s`, sorted.
fn masked_cards(s: &Server) -> Vec<String> {
    let mut cards = Vec::new();
    for p in 0..2 {
        for r in s.read_all("masked", p, 0) {
            if let Some(v) = r["value"].as_str()
                && let Ok(v) = serde_json::from_str::<Value>(v)
            {
                cards.push(v["CARD"].as_str().unwrap_or("?").to_string());
            }
        }
    }
    cards.sort();
    cards
}

/// ksqlDB's `ksql.query.pull.enable.standby.reads`: the owner of the key's task of
/// `per_card` paused (SIGSTOP), a pull query with the property, asked of another node, is
/// answered (by a standby, or by the task once moved) with its staleness in the headers;
/// the owner resumed, the cluster settles again.
fn standby_reads_answer_while_the_owner_is_paused(nodes: &[Server]) {
    let key = "4111111111111111";
    let (_, list) = nodes[0].get("/v1/processors");
    let query = list["processors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .find(|n| n.starts_with("CTAS_PER_CARD_"))
        .expect("the table's query")
        .to_string();
    let described = nodes[0].processor(&query);
    let partitions = described["partitions"].as_i64().unwrap() as i32;
    let partition = weir_broker::partitioner::partition_for_key(key.as_bytes(), partitions);
    // The owner once it has a standby elsewhere.
    let mut owner = 0;
    assert!(eventually(DEADLINE, || {
        let d = nodes[0].processor(&query);
        let place = &d["assignment"][partition as usize];
        owner = place["node"].as_u64().unwrap_or(0);
        owner != 0 && place["standbys"].as_array().is_some_and(|s| !s.is_empty())
    }));
    // Node i + 1 is nodes[i] (start_cluster).
    let paused = (owner - 1) as usize;
    let asked = (paused + 1) % nodes.len();
    nodes[paused].pause();
    let body = json!({
        "sql": format!("SELECT n FROM per_card WHERE card_number = '{key}';"),
        "properties": {"ksql.query.pull.enable.standby.reads": true},
    });
    let mut last = String::new();
    let answered = eventually(DEADLINE, || {
        let r = nodes[asked]
            .http
            .post(format!("{}/v1/query", nodes[asked].url))
            .json(&body)
            .send();
        let Ok(r) = r else { return false };
        let status = r.status().as_u16();
        let by = r
            .headers()
            .get("x-weir-answered-by")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let lag = r.headers().get("x-weir-lag").is_some();
        let text = r.text().unwrap_or_default();
        last = format!("{status} {by:?} {text}");
        status == 200 && lag && by.is_some() && text.contains("[1]")
    });
    nodes[paused].resume();
    assert!(answered, "standby read while the owner is paused: {last}");
    // A bad value of the property is refused.
    let (status, body) = nodes[asked].post(
        "/v1/query",
        &json!({
            "sql": format!("SELECT n FROM per_card WHERE card_number = '{key}';"),
            "properties": {"ksql.query.pull.enable.standby.reads": "maybe"},
        }),
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn functions_and_streams_made_at_any_node_are_used_by_a_query_made_at_another() {
    let mut nodes = start_cluster();
    // Node 3 is down while the function is registered at node 1.
    nodes[2].kill9();
    let (status, body) = nodes[0].upload(
        reqwest::Method::POST,
        "/v1/functions",
        &json!({"name": "mask"}),
        guest("udf-mask"),
    );
    assert_eq!(status, 201, "{body}");
    assert!(eventually(DEADLINE, || has_function(&nodes[1], "mask")));
    // Registered again at another node: the cluster has it already.
    let (status, body) = nodes[1].upload(
        reqwest::Method::POST,
        "/v1/functions",
        &json!({"name": "mask"}),
        guest("udf-mask"),
    );
    assert_eq!(status, 409, "{body}");

    // Back, node 3 catches up: it fetches the module from a peer.
    nodes[2].restart();
    assert!(
        eventually(DEADLINE, || has_function(&nodes[2], "mask")),
        "node 3 did not catch up: {:?}",
        nodes[2].get("/v1/functions")
    );
    // An artifact uploaded at node 1 is the cluster's: node 3 registers a function from it
    // (fetching the bytes from a peer), and every node has the function.
    let r = nodes[0]
        .http
        .put(format!("{}/v1/artifacts/geomean", nodes[0].url))
        .body(guest("udf-geomean"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    sql(
        &nodes[2],
        "CREATE FUNCTION geomean WITH (ARTIFACT='geomean');",
    );
    for n in &nodes {
        assert!(eventually(DEADLINE, || has_function(n, "geomean")));
    }

    // A stream created at node 2 …
    sql(
        &nodes[1],
        "CREATE STREAM payments (card_number VARCHAR, amount DOUBLE)
           WITH (KAFKA_TOPIC='payments', VALUE_FORMAT='JSON', PARTITIONS=2);",
    );
    // … and the function are used by a query created at node 3.
    assert!(eventually(DEADLINE, || shown(&nodes[2], "STREAMS")
        .contains("PAYMENTS")));
    sql(
        &nodes[2],
        "CREATE STREAM masked WITH (KAFKA_TOPIC='masked') AS
           SELECT MASK(card_number) AS card, amount FROM payments;",
    );
    // Every node sees the same catalog.
    for n in &nodes {
        assert!(
            eventually(DEADLINE, || {
                let streams = shown(n, "STREAMS");
                streams.contains("PAYMENTS") && streams.contains("MASKED")
            }),
            "streams at a node: {}",
            shown(n, "STREAMS")
        );
        assert!(eventually(DEADLINE, || shown(n, "QUERIES").contains("MASKED")));
        assert!(eventually(DEADLINE, || shown(n, "FUNCTIONS").contains("MASK")));
    }

    let rows: Vec<String> = [("4111111111111111", 2.0), ("5500000000000004", 1.0)]
        .iter()
        .map(|(card, amount)| json!({"card_number": card, "amount": amount}).to_string())
        .collect();
    produce_each(&nodes[0], "payments", 2, &rows);
    let want = vec![
        "************0004".to_string(),
        "************1111".to_string(),
    ];
    assert!(
        eventually(DEADLINE, || masked_cards(&nodes[0]) == want),
        "masked: {:?}",
        masked_cards(&nodes[0])
    );

    // A table aggregated at node 2; a pull query of one key is answered at every node (the
    // nodes not running the key's task send it to the one that does).
    sql(
        &nodes[1],
        "CREATE TABLE per_card WITH (KAFKA_TOPIC='per_card') AS
           SELECT card_number, COUNT(*) AS n FROM payments GROUP BY card_number EMIT CHANGES;",
    );
    for n in &nodes {
        let q = "SELECT n FROM per_card WHERE card_number = '4111111111111111';";
        assert!(
            eventually(DEADLINE, || pull(n, q) == Ok(vec![json!([1])])),
            "pull at a node: {:?}; its processors: {}",
            pull(n, q),
            n.get("/v1/processors").1
        );
        // The same statement in POST /v1/sql, alone (sent to the task's node) and inside a
        // script run where it arrives (read from the table's topic).
        let rows = &sql(n, q)[0]["rows"];
        assert_eq!(*rows, json!([[1]]), "pull over /v1/sql");
        let results = sql(n, &format!("SHOW STREAMS; {q}"));
        assert_eq!(results[1]["rows"], json!([[1]]), "pull inside a script");
    }
    standby_reads_answer_while_the_owner_is_paused(&nodes);
    sql(&nodes[2], "DROP TABLE per_card;");

    // The same name created at two nodes at once: one statement wins, the other is told the
    // name exists, and every node keeps the winner (no last-write-wins, no orphan query).
    let creates = [
        "CREATE STREAM twin WITH (KAFKA_TOPIC='twin_a') AS SELECT amount FROM payments;",
        "CREATE STREAM twin WITH (KAFKA_TOPIC='twin_b') AS SELECT card_number FROM payments;",
    ];
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = creates
            .iter()
            .zip(&nodes)
            .map(|(statement, n)| {
                scope.spawn(move || n.post("/v1/sql", &json!({"sql": statement})))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<usize> = (0..2).filter(|&i| answers[i].0 == 200).collect();
    assert_eq!(won.len(), 1, "exactly one create wins: {answers:?}");
    let lost = 1 - won[0];
    assert_eq!(
        answers[lost].1["error"]["code"], "exists",
        "the other is told: {answers:?}"
    );
    let topic = ["twin_a", "twin_b"][won[0]];
    for n in &nodes {
        assert!(
            eventually(DEADLINE, || {
                let (_, body) = n.post("/v1/sql", &json!({"sql": "DESCRIBE twin;"}));
                body.to_string().contains(topic)
            }),
            "the winner's stream at every node"
        );
        assert!(
            eventually(DEADLINE, || {
                let (_, body) = n.get("/v1/processors");
                body.to_string().matches("CSAS_TWIN_").count() == 1
            }),
            "one query processor for twin: {}",
            n.get("/v1/processors").1
        );
    }
    sql(&nodes[0], "DROP STREAM twin;");

    // Dropped at node 1 (which did not create it), the stream and its query are gone from
    // every node; so is the function dropped at node 3.
    sql(&nodes[0], "DROP STREAM masked;");
    for n in &nodes {
        assert!(eventually(DEADLINE, || {
            let streams = shown(n, "STREAMS");
            streams.contains("PAYMENTS") && !streams.contains("MASKED")
        }));
        assert!(eventually(DEADLINE, || !shown(n, "QUERIES").contains("MASKED")));
    }
    sql(&nodes[2], "DROP FUNCTION mask;");
    for n in &nodes {
        assert!(eventually(DEADLINE, || !has_function(n, "mask")));
    }
}

//! Streaming SQL end to end: statements over `POST /v1/sql`, push and pull queries over
//! `POST /v1/query`, persistent queries across a restart that loses the local state, errors
//! with positions, and the `weir sql` CLI.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Server, eventually, stdout};

/// The fraud query of the KSQL talks, character for character.
const FRAUD: &str = "CREATE STREAM possible_fraud AS SELECT card_number, count() FROM authorization_attempts WINDOW TUMBLING (SIZE 5 MINUTE) GROUP BY card_number HAVING count() > 3;";
const WINDOW_MS: i64 = 300_000;
const BASE: i64 = 1_700_000_100_000 - 1_700_000_100_000 % WINDOW_MS;

impl Server {
    /// Runs statements; asserts success and returns the results.
    fn sql(&self, sql: &str) -> Vec<Value> {
        let (status, body) = self.post(
            "/v1/sql",
            &json!({"sql": sql, "properties": {"commit.interval.ms": 100}}),
        );
        assert_eq!(status, 200, "{sql}: {body}");
        body["results"].as_array().unwrap().clone()
    }

    /// Runs a statement that must fail; returns the error object.
    fn sql_error(&self, sql: &str) -> (u16, Value) {
        let (status, body) = self.post("/v1/sql", &json!({ "sql": sql }));
        assert_ne!(status, 200, "{sql} should fail: {body}");
        (status, body["error"].clone())
    }

    /// Every record value of a topic (all partitions), parsed as JSON, with its key.
    fn json_values(&self, topic: &str) -> Vec<(Option<String>, Value)> {
        let partitions = self.describe(topic)["partitions"].as_i64().unwrap();
        let mut out = Vec::new();
        for p in 0..partitions {
            for r in self.read_all(topic, p, 0) {
                let key = r["key"].as_str().map(str::to_string);
                if let Some(v) = r["value"].as_str() {
                    out.push((key, serde_json::from_str(v).unwrap()));
                }
            }
        }
        out
    }
}

/// Deterministic attempts: for each card and window, a count in 0..=7, timestamps spread
/// inside the window, produced in a scrambled order. Returns the expected fraud answer:
/// (card, window start) → attempts, for counts above 3.
fn produce_attempts(
    server: &Server,
    windows: std::ops::Range<i64>,
) -> BTreeMap<(String, i64), i64> {
    let mut seed: u64 = 42;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as i64
    };
    let mut records = Vec::new();
    let mut expected = BTreeMap::new();
    for w in windows {
        for card in 0..30 {
            let n = next() % 8;
            let card_number = format!("4000-0000-0000-{card:04}");
            for _ in 0..n {
                let ts = BASE + w * WINDOW_MS + next() % WINDOW_MS;
                records.push(json!({
                    "value": json!({"card_number": card_number, "merchant": "m", "amount": 9.99}).to_string(),
                    "timestamp": ts,
                }));
            }
            if n > 3 {
                expected.insert((card_number, BASE + w * WINDOW_MS), n);
            }
        }
    }
    // Scramble: records of a window arrive out of order (grace is the 24 h default).
    for i in (1..records.len()).rev() {
        let j = (next() as usize) % (i + 1);
        records.swap(i, j);
    }
    for chunk in records.chunks(500) {
        server.produce("authorization_attempts", chunk.to_vec());
    }
    expected
}

fn fraud_answer(server: &Server, topic: &str, count_col: &str) -> BTreeMap<(String, i64), i64> {
    let mut latest = BTreeMap::new();
    for (_, v) in server.json_values(topic) {
        let card = v["CARD_NUMBER"].as_str().unwrap().to_string();
        let start = v["WINDOWSTART"].as_i64().unwrap();
        latest.insert((card, start), v[count_col].as_i64().unwrap());
    }
    latest
}

fn create_attempts(server: &Server) {
    server.sql(
        "CREATE STREAM authorization_attempts (card_number VARCHAR, merchant VARCHAR, amount DOUBLE) \
         WITH (KAFKA_TOPIC='authorization_attempts', VALUE_FORMAT='JSON', PARTITIONS=3);",
    );
}

#[test]
fn the_fraud_query_runs_as_written_and_finds_exactly_the_cards() {
    let server = Server::start(&[]);
    create_attempts(&server);
    let expected = produce_attempts(&server, 0..3);
    assert!(expected.len() > 10, "the data should have fraud in it");
    let r = server.sql(FRAUD);
    assert_eq!(r[0]["type"], "created", "{r:?}");
    // Today's ksqlDB spelling of the same question.
    server.sql(
        "CREATE TABLE fraud_table AS SELECT card_number, COUNT(*) AS attempts \
         FROM authorization_attempts WINDOW TUMBLING (SIZE 5 MINUTES) \
         GROUP BY card_number HAVING COUNT(*) > 3 EMIT CHANGES;",
    );
    assert!(
        eventually(Duration::from_secs(60), || fraud_answer(
            &server,
            "POSSIBLE_FRAUD",
            "KSQL_COL_0"
        ) == expected),
        "fraud stream: {:?}\nexpected {expected:?}",
        fraud_answer(&server, "POSSIBLE_FRAUD", "KSQL_COL_0")
    );
    assert!(
        eventually(Duration::from_secs(60), || fraud_answer(
            &server,
            "FRAUD_TABLE",
            "ATTEMPTS"
        ) == expected),
        "fraud table: {:?}",
        fraud_answer(&server, "FRAUD_TABLE", "ATTEMPTS")
    );
    // The change stream never reports a count of 3 or less.
    assert!(
        server
            .json_values("POSSIBLE_FRAUD")
            .iter()
            .all(|(_, v)| v["KSQL_COL_0"].as_i64().unwrap() > 3)
    );
    let queries = &server.sql("SHOW QUERIES;")[0];
    assert_eq!(queries["rows"].as_array().unwrap().len(), 2, "{queries}");
    let d = &server.sql("DESCRIBE possible_fraud;")[0];
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("written by CSAS_POSSIBLE_FRAUD_1"),
        "{d}"
    );
}

#[test]
fn a_windowed_aggregation_survives_a_restart_that_loses_local_state() {
    let mut server = Server::start(&[]);
    create_attempts(&server);
    let expected_first = produce_attempts(&server, 0..2);
    server.sql(FRAUD);
    assert!(eventually(Duration::from_secs(60), || {
        fraud_answer(&server, "POSSIBLE_FRAUD", "KSQL_COL_0") == expected_first
    }));
    assert!(server.terminate(), "clean shutdown");
    // Lose the node's state stores: the query must rebuild them from its changelogs.
    std::fs::remove_dir_all(server.data_dir.join("state")).unwrap();
    server.start_again();
    // More attempts in the same windows (and a new one) after the restart; the answer is
    // now computed from everything in the topic.
    produce_attempts(&server, 0..3);
    let answer = || {
        let mut counts: BTreeMap<(String, i64), i64> = BTreeMap::new();
        for p in 0..3 {
            for r in server.read_all("authorization_attempts", p, 0) {
                let v: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
                let ts = r["timestamp"].as_i64().unwrap();
                let w = ts - ts.rem_euclid(WINDOW_MS);
                *counts
                    .entry((v["card_number"].as_str().unwrap().to_string(), w))
                    .or_default() += 1;
            }
        }
        counts.retain(|_, n| *n > 3);
        counts
    };
    let truth = answer();
    assert!(
        eventually(Duration::from_secs(60), || fraud_answer(
            &server,
            "POSSIBLE_FRAUD",
            "KSQL_COL_0"
        ) == truth),
        "after restart: {:?}\nexpected {truth:?}",
        fraud_answer(&server, "POSSIBLE_FRAUD", "KSQL_COL_0")
    );
}

#[test]
fn hopping_and_session_windows_with_out_of_order_and_late_records() {
    let server = Server::start(&[]);
    server.sql(
        "CREATE STREAM events (user VARCHAR KEY, v INT) WITH (KAFKA_TOPIC='events', PARTITIONS=1);",
    );
    let props = json!({"commit.interval.ms": 100});
    for sql in [
        "CREATE TABLE hops AS SELECT user, COUNT(*) AS n FROM events \
         WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 5 SECONDS, GRACE PERIOD 2 SECONDS) \
         GROUP BY user EMIT FINAL;",
        "CREATE TABLE sessions AS SELECT user, COUNT(*) AS n, SUM(v) AS total FROM events \
         WINDOW SESSION (5 SECONDS, GRACE PERIOD 3 SECONDS) GROUP BY user EMIT FINAL;",
    ] {
        let (status, body) = server.post("/v1/sql", &json!({"sql": sql, "properties": props}));
        assert_eq!(status, 200, "{body}");
    }
    let base = BASE; // aligned to 10 s
    // Seconds after base: 7 arrives before 3 (out of order, within grace); 4 arrives after
    // stream time reached 30 (late for every window and session); 100 closes the rest.
    for s in [1, 7, 3, 12, 30, 4, 100] {
        server.produce(
            "events",
            vec![json!({"key": "a", "value": json!({"v": s}).to_string(), "timestamp": base + s * 1000})],
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    let rel = |v: &Value, c: &str| (v[c].as_i64().unwrap() - base) / 1000;
    let hops = || -> BTreeSet<(i64, i64, i64)> {
        server
            .json_values("HOPS")
            .iter()
            .map(|(_, v)| {
                (
                    rel(v, "WINDOWSTART"),
                    rel(v, "WINDOWEND"),
                    v["N"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let want: BTreeSet<(i64, i64, i64)> = [
        // 3 arrives when stream time is 7: too late for [-5, 5) (closed at 5 + 2 s grace),
        // in time for [0, 10).
        (-5, 5, 1),
        (0, 10, 3),
        (5, 15, 2),
        (10, 20, 1),
        (25, 35, 1),
        (30, 40, 1),
    ]
    .into();
    assert!(
        eventually(Duration::from_secs(30), || hops() == want),
        "hops {:?}",
        hops()
    );
    // EMIT FINAL: exactly one row per closed window.
    assert_eq!(server.json_values("HOPS").len(), want.len());
    let sessions = || -> Vec<(i64, i64, i64, i64)> {
        server
            .json_values("SESSIONS")
            .iter()
            .map(|(_, v)| {
                (
                    rel(v, "WINDOWSTART"),
                    rel(v, "WINDOWEND"),
                    v["N"].as_i64().unwrap(),
                    v["TOTAL"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    // 1 and 7 are separate sessions (gap 5 s) until 3 bridges them; 12 extends the merged
    // session; stream time 30 closes it (12 + 5 + 3 <= 30); 4 is then late.
    let want_sessions = vec![(1, 12, 4, 23), (30, 30, 1, 30)];
    assert!(
        eventually(Duration::from_secs(30), || sessions() == want_sessions),
        "sessions {:?}",
        sessions()
    );
    // The late record is counted in both queries' status.
    let queries = &server.sql("SHOW QUERIES;")[0];
    for row in queries["rows"].as_array().unwrap() {
        assert_eq!(row[3], json!(1), "late records of {row}");
    }
}

#[test]
fn joins_pull_queries_and_push_queries() {
    let server = Server::start(&[]);
    server.sql(
        "CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR, tier INT) \
           WITH (KAFKA_TOPIC='users', PARTITIONS=2); \
         CREATE STREAM clicks (user_id VARCHAR, url VARCHAR, ms INT) \
           WITH (KAFKA_TOPIC='clicks', PARTITIONS=2); \
         INSERT INTO users (id, name, tier) VALUES ('u1', 'Ann', 1); \
         INSERT INTO users (id, name, tier) VALUES ('u2', 'Bob', 2); \
         INSERT INTO users (id, name, tier) VALUES ('u1', 'Ann B.', 3);",
    );
    server.sql(
        "CREATE STREAM enriched AS SELECT c.user_id AS user_id, u.name AS name, u.tier AS tier, c.url AS url \
           FROM clicks c LEFT JOIN users u ON c.user_id = u.id; \
         CREATE STREAM known AS SELECT c.user_id, UCASE(u.name) AS shout FROM clicks c JOIN users u ON c.user_id = u.id \
           WHERE c.ms > 10; \
         CREATE TABLE per_user AS SELECT user_id, COUNT(*) AS clicks, AVG(ms) AS avg_ms, MAX(url) AS last_url \
           FROM clicks GROUP BY user_id;",
    );
    std::thread::sleep(Duration::from_millis(500));
    server.sql(
        "INSERT INTO clicks (user_id, url, ms) VALUES ('u1', '/a', 20); \
         INSERT INTO clicks (user_id, url, ms) VALUES ('u2', '/b', 5); \
         INSERT INTO clicks (user_id, url, ms) VALUES ('u3', '/c', 50); \
         INSERT INTO clicks (user_id, url, ms) VALUES ('u1', '/d', 40);",
    );
    assert!(eventually(Duration::from_secs(30), || server
        .json_values("ENRICHED")
        .len()
        == 4));
    let enriched: BTreeSet<String> = server
        .json_values("ENRICHED")
        .iter()
        .map(|(_, v)| v.to_string())
        .collect();
    for want in [
        json!({"USER_ID":"u1","NAME":"Ann B.","TIER":3,"URL":"/a"}),
        json!({"USER_ID":"u2","NAME":"Bob","TIER":2,"URL":"/b"}),
        json!({"USER_ID":"u3","NAME":null,"TIER":null,"URL":"/c"}),
    ] {
        assert!(
            enriched.contains(&want.to_string()),
            "{want} in {enriched:?}"
        );
    }
    assert!(eventually(Duration::from_secs(30), || server
        .json_values("KNOWN")
        .len()
        == 2));
    let known: BTreeSet<String> = server
        .json_values("KNOWN")
        .iter()
        .map(|(_, v)| v["SHOUT"].to_string())
        .collect();
    assert_eq!(known, BTreeSet::from(["\"ANN B.\"".to_string()]));

    // Pull query, from the aggregate's state store.
    let pull = |sql: &str| -> Vec<Value> {
        let (status, body) = server.post("/v1/sql", &json!({ "sql": sql }));
        assert_eq!(status, 200, "{body}");
        body["results"][0]["rows"].as_array().unwrap().clone()
    };
    assert!(eventually(Duration::from_secs(30), || {
        pull("SELECT user_id, clicks, avg_ms, last_url FROM per_user WHERE user_id = 'u1';")
            == vec![json!(["u1", 2, 30.0, "/d"])]
    }));
    assert_eq!(
        pull("SELECT * FROM per_user WHERE user_id = 'nobody';"),
        Vec::<Value>::new()
    );
    // A pull query over the source table (latest value per key).
    assert_eq!(
        pull("SELECT name FROM users WHERE id = 'u1';"),
        vec![json!(["Ann B."])]
    );

    // Push query: header first, then rows as they are inserted; disconnecting ends it.
    let resp = server
        .http
        .post(format!("{}/v1/query", server.url))
        .json(&json!({"sql": "SELECT user_id, url FROM clicks WHERE ms > 100 EMIT CHANGES;"}))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut lines = BufReader::new(resp).lines();
    let header: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(header["header"]["columns"], json!(["USER_ID", "URL"]));
    let query_id = header["header"]["query_id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(500));
    server.sql(
        "INSERT INTO clicks (user_id, url, ms) VALUES ('u9', '/slow', 500); \
         INSERT INTO clicks (user_id, url, ms) VALUES ('u9', '/fast', 1);",
    );
    let row: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(row["row"], json!(["u9", "/slow"]));
    drop(lines);
    assert!(
        eventually(Duration::from_secs(30), || {
            let (_, body) = server.get("/v1/processors");
            !body.to_string().contains(&query_id)
        }),
        "the push query's processor is removed after the client goes"
    );
    // A pull query over /v1/query: header then rows, then the stream ends.
    let text = server
        .http
        .post(format!("{}/v1/query", server.url))
        .json(&json!({"sql": "SELECT clicks FROM per_user WHERE user_id = 'u2';"}))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![
            json!({"header": {"columns": ["CLICKS"]}}),
            json!({"row": [1]})
        ]
    );
}

#[test]
fn sql_errors_say_what_and_where() {
    let server = Server::start(&[]);
    create_attempts(&server);
    let cases = [
        (
            "SELECT card_number FROM authorization_attempts WHERE",
            "sql_syntax",
            Some((1, 53)),
        ),
        (
            "SELECT nope FROM authorization_attempts EMIT CHANGES;",
            "unknown_column",
            Some((1, 8)),
        ),
        (
            "CREATE STREAM x AS SELECT card_number FROM authorization_attempts WHERE amount = 'cheap';",
            "type_mismatch",
            Some((1, 73)),
        ),
        (
            "CREATE STREAM y AS SELECT frobnicate(card_number) FROM authorization_attempts;",
            "unknown_function",
            Some((1, 27)),
        ),
        (
            "SELECT * FROM nowhere EMIT CHANGES;",
            "unknown_source",
            None,
        ),
        (
            "CREATE STREAM z AS SELECT merchant, count() FROM authorization_attempts GROUP BY card_number;",
            "invalid_statement",
            Some((1, 27)),
        ),
        (
            "CREATE STREAM w (a FLOAT8) WITH (KAFKA_TOPIC='w', PARTITIONS=1);",
            "sql_syntax",
            Some((1, 20)),
        ),
    ];
    for (sql, code, pos) in cases {
        let (status, err) = server.sql_error(sql);
        assert_eq!(status, 400, "{sql}: {err}");
        assert_eq!(err["code"], code, "{sql}: {err}");
        assert!(!err["message"].as_str().unwrap().is_empty());
        if let Some((line, column)) = pos {
            assert_eq!(
                (err["line"].as_i64(), err["column"].as_i64()),
                (Some(line), Some(column)),
                "{sql}: {err}"
            );
        }
    }
    // Nothing was created by the failed statements.
    let streams = &server.sql("SHOW STREAMS;")[0];
    assert_eq!(streams["rows"].as_array().unwrap().len(), 1, "{streams}");
    let (_, procs) = server.get("/v1/processors");
    assert_eq!(procs["processors"], json!([]));
}

#[test]
fn the_sql_cli_runs_statements_and_scripts() {
    let server = Server::start(&[]);
    let out = server.cli(
        &["sql", "-e", "CREATE STREAM s (k VARCHAR KEY, n INT) WITH (KAFKA_TOPIC='s', PARTITIONS=1); SHOW STREAMS;"],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("stream S created"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("| S ") && l.contains("| s ")),
        "{text}"
    );
    let script = "INSERT INTO s (k, n) VALUES ('a', 1);\n-- a comment; with a semicolon\nINSERT INTO s (k, n) VALUES ('b', 2);\nSELECT k, n * 10 AS ten FROM s EMIT CHANGES LIMIT 2;\n";
    let out = server.cli(
        &["sql", "-f", "-", "--property", "auto.offset.reset=earliest"],
        Some(script),
    );
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let row = |k: &str, n: &str| {
        text.lines().any(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            cells.len() == 4 && cells[1] == k && cells[2] == n
        })
    };
    assert!(row("a", "10") && row("b", "20"), "{text}");
    let out = server.cli(&["sql", "-e", "SELECT x FROM s EMIT CHANGES;"], None);
    assert!(!out.status.success());
    assert!(
        crate::common::stderr(&out).contains("line 1, column 8"),
        "{out:?}"
    );
}

#[test]
fn terminate_drop_and_listings() {
    let server = Server::start(&[]);
    server.sql(
        "CREATE STREAM src (id VARCHAR KEY, n INT) WITH (KAFKA_TOPIC='src', PARTITIONS=2); \
         CREATE STREAM doubled AS SELECT id, n * 2 AS n2 FROM src;",
    );
    // A source that a query reads cannot be dropped.
    let (status, err) = server.sql_error("DROP STREAM src;");
    assert_eq!(status, 400);
    assert!(
        err["message"].as_str().unwrap().contains("CSAS_DOUBLED_1"),
        "{err}"
    );
    let (status, err) = server.sql_error("TERMINATE no_such_query;");
    assert_eq!((status, err["code"].as_str()), (404, Some("not_found")));
    let r = server.sql("TERMINATE CSAS_DOUBLED_1; SHOW QUERIES;");
    assert_eq!(r[1]["rows"], json!([]));
    let (_, procs) = server.get("/v1/processors");
    assert_eq!(
        procs["processors"],
        json!([]),
        "the query's processor is gone"
    );
    let r =
        server.sql("DROP STREAM doubled DELETE TOPIC; DROP STREAM src; SHOW STREAMS; SHOW TOPICS;");
    assert_eq!(r[2]["rows"], json!([]));
    let topics = r[3]["rows"].to_string();
    assert!(
        !topics.contains("DOUBLED") && topics.contains("src"),
        "{topics}"
    );
    let (status, _) = server.sql_error("DROP STREAM src;");
    assert_eq!(status, 404);
    server.sql("DROP STREAM IF EXISTS src;");
    let f = &server.sql("SHOW FUNCTIONS; DESCRIBE FUNCTION ucase;");
    assert!(f[0]["rows"].to_string().contains("LATEST_BY_OFFSET"));
    assert_eq!(f[1]["rows"][0][0], "UCASE");
}

/// `n` nested copies of `open`, then `inner`, then `n` copies of `close`.
fn nest(open: &str, inner: &str, close: &str, n: usize) -> String {
    format!("{}{inner}{}", open.repeat(n), close.repeat(n))
}

/// `n` copies of `term` joined by `op`.
fn chain(term: &str, op: &str, n: usize) -> String {
    vec![term; n].join(op)
}

/// Issue #12, finding 1: statements nested deep enough to overflow a stack (10,000-deep
/// parentheses, a 100,000-term AND chain, 1,000 nested function calls, and the smaller shapes
/// that killed a debug build) are refused with 400 and a stable code, on both endpoints, and
/// the server answers the next request.
#[test]
fn hostile_nesting_is_refused_and_the_server_keeps_serving() {
    let server = Server::start(&[]);
    server.sql(
        "CREATE STREAM s (id VARCHAR KEY, a INT, b BOOLEAN) WITH (KAFKA_TOPIC='s', PARTITIONS=1);",
    );
    let parens = nest("(", "b", ")", 10_000);
    let and_chain = chain("b", " AND ", 100_000);
    let calls = nest("UPPER(", "id", ")", 1_000);
    let plus_chain = chain("a", " + ", 100);
    let cases = [
        (
            format!("SELECT id FROM s WHERE {parens} EMIT CHANGES;"),
            "sql_too_deep",
        ),
        (
            format!("SELECT id FROM s WHERE {and_chain} EMIT CHANGES;"),
            "sql_too_complex",
        ),
        (
            format!("SELECT {calls} FROM s EMIT CHANGES;"),
            "sql_too_deep",
        ),
        (
            format!(
                "SELECT id FROM s WHERE {} EMIT CHANGES;",
                nest("(", "b", ")", 70)
            ),
            "sql_too_deep",
        ),
        (
            format!("SELECT id FROM s WHERE {plus_chain} > 0 EMIT CHANGES;"),
            "sql_too_deep",
        ),
        (
            format!(
                "SELECT id FROM s WHERE {} EMIT CHANGES;",
                chain("b", " AND ", 1_000)
            ),
            "sql_too_deep",
        ),
        (
            format!(
                "SELECT id FROM s WHERE {} EMIT CHANGES;",
                nest("NOT ", "b", "", 1_000)
            ),
            "sql_too_deep",
        ),
        (
            format!("SELECT {} FROM s EMIT CHANGES;", chain("id", " || ", 2_000)),
            "sql_too_deep",
        ),
    ];
    for (sql, code) in &cases {
        for endpoint in ["/v1/sql", "/v1/query"] {
            let (status, body) = server.post(endpoint, &json!({ "sql": sql }));
            let short = &sql[..sql.len().min(60)];
            assert_eq!(status, 400, "{endpoint} {short}…: {body}");
            assert_eq!(body["error"]["code"], *code, "{endpoint} {short}…: {body}");
            let (health, _) = server.get("/health");
            assert_eq!(health, 200, "the server stopped answering after {short}…");
        }
    }
    // Statements within the limits, as deep as allowed, plan, run, and load again after a
    // restart (their plans are stored and read back).
    let deep = |n: usize| {
        format!(
            "CREATE STREAM deep AS SELECT id, {} AS c FROM s WHERE {} AND ({});",
            nest("CONCAT(", "id", ", 'x')", 60),
            nest("NOT ", "b", "", 60),
            chain("a > 0", " AND ", n),
        )
    };
    server.sql(&deep(30));
    let mut server = server;
    for round in ["k1", "k2"] {
        server.produce(
            "s",
            vec![json!({"key": round, "value": json!({"a": 1, "b": true}).to_string()})],
        );
        let expected = format!("{round}{}", "x".repeat(60));
        assert!(
            eventually(Duration::from_secs(30), || {
                server
                    .json_values("DEEP")
                    .iter()
                    .any(|(_, v)| v["C"] == expected)
            }),
            "the deep query produced nothing for {round}"
        );
        if round == "k1" {
            // The stored plan is read back at start.
            server.restart();
        }
    }
    let queries = &server.sql("SHOW QUERIES;")[0];
    assert_eq!(queries["rows"][0][1], "running", "{queries}");
}

/// Issue #12, finding 7: what the log refuses in a statement is the statement's fault (400
/// with the log's code), not a `500 log`.
#[test]
fn sql_mistakes_the_log_finds_are_400_with_its_codes() {
    let server = Server::start(&[]);
    server.create_topic(json!({"name": "compacted", "partitions": 1, "compacted": true}));
    server.sql("CREATE STREAM cs (id VARCHAR KEY, a INT) WITH (KAFKA_TOPIC='compacted');");
    let cases = [
        (
            "CREATE STREAM bad (a INT) WITH (KAFKA_TOPIC='bad name!', PARTITIONS=1);",
            "invalid_topic_name",
        ),
        (
            "CREATE STREAM big (a INT) WITH (KAFKA_TOPIC='big', PARTITIONS=100000);",
            "invalid_config",
        ),
        (
            "CREATE STREAM bad2 WITH (KAFKA_TOPIC='no/slash') AS SELECT id FROM cs;",
            "invalid_topic_name",
        ),
        ("INSERT INTO cs (a) VALUES (1);", "invalid_record"),
    ];
    for (sql, code) in cases {
        let (status, err) = server.sql_error(sql);
        assert_eq!(
            (status, err["code"].as_str()),
            (400, Some(code)),
            "{sql}: {err}"
        );
    }
    let (status, _) = server.get("/v1/topics/big");
    assert_eq!(status, 404);
    // A storage failure is the server's (5xx) and names the file.
    let tmp = server.data_dir().join("sql").join("catalog.tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let (status, err) =
        server.sql_error("CREATE STREAM t (a INT) WITH (KAFKA_TOPIC='t', PARTITIONS=1);");
    assert!((500..600).contains(&status), "{status} {err}");
    assert!(
        err["message"].as_str().unwrap().contains("catalog.json"),
        "{err}"
    );
    std::fs::remove_dir(&tmp).unwrap();
}

/// Issue #12, finding 7: a script is checked whole before any statement runs; when a statement
/// fails while running, the answer says which ran and which did not.
#[test]
fn a_script_is_checked_before_it_runs_and_says_what_ran() {
    let server = Server::start(&[]);
    let (status, body) = server.post(
        "/v1/sql",
        &json!({"sql": "CREATE STREAM one (a INT) WITH (KAFKA_TOPIC='one', PARTITIONS=1); \
                        CREATE STREAM two (a INT) WITH (KAFKA_TOPIC='two', PARTITIONS=100000);"}),
    );
    assert_eq!(status, 400, "{body}");
    let err = &body["error"];
    assert_eq!(err["code"], "invalid_config", "{err}");
    assert_eq!(err["statement_index"], 1, "{err}");
    assert_eq!(err["executed"], json!([]), "{err}");
    assert_eq!(err["not_executed"].as_array().unwrap().len(), 2, "{err}");
    let streams = &server.sql("SHOW STREAMS;")[0];
    assert_eq!(streams["rows"], json!([]), "nothing may run: {streams}");
    assert_eq!(server.get("/v1/topics/one").0, 404);

    // The second statement passes the checks but fails running: the first stays done.
    let (status, body) = server.post(
        "/v1/sql",
        &json!({"sql": "CREATE STREAM three (a INT) WITH (KAFKA_TOPIC='three', PARTITIONS=1); \
                        CREATE STREAM three (a INT) WITH (KAFKA_TOPIC='three', PARTITIONS=1); \
                        SHOW STREAMS;"}),
    );
    assert_eq!(status, 409, "{body}");
    let err = &body["error"];
    assert_eq!(err["code"], "exists", "{err}");
    assert_eq!(err["statement_index"], 1, "{err}");
    let executed = err["executed"].as_array().unwrap();
    assert_eq!(executed.len(), 1, "{err}");
    assert_eq!(executed[0]["type"], "created", "{err}");
    assert_eq!(
        err["not_executed"],
        json!([
            "CREATE STREAM three (a INT) WITH (KAFKA_TOPIC='three', PARTITIONS=1)",
            "SHOW STREAMS"
        ]),
        "{err}"
    );
}

/// The fraud query on a cluster of three real processes: stated at node 1, its tasks run
/// on every node (placement), its answer is read at node 2, and it survives the kill -9 of
/// a node running some of its tasks: the answer stays and new windows are answered by the
/// tasks' new owners.
#[test]
fn the_fraud_query_runs_on_a_cluster_and_its_answer_survives_a_kill() {
    use crate::replication::{create_replicated, fully_replicated, start_cluster};
    let mut nodes = start_cluster();
    // The cluster has formed, every node registered, once a topic with three replicas can
    // be created (the query's topics then get three too).
    create_replicated(
        &nodes[0],
        json!({"name": "warmup", "partitions": 1, "replication_factor": 3}),
    );
    create_attempts(&nodes[0]);
    assert!(eventually(Duration::from_secs(60), || nodes
        .iter()
        .all(|n| fully_replicated(n, "authorization_attempts", 3))));
    let expected = produce_attempts(&nodes[0], 0..3);
    nodes[0].sql(FRAUD);
    let answer = |s: &Server| fraud_answer(s, "POSSIBLE_FRAUD", "KSQL_COL_0");
    assert!(
        eventually(Duration::from_secs(90), || answer(&nodes[1]) == expected),
        "fraud stream on the cluster: {:?}\nexpected {expected:?}",
        answer(&nodes[1])
    );
    let owners = |s: &Server| -> Vec<Option<u64>> {
        let (_, d) = s.get("/v1/processors");
        let name = d["processors"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (_, d) = s.get(&format!("/v1/processors/{name}"));
        d["assignment"]
            .as_array()
            .map(|a| a.iter().map(|t| t["node"].as_u64()).collect())
            .unwrap_or_default()
    };
    let spread: BTreeSet<u64> = owners(&nodes[0]).into_iter().flatten().collect();
    assert_eq!(
        spread.len(),
        3,
        "the query's tasks are not on every node: {spread:?}"
    );

    // Everything committed (at-least-once: what a killed node processed but had not
    // committed is processed again, and a window counted twice).
    let query_name = nodes[0].get("/v1/processors").1["processors"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(eventually(Duration::from_secs(90), || {
        crate::processors::caught_up(&nodes[0], &query_name)
    }));
    // kill -9 of node 3: its tasks move; the answer stays and grows with new windows.
    nodes[2].kill9();
    assert!(eventually(Duration::from_secs(90), || {
        let o = owners(&nodes[0]);
        !o.is_empty() && o.iter().all(|n| matches!(n, Some(1) | Some(2)))
    }));
    let mut more = expected.clone();
    more.extend(produce_attempts(&nodes[0], 3..5));
    assert!(
        eventually(Duration::from_secs(90), || answer(&nodes[1]) == more),
        "fraud stream after the kill: {:?}\nexpected {more:?}",
        answer(&nodes[1])
    );
}

//! SQL through [`SqlService`] over a real broker and the task runtime (in-memory state),
//! without HTTP: statements, persistent queries and their outputs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir_broker::txn::TxnCoordinator;
use weir_broker::{Broker, BrokerConfig};

use super::loader::{NoFunctions, SqlLoader};
use super::service::{QueryStart, SqlService};
use crate::engine::{Engine, EngineConfig};
use crate::native::NativeLoader;
use crate::state::memory::MemoryBackend;

struct Env {
    _dir: tempfile::TempDir,
    broker: Broker,
    engine: Engine,
    sql: SqlService,
    /// The node's transaction coordinator (exactly-once queries).
    _txn: Arc<TxnCoordinator>,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path().join("log"))).unwrap();
    let txn = TxnCoordinator::open_local(&broker).unwrap();
    let functions = Arc::new(NoFunctions);
    let engine = Engine::open(
        &EngineConfig::under(dir.path()),
        Arc::new(broker.clone()),
        Arc::new(MemoryBackend::new()),
        Arc::new(SqlLoader::new(Arc::new(NativeLoader), functions.clone())),
    )
    .unwrap();
    engine.start().unwrap();
    let sql = SqlService::open(
        &dir.path().join("sql"),
        engine.clone(),
        Arc::new(broker.clone()),
        functions,
        None,
    )
    .unwrap();
    Env {
        _dir: dir,
        broker,
        engine,
        sql,
        _txn: txn,
    }
}

fn props() -> BTreeMap<String, String> {
    [("commit.interval.ms".to_string(), "50".to_string())].into()
}

impl Env {
    fn run(&self, sql: &str) -> Vec<super::StatementResult> {
        self.sql
            .execute(sql, &props())
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    fn values(&self, topic: &str) -> Vec<(Option<String>, Value)> {
        let n = self.broker.partition_count(topic).unwrap();
        let mut out = Vec::new();
        for p in 0..n {
            let r = self.broker.read(topic, p, 0, 1_000_000, 256 << 20).unwrap();
            for rec in r.records {
                let k = rec.key.map(|k| String::from_utf8_lossy(&k).into_owned());
                let v = rec
                    .value
                    .map(|v| serde_json::from_slice(&v).unwrap())
                    .unwrap_or(Value::Null);
                out.push((k, v));
            }
        }
        out
    }
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn the_fraud_query_finds_cards_with_more_than_three_attempts_per_window() {
    let e = env();
    e.run(
        "CREATE STREAM authorization_attempts (card_number VARCHAR, amount DOUBLE, ts BIGINT) \
         WITH (KAFKA_TOPIC='auth', VALUE_FORMAT='JSON', PARTITIONS=3, TIMESTAMP='ts');",
    );
    // Card c<i> makes i attempts in window 0 and one in window 1.
    let mut inserts = String::new();
    let mut expected = BTreeSet::new();
    for i in 0..8 {
        for j in 0..i {
            inserts.push_str(&format!(
                "INSERT INTO authorization_attempts (card_number, amount, ts) VALUES ('c{i}', 1.5, {});",
                j * 1000
            ));
        }
        inserts.push_str(&format!(
            "INSERT INTO authorization_attempts (card_number, amount, ts) VALUES ('c{i}', 2, {});",
            300_000 + i
        ));
        if i > 3 {
            expected.insert((format!("c{i}"), i as i64));
        }
    }
    e.run(&inserts);
    e.run(
        "CREATE STREAM possible_fraud AS SELECT card_number, count() FROM authorization_attempts \
         WINDOW TUMBLING (SIZE 5 MINUTE) GROUP BY card_number HAVING count() > 3;",
    );
    let latest = || {
        let mut m: BTreeMap<(String, i64), i64> = BTreeMap::new();
        for (_, v) in e.values("POSSIBLE_FRAUD") {
            let card = v["CARD_NUMBER"].as_str().unwrap().to_string();
            m.insert(
                (card, v["WINDOWSTART"].as_i64().unwrap()),
                v["KSQL_COL_0"].as_i64().unwrap(),
            );
        }
        m.into_iter()
            .map(|((c, _), n)| (c, n))
            .collect::<BTreeSet<_>>()
    };
    eventually("fraud results", || latest() == expected);
    let shown = e.run("SHOW QUERIES;");
    assert_eq!(shown[0].rows.as_ref().unwrap().len(), 1);
}

#[test]
fn filters_projections_and_a_stream_table_join() {
    let e = env();
    e.run(
        "CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR, tier INT) \
         WITH (KAFKA_TOPIC='users', PARTITIONS=2); \
         CREATE STREAM clicks (user_id VARCHAR, url VARCHAR, n INT) \
         WITH (KAFKA_TOPIC='clicks', PARTITIONS=2); \
         INSERT INTO users (id, name, tier) VALUES ('u1', 'Ann', 1); \
         INSERT INTO users (id, name, tier) VALUES ('u2', 'Bob', 2);",
    );
    std::thread::sleep(Duration::from_millis(50));
    e.run(
        "INSERT INTO clicks (user_id, url, n) VALUES ('u1', '/a', 1); \
         INSERT INTO clicks (user_id, url, n) VALUES ('u2', '/b', 5); \
         INSERT INTO clicks (user_id, url, n) VALUES ('u3', '/c', 7); \
         CREATE STREAM big AS SELECT user_id, UCASE(url) AS u, n * 2 AS twice, \
           CASE WHEN n > 3 THEN 'big' ELSE 'small' END AS size FROM clicks WHERE url LIKE '/%' AND n >= 1; \
         CREATE STREAM enriched AS SELECT c.user_id, u.name, c.url FROM clicks c \
           LEFT JOIN users u ON c.user_id = u.id;",
    );
    eventually("projection", || e.values("BIG").len() == 3);
    let big: BTreeSet<String> = e
        .values("BIG")
        .into_iter()
        .map(|(_, v)| v.to_string())
        .collect();
    assert!(
        big.contains(&json!({"USER_ID":"u2","U":"/B","TWICE":10,"SIZE":"big"}).to_string()),
        "{big:?}"
    );
    eventually("join", || e.values("ENRICHED").len() == 3);
    let joined: BTreeMap<String, Value> = e
        .values("ENRICHED")
        .into_iter()
        .map(|(_, v)| {
            (
                v["USER_ID"].as_str().unwrap().to_string(),
                v["NAME"].clone(),
            )
        })
        .collect();
    assert_eq!(joined["u1"], json!("Ann"));
    assert_eq!(joined["u2"], json!("Bob"));
    assert_eq!(joined["u3"], Value::Null);
}

#[test]
fn table_aggregates_answer_pull_queries() {
    let e = env();
    e.run(
        "CREATE STREAM orders (id INT KEY, customer VARCHAR, amount DOUBLE) \
         WITH (KAFKA_TOPIC='orders', PARTITIONS=2); \
         INSERT INTO orders (id, customer, amount) VALUES (1, 'x', 10); \
         INSERT INTO orders (id, customer, amount) VALUES (2, 'y', 5); \
         INSERT INTO orders (id, customer, amount) VALUES (3, 'x', 2.5); \
         CREATE TABLE totals AS SELECT customer, COUNT(*) AS n, SUM(amount) AS total, \
           MAX(amount) AS biggest FROM orders GROUP BY customer;",
    );
    eventually("pull query", || {
        match e
            .sql
            .start_query("SELECT * FROM totals WHERE customer = 'x';", &props())
        {
            Ok(QueryStart::Pull(a)) => {
                a.rows == vec![vec![json!("x"), json!(2), json!(12.5), json!(10.0)]]
                    && a.stale.is_none()
            }
            _ => false,
        }
    });
    // ksqlDB's standby reads: the same answer, saying what answered and how stale it is.
    let mut standby_reads = props();
    standby_reads.insert("ksql.query.pull.enable.standby.reads".into(), "true".into());
    match e
        .sql
        .start_query("SELECT n FROM totals WHERE customer = 'x';", &standby_reads)
    {
        Ok(QueryStart::Pull(a)) => {
            assert_eq!(a.rows, vec![vec![json!(2)]]);
            let s = a.stale.expect("staleness");
            assert_eq!((s.lag, s.answered_by), (0, "task"));
        }
        Ok(_) => panic!("not a pull answer"),
        Err(err) => panic!("{err:?}"),
    }
    let results = e
        .sql
        .execute("SELECT n FROM totals WHERE customer = 'x';", &standby_reads)
        .unwrap();
    assert_eq!(
        serde_json::to_value(&results[0]).unwrap()["stale"],
        json!({"lag": 0, "answered_by": "task"})
    );
    standby_reads.insert(
        "ksql.query.pull.enable.standby.reads".into(),
        "maybe".into(),
    );
    let err = e
        .sql
        .execute("SELECT n FROM totals WHERE customer = 'x';", &standby_reads)
        .unwrap_err();
    assert_eq!(err.code, "invalid_statement");
}

/// `SET 'processing.guarantee'='exactly_once'` and `WITH (PROCESSING_GUARANTEE=…)` give the
/// query's processor that guarantee: its sink is written in transactions (committed reads
/// see every row, and the partition holds commit markers besides them).
#[test]
fn processing_guarantee_reaches_the_querys_processor() {
    use crate::task::Guarantee;
    let e = env();
    e.run(
        "CREATE STREAM src (v VARCHAR) WITH (KAFKA_TOPIC='src', VALUE_FORMAT='JSON', \
         PARTITIONS=1); INSERT INTO src (v) VALUES ('a'); INSERT INTO src (v) VALUES ('b');",
    );
    let mut eos = props();
    eos.insert("processing.guarantee".into(), "exactly_once".into());
    e.sql
        .execute("CREATE STREAM by_set AS SELECT v FROM src;", &eos)
        .unwrap();
    e.run(
        "CREATE STREAM by_with WITH (PROCESSING_GUARANTEE='exactly_once') AS SELECT v FROM src;\
         CREATE STREAM plain AS SELECT v FROM src;",
    );
    let bad = e.sql.execute(
        "CREATE STREAM bad WITH (PROCESSING_GUARANTEE='twice') AS SELECT v FROM src;",
        &props(),
    );
    assert!(bad.is_err());
    for (query, topic, want) in [
        ("CSAS_BY_SET_1", "BY_SET", Guarantee::ExactlyOnce),
        ("CSAS_BY_WITH_2", "BY_WITH", Guarantee::ExactlyOnce),
        ("CSAS_PLAIN_3", "PLAIN", Guarantee::AtLeastOnce),
    ] {
        let d = e.engine.describe(query).unwrap();
        assert_eq!(d.spec.guarantee, want, "{query}");
        eventually(topic, || {
            e.broker
                .read_committed(topic, 0, 0, 100, 1 << 20)
                .unwrap()
                .records
                .len()
                == 2
        });
        let (_, end) = e.broker.partition_offsets(topic, 0).unwrap();
        if want == Guarantee::ExactlyOnce {
            assert!(end > 2, "{topic}: commit markers take offsets ({end})");
        } else {
            assert_eq!(end, 2, "{topic}");
        }
    }
}

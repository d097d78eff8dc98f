//! User-defined functions through the real binary: a Rust and a Python (componentize-py,
//! ~18 MB) function uploaded over HTTP, an artifact stored, everything listed again after a
//! restart (compiled artifacts come from the cache), and deletes.

use serde_json::{Value, json};

use crate::common::{Server, guest};

fn create(s: &Server, spec: Value, wasm: Vec<u8>) -> (u16, Value) {
    s.upload(reqwest::Method::POST, "/v1/functions", &spec, wasm)
}

#[test]
fn functions_survive_a_restart() {
    let mut s = Server::start(&[]);
    let (status, body) = create(&s, json!({"name": "mask"}), guest("udf-mask"));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "MASK");
    let py = guest("udf-py-upper");
    assert!(
        py.len() > 10 << 20,
        "the Python guest is {} bytes",
        py.len()
    );
    let (status, body) = create(&s, json!({"name": "py_upper"}), py);
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["signature"],
        json!({"params": ["text"], "returns": "text"})
    );
    let (status, body) = create(&s, json!({"name": "MASK"}), guest("udf-trap"));
    assert_eq!(status, 409, "{body}");

    let r = s
        .http
        .put(format!("{}/v1/artifacts/geomean", s.url))
        .body(guest("udf-geomean"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    s.restart();
    let (status, body) = s.get("/v1/functions");
    assert_eq!(status, 200);
    let names: Vec<&str> = body["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(f.get("error").is_none(), "{f}");
            f["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(names, ["MASK", "PY_UPPER"]);
    assert!(s.data_dir().join("artifacts/geomean.wasm").is_file());
    assert!(
        s.data_dir()
            .join("functions/PY_UPPER/module.wasm")
            .is_file()
    );

    assert_eq!(s.delete("/v1/functions/py_upper"), 204);
    assert_eq!(s.delete("/v1/functions/py_upper"), 404);
    let (_, body) = s.get("/v1/functions/mask");
    assert_eq!(body["kind"], "scalar");
}

/// Runs SQL statements; asserts success and returns the results.
fn sql(s: &Server, statements: &str) -> Vec<Value> {
    let (status, body) = s.post(
        "/v1/sql",
        &json!({"sql": statements, "properties": {"commit.interval.ms": 100}}),
    );
    assert_eq!(status, 200, "{statements}: {body}");
    body["results"].as_array().unwrap().clone()
}

/// Every record value of `topic` (all partitions), parsed as JSON.
fn values(s: &Server, topic: &str) -> Vec<Value> {
    let partitions = s.describe(topic)["partitions"].as_i64().unwrap();
    let mut out = Vec::new();
    for p in 0..partitions {
        for r in s.read_all(topic, p, 0) {
            if let Some(v) = r["value"].as_str() {
                out.push(serde_json::from_str(v).unwrap());
            }
        }
    }
    out
}

fn put_artifact(s: &Server, name: &str, wasm: Vec<u8>) {
    let r = s
        .http
        .put(format!("{}/v1/artifacts/{name}", s.url))
        .body(wasm)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
}

#[test]
fn sql_queries_call_wasm_functions_across_a_restart() {
    let mut s = Server::start(&[]);
    put_artifact(&s, "mask", guest("udf-mask"));
    put_artifact(&s, "geomean", guest("udf-geomean"));
    sql(
        &s,
        "CREATE FUNCTION mask WITH (ARTIFACT='mask');
         CREATE FUNCTION geomean WITH (ARTIFACT='geomean');
         CREATE STREAM payments (card_number VARCHAR, amount DOUBLE)
           WITH (KAFKA_TOPIC='payments', VALUE_FORMAT='JSON', PARTITIONS=2);
         CREATE STREAM masked WITH (KAFKA_TOPIC='masked') AS
           SELECT MASK(card_number) AS card, amount FROM payments;
         CREATE TABLE spend WITH (KAFKA_TOPIC='spend') AS
           SELECT card_number, GEOMEAN(amount) AS g FROM payments GROUP BY card_number
           EMIT CHANGES;",
    );
    // Built-in names cannot be taken; unknown artifacts are 404.
    let (status, body) = s.post(
        "/v1/sql",
        &json!({"sql": "CREATE FUNCTION ucase WITH (ARTIFACT='mask');"}),
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = s.post(
        "/v1/sql",
        &json!({"sql": "CREATE FUNCTION f2 WITH (ARTIFACT='nope');"}),
    );
    assert_eq!(status, 404, "{body}");
    let shown = sql(&s, "SHOW FUNCTIONS;").to_vec();
    let text = serde_json::to_string(&shown).unwrap();
    assert!(text.contains("MASK") && text.contains("GEOMEAN"), "{text}");

    let produce = |s: &Server, rows: &[(&str, f64)]| {
        let records = rows
            .iter()
            .map(|(card, amount)| {
                json!({"key": card, "value": json!({"card_number": card, "amount": amount}).to_string()})
            })
            .collect();
        s.produce("payments", records);
    };
    produce(
        &s,
        &[
            ("4111111111111111", 2.0),
            ("5500000000000004", 1.0),
            ("4111111111111111", 8.0),
        ],
    );
    let masked = |s: &Server| {
        let mut cards: Vec<String> = values(s, "masked")
            .iter()
            .map(|v| {
                v["CARD"]
                    .as_str()
                    .or(v["card"].as_str())
                    .unwrap_or("?")
                    .to_string()
            })
            .collect();
        cards.sort();
        cards
    };
    assert!(
        crate::common::eventually(std::time::Duration::from_secs(30), || masked(&s).len() == 3),
        "masked: {:?}",
        masked(&s)
    );
    assert_eq!(
        masked(&s),
        ["************0004", "************1111", "************1111"]
    );
    let geomean_of = |s: &Server, card: &str| -> Option<f64> {
        values(s, "spend")
            .iter()
            .rev()
            .find(|v| v["CARD_NUMBER"].as_str().or(v["card_number"].as_str()) == Some(card))
            .and_then(|v| v["G"].as_f64().or(v["g"].as_f64()))
    };
    assert!(
        crate::common::eventually(std::time::Duration::from_secs(30), || {
            geomean_of(&s, "4111111111111111").is_some_and(|g| (g - 4.0).abs() < 1e-9)
        }),
        "spend: {:?}",
        values(&s, "spend")
    );

    // After a restart the queries resume with the functions loaded from disk (at least
    // once: rows processed since the last commit may come out twice).
    s.restart();
    produce(&s, &[("4111111111111111", 4.0), ("6011000000000012", 3.0)]);
    assert!(
        crate::common::eventually(std::time::Duration::from_secs(30), || {
            let m = masked(&s);
            m.contains(&"************0012".to_string())
                && m.iter().filter(|c| c.ends_with("1111")).count() >= 3
        }),
        "masked after restart: {:?}",
        masked(&s)
    );
    assert!(masked(&s).contains(&"************0012".to_string()));
    assert!(
        crate::common::eventually(std::time::Duration::from_secs(30), || {
            geomean_of(&s, "4111111111111111").is_some_and(|g| (g - 4.0).abs() < 1e-9)
                && geomean_of(&s, "6011000000000012").is_some_and(|g| (g - 3.0).abs() < 1e-9)
        }),
        "spend after restart: {:?}",
        values(&s, "spend")
    );
    // A function a running query calls cannot be dropped; once the query is terminated,
    // DROP FUNCTION removes it from the registry (and the HTTP listing).
    let (status, body) = s.post("/v1/sql", &json!({"sql": "DROP FUNCTION geomean;"}));
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("CTAS_SPEND"), "{body}");
    let spend = sql(&s, "SHOW QUERIES;")[0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[2] == "SPEND")
        .map(|r| r[0].as_str().unwrap().to_string())
        .unwrap();
    sql(&s, &format!("TERMINATE {spend}; DROP FUNCTION geomean;"));
    let (status, _) = s.get("/v1/functions/geomean");
    assert_eq!(status, 404);
}

/// A Python and a JavaScript UDF, registered over HTTP, called from one persistent query;
/// a UDF's argument types are checked at CREATE time.
#[test]
fn python_and_javascript_udfs_in_a_persistent_query() {
    let s = Server::start(&[]);
    for (name, file) in [
        ("py_upper", "udf-py-upper"),
        ("js_reverse", "udf-js-reverse"),
    ] {
        let (status, body) = create(&s, json!({ "name": name }), guest(file));
        assert_eq!(status, 201, "{name}: {body}");
    }
    sql(
        &s,
        "CREATE STREAM people (id INT KEY, name VARCHAR, age INT)
           WITH (KAFKA_TOPIC='people', PARTITIONS=2);
         INSERT INTO people (id, name, age) VALUES (1, 'ada', 36);
         INSERT INTO people (id, name, age) VALUES (2, 'Grace', 85);
         INSERT INTO people (id, name, age) VALUES (3, NULL, 1);
         CREATE STREAM shouted AS
           SELECT id, PY_UPPER(name) AS up, JS_REVERSE(name) AS rev,
                  JS_REVERSE(PY_UPPER(name)) AS both_ FROM people WHERE age > 10;",
    );
    let rows = || {
        let mut v: Vec<String> = values(&s, "SHOUTED")
            .iter()
            .map(|v| v.to_string())
            .collect();
        v.sort();
        v
    };
    assert!(
        crate::common::eventually(std::time::Duration::from_secs(60), || rows().len() == 2),
        "{:?}",
        rows()
    );
    assert_eq!(
        rows(),
        vec![
            json!({"ID": 1, "UP": "ADA", "REV": "ada", "BOTH_": "ADA"}).to_string(),
            json!({"ID": 2, "UP": "GRACE", "REV": "ecarG", "BOTH_": "ECARG"}).to_string(),
        ]
    );
    // PY_UPPER takes a STRING: an INT argument is refused when the query is created.
    let (status, body) = s.post(
        "/v1/sql",
        &json!({"sql": "CREATE STREAM bad AS SELECT PY_UPPER(age) FROM people;"}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "type_mismatch", "{body}");
    assert_eq!(body["error"]["column"], 29, "{body}");
    let (status, _) = s.get("/v1/processors/CSAS_BAD_2");
    assert_eq!(status, 404, "nothing was deployed");
}

/// A UDF that traps follows the query's error policy, like a processor: `fail` stops the
/// task with the error, `skip` drops the row and carries on.
#[test]
fn a_trapping_udf_follows_the_query_error_policy() {
    let s = Server::start(&[]);
    let (status, body) = create(&s, json!({"name": "trap"}), guest("udf-trap"));
    assert_eq!(status, 201, "{body}");
    sql(
        &s,
        "CREATE STREAM nums (n BIGINT) WITH (KAFKA_TOPIC='nums', PARTITIONS=1);
         INSERT INTO nums (n) VALUES (1);
         INSERT INTO nums (n) VALUES (13);
         INSERT INTO nums (n) VALUES (2);
         CREATE STREAM failing AS SELECT TRAP(n) AS t FROM nums;
         CREATE STREAM skipping WITH (ON_ERROR='skip') AS SELECT TRAP(n) AS t FROM nums;",
    );
    let ts = |topic: &str| -> Vec<i64> {
        values(&s, topic)
            .iter()
            .map(|v| v["T"].as_i64().unwrap())
            .collect()
    };
    assert!(
        crate::common::eventually(std::time::Duration::from_secs(30), || ts("SKIPPING")
            == vec![1, 2]),
        "{:?}",
        ts("SKIPPING")
    );
    assert!(
        crate::common::eventually(std::time::Duration::from_secs(30), || {
            s.processor("CSAS_FAILING_1")["status"] == "failed"
        }),
        "{}",
        s.processor("CSAS_FAILING_1")
    );
    let p = s.processor("CSAS_FAILING_1");
    let err = &p["tasks"][0]["last_error"];
    assert_eq!(err["code"], "guest_trap", "{err}");
    assert_eq!(err["offset"], 1, "the record with 13: {err}");
    assert!(
        err["message"].as_str().unwrap().contains("UDF TRAP"),
        "{err}"
    );
    // Rows before the failing record went out; none after it.
    assert_eq!(ts("FAILING"), vec![1]);
    // The node is still serving.
    assert_eq!(
        sql(&s, "SHOW QUERIES;")[0]["rows"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// A UDF call that never returns does not hold up TERMINATE or DROP: the query's task
/// interrupts the call in progress, as pause/delete do for processors. Each call may run a
/// minute here (`--udf-cpu-ms-per-call`), so only the interruption can answer within the
/// liveness bound; the node keeps serving SQL and HTTP throughout (issue #12, finding 4).
#[test]
fn a_looping_udf_does_not_hold_up_terminate_or_drop() {
    let s = Server::start(&[
        "--max-cpu-ms-per-call",
        "60000",
        "--udf-cpu-ms-per-call",
        "60000",
    ]);
    let (status, body) = create(&s, json!({"name": "spin"}), guest("udf-loop"));
    assert_eq!(status, 201, "{body}");
    sql(
        &s,
        "CREATE STREAM nums (n BIGINT) WITH (KAFKA_TOPIC='nums', PARTITIONS=1);
         CREATE STREAM spun WITH (KAFKA_TOPIC='spun') AS SELECT SPIN(n) AS n FROM nums;
         CREATE STREAM spun2 WITH (KAFKA_TOPIC='spun2') AS SELECT SPIN(n) AS n FROM nums;
         INSERT INTO nums (n) VALUES (1);",
    );
    // Both queries run and have called the function once; then a row that makes it spin.
    let ns = |topic: &str| values(&s, topic).len();
    let bound = std::time::Duration::from_secs(60);
    assert!(
        crate::common::eventually(bound, || ns("spun") == 1 && ns("spun2") == 1),
        "both queries pass the first row"
    );
    sql(&s, "INSERT INTO nums (n) VALUES (-1);");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(ns("spun"), 1, "the call with -1 never returns");

    let liveness = std::time::Duration::from_secs(10);
    let started = std::time::Instant::now();
    let r = sql(&s, "TERMINATE CSAS_SPUN_1;");
    assert!(
        started.elapsed() < liveness,
        "TERMINATE took {:?}: {r:?}",
        started.elapsed()
    );
    assert_eq!(s.get("/v1/processors/CSAS_SPUN_1").0, 404);

    let started = std::time::Instant::now();
    let r = sql(&s, "DROP STREAM spun2;");
    assert!(
        started.elapsed() < liveness,
        "DROP took {:?}: {r:?}",
        started.elapsed()
    );
    assert_eq!(s.get("/v1/processors/CSAS_SPUN2_2").0, 404);
    // The node still serves.
    assert_eq!(s.get("/health").0, 200);
    assert_eq!(
        sql(&s, "SHOW QUERIES;")[0]["rows"],
        json!([]),
        "no query is left"
    );
}

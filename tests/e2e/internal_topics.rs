//! Internal topics (a processor's changelogs, offsets and repartition topic,
//! `__consumer_offsets`) are the server's: clients read them but cannot forge, delete or
//! hijack them, over HTTP, SQL or Kafka; and a topic a processor uses is not deleted from
//! under it (issue #12, finding 3).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Server, eventually, free_port, guest};

const DEADLINE: Duration = Duration::from_secs(90);

fn delete(s: &Server, path: &str) -> (u16, Value) {
    let r = s.http.delete(format!("{}{path}", s.url)).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn count_of(s: &Server, word: &str) -> Option<String> {
    let (status, body) = s.get(&format!("/v1/processors/wc/stores/counts/keys/{word}"));
    (status == 200).then(|| body["value"].as_str().unwrap_or_default().to_string())
}

/// A word count over `text` (2 partitions) that has counted "the" 3 times.
fn word_count(extra: &[&str]) -> Server {
    let s = Server::start(extra);
    s.create_topic(json!({"name": "text", "partitions": 2}));
    s.deploy(
        &json!({"name": "wc", "inputs": ["text"], "outputs": ["counts"],
                "commit_interval_ms": 100}),
        guest("word-count"),
    );
    s.produce(
        "text",
        vec![
            json!({"value": "the fox"}),
            json!({"value": "the dog the end"}),
        ],
    );
    assert!(
        eventually(DEADLINE, || count_of(&s, "the").as_deref() == Some("3")),
        "the word count never reached 3"
    );
    // The changelog exists once a task committed a write.
    assert!(eventually(DEADLINE, || s
        .get("/v1/topics/wc.counts.changelog")
        .0
        == 200));
    s
}

#[test]
fn internal_topics_are_marked_and_refuse_client_writes_and_deletes() {
    let mut s = word_count(&[]);
    for t in ["wc.counts.changelog", "wc.offsets", "wc.repartition"] {
        let d = s.describe(t);
        assert_eq!(d["internal"], json!({"owner": "processor:wc"}), "{t}: {d}");
    }
    assert!(s.describe("counts").get("internal").is_none());

    // Forging a count in the changelog (restored from after a restart) is refused.
    let forged = json!({"records": [{"key": "the", "value": "999999", "partition": 0},
                                    {"key": "the", "value": "999999", "partition": 1}]});
    for t in ["wc.counts.changelog", "wc.offsets", "wc.repartition"] {
        let (status, body) = s.post(&format!("/v1/topics/{t}/records"), &forged);
        assert_eq!(
            (status, code(&body)),
            (403, "internal_topic"),
            "{t}: {body}"
        );
    }
    // Reading them stays allowed.
    let (status, _) = s.get("/v1/topics/wc.counts.changelog/partitions/0/records?offset=0");
    assert_eq!(status, 200);
    // Deleting them under their processor is refused.
    for t in ["wc.counts.changelog", "wc.offsets", "wc.repartition"] {
        let (status, body) = delete(&s, &format!("/v1/topics/{t}"));
        assert_eq!(
            (status, code(&body)),
            (403, "internal_topic"),
            "{t}: {body}"
        );
    }
    // A client cannot mark a topic of its own as internal.
    let (status, body) = s.post(
        "/v1/topics",
        &json!({"name": "fake", "internal": {"owner": "processor:wc"}}),
    );
    assert_eq!((status, code(&body)), (400, "invalid_config"), "{body}");

    // The counts restored from the changelog after losing local state are the true ones.
    assert!(s.terminate(), "clean shutdown");
    std::fs::remove_dir_all(s.data_dir().join("state").join("rocksdb")).unwrap();
    s.restart();
    assert!(
        eventually(DEADLINE, || count_of(&s, "the").as_deref() == Some("3")),
        "after the restore: the = {:?}",
        count_of(&s, "the")
    );

    // Deleting the processor deletes its internal topics (and keeps its output).
    let (status, body) = delete(&s, "/v1/processors/wc");
    assert_eq!(status, 204, "{body}");
    for t in ["wc.counts.changelog", "wc.offsets", "wc.repartition"] {
        assert_eq!(
            s.get(&format!("/v1/topics/{t}")).0,
            404,
            "{t} should be gone"
        );
    }
    assert_eq!(s.get("/v1/topics/counts").0, 200);
}

#[test]
fn internal_topics_cannot_be_outputs_or_sql_targets_and_used_topics_are_not_deleted() {
    let s = word_count(&[]);
    // A processor writing another's changelog or offsets: 400.
    for out in ["wc.counts.changelog", "wc.offsets"] {
        let (status, body) = s.upload(
            reqwest::Method::POST,
            "/v1/processors",
            &json!({"name": "forger", "inputs": ["text"], "outputs": [out]}),
            guest("uppercase"),
        );
        assert_eq!(
            (status, code(&body)),
            (400, "internal_topic"),
            "{out}: {body}"
        );
    }
    assert_eq!(s.get("/v1/processors/forger").0, 404);

    // SQL: a stream over a changelog, and INSERT INTO one.
    let (status, body) = s.post(
        "/v1/sql",
        &json!({"sql": "CREATE STREAM forged (word VARCHAR KEY, n BIGINT) \
                        WITH (KAFKA_TOPIC='wc.counts.changelog', VALUE_FORMAT='JSON');"}),
    );
    assert_eq!((status, code(&body)), (400, "internal_topic"), "{body}");

    // A topic a running processor reads or writes is not deleted from under it: 409 naming
    // the processor (its input, its output).
    for t in ["text", "counts"] {
        let (status, body) = delete(&s, &format!("/v1/topics/{t}"));
        assert_eq!((status, code(&body)), (409, "topic_in_use"), "{t}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("processor 'wc'"), "{message}");
    }
    // Once the processor is gone, they can be deleted.
    assert_eq!(delete(&s, "/v1/processors/wc").0, 204);
    assert_eq!(delete(&s, "/v1/topics/text").0, 204);
}

/// A data dir from before the markers: the engine marks the topics of the processors it
/// resumes (and the group coordinator `__consumer_offsets`).
#[test]
fn topics_of_an_older_data_dir_are_marked_at_start() {
    let mut s = word_count(&[]);
    assert!(s.terminate(), "clean shutdown");
    let topics = s.data_dir().join("topics");
    let mut stripped = 0;
    for entry in std::fs::read_dir(&topics).unwrap() {
        let path = entry.unwrap().path().join("topic.json");
        let mut spec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        if spec.as_object_mut().unwrap().remove("internal").is_some() {
            stripped += 1;
            std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
        }
    }
    assert_eq!(
        stripped, 3,
        "changelog, offsets and repartition were marked"
    );
    s.restart();
    for t in ["wc.counts.changelog", "wc.offsets", "wc.repartition"] {
        assert_eq!(
            s.describe(t)["internal"],
            json!({"owner": "processor:wc"}),
            "{t}"
        );
        let (status, body) = s.post(
            &format!("/v1/topics/{t}/records"),
            &json!({"records": [{"key": "the", "value": "999999"}]}),
        );
        assert_eq!(
            (status, code(&body)),
            (403, "internal_topic"),
            "{t}: {body}"
        );
    }
}

/// Over Kafka: produce to `__consumer_offsets` or a changelog gets
/// INVALID_TOPIC_EXCEPTION (as Kafka answers for its internal topics), deleting an internal
/// topic or a processor's input is refused; the committed offsets survive.
#[test]
fn kafka_clients_cannot_write_or_delete_internal_topics() {
    let kafka = format!("127.0.0.1:{}", free_port());
    let s = word_count(&["--kafka", &kafka]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/internal_topics.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--bootstrap", &kafka, "--input", "text"])
        .args(["--changelog", "wc.counts.changelog"])
        .stdin(Stdio::null())
        .output()
        .expect("python3 with confluent-kafka");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "internal_topics.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(r["produce___consumer_offsets"], "TOPIC_EXCEPTION", "{r}");
    assert_eq!(r["produce_wc.counts.changelog"], "TOPIC_EXCEPTION", "{r}");
    assert_eq!(r["delete___consumer_offsets"], "TOPIC_EXCEPTION", "{r}");
    assert_eq!(r["delete_wc.counts.changelog"], "TOPIC_EXCEPTION", "{r}");
    assert_eq!(r["delete_text"], "POLICY_VIOLATION", "{r}");
    assert_eq!(r["committed"], 5, "{r}");
    // Metadata flags every marked topic as internal (as Kafka flags its own), not only
    // `__consumer_offsets`; users' topics are not.
    let internal = &r["internal"];
    for t in [
        "__consumer_offsets",
        "wc.counts.changelog",
        "wc.offsets",
        "wc.repartition",
    ] {
        assert_eq!(internal[t], true, "{t}: {internal}");
    }
    for t in ["text", "counts"] {
        assert_eq!(internal[t], false, "{t}: {internal}");
    }
    assert_eq!(
        s.describe("__consumer_offsets")["internal"],
        json!({"owner": "group-coordinator"})
    );
    assert_eq!(count_of(&s, "the").as_deref(), Some("3"));
}

fn deploy_wc(s: &Server) -> (u16, Value) {
    s.upload(
        reqwest::Method::POST,
        "/v1/processors",
        &json!({"name": "wc", "inputs": ["text"], "outputs": ["counts"],
                "commit_interval_ms": 100}),
        guest("word-count"),
    )
}

/// A client's topics named like a processor's internal topics (`wc.offsets`, a changelog
/// `wc.counts.changelog`) are not adopted by deploying `wc`: the deploy is refused, 409
/// `topic_conflict` naming the topic, and creates nothing; otherwise the processor would
/// restore forged state and offsets. Its own topics keep working: after a redeploy, a
/// restart, and a delete with `keep_state` followed by a deploy of the same name.
#[test]
fn a_clients_topic_named_like_an_internal_one_is_not_adopted_by_a_deploy() {
    let mut s = Server::start(&[]);
    s.create_topic(json!({"name": "text", "partitions": 2}));
    for t in ["wc.offsets", "wc.counts.changelog"] {
        s.create_topic(json!({"name": t, "partitions": 2}));
        // A forged count, which a restore would read back.
        s.produce(
            t,
            vec![json!({"key": "the", "value": "999999", "partition": 0})],
        );
        let (status, body) = deploy_wc(&s);
        assert_eq!(
            (status, code(&body)),
            (409, "topic_conflict"),
            "{t}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(t), "{message}");
        assert_eq!(s.get("/v1/processors/wc").0, 404, "nothing deployed");
        for made in ["wc.repartition", "counts"] {
            assert_eq!(s.get(&format!("/v1/topics/{made}")).0, 404, "{made}");
        }
        assert!(s.describe(t).get("internal").is_none(), "{t} not marked");
        assert_eq!(delete(&s, &format!("/v1/topics/{t}")).0, 204);
    }

    // Once they are gone the deploy works, and its topics are its own.
    let (status, body) = deploy_wc(&s);
    assert_eq!(status, 201, "{body}");
    s.produce("text", vec![json!({"value": "the fox the"})]);
    assert!(eventually(DEADLINE, || count_of(&s, "the").as_deref() == Some("2")));
    // A client's topic named like a changelog of a store wc does not use, made while wc
    // runs: no redeploy or restart takes it over (a new deploy of wc would refuse it).
    s.create_topic(json!({"name": "wc.other.changelog", "partitions": 2}));
    let (status, body) = s.upload(
        reqwest::Method::PUT,
        "/v1/processors/wc",
        &json!({"name": "wc", "inputs": ["text"], "outputs": ["counts"],
                "commit_interval_ms": 100}),
        guest("word-count"),
    );
    assert_eq!(status, 200, "redeploy: {body}");
    s.restart();
    s.produce("text", vec![json!({"value": "the end"})]);
    assert!(
        eventually(DEADLINE, || count_of(&s, "the").as_deref() == Some("3")),
        "after a redeploy and a restart: the = {:?}",
        count_of(&s, "the")
    );
    assert_eq!(s.processor("wc")["status"], "running");
    assert!(s.describe("wc.other.changelog").get("internal").is_none());
    assert_eq!(delete(&s, "/v1/topics/wc.other.changelog").0, 204);
    // Deleted keeping its state, then deployed again: it takes its own topics back.
    let (status, body) = delete(&s, "/v1/processors/wc?keep_state=true");
    assert_eq!(status, 204, "{body}");
    let (status, body) = deploy_wc(&s);
    assert_eq!(status, 201, "{body}");
    s.produce("text", vec![json!({"value": "the"})]);
    assert!(
        eventually(DEADLINE, || count_of(&s, "the").as_deref() == Some("4")),
        "after keep_state and a new deploy: the = {:?}",
        count_of(&s, "the")
    );
    // Deleting wc deletes its own topics, not a client's named like one.
    s.create_topic(json!({"name": "wc.other.changelog", "partitions": 2}));
    assert_eq!(delete(&s, "/v1/processors/wc").0, 204);
    for t in ["wc.counts.changelog", "wc.offsets", "wc.repartition"] {
        assert_eq!(s.get(&format!("/v1/topics/{t}")).0, 404, "{t}");
    }
    assert_eq!(s.get("/v1/topics/wc.other.changelog").0, 200);
}

/// The same for a persistent query's internal topics: a client's `CSAS_OUT_1.offsets`
/// made before `CREATE STREAM out AS …` (query id `CSAS_OUT_1`) refuses the statement.
#[test]
fn a_clients_topic_named_like_a_query_topic_is_not_adopted() {
    let s = Server::start(&[]);
    s.create_topic(json!({"name": "CSAS_OUT_1.offsets", "partitions": 1}));
    let (status, body) = s.post(
        "/v1/sql",
        &json!({"sql": "CREATE STREAM src (n BIGINT) WITH (KAFKA_TOPIC='src', PARTITIONS=1);
                        CREATE STREAM out AS SELECT n FROM src;"}),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body.to_string().contains("topic_conflict")
            && body.to_string().contains("CSAS_OUT_1.offsets"),
        "{body}"
    );
    assert_eq!(s.get("/v1/processors/CSAS_OUT_1").0, 404);
    assert!(s.describe("CSAS_OUT_1.offsets").get("internal").is_none());
}

/// A processor may read another's changelog (reading internal topics is allowed). Deleting
/// the changelog's owner would delete it from under its reader, so the delete is refused,
/// 409 `topic_in_use` naming the reader, and changes nothing; once the reader is gone (or
/// with `keep_state`), the owner can be deleted.
#[test]
fn an_internal_topic_another_processor_reads_is_not_deleted_with_its_owner() {
    let s = word_count(&[]);
    let (status, body) = s.upload(
        reqwest::Method::POST,
        "/v1/processors",
        &json!({"name": "audit", "inputs": ["wc.counts.changelog"], "outputs": ["audited"]}),
        guest("uppercase"),
    );
    assert_eq!(status, 201, "a changelog is a valid input: {body}");
    let (status, body) = delete(&s, "/v1/processors/wc");
    assert_eq!((status, code(&body)), (409, "topic_in_use"), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("processor 'audit'") && message.contains("wc.counts.changelog"),
        "{message}"
    );
    // Nothing changed: wc still runs and counts.
    assert_eq!(s.processor("wc")["status"], "running");
    s.produce("text", vec![json!({"value": "the"})]);
    assert!(eventually(DEADLINE, || count_of(&s, "the").as_deref() == Some("4")));
    assert_eq!(s.get("/v1/topics/wc.counts.changelog").0, 200);

    assert_eq!(delete(&s, "/v1/processors/audit").0, 204);
    assert_eq!(delete(&s, "/v1/processors/wc").0, 204);
    assert_eq!(s.get("/v1/topics/wc.counts.changelog").0, 404);
}

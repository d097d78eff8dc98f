//! The `weir` CLI against a running server: topics, produce from stdin, consume.

use serde_json::Value;

use crate::common::{Server, cli_at, free_port, stderr, stdout};

#[test]
fn topic_commands() {
    let s = Server::start(&[]);
    let o = s.cli(&["topic", "create", "events", "--partitions", "2"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = s.cli(
        &[
            "topic",
            "create",
            "compacted-one",
            "--partitions",
            "1",
            "--compacted",
            "--retention-ms",
            "60000",
            "--retention-bytes",
            "1000000",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let d = s.describe("compacted-one");
    assert_eq!(d["compacted"], true);
    assert_eq!(d["retention_ms"], 60000);
    assert_eq!(d["retention_bytes"], 1000000);

    let o = s.cli(&["topic", "list"], None);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(
        out.contains("events") && out.contains("compacted-one"),
        "{out}"
    );

    let o = s.cli(&["topic", "describe", "events"], None);
    assert!(o.status.success());
    assert!(stdout(&o).contains("events"));

    let o = s.cli(&["topic", "create", "events"], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));

    let o = s.cli(&["topic", "delete", "events"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(s.get("/v1/topics/events").0, 404);
}

#[test]
fn produce_from_stdin_and_consume() {
    let s = Server::start(&[]);
    assert!(
        s.cli(&["topic", "create", "words", "--partitions", "3"], None)
            .status
            .success()
    );
    let input: String = (0..500)
        .map(|i| format!("k{}:hello {i}\n", i % 13))
        .collect();
    let o = s.cli(&["produce", "words", "--key-separator", ":"], Some(&input));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("500"),
        "summary should count records: {}",
        stderr(&o)
    );

    // Keys were split off and hashed: each key lives in one partition only.
    let mut total = 0;
    for p in 0..3 {
        for r in s.read_all("words", p, 0) {
            let key = r["key"].as_str().unwrap().to_string();
            assert_eq!(
                weir_broker::partitioner::partition_for_key(key.as_bytes(), 3) as i64,
                p
            );
            assert!(r["value"].as_str().unwrap().starts_with("hello "));
            total += 1;
        }
    }
    assert_eq!(total, 500);

    // --format value prints the values of every partition.
    let o = s.cli(
        &["consume", "words", "--from-beginning", "--format", "value"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut values: Vec<String> = stdout(&o).lines().map(String::from).collect();
    values.sort();
    let mut expected: Vec<String> = (0..500).map(|i| format!("hello {i}")).collect();
    expected.sort();
    assert_eq!(values, expected);

    // One partition, from an offset, at most N, as JSON.
    let o = s.cli(
        &[
            "consume",
            "words",
            "--partition",
            "1",
            "--offset",
            "2",
            "--max",
            "5",
            "--format",
            "json",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["offset"], 2);
    assert_eq!(lines[4]["offset"], 6);

    // Unkeyed lines and an explicit partition.
    let o = s.cli(
        &["produce", "words", "--partition", "2"],
        Some("plain line\nanother\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let tail = s.read_all("words", 2, 0);
    assert_eq!(tail[tail.len() - 2]["value"], "plain line");
    assert_eq!(tail[tail.len() - 1]["key"], Value::Null);
}

#[test]
fn cli_errors_are_one_line_and_non_zero() {
    // Server down.
    let url = format!("http://127.0.0.1:{}", free_port());
    let o = cli_at(&url, &["topic", "list"], None);
    assert!(!o.status.success());
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));

    let s = Server::start(&[]);
    let o = s.cli(&["consume", "nope", "--from-beginning"], None);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("nope"), "{err}");

    let o = s.cli(&["produce", "nope"], Some("x\n"));
    assert!(!o.status.success());

    let o = s.cli(&["topic", "create", "x", "--partitions", "many"], None);
    assert!(!o.status.success());
}

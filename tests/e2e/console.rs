//! The web console's files over HTTP (the browser itself is in tests/browser): `/` and
//! `/console/{file}` with their content types, the strict Content-Security-Policy, ETag
//! revalidation, a JSON 404 for an unknown file, and under `--auth` open files while the API
//! they call still needs credentials. And the API the console adds for itself: consumer
//! groups (`/v1/groups`, with a real confluent-kafka member; on a cluster from any node),
//! the partition map (`/v1/cluster/partitions`), prefix scans of a processor's state and
//! the exact bytes of records that are not UTF-8.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{GroupMember, Server, eventually, guest, produce_bytes};
use crate::replication::{create_replicated, start_cluster};

#[test]
fn the_console_is_served_at_the_root_with_a_strict_policy() {
    let s = Server::start(&[]);
    let r = s.http.get(format!("{}/", s.url)).send().unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    let page = r.text().unwrap();
    assert!(page.contains(r#"<script type="module" src="/console/app.js"></script>"#));

    // Revalidation: the same ETag gets a 304 without a body.
    let etag = h["etag"].to_str().unwrap().to_string();
    let r = s
        .http
        .get(format!("{}/", s.url))
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.bytes().unwrap().is_empty());

    for (file, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let r = s
            .http
            .get(format!("{}/console/{file}", s.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{file}");
        assert_eq!(r.headers()["content-type"], content_type, "{file}");
        assert!(r.headers().contains_key("content-security-policy"));
    }
    let (status, body) = s.get("/console/missing.js");
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    let (status, _) = s.get("/console/../Cargo.toml");
    assert_eq!(status, 404);
    // The API stays under /v1.
    assert_eq!(s.get("/v1/topics").0, 200);
}

#[test]
fn under_auth_the_files_are_open_and_the_api_is_not() {
    let s = Server::start_with_env(&["--auth"], &[("WEIR_ADMIN_PASSWORD", "console-pw")]);
    assert_eq!(s.get("/").0, 200);
    let r = s
        .http
        .get(format!("{}/console/api.js", s.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, body) = s.get("/v1/topics");
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthenticated"))
    );
    let r = s
        .http
        .get(format!("{}/v1/topics", s.url))
        .basic_auth("admin", Some("console-pw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn a_consumer_group_shows_its_member_assignment_offsets_and_lag() {
    let s = Server::start(&[]);
    s.create_topic(json!({"name": "gl", "partitions": 2}));
    let records: Vec<Value> = (0..10)
        .map(|i| json!({"value": format!("r{i}"), "partition": i % 2}))
        .collect();
    s.produce("gl", records);
    // A single node has no partition map.
    assert_eq!(
        s.get("/v1/cluster/partitions"),
        (200, json!({"partitions": []}))
    );
    // Nothing yet: no group.
    let (status, body) = s.get("/v1/groups");
    assert_eq!((status, &body["groups"]), (200, &json!([])));
    let (status, body) = s.get("/v1/groups/console-group");
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("unknown_group"))
    );

    // A real member reads all ten and commits offset 2 on both partitions: 3 behind on each.
    let member = GroupMember::join(&s.kafka, "gl", "console-group", "console-e2e", 10, 2);
    assert_eq!(member.ready["assigned"], json!([0, 1]));
    let (status, body) = s.get("/v1/groups");
    assert_eq!(status, 200, "{body}");
    let groups = body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{body}");
    let g = &groups[0];
    assert_eq!(g["group_id"], "console-group");
    assert_eq!(g["state"], "Stable");
    assert_eq!(g["protocol_type"], "consumer");
    assert_eq!(g["members"], 1);
    assert_eq!(body["unanswered"], json!([]));

    let (status, d) = s.get("/v1/groups/console-group");
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["state"], "Stable");
    let members = d["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{d}");
    let m = &members[0];
    assert_eq!(m["client_id"], "console-e2e");
    assert!(!m["client_host"].as_str().unwrap().is_empty(), "{m}");
    assert_eq!(
        m["assignment"],
        json!([{"topic": "gl", "partitions": [0, 1]}])
    );
    let parts = d["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{d}");
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["topic"], "gl");
        assert_eq!(p["partition"], i);
        assert_eq!(p["committed_offset"], 2);
        assert_eq!(p["log_end_offset"], 5);
        assert_eq!(p["lag"], 3);
        assert_eq!(p["member_id"], m["member_id"]);
    }
    assert_eq!(d["total_lag"], 6);

    // The member leaves: the group is empty, its offsets and lag stay.
    drop(member);
    let (_, d) = s.get("/v1/groups/console-group");
    assert_eq!(d["state"], "Empty", "{d}");
    assert_eq!(d["members"], json!([]));
    assert_eq!(d["total_lag"], 6);
    let (_, body) = s.get("/v1/groups");
    assert_eq!(body["groups"][0]["members"], 0, "{body}");
}

#[test]
fn under_auth_groups_need_describe_on_the_group() {
    let s = Server::start_with_env(&["--auth"], &[("WEIR_ADMIN_PASSWORD", "groups-pw")]);
    let admin = |method: reqwest::Method, path: &str, body: Value| -> (u16, Value) {
        let r = s
            .http
            .request(method, format!("{}{path}", s.url))
            .basic_auth("admin", Some("groups-pw"))
            .json(&body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    };
    let (status, _) = admin(
        reqwest::Method::POST,
        "/v1/users",
        json!({"name": "gina", "password": "gina-pw-1", "role": "reader"}),
    );
    assert_eq!(status, 201);
    let (status, body) = admin(
        reqwest::Method::POST,
        "/v1/acls",
        json!({"user": "gina", "resource": "group", "prefix": "mine-", "allow": "read"}),
    );
    assert!(status == 200 || status == 201, "{status} {body}");
    let as_gina = |path: &str| -> (u16, Value) {
        let r = s
            .http
            .get(format!("{}{path}", s.url))
            .basic_auth("gina", Some("gina-pw-1"))
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    };
    assert_eq!(s.get("/v1/groups").0, 401);
    let (status, body) = as_gina("/v1/groups/theirs");
    assert_eq!((status, &body["error"]["code"]), (403, &json!("forbidden")));
    // Allowed, and there is no such group.
    let (status, body) = as_gina("/v1/groups/mine-1");
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("unknown_group"))
    );
    let (status, body) = as_gina("/v1/groups");
    assert_eq!((status, &body["groups"]), (200, &json!([])));
}

#[test]
fn records_that_are_not_utf8_come_with_their_exact_bytes() {
    let s = Server::start(&[]);
    s.create_topic(json!({"name": "raw", "partitions": 1}));
    // Key c3 28 and value ff fe 00 41: neither is UTF-8.
    assert_eq!(
        produce_bytes(&s.kafka, "raw", 0, "c328", "fffe0041"),
        (0, 0)
    );
    s.produce("raw", vec![json!({"key": "k", "value": "text"})]);
    let (status, page) = s.get("/v1/topics/raw/partitions/0/records?offset=0");
    assert_eq!(status, 200, "{page}");
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{page}");
    let raw = &records[0];
    assert_eq!(raw["key_b64"], "wyg=");
    assert_eq!(raw["value_b64"], "//4AQQ==");
    // The text fields stay (lossy) for clients that only read them.
    assert_eq!(raw["key"], "\u{fffd}(");
    assert_eq!(raw["value"], "\u{fffd}\u{fffd}\u{0}A");
    // UTF-8 records have no such fields.
    let text = records[1].as_object().unwrap();
    assert_eq!(text["value"], "text");
    assert!(
        !text.contains_key("key_b64") && !text.contains_key("value_b64"),
        "{text:?}"
    );
}

/// Every entry of a prefix scan of `wc`'s `counts`, following `next` with pages of `limit`;
/// the number of pages.
fn scan_all(s: &Server, prefix: &str, limit: usize) -> (BTreeMap<String, String>, usize) {
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    for pages in 1.. {
        let mut path =
            format!("/v1/processors/wc/stores/counts/keys?prefix={prefix}&limit={limit}");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let (status, page) = s.get(&path);
        assert_eq!(status, 200, "{path}: {page}");
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= limit, "{page}");
        for e in entries {
            let (k, v) = (e["key"].as_str().unwrap(), e["value"].as_str().unwrap());
            assert!(e["partition"].as_i64().is_some_and(|p| (0..3).contains(&p)));
            assert!(
                out.insert(k.to_string(), v.to_string()).is_none(),
                "{k} twice"
            );
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return (out, pages),
        }
    }
    unreachable!()
}

#[test]
fn a_prefix_scan_pages_through_every_task_of_a_store() {
    let s = Server::start(&[]);
    s.create_topic(json!({"name": "text", "partitions": 3}));
    s.deploy(
        &json!({"name": "wc", "inputs": ["text"], "outputs": ["counts"], "commit_interval_ms": 50}),
        guest("word-count"),
    );
    s.produce(
        "text",
        vec![
            json!({"value": "the quick brown fox"}),
            json!({"value": "the quiet dog"}),
            json!({"value": "a quick end"}),
        ],
    );
    let want: BTreeMap<String, String> = [
        ("a", 1),
        ("brown", 1),
        ("dog", 1),
        ("end", 1),
        ("fox", 1),
        ("quick", 2),
        ("quiet", 1),
        ("the", 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // The store (and its changelog) exists once the tasks have opened it.
    assert!(eventually(Duration::from_secs(60), || {
        s.get("/v1/processors/wc/stores/counts/keys").0 == 200
    }));
    assert!(
        eventually(Duration::from_secs(60), || scan_all(&s, "", 100).0 == want),
        "{:?}",
        scan_all(&s, "", 100)
    );
    assert_eq!(scan_all(&s, "", 100).1, 1);
    assert_eq!(scan_all(&s, "", 3), (want.clone(), 3));
    let qu: BTreeMap<String, String> = want
        .iter()
        .filter(|(k, _)| k.starts_with("qu"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(scan_all(&s, "qu", 1), (qu, 2));
    assert_eq!(scan_all(&s, "zebra", 10), (BTreeMap::new(), 1));
    // The default page is 100 entries.
    let (status, page) = s.get("/v1/processors/wc/stores/counts/keys");
    assert_eq!(status, 200);
    assert_eq!(page["entries"].as_array().unwrap().len(), want.len());
    assert_eq!(page["next"], Value::Null);
    // What a client chooses is bounded and checked.
    for bad in [
        "limit=0",
        "limit=1001",
        "after=garbage",
        "after=1.zz",
        "unknown=1",
    ] {
        let (status, body) = s.get(&format!("/v1/processors/wc/stores/counts/keys?{bad}"));
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("invalid_query")),
            "{bad}: {body}"
        );
    }
    let long = "x".repeat(4 * 1024 + 1);
    let (status, _) = s.get(&format!(
        "/v1/processors/wc/stores/counts/keys?prefix={long}"
    ));
    assert_eq!(status, 400);
    let (status, body) = s.get("/v1/processors/wc/stores/nope/keys");
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("unknown_store"))
    );
    let (status, body) = s.get("/v1/processors/nope/stores/counts/keys");
    assert_eq!(status, 404, "{body}");
}

#[test]
fn on_a_cluster_any_node_shows_a_group_and_the_partition_map() {
    let servers = start_cluster();
    create_replicated(
        &servers[0],
        json!({"name": "cg", "partitions": 2, "replication_factor": 3, "min_insync_replicas": 2}),
    );
    // Every partition of the map, with its leader and in-sync set (all three in sync).
    let in_sync = |s: &Server| {
        let (status, map) = s.get("/v1/cluster/partitions");
        assert_eq!(status, 200, "{map}");
        let cg: Vec<&Value> = map["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["topic"] == "cg")
            .collect();
        cg.len() == 2
            && cg
                .iter()
                .all(|p| p["leader"].is_u64() && p["isr"].as_array().unwrap().len() == 3)
    };
    assert!(eventually(Duration::from_secs(60), || in_sync(&servers[0])));
    for p in 0..2 {
        servers[0].produce(
            "cg",
            (0..4)
                .map(|i| json!({"value": format!("v{i}"), "partition": p}))
                .collect(),
        );
    }
    let bootstrap = servers
        .iter()
        .map(|s| s.kafka.clone())
        .collect::<Vec<_>>()
        .join(",");
    let member = GroupMember::join(&bootstrap, "cg", "cluster-console", "cc-member", 8, 1);
    // The group's detail from every node: non-coordinators forward it to the coordinator.
    let mut coordinators = Vec::new();
    for s in &servers {
        let (status, d) = s.get("/v1/groups/cluster-console");
        assert_eq!(status, 200, "{}: {d}", s.url);
        assert_eq!(d["members"][0]["client_id"], "cc-member", "{d}");
        assert_eq!(d["total_lag"], 6, "{d}");
        coordinators.push(d["coordinator"].as_u64().unwrap());
        // The list from every node holds the group once, from its coordinator.
        let (status, list) = s.get("/v1/groups");
        assert_eq!(status, 200, "{list}");
        let ids: Vec<&Value> = list["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| &g["group_id"])
            .collect();
        assert_eq!(ids, [&json!("cluster-console")], "{list}");
        assert_eq!(list["unanswered"], json!([]), "{list}");
        assert_eq!(list["groups"][0]["coordinator"], coordinators[0]);
    }
    assert!(coordinators.iter().all(|c| *c == coordinators[0]));
    // The coordinator is the leader of the group's offsets partition.
    let (_, map) = servers[0].get("/v1/cluster/partitions");
    let offsets = weir_broker::group::offsets_partition("cluster-console");
    let leader = map["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["topic"] == "__consumer_offsets" && p["partition"] == offsets)
        .map(|p| p["leader"].clone());
    assert_eq!(leader, Some(json!(coordinators[0])), "{map}");
    drop(member);

    // A topic of one replica per partition, spread over the nodes: the coordinator holds at
    // most some of them and asks the others' leaders for their log ends.
    create_replicated(
        &servers[0],
        json!({"name": "solo", "partitions": 3, "replication_factor": 1}),
    );
    for p in 0..3 {
        let records: Vec<Value> = (0..3)
            .map(|i| json!({"value": format!("s{i}"), "partition": p}))
            .collect();
        let produced = eventually(Duration::from_secs(30), || {
            servers[0]
                .post("/v1/topics/solo/records", &json!({ "records": records }))
                .0
                == 200
        });
        assert!(produced, "partition {p} never took records");
    }
    let solo = GroupMember::join(&bootstrap, "solo", "solo-group", "solo-member", 9, 1);
    assert_eq!(solo.ready["assigned"], json!([0, 1, 2]));
    for s in &servers {
        let (status, d) = s.get("/v1/groups/solo-group");
        assert_eq!(status, 200, "{d}");
        for p in d["partitions"].as_array().unwrap() {
            assert_eq!(
                (&p["log_end_offset"], &p["lag"]),
                (&json!(3), &json!(2)),
                "{d}"
            );
        }
        assert_eq!(d["total_lag"], 6, "{d}");
    }
    drop(solo);
}

//! Operating a cluster through real `weir serve --peers` processes: any node serves HTTP
//! produce and reads (a node that does not lead a partition forwards its records to the
//! leader; one without a replica forwards reads), a forwarded request is never forwarded
//! again; `GET /v1/cluster`, `weir cluster status` and `/metrics` show an under-replicated
//! partition after a node is killed with SIGKILL (and the lag of the dead node's replicas)
//! and not after it returns; under `--auth` a forwarded request carries the caller's
//! credentials and is checked again; over HTTPS nodes forward with the cluster certificates.
//! Timing is never asserted beyond liveness bounds.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Server, eventually, free_port, stdout};
use crate::replication::{create_replicated, start_cluster, start_cluster_with};

/// Per partition (leader, replicas, in-sync set) as `s` describes the topic.
fn layout(s: &Server, topic: &str) -> Vec<(Option<u64>, Vec<u64>, Vec<u64>)> {
    let (status, d) = s.get(&format!("/v1/topics/{topic}"));
    if status != 200 {
        return Vec::new();
    }
    let ids = |v: &Value| -> Vec<u64> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    };
    d["partition_offsets"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let r = &p["replication"];
                    (r["leader"].as_u64(), ids(&r["replicas"]), ids(&r["isr"]))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every partition led and all its replicas in sync, as every node sees it, and every
/// replica set up on its node (it serves reads of the partition itself).
fn settled(servers: &[Server], topic: &str, partitions: usize) -> bool {
    servers.iter().all(|s| {
        let l = layout(s, topic);
        l.len() == partitions
            && l.iter().enumerate().all(|(p, (leader, replicas, isr))| {
                leader.is_some()
                    && isr.len() == replicas.len()
                    && replicas.iter().all(|r| {
                        servers[*r as usize - 1]
                            .get(&format!("/v1/topics/{topic}/partitions/{p}/records"))
                            .0
                            == 200
                    })
            })
    })
}

fn values(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| r["value"].as_str().map(str::to_string))
        .collect()
}

/// Every node registered (live) in `s`'s metadata.
fn all_registered(s: &Server) -> bool {
    let (status, view) = s.get("/v1/cluster");
    status == 200 && (1..=3).all(|id| node_row(&view, id)["registered"] == json!(true))
}

#[test]
fn http_produce_and_reads_on_any_node_reach_the_partition_leader() {
    let servers = start_cluster();
    // Replicas are placed on the live nodes: wait for all three.
    assert!(eventually(Duration::from_secs(60), || all_registered(
        &servers[0]
    )));
    create_replicated(
        &servers[0],
        json!({"name": "fwd", "partitions": 3, "replication_factor": 2, "min_insync_replicas": 1}),
    );
    assert!(
        eventually(Duration::from_secs(60), || settled(&servers, "fwd", 3)),
        "{:?}",
        servers
            .iter()
            .map(|s| s.get("/v1/topics/fwd"))
            .collect::<Vec<_>>()
    );
    let parts = layout(&servers[0], "fwd");
    for (p, (leader, replicas, _)) in parts.iter().enumerate() {
        let leader = leader.unwrap();
        // A node holding no replica of the partition (replication factor 2 of 3 nodes).
        let outsider = (1..=3u64).find(|n| !replicas.contains(n)).unwrap();
        let via = &servers[outsider as usize - 1];
        let offsets = via.produce(
            "fwd",
            vec![json!({"key": format!("k{p}"), "value": format!("v{p}"), "partition": p})],
        );
        assert_eq!(
            offsets,
            vec![(p as i64, 0)],
            "node {outsider} forwarding to {leader}"
        );
        // Read through the outsider (forwarded to the leader) and through every replica.
        assert_eq!(
            values(&via.read_all("fwd", p as i64, 0)),
            vec![format!("v{p}")]
        );
        for r in replicas {
            let s = &servers[*r as usize - 1];
            assert!(
                eventually(Duration::from_secs(30), || values(
                    &s.read_all("fwd", p as i64, 0)
                ) == vec![format!("v{p}")]),
                "replica {r} of partition {p}"
            );
        }
        // A follow stream through the outsider ends after `max` records.
        let body = via
            .http
            .get(format!(
                "{}/v1/topics/fwd/partitions/{p}/records?follow=true&max=1",
                via.url
            ))
            .send()
            .unwrap();
        assert_eq!(body.status().as_u16(), 200);
        let text = body.text().unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(values(&lines), vec![format!("v{p}")], "{text}");
        // A forwarded request is served where it lands: never forwarded again.
        let r = via
            .http
            .post(format!("{}/v1/topics/fwd/records", via.url))
            .header("x-weir-forwarded-by", "9")
            .json(&json!({"records": [{"value": "loop", "partition": p}]}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 503);
        let body: Value = r.json().unwrap();
        assert_eq!(body["error"]["code"], json!("not_leader"), "{body}");
        let r = via
            .http
            .get(format!("{}/v1/topics/fwd/partitions/{p}/records", via.url))
            .header("x-weir-forwarded-by", "9")
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 503);
        let body: Value = r.json().unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("node {leader} leads it")),
            "{body}"
        );
    }
    // Keyed and unkeyed records on every node: all acknowledged, each stored once.
    for s in &servers {
        let offsets = s.produce(
            "fwd",
            vec![
                json!({"key": "same-key", "value": "keyed"}),
                json!({"value": "unkeyed-1"}),
                json!({"value": "unkeyed-2"}),
            ],
        );
        assert_eq!(offsets.len(), 3);
        // The unkeyed records of one request share a partition.
        assert_eq!(offsets[1].0, offsets[2].0, "{offsets:?}");
    }
    let mut all = Vec::new();
    for p in 0..3 {
        all.extend(values(&servers[0].read_all("fwd", p, 0)));
    }
    all.sort();
    let mut expected: Vec<String> = (0..3).map(|p| format!("v{p}")).collect();
    for _ in 0..3 {
        expected.extend(["keyed", "unkeyed-1", "unkeyed-2"].map(String::from));
    }
    expected.sort();
    assert_eq!(all, expected);
    // Keyed records land on one partition whichever node took them.
    let keyed: Vec<i64> = (0..3)
        .filter(|p| values(&servers[0].read_all("fwd", *p, 0)).contains(&"keyed".to_string()))
        .collect();
    assert_eq!(keyed.len(), 1, "{keyed:?}");

    // A topic with one replica: two nodes hold no copy of it, and serve it all the same.
    create_replicated(
        &servers[1],
        json!({"name": "solo", "partitions": 1, "replication_factor": 1}),
    );
    for s in &servers {
        assert!(
            eventually(Duration::from_secs(30), || layout(s, "solo")
                .first()
                .is_some_and(|(l, _, _)| l.is_some())),
            "describe on {}",
            s.url
        );
        let (status, list) = s.get("/v1/topics");
        assert_eq!(status, 200);
        assert!(
            list["topics"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == json!("solo")),
            "{list}"
        );
        assert_eq!(s.produce("solo", vec![json!({"value": s.url})]).len(), 1);
    }
    for s in &servers {
        let got = values(&s.read_all("solo", 0, 0));
        let mut want: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
        want.sort();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        assert_eq!(got_sorted, want, "read through {}", s.url);
    }
}

fn cluster(s: &Server) -> Value {
    let (status, body) = s.get("/v1/cluster");
    assert_eq!(status, 200, "{body}");
    body
}

fn node_row(view: &Value, id: u64) -> Value {
    view["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["id"] == json!(id)))
        .cloned()
        .unwrap_or(Value::Null)
}

/// The sum of a metric's samples (all label sets) in `s`'s `/metrics`.
fn metric(s: &Server, name: &str) -> Option<f64> {
    let text = s
        .http
        .get(format!("{}/metrics", s.url))
        .send()
        .ok()?
        .text()
        .ok()?;
    let samples: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

fn under_replicated(view: &Value) -> usize {
    view["under_replicated"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_killed_node_shows_under_replicated_partitions_and_lag_until_it_returns() {
    let mut servers = start_cluster();
    create_replicated(
        &servers[0],
        json!({"name": "ur", "partitions": 3, "replication_factor": 3, "min_insync_replicas": 2}),
    );
    assert!(
        eventually(Duration::from_secs(60), || settled(&servers, "ur", 3)),
        "{:?}",
        layout(&servers[0], "ur")
    );
    let view = cluster(&servers[0]);
    assert_eq!(under_replicated(&view), 0, "{view}");
    assert_eq!(view["offline"], json!([]), "{view}");
    let led: u64 = (1..=3)
        .map(|id| node_row(&view, id)["partitions_led"].as_u64().unwrap())
        .sum();
    assert_eq!(led, 3, "{view}");
    assert_eq!(
        metric(&servers[0], "weir_cluster_under_replicated_partitions"),
        Some(0.0)
    );
    for s in &servers {
        assert!(metric(s, "weir_raft_term").is_some_and(|t| t >= 1.0));
        assert!(metric(s, "weir_raft_applied_index").is_some_and(|i| i > 0.0));
    }

    servers[2].kill9();
    // Node 3 leaves every in-sync set (fenced by the controller): all three partitions are
    // under-replicated, none offline.
    let mut last = Value::Null;
    assert!(
        eventually(Duration::from_secs(60), || {
            last = cluster(&servers[0]);
            under_replicated(&last) == 3
        }),
        "{last}"
    );
    assert_eq!(last["offline"], json!([]), "{last}");
    for issue in last["under_replicated"].as_array().unwrap() {
        assert!(
            !issue["isr"].as_array().unwrap().contains(&json!(3)),
            "{issue}"
        );
    }
    assert!(
        eventually(Duration::from_secs(30), || metric(
            &servers[1],
            "weir_cluster_under_replicated_partitions"
        ) == Some(3.0)),
        "metrics of node 2"
    );
    let status = servers[1].cli(&["cluster", "status"], None);
    let text = stdout(&status);
    assert!(status.status.success(), "{text}");
    assert!(text.contains("under-replicated partitions: 3"), "{text}");
    assert!(text.contains("offline partitions: none"), "{text}");
    // Records written meanwhile: the dead node's replicas fall behind.
    for p in 0..3 {
        let records: Vec<Value> = (0..5)
            .map(|i| json!({"value": format!("{p}-{i}"), "partition": p}))
            .collect();
        servers[0].produce("ur", records);
    }
    // Node 3 has not fetched since the fence began the leaders' new epochs: it lacks at
    // least everything written since.
    assert!(
        eventually(Duration::from_secs(30), || {
            last = cluster(&servers[1]);
            node_row(&last, 3)["replication_lag"]
                .as_i64()
                .is_some_and(|l| l >= 15)
        }),
        "{last}"
    );
    let lag: f64 = servers[..2]
        .iter()
        .filter_map(|s| metric(s, "weir_replication_lag_records"))
        .sum();
    assert!(lag >= 15.0, "replication lag metric {lag}");
    // Each partition lost node 3 either as a follower (the leader's in-sync set shrank) or
    // as its leader (another node was elected).
    let changes: f64 = servers[..2]
        .iter()
        .map(|s| {
            metric(s, "weir_cluster_isr_shrinks_total").unwrap_or(0.0)
                + metric(s, "weir_cluster_leader_elections_total").unwrap_or(0.0)
        })
        .sum();
    assert!(changes >= 3.0, "shrinks + elections: {changes}");

    servers[2].start_again();
    assert!(
        eventually(Duration::from_secs(60), || {
            last = cluster(&servers[0]);
            under_replicated(&last) == 0
                && node_row(&last, 3)["replication_lag"] == json!(0)
                && node_row(&last, 3)["registered"] == json!(true)
        }),
        "{last}"
    );
    assert_eq!(last["offline"], json!([]), "{last}");
    assert!(
        eventually(Duration::from_secs(30), || servers.iter().all(|s| metric(
            s,
            "weir_cluster_under_replicated_partitions"
        )
            == Some(0.0))),
        "metrics still show under-replicated partitions"
    );
    let expands: f64 = servers
        .iter()
        .filter_map(|s| metric(s, "weir_cluster_isr_expands_total"))
        .sum();
    assert!(expands >= 3.0, "in-sync set expansions: {expands}");
    let status = servers[0].cli(&["cluster", "status"], None);
    let text = stdout(&status);
    assert!(text.contains("under-replicated partitions: none"), "{text}");
    assert!(text.contains("LAG"), "{text}");
    // The returned node has every record.
    for p in 0..3 {
        assert!(
            eventually(Duration::from_secs(30), || servers[2]
                .read_all("ur", p, 0)
                .len()
                == 5),
            "partition {p} on node 3"
        );
    }
}

const ADMIN_PW: &str = "Adm1n-S3cret-pw";

/// Three nodes of one cluster under `--auth` (each creates `admin` with the same password).
fn start_auth_cluster() -> Vec<Server> {
    start_cluster_with(&["--auth"], &[("WEIR_ADMIN_PASSWORD", ADMIN_PW)])
}

/// `method path` on `s` with `admin`'s credentials (or `password` for admin, or none).
fn as_admin(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    password: Option<&str>,
) -> (u16, Value) {
    let mut req = s.http.request(method, format!("{}{path}", s.url));
    if let Some(pw) = password {
        req = req.basic_auth("admin", Some(pw));
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

#[test]
fn forwarded_requests_carry_the_callers_credentials_and_are_checked_again() {
    let servers = start_auth_cluster();
    let get =
        |s: &Server, path: &str| as_admin(s, reqwest::Method::GET, path, None, Some(ADMIN_PW));
    assert!(eventually(Duration::from_secs(60), || {
        let (status, view) = get(&servers[0], "/v1/cluster");
        status == 200 && (1..=3).all(|id| node_row(&view, id)["registered"] == json!(true))
    }));
    let spec = json!({"name": "sec", "partitions": 1, "replication_factor": 1});
    assert!(eventually(Duration::from_secs(60), || {
        let (status, _) = as_admin(
            &servers[0],
            reqwest::Method::POST,
            "/v1/topics",
            Some(&spec),
            Some(ADMIN_PW),
        );
        status == 201 || status == 409
    }));
    // Every node has applied the topic, and its leader set it up.
    let leader_seen_by = |s: &Server| {
        let (_, d) = get(s, "/v1/topics/sec");
        d["partition_offsets"][0]["replication"]["leader"].as_u64()
    };
    assert!(eventually(Duration::from_secs(60), || {
        servers.iter().all(|s| leader_seen_by(s).is_some())
            && leader_seen_by(&servers[0]).is_some_and(|l| {
                get(
                    &servers[l as usize - 1],
                    "/v1/topics/sec/partitions/0/records",
                )
                .0 == 200
            })
    }));
    let leader = leader_seen_by(&servers[0]).unwrap();
    let via = &servers[(leader as usize) % 3]; // another node, without a replica (rf 1)
    let records = json!({"records": [{"value": "guarded", "partition": 0}]});
    let post = |pw: Option<&str>| {
        as_admin(
            via,
            reqwest::Method::POST,
            "/v1/topics/sec/records",
            Some(&records),
            pw,
        )
    };
    assert_eq!(post(None).0, 401);
    assert_eq!(post(Some("wrong-password")).0, 401);
    let (status, body) = post(Some(ADMIN_PW));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["offsets"], json!([{"partition": 0, "offset": 0}]));
    // A forwarded request is authenticated again where it lands: a forwarding header does
    // not stand in for credentials.
    let r = servers[leader as usize - 1]
        .http
        .post(format!(
            "{}/v1/topics/sec/records",
            servers[leader as usize - 1].url
        ))
        .header("x-weir-forwarded-by", via.url.clone())
        .json(&records)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The read through the node without a replica, with the caller's credentials.
    let (status, page) = get(via, "/v1/topics/sec/partitions/0/records");
    assert_eq!(status, 200, "{page}");
    assert_eq!(values(page["records"].as_array().unwrap()), vec!["guarded"]);
    let (status, _) = as_admin(
        via,
        reqwest::Method::GET,
        "/v1/topics/sec/partitions/0/records",
        None,
        None,
    );
    assert_eq!(status, 401);
}

#[test]
fn over_https_a_node_forwards_to_the_leader_with_the_cluster_certificates() {
    let pki = crate::test_pki::NodePki::generate(3);
    weir_broker::net::tls::install_default_provider();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap();
    let client = || {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .add_root_certificate(ca.clone())
            .build()
            .unwrap()
    };
    let ports = [free_port(), free_port(), free_port()];
    let peers: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
        .collect();
    let peers = peers.join(",");
    let servers: Vec<Server> = (1..=3)
        .map(|id| {
            let (cert, key) = &pki.nodes[id - 1];
            let listen = format!("127.0.0.1:{}", ports[id - 1]);
            let id = id.to_string();
            let args = [
                "--node-id",
                &id,
                "--cluster-listen",
                &listen,
                "--peers",
                &peers,
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
                "--cluster-ca",
                pki.ca.to_str().unwrap(),
            ];
            Server::start_https(&args, client())
        })
        .collect();
    assert!(servers[0].url.starts_with("https://"));
    assert!(eventually(Duration::from_secs(60), || all_registered(
        &servers[0]
    )));
    create_replicated(
        &servers[0],
        json!({"name": "tls", "partitions": 1, "replication_factor": 1}),
    );
    // Every node has applied the topic (and its leader set it up).
    assert!(eventually(Duration::from_secs(60), || settled(
        &servers, "tls", 1
    )));
    let leader = layout(&servers[0], "tls")[0].0.unwrap();
    for s in &servers {
        let offsets = s.produce("tls", vec![json!({"value": s.url, "partition": 0})]);
        assert_eq!(offsets.len(), 1, "through {}", s.url);
    }
    let outsider = &servers[leader as usize % 3];
    let got = values(&outsider.read_all("tls", 0, 0));
    assert_eq!(got.len(), 3, "{got:?}");
}

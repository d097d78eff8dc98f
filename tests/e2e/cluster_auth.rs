//! Users, tokens and ACLs on a cluster of three real `weir serve --auth` processes: they
//! are the cluster's, not each node's. A user created on one node logs in on another; a
//! token made on a third works on the first; an ACL added anywhere is enforced everywhere;
//! Kafka clients authenticate (SASL SCRAM) as that user through any node; a deleted user is
//! refused everywhere, also by a node that was down when it was deleted;
//! and a node that joins with `--auth` but no `WEIR_ADMIN_PASSWORD` serves the cluster's
//! users. Timing is never asserted beyond liveness bounds.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Server, eventually, free_port};
use crate::replication::start_cluster_with;

const ADMIN_PW: &str = "Adm1n-S3cret-pw";
const CAROL_PW: &str = "car0l-pass-word";

/// `method path` on `s` as `user` with `password` (Basic), or with a bearer token.
fn call(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    auth: &Auth,
) -> (u16, Value) {
    let mut req = s.http.request(method, format!("{}{path}", s.url));
    req = match auth {
        Auth::Basic(user, pw) => req.basic_auth(user, Some(pw)),
        Auth::Bearer(token) => req.bearer_auth(token),
    };
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

enum Auth {
    Basic(&'static str, &'static str),
    Bearer(String),
}

const ADMIN: Auth = Auth::Basic("admin", ADMIN_PW);
const CAROL: Auth = Auth::Basic("carol", CAROL_PW);

fn whoami(s: &Server, auth: &Auth) -> (u16, Value) {
    call(s, reqwest::Method::GET, "/v1/whoami", None, auth)
}

fn produce(s: &Server, topic: &str, auth: &Auth) -> u16 {
    let records = json!({"records": [{"value": "v", "partition": 0}]});
    call(
        s,
        reqwest::Method::POST,
        &format!("/v1/topics/{topic}/records"),
        Some(&records),
        auth,
    )
    .0
}

#[test]
fn users_tokens_and_acls_made_on_one_node_hold_on_every_node() {
    let mut servers = start_cluster_with(&["--auth"], &[("WEIR_ADMIN_PASSWORD", ADMIN_PW)]);
    assert!(
        eventually(Duration::from_secs(60), || {
            let (status, view) = call(
                &servers[0],
                reqwest::Method::GET,
                "/v1/cluster",
                None,
                &ADMIN,
            );
            status == 200
                && view["nodes"]
                    .as_array()
                    .is_some_and(|n| n.iter().all(|n| n["registered"] == json!(true)))
        }),
        "the cluster never formed"
    );
    // A user made on node 1 logs in on node 2.
    let new_user = json!({"name": "carol", "password": CAROL_PW, "role": "writer"});
    let mut created = (0, Value::Null);
    assert!(
        eventually(Duration::from_secs(30), || {
            created = call(
                &servers[0],
                reqwest::Method::POST,
                "/v1/users",
                Some(&new_user),
                &ADMIN,
            );
            created.0 == 201
        }),
        "{created:?}"
    );
    for s in &servers[1..] {
        assert!(
            eventually(Duration::from_secs(20), || whoami(s, &CAROL).0 == 200),
            "carol cannot log in on {}: {:?}",
            s.url,
            whoami(s, &CAROL)
        );
    }
    assert_eq!(whoami(&servers[1], &CAROL).1["user"], json!("carol"));
    // Her token, made on node 3, works on node 1.
    let (status, token) = call(
        &servers[2],
        reqwest::Method::POST,
        "/v1/tokens",
        Some(&json!({"name": "ci"})),
        &CAROL,
    );
    assert_eq!(status, 201, "{token}");
    let bearer = Auth::Bearer(token["token"].as_str().unwrap().to_string());
    assert!(
        eventually(Duration::from_secs(20), || whoami(&servers[0], &bearer).0
            == 200),
        "the token made on node 3 is unknown on node 1"
    );
    // An ACL added on node 2 binds her on node 3.
    for topic in ["ok-1", "no-1"] {
        let spec = json!({"name": topic, "partitions": 1, "replication_factor": 3});
        let (status, body) = call(
            &servers[0],
            reqwest::Method::POST,
            "/v1/topics",
            Some(&spec),
            &ADMIN,
        );
        assert_eq!(status, 201, "{body}");
    }
    let acl = json!({"user": "carol", "resource": "topic", "prefix": "ok-", "allow": "write"});
    let (status, body) = call(
        &servers[1],
        reqwest::Method::POST,
        "/v1/acls",
        Some(&acl),
        &ADMIN,
    );
    assert_eq!(status, 201, "{body}");
    assert!(
        eventually(Duration::from_secs(30), || produce(
            &servers[2],
            "no-1",
            &CAROL
        ) == 403),
        "the ACL added on node 2 is not enforced on node 3"
    );
    assert!(eventually(Duration::from_secs(30), || produce(
        &servers[2],
        "ok-1",
        &CAROL
    ) == 200));
    // Kafka clients authenticate with the same user on any node (SCRAM, through node 2).
    let summary = crate::auth::confluent(
        &servers[1].kafka,
        "SCRAM-SHA-512",
        "carol",
        CAROL_PW,
        &["produce", "ok-1", "3"],
    );
    assert_eq!(summary["delivered"], json!(3), "{summary}");
    // Node 2 is down while carol is deleted on node 3; back, it refuses her too.
    servers[1].kill9();
    let (status, _) = call(
        &servers[2],
        reqwest::Method::DELETE,
        "/v1/users/carol",
        None,
        &ADMIN,
    );
    assert_eq!(status, 204);
    assert!(
        eventually(Duration::from_secs(20), || whoami(&servers[0], &CAROL).0
            == 401),
        "node 1 still lets carol in"
    );
    assert_eq!(
        whoami(&servers[0], &bearer).0,
        401,
        "her token went with her"
    );
    servers[1].start_again();
    assert!(
        eventually(Duration::from_secs(30), || whoami(&servers[1], &ADMIN).0
            == 200
            && whoami(&servers[1], &CAROL).0 == 401),
        "the node that was down still knows carol: {:?}",
        whoami(&servers[1], &CAROL)
    );
    // The replicated records (salted keys, token hashes) sit in the metadata directory:
    // private to the server's user, as auth/auth.json is.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = servers[0].data_dir().join("cluster").join("metadata");
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
    // A node joining with --auth but no admin password takes the cluster's users.
    let (_, view) = call(
        &servers[0],
        reqwest::Method::GET,
        "/v1/cluster",
        None,
        &ADMIN,
    );
    let join = view["nodes"][0]["address"].as_str().unwrap().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let n4 = Server::start(&[
        "--node-id",
        "4",
        "--cluster-listen",
        &listen,
        "--join",
        &join,
        "--auth",
    ]);
    assert!(
        eventually(Duration::from_secs(60), || whoami(&n4, &ADMIN).0 == 200),
        "the joined node does not know admin: {:?}",
        whoami(&n4, &ADMIN)
    );
}

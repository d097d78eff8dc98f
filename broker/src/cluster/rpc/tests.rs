//! Cluster RPC in process: real servers on loopback, real clients.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::*;
use crate::cluster::rpc::message::{RequestEnvelope, encode};

struct TestServer {
    addr: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn start(node_id: NodeId, cluster: Option<&str>, max: usize) -> TestServer {
    start_with(node_id, cluster, max, None).await
}

async fn start_with(
    node_id: NodeId,
    cluster: Option<&str>,
    max: usize,
    tls: Option<ClusterTls>,
) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let local = LocalNode::new(node_id, addr.clone(), cluster.map(str::to_string));
    let mut config = ServerConfig::new(local, max);
    config.tls = tls.map(|t| t.server);
    let (stop, mut rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        serve(listener, config, Arc::new(HelloOnly), async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await
    });
    TestServer { addr, stop, task }
}

fn client(addr: &str, node_id: NodeId, cluster: Option<&str>, max: usize) -> PeerClient {
    let local = LocalNode::new(node_id, "127.0.0.1:1", cluster.map(str::to_string));
    let mut c = ClientConfig::new(max);
    c.connect_timeout = Duration::from_secs(2);
    c.request_timeout = Duration::from_secs(5);
    PeerClient::new(addr, local, c)
}

#[tokio::test]
async fn two_nodes_greet_each_other_over_one_connection() {
    let a = start(1, Some("c1"), 1 << 20).await;
    let b = start(2, Some("c1"), 1 << 20).await;
    let to_b = client(&b.addr, 1, Some("c1"), 1 << 20);
    let to_a = client(&a.addr, 2, Some("c1"), 1 << 20);
    let r = to_b.hello().await.unwrap();
    assert_eq!((r.node_id, r.cluster_id.as_deref()), (2, Some("c1")));
    assert_eq!(r.protocol, PROTOCOL_VERSION);
    assert_eq!(to_a.hello().await.unwrap().node_id, 1);
    // Concurrent calls share the connection.
    let calls = (0..20).map(|_| to_b.hello());
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.unwrap().node_id, 2);
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn another_cluster_is_refused_and_a_joiner_learns_the_id() {
    let a = start(1, Some("alpha"), 1 << 20).await;
    let e = client(&a.addr, 2, Some("beta"), 1 << 20)
        .hello()
        .await
        .unwrap_err();
    assert_eq!(e.code(), "wrong_cluster", "{e}");
    assert!(
        e.to_string().contains("alpha") && e.to_string().contains("beta"),
        "{e}"
    );
    // Same id as the server: two processes with one --node-id.
    let e = client(&a.addr, 1, Some("alpha"), 1 << 20)
        .hello()
        .await
        .unwrap_err();
    assert_eq!(e.code(), "same_node_id", "{e}");
    // A joining node without the id may greet and learns it.
    let joiner = client(&a.addr, 4, None, 1 << 20);
    let r = joiner.hello().await.unwrap();
    assert_eq!(r.cluster_id.as_deref(), Some("alpha"));
    a.stop().await;
}

#[tokio::test]
async fn oversized_messages_are_refused_both_ways() {
    let a = start(1, Some("c"), 1024).await;
    // The server's limit: a 4 KiB greeting is refused without being served.
    let local = LocalNode::new(2, "h".repeat(4096) + ":1", Some("c".into()));
    let big = PeerClient::new(&a.addr, local.clone(), ClientConfig::new(1 << 20));
    let e = big.hello().await.unwrap_err();
    assert_eq!(e.code(), "too_large", "{e}");
    // The client's own limit: not even sent.
    let small = PeerClient::new(&a.addr, local, ClientConfig::new(1024));
    let e = small.hello().await.unwrap_err();
    assert!(matches!(e, RpcError::TooLarge { .. }), "{e}");
    // A body that is not an envelope is malformed, not a crash; the server keeps serving.
    let raw = client(&a.addr, 2, Some("c"), 1 << 20);
    let e = raw
        .send_bytes(vec![0xff; 100], Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "malformed", "{e}");
    let envelope = RequestEnvelope {
        protocol: 99,
        cluster_id: Some("c".into()),
        from: 2,
        request: PeerRequest::Hello(Hello {
            cluster_id: Some("c".into()),
            node_id: 2,
            version: String::new(),
            advertised: String::new(),
        }),
    };
    let e = raw
        .send_bytes(encode(&envelope).unwrap(), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unsupported_protocol", "{e}");
    assert_eq!(raw.hello().await.unwrap().node_id, 1);
    a.stop().await;
}

#[tokio::test]
async fn a_stalled_peer_times_out_and_a_restarted_one_is_reached_again() {
    // Accepts TCP connections (the kernel does) but never speaks HTTP/2: a paused process.
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = stalled.local_addr().unwrap().to_string();
    let c = client(&addr, 1, Some("c"), 1 << 20);
    let started = Instant::now();
    let e = c.hello().await.unwrap_err();
    assert!(e.is_unreachable(), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(stalled);

    // A peer that goes away and comes back on the same port is dialled again.
    let a = start(1, Some("c"), 1 << 20).await;
    let c = client(&a.addr, 2, Some("c"), 1 << 20);
    c.hello().await.unwrap();
    let addr = a.addr.clone();
    a.stop().await;
    let mut reached = false;
    let mut restarted = None;
    for _ in 0..50 {
        if restarted.is_none() {
            let Ok(l) = TcpListener::bind(&addr).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let local = LocalNode::new(1, addr.clone(), Some("c".into()));
            let config = ServerConfig::new(local, 1 << 20);
            let (stop, mut rx) = watch::channel(false);
            let task = tokio::spawn(async move {
                serve(l, config, Arc::new(HelloOnly), async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
            });
            restarted = Some(TestServer {
                addr: addr.clone(),
                stop,
                task,
            });
        }
        if c.hello().await.is_ok() {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reached, "the restarted peer was not reached again");
    if let Some(s) = restarted {
        s.stop().await;
    }
}

#[tokio::test]
async fn the_peer_view_follows_liveness() {
    let b = start(2, Some("c"), 1 << 20).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead); // nothing listens there: connection refused
    let local = LocalNode::new(1, "127.0.0.1:1", Some("c".into()));
    let mut cc = ClientConfig::new(1 << 20);
    cc.connect_timeout = Duration::from_secs(1);
    cc.request_timeout = Duration::from_secs(2);
    let peers = Peers::new(
        local,
        cc,
        [
            (1, "127.0.0.1:1".to_string()),
            (2, b.addr.clone()),
            (3, dead_addr),
        ],
    );
    peers.greet_all().await;
    let view = peers.view();
    assert_eq!(view.cluster_id.as_deref(), Some("c"));
    let ids: Vec<_> = view.nodes.iter().map(|n| (n.id, n.reachable)).collect();
    assert_eq!(ids, vec![(1, true), (2, true), (3, false)]);
    assert!(view.nodes[2].error.is_some());
    assert!(view.nodes[1].last_seen_ms.is_some());
    b.stop().await;
    peers.greet_all().await;
    assert!(!peers.is_reachable(2));

    // A node at the address --peers gives for node 3 that says it is node 5 is not node 3.
    let five = start(5, Some("c"), 1 << 20).await;
    peers.upsert(3, &five.addr);
    peers.greet_all().await;
    let three = peers.view().nodes.into_iter().find(|n| n.id == 3).unwrap();
    assert!(!three.reachable);
    assert!(three.error.unwrap().contains("node 5"));
    five.stop().await;
}

#[tokio::test]
async fn a_joining_node_learns_and_records_the_cluster_id() {
    let a = start(1, Some("alpha"), 1 << 20).await;
    let local = LocalNode::new(4, "127.0.0.1:1", None);
    let recorded = Arc::new(std::sync::Mutex::new(None::<String>));
    let r2 = recorded.clone();
    let peers = Peers::new(local.clone(), ClientConfig::new(1 << 20), []).joining(
        a.addr.clone(),
        Box::new(move |id| {
            *r2.lock().unwrap() = Some(id.to_string());
            Ok(())
        }),
    );
    peers.greet_all().await;
    assert_eq!(local.cluster_id().as_deref(), Some("alpha"));
    assert_eq!(recorded.lock().unwrap().as_deref(), Some("alpha"));
    assert!(peers.is_reachable(1));
    a.stop().await;
}

#[tokio::test]
async fn mutual_tls_between_nodes() {
    let pki = crate::net::test_pki::NodePki::generate(2);
    let node = |i: usize| ClusterTlsFiles {
        cert: pki.nodes[i - 1].0.clone(),
        key: pki.nodes[i - 1].1.clone(),
        ca: pki.ca.clone(),
    };
    let tls1 = ClusterTls::load(&node(1)).unwrap();
    let tls2 = ClusterTls::load(&node(2)).unwrap();
    let a = start_with(1, Some("c"), 1 << 20, Some(tls1)).await;
    let local = LocalNode::new(2, "127.0.0.1:1", Some("c".into()));
    let mut cc = ClientConfig::new(1 << 20);
    cc.tls = Some(tls2.client.clone());
    let c = PeerClient::new(&a.addr, local.clone(), cc);
    assert_eq!(c.hello().await.unwrap().node_id, 1);
    // Plain HTTP/2 to a TLS listener fails; so does TLS trusting another CA.
    let mut plain = ClientConfig::new(1 << 20);
    plain.connect_timeout = Duration::from_secs(2);
    assert!(
        PeerClient::new(&a.addr, local.clone(), plain)
            .hello()
            .await
            .is_err()
    );
    a.stop().await;
}

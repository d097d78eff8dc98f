//! Any node serves any record request (cluster mode): this module sends the part of a
//! request this node cannot serve to the node that can, over that node's HTTP API, and hands
//! back its answer as if it were local. It owns the HTTP client between nodes and the rules
//! below; it decides nothing about leadership (that is [`ClusterRouting`]'s applied metadata)
//! and never touches the log itself.
//!
//! - **Produce** (`POST /v1/topics/{name}/records`): each record's partition is decided here
//!   as the broker would (explicit partition; key → Kafka's default partitioner; unkeyed →
//!   the partitions this node leads, round robin, as [`weir_broker::Broker::produce`] does; if
//!   it leads none, one partition with a leader per request, round robin). Records of
//!   partitions this node leads are produced locally; the others are sent to their leader
//!   with an explicit partition, one request per leader, concurrently. The answer lists the
//!   offsets in request order, as a local produce does. A request spanning several leaders is
//!   not atomic (neither is a single node's request spanning partitions): on an error the
//!   first one is returned, and records of other leaders may have been written.
//! - **Reads** (`GET /v1/topics/{name}/partitions/{p}/records`, page or `follow`): served
//!   locally by any node holding a replica (below its high watermark); a node without a
//!   replica of the partition forwards the request as is to the partition's leader and
//!   streams its answer back (status, content type and body).
//! - **Describe** (`GET /v1/topics/{name}`) of a replicated topic this node holds no replica
//!   of (so no local copy) is forwarded to a node leading one of its partitions; the topic
//!   list shows such topics too (from the metadata).
//! - **Consumer groups** (`GET /v1/groups/{name}`): asked of a node that does not coordinate
//!   the group, forwarded to its coordinator, the leader of the group's partition of the
//!   offsets topic ([`group_elsewhere`]); the list asks every other live node for its own
//!   ([`ask_other_nodes`]), and the coordinator asks partition leaders for the log ends it
//!   has no replica of ([`ask_nodes`]).
//! - **Processors' tasks** (interactive queries, describe): a key look-up asked of a node
//!   that does not run the key's task is sent to the task's owner as is
//!   ([`task_elsewhere`]); a prefix scan or a describe asks each owner for its own tasks
//!   ([`ask_tasks`], with [`TASKS`] naming the partitions it answers for) and the asking node
//!   merges the answers (`src/http/processors.rs`). An owner that cannot be reached is `503
//!   task_unavailable` naming the task and the node.
//!
//! # Invariants
//!
//! 1. **No forwarding loops**: a forwarded request carries [`FORWARDED_BY`]; a request
//!    carrying it is always served locally (a partition not led here is then refused as
//!    `not_leader`, which is what the original node answers too).
//! 2. **The caller's identity goes along**: the `Authorization` header is passed unchanged,
//!    and the receiving node authenticates and authorizes the request again (credentials
//!    take precedence over the forwarding node's client certificate there). A caller known
//!    only by its client certificate is never forwarded ([`served_here_only`]).
//! 3. **Bounded**: connecting waits at most [`CONNECT_TIMEOUT`], a produce or page read at
//!    most [`REQUEST_TIMEOUT`] in all, a produce answer is read up to
//!    [`MAX_PRODUCE_ANSWER_BYTES`]; a forwarded body is never larger than the request this
//!    node accepted. A follow stream ends when either side ends or this node shuts down.
//! 4. **Errors keep their shape**: the leader's JSON error comes back with its status and
//!    code; a leader this node cannot reach is `503 leader_unreachable` naming it; a
//!    partition without a leader (or whose leader advertised no HTTP address) is `503
//!    not_leader`, as a local refusal is.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::watch;
use weir_broker::cluster::routing::{ClusterRouting, Route};
use weir_broker::partitioner::partition_for_key;
use weir_broker::{BrokerError, ProduceRecord};

use super::AppState;
use super::error::ApiError;
use super::records::{ProduceRecordJson, ProduceRequest, ProduceResponse, RecordPosition};

/// Header marking a request one node forwarded to another (value: the sender's node id).
pub const FORWARDED_BY: &str = "x-weir-forwarded-by";
/// Header of a forwarded prefix scan: the task partitions (comma-separated) the receiving
/// node answers for, from its own tasks only.
pub const TASKS: &str = "x-weir-tasks";
/// A look-up that accepts a stale answer (`?allow_stale=true`) says with these headers how
/// many changelog records the answering store is behind, what answered (`task`, `restoring`
/// or `standby`) and on which node.
pub const LAG: &str = "x-weir-lag";
pub const ANSWERED_BY: &str = "x-weir-answered-by";
pub const ANSWERED_ON: &str = "x-weir-node";
/// Sets the stale-answer headers ([`LAG`], [`ANSWERED_BY`], [`ANSWERED_ON`] on a cluster).
pub fn stale_headers(headers: &mut HeaderMap, lag: i64, by: &'static str, state: &AppState) {
    headers.insert(LAG, HeaderValue::from(lag));
    headers.insert(ANSWERED_BY, HeaderValue::from_static(by));
    if let Some(r) = &state.routing {
        headers.insert(ANSWERED_ON, HeaderValue::from(r.node()));
    }
}

/// How long a look-up or pull query that accepts a stale answer waits for each node it asks
/// (the owner first, then the standbys), so that an owner that hangs leaves time for a
/// standby.
pub const STALE_ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for a connection to another node's HTTP listener.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a forwarded produce or page read may take in all (an `acks=all` produce waits
/// for the in-sync set; the broker's own replication timeout is shorter).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest produce answer read back (offsets of at most a request's records).
pub const MAX_PRODUCE_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// The HTTP client between nodes. Cheap to share.
#[derive(Debug)]
pub struct Forwarder {
    node: u64,
    client: reqwest::Client,
    scheme: &'static str,
    /// Turn of the round robin over partitions for unkeyed records this node cannot place
    /// on a partition it leads.
    turn: AtomicU32,
}

/// Why the client between nodes could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client between nodes: {0}")]
pub struct ForwarderError(#[from] reqwest::Error);

impl Forwarder {
    /// A client for node `node`. With `tls` (this node serves HTTPS), other nodes are
    /// reached over HTTPS with the cluster's client configuration (trusting the cluster CA,
    /// presenting this node's certificate).
    pub fn new(
        node: u64,
        https: bool,
        tls: Option<&weir_broker::cluster::rpc::ClusterTls>,
    ) -> Result<Forwarder, ForwarderError> {
        // reqwest's rustls takes the process's crypto provider (ring; idempotent).
        weir_broker::net::tls::install_default_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if https && let Some(tls) = tls {
            let mut config = (*tls.client).clone();
            // The HTTP API speaks HTTP/1.1 (the cluster listener's ALPN is h2).
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            builder = builder.use_preconfigured_tls(config);
        }
        Ok(Forwarder {
            node,
            client: builder.build()?,
            scheme: if https { "https" } else { "http" },
            turn: AtomicU32::new(0),
        })
    }

    fn url(&self, addr: &str, path_and_query: &str) -> String {
        format!("{}://{addr}{path_and_query}", self.scheme)
    }

    fn request(
        &self,
        method: reqwest::Method,
        url: String,
        auth: Option<&HeaderValue>,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .request(method, url)
            .header(FORWARDED_BY, self.node.to_string());
        if let Some(auth) = auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        request
    }
}

impl Forwarder {
    /// `GET path` on another node as JSON, within `timeout` (for reports, not clients'
    /// requests: the error is a description).
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        auth: Option<&HeaderValue>,
        timeout: Duration,
    ) -> Result<T, String> {
        let response = self
            .request(reqwest::Method::GET, self.url(addr, path), auth)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = read_capped(response, MAX_PRODUCE_ANSWER_BYTES)
            .await
            .map_err(|e| match e {
                Capped::TooLarge => "answer too large".to_string(),
                Capped::Failed(e) => e.to_string(),
            })?;
        if !status.is_success() {
            return Err(format!("{addr} answered {status}"));
        }
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }
}

/// Whether a request was forwarded by another node (then it is never forwarded again).
pub fn is_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED_BY)
}

/// Whether a request is served here whatever it asks: it was forwarded already
/// (invariant 1), or, under `--auth`, its caller authenticated with a client certificate
/// rather than an `Authorization` header (the leader would see this node's certificate
/// instead: such a caller is answered `not_leader` and goes to the leader itself).
fn served_here_only(state: &AppState, headers: &HeaderMap) -> bool {
    is_forwarded(headers) || known_by_certificate_only(state, headers)
}

/// Under `--auth`, a caller known only by its client certificate: its identity cannot go
/// along to another node (invariant 2), so nothing is asked of one on its behalf.
fn known_by_certificate_only(state: &AppState, headers: &HeaderMap) -> bool {
    state.auth.as_ref().is_some_and(|a| a.required) && !headers.contains_key(AUTHORIZATION)
}

/// Where a partition's requests go when this node cannot serve them: the leader's HTTP
/// address, or the error a local refusal would give.
fn leader_addr(
    routing: &ClusterRouting,
    topic: &str,
    partition: i32,
    route: &Route,
) -> Result<(u64, String), ApiError> {
    let not_leader = |leader| {
        ApiError::from(BrokerError::NotLeader {
            topic: topic.to_string(),
            partition,
            leader,
        })
    };
    let leader = route.leader.ok_or_else(|| not_leader(None))?;
    let addr = routing
        .brokers()
        .into_iter()
        .find(|(b, fenced)| b.id == leader && !fenced)
        .map(|(b, _)| b.http_addr)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| not_leader(Some(leader)))?;
    Ok((leader, addr))
}

/// Produces `records` to `topic`, forwarding the ones whose partition another node leads
/// (see the module docs); the positions in request order.
pub async fn produce(
    state: &AppState,
    topic: &str,
    path: &str,
    headers: &HeaderMap,
    records: Vec<ProduceRecordJson>,
) -> Result<Vec<RecordPosition>, ApiError> {
    let plan = match (&state.routing, &state.forwarder) {
        (Some(routing), Some(forwarder)) if !served_here_only(state, headers) => routing
            .routes(topic)
            .map(|routes| (routing, forwarder, routes)),
        _ => None,
    };
    let Some((routing, forwarder, routes)) = plan else {
        if let Some(routing) = &state.routing
            && let Some(routes) = routing.routes(topic)
        {
            // Served here only: a partition led elsewhere is refused naming its leader (also
            // where this node has no copy of the topic).
            for r in &records {
                if let Some(p) = r.partition
                    && let Some(route) = usize::try_from(p).ok().and_then(|i| routes.get(i))
                    && route.leader != Some(routing.node())
                {
                    return Err(BrokerError::NotLeader {
                        topic: topic.to_string(),
                        partition: p,
                        leader: route.leader,
                    }
                    .into());
                }
            }
        }
        return produce_local(state, topic, records).await;
    };
    let me = routing.node();
    let n = routes.len() as i32;
    let leads_any = routes.iter().any(|r| r.leader == Some(me));
    // Unkeyed records stay here when this node leads a partition (the broker's round
    // robin); else they all go to one partition with a leader, round robin across requests.
    let unkeyed = if leads_any {
        None
    } else {
        let led: Vec<i32> = (0..n)
            .filter(|p| routes[*p as usize].leader.is_some())
            .collect();
        (!led.is_empty())
            .then(|| led[forwarder.turn.fetch_add(1, Ordering::Relaxed) as usize % led.len()])
    };
    let mut local: Vec<usize> = Vec::new();
    let mut local_records: Vec<ProduceRecordJson> = Vec::new();
    let mut remote: BTreeMap<u64, (String, Vec<usize>, Vec<ProduceRecordJson>)> = BTreeMap::new();
    for (i, mut record) in records.into_iter().enumerate() {
        let partition = match (record.partition, &record.key) {
            (Some(p), _) => Some(p),
            (None, Some(k)) => Some(partition_for_key(k.as_bytes(), n)),
            (None, None) => unkeyed,
        };
        let route = partition.map(|p| usize::try_from(p).ok().and_then(|p| routes.get(p)));
        if let (Some(p), Some(None)) = (partition, route) {
            return Err(BrokerError::UnknownPartition {
                topic: topic.to_string(),
                partition: p,
            }
            .into());
        }
        match (partition, route.flatten()) {
            (Some(p), Some(route)) if route.leader.is_some_and(|l| l != me) => {
                let entry = match route.leader.and_then(|l| remote.get_mut(&l)) {
                    Some(entry) => entry,
                    None => {
                        let (leader, addr) = leader_addr(routing, topic, p, route)?;
                        remote
                            .entry(leader)
                            .or_insert_with(|| (addr, Vec::new(), Vec::new()))
                    }
                };
                record.partition = Some(p);
                entry.1.push(i);
                entry.2.push(record);
            }
            // Led here, or without a leader (refused locally as such).
            _ => {
                local.push(i);
                local_records.push(record);
            }
        }
    }
    let total = local.len() + remote.values().map(|r| r.1.len()).sum::<usize>();
    let mut positions: Vec<Option<RecordPosition>> = (0..total).map(|_| None).collect();
    let auth = headers.get(AUTHORIZATION);
    let sends = remote
        .into_iter()
        .map(|(leader, (addr, indices, records))| {
            let url = forwarder.url(&addr, path);
            async move {
                let sent = records.len();
                let answer = forward_produce(forwarder, leader, url, auth, records).await;
                (indices, answer.and_then(|a| check_count(leader, sent, a)))
            }
        });
    let local_work = async {
        if local.is_empty() {
            return Ok(Vec::new());
        }
        produce_local(state, topic, local_records).await
    };
    let (local_answer, remote_answers) =
        tokio::join!(local_work, futures_util::future::join_all(sends));
    let mut first_error = None;
    match local_answer {
        Ok(done) => {
            for (i, p) in local.iter().zip(done) {
                positions[*i] = Some(p);
            }
        }
        Err(e) => first_error = Some(e),
    }
    for (indices, answer) in remote_answers {
        match answer {
            Ok(done) => {
                for (i, p) in indices.iter().zip(done) {
                    positions[*i] = Some(p);
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    positions
        .into_iter()
        .map(|p| p.ok_or_else(|| ApiError::internal("a record got no position")))
        .collect()
}

/// The local produce of `records` (the broker decides their partitions as on a single
/// node).
async fn produce_local(
    state: &AppState,
    topic: &str,
    records: Vec<ProduceRecordJson>,
) -> Result<Vec<RecordPosition>, ApiError> {
    let records: Vec<ProduceRecord> = records.into_iter().map(Into::into).collect();
    let broker = state.broker.clone();
    let name = topic.to_string();
    let positions =
        match tokio::task::spawn_blocking(move || broker.produce(&name, records)).await? {
            // The metadata places a replica of the topic here, and this node has not set up its
            // copy yet: retriable, not a 404.
            Err(BrokerError::UnknownTopic(_)) if replica_here(state, topic) => {
                return Err(not_set_up(topic));
            }
            other => other?,
        };
    Ok(positions
        .into_iter()
        .map(|(partition, offset)| RecordPosition { partition, offset })
        .collect())
}

/// The answer for a topic the metadata places a replica of here that this node has not set
/// up yet (its applier is behind): `503 cluster_unavailable`, retriable.
fn not_set_up(topic: &str) -> ApiError {
    BrokerError::ClusterUnavailable(format!(
        "topic '{topic}' is not set up on this node yet (its metadata is being applied); retry"
    ))
    .into()
}

/// Whether the applied metadata places a replica of `topic` on this node.
fn replica_here(state: &AppState, topic: &str) -> bool {
    state.routing.as_ref().is_some_and(|r| {
        r.routes(topic)
            .is_some_and(|routes| routes.iter().any(|p| p.replicas.contains(&r.node())))
    })
}

fn check_count(
    leader: u64,
    sent: usize,
    got: Vec<RecordPosition>,
) -> Result<Vec<RecordPosition>, ApiError> {
    if got.len() == sent {
        Ok(got)
    } else {
        Err(ApiError::internal(format!(
            "node {leader} answered {} offsets for {sent} records",
            got.len()
        )))
    }
}

async fn forward_produce(
    forwarder: &Forwarder,
    leader: u64,
    url: String,
    auth: Option<&HeaderValue>,
    records: Vec<ProduceRecordJson>,
) -> Result<Vec<RecordPosition>, ApiError> {
    let body = serde_json::to_vec(&ProduceRequest { records })
        .map_err(|e| ApiError::internal(format!("encoding a forwarded produce: {e}")))?;
    let response = forwarder
        .request(reqwest::Method::POST, url, auth)
        .header(CONTENT_TYPE, "application/json")
        .timeout(REQUEST_TIMEOUT)
        .body(body)
        .send()
        .await
        .map_err(|e| unreachable(leader, &e))?;
    let status = response.status();
    let bytes = read_capped(response, MAX_PRODUCE_ANSWER_BYTES)
        .await
        .map_err(|e| match e {
            Capped::TooLarge => ApiError::internal(format!(
                "node {leader} answered more than {MAX_PRODUCE_ANSWER_BYTES} bytes"
            )),
            Capped::Failed(e) => unreachable(leader, &e),
        })?;
    if !status.is_success() {
        return Err(remote_error(leader, status, &bytes));
    }
    let answer: ProduceResponse = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::internal(format!("node {leader} answered a produce unreadably: {e}"))
    })?;
    Ok(answer.offsets)
}

enum Capped {
    TooLarge,
    Failed(reqwest::Error),
}

async fn read_capped(response: reqwest::Response, cap: usize) -> Result<Vec<u8>, Capped> {
    let mut out = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Capped::Failed)?;
        if out.len() + chunk.len() > cap {
            return Err(Capped::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn unreachable(leader: u64, e: &reqwest::Error) -> ApiError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "failed"
    };
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "leader_unreachable",
        format!("forwarding to node {leader}, the partition's leader: {what}: {e}"),
    )
}

/// The leader's error answer as this node's own (its status, code and message).
fn remote_error(leader: u64, status: StatusCode, body: &[u8]) -> ApiError {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Detail,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        code: String,
        message: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => ApiError::new(status, b.error.code, b.error.message),
        Err(_) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            format!("node {leader} answered {status} without an error body"),
        ),
    }
}

/// A read this node cannot serve (it holds no replica of the partition) forwarded to the
/// partition's leader; `None` when it is served here.
pub async fn read_elsewhere(
    state: &AppState,
    topic: &str,
    partition: i32,
    headers: &HeaderMap,
    path_and_query: &str,
    follow: bool,
) -> Result<Option<Response>, ApiError> {
    let (Some(routing), Some(forwarder)) = (&state.routing, &state.forwarder) else {
        return Ok(None);
    };
    let Some(routes) = routing.routes(topic) else {
        return Ok(None);
    };
    let Some(route) = usize::try_from(partition).ok().and_then(|p| routes.get(p)) else {
        return Ok(None);
    };
    if served_here_only(state, headers) && !route.replicas.contains(&routing.node()) {
        return Err(BrokerError::NotLeader {
            topic: topic.to_string(),
            partition,
            leader: route.leader,
        }
        .into());
    }
    if route.replicas.contains(&routing.node()) {
        if state.broker.topic_info(topic).is_err() {
            // A replica here in the metadata, not set up yet: retriable, not a 404.
            return Err(not_set_up(topic));
        }
        return Ok(None);
    }
    let (leader, addr) = leader_addr(routing, topic, partition, route)?;
    let mut request = forwarder.request(
        reqwest::Method::GET,
        forwarder.url(&addr, path_and_query),
        headers.get(AUTHORIZATION),
    );
    if !follow {
        request = request.timeout(REQUEST_TIMEOUT);
    }
    let upstream = request.send().await.map_err(|e| unreachable(leader, &e))?;
    Ok(Some(stream_back(upstream, state.shutdown.clone())))
}

/// A topic's description asked of a node without a local copy of it (it holds none of its
/// replicas) forwarded to a live node that holds one (the leader of its first partition
/// with a leader); `None` when this node has a copy or the metadata knows no such topic; a
/// node that should hold a replica but has not set it up yet answers `503` (retriable).
pub async fn describe_elsewhere(
    state: &AppState,
    topic: &str,
    headers: &HeaderMap,
    path: &str,
) -> Result<Option<Response>, ApiError> {
    let (Some(routing), Some(forwarder)) = (&state.routing, &state.forwarder) else {
        return Ok(None);
    };
    if served_here_only(state, headers) || state.broker.topic_info(topic).is_ok() {
        return Ok(None);
    }
    let Some(routes) = routing.routes(topic) else {
        return Ok(None);
    };
    if routes.iter().any(|r| r.replicas.contains(&routing.node())) {
        // A replica here in the metadata, not set up yet: retriable, not a 404 (and a
        // describe answered here means this node serves the topic).
        return Err(not_set_up(topic));
    }
    let Some((partition, route)) = routes
        .iter()
        .enumerate()
        .find(|(_, r)| r.leader.is_some_and(|l| l != routing.node()))
    else {
        return Ok(None);
    };
    let (leader, addr) = leader_addr(routing, topic, partition as i32, route)?;
    let upstream = forwarder
        .request(
            reqwest::Method::GET,
            forwarder.url(&addr, path),
            headers.get(AUTHORIZATION),
        )
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| unreachable(leader, &e))?;
    Ok(Some(stream_back(upstream, state.shutdown.clone())))
}

/// The leader's answer streamed back as it comes, until it ends or this node shuts down.
fn stream_back(upstream: reqwest::Response, mut shutdown: watch::Receiver<bool>) -> Response {
    let status = upstream.status();
    let headers = kept_headers(upstream.headers());
    let stopped = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let body = Body::from_stream(upstream.bytes_stream().take_until(Box::pin(stopped)));
    (status, headers, body).into_response()
}

/// The headers of another node's answer that go back to the client.
fn kept_headers(upstream: &reqwest::header::HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for name in [CONTENT_TYPE, CACHE_CONTROL] {
        if let Some(v) = upstream.get(&name) {
            headers.insert(name, v.clone());
        }
    }
    for name in [LAG, ANSWERED_BY, ANSWERED_ON] {
        if let Some(v) = upstream.get(name) {
            headers.insert(name, v.clone());
        }
    }
    headers
}

/// `GET path` asked of every other live node with an HTTP address (cluster mode),
/// concurrently, each within `timeout`, the caller's `Authorization` passed on: each node's
/// id with its answer or why there is none. Empty on a single node and for a request that
/// is served here only (it was forwarded, or its caller is known by a client certificate).
pub async fn ask_other_nodes<T: serde::de::DeserializeOwned>(
    state: &AppState,
    path: &str,
    headers: &HeaderMap,
    timeout: Duration,
) -> Vec<(u64, Result<T, String>)> {
    let (Some(routing), Some(forwarder)) = (&state.routing, &state.forwarder) else {
        return Vec::new();
    };
    if served_here_only(state, headers) {
        return Vec::new();
    }
    let me = routing.node();
    let auth = headers.get(AUTHORIZATION);
    let asks = routing
        .brokers()
        .into_iter()
        .filter(|(b, fenced)| b.id != me && !fenced)
        .map(|(b, _)| async move {
            if b.http_addr.is_empty() {
                return (b.id, Err("no HTTP address advertised".to_string()));
            }
            let answer = forwarder
                .get_json::<T>(&b.http_addr, path, auth, timeout)
                .await;
            (b.id, answer)
        });
    futures_util::future::join_all(asks).await
}

/// A consumer group's request forwarded to its coordinator: the leader of `partition` of
/// the offsets topic (cluster mode). Served here only (invariant 1), or without a
/// coordinator to ask, the answer is `503 not_coordinator` naming the coordinator if known.
pub async fn group_elsewhere(
    state: &AppState,
    group: &str,
    partition: i32,
    headers: &HeaderMap,
    path: &str,
) -> Result<Response, ApiError> {
    let not_coordinator = |leader: Option<u64>| {
        let e = ApiError::from(weir_broker::group::GroupViewError::NotCoordinator {
            group: group.to_string(),
            partition,
        });
        match leader {
            Some(l) => e.with("coordinator", l.into()),
            None => e,
        }
    };
    let (Some(routing), Some(forwarder)) = (&state.routing, &state.forwarder) else {
        return Err(not_coordinator(None));
    };
    let route = routing
        .routes(weir_broker::group::OFFSETS_TOPIC)
        .and_then(|routes| {
            usize::try_from(partition)
                .ok()
                .and_then(|p| routes.into_iter().nth(p))
        });
    let Some(route) = route else {
        return Err(not_coordinator(None));
    };
    if served_here_only(state, headers) || route.leader == Some(routing.node()) {
        return Err(not_coordinator(route.leader));
    }
    let (leader, addr) = leader_addr(
        routing,
        weir_broker::group::OFFSETS_TOPIC,
        partition,
        &route,
    )
    .map_err(|_| not_coordinator(route.leader))?;
    let upstream = forwarder
        .request(
            reqwest::Method::GET,
            forwarder.url(&addr, path),
            headers.get(AUTHORIZATION),
        )
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| unreachable(leader, &e))?;
    Ok(stream_back(upstream, state.shutdown.clone()))
}

/// `GET path` asked of each `(node, path)` (cluster mode), concurrently, each within
/// `timeout`, the caller's `Authorization` passed on, for a report this node puts into its
/// own answer (also while serving a forwarded request: these are leaf reads, served where
/// they arrive). Each node's id and path with its answer or why there is none; empty on a
/// single node and for a caller known only by its client certificate.
pub async fn ask_nodes<T: serde::de::DeserializeOwned>(
    state: &AppState,
    asks: Vec<(u64, String)>,
    headers: &HeaderMap,
    timeout: Duration,
) -> Vec<(u64, String, Result<T, String>)> {
    let (Some(routing), Some(forwarder)) = (&state.routing, &state.forwarder) else {
        return Vec::new();
    };
    if known_by_certificate_only(state, headers) {
        return Vec::new();
    }
    let addrs: BTreeMap<u64, String> = routing
        .brokers()
        .into_iter()
        .filter(|(_, fenced)| !fenced)
        .map(|(b, _)| (b.id, b.http_addr))
        .collect();
    let auth = headers.get(AUTHORIZATION);
    let addrs = &addrs;
    let asks = asks.into_iter().map(|(node, path)| async move {
        let answer = match addrs.get(&node).filter(|a| !a.is_empty()) {
            Some(addr) => forwarder.get_json::<T>(addr, &path, auth, timeout).await,
            None => Err(format!("node {node} is fenced or has no HTTP address")),
        };
        (node, path, answer)
    });
    futures_util::future::join_all(asks).await
}

/// Whether a processor request asked here may be sent on to the nodes running its tasks:
/// cluster mode, and not served here only (it was forwarded already, or its caller is known
/// by a client certificate only).
pub fn may_ask_task_owners(state: &AppState, headers: &HeaderMap) -> bool {
    state.routing.is_some() && state.forwarder.is_some() && !served_here_only(state, headers)
}

/// The HTTP address of live (unfenced) node `node`, if it advertised one.
fn node_addr(routing: &ClusterRouting, node: u64) -> Option<String> {
    routing
        .brokers()
        .into_iter()
        .find(|(b, fenced)| b.id == node && !fenced)
        .map(|(b, _)| b.http_addr)
        .filter(|a| !a.is_empty())
}

/// `503 task_unavailable`: task `task` has no owner this node can ask (`node` is its owner,
/// if it has one), for `why`.
pub fn task_unavailable(task: &str, node: Option<u64>, why: &str) -> ApiError {
    let message = match node {
        Some(n) => format!("task {task} runs on node {n}, which cannot answer: {why}"),
        None => format!("task {task} is not assigned to a node: {why}"),
    };
    let e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "task_unavailable", message)
        .with("task", task.into());
    match node {
        Some(n) => e.with("node", n.into()),
        None => e,
    }
}

fn unreachable_owner(task: &str, node: u64, e: &reqwest::Error) -> ApiError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "failed"
    };
    task_unavailable(task, Some(node), &format!("{what}: {e}"))
}

/// The forwarder and HTTP address of `node`, the owner of task `task`; `503
/// task_unavailable` when this is no cluster node or `node` cannot be asked.
fn task_owner<'s>(
    state: &'s AppState,
    task: &str,
    node: u64,
) -> Result<(&'s Forwarder, String), ApiError> {
    let (Some(routing), Some(forwarder)) = (&state.routing, &state.forwarder) else {
        return Err(task_unavailable(task, Some(node), "not a cluster node"));
    };
    let addr = node_addr(routing, node).ok_or_else(|| {
        task_unavailable(
            task,
            Some(node),
            "it is fenced or advertised no HTTP address",
        )
    })?;
    Ok((forwarder.as_ref(), addr))
}

/// A `method path_and_query` request about task `task` to `node` (its owner or a standby),
/// with the caller's `Authorization`; `503 task_unavailable` when `node` cannot be asked.
fn task_request(
    state: &AppState,
    task: &str,
    node: u64,
    method: reqwest::Method,
    headers: &HeaderMap,
    path_and_query: &str,
) -> Result<reqwest::RequestBuilder, ApiError> {
    let (forwarder, addr) = task_owner(state, task, node)?;
    Ok(forwarder.request(
        method,
        forwarder.url(&addr, path_and_query),
        headers.get(AUTHORIZATION),
    ))
}

/// A request about task `task` (a key look-up) sent as is to `node`, the task's owner, and
/// its answer streamed back (status, content type, body).
pub async fn task_elsewhere(
    state: &AppState,
    task: &str,
    node: u64,
    headers: &HeaderMap,
    path_and_query: &str,
) -> Result<Response, ApiError> {
    let upstream = task_request(
        state,
        task,
        node,
        reqwest::Method::GET,
        headers,
        path_and_query,
    )?
    .timeout(REQUEST_TIMEOUT)
    .send()
    .await
    .map_err(|e| unreachable_owner(task, node, &e))?;
    Ok(stream_back(upstream, state.shutdown.clone()))
}

/// A query about task `task` (a SQL pull query reading its state) sent to `node`, the
/// task's owner, as `POST path` with `body`, and its answer streamed back.
pub async fn task_post_elsewhere(
    state: &AppState,
    task: &str,
    node: u64,
    headers: &HeaderMap,
    path: &str,
    body: &serde_json::Value,
) -> Result<Response, ApiError> {
    let upstream = task_request(state, task, node, reqwest::Method::POST, headers, path)?
        .json(body)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| unreachable_owner(task, node, &e))?;
    Ok(stream_back(upstream, state.shutdown.clone()))
}

/// `GET path_and_query` (or, with `body`, `POST` of that JSON) about task `task` asked of
/// `node` (its owner or a standby) within `timeout`, with `tasks` named in [`TASKS`] when
/// given: the answer's status, the headers that go back to the client, and its body (read
/// up to [`MAX_PRODUCE_ANSWER_BYTES`]); `503 task_unavailable` when `node` cannot be reached.
#[allow(clippy::too_many_arguments)]
async fn ask_for_task(
    state: &AppState,
    task: &str,
    node: u64,
    headers: &HeaderMap,
    path_and_query: &str,
    body: Option<&serde_json::Value>,
    timeout: Duration,
    tasks: Option<&[i32]>,
) -> Result<(StatusCode, HeaderMap, Vec<u8>), ApiError> {
    let method = match body {
        Some(_) => reqwest::Method::POST,
        None => reqwest::Method::GET,
    };
    let mut request =
        task_request(state, task, node, method, headers, path_and_query)?.timeout(timeout);
    if let Some(b) = body {
        request = request.json(b);
    }
    if let Some(partitions) = tasks {
        let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
        request = request.header(TASKS, list.join(","));
    }
    let response = request
        .send()
        .await
        .map_err(|e| unreachable_owner(task, node, &e))?;
    let status = response.status();
    let kept = kept_headers(response.headers());
    let bytes = read_capped(response, MAX_PRODUCE_ANSWER_BYTES)
        .await
        .map_err(|e| match e {
            Capped::TooLarge => ApiError::internal(format!(
                "node {node} answered more than {MAX_PRODUCE_ANSWER_BYTES} bytes"
            )),
            Capped::Failed(e) => unreachable_owner(task, node, &e),
        })?;
    Ok((status, kept, bytes))
}

/// A key look-up (`body` `None`: `GET path_and_query`) or a pull query (`POST` of `body`)
/// that accepts a stale answer, about task `task`, asked of `node` (its owner or a standby)
/// within `timeout`: the node's answer whole (status, content type, lag headers), or — when
/// the node cannot be reached or answers `503` — an error, so that the caller may ask
/// another node.
pub async fn ask_task_stale(
    state: &AppState,
    task: &str,
    node: u64,
    headers: &HeaderMap,
    path_and_query: &str,
    body: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<Response, ApiError> {
    let (status, kept, bytes) = ask_for_task(
        state,
        task,
        node,
        headers,
        path_and_query,
        body,
        timeout,
        None,
    )
    .await?;
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return Err(remote_error(node, status, &bytes));
    }
    Ok((status, kept, bytes).into_response())
}

/// `GET path_and_query` asked of `node` for its own tasks `partitions` (named in [`TASKS`];
/// `task` names the first of them in errors), within `timeout`: the answer's body, the
/// owner's error as its own, or `503 task_unavailable` when it cannot be reached.
pub async fn ask_tasks(
    state: &AppState,
    task: &str,
    node: u64,
    partitions: &[i32],
    headers: &HeaderMap,
    path_and_query: &str,
    timeout: Duration,
) -> Result<Vec<u8>, ApiError> {
    let (status, _, bytes) = ask_for_task(
        state,
        task,
        node,
        headers,
        path_and_query,
        None,
        timeout,
        Some(partitions),
    )
    .await?;
    if !status.is_success() {
        return Err(remote_error(node, status, &bytes));
    }
    Ok(bytes)
}

/// The partitions named by a request's [`TASKS`] header, sorted and each once (a client
/// naming one task many times gets it scanned once): `None` without one, an error for one
/// this API did not write.
pub fn tasks_asked(headers: &HeaderMap) -> Result<Option<Vec<i32>>, ApiError> {
    let Some(v) = headers.get(TASKS) else {
        return Ok(None);
    };
    let bad = || ApiError::bad_request(format!("{TASKS} is not a list of partitions"));
    let text = v.to_str().map_err(|_| bad())?;
    let mut tasks = text
        .split(',')
        .map(|p| p.trim().parse::<i32>().ok().filter(|p| *p >= 0))
        .collect::<Option<Vec<i32>>>()
        .ok_or_else(bad)?;
    tasks.sort_unstable();
    tasks.dedup();
    Ok(Some(tasks))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use axum::response::IntoResponse;

    use super::*;

    fn asked(v: &str) -> Result<Option<Vec<i32>>, StatusCode> {
        let mut h = HeaderMap::new();
        h.insert(TASKS, HeaderValue::from_str(v).unwrap());
        tasks_asked(&h).map_err(|e| e.into_response().status())
    }

    #[test]
    fn the_tasks_a_scan_asks_for_are_each_taken_once() {
        assert_eq!(tasks_asked(&HeaderMap::new()).ok(), Some(None));
        assert_eq!(asked("3, 0,3,3,1"), Ok(Some(vec![0, 1, 3])));
        let many = vec!["7"; 5000].join(",");
        assert_eq!(asked(&many), Ok(Some(vec![7])));
        for bad in ["", "a", "-1", "1,,2", "99999999999"] {
            assert_eq!(asked(bad), Err(StatusCode::BAD_REQUEST), "{bad:?}");
        }
    }
}

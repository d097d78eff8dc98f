//! Processors over HTTP: deploy (`POST /v1/processors`, multipart with parts `wasm` and
//! `spec`), list, describe, redeploy (`PUT`), pause, resume, delete (`?keep_state=true`
//! keeps state and offsets), and interactive queries of task state: a key
//! (`GET /v1/processors/{name}/stores/{store}/keys/{key}`) or a prefix scan over every task
//! (`GET /v1/processors/{name}/stores/{store}/keys?prefix=&limit=&after=`, pages of at most
//! [`MAX_SCAN_LIMIT`] entries and [`MAX_SCAN_BYTES`], chained by an opaque `next`). Handlers
//! parse and answer; the work is the engine's ([`weir_engine::Engine`]), run on blocking
//! threads.
//!
//! On a cluster each node runs only the tasks the controller assigned it, and any node
//! answers for all of them (through [`super::forward`]; a request forwarded by another node
//! is answered from this node's tasks only, so it is never sent on again):
//!
//! - a key look-up is sent to the owner of the key's task (`murmur2(key) % partitions`, as
//!   [`weir_engine::Engine::query`] chooses it) and its answer returned as is; with
//!   `?allow_stale=true`, when the owner cannot answer, to the task's standbys in turn
//!   ([`stale_look_up`]), the answer saying what answered and how far behind
//!   ([`forward::LAG`], [`forward::ANSWERED_BY`], [`forward::ANSWERED_ON`]);
//! - a prefix scan asks each owner for a page of its own tasks (the partitions named in
//!   [`forward::TASKS`]) and merges the pages in (key, partition) order under the same
//!   `limit`, [`MAX_SCAN_BYTES`] and continuation as on one node ([`merge_page`]);
//! - a describe lists every task with its `node`, each task's status as its owner reports
//!   it (`unknown` when the owner does not answer, `unassigned` before placement), and every
//!   standby with its node's report (`standbys`); the processor's `status` and `lag` are
//!   those of all its tasks;
//! - the list sums each processor's `tasks_running`, `tasks_failed` and `lag` over the
//!   nodes that answer (a node that does not answer is left out of the sums).
//!
//! A task whose owner cannot be reached is `503 task_unavailable` naming the task and node.

use axum::Json;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::{FromRequest, Request, State};
use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::header::{CONTENT_LENGTH, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weir_broker::partitioner::partition_for_key;
use weir_engine::engine::{ProcessorDescription, ProcessorSummary, ScanEntry};
use weir_engine::task::ProcessorSpec;
use weir_engine::task_id::TaskId;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::forward;
use super::uploads::{UploadPermit, read_module_upload};

/// Longest wait for another node's answer about its tasks (describe, list, scan pages).
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

impl From<MultipartRejection> for ApiError {
    fn from(r: MultipartRejection) -> Self {
        ApiError::new(r.status(), "bad_request", r.body_text()).closing()
    }
}

impl From<MultipartError> for ApiError {
    fn from(e: MultipartError) -> Self {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_request"
        };
        ApiError::new(
            status,
            code,
            format!("cannot read the upload: {}", e.body_text()),
        )
        .closing()
    }
}

/// An upload over the limit by at most this much is read before the 413 is sent.
const DRAIN_MAX_BYTES: u64 = 64 << 20;

/// The largest upload the processors routes accept (a request extension set by the
/// router), checked against `Content-Length` before any of the body is read.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimit(pub usize);

/// The two parts of an upload (and its place under the upload cap, held until the
/// handler is done).
pub struct Upload {
    pub spec: ProcessorSpec,
    pub module: Bytes,
    _permit: UploadPermit,
}

/// Rejects an upload whose `Content-Length` is over the route's [`UploadLimit`] with a 413
/// before reading it (the functions and artifacts routes use it too).
pub async fn check_upload_size(req: Request) -> Result<Request, ApiError> {
    if let Some(UploadLimit(limit)) = req.extensions().get::<UploadLimit>().copied() {
        let length = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = length.filter(|n| *n > limit as u64) {
            // Read (and drop) a body that is not much larger, so the client sees the
            // 413 rather than a connection reset while it is still sending.
            if n <= (limit as u64).saturating_add(DRAIN_MAX_BYTES) {
                let mut body = req.into_body().into_data_stream();
                while let Some(Ok(_)) = body.next().await {}
            }
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("upload of {n} bytes is over the limit of {limit} bytes"),
            )
            .closing());
        }
    }
    Ok(req)
}

impl<S: Send + Sync> FromRequest<S> for Upload {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let upload = read_module_upload(req, state, "an upload").await?;
        let spec: ProcessorSpec = serde_json::from_slice(&upload.spec).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_spec",
                format!("invalid processor spec: {e}"),
            )
        })?;
        Ok(Upload {
            spec,
            module: upload.module,
            _permit: upload.permit,
        })
    }
}

/// Body of `GET /v1/processors`.
#[derive(Debug, Serialize)]
pub struct ProcessorList {
    pub processors: Vec<ProcessorSummary>,
}

/// `POST /v1/processors` → 201 with the processor.
pub async fn deploy(State(state): State<AppState>, upload: Upload) -> Result<Response, ApiError> {
    let engine = state.engine.clone();
    let d =
        tokio::task::spawn_blocking(move || engine.deploy(upload.spec, upload.module)).await??;
    let mut response = (StatusCode::CREATED, Json(&d)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/processors/{}", d.name)) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// `PUT /v1/processors/{name}` → the processor at its new version.
pub async fn redeploy(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    upload: Upload,
) -> Result<Json<ProcessorDescription>, ApiError> {
    let engine = state.engine.clone();
    let d = tokio::task::spawn_blocking(move || engine.redeploy(&name, upload.spec, upload.module))
        .await??;
    Ok(Json(d))
}

/// `GET /v1/processors`. On a cluster, each processor's task counts and lag are summed
/// over the nodes that answer, and its status is the worst any of them reports.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<ProcessorList>, ApiError> {
    let engine = state.engine.clone();
    let mut processors = tokio::task::spawn_blocking(move || engine.list()).await?;
    let others =
        forward::ask_other_nodes::<Value>(&state, "/v1/processors", &headers, ASK_TIMEOUT).await;
    for (node, answer) in others {
        let Ok(answer) = answer else {
            tracing::debug!(node, "a node did not answer the processor list");
            continue;
        };
        let Some(theirs) = answer["processors"].as_array() else {
            continue;
        };
        for t in theirs {
            let Some(p) = processors.iter_mut().find(|p| t["name"] == p.name.as_str()) else {
                continue;
            };
            let count = |v: &Value| v.as_u64().and_then(|n| usize::try_from(n).ok());
            p.tasks_running += count(&t["tasks_running"]).unwrap_or(0);
            p.tasks_failed += count(&t["tasks_failed"]).unwrap_or(0);
            p.lag += t["lag"].as_i64().unwrap_or(0);
            if let Some(status) = t["status"].as_str()
                && status_rank(status) > status_rank(&p.status)
            {
                p.status = status.to_string();
            }
        }
    }
    Ok(Json(ProcessorList { processors }))
}

/// How much a status says about a processor's trouble (the worst wins when statuses of
/// several nodes' tasks are combined), in the engine's order.
fn status_rank(status: &str) -> u8 {
    match status {
        "failed" => 7,
        "paused" => 6,
        "starting" => 5,
        "restoring" => 4,
        "stopped" => 3,
        "unknown" => 2,
        "unassigned" => 1,
        _ => 0,
    }
}

/// `GET /v1/processors/{name}`. On a cluster it adds `assignment` (where each task is
/// placed) and `node` (the node answering), and `tasks` lists every task with its `node`
/// and the status its node reports (see the module docs).
pub async fn describe(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine.clone();
    let n = name.clone();
    let d = tokio::task::spawn_blocking(move || engine.describe(&n)).await??;
    let mut body = serde_json::to_value(&d).map_err(|e| ApiError::internal(e.to_string()))?;
    let (Some(ec), Some(routing)) = (&state.engine_cluster, &state.routing) else {
        return Ok(Json(body));
    };
    let me = routing.node();
    let places = ec.assignment(&name);
    let mut local: Vec<Value> = body["tasks"].as_array().cloned().unwrap_or_default();
    for t in &mut local {
        t["node"] = json!(me);
    }
    let mut local_standbys: Vec<Value> = body["standbys"].as_array().cloned().unwrap_or_default();
    for t in &mut local_standbys {
        t["node"] = json!(me);
    }
    let (tasks, standbys) = if forward::may_ask_task_owners(&state, &headers) && !places.is_empty()
    {
        // Every node that owns a task or keeps a standby of one reports its own.
        let mut nodes: Vec<u64> = places
            .iter()
            .flat_map(|t| t.node.into_iter().chain(t.standbys.iter().copied()))
            .filter(|n| *n != me)
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        let asks = nodes.iter().map(|n| (*n, uri.path().to_string())).collect();
        let mut reports: BTreeMap<u64, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
        for (node, _, answer) in
            forward::ask_nodes::<Value>(&state, asks, &headers, ASK_TIMEOUT).await
        {
            match answer {
                Ok(d) => {
                    let of = |k: &str| d[k].as_array().cloned().unwrap_or_default();
                    reports.insert(node, (of("tasks"), of("standbys")));
                }
                Err(e) => tracing::debug!(node, error = %e, "a node did not describe its tasks"),
            }
        }
        reports.insert(me, (local, local_standbys));
        let reported = |node: u64, partition: i32, standby: bool| -> Value {
            reports
                .get(&node)
                .and_then(|(ts, ss)| {
                    let list = if standby { ss } else { ts };
                    list.iter().find(|t| t["partition"] == partition)
                })
                .map(|t| {
                    let mut t = t.clone();
                    t["node"] = json!(node);
                    t
                })
                .unwrap_or_else(
                    || json!({"partition": partition, "state": "unknown", "node": node}),
                )
        };
        let tasks: Vec<Value> = places
            .iter()
            .map(|place| match place.node {
                None => json!({"partition": place.partition, "state": "unassigned",
                               "node": null}),
                Some(node) => reported(node, place.partition, false),
            })
            .collect();
        let standbys: Vec<Value> = places
            .iter()
            .flat_map(|place| {
                place
                    .standbys
                    .iter()
                    .map(|n| reported(*n, place.partition, true))
                    .collect::<Vec<_>>()
            })
            .collect();
        let lag: i64 = tasks.iter().filter_map(|t| t["lag"].as_i64()).sum();
        let worst = tasks
            .iter()
            .filter_map(|t| t["state"].as_str())
            .max_by_key(|s| status_rank(s))
            .filter(|s| status_rank(s) > status_rank(body["status"].as_str().unwrap_or("")));
        if let Some(worst) = worst {
            body["status"] = json!(worst);
        }
        body["lag"] = json!(lag);
        (tasks, standbys)
    } else {
        (local, local_standbys)
    };
    body["standbys"] = Value::Array(standbys);
    body["tasks"] = Value::Array(tasks);
    body["assignment"] = json!(places);
    body["node"] = json!(me);
    Ok(Json(body))
}

/// `POST /v1/processors/{name}/pause`.
pub async fn pause(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ProcessorDescription>, ApiError> {
    let engine = state.engine.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || engine.pause(&name)).await??,
    ))
}

/// `POST /v1/processors/{name}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ProcessorDescription>, ApiError> {
    let engine = state.engine.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || engine.resume(&name)).await??,
    ))
}

#[derive(Debug, Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    pub keep_state: bool,
}

/// `DELETE /v1/processors/{name}[?keep_state=true]` → 204.
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || engine.delete(&name, q.keep_state)).await??;
    Ok(StatusCode::NO_CONTENT)
}

/// Answer of an interactive query: `value` when the value is UTF-8, else `value_b64`.
#[derive(Debug, Serialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_b64: Option<String>,
}

/// The tasks of `name` other nodes own, for a request this node may send on (see
/// [`forward::may_ask_task_owners`]): each partition's owner (`None` until placed), or
/// `None` when every task is this node's or the cluster has no assignment for `name` (then
/// the request is answered here).
fn task_owners(state: &AppState, headers: &HeaderMap, name: &str) -> Option<Vec<Option<u64>>> {
    let (Some(ec), Some(routing)) = (&state.engine_cluster, &state.routing) else {
        return None;
    };
    if !forward::may_ask_task_owners(state, headers) {
        return None;
    }
    let owners: Vec<Option<u64>> = ec.assignment(name).iter().map(|t| t.node).collect();
    let me = routing.node();
    (!owners.is_empty() && owners.iter().any(|o| *o != Some(me))).then_some(owners)
}

/// Like [`task_owners`], with each task's standbys: `None` when the request is answered
/// here.
fn task_places(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
) -> Option<Vec<crate::engine_cluster::TaskPlace>> {
    let (Some(ec), Some(routing)) = (&state.engine_cluster, &state.routing) else {
        return None;
    };
    if !forward::may_ask_task_owners(state, headers) {
        return None;
    }
    let places = ec.assignment(name);
    let me = routing.node();
    let elsewhere = places
        .iter()
        .any(|t| t.node != Some(me) || !t.standbys.is_empty());
    (!places.is_empty() && elsewhere).then_some(places)
}

fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map_or(uri.path(), |p| p.as_str())
}

/// Query of a key look-up.
#[derive(Debug, Default, Deserialize)]
pub struct KeyQuery {
    /// Accept an answer from a store that may be behind the task (a standby, or the task
    /// while it restores from a checkpoint) when the task itself cannot answer; the answer
    /// says how far behind it is ([`forward::LAG`]).
    #[serde(default)]
    pub allow_stale: bool,
}

/// `GET /v1/processors/{name}/stores/{store}/keys/{key}[?allow_stale=true]`. On a cluster,
/// asked of a node that does not run the key's task, it is answered by the task's owner;
/// with `allow_stale`, by a standby of the task when the owner cannot answer (see
/// [`stale_look_up`]).
pub async fn get_key(
    State(state): State<AppState>,
    ApiPath((name, store, key)): ApiPath<(String, String, String)>,
    ApiQuery(query): ApiQuery<KeyQuery>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(places) = task_places(&state, &headers, &name) {
        let partition = partition_for_key(key.as_bytes(), places.len() as i32);
        let me = state.routing.as_ref().map(|r| r.node());
        let place = usize::try_from(partition)
            .ok()
            .and_then(|p| places.get(p).cloned());
        let owner = place.as_ref().and_then(|p| p.node);
        let task = TaskId::new(&name, partition).to_string();
        if query.allow_stale
            && let (Some(place), Some(me)) = (place, me)
        {
            return stale_look_up(
                &state,
                (&name, &store, &key),
                &task,
                &place,
                me,
                &headers,
                &uri,
            )
            .await;
        }
        match owner {
            None => {
                return Err(forward::task_unavailable(
                    &task,
                    None,
                    "the cluster has not placed it yet",
                ));
            }
            Some(node) if Some(node) != me => {
                return forward::task_elsewhere(
                    &state,
                    &task,
                    node,
                    &headers,
                    path_and_query(&uri),
                )
                .await;
            }
            Some(_) => {}
        }
    }
    look_up_here(&state, name, store, key, query.allow_stale).await
}

/// A look-up that accepts a stale answer, on a cluster: the task's owner is asked first
/// (here, or over HTTP within [`forward::STALE_ASK_TIMEOUT`]); when it cannot answer (unreachable,
/// or `503`: restoring from empty, not started), this node if it keeps a standby of the
/// task, then the task's other standbys in the order the placement lists them. The first
/// answer is returned; when none answers, the last `503`.
#[allow(clippy::too_many_arguments)]
async fn stale_look_up(
    state: &AppState,
    (name, store, key): (&str, &str, &str),
    task: &str,
    place: &crate::engine_cluster::TaskPlace,
    me: u64,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Response, ApiError> {
    let mut last = forward::task_unavailable(task, place.node, "no owner or standby answered");
    for node in place.stale_ask_order(me) {
        let answer = if node == me {
            look_up_here(state, name.into(), store.into(), key.into(), true).await
        } else {
            forward::ask_task_stale(
                state,
                task,
                node,
                headers,
                path_and_query(uri),
                None,
                forward::STALE_ASK_TIMEOUT,
            )
            .await
        };
        match answer {
            Ok(r) => return Ok(r),
            Err(e) if e.status() == StatusCode::SERVICE_UNAVAILABLE => {
                tracing::debug!(task, node, "a stale look-up was not answered: {e:?}");
                last = e;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// A key look-up answered by this node: from the running task, or with `allow_stale` from
/// whatever store this node has of the task (with the lag headers).
async fn look_up_here(
    state: &AppState,
    name: String,
    store: String,
    key: String,
    allow_stale: bool,
) -> Result<Response, ApiError> {
    let engine = state.engine.clone();
    let k = key.clone();
    let (value, stale) = if allow_stale {
        let a =
            tokio::task::spawn_blocking(move || engine.query_stale(&name, &store, k.as_bytes()))
                .await??;
        (a.value, Some((a.lag, a.by.as_str())))
    } else {
        let v = tokio::task::spawn_blocking(move || engine.query(&name, &store, k.as_bytes()))
            .await??;
        (v, None)
    };
    let mut extra = HeaderMap::new();
    if let Some((lag, by)) = stale {
        forward::stale_headers(&mut extra, lag, by, state);
    }
    let Some(value) = value else {
        let e = ApiError::not_found("key_not_found", format!("key '{key}' not found"));
        return Ok((extra, e).into_response());
    };
    let body = match String::from_utf8(value.to_vec()) {
        Ok(s) => KeyValue {
            key,
            value: Some(s),
            value_b64: None,
        },
        Err(_) => KeyValue {
            key,
            value: None,
            value_b64: Some(base64(&value)),
        },
    };
    Ok((extra, Json(body)).into_response())
}

/// Entries per scan page when `limit` is not given.
pub const DEFAULT_SCAN_LIMIT: usize = 100;
/// Largest accepted `limit` of a scan page.
pub const MAX_SCAN_LIMIT: usize = 1_000;
/// Most bytes of keys and values in one scan page (at least one entry is always returned).
pub const MAX_SCAN_BYTES: usize = 4 * 1024 * 1024;
/// Longest accepted `prefix` (and key in `after`).
pub const MAX_SCAN_KEY_BYTES: usize = 4 * 1024;

/// Query of a prefix scan.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanQuery {
    /// Keys starting with this text (all keys when absent).
    #[serde(default)]
    pub prefix: String,
    /// Entries per page (default 100, 1 to 1,000).
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    pub after: Option<String>,
}

/// One entry of a scan page: `key`/`value` when UTF-8, else `key_b64`/`value_b64`; the
/// task (partition) whose store holds it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ScanEntryJson {
    pub partition: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_b64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_b64: Option<String>,
}

/// A page of a prefix scan.
#[derive(Debug, Serialize, Deserialize)]
pub struct ScanPageJson {
    pub entries: Vec<ScanEntryJson>,
    /// Pass as `after` for the next page; `null` when this page is the last.
    pub next: Option<String>,
}

/// Text as text, anything else as base64: `(text, base64)`.
pub fn text_or_b64(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (None, Some(base64(bytes))),
    }
}

/// A scan continuation: `<partition>.<key as lowercase hex>`.
fn encode_after(key: &[u8], partition: i32) -> String {
    use std::fmt::Write as _;
    let mut s = format!("{partition}.");
    for b in key {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn decode_after(token: &str) -> Option<(Vec<u8>, i32)> {
    let (partition, hex) = token.split_once('.')?;
    let partition: i32 = partition.parse().ok().filter(|p| *p >= 0)?;
    if hex.len() % 2 != 0 || hex.len() / 2 > MAX_SCAN_KEY_BYTES {
        return None;
    }
    let key = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((key, partition))
}

/// `GET /v1/processors/{name}/stores/{store}/keys?prefix=&limit=&after=` → a page of the
/// store's entries whose key starts with `prefix`, over every task, in key order. On a
/// cluster the tasks' owners each answer for their own and the pages are merged; a request
/// naming partitions in [`forward::TASKS`] is answered from those tasks of this node only.
pub async fn scan(
    State(state): State<AppState>,
    ApiPath((name, store)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ScanQuery>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<ScanPageJson>, ApiError> {
    let invalid = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", m);
    let limit = q.limit.unwrap_or(DEFAULT_SCAN_LIMIT);
    if !(1..=MAX_SCAN_LIMIT).contains(&limit) {
        return Err(invalid(format!(
            "limit must be 1 to {MAX_SCAN_LIMIT} (got {limit})"
        )));
    }
    if q.prefix.len() > MAX_SCAN_KEY_BYTES {
        return Err(invalid(format!(
            "prefix is longer than {MAX_SCAN_KEY_BYTES} bytes"
        )));
    }
    let after = match q.after.as_deref() {
        None | Some("") => None,
        Some(t) => Some(
            decode_after(t)
                .ok_or_else(|| invalid("after is not a continuation this API gave".into()))?,
        ),
    };
    let asked = forward::tasks_asked(&headers)?;
    let owners = match asked {
        Some(_) => None,
        None => task_owners(&state, &headers, &name),
    };
    let (local, remote): (Vec<i32>, BTreeMap<u64, Vec<i32>>) = match (asked, owners) {
        // Asked by the node merging a scan: these tasks of this node only.
        (Some(partitions), _) => (partitions, BTreeMap::new()),
        (None, Some(owners)) => {
            let me = state.routing.as_ref().map(|r| r.node());
            let mut local = Vec::new();
            let mut remote: BTreeMap<u64, Vec<i32>> = BTreeMap::new();
            for (p, owner) in owners.iter().enumerate() {
                let p = p as i32;
                match owner {
                    None => {
                        return Err(forward::task_unavailable(
                            &TaskId::new(&name, p).to_string(),
                            None,
                            "the cluster has not placed it yet",
                        ));
                    }
                    Some(n) if Some(*n) == me => local.push(p),
                    Some(n) => remote.entry(*n).or_default().push(p),
                }
            }
            (local, remote)
        }
        // Every task here (a single node, or all of them on this node).
        (None, None) => {
            let engine = state.engine.clone();
            let page = tokio::task::spawn_blocking(move || {
                engine.scan(
                    &name,
                    &store,
                    q.prefix.as_bytes(),
                    after.as_ref().map(|(k, p)| (k.as_slice(), *p)),
                    limit,
                    MAX_SCAN_BYTES,
                )
            })
            .await??;
            let next = page.next.as_ref().map(|(k, p)| encode_after(k, *p));
            let entries = page.entries.into_iter().map(entry_json).collect();
            return Ok(Json(ScanPageJson { entries, next }));
        }
    };
    let path = path_and_query(&uri);
    let asks = remote.iter().map(|(node, partitions)| {
        let task = TaskId::new(&name, partitions[0]).to_string();
        let headers = &headers;
        let state = &state;
        async move {
            let body =
                forward::ask_tasks(state, &task, *node, partitions, headers, path, ASK_TIMEOUT)
                    .await?;
            let page: ScanPageJson = serde_json::from_slice(&body).map_err(|e| {
                ApiError::internal(format!("node {node} answered a scan unreadably: {e}"))
            })?;
            let more = page.next.is_some();
            let found = page
                .entries
                .into_iter()
                .map(found_of_json)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiError::internal(format!("node {node}: {e}")))?;
            Ok::<_, ApiError>((found, more))
        }
    });
    let engine = state.engine.clone();
    let prefix = q.prefix.clone();
    let (name_here, store_here) = (name.clone(), store.clone());
    let local_work = async move {
        if local.is_empty() {
            return Ok((Vec::new(), false));
        }
        let found = tokio::task::spawn_blocking(move || {
            engine.scan_tasks(
                &name_here,
                &store_here,
                &local,
                prefix.as_bytes(),
                after.as_ref().map(|(k, p)| (k.as_slice(), *p)),
                limit,
            )
        })
        .await??;
        // Every task's first `limit + 1` entries: all a merged page can take from them, and
        // whether there is more.
        Ok::<_, ApiError>((found.into_iter().map(found_of_entry).collect(), false))
    };
    let (local_page, remote_pages) = tokio::join!(local_work, futures_util::future::join_all(asks));
    let mut sources = vec![local_page?];
    for page in remote_pages {
        sources.push(page?);
    }
    let (entries, next) = merge_page(sources, limit, MAX_SCAN_BYTES);
    Ok(Json(ScanPageJson {
        entries: entries.into_iter().map(|f| f.entry).collect(),
        next: next.map(|(k, p)| encode_after(&k, p)),
    }))
}

fn entry_json(e: ScanEntry) -> ScanEntryJson {
    let (key, key_b64) = text_or_b64(&e.key);
    let (value, value_b64) = text_or_b64(&e.value);
    ScanEntryJson {
        partition: e.partition,
        key,
        key_b64,
        value,
        value_b64,
    }
}

/// A scan entry on its way into a merged page: its key's bytes and partition (its place),
/// its size (key and value bytes) and its answer.
#[derive(Debug)]
struct Found {
    key: Vec<u8>,
    partition: i32,
    size: usize,
    entry: ScanEntryJson,
}

fn found_of_entry(e: ScanEntry) -> Found {
    Found {
        key: e.key.to_vec(),
        partition: e.partition,
        size: e.key.len() + e.value.len(),
        entry: entry_json(e),
    }
}

/// An entry of another node's page, its key's bytes decoded.
fn found_of_json(entry: ScanEntryJson) -> Result<Found, String> {
    use base64::Engine as _;
    let b64 = |t: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(t)
            .map_err(|e| format!("a scan entry's base64 is invalid: {e}"))
    };
    let key = match (&entry.key, &entry.key_b64) {
        (Some(k), _) => k.as_bytes().to_vec(),
        (None, Some(k)) => b64(k)?,
        (None, None) => return Err("a scan entry has no key".into()),
    };
    let value_len = match (&entry.value, &entry.value_b64) {
        (Some(v), _) => v.len(),
        (None, Some(v)) => b64(v)?.len(),
        (None, None) => 0,
    };
    Ok(Found {
        size: key.len() + value_len,
        key,
        partition: entry.partition,
        entry,
    })
}

/// One page merged from the pages of several sources (this node's tasks, other nodes'),
/// each in (key, partition) order and each with whether it has more after its last entry:
/// the first `limit` entries in (key, partition) order, no more than `max_bytes` of keys
/// and values (at least one), and where the next page starts when there may be more. A
/// source with more is complete only up to its last entry, so nothing past the smallest
/// such last entry is taken (the next page asks every source again from there).
fn merge_page(
    sources: Vec<(Vec<Found>, bool)>,
    limit: usize,
    max_bytes: usize,
) -> (Vec<Found>, Option<(Vec<u8>, i32)>) {
    let cutoff = sources
        .iter()
        .filter(|(_, more)| *more)
        .filter_map(|(found, _)| found.last().map(|f| (f.key.clone(), f.partition)))
        .min();
    let mut all: Vec<Found> = sources
        .into_iter()
        .flat_map(|(found, _)| found)
        .filter(|f| {
            cutoff
                .as_ref()
                .is_none_or(|(k, p)| (&f.key, f.partition) <= (k, *p))
        })
        .collect();
    all.sort_by(|a, b| (&a.key, a.partition).cmp(&(&b.key, b.partition)));
    let total = all.len();
    let mut entries = Vec::new();
    let mut bytes = 0usize;
    for f in all {
        if entries.len() == limit.max(1) || (!entries.is_empty() && bytes + f.size > max_bytes) {
            break;
        }
        bytes += f.size;
        entries.push(f);
    }
    let next = if entries.len() < total || cutoff.is_some() {
        entries.last().map(|f| (f.key.clone(), f.partition))
    } else {
        None
    };
    (entries, next)
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff, 0xfe, 0x00, 0x01]), "//4AAQ==");
    }

    #[test]
    fn scan_continuations_round_trip_and_refuse_garbage() {
        for (key, p) in [(&b""[..], 0), (&b"the"[..], 2), (&[0u8, 0xff, 0x10][..], 7)] {
            let t = encode_after(key, p);
            assert_eq!(decode_after(&t), Some((key.to_vec(), p)), "{t}");
        }
        for bad in ["", "x", "1", "-1.00", "1.0", "1.zz", "a.00", "1.\u{e9}0"] {
            assert_eq!(decode_after(bad), None, "{bad}");
        }
        let long = format!("0.{}", "00".repeat(MAX_SCAN_KEY_BYTES + 1));
        assert_eq!(decode_after(&long), None);
    }

    fn found(key: &str, partition: i32, value: &str) -> Found {
        found_of_json(ScanEntryJson {
            partition,
            key: Some(key.into()),
            key_b64: None,
            value: Some(value.into()),
            value_b64: None,
        })
        .unwrap()
    }

    fn keys(page: &[Found]) -> Vec<(String, i32)> {
        page.iter()
            .map(|f| (String::from_utf8_lossy(&f.key).into_owned(), f.partition))
            .collect()
    }

    /// Every entry of `sources` (each source's full, sorted contents) read page by page
    /// through `merge_page`, each source giving at most `per_page` entries after the
    /// continuation (and saying whether it has more), as the owners of tasks do.
    fn read_all(sources: &[Vec<(&str, i32)>], limit: usize, per_page: usize) -> Vec<(String, i32)> {
        let mut out = Vec::new();
        let mut after: Option<(Vec<u8>, i32)> = None;
        for _ in 0..100 {
            let pages = sources
                .iter()
                .map(|src| {
                    let rest: Vec<Found> = src
                        .iter()
                        .filter(|(k, p)| {
                            after
                                .as_ref()
                                .is_none_or(|(ak, ap)| (k.as_bytes(), *p) > (ak.as_slice(), *ap))
                        })
                        .map(|(k, p)| found(k, *p, "v"))
                        .collect();
                    let more = rest.len() > per_page;
                    (rest.into_iter().take(per_page).collect(), more)
                })
                .collect();
            let (page, next) = merge_page(pages, limit, MAX_SCAN_BYTES);
            assert!(page.len() <= limit);
            out.extend(keys(&page));
            match next {
                Some(n) => after = Some(n),
                None => return out,
            }
        }
        panic!("the scan never ended: {out:?}");
    }

    #[test]
    fn merged_scan_pages_give_every_entry_once_in_key_then_partition_order() {
        let a = vec![("apple", 0), ("cherry", 0), ("fig", 0), ("kiwi", 0)];
        let b = vec![("apple", 3), ("banana", 3), ("date", 3), ("fig", 3)];
        let c = vec![
            ("elder", 5),
            ("grape", 5),
            ("lime", 5),
            ("melon", 5),
            ("nut", 5),
        ];
        let mut want: Vec<(String, i32)> = a
            .iter()
            .chain(&b)
            .chain(&c)
            .map(|(k, p)| (k.to_string(), *p))
            .collect();
        want.sort();
        for limit in 1..=14 {
            // Sources giving whole pages, and sources cut short (as by their byte cap).
            for per_page in [limit, 1, 2] {
                assert_eq!(
                    read_all(&[a.clone(), b.clone(), c.clone()], limit, per_page),
                    want,
                    "limit {limit}, per page {per_page}"
                );
            }
        }
        assert_eq!(
            read_all(&[vec![], vec![]], 3, 3),
            Vec::<(String, i32)>::new()
        );
    }

    #[test]
    fn a_merged_page_keeps_the_byte_cap_and_never_passes_a_source_cut_short() {
        let big = "x".repeat(100);
        let src = |entries: &[(&str, i32)]| -> Vec<Found> {
            entries.iter().map(|(k, p)| found(k, *p, &big)).collect()
        };
        // 3 entries of ~101 bytes under a 250-byte cap: two taken, more to come.
        let (page, next) = merge_page(vec![(src(&[("a", 0), ("b", 0), ("c", 0)]), false)], 10, 250);
        assert_eq!(keys(&page), [("a".into(), 0), ("b".into(), 0)]);
        assert_eq!(next, Some((b"b".to_vec(), 0)));
        // At least one entry even when it alone is over the cap.
        let (page, _) = merge_page(vec![(src(&[("a", 0)]), false)], 10, 5);
        assert_eq!(page.len(), 1);
        // A source cut short after "b": nothing after it is taken from the others yet.
        let (page, next) = merge_page(
            vec![
                (src(&[("a", 1), ("b", 1)]), true),
                (src(&[("a", 2), ("c", 2)]), false),
            ],
            10,
            MAX_SCAN_BYTES,
        );
        assert_eq!(
            keys(&page),
            [("a".into(), 1), ("a".into(), 2), ("b".into(), 1)]
        );
        assert_eq!(next, Some((b"b".to_vec(), 1)));
        // Non-UTF-8 keys from another node come back as bytes and sort as bytes.
        let raw = found_of_json(ScanEntryJson {
            partition: 0,
            key: None,
            key_b64: Some(base64(&[0xff, 0x00])),
            value: None,
            value_b64: Some(base64(&[1, 2, 3])),
        })
        .unwrap();
        assert_eq!((raw.key.clone(), raw.size), (vec![0xff, 0x00], 5));
        let (page, _) = merge_page(
            vec![(vec![raw], false), (src(&[("z", 1)]), false)],
            10,
            1000,
        );
        assert_eq!(page[1].key, vec![0xff, 0x00]);
    }
}

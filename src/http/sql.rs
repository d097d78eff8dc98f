//! Streaming SQL over HTTP: `POST /v1/sql` runs statements and answers with one JSON result
//! per statement; `POST /v1/query` runs one SELECT and streams NDJSON — a header line
//! (`{"header":{"query_id":..,"columns":[..]}}`), then one `{"row":[..]}` line per row. A pull
//! query's stream ends after its rows; a push query's (`EMIT CHANGES`) runs until the client
//! disconnects (or its `LIMIT` is reached), and its transient processor is removed then.
//!
//! On a cluster a pull query that reads a task's state store (a key look-up of an aggregate
//! table), alone in a `POST /v1/query` or `POST /v1/sql`, is sent to the node that runs the
//! key's task (once: a forwarded request is
//! answered where it arrives), and its answer streamed back; `503 task_unavailable` when
//! that node cannot be reached or the task is not placed. Pull queries answered from a
//! table's topic read the cluster's log from any node.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use weir_engine::sql::{PushQuery, QueryStart, ScriptError, SqlError, SqlService};

use super::AppState;
use super::error::ApiError;
use super::extract::ApiJson;
use super::forward;

/// Body of `POST /v1/sql` and `POST /v1/query`.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    pub sql: String,
    /// Statement properties (`auto.offset.reset`, `weir.on_error`, `commit.interval.ms`);
    /// values may be strings, numbers or booleans.
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
}

impl SqlRequest {
    fn properties(&self) -> Result<BTreeMap<String, String>, ApiError> {
        self.properties
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "property '{k}' must be a string, number or boolean"
                        )));
                    }
                };
                Ok((k.clone(), s))
            })
            .collect()
    }
}

/// A SQL error as an API error, with its position.
pub fn sql_error(e: SqlError) -> ApiError {
    let status = super::error::status_of(e.kind());
    let err = ApiError::new(status, e.code, e.message);
    match e.position {
        Some(p) => err.at(p.line, p.column),
        None => err,
    }
}

fn service(state: &AppState) -> Result<SqlService, ApiError> {
    state.sql.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "SQL is not enabled on this node",
        )
    })
}

/// `POST /v1/sql`: runs statements; `{"results":[...]}`.
pub async fn execute(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SqlRequest>,
) -> Result<Response, ApiError> {
    let svc = service(&state)?;
    let props = req.properties()?;
    if let Some(routed) = pull_elsewhere(&state, &svc, &headers, &req, &props, "/v1/sql").await? {
        return Ok(routed);
    }
    let results = tokio::task::spawn_blocking(move || svc.execute_script(&req.sql, &props))
        .await?
        .map_err(|e| script_error(*e))?;
    Ok(Json(json!({ "results": results })).into_response())
}

/// A failed script: the error, and (when one statement failed) which one, the results of
/// those that ran before it and the texts of those not run.
fn script_error(e: ScriptError) -> ApiError {
    let err = sql_error(e.error);
    match e.failed {
        Some(i) => err
            .with("statement_index", json!(i))
            .with("executed", json!(e.executed))
            .with("not_executed", json!(e.not_executed)),
        None => err,
    }
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

fn ndjson(body: Body) -> Response {
    (
        [
            (CONTENT_TYPE, "application/x-ndjson"),
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `POST /v1/query`: one SELECT, streamed as NDJSON.
pub async fn query(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SqlRequest>,
) -> Result<Response, ApiError> {
    let svc = service(&state)?;
    let props = req.properties()?;
    if let Some(routed) = pull_elsewhere(&state, &svc, &headers, &req, &props, "/v1/query").await? {
        return Ok(routed);
    }
    let started = {
        let svc = svc.clone();
        tokio::task::spawn_blocking(move || svc.start_query(&req.sql, &props))
            .await?
            .map_err(sql_error)?
    };
    match started {
        QueryStart::Pull(answer) => {
            let mut out = Vec::new();
            out.extend_from_slice(&line(&json!({"header": {"columns": answer.columns}})));
            for r in answer.rows {
                out.extend_from_slice(&line(&json!({ "row": r })));
            }
            let mut response = ndjson(Body::from(out));
            if let Some(s) = answer.stale {
                forward::stale_headers(response.headers_mut(), s.lag, s.answered_by, &state);
            }
            Ok(response)
        }
        QueryStart::Push(push) => {
            let (tx, rx) = mpsc::channel::<Bytes>(16);
            let header = line(&json!({"header": {"query_id": push.id, "columns": push.columns}}));
            let _ = tx.send(header).await;
            tokio::spawn(run_push(state, svc, push, tx));
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
            });
            Ok(ndjson(Body::from_stream(stream)))
        }
    }
}

/// On a cluster, a pull query (alone in its request) reading the state of a task another
/// node runs: sent there, as `POST path`. With standby reads
/// (`ksql.query.pull.enable.standby.reads`), when that owner cannot answer, the task's
/// standbys are asked in turn (this node first if it keeps one), each within
/// [`forward::STALE_ASK_TIMEOUT`]; the answer says how stale it is in its headers.
async fn pull_elsewhere(
    state: &AppState,
    svc: &SqlService,
    headers: &HeaderMap,
    req: &SqlRequest,
    props: &BTreeMap<String, String>,
    path: &str,
) -> Result<Option<Response>, ApiError> {
    let (Some(ec), Some(routing)) = (&state.engine_cluster, &state.routing) else {
        return Ok(None);
    };
    if !forward::may_ask_task_owners(state, headers) {
        return Ok(None);
    }
    let (svc, sql) = (svc.clone(), req.sql.clone());
    let Some((processor, partition)) =
        tokio::task::spawn_blocking(move || svc.pull_task(&sql)).await?
    else {
        return Ok(None);
    };
    let place = usize::try_from(partition)
        .ok()
        .and_then(|p| ec.assignment(&processor).get(p).cloned());
    let owner = place.as_ref().map(|t| t.node);
    let task = weir_engine::task_id::TaskId::new(&processor, partition).to_string();
    let standby_reads = weir_engine::sql::validate::standby_reads(props).map_err(sql_error)?;
    if let Some(place) = place.filter(|_| standby_reads) {
        let me = routing.node();
        let body = serde_json::to_value(req).unwrap_or(Value::Null);
        let mut last = forward::task_unavailable(&task, place.node, "no owner or standby answered");
        for node in place.stale_ask_order(me) {
            if node == me {
                // Answered here: from the task, or from this node's standby of it.
                return Ok(None);
            }
            match forward::ask_task_stale(
                state,
                &task,
                node,
                headers,
                path,
                Some(&body),
                forward::STALE_ASK_TIMEOUT,
            )
            .await
            {
                Ok(r) => return Ok(Some(r)),
                Err(e) if e.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    tracing::debug!(task, node, "a stale pull query was not answered: {e:?}");
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        return Err(last);
    }
    match owner {
        Some(Some(node)) if node != routing.node() => {
            let body = serde_json::to_value(req).unwrap_or(Value::Null);
            forward::task_post_elsewhere(state, &task, node, headers, path, &body)
                .await
                .map(Some)
        }
        Some(None) => Err(forward::task_unavailable(
            &task,
            None,
            "the cluster has not placed it yet",
        )),
        _ => Ok(None),
    }
}

/// Follows a push query's topic (every partition) and sends its rows until the client goes,
/// the limit is reached or the node shuts down; then removes the query.
async fn run_push(state: AppState, svc: SqlService, push: PushQuery, tx: mpsc::Sender<Bytes>) {
    let mut offsets = vec![0i64; push.partitions.max(0) as usize];
    let mut sent: u64 = 0;
    let mut shutdown = state.shutdown.clone();
    'outer: loop {
        let mut any = false;
        for (p, offset) in offsets.iter_mut().enumerate() {
            let broker = state.broker.clone();
            let topic = push.topic.clone();
            let at = *offset;
            let read = tokio::task::spawn_blocking(move || {
                // Committed only: a query's sink is written by its exactly-once tasks in
                // transactions, and a client's aborted records are no rows.
                broker.read_committed(&topic, p as i32, at, 1000, 1 << 20)
            })
            .await;
            let Ok(Ok(read)) = read else {
                break 'outer;
            };
            *offset = read.next_offset;
            let mut chunk = Vec::new();
            for r in read.records {
                let Some(v) = r.value else { continue };
                let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(&v) else {
                    continue;
                };
                let row: Vec<Value> = push
                    .columns
                    .iter()
                    .map(|c| obj.get(c).cloned().unwrap_or(Value::Null))
                    .collect();
                chunk.extend_from_slice(&line(&json!({ "row": row })));
                any = true;
                sent += 1;
                if push.limit.is_some_and(|l| sent >= l) {
                    let _ = tx.send(Bytes::from(chunk)).await;
                    break 'outer;
                }
            }
            if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                break 'outer;
            }
        }
        if !any {
            tokio::select! {
                _ = tx.closed() => break,
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
    drop(tx);
    let id = push.id.clone();
    let _ = tokio::task::spawn_blocking(move || svc.stop_push(&id)).await;
    tracing::info!(query = %push.id, rows = sent, "push query ended");
}

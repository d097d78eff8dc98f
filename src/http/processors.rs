//! Processors over HTTP: deploy (`POST /v1/processors`, multipart with parts `wasm` and
//! `spec`), list, describe, redeploy (`PUT`), pause, resume, delete (`?keep_state=true`
//! keeps state and offsets), and interactive queries of task state: a key
//! (`GET /v1/processors/{name}/stores/{store}/keys/{key}`) or a prefix scan over every task
//! (`GET /v1/processors/{name}/stores/{store}/keys?prefix=&limit=&after=`, pages of at most
//! [`MAX_SCAN_LIMIT`] entries and [`MAX_SCAN_BYTES`], chained by an opaque `next`). Handlers
//! parse and answer; the work is the engine's ([`weir_engine::Engine`]), run on blocking
//! threads.

use axum::Json;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{CONTENT_LENGTH, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use weir_engine::engine::{ProcessorDescription, ProcessorSummary};
use weir_engine::task::ProcessorSpec;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::uploads::{UploadPermit, read_module_upload};

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

/// `GET /v1/processors`.
pub async fn list(State(state): State<AppState>) -> Result<Json<ProcessorList>, ApiError> {
    let engine = state.engine.clone();
    let processors = tokio::task::spawn_blocking(move || engine.list()).await?;
    Ok(Json(ProcessorList { processors }))
}

/// `GET /v1/processors/{name}`.
pub async fn describe(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let engine = state.engine.clone();
    let n = name.clone();
    let d = tokio::task::spawn_blocking(move || engine.describe(&n)).await??;
    let mut body = serde_json::to_value(&d).map_err(|e| ApiError::internal(e.to_string()))?;
    // On a cluster: where each task runs (`tasks` are the ones running on this node).
    if let Some(ec) = &state.engine_cluster
        && let Some(obj) = body.as_object_mut()
    {
        obj.insert("assignment".into(), serde_json::json!(ec.assignment(&name)));
    }
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

/// `GET /v1/processors/{name}/stores/{store}/keys/{key}`.
pub async fn get_key(
    State(state): State<AppState>,
    ApiPath((name, store, key)): ApiPath<(String, String, String)>,
) -> Result<Json<KeyValue>, ApiError> {
    let engine = state.engine.clone();
    let k = key.clone();
    let value = tokio::task::spawn_blocking(move || engine.query(&name, &store, k.as_bytes()))
        .await??
        .ok_or_else(|| ApiError::not_found("key_not_found", format!("key '{key}' not found")))?;
    Ok(Json(match String::from_utf8(value.to_vec()) {
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
    }))
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
#[derive(Debug, Serialize)]
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
#[derive(Debug, Serialize)]
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
/// store's entries whose key starts with `prefix`, over every task, in key order.
pub async fn scan(
    State(state): State<AppState>,
    ApiPath((name, store)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ScanQuery>,
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
    let entries = page
        .entries
        .into_iter()
        .map(|e| {
            let (key, key_b64) = text_or_b64(&e.key);
            let (value, value_b64) = text_or_b64(&e.value);
            ScanEntryJson {
                partition: e.partition,
                key,
                key_b64,
                value,
                value_b64,
            }
        })
        .collect();
    Ok(Json(ScanPageJson { entries, next }))
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
}

//! Processors over HTTP: deploy (`POST /v1/processors`, multipart with parts `wasm` and
//! `spec`), list, describe, redeploy (`PUT`), pause, resume, delete (`?keep_state=true`
//! keeps state and offsets), and interactive queries of task state
//! (`GET /v1/processors/{name}/stores/{store}/keys/{key}`). Handlers parse and answer; the
//! work is the engine's ([`weir_engine::Engine`]), run on blocking threads.

use axum::Json;
use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{CONTENT_LENGTH, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use weir_engine::engine::{ProcessorDescription, ProcessorSummary};
use weir_engine::task::ProcessorSpec;
use weir_engine::{EngineError, EngineErrorKind};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match e.kind() {
            EngineErrorKind::NotFound => StatusCode::NOT_FOUND,
            EngineErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            EngineErrorKind::Conflict => StatusCode::CONFLICT,
            EngineErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            EngineErrorKind::LimitExceeded => StatusCode::BAD_REQUEST,
            EngineErrorKind::InsufficientResources => StatusCode::INSUFFICIENT_STORAGE,
            EngineErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

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

/// The two parts of an upload.
pub struct Upload {
    pub spec: ProcessorSpec,
    pub module: Bytes,
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
        let req = check_upload_size(req).await?;
        let mut multipart = Multipart::from_request(req, state).await?;
        let mut spec = None;
        let mut module = None;
        while let Some(field) = multipart.next_field().await? {
            let name = field.name().unwrap_or_default().to_string();
            match name.as_str() {
                "wasm" => module = Some(field.bytes().await?),
                "spec" => {
                    let raw = field.bytes().await?;
                    let parsed: ProcessorSpec = serde_json::from_slice(&raw).map_err(|e| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "invalid_spec",
                            format!("invalid processor spec: {e}"),
                        )
                    })?;
                    spec = Some(parsed);
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unexpected part '{other}': an upload has the parts 'wasm' and 'spec'"
                    ))
                    .closing());
                }
            }
        }
        let spec = spec.ok_or_else(|| ApiError::bad_request("missing part 'spec'"))?;
        let module = module.ok_or_else(|| ApiError::bad_request("missing part 'wasm'"))?;
        Ok(Upload { spec, module })
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
) -> Result<Json<ProcessorDescription>, ApiError> {
    let engine = state.engine.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || engine.describe(&name)).await??,
    ))
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

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
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
}

//! User-defined functions over HTTP: register (`POST /v1/functions`, multipart with parts
//! `wasm` and `spec` = `{"name":"mask","replace":false}`), list, describe and delete
//! (`/v1/functions/{name}`), and artifacts (`PUT /v1/artifacts/{name}` with the raw `.wasm`
//! as the body), which SQL `CREATE FUNCTION … WITH (ARTIFACT='…')` registers from.
//! Handlers parse and answer; the work (validation, compilation, persistence) is the
//! [`FunctionRegistry`](weir_engine::udf::FunctionRegistry)'s, run on blocking threads.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use weir_engine::udf::{ArtifactInfo, FunctionInfo};

use super::AppState;
use super::error::ApiError;
use super::extract::ApiPath;
use super::uploads::{UploadPermit, read_module_upload, read_raw_upload};

/// The `spec` part of a function upload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// The function's name (case-insensitive; stored in upper case).
    pub name: String,
    /// Replace a function of the same name instead of failing with 409.
    #[serde(default)]
    pub replace: bool,
}

/// The two parts of a function upload (and its place under the upload cap).
pub struct FunctionUpload {
    pub spec: FunctionSpec,
    pub module: Bytes,
    _permit: UploadPermit,
}

impl<S: Send + Sync> FromRequest<S> for FunctionUpload {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let upload = read_module_upload(req, state, "a function upload").await?;
        let spec: FunctionSpec = serde_json::from_slice(&upload.spec).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_spec",
                format!("invalid function spec (expected {{\"name\":…, \"replace\":…}}): {e}"),
            )
        })?;
        Ok(FunctionUpload {
            spec,
            module: upload.module,
            _permit: upload.permit,
        })
    }
}

/// Body of `GET /v1/functions`.
#[derive(Debug, Serialize)]
pub struct FunctionList {
    pub functions: Vec<FunctionInfo>,
}

/// `POST /v1/functions` → 201 with the function.
pub async fn create(
    State(state): State<AppState>,
    upload: FunctionUpload,
) -> Result<Response, ApiError> {
    let functions = state.functions.clone();
    let info = tokio::task::spawn_blocking(move || {
        functions.create(&upload.spec.name, upload.module, upload.spec.replace)
    })
    .await??;
    let mut response = (StatusCode::CREATED, Json(&info)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/functions/{}", info.name)) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// `GET /v1/functions`.
pub async fn list(State(state): State<AppState>) -> Result<Json<FunctionList>, ApiError> {
    let functions = state.functions.clone();
    let functions = tokio::task::spawn_blocking(move || functions.list()).await?;
    Ok(Json(FunctionList { functions }))
}

/// `GET /v1/functions/{name}`.
pub async fn describe(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<FunctionInfo>, ApiError> {
    let functions = state.functions.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || functions.get(&name)).await??,
    ))
}

/// `DELETE /v1/functions/{name}` → 204.
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let functions = state.functions.clone();
    tokio::task::spawn_blocking(move || functions.delete(&name)).await??;
    Ok(StatusCode::NO_CONTENT)
}

/// A raw upload body, size-checked against the route's upload limit, admitted under the
/// upload cap and spooled to a file while it arrives ([`read_raw_upload`]).
pub struct RawUpload(pub Bytes, UploadPermit);

impl<S: Send + Sync> FromRequest<S> for RawUpload {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (body, permit) = read_raw_upload(req).await?;
        Ok(RawUpload(body, permit))
    }
}

/// `PUT /v1/artifacts/{name}` (body: the `.wasm`) → 201 with the artifact.
pub async fn put_artifact(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    RawUpload(body, _permit): RawUpload,
) -> Result<(StatusCode, Json<ArtifactInfo>), ApiError> {
    let functions = state.functions.clone();
    let info = tokio::task::spawn_blocking(move || functions.put_artifact(&name, &body)).await??;
    Ok((StatusCode::CREATED, Json(info)))
}

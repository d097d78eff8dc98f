//! Topic administration: `POST /v1/topics` (create), `GET /v1/topics` (list; under `--auth`
//! only the topics the caller may describe),
//! `GET /v1/topics/{name}` (describe with per-partition offsets) and
//! `DELETE /v1/topics/{name}`. Bodies are the broker's own serde types
//! ([`TopicSpec`], [`TopicInfo`], [`TopicDescription`]).

use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use weir_broker::auth::{Op, Resource};
use weir_broker::{TopicDescription, TopicInfo, TopicSpec};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};

/// Body of `GET /v1/topics`.
#[derive(Debug, Serialize)]
pub struct TopicList {
    pub topics: Vec<TopicInfo>,
}

/// `POST /v1/topics` → 201 with the created topic.
pub async fn create_topic(
    State(state): State<AppState>,
    ApiJson(spec): ApiJson<TopicSpec>,
) -> Result<Response, ApiError> {
    let broker = state.broker.clone();
    let info = tokio::task::spawn_blocking(move || broker.create_topic(spec)).await??;
    let mut response = (StatusCode::CREATED, Json(&info)).into_response();
    // Topic names are validated by the broker; skip the header rather than fail if one
    // somehow is not a valid header value.
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/topics/{}", info.name)) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// `GET /v1/topics` → `{"topics":[...]}` sorted by name: under `--auth`, only the topics the
/// caller may describe (as Kafka's Metadata lists them).
pub async fn list_topics(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Json<TopicList> {
    let mut topics = state.broker.list_topics();
    if let Some(Extension(c)) = &caller {
        topics.retain(|t| c.may(Op::Describe, &Resource::Topic(t.name.clone())));
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Json(TopicList { topics })
}

/// `GET /v1/topics/{name}` → the topic and its partitions' offsets.
pub async fn describe_topic(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<TopicDescription>, ApiError> {
    let broker = state.broker.clone();
    let description = tokio::task::spawn_blocking(move || broker.describe_topic(&name)).await??;
    Ok(Json(description))
}

/// `DELETE /v1/topics/{name}` → 204.
pub async fn delete_topic(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let broker = state.broker.clone();
    tokio::task::spawn_blocking(move || broker.delete_topic(&name)).await??;
    Ok(StatusCode::NO_CONTENT)
}

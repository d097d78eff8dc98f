//! Topic administration: `POST /v1/topics` (create), `GET /v1/topics` (list; under `--auth`
//! only the topics the caller may describe),
//! `GET /v1/topics/{name}` (describe with per-partition offsets; on a cluster, also of
//! replicated topics this node holds no replica of) and
//! `DELETE /v1/topics/{name}`. Bodies are the broker's own serde types
//! ([`TopicSpec`], [`TopicInfo`], [`weir_broker::TopicDescription`]).

use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use weir_broker::auth::{Op, Resource};
use weir_broker::{BrokerError, PartitionReplication, TopicInfo, TopicSpec};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use super::forward;

/// Body of `GET /v1/topics`.
#[derive(Debug, Serialize)]
pub struct TopicList {
    pub topics: Vec<TopicInfo>,
}

/// `POST /v1/topics` → 201 with the created topic. On a cluster the topic is created
/// through the controller (`replication_factor`, `min_insync_replicas`; a factor above the
/// live nodes is `400 invalid_replication_factor`).
pub async fn create_topic(
    State(state): State<AppState>,
    ApiJson(spec): ApiJson<TopicSpec>,
) -> Result<Response, ApiError> {
    let broker = state.broker.clone();
    let info = match &state.routing {
        None => {
            if spec.replication_factor.is_some_and(|rf| rf > 1) {
                return Err(ApiError::from(BrokerError::InvalidReplicationFactor(
                    "replication factor above 1 needs a cluster (this is a single node)".into(),
                )));
            }
            tokio::task::spawn_blocking(move || broker.create_topic(spec)).await??
        }
        Some(routing) => {
            weir_broker::check_client_spec(&spec)?;
            let mut info = broker.check_topic_spec(&spec)?;
            routing.create_topic(&spec).await?;
            // The local copy (if this node is a replica) appears once the applier ran.
            for _ in 0..50 {
                if let Ok(local) = broker.topic_info(&spec.name) {
                    info = local;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            info
        }
    };
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
    if let Some(routing) = &state.routing {
        // Replicated topics this node holds no replica of (no local copy).
        let meta = routing.metadata();
        for (name, t) in &meta.topics {
            if topics.iter().any(|i| &i.name == name) {
                continue;
            }
            let spec = weir_broker::cluster::applier::topic_spec(name, t);
            if let Ok(info) = state.broker.check_topic_spec(&spec) {
                topics.push(info);
            }
        }
    }
    if let Some(Extension(c)) = &caller {
        topics.retain(|t| c.may(Op::Describe, &Resource::Topic(t.name.clone())));
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Json(TopicList { topics })
}

/// `GET /v1/topics/{name}` → the topic and its partitions' offsets. On a cluster, a node
/// holding no replica of a replicated topic asks a node that does
/// ([`forward::describe_elsewhere`]).
pub async fn describe_topic(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(forwarded) =
        forward::describe_elsewhere(&state, &name, &headers, uri.path()).await?
    {
        return Ok(forwarded);
    }
    let broker = state.broker.clone();
    let routes = state.routing.as_ref().and_then(|r| r.routes(&name));
    let mut description =
        tokio::task::spawn_blocking(move || broker.describe_topic(&name)).await??;
    if let Some(routes) = routes {
        for p in &mut description.partition_offsets {
            let Some(r) = usize::try_from(p.partition)
                .ok()
                .and_then(|i| routes.get(i))
            else {
                continue;
            };
            let log_end = state
                .broker
                .local_log_end(&description.topic.name, p.partition)
                .unwrap_or(p.end_offset);
            p.replication = Some(PartitionReplication {
                leader: r.leader,
                leader_epoch: r.leader_epoch,
                replicas: r.replicas.clone(),
                isr: r.isr.clone(),
                log_end_offset: log_end,
            });
        }
    }
    Ok(Json(description).into_response())
}

/// `DELETE /v1/topics/{name}` → 204.
pub async fn delete_topic(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let broker = state.broker.clone();
    if let Some(routing) = &state.routing
        && routing.routes(&name).is_some()
    {
        match broker.check_client_delete(&name) {
            Ok(()) | Err(BrokerError::UnknownTopic(_)) => {}
            Err(e) => return Err(e.into()),
        }
        routing.delete_topic(&name).await?;
        // The committed offsets of it go too (the groups this node coordinates), as
        // `Broker::delete_topic` does on a single node.
        tokio::task::spawn_blocking(move || broker.topic_deleted_by_client(&name)).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    tokio::task::spawn_blocking(move || broker.delete_topic(&name)).await??;
    Ok(StatusCode::NO_CONTENT)
}

//! The HTTP control plane: the axum [`Router`] with every route of the API, its shared
//! [`AppState`], the request body limit and the JSON fallbacks for unknown routes (404) and
//! wrong methods (405).
//!
//! Routes:
//! - `GET /` and `GET /console/{file}`: the web console (embedded static files)
//! - `GET /health`, `GET /metrics`
//! - `POST /v1/topics`, `GET /v1/topics`, `GET /v1/topics/{name}`, `DELETE /v1/topics/{name}`
//! - `POST /v1/topics/{name}/records`
//! - `GET /v1/topics/{name}/partitions/{partition}/records?offset=&max=&follow=`
//! - `POST /v1/processors` (multipart), `GET /v1/processors`,
//!   `GET|PUT|DELETE /v1/processors/{name}`, `POST /v1/processors/{name}/pause|resume`,
//!   `GET /v1/processors/{name}/stores/{store}/keys/{key}`,
//!   `GET /v1/processors/{name}/stores/{store}/keys?prefix=&limit=&after=`
//! - `POST /v1/functions` (multipart), `GET /v1/functions`, `GET|DELETE /v1/functions/{name}`,
//!   `PUT /v1/artifacts/{name}` (raw body)
//! - `POST /v1/sql` (statements), `POST /v1/query` (a SELECT, streamed as NDJSON)
//! - `POST|GET /v1/users`, `GET|DELETE /v1/users/{name}`, `POST|GET /v1/tokens`,
//!   `DELETE /v1/tokens/{id}`, `POST|GET /v1/acls`, `DELETE /v1/acls/{id}`, `GET /v1/whoami`
//! - `GET /v1/cluster`, `GET /v1/cluster/replication`, `GET /v1/cluster/partitions`
//! - `GET /v1/groups`, `GET /v1/groups/{name}` (consumer groups, read only)
//!
//! Every request passes [`auth::gate`] first (authentication and the permission of its
//! route under `--auth`).

pub mod auth;
pub mod cluster;
pub mod console;
pub mod error;
pub mod extract;
pub mod forward;
pub mod functions;
pub mod groups;
pub mod health;
pub mod metrics;
pub mod processors;
pub mod records;
pub mod serve;
pub mod sql;
pub mod topics;
pub mod uploads;
pub mod users;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Router};
use tokio::sync::watch;
use weir_broker::Broker;
use weir_engine::Engine;
use weir_engine::udf::FunctionRegistry;

use self::error::ApiError;
use self::metrics::Metrics;

/// Default limit on request bodies.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// Default limit on processor uploads (the module plus its spec).
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 80 * 1024 * 1024;

/// State shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub broker: Broker,
    /// Processors (deploy, status, queries).
    pub engine: Engine,
    /// User-defined functions (and uploaded artifacts); SQL gets the same registry as its
    /// `FunctionCatalog` and `FunctionAdmin`.
    pub functions: Arc<FunctionRegistry>,
    /// Streaming SQL (`None` on nodes built without it, e.g. some tests).
    pub sql: Option<weir_engine::sql::SqlService>,
    pub metrics: Arc<Metrics>,
    /// Becomes `true` when the node shuts down; long-lived responses (follow) end then.
    pub shutdown: watch::Receiver<bool>,
    /// Users, tokens and ACLs, and whether requests must authenticate (`None`: no user
    /// store, nothing checked).
    pub auth: Option<auth::HttpAuth>,
    /// This node's peers and their liveness (`None`: a single node).
    pub cluster: Option<Arc<weir_broker::cluster::rpc::Peers>>,
    /// This node's metadata quorum member (`None`: a single node).
    pub metadata: Option<weir_broker::cluster::metadata::MetadataNode>,
    /// This node's id (the Kafka broker id; 0 on a single node).
    pub node_id: u64,
    /// The cluster's brokers, partition routes and topic changes through the controller
    /// (`None`: a single node).
    pub routing: Option<weir_broker::cluster::routing::ClusterRouting>,
    /// The HTTP client to other nodes, for what this node cannot serve itself (`None`: a
    /// single node).
    pub forwarder: Option<Arc<forward::Forwarder>>,
    /// This node's replicas and applier counters (`None`: a single node).
    pub replication: Option<cluster::ReplicationSource>,
    /// The consumer groups this node coordinates (filled by the Kafka listener once it has
    /// loaded committed offsets; empty without one).
    pub groups: weir_broker::group::GroupsView,
    /// The engine's part of the cluster: the catalog processors are published to, and
    /// where their tasks run (`None`: a single node).
    pub engine_cluster: Option<Arc<crate::engine_cluster::EngineCluster>>,
}

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest accepted request body; larger ones get a 413.
    pub max_request_bytes: usize,
    /// Largest accepted processor or function upload (`POST`/`PUT /v1/processors…`,
    /// `POST /v1/functions`, `PUT /v1/artifacts/…`); larger ones get a 413.
    pub max_upload_bytes: usize,
    /// How many uploads may run at once; more get a 503 (`too_many_uploads`).
    pub max_concurrent_uploads: usize,
    /// Where uploads are spooled while they arrive (`<data-dir>/uploads`, emptied at
    /// start); `None` means the system's temporary directory.
    pub upload_dir: Option<std::path::PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            max_concurrent_uploads: uploads::DEFAULT_MAX_CONCURRENT_UPLOADS,
            upload_dir: None,
        }
    }
}

/// Builds the API router.
pub fn router(state: AppState, config: &HttpConfig) -> Router {
    let metrics = state.metrics.clone();
    let upload_limit = DefaultBodyLimit::max(config.max_upload_bytes);
    let upload_extension = (
        Extension(processors::UploadLimit(config.max_upload_bytes)),
        Extension(uploads::Uploads::new(
            config.upload_dir.clone(),
            config.max_concurrent_uploads,
        )),
    );
    Router::new()
        .route("/", get(console::index))
        .route("/console/{file}", get(console::file))
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::get_metrics))
        .route(
            "/v1/topics",
            post(topics::create_topic).get(topics::list_topics),
        )
        .route(
            "/v1/topics/{name}",
            get(topics::describe_topic).delete(topics::delete_topic),
        )
        .route("/v1/topics/{name}/records", post(records::produce))
        .route(
            "/v1/topics/{name}/partitions/{partition}/records",
            get(records::read),
        )
        .route(
            "/v1/processors",
            post(processors::deploy)
                .layer((upload_limit, upload_extension.clone()))
                .get(processors::list),
        )
        .route(
            "/v1/processors/{name}",
            get(processors::describe)
                .put(processors::redeploy)
                .layer((upload_limit, upload_extension.clone()))
                .delete(processors::delete),
        )
        .route("/v1/sql", post(sql::execute))
        .route("/v1/query", post(sql::query))
        .route("/v1/processors/{name}/pause", post(processors::pause))
        .route("/v1/processors/{name}/resume", post(processors::resume))
        .route(
            "/v1/processors/{name}/stores/{store}/keys/{key}",
            get(processors::get_key),
        )
        .route(
            "/v1/processors/{name}/stores/{store}/keys",
            get(processors::scan),
        )
        .route(
            "/v1/functions",
            post(functions::create)
                .layer((upload_limit, upload_extension.clone()))
                .get(functions::list),
        )
        .route(
            "/v1/functions/{name}",
            get(functions::describe).delete(functions::delete),
        )
        .route(
            "/v1/artifacts/{name}",
            put(functions::put_artifact).layer((upload_limit, upload_extension.clone())),
        )
        .route("/v1/users", post(users::create_user).get(users::list_users))
        .route(
            "/v1/users/{name}",
            get(users::get_user).delete(users::delete_user),
        )
        .route(
            "/v1/tokens",
            post(users::create_token).get(users::list_tokens),
        )
        .route("/v1/tokens/{id}", delete(users::revoke_token))
        .route("/v1/acls", post(users::add_acl).get(users::list_acls))
        .route("/v1/acls/{id}", delete(users::remove_acl))
        .route("/v1/whoami", get(users::whoami))
        .route("/v1/cluster", get(cluster::status))
        .route("/v1/cluster/replication", get(cluster::replication))
        .route(
            "/v1/cluster/nodes/{id}/decommission",
            post(cluster::decommission),
        )
        .route("/v1/cluster/partitions", get(cluster::partitions))
        .route("/v1/groups", get(groups::list))
        .route("/v1/groups/{name}", get(groups::describe))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::gate,
        ))
        .with_state(state)
        .layer(DefaultBodyLimit::max(config.max_request_bytes))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
}

/// Whether a request carries a body (which the fallbacks leave unread).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

fn fallback_error(error: ApiError, headers: &HeaderMap) -> ApiError {
    if has_body(headers) {
        error.closing()
    } else {
        error
    }
}

async fn not_found(method: Method, uri: Uri, headers: HeaderMap) -> ApiError {
    let error = ApiError::not_found("not_found", format!("no route for {method} {}", uri.path()));
    fallback_error(error, &headers)
}

async fn method_not_allowed(method: Method, uri: Uri, headers: HeaderMap) -> ApiError {
    let error = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("method {method} is not allowed on {}", uri.path()),
    );
    fallback_error(error, &headers)
}

#[cfg(test)]
mod tests;

//! Authentication and authorization of HTTP requests: the one gate every request passes
//! ([`gate`], a middleware in [`super::router`]). Under `--auth` it identifies the caller
//! (HTTP Basic with a user's password, or `Authorization: Bearer <token>`), refuses
//! unauthenticated requests with `401` and a `WWW-Authenticate` challenge, rate-limits failed
//! logins per client address (`429` with `Retry-After`) and logs them, then maps the
//! request's method and route template to the permission it needs ([`permission`]) and
//! answers `403` when the user's role or ACLs do not allow it. A route missing from that
//! table is denied. `/health` (and `/metrics` unless `--auth-metrics`) stay open. Statuses
//! come from each [`AuthError`]'s kind through [`super::error::status_of`], as for every
//! other error; the gate only adds the `WWW-Authenticate` and `Retry-After` headers.
//!
//! The resources a permission is checked on are resolved here, so that the HTTP listener
//! applies the same prefix ACLs as the Kafka one ([`On`]):
//! - a topic route checks the topic named in the path;
//! - `POST /v1/query` (pull and push queries) checks `read` on every topic the statement
//!   reads: the Kafka topic of its source stream or table and of a joined table, as ksqlDB
//!   does. The body is read here (under the request body limit), the statement is planned
//!   by [`SqlService::query_topics`] before anything runs, and the body is handed on;
//! - a state look-up (`GET /v1/processors/{name}/stores/{store}/keys/{key}`, and the prefix
//!   scan `…/keys?prefix=`) checks `read` on
//!   the store's changelog topic `<name>.<store>.changelog`: it holds exactly the state the
//!   look-up returns (reading it over Kafka gives the same data), and a Kafka Streams user
//!   grants an application's internal topics by its prefix (`--topic-prefix <name>`);
//! - a consumer group's detail (`GET /v1/groups/{name}`) checks `describe` on the group, as
//!   Kafka's DescribeGroups and OffsetFetch do;
//! - lists answer only what the caller may describe: `GET /v1/topics` and `GET /v1/groups`
//!   filter with [`Caller::may`], as Kafka's Metadata and ListGroups do.
//!
//! Handlers that need the caller (tokens of one's own, reading one's own user, filtered
//! lists) get it as an `Extension<Caller>`. The rules themselves live in
//! [`weir_broker::auth`].

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use weir_broker::ErrorKind;
use weir_broker::auth::{AuthError, AuthStore, Op, Resource, Role};
use weir_engine::state::changelog::changelog_topic;

use super::AppState;
use super::error::ApiError;
use super::serve::PeerIdentity;

/// Authentication settings of the HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpAuth {
    pub store: Arc<AuthStore>,
    /// `--auth`: every request needs an identity.
    pub required: bool,
    /// `--auth-metrics`: `/metrics` needs one too.
    pub protect_metrics: bool,
}

/// The authenticated caller of a request (absent when `--auth` is off).
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub role: Role,
    store: Arc<AuthStore>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the caller may perform `op` on `resource` (for filtering lists; the
    /// request's own permission was checked by the gate).
    pub fn may(&self, op: Op, resource: &Resource) -> bool {
        self.store.authorize(&self.user, op, resource).is_ok()
    }
}

/// The resource a permission is checked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// Open to everyone, authenticated or not.
    Open,
    /// The node (processors, functions, SQL, users, tokens, ACLs).
    Cluster,
    /// The topic named by the route's `{name}`.
    Topic,
    /// The consumer group named by the route's `{name}`.
    Group,
    /// Every topic the SQL statement in the body reads (`POST /v1/query`).
    QuerySources,
    /// The changelog topic of the store named by the route's `{name}` and `{store}`.
    StoreChangelog,
}

/// The permission `method` on the route template `route` needs; `None` for a route the
/// table does not know (denied).
pub fn permission(method: &Method, route: &str, protect_metrics: bool) -> Option<(Op, On)> {
    use Op::{Admin, Describe, Read, Write};
    let m = method.as_str();
    Some(match (m, route) {
        ("GET" | "HEAD", "/health") => (Describe, On::Open),
        // The console's static files hold no data; the page calls /v1 with credentials.
        ("GET" | "HEAD", "/" | "/console/{file}") => (Describe, On::Open),
        ("GET" | "HEAD", "/metrics") if !protect_metrics => (Describe, On::Open),
        ("GET" | "HEAD", "/metrics") => (Describe, On::Cluster),
        ("GET", "/v1/topics") => (Describe, On::Cluster),
        ("POST", "/v1/topics") => (Admin, On::Cluster),
        ("GET", "/v1/topics/{name}") => (Describe, On::Topic),
        ("DELETE", "/v1/topics/{name}") => (Admin, On::Topic),
        ("POST", "/v1/topics/{name}/records") => (Write, On::Topic),
        ("GET", "/v1/topics/{name}/partitions/{partition}/records") => (Read, On::Topic),
        ("GET", "/v1/processors" | "/v1/processors/{name}") => (Describe, On::Cluster),
        ("POST", "/v1/processors") => (Admin, On::Cluster),
        ("PUT" | "DELETE", "/v1/processors/{name}") => (Admin, On::Cluster),
        ("POST", "/v1/processors/{name}/pause" | "/v1/processors/{name}/resume") => {
            (Admin, On::Cluster)
        }
        (
            "GET",
            "/v1/processors/{name}/stores/{store}/keys/{key}"
            | "/v1/processors/{name}/stores/{store}/keys",
        ) => (Read, On::StoreChangelog),
        ("GET", "/v1/functions" | "/v1/functions/{name}") => (Describe, On::Cluster),
        ("POST", "/v1/functions") => (Admin, On::Cluster),
        ("DELETE", "/v1/functions/{name}") => (Admin, On::Cluster),
        ("PUT", "/v1/artifacts/{name}") => (Admin, On::Cluster),
        // Statements (DDL, INSERT, SHOW…) are admin work; SELECTs run on /v1/query.
        ("POST", "/v1/sql") => (Admin, On::Cluster),
        ("POST", "/v1/query") => (Read, On::QuerySources),
        ("GET" | "POST", "/v1/users") => (Admin, On::Cluster),
        ("DELETE", "/v1/users/{name}") => (Admin, On::Cluster),
        // One's own user and tokens: the handlers check ownership.
        ("GET", "/v1/users/{name}") => (Describe, On::Cluster),
        ("GET" | "POST", "/v1/tokens") => (Describe, On::Cluster),
        ("DELETE", "/v1/tokens/{id}") => (Describe, On::Cluster),
        ("GET" | "POST", "/v1/acls") => (Admin, On::Cluster),
        ("DELETE", "/v1/acls/{id}") => (Admin, On::Cluster),
        ("GET", "/v1/whoami") => (Describe, On::Cluster),
        ("GET", "/v1/cluster" | "/v1/cluster/replication") => (Describe, On::Cluster),
        ("POST", "/v1/cluster/nodes/{id}/decommission") => (Admin, On::Cluster),
        // Only the topics the caller may describe (filtered by the handler).
        ("GET", "/v1/cluster/partitions") => (Describe, On::Cluster),
        // The list shows only the groups the caller may describe (filtered by the handler).
        ("GET", "/v1/groups") => (Describe, On::Cluster),
        ("GET", "/v1/groups/{name}") => (Describe, On::Group),
        _ => return None,
    })
}

/// A 401 with the challenge, or a 429 with `Retry-After`, or the error as it is.
fn refusal(e: AuthError) -> Response {
    let retry = match &e {
        AuthError::TooManyFailures { retry_after_secs } => Some(*retry_after_secs),
        _ => None,
    };
    let challenge = e.kind() == ErrorKind::Unauthenticated;
    let mut response = ApiError::from(e).into_response();
    if challenge {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"weir\", Bearer realm=\"weir\""),
        );
    }
    if let Some(secs) = retry
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(RETRY_AFTER, v);
    }
    response
}

/// The credentials in an `Authorization` header.
enum Credentials {
    Basic { user: String, password: String },
    Bearer(String),
}

fn credentials(req: &Request) -> Result<Option<Credentials>, AuthError> {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::AuthenticationFailed)?;
    let (scheme, rest) = value
        .split_once(' ')
        .ok_or(AuthError::AuthenticationFailed)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = B64
            .decode(rest)
            .map_err(|_| AuthError::AuthenticationFailed)?;
        let decoded = String::from_utf8(decoded).map_err(|_| AuthError::AuthenticationFailed)?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or(AuthError::AuthenticationFailed)?;
        Ok(Some(Credentials::Basic {
            user: user.to_string(),
            password: password.to_string(),
        }))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Some(Credentials::Bearer(rest.to_string())))
    } else {
        Err(AuthError::AuthenticationFailed)
    }
}

/// Who `credentials` identify, or why not. Failures are logged and counted against `ip`.
async fn authenticate(
    store: &Arc<AuthStore>,
    ip: IpAddr,
    credentials: Credentials,
) -> Result<String, AuthError> {
    store.limiter.check(ip)?;
    let (shown, user) = match credentials {
        Credentials::Basic { user, password } => {
            let s = store.clone();
            let u = user.clone();
            let ok = tokio::task::spawn_blocking(move || s.verify_password(&u, &password))
                .await
                .unwrap_or(false);
            (user.clone(), ok.then_some(user))
        }
        Credentials::Bearer(token) => ("<token>".to_string(), store.verify_token(&token)),
    };
    match user {
        Some(u) => Ok(u),
        None => {
            store.limiter.failed(ip);
            tracing::warn!(%ip, user = %shown, "HTTP login failed");
            Err(AuthError::AuthenticationFailed)
        }
    }
}

/// Middleware: authenticates and authorizes every request (see the module doc).
pub async fn gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(auth) = state.auth.clone().filter(|a| a.required) else {
        return next.run(req).await;
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let needed = route
        .as_deref()
        .map(|r| permission(req.method(), r, auth.protect_metrics));
    if let Some(Some((_, On::Open))) = needed {
        return next.run(req).await;
    }
    let peer = req.extensions().get::<PeerIdentity>().cloned();
    let ip = peer
        .as_ref()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.addr.ip());
    let user = match credentials(&req) {
        Ok(Some(c)) => authenticate(&auth.store, ip, c).await,
        // A verified client certificate (mTLS) names the user when no credentials are sent.
        Ok(None) => peer
            .and_then(|p| p.tls_cn)
            .ok_or(AuthError::Unauthenticated),
        Err(e) => {
            auth.store.limiter.failed(ip);
            tracing::warn!(%ip, "HTTP login failed: malformed Authorization header");
            Err(e)
        }
    };
    let user = match user {
        Ok(u) => u,
        Err(e) => return refusal(e),
    };
    let Some(role) = auth.store.role_of(&user) else {
        return refusal(AuthError::AuthenticationFailed);
    };
    let (op, on) = match needed {
        // No route matched: the fallback answers 404/405 to an authenticated caller.
        None => (Op::Describe, On::Cluster),
        Some(Some(p)) => p,
        Some(None) => {
            tracing::warn!(route = ?route, method = %req.method(), "route has no permission mapping; denied");
            return refusal(AuthError::Forbidden {
                user,
                reason: "this route has no permission mapping".into(),
            });
        }
    };
    let (mut parts, body) = req.into_parts();
    let (resources, body) = match resources(&state, on, &mut parts, body).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    for resource in &resources {
        if let Err(e) = auth.store.authorize(&user, op, resource) {
            tracing::info!(user = %user, error = %e, "HTTP request denied");
            return refusal(e);
        }
    }
    parts.extensions.insert(Caller {
        user,
        role,
        store: auth.store.clone(),
    });
    next.run(Request::from_parts(parts, body)).await
}

/// The path parameter `key` of the matched route.
async fn path_param(parts: &mut Parts, state: &AppState, key: &str) -> Option<String> {
    let params = RawPathParams::from_request_parts(parts, state).await.ok()?;
    params
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}

/// What a request of `on` acts on (see the module doc), and its body to hand on (read here
/// only for [`On::QuerySources`]). An error is the answer to send instead.
async fn resources(
    state: &AppState,
    on: On,
    parts: &mut Parts,
    body: Body,
) -> Result<(Vec<Resource>, Body), Response> {
    let missing = |what: &str| ApiError::bad_request(format!("missing {what}")).into_response();
    let resources = match on {
        On::Open | On::Cluster => vec![Resource::Cluster],
        On::Topic => match path_param(parts, state, "name").await {
            Some(n) => vec![Resource::Topic(n)],
            None => return Err(missing("topic name")),
        },
        On::Group => match path_param(parts, state, "name").await {
            Some(n) => vec![Resource::Group(n)],
            None => return Err(missing("group name")),
        },
        On::StoreChangelog => {
            let name = path_param(parts, state, "name").await;
            let store = path_param(parts, state, "store").await;
            match (name, store) {
                (Some(n), Some(s)) => vec![Resource::Topic(changelog_topic(&n, &s))],
                _ => return Err(missing("processor or store name")),
            }
        }
        On::QuerySources => {
            // Read under the body limit (`DefaultBodyLimit`), planned, handed on as it was.
            let request = Request::from_parts(parts.clone(), body);
            let bytes = Bytes::from_request(request, state)
                .await
                .map_err(|r| ApiError::from(r).into_response())?;
            let topics = query_topics(state, &bytes).await?;
            let mut resources: Vec<Resource> = topics.into_iter().map(Resource::Topic).collect();
            if resources.is_empty() {
                // Still the role's check.
                resources.push(Resource::Cluster);
            }
            return Ok((resources, Body::from(bytes)));
        }
    };
    Ok((resources, body))
}

/// The topics the statement of a `POST /v1/query` body reads; a body that is not a valid
/// request or statement is answered here with the error its handler would give.
async fn query_topics(state: &AppState, body: &[u8]) -> Result<Vec<String>, Response> {
    let Some(svc) = state.sql.clone() else {
        // The handler answers 503; nothing is read.
        return Ok(Vec::new());
    };
    let request: super::sql::SqlRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            super::error::status_of(ErrorKind::InvalidInput),
            "invalid_json",
            format!("invalid query request: {e}"),
        )
        .into_response()
    })?;
    tokio::task::spawn_blocking(move || svc.query_topics(&request.sql))
        .await
        .map_err(|e| ApiError::from(e).into_response())?
        .map_err(|e| super::sql::sql_error(e).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_of_the_router_has_a_permission() {
        // The routes of `super::router` (kept in step with the module doc of `super`).
        let routes = [
            ("GET", "/"),
            ("GET", "/console/{file}"),
            ("GET", "/v1/topics"),
            ("POST", "/v1/topics"),
            ("GET", "/v1/topics/{name}"),
            ("DELETE", "/v1/topics/{name}"),
            ("POST", "/v1/topics/{name}/records"),
            ("GET", "/v1/topics/{name}/partitions/{partition}/records"),
            ("POST", "/v1/processors"),
            ("GET", "/v1/processors"),
            ("GET", "/v1/processors/{name}"),
            ("PUT", "/v1/processors/{name}"),
            ("DELETE", "/v1/processors/{name}"),
            ("POST", "/v1/processors/{name}/pause"),
            ("POST", "/v1/processors/{name}/resume"),
            ("GET", "/v1/processors/{name}/stores/{store}/keys/{key}"),
            ("GET", "/v1/processors/{name}/stores/{store}/keys"),
            ("POST", "/v1/functions"),
            ("GET", "/v1/functions"),
            ("GET", "/v1/functions/{name}"),
            ("DELETE", "/v1/functions/{name}"),
            ("PUT", "/v1/artifacts/{name}"),
            ("POST", "/v1/sql"),
            ("POST", "/v1/query"),
            ("POST", "/v1/users"),
            ("GET", "/v1/users"),
            ("GET", "/v1/users/{name}"),
            ("DELETE", "/v1/users/{name}"),
            ("POST", "/v1/tokens"),
            ("GET", "/v1/tokens"),
            ("DELETE", "/v1/tokens/{id}"),
            ("POST", "/v1/acls"),
            ("GET", "/v1/acls"),
            ("DELETE", "/v1/acls/{id}"),
            ("GET", "/v1/cluster"),
            ("GET", "/v1/cluster/replication"),
            ("POST", "/v1/cluster/nodes/{id}/decommission"),
            ("GET", "/v1/cluster/partitions"),
            ("GET", "/v1/groups"),
            ("GET", "/v1/groups/{name}"),
        ];
        for (m, r) in routes {
            let m: Method = m.parse().unwrap();
            assert!(permission(&m, r, false).is_some(), "{m} {r}");
        }
        assert_eq!(
            permission(&Method::GET, "/metrics", false).unwrap().1,
            On::Open
        );
        assert_eq!(
            permission(&Method::GET, "/metrics", true).unwrap().1,
            On::Cluster
        );
        assert!(permission(&Method::PATCH, "/v1/topics", false).is_none());
        assert!(permission(&Method::GET, "/v1/new-route", false).is_none());
    }

    #[test]
    fn roles_line_up_with_the_issue() {
        let p = |m: Method, r| permission(&m, r, false).unwrap().0;
        assert_eq!(p(Method::POST, "/v1/topics/{name}/records"), Op::Write);
        assert_eq!(p(Method::POST, "/v1/processors"), Op::Admin);
        assert_eq!(p(Method::POST, "/v1/query"), Op::Read);
        assert_eq!(p(Method::POST, "/v1/sql"), Op::Admin);
        assert!(Role::Reader.allows(p(
            Method::GET,
            "/v1/processors/{name}/stores/{store}/keys/{key}"
        )));
        assert!(!Role::Writer.allows(p(Method::DELETE, "/v1/topics/{name}")));
        // Queries and state look-ups are checked on the topics they read.
        let on = |m: Method, r| permission(&m, r, false).unwrap().1;
        assert_eq!(on(Method::POST, "/v1/query"), On::QuerySources);
        assert_eq!(
            on(
                Method::GET,
                "/v1/processors/{name}/stores/{store}/keys/{key}"
            ),
            On::StoreChangelog
        );
    }
}

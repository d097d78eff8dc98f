//! Users, tokens and ACLs over HTTP, on the node's [`AuthStore`]:
//! `POST /v1/users` (`{"name","password","role"}`), `GET /v1/users`,
//! `GET|DELETE /v1/users/{name}`; `POST /v1/tokens` (`{"name"?, "user"?}`, the secret is in
//! this answer only), `GET /v1/tokens`, `DELETE /v1/tokens/{id}` (id or name); `POST /v1/acls`
//! (`{"user","resource":"topic"|"group","prefix","allow":"read"|"write"}`), `GET /v1/acls`,
//! `DELETE /v1/acls/{id}`; `GET /v1/whoami`.
//!
//! The gate ([`super::auth::gate`]) already required admin for user and ACL management;
//! these handlers add the ownership rules: anyone may read their own user and create, list
//! and revoke their own tokens; others' need admin.
//!
//! Without `--auth` every change (creating or deleting users, tokens and ACLs) is refused
//! with `409 auth_disabled`: on an open node anyone could otherwise plant an admin account
//! that becomes valid the day the operator turns `--auth` on. The first admin comes from
//! `WEIR_ADMIN_PASSWORD` at the first start with `--auth`. Reading stays as open as every
//! other route of an open node.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use weir_broker::auth::{AclAllow, AclResource, AuthError, AuthStore, Role};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};

fn store(state: &AppState) -> Result<Arc<AuthStore>, ApiError> {
    state
        .auth
        .as_ref()
        .map(|a| a.store.clone())
        .ok_or_else(|| ApiError::not_found("auth_unavailable", "this node has no user store"))
}

/// The store, for a change: only on a node started with `--auth` (see the module doc).
fn store_for_change(state: &AppState) -> Result<Arc<AuthStore>, ApiError> {
    match &state.auth {
        Some(a) if a.required => Ok(a.store.clone()),
        _ => Err(AuthError::AuthDisabled.into()),
    }
}

fn forbidden(caller: &Caller, reason: &str) -> ApiError {
    AuthError::Forbidden {
        user: caller.user.clone(),
        reason: reason.to_string(),
    }
    .into()
}

/// Runs a store change off the async threads (it fsyncs).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub password: String,
    pub role: Role,
}

/// `POST /v1/users` → 201 with the user (never the password).
pub async fn create_user(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<Response, ApiError> {
    let s = store_for_change(&state)?;
    let info = blocking(move || s.create_user(&body.name, &body.password, body.role)).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// `GET /v1/users` → `{"users":[...]}`.
pub async fn list_users(State(state): State<AppState>) -> Result<Response, ApiError> {
    let users = store(&state)?.list_users();
    Ok(Json(json!({ "users": users })).into_response())
}

/// `GET /v1/users/{name}`: one's own, or anyone's for admins.
pub async fn get_user(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    if let Some(Extension(c)) = &caller
        && c.user != name
        && !c.is_admin()
    {
        return Err(forbidden(c, "only admins read other users"));
    }
    let user = store(&state)?
        .user(&name)
        .ok_or(AuthError::UnknownUser(name))?;
    Ok(Json(user).into_response())
}

/// `DELETE /v1/users/{name}` → 204 (its tokens and ACLs go with it).
pub async fn delete_user(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let s = store_for_change(&state)?;
    blocking(move || s.delete_user(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    #[serde(default)]
    pub name: Option<String>,
    /// Whose token (default: the caller). Others' need admin.
    #[serde(default)]
    pub user: Option<String>,
}

/// `POST /v1/tokens` → 201 with `token`, shown this once.
pub async fn create_token(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<Response, ApiError> {
    let s = store_for_change(&state)?;
    let user = match (&caller, body.user) {
        (Some(Extension(c)), Some(u)) if u != c.user && !c.is_admin() => {
            return Err(forbidden(c, "only admins create tokens for other users"));
        }
        (_, Some(u)) => u,
        (Some(Extension(c)), None) => c.user.clone(),
        (None, None) => {
            return Err(ApiError::bad_request(
                "name the token's user with \"user\" (there is no authenticated caller)",
            ));
        }
    };
    let token = blocking(move || s.create_token(&user, body.name.as_deref())).await?;
    Ok((StatusCode::CREATED, Json(token)).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFilter {
    #[serde(default)]
    pub user: Option<String>,
}

/// `GET /v1/tokens[?user=]` → the caller's tokens (admins: everyone's, or one user's).
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ApiQuery(filter): ApiQuery<UserFilter>,
) -> Result<Response, ApiError> {
    let user = match &caller {
        Some(Extension(c)) if !c.is_admin() => {
            if filter.user.as_ref().is_some_and(|u| *u != c.user) {
                return Err(forbidden(c, "only admins list other users' tokens"));
            }
            Some(c.user.clone())
        }
        _ => filter.user,
    };
    let tokens = store(&state)?.list_tokens(user.as_deref());
    Ok(Json(json!({ "tokens": tokens })).into_response())
}

/// `DELETE /v1/tokens/{id}` (id, or a name unique among the visible tokens) → 204.
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ApiPath(key): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let s = store_for_change(&state)?;
    let owner = match &caller {
        Some(Extension(c)) if !c.is_admin() => Some(c.user.clone()),
        _ => None,
    };
    let token = s
        .find_token(&key, owner.as_deref())
        .ok_or(AuthError::UnknownToken(key))?;
    blocking(move || s.revoke_token(&token.id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAcl {
    pub user: String,
    pub resource: AclResource,
    #[serde(default)]
    pub prefix: String,
    pub allow: AclAllow,
}

/// `POST /v1/acls` → 201 with the ACL and its id.
pub async fn add_acl(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewAcl>,
) -> Result<Response, ApiError> {
    let s = store_for_change(&state)?;
    let acl =
        blocking(move || s.add_acl(&body.user, body.resource, &body.prefix, body.allow)).await?;
    Ok((StatusCode::CREATED, Json(acl)).into_response())
}

/// `GET /v1/acls[?user=]` → `{"acls":[...]}`.
pub async fn list_acls(
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<UserFilter>,
) -> Result<Response, ApiError> {
    let acls = store(&state)?.list_acls(filter.user.as_deref());
    Ok(Json(json!({ "acls": acls })).into_response())
}

/// `DELETE /v1/acls/{id}` → 204.
pub async fn remove_acl(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<u64>,
) -> Result<StatusCode, ApiError> {
    let s = store_for_change(&state)?;
    blocking(move || s.remove_acl(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/whoami` → `{"user","role"}` (`null`s without `--auth`).
pub async fn whoami(caller: Option<Extension<Caller>>) -> Json<serde_json::Value> {
    Json(match caller {
        Some(Extension(c)) => json!({ "user": c.user, "role": c.role }),
        None => json!({ "user": null, "role": null }),
    })
}

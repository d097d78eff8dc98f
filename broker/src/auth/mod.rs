//! Authentication and authorization, shared by both listeners: who may connect (users with
//! SCRAM credentials, bearer tokens), and what each may do (roles, prefix ACLs).
//!
//! - [`store`]: [`AuthStore`], the "users and ACLs" part of the node's metadata (typed
//!   records in `<data-dir>/auth/auth.json`, written crash-safely; on a cluster every change
//!   is an [`AuthChange`] replicated through the metadata quorum);
//! - [`scram`]: SCRAM-SHA-256/512 credentials and the server side of the exchange (RFC 5802,
//!   RFC 7677) over the `hmac`, `pbkdf2`, `sha2` and `subtle` crates, and SASL PLAIN;
//! - [`limiter`]: failed-login rate limiting per client address.
//!
//! Authorization model ([`AuthStore::authorize`]): an operation ([`Op`]) on a resource
//! ([`Resource`]) is allowed when the user's [`Role`] allows the operation and, for topics
//! and groups, the user's ACLs allow it: a user with no ACL for a resource type is limited by
//! the role alone; a user with at least one ACL for a resource type needs an ACL of that type
//! whose prefix the resource name starts with and that allows the operation (`read` allows
//! describe and read, `write` allows describe and write). Admins bypass ACLs.
//!
//! This module knows nothing of HTTP or the Kafka wire; the listeners map their requests
//! onto [`Op`] and [`Resource`] and their outcomes onto their own error codes.

pub mod limiter;
pub mod scram;
pub mod store;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ErrorKind;

pub use limiter::{LoginLimiter, LoginLimits};
pub use scram::{Mechanism, ScramCredential, ScramServer, ScramStep};
pub use store::{
    AclRecord, AuthChange, AuthData, AuthOutcome, AuthReplicator, AuthStore, NewToken, TokenInfo,
    UserInfo,
};

/// What a user may do, before ACLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Describe, list, consume, groups and offset commits, state look-ups, queries.
    Reader,
    /// A reader that may also produce.
    Writer,
    /// Everything: topics, processors, functions, SQL DDL, users, tokens, ACLs.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }

    /// Whether the role allows `op` (ACLs may still narrow it).
    pub fn allows(self, op: Op) -> bool {
        match op {
            Op::Describe | Op::Read => true,
            Op::Write => matches!(self, Role::Writer | Role::Admin),
            Op::Admin => self == Role::Admin,
        }
    }
}

impl std::str::FromStr for Role {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, AuthError> {
        match s {
            "reader" => Ok(Role::Reader),
            "writer" => Ok(Role::Writer),
            "admin" => Ok(Role::Admin),
            _ => Err(AuthError::InvalidRole(s.to_string())),
        }
    }
}

/// An operation a request performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// List or describe (metadata, offsets, configs, status).
    Describe,
    /// Consume, join groups and commit offsets, look up state, run queries.
    Read,
    /// Produce.
    Write,
    /// Create, delete, deploy, DDL, user and ACL management.
    Admin,
}

/// What an operation is performed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Topic(String),
    Group(String),
    /// The node itself: processors, functions, SQL, users, tokens.
    Cluster,
}

/// Resource types ACLs apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclResource {
    Topic,
    Group,
}

/// What an ACL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclAllow {
    /// Describe and read (consume, groups).
    Read,
    /// Describe and write (produce).
    Write,
}

impl AclAllow {
    fn covers(self, op: Op) -> bool {
        match op {
            Op::Describe => true,
            Op::Read => self == AclAllow::Read,
            Op::Write => self == AclAllow::Write,
            Op::Admin => false,
        }
    }
}

/// Errors of user, token and ACL management and of authentication.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid user name '{0}': use 1 to 64 letters, digits, '.', '_', '-' or '@'")]
    InvalidUserName(String),
    #[error("invalid role '{0}': expected admin, writer or reader")]
    InvalidRole(String),
    #[error("invalid password: {0}")]
    InvalidPassword(&'static str),
    #[error("invalid token name: {0}")]
    InvalidTokenName(&'static str),
    #[error("invalid ACL: {0}")]
    InvalidAcl(String),
    #[error("user '{0}' already exists")]
    UserExists(String),
    #[error("user '{0}' does not exist")]
    UnknownUser(String),
    #[error("token '{0}' does not exist")]
    UnknownToken(String),
    #[error("ACL {0} does not exist")]
    UnknownAcl(u64),
    #[error("authentication required")]
    Unauthenticated,
    #[error("authentication failed")]
    AuthenticationFailed,
    #[error("too many failed logins from this address; retry in {retry_after_secs} s")]
    TooManyFailures { retry_after_secs: u64 },
    #[error("user '{user}' may not do this: {reason}")]
    Forbidden { user: String, reason: String },
    #[error("cannot start with --auth: no users exist; set WEIR_ADMIN_PASSWORD to create 'admin'")]
    NoUsers,
    #[error(
        "corrupt user store {path}: {reason} (repair it or restore it from a backup; Weir does \
         not overwrite it)"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("I/O error on {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot generate random bytes: {0}")]
    Random(String),
    #[error(
        "users, tokens and ACLs can only be changed on a node started with --auth: restart it with \
         `weir serve --auth` (at the first start WEIR_ADMIN_PASSWORD creates the user 'admin')"
    )]
    AuthDisabled,
    /// Cluster mode: the change could not be committed (no controller, or no answer in
    /// time); it may still take effect.
    #[error("the cluster cannot take the change now: {0}")]
    ClusterUnavailable(String),
    /// Cluster mode: the metadata quorum refused the change (another node's change came
    /// first).
    #[error("the cluster refused the change: {0}")]
    ClusterRefused(String),
}

impl AuthError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::InvalidUserName(_) => "invalid_user_name",
            AuthError::InvalidRole(_) => "invalid_role",
            AuthError::InvalidPassword(_) => "invalid_password",
            AuthError::InvalidTokenName(_) => "invalid_token_name",
            AuthError::InvalidAcl(_) => "invalid_acl",
            AuthError::UserExists(_) => "user_exists",
            AuthError::UnknownUser(_) => "unknown_user",
            AuthError::UnknownToken(_) => "unknown_token",
            AuthError::UnknownAcl(_) => "unknown_acl",
            AuthError::Unauthenticated => "unauthenticated",
            AuthError::AuthenticationFailed => "authentication_failed",
            AuthError::TooManyFailures { .. } => "too_many_failed_logins",
            AuthError::Forbidden { .. } => "forbidden",
            AuthError::NoUsers => "no_users",
            AuthError::Corrupt { .. } => "corrupt_data",
            AuthError::Io { .. } => "io_error",
            AuthError::Random(_) => "internal",
            AuthError::AuthDisabled => "auth_disabled",
            AuthError::ClusterUnavailable(_) => "cluster_unavailable",
            AuthError::ClusterRefused(_) => "conflict",
        }
    }

    /// The coarse class each transport turns into its status.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AuthError::InvalidUserName(_)
            | AuthError::InvalidRole(_)
            | AuthError::InvalidPassword(_)
            | AuthError::InvalidTokenName(_)
            | AuthError::InvalidAcl(_)
            | AuthError::NoUsers => ErrorKind::InvalidInput,
            AuthError::UserExists(_) => ErrorKind::AlreadyExists,
            AuthError::UnknownUser(_) | AuthError::UnknownToken(_) | AuthError::UnknownAcl(_) => {
                ErrorKind::NotFound
            }
            AuthError::Unauthenticated | AuthError::AuthenticationFailed => {
                ErrorKind::Unauthenticated
            }
            AuthError::TooManyFailures { .. } => ErrorKind::TooManyRequests,
            AuthError::Forbidden { .. } => ErrorKind::Forbidden,
            AuthError::AuthDisabled | AuthError::ClusterRefused(_) => ErrorKind::Conflict,
            AuthError::ClusterUnavailable(_) => ErrorKind::Unavailable,
            AuthError::Corrupt { .. } => ErrorKind::Corrupt,
            AuthError::Io { .. } | AuthError::Random(_) => ErrorKind::Internal,
        }
    }
}

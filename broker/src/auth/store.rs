//! [`AuthStore`]: users (role and SCRAM-SHA-256/512 credentials, never a password), bearer
//! tokens (only a SHA-256 of each secret) and prefix ACLs, as typed records in
//! `<data-dir>/auth/auth.json` (mode 0600), replaced crash-safely as a whole on every change
//! ([`crate::fsutil::write_atomic_private`]).
//!
//! Every change is an [`AuthChange`] applied by the pure [`AuthData::apply`]: on a single
//! node the store applies it and writes the file; on a cluster the store has an
//! [`AuthReplicator`] that proposes it to the metadata quorum (the state machine applies
//! the same function, so every node validates it the same way), and the store follows the
//! applied records ([`AuthStore::follow`], also written to the file as this node's last
//! known copy). Credentials are derived and token secrets drawn on the node that takes the
//! request; only their salted keys and hashes are stored or replicated.
//!
//! It owns that file and nothing else; it does not know how a listener asks for an identity,
//! nor how a cluster replicates.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::limiter::{LoginLimiter, LoginLimits};
use super::scram::{self, DEFAULT_ITERATIONS, Mechanism, ScramCredential};
use super::{AclAllow, AclResource, AuthError, Op, Resource, Role};

/// Version of the file's layout.
const FILE_VERSION: u32 = 1;
/// Longest password accepted.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest ACL prefix (Kafka's longest topic name).
pub const MAX_PREFIX_LEN: usize = 249;
/// Most users, tokens and ACLs each (the file is rewritten whole on every change).
pub const MAX_RECORDS: usize = 10_000;
/// Prefix of every bearer token, so that a leaked one is recognisable.
const TOKEN_PREFIX: &str = "weir_";

/// One user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    pub scram_sha256: ScramCredential,
    pub scram_sha512: ScramCredential,
    pub created_ms: i64,
}

impl UserRecord {
    fn credential(&self, mech: Mechanism) -> &ScramCredential {
        match mech {
            Mechanism::ScramSha256 => &self.scram_sha256,
            Mechanism::ScramSha512 => &self.scram_sha512,
        }
    }
}

/// One bearer token: the secret is shown once at creation; only its SHA-256 is kept (the
/// secret is 256 random bits, so a fast hash is enough).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub user: String,
    pub secret_sha256: String,
    pub created_ms: i64,
}

/// One ACL: `user` may `allow` on every `resource` whose name starts with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRecord {
    pub id: u64,
    pub user: String,
    pub resource: AclResource,
    pub prefix: String,
    pub allow: AclAllow,
}

/// Every user, token and ACL: the store's content, and the `auth` part of a cluster's
/// metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthData {
    #[serde(default)]
    pub users: Vec<UserRecord>,
    #[serde(default)]
    pub tokens: Vec<TokenRecord>,
    #[serde(default)]
    pub acls: Vec<AclRecord>,
    #[serde(default)]
    pub next_acl_id: u64,
}

/// One change of the users, tokens and ACLs (what a cluster replicates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthChange {
    CreateUser(UserRecord),
    /// Deletes the user with its tokens and ACLs.
    DeleteUser {
        name: String,
    },
    CreateToken(TokenRecord),
    RevokeToken {
        id: String,
    },
    /// The ACL's id is the next one ([`AuthData::apply`] answers it).
    AddAcl {
        user: String,
        resource: AclResource,
        prefix: String,
        allow: AclAllow,
    },
    RemoveAcl {
        id: u64,
    },
}

/// What applying an [`AuthChange`] gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthOutcome {
    Done,
    AclAdded(AclRecord),
}

impl AuthData {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.tokens.is_empty() && self.acls.is_empty()
    }

    /// Validates `change` against the records and applies it, or refuses it and changes
    /// nothing. Pure and deterministic (the cluster's state machine runs it on every node).
    pub fn apply(&mut self, change: &AuthChange) -> Result<AuthOutcome, AuthError> {
        match change {
            AuthChange::CreateUser(record) => {
                if !valid_name(&record.name) {
                    return Err(AuthError::InvalidUserName(record.name.clone()));
                }
                if self.users.iter().any(|u| u.name == record.name) {
                    return Err(AuthError::UserExists(record.name.clone()));
                }
                if self.users.len() >= MAX_RECORDS {
                    return Err(AuthError::InvalidUserName(format!(
                        "{} (at most {MAX_RECORDS} users)",
                        record.name
                    )));
                }
                self.users.push(record.clone());
            }
            AuthChange::DeleteUser { name } => {
                let before = self.users.len();
                self.users.retain(|u| u.name != *name);
                if self.users.len() == before {
                    return Err(AuthError::UnknownUser(name.clone()));
                }
                self.tokens.retain(|t| t.user != *name);
                self.acls.retain(|a| a.user != *name);
            }
            AuthChange::CreateToken(record) => {
                if !valid_name(&record.name) {
                    return Err(AuthError::InvalidTokenName(
                        "use 1 to 64 letters, digits, '.', '_', '-' or '@'",
                    ));
                }
                if !self.users.iter().any(|u| u.name == record.user) {
                    return Err(AuthError::UnknownUser(record.user.clone()));
                }
                if self
                    .tokens
                    .iter()
                    .any(|t| t.id == record.id || (t.user == record.user && t.name == record.name))
                {
                    return Err(AuthError::InvalidTokenName(
                        "this user already has a token of that name",
                    ));
                }
                if self.tokens.len() >= MAX_RECORDS {
                    return Err(AuthError::InvalidTokenName("too many tokens"));
                }
                self.tokens.push(record.clone());
            }
            AuthChange::RevokeToken { id } => {
                let before = self.tokens.len();
                self.tokens.retain(|t| t.id != *id);
                if self.tokens.len() == before {
                    return Err(AuthError::UnknownToken(id.clone()));
                }
            }
            AuthChange::AddAcl {
                user,
                resource,
                prefix,
                allow,
            } => {
                if prefix.len() > MAX_PREFIX_LEN {
                    return Err(AuthError::InvalidAcl(format!(
                        "prefix is longer than {MAX_PREFIX_LEN} bytes"
                    )));
                }
                if !self.users.iter().any(|u| u.name == *user) {
                    return Err(AuthError::UnknownUser(user.clone()));
                }
                if self.acls.len() >= MAX_RECORDS {
                    return Err(AuthError::InvalidAcl("too many ACLs".into()));
                }
                let acl = AclRecord {
                    id: self.next_acl_id.max(1),
                    user: user.clone(),
                    resource: *resource,
                    prefix: prefix.clone(),
                    allow: *allow,
                };
                self.next_acl_id = acl.id + 1;
                self.acls.push(acl.clone());
                return Ok(AuthOutcome::AclAdded(acl));
            }
            AuthChange::RemoveAcl { id } => {
                let before = self.acls.len();
                self.acls.retain(|a| a.id != *id);
                if self.acls.len() == before {
                    return Err(AuthError::UnknownAcl(*id));
                }
            }
        }
        Ok(AuthOutcome::Done)
    }

    /// Whether the records show `change` applied (a cluster node waits for this before it
    /// answers; `outcome` names the ACL an `AddAcl` added).
    pub fn shows(&self, change: &AuthChange, outcome: &AuthOutcome) -> bool {
        match (change, outcome) {
            (AuthChange::CreateUser(r), _) => self.users.iter().any(|u| u == r),
            (AuthChange::DeleteUser { name }, _) => !self.users.iter().any(|u| u.name == *name),
            (AuthChange::CreateToken(r), _) => self.tokens.iter().any(|t| t == r),
            (AuthChange::RevokeToken { id }, _) => !self.tokens.iter().any(|t| t.id == *id),
            (AuthChange::AddAcl { .. }, AuthOutcome::AclAdded(acl)) => self.acls.contains(acl),
            (AuthChange::AddAcl { .. }, AuthOutcome::Done) => false,
            (AuthChange::RemoveAcl { id }, _) => !self.acls.iter().any(|a| a.id == *id),
        }
    }

    /// The changes that create these records on an empty store (a node's own users imported
    /// into a cluster that has none).
    pub fn as_changes(&self) -> Vec<AuthChange> {
        let mut out: Vec<AuthChange> = self
            .users
            .iter()
            .cloned()
            .map(AuthChange::CreateUser)
            .collect();
        out.extend(self.tokens.iter().cloned().map(AuthChange::CreateToken));
        out.extend(self.acls.iter().map(|a| AuthChange::AddAcl {
            user: a.user.clone(),
            resource: a.resource,
            prefix: a.prefix.clone(),
            allow: a.allow,
        }));
        out
    }
}

/// How a clustered store's changes reach every node: proposes the change to the metadata
/// quorum and returns once this node's store shows it (blocking: call it off the async
/// threads).
pub trait AuthReplicator: Send + Sync {
    fn replicate(&self, change: &AuthChange) -> Result<AuthOutcome, AuthError>;
}

/// The file: the records and the layout's version.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AuthFile {
    version: u32,
    #[serde(flatten)]
    data: AuthData,
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
    pub created_ms: i64,
}

/// A token as the API shows it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub user: String,
    pub created_ms: i64,
}

/// A token just created: `token` is the only time the secret is seen.
#[derive(Debug, Clone, Serialize)]
pub struct NewToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub token: String,
}

/// Users, tokens and ACLs, and the failed-login limiter both listeners share.
pub struct AuthStore {
    path: PathBuf,
    data: RwLock<AuthData>,
    iterations: u32,
    pub limiter: LoginLimiter,
    /// Set on a cluster node: changes go through it (see the module doc).
    replicator: RwLock<Option<std::sync::Arc<dyn AuthReplicator>>>,
}

// Never prints credentials.
impl std::fmt::Debug for AuthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

// Two handles are equal when they are the same store (configs holding one compare so).
impl PartialEq for AuthStore {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Names of users and tokens: 1 to 64 of `[A-Za-z0-9._@-]`.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl AuthStore {
    /// The store's file under a data directory.
    pub fn path_under(data_dir: &Path) -> PathBuf {
        data_dir.join("auth").join("auth.json")
    }

    /// Opens the store under `data_dir` (empty if the file does not exist yet; nothing is
    /// written until the first change).
    pub fn open(data_dir: &Path, limits: LoginLimits) -> Result<Self, AuthError> {
        let path = Self::path_under(data_dir);
        let data = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: AuthFile =
                    serde_json::from_slice(&bytes).map_err(|e| AuthError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                if file.version != FILE_VERSION {
                    return Err(AuthError::Corrupt {
                        path,
                        reason: format!("unknown version {}", file.version),
                    });
                }
                file
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AuthFile {
                version: FILE_VERSION,
                data: AuthData {
                    next_acl_id: 1,
                    ..AuthData::default()
                },
            },
            Err(cause) => return Err(AuthError::Io { path, cause }),
        };
        Ok(AuthStore {
            path,
            data: RwLock::new(data.data),
            iterations: DEFAULT_ITERATIONS,
            limiter: LoginLimiter::new(limits),
            replicator: RwLock::new(None),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, AuthData> {
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes this a cluster node's store: from now on every change goes through
    /// `replicator` (the records follow the cluster's through [`AuthStore::follow`]).
    pub fn set_replicator(&self, replicator: std::sync::Arc<dyn AuthReplicator>) {
        *self.replicator.write().unwrap_or_else(|e| e.into_inner()) = Some(replicator);
    }

    /// A copy of every record.
    pub fn snapshot(&self) -> AuthData {
        self.read().clone()
    }

    /// Takes the cluster's records as they are (a cluster node, on every applied change),
    /// and writes them to the file when they differ: the node's last known copy, which it
    /// serves after a restart until it has caught up with the cluster again.
    pub fn follow(&self, records: &AuthData) -> Result<(), AuthError> {
        let mut guard = self.data.write().unwrap_or_else(|e| e.into_inner());
        if *guard == *records {
            return Ok(());
        }
        self.persist(records)?;
        *guard = records.clone();
        Ok(())
    }

    /// Applies `change`: locally (validated, written, then current), or on a cluster node
    /// through the replicator after the same validation against the records it has.
    fn commit(&self, change: AuthChange) -> Result<AuthOutcome, AuthError> {
        let replicator = self
            .replicator
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(r) = replicator {
            // The clear error for what is invalid here already; the quorum checks again.
            self.read().clone().apply(&change)?;
            return r.replicate(&change);
        }
        let mut guard = self.data.write().unwrap_or_else(|e| e.into_inner());
        let mut next = guard.clone();
        let out = next.apply(&change)?;
        self.persist(&next)?;
        *guard = next;
        Ok(out)
    }

    fn persist(&self, data: &AuthData) -> Result<(), AuthError> {
        let io = |cause| AuthError::Io {
            path: self.path.clone(),
            cause,
        };
        let file = AuthFile {
            version: FILE_VERSION,
            data: data.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| io(std::io::Error::other(e)))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        crate::fsutil::write_atomic_private(&self.path, &bytes).map_err(io)
    }

    /// Whether no user exists.
    pub fn has_no_users(&self) -> bool {
        self.read().users.is_empty()
    }

    /// At a start with `--auth`: with no users, creates `admin` with `password`, or fails
    /// with [`AuthError::NoUsers`] if there is none. Returns whether `admin` was created.
    pub fn bootstrap_admin(&self, password: Option<&str>) -> Result<bool, AuthError> {
        if !self.has_no_users() {
            return Ok(false);
        }
        let password = password.ok_or(AuthError::NoUsers)?;
        self.create_user("admin", password, Role::Admin)?;
        Ok(true)
    }

    pub fn create_user(
        &self,
        name: &str,
        password: &str,
        role: Role,
    ) -> Result<UserInfo, AuthError> {
        if !valid_name(name) {
            return Err(AuthError::InvalidUserName(name.to_string()));
        }
        if password.is_empty() {
            return Err(AuthError::InvalidPassword("it must not be empty"));
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AuthError::InvalidPassword("it is longer than 1024 bytes"));
        }
        if self.read().users.iter().any(|u| u.name == name) {
            // Spares the slow derivation (applying the change checks again).
            return Err(AuthError::UserExists(name.to_string()));
        }
        // Derive outside the lock: PBKDF2 is deliberately slow.
        let record = UserRecord {
            name: name.to_string(),
            role,
            scram_sha256: ScramCredential::new(Mechanism::ScramSha256, password, self.iterations)?,
            scram_sha512: ScramCredential::new(Mechanism::ScramSha512, password, self.iterations)?,
            created_ms: now_ms(),
        };
        let info = UserInfo {
            name: record.name.clone(),
            role,
            created_ms: record.created_ms,
        };
        self.commit(AuthChange::CreateUser(record))?;
        tracing::info!(user = %name, role = role.as_str(), "user created");
        Ok(info)
    }

    /// Deletes a user with its tokens and ACLs.
    pub fn delete_user(&self, name: &str) -> Result<(), AuthError> {
        self.commit(AuthChange::DeleteUser {
            name: name.to_string(),
        })?;
        tracing::info!(user = %name, "user deleted");
        Ok(())
    }

    pub fn list_users(&self) -> Vec<UserInfo> {
        self.read()
            .users
            .iter()
            .map(|u| UserInfo {
                name: u.name.clone(),
                role: u.role,
                created_ms: u.created_ms,
            })
            .collect()
    }

    pub fn user(&self, name: &str) -> Option<UserInfo> {
        self.list_users().into_iter().find(|u| u.name == name)
    }

    pub fn role_of(&self, name: &str) -> Option<Role> {
        self.read()
            .users
            .iter()
            .find(|u| u.name == name)
            .map(|u| u.role)
    }

    /// A user's SCRAM credential for `mech` (for the Kafka exchange).
    pub fn scram_credential(&self, name: &str, mech: Mechanism) -> Option<ScramCredential> {
        self.read()
            .users
            .iter()
            .find(|u| u.name == name)
            .map(|u| u.credential(mech).clone())
    }

    /// Whether `password` is `name`'s (HTTP Basic, SASL PLAIN). An unknown user costs the
    /// same derivation as a known one.
    pub fn verify_password(&self, name: &str, password: &str) -> bool {
        let cred = self.scram_credential(name, Mechanism::ScramSha256);
        match cred {
            Some(c) => c.verify_password(Mechanism::ScramSha256, password),
            None => {
                let decoy = ScramCredential {
                    salt: vec![0; 24],
                    iterations: self.iterations,
                    stored_key: vec![0; 32],
                    server_key: vec![0; 32],
                };
                let _ = decoy.verify_password(Mechanism::ScramSha256, password);
                false
            }
        }
    }

    /// Creates a bearer token for `user`; the secret is in the result only.
    pub fn create_token(&self, user: &str, name: Option<&str>) -> Result<NewToken, AuthError> {
        let id: String = scram::random_bytes(6)?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let name = name.unwrap_or(&id).to_string();
        if !valid_name(&name) {
            return Err(AuthError::InvalidTokenName(
                "use 1 to 64 letters, digits, '.', '_', '-' or '@'",
            ));
        }
        let secret = URL_SAFE_NO_PAD.encode(scram::random_bytes(32)?);
        let record = TokenRecord {
            id: id.clone(),
            name: name.clone(),
            user: user.to_string(),
            secret_sha256: sha256_hex(secret.as_bytes()),
            created_ms: now_ms(),
        };
        let info = TokenInfo {
            id: id.clone(),
            name,
            user: user.to_string(),
            created_ms: record.created_ms,
        };
        self.commit(AuthChange::CreateToken(record))?;
        tracing::info!(user = %user, token = %id, "token created");
        Ok(NewToken {
            info,
            token: format!("{TOKEN_PREFIX}{id}_{secret}"),
        })
    }

    /// The user a bearer token belongs to, if it is a current token (constant-time
    /// comparison of the secret's hash).
    pub fn verify_token(&self, token: &str) -> Option<String> {
        let (id, secret) = token.strip_prefix(TOKEN_PREFIX)?.split_once('_')?;
        let hash = sha256_hex(secret.as_bytes());
        let data = self.read();
        let t = data.tokens.iter().find(|t| t.id == id)?;
        bool::from(hash.as_bytes().ct_eq(t.secret_sha256.as_bytes())).then(|| t.user.clone())
    }

    /// Tokens of `user`, or of everyone.
    pub fn list_tokens(&self, user: Option<&str>) -> Vec<TokenInfo> {
        self.read()
            .tokens
            .iter()
            .filter(|t| user.is_none_or(|u| t.user == u))
            .map(|t| TokenInfo {
                id: t.id.clone(),
                name: t.name.clone(),
                user: t.user.clone(),
                created_ms: t.created_ms,
            })
            .collect()
    }

    /// The token with id (or name) `key`, if `owner` (when given) owns it.
    pub fn find_token(&self, key: &str, owner: Option<&str>) -> Option<TokenInfo> {
        self.list_tokens(owner)
            .into_iter()
            .find(|t| t.id == key)
            .or_else(|| {
                let mut named = self
                    .list_tokens(owner)
                    .into_iter()
                    .filter(|t| t.name == key);
                let first = named.next()?;
                // A name shared by tokens of several users is ambiguous: use the id.
                named.next().is_none().then_some(first)
            })
    }

    /// Revokes the token with id `id`.
    pub fn revoke_token(&self, id: &str) -> Result<(), AuthError> {
        self.commit(AuthChange::RevokeToken { id: id.to_string() })?;
        tracing::info!(token = %id, "token revoked");
        Ok(())
    }

    pub fn add_acl(
        &self,
        user: &str,
        resource: AclResource,
        prefix: &str,
        allow: AclAllow,
    ) -> Result<AclRecord, AuthError> {
        let change = AuthChange::AddAcl {
            user: user.to_string(),
            resource,
            prefix: prefix.to_string(),
            allow,
        };
        match self.commit(change)? {
            AuthOutcome::AclAdded(acl) => Ok(acl),
            AuthOutcome::Done => Err(AuthError::InvalidAcl(
                "the ACL was not added (no id came back)".into(),
            )),
        }
    }

    /// ACLs of `user`, or of everyone.
    pub fn list_acls(&self, user: Option<&str>) -> Vec<AclRecord> {
        self.read()
            .acls
            .iter()
            .filter(|a| user.is_none_or(|u| a.user == u))
            .cloned()
            .collect()
    }

    pub fn remove_acl(&self, id: u64) -> Result<(), AuthError> {
        self.commit(AuthChange::RemoveAcl { id }).map(|_| ())
    }

    /// Whether `user` may perform `op` on `resource` (the module doc has the rules).
    pub fn authorize(&self, user: &str, op: Op, resource: &Resource) -> Result<(), AuthError> {
        let data = self.read();
        let forbidden = |reason: String| AuthError::Forbidden {
            user: user.to_string(),
            reason,
        };
        let Some(record) = data.users.iter().find(|u| u.name == user) else {
            return Err(forbidden("no such user".into()));
        };
        if !record.role.allows(op) {
            return Err(forbidden(format!(
                "role {} does not allow {}",
                record.role.as_str(),
                op_name(op)
            )));
        }
        if record.role == Role::Admin {
            return Ok(());
        }
        let (kind, name) = match resource {
            Resource::Topic(n) => (AclResource::Topic, n),
            Resource::Group(n) => (AclResource::Group, n),
            Resource::Cluster => return Ok(()),
        };
        let mut acls = data
            .acls
            .iter()
            .filter(|a| a.user == user && a.resource == kind)
            .peekable();
        if acls.peek().is_none() {
            return Ok(());
        }
        if acls.any(|a| name.starts_with(&a.prefix) && a.allow.covers(op)) {
            return Ok(());
        }
        let kind = match kind {
            AclResource::Topic => "topic",
            AclResource::Group => "group",
        };
        Err(forbidden(format!(
            "no ACL allows {} on {kind} '{name}'",
            op_name(op)
        )))
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Describe => "describe",
        Op::Read => "read",
        Op::Write => "write",
        Op::Admin => "admin operations",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> AuthStore {
        AuthStore::open(dir, LoginLimits::default()).unwrap()
    }

    #[test]
    fn users_survive_a_reopen_and_no_password_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        assert!(matches!(s.bootstrap_admin(None), Err(AuthError::NoUsers)));
        assert!(s.bootstrap_admin(Some("Adm1n-pass")).unwrap());
        s.create_user("alice", "alice-pw-123", Role::Reader)
            .unwrap();
        assert!(matches!(
            s.create_user("alice", "x", Role::Reader),
            Err(AuthError::UserExists(_))
        ));
        assert!(s.create_user("bad name", "x", Role::Reader).is_err());
        assert!(s.create_user("bob", "", Role::Reader).is_err());
        let text = std::fs::read_to_string(AuthStore::path_under(dir.path())).unwrap();
        assert!(!text.contains("Adm1n-pass") && !text.contains("alice-pw-123"));
        let s = store(dir.path());
        assert!(!s.bootstrap_admin(None).unwrap());
        assert!(s.verify_password("alice", "alice-pw-123"));
        assert!(!s.verify_password("alice", "alice-pw-124"));
        assert!(!s.verify_password("nobody", "alice-pw-123"));
        assert_eq!(s.role_of("admin"), Some(Role::Admin));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(AuthStore::path_under(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn tokens_verify_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.create_user("ci", "pw", Role::Writer).unwrap();
        let t = s.create_token("ci", Some("deploys")).unwrap();
        assert_eq!(s.verify_token(&t.token).as_deref(), Some("ci"));
        let mut forged = t.token.clone();
        forged.pop();
        forged.push('x');
        assert_eq!(s.verify_token(&forged), None);
        assert!(
            !std::fs::read_to_string(AuthStore::path_under(dir.path()))
                .unwrap()
                .contains(t.token.split('_').next_back().unwrap())
        );
        assert_eq!(s.find_token("deploys", Some("ci")).unwrap().id, t.info.id);
        s.revoke_token(&t.info.id).unwrap();
        assert_eq!(s.verify_token(&t.token), None);
        assert!(s.create_token("nobody", None).is_err());
    }

    #[test]
    fn roles_and_prefix_acls() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.create_user("r", "pw", Role::Reader).unwrap();
        s.create_user("w", "pw", Role::Writer).unwrap();
        s.create_user("a", "pw", Role::Admin).unwrap();
        let t = |n: &str| Resource::Topic(n.into());
        assert!(s.authorize("r", Op::Read, &t("x")).is_ok());
        assert!(s.authorize("r", Op::Write, &t("x")).is_err());
        assert!(s.authorize("w", Op::Write, &t("x")).is_ok());
        assert!(s.authorize("w", Op::Admin, &Resource::Cluster).is_err());
        assert!(s.authorize("a", Op::Admin, &t("x")).is_ok());
        assert!(s.authorize("nobody", Op::Describe, &t("x")).is_err());

        s.add_acl("w", AclResource::Topic, "orders", AclAllow::Write)
            .unwrap();
        assert!(s.authorize("w", Op::Write, &t("orders.eu")).is_ok());
        assert!(s.authorize("w", Op::Describe, &t("orders.eu")).is_ok());
        assert!(s.authorize("w", Op::Read, &t("orders.eu")).is_err());
        assert!(s.authorize("w", Op::Write, &t("payments")).is_err());
        // Groups are not limited until the user has a group ACL.
        assert!(
            s.authorize("w", Op::Read, &Resource::Group("g".into()))
                .is_ok()
        );
        let acl = s
            .add_acl("w", AclResource::Group, "app-", AclAllow::Read)
            .unwrap();
        assert!(
            s.authorize("w", Op::Read, &Resource::Group("g".into()))
                .is_err()
        );
        assert!(
            s.authorize("w", Op::Read, &Resource::Group("app-1".into()))
                .is_ok()
        );
        s.remove_acl(acl.id).unwrap();
        assert!(
            s.authorize("w", Op::Read, &Resource::Group("g".into()))
                .is_ok()
        );
        // Admins bypass ACLs.
        s.add_acl("a", AclResource::Topic, "zzz", AclAllow::Read)
            .unwrap();
        assert!(s.authorize("a", Op::Write, &t("x")).is_ok());
        // Deleting a user drops its ACLs.
        s.delete_user("w").unwrap();
        assert!(s.list_acls(Some("w")).is_empty());
    }
}

//! The node's registered user-defined functions, persisted so they come back after a restart,
//! and the artifact store that SQL `CREATE FUNCTION name WITH (ARTIFACT='…')` registers from.
//!
//! On disk (every file written to a temporary name, synced, renamed, and its directory
//! synced):
//! - `<functions>/<NAME>/module.wasm`: the component, and `<functions>/<NAME>/function.json`:
//!   name, kind, signature, `created_ms`, the module's SHA-256 and size. The module is written
//!   first; when a crash leaves a replaced module under an old `function.json` (their hashes
//!   differ), the module wins and the record is rebuilt from it at the next start.
//! - `<artifacts>/<name>.wasm`: uploaded components not (yet) registered as functions.
//!
//! Names are case-insensitive and stored in upper case (`mask` is `MASK`), match
//! `[A-Za-z_][A-Za-z0-9_]*`, are at most 100 characters, and must not be a built-in SQL
//! function's (the `reserved` list of [`FunctionRegistryConfig`]).
//!
//! [`FunctionRegistry`] validates and compiles a component when it is created (through the
//! node's [`WasmEngine`], so the compiled artifact is cached) and implements
//! [`FunctionCatalog`] for the SQL engine. Its operations block (file I/O, compilation):
//! call them from a blocking thread. It does not own SQL (parsing `CREATE FUNCTION`, type
//! checking calls) nor the HTTP API.
//!
//! On a cluster ([`FunctionRegistry::set_publisher`]) the functions are the cluster's: a
//! registration, replacement or drop made here is published ([`FunctionPublisher`]) before
//! it takes effect here and before it is answered (a refusal changes nothing here), and the
//! node's follower applies what other nodes made ([`FunctionRegistry::install`],
//! [`FunctionRegistry::uninstall`], each checking under the registry's write lock that the
//! cluster still wants it, so a change being published here is never undone by a follower
//! working from older metadata). Peers fetch modules by hash
//! ([`FunctionRegistry::module_by_hash`]; a module being published is served from memory
//! until it is on disk).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AggregateUdf, FunctionCatalog, ScalarUdf, UdfKind, UdfSignature, UdfType};
use crate::catalog::FunctionPublisher;
use crate::error::ErrorKind;
use crate::host::{Interrupt, ProcessorError};
use crate::wasm::{UdfLimits, UdfModule, WasmEngine, WasmError, check_component_header};

const RECORD_FILE: &str = "function.json";
const MODULE_FILE: &str = "module.wasm";
/// Longest function or artifact name.
pub const MAX_NAME_LEN: usize = 100;

/// Where functions and artifacts live, which names are taken, and the UDF sandbox limits.
#[derive(Debug, Clone)]
pub struct FunctionRegistryConfig {
    /// Registered functions (`<data_dir>/functions`).
    pub dir: PathBuf,
    /// Uploaded artifacts (`<data_dir>/artifacts`).
    pub artifacts_dir: PathBuf,
    /// Built-in SQL function names (any case) that no UDF may take.
    pub reserved: Vec<String>,
    /// Limits of every function's instances; `max_module_bytes` also caps artifacts.
    pub limits: UdfLimits,
}

impl FunctionRegistryConfig {
    /// `<data_dir>/functions` and `<data_dir>/artifacts`, no reserved names, default limits.
    pub fn under(data_dir: &Path) -> FunctionRegistryConfig {
        FunctionRegistryConfig {
            dir: data_dir.join("functions"),
            artifacts_dir: data_dir.join("artifacts"),
            reserved: Vec::new(),
            limits: UdfLimits::default(),
        }
    }

    /// Adds built-in names that UDFs may not take.
    pub fn with_reserved<S: AsRef<str>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.reserved
            .extend(names.into_iter().map(|n| n.as_ref().to_string()));
        self
    }
}

/// A registered function, as listed and as persisted in `function.json` (without `error`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionInfo {
    /// Upper case.
    pub name: String,
    pub kind: UdfKind,
    pub signature: UdfSignature,
    /// When it was created (or last replaced), ms since the epoch.
    pub created_ms: i64,
    /// SHA-256 of the module, hex.
    pub sha256: String,
    /// Size of the module.
    pub module_bytes: u64,
    /// Set when the function is registered but could not be loaded at start (it cannot be
    /// called until it is replaced or the cause is fixed). When `function.json` itself was
    /// unreadable, `kind` and `signature` are placeholders (scalar, `() -> any`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FunctionInfo {
    /// `NAME(STRING, BIGINT) -> DOUBLE`, as `SHOW FUNCTIONS` prints it.
    pub fn sql_signature(&self) -> String {
        let params: Vec<&str> = self.signature.params.iter().map(|t| t.sql_name()).collect();
        format!(
            "{}({}) -> {}",
            self.name,
            params.join(", "),
            self.signature.returns.sql_name()
        )
    }
}

/// An uploaded artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    pub name: String,
    pub bytes: u64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
}

/// Why a registry operation failed. Every variant has a stable [`code`](Self::code).
#[derive(Debug, Clone, thiserror::Error)]
pub enum FunctionError {
    #[error("invalid function name '{name}': {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("'{0}' is the name of a built-in function")]
    Reserved(String),
    #[error("function '{0}' already exists (replace it to change it)")]
    Exists(String),
    #[error("function '{0}' does not exist")]
    NotFound(String),
    #[error("invalid artifact name '{name}': {reason}")]
    InvalidArtifactName { name: String, reason: &'static str },
    #[error("artifact '{0}' does not exist")]
    UnknownArtifact(String),
    /// The uploaded component was rejected (not a component, wrong world, too large, does
    /// not compile, `signature()` failed).
    #[error("invalid function module: {0}")]
    InvalidModule(WasmError),
    #[error("function '{name}' is registered but could not be loaded: {reason}")]
    Unavailable { name: String, reason: String },
    #[error("I/O error on {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("corrupt function file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The Wasm engine failed for a reason that is not the module's fault.
    #[error("wasm engine: {0}")]
    Engine(WasmError),
    /// On a cluster: the change could not be published to the cluster's catalog (no
    /// quorum, refused); nothing changed on this node.
    #[error("the cluster did not take the change: {0}")]
    Cluster(String),
}

impl FunctionError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            FunctionError::InvalidName { .. } => "invalid_function_name",
            FunctionError::Reserved(_) => "reserved_function_name",
            FunctionError::Exists(_) => "function_exists",
            FunctionError::NotFound(_) => "unknown_function",
            FunctionError::InvalidArtifactName { .. } => "invalid_artifact_name",
            FunctionError::UnknownArtifact(_) => "unknown_artifact",
            FunctionError::InvalidModule(e) => e.code(),
            FunctionError::Unavailable { .. } => "function_unavailable",
            FunctionError::Io { .. } => "io_error",
            FunctionError::Corrupt { .. } => "corrupt_data",
            FunctionError::Engine(e) => e.code(),
            FunctionError::Cluster(_) => "cluster_unavailable",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            FunctionError::InvalidName { .. }
            | FunctionError::Reserved(_)
            | FunctionError::InvalidArtifactName { .. } => ErrorKind::InvalidInput,
            FunctionError::InvalidModule(WasmError::TooLarge { .. }) => ErrorKind::TooLarge,
            FunctionError::InvalidModule(_) => ErrorKind::InvalidInput,
            FunctionError::Exists(_) => ErrorKind::Conflict,
            FunctionError::NotFound(_) | FunctionError::UnknownArtifact(_) => ErrorKind::NotFound,
            FunctionError::Unavailable { .. }
            | FunctionError::Io { .. }
            | FunctionError::Corrupt { .. }
            | FunctionError::Engine(_) => ErrorKind::Internal,
            FunctionError::Cluster(_) => ErrorKind::Unavailable,
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> FunctionError + '_ {
    move |e| FunctionError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn module_error(e: WasmError) -> FunctionError {
    if e.is_user_error() {
        FunctionError::InvalidModule(e)
    } else {
        FunctionError::Engine(e)
    }
}

/// Checks a function name and returns it in upper case.
pub fn normalize_name(name: &str) -> Result<String, FunctionError> {
    let invalid = |reason| FunctionError::InvalidName {
        name: name.chars().take(MAX_NAME_LEN + 10).collect(),
        reason,
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return Err(invalid("it is empty")),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            return Err(invalid("it must start with a letter or '_'"));
        }
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(invalid("it may contain only ASCII letters, digits and '_'"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("it is longer than 100 characters"));
    }
    Ok(name.to_ascii_uppercase())
}

/// Checks an artifact name (case-sensitive): `[A-Za-z0-9_][A-Za-z0-9_.-]*`, at most 100.
pub fn check_artifact_name(name: &str) -> Result<(), FunctionError> {
    let invalid = |reason| FunctionError::InvalidArtifactName {
        name: name.chars().take(MAX_NAME_LEN + 10).collect(),
        reason,
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return Err(invalid("it is empty")),
        Some(c) if !(c.is_ascii_alphanumeric() || c == '_') => {
            return Err(invalid("it must start with a letter, a digit or '_'"));
        }
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return Err(invalid(
            "it may contain only ASCII letters, digits, '_', '-' and '.'",
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("it is longer than 100 characters"));
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Crash-safe replacement of a whole file (`weir_broker::fsutil`).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FunctionError> {
    weir_broker::fsutil::write_atomic(path, bytes).map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<(), FunctionError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// A function in memory: what is listed, and the loaded module (none if loading failed).
struct Entry {
    info: FunctionInfo,
    module: Option<UdfModule>,
}

/// The registered functions of a node (see the module docs). Share it as
/// `Arc<FunctionRegistry>`; the SQL engine sees it as `Arc<dyn FunctionCatalog>`.
pub struct FunctionRegistry {
    dir: PathBuf,
    artifacts_dir: PathBuf,
    reserved: HashSet<String>,
    limits: UdfLimits,
    engine: WasmEngine,
    entries: RwLock<BTreeMap<String, Entry>>,
    /// Serializes create/delete (a create compiles outside the `entries` lock).
    writes: Mutex<()>,
    /// On a cluster: where changes are published.
    publisher: OnceLock<Arc<dyn FunctionPublisher>>,
    /// Modules being published (by `sha256:` hash), served to peers until they are on disk.
    publishing: Mutex<BTreeMap<String, Bytes>>,
}

impl std::fmt::Debug for FunctionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionRegistry")
            .field("dir", &self.dir)
            .field("artifacts_dir", &self.artifacts_dir)
            .finish()
    }
}

impl FunctionRegistry {
    /// Opens (creating) the directories and loads every persisted function. A function that
    /// cannot be loaded is listed with its [`error`](FunctionInfo::error); only an
    /// unreadable directory fails the open.
    pub fn open(
        config: FunctionRegistryConfig,
        engine: WasmEngine,
    ) -> Result<FunctionRegistry, FunctionError> {
        std::fs::create_dir_all(&config.dir).map_err(io(&config.dir))?;
        std::fs::create_dir_all(&config.artifacts_dir).map_err(io(&config.artifacts_dir))?;
        let registry = FunctionRegistry {
            reserved: config
                .reserved
                .iter()
                .map(|n| n.to_ascii_uppercase())
                .collect(),
            dir: config.dir,
            artifacts_dir: config.artifacts_dir,
            limits: config.limits,
            engine,
            entries: RwLock::new(BTreeMap::new()),
            writes: Mutex::new(()),
            publisher: OnceLock::new(),
            publishing: Mutex::new(BTreeMap::new()),
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&registry.dir).map_err(io(&registry.dir))? {
            let entry = entry.map_err(io(&registry.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().join(RECORD_FILE).is_file() {
                names.push(name);
            }
        }
        let mut loaded = BTreeMap::new();
        for name in names {
            let entry = registry.load_persisted(&name);
            match &entry.info.error {
                None => tracing::info!(function = %name, signature = %entry.info.sql_signature(),
                    kind = ?entry.info.kind, "function loaded"),
                Some(e) => tracing::warn!(function = %name, error = %e,
                    "function could not be loaded; it is listed but cannot be called"),
            }
            loaded.insert(entry.info.name.clone(), entry);
        }
        *registry.write_entries() = loaded;
        Ok(registry)
    }

    fn read_entries(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        // A poisoned lock only means a panic elsewhere: the map itself is consistent.
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_entries(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads `<dir>/<dir_name>`; never fails (a failure becomes the entry's error).
    fn load_persisted(&self, dir_name: &str) -> Entry {
        let dir = self.dir.join(dir_name);
        let placeholder = |error: String| Entry {
            info: FunctionInfo {
                name: dir_name.to_string(),
                kind: UdfKind::Scalar,
                signature: UdfSignature {
                    params: Vec::new(),
                    returns: UdfType::Any,
                },
                created_ms: 0,
                sha256: String::new(),
                module_bytes: 0,
                error: Some(error),
            },
            module: None,
        };
        let record_path = dir.join(RECORD_FILE);
        let record: FunctionInfo = match std::fs::read(&record_path)
            .map_err(|e| e.to_string())
            .and_then(|raw| serde_json::from_slice(&raw).map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(e) => {
                return placeholder(format!("cannot read {}: {e}", record_path.display()));
            }
        };
        let mut info = FunctionInfo {
            error: None,
            ..record
        };
        let fail = |mut info: FunctionInfo, error: String| {
            info.error = Some(error);
            Entry { info, module: None }
        };
        if normalize_name(&info.name).ok().as_deref() != Some(dir_name) {
            let error = format!(
                "its function.json names '{}' but its directory is '{dir_name}'",
                info.name
            );
            return fail(info, error);
        }
        if self.reserved.contains(&info.name) {
            return fail(
                info,
                "its name is now the name of a built-in function: delete it and register it \
                 under another name"
                    .into(),
            );
        }
        let module_path = dir.join(MODULE_FILE);
        let module = match std::fs::read(&module_path) {
            Ok(m) => m,
            Err(e) => return fail(info, format!("cannot read {}: {e}", module_path.display())),
        };
        let sha = sha256_hex(&module);
        let loaded = match self.engine.load_udf(&info.name, &module, &self.limits) {
            Ok(m) => m,
            Err(e) => return fail(info, e.to_string()),
        };
        if sha != info.sha256 || loaded.kind() != info.kind || loaded.signature() != &info.signature
        {
            // The module was replaced but the record was not (a crash in between): the
            // module is the truth.
            tracing::warn!(function = %info.name,
                "function.json does not describe module.wasm; rewriting it from the module");
            info.sha256 = sha;
            info.module_bytes = module.len() as u64;
            info.kind = loaded.kind();
            info.signature = loaded.signature().clone();
            if let Err(e) = self.write_record(&dir, &info) {
                tracing::warn!(function = %info.name, error = %e, "cannot rewrite function.json");
            }
        }
        Entry {
            info,
            module: Some(loaded),
        }
    }

    fn write_record(&self, dir: &Path, info: &FunctionInfo) -> Result<(), FunctionError> {
        let record = FunctionInfo {
            error: None,
            ..info.clone()
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| FunctionError::Corrupt {
            path: dir.join(RECORD_FILE),
            reason: e.to_string(),
        })?;
        write_atomic(&dir.join(RECORD_FILE), &json)
    }

    fn check_name(&self, name: &str) -> Result<String, FunctionError> {
        let upper = normalize_name(name)?;
        if self.reserved.contains(&upper) {
            return Err(FunctionError::Reserved(upper));
        }
        Ok(upper)
    }

    /// Makes the functions the cluster's: every change made here is published first.
    pub fn set_publisher(&self, publisher: Arc<dyn FunctionPublisher>) {
        let _ = self.publisher.set(publisher);
    }

    /// Registers `module` as function `name`: validates and compiles it, calls its
    /// `signature()`, publishes it (on a cluster), persists it. Without `replace`, an existing
    /// function of that name is an error; with it, the function is replaced (instances
    /// already handed out keep the old code).
    pub fn create(
        &self,
        name: &str,
        module: Bytes,
        replace: bool,
    ) -> Result<FunctionInfo, FunctionError> {
        let name = self.check_name(name)?;
        let _writing = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        if !replace && self.read_entries().contains_key(&name) {
            return Err(FunctionError::Exists(name));
        }
        let (info, loaded) = self.compile(&name, &module, now_ms())?;
        if let Some(publisher) = self.publisher.get() {
            let hash = format!("sha256:{}", info.sha256);
            self.lock_publishing().insert(hash.clone(), module.clone());
            let published = publisher.registered(&info, replace);
            if let Err(e) = published {
                self.lock_publishing().remove(&hash);
                return Err(e);
            }
            let stored = self.store(&info, &module, loaded);
            self.lock_publishing().remove(&hash);
            stored?;
        } else {
            self.store(&info, &module, loaded)?;
        }
        tracing::info!(function = %name, signature = %info.sql_signature(), kind = ?info.kind,
            replaced = replace, "function registered");
        Ok(info)
    }

    fn lock_publishing(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
        self.publishing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Validates and compiles `module` as function `name` (upper case, checked).
    fn compile(
        &self,
        name: &str,
        module: &[u8],
        created_ms: i64,
    ) -> Result<(FunctionInfo, UdfModule), FunctionError> {
        let loaded = self
            .engine
            .load_udf(name, module, &self.limits)
            .map_err(module_error)?;
        let info = FunctionInfo {
            name: name.to_string(),
            kind: loaded.kind(),
            signature: loaded.signature().clone(),
            created_ms,
            sha256: sha256_hex(module),
            module_bytes: module.len() as u64,
            error: None,
        };
        Ok((info, loaded))
    }

    /// Persists a compiled function and makes it callable. The `writes` lock is held.
    fn store(
        &self,
        info: &FunctionInfo,
        module: &[u8],
        loaded: UdfModule,
    ) -> Result<(), FunctionError> {
        let dir = self.dir.join(&info.name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        sync_dir(&self.dir)?;
        // Module first: a record always describes a module that was completely written.
        write_atomic(&dir.join(MODULE_FILE), module)?;
        self.write_record(&dir, info)?;
        self.write_entries().insert(
            info.name.clone(),
            Entry {
                info: info.clone(),
                module: Some(loaded),
            },
        );
        Ok(())
    }

    /// Whether this node's copy of `name` is the module `sha256` (hex) created at
    /// `created_ms`, loaded.
    pub fn has(&self, name: &str, sha256: &str, created_ms: i64) -> bool {
        self.read_entries().get(name).is_some_and(|e| {
            e.info.sha256 == sha256 && e.info.created_ms == created_ms && e.info.error.is_none()
        })
    }

    /// Cluster: registers (or replaces) function `name` as another node made it — module
    /// and creation time — without publishing. `wanted` is asked under the write lock
    /// whether the cluster still has this version (`false`: nothing is done). Returns
    /// whether it was installed.
    pub fn install(
        &self,
        name: &str,
        module: Bytes,
        created_ms: i64,
        wanted: impl FnOnce() -> bool,
    ) -> Result<bool, FunctionError> {
        let name = self.check_name(name)?;
        let _writing = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let sha = sha256_hex(&module);
        if self.has(&name, &sha, created_ms) || !wanted() {
            return Ok(false);
        }
        let (info, loaded) = self.compile(&name, &module, created_ms)?;
        self.store(&info, &module, loaded)?;
        tracing::info!(function = %name, signature = %info.sql_signature(),
            "function installed from the cluster's catalog");
        Ok(true)
    }

    /// Cluster: forgets function `name` the cluster dropped, without publishing, if `gone`
    /// (asked under the write lock) still says so. Returns whether it was removed.
    pub fn uninstall(
        &self,
        name: &str,
        gone: impl FnOnce() -> bool,
    ) -> Result<bool, FunctionError> {
        let _writing = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        if !self.read_entries().contains_key(name) || !gone() {
            return Ok(false);
        }
        self.remove_files(name)?;
        tracing::info!(function = %name, "function dropped by the cluster's catalog");
        Ok(true)
    }

    /// The module named `hash` (`sha256:<hex>`) if a function here has it (may read disk).
    pub fn module_by_hash(&self, hash: &str) -> Option<Bytes> {
        if let Some(m) = self.lock_publishing().get(hash) {
            return Some(m.clone());
        }
        let hex = hash.strip_prefix("sha256:")?;
        let name = self
            .read_entries()
            .values()
            .find(|e| e.info.sha256 == hex && e.info.error.is_none())
            .map(|e| e.info.name.clone())?;
        let module = std::fs::read(self.dir.join(&name).join(MODULE_FILE)).ok()?;
        (sha256_hex(&module) == hex).then(|| Bytes::from(module))
    }

    /// Registers the artifact `artifact` (see [`put_artifact`](Self::put_artifact)) as
    /// function `name`. On a cluster the artifact is the cluster's of that name, wherever it
    /// was uploaded: this node's copy when it has those bytes, else fetched from a peer by
    /// hash (and kept here).
    pub fn create_from_artifact(
        &self,
        name: &str,
        artifact: &str,
        replace: bool,
    ) -> Result<FunctionInfo, FunctionError> {
        let module = match self.publisher.get() {
            Some(p) => self.cluster_artifact(&**p, artifact)?,
            None => self.read_artifact(artifact)?,
        };
        self.create(name, module, replace)
    }

    /// The cluster's artifact `name`: the local file if it has the bytes the cluster names.
    fn cluster_artifact(
        &self,
        publisher: &dyn FunctionPublisher,
        name: &str,
    ) -> Result<Bytes, FunctionError> {
        check_artifact_name(name)?;
        let wanted = publisher
            .artifact_sha256(name)
            .ok_or_else(|| FunctionError::UnknownArtifact(name.to_string()))?;
        if let Ok(local) = self.read_artifact(name)
            && sha256_hex(&local) == wanted
        {
            return Ok(local);
        }
        let bytes = publisher.fetch_module(&wanted)?;
        // The fetched bytes passed the hash check; kept so the next use is local.
        if let Err(e) = write_atomic(&self.artifact_path(name), &bytes) {
            tracing::warn!(artifact = name, "a fetched artifact could not be kept: {e}");
        }
        Ok(bytes)
    }

    /// An artifact stored here whose SHA-256 is `sha256` (hex), for peers (reads and hashes
    /// each artifact file until one matches: artifacts are few and bounded in size).
    pub fn artifact_by_hash(&self, sha256: &str) -> Option<Bytes> {
        let dir = std::fs::read_dir(&self.artifacts_dir).ok()?;
        dir.filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .find(|b| sha256_hex(b) == sha256)
            .map(Bytes::from)
    }

    /// Every registered function, by name.
    pub fn list(&self) -> Vec<FunctionInfo> {
        self.read_entries()
            .values()
            .map(|e| e.info.clone())
            .collect()
    }

    /// One function (any case).
    pub fn get(&self, name: &str) -> Result<FunctionInfo, FunctionError> {
        let upper = normalize_name(name)?;
        self.read_entries()
            .get(&upper)
            .map(|e| e.info.clone())
            .ok_or(FunctionError::NotFound(upper))
    }

    /// The loaded module of a function (fails if it is unknown or could not be loaded).
    pub fn module(&self, name: &str) -> Result<UdfModule, FunctionError> {
        let upper = normalize_name(name)?;
        let entries = self.read_entries();
        let entry = entries
            .get(&upper)
            .ok_or_else(|| FunctionError::NotFound(upper.clone()))?;
        entry
            .module
            .clone()
            .ok_or_else(|| FunctionError::Unavailable {
                name: upper,
                reason: entry.info.error.clone().unwrap_or_default(),
            })
    }

    /// Forgets a function and deletes its files (on a cluster: publishes the drop first).
    pub fn delete(&self, name: &str) -> Result<(), FunctionError> {
        let upper = normalize_name(name)?;
        let _writing = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        if !self.read_entries().contains_key(&upper) {
            return Err(FunctionError::NotFound(upper));
        }
        if let Some(publisher) = self.publisher.get() {
            publisher.deleted(&upper)?;
        }
        self.remove_files(&upper)?;
        tracing::info!(function = %upper, "function deleted");
        Ok(())
    }

    /// Removes function `upper`'s files and entry. The `writes` lock is held.
    fn remove_files(&self, upper: &str) -> Result<(), FunctionError> {
        let dir = self.dir.join(upper);
        // The record goes first: without it the directory is ignored at start.
        let record = dir.join(RECORD_FILE);
        match std::fs::remove_file(&record) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&record)(e)),
        }
        self.write_entries().remove(upper);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e,
                "function deleted, but its directory could not be removed"),
        }
        Ok(())
    }

    fn artifact_path(&self, name: &str) -> PathBuf {
        self.artifacts_dir.join(format!("{name}.wasm"))
    }

    /// Stores an artifact (replacing one of the same name). It must look like a component
    /// and be no larger than the UDF module limit; it is compiled only when a function is
    /// created from it. On a cluster the name then points at these bytes at every node
    /// (a refusal to publish leaves the file here, named only locally).
    pub fn put_artifact(&self, name: &str, bytes: &[u8]) -> Result<ArtifactInfo, FunctionError> {
        check_artifact_name(name)?;
        let size = bytes.len() as u64;
        if size > self.limits.max_module_bytes {
            return Err(FunctionError::InvalidModule(WasmError::TooLarge {
                size,
                limit: self.limits.max_module_bytes,
            }));
        }
        check_component_header(bytes).map_err(FunctionError::InvalidModule)?;
        write_atomic(&self.artifact_path(name), bytes)?;
        let info = ArtifactInfo {
            name: name.to_string(),
            bytes: size,
            sha256: sha256_hex(bytes),
        };
        // On a cluster, stored first (so peers can fetch it), then named cluster-wide.
        if let Some(p) = self.publisher.get() {
            p.artifact_put(&info)?;
        }
        tracing::info!(artifact = name, bytes = size, "artifact stored");
        Ok(info)
    }

    fn read_artifact(&self, name: &str) -> Result<Bytes, FunctionError> {
        check_artifact_name(name)?;
        let path = self.artifact_path(name);
        match std::fs::read(&path) {
            Ok(b) => Ok(Bytes::from(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(FunctionError::UnknownArtifact(name.to_string()))
            }
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Deletes an artifact (functions created from it are not affected).
    pub fn delete_artifact(&self, name: &str) -> Result<(), FunctionError> {
        check_artifact_name(name)?;
        let path = self.artifact_path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(FunctionError::UnknownArtifact(name.to_string()))
            }
            Err(e) => Err(io(&path)(e)),
        }
    }
}

impl FunctionCatalog for FunctionRegistry {
    /// Loaded functions only: one that failed to load is not callable.
    fn lookup(&self, name: &str) -> Option<(UdfKind, UdfSignature)> {
        let upper = normalize_name(name).ok()?;
        let entries = self.read_entries();
        let entry = entries.get(&upper)?;
        entry.module.as_ref()?;
        Some((entry.info.kind, entry.info.signature.clone()))
    }

    fn scalar(
        &self,
        name: &str,
        stop: Option<&Interrupt>,
    ) -> Result<Box<dyn ScalarUdf>, ProcessorError> {
        self.module(name)
            .map_err(|e| ProcessorError::Host(e.to_string()))?
            .scalar_until(stop)
    }

    fn aggregate(
        &self,
        name: &str,
        stop: Option<&Interrupt>,
    ) -> Result<Box<dyn AggregateUdf>, ProcessorError> {
        self.module(name)
            .map_err(|e| ProcessorError::Host(e.to_string()))?
            .aggregate_until(stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udf::UdfValue;
    use crate::wasm::WasmConfig;
    use std::sync::OnceLock;

    /// A component built by scripts/build-guests.sh.
    fn guest(name: &str) -> Bytes {
        let dir = std::env::var_os("WEIR_GUESTS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/guests"));
        let path = dir.join(format!("{name}.wasm"));
        match std::fs::read(&path) {
            Ok(b) => Bytes::from(b),
            Err(e) => panic!(
                "guest component {} is missing ({e}): run scripts/build-guests.sh first",
                path.display()
            ),
        }
    }

    /// One engine for the tests (its cache under target/, shared with engine/tests).
    fn engine() -> WasmEngine {
        static ENGINE: OnceLock<WasmEngine> = OnceLock::new();
        ENGINE
            .get_or_init(|| {
                let dir =
                    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-wasm-cache");
                let mut config = WasmConfig::new(dir);
                config.max_instances = 32;
                config.max_memory_bytes = 512 << 20;
                WasmEngine::new(config).unwrap()
            })
            .clone()
    }

    fn open(dir: &Path) -> FunctionRegistry {
        let config = FunctionRegistryConfig::under(dir).with_reserved(["upper", "COUNT"]);
        FunctionRegistry::open(config, engine()).unwrap()
    }

    fn text(s: &str) -> UdfValue {
        UdfValue::Text(s.into())
    }

    #[test]
    fn names_are_checked_and_upper_cased() {
        assert_eq!(normalize_name("mask").unwrap(), "MASK");
        assert_eq!(normalize_name("_My_fn2").unwrap(), "_MY_FN2");
        for bad in ["", "2x", "a-b", "a b", "é", "../x", "a.b"] {
            let e = normalize_name(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_function_name", "{bad}");
        }
        assert!(normalize_name(&"a".repeat(100)).is_ok());
        assert!(normalize_name(&"a".repeat(101)).is_err());
        check_artifact_name("mask-1.2_x").unwrap();
        for bad in ["", ".hidden", "a/b", "..", "a b"] {
            assert_eq!(
                check_artifact_name(bad).unwrap_err().code(),
                "invalid_artifact_name",
                "{bad}"
            );
        }
    }

    /// A cluster's catalog as a publisher sees it: it refuses while `refuse` is set, else
    /// records what was published.
    #[derive(Default)]
    struct FakeCluster {
        refuse: std::sync::atomic::AtomicBool,
        published: Mutex<Vec<String>>,
        /// Artifact names → SHA-256 (the metadata's).
        artifacts: Mutex<BTreeMap<String, String>>,
        /// The node peers' blobs come from.
        peer: OnceLock<Arc<FunctionRegistry>>,
    }

    impl FunctionPublisher for FakeCluster {
        fn registered(&self, info: &FunctionInfo, replace: bool) -> Result<(), FunctionError> {
            if self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(FunctionError::Cluster("no quorum".into()));
            }
            let mut p = self.published.lock().unwrap();
            p.push(format!("+{}:{}:{replace}", info.name, info.sha256));
            Ok(())
        }

        fn deleted(&self, name: &str) -> Result<(), FunctionError> {
            if self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(FunctionError::Cluster("no quorum".into()));
            }
            self.published.lock().unwrap().push(format!("-{name}"));
            Ok(())
        }

        fn artifact_put(&self, info: &ArtifactInfo) -> Result<(), FunctionError> {
            if self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(FunctionError::Cluster("no quorum".into()));
            }
            let mut a = self.artifacts.lock().unwrap();
            a.insert(info.name.clone(), info.sha256.clone());
            Ok(())
        }

        fn artifact_sha256(&self, name: &str) -> Option<String> {
            self.artifacts.lock().unwrap().get(name).cloned()
        }

        fn fetch_module(&self, sha256: &str) -> Result<Bytes, FunctionError> {
            let peer = self.peer.get().expect("a peer");
            let bytes = peer
                .artifact_by_hash(sha256)
                .ok_or_else(|| FunctionError::Cluster("no node has it".into()))?;
            assert_eq!(sha256_hex(&bytes), sha256);
            Ok(bytes)
        }
    }

    /// An artifact uploaded at one node is the cluster's: another node registers a function
    /// from it (fetching the bytes by hash and keeping them), and a later upload of the name
    /// at the first node is what the name means everywhere.
    #[test]
    fn an_artifact_uploaded_at_one_node_registers_functions_at_another() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (r1, r2) = (Arc::new(open(d1.path())), open(d2.path()));
        let cluster = Arc::new(FakeCluster::default());
        let _ = cluster.peer.set(r1.clone());
        r1.set_publisher(cluster.clone());
        r2.set_publisher(cluster.clone());
        let e = r2.create_from_artifact("m", "mask", false).unwrap_err();
        assert_eq!(e.code(), "unknown_artifact");
        r1.put_artifact("mask", &guest("udf-mask")).unwrap();
        let f = r2.create_from_artifact("m", "mask", false).unwrap();
        assert_eq!(f.sha256, sha256_hex(&guest("udf-mask")));
        assert!(d2.path().join("artifacts/mask.wasm").exists(), "not kept");
        // Replaced at node 1: node 2's kept copy is stale and not used.
        r1.put_artifact("mask", &guest("udf-geomean")).unwrap();
        let g = r2.create_from_artifact("s", "mask", false).unwrap();
        assert_eq!(g.sha256, sha256_hex(&guest("udf-geomean")));
        // Refused by the cluster: the upload fails (the file stays local, unnamed there).
        cluster
            .refuse
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let e = r1.put_artifact("other", &guest("udf-mask")).unwrap_err();
        assert_eq!(e.code(), "cluster_unavailable");
        cluster
            .refuse
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let e = r2.create_from_artifact("o", "other", false).unwrap_err();
        assert_eq!(e.code(), "unknown_artifact");
    }

    #[test]
    fn on_a_cluster_changes_are_published_first_and_followed_under_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let r = open(dir.path());
        let cluster = Arc::new(FakeCluster::default());
        r.set_publisher(cluster.clone());
        // Refused by the cluster: nothing changes here.
        cluster
            .refuse
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let e = r.create("mask", guest("udf-mask"), false).unwrap_err();
        assert_eq!(
            (e.code(), e.kind()),
            ("cluster_unavailable", ErrorKind::Unavailable)
        );
        assert!(r.list().is_empty());
        assert!(!dir.path().join("functions/MASK").exists());
        cluster
            .refuse
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let info = r.create("mask", guest("udf-mask"), false).unwrap();
        let hash = format!("sha256:{}", info.sha256);
        assert_eq!(
            *cluster.published.lock().unwrap(),
            vec![format!("+MASK:{}:false", info.sha256)]
        );
        // Peers get the module by its hash.
        assert_eq!(r.module_by_hash(&hash), Some(guest("udf-mask")));
        assert_eq!(r.module_by_hash("sha256:00"), None);
        assert!(r.has("MASK", &info.sha256, info.created_ms));
        // A drop the cluster refuses keeps the function.
        cluster
            .refuse
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(r.delete("mask").unwrap_err().code(), "cluster_unavailable");
        assert!(r.get("mask").is_ok());
        cluster
            .refuse
            .store(false, std::sync::atomic::Ordering::SeqCst);

        // What another node made is installed without publishing, only if the cluster still
        // wants it; installing what is here already does nothing.
        let published = cluster.published.lock().unwrap().len();
        assert!(
            !r.install("geomean", guest("udf-geomean"), 7, || false)
                .unwrap()
        );
        assert!(r.get("geomean").is_err());
        assert!(
            r.install("geomean", guest("udf-geomean"), 7, || true)
                .unwrap()
        );
        let g = r.get("geomean").unwrap();
        assert_eq!((g.kind, g.created_ms), (UdfKind::Aggregate, 7));
        assert!(
            !r.install("geomean", guest("udf-geomean"), 7, || true)
                .unwrap()
        );
        // Another version of it (another creation time) replaces it.
        assert!(
            r.install("geomean", guest("udf-geomean"), 8, || true)
                .unwrap()
        );
        assert_eq!(r.get("geomean").unwrap().created_ms, 8);
        // Dropped by the cluster: removed only if the cluster still says so.
        assert!(!r.uninstall("GEOMEAN", || false).unwrap());
        assert!(r.uninstall("GEOMEAN", || true).unwrap());
        assert!(r.get("geomean").is_err());
        assert!(!dir.path().join("functions/GEOMEAN").exists());
        assert!(!r.uninstall("GEOMEAN", || true).unwrap());
        assert_eq!(cluster.published.lock().unwrap().len(), published);
        // A drop made here is published.
        r.delete("mask").unwrap();
        assert_eq!(cluster.published.lock().unwrap().last().unwrap(), "-MASK");
    }

    #[test]
    fn functions_are_created_listed_called_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let r = open(dir.path());
        let info = r.create("mask", guest("udf-mask"), false).unwrap();
        assert_eq!(info.name, "MASK");
        assert_eq!(info.kind, UdfKind::Scalar);
        assert_eq!(info.sql_signature(), "MASK(STRING) -> STRING");
        assert_eq!(info.module_bytes, guest("udf-mask").len() as u64);
        assert_eq!(info.sha256.len(), 64);
        assert!(dir.path().join("functions/MASK/module.wasm").is_file());
        assert!(dir.path().join("functions/MASK/function.json").is_file());

        let e = r.create("Mask", guest("udf-mask"), false).unwrap_err();
        assert_eq!(e.code(), "function_exists");
        assert_eq!(e.kind(), ErrorKind::Conflict);
        let e = r.create("upper", guest("udf-mask"), false).unwrap_err();
        assert_eq!(e.code(), "reserved_function_name");
        let e = r.create("count", guest("udf-mask"), false).unwrap_err();
        assert_eq!(e.code(), "reserved_function_name");

        let g = r.create("geomean", guest("udf-geomean"), false).unwrap();
        assert_eq!(g.kind, UdfKind::Aggregate);
        assert_eq!(
            r.list().iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["GEOMEAN", "MASK"]
        );
        assert_eq!(r.get("mAsK").unwrap(), info);
        assert_eq!(r.get("nope").unwrap_err().code(), "unknown_function");

        // Through the catalog, as SQL sees it.
        let catalog: &dyn FunctionCatalog = &r;
        assert_eq!(
            catalog.lookup("mask"),
            Some((UdfKind::Scalar, info.signature.clone()))
        );
        assert_eq!(catalog.lookup("nope"), None);
        let mut mask = catalog.scalar("MASK", None).unwrap();
        assert_eq!(
            mask.call(&[vec![text("123456")]]).unwrap(),
            vec![text("**3456")]
        );
        assert!(catalog.aggregate("mask", None).is_err());
        let mut geo = catalog.aggregate("geomean", None).unwrap();
        let s = geo.init().unwrap();
        let s = geo
            .accumulate(s, &[vec![UdfValue::Float(2.0)], vec![UdfValue::Float(8.0)]])
            .unwrap();
        assert_eq!(geo.finish(&s).unwrap(), UdfValue::Float(4.0));

        // Replace: a different module under the same name.
        let e = r.create("mask", guest("udf-trap"), false).unwrap_err();
        assert_eq!(e.code(), "function_exists");
        let replaced = r.create("mask", guest("udf-trap"), true).unwrap();
        assert_eq!(replaced.signature.params, vec![UdfType::Int]);
        // The instance made before keeps the old code.
        assert_eq!(
            mask.call(&[vec![text("abcde")]]).unwrap(),
            vec![text("*bcde")]
        );

        r.delete("MASK").unwrap();
        assert_eq!(r.delete("mask").unwrap_err().code(), "unknown_function");
        assert!(!dir.path().join("functions/MASK").exists());
        assert!(catalog.scalar("mask", None).is_err());
        assert_eq!(r.list().len(), 1);
    }

    #[test]
    fn invalid_modules_are_rejected_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let r = open(dir.path());
        let e = r
            .create("x", Bytes::from_static(b"nope"), false)
            .unwrap_err();
        assert_eq!(e.code(), "not_a_component");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = r.create("x", guest("uppercase"), false).unwrap_err();
        assert_eq!(e.code(), "wrong_world");
        assert!(e.to_string().contains("processor"), "{e}");
        let e = r.create("x", guest("wrong-world"), false).unwrap_err();
        assert_eq!(e.code(), "wrong_world");
        let e = r.create("1x", guest("udf-mask"), false).unwrap_err();
        assert_eq!(e.code(), "invalid_function_name");
        assert!(r.list().is_empty());
        assert!(!dir.path().join("functions/X").exists());

        let small = FunctionRegistryConfig {
            limits: UdfLimits {
                max_module_bytes: 1000,
                ..UdfLimits::default()
            },
            ..FunctionRegistryConfig::under(&dir.path().join("small"))
        };
        let r = FunctionRegistry::open(small, engine()).unwrap();
        let e = r.create("x", guest("udf-mask"), false).unwrap_err();
        assert_eq!(e.code(), "module_too_large");
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        let e = r.put_artifact("x", &guest("udf-mask")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
    }

    #[test]
    fn functions_come_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let r = open(dir.path());
            r.create("mask", guest("udf-mask"), false).unwrap();
            r.create("geomean", guest("udf-geomean"), false).unwrap();
            r.create("trap", guest("udf-trap"), false).unwrap();
        }
        // Damage: GEOMEAN's module is garbage; TRAP's record is not JSON; a stray directory.
        std::fs::write(dir.path().join("functions/GEOMEAN/module.wasm"), b"garbage").unwrap();
        std::fs::write(dir.path().join("functions/TRAP/function.json"), b"{").unwrap();
        std::fs::create_dir_all(dir.path().join("functions/STRAY")).unwrap();
        let r = open(dir.path());
        let list = r.list();
        assert_eq!(
            list.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["GEOMEAN", "MASK", "TRAP"]
        );
        assert!(
            list[0]
                .error
                .as_deref()
                .unwrap()
                .contains("not a WebAssembly component")
        );
        assert_eq!(list[0].kind, UdfKind::Aggregate);
        assert_eq!(list[1].error, None);
        assert!(list[2].error.is_some());
        assert_eq!(r.lookup("geomean"), None);
        let e = r.module("geomean").unwrap_err();
        assert_eq!(e.code(), "function_unavailable");
        let mut mask = r.scalar("mask", None).unwrap();
        assert_eq!(
            mask.call(&[vec![text("12345")]]).unwrap(),
            vec![text("*2345")]
        );
        // A broken function can be replaced, or deleted.
        r.create("geomean", guest("udf-geomean"), true).unwrap();
        assert!(r.lookup("GEOMEAN").is_some());
        r.delete("trap").unwrap();

        // A module replaced without its record (a crash in between): the module wins.
        std::fs::write(
            dir.path().join("functions/MASK/module.wasm"),
            guest("udf-trap"),
        )
        .unwrap();
        let r = open(dir.path());
        let mask = r.get("mask").unwrap();
        assert_eq!(mask.error, None);
        assert_eq!(mask.signature.params, vec![UdfType::Int]);
        assert_eq!(mask.sha256, sha256_hex(&guest("udf-trap")));
        let raw = std::fs::read(dir.path().join("functions/MASK/function.json")).unwrap();
        let on_disk: FunctionInfo = serde_json::from_slice(&raw).unwrap();
        assert_eq!(on_disk.sha256, mask.sha256);

        // A name that became a built-in is listed with an error.
        let config = FunctionRegistryConfig::under(dir.path()).with_reserved(["mask"]);
        let r = FunctionRegistry::open(config, engine()).unwrap();
        assert!(r.get("mask").unwrap().error.unwrap().contains("built-in"));
        assert!(r.scalar("mask", None).is_err());
    }

    #[test]
    fn functions_are_created_from_artifacts() {
        let dir = tempfile::tempdir().unwrap();
        let r = open(dir.path());
        let a = r.put_artifact("mask", &guest("udf-mask")).unwrap();
        assert_eq!(a.bytes, guest("udf-mask").len() as u64);
        assert_eq!(a.sha256, sha256_hex(&guest("udf-mask")));
        assert!(dir.path().join("artifacts/mask.wasm").is_file());
        let e = r.put_artifact("bad", b"not wasm").unwrap_err();
        assert_eq!(e.code(), "not_a_component");
        let e = r.put_artifact("../x", &guest("udf-mask")).unwrap_err();
        assert_eq!(e.code(), "invalid_artifact_name");

        let info = r.create_from_artifact("mask", "mask", false).unwrap();
        assert_eq!(info.name, "MASK");
        let e = r.create_from_artifact("m2", "nope", false).unwrap_err();
        assert_eq!(e.code(), "unknown_artifact");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        // An artifact that is a component of the wrong world fails at create.
        r.put_artifact("proc", &guest("uppercase")).unwrap();
        let e = r.create_from_artifact("p", "proc", false).unwrap_err();
        assert_eq!(e.code(), "wrong_world");
        r.delete_artifact("mask").unwrap();
        assert_eq!(
            r.delete_artifact("mask").unwrap_err().code(),
            "unknown_artifact"
        );
        // The function outlives its artifact.
        assert!(r.lookup("mask").is_some());
    }
}

//! The state machine's side of the cluster's user-defined functions
//! ([`MetadataCommand::UpsertFunction`], [`MetadataCommand::DeleteFunction`]) and SQL catalog
//! ([`MetadataCommand::UpsertSqlSource`], [`MetadataCommand::DeleteSqlSource`],
//! [`MetadataCommand::UpsertSqlQuery`], [`MetadataCommand::DeleteSqlQuery`]), as further
//! `impl` blocks of [`ClusterMetadata`] (pure, deterministic, validate-then-change). The
//! engine's encodings (a function's kind and signature, a stream's or query's definition) are
//! opaque here; a function's module never goes through Raft: the record names it by its
//! SHA-256 and nodes fetch it from a peer (`cluster::blob_rpc`).
//!
//! What it enforces:
//! - a function record is bounded: name ([`MAX_FUNCTION_NAME`] of `[A-Za-z0-9_]`, not
//!   starting with a digit), kind (at most 32 visible characters), signature
//!   ([`MAX_FUNCTION_SIGNATURE_BYTES`] as JSON), module hash (exactly `sha256:` and 64
//!   lower-case hex digits); the cluster holds at most [`MAX_FUNCTIONS`];
//! - a registration without `replace` is refused if the name is taken, unless the record is
//!   the one already there (the same module and creation time: a retried proposal changes
//!   nothing); the version goes 1, 2, … and changes only when the record does;
//! - a function delete is refused if there is none of that name;
//! - a SQL record is bounded: name or id ([`MAX_SQL_NAME`] visible characters), definition
//!   ([`MAX_SQL_DEFINITION_BYTES`] as JSON), at most [`MAX_SQL_OBJECTS`] sources and as many
//!   queries; upserts and deletes are idempotent (the SQL engine decided, under its own
//!   catalog lock at the node that took the statement, whether the statement may run);
//! - a create ([`MetadataCommand::CreateSqlSource`], [`MetadataCommand::CreateSqlQuery`]) is
//!   refused when the name is taken by another record: of two nodes creating the same name
//!   at once (each checked only its own catalog) the first applied wins, the other's
//!   statement fails; the same record again is a retried proposal and changes nothing;
//! - an artifact record is bounded (name of [`MAX_FUNCTION_NAME`] characters of
//!   `[A-Za-z0-9_.-]`, not starting with `.` or `-`; the content hash as for a module); the
//!   cluster holds at most [`MAX_ARTIFACTS`]; the last put of a name wins.

use super::error::MetadataError;
use super::state::ClusterMetadata;
use super::types::{ArtifactRecord, FunctionRecord, MetadataResponse, SqlRecord};

/// Longest function name (the engine's own limit).
pub const MAX_FUNCTION_NAME: usize = 100;
/// Largest function signature, as JSON.
pub const MAX_FUNCTION_SIGNATURE_BYTES: usize = 64 * 1024;
/// Most functions a cluster holds.
pub const MAX_FUNCTIONS: usize = 1_000;
/// Most artifacts the cluster names.
pub const MAX_ARTIFACTS: usize = 1_000;
/// Longest stream, table or query name.
pub const MAX_SQL_NAME: usize = 256;
/// Largest definition of a stream, table or query, as JSON.
pub const MAX_SQL_DEFINITION_BYTES: usize = 1 << 20;
/// Most streams and tables (and, separately, most queries) a cluster holds.
pub const MAX_SQL_OBJECTS: usize = 10_000;
/// Longest function kind.
const MAX_FUNCTION_KIND: usize = 32;

fn invalid(what: &str, name: &str, reason: impl Into<String>) -> MetadataError {
    MetadataError::InvalidCatalogObject {
        what: what.to_string(),
        name: name.chars().take(MAX_SQL_NAME).collect(),
        reason: reason.into(),
    }
}

fn json_bytes(what: &str, name: &str, v: &serde_json::Value) -> Result<usize, MetadataError> {
    serde_json::to_vec(v)
        .map(|b| b.len())
        .map_err(|e| invalid(what, name, e.to_string()))
}

fn validate_function(r: &FunctionRecord) -> Result<(), MetadataError> {
    let fail = |reason: String| invalid("function", &r.name, reason);
    let name = &r.name;
    if name.is_empty() || name.len() > MAX_FUNCTION_NAME {
        return Err(fail(format!(
            "a function name has 1 to {MAX_FUNCTION_NAME} characters"
        )));
    }
    if name.starts_with(|c: char| c.is_ascii_digit())
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(fail(
            "a function name has only letters, digits and '_', and does not start with a digit"
                .into(),
        ));
    }
    if r.kind.is_empty()
        || r.kind.len() > MAX_FUNCTION_KIND
        || !r.kind.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(fail(format!(
            "a function kind has 1 to {MAX_FUNCTION_KIND} visible ASCII characters"
        )));
    }
    check_hash("function", name, &r.module)?;
    let bytes = json_bytes("function", name, &r.signature)?;
    if bytes > MAX_FUNCTION_SIGNATURE_BYTES {
        return Err(fail(format!(
            "its signature is {bytes} bytes; at most {MAX_FUNCTION_SIGNATURE_BYTES}"
        )));
    }
    Ok(())
}

fn validate_artifact(r: &ArtifactRecord) -> Result<(), MetadataError> {
    let fail = |reason: String| invalid("artifact", &r.name, reason);
    let name = &r.name;
    if name.is_empty()
        || name.len() > MAX_FUNCTION_NAME
        || name.starts_with(['.', '-'])
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(fail(format!(
            "an artifact name has 1 to {MAX_FUNCTION_NAME} of [A-Za-z0-9_.-], not starting \
             with '.' or '-'"
        )));
    }
    check_hash("artifact", name, &r.hash)
}

fn check_hash(what: &str, name: &str, hash: &str) -> Result<(), MetadataError> {
    let hex = hash.strip_prefix("sha256:").unwrap_or_default();
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid(
            what,
            name,
            "a content hash is 'sha256:' and 64 lower-case hex digits",
        ));
    }
    Ok(())
}

fn validate_sql(what: &str, r: &SqlRecord) -> Result<(), MetadataError> {
    let name = &r.name;
    if name.is_empty() || name.len() > MAX_SQL_NAME || !name.chars().all(|c| !c.is_control()) {
        return Err(invalid(
            what,
            name,
            format!("a name has 1 to {MAX_SQL_NAME} bytes and no control characters"),
        ));
    }
    let bytes = json_bytes(what, name, &r.definition)?;
    if bytes > MAX_SQL_DEFINITION_BYTES {
        return Err(invalid(
            what,
            name,
            format!("its definition is {bytes} bytes; at most {MAX_SQL_DEFINITION_BYTES}"),
        ));
    }
    Ok(())
}

impl ClusterMetadata {
    pub(super) fn upsert_function(
        &mut self,
        record: &FunctionRecord,
        replace: bool,
    ) -> Result<MetadataResponse, MetadataError> {
        validate_function(record)?;
        let mut next = record.clone();
        match self.functions.get(&record.name) {
            Some(current) => {
                let same = current.module == record.module
                    && current.created_ms == record.created_ms
                    && current.kind == record.kind
                    && current.signature == record.signature;
                if same {
                    return Ok(MetadataResponse::Function {
                        version: current.version,
                    });
                }
                if !replace {
                    return Err(MetadataError::FunctionExists(record.name.clone()));
                }
                next.version = current.version.saturating_add(1);
            }
            None => {
                if self.functions.len() >= MAX_FUNCTIONS {
                    return Err(invalid(
                        "function",
                        &record.name,
                        format!("the cluster has {MAX_FUNCTIONS} functions already"),
                    ));
                }
                next.version = 1;
            }
        }
        let version = next.version;
        self.functions.insert(record.name.clone(), next);
        Ok(MetadataResponse::Function { version })
    }

    pub(super) fn put_artifact(
        &mut self,
        record: &ArtifactRecord,
    ) -> Result<MetadataResponse, MetadataError> {
        validate_artifact(record)?;
        if !self.artifacts.contains_key(&record.name) && self.artifacts.len() >= MAX_ARTIFACTS {
            return Err(invalid(
                "artifact",
                &record.name,
                format!("the cluster has {MAX_ARTIFACTS} artifacts already"),
            ));
        }
        self.artifacts.insert(record.name.clone(), record.clone());
        Ok(MetadataResponse::Done)
    }

    pub(super) fn delete_function(
        &mut self,
        name: &str,
    ) -> Result<MetadataResponse, MetadataError> {
        match self.functions.remove(name) {
            Some(_) => Ok(MetadataResponse::Done),
            None => Err(MetadataError::UnknownFunction(name.to_string())),
        }
    }

    pub(super) fn upsert_sql_source(
        &mut self,
        record: &SqlRecord,
    ) -> Result<MetadataResponse, MetadataError> {
        validate_sql("stream or table", record)?;
        if !self.sql_sources.contains_key(&record.name) && self.sql_sources.len() >= MAX_SQL_OBJECTS
        {
            return Err(invalid(
                "stream or table",
                &record.name,
                format!("the cluster has {MAX_SQL_OBJECTS} streams and tables already"),
            ));
        }
        self.sql_sources.insert(record.name.clone(), record.clone());
        Ok(MetadataResponse::Done)
    }

    pub(super) fn delete_sql_source(
        &mut self,
        name: &str,
    ) -> Result<MetadataResponse, MetadataError> {
        self.sql_sources.remove(name);
        Ok(MetadataResponse::Done)
    }

    pub(super) fn upsert_sql_query(
        &mut self,
        record: &SqlRecord,
    ) -> Result<MetadataResponse, MetadataError> {
        validate_sql("query", record)?;
        if !self.sql_queries.contains_key(&record.name) && self.sql_queries.len() >= MAX_SQL_OBJECTS
        {
            return Err(invalid(
                "query",
                &record.name,
                format!("the cluster has {MAX_SQL_OBJECTS} queries already"),
            ));
        }
        self.sql_queries.insert(record.name.clone(), record.clone());
        Ok(MetadataResponse::Done)
    }

    pub(super) fn delete_sql_query(&mut self, id: &str) -> Result<MetadataResponse, MetadataError> {
        self.sql_queries.remove(id);
        Ok(MetadataResponse::Done)
    }

    pub(super) fn create_sql_source(
        &mut self,
        record: &SqlRecord,
    ) -> Result<MetadataResponse, MetadataError> {
        refuse_taken(
            "stream or table",
            self.sql_sources.get(&record.name),
            record,
        )?;
        self.upsert_sql_source(record)
    }

    pub(super) fn create_sql_query(
        &mut self,
        record: &SqlRecord,
    ) -> Result<MetadataResponse, MetadataError> {
        refuse_taken("query", self.sql_queries.get(&record.name), record)?;
        self.upsert_sql_query(record)
    }
}

/// A create of `record` where `current` holds its name: refused unless it is the same record
/// (a retried proposal).
fn refuse_taken(
    what: &str,
    current: Option<&SqlRecord>,
    record: &SqlRecord,
) -> Result<(), MetadataError> {
    match current {
        Some(c) if c != record => Err(MetadataError::SqlObjectExists {
            what: what.to_string(),
            name: record.name.clone(),
        }),
        _ => Ok(()),
    }
}

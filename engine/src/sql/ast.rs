//! The statements Weir's SQL understands, as parsed (names normalised, nothing resolved
//! against the catalog yet). SELECT bodies stay sqlparser `Query` values; the ksqlDB clauses
//! sqlparser lacks (`WINDOW`, `EMIT`) are pulled out beside them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::types::SqlType;

/// Stream or table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Stream,
    Table,
}

impl SourceKind {
    pub fn word(self) -> &'static str {
        match self {
            SourceKind::Stream => "STREAM",
            SourceKind::Table => "TABLE",
        }
    }
}

/// A declared column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: SqlType,
    /// `KEY` (stream) or `PRIMARY KEY` (table): the column lives in the record key.
    #[serde(default)]
    pub key: bool,
}

/// Window kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    Tumbling,
    Hopping,
    Session,
}

/// `WINDOW TUMBLING (SIZE ..)`, `WINDOW HOPPING (SIZE .., ADVANCE BY ..)`,
/// `WINDOW SESSION (gap)`, each with an optional `GRACE PERIOD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    pub kind: WindowKind,
    /// Window size (tumbling, hopping) or inactivity gap (session), ms.
    pub size_ms: i64,
    /// Hop (hopping); equals `size_ms` for tumbling, 0 for session.
    pub advance_ms: i64,
    /// How long after its end a window still accepts records.
    pub grace_ms: i64,
}

/// Default grace period when a window names none (ksqlDB's: 24 hours).
pub const DEFAULT_GRACE_MS: i64 = 24 * 3600 * 1000;

/// `EMIT CHANGES` or `EMIT FINAL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emit {
    Changes,
    Final,
}

/// A SELECT with its ksqlDB clauses.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectStmt {
    pub query: Box<sqlparser::ast::Query>,
    pub window: Option<WindowSpec>,
    pub emit: Option<Emit>,
    /// The SELECT's own text (for SHOW QUERIES).
    pub text: String,
}

/// `WITH (...)` properties: upper-cased names, values as text.
pub type Properties = BTreeMap<String, String>;

/// What `SHOW`/`LIST` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowWhat {
    Streams,
    Tables,
    Queries,
    Functions,
    Topics,
}

/// One statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `CREATE STREAM|TABLE name (cols) WITH (...)`.
    CreateSource {
        kind: SourceKind,
        name: String,
        or_replace: bool,
        if_not_exists: bool,
        columns: Vec<ColumnDef>,
        props: Properties,
    },
    /// `CREATE STREAM|TABLE name [WITH (...)] AS SELECT ...`.
    CreateAs {
        kind: SourceKind,
        name: String,
        or_replace: bool,
        if_not_exists: bool,
        props: Properties,
        select: SelectStmt,
    },
    /// `INSERT INTO name SELECT ...`.
    InsertSelect {
        target: String,
        select: SelectStmt,
    },
    /// `INSERT INTO name [(cols)] VALUES (...)`.
    InsertValues {
        target: String,
        columns: Option<Vec<String>>,
        values: Vec<sqlparser::ast::Expr>,
    },
    Drop {
        kind: SourceKind,
        name: String,
        if_exists: bool,
        delete_topic: bool,
    },
    Show(ShowWhat),
    Describe {
        name: String,
    },
    DescribeFunction {
        name: String,
    },
    /// `TERMINATE id` (`None`: `TERMINATE ALL`).
    Terminate(Option<String>),
    /// `CREATE [OR REPLACE] FUNCTION name WITH (ARTIFACT='a')`.
    CreateFunction {
        name: String,
        or_replace: bool,
        artifact: String,
    },
    DropFunction {
        name: String,
        if_exists: bool,
    },
    /// A push (`EMIT CHANGES`) or pull query.
    Select(SelectStmt),
}

/// A statement with the text it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub text: String,
    pub statement: Statement,
}

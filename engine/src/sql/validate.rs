//! Checks made on every statement of a request before any of them runs: what a statement
//! says about itself (columns, `WITH` properties, formats, the topic spec it would create,
//! the request's properties). What depends on the catalog (which may change under earlier
//! statements of the same request) is checked when the statement runs. Nothing here writes.

use std::collections::BTreeMap;

use weir_broker::TopicSpec;

use super::ast::{ColumnDef, Parsed, Properties, SourceKind, Statement};
use super::error::SqlError;
use super::types::SqlType;
use crate::log_access::LogAccess;
use crate::task::spec::{Guarantee, OnError, StartFrom};

fn invalid(message: impl Into<String>) -> SqlError {
    SqlError::new("invalid_statement", message)
}

/// What `CREATE STREAM|TABLE name (cols) WITH (...)` declares, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceDecl {
    pub topic: String,
    pub format: String,
    pub timestamp: Option<String>,
    pub partitions: Option<i32>,
}

/// Checks a source declaration (columns and `WITH`).
pub fn source_decl(
    kind: SourceKind,
    name: &str,
    columns: &[ColumnDef],
    with: &Properties,
) -> Result<SourceDecl, SqlError> {
    if columns.is_empty() {
        return Err(invalid(format!(
            "{} {name} needs at least one column",
            kind.word()
        )));
    }
    for (i, c) in columns.iter().enumerate() {
        if ["ROWTIME", "WINDOWSTART", "WINDOWEND"].contains(&c.name.as_str()) {
            return Err(invalid(format!("{} is a reserved column name", c.name)));
        }
        if columns[..i].iter().any(|o| o.name == c.name) {
            return Err(invalid(format!("column {} is declared twice", c.name)));
        }
    }
    let keys = columns.iter().filter(|c| c.key).count();
    if keys > 1 {
        return Err(SqlError::new("unsupported", "at most one KEY column"));
    }
    if kind == SourceKind::Table && keys == 0 {
        return Err(invalid(format!("table {name} needs a PRIMARY KEY column")));
    }
    check_props(with, &["TIMESTAMP", "TIMESTAMP_FORMAT"])?;
    let topic = with.get("KAFKA_TOPIC").cloned().ok_or_else(|| {
        invalid(format!(
            "{} {name} needs WITH (KAFKA_TOPIC='...')",
            kind.word()
        ))
    })?;
    let format = with
        .get("VALUE_FORMAT")
        .or(with.get("FORMAT"))
        .cloned()
        .unwrap_or_else(|| "JSON".into())
        .to_uppercase();
    if format != "JSON" {
        return Err(SqlError::new(
            "unsupported",
            format!("VALUE_FORMAT '{format}': only JSON is supported"),
        ));
    }
    if let Some(k) = with.get("KEY_FORMAT")
        && !k.eq_ignore_ascii_case("KAFKA")
    {
        return Err(SqlError::new(
            "unsupported",
            format!("KEY_FORMAT '{k}': only KAFKA (key as text) is supported"),
        ));
    }
    let timestamp = match with.get("TIMESTAMP") {
        Some(ts) => {
            let ts = ts.to_uppercase();
            let col = columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(&ts))
                .ok_or_else(|| {
                    SqlError::new(
                        "unknown_column",
                        format!("TIMESTAMP column {ts} is not a column"),
                    )
                })?;
            if !matches!(col.ty, SqlType::Bigint | SqlType::Timestamp | SqlType::Int) {
                return Err(SqlError::new(
                    "type_mismatch",
                    format!(
                        "TIMESTAMP column {ts} must be BIGINT or TIMESTAMP, not {}",
                        col.ty
                    ),
                ));
            }
            Some(col.name.clone())
        }
        None => None,
    };
    let partitions = match with.get("PARTITIONS") {
        Some(p) => Some(
            p.parse::<i32>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid("PARTITIONS must be a positive number"))?,
        ),
        None => None,
    };
    Ok(SourceDecl {
        topic,
        format,
        timestamp,
        partitions,
    })
}

/// Refuses `WITH` properties other than the common ones and `extra`.
pub fn check_props(with: &Properties, extra: &[&str]) -> Result<(), SqlError> {
    const COMMON: [&str; 6] = [
        "KAFKA_TOPIC",
        "VALUE_FORMAT",
        "KEY_FORMAT",
        "FORMAT",
        "PARTITIONS",
        "REPLICAS",
    ];
    match with
        .keys()
        .find(|k| !COMMON.contains(&k.as_str()) && !extra.contains(&k.as_str()))
    {
        Some(k) => Err(invalid(format!("unknown property {k} in WITH"))),
        None => Ok(()),
    }
}

/// The error policy of a query: `ON_ERROR` in `WITH`, else the request's `weir.on_error`.
pub fn on_error(with: &Properties, props: &BTreeMap<String, String>) -> Result<OnError, SqlError> {
    match with
        .get("ON_ERROR")
        .or_else(|| props.get("weir.on_error"))
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("fail") => Ok(OnError::Fail),
        Some("skip") => Ok(OnError::Skip),
        Some("dead_letter") | Some("dead-letter") => Ok(OnError::DeadLetter),
        Some(other) => Err(invalid(format!(
            "on_error '{other}': use fail, skip or dead_letter"
        ))),
    }
}

/// The processing guarantee of a query: `PROCESSING_GUARANTEE` in `WITH`, else the
/// request's `processing.guarantee` (`SET 'processing.guarantee'='exactly_once';`, Kafka
/// Streams' and ksqlDB's name; `exactly_once_v2` is accepted), else `at_least_once`.
pub fn guarantee(
    with: &Properties,
    props: &BTreeMap<String, String>,
) -> Result<Guarantee, SqlError> {
    match with
        .get("PROCESSING_GUARANTEE")
        .or_else(|| props.get("processing.guarantee"))
    {
        None => Ok(Guarantee::AtLeastOnce),
        Some(v) => Guarantee::parse(v).ok_or_else(|| {
            invalid(format!(
                "processing guarantee '{v}': use at_least_once or exactly_once"
            ))
        }),
    }
}

/// Where a new query starts: the request's `auto.offset.reset`, else `default`.
pub fn start_from(
    props: &BTreeMap<String, String>,
    default: StartFrom,
) -> Result<StartFrom, SqlError> {
    match props
        .get("auto.offset.reset")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        None => Ok(default),
        Some("earliest") => Ok(StartFrom::Earliest),
        Some("latest") => Ok(StartFrom::Latest),
        Some(other) => Err(invalid(format!(
            "auto.offset.reset '{other}': use earliest or latest"
        ))),
    }
}

/// ksqlDB's pull-query property: whether a key look-up may be answered from a standby's
/// (or a restoring task's) copy of the state when the task's owner cannot answer.
pub const STANDBY_READS: &str = "ksql.query.pull.enable.standby.reads";

/// The request's [`STANDBY_READS`] (`false` unless given).
pub fn standby_reads(props: &BTreeMap<String, String>) -> Result<bool, SqlError> {
    match props.get(STANDBY_READS).map(|v| v.to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(v) => Err(invalid(format!("{STANDBY_READS} '{v}': use true or false"))),
    }
}

/// The request's `commit.interval.ms`, if given.
pub fn commit_interval(props: &BTreeMap<String, String>) -> Result<Option<u64>, SqlError> {
    props
        .get("commit.interval.ms")
        .map(|ms| {
            ms.parse()
                .map_err(|_| invalid("commit.interval.ms must be a number"))
        })
        .transpose()
}

/// Checks what can be checked of `p` before any statement of its request runs.
pub fn statement(
    p: &Parsed,
    log: &dyn LogAccess,
    props: &BTreeMap<String, String>,
) -> Result<(), SqlError> {
    match &p.statement {
        Statement::CreateSource {
            kind,
            name,
            columns,
            props: with,
            ..
        } => {
            let decl = source_decl(*kind, name, columns, with)?;
            // The topic as it would be created (an existing topic passes the same rules).
            log.check_topic(&TopicSpec::new(&decl.topic, decl.partitions.unwrap_or(1)))?;
        }
        Statement::CreateAs {
            name, props: with, ..
        } => {
            check_props(with, &["ON_ERROR", "PROCESSING_GUARANTEE"])?;
            on_error(with, props)?;
            guarantee(with, props)?;
            let topic = with
                .get("KAFKA_TOPIC")
                .map_or(name.as_str(), |t| t.as_str());
            log.check_topic(&TopicSpec::new(topic, 1))?;
            start_from(props, StartFrom::Earliest)?;
            commit_interval(props)?;
        }
        Statement::InsertSelect { .. } => {
            on_error(&Properties::new(), props)?;
            start_from(props, StartFrom::Earliest)?;
            commit_interval(props)?;
        }
        _ => {}
    }
    Ok(())
}

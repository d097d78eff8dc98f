//! [`SqlService`]: runs SQL statements against this node — DDL on the catalog, persistent
//! queries deployed as processors through the [`Engine`], INSERT VALUES appended to the log,
//! SHOW/DESCRIBE listings, pull queries answered from a query's state store (or the table's
//! topic), and push queries run as transient processors whose output the caller follows.
//!
//! Methods block (disk, log, deployments): call them off the async runtime.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use weir_broker::partitioner::partition_for_key;
use weir_broker::{InternalTopic, ProduceRecord, TopicSpec};

use super::ast::{
    ColumnDef, Emit, Parsed, Properties, SelectStmt, ShowWhat, SourceKind, Statement,
};
use super::catalog::{Catalog, QueryDef, SourceDef};
use super::error::SqlError;
use super::expr::{EvalContext, Resolver, Row, retain_true};
use super::functions::{self, BUILTINS};
use super::limits::on_sql_stack;
use super::loader::plan_module;
use super::parser::parse;
use super::plan::{Body, QueryPlan, plan_query};
use super::runtime::{GroupState, META_LATE, SqlLogic, key_text, state_key};
use super::types::lookup_field;
use super::validate::{self, SourceDecl, check_props};
use crate::engine::Engine;
use crate::log_access::LogAccess;
use crate::task::spec::{ProcessorSpec, StartFrom};
use crate::udf::{FunctionCatalog, UdfKind, UdfSignature};

/// Prefix of push queries' processors and topics (removed when the client goes, and at
/// start-up if a crash left any).
pub const TRANSIENT_PREFIX: &str = "TRANSIENT_";

/// The result of one statement, as `POST /v1/sql` returns it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatementResult {
    pub statement: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<Vec<Vec<Value>>>,
    /// A pull query answered from a copy that may be behind (standby reads): how far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale: Option<Staleness>,
}

/// How stale a pull query's answer may be: what answered (`task`, `restoring`, `standby`)
/// and how many changelog records that store was behind at its last check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Staleness {
    pub lag: i64,
    pub answered_by: &'static str,
}

/// A pull query's answer.
pub struct PullAnswer {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// With standby reads, when it came from a task's state store.
    pub stale: Option<Staleness>,
}

impl StatementResult {
    fn message(statement: &str, kind: &'static str, message: String) -> StatementResult {
        StatementResult {
            statement: statement.to_string(),
            kind,
            message: Some(message),
            columns: None,
            rows: None,
            stale: None,
        }
    }

    fn table(
        statement: &str,
        kind: &'static str,
        columns: &[&str],
        rows: Vec<Vec<Value>>,
    ) -> StatementResult {
        StatementResult {
            statement: statement.to_string(),
            kind,
            message: None,
            columns: Some(columns.iter().map(|c| c.to_string()).collect()),
            rows: Some(rows),
            stale: None,
        }
    }
}

/// Why a request's statements did not all run.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptError {
    pub error: SqlError,
    /// The statement (0-based) that failed its check or its execution; `None` when the text
    /// as a whole was refused (syntax, limits).
    pub failed: Option<usize>,
    /// Results of the statements that ran before the failure (they stay done).
    pub executed: Vec<StatementResult>,
    /// The failed statement and every one after it, not run.
    pub not_executed: Vec<String>,
}

impl ScriptError {
    fn whole(error: SqlError) -> Box<ScriptError> {
        Box::new(ScriptError {
            error,
            failed: None,
            executed: Vec::new(),
            not_executed: Vec::new(),
        })
    }
}

/// A UDF as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionListing {
    pub name: String,
    pub kind: UdfKind,
    pub signature: UdfSignature,
}

/// Registering UDFs from SQL (`CREATE FUNCTION ... WITH (ARTIFACT=...)`, `DROP FUNCTION`)
/// and listing them; implemented over the node's function registry.
pub trait FunctionAdmin: Send + Sync {
    fn create_from_artifact(
        &self,
        name: &str,
        artifact: &str,
        replace: bool,
    ) -> Result<FunctionListing, SqlError>;
    /// Returns whether it existed.
    fn drop_function(&self, name: &str) -> Result<bool, SqlError>;
    fn list(&self) -> Vec<FunctionListing>;
}

/// A push query being served.
#[derive(Debug, Clone)]
pub struct PushQuery {
    pub id: String,
    pub columns: Vec<String>,
    /// Where its rows are appended (follow every partition from offset 0).
    pub topic: String,
    pub partitions: i32,
    pub limit: Option<u64>,
}

/// What `POST /v1/query` runs.
pub enum QueryStart {
    /// A push query: stream its topic until the client goes, then [`SqlService::stop_push`].
    Push(PushQuery),
    /// A pull query's whole answer.
    Pull(PullAnswer),
}

struct Inner {
    engine: Engine,
    log: Arc<dyn LogAccess>,
    functions: Arc<dyn FunctionCatalog>,
    admin: Option<Arc<dyn FunctionAdmin>>,
    catalog: Mutex<Catalog>,
    push_seq: std::sync::atomic::AtomicU64,
}

/// SQL on this node. Cheap to clone.
#[derive(Clone)]
pub struct SqlService {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn invalid(message: impl Into<String>) -> SqlError {
    SqlError::new("invalid_statement", message)
}

impl SqlService {
    /// Opens the catalog under `dir` and removes push queries a crash left behind.
    pub fn open(
        dir: &std::path::Path,
        engine: Engine,
        log: Arc<dyn LogAccess>,
        functions: Arc<dyn FunctionCatalog>,
        admin: Option<Arc<dyn FunctionAdmin>>,
    ) -> Result<SqlService, SqlError> {
        let catalog = Catalog::open(dir)?;
        let svc = SqlService {
            inner: Arc::new(Inner {
                engine,
                log,
                functions,
                admin,
                catalog: Mutex::new(catalog),
                push_seq: std::sync::atomic::AtomicU64::new(crate::clock::now_ms() as u64),
            }),
        };
        for p in svc.inner.engine.list() {
            if p.name.starts_with(TRANSIENT_PREFIX) {
                svc.stop_push(&p.name);
            }
        }
        Ok(svc)
    }

    /// Makes the SQL catalog the cluster's: every change made here is published first
    /// (see [`Catalog`]).
    pub fn set_publisher(&self, publisher: Arc<dyn crate::catalog::SqlCatalogPublisher>) {
        self.catalog().set_publisher(publisher);
    }

    /// Takes the cluster's catalog: `current` is called under the catalog's lock and returns
    /// the cluster's streams and tables and queries as this node applied them now. Whether
    /// anything changed here.
    pub fn follow_catalog(
        &self,
        current: impl FnOnce() -> (BTreeMap<String, SourceDef>, BTreeMap<String, QueryDef>),
    ) -> Result<bool, SqlError> {
        let mut catalog = self.catalog();
        let (sources, queries) = current();
        catalog.follow(sources, queries)
    }

    /// [`SqlService::execute_script`], with only the error.
    pub fn execute(
        &self,
        sql: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<Vec<StatementResult>, SqlError> {
        self.execute_script(sql, properties).map_err(|e| e.error)
    }

    /// Parses and checks every statement (`limits`, `validate`), then runs them in order and
    /// stops at the first error: the error says which statement failed and which ran before
    /// it (those stay done). `properties`: `auto.offset.reset` (`earliest`, the default, or
    /// `latest`) for new persistent queries, `weir.on_error` (`fail`, `skip`,
    /// `dead_letter`), `commit.interval.ms`, `processing.guarantee` (`at_least_once`, the
    /// default, or `exactly_once`). Runs on the SQL thread (`limits::on_sql_stack`).
    pub fn execute_script(
        &self,
        sql: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<Vec<StatementResult>, Box<ScriptError>> {
        on_sql_stack(|| Ok(self.run_script(sql, properties)))
            .map_err(ScriptError::whole)
            .and_then(|r| r)
    }

    fn run_script(
        &self,
        sql: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<Vec<StatementResult>, Box<ScriptError>> {
        let parsed = parse(sql).map_err(ScriptError::whole)?;
        let texts = || parsed.iter().map(|p| p.text.clone()).collect::<Vec<_>>();
        for (i, p) in parsed.iter().enumerate() {
            if let Err(error) = validate::statement(p, &*self.inner.log, properties) {
                return Err(Box::new(ScriptError {
                    error,
                    failed: Some(i),
                    executed: Vec::new(),
                    not_executed: texts(),
                }));
            }
        }
        let mut out = Vec::new();
        for (i, p) in parsed.iter().enumerate() {
            match self.run(p, properties) {
                Ok(r) => out.push(r),
                Err(error) => {
                    return Err(Box::new(ScriptError {
                        error,
                        failed: Some(i),
                        executed: out,
                        not_executed: texts().split_off(i),
                    }));
                }
            }
        }
        Ok(out)
    }

    fn run(
        &self,
        p: &Parsed,
        props: &BTreeMap<String, String>,
    ) -> Result<StatementResult, SqlError> {
        let text = p.text.as_str();
        match &p.statement {
            Statement::CreateSource {
                kind,
                name,
                or_replace,
                if_not_exists,
                columns,
                props: with,
            } => self.create_source(
                text,
                *kind,
                name,
                *or_replace,
                *if_not_exists,
                columns,
                with,
            ),
            Statement::CreateAs {
                kind,
                name,
                if_not_exists,
                props: with,
                select,
                ..
            } => self.create_as(text, *kind, name, *if_not_exists, with, select, props),
            Statement::InsertSelect { target, select } => {
                self.insert_select(text, target, select, props)
            }
            Statement::InsertValues {
                target,
                columns,
                values,
            } => self.insert_values(text, target, columns.as_deref(), values),
            Statement::Drop {
                kind,
                name,
                if_exists,
                delete_topic,
            } => self.drop_source(text, *kind, name, *if_exists, *delete_topic),
            Statement::Show(what) => Ok(self.show(text, *what)),
            Statement::Describe { name } => self.describe(text, name),
            Statement::DescribeFunction { name } => self.describe_function(text, name),
            Statement::Terminate(id) => self.terminate(text, id.as_deref()),
            Statement::CreateFunction {
                name,
                or_replace,
                artifact,
            } => {
                let admin = self.admin()?;
                let f = admin.create_from_artifact(name, artifact, *or_replace)?;
                Ok(StatementResult::message(
                    text,
                    "function_created",
                    format!(
                        "Function {} created: {}",
                        f.name,
                        signature_text(&f.name, &f.signature)
                    ),
                ))
            }
            Statement::DropFunction { name, if_exists } => {
                let admin = self.admin()?;
                let users = self.queries_calling(name);
                if !users.is_empty() {
                    return Err(invalid(format!(
                        "function {name} is called by {}; TERMINATE them first",
                        users.join(", ")
                    )));
                }
                if !admin.drop_function(name)? && !if_exists {
                    return Err(SqlError::new(
                        "not_found",
                        format!("function {name} does not exist"),
                    ));
                }
                Ok(StatementResult::message(
                    text,
                    "function_dropped",
                    format!("Function {name} dropped"),
                ))
            }
            Statement::Select(select) => {
                if select.emit.is_some() {
                    // Report what is wrong with the query itself first.
                    plan_query("CHECK", "", select, &self.catalog(), &*self.inner.functions)?;
                    return Err(invalid(
                        "push queries (EMIT CHANGES) stream their rows: send them to POST /v1/query",
                    ));
                }
                let answer = self.pull(select, validate::standby_reads(props)?)?;
                let cols: Vec<&str> = answer.columns.iter().map(String::as_str).collect();
                Ok(StatementResult {
                    stale: answer.stale,
                    ..StatementResult::table(text, "rows", &cols, answer.rows)
                })
            }
        }
    }

    fn admin(&self) -> Result<&Arc<dyn FunctionAdmin>, SqlError> {
        self.inner
            .admin
            .as_ref()
            .ok_or_else(|| SqlError::new("unsupported", "this node has no function registry"))
    }

    fn catalog(&self) -> MutexGuard<'_, Catalog> {
        lock(&self.inner.catalog)
    }

    #[allow(clippy::too_many_arguments)]
    fn create_source(
        &self,
        text: &str,
        kind: SourceKind,
        name: &str,
        or_replace: bool,
        if_not_exists: bool,
        columns: &[ColumnDef],
        with: &Properties,
    ) -> Result<StatementResult, SqlError> {
        let mut catalog = self.catalog();
        if let Some(existing) = catalog.source(name) {
            if if_not_exists {
                return Ok(StatementResult::message(
                    text,
                    "exists",
                    format!("{} {name} already exists", existing.kind.word()),
                ));
            }
            if !or_replace || existing.query.is_some() {
                return Err(SqlError::new(
                    "exists",
                    format!("{} {name} already exists", existing.kind.word()),
                ));
            }
        }
        let SourceDecl {
            topic,
            format,
            timestamp,
            partitions,
        } = validate::source_decl(kind, name, columns, with)?;
        self.check_not_internal(&topic)?;
        let log = &self.inner.log;
        let partitions = match (log.topic_meta(&topic)?, partitions) {
            (Some(m), Some(p)) if m.partitions != p => {
                return Err(invalid(format!(
                    "topic '{topic}' exists with {} partitions, not {p}",
                    m.partitions
                )));
            }
            (Some(m), _) => m.partitions,
            (None, Some(p)) => log.ensure_topic(TopicSpec::new(&topic, p))?.partitions,
            (None, None) => {
                return Err(invalid(format!(
                    "topic '{topic}' does not exist: create it, or give PARTITIONS in WITH to have it created"
                )));
            }
        };
        let create = catalog.source(name).is_none();
        catalog.put_source(
            SourceDef {
                name: name.to_string(),
                kind,
                topic: topic.clone(),
                columns: columns.to_vec(),
                value_format: format,
                timestamp,
                partitions,
                window: None,
                query: None,
                sql: text.to_string(),
            },
            create,
        )?;
        Ok(StatementResult::message(
            text,
            "created",
            format!(
                "{} {name} created on topic '{topic}' ({partitions} partitions)",
                kind.word().to_lowercase()
            ),
        ))
    }

    fn spec_for(
        &self,
        id: &str,
        plan: &QueryPlan,
        with: &Properties,
        props: &BTreeMap<String, String>,
        default_start: StartFrom,
    ) -> Result<ProcessorSpec, SqlError> {
        let mut inputs = vec![plan.source.topic.clone()];
        if let Some(j) = &plan.join {
            inputs.push(j.table.topic.clone());
        }
        let on_error = validate::on_error(with, props)?;
        let start = validate::start_from(props, default_start)?;
        let mut spec: ProcessorSpec = serde_json::from_value(serde_json::json!({
            "name": id,
            "inputs": inputs,
            "outputs": [plan.sink_topic],
        }))
        .map_err(|e| SqlError::new("internal", e.to_string()))?;
        spec.on_error = on_error;
        spec.start = start;
        spec.guarantee = validate::guarantee(with, props)?;
        if let Some(ms) = validate::commit_interval(props)? {
            spec.commit_interval_ms = ms;
        }
        spec.validate().map_err(invalid)?;
        Ok(spec)
    }

    fn deploy(&self, plan: &QueryPlan, spec: ProcessorSpec) -> Result<(), SqlError> {
        self.inner
            .engine
            .deploy(spec, Bytes::from(plan_module(plan)))
            .map(|_| ())
            .map_err(SqlError::from)
    }

    /// Deploys `probe` as a new persistent query `<prefix>_<name>_<n>`. On a cluster another
    /// node may have deployed a query of the same id meanwhile (ids are counted per node
    /// between catalog updates): the next id is taken then, a few times.
    fn deploy_new_query(
        &self,
        catalog: &mut Catalog,
        prefix: &str,
        name: &str,
        probe: &QueryPlan,
        with: &Properties,
        props: &BTreeMap<String, String>,
    ) -> Result<(String, QueryPlan), SqlError> {
        const ATTEMPTS: usize = 5;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let id = catalog.next_query_id(prefix, name)?;
            let mut plan = probe.clone();
            plan.id = id.clone();
            let spec = self.spec_for(&id, &plan, with, props, StartFrom::Earliest)?;
            match self.deploy(&plan, spec) {
                Ok(()) => return Ok((id, plan)),
                Err(e)
                    if e.kind() == crate::error::ErrorKind::AlreadyExists
                        && attempt < ATTEMPTS
                        && catalog.query(&id).is_none() =>
                {
                    tracing::info!(query = %id, "query id taken at another node; taking the next");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes a query's processor whose statement failed after it was deployed.
    fn undeploy(&self, id: &str) {
        if let Err(e) = self.inner.engine.delete(id, false) {
            tracing::warn!(query = %id, "cannot remove the processor of a failed statement: {e}");
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create_as(
        &self,
        text: &str,
        kind: SourceKind,
        name: &str,
        if_not_exists: bool,
        with: &Properties,
        select: &SelectStmt,
        props: &BTreeMap<String, String>,
    ) -> Result<StatementResult, SqlError> {
        let mut catalog = self.catalog();
        if let Some(existing) = catalog.source(name) {
            if if_not_exists {
                return Ok(StatementResult::message(
                    text,
                    "exists",
                    format!("{} {name} already exists", existing.kind.word()),
                ));
            }
            return Err(SqlError::new(
                "exists",
                format!("{} {name} already exists", existing.kind.word()),
            ));
        }
        check_props(with, &["ON_ERROR", "PROCESSING_GUARANTEE"])?;
        let topic = with
            .get("KAFKA_TOPIC")
            .cloned()
            .unwrap_or_else(|| name.to_string());
        if self.inner.log.topic_meta(&topic)?.is_some() {
            return Err(SqlError::new(
                "exists",
                format!("topic '{topic}' already exists; name another with KAFKA_TOPIC"),
            ));
        }
        let prefix = match kind {
            SourceKind::Stream => "CSAS",
            SourceKind::Table => "CTAS",
        };
        let plan_id = format!("{prefix}_{name}");
        let probe = plan_query(&plan_id, &topic, select, &catalog, &*self.inner.functions)?;
        if let Some(p) = with.get("PARTITIONS")
            && p.parse::<i32>().ok() != Some(self.source_partitions(&catalog, &probe)?)
        {
            return Err(SqlError::new(
                "unsupported",
                "a query's output has its input's partition count; drop PARTITIONS",
            ));
        }
        if kind == SourceKind::Table
            && matches!(probe.body, Body::Project(_))
            && catalog.require(&probe.source.name)?.kind == SourceKind::Stream
        {
            return Err(invalid(
                "CREATE TABLE AS SELECT needs a GROUP BY (or a table to select from); use CREATE STREAM for a projection of a stream",
            ));
        }
        let partitions = self.source_partitions(&catalog, &probe)?;
        let (id, plan) = self.deploy_new_query(&mut catalog, prefix, name, &probe, with, props)?;
        let mut sources = vec![plan.source.name.clone()];
        if let Some(j) = &plan.join {
            sources.push(j.table.name.clone());
        }
        let source = SourceDef {
            name: name.to_string(),
            kind,
            topic: topic.clone(),
            columns: plan.output.clone(),
            value_format: "JSON".into(),
            timestamp: None,
            partitions,
            window: plan.window(),
            query: Some(id.clone()),
            sql: text.to_string(),
        };
        let query = QueryDef {
            id: id.clone(),
            sql: text.to_string(),
            sink: name.to_string(),
            sources,
        };
        // On a cluster another node may have created the name meanwhile: then this
        // statement fails and leaves nothing behind.
        if let Err(e) = catalog.put_source(source, true) {
            self.undeploy(&id);
            return Err(e);
        }
        if let Err(e) = catalog.put_query(query, true) {
            let _ = catalog.remove_source(name);
            self.undeploy(&id);
            return Err(e);
        }
        Ok(StatementResult::message(
            text,
            "created",
            format!(
                "Created query {id}: {} {name} on topic '{topic}'",
                kind.word().to_lowercase()
            ),
        ))
    }

    fn source_partitions(&self, catalog: &Catalog, plan: &QueryPlan) -> Result<i32, SqlError> {
        Ok(catalog.require(&plan.source.name)?.partitions)
    }

    fn insert_select(
        &self,
        text: &str,
        target: &str,
        select: &SelectStmt,
        props: &BTreeMap<String, String>,
    ) -> Result<StatementResult, SqlError> {
        let mut catalog = self.catalog();
        let t = catalog.require(target)?.clone();
        if t.kind != SourceKind::Stream {
            return Err(invalid("INSERT INTO ... SELECT writes streams only"));
        }
        self.check_not_internal(&t.topic)?;
        let probe = plan_query(
            "INSERTQUERY",
            &t.topic,
            select,
            &catalog,
            &*self.inner.functions,
        )?;
        for c in &probe.output {
            let Some(tc) = t.columns.iter().find(|x| x.name == c.name) else {
                return Err(SqlError::new(
                    "unknown_column",
                    format!(
                        "{target} has no column {} (the SELECT's columns must match it)",
                        c.name
                    ),
                ));
            };
            if !tc.ty.accepts(&c.ty) {
                return Err(SqlError::new(
                    "type_mismatch",
                    format!(
                        "column {} is {} in {target}, the SELECT gives {}",
                        c.name, tc.ty, c.ty
                    ),
                ));
            }
        }
        if self.source_partitions(&catalog, &probe)? != t.partitions {
            return Err(invalid(
                "INSERT INTO needs the target and the source to have the same partition count",
            ));
        }
        let (id, plan) = self.deploy_new_query(
            &mut catalog,
            "INSERTQUERY",
            target,
            &probe,
            &Properties::new(),
            props,
        )?;
        let mut sources = vec![plan.source.name.clone()];
        if let Some(j) = &plan.join {
            sources.push(j.table.name.clone());
        }
        let query = QueryDef {
            id: id.clone(),
            sql: text.to_string(),
            sink: target.to_string(),
            sources,
        };
        if let Err(e) = catalog.put_query(query, true) {
            self.undeploy(&id);
            return Err(e);
        }
        Ok(StatementResult::message(
            text,
            "created",
            format!("Created query {id} writing into {target}"),
        ))
    }

    fn insert_values(
        &self,
        text: &str,
        target: &str,
        columns: Option<&[String]>,
        values: &[sqlparser::ast::Expr],
    ) -> Result<StatementResult, SqlError> {
        let t = self.catalog().require(target)?.clone();
        self.check_not_internal(&t.topic)?;
        if t.query.is_some() {
            return Err(invalid(format!(
                "{target} is written by query {}; insert into its sources instead",
                t.query.clone().unwrap_or_default()
            )));
        }
        let names: Vec<String> = match columns {
            Some(c) => c.to_vec(),
            None => t.columns.iter().map(|c| c.name.clone()).collect(),
        };
        if names.len() != values.len() {
            return Err(invalid(format!(
                "{} columns but {} values",
                names.len(),
                values.len()
            )));
        }
        let resolver = Resolver {
            scope: &[],
            functions: &*self.inner.functions,
        };
        let mut obj = serde_json::Map::new();
        let mut key = None;
        let mut rowtime = None;
        for (n, v) in names.iter().zip(values) {
            let (expr, ty) = resolver.resolve(v)?;
            let mut udfs = std::collections::HashMap::new();
            let mut cx = EvalContext {
                functions: &*self.inner.functions,
                stop: None,
                udfs: &mut udfs,
            };
            let value = expr
                .eval(&[Vec::new()], &mut cx)
                .map_err(|e| SqlError::new("invalid_statement", e.to_string()))?
                .pop()
                .unwrap_or(Value::Null);
            if n == "ROWTIME" {
                rowtime = value.as_i64();
                continue;
            }
            let col = t.columns.iter().find(|c| &c.name == n).ok_or_else(|| {
                SqlError::new("unknown_column", format!("{target} has no column {n}"))
            })?;
            if !col.ty.accepts(&ty) {
                return Err(SqlError::new(
                    "type_mismatch",
                    format!("column {n} is {}, the value is {ty}", col.ty),
                ));
            }
            let value = col.ty.coerce(&value).unwrap_or(Value::Null);
            if col.key {
                key = (!value.is_null()).then(|| Bytes::from(functions::text(&value)));
            }
            if t.timestamp.as_deref() == Some(n.as_str()) && rowtime.is_none() {
                rowtime = value.as_i64();
            }
            obj.insert(n.clone(), value);
        }
        let record = ProduceRecord {
            key,
            value: Some(Bytes::from(
                serde_json::to_vec(&Value::Object(obj)).unwrap_or_default(),
            )),
            headers: Vec::new(),
            timestamp: rowtime,
            partition: None,
        };
        self.inner.log.produce(&t.topic, vec![record])?;
        Ok(StatementResult::message(
            text,
            "inserted",
            format!("1 row inserted into {target}"),
        ))
    }

    fn drop_source(
        &self,
        text: &str,
        kind: SourceKind,
        name: &str,
        if_exists: bool,
        delete_topic: bool,
    ) -> Result<StatementResult, SqlError> {
        let mut catalog = self.catalog();
        let Some(def) = catalog.source(name).cloned() else {
            if if_exists {
                return Ok(StatementResult::message(
                    text,
                    "dropped",
                    format!("{name} does not exist"),
                ));
            }
            return Err(SqlError::new(
                "not_found",
                format!("{} {name} does not exist", kind.word().to_lowercase()),
            ));
        };
        if def.kind != kind {
            return Err(invalid(format!(
                "{name} is a {}, not a {}",
                def.kind.word(),
                kind.word()
            )));
        }
        let readers: Vec<String> = catalog
            .readers_of(name)
            .into_iter()
            .filter(|q| Some(q) != def.query.as_ref())
            .collect();
        if !readers.is_empty() {
            return Err(invalid(format!(
                "queries read from {name}: {}; TERMINATE them first",
                readers.join(", ")
            )));
        }
        let writers: Vec<String> = catalog
            .queries()
            .filter(|q| q.sink == name)
            .map(|q| q.id.clone())
            .collect();
        if delete_topic {
            self.check_not_internal(&def.topic)?;
            let users: Vec<String> = self
                .inner
                .engine
                .users_of(&def.topic)
                .into_iter()
                .filter(|u| !writers.contains(u))
                .collect();
            if !users.is_empty() {
                return Err(SqlError::new(
                    "topic_in_use",
                    format!(
                        "topic '{}' is in use by {}; stop them first or drop without DELETE TOPIC",
                        def.topic,
                        users.join(", ")
                    ),
                ));
            }
        }
        for q in &writers {
            self.stop_query(&mut catalog, q)?;
        }
        catalog.remove_source(name)?;
        if delete_topic {
            self.inner.log.delete_topic(&def.topic)?;
        }
        let mut msg = format!("{} {name} dropped", kind.word().to_lowercase());
        if !writers.is_empty() {
            msg.push_str(&format!(" (terminated {})", writers.join(", ")));
        }
        if delete_topic {
            msg.push_str(&format!("; topic '{}' deleted", def.topic));
        }
        Ok(StatementResult::message(text, "dropped", msg))
    }

    /// Refuses an internal topic (a processor's changelog, offsets or repartition topic,
    /// `__consumer_offsets`, …) as a stream's or table's topic or an INSERT's target.
    fn check_not_internal(&self, topic: &str) -> Result<(), SqlError> {
        match self.inner.log.topic_meta(topic)?.and_then(|m| m.owner) {
            Some(owner) => Err(SqlError::new(
                "internal_topic",
                format!("topic '{topic}' is an internal topic of {owner}; SQL may not use it"),
            )),
            None => Ok(()),
        }
    }

    fn stop_query(&self, catalog: &mut Catalog, id: &str) -> Result<(), SqlError> {
        match self.inner.engine.delete(id, false) {
            Ok(()) => {}
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(q) = catalog.remove_query(id)?
            && let Some(mut sink) = catalog.source(&q.sink).cloned()
            && sink.query.as_deref() == Some(id)
        {
            sink.query = None;
            catalog.put_source(sink, false)?;
        }
        Ok(())
    }

    fn terminate(&self, text: &str, id: Option<&str>) -> Result<StatementResult, SqlError> {
        let mut catalog = self.catalog();
        let ids: Vec<String> = match id {
            Some(id) => {
                if catalog.query(id).is_none() {
                    return Err(SqlError::new(
                        "not_found",
                        format!("query {id} does not exist"),
                    ));
                }
                vec![id.to_string()]
            }
            None => catalog.queries().map(|q| q.id.clone()).collect(),
        };
        for q in &ids {
            self.stop_query(&mut catalog, q)?;
        }
        Ok(StatementResult::message(
            text,
            "terminated",
            format!(
                "Terminated {}",
                if ids.is_empty() {
                    "no queries".into()
                } else {
                    ids.join(", ")
                }
            ),
        ))
    }

    /// `(status, late records)` of a query.
    pub fn query_status(&self, id: &str) -> (String, u64) {
        let Ok(d) = self.inner.engine.describe(id) else {
            return ("missing".into(), 0);
        };
        let mut late = 0;
        for p in 0..d.partitions {
            if let Ok(Some(v)) = self.inner.engine.query_in(id, "meta", p, META_LATE) {
                late += std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        (d.status, late)
    }

    fn show(&self, text: &str, what: ShowWhat) -> StatementResult {
        let catalog = self.catalog();
        match what {
            ShowWhat::Streams | ShowWhat::Tables => {
                let kind = if what == ShowWhat::Streams {
                    SourceKind::Stream
                } else {
                    SourceKind::Table
                };
                let rows = catalog
                    .sources()
                    .filter(|s| s.kind == kind)
                    .map(|s| {
                        vec![
                            Value::from(s.name.clone()),
                            Value::from(s.topic.clone()),
                            Value::from(s.partitions),
                            Value::from("KAFKA"),
                            Value::from(s.value_format.clone()),
                            Value::from(s.window.is_some()),
                        ]
                    })
                    .collect();
                let label = if kind == SourceKind::Stream {
                    "streams"
                } else {
                    "tables"
                };
                StatementResult::table(
                    text,
                    label,
                    &[
                        "Name",
                        "Kafka Topic",
                        "Partitions",
                        "Key Format",
                        "Value Format",
                        "Windowed",
                    ],
                    rows,
                )
            }
            ShowWhat::Queries => {
                let queries: Vec<QueryDef> = catalog.queries().cloned().collect();
                drop(catalog);
                let rows = queries
                    .into_iter()
                    .map(|q| {
                        let (status, late) = self.query_status(&q.id);
                        vec![
                            Value::from(q.id),
                            Value::from(status),
                            Value::from(q.sink),
                            Value::from(late),
                            Value::from(q.sql),
                        ]
                    })
                    .collect();
                StatementResult::table(
                    text,
                    "queries",
                    &["Query ID", "Status", "Sink", "Late Records", "Query"],
                    rows,
                )
            }
            ShowWhat::Functions => {
                drop(catalog);
                let mut rows: Vec<Vec<Value>> = BUILTINS
                    .iter()
                    .map(|(n, sig, desc)| {
                        let kind = if super::expr::is_builtin_aggregate(n) {
                            "AGGREGATE"
                        } else {
                            "SCALAR"
                        };
                        vec![
                            Value::from(*n),
                            Value::from(kind),
                            Value::from(*sig),
                            Value::from(*desc),
                        ]
                    })
                    .collect();
                if let Some(admin) = &self.inner.admin {
                    for f in admin.list() {
                        let kind = match f.kind {
                            UdfKind::Scalar => "SCALAR (UDF)",
                            UdfKind::Aggregate => "AGGREGATE (UDAF)",
                        };
                        rows.push(vec![
                            Value::from(f.name.clone()),
                            Value::from(kind),
                            Value::from(signature_text(&f.name, &f.signature)),
                            Value::from("WebAssembly component"),
                        ]);
                    }
                }
                StatementResult::table(
                    text,
                    "functions",
                    &["Name", "Type", "Signature", "Description"],
                    rows,
                )
            }
            ShowWhat::Topics => {
                drop(catalog);
                let rows = self
                    .inner
                    .log
                    .list_topics()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|t| !t.starts_with("__"))
                    .map(|t| {
                        let parts = self
                            .inner
                            .log
                            .topic_meta(&t)
                            .ok()
                            .flatten()
                            .map(|m| m.partitions)
                            .unwrap_or(0);
                        vec![Value::from(t), Value::from(parts)]
                    })
                    .collect();
                StatementResult::table(text, "topics", &["Kafka Topic", "Partitions"], rows)
            }
        }
    }

    fn describe(&self, text: &str, name: &str) -> Result<StatementResult, SqlError> {
        let catalog = self.catalog();
        let s = catalog.require(name)?.clone();
        let readers = catalog.readers_of(name);
        drop(catalog);
        let mut rows: Vec<Vec<Value>> = s
            .columns
            .iter()
            .map(|c| {
                let key = if !c.key {
                    ""
                } else if s.kind == SourceKind::Table {
                    "PRIMARY KEY"
                } else {
                    "KEY"
                };
                vec![
                    Value::from(c.name.clone()),
                    Value::from(c.ty.to_string()),
                    Value::from(key),
                ]
            })
            .collect();
        rows.insert(
            0,
            vec![
                Value::from("ROWTIME"),
                Value::from("BIGINT"),
                Value::from("(record timestamp)"),
            ],
        );
        let mut msg = format!(
            "{} {}: topic '{}', {} partitions, value format {}{}",
            s.kind.word(),
            s.name,
            s.topic,
            s.partitions,
            s.value_format,
            s.timestamp
                .as_ref()
                .map(|t| format!(", event time from {t}"))
                .unwrap_or_default()
        );
        if let Some(w) = s.window {
            msg.push_str(&format!(
                ", windowed ({:?}, size {} ms, grace {} ms)",
                w.kind, w.size_ms, w.grace_ms
            ));
        }
        if let Some(q) = &s.query {
            let (status, late) = self.query_status(q);
            msg.push_str(&format!("; written by {q} ({status}, {late} late records)"));
        }
        if !readers.is_empty() {
            msg.push_str(&format!("; read by {}", readers.join(", ")));
        }
        let mut r = StatementResult::table(text, "description", &["Field", "Type", "Key"], rows);
        r.message = Some(msg);
        Ok(r)
    }

    fn describe_function(&self, text: &str, name: &str) -> Result<StatementResult, SqlError> {
        let mut rows: Vec<Vec<Value>> = BUILTINS
            .iter()
            .filter(|(n, _, _)| *n == name)
            .map(|(n, sig, desc)| vec![Value::from(*n), Value::from(*sig), Value::from(*desc)])
            .collect();
        if let Some((kind, sig)) = self.inner.functions.lookup(name) {
            rows.push(vec![
                Value::from(name),
                Value::from(signature_text(name, &sig)),
                Value::from(match kind {
                    UdfKind::Scalar => "scalar UDF (WebAssembly component)",
                    UdfKind::Aggregate => "aggregate UDF (WebAssembly component)",
                }),
            ]);
        }
        if rows.is_empty() {
            return Err(SqlError::new(
                "unknown_function",
                format!("unknown function {name}"),
            ));
        }
        Ok(StatementResult::table(
            text,
            "function",
            &["Name", "Signature", "Description"],
            rows,
        ))
    }

    /// A pull query: the current rows of a table (by key, or all of them).
    /// A pull query; `standby_reads`: a key look-up of an aggregate may be answered from a
    /// standby's copy of its task's state on this node (see [`validate::STANDBY_READS`]).
    fn pull(&self, select: &SelectStmt, standby_reads: bool) -> Result<PullAnswer, SqlError> {
        let catalog = self.catalog();
        let plan = plan_query("PULL", "", select, &catalog, &*self.inner.functions)?;
        let source = catalog.require(&plan.source.name)?.clone();
        let writer_plan = match &source.query {
            Some(q) => self.plan_of(q),
            None => None,
        };
        drop(catalog);
        if source.kind != SourceKind::Table {
            return Err(invalid(format!(
                "pull queries read tables; {} is a stream (push queries on streams need EMIT CHANGES)",
                source.name
            )));
        }
        if plan.join.is_some() || !matches!(plan.body, Body::Project(_)) {
            return Err(SqlError::new(
                "unsupported",
                "pull queries select from one table, without GROUP BY or JOIN",
            ));
        }
        let key_col = source.key_column();
        let key = key_col.and_then(|k| key_literal(plan.filter.as_ref(), k));
        // Candidate rows of the table (its columns + ROWTIME): a key look-up of an aggregate
        // from its task's state store where that task runs on this node — or, with standby
        // reads, where this node keeps a copy of it (on a cluster a pull query alone in its
        // request is sent to that node; one inside a script run here reads the table's
        // topic, which every node can read).
        let from_state = match (&writer_plan, &key) {
            (Some(wp), Some(k))
                if wp.window().is_none() && matches!(wp.body, Body::Aggregate(_)) =>
            {
                let partitions = self.inner.engine.describe(&wp.id)?.partitions;
                let p = partition_for_key(k.as_bytes(), partitions);
                self.inner.engine.task_placed_here(&wp.id, p)
                    || (standby_reads && self.inner.engine.has_copy_here(&wp.id, p))
            }
            _ => false,
        };
        let mut stale = None;
        let rows: Vec<Row> = match (&writer_plan, &key) {
            (Some(wp), Some(k)) if from_state => {
                let (row, staleness) = self.pull_from_state(wp, k, standby_reads)?;
                stale = staleness;
                row.into_iter().collect()
            }
            _ => self.pull_from_topic(&source, key.as_deref())?,
        };
        let Body::Project(exprs) = &plan.body else {
            return Ok(PullAnswer {
                columns: Vec::new(),
                rows: Vec::new(),
                stale,
            });
        };
        let mut udfs = std::collections::HashMap::new();
        let mut cx = EvalContext {
            functions: &*self.inner.functions,
            stop: None,
            udfs: &mut udfs,
        };
        let err =
            |e: crate::host::ProcessorError| SqlError::new("invalid_statement", e.to_string());
        let rows = match &plan.filter {
            Some(f) => {
                let keep = f.eval(&rows, &mut cx).map_err(err)?;
                retain_true(rows, keep)
            }
            None => rows,
        };
        let mut cols = Vec::with_capacity(exprs.len());
        for e in exprs {
            cols.push(e.eval(&rows, &mut cx).map_err(err)?);
        }
        let out = (0..rows.len())
            .map(|i| cols.iter().map(|c| c[i].clone()).collect())
            .collect();
        let mut rows_out: Vec<Vec<Value>> = out;
        if let Some(l) = plan.limit {
            rows_out.truncate(l as usize);
        }
        Ok(PullAnswer {
            columns: plan.output.iter().map(|c| c.name.clone()).collect(),
            rows: rows_out,
            stale,
        })
    }

    /// Where the pull query `sql` reads a task's state store: the processor writing the
    /// table and the task (partition) of the key, when it is a key look-up of a non-windowed
    /// aggregate table; `None` when it is answered otherwise (from the table's topic, which
    /// every node reads) or is no pull query. On a cluster the HTTP layer sends such a query
    /// to the task's owner.
    pub fn pull_task(&self, sql: &str) -> Option<(String, i32)> {
        on_sql_stack(|| Ok(self.pull_task_here(sql))).ok().flatten()
    }

    fn pull_task_here(&self, sql: &str) -> Option<(String, i32)> {
        let mut parsed = parse(sql).ok()?;
        if parsed.len() != 1 {
            return None;
        }
        let Statement::Select(select) = &parsed.remove(0).statement else {
            return None;
        };
        if select.emit.is_some() {
            return None;
        }
        let catalog = self.catalog();
        let plan = plan_query("PULL", "", select, &catalog, &*self.inner.functions).ok()?;
        let source = catalog.source(&plan.source.name)?.clone();
        drop(catalog);
        if source.kind != SourceKind::Table || plan.join.is_some() {
            return None;
        }
        let wp = self.plan_of(source.query.as_deref()?)?;
        let key = key_literal(plan.filter.as_ref(), source.key_column()?)?;
        if wp.window().is_some() || !matches!(wp.body, Body::Aggregate(_)) {
            return None;
        }
        let partitions = self.inner.engine.describe(&wp.id).ok()?.partitions;
        Some((wp.id.clone(), partition_for_key(key.as_bytes(), partitions)))
    }

    /// Persistent queries whose plan calls function `name`.
    fn queries_calling(&self, name: &str) -> Vec<String> {
        let ids: Vec<String> = self.catalog().queries().map(|q| q.id.clone()).collect();
        ids.into_iter()
            .filter(|id| {
                self.plan_of(id).is_some_and(|p| {
                    let (scalar, aggregate) = p.udfs();
                    scalar.iter().chain(&aggregate).any(|f| f == name)
                })
            })
            .collect()
    }

    fn plan_of(&self, query: &str) -> Option<QueryPlan> {
        self.inner
            .engine
            .module_of(query)
            .and_then(|m| super::loader::module_plan(&m)?.ok())
    }

    /// The row of `key` in a non-windowed aggregate's state store.
    /// With `standby_reads`, from whatever copy of the task this node has, and how stale.
    fn pull_from_state(
        &self,
        wp: &QueryPlan,
        key: &str,
        standby_reads: bool,
    ) -> Result<(Option<Row>, Option<Staleness>), SqlError> {
        let partitions = self.inner.engine.describe(&wp.id)?.partitions;
        let partition = partition_for_key(key.as_bytes(), partitions);
        let state_key = state_key(key.as_bytes(), 0);
        let (value, stale) = if standby_reads {
            let a = self
                .inner
                .engine
                .query_stale_in(&wp.id, "agg", partition, &state_key)?;
            let stale = Staleness {
                lag: a.lag,
                answered_by: a.by.as_str(),
            };
            (a.value, Some(stale))
        } else {
            let value = self
                .inner
                .engine
                .query_in(&wp.id, "agg", partition, &state_key)?;
            (value, None)
        };
        let Some(bytes) = value else {
            return Ok((None, stale));
        };
        let st: GroupState =
            serde_json::from_slice(&bytes).map_err(|e| SqlError::new("internal", e.to_string()))?;
        let Body::Aggregate(a) = &wp.body else {
            return Ok((None, stale));
        };
        // A pull query's instances are stopped only by their CPU limit and the node.
        let mut logic = SqlLogic::new(
            Arc::new(wp.clone()),
            self.inner.functions.clone(),
            crate::host::Interrupt::new(),
        );
        let values = logic
            .project_state(a, &st)
            .map_err(|e| SqlError::new("invalid_statement", e.to_string()))?;
        let row = values.map(|mut v| {
            v.push(Value::Null); // ROWTIME
            v
        });
        Ok((row, stale))
    }

    /// The latest row per key (and window) from the table's topic.
    fn pull_from_topic(&self, source: &SourceDef, key: Option<&str>) -> Result<Vec<Row>, SqlError> {
        let log = &self.inner.log;
        let partitions: Vec<i32> = match key {
            Some(k) => vec![partition_for_key(k.as_bytes(), source.partitions)],
            None => (0..source.partitions).collect(),
        };
        let mut latest: BTreeMap<(Vec<u8>, String), Row> = BTreeMap::new();
        for p in partitions {
            let (mut offset, end) = log.offsets(&source.topic, p)?;
            while offset < end {
                let read = log.read_committed(&source.topic, p, offset, 10_000, 8 << 20)?;
                if read.records.is_empty() && read.next_offset <= offset {
                    break;
                }
                for r in &read.records {
                    let Some(k) = &r.key else { continue };
                    if key.is_some_and(|want| want.as_bytes() != k.as_ref()) {
                        continue;
                    }
                    let Some(v) = &r.value else {
                        latest.retain(|(kk, _), _| kk.as_slice() != k.as_ref());
                        continue;
                    };
                    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(v) else {
                        continue;
                    };
                    let window = lookup_field(&obj, "WINDOWSTART")
                        .map(|w| w.to_string())
                        .unwrap_or_default();
                    let key_str = std::str::from_utf8(k).unwrap_or("");
                    let mut row: Row = source
                        .columns
                        .iter()
                        .map(|c| {
                            let v = if c.key && !obj.contains_key(&c.name) {
                                c.ty.coerce(&Value::String(key_str.to_string()))
                            } else {
                                lookup_field(&obj, &c.name).and_then(|v| c.ty.coerce(v))
                            };
                            v.unwrap_or(Value::Null)
                        })
                        .collect();
                    row.push(Value::from(r.timestamp));
                    latest.insert((k.to_vec(), window), row);
                }
                offset = read.next_offset;
            }
        }
        Ok(latest.into_values().collect())
    }

    /// The Kafka topics the SELECT `sql` of a `POST /v1/query` reads (its source stream or
    /// table, and a joined table), so that the caller's permission to read them is checked
    /// before [`SqlService::start_query`] runs anything. Errors are those `start_query`
    /// would give for the same text.
    pub fn query_topics(&self, sql: &str) -> Result<Vec<String>, SqlError> {
        on_sql_stack(|| self.query_topics_here(sql))
    }

    fn query_topics_here(&self, sql: &str) -> Result<Vec<String>, SqlError> {
        let mut parsed = parse(sql)?;
        if parsed.len() != 1 {
            return Err(invalid("POST /v1/query runs exactly one SELECT"));
        }
        let p = parsed.remove(0);
        let Statement::Select(select) = &p.statement else {
            return Err(invalid(
                "POST /v1/query runs SELECT statements; send other statements to POST /v1/sql",
            ));
        };
        let catalog = self.catalog();
        let plan = plan_query("AUTHZ", "", select, &catalog, &*self.inner.functions)?;
        let mut topics = vec![catalog.require(&plan.source.name)?.topic.clone()];
        if let Some(j) = &plan.join {
            topics.push(catalog.require(&j.table.name)?.topic.clone());
        }
        topics.dedup();
        Ok(topics)
    }

    /// Starts a SELECT for `POST /v1/query`: a push query (EMIT CHANGES) is deployed as a
    /// transient processor; a pull query is answered at once.
    pub fn start_query(
        &self,
        sql: &str,
        props: &BTreeMap<String, String>,
    ) -> Result<QueryStart, SqlError> {
        on_sql_stack(|| self.start_query_here(sql, props))
    }

    fn start_query_here(
        &self,
        sql: &str,
        props: &BTreeMap<String, String>,
    ) -> Result<QueryStart, SqlError> {
        let mut parsed = parse(sql)?;
        if parsed.len() != 1 {
            return Err(invalid("POST /v1/query runs exactly one SELECT"));
        }
        let p = parsed.remove(0);
        let Statement::Select(select) = &p.statement else {
            return Err(invalid(
                "POST /v1/query runs SELECT statements; send other statements to POST /v1/sql",
            ));
        };
        if select.emit.is_none() {
            let answer = self.pull(select, validate::standby_reads(props)?)?;
            return Ok(QueryStart::Pull(answer));
        }
        let n = self
            .inner
            .push_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{TRANSIENT_PREFIX}{n}");
        let topic = format!("{id}-rows");
        let catalog = self.catalog();
        let plan = plan_query(&id, &topic, select, &catalog, &*self.inner.functions)?;
        let partitions = self.source_partitions(&catalog, &plan)?;
        drop(catalog);
        let spec = self.spec_for(&id, &plan, &Properties::new(), props, StartFrom::Latest)?;
        // The rows topic is the query's own, made before the query writes to it: no client
        // may write into another's results (and a client's topic of that name is refused).
        let rows = TopicSpec::new(&topic, partitions).owned_by(InternalTopic::processor(&id));
        self.inner.log.ensure_topic(rows)?;
        if let Err(e) = self.deploy(&plan, spec) {
            if let Err(d) = self.inner.log.delete_topic(&topic) {
                tracing::warn!(query = %id, "cannot delete push query topic: {d}");
            }
            return Err(e);
        }
        let _ = Emit::Changes;
        Ok(QueryStart::Push(PushQuery {
            id,
            columns: plan.output.iter().map(|c| c.name.clone()).collect(),
            topic,
            partitions,
            limit: plan.limit,
        }))
    }

    /// Stops a push query and removes its processor and topics.
    pub fn stop_push(&self, id: &str) {
        if let Err(e) = self.inner.engine.delete(id, false) {
            tracing::warn!(query = %id, "cannot remove push query: {e}");
        }
        if let Err(e) = self.inner.log.delete_topic(&format!("{id}-rows")) {
            tracing::warn!(query = %id, "cannot delete push query topic: {e}");
        }
    }

    /// The log (for following push query topics).
    pub fn log(&self) -> &Arc<dyn LogAccess> {
        &self.inner.log
    }
}

/// `NAME(TYPE, ...) -> TYPE`.
pub fn signature_text(name: &str, sig: &UdfSignature) -> String {
    let params: Vec<&str> = sig.params.iter().map(|p| p.sql_name()).collect();
    format!(
        "{name}({}) -> {}",
        params.join(", "),
        sig.returns.sql_name()
    )
}

/// The literal compared with column `key` in a WHERE made of ANDs, as key text.
fn key_literal(filter: Option<&super::expr::Expr>, key: usize) -> Option<String> {
    use super::expr::{BinOp, Expr};
    match filter? {
        Expr::Binary(BinOp::Eq, a, b) => match (a.as_ref(), b.as_ref()) {
            (Expr::Column(c), Expr::Literal(v)) | (Expr::Literal(v), Expr::Column(c))
                if *c == key && !v.is_null() =>
            {
                Some(key_text(std::slice::from_ref(v)))
            }
            _ => None,
        },
        Expr::Binary(BinOp::And, a, b) => {
            key_literal(Some(a), key).or_else(|| key_literal(Some(b), key))
        }
        _ => None,
    }
}

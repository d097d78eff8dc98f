//! The planner: turns a SELECT (with its ksqlDB window and emit clauses) into a
//! [`QueryPlan`], resolving every name against the catalog and the function catalog and
//! checking every type, so that a bad query fails at CREATE time with a position, never at
//! run time. A plan is plain data (serde): it is what a persistent query's processor
//! deployment stores and what its tasks run (`runtime`).
//!
//! Row layouts: the *input* scope is the stream's columns, then `ROWTIME`, then (for a
//! stream–table join) the table's columns; the *aggregate* scope is the GROUP BY keys, then
//! `WINDOWSTART`, `WINDOWEND`, then one column per aggregate call.

use serde::{Deserialize, Serialize};
use sqlparser::ast::{self as sql, Spanned};

use super::aggregate::{AggCall, AggFunc, sum_type};
use super::ast::{ColumnDef, Emit, SelectStmt, SourceKind, WindowSpec};
use super::catalog::{Catalog, SourceDef};
use super::error::{Position, SqlError};
use super::expr::{
    Expr, Resolver, ScopeColumn, call_args, function_name, is_builtin_aggregate, udf_accepts,
    udf_sql_type,
};
use super::limits;
use super::parser::ident_name;
use super::types::SqlType;
use crate::udf::{FunctionCatalog, UdfKind};

/// A source as a query reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceBinding {
    pub name: String,
    pub topic: String,
    pub columns: Vec<ColumnDef>,
    /// Index of the column event time comes from (else the record timestamp).
    pub timestamp: Option<usize>,
}

impl SourceBinding {
    fn of(def: &SourceDef) -> SourceBinding {
        SourceBinding {
            name: def.name.clone(),
            topic: def.topic.clone(),
            columns: def.columns.clone(),
            timestamp: def.timestamp_index(),
        }
    }
}

/// A stream–table join on the table's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinPlan {
    pub table: SourceBinding,
    /// The stream-side expression compared with the table key (over the stream scope).
    pub stream_key: Expr,
    /// LEFT JOIN: stream rows without a table row pass with NULL table columns.
    pub left: bool,
    /// The stream is not keyed by `stream_key`: rows go through the repartition topic first.
    pub repartition: bool,
}

/// A grouped (optionally windowed) aggregation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggPlan {
    /// GROUP BY expressions over the input scope.
    pub group: Vec<Expr>,
    pub aggs: Vec<AggCall>,
    pub window: Option<WindowSpec>,
    /// Over the aggregate scope.
    pub having: Option<Expr>,
    /// The SELECT list over the aggregate scope.
    pub project: Vec<Expr>,
    pub emit: Emit,
    /// Rows are not keyed by the group key yet: they go through the repartition topic.
    pub repartition: bool,
}

/// What a query does after the join and WHERE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Body {
    /// The SELECT list over the input scope.
    Project(Vec<Expr>),
    Aggregate(AggPlan),
}

/// A compiled query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryPlan {
    pub id: String,
    pub sql: String,
    pub sink_topic: String,
    pub source: SourceBinding,
    pub join: Option<JoinPlan>,
    pub filter: Option<Expr>,
    pub body: Body,
    /// Output columns in SELECT order (key columns flagged).
    pub output: Vec<ColumnDef>,
    /// `LIMIT n` (push queries stop after n rows).
    #[serde(default)]
    pub limit: Option<u64>,
}

impl QueryPlan {
    /// Every expression of the plan (each a root; none inside another).
    pub fn exprs(&self) -> Vec<&Expr> {
        let mut exprs: Vec<&Expr> = Vec::new();
        if let Some(j) = &self.join {
            exprs.push(&j.stream_key);
        }
        if let Some(f) = &self.filter {
            exprs.push(f);
        }
        match &self.body {
            Body::Project(p) => exprs.extend(p),
            Body::Aggregate(a) => {
                exprs.extend(&a.group);
                exprs.extend(&a.project);
                if let Some(h) = &a.having {
                    exprs.push(h);
                }
                for c in &a.aggs {
                    exprs.extend(&c.args);
                }
            }
        }
        exprs
    }

    /// Refuses a plan with an expression beyond `limits` (checked without recursion, so
    /// that a plan read from disk is checked before anything walks it recursively).
    pub fn check_limits(&self) -> Result<(), SqlError> {
        self.exprs().into_iter().try_for_each(limits::check_expr)
    }

    /// Every UDF (scalar and aggregate) the plan calls.
    pub fn udfs(&self) -> (Vec<String>, Vec<String>) {
        let mut scalar = Vec::new();
        let mut aggregate = Vec::new();
        if let Body::Aggregate(a) = &self.body {
            for c in &a.aggs {
                if let AggFunc::Udaf(n) = &c.func
                    && !aggregate.contains(n)
                {
                    aggregate.push(n.clone());
                }
            }
        }
        for e in self.exprs() {
            e.udfs(&mut scalar);
        }
        (scalar, aggregate)
    }

    /// The window of a windowed aggregation.
    pub fn window(&self) -> Option<WindowSpec> {
        match &self.body {
            Body::Aggregate(a) => a.window,
            Body::Project(_) => None,
        }
    }

    /// Number of columns of the input scope before the join (stream columns + ROWTIME).
    pub fn stream_width(&self) -> usize {
        self.source.columns.len() + 1
    }
}

fn pos(e: &sql::Expr) -> Option<Position> {
    Position::of(e.span().start)
}

fn unsupported(what: &str) -> SqlError {
    SqlError::new("unsupported", format!("{what} is not supported"))
}

/// The name a SELECT item gets: its alias, the column it names, or `KSQL_COL_<n>`.
fn item_name(e: &sql::Expr, alias: Option<&sql::Ident>, generated: &mut usize) -> String {
    if let Some(a) = alias {
        return ident_name(a);
    }
    match e {
        sql::Expr::Identifier(i) => ident_name(i),
        sql::Expr::CompoundIdentifier(parts) => parts.last().map(ident_name).unwrap_or_default(),
        _ => {
            let n = format!("KSQL_COL_{generated}");
            *generated += 1;
            n
        }
    }
}

struct FromClause<'a> {
    stream: &'a SourceDef,
    stream_q: String,
    table: Option<(&'a SourceDef, String, &'a sql::Expr, bool)>,
}

fn from_clause<'a>(
    select: &'a sql::Select,
    catalog: &'a Catalog,
) -> Result<FromClause<'a>, SqlError> {
    let [twj] = select.from.as_slice() else {
        return Err(if select.from.is_empty() {
            SqlError::syntax("a query needs FROM")
        } else {
            unsupported("more than one source in FROM (use JOIN)")
        });
    };
    let (name, alias) = table_name(&twj.relation)?;
    let stream = catalog.require(&name)?;
    let stream_q = alias.unwrap_or(name);
    let table = match twj.joins.as_slice() {
        [] => None,
        [j] => {
            let (tname, talias) = table_name(&j.relation)?;
            let t = catalog.require(&tname)?;
            let (constraint, left) = match &j.join_operator {
                sql::JoinOperator::Join(c) | sql::JoinOperator::Inner(c) => (c, false),
                sql::JoinOperator::Left(c) | sql::JoinOperator::LeftOuter(c) => (c, true),
                _ => {
                    return Err(unsupported(
                        "this kind of JOIN (use [INNER] JOIN or LEFT JOIN)",
                    ));
                }
            };
            let sql::JoinConstraint::On(on) = constraint else {
                return Err(SqlError::syntax(
                    "a JOIN needs ON <stream column> = <table key>",
                ));
            };
            Some((t, talias.unwrap_or(tname), on, left))
        }
        _ => return Err(unsupported("joining more than two sources")),
    };
    Ok(FromClause {
        stream,
        stream_q,
        table,
    })
}

fn table_name(f: &sql::TableFactor) -> Result<(String, Option<String>), SqlError> {
    match f {
        sql::TableFactor::Table { name, alias, .. } => {
            let n = name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(ident_name)
                .ok_or_else(|| SqlError::syntax("expected a stream or table name"))?;
            Ok((n, alias.as_ref().map(|a| ident_name(&a.name))))
        }
        _ => Err(unsupported("a subquery or table function in FROM")),
    }
}

fn scope_of(def: &SourceDef, qualifier: &str, rowtime: bool) -> Vec<ScopeColumn> {
    let mut s: Vec<ScopeColumn> = def
        .columns
        .iter()
        .map(|c| ScopeColumn {
            qualifier: Some(qualifier.to_string()),
            name: c.name.clone(),
            ty: c.ty.clone(),
        })
        .collect();
    if rowtime {
        s.push(ScopeColumn {
            qualifier: Some(qualifier.to_string()),
            name: "ROWTIME".into(),
            ty: SqlType::Bigint,
        });
    }
    s
}

/// Plans a SELECT reading from the catalog's sources. Recursive over the statement: call it
/// on the SQL thread (`limits::on_sql_stack`).
pub fn plan_query(
    id: &str,
    sink_topic: &str,
    stmt: &SelectStmt,
    catalog: &Catalog,
    functions: &dyn FunctionCatalog,
) -> Result<QueryPlan, SqlError> {
    let plan = plan_select(id, sink_topic, stmt, catalog, functions)?;
    plan.check_limits()?;
    Ok(plan)
}

fn plan_select(
    id: &str,
    sink_topic: &str,
    stmt: &SelectStmt,
    catalog: &Catalog,
    functions: &dyn FunctionCatalog,
) -> Result<QueryPlan, SqlError> {
    let q = &stmt.query;
    if q.with.is_some() || q.order_by.is_some() || q.fetch.is_some() {
        return Err(unsupported("WITH, ORDER BY or FETCH in a streaming query"));
    }
    let limit = match &q.limit_clause {
        None => None,
        Some(sql::LimitClause::LimitOffset {
            limit: Some(l),
            offset: None,
            ..
        }) => match l {
            sql::Expr::Value(v) => match &v.value {
                sql::Value::Number(n, _) => n.parse::<u64>().ok(),
                _ => None,
            },
            _ => None,
        }
        .map(Some)
        .ok_or_else(|| SqlError::syntax("LIMIT takes a whole number").at(pos(l)))?,
        Some(_) => return Err(unsupported("OFFSET")),
    };
    let sql::SetExpr::Select(select) = q.body.as_ref() else {
        return Err(unsupported("UNION, VALUES or a nested query"));
    };
    if select.distinct.is_some() || select.having.is_some() && select.group_by_is_empty() {
        if select.distinct.is_some() {
            return Err(unsupported("SELECT DISTINCT"));
        }
        return Err(SqlError::new("invalid_statement", "HAVING needs GROUP BY"));
    }
    let from = from_clause(select, catalog)?;
    let stream = from.stream;
    if stream.kind == SourceKind::Table && from.table.is_some() {
        return Err(unsupported(
            "a table on the left of a JOIN (join a stream to a table)",
        ));
    }
    let mut scope = scope_of(stream, &from.stream_q, true);
    let stream_width = scope.len();
    let mut join = None;
    if let Some((table, tq, on, left)) = &from.table {
        if table.kind != SourceKind::Table {
            return Err(unsupported(
                "a stream–stream join (join a stream to a TABLE)",
            ));
        }
        let Some(key_idx) = table.key_column() else {
            return Err(SqlError::new(
                "invalid_statement",
                format!("table {} has no PRIMARY KEY column to join on", table.name),
            ));
        };
        if table.partitions != stream.partitions {
            return Err(SqlError::new(
                "invalid_statement",
                format!(
                    "cannot join {} ({} partitions) with {} ({} partitions): both sides need \
                     the same number of partitions",
                    stream.name, stream.partitions, table.name, table.partitions
                ),
            ));
        }
        let stream_scope = scope.clone();
        let table_scope = scope_of(table, tq, false);
        let sql::Expr::BinaryOp {
            left: l,
            op: sql::BinaryOperator::Eq,
            right: r,
        } = on
        else {
            return Err(
                SqlError::syntax("JOIN ... ON must be <stream column> = <table key>").at(pos(on)),
            );
        };
        let s_res = Resolver {
            scope: &stream_scope,
            functions,
        };
        let t_res = Resolver {
            scope: &table_scope,
            functions,
        };
        let (stream_side, table_side) = match (s_res.resolve(l), t_res.resolve(r)) {
            (Ok(s), Ok(t)) => (s, t),
            _ => match (s_res.resolve(r), t_res.resolve(l)) {
                (Ok(s), Ok(t)) => (s, t),
                (Err(e), _) | (_, Err(e)) => return Err(e),
            },
        };
        if table_side.0 != Expr::Column(key_idx) {
            return Err(SqlError::new(
                "invalid_statement",
                format!(
                    "a stream–table join must be on the table's PRIMARY KEY ({}.{})",
                    tq, table.columns[key_idx].name
                ),
            )
            .at(pos(on)));
        }
        if !stream_side.1.comparable(&table_side.1) {
            return Err(SqlError::new(
                "type_mismatch",
                format!("cannot join {} with {}", stream_side.1, table_side.1),
            )
            .at(pos(on)));
        }
        let repartition = stream.key_column().map(Expr::Column) != Some(stream_side.0.clone());
        join = Some(JoinPlan {
            table: SourceBinding::of(table),
            stream_key: stream_side.0,
            left: *left,
            repartition,
        });
        scope.extend(table_scope);
    }
    let resolver = Resolver {
        scope: &scope,
        functions,
    };
    let filter = match &select.selection {
        Some(w) => Some(condition("WHERE", w, resolver.resolve(w)?)?),
        None => None,
    };
    let group_exprs: Vec<&sql::Expr> = match &select.group_by {
        sql::GroupByExpr::Expressions(exprs, mods) if mods.is_empty() => exprs.iter().collect(),
        sql::GroupByExpr::Expressions(..) => return Err(unsupported("GROUP BY modifiers")),
        sql::GroupByExpr::All(_) => return Err(unsupported("GROUP BY ALL")),
    };
    if group_exprs.is_empty() {
        if stmt.window.is_some() {
            return Err(SqlError::new(
                "invalid_statement",
                "WINDOW needs GROUP BY (a windowed aggregation)",
            ));
        }
        if stmt.emit == Some(Emit::Final) {
            return Err(SqlError::new(
                "invalid_statement",
                "EMIT FINAL needs a windowed aggregation",
            ));
        }
        let mut exprs = Vec::new();
        let mut output = Vec::new();
        let mut generated = 0;
        let key_col = stream.key_column();
        for item in &select.projection {
            match item {
                sql::SelectItem::Wildcard(_) => {
                    for (i, c) in scope.iter().enumerate() {
                        if c.name == "ROWTIME" && i == stream_width - 1 {
                            continue;
                        }
                        exprs.push(Expr::Column(i));
                        output.push(ColumnDef {
                            name: c.name.clone(),
                            ty: c.ty.clone(),
                            key: join.is_none() && Some(i) == key_col,
                        });
                    }
                }
                sql::SelectItem::QualifiedWildcard(kind, _) => {
                    let q = kind.to_string().trim_end_matches(".*").to_uppercase();
                    let mut any = false;
                    for (i, c) in scope.iter().enumerate() {
                        if c.qualifier.as_deref().map(str::to_uppercase) == Some(q.clone())
                            && !(c.name == "ROWTIME" && i == stream_width - 1)
                        {
                            any = true;
                            exprs.push(Expr::Column(i));
                            output.push(ColumnDef {
                                name: c.name.clone(),
                                ty: c.ty.clone(),
                                key: false,
                            });
                        }
                    }
                    if !any {
                        return Err(SqlError::new(
                            "unknown_source",
                            format!("no source called {q} in FROM"),
                        ));
                    }
                }
                sql::SelectItem::UnnamedExpr(e)
                | sql::SelectItem::ExprWithAlias { expr: e, .. } => {
                    let alias = match item {
                        sql::SelectItem::ExprWithAlias { alias, .. } => Some(alias),
                        _ => None,
                    };
                    let (x, t) = resolver.resolve(e)?;
                    let key = join.is_none() && key_col.is_some_and(|k| x == Expr::Column(k));
                    output.push(ColumnDef {
                        name: item_name(e, alias, &mut generated),
                        ty: t,
                        key,
                    });
                    exprs.push(x);
                }
                _ => return Err(unsupported("this SELECT item")),
            }
        }
        check_unique(&output)?;
        return Ok(QueryPlan {
            id: id.to_string(),
            sql: stmt.text.clone(),
            sink_topic: sink_topic.to_string(),
            source: SourceBinding::of(stream),
            join,
            filter,
            body: Body::Project(exprs),
            output,
            limit,
        });
    }

    // A grouped aggregation.
    if stream.kind == SourceKind::Table {
        return Err(unsupported("aggregating a table (aggregate a stream)"));
    }
    let mut group = Vec::new();
    let mut agg_scope = Vec::new();
    let mut generated = 0;
    for g in &group_exprs {
        let (x, t) = resolver.resolve(g)?;
        agg_scope.push(ScopeColumn {
            qualifier: None,
            name: item_name(g, None, &mut generated),
            ty: t,
        });
        group.push(x);
    }
    let window = stmt.window;
    for w in ["WINDOWSTART", "WINDOWEND"] {
        agg_scope.push(ScopeColumn {
            qualifier: None,
            name: w.into(),
            ty: SqlType::Bigint,
        });
    }
    let nkeys = group.len();
    let mut aggs: Vec<AggCall> = Vec::new();
    let mut hook = |_: &Resolver, e: &sql::Expr| -> Result<Option<(Expr, SqlType)>, SqlError> {
        // A GROUP BY expression, as a whole.
        if !matches!(e, sql::Expr::Value(_))
            && let Ok((x, t)) = resolver.resolve(e)
            && let Some(i) = group.iter().position(|g| *g == x)
        {
            return Ok(Some((Expr::Column(i), t)));
        }
        match e {
            sql::Expr::Identifier(i) => {
                let n = ident_name(i);
                if n == "WINDOWSTART" || n == "WINDOWEND" {
                    if window.is_none() {
                        return Err(SqlError::new(
                            "unknown_column",
                            format!("{n} exists only in windowed aggregations"),
                        )
                        .at(pos(e)));
                    }
                    let off = if n == "WINDOWSTART" { 0 } else { 1 };
                    return Ok(Some((Expr::Column(nkeys + off), SqlType::Bigint)));
                }
                // Resolves in the input scope, but is neither grouped nor aggregated.
                resolver.resolve(e)?;
                Err(SqlError::new(
                    "invalid_statement",
                    format!("column {n} must be in GROUP BY or inside an aggregate function"),
                )
                .at(pos(e)))
            }
            sql::Expr::CompoundIdentifier(_) => {
                resolver.resolve(e)?;
                Err(SqlError::new(
                    "invalid_statement",
                    format!("{e} must be in GROUP BY or inside an aggregate function"),
                )
                .at(pos(e)))
            }
            sql::Expr::Function(f) => {
                let name = function_name(f);
                let udaf = match functions.lookup(&name) {
                    Some((UdfKind::Aggregate, sig)) => Some(sig),
                    _ => None,
                };
                if !is_builtin_aggregate(&name) && udaf.is_none() {
                    return Ok(None);
                }
                let raw = call_args(f).map_err(|x| x.at(pos(e)))?;
                let mut args = Vec::new();
                let mut types = Vec::new();
                for a in &raw {
                    let (x, t) = resolver.resolve(a)?;
                    args.push(x);
                    types.push(t);
                }
                let want = |n: usize| -> Result<(), SqlError> {
                    if raw.len() == n {
                        Ok(())
                    } else {
                        Err(SqlError::new(
                            "type_mismatch",
                            format!("{name} takes {n} argument(s), got {}", raw.len()),
                        )
                        .at(pos(e)))
                    }
                };
                let numeric = |t: &SqlType| -> Result<(), SqlError> {
                    if t.is_numeric() {
                        Ok(())
                    } else {
                        Err(SqlError::new(
                            "type_mismatch",
                            format!("{name} needs a number, got {t}"),
                        )
                        .at(pos(e)))
                    }
                };
                let (func, ty) = match (name.as_str(), udaf) {
                    ("COUNT", _) if raw.is_empty() => (AggFunc::CountRows, SqlType::Bigint),
                    ("COUNT", _) => {
                        want(1)?;
                        (AggFunc::Count, SqlType::Bigint)
                    }
                    ("SUM", _) => {
                        want(1)?;
                        numeric(&types[0])?;
                        (AggFunc::Sum, sum_type(&types[0]))
                    }
                    ("AVG", _) => {
                        want(1)?;
                        numeric(&types[0])?;
                        (AggFunc::Avg, SqlType::Double)
                    }
                    ("MIN" | "MAX", _) => {
                        want(1)?;
                        let f = if name == "MIN" {
                            AggFunc::Min
                        } else {
                            AggFunc::Max
                        };
                        (f, types[0].clone())
                    }
                    ("LATEST_BY_OFFSET", _) => {
                        want(1)?;
                        (AggFunc::Latest, types[0].clone())
                    }
                    ("EARLIEST_BY_OFFSET", _) => {
                        want(1)?;
                        (AggFunc::Earliest, types[0].clone())
                    }
                    (_, Some(sig)) => {
                        want(sig.params.len())?;
                        for (i, (t, p)) in types.iter().zip(&sig.params).enumerate() {
                            if !udf_accepts(*p, t) {
                                return Err(SqlError::new(
                                    "type_mismatch",
                                    format!(
                                        "function {name} argument {} must be {}, got {t}",
                                        i + 1,
                                        p.sql_name()
                                    ),
                                )
                                .at(pos(e)));
                            }
                        }
                        (AggFunc::Udaf(name.clone()), udf_sql_type(sig.returns))
                    }
                    _ => return Ok(None),
                };
                let call = AggCall {
                    func,
                    args,
                    ty: ty.clone(),
                };
                let idx = match aggs.iter().position(|a| *a == call) {
                    Some(i) => i,
                    None => {
                        aggs.push(call);
                        aggs.len() - 1
                    }
                };
                Ok(Some((Expr::Column(nkeys + 2 + idx), ty)))
            }
            _ => Ok(None),
        }
    };
    let agg_resolver = Resolver {
        scope: &agg_scope,
        functions,
    };
    let mut project = Vec::new();
    let mut output = Vec::new();
    let mut generated = 0;
    for item in &select.projection {
        let (e, alias) = match item {
            sql::SelectItem::UnnamedExpr(e) => (e, None),
            sql::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias)),
            _ => {
                return Err(SqlError::new(
                    "invalid_statement",
                    "SELECT * cannot be used with GROUP BY: list the columns",
                ));
            }
        };
        let (x, t) = agg_resolver.resolve_with(e, &mut hook)?;
        let key = matches!(x, Expr::Column(i) if i < nkeys);
        output.push(ColumnDef {
            name: item_name(e, alias, &mut generated),
            ty: t,
            key,
        });
        project.push(x);
    }
    let having = match &select.having {
        Some(h) => Some(condition(
            "HAVING",
            h,
            agg_resolver.resolve_with(h, &mut hook)?,
        )?),
        None => None,
    };
    if let Some(w) = window {
        for (name, off) in [("WINDOWSTART", 0), ("WINDOWEND", 1)] {
            if !output.iter().any(|c| c.name == name) {
                output.push(ColumnDef {
                    name: name.into(),
                    ty: SqlType::Bigint,
                    key: false,
                });
                project.push(Expr::Column(nkeys + off));
            }
        }
        let _ = w;
    }
    check_unique(&output)?;
    // Rows reaching the aggregation are keyed by the join key (after a join) or by the
    // stream's key column; grouping by exactly that needs no repartition.
    let row_key: Option<Vec<Expr>> = match &join {
        Some(j) => Some(vec![j.stream_key.clone()]),
        None => stream.key_column().map(|k| vec![Expr::Column(k)]),
    };
    let table_key = join.as_ref().and_then(|j| {
        j.table
            .columns
            .iter()
            .position(|c| c.key)
            .map(|k| vec![Expr::Column(stream_width + k)])
    });
    let repartition = !(row_key.as_ref() == Some(&group) || table_key.as_ref() == Some(&group));
    let emit = stmt.emit.unwrap_or(Emit::Changes);
    if emit == Emit::Final && window.is_none() {
        return Err(SqlError::new(
            "invalid_statement",
            "EMIT FINAL needs a windowed aggregation",
        ));
    }
    Ok(QueryPlan {
        id: id.to_string(),
        sql: stmt.text.clone(),
        sink_topic: sink_topic.to_string(),
        source: SourceBinding::of(stream),
        join,
        filter,
        body: Body::Aggregate(AggPlan {
            group,
            aggs,
            window,
            having,
            project,
            emit,
            repartition,
        }),
        output,
        limit,
    })
}

/// A WHERE or HAVING condition: must be BOOLEAN.
fn condition(clause: &str, e: &sql::Expr, (x, t): (Expr, SqlType)) -> Result<Expr, SqlError> {
    if matches!(t, SqlType::Boolean | SqlType::Null | SqlType::Any) {
        Ok(x)
    } else {
        Err(SqlError::new(
            "type_mismatch",
            format!("{clause} needs a BOOLEAN condition, got {t}"),
        )
        .at(pos(e)))
    }
}

fn check_unique(cols: &[ColumnDef]) -> Result<(), SqlError> {
    for (i, c) in cols.iter().enumerate() {
        if cols[..i].iter().any(|o| o.name == c.name) {
            return Err(SqlError::new(
                "invalid_statement",
                format!(
                    "the output has two columns named {}: give one an alias (AS ...)",
                    c.name
                ),
            ));
        }
    }
    Ok(())
}

trait GroupByEmpty {
    fn group_by_is_empty(&self) -> bool;
}

impl GroupByEmpty for sql::Select {
    fn group_by_is_empty(&self) -> bool {
        matches!(&self.group_by, sql::GroupByExpr::Expressions(e, _) if e.is_empty())
    }
}

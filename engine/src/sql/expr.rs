//! Resolved expressions: sqlparser expressions bound to the columns of a scope, with their
//! types checked at planning time (`resolve`), and evaluated a batch of rows at a time
//! (`Expr::eval`), so that a Wasm UDF is called once per batch, not once per row.
//!
//! Built-in scalar functions live in `functions`; aggregates are taken apart by the planner
//! (`plan`) before anything reaches here.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlparser::ast::Spanned;
use sqlparser::ast::{self as sql, BinaryOperator, UnaryOperator};

use super::error::{Position, SqlError};
use super::functions::{self, Builtin};
use super::limits::{self, MAX_EXPR_DEPTH};
use super::parser::ident_name;
use super::types::SqlType;
use crate::host::{Interrupt, ProcessorError};
use crate::udf::{FunctionCatalog, ScalarUdf, UdfKind, UdfType, UdfValue};

/// A row: one value per column of its scope.
pub type Row = Vec<Value>;

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Concat,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
}

/// An expression bound to a scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    Column(usize),
    Literal(Value),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    IsNull(Box<Expr>, bool),
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    Cast(Box<Expr>, SqlType),
    Call(Builtin, Vec<Expr>),
    /// A Wasm scalar UDF; arguments are converted to its declared parameter types.
    Udf {
        name: String,
        args: Vec<Expr>,
        returns: UdfType,
    },
    /// A field of a STRUCT/MAP value (`col->field`).
    Field(Box<Expr>, String),
}

/// A column visible to expressions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeColumn {
    /// The source (name or alias) it belongs to, for `alias.col`.
    pub qualifier: Option<String>,
    pub name: String,
    pub ty: SqlType,
}

/// A resolved expression and its type.
pub type Typed = (Expr, SqlType);

/// A planner hook: may answer a sub-expression before the resolver does.
pub type Hook<'h> = dyn FnMut(&Resolver, &sql::Expr) -> Result<Option<Typed>, SqlError> + 'h;

/// Where a resolver may look up names and functions.
pub struct Resolver<'a> {
    pub scope: &'a [ScopeColumn],
    pub functions: &'a dyn FunctionCatalog,
}

fn pos(e: &sql::Expr) -> Option<Position> {
    Position::of(e.span().start)
}

fn mismatch(e: &sql::Expr, msg: String) -> SqlError {
    SqlError::new("type_mismatch", msg).at(pos(e))
}

/// Whether `name` is an aggregate function (built-in); UDAFs are asked of the catalog.
pub fn is_builtin_aggregate(name: &str) -> bool {
    matches!(
        name,
        "COUNT" | "SUM" | "MIN" | "MAX" | "AVG" | "LATEST_BY_OFFSET" | "EARLIEST_BY_OFFSET"
    )
}

/// The function name of a call, upper-cased.
pub fn function_name(f: &sql::Function) -> String {
    f.name
        .0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(ident_name)
        .collect::<Vec<_>>()
        .join(".")
        .to_uppercase()
}

/// Positional argument expressions of a call; `*` gives an empty list (COUNT(*)).
pub fn call_args(f: &sql::Function) -> Result<Vec<&sql::Expr>, SqlError> {
    let list = match &f.args {
        sql::FunctionArguments::None => return Ok(Vec::new()),
        sql::FunctionArguments::List(l) => l,
        sql::FunctionArguments::Subquery(_) => {
            return Err(SqlError::new("unsupported", "subqueries are not supported"));
        }
    };
    if list.duplicate_treatment.is_some() {
        return Err(SqlError::new(
            "unsupported",
            "DISTINCT inside a function call is not supported",
        ));
    }
    let mut out = Vec::new();
    for a in &list.args {
        match a {
            sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(e)) => out.push(e),
            sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Wildcard) => {}
            _ => {
                return Err(SqlError::new(
                    "unsupported",
                    "named or qualified-wildcard function arguments are not supported",
                ));
            }
        }
    }
    Ok(out)
}

/// Converts a literal.
pub fn literal(v: &sql::Value) -> Result<(Value, SqlType), SqlError> {
    Ok(match v {
        sql::Value::Number(n, _) => {
            if let Ok(i) = n.parse::<i64>() {
                let t = if i32::try_from(i).is_ok() {
                    SqlType::Int
                } else {
                    SqlType::Bigint
                };
                (Value::from(i), t)
            } else {
                let f: f64 = n
                    .parse()
                    .map_err(|_| SqlError::syntax(format!("bad number {n}")))?;
                (Value::from(f), SqlType::Double)
            }
        }
        sql::Value::SingleQuotedString(s)
        | sql::Value::EscapedStringLiteral(s)
        | sql::Value::NationalStringLiteral(s) => (Value::String(s.clone()), SqlType::String),
        sql::Value::Boolean(b) => (Value::Bool(*b), SqlType::Boolean),
        sql::Value::Null => (Value::Null, SqlType::Null),
        other => {
            return Err(SqlError::new(
                "unsupported",
                format!("unsupported literal {other}"),
            ));
        }
    })
}

impl Resolver<'_> {
    /// Finds a column by (optional qualifier, name).
    pub fn column(
        &self,
        qualifier: Option<&str>,
        name: &str,
        at: Option<Position>,
    ) -> Result<(usize, SqlType), SqlError> {
        let hits: Vec<usize> = self
            .scope
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.name == name
                    && match qualifier {
                        None => true,
                        Some(q) => c.qualifier.as_deref() == Some(q),
                    }
            })
            .map(|(i, _)| i)
            .collect();
        match hits.as_slice() {
            [i] => Ok((*i, self.scope[*i].ty.clone())),
            [] => {
                let full = match qualifier {
                    Some(q) => format!("{q}.{name}"),
                    None => name.to_string(),
                };
                Err(SqlError::new(
                    "unknown_column",
                    format!("column '{full}' cannot be resolved"),
                )
                .at(at))
            }
            _ => Err(SqlError::new(
                "unknown_column",
                format!("column '{name}' is ambiguous: qualify it with its source"),
            )
            .at(at)),
        }
    }

    /// Resolves and type-checks an expression (no aggregates allowed).
    pub fn resolve(&self, e: &sql::Expr) -> Result<(Expr, SqlType), SqlError> {
        self.resolve_with(e, &mut |_, _| Ok(None))
    }

    /// Like [`Resolver::resolve`], but `hook` is asked first for every sub-expression and may
    /// answer it (the planner uses this for GROUP BY keys and aggregate calls).
    pub fn resolve_with(
        &self,
        e: &sql::Expr,
        hook: &mut Hook,
    ) -> Result<(Expr, SqlType), SqlError> {
        self.resolve_at(e, hook, 1)
    }

    /// Resolves `e`, `depth` levels below the top of its expression: deeper than
    /// `MAX_EXPR_DEPTH` is refused before recursing further.
    fn resolve_at(
        &self,
        e: &sql::Expr,
        hook: &mut Hook,
        depth: usize,
    ) -> Result<(Expr, SqlType), SqlError> {
        if depth > MAX_EXPR_DEPTH {
            return Err(limits::too_deep(format!(
                "expression nested more than {MAX_EXPR_DEPTH} levels deep"
            ))
            .at(pos(e)));
        }
        if let Some(r) = hook(self, e)? {
            return Ok(r);
        }
        // Parentheses add no level: `((a))` is `a`.
        let next = if matches!(e, sql::Expr::Nested(_)) {
            depth
        } else {
            depth + 1
        };
        let mut sub = |x: &sql::Expr| self.resolve_at(x, hook, next);
        Ok(match e {
            sql::Expr::Identifier(i) => {
                let (idx, t) = self.column(None, &ident_name(i), pos(e))?;
                (Expr::Column(idx), t)
            }
            sql::Expr::CompoundIdentifier(parts) => {
                let names: Vec<String> = parts.iter().map(ident_name).collect();
                match names.as_slice() {
                    [q, n] => {
                        // `alias.col`, or `structcol.field`.
                        match self.column(Some(q), n, pos(e)) {
                            Ok((idx, t)) => (Expr::Column(idx), t),
                            Err(err) => match self.column(None, q, pos(e)) {
                                Ok((idx, t)) => field_of(Expr::Column(idx), &t, n, e)?,
                                Err(_) => return Err(err),
                            },
                        }
                    }
                    [q, n, f] => {
                        let (idx, t) = self.column(Some(q), n, pos(e))?;
                        field_of(Expr::Column(idx), &t, f, e)?
                    }
                    _ => {
                        return Err(SqlError::new(
                            "unknown_column",
                            format!("cannot resolve '{}'", names.join(".")),
                        )
                        .at(pos(e)));
                    }
                }
            }
            sql::Expr::Value(v) => {
                let (v, t) = literal(&v.value).map_err(|x| x.at(pos(e)))?;
                (Expr::Literal(v), t)
            }
            sql::Expr::Nested(inner) => sub(inner)?,
            sql::Expr::UnaryOp { op, expr } => {
                let (x, t) = sub(expr)?;
                match op {
                    UnaryOperator::Not => {
                        expect_bool(&t, expr)?;
                        (Expr::Not(Box::new(x)), SqlType::Boolean)
                    }
                    UnaryOperator::Minus => {
                        if !t.is_numeric() {
                            return Err(mismatch(e, format!("cannot negate a {t}")));
                        }
                        (Expr::Neg(Box::new(x)), t)
                    }
                    UnaryOperator::Plus => (x, t),
                    other => {
                        return Err(SqlError::new(
                            "unsupported",
                            format!("unsupported operator {other}"),
                        )
                        .at(pos(e)));
                    }
                }
            }
            sql::Expr::BinaryOp { left, op, right } => {
                let (l, lt) = sub(left)?;
                let (r, rt) = sub(right)?;
                let bop = match op {
                    BinaryOperator::Plus => BinOp::Add,
                    BinaryOperator::Minus => BinOp::Sub,
                    BinaryOperator::Multiply => BinOp::Mul,
                    BinaryOperator::Divide => BinOp::Div,
                    BinaryOperator::Modulo => BinOp::Mod,
                    BinaryOperator::StringConcat => BinOp::Concat,
                    BinaryOperator::Eq => BinOp::Eq,
                    BinaryOperator::NotEq => BinOp::NotEq,
                    BinaryOperator::Lt => BinOp::Lt,
                    BinaryOperator::LtEq => BinOp::LtEq,
                    BinaryOperator::Gt => BinOp::Gt,
                    BinaryOperator::GtEq => BinOp::GtEq,
                    BinaryOperator::And => BinOp::And,
                    BinaryOperator::Or => BinOp::Or,
                    other => {
                        return Err(SqlError::new(
                            "unsupported",
                            format!("unsupported operator {other}"),
                        )
                        .at(pos(e)));
                    }
                };
                let t = match bop {
                    BinOp::Add if lt == SqlType::String && rt.is_stringy() => SqlType::String,
                    BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => {
                        lt.arithmetic(&rt).ok_or_else(|| {
                            mismatch(e, format!("cannot apply {op} to {lt} and {rt}"))
                        })?
                    }
                    BinOp::Concat => SqlType::String,
                    BinOp::And | BinOp::Or => {
                        expect_bool(&lt, left)?;
                        expect_bool(&rt, right)?;
                        SqlType::Boolean
                    }
                    _ => {
                        if !lt.comparable(&rt) {
                            return Err(mismatch(e, format!("cannot compare {lt} with {rt}")));
                        }
                        SqlType::Boolean
                    }
                };
                let bop = if bop == BinOp::Add && t == SqlType::String {
                    BinOp::Concat
                } else {
                    bop
                };
                (Expr::Binary(bop, Box::new(l), Box::new(r)), t)
            }
            sql::Expr::IsNull(x) => (Expr::IsNull(Box::new(sub(x)?.0), false), SqlType::Boolean),
            sql::Expr::IsNotNull(x) => (Expr::IsNull(Box::new(sub(x)?.0), true), SqlType::Boolean),
            sql::Expr::IsTrue(x) => {
                let (x, _) = sub(x)?;
                let t = Expr::Literal(Value::Bool(true));
                (
                    Expr::Binary(BinOp::Eq, Box::new(x), Box::new(t)),
                    SqlType::Boolean,
                )
            }
            sql::Expr::IsFalse(x) => {
                let (x, _) = sub(x)?;
                let f = Expr::Literal(Value::Bool(false));
                (
                    Expr::Binary(BinOp::Eq, Box::new(x), Box::new(f)),
                    SqlType::Boolean,
                )
            }
            sql::Expr::Like {
                negated,
                expr,
                pattern,
                escape_char,
                any: false,
            } => {
                if escape_char.is_some() {
                    return Err(
                        SqlError::new("unsupported", "LIKE ... ESCAPE is not supported").at(pos(e)),
                    );
                }
                let (x, xt) = sub(expr)?;
                let (p, pt) = sub(pattern)?;
                if !xt.is_stringy() || !pt.is_stringy() {
                    return Err(mismatch(
                        e,
                        format!("LIKE needs strings, got {xt} and {pt}"),
                    ));
                }
                (
                    Expr::Like {
                        expr: Box::new(x),
                        pattern: Box::new(p),
                        negated: *negated,
                    },
                    SqlType::Boolean,
                )
            }
            sql::Expr::InList {
                expr,
                list,
                negated,
            } => {
                let (x, xt) = sub(expr)?;
                let mut items = Vec::new();
                for i in list {
                    let (ie, it) = sub(i)?;
                    if !xt.comparable(&it) {
                        return Err(mismatch(i, format!("cannot compare {xt} with {it}")));
                    }
                    items.push(ie);
                }
                (
                    Expr::InList {
                        expr: Box::new(x),
                        list: items,
                        negated: *negated,
                    },
                    SqlType::Boolean,
                )
            }
            sql::Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let (x, xt) = sub(expr)?;
                let (l, lt) = sub(low)?;
                let (h, ht) = sub(high)?;
                if !xt.comparable(&lt) || !xt.comparable(&ht) {
                    return Err(mismatch(e, format!("cannot compare {xt} with {lt}/{ht}")));
                }
                (
                    Expr::Between {
                        expr: Box::new(x),
                        low: Box::new(l),
                        high: Box::new(h),
                        negated: *negated,
                    },
                    SqlType::Boolean,
                )
            }
            sql::Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let operand = match operand {
                    Some(o) => Some(sub(o)?),
                    None => None,
                };
                let mut whens = Vec::new();
                let mut result_t: Option<SqlType> = None;
                let mut unify = |t: SqlType, at: &sql::Expr| -> Result<(), SqlError> {
                    result_t = Some(match result_t.take() {
                        None | Some(SqlType::Null) => t,
                        Some(cur) if cur.accepts(&t) => cur,
                        Some(cur) if t.accepts(&cur) => t,
                        Some(cur) => {
                            return Err(mismatch(
                                at,
                                format!("CASE branches have different types: {cur} and {t}"),
                            ));
                        }
                    });
                    Ok(())
                };
                for w in conditions {
                    let (c, ct) = sub(&w.condition)?;
                    match &operand {
                        Some((_, ot)) if !ot.comparable(&ct) => {
                            return Err(mismatch(
                                &w.condition,
                                format!("cannot compare {ot} with {ct}"),
                            ));
                        }
                        None => expect_bool(&ct, &w.condition)?,
                        _ => {}
                    }
                    let (r, rt) = sub(&w.result)?;
                    unify(rt, &w.result)?;
                    whens.push((c, r));
                }
                let otherwise = match else_result {
                    Some(x) => {
                        let (r, rt) = sub(x)?;
                        unify(rt, x)?;
                        Some(Box::new(r))
                    }
                    None => None,
                };
                (
                    Expr::Case {
                        operand: operand.map(|(o, _)| Box::new(o)),
                        whens,
                        otherwise,
                    },
                    result_t.unwrap_or(SqlType::Null),
                )
            }
            sql::Expr::Cast {
                expr, data_type, ..
            } => {
                let (x, _) = sub(expr)?;
                let t = cast_type(data_type).map_err(|err| err.at(pos(e)))?;
                (Expr::Cast(Box::new(x), t.clone()), t)
            }
            sql::Expr::Function(f) => self.function(e, f, &mut sub)?,
            sql::Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![sub(expr)?];
                if let Some(f) = substring_from {
                    args.push(sub(f)?);
                }
                if let Some(f) = substring_for {
                    args.push(sub(f)?);
                }
                builtin_call(Builtin::Substring, args, e)?
            }
            sql::Expr::Trim {
                expr,
                trim_where,
                trim_what,
                trim_characters,
            } => {
                if trim_where.is_some() || trim_what.is_some() || trim_characters.is_some() {
                    return Err(SqlError::new(
                        "unsupported",
                        "TRIM takes one argument here (use LTRIM/RTRIM)",
                    )
                    .at(pos(e)));
                }
                builtin_call(Builtin::Trim, vec![sub(expr)?], e)?
            }
            sql::Expr::Ceil { expr, .. } => builtin_call(Builtin::Ceil, vec![sub(expr)?], e)?,
            sql::Expr::Floor { expr, .. } => builtin_call(Builtin::Floor, vec![sub(expr)?], e)?,
            other => {
                return Err(SqlError::new(
                    "unsupported",
                    format!("unsupported expression: {other}"),
                )
                .at(pos(e)));
            }
        })
    }

    fn function(
        &self,
        e: &sql::Expr,
        f: &sql::Function,
        sub: &mut dyn FnMut(&sql::Expr) -> Result<Typed, SqlError>,
    ) -> Result<(Expr, SqlType), SqlError> {
        let name = function_name(f);
        // `USER`, `CURRENT_DATE`… parse as calls without parentheses: a column of that name
        // wins.
        if matches!(f.args, sql::FunctionArguments::None)
            && let Ok((idx, t)) = self.column(None, &name, pos(e))
        {
            return Ok((Expr::Column(idx), t));
        }
        let raw = call_args(f).map_err(|err| err.at(pos(e)))?;
        if is_builtin_aggregate(&name) {
            return Err(SqlError::new(
                "invalid_statement",
                format!("aggregate {name} is only allowed in the SELECT list or HAVING of a query with GROUP BY"),
            )
            .at(pos(e)));
        }
        let mut args = Vec::with_capacity(raw.len());
        for a in raw {
            args.push(sub(a)?);
        }
        if let Some(b) = Builtin::by_name(&name) {
            return builtin_call(b, args, e);
        }
        match self.functions.lookup(&name) {
            Some((UdfKind::Scalar, sig)) => {
                if sig.params.len() != args.len() {
                    return Err(mismatch(
                        e,
                        format!(
                            "function {name} takes {} argument(s), got {}",
                            sig.params.len(),
                            args.len()
                        ),
                    ));
                }
                for (i, ((_, at), want)) in args.iter().zip(&sig.params).enumerate() {
                    if !udf_accepts(*want, at) {
                        return Err(mismatch(
                            e,
                            format!(
                                "function {name} argument {} must be {}, got {at}",
                                i + 1,
                                want.sql_name()
                            ),
                        ));
                    }
                }
                Ok((
                    Expr::Udf {
                        name,
                        args: args.into_iter().map(|(x, _)| x).collect(),
                        returns: sig.returns,
                    },
                    udf_sql_type(sig.returns),
                ))
            }
            Some((UdfKind::Aggregate, _)) => Err(SqlError::new(
                "invalid_statement",
                format!("aggregate {name} is only allowed in a query with GROUP BY"),
            )
            .at(pos(e))),
            None => Err(SqlError::new(
                "unknown_function",
                format!("unknown function {name} (SHOW FUNCTIONS lists them)"),
            )
            .at(pos(e))),
        }
    }
}

fn field_of(
    base: Expr,
    t: &SqlType,
    field: &str,
    e: &sql::Expr,
) -> Result<(Expr, SqlType), SqlError> {
    let ft = match t {
        SqlType::Struct(fields) => fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(field))
            .map(|(_, t)| t.clone())
            .ok_or_else(|| {
                SqlError::new("unknown_column", format!("struct has no field '{field}'")).at(pos(e))
            })?,
        SqlType::Map(v) => (**v).clone(),
        SqlType::Any => SqlType::Any,
        other => return Err(mismatch(e, format!("{other} has no fields"))),
    };
    Ok((Expr::Field(Box::new(base), field.to_string()), ft))
}

fn expect_bool(t: &SqlType, e: &sql::Expr) -> Result<(), SqlError> {
    if matches!(t, SqlType::Boolean | SqlType::Null | SqlType::Any) {
        Ok(())
    } else {
        Err(mismatch(e, format!("expected a BOOLEAN, got {t}")))
    }
}

fn builtin_call(
    b: Builtin,
    args: Vec<(Expr, SqlType)>,
    e: &sql::Expr,
) -> Result<(Expr, SqlType), SqlError> {
    let types: Vec<SqlType> = args.iter().map(|(_, t)| t.clone()).collect();
    let t = functions::check(b, &types).map_err(|m| mismatch(e, m))?;
    Ok((Expr::Call(b, args.into_iter().map(|(x, _)| x).collect()), t))
}

/// The SQL type a UDF type maps to.
pub fn udf_sql_type(t: UdfType) -> SqlType {
    match t {
        UdfType::Boolean => SqlType::Boolean,
        UdfType::Int => SqlType::Bigint,
        UdfType::Float => SqlType::Double,
        UdfType::Text => SqlType::String,
        UdfType::Bytes => SqlType::Bytes,
        UdfType::Any => SqlType::Any,
    }
}

/// Whether a UDF parameter of type `want` takes an argument of SQL type `t`.
pub fn udf_accepts(want: UdfType, t: &SqlType) -> bool {
    match want {
        UdfType::Any => true,
        _ => {
            matches!(t, SqlType::Null | SqlType::Any)
                || udf_sql_type(want).accepts(t)
                || (want == UdfType::Int && *t == SqlType::Timestamp)
        }
    }
}

/// A CAST target.
pub fn cast_type(t: &sql::DataType) -> Result<SqlType, SqlError> {
    let s = t.to_string().to_uppercase();
    let base = s.split('(').next().unwrap_or("").trim().to_string();
    Ok(match base.as_str() {
        "BOOLEAN" | "BOOL" => SqlType::Boolean,
        "INT" | "INTEGER" => SqlType::Int,
        "BIGINT" => SqlType::Bigint,
        "DOUBLE" | "FLOAT" | "REAL" | "DECIMAL" | "DOUBLE PRECISION" => SqlType::Double,
        "VARCHAR" | "STRING" | "TEXT" | "CHAR" => SqlType::String,
        "TIMESTAMP" => SqlType::Timestamp,
        other => {
            return Err(SqlError::new(
                "unsupported",
                format!("CAST to {other} is not supported"),
            ));
        }
    })
}

/// What evaluation needs besides the rows: this task's UDF instances (made with its stop
/// flag, `None` outside tasks).
pub struct EvalContext<'a> {
    pub functions: &'a dyn FunctionCatalog,
    pub stop: Option<&'a Interrupt>,
    pub udfs: &'a mut HashMap<String, Box<dyn ScalarUdf>>,
}

/// The error of an evaluation: only UDF failures are errors (built-in functions and
/// operators give NULL on bad input, as ksqlDB does).
pub type EvalError = ProcessorError;

/// SQL truth: only `true` is true.
pub fn truthy(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}

/// The items whose condition (one per item) is true.
pub fn retain_true<T>(items: Vec<T>, conditions: Vec<Value>) -> Vec<T> {
    items
        .into_iter()
        .zip(conditions)
        .filter(|(_, c)| truthy(c))
        .map(|(i, _)| i)
        .collect()
}

impl Expr {
    /// Evaluates the expression for every row.
    pub fn eval(&self, rows: &[Row], cx: &mut EvalContext) -> Result<Vec<Value>, EvalError> {
        Ok(match self {
            Expr::Column(i) => rows
                .iter()
                .map(|r| r.get(*i).cloned().unwrap_or(Value::Null))
                .collect(),
            Expr::Literal(v) => vec![v.clone(); rows.len()],
            Expr::Not(x) => x
                .eval(rows, cx)?
                .into_iter()
                .map(|v| match v {
                    Value::Bool(b) => Value::Bool(!b),
                    _ => Value::Null,
                })
                .collect(),
            Expr::Neg(x) => x
                .eval(rows, cx)?
                .into_iter()
                .map(|v| functions::arith(BinOp::Sub, &Value::from(0), &v))
                .collect(),
            Expr::Binary(op, l, r) => {
                let lv = l.eval(rows, cx)?;
                let rv = r.eval(rows, cx)?;
                lv.iter()
                    .zip(&rv)
                    .map(|(a, b)| functions::binary(*op, a, b))
                    .collect()
            }
            Expr::IsNull(x, negated) => x
                .eval(rows, cx)?
                .into_iter()
                .map(|v| Value::Bool(v.is_null() != *negated))
                .collect(),
            Expr::Like {
                expr,
                pattern,
                negated,
            } => {
                let xv = expr.eval(rows, cx)?;
                let pv = pattern.eval(rows, cx)?;
                xv.iter()
                    .zip(&pv)
                    .map(|(x, p)| match (x, p) {
                        (Value::String(x), Value::String(p)) => {
                            Value::Bool(functions::like(x, p) != *negated)
                        }
                        _ => Value::Null,
                    })
                    .collect()
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let xv = expr.eval(rows, cx)?;
                let mut lists = Vec::with_capacity(list.len());
                for l in list {
                    lists.push(l.eval(rows, cx)?);
                }
                (0..rows.len())
                    .map(|i| {
                        if xv[i].is_null() {
                            return Value::Null;
                        }
                        let hit = lists.iter().any(|l| {
                            functions::compare(&xv[i], &l[i]) == Some(std::cmp::Ordering::Equal)
                        });
                        Value::Bool(hit != *negated)
                    })
                    .collect()
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let xv = expr.eval(rows, cx)?;
                let lv = low.eval(rows, cx)?;
                let hv = high.eval(rows, cx)?;
                (0..rows.len())
                    .map(|i| {
                        use std::cmp::Ordering::*;
                        match (
                            functions::compare(&xv[i], &lv[i]),
                            functions::compare(&xv[i], &hv[i]),
                        ) {
                            (Some(a), Some(b)) => {
                                Value::Bool((a != Less && b != Greater) != *negated)
                            }
                            _ => Value::Null,
                        }
                    })
                    .collect()
            }
            Expr::Case {
                operand,
                whens,
                otherwise,
            } => {
                let ov = match operand {
                    Some(o) => Some(o.eval(rows, cx)?),
                    None => None,
                };
                let mut out: Vec<Option<Value>> = vec![None; rows.len()];
                for (cond, result) in whens {
                    let cv = cond.eval(rows, cx)?;
                    let rv = result.eval(rows, cx)?;
                    for i in 0..rows.len() {
                        if out[i].is_some() {
                            continue;
                        }
                        let hit = match &ov {
                            Some(ov) => {
                                functions::compare(&ov[i], &cv[i])
                                    == Some(std::cmp::Ordering::Equal)
                            }
                            None => truthy(&cv[i]),
                        };
                        if hit {
                            out[i] = Some(rv[i].clone());
                        }
                    }
                }
                let ev = match otherwise {
                    Some(x) => x.eval(rows, cx)?,
                    None => vec![Value::Null; rows.len()],
                };
                out.into_iter()
                    .zip(ev)
                    .map(|(o, e)| o.unwrap_or(e))
                    .collect()
            }
            Expr::Cast(x, t) => x
                .eval(rows, cx)?
                .into_iter()
                .map(|v| functions::cast(&v, t))
                .collect(),
            Expr::Call(b, args) => {
                let mut argv = Vec::with_capacity(args.len());
                for a in args {
                    argv.push(a.eval(rows, cx)?);
                }
                let mut buf = Vec::with_capacity(args.len());
                (0..rows.len())
                    .map(|i| {
                        buf.clear();
                        buf.extend(argv.iter().map(|a| a[i].clone()));
                        functions::call(*b, &buf)
                    })
                    .collect()
            }
            Expr::Udf { name, args, .. } => {
                let mut argv = Vec::with_capacity(args.len());
                for a in args {
                    argv.push(a.eval(rows, cx)?);
                }
                let calls: Vec<Vec<UdfValue>> = (0..rows.len())
                    .map(|i| argv.iter().map(|a| to_udf(&a[i])).collect())
                    .collect();
                if !cx.udfs.contains_key(name) {
                    let inst = cx.functions.scalar(name, cx.stop)?;
                    cx.udfs.insert(name.clone(), inst);
                }
                let udf = cx
                    .udfs
                    .get_mut(name)
                    .ok_or_else(|| ProcessorError::Host(format!("UDF {name} not loaded")))?;
                if calls.is_empty() {
                    return Ok(Vec::new());
                }
                let out = udf.call(&calls).map_err(|e| match e {
                    ProcessorError::Trap(m) => ProcessorError::Trap(format!("UDF {name}: {m}")),
                    ProcessorError::Guest(m) => ProcessorError::Guest(format!("UDF {name}: {m}")),
                    other => other,
                })?;
                if out.len() != calls.len() {
                    return Err(ProcessorError::Guest(format!(
                        "UDF {name} returned {} results for {} rows",
                        out.len(),
                        calls.len()
                    )));
                }
                out.into_iter().map(from_udf).collect()
            }
            Expr::Field(x, f) => x
                .eval(rows, cx)?
                .into_iter()
                .map(|v| match v {
                    Value::Object(m) => super::types::lookup_field(&m, f)
                        .cloned()
                        .unwrap_or(Value::Null),
                    _ => Value::Null,
                })
                .collect(),
        })
    }

    /// Whether the expression calls a UDF (the planner loads those per task).
    pub fn udfs(&self, out: &mut Vec<String>) {
        if let Expr::Udf { name, .. } = self
            && !out.contains(name)
        {
            out.push(name.clone());
        }
        let mut visit = |e: &Expr| e.udfs(out);
        match self {
            Expr::Udf { args, .. } => args.iter().for_each(visit),
            Expr::Column(_) | Expr::Literal(_) => {}
            Expr::Not(x)
            | Expr::Neg(x)
            | Expr::IsNull(x, _)
            | Expr::Cast(x, _)
            | Expr::Field(x, _) => visit(x),
            Expr::Binary(_, a, b) => {
                visit(a);
                visit(b);
            }
            Expr::Like { expr, pattern, .. } => {
                visit(expr);
                visit(pattern);
            }
            Expr::InList { expr, list, .. } => {
                visit(expr);
                list.iter().for_each(visit);
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                visit(expr);
                visit(low);
                visit(high);
            }
            Expr::Case {
                operand,
                whens,
                otherwise,
            } => {
                if let Some(o) = operand {
                    visit(o);
                }
                for (c, r) in whens {
                    visit(c);
                    visit(r);
                }
                if let Some(o) = otherwise {
                    visit(o);
                }
            }
            Expr::Call(_, args) => args.iter().for_each(visit),
        }
    }
}

/// A SQL value as a UDF argument.
pub fn to_udf(v: &Value) -> UdfValue {
    match v {
        Value::Null => UdfValue::Null,
        Value::Bool(b) => UdfValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => UdfValue::Int(i),
            None => UdfValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => UdfValue::Text(s.clone()),
        other => UdfValue::Text(other.to_string()),
    }
}

/// A UDF result as a SQL value (bytes become a string of their UTF-8, lossily).
pub fn from_udf(v: UdfValue) -> Value {
    match v {
        UdfValue::Null => Value::Null,
        UdfValue::Boolean(b) => Value::Bool(b),
        UdfValue::Int(i) => Value::from(i),
        UdfValue::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        UdfValue::Text(s) => Value::String(s),
        UdfValue::Bytes(b) => Value::String(String::from_utf8_lossy(&b).into_owned()),
    }
}

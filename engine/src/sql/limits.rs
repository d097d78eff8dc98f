//! How much SQL one request may ask of the server, and the thread SQL work runs on.
//!
//! Every pass over a statement (sqlparser's parser, the planner and type checker in `plan` /
//! `expr`, `Display` of sqlparser's AST in error messages, the AST's own recursive `Drop`,
//! serde of a stored plan, and `Expr::eval` in a query's tasks) is recursive, so a client who
//! controls the nesting controls the stack. The bounds here keep every one of those passes
//! finite and small:
//!
//! 1. before parsing, on the token stream (iterative): the text size, the number of
//!    statements, the tokens of each statement ([`MAX_STATEMENT_TOKENS`], which also bounds the
//!    depth of the left-deep trees sqlparser builds for `a AND b AND …` iteratively) and the
//!    bracket depth ([`MAX_NESTING`]);
//! 2. while parsing: sqlparser's own recursion limit ([`PARSER_RECURSION_LIMIT`]) and the
//!    depth of column types ([`MAX_TYPE_DEPTH`]);
//! 3. while resolving: the depth of every expression ([`MAX_EXPR_DEPTH`]), checked again
//!    (iteratively, [`check_expr`]) on every plan loaded from disk;
//! 4. parsing, planning and executing statements run on a thread of their own with a
//!    [`SQL_STACK_BYTES`] stack ([`on_sql_stack`]): enough for the deepest AST the token
//!    bound allows, whatever thread the request came in on.
//!
//! Refusals are `sql_too_deep`, `sql_too_complex` (both 400) and `too_large` (413).
//! Nothing here parses or plans; it owns only the numbers and the cheap checks.

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::error::{Position, SqlError};
use super::expr::Expr;

/// Most bytes of SQL text in one request (`too_large`, 413).
pub const MAX_SQL_BYTES: usize = 1 << 20;
/// Most statements in one request (`sql_too_complex`).
pub const MAX_STATEMENTS: usize = 1_000;
/// Most tokens (words, literals, operators, brackets; not whitespace or comments) in one
/// statement (`sql_too_complex`). Also bounds the number of expression nodes.
pub const MAX_STATEMENT_TOKENS: usize = 10_000;
/// Deepest nesting of brackets (`(`, `[`, `{`) in a statement (`sql_too_deep`).
pub const MAX_NESTING: usize = 64;
/// sqlparser's recursion limit: one level per nested sub-expression, query, table factor or
/// type, so [`MAX_NESTING`] with room for the statement around the deepest expression.
pub const PARSER_RECURSION_LIMIT: usize = MAX_NESTING + 16;
/// Deepest expression (an operator, function call, CASE, … is one level; parentheses alone
/// are not) (`sql_too_deep`).
pub const MAX_EXPR_DEPTH: usize = 64;
/// Deepest column type (`ARRAY<ARRAY<…>>`, `STRUCT<…>`) (`sql_too_deep`).
pub const MAX_TYPE_DEPTH: usize = 16;
/// Most bytes a string function or `||` may produce; a longer result is NULL (as other bad
/// input is), so that nested `REPLACE`s or `CONCAT`s cannot multiply a value without bound.
pub const MAX_STRING_BYTES: usize = 4 << 20;
/// Most levels of JSON nesting in a stored query plan: a plan is refused before it is
/// deserialised if it is deeper (a plan within [`MAX_EXPR_DEPTH`] stays far below).
pub const MAX_PLAN_JSON_DEPTH: usize = 1_024;
/// Stack of the thread that parses, plans and runs statements. Only the pages used are
/// touched; a statement within the bounds above needs a few MiB in a debug build.
pub const SQL_STACK_BYTES: usize = 64 << 20;

/// `sql_too_deep`.
pub fn too_deep(message: impl Into<String>) -> SqlError {
    SqlError::new("sql_too_deep", message)
}

/// `sql_too_complex`.
pub fn too_complex(message: impl Into<String>) -> SqlError {
    SqlError::new("sql_too_complex", message)
}

/// Checks the size of a request's SQL text.
pub fn check_text(sql: &str) -> Result<(), SqlError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(SqlError::new(
            "too_large",
            format!(
                "the SQL text is {} bytes; at most {MAX_SQL_BYTES} are accepted in one request",
                sql.len()
            ),
        ));
    }
    Ok(())
}

/// Checks one statement's tokens: how many, how deeply bracketed, how many prefix operators
/// in a row (`NOT NOT …`, `- - …`) and how deeply `CASE`s nest. (sqlparser's own recursion
/// limit is not enough for the last two: on some paths it falls back to reading `NOT` as a
/// name and reports a syntax error instead.)
pub fn check_tokens(tokens: &[TokenWithSpan]) -> Result<(), SqlError> {
    let mut count = 0usize;
    let mut depth = 0usize;
    let mut prefix_run = 0usize;
    let mut cases = 0usize;
    for t in tokens {
        let keyword = match &t.token {
            Token::Word(w) if w.quote_style.is_none() => w.keyword,
            _ => Keyword::NoKeyword,
        };
        if matches!(t.token, Token::Minus | Token::Plus) || keyword == Keyword::NOT {
            prefix_run += 1;
            if prefix_run > MAX_EXPR_DEPTH {
                return Err(too_deep(format!(
                    "more than {MAX_EXPR_DEPTH} prefix operators in a row"
                ))
                .at(Position::of(t.span.start)));
            }
        } else if !matches!(t.token, Token::Whitespace(_)) {
            prefix_run = 0;
        }
        match keyword {
            Keyword::CASE => {
                cases += 1;
                if cases > MAX_NESTING {
                    return Err(too_deep(format!(
                        "CASE expressions nest more than {MAX_NESTING} deep"
                    ))
                    .at(Position::of(t.span.start)));
                }
            }
            Keyword::END => cases = cases.saturating_sub(1),
            _ => {}
        }
        match t.token {
            Token::Whitespace(_) | Token::EOF => continue,
            Token::LParen | Token::LBracket | Token::LBrace => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(too_deep(format!(
                        "the statement nests brackets more than {MAX_NESTING} deep"
                    ))
                    .at(Position::of(t.span.start)));
                }
            }
            Token::RParen | Token::RBracket | Token::RBrace => depth = depth.saturating_sub(1),
            _ => {}
        }
        count += 1;
        if count > MAX_STATEMENT_TOKENS {
            return Err(too_complex(format!(
                "the statement has more than {MAX_STATEMENT_TOKENS} tokens"
            ))
            .at(Position::of(t.span.start)));
        }
    }
    Ok(())
}

/// Depth and node count of an expression, walked with an explicit stack (so a tree of any
/// depth is measured without recursion). Stops counting past the limits.
pub fn measure(e: &Expr) -> (usize, usize) {
    let mut stack: Vec<(&Expr, usize)> = vec![(e, 1)];
    let (mut depth, mut nodes) = (0usize, 0usize);
    while let Some((e, d)) = stack.pop() {
        depth = depth.max(d);
        nodes += 1;
        if depth > MAX_EXPR_DEPTH || nodes > MAX_STATEMENT_TOKENS {
            break;
        }
        let next = d + 1;
        match e {
            Expr::Column(_) | Expr::Literal(_) => {}
            Expr::Not(x)
            | Expr::Neg(x)
            | Expr::IsNull(x, _)
            | Expr::Cast(x, _)
            | Expr::Field(x, _) => stack.push((&**x, next)),
            Expr::Binary(_, a, b)
            | Expr::Like {
                expr: a,
                pattern: b,
                ..
            } => {
                stack.push((&**a, next));
                stack.push((&**b, next));
            }
            Expr::InList { expr, list, .. } => {
                stack.push((&**expr, next));
                stack.extend(list.iter().map(|x| (x, next)));
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                stack.push((&**expr, next));
                stack.push((&**low, next));
                stack.push((&**high, next));
            }
            Expr::Case {
                operand,
                whens,
                otherwise,
            } => {
                if let Some(o) = operand {
                    stack.push((&**o, next));
                }
                for (c, r) in whens {
                    stack.push((c, next));
                    stack.push((r, next));
                }
                if let Some(o) = otherwise {
                    stack.push((&**o, next));
                }
            }
            Expr::Call(_, args) | Expr::Udf { args, .. } => {
                stack.extend(args.iter().map(|x| (x, next)));
            }
        }
    }
    (depth, nodes)
}

/// Refuses an expression deeper than [`MAX_EXPR_DEPTH`] or larger than
/// [`MAX_STATEMENT_TOKENS`] nodes (without recursing).
pub fn check_expr(e: &Expr) -> Result<(), SqlError> {
    let (depth, nodes) = measure(e);
    if depth > MAX_EXPR_DEPTH {
        return Err(too_deep(format!(
            "an expression is nested more than {MAX_EXPR_DEPTH} levels deep"
        )));
    }
    if nodes > MAX_STATEMENT_TOKENS {
        return Err(too_complex(format!(
            "an expression has more than {MAX_STATEMENT_TOKENS} nodes"
        )));
    }
    Ok(())
}

/// Deepest nesting of `[`/`{` in JSON text, outside strings (iterative; stops past `limit`).
pub fn json_depth(bytes: &[u8], limit: usize) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
                if max > limit {
                    break;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Runs `f` on a thread with a [`SQL_STACK_BYTES`] stack and waits for it. Everything that
/// walks a client's statement recursively (and drops it) runs in here. A panic in `f`
/// becomes an `internal` error instead of taking the caller down.
pub fn on_sql_stack<T: Send>(
    f: impl FnOnce() -> Result<T, SqlError> + Send,
) -> Result<T, SqlError> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("weir-sql".into())
            .stack_size(SQL_STACK_BYTES)
            .spawn_scoped(s, f)
            .map_err(|e| SqlError::new("internal", format!("cannot start a SQL thread: {e}")))?;
        handle
            .join()
            .map_err(|_| SqlError::new("internal", "the SQL statement failed unexpectedly"))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn chain(n: usize) -> Expr {
        let mut e = Expr::Column(0);
        for _ in 1..n {
            e = Expr::Binary(
                super::super::expr::BinOp::And,
                Box::new(e),
                Box::new(Expr::Literal(Value::Bool(true))),
            );
        }
        e
    }

    #[test]
    fn measures_without_recursion() {
        assert_eq!(measure(&Expr::Column(0)), (1, 1));
        assert_eq!(measure(&chain(3)), (3, 5));
        assert!(check_expr(&chain(MAX_EXPR_DEPTH)).is_ok());
        assert_eq!(
            check_expr(&chain(MAX_EXPR_DEPTH + 1)).unwrap_err().code,
            "sql_too_deep"
        );
        let wide = Expr::Call(
            super::super::functions::Builtin::Concat,
            vec![Expr::Column(0); MAX_STATEMENT_TOKENS + 1],
        );
        assert_eq!(check_expr(&wide).unwrap_err().code, "sql_too_complex");
    }

    fn catalog() -> super::super::catalog::Catalog {
        use super::super::ast::{ColumnDef, SourceKind};
        use super::super::catalog::{Catalog, SourceDef};
        use super::super::types::SqlType;
        let mut c = Catalog::in_memory();
        let col = |name: &str, ty: SqlType, key: bool| ColumnDef {
            name: name.into(),
            ty,
            key,
        };
        c.put_source(
            SourceDef {
                name: "S".into(),
                kind: SourceKind::Stream,
                topic: "s".into(),
                columns: vec![
                    col("ID", SqlType::String, true),
                    col("A", SqlType::Int, false),
                    col("B", SqlType::Boolean, false),
                ],
                value_format: "JSON".into(),
                timestamp: None,
                partitions: 1,
                window: None,
                query: None,
                sql: String::new(),
            },
            true,
        )
        .unwrap();
        c
    }

    /// Parses and plans every statement of `sql` on the SQL thread; the first error's code.
    fn plan(sql: &str) -> Result<Vec<super::super::plan::QueryPlan>, &'static str> {
        use super::super::ast::Statement;
        let sql = sql.to_string();
        on_sql_stack(move || {
            let catalog = catalog();
            let mut plans = Vec::new();
            for p in super::super::parser::parse(&sql)? {
                if let Statement::Select(s) | Statement::CreateAs { select: s, .. } = &p.statement {
                    plans.push(super::super::plan::plan_query(
                        "Q",
                        "out",
                        s,
                        &catalog,
                        &super::super::loader::NoFunctions,
                    )?);
                }
            }
            Ok(plans)
        })
        .map_err(|e| e.code)
    }

    fn nest(open: &str, inner: &str, close: &str, n: usize) -> String {
        format!("{}{inner}{}", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn hostile_statements_are_refused_with_stable_codes() {
        let q = |e: &str| format!("SELECT ID FROM S WHERE {e} EMIT CHANGES");
        assert_eq!(plan(&q(&nest("- ", "A", "", 1_000))), Err("sql_too_deep"));
        assert_eq!(plan(&q(&nest("(", "B", ")", 10_000))), Err("sql_too_deep"));
        assert_eq!(
            plan(&q(&vec!["B"; 100_000].join(" AND "))),
            Err("sql_too_complex")
        );
        assert_eq!(
            plan(&q(&vec!["B"; 1_000].join(" AND "))),
            Err("sql_too_deep")
        );
        assert_eq!(plan(&q(&nest("NOT ", "B", "", 1_000))), Err("sql_too_deep"));
        assert_eq!(
            plan(&q(&nest("CASE WHEN ", "B", " THEN TRUE END", 200))),
            Err("sql_too_deep")
        );
        let calls = nest("UPPER(", "ID", ")", 1_000);
        assert_eq!(
            plan(&format!("SELECT {calls} FROM S EMIT CHANGES")),
            Err("sql_too_deep")
        );
        let types = nest("ARRAY<", "INT", " >", 100);
        assert_eq!(
            plan(&format!(
                "CREATE STREAM T (A {types}) WITH (KAFKA_TOPIC='t')"
            )),
            Err("sql_too_deep")
        );
        let cast = nest("CAST(", "A", " AS INT)", 40);
        assert!(plan(&format!("SELECT {cast} FROM S EMIT CHANGES")).is_ok());
        let big = format!("'{}'", "x".repeat(MAX_SQL_BYTES));
        assert_eq!(plan(&format!("SELECT {big} FROM S")), Err("too_large"));
        assert_eq!(
            plan(&"SHOW STREAMS;".repeat(MAX_STATEMENTS + 1)),
            Err("sql_too_complex")
        );
    }

    /// The deepest expressions the limits allow plan, survive the trip through a stored
    /// plan (deeper JSON than serde_json's default limit), and evaluate on a task's stack.
    #[test]
    fn the_deepest_allowed_expressions_are_stored_read_back_and_run() {
        let d = MAX_EXPR_DEPTH - 2;
        let shapes = [
            nest("NOT ", "B", "", d),
            nest("CASE WHEN ", "B", " THEN TRUE ELSE FALSE END", d / 2),
            format!("{} = 'x'", nest("CONCAT(", "ID", ", 'x')", d)),
            vec!["B"; d].join(" AND "),
            format!("{} IN (1, 2)", nest("ABS(", "A", ")", d)),
        ];
        for e in shapes {
            let sql = format!("SELECT ID FROM S WHERE {e} EMIT CHANGES");
            let plans = plan(&sql).unwrap_or_else(|c| panic!("{c}: {sql}"));
            let module = super::super::loader::plan_module(&plans[0]);
            let back = super::super::loader::module_plan(&module).unwrap().unwrap();
            assert_eq!(back, plans[0]);
            let filter = back.filter.clone().unwrap();
            std::thread::Builder::new()
                .stack_size(8 << 20) // a task's stack (`task::manager`)
                .spawn(move || {
                    let mut udfs = std::collections::HashMap::new();
                    let mut cx = super::super::expr::EvalContext {
                        functions: &super::super::loader::NoFunctions,
                        stop: None,
                        udfs: &mut udfs,
                    };
                    let row = vec![Value::from("k"), Value::from(1), Value::Bool(true)];
                    filter.eval(&[row], &mut cx).unwrap();
                })
                .unwrap()
                .join()
                .unwrap();
        }
    }

    #[test]
    fn stored_plans_beyond_the_limits_are_refused_before_they_are_walked() {
        let deep = format!(
            "weir-sql/1\n{}1{}",
            "[".repeat(MAX_PLAN_JSON_DEPTH + 1),
            "]".repeat(MAX_PLAN_JSON_DEPTH + 1)
        );
        let e = super::super::loader::module_plan(deep.as_bytes())
            .unwrap()
            .unwrap_err();
        assert!(e.contains("nests more than"), "{e}");
        // Within the JSON bound, but an expression deeper than MAX_EXPR_DEPTH.
        let plans = plan("SELECT ID FROM S WHERE B EMIT CHANGES").unwrap();
        let mut p = plans[0].clone();
        p.filter = Some(chain(MAX_EXPR_DEPTH + 10));
        let e = super::super::loader::module_plan(&super::super::loader::plan_module(&p))
            .unwrap()
            .unwrap_err();
        assert!(e.contains("levels deep"), "{e}");
    }

    #[test]
    fn string_functions_cannot_multiply_a_value_without_bound() {
        use super::super::expr::BinOp;
        use super::super::functions::{Builtin, binary, call};
        let big = Value::from("k".repeat(MAX_STRING_BYTES / 2 + 1));
        let r = |from: &str, to: &str| {
            call(
                Builtin::Replace,
                &[big.clone(), Value::from(from), Value::from(to)],
            )
        };
        assert_eq!(r("k", "kk"), Value::Null);
        assert_eq!(
            r("k", "j").as_str().map(str::len),
            big.as_str().map(str::len)
        );
        assert_eq!(binary(BinOp::Concat, &big, &big), Value::Null);
        assert_eq!(
            call(Builtin::Concat, &[big.clone(), big.clone()]),
            Value::Null
        );
        assert!(binary(BinOp::Concat, &big, &Value::from("x")).is_string());
    }

    #[test]
    fn json_depth_skips_strings() {
        assert_eq!(json_depth(br#"{"a":[1,{"b":"[[[{"}]}"#, 100), 3);
        assert_eq!(json_depth(br#"["\"[", [[]]]"#, 100), 3);
        assert_eq!(json_depth(&[b'['; 5000], 10), 11);
    }
}

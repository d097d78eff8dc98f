//! Built-in scalar functions and operators on JSON values: their signatures (checked at
//! planning time), their evaluation (NULL in → NULL out; bad input → NULL, as in ksqlDB),
//! comparison, arithmetic, LIKE and CAST. Aggregates are in `aggregate`.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::expr::BinOp;
use super::limits::MAX_STRING_BYTES;
use super::types::{SqlType, format_timestamp, parse_timestamp};

/// Built-in scalar functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Builtin {
    Upper,
    Lower,
    Len,
    Concat,
    Substring,
    Trim,
    Ltrim,
    Rtrim,
    Replace,
    Instr,
    Abs,
    Round,
    Floor,
    Ceil,
    Sqrt,
    Coalesce,
    IfNull,
    NullIf,
    FormatTimestamp,
    ParseTimestamp,
    UnixTimestamp,
}

/// `(name, signature, description)` of every built-in, for SHOW FUNCTIONS.
pub const BUILTINS: &[(&str, &str, &str)] = &[
    (
        "UCASE",
        "UCASE(STRING) -> STRING",
        "upper case (also UPPER)",
    ),
    ("UPPER", "UPPER(STRING) -> STRING", "upper case"),
    (
        "LCASE",
        "LCASE(STRING) -> STRING",
        "lower case (also LOWER)",
    ),
    ("LOWER", "LOWER(STRING) -> STRING", "lower case"),
    (
        "LEN",
        "LEN(STRING) -> INTEGER",
        "length in characters (also LENGTH)",
    ),
    (
        "LENGTH",
        "LENGTH(STRING) -> INTEGER",
        "length in characters",
    ),
    (
        "CONCAT",
        "CONCAT(STRING, ...) -> STRING",
        "concatenation; NULLs are skipped",
    ),
    (
        "SUBSTRING",
        "SUBSTRING(STRING, pos [, len]) -> STRING",
        "1-based substring",
    ),
    ("TRIM", "TRIM(STRING) -> STRING", "strip whitespace"),
    (
        "LTRIM",
        "LTRIM(STRING) -> STRING",
        "strip leading whitespace",
    ),
    (
        "RTRIM",
        "RTRIM(STRING) -> STRING",
        "strip trailing whitespace",
    ),
    (
        "REPLACE",
        "REPLACE(STRING, from, to) -> STRING",
        "replace every occurrence",
    ),
    (
        "INSTR",
        "INSTR(STRING, sub) -> INTEGER",
        "1-based position of sub, 0 if absent",
    ),
    ("ABS", "ABS(number) -> number", "absolute value"),
    (
        "ROUND",
        "ROUND(number [, digits]) -> number",
        "round half away from zero",
    ),
    ("FLOOR", "FLOOR(number) -> number", "round down"),
    ("CEIL", "CEIL(number) -> number", "round up"),
    ("SQRT", "SQRT(number) -> DOUBLE", "square root"),
    (
        "COALESCE",
        "COALESCE(x, ...) -> x",
        "first non-NULL argument",
    ),
    ("IFNULL", "IFNULL(x, y) -> x", "y when x is NULL"),
    ("NULLIF", "NULLIF(x, y) -> x", "NULL when x = y"),
    (
        "FORMAT_TIMESTAMP",
        "FORMAT_TIMESTAMP(TIMESTAMP) -> STRING",
        "ISO-8601, UTC",
    ),
    (
        "PARSE_TIMESTAMP",
        "PARSE_TIMESTAMP(STRING) -> TIMESTAMP",
        "ISO-8601 to ms",
    ),
    (
        "UNIX_TIMESTAMP",
        "UNIX_TIMESTAMP([TIMESTAMP]) -> BIGINT",
        "ms since the epoch",
    ),
    (
        "COUNT",
        "COUNT(*) | COUNT() | COUNT(x) -> BIGINT",
        "aggregate: rows (or non-NULL x)",
    ),
    ("SUM", "SUM(number) -> number", "aggregate: sum"),
    ("MIN", "MIN(x) -> x", "aggregate: smallest"),
    ("MAX", "MAX(x) -> x", "aggregate: largest"),
    ("AVG", "AVG(number) -> DOUBLE", "aggregate: mean"),
    (
        "LATEST_BY_OFFSET",
        "LATEST_BY_OFFSET(x) -> x",
        "aggregate: last value seen",
    ),
    (
        "EARLIEST_BY_OFFSET",
        "EARLIEST_BY_OFFSET(x) -> x",
        "aggregate: first value seen",
    ),
];

/// Names UDFs may not take.
pub fn reserved_names() -> Vec<&'static str> {
    BUILTINS.iter().map(|(n, _, _)| *n).collect()
}

impl Builtin {
    pub fn by_name(name: &str) -> Option<Builtin> {
        use Builtin::*;
        Some(match name {
            "UCASE" | "UPPER" => Upper,
            "LCASE" | "LOWER" => Lower,
            "LEN" | "LENGTH" => Len,
            "CONCAT" => Concat,
            "SUBSTRING" | "SUBSTR" => Substring,
            "TRIM" => Trim,
            "LTRIM" => Ltrim,
            "RTRIM" => Rtrim,
            "REPLACE" => Replace,
            "INSTR" => Instr,
            "ABS" => Abs,
            "ROUND" => Round,
            "FLOOR" => Floor,
            "CEIL" | "CEILING" => Ceil,
            "SQRT" => Sqrt,
            "COALESCE" => Coalesce,
            "IFNULL" => IfNull,
            "NULLIF" => NullIf,
            "FORMAT_TIMESTAMP" | "TIMESTAMPTOSTRING" => FormatTimestamp,
            "PARSE_TIMESTAMP" | "STRINGTOTIMESTAMP" => ParseTimestamp,
            "UNIX_TIMESTAMP" => UnixTimestamp,
            _ => return None,
        })
    }
}

/// Checks argument types; returns the result type or a message.
pub fn check(b: Builtin, args: &[SqlType]) -> Result<SqlType, String> {
    use Builtin::*;
    let n = args.len();
    let arity = |lo: usize, hi: usize| -> Result<(), String> {
        if n < lo || n > hi {
            Err(format!(
                "{b:?} takes {} argument(s), got {n}",
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo} to {hi}")
                }
            )
            .to_uppercase())
        } else {
            Ok(())
        }
    };
    let string = |i: usize| -> Result<(), String> {
        if args[i].is_stringy() {
            Ok(())
        } else {
            Err(format!(
                "{} argument {} must be a STRING, got {}",
                format!("{b:?}").to_uppercase(),
                i + 1,
                args[i]
            ))
        }
    };
    let number = |i: usize| -> Result<(), String> {
        if args[i].is_numeric() {
            Ok(())
        } else {
            Err(format!(
                "{} argument {} must be a number, got {}",
                format!("{b:?}").to_uppercase(),
                i + 1,
                args[i]
            ))
        }
    };
    Ok(match b {
        Upper | Lower | Trim | Ltrim | Rtrim => {
            arity(1, 1)?;
            string(0)?;
            SqlType::String
        }
        Len => {
            arity(1, 1)?;
            string(0)?;
            SqlType::Int
        }
        Concat => {
            arity(1, 64)?;
            SqlType::String
        }
        Substring => {
            arity(2, 3)?;
            string(0)?;
            (1..n).try_for_each(number)?;
            SqlType::String
        }
        Replace => {
            arity(3, 3)?;
            (0..3).try_for_each(string)?;
            SqlType::String
        }
        Instr => {
            arity(2, 2)?;
            (0..2).try_for_each(string)?;
            SqlType::Int
        }
        Abs | Floor | Ceil => {
            arity(1, 1)?;
            number(0)?;
            args[0].clone()
        }
        Round => {
            arity(1, 2)?;
            (0..n).try_for_each(number)?;
            if n == 2 {
                SqlType::Double
            } else {
                args[0].clone()
            }
        }
        Sqrt => {
            arity(1, 1)?;
            number(0)?;
            SqlType::Double
        }
        Coalesce | IfNull | NullIf => {
            if b == Coalesce {
                arity(1, 64)?;
            } else {
                arity(2, 2)?;
            }
            let mut t = SqlType::Null;
            for a in args {
                if t == SqlType::Null {
                    t = a.clone();
                } else if !t.comparable(a) {
                    return Err(
                        format!("arguments of {b:?} have different types: {t} and {a}")
                            .to_uppercase(),
                    );
                }
            }
            t
        }
        FormatTimestamp => {
            arity(1, 2)?;
            SqlType::String
        }
        ParseTimestamp => {
            arity(1, 2)?;
            string(0)?;
            SqlType::Timestamp
        }
        UnixTimestamp => {
            arity(0, 1)?;
            SqlType::Bigint
        }
    })
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn num(f: f64) -> Value {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Calls a built-in on one row's arguments.
pub fn call(b: Builtin, args: &[Value]) -> Value {
    use Builtin::*;
    let s = |i: usize| args.get(i).and_then(|v| v.as_str());
    match b {
        Coalesce => {
            return args
                .iter()
                .find(|v| !v.is_null())
                .cloned()
                .unwrap_or(Value::Null);
        }
        IfNull => {
            return if args[0].is_null() {
                args[1].clone()
            } else {
                args[0].clone()
            };
        }
        NullIf => {
            return if compare(&args[0], &args[1]) == Some(Ordering::Equal) {
                Value::Null
            } else {
                args[0].clone()
            };
        }
        Concat => {
            let mut out = String::new();
            for a in args {
                match a {
                    Value::Null => {}
                    Value::String(x) => out.push_str(x),
                    other => out.push_str(&other.to_string()),
                }
                if out.len() > MAX_STRING_BYTES {
                    return Value::Null;
                }
            }
            return Value::String(out);
        }
        UnixTimestamp => {
            return match args.first() {
                None => Value::from(crate::clock::now_ms()),
                Some(v) => cast(v, &SqlType::Bigint),
            };
        }
        _ => {}
    }
    if args.iter().any(Value::is_null) {
        return Value::Null;
    }
    match b {
        Upper => s(0)
            .map(|x| Value::String(x.to_uppercase()))
            .unwrap_or(Value::Null),
        Lower => s(0)
            .map(|x| Value::String(x.to_lowercase()))
            .unwrap_or(Value::Null),
        Trim => s(0)
            .map(|x| Value::String(x.trim().into()))
            .unwrap_or(Value::Null),
        Ltrim => s(0)
            .map(|x| Value::String(x.trim_start().into()))
            .unwrap_or(Value::Null),
        Rtrim => s(0)
            .map(|x| Value::String(x.trim_end().into()))
            .unwrap_or(Value::Null),
        Len => s(0)
            .map(|x| Value::from(x.chars().count() as i64))
            .unwrap_or(Value::Null),
        Substring => {
            let (Some(x), Some(start)) = (s(0), args[1].as_i64()) else {
                return Value::Null;
            };
            let chars: Vec<char> = x.chars().collect();
            let len = chars.len() as i64;
            // 1-based; negative counts from the end (ksqlDB).
            let from = if start > 0 {
                start - 1
            } else if start < 0 {
                (len + start).max(0)
            } else {
                0
            };
            let take = match args.get(2) {
                Some(v) => match v.as_i64() {
                    Some(n) if n >= 0 => n,
                    _ => return Value::Null,
                },
                None => len,
            };
            let from = from.clamp(0, len) as usize;
            let to = (from as i64 + take).clamp(0, len) as usize;
            Value::String(chars[from..to.max(from)].iter().collect())
        }
        Replace => match (s(0), s(1), s(2)) {
            (Some(x), Some(a), Some(b)) if !a.is_empty() => {
                let n = x.matches(a).count();
                if x.len() - n * a.len() + n * b.len() > MAX_STRING_BYTES {
                    return Value::Null;
                }
                Value::String(x.replace(a, b))
            }
            (Some(x), Some(_), Some(_)) => Value::String(x.to_string()),
            _ => Value::Null,
        },
        Instr => match (s(0), s(1)) {
            (Some(x), Some(sub)) => Value::from(
                x.find(sub)
                    .map(|byte| x[..byte].chars().count() as i64 + 1)
                    .unwrap_or(0),
            ),
            _ => Value::Null,
        },
        Abs => match &args[0] {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Value::from(i.checked_abs().unwrap_or(i64::MAX)),
                None => as_f64(&args[0])
                    .map(|f| num(f.abs()))
                    .unwrap_or(Value::Null),
            },
            _ => Value::Null,
        },
        Floor | Ceil => match &args[0] {
            Value::Number(n) if n.is_i64() || n.is_u64() => args[0].clone(),
            v => as_f64(v)
                .map(|f| num(if b == Floor { f.floor() } else { f.ceil() }))
                .unwrap_or(Value::Null),
        },
        Round => {
            let digits = args.get(1).and_then(|d| d.as_i64());
            match (&args[0], digits) {
                (Value::Number(n), None) if n.is_i64() => args[0].clone(),
                (v, None) => as_f64(v)
                    .map(|f| Value::from(f.round() as i64))
                    .unwrap_or(Value::Null),
                (v, Some(d)) => as_f64(v)
                    .map(|f| {
                        let m = 10f64.powi(d.clamp(-15, 15) as i32);
                        num((f * m).round() / m)
                    })
                    .unwrap_or(Value::Null),
            }
        }
        Sqrt => as_f64(&args[0])
            .filter(|f| *f >= 0.0)
            .map(|f| num(f.sqrt()))
            .unwrap_or(Value::Null),
        FormatTimestamp => match cast(&args[0], &SqlType::Timestamp) {
            Value::Number(n) => n
                .as_i64()
                .map(|ms| Value::String(format_timestamp(ms)))
                .unwrap_or(Value::Null),
            _ => Value::Null,
        },
        ParseTimestamp => s(0)
            .and_then(parse_timestamp)
            .map(Value::from)
            .unwrap_or(Value::Null),
        Coalesce | IfNull | NullIf | Concat | UnixTimestamp => Value::Null,
    }
}

/// Orders two values of comparable types; `None` when either is NULL or they don't compare.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => Some(i.cmp(&j)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        // A timestamp column compared with an ISO string literal.
        (Value::Number(x), Value::String(y)) => x.as_i64()?.partial_cmp(&parse_timestamp(y)?),
        (Value::String(x), Value::Number(y)) => parse_timestamp(x)?.partial_cmp(&y.as_i64()?),
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {
            (a == b).then_some(Ordering::Equal)
        }
        _ => None,
    }
}

/// Arithmetic with SQL NULL and overflow semantics (integer overflow or division by zero
/// give NULL).
pub fn arith(op: BinOp, a: &Value, b: &Value) -> Value {
    let (Value::Number(x), Value::Number(y)) = (a, b) else {
        return Value::Null;
    };
    if let (Some(i), Some(j)) = (x.as_i64(), y.as_i64()) {
        let r = match op {
            BinOp::Add => i.checked_add(j),
            BinOp::Sub => i.checked_sub(j),
            BinOp::Mul => i.checked_mul(j),
            BinOp::Div => i.checked_div(j),
            BinOp::Mod => i.checked_rem(j),
            _ => None,
        };
        return r.map(Value::from).unwrap_or(Value::Null);
    }
    let (Some(f), Some(g)) = (x.as_f64(), y.as_f64()) else {
        return Value::Null;
    };
    let r = match op {
        BinOp::Add => f + g,
        BinOp::Sub => f - g,
        BinOp::Mul => f * g,
        BinOp::Div if g != 0.0 => f / g,
        BinOp::Mod if g != 0.0 => f % g,
        _ => return Value::Null,
    };
    num(r)
}

/// A binary operator on one row.
pub fn binary(op: BinOp, a: &Value, b: &Value) -> Value {
    use BinOp::*;
    match op {
        Add | Sub | Mul | Div | Mod => arith(op, a, b),
        Concat => match (a, b) {
            (Value::Null, _) | (_, Value::Null) => Value::Null,
            (Value::String(x), Value::String(y)) if x.len() + y.len() > MAX_STRING_BYTES => {
                Value::Null
            }
            (Value::String(x), Value::String(y)) => Value::String(format!("{x}{y}")),
            (x, y) => {
                let s = format!("{}{}", text(x), text(y));
                if s.len() > MAX_STRING_BYTES {
                    Value::Null
                } else {
                    Value::String(s)
                }
            }
        },
        And => match (a, b) {
            (Value::Bool(false), _) | (_, Value::Bool(false)) => Value::Bool(false),
            (Value::Bool(true), Value::Bool(true)) => Value::Bool(true),
            _ => Value::Null,
        },
        Or => match (a, b) {
            (Value::Bool(true), _) | (_, Value::Bool(true)) => Value::Bool(true),
            (Value::Bool(false), Value::Bool(false)) => Value::Bool(false),
            _ => Value::Null,
        },
        Eq | NotEq | Lt | LtEq | Gt | GtEq => match compare(a, b) {
            None => Value::Null,
            Some(o) => Value::Bool(match op {
                Eq => o == Ordering::Equal,
                NotEq => o != Ordering::Equal,
                Lt => o == Ordering::Less,
                LtEq => o != Ordering::Greater,
                Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            }),
        },
    }
}

/// A value as text (strings unquoted).
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// SQL LIKE with `%` and `_`.
pub fn like(s: &str, pattern: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // Iterative matcher with backtracking on the last `%`.
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if j < p.len() && (p[j] == '_' || p[j] == s[i]) {
            i += 1;
            j += 1;
        } else if j < p.len() && p[j] == '%' {
            star = Some((j, i));
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    while j < p.len() && p[j] == '%' {
        j += 1;
    }
    j == p.len()
}

/// CAST; a value that does not convert becomes NULL.
pub fn cast(v: &Value, t: &SqlType) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    match t {
        SqlType::String => Value::String(text(v)),
        SqlType::Int | SqlType::Bigint => match v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite())
                        .map(|f| f.trunc() as i64)
                })
                .map(Value::from)
                .unwrap_or(Value::Null),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or(Value::Null),
            Value::Bool(b) => Value::from(i64::from(*b)),
            _ => Value::Null,
        },
        SqlType::Double => match v {
            Value::Number(n) => n.as_f64().map(num).unwrap_or(Value::Null),
            Value::String(s) => s.trim().parse::<f64>().map(num).unwrap_or(Value::Null),
            _ => Value::Null,
        },
        SqlType::Boolean => match v {
            Value::Bool(_) => v.clone(),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::Null,
            },
            _ => Value::Null,
        },
        SqlType::Timestamp => match v {
            Value::Number(n) => n.as_i64().map(Value::from).unwrap_or(Value::Null),
            Value::String(s) => parse_timestamp(s).map(Value::from).unwrap_or(Value::Null),
            _ => Value::Null,
        },
        other => other.coerce(v).unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn like_patterns() {
        assert!(like("hello", "h%o"));
        assert!(like("hello", "_ello"));
        assert!(like("hello", "%"));
        assert!(!like("hello", "h%x"));
        assert!(like("a%b", "a%b"));
        assert!(like("abcabc", "%bc"));
    }

    #[test]
    fn null_and_overflow_semantics() {
        assert_eq!(arith(BinOp::Div, &json!(1), &json!(0)), Value::Null);
        assert_eq!(arith(BinOp::Add, &json!(i64::MAX), &json!(1)), Value::Null);
        assert_eq!(arith(BinOp::Add, &json!(1), &json!(0.5)), json!(1.5));
        assert_eq!(
            binary(BinOp::And, &Value::Null, &json!(false)),
            json!(false)
        );
        assert_eq!(binary(BinOp::Eq, &Value::Null, &json!(1)), Value::Null);
        assert_eq!(call(Builtin::Upper, &[Value::Null]), Value::Null);
        assert_eq!(
            call(Builtin::Substring, &[json!("hello"), json!(2), json!(3)]),
            json!("ell")
        );
        assert_eq!(
            call(Builtin::Substring, &[json!("hello"), json!(-3)]),
            json!("llo")
        );
        assert_eq!(
            call(Builtin::Instr, &[json!("hello"), json!("l")]),
            json!(3)
        );
        assert_eq!(cast(&json!("12"), &SqlType::Int), json!(12));
        assert_eq!(cast(&json!("x"), &SqlType::Int), Value::Null);
        assert_eq!(call(Builtin::Round, &[json!(2.5)]), json!(3));
        assert!(check(Builtin::Upper, &[SqlType::Int]).is_err());
    }
}

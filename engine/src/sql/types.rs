//! SQL column types (`BOOLEAN`, `INT`, `BIGINT`, `DOUBLE`, `STRING`, `TIMESTAMP`, `BYTES`,
//! `ARRAY<T>`, `MAP<STRING, T>`, `STRUCT<name T, ...>`) and how they relate: which values a
//! type accepts, which types compare or add, and how a JSON value is coerced into a column.
//! Values themselves are `serde_json::Value` (JSON values first, as the design says).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A column or expression type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SqlType {
    Boolean,
    Int,
    Bigint,
    Double,
    String,
    /// Milliseconds since the epoch (a JSON number; ISO-8601 strings are accepted on input).
    Timestamp,
    Bytes,
    Array(Box<SqlType>),
    Map(Box<SqlType>),
    Struct(Vec<(String, SqlType)>),
    /// The type of a bare `NULL` literal: fits every column.
    Null,
    /// Unknown until run time (a UDF declared `any`).
    Any,
}

impl SqlType {
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            SqlType::Int | SqlType::Bigint | SqlType::Double | SqlType::Null | SqlType::Any
        )
    }

    pub fn is_integral(&self) -> bool {
        matches!(self, SqlType::Int | SqlType::Bigint)
    }

    pub fn is_stringy(&self) -> bool {
        matches!(self, SqlType::String | SqlType::Null | SqlType::Any)
    }

    /// Whether values of `self` and `other` can be compared with `=`, `<`, ….
    pub fn comparable(&self, other: &SqlType) -> bool {
        use SqlType::*;
        match (self, other) {
            (Null | Any, _) | (_, Null | Any) => true,
            (a, b) if a.is_numeric() && b.is_numeric() => true,
            (Timestamp, Timestamp) | (Timestamp, Bigint | Int) | (Bigint | Int, Timestamp) => true,
            (Timestamp, String) | (String, Timestamp) => true,
            (a, b) => a == b,
        }
    }

    /// The result type of arithmetic on `self` and `other`, if they are numbers.
    pub fn arithmetic(&self, other: &SqlType) -> Option<SqlType> {
        use SqlType::*;
        Some(match (self, other) {
            (Any, _) | (_, Any) => Any,
            (Null, t) | (t, Null) if t.is_numeric() => t.clone(),
            (Double, b) if b.is_numeric() => Double,
            (a, Double) if a.is_numeric() => Double,
            (Int, Int) => Int,
            (Int | Bigint, Int | Bigint) => Bigint,
            (Timestamp, Int | Bigint) | (Int | Bigint, Timestamp) => Timestamp,
            _ => return None,
        })
    }

    /// Whether a value of type `from` may be stored in (or passed as) `self` without a CAST.
    pub fn accepts(&self, from: &SqlType) -> bool {
        use SqlType::*;
        match (self, from) {
            (_, Null) | (Any, _) | (_, Any) => true,
            (Bigint, Int) | (Double, Int | Bigint) | (Timestamp, Int | Bigint) => true,
            (Array(a), Array(b)) | (Map(a), Map(b)) => a.accepts(b),
            (a, b) => a == b,
        }
    }

    /// Coerces a JSON value read from a record into this type; `None` when it does not fit
    /// (the column then reads as NULL, as ksqlDB does for a field of the wrong type).
    pub fn coerce(&self, v: &Value) -> Option<Value> {
        use SqlType::*;
        if v.is_null() {
            return Some(Value::Null);
        }
        match self {
            Boolean => match v {
                Value::Bool(_) => Some(v.clone()),
                Value::String(s) => match s.to_ascii_lowercase().as_str() {
                    "true" => Some(Value::Bool(true)),
                    "false" => Some(Value::Bool(false)),
                    _ => None,
                },
                _ => None,
            },
            Int | Bigint => match v {
                Value::Number(n) => n
                    .as_i64()
                    .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                    .map(Value::from),
                Value::String(s) => s.trim().parse::<i64>().ok().map(Value::from),
                _ => None,
            },
            Double => match v {
                Value::Number(n) => n.as_f64().map(Value::from),
                Value::String(s) => s.trim().parse::<f64>().ok().map(Value::from),
                _ => None,
            },
            String => Some(match v {
                Value::String(_) => v.clone(),
                other => Value::String(other.to_string()),
            }),
            Timestamp => match v {
                Value::Number(n) => n.as_i64().map(Value::from),
                Value::String(s) => parse_timestamp(s).map(Value::from),
                _ => None,
            },
            Bytes => match v {
                Value::String(_) => Some(v.clone()),
                _ => None,
            },
            Array(inner) => match v {
                Value::Array(items) => Some(Value::Array(
                    items
                        .iter()
                        .map(|i| inner.coerce(i).unwrap_or(Value::Null))
                        .collect(),
                )),
                _ => None,
            },
            Map(inner) => match v {
                Value::Object(m) => Some(Value::Object(
                    m.iter()
                        .map(|(k, i)| (k.clone(), inner.coerce(i).unwrap_or(Value::Null)))
                        .collect(),
                )),
                _ => None,
            },
            Struct(fields) => match v {
                Value::Object(m) => Some(Value::Object(
                    fields
                        .iter()
                        .map(|(name, t)| {
                            let field = lookup_field(m, name).cloned().unwrap_or(Value::Null);
                            (name.clone(), t.coerce(&field).unwrap_or(Value::Null))
                        })
                        .collect(),
                )),
                _ => None,
            },
            Null | Any => Some(v.clone()),
        }
    }
}

/// A JSON object's field by name: exact first, then ignoring ASCII case (ksqlDB upper-cases
/// unquoted column names; JSON written by other tools rarely does).
pub fn lookup_field<'a>(m: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    m.get(name).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// Parses `2026-11-22T10:15:30[.123][Z|+01:00]` or `2026-11-22 10:15:30` (UTC if no
/// offset) into ms since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return s.parse::<i64>().ok();
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        let mut scaled = digits.clone();
        scaled.truncate(3);
        while scaled.len() < 3 {
            scaled.push('0');
        }
        ms = scaled.parse::<i64>().ok()?;
        rest = &frac[digits.len()..];
    }
    let offset_min = match rest {
        "" | "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let oh = o.get(1..3)?.parse::<i64>().ok()?;
            let om = o.get(4..6)?.parse::<i64>().ok()?;
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (oh * 60 + om)
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) - offset_min * 60) * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats ms since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_timestamp(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

impl std::fmt::Display for SqlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use SqlType::*;
        match self {
            Boolean => write!(f, "BOOLEAN"),
            Int => write!(f, "INTEGER"),
            Bigint => write!(f, "BIGINT"),
            Double => write!(f, "DOUBLE"),
            String => write!(f, "STRING"),
            Timestamp => write!(f, "TIMESTAMP"),
            Bytes => write!(f, "BYTES"),
            Array(t) => write!(f, "ARRAY<{t}>"),
            Map(t) => write!(f, "MAP<STRING, {t}>"),
            Struct(fields) => {
                write!(f, "STRUCT<")?;
                for (i, (n, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{n} {t}")?;
                }
                write!(f, ">")
            }
            Null => write!(f, "NULL"),
            Any => write!(f, "ANY"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_round_trip() {
        for ms in [0, 1_700_000_000_123, -86_400_000, 951_782_400_000] {
            assert_eq!(parse_timestamp(&format_timestamp(ms)), Some(ms));
        }
        assert_eq!(
            parse_timestamp("2000-03-01T00:00:00Z"),
            Some(951_868_800_000)
        );
        assert_eq!(
            parse_timestamp("2000-03-01T01:00:00+01:00"),
            Some(951_868_800_000)
        );
        assert_eq!(parse_timestamp("2000-13-01T00:00:00Z"), None);
        assert_eq!(parse_timestamp("12345"), Some(12345));
    }

    #[test]
    fn coercion_follows_the_column_type() {
        assert_eq!(SqlType::Bigint.coerce(&json!("42")), Some(json!(42)));
        assert_eq!(SqlType::Bigint.coerce(&json!("x")), None);
        assert_eq!(SqlType::Double.coerce(&json!(2)), Some(json!(2.0)));
        assert_eq!(SqlType::String.coerce(&json!(7)), Some(json!("7")));
        let s = SqlType::Struct(vec![("A".into(), SqlType::Int)]);
        assert_eq!(s.coerce(&json!({"a": "3"})), Some(json!({"A": 3})));
        assert!(SqlType::Double.accepts(&SqlType::Int));
        assert!(!SqlType::Int.accepts(&SqlType::String));
        assert_eq!(
            SqlType::Int.arithmetic(&SqlType::Double),
            Some(SqlType::Double)
        );
    }
}

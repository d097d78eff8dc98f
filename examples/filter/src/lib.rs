//! `filter`: keeps the records whose JSON value passes a predicate on one field, drops the
//! rest (records that are not JSON objects, or lack the field, fail the predicate).
//!
//! Config:
//! - `field` (required): the field, a dotted path for nested objects (`customer.country`);
//! - `op` (default `eq`): `eq`, `ne`, `gt`, `ge`, `lt`, `le` (numbers compare as numbers,
//!   strings as strings), `contains` (substring of a string field), `exists`;
//! - `value` (required except for `exists`): JSON (`100`, `"FR"`, `true`) or, if it does not
//!   parse as JSON, a plain string;
//! - `output` (optional): where passing records go; default: the first output.
//!
//! Example: `field=amount op=gt value=100` keeps `{"amount": 150}` and drops `{"amount": 5}`.

use serde_json::Value;
use std::cmp::Ordering;
use weir_guest::{Batch, Config, Context, Error, Processor, Result, bail};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
    Exists,
}

struct Filter {
    path: Vec<String>,
    op: Op,
    value: Value,
    output: String,
}

impl Filter {
    fn passes(&self, json: &[u8]) -> bool {
        let Ok(doc) = serde_json::from_slice::<Value>(json) else {
            return false;
        };
        let mut field = &doc;
        for part in &self.path {
            match field.get(part) {
                Some(v) => field = v,
                None => return false,
            }
        }
        match self.op {
            Op::Exists => true,
            Op::Eq => compare(field, &self.value) == Some(Ordering::Equal),
            Op::Ne => compare(field, &self.value) != Some(Ordering::Equal),
            Op::Gt => compare(field, &self.value) == Some(Ordering::Greater),
            Op::Ge => matches!(
                compare(field, &self.value),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            Op::Lt => compare(field, &self.value) == Some(Ordering::Less),
            Op::Le => matches!(
                compare(field, &self.value),
                Some(Ordering::Less | Ordering::Equal)
            ),
            Op::Contains => match (field, &self.value) {
                (Value::String(s), Value::String(needle)) => s.contains(needle.as_str()),
                (Value::Array(items), v) => items.contains(v),
                _ => false,
            },
        }
    }
}

/// Orders two JSON values of the same kind (numbers as f64); `None` if they do not compare.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (x, y) if x == y => Some(Ordering::Equal),
        _ => None,
    }
}

impl Processor for Filter {
    fn init(_ctx: &mut Context, config: &Config) -> Result<Self> {
        let field = config.require("field")?;
        let path: Vec<String> = field.split('.').map(str::to_string).collect();
        if path.iter().any(String::is_empty) {
            bail!("config `field` = {field:?} is not a field path");
        }
        let op = match config.get("op").unwrap_or("eq") {
            "eq" | "==" => Op::Eq,
            "ne" | "!=" => Op::Ne,
            "gt" | ">" => Op::Gt,
            "ge" | ">=" => Op::Ge,
            "lt" | "<" => Op::Lt,
            "le" | "<=" => Op::Le,
            "contains" => Op::Contains,
            "exists" => Op::Exists,
            other => bail!(
                "config `op` = {other:?}: expected eq, ne, gt, ge, lt, le, contains or exists"
            ),
        };
        let value = match (op, config.get("value")) {
            (Op::Exists, _) => Value::Null,
            (_, None) => return Err(Error::new("config `value` is required")),
            (_, Some(v)) => serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.into())),
        };
        Ok(Filter {
            path,
            op,
            value,
            output: config.get("output").unwrap_or("").to_string(),
        })
    }

    fn process(&mut self, ctx: &mut Context, batch: &Batch<'_>) -> Result<()> {
        for record in batch {
            if record.value().is_some_and(|v| self.passes(v)) {
                ctx.forward(&self.output, &record)?;
            }
        }
        Ok(())
    }
}

weir_guest::export_processor!(Filter);

//! Aggregate functions: built-ins (COUNT, SUM, MIN, MAX, AVG, LATEST_BY_OFFSET,
//! EARLIEST_BY_OFFSET) and Wasm aggregate UDFs, as accumulators that serialise into the
//! query's state store, fold rows in, merge (session windows) and give a result.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::expr::{Expr, from_udf, to_udf};
use super::functions::compare;
use super::types::SqlType;
use crate::host::ProcessorError;
use crate::udf::AggregateUdf;

/// Which aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggFunc {
    /// `COUNT(*)` / `count()`: rows.
    CountRows,
    /// `COUNT(x)`: rows where x is not NULL.
    Count,
    Sum,
    Min,
    Max,
    Avg,
    Latest,
    Earliest,
    /// A Wasm aggregate UDF by name.
    Udaf(String),
}

/// One aggregate call of a query: the function and its (resolved) arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggCall {
    pub func: AggFunc,
    pub args: Vec<Expr>,
    /// Result type.
    pub ty: SqlType,
}

/// An accumulator's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v")]
pub enum Acc {
    Count(i64),
    /// Integer sum until a non-integer arrives.
    SumInt(Option<i64>),
    SumFloat(Option<f64>),
    Extreme(Value),
    Avg {
        sum: f64,
        count: i64,
    },
    Value(Value),
    /// `None` until the first value.
    First(Option<Value>),
    Udaf(Vec<u8>),
}

/// Aggregate UDF instances of a task, by name.
pub type Udafs = std::collections::HashMap<String, Box<dyn AggregateUdf>>;

fn udaf<'a>(
    udafs: &'a mut Udafs,
    name: &str,
) -> Result<&'a mut Box<dyn AggregateUdf>, ProcessorError> {
    udafs
        .get_mut(name)
        .ok_or_else(|| ProcessorError::Host(format!("aggregate UDF {name} not loaded")))
}

impl AggCall {
    /// The accumulator of an empty group.
    pub fn init(&self, udafs: &mut Udafs) -> Result<Acc, ProcessorError> {
        Ok(match &self.func {
            AggFunc::CountRows | AggFunc::Count => Acc::Count(0),
            AggFunc::Sum if self.ty == SqlType::Double => Acc::SumFloat(None),
            AggFunc::Sum => Acc::SumInt(None),
            AggFunc::Min | AggFunc::Max => Acc::Extreme(Value::Null),
            AggFunc::Avg => Acc::Avg { sum: 0.0, count: 0 },
            AggFunc::Latest => Acc::Value(Value::Null),
            AggFunc::Earliest => Acc::First(None),
            AggFunc::Udaf(name) => Acc::Udaf(udaf(udafs, name)?.init()?),
        })
    }

    /// Folds one row's argument values into `acc`.
    pub fn add(
        &self,
        acc: &mut Acc,
        args: &[Value],
        udafs: &mut Udafs,
    ) -> Result<(), ProcessorError> {
        let x = args.first().cloned().unwrap_or(Value::Null);
        match (&self.func, acc) {
            (AggFunc::CountRows, Acc::Count(n)) => *n += 1,
            (AggFunc::Count, Acc::Count(n)) => {
                if !x.is_null() {
                    *n += 1
                }
            }
            (AggFunc::Sum, acc @ Acc::SumInt(_)) => {
                if let Value::Number(num) = &x {
                    if let (Acc::SumInt(s), Some(i)) = (&mut *acc, num.as_i64()) {
                        *s = Some(s.unwrap_or(0).saturating_add(i));
                    } else if let Acc::SumInt(s) = acc {
                        let f = s.unwrap_or(0) as f64 + num.as_f64().unwrap_or(0.0);
                        *acc = Acc::SumFloat(Some(f));
                    }
                }
            }
            (AggFunc::Sum, Acc::SumFloat(s)) => {
                if let Some(f) = x.as_f64() {
                    *s = Some(s.unwrap_or(0.0) + f);
                }
            }
            (AggFunc::Min, Acc::Extreme(cur)) => {
                if !x.is_null()
                    && (cur.is_null() || compare(&x, cur) == Some(std::cmp::Ordering::Less))
                {
                    *cur = x;
                }
            }
            (AggFunc::Max, Acc::Extreme(cur)) => {
                if !x.is_null()
                    && (cur.is_null() || compare(&x, cur) == Some(std::cmp::Ordering::Greater))
                {
                    *cur = x;
                }
            }
            (AggFunc::Avg, Acc::Avg { sum, count }) => {
                if let Some(f) = x.as_f64() {
                    *sum += f;
                    *count += 1;
                }
            }
            (AggFunc::Latest, Acc::Value(v)) => {
                if !x.is_null() {
                    *v = x
                }
            }
            (AggFunc::Earliest, Acc::First(v)) => {
                if v.is_none() && !x.is_null() {
                    *v = Some(x)
                }
            }
            (AggFunc::Udaf(name), Acc::Udaf(state)) => {
                let row: Vec<_> = args.iter().map(to_udf).collect();
                let s = std::mem::take(state);
                *state = udaf(udafs, name)?.accumulate(s, &[row])?;
            }
            (f, a) => {
                return Err(ProcessorError::Host(format!(
                    "accumulator {a:?} does not belong to {f:?}"
                )));
            }
        }
        Ok(())
    }

    /// Folds several rows' argument values into `acc` (an aggregate UDF in one call).
    pub fn add_many(
        &self,
        acc: &mut Acc,
        rows: &[&[Value]],
        udafs: &mut Udafs,
    ) -> Result<(), ProcessorError> {
        if rows.is_empty() {
            return Ok(());
        }
        if let (AggFunc::Udaf(name), Acc::Udaf(state)) = (&self.func, &mut *acc) {
            let calls: Vec<Vec<_>> = rows
                .iter()
                .map(|r| r.iter().map(to_udf).collect())
                .collect();
            let s = std::mem::take(state);
            *state = udaf(udafs, name)?.accumulate(s, &calls)?;
            return Ok(());
        }
        for r in rows {
            self.add(acc, r, udafs)?;
        }
        Ok(())
    }

    /// Combines two accumulators (merging session windows); `a` is the earlier one.
    pub fn merge(&self, a: Acc, b: Acc, udafs: &mut Udafs) -> Result<Acc, ProcessorError> {
        Ok(match (&self.func, a, b) {
            (_, Acc::Count(x), Acc::Count(y)) => Acc::Count(x + y),
            (_, Acc::SumInt(x), Acc::SumInt(y)) => Acc::SumInt(match (x, y) {
                (None, v) | (v, None) => v,
                (Some(x), Some(y)) => Some(x.saturating_add(y)),
            }),
            (_, Acc::SumInt(x), Acc::SumFloat(y)) | (_, Acc::SumFloat(y), Acc::SumInt(x)) => {
                Acc::SumFloat(Some(x.unwrap_or(0) as f64 + y.unwrap_or(0.0)))
            }
            (_, Acc::SumFloat(x), Acc::SumFloat(y)) => Acc::SumFloat(match (x, y) {
                (None, v) | (v, None) => v,
                (Some(x), Some(y)) => Some(x + y),
            }),
            (AggFunc::Min, Acc::Extreme(x), Acc::Extreme(y)) => {
                Acc::Extreme(pick(x, y, std::cmp::Ordering::Less))
            }
            (_, Acc::Extreme(x), Acc::Extreme(y)) => {
                Acc::Extreme(pick(x, y, std::cmp::Ordering::Greater))
            }
            (_, Acc::Avg { sum: s1, count: c1 }, Acc::Avg { sum: s2, count: c2 }) => Acc::Avg {
                sum: s1 + s2,
                count: c1 + c2,
            },
            (_, Acc::Value(x), Acc::Value(y)) => Acc::Value(if y.is_null() { x } else { y }),
            (_, Acc::First(x), Acc::First(y)) => Acc::First(x.or(y)),
            (AggFunc::Udaf(name), Acc::Udaf(x), Acc::Udaf(y)) => {
                Acc::Udaf(udaf(udafs, name)?.merge(x, y)?)
            }
            (f, a, b) => {
                return Err(ProcessorError::Host(format!(
                    "cannot merge {a:?} and {b:?} for {f:?}"
                )));
            }
        })
    }

    /// The aggregate's value.
    pub fn result(&self, acc: &Acc, udafs: &mut Udafs) -> Result<Value, ProcessorError> {
        Ok(match acc {
            Acc::Count(n) => Value::from(*n),
            Acc::SumInt(s) => s.map(Value::from).unwrap_or(Value::Null),
            Acc::SumFloat(s) => s
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Acc::Extreme(v) | Acc::Value(v) => v.clone(),
            Acc::Avg { sum, count } => {
                if *count == 0 {
                    Value::Null
                } else {
                    serde_json::Number::from_f64(sum / *count as f64)
                        .map(Value::Number)
                        .unwrap_or(Value::Null)
                }
            }
            Acc::First(v) => v.clone().unwrap_or(Value::Null),
            Acc::Udaf(state) => match &self.func {
                AggFunc::Udaf(name) => from_udf(udaf(udafs, name)?.finish(state)?),
                _ => Value::Null,
            },
        })
    }
}

fn pick(x: Value, y: Value, want: std::cmp::Ordering) -> Value {
    if x.is_null() {
        return y;
    }
    if y.is_null() {
        return x;
    }
    if compare(&y, &x) == Some(want) { y } else { x }
}

/// Whether arithmetic on the result type is integral (SUM of ints stays BIGINT).
pub fn sum_type(arg: &SqlType) -> SqlType {
    match arg {
        SqlType::Int | SqlType::Bigint => SqlType::Bigint,
        SqlType::Any => SqlType::Any,
        _ => SqlType::Double,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(func: AggFunc, ty: SqlType) -> AggCall {
        AggCall {
            func,
            args: vec![],
            ty,
        }
    }

    #[test]
    fn builtins_fold_and_merge() {
        let mut u = Udafs::new();
        let sum = call(AggFunc::Sum, SqlType::Bigint);
        let mut a = sum.init(&mut u).unwrap();
        for v in [json!(1), json!(2), Value::Null] {
            sum.add(&mut a, &[v], &mut u).unwrap();
        }
        assert_eq!(sum.result(&a, &mut u).unwrap(), json!(3));
        let mut b = sum.init(&mut u).unwrap();
        sum.add(&mut b, &[json!(1.5)], &mut u).unwrap();
        let m = sum.merge(a, b, &mut u).unwrap();
        assert_eq!(sum.result(&m, &mut u).unwrap(), json!(4.5));

        let min = call(AggFunc::Min, SqlType::String);
        let mut a = min.init(&mut u).unwrap();
        for v in ["b", "a", "c"] {
            min.add(&mut a, &[json!(v)], &mut u).unwrap();
        }
        assert_eq!(min.result(&a, &mut u).unwrap(), json!("a"));
        let avg = call(AggFunc::Avg, SqlType::Double);
        let mut a = avg.init(&mut u).unwrap();
        assert_eq!(avg.result(&a, &mut u).unwrap(), Value::Null);
        avg.add(&mut a, &[json!(1)], &mut u).unwrap();
        avg.add(&mut a, &[json!(2)], &mut u).unwrap();
        assert_eq!(avg.result(&a, &mut u).unwrap(), json!(1.5));
        let s = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Acc>(&s).unwrap(), a);
    }
}

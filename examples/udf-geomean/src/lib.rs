//! `geomean(double) -> double`: the geometric mean of the non-NULL values of a DOUBLE column,
//! `exp(sum(ln x) / n)`. The state is the count and the sum of logarithms, 16 bytes
//! (little-endian `u64` then `f64`). NULLs are skipped; no rows gives NULL; a value <= 0 is an
//! error (its logarithm is undefined).

use weir_guest_udf::{AggregateFunction, DataType, Signature, Value};

struct GeoMean;

/// Count of values and sum of their natural logarithms.
#[derive(Debug, Clone, Copy, Default)]
struct State {
    count: u64,
    sum_ln: f64,
}

impl AggregateFunction for GeoMean {
    type State = State;

    fn signature() -> Signature {
        Signature::new([DataType::Float], DataType::Float)
    }

    fn init() -> State {
        State::default()
    }

    fn accumulate(state: &mut State, args: &[Value]) -> Result<(), String> {
        let x = match args {
            [Value::Null] => return Ok(()),
            [v] => v
                .as_float()
                .ok_or_else(|| format!("geomean expects a DOUBLE, got {v:?}"))?,
            _ => return Err(format!("geomean takes 1 argument, got {}", args.len())),
        };
        if x <= 0.0 || x.is_nan() {
            return Err(format!(
                "geomean is defined for positive values only, got {x}"
            ));
        }
        state.count += 1;
        state.sum_ln += x.ln();
        Ok(())
    }

    fn merge(a: State, b: State) -> Result<State, String> {
        Ok(State {
            count: a.count + b.count,
            sum_ln: a.sum_ln + b.sum_ln,
        })
    }

    fn finish(state: State) -> Result<Value, String> {
        Ok(if state.count == 0 {
            Value::Null
        } else {
            Value::Float((state.sum_ln / state.count as f64).exp())
        })
    }

    fn encode(state: &State) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(16);
        bytes.extend_from_slice(&state.count.to_le_bytes());
        bytes.extend_from_slice(&state.sum_ln.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Result<State, String> {
        let bytes: &[u8; 16] = bytes
            .try_into()
            .map_err(|_| format!("geomean state must be 16 bytes, got {}", bytes.len()))?;
        let (count, sum_ln) = bytes.split_at(8);
        let count = u64::from_le_bytes(count.try_into().map_err(|_| "bad count")?);
        let sum_ln = f64::from_le_bytes(sum_ln.try_into().map_err(|_| "bad sum")?);
        Ok(State { count, sum_ln })
    }
}

weir_guest_udf::export_aggregate_udf!(GeoMean);

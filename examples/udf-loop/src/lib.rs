//! Hostile test UDF: `spin(int) -> int` returns its argument, but never returns for a
//! negative one (only the host's deadline ends that call: its CPU-time limit, or the query's
//! task being stopped).

use weir_guest_udf::{DataType, ScalarFunction, Signature, Value};

struct Spin;

impl ScalarFunction for Spin {
    fn signature() -> Signature {
        Signature::new([DataType::Int], DataType::Int)
    }

    fn call(args: &[Value]) -> Result<Value, String> {
        match args {
            [Value::Int(n)] if *n < 0 => {
                let mut i: u64 = 0;
                loop {
                    i = std::hint::black_box(i.wrapping_add(1));
                }
            }
            [v @ (Value::Int(_) | Value::Null)] => Ok(v.clone()),
            _ => Err("spin takes one BIGINT".into()),
        }
    }
}

weir_guest_udf::export_scalar_udf!(Spin);

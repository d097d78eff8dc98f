//! Hostile test UDF: `trap(int) -> int` returns its argument, but panics (a trap) when the
//! argument is 13. Used to check that a trap fails the batch and the next call gets a fresh
//! instance.

use weir_guest_udf::{DataType, ScalarFunction, Signature, Value};

struct Trap;

impl ScalarFunction for Trap {
    fn signature() -> Signature {
        Signature::new([DataType::Int], DataType::Int)
    }

    fn call(args: &[Value]) -> Result<Value, String> {
        match args {
            [Value::Int(13)] => panic!("udf-trap: 13 is unlucky"),
            [v @ (Value::Int(_) | Value::Null)] => Ok(v.clone()),
            _ => Err("trap takes one BIGINT".into()),
        }
    }
}

weir_guest_udf::export_scalar_udf!(Trap);

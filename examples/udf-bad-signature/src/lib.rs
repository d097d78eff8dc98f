//! Hostile test UDF: `signature()` panics, so the engine must reject the component when it is
//! registered (`signature_failed`), quoting the panic.

use weir_guest_udf::{ScalarFunction, Signature, Value};

struct BadSignature;

impl ScalarFunction for BadSignature {
    fn signature() -> Signature {
        panic!("udf-bad-signature: no signature today")
    }

    fn call(_args: &[Value]) -> Result<Value, String> {
        Ok(Value::Null)
    }
}

weir_guest_udf::export_scalar_udf!(BadSignature);

//! `mask(text) -> text`: keeps the last 4 characters and replaces the others with `*`
//! (`mask('4111111111111111')` is `'************1111'`); NULL gives NULL.

use weir_guest_udf::{DataType, ScalarFunction, Signature, Value};

struct Mask;

/// The masking itself, by characters (not bytes), so any UTF-8 text works.
fn mask(s: &str) -> String {
    let n = s.chars().count();
    s.chars()
        .enumerate()
        .map(|(i, c)| if i + 4 < n { '*' } else { c })
        .collect()
}

impl ScalarFunction for Mask {
    fn signature() -> Signature {
        Signature::new([DataType::Text], DataType::Text)
    }

    fn call(args: &[Value]) -> Result<Value, String> {
        match args {
            [Value::Text(s)] => Ok(Value::Text(mask(s))),
            [Value::Null] => Ok(Value::Null),
            [other] => Err(format!("mask expects a STRING, got {other:?}")),
            _ => Err(format!("mask takes 1 argument, got {}", args.len())),
        }
    }
}

weir_guest_udf::export_scalar_udf!(Mask);

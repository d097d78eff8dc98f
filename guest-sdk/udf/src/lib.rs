//! `weir-guest-udf`: write user-defined functions for Weir's streaming SQL in plain Rust.
//! Implement [`ScalarFunction`] or
//! [`AggregateFunction`] and export it with [`export_scalar_udf!`](crate::export_scalar_udf)
//! or [`export_aggregate_udf!`](crate::export_aggregate_udf). The component then implements
//! the `scalar-udf` or `aggregate-udf` world of `wit/udf/udf.wit` (`weir:udf@0.1.0`).
//!
//! This module owns the plain Rust view of that contract ([`Value`], [`DataType`],
//! [`Signature`]) and the glue that turns the batched WIT calls into one trait call per row.
//! It does not own type checking of arguments (the engine passes what the signature
//! declares, or NULL) nor where aggregate state lives (the engine keeps it).
//!
//! ```no_run
//! use weir_guest_udf::{DataType, ScalarFunction, Signature, Value};
//!
//! /// `shout(text) -> text`
//! struct Shout;
//!
//! impl ScalarFunction for Shout {
//!     fn signature() -> Signature {
//!         Signature::new([DataType::Text], DataType::Text)
//!     }
//!
//!     fn call(args: &[Value]) -> Result<Value, String> {
//!         Ok(match args.first() {
//!             Some(Value::Text(s)) => Value::Text(s.to_uppercase()),
//!             _ => Value::Null,
//!         })
//!     }
//! }
//!
//! weir_guest_udf::export_scalar_udf!(Shout);
//! ```

/// One SQL value: an argument or a result (the WIT `value`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// A DOUBLE, or a BIGINT widened to one.
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// The declared type of a parameter or result (the WIT `data-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Boolean,
    Int,
    Float,
    Text,
    Bytes,
    /// Any value: the function checks at run time.
    Any,
}

/// What a function declares about itself (the WIT `signature`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub params: Vec<DataType>,
    pub returns: DataType,
}

impl Signature {
    pub fn new(params: impl IntoIterator<Item = DataType>, returns: DataType) -> Signature {
        Signature {
            params: params.into_iter().collect(),
            returns,
        }
    }
}

/// A scalar function: one result per row. The engine calls [`call`](Self::call) once per
/// row, in batches; there is no instance state (a `static` would survive between calls of
/// one instance, but instances are replaced at will).
pub trait ScalarFunction {
    /// Parameter and result types; called when the function is registered.
    fn signature() -> Signature;

    /// The result for one row of arguments (as many as `signature().params`). An `Err`
    /// fails the batch with its message; a panic traps the instance.
    fn call(args: &[Value]) -> Result<Value, String>;
}

/// An aggregate function. Its running state is a Rust value ([`State`](Self::State)) that
/// the SDK encodes to bytes between calls with [`encode`](Self::encode) and
/// [`decode`](Self::decode): the engine stores those bytes.
pub trait AggregateFunction {
    /// The running state.
    type State;

    /// Parameter and result types; called when the function is registered.
    fn signature() -> Signature;

    /// The state of an empty aggregate.
    fn init() -> Self::State;

    /// Folds one row of arguments into `state`.
    fn accumulate(state: &mut Self::State, args: &[Value]) -> Result<(), String>;

    /// Combines two states (associative; `init()` is neutral).
    fn merge(a: Self::State, b: Self::State) -> Result<Self::State, String>;

    /// The result for `state`.
    fn finish(state: Self::State) -> Result<Value, String>;

    /// The state as bytes (what the engine stores).
    fn encode(state: &Self::State) -> Vec<u8>;

    /// Reads back what [`encode`](Self::encode) wrote.
    fn decode(bytes: &[u8]) -> Result<Self::State, String>;
}

extern crate self as weir_guest_udf;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// Bindings generated from `wit/udf/udf.wit` (wit-bindgen), one module per world; the
/// aggregate world reuses the scalar world's `types`. Most functions never need them.
pub mod bindings {
    /// The `scalar-udf` world.
    pub mod scalar {
        wit_bindgen::generate!({
            path: "../../wit/udf",
            world: "scalar-udf",
            pub_export_macro: true,
            export_macro_name: "__export_weir_scalar_udf",
            default_bindings_module: "weir_guest_udf::bindings::scalar",
            runtime_path: "weir_guest_udf::__wit_bindgen::rt",
        });
    }

    /// The `aggregate-udf` world.
    pub mod aggregate {
        wit_bindgen::generate!({
            path: "../../wit/udf",
            world: "aggregate-udf",
            with: {
                "weir:udf/types@0.1.0": super::scalar::weir::udf::types,
            },
            pub_export_macro: true,
            export_macro_name: "__export_weir_aggregate_udf",
            default_bindings_module: "weir_guest_udf::bindings::aggregate",
            runtime_path: "weir_guest_udf::__wit_bindgen::rt",
        });
    }
}

/// Runtime glue used by the export macros; not a public API.
#[doc(hidden)]
pub mod __rt {
    use super::bindings::scalar::weir::udf::types as wit;
    use super::{AggregateFunction, DataType, ScalarFunction, Signature, Value};

    pub use super::bindings::aggregate::Guest as AggregateGuest;
    pub use super::bindings::scalar::Guest as ScalarGuest;
    pub use wit::{Signature as WitSignature, Value as WitValue};

    fn from_wit(v: wit::Value) -> Value {
        match v {
            wit::Value::Null => Value::Null,
            wit::Value::Boolean(b) => Value::Boolean(b),
            wit::Value::Int(i) => Value::Int(i),
            wit::Value::Float(f) => Value::Float(f),
            wit::Value::Text(s) => Value::Text(s),
            wit::Value::Bytes(b) => Value::Bytes(b),
        }
    }

    fn to_wit(v: Value) -> wit::Value {
        match v {
            Value::Null => wit::Value::Null,
            Value::Boolean(b) => wit::Value::Boolean(b),
            Value::Int(i) => wit::Value::Int(i),
            Value::Float(f) => wit::Value::Float(f),
            Value::Text(s) => wit::Value::Text(s),
            Value::Bytes(b) => wit::Value::Bytes(b),
        }
    }

    fn type_to_wit(t: DataType) -> wit::DataType {
        match t {
            DataType::Boolean => wit::DataType::Boolean,
            DataType::Int => wit::DataType::Int,
            DataType::Float => wit::DataType::Float,
            DataType::Text => wit::DataType::Text,
            DataType::Bytes => wit::DataType::Bytes,
            DataType::Any => wit::DataType::Any,
        }
    }

    pub fn signature(s: Signature) -> wit::Signature {
        wit::Signature {
            params: s.params.into_iter().map(type_to_wit).collect(),
            returns: type_to_wit(s.returns),
        }
    }

    fn args(row: Vec<wit::Value>) -> Vec<Value> {
        row.into_iter().map(from_wit).collect()
    }

    pub fn call<F: ScalarFunction>(rows: Vec<Vec<wit::Value>>) -> Result<Vec<wit::Value>, String> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(to_wit(F::call(&args(row))?));
        }
        Ok(out)
    }

    pub fn init<F: AggregateFunction>() -> Vec<u8> {
        F::encode(&F::init())
    }

    pub fn accumulate<F: AggregateFunction>(
        state: Vec<u8>,
        rows: Vec<Vec<wit::Value>>,
    ) -> Result<Vec<u8>, String> {
        let mut state = F::decode(&state)?;
        for row in rows {
            F::accumulate(&mut state, &args(row))?;
        }
        Ok(F::encode(&state))
    }

    pub fn merge<F: AggregateFunction>(a: Vec<u8>, b: Vec<u8>) -> Result<Vec<u8>, String> {
        let merged = F::merge(F::decode(&a)?, F::decode(&b)?)?;
        Ok(F::encode(&merged))
    }

    pub fn finish<F: AggregateFunction>(state: Vec<u8>) -> Result<wit::Value, String> {
        F::finish(F::decode(&state)?).map(to_wit)
    }
}

/// Exports a [`ScalarFunction`](crate::ScalarFunction) type as the component's
/// `weir:udf/scalar-udf` world. Use it once, at the root of a `cdylib` crate.
#[macro_export]
macro_rules! export_scalar_udf {
    ($ty:ty) => {
        const _: () = {
            struct __WeirScalarUdfExport;

            impl $crate::__rt::ScalarGuest for __WeirScalarUdfExport {
                fn signature() -> $crate::__rt::WitSignature {
                    $crate::__rt::signature(<$ty as $crate::ScalarFunction>::signature())
                }

                fn call(
                    rows: ::std::vec::Vec<::std::vec::Vec<$crate::__rt::WitValue>>,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::__rt::WitValue>,
                    ::std::string::String,
                > {
                    $crate::__rt::call::<$ty>(rows)
                }
            }

            $crate::bindings::scalar::__export_weir_scalar_udf!(
                __WeirScalarUdfExport with_types_in $crate::bindings::scalar
            );
        };
    };
}

/// Exports an [`AggregateFunction`](crate::AggregateFunction) type as the component's
/// `weir:udf/aggregate-udf` world. Use it once, at the root of a `cdylib` crate.
#[macro_export]
macro_rules! export_aggregate_udf {
    ($ty:ty) => {
        const _: () = {
            struct __WeirAggregateUdfExport;

            impl $crate::__rt::AggregateGuest for __WeirAggregateUdfExport {
                fn signature() -> $crate::__rt::WitSignature {
                    $crate::__rt::signature(<$ty as $crate::AggregateFunction>::signature())
                }

                fn init() -> ::std::vec::Vec<u8> {
                    $crate::__rt::init::<$ty>()
                }

                fn accumulate(
                    state: ::std::vec::Vec<u8>,
                    rows: ::std::vec::Vec<::std::vec::Vec<$crate::__rt::WitValue>>,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    $crate::__rt::accumulate::<$ty>(state, rows)
                }

                fn merge(
                    a: ::std::vec::Vec<u8>,
                    b: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    $crate::__rt::merge::<$ty>(a, b)
                }

                fn finish(
                    state: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<$crate::__rt::WitValue, ::std::string::String> {
                    $crate::__rt::finish::<$ty>(state)
                }
            }

            $crate::bindings::aggregate::__export_weir_aggregate_udf!(
                __WeirAggregateUdfExport with_types_in $crate::bindings::aggregate
            );
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mean;

    impl AggregateFunction for Mean {
        type State = (u64, f64);
        fn signature() -> Signature {
            Signature::new([DataType::Float], DataType::Float)
        }
        fn init() -> (u64, f64) {
            (0, 0.0)
        }
        fn accumulate(s: &mut (u64, f64), args: &[Value]) -> Result<(), String> {
            if let Some(x) = args.first().and_then(Value::as_float) {
                s.0 += 1;
                s.1 += x;
            }
            Ok(())
        }
        fn merge(a: (u64, f64), b: (u64, f64)) -> Result<(u64, f64), String> {
            Ok((a.0 + b.0, a.1 + b.1))
        }
        fn finish(s: (u64, f64)) -> Result<Value, String> {
            Ok(if s.0 == 0 {
                Value::Null
            } else {
                Value::Float(s.1 / s.0 as f64)
            })
        }
        fn encode(s: &(u64, f64)) -> Vec<u8> {
            let mut b = s.0.to_le_bytes().to_vec();
            b.extend_from_slice(&s.1.to_le_bytes());
            b
        }
        fn decode(b: &[u8]) -> Result<(u64, f64), String> {
            let n = b.get(..8).ok_or("short state")?;
            let x = b.get(8..16).ok_or("short state")?;
            Ok((
                u64::from_le_bytes(n.try_into().map_err(|_| "bad state")?),
                f64::from_le_bytes(x.try_into().map_err(|_| "bad state")?),
            ))
        }
    }

    struct Len;

    impl ScalarFunction for Len {
        fn signature() -> Signature {
            Signature::new([DataType::Text], DataType::Int)
        }
        fn call(args: &[Value]) -> Result<Value, String> {
            match args {
                [Value::Text(s)] => Ok(Value::Int(s.chars().count() as i64)),
                [Value::Null] => Ok(Value::Null),
                _ => Err("len takes one text".into()),
            }
        }
    }

    #[test]
    fn scalar_glue_calls_once_per_row() {
        use super::bindings::scalar::weir::udf::types as wit;
        let rows = vec![
            vec![wit::Value::Text("héllo".into())],
            vec![wit::Value::Null],
        ];
        let out = __rt::call::<Len>(rows).unwrap();
        assert!(matches!(out[0], wit::Value::Int(5)));
        assert!(matches!(out[1], wit::Value::Null));
        let err = __rt::call::<Len>(vec![vec![wit::Value::Int(1)]]).unwrap_err();
        assert_eq!(err, "len takes one text");
        let sig = __rt::signature(Len::signature());
        assert_eq!(sig.params.len(), 1);
    }

    #[test]
    fn aggregate_glue_round_trips_state() {
        use super::bindings::scalar::weir::udf::types as wit;
        let s = __rt::init::<Mean>();
        let s = __rt::accumulate::<Mean>(
            s,
            vec![vec![wit::Value::Float(1.0)], vec![wit::Value::Int(3)]],
        )
        .unwrap();
        let t =
            __rt::accumulate::<Mean>(__rt::init::<Mean>(), vec![vec![wit::Value::Null]]).unwrap();
        let m = __rt::merge::<Mean>(s, t).unwrap();
        match __rt::finish::<Mean>(m).unwrap() {
            wit::Value::Float(x) => assert_eq!(x, 2.0),
            _ => panic!("not a float"),
        }
        assert!(__rt::finish::<Mean>(vec![1, 2]).is_err());
    }
}

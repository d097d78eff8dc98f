//! Errors of the Wasm host when loading a processor or UDF component or creating an instance.
//! Calls into a running instance fail with [`crate::host::ProcessorError`] instead.

/// Why a component could not be loaded or instantiated. Every variant has a stable
/// [`code`](WasmError::code). The messages of the uploader's errors
/// ([`is_user_error`](WasmError::is_user_error)) say what is wrong in terms a guest author can
/// act on and carry no server paths; the others are for the server's operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WasmError {
    /// The bytes are not a WebAssembly component (random bytes, text, a core module…).
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// A component, but not of the `weir:processor/processor` world: says which import is
    /// not provided or which export is missing or mistyped.
    #[error("not a weir:processor/processor component: {0}")]
    WrongWorld(String),
    /// A component, but neither of the `weir:udf/scalar-udf` nor of the
    /// `weir:udf/aggregate-udf` world: says what it imports or exports instead.
    #[error("not a weir:udf scalar-udf or aggregate-udf component: {0}")]
    NotAUdf(String),
    /// A UDF component whose `signature()` export trapped, hit a limit or returned an
    /// unusable signature when it was loaded.
    #[error("the function's signature() failed: {0}")]
    Signature(String),
    /// Larger than the processor's `limits.max_module_bytes`.
    #[error("component is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    /// Wasmtime could not compile (or validate) the component.
    #[error("component failed to compile: {0}")]
    Compile(String),
    /// An instance could not be created (out of pool slots, limits, a failing start…).
    #[error("component failed to instantiate: {0}")]
    Instantiate(String),
    /// The on-disk cache of compiled components could not be read or written.
    #[error("compiled-component cache: {0}")]
    Cache(String),
    /// The engine itself could not be created (bad configuration).
    #[error("wasm engine: {0}")]
    Engine(String),
}

impl WasmError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            WasmError::NotAComponent(_) => "not_a_component",
            WasmError::WrongWorld(_) | WasmError::NotAUdf(_) => "wrong_world",
            WasmError::Signature(_) => "signature_failed",
            WasmError::TooLarge { .. } => "module_too_large",
            WasmError::Compile(_) => "compile_failed",
            WasmError::Instantiate(_) => "instantiate_failed",
            WasmError::Cache(_) => "cache_error",
            WasmError::Engine(_) => "engine_error",
        }
    }

    /// True when the error is the uploader's fault (a 400 at the HTTP edge), false when it
    /// is the server's (a 500).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            WasmError::NotAComponent(_)
                | WasmError::WrongWorld(_)
                | WasmError::NotAUdf(_)
                | WasmError::Signature(_)
                | WasmError::TooLarge { .. }
                | WasmError::Compile(_)
        )
    }
}

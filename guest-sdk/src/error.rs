//! The SDK's error type: a message that becomes the `err` string of a failed call.

use std::fmt;

/// An error from a processor or from the host; its message is what the engine reports
/// (`guest error: …`) for the failed call.
///
/// Any `std::error::Error` converts into it, so `?` works on parse errors, serde errors and the
/// like; build one from a message with [`Error::new`] or [`bail!`](crate::bail).
pub struct Error {
    message: String,
}

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?})", self.message)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Error {
        Error::new(e.to_string())
    }
}

/// Returns early with an [`Error`] built from a format string.
///
/// ```
/// # fn f(x: u32) -> weir_guest::Result<()> {
/// if x > 10 {
///     weir_guest::bail!("x is {x}, more than 10");
/// }
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return ::core::result::Result::Err($crate::Error::new(::std::format!($($arg)*)))
    };
}

//! The [`FunctionRegistry`] as streaming SQL administers it: [`FunctionAdmin`] for
//! `CREATE [OR REPLACE] FUNCTION f WITH (ARTIFACT='a')`, `DROP FUNCTION f` and
//! `SHOW FUNCTIONS`. Only the translation lives here (registry errors become [`SqlError`]s
//! with the registry's codes, `not_found` / `exists` where SQL expects them); the statements
//! are `crate::sql`'s, the registry's rules are `registry.rs`'s.

use super::registry::{FunctionError, FunctionInfo, FunctionRegistry};
use crate::error::ErrorKind;
use crate::sql::{FunctionAdmin, FunctionListing, SqlError};

fn sql_error(e: FunctionError) -> SqlError {
    let code = match e.kind() {
        ErrorKind::NotFound => "not_found",
        ErrorKind::AlreadyExists | ErrorKind::Conflict => "exists",
        ErrorKind::InvalidInput | ErrorKind::TooLarge => e.code(),
        ErrorKind::Unavailable => "unavailable",
        _ => "internal",
    };
    SqlError::new(code, e.to_string())
}

fn listing(f: FunctionInfo) -> FunctionListing {
    FunctionListing {
        name: f.name,
        kind: f.kind,
        signature: f.signature,
    }
}

impl FunctionAdmin for FunctionRegistry {
    fn create_from_artifact(
        &self,
        name: &str,
        artifact: &str,
        replace: bool,
    ) -> Result<FunctionListing, SqlError> {
        FunctionRegistry::create_from_artifact(self, name, artifact, replace)
            .map(listing)
            .map_err(sql_error)
    }

    fn drop_function(&self, name: &str) -> Result<bool, SqlError> {
        match self.delete(name) {
            Ok(()) => Ok(true),
            Err(FunctionError::NotFound(_)) => Ok(false),
            Err(e) => Err(sql_error(e)),
        }
    }

    /// Functions that can be called (one that failed to load at start is left out; the HTTP
    /// listing shows it with its error).
    fn list(&self) -> Vec<FunctionListing> {
        FunctionRegistry::list(self)
            .into_iter()
            .filter(|f| f.error.is_none())
            .map(listing)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_keep_their_codes_in_sql() {
        let e = sql_error(FunctionError::NotFound("F".into()));
        assert_eq!((e.code, e.kind()), ("not_found", ErrorKind::NotFound));
        let e = sql_error(FunctionError::Exists("F".into()));
        assert_eq!((e.code, e.kind()), ("exists", ErrorKind::Conflict));
        let e = sql_error(FunctionError::UnknownArtifact("a".into()));
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = sql_error(FunctionError::Reserved("UCASE".into()));
        assert_eq!(
            (e.code, e.kind()),
            ("reserved_function_name", ErrorKind::InvalidInput)
        );
        let e = sql_error(FunctionError::Io {
            path: "/x".into(),
            message: "disk".into(),
        });
        assert_eq!(e.kind(), ErrorKind::Internal);
    }
}

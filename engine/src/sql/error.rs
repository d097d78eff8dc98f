//! [`SqlError`]: what a statement did wrong (or what failed running it), with a stable code
//! and, where known, the line and column in the statement text.

use crate::error::EngineError;
use crate::log_access::LogError;

/// A position in the SQL text (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl Position {
    pub fn of(loc: sqlparser::tokenizer::Location) -> Option<Position> {
        (loc.line > 0).then_some(Position {
            line: loc.line,
            column: loc.column,
        })
    }
}

/// An error from parsing, planning or executing a statement.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    /// Stable machine-readable code: `sql_syntax`, `unknown_column`, `unknown_source`,
    /// `unknown_function`, `type_mismatch`, `invalid_statement`, `exists`, `not_found`,
    /// `unsupported`, `engine`, `log`.
    pub code: &'static str,
    pub message: String,
    pub position: Option<Position>,
}

impl SqlError {
    pub fn new(code: &'static str, message: impl Into<String>) -> SqlError {
        SqlError {
            code,
            message: message.into(),
            position: None,
        }
    }

    pub fn at(mut self, position: Option<Position>) -> SqlError {
        if self.position.is_none() {
            self.position = position;
        }
        self
    }

    pub fn syntax(message: impl Into<String>) -> SqlError {
        SqlError::new("sql_syntax", message)
    }

    /// Whether the statement is at fault (400) rather than the server (500/503).
    pub fn is_user_error(&self) -> bool {
        !matches!(self.code, "engine" | "log" | "internal")
    }

    /// The HTTP status class: `not_found` → 404, `exists` → 409, user errors → 400,
    /// `unavailable` → 503, the rest → 500.
    pub fn status(&self) -> u16 {
        match self.code {
            "not_found" => 404,
            "exists" => 409,
            "unavailable" => 503,
            "insufficient_resources" => 507,
            _ if self.is_user_error() => 400,
            _ => 500,
        }
    }
}

impl From<sqlparser::parser::ParserError> for SqlError {
    /// sqlparser ends its messages with ` at Line: L, Column: C`; that becomes the position.
    fn from(e: sqlparser::parser::ParserError) -> SqlError {
        let text = match e {
            sqlparser::parser::ParserError::TokenizerError(s)
            | sqlparser::parser::ParserError::ParserError(s) => s,
            sqlparser::parser::ParserError::RecursionLimitExceeded => {
                "statement nested too deeply".to_string()
            }
        };
        let (message, position) = split_position(&text);
        SqlError::syntax(message).at(position)
    }
}

fn split_position(text: &str) -> (String, Option<Position>) {
    if let Some(i) = text.rfind(" at Line: ") {
        let tail = &text[i + " at Line: ".len()..];
        let mut parts = tail.split(", Column: ");
        let line = parts.next().and_then(|l| l.trim().parse().ok());
        let column = parts.next().and_then(|c| c.trim().parse().ok());
        if let (Some(line), Some(column)) = (line, column) {
            return (text[..i].to_string(), Some(Position { line, column }));
        }
    }
    (text.to_string(), None)
}

impl From<EngineError> for SqlError {
    fn from(e: EngineError) -> SqlError {
        use crate::error::EngineErrorKind as K;
        let code = match e.kind() {
            K::NotFound => "not_found",
            K::Conflict => "exists",
            K::Unavailable => "unavailable",
            K::InvalidInput => "invalid_statement",
            K::LimitExceeded => "limit_exceeded",
            K::InsufficientResources => "insufficient_resources",
            K::Internal => "engine",
        };
        SqlError::new(code, e.to_string())
    }
}

impl From<LogError> for SqlError {
    fn from(e: LogError) -> SqlError {
        SqlError::new("log", e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_positions_are_kept() {
        let (m, p) = split_position("Expected: an expression, found: FROM at Line: 2, Column: 8");
        assert_eq!(m, "Expected: an expression, found: FROM");
        assert_eq!(p, Some(Position { line: 2, column: 8 }));
    }
}

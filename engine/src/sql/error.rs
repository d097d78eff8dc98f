//! [`SqlError`]: what a statement did wrong (or what failed running it), with a stable code
//! and, where known, the line and column in the statement text.

use crate::error::{EngineError, ErrorKind};
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
    /// Stable machine-readable code: `sql_syntax`, `sql_too_deep`, `sql_too_complex`,
    /// `too_large`, `unknown_column`, `unknown_source`, `unknown_function`, `type_mismatch`,
    /// `invalid_statement`, `exists`, `not_found`, `unsupported`, `engine`, `internal`, or the
    /// log's own code for a failure of the log (`invalid_topic_name`, `invalid_config`,
    /// `invalid_record`, `io_error`, …).
    pub code: &'static str,
    pub message: String,
    pub position: Option<Position>,
    /// The class, when the code alone does not tell (errors of the log and the engine).
    kind: Option<ErrorKind>,
}

impl SqlError {
    pub fn new(code: &'static str, message: impl Into<String>) -> SqlError {
        SqlError {
            code,
            message: message.into(),
            position: None,
            kind: None,
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

    /// Whether the statement is at fault rather than the server.
    pub fn is_user_error(&self) -> bool {
        !matches!(
            self.kind(),
            ErrorKind::Unavailable | ErrorKind::Corrupt | ErrorKind::Internal
        )
    }

    /// The class (the HTTP edge turns it into a status): `not_found` → NotFound, `exists` /
    /// `topic_in_use` → Conflict, `too_large` → TooLarge, `unavailable` → Unavailable,
    /// `engine`/`log`/`internal` → Internal, other codes → InvalidInput; an error of the log
    /// or the engine keeps the class they gave it.
    pub fn kind(&self) -> ErrorKind {
        if let Some(k) = self.kind {
            return k;
        }
        match self.code {
            "not_found" => ErrorKind::NotFound,
            "exists" | "topic_in_use" => ErrorKind::Conflict,
            "too_large" => ErrorKind::TooLarge,
            "unavailable" => ErrorKind::Unavailable,
            "insufficient_resources" => ErrorKind::InsufficientResources,
            "engine" | "log" | "internal" => ErrorKind::Internal,
            _ => ErrorKind::InvalidInput,
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
                return super::limits::too_deep(format!(
                    "the statement nests more than {} levels deep",
                    super::limits::PARSER_RECURSION_LIMIT
                ));
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
        use crate::error::ErrorKind as K;
        let code = match e.kind() {
            K::NotFound => "not_found",
            K::AlreadyExists => "exists",
            // A query's internal topic taken by a client's, or read by a processor.
            K::Conflict => match e.code() {
                c @ ("topic_conflict" | "topic_in_use") => c,
                _ => "exists",
            },
            K::Unavailable => "unavailable",
            K::InvalidInput | K::TooLarge => match e {
                EngineError::LimitExceeded { .. } => "limit_exceeded",
                _ => "invalid_statement",
            },
            K::InsufficientResources => "insufficient_resources",
            _ => "engine",
        };
        let mut err = SqlError::new(code, e.to_string());
        err.kind = Some(e.kind());
        err
    }
}

impl From<LogError> for SqlError {
    /// Keeps the log's code and class: a topic name or config the log refuses is the
    /// statement's fault (400 `invalid_topic_name`, `invalid_config`, `invalid_record`, …);
    /// a storage failure is the server's (5xx, its message naming the file or topic).
    fn from(e: LogError) -> SqlError {
        let mut err = SqlError::new(e.code(), e.to_string());
        err.kind = Some(e.kind());
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_errors_keep_their_code_and_class() {
        use weir_broker::BrokerError;
        let user = SqlError::from(LogError::from(BrokerError::InvalidTopicName {
            name: "a b".into(),
            reason: "x",
        }));
        let invalid = ErrorKind::InvalidInput;
        assert_eq!((user.code, user.kind()), ("invalid_topic_name", invalid));
        let user = SqlError::from(LogError::from(BrokerError::InvalidConfig("p".into())));
        assert_eq!((user.code, user.kind()), ("invalid_config", invalid));
        let user = SqlError::from(LogError::from(BrokerError::InvalidRecord("k".into())));
        assert_eq!((user.code, user.kind()), ("invalid_record", invalid));
        let server = SqlError::from(LogError::from(BrokerError::ShuttingDown));
        assert_eq!(server.kind(), ErrorKind::Unavailable);
        assert!(!server.is_user_error());
        assert_eq!(SqlError::new("sql_too_deep", "x").kind(), invalid);
        assert_eq!(SqlError::new("too_large", "x").kind(), ErrorKind::TooLarge);
        assert_eq!(SqlError::new("log", "x").kind(), ErrorKind::Internal);
    }

    #[test]
    fn parser_positions_are_kept() {
        let (m, p) = split_position("Expected: an expression, found: FROM at Line: 2, Column: 8");
        assert_eq!(m, "Expected: an expression, found: FROM");
        assert_eq!(p, Some(Position { line: 2, column: 8 }));
    }
}

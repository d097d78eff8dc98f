//! The API's error type: every failure a handler or extractor can produce becomes an
//! [`ApiError`], rendered as `{"error":{"code":"...","message":"..."}}` with the matching
//! HTTP status. Every layer's error (broker, engine, functions) classifies itself with the one
//! [`weir_broker::ErrorKind`], and [`status_of`] is the one place a kind becomes a status;
//! axum's extractor rejections keep their status (except 422, which becomes 400) and get a
//! stable code.

use std::borrow::Cow;

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use weir_broker::auth::AuthError;
use weir_broker::{BrokerError, ErrorKind};
use weir_engine::EngineError;
use weir_engine::udf::FunctionError;

/// An error returned by the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    /// Answer with `Connection: close` (the request body may be left unread).
    close: bool,
    /// Where in the request's SQL text the error is (`line`, `column`, 1-based).
    position: Option<(u64, u64)>,
    /// More fields of the error object (e.g. which SQL statements ran).
    details: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            close: status == StatusCode::PAYLOAD_TOO_LARGE,
            position: None,
            details: serde_json::Map::new(),
        }
    }

    /// Adds the position of the error in the request's SQL text.
    /// The HTTP status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn at(mut self, line: u64, column: u64) -> Self {
        self.position = Some((line, column));
        self
    }

    /// Adds a field to the error object (beside `code` and `message`).
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Self {
        self.details.insert(key.to_string(), value);
        self
    }

    /// Makes the response close the connection. Used when the request body may not have been
    /// read (too large, or rejected before reading): hyper then closes the connection anyway,
    /// and saying so keeps clients from reusing it for their next request.
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// 400 with code `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 with the given code.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 500 with code `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// Maps an extractor rejection: its status is kept (422 becomes 400), 413 gets the code
    /// `too_large` (the broker's code for the same thing), everything else `code`.
    fn from_rejection(status: StatusCode, code: &'static str, message: String) -> Self {
        let (status, code) = match status {
            StatusCode::UNPROCESSABLE_ENTITY => (StatusCode::BAD_REQUEST, code),
            StatusCode::PAYLOAD_TOO_LARGE => (status, "too_large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (status, "unsupported_media_type"),
            s if s.is_server_error() => (s, "internal"),
            s => (s, code),
        };
        ApiError::new(status, code, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

/// The HTTP status of an error of this kind: the one mapping for every layer's errors.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::InsufficientResources => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Corrupt | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        ApiError::new(status_of(e.kind()), e.code(), e.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError::new(status_of(e.kind()), e.code(), e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::new(status_of(e.kind()), e.code(), e.to_string())
    }
}

impl From<weir_broker::group::GroupViewError> for ApiError {
    fn from(e: weir_broker::group::GroupViewError) -> Self {
        ApiError::new(status_of(e.kind()), e.code(), e.to_string())
    }
}

impl From<FunctionError> for ApiError {
    fn from(e: FunctionError) -> Self {
        ApiError::new(status_of(e.kind()), e.code(), e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let code = match r {
            JsonRejection::JsonSyntaxError(_) => "invalid_json",
            _ => "bad_request",
        };
        ApiError::from_rejection(r.status(), code, r.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        ApiError::from_rejection(r.status(), "bad_request", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::from_rejection(r.status(), "invalid_query", r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        // Path parameters are extracted before the body, which stays unread.
        ApiError::from_rejection(r.status(), "invalid_path", r.body_text()).closing()
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(format!("request task failed: {e}"))
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<u64>,
    #[serde(flatten)]
    details: &'a serde_json::Map<String, serde_json::Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = %self.code, "request failed: {}", self.message);
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: &self.code,
                message: &self.message,
                line: self.position.map(|p| p.0),
                column: self.position.map(|p| p.1),
                details: &self.details,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.close {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_errors_map_to_statuses_and_codes() {
        let e = ApiError::from(BrokerError::UnknownTopic("t".into()));
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.code, "unknown_topic");
        assert_eq!(e.message, "topic 't' does not exist");

        let e = ApiError::from(BrokerError::TopicExists("t".into()));
        assert_eq!(e.status, StatusCode::CONFLICT);

        let e = ApiError::from(BrokerError::InvalidTopicName {
            name: "a/b".into(),
            reason: "x",
        });
        assert_eq!(e.status, StatusCode::BAD_REQUEST);

        let e = ApiError::from(BrokerError::BatchTooLarge { size: 10, limit: 1 });
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(e.code, "too_large");

        let e = ApiError::from(BrokerError::ShuttingDown);
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn auth_errors_map_through_their_kind() {
        let e = ApiError::from(AuthError::Unauthenticated);
        assert_eq!(
            (e.status, e.code.as_ref()),
            (StatusCode::UNAUTHORIZED, "unauthenticated")
        );
        let e = ApiError::from(AuthError::TooManyFailures {
            retry_after_secs: 3,
        });
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        let e = ApiError::from(AuthError::Forbidden {
            user: "u".into(),
            reason: "r".into(),
        });
        assert_eq!(
            (e.status, e.code.as_ref()),
            (StatusCode::FORBIDDEN, "forbidden")
        );
        let e = ApiError::from(AuthError::AuthDisabled);
        assert_eq!(
            (e.status, e.code.as_ref()),
            (StatusCode::CONFLICT, "auth_disabled")
        );
        let e = ApiError::from(AuthError::UserExists("u".into()));
        assert_eq!(e.status, StatusCode::CONFLICT);
        let e = ApiError::from(AuthError::UnknownAcl(3));
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e = ApiError::from(AuthError::InvalidRole("x".into()));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn json_rejections_become_400() {
        let e = ApiError::from(axum::Json::<i32>::from_bytes(b"nope").unwrap_err());
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.code, "invalid_json");

        // Valid JSON of the wrong shape is a 422 in axum; the API says 400.
        let e = ApiError::from(axum::Json::<i32>::from_bytes(b"\"x\"").unwrap_err());
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.code, "bad_request");
    }
}

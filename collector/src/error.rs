//! The one API error type at the HTTP boundary: a stable `code` and a message naming what was
//! wrong, answered as `{"code": "...", "message": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401 `unauthorized`: a missing or unknown write key or admin token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `origin_not_allowed`: a browser origin the source does not allow.
    #[error("{0}")]
    OriginNotAllowed(String),
    /// 400 with a specific code (`invalid_json`, `invalid_batch`, `invalid_gzip`,
    /// `invalid_cursor`, `invalid_identifier`, …).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 413 `payload_too_large`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415 `unsupported_encoding`.
    #[error("{0}")]
    UnsupportedEncoding(String),
    /// 503 `unavailable`: the store cannot take writes now; clients retry. Cause is logged.
    #[error("{0}")]
    Unavailable(String),
    /// 503 `overloaded` with `Retry-After`: the writer queue or the index lag is past its
    /// bound; the message says which. Nothing of the request was stored.
    #[error("{0}")]
    Overloaded(String),
    /// 500 `internal`: the cause is logged, the body stays generic.
    #[error("{0}")]
    Internal(String),
}

/// What a 503 asks clients to wait: long enough for the writer and indexer to drain a burst.
pub const RETRY_AFTER_SECS: u64 = 1;

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::OriginNotAllowed(_) => "origin_not_allowed",
            ApiError::BadRequest { code, .. } => code,
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedEncoding(_) => "unsupported_encoding",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Overloaded(_) => "overloaded",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) | ApiError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::InvalidCursor(c) => ApiError::bad_request(
                "invalid_cursor",
                format!("cursor `{c}` is not one this server returned"),
            ),
            crate::store::StoreError::Overloaded(why) => ApiError::Overloaded(why),
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(cause = %cause, "Internal error.");
                "internal error; the cause is in the server log".to_string()
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "Store unavailable.");
                "storage is unavailable; retry later".to_string()
            }
            ApiError::Overloaded(why) => {
                format!("the collector is overloaded ({why}); retry after {RETRY_AFTER_SECS} s")
            }
            other => other.to_string(),
        };
        let body = serde_json::json!({"code": self.code(), "message": message});
        let mut response = (self.status(), Json(body)).into_response();
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

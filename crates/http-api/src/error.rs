//! The one error type of the HTTP API and its single mapping to HTTP.
//!
//! Every error response, whether a handler returned an [`ApiError`] or a layer refused the request
//! (timeout, body too large, unknown route), leaves Warden in one JSON shape:
//!
//! ```json
//! {"error": {"code": "not_found", "message": "no such resource", "request_id": "0191…"}}
//! ```
//!
//! `code` is stable and meant for programs; `message` is for people and never carries internal
//! details, which go to the log under the same request id.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use store::StoreError;

/// An error a handler returns; it becomes the response described in the module docs.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such resource")]
    NotFound,
    #[error("this method is not allowed here")]
    MethodNotAllowed,
    #[error("{0}")]
    BadRequest(String),
    #[error("a valid Bearer access token is required")]
    Unauthorized,
    #[error("the token does not allow this")]
    Forbidden,
    /// Refused for a reason the caller should read (a revoked certificate, say).
    #[error("{0}")]
    Denied(String),
    /// The request is well-formed but the resource's state does not allow it now.
    #[error("{0}")]
    Conflict(String),
    /// A conditional write (`If-Match`) whose condition no longer holds.
    #[error("{0}")]
    PreconditionFailed(String),
    /// A write that must be conditional came without its condition.
    #[error("{0}")]
    PreconditionRequired(String),
    #[error("the request body is too large")]
    PayloadTooLarge,
    #[error("too many failed attempts; try again in {} s", .retry_after.as_secs().max(1))]
    TooManyAttempts { retry_after: std::time::Duration },
    #[error("{what} is not available right now; try again shortly")]
    Unavailable { what: &'static str },
    #[error("something went wrong on our side; the request id identifies it in the log")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The error's code and message, carried on the response until the telemetry layer, which knows
/// the request id, writes the body.
#[derive(Clone, Debug)]
pub(crate) struct ErrorBody {
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden | ApiError::Denied(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PreconditionFailed(_) => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
            ApiError::PreconditionRequired(_) => {
                (StatusCode::PRECONDITION_REQUIRED, "precondition_required")
            }
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::TooManyAttempts { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts")
            }
            ApiError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(source) => tracing::error!(error = %source, "request failed"),
            ApiError::Unavailable { what } => tracing::warn!(what, "dependency unavailable"),
            _ => {}
        }
        let (status, code) = self.status_and_code();
        let mut response = status.into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"warden\""),
            );
        }
        if let ApiError::TooManyAttempts { retry_after } = &self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after.as_secs().max(1)),
            );
        }
        response.extensions_mut().insert(ErrorBody {
            code,
            message: self.to_string(),
        });
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            tracing::warn!(%error, "database unavailable");
            ApiError::Unavailable {
                what: "the database",
            }
        } else {
            ApiError::Internal(Box::new(error))
        }
    }
}

/// For responses that carry an error status but were made by a layer rather than a handler.
pub(crate) fn body_for_status(status: StatusCode) -> ErrorBody {
    let (code, message) = match status {
        StatusCode::BAD_REQUEST => ("bad_request", "the request is malformed"),
        StatusCode::UNAUTHORIZED => ("unauthorized", "a valid Bearer access token is required"),
        StatusCode::FORBIDDEN => ("forbidden", "the token does not allow this"),
        StatusCode::NOT_FOUND => ("not_found", "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this method is not allowed here"),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took too long"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::SERVICE_UNAVAILABLE => {
            ("unavailable", "the service is unavailable; retry later")
        }
        status if status.is_client_error() => ("bad_request", "the request was refused"),
        _ => ("internal", "something went wrong on our side"),
    };
    ErrorBody {
        code,
        message: message.to_owned(),
    }
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

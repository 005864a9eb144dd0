//! [`ApiError`]: every way a request can fail, and the one place they become HTTP
//! responses.
//!
//! Handlers return `Result<_, ApiError>`. [`ApiError::into_response`] sets the status
//! and a complete JSON body, and attaches an `ErrorReport` extension; the boundary
//! middleware (`api::boundary`) then fills in the request id and logs the
//! failure, once. Client-facing messages never carry internals (SQL, driver text); those
//! only reach the log.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::ValidationError;
use crate::store::StoreError;

/// A failed request, as the client will see it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (body, query, headers); `code` says which part.
    #[error("bad request ({code}): {message}")]
    BadRequest {
        /// Machine-readable code, e.g. `invalid_json`, `invalid_query`.
        code: &'static str,
        /// Human-readable detail, safe to show.
        message: String,
    },
    /// 400 `validation_failed`: well-formed, but a field breaks a rule.
    #[error("validation failed: {0}")]
    Validation(#[from] ValidationError),
    /// 401 `unauthenticated`: no valid token (or trusted gateway identity) came with the
    /// request.
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    /// 403 `forbidden`: the caller may see the resource but not do this to it.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404 `not_found`: no such resource (or route); the message names what.
    #[error("not found: {0}")]
    NotFound(String),
    /// 405 `method_not_allowed`.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409 `conflict`: the write clashes with existing data.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 412 `precondition_failed`: `If-Match` named a revision that is no longer current.
    #[error("precondition failed")]
    PreconditionFailed,
    /// 428 `precondition_required`: a write that needs `If-Match` came without it.
    #[error("precondition required")]
    PreconditionRequired,
    /// 413 `payload_too_large`.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 416 `range_not_satisfiable`: a `Range` that selects none of the content.
    #[error("range not satisfiable")]
    RangeNotSatisfiable,
    /// 503 `database_unavailable`: the database cannot be reached; retry later.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// 500 `internal`: a bug or an unexpected failure. Details are logged, not sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// A 404 `not_found` naming the kind of resource, never the id asked for.
    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    /// A 400 with the given code and message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } | ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ApiError::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Validation(_) => "validation_failed",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::PreconditionFailed => "precondition_failed",
            ApiError::PreconditionRequired => "precondition_required",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::RangeNotSatisfiable => "range_not_satisfiable",
            ApiError::Unavailable(_) => "database_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The client-facing `error.message`.
    fn public_message(&self) -> String {
        match self {
            ApiError::BadRequest { message, .. }
            | ApiError::NotFound(message)
            | ApiError::Forbidden(message)
            | ApiError::Conflict(message) => message.clone(),
            ApiError::Unauthenticated(message) => (*message).to_owned(),
            ApiError::PreconditionFailed => {
                "the resource changed since you read it (If-Match does not match its ETag)"
                    .to_owned()
            }
            ApiError::PreconditionRequired => {
                "send If-Match with the ETag you read (or * to overwrite whatever is current)"
                    .to_owned()
            }
            ApiError::Validation(error) => error.to_string(),
            ApiError::MethodNotAllowed => "method not allowed on this resource".to_owned(),
            ApiError::PayloadTooLarge => "request body too large".to_owned(),
            ApiError::RangeNotSatisfiable => {
                "the range selects none of the content (see Content-Range)".to_owned()
            }
            ApiError::Unavailable(_) => "the database is unavailable; retry later".to_owned(),
            ApiError::Internal(_) => "internal server error".to_owned(),
        }
    }

    /// The internal cause worth logging, if any (never sent to the client).
    fn internal_detail(&self) -> Option<String> {
        match self {
            ApiError::Unavailable(source) | ApiError::Internal(source) => {
                Some(error_chain(source.as_ref()))
            }
            _ => None,
        }
    }

    /// The error a bare framework response (no [`ErrorReport`]) stands for.
    pub(crate) fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => ApiError::NotFound("no such resource".to_owned()),
            StatusCode::UNAUTHORIZED => ApiError::Unauthenticated("authentication required"),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable("service unavailable".into()),
            s if s.is_client_error() => ApiError::bad_request("bad_request", "bad request"),
            s => ApiError::Internal(format!("unexpected bare {s} response").into()),
        }
    }
}

impl From<StoreError> for ApiError {
    /// A generic message for `Conflict` (the driver's text names tables); handlers that
    /// know which field clashed map it themselves first.
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(_) => {
                ApiError::Conflict("the request conflicts with an existing resource".to_owned())
            }
            StoreError::Unavailable(source) => ApiError::Unavailable(Box::new(source)),
            StoreError::Internal(source) => ApiError::Internal(source),
        }
    }
}

/// What the boundary middleware needs to finish and log an error response.
#[derive(Debug, Clone)]
pub(crate) struct ErrorReport {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Internal cause (5xx only), for the log.
    pub detail: Option<String>,
}

impl ErrorReport {
    /// The JSON body: `{"error":{"code","message","request_id"}}`.
    pub fn render(&self, request_id: Option<&str>) -> Response {
        let body = ErrorBody {
            error: ErrorFields {
                code: self.code,
                message: &self.message,
                request_id,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(self.clone());
        response
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorFields<'a>,
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    code: &'a str,
    message: &'a str,
    request_id: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let report = ErrorReport {
            status: self.status(),
            code: self.code(),
            message: self.public_message(),
            detail: self.internal_detail(),
        };
        // Complete without the middleware too; the middleware re-renders with the id.
        report.render(None)
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

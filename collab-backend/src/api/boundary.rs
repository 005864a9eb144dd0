//! The error boundary: the one middleware where failed requests get their final JSON
//! body (with the caller's request id) and are logged, once.
//!
//! Responses built from [`ApiError`] carry an [`ErrorReport`]; anything else with an
//! error status (a framework default such as a bare 405) is converted here too, so no
//! plain-text error ever leaves the app.

use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorReport};

/// The header the gateway sets on every request it forwards.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest request id echoed back; longer (or non-ASCII) ids are reported as null.
const REQUEST_ID_MAX_LEN: usize = 256;

/// Finishes error responses: request id in the body, one log line per failure.
pub(crate) async fn error_boundary(request: Request, next: Next) -> Response {
    let request_id = request_id(request.headers());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let report = match response.extensions().get::<ErrorReport>() {
        Some(report) => report.clone(),
        None if status.is_client_error() || status.is_server_error() => {
            let mut bare = ApiError::from_status(status).into_response();
            match bare.extensions_mut().remove::<ErrorReport>() {
                Some(report) => report,
                None => return response,
            }
        }
        None => return response,
    };
    log(&report, request_id.as_deref(), &method, &path);
    let mut rendered = report.render(request_id.as_deref());
    rendered.extensions_mut().remove::<ErrorReport>();
    // Keep what the inner response said beyond its body (e.g. `Allow` on a 405).
    let (parts, _) = response.into_parts();
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            rendered.headers_mut().append(name, value.clone());
        }
    }
    rendered
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(REQUEST_ID_HEADER)?.to_str().ok()?;
    (!value.is_empty() && value.len() <= REQUEST_ID_MAX_LEN).then(|| value.to_owned())
}

fn log(report: &ErrorReport, request_id: Option<&str>, method: &Method, path: &str) {
    let detail = report.detail.as_deref().unwrap_or("");
    let code = report.code;
    let status = report.status.as_u16();
    if report.status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(request_id, %method, path, status, code, error = detail, "request failed");
    } else if report.status.is_server_error() {
        tracing::error!(request_id, %method, path, status, code, error = detail, "request failed");
    } else {
        tracing::debug!(request_id, %method, path, status, code, "request rejected");
    }
}

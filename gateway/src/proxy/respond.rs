//! The proxy's own responses: JSON errors `{"error":{"code","message","request_id"}}`
//! and filter local replies, written so the connection stays reusable.

use std::time::Duration;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// A gateway-made error response.
#[derive(Debug, Clone, Copy)]
pub struct ErrorReply {
    pub status: u16,
    pub code: &'static str,
    pub message: &'static str,
}

pub const ROUTE_NOT_FOUND: ErrorReply = ErrorReply {
    status: 404,
    code: "route_not_found",
    message: "no route matches this request",
};
pub const BAD_GATEWAY: ErrorReply = ErrorReply {
    status: 502,
    code: "bad_gateway",
    message: "the upstream could not be reached or answered invalidly",
};
pub const GATEWAY_TIMEOUT: ErrorReply = ErrorReply {
    status: 504,
    code: "gateway_timeout",
    message: "the upstream did not answer in time",
};
pub const NO_UPSTREAM: ErrorReply = ErrorReply {
    status: 503,
    code: "no_upstream",
    message: "the route's upstream has no target available",
};
pub const PLUGIN_FAILED: ErrorReply = ErrorReply {
    status: 500,
    code: "plugin_error",
    message: "a plugin on this route failed",
};
pub const PAYLOAD_TOO_LARGE: ErrorReply = ErrorReply {
    status: 413,
    code: "payload_too_large",
    message: "the request body exceeds what this route's plugins may buffer",
};
pub const HEADERS_TOO_LARGE: ErrorReply = ErrorReply {
    status: 431,
    code: "request_header_fields_too_large",
    message: "the request has more header fields, or more header bytes, than allowed",
};
pub const BODY_TOO_LARGE: ErrorReply = ErrorReply {
    status: 413,
    code: "payload_too_large",
    message: "the request body exceeds the allowed size",
};
pub const REQUEST_TIMEOUT: ErrorReply = ErrorReply {
    status: 408,
    code: "request_timeout",
    message: "the client stopped sending its request",
};
pub const BAD_REQUEST: ErrorReply = ErrorReply {
    status: 400,
    code: "bad_request",
    message: "the request could not be parsed",
};
pub const HOST_REQUIRED: ErrorReply = ErrorReply {
    status: 400,
    code: "bad_request",
    message: "a request may carry one Host header, and an HTTP/1.1 request needs one",
};
pub const INTERNAL: ErrorReply = ErrorReply {
    status: 500,
    code: "internal_error",
    message: "the gateway failed to handle this request",
};

/// The JSON body for `reply`.
pub fn error_body(reply: &ErrorReply, request_id: &str) -> Bytes {
    let body = serde_json::json!({
        "error": {
            "code": reply.code,
            "message": reply.message,
            "request_id": if request_id.is_empty() { serde_json::Value::Null } else { request_id.into() },
        }
    });
    Bytes::from(body.to_string())
}

/// The header of a gateway-made response with a body of `len` bytes.
pub fn header(
    status: u16,
    content_type: Option<&str>,
    len: usize,
    request_id: &str,
) -> pingora::Result<ResponseHeader> {
    let mut h = ResponseHeader::build(status, Some(4))?;
    if let Some(ct) = content_type {
        h.insert_header(http::header::CONTENT_TYPE, ct)?;
    }
    h.insert_header(http::header::CONTENT_LENGTH, len)?;
    if !request_id.is_empty() {
        h.insert_header("x-request-id", request_id)?;
    }
    Ok(h)
}

/// Writes a JSON error for `reply` to the client.
pub async fn send_error(
    session: &mut Session,
    reply: &ErrorReply,
    request_id: &str,
) -> pingora::Result<()> {
    let body = error_body(reply, request_id);
    let h = header(
        reply.status,
        Some("application/json"),
        body.len(),
        request_id,
    )?;
    write(session, h, body).await
}

/// Longest an HTTP/2 request body still arriving is read (and dropped) after the
/// gateway answered early, so that the answer is on the wire before the stream is reset.
const H2_LINGER: Duration = Duration::from_secs(1);

/// Most of an HTTP/1 request body, by its declared length, that may still be unread when
/// the gateway answers and that it then reads and drops to keep the connection.
const H1_DRAIN_LIMIT: u64 = 1 << 20;

/// Longest that reading may take; past it the connection is closed.
const H1_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes a complete response; the connection stays open for the next request.
///
/// On HTTP/1, an answer given before the request body was read (a 413 for its declared
/// length, a 404, a filter's 401) keeps the connection only when the rest of the body can
/// be read and dropped after it: a `content-length` of at most [`H1_DRAIN_LIMIT`], read
/// within [`H1_DRAIN_TIMEOUT`], and no `Expect: 100-continue` (that client need not send
/// its body after a final answer, and its next request would be read as that body).
/// Otherwise Pingora says `Connection: close` and closes it.
///
/// On HTTP/2, an answer given before the request body has ended (a 413, a filter's 401)
/// is followed by reading what the client still sends, until its end or a reset or for
/// [`H2_LINGER`]: the stream is reset once the request is dropped unfinished, and a reset
/// discards the response frames still queued, so the client would see a stream error
/// instead of the answer.
pub async fn write(
    session: &mut Session,
    header: ResponseHeader,
    body: Bytes,
) -> pingora::Result<()> {
    if !session.is_http2() && drainable(session) {
        let downstream = session.as_mut();
        downstream.set_close_on_response_before_downstream_finish(false);
        downstream.set_total_drain_timeout(Some(H1_DRAIN_TIMEOUT));
    }
    let head_only = session.req_header().method == http::Method::HEAD || body.is_empty();
    session
        .write_response_header(Box::new(header), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    if session.is_http2() && !session.is_body_done() {
        let linger = async { while let Ok(Some(_)) = session.read_request_body().await {} };
        let _ = tokio::time::timeout(H2_LINGER, linger).await;
    }
    Ok(())
}

/// Whether what is left of the request body may be read after an answer (see [`write`]).
fn drainable(session: &mut Session) -> bool {
    if session.is_body_done() {
        return true;
    }
    let req = session.req_header();
    let declared = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    declared.is_some_and(|len| len <= H1_DRAIN_LIMIT)
        && !req.headers.contains_key(http::header::TRANSFER_ENCODING)
        && !req.headers.contains_key(http::header::EXPECT)
}

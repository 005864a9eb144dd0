//! Per-request state carried across the proxy phases.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::snapshot::Snapshot;
use crate::upstream::{InFlight, TargetHealth};
use crate::wasm::{HttpFilters, RequestInfo};

/// Created by `new_ctx` for every request; dropped after the log phase.
pub struct RequestCtx {
    pub started: Instant,
    /// The snapshot this request was routed with; kept until it finishes.
    pub snapshot: Option<Arc<Snapshot>>,
    /// Index into `snapshot.routes`, once routed.
    pub route: Option<usize>,
    /// Index into `snapshot.upstreams` when a filter sent the request elsewhere than the
    /// route's upstream (`aistack.upstream`); see `proxy::upstream`.
    pub upstream: Option<usize>,
    /// What filters see through properties; holds the request id.
    pub info: RequestInfo,
    pub filters: HttpFilters,
    pub upstream_addr: Option<SocketAddr>,
    /// Targets tried so far (a retry goes elsewhere when it can).
    pub tried: Vec<SocketAddr>,
    /// The current try's target as configured (`host:port`).
    pub target_name: Option<Arc<str>>,
    /// Health of the target of the current try.
    pub target: Option<Arc<TargetHealth>>,
    /// Counts this request against the target while it is in flight.
    pub in_flight: Option<InFlight>,
    /// Retries taken so far.
    pub retries: u32,
    /// The upstream's response header arrived (no retry after this).
    pub response_started: bool,
    /// A filter replaced the upstream's response: the body to send instead.
    pub replacement_body: Option<Bytes>,
    /// The request body as the filters left it (read whole in `request_filter`), sent
    /// upstream in its place by `request_body_filter`.
    pub request_body: Option<Bytes>,
    /// Set when the gateway answered by itself (for the access log).
    pub local_reply: Option<&'static str>,
    /// The response keeps the upstream's `content-length` through the filters: bytes
    /// that entered and left the response-body callbacks so far, which must agree at
    /// the end (a filter that changes the length must remove `content-length` in
    /// `on_http_response_headers`, as in Envoy).
    pub response_length_kept: Option<(u64, u64)>,
    /// The request body streams through the filters (`request_body_filter`); with the
    /// client's `content-length` kept, the bytes in and out so far (they must agree).
    pub request_streaming: Option<Option<(u64, u64)>>,
    /// A filter answered while the request body streamed: sent by `fail_to_proxy`.
    pub pending_local: Option<crate::wasm::LocalResponse>,
    /// A filter faulted while the request body streamed: the error `fail_to_proxy` sends.
    pub pending_error: Option<super::respond::ErrorReply>,
    /// A filter closed the stream: the connection is dropped without a response.
    pub reset: bool,
    /// The client's request came with a `content-length` (before any filter ran).
    pub request_had_length: bool,
    /// Request body bytes seen so far (for `server.max_request_body`).
    pub request_body_seen: u64,
}

impl RequestCtx {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            snapshot: None,
            route: None,
            upstream: None,
            info: RequestInfo::default(),
            filters: HttpFilters::new(&[]),
            upstream_addr: None,
            tried: Vec::new(),
            target_name: None,
            target: None,
            in_flight: None,
            retries: 0,
            response_started: false,
            replacement_body: None,
            request_body: None,
            local_reply: None,
            response_length_kept: None,
            request_streaming: None,
            pending_local: None,
            pending_error: None,
            reset: false,
            request_had_length: false,
            request_body_seen: 0,
        }
    }

    /// The route's name for metrics and logs (`none` before routing).
    pub fn route_label(&self) -> &str {
        match (&self.snapshot, self.route) {
            (Some(s), Some(i)) => &s.routes[i].name,
            _ => crate::observability::metrics::NO_ROUTE,
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}

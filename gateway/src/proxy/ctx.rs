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
}

impl RequestCtx {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            snapshot: None,
            route: None,
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

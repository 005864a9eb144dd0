//! The data the proxy hands to the filter chain and gets back: [`RequestInfo`] in,
//! [`Decision`] out.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

/// Per-request facts the Proxy-Wasm properties are answered from (`request.id`,
/// `source.address`, `route_name`, ...). Owned by the proxy's per-request context and
/// passed by reference to every [`HttpFilters`](super::HttpFilters) call; cheap to build.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The request id the core accepted or assigned (`request.id`).
    pub request_id: String,
    /// The matched route's name (`route_name`, `xds.route_name`).
    pub route_name: Arc<str>,
    /// The route's upstream (`cluster_name`, `xds.cluster_name`): the one the route names,
    /// whatever a filter later chooses through `aistack.upstream`. `None` before routing.
    pub upstream_name: Option<Arc<str>>,
    /// The downstream peer (`source.address`, `source.port`).
    pub client_addr: Option<SocketAddr>,
    /// The client behind trusted proxies (`aistack.client_ip`): the peer's address, or
    /// the `X-Forwarded-For` client when the peer is a trusted proxy (see
    /// `proxy::headers::client_ip`). `None`: the peer's address.
    pub client_ip: Option<IpAddr>,
    /// The local address the request arrived on (`destination.address`, `destination.port`).
    pub server_addr: Option<SocketAddr>,
    /// When the request's first byte arrived (`request.time`).
    pub start: SystemTime,
    /// `http` or `https` (`request.scheme`, the `:scheme` pseudo-header).
    pub scheme: &'static str,
    /// `HTTP/1.0`, `HTTP/1.1`, `HTTP/2` (`request.protocol`).
    pub protocol: &'static str,
    /// The response status once known (`response.code` outside the response phase).
    pub response_code: Option<u16>,
    /// The request body's size once known: its `content-length`, or the length of the
    /// body the gateway buffered (`request.size`).
    pub request_size: Option<u64>,
    /// Why the response is what it is (`response.code_details`): `via_upstream`,
    /// `wasm_local_reply` (a filter answered), or the gateway's error code
    /// (`route_not_found`, `bad_gateway`, …); empty until known.
    pub code_details: &'static str,
}

impl RequestInfo {
    /// Info for a plain-HTTP/1.1 request that starts now; set the other fields as known.
    pub fn new(request_id: impl Into<String>, route_name: Arc<str>) -> Self {
        RequestInfo {
            request_id: request_id.into(),
            route_name,
            upstream_name: None,
            client_addr: None,
            client_ip: None,
            server_addr: None,
            start: SystemTime::now(),
            scheme: "http",
            protocol: "HTTP/1.1",
            response_code: None,
            request_size: None,
            code_details: "",
        }
    }
}

impl Default for RequestInfo {
    /// An empty id and route name, starting now (fill the fields as the request is read).
    fn default() -> Self {
        RequestInfo::new(String::new(), Arc::from(""))
    }
}

/// What the proxy does after a filter-chain phase. The Proxy-Wasm `Action` and the
/// deferred host calls of the guest call are mapped onto it in one place
/// (`outcome::decide`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on with the next filter, then the next phase.
    Continue,
    /// A filter returned `Action::Pause`: it waits for an event (an HTTP callout, for
    /// example) before the stream may go on. The chain stopped at that filter.
    Pause,
    /// A filter answered locally (`send_http_response`), or closed the stream: send this
    /// response instead of (or in place of) the upstream's. The chain stopped there.
    Respond(LocalResponse),
}

/// A response produced by a filter (`proxy_send_local_response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    /// The status code (an out-of-range code from the guest becomes 500).
    pub status: u16,
    /// Extra response headers, lower-cased names, in the order the filter gave them.
    pub headers: Vec<(String, String)>,
    /// The response body (may be empty).
    pub body: Bytes,
    /// Why (Envoy's "response code details"): the filter's text, or `wasm_close_stream`.
    pub details: String,
}

/// The upstream a filter chose for the request (`proxy_set_property(aistack.upstream)`),
/// kept in the request header's extensions (never sent) until the proxy picks a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamChoice(pub Arc<str>);

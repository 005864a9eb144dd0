//! The Pingora `ProxyHttp` implementation: the request flow of the gateway.
//!
//! ```text
//! client ─▶ request_filter: request id → identity headers stripped → path
//!           normalized → route (404 JSON) → filters' on_request_headers
//!           (a filter may answer: 401/429/…)
//!        ─▶ proxy_upstream_filter: the upstream a filter chose (`aistack.upstream`)
//!           replaces the route's; 503 JSON when it has no available target
//!        ─▶ upstream_peer: the upstream's balancer picks an available target
//!           (503 JSON when none is); connect/proxy errors retried per route
//!        ─▶ response_filter: filters' on_response_headers
//!        ─▶ response_body_filter: a filter's replacement body, if any
//!        ─▶ logging: metrics, access log, filters' on_log
//! failures on the way (connect, timeout) ─▶ fail_to_proxy: JSON 502/504
//! ```

mod ctx;
mod filters;
mod headers;
pub mod request_id;
pub mod respond;
mod upstream;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{ErrorSource, ErrorType};

pub use ctx::RequestCtx;
use respond::ErrorReply;

use crate::observability::Metrics;
use crate::observability::metrics::method_label;
use crate::router::normalize_path;
use crate::snapshot::SnapshotHandle;
use crate::wasm::{LocalResponse, PluginFault};

/// The gateway's proxy logic; one per process, shared by all worker threads.
pub struct Gateway {
    pub snapshots: SnapshotHandle,
    pub metrics: Metrics,
    pub access_log: bool,
    /// Set once the process is on its way out (its sockets handed to a successor, or
    /// SIGTERM): HTTP/1 responses then say `Connection: close`, so clients move to new
    /// connections (served by the successor) instead of reusing one this process will
    /// close when it stops: Pingora only does so for requests read after it stopped
    /// accepting, and closes the connections kept alive then.
    pub draining: Arc<AtomicBool>,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    /// No built-in downstream modules (Pingora adds a disabled compressor by
    /// default; it would cost a little on every request).
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    /// Assigns the request id, routes, and runs the request side of the filter
    /// chain. `Ok(true)` means a response was already sent.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // Taken in `early_request_filter`: one snapshot for the whole request.
        let snapshot = match ctx.snapshot.take() {
            Some(snapshot) => snapshot,
            None => self.snapshots.load(),
        };
        ctx.info.request_id =
            request_id::accept_or_generate(session.req_header().headers.get("x-request-id"));
        ctx.info.start = std::time::SystemTime::now();
        ctx.info.client_addr = session.client_addr().and_then(|a| a.as_inet().copied());
        ctx.info.client_ip = headers::client_ip(
            ctx.info.client_addr.map(|a| a.ip()),
            session.req_header(),
            &snapshot.config.server.trusted_proxies,
        );
        ctx.info.server_addr = session.server_addr().and_then(|a| a.as_inet().copied());
        ctx.info.protocol = if session.is_http2() {
            "HTTP/2"
        } else if session.req_header().version == http::Version::HTTP_10 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };
        ctx.info.request_size = if session.is_body_empty() {
            Some(0)
        } else {
            session
                .req_header()
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
        };
        if let Some(reply) = over_limits(session.req_header(), &snapshot.config.server) {
            ctx.snapshot = Some(snapshot);
            return self.reply_error(session, ctx, &reply).await;
        }
        strip_identity_headers(session.req_header_mut());

        let req = session.req_header();
        let host = request_host(req);
        let path = normalize_path(req.uri.path());
        let Some(route_idx) = snapshot.router.find(host, &path, &req.method) else {
            ctx.snapshot = Some(snapshot);
            return self
                .reply_error(session, ctx, &respond::ROUTE_NOT_FOUND)
                .await;
        };
        let route = &snapshot.routes[route_idx];
        let rewrite = rewrite_path(
            &path,
            req.uri.path(),
            route.strip_prefix.then_some(route.prefix.as_str()),
        );
        if let Some(new_path) = rewrite {
            set_path(session.req_header_mut(), &new_path)?;
        }
        ctx.info.route_name = Arc::clone(&route.name);
        ctx.info.upstream_name = Some(Arc::clone(&snapshot.upstreams[route.upstream].name));
        ctx.filters = crate::wasm::HttpFilters::new(&route.filters);
        ctx.route = Some(route_idx);
        ctx.snapshot = Some(Arc::clone(&snapshot));
        self.request_filters(session, ctx).await
    }

    /// Hop-by-hop headers and those the client names in `Connection` go
    /// before anything else sees the request (see `proxy::headers`).
    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        headers::strip_hop_by_hop(session.req_header_mut());
        let snapshot = ctx.snapshot.insert(self.snapshots.load());
        let server = &snapshot.config.server;
        // Only where the connection is to be kept at all (not after `Connection: close`
        // or an HTTP/1.0 request without keep-alive).
        if self.draining.load(Ordering::Relaxed) {
            session.set_keepalive(None);
        } else if session.as_ref().get_keepalive().is_some() {
            session.set_keepalive(Some(server.keepalive_timeout.as_secs()));
        }
        session
            .as_mut()
            .set_read_timeout(Some(server.client_body_timeout));
        Ok(())
    }

    /// Forwarding headers, `Host` per route, no `Connection` upstream.
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some((snapshot, _)) = upstream::route_of(ctx) else {
            return Ok(());
        };
        let Some(spec) = ctx.route.and_then(|i| snapshot.config.routes.get(i)) else {
            return Ok(());
        };
        let forwarding = headers::Forwarding {
            client: ctx.info.client_addr,
            trusted: &snapshot.config.server.trusted_proxies,
            upstream_host: &spec.upstream_host,
            target: ctx.target_name.as_deref(),
        };
        headers::prepare_upstream(upstream_request, &forwarding)?;
        // A filter removed the length of a body that streams: frame it chunked.
        let framed = [
            http::header::CONTENT_LENGTH,
            http::header::TRANSFER_ENCODING,
        ]
        .iter()
        .any(|h| upstream_request.headers.contains_key(h));
        // (HTTP/1 upstreams only: HTTP/2 frames bodies itself and forbids the header.)
        let h1_upstream = upstream::upstream_of(ctx).is_some_and(|u| !u.spec.http2);
        let removed = ctx.request_had_length && ctx.request_streaming == Some(None);
        if removed && h1_upstream && !framed {
            upstream_request.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        Ok(())
    }

    /// No available target (all unhealthy or ejected): a JSON 503 written
    /// here keeps the client's connection, which a failure in
    /// `upstream_peer` would not.
    async fn proxy_upstream_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        if let Err(name) = upstream::apply_choice(session, ctx) {
            tracing::error!(upstream = %name, "a filter chose an upstream the snapshot lacks");
            self.reply_error(session, ctx, &respond::NO_UPSTREAM)
                .await?;
            return Ok(false);
        }
        if upstream::upstream_available(ctx) {
            return Ok(true);
        }
        self.reply_error(session, ctx, &respond::NO_UPSTREAM)
            .await?;
        Ok(false)
    }

    /// A target of the route's upstream chosen by its balancer among the
    /// available ones (503 when none is), with the upstream's timeouts capped
    /// by the route's deadline. Called again for each retry.
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        upstream::choose_peer(session, ctx)
    }

    /// Connecting failed: counts against the target; retried per the route.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        upstream::on_connect_failure(ctx, e)
    }

    /// Failed after connecting: retried only when safe (see `proxy::upstream`).
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let e = e.more_context(format!("Peer: {peer}"));
        upstream::on_proxy_error(session, ctx, e, client_reused)
    }

    /// The upstream answered: the target is alive (passive health).
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        upstream::on_response(ctx);
        Ok(())
    }

    /// Enforces the route's whole-request deadline while the body streams.
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        upstream::check_deadline(ctx)?;
        Ok(None)
    }

    /// Runs the response side of the filter chain. A local response here
    /// replaces the upstream's status, headers and body.
    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // A request read before the process began draining.
        if self.draining.load(Ordering::Relaxed) {
            session.set_keepalive(None);
        }
        let head = session.req_header().method == http::Method::HEAD;
        self.response_filters(resp, ctx, head).await
    }

    /// Swaps in a replacement body chosen in `response_filter`, else runs the
    /// filters' response-body callbacks.
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if ctx.replacement_body.is_some() {
            *body = if end_of_stream {
                ctx.replacement_body.take()
            } else {
                None
            };
            return Ok(None);
        }
        self.response_body_filters(body, end_of_stream, ctx)?;
        Ok(None)
    }

    /// Response trailers (HTTP/2, e.g. gRPC's `grpc-status`) through the filters'
    /// `proxy_on_response_trailers`.
    async fn response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Bytes>> {
        if !ctx.filters.is_empty() {
            self.response_trailer_filters(trailers, ctx)?;
        }
        Ok(None)
    }

    /// Sends the request body as the filters left it (see `request_filters`).
    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let limit = ctx
            .snapshot
            .as_ref()
            .and_then(|s| s.config.server.max_request_body);
        if let (Some(max), Some(chunk)) = (limit, body.as_ref()) {
            ctx.request_body_seen += chunk.len() as u64;
            if ctx.request_body_seen > max {
                ctx.pending_error = Some(respond::BODY_TOO_LARGE);
                // The client's doing: not logged as an internal failure.
                let e = Error::explain(
                    ErrorType::InternalError,
                    "the request body exceeds server.max_request_body",
                );
                return Err(e.into_down());
            }
        }
        if ctx.request_streaming.is_some() {
            return self
                .request_body_chunk(session, body, end_of_stream, ctx)
                .await;
        }
        if ctx.request_body.is_some() {
            *body = if end_of_stream {
                ctx.request_body.take()
            } else {
                None
            };
        }
        Ok(())
    }

    /// Turns proxy failures into JSON errors (502, 503, 504) that keep the
    /// client's connection open when its request was fully read.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        if ctx.reset {
            ctx.in_flight = None;
            session.set_keepalive(None);
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        if let Some(local) = ctx.pending_local.take() {
            // A filter answered while the request body streamed: the upstream request is
            // abandoned, the client gets the answer, and the connection closes (the rest
            // of its body is unread).
            ctx.local_reply = Some("plugin");
            ctx.in_flight = None;
            session.set_keepalive(None);
            let status = local.status;
            let written = self.reply_local(session, ctx, local).await.is_ok();
            return FailToProxy {
                error_code: if written { status } else { 0 },
                can_reuse_downstream: false,
            };
        }
        if response_begun(session) {
            // The upstream's head (or a 101) is out and its body was streaming: an error
            // written now would be spliced into that body, and a chunked one would even
            // end it as if complete. Closing the connection is what tells the client the
            // response was cut short.
            ctx.in_flight = None;
            session.set_keepalive(None);
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let reply = ctx.pending_error.take().or_else(|| classify(e));
        let Some(reply) = reply else {
            // The client went away: nothing to write.
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        ctx.local_reply = Some(reply.code);
        ctx.in_flight = None;
        // Pingora drops the client connection after a failure past peer
        // selection whatever we return: say so (`Connection: close`) rather
        // than let the client reuse a connection that is about to close.
        let reusable = ctx.upstream_addr.is_none() && session.is_body_done();
        if !reusable {
            session.set_keepalive(None);
        }
        let written = respond::send_error(session, &reply, &ctx.info.request_id)
            .await
            .is_ok();
        FailToProxy {
            error_code: reply.status,
            can_reuse_downstream: written && reusable,
        }
    }

    /// Metrics, the access log line and the filters' `on_log`.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or_else(|| e.and_then(classify).map_or(0, |r| r.status));
        let route = ctx.route_label().to_owned();
        let method = method_label(&session.req_header().method);
        let code = http::StatusCode::from_u16(status).ok();
        let status_label = code.as_ref().map_or("0", |s| s.as_str());
        self.metrics
            .requests
            .with_label_values(&[route.as_str(), method, status_label])
            .inc();
        let elapsed = ctx.started.elapsed();
        self.metrics
            .request_duration
            .with_label_values(&[route.as_str()])
            .observe(elapsed.as_secs_f64());
        if !ctx.filters.is_empty() {
            ctx.info.response_code = Some(status);
            ctx.info.code_details = code_details(ctx.local_reply);
            ctx.filters.on_log(&ctx.info);
        }
        if self.access_log {
            let upstream = ctx.upstream_addr.map(|a| a.to_string()).unwrap_or_default();
            // The request header as the filter chain left it: the `traceparent` the
            // upstream got (or would have got), whichever filter set it.
            let trace_id = session
                .req_header()
                .headers
                .get("traceparent")
                .and_then(|v| crate::observability::logging::trace_id(v.as_bytes()))
                .unwrap_or_default();
            tracing::info!(
                target: "aistack::access",
                request_id = %ctx.info.request_id,
                trace_id = %trace_id,
                route = %route,
                method = %session.req_header().method,
                status,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                upstream = %upstream,
                client = %ctx.info.client_addr.map(|a| a.ip().to_string()).unwrap_or_default(),
                local_reply = ctx.local_reply.unwrap_or(""),
                error = %e.map(|e| e.etype().as_str()).unwrap_or(""),
            );
        }
    }

    /// Errors are logged once, in `logging`; keep Pingora's own error log for
    /// real internal failures.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        matches!(
            error.esource(),
            ErrorSource::Upstream | ErrorSource::Downstream
        )
    }
}

impl Gateway {
    async fn reply_error(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        reply: &ErrorReply,
    ) -> Result<bool> {
        ctx.local_reply = Some(reply.code);
        respond::send_error(session, reply, &ctx.info.request_id).await?;
        Ok(true)
    }

    async fn reply_local(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        local: LocalResponse,
    ) -> Result<bool> {
        let header = local_header(&local, &ctx.info.request_id)?;
        respond::write(session, header, local.body).await?;
        Ok(true)
    }

    fn count_fault(&self, fault: &PluginFault) {
        tracing::error!(plugin = %fault.plugin, kind = fault.kind.as_str(), "plugin fault: {}", fault.message);
        self.metrics
            .plugin_errors
            .with_label_values(&[fault.plugin.as_ref(), fault.kind.as_str()])
            .inc();
    }
}

/// The header of a filter's local response (`send_local_response`).
fn local_header(local: &LocalResponse, request_id: &str) -> Result<ResponseHeader> {
    let mut h = respond::header(local.status, None, local.body.len(), "")?;
    for (name, value) in &local.headers {
        h.append_header(name.clone(), value.as_str())?;
    }
    if h.headers.get("x-request-id").is_none() && !request_id.is_empty() {
        h.insert_header("x-request-id", request_id)?;
    }
    Ok(h)
}

/// Whether a final response head (or a `101`, after which the connection is a tunnel)
/// has gone to the client: no other response can follow on this request.
fn response_begun(session: &Session) -> bool {
    session
        .response_written()
        .is_some_and(|r| !r.status.is_informational() || r.status == 101)
}

/// Which JSON error a proxy failure becomes; `None` when the client is gone.
fn classify(e: &Error) -> Option<ErrorReply> {
    use ErrorType::*;
    match e.etype() {
        HTTPStatus(503) => Some(respond::NO_UPSTREAM),
        HTTPStatus(code) if *code >= 500 => Some(respond::INTERNAL),
        HTTPStatus(_) => Some(respond::BAD_REQUEST),
        // A client that stopped sending its body (`server.client_body_timeout`).
        ReadTimedout if e.esource() == &ErrorSource::Downstream => Some(respond::REQUEST_TIMEOUT),
        ConnectTimedout | ReadTimedout | WriteTimedout => Some(respond::GATEWAY_TIMEOUT),
        _ => match e.esource() {
            ErrorSource::Upstream => Some(respond::BAD_GATEWAY),
            ErrorSource::Downstream => match e.etype() {
                ReadError | WriteError | ConnectionClosed => None,
                _ => Some(respond::BAD_REQUEST),
            },
            ErrorSource::Internal | ErrorSource::Unset => Some(respond::INTERNAL),
        },
    }
}

/// Removes headers a client could use to impersonate an authenticated caller;
/// only the auth filters set them.
fn strip_identity_headers(req: &mut RequestHeader) {
    let is_identity =
        |name: &str| name.starts_with("x-consumer-") || name.starts_with("x-authenticated-");
    if !req.headers.keys().any(|k| is_identity(k.as_str())) {
        return;
    }
    let names: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|k| is_identity(k.as_str()))
        .cloned()
        .collect();
    for name in names {
        req.remove_header(&name);
    }
}

/// The request's host without port, from `Host` or the URI's authority.
fn request_host(req: &RequestHeader) -> Option<&str> {
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))?;
    Some(crate::config::model::host_without_port(host))
}

/// The path to send upstream when it differs from what the client sent: the
/// normalized path, minus the route prefix when `strip_prefix` is set.
fn rewrite_path(normalized: &str, original: &str, strip: Option<&str>) -> Option<String> {
    let stripped = match strip {
        Some(prefix) if prefix != "/" => {
            let rest = normalized.strip_prefix(prefix).unwrap_or(normalized);
            if rest.is_empty() { "/" } else { rest }
        }
        _ => normalized,
    };
    (stripped != original).then(|| stripped.to_owned())
}

fn set_path(req: &mut RequestHeader, path: &str) -> Result<()> {
    let new = match req.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let uri: http::Uri = new.parse().map_err(|_| {
        Error::explain(
            ErrorType::InternalError,
            "rewritten path is not a valid URI",
        )
    })?;
    req.set_uri(uri);
    Ok(())
}

/// `response.code_details` for a reply the gateway made (`local_reply`), or the
/// upstream's (`None`).
fn code_details(local_reply: Option<&'static str>) -> &'static str {
    match local_reply {
        None => "via_upstream",
        Some("plugin") => "wasm_local_reply",
        Some(code) => code,
    }
}

/// The request limits of `server`: too many header fields or bytes (431), a declared
/// body over `max_request_body` (413); and an HTTP/1.1 request without exactly one
/// `Host` (400). A streamed body is counted in `request_body_filter`.
fn over_limits(
    req: &RequestHeader,
    server: &crate::config::model::ServerSettings,
) -> Option<ErrorReply> {
    if req.headers.len() > server.max_request_headers {
        return Some(respond::HEADERS_TOO_LARGE);
    }
    // RFC 9112 3.2: an HTTP/1.1 request without Host, or any request with several, is
    // answered 400 (HTTP/1.0 may omit it; HTTP/2 carries `:authority` instead).
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    if second.is_some() || (first.is_none() && req.version == http::Version::HTTP_11) {
        return Some(respond::HOST_REQUIRED);
    }
    let bytes: u64 = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().len() + v.len()) as u64)
        .sum();
    if bytes > server.max_request_header_bytes {
        return Some(respond::HEADERS_TOO_LARGE);
    }
    let declared = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match (declared, server.max_request_body) {
        (Some(len), Some(max)) if len > max => Some(respond::BODY_TOO_LARGE),
        _ => None,
    }
}

//! The upstream side of a request: choosing the target, the peer's timeouts,
//! passive health and the retry policy.
//!
//! Retry policy (per route, `routes[].retries`):
//! - a failed *connect* is retried on another target for every method:
//!   nothing reached the upstream;
//! - an error after the connection was made (reset, timeout) is retried only
//!   for idempotent methods (or any method with `non_idempotent: true`), only
//!   when the request has no body (so a body is never sent twice), and never
//!   once the response has started;
//! - at most `max` retries per request, and only while the route's retry
//!   budget allows.
//!
//! The upstream is the route's, unless a filter chose another for this request by
//! setting the `aistack.upstream` property (the circuit breaker's fallback upstream):
//! [`apply_choice`] reads that choice before the first target is picked, and everything
//! below (balancing, passive health, timeouts) then works on the chosen upstream.

use std::sync::Arc;
use std::time::Duration;

use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};

use super::RequestCtx;
use crate::config::model::{HashOn, UpstreamTls};
use crate::snapshot::{Route, Snapshot};
use crate::upstream::Upstream;
use crate::wasm::UpstreamChoice;

/// Idle keep-alive connections to upstreams are closed after this.
const UPSTREAM_IDLE: Duration = Duration::from_secs(60);

/// Whether the route's upstream has a target to try; when not, the caller
/// answers 503 itself (keeping the connection, unlike a failed peer choice).
pub(super) fn upstream_available(ctx: &RequestCtx) -> bool {
    upstream_of(ctx).is_none_or(Upstream::has_available)
}

/// Takes the upstream a filter chose for this request (`aistack.upstream`, recorded on
/// the request header by the host). `Err(name)` when the snapshot has no such upstream
/// (the host accepts only configured names, so only a bug gets there).
pub(super) fn apply_choice(session: &Session, ctx: &mut RequestCtx) -> Result<(), Arc<str>> {
    let Some(UpstreamChoice(name)) = session.req_header().extensions.get::<UpstreamChoice>() else {
        return Ok(());
    };
    let Some(snapshot) = ctx.snapshot.as_deref() else {
        return Ok(());
    };
    match snapshot.upstreams.iter().position(|u| *u.name == **name) {
        Some(i) => {
            ctx.upstream = Some(i);
            Ok(())
        }
        None => Err(Arc::clone(name)),
    }
}

/// The upstream this request goes to: the one a filter chose, else the route's.
pub(super) fn upstream_of(ctx: &RequestCtx) -> Option<&Upstream> {
    let (snapshot, route) = route_of(ctx)?;
    snapshot
        .upstreams
        .get(ctx.upstream.unwrap_or(route.upstream))
}

/// Chooses the target for this try and builds the peer.
pub(super) fn choose_peer(
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<Box<HttpPeer>> {
    let (Some(snapshot), Some(route_idx)) = (ctx.snapshot.clone(), ctx.route) else {
        return Error::e_explain(ErrorType::InternalError, "upstream_peer before routing");
    };
    let route = &snapshot.routes[route_idx];
    let Some(upstream) = snapshot
        .upstreams
        .get(ctx.upstream.unwrap_or(route.upstream))
    else {
        return Error::e_explain(ErrorType::InternalError, "the chosen upstream is gone");
    };
    if ctx.tried.is_empty() {
        route.retry_budget.deposit();
    }
    let key = hash_key(upstream, session, ctx);
    let Some(ep) = upstream.pick(key.as_deref(), &ctx.tried) else {
        return Error::e_explain(
            ErrorType::HTTPStatus(503),
            "upstream has no available target",
        );
    };
    ctx.tried.push(ep.addr);
    ctx.upstream_addr = Some(ep.addr);
    ctx.in_flight = Some(ep.health.track());
    ctx.target = Some(ep.health);
    ctx.target_name = Some(ep.target);
    let spec = &upstream.spec;
    let target = ctx.target_name.as_deref().unwrap_or_default();
    let mut peer = new_peer(ep.addr, target, &upstream.name, spec.tls.as_ref());
    let (mut connect, mut read, mut write) =
        (spec.connect_timeout, spec.read_timeout, spec.write_timeout);
    if let Some(total) = route.timeout {
        let left = total.saturating_sub(ctx.started.elapsed());
        if left.is_zero() {
            return Error::e_explain(ErrorType::ConnectTimedout, "route timeout elapsed");
        }
        connect = connect.min(left);
        read = read.min(left);
        write = write.min(left);
        peer.options.total_connection_timeout = Some(connect);
    }
    peer.options.connection_timeout = Some(connect);
    peer.options.read_timeout = Some(read);
    peer.options.write_timeout = Some(write);
    peer.options.idle_timeout = Some(UPSTREAM_IDLE);
    if spec.http2 {
        peer.options.set_http_version(2, 2);
    }
    let idle = snapshot.config.routes.get(route_idx);
    if let Some(idle) = idle.and_then(|r| r.websocket_idle_timeout)
        && session.is_upgrade_req()
    {
        // After a 101 both legs are read with these timeouts: a side silent for `idle`
        // ends the tunnel.
        peer.options.read_timeout = Some(idle);
        session.as_mut().set_read_timeout(Some(idle));
    }
    Ok(Box::new(peer))
}

/// A peer for `addr` (configured as `target`, `host:port`), with TLS when the upstream
/// has it: the SNI name is the configured one, else the target's host (an IP literal is
/// verified against the certificate's IP addresses and sends no SNI). Verification stays
/// on unless the config says `verify: false`. Pooled TLS connections are kept per
/// upstream and CA bundle: Pingora's pool key leaves the CA out, and a connection
/// verified against one upstream's CA must not serve another's.
fn new_peer(
    addr: std::net::SocketAddr,
    target: &str,
    upstream: &str,
    tls: Option<&UpstreamTls>,
) -> HttpPeer {
    let Some(tls) = tls else {
        return HttpPeer::new(addr, false, String::new());
    };
    let sni = tls.sni.clone().unwrap_or_else(|| {
        let host = crate::config::model::host_without_port(target);
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned()
    });
    let mut peer = HttpPeer::new(addr, true, sni);
    peer.options.verify_cert = tls.verify;
    peer.options.verify_hostname = tls.verify;
    if let Some((_, ca)) = &tls.ca {
        peer.options.ca = Some(Arc::clone(ca));
    }
    let mut key = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&(upstream, tls.ca.as_ref().map(|(path, _)| path)), &mut key);
    peer.group_key = std::hash::Hasher::finish(&key);
    peer
}

/// The consistent-hash input for this request, if the upstream hashes. `None`
/// (no such header or cookie) makes [`Upstream::pick`] fall back to round robin.
fn hash_key(upstream: &Upstream, session: &Session, ctx: &RequestCtx) -> Option<Vec<u8>> {
    let headers = &session.req_header().headers;
    match upstream.spec.hash_on.as_ref()? {
        // The client behind trusted proxies: behind a load balancer the peer is
        // always the balancer, and one key would send everything to one target.
        HashOn::Ip => ctx
            .info
            .client_ip
            .or(ctx.info.client_addr.map(|a| a.ip()))
            .map(|ip| ip.to_string().into_bytes()),
        HashOn::Header(name) => headers.get(name).map(|v| v.as_bytes().to_vec()),
        HashOn::Cookie(name) => cookie(headers, name).map(|v| v.as_bytes().to_vec()),
    }
}

/// The value of the first cookie called `name` (case-sensitive) in the `Cookie`
/// headers (HTTP/2 clients may send several), as sent: quotes are kept, and an
/// empty value is a value.
fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

pub(super) fn route_of(ctx: &RequestCtx) -> Option<(&Snapshot, &Route)> {
    let snapshot = ctx.snapshot.as_deref()?;
    let route = snapshot.routes.get(ctx.route?)?;
    Some((snapshot, route))
}

/// Counts a failure against the target just tried (passive health).
fn record_failure(ctx: &mut RequestCtx) {
    ctx.in_flight = None;
    let Some(target) = ctx.target.take() else {
        return;
    };
    let Some(upstream) = upstream_of(ctx) else {
        return;
    };
    if target.record_failure(upstream.spec.passive.as_ref()) {
        tracing::warn!(
            upstream = %upstream.name,
            target = ?ctx.upstream_addr,
            "target ejected after consecutive failures"
        );
    }
}

/// Whether one more try is allowed (and takes it from the budget).
fn take_retry(ctx: &mut RequestCtx) -> bool {
    let Some((_, route)) = route_of(ctx) else {
        return false;
    };
    if ctx.retries >= route.retries.max || !route.retry_budget.withdraw() {
        return false;
    }
    ctx.retries += 1;
    true
}

/// `fail_to_connect`: nothing reached the upstream, so any method may retry.
pub(super) fn on_connect_failure(ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
    record_failure(ctx);
    e.set_retry(take_retry(ctx));
    e
}

/// `error_while_proxy`: the connection was made; see the module docs.
pub(super) fn on_proxy_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
    client_reused: bool,
) -> Box<Error> {
    if e.esource() == &ErrorSource::Upstream {
        record_failure(ctx);
    }
    let non_idempotent_ok = route_of(ctx).is_some_and(|(_, r)| r.retries.non_idempotent);
    let method_ok = session.req_header().method.is_idempotent() || non_idempotent_ok;
    let safe = method_ok
        && session.is_body_empty()
        && !ctx.response_started
        && e.esource() == &ErrorSource::Upstream;
    if !safe {
        e.set_retry(false);
        return e;
    }
    // A stale pooled connection failing is retried as Pingora would (it is not
    // the target's fault and costs no budget); anything else needs the budget.
    e.retry.decide_reuse(client_reused);
    let retry = e.retry() || take_retry(ctx);
    e.set_retry(retry);
    e
}

/// A response header arrived from the target: it is alive.
pub(super) fn on_response(ctx: &mut RequestCtx) {
    ctx.response_started = true;
    if let Some(t) = &ctx.target {
        t.record_success();
    }
}

/// The route's whole-request deadline, checked as the response body streams.
pub(super) fn check_deadline(ctx: &RequestCtx) -> pingora::Result<()> {
    match route_of(ctx).and_then(|(_, r)| r.timeout) {
        Some(total) if ctx.started.elapsed() > total => Error::e_explain(
            ErrorType::ReadTimedout,
            "route timeout elapsed while the response streamed",
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use http::header::COOKIE;

    use super::cookie;

    fn cookies(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn the_hash_cookie_is_found_among_others() {
        let h = cookies(&["theme=dark; sid=abc123;lang=en"]);
        assert_eq!(cookie(&h, "sid"), Some("abc123"));
        assert_eq!(cookie(&h, "lang"), Some("en"), "no space after `;`");
        assert_eq!(cookie(&h, "theme"), Some("dark"), "the first one");
        let h = cookies(&["  sid=x  ;  other=y  "]);
        assert_eq!(cookie(&h, "sid"), Some("x"), "spaces around a pair");
        assert_eq!(cookie(&h, "other"), Some("y"));
    }

    #[test]
    fn several_cookie_headers_and_repeated_names() {
        let h = cookies(&["a=1", "sid=second-header; sid=later"]);
        assert_eq!(cookie(&h, "sid"), Some("second-header"), "the first wins");
        assert_eq!(cookie(&h, "a"), Some("1"));
    }

    #[test]
    fn names_match_exactly() {
        let h = cookies(&["xsid=1; SID=2; sid_x=3; sid"]);
        assert_eq!(cookie(&h, "sid"), None, "no prefix, suffix or case match");
        let h = cookies(&["sid=; b=2"]);
        assert_eq!(cookie(&h, "sid"), Some(""), "an empty value is a value");
        let h = cookies(&["sid=\"q=1\""]);
        assert_eq!(cookie(&h, "sid"), Some("\"q=1\""), "kept as sent");
    }

    #[test]
    fn a_missing_cookie_gives_no_key() {
        assert_eq!(cookie(&HeaderMap::new(), "sid"), None);
        assert_eq!(cookie(&cookies(&["other=1"]), "sid"), None);
    }
}

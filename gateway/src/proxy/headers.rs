//! Request headers the gateway owns: hop-by-hop headers, forwarding headers
//! and `Host`.
//!
//! - Before anything else sees the request (`early_request_filter`), the
//!   hop-by-hop headers and every header the client names in `Connection` are
//!   removed. Doing it first means a client can only remove its own headers:
//!   whatever the filters or the gateway add later stays.
//! - Just before the request goes upstream (`upstream_request_filter`):
//!   `X-Forwarded-For`, `-Proto`, `-Host` and `Forwarded` are set. From a peer
//!   in `server.trusted_proxies` the existing values are kept and extended;
//!   from anyone else they are replaced. `Host` is preserved or rewritten per
//!   route, and `Connection` goes (kept as `upgrade` for an upgrade request).

use std::net::{IpAddr, SocketAddr};

use http::HeaderName;
use http::header::{CONNECTION, HOST, UPGRADE};
use pingora::http::RequestHeader;

use crate::config::cidr::Cidr;
use crate::config::model::UpstreamHost;

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the historic ones), apart from
/// `Connection`, `Upgrade` and `Transfer-Encoding`, which Pingora needs to
/// frame the request and handle upgrades.
const HOP_BY_HOP: &[&str] = &[
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Headers a `Connection` list may never remove: framing and routing.
const FRAMING: &[&str] = &[
    "connection",
    "upgrade",
    "transfer-encoding",
    "content-length",
    "host",
];

/// Removes hop-by-hop headers and those the client lists in `Connection`.
pub fn strip_hop_by_hop(req: &mut RequestHeader) {
    let named: Vec<HeaderName> = req
        .headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && !FRAMING.contains(&t.as_str()))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        // Only present ones: Pingora's `remove_header` of an absent name
        // leaves its case map such that a later insert of that name makes
        // an invalid request (InvalidHTTPHeader).
        if req.headers.contains_key(&name) {
            req.remove_header(&name);
        }
    }
    for name in HOP_BY_HOP {
        // `TE: trailers` is what gRPC clients send; it says nothing hop-specific.
        if *name == "te"
            && req
                .headers
                .get(*name)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"))
        {
            continue;
        }
        if req.headers.contains_key(*name) {
            req.remove_header(*name);
        }
    }
}

/// Whether the request asks for a protocol upgrade (WebSocket).
fn is_upgrade(req: &RequestHeader) -> bool {
    req.headers.contains_key(UPGRADE)
        && req
            .headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// What the upstream request needs from the rest of the gateway.
pub struct Forwarding<'a> {
    pub client: Option<SocketAddr>,
    pub trusted: &'a [Cidr],
    pub upstream_host: &'a UpstreamHost,
    /// The chosen target as configured (`host:port`), for `UpstreamHost::Target`.
    pub target: Option<&'a str>,
}

/// Sets the forwarding headers and `Host` on the request going upstream.
pub fn prepare_upstream(req: &mut RequestHeader, f: &Forwarding<'_>) -> pingora::Result<()> {
    if is_upgrade(req) {
        req.insert_header(CONNECTION, "upgrade")?;
    } else if req.headers.contains_key(CONNECTION) {
        req.remove_header(&CONNECTION);
    }
    let client_ip: Option<IpAddr> = f.client.map(|a| a.ip());
    let trusted = client_ip.is_some_and(|ip| f.trusted.iter().any(|c| c.contains(ip)));
    let host = req
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri.authority().map(|a| a.to_string()));
    let ip_text = client_ip.map(|ip| ip.to_string()).unwrap_or_default();

    let xff = match (trusted, joined(req, "x-forwarded-for")) {
        (true, Some(prev)) => format!("{prev}, {ip_text}"),
        _ => ip_text.clone(),
    };
    let proto = match (trusted, req.headers.get("x-forwarded-proto")) {
        (true, Some(p)) => p.to_str().unwrap_or("http").to_owned(),
        _ => "http".to_owned(),
    };
    let fwd_host = match (trusted, req.headers.get("x-forwarded-host")) {
        (true, Some(h)) => h.to_str().ok().map(str::to_owned),
        _ => host.clone(),
    };
    let mut element = format!("for={}", forwarded_node(client_ip));
    if let Some(h) = &host {
        element.push_str(&format!(";host={}", quote_if_needed(h)));
    }
    element.push_str(";proto=http");
    let forwarded = match (trusted, joined(req, "forwarded")) {
        (true, Some(prev)) => format!("{prev}, {element}"),
        _ => element,
    };
    req.insert_header("x-forwarded-for", xff)?;
    req.insert_header("x-forwarded-proto", proto)?;
    match fwd_host {
        Some(h) => req.insert_header("x-forwarded-host", h)?,
        None if req.headers.contains_key("x-forwarded-host") => {
            req.remove_header("x-forwarded-host");
        }
        None => {}
    }
    req.insert_header("forwarded", forwarded)?;

    match (f.upstream_host, f.target) {
        (UpstreamHost::Preserve, _) => {}
        (UpstreamHost::Target, Some(t)) => req.insert_header(HOST, t)?,
        (UpstreamHost::Target, None) => {}
        (UpstreamHost::Fixed(v), _) => req.insert_header(HOST, v.clone())?,
    }
    Ok(())
}

/// The client's address as far as the gateway can tell: the connection's peer, or, when
/// the peer is a trusted proxy (`server.trusted_proxies`), the rightmost
/// `X-Forwarded-For` address that is not itself a trusted proxy (the addresses right of
/// it were added by proxies we trust; anything left of it the client could have written).
/// An unparsable entry stops the walk at the last address that was trusted. The
/// `aistack.client_ip` property; what rate limits keyed by `ip` count.
pub fn client_ip(peer: Option<IpAddr>, req: &RequestHeader, trusted: &[Cidr]) -> Option<IpAddr> {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut client = peer?;
    if !is_trusted(client) {
        return Some(client);
    }
    let Some(chain) = joined(req, "x-forwarded-for") else {
        return Some(client);
    };
    for entry in chain.rsplit(',') {
        let Some(ip) = parse_forwarded_ip(entry.trim()) else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    Some(client)
}

/// An `X-Forwarded-For` entry: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]:443`, `1.2.3.4:80`.
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    entry.parse::<SocketAddr>().ok().map(|addr| addr.ip())
}

/// All values of a header joined with `, ` (a header may be repeated).
fn joined(req: &RequestHeader, name: &str) -> Option<String> {
    let values: Vec<&str> = req
        .headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// RFC 7239 node: IPv6 quoted in brackets, unknown when there is no address.
fn forwarded_node(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V6(v6)) => format!("\"[{v6}]\""),
        Some(ip) => ip.to_string(),
        None => "unknown".to_owned(),
    }
}

fn quote_if_needed(v: &str) -> String {
    if v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    {
        v.to_owned()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).expect("request");
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("header");
        }
        r
    }

    #[test]
    fn the_client_ip_comes_from_x_forwarded_for_only_behind_trusted_proxies() {
        let nets = [
            Cidr::parse("10.0.0.0/8").expect("cidr"),
            Cidr::parse("192.168.1.1/32").expect("cidr"),
        ];
        let peer = |ip: &str| Some(ip.parse::<IpAddr>().expect("ip"));
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        let xff = req(&[
            ("x-forwarded-for", "6.6.6.6, 1.2.3.4"),
            ("x-forwarded-for", "192.168.1.1"),
        ]);
        // An untrusted peer's header is ignored.
        assert_eq!(client_ip(peer("8.8.8.8"), &xff, &nets), Some(ip("8.8.8.8")));
        // A trusted one: the rightmost address no trusted proxy wrote (skipping the
        // trusted 192.168.1.1), never the spoofable leftmost one.
        assert_eq!(
            client_ip(peer("10.0.0.7"), &xff, &nets),
            Some(ip("1.2.3.4"))
        );
        // Every hop trusted: the leftmost; no header: the peer.
        let all = req(&[("x-forwarded-for", "10.1.1.1, 192.168.1.1")]);
        assert_eq!(
            client_ip(peer("10.0.0.7"), &all, &nets),
            Some(ip("10.1.1.1"))
        );
        let none = req(&[]);
        assert_eq!(
            client_ip(peer("10.0.0.7"), &none, &nets),
            Some(ip("10.0.0.7"))
        );
        // Garbage stops the walk at the last trusted address; ports and brackets parse.
        let junk = req(&[("x-forwarded-for", "1.2.3.4, junk, 10.9.9.9")]);
        assert_eq!(
            client_ip(peer("10.0.0.7"), &junk, &nets),
            Some(ip("10.9.9.9"))
        );
        let v6 = req(&[("x-forwarded-for", "[2001:db8::1]:443")]);
        assert_eq!(
            client_ip(peer("10.0.0.7"), &v6, &nets),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(client_ip(None, &xff, &nets), None);
    }

    #[test]
    fn connection_named_and_hop_by_hop_headers_go_but_framing_stays() {
        let mut r = req(&[
            ("connection", "keep-alive, X-Secret, content-length, host"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("te", "gzip"),
            ("host", "a.example"),
            ("content-length", "0"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut r);
        for gone in ["x-secret", "keep-alive", "proxy-authorization", "te"] {
            assert!(!r.headers.contains_key(gone), "{gone}");
        }
        for kept in ["host", "content-length", "x-kept", "connection"] {
            assert!(r.headers.contains_key(kept), "{kept}");
        }
        let mut r = req(&[("te", "trailers")]);
        strip_hop_by_hop(&mut r);
        assert!(r.headers.contains_key("te"));
    }

    #[test]
    fn forwarding_headers_trust_only_configured_peers() {
        let client: SocketAddr = "10.0.0.7:5555".parse().expect("addr");
        let sent = [
            ("host", "shop.example"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=1.2.3.4;proto=https"),
        ];
        let untrusted = Forwarding {
            client: Some(client),
            trusted: &[],
            upstream_host: &UpstreamHost::Preserve,
            target: Some("127.0.0.1:9"),
        };
        let mut r = req(&sent);
        prepare_upstream(&mut r, &untrusted).expect("ok");
        let h = |r: &RequestHeader, n: &str| {
            r.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(h(&r, "x-forwarded-for"), "10.0.0.7");
        assert_eq!(h(&r, "x-forwarded-proto"), "http");
        assert_eq!(h(&r, "x-forwarded-host"), "shop.example");
        assert_eq!(
            h(&r, "forwarded"),
            "for=10.0.0.7;host=shop.example;proto=http"
        );
        assert_eq!(h(&r, "host"), "shop.example");

        let nets = [Cidr::parse("10.0.0.0/8").expect("cidr")];
        let trusted = Forwarding {
            trusted: &nets,
            upstream_host: &UpstreamHost::Target,
            ..untrusted
        };
        let mut r = req(&sent);
        prepare_upstream(&mut r, &trusted).expect("ok");
        assert_eq!(h(&r, "x-forwarded-for"), "1.2.3.4, 10.0.0.7");
        assert_eq!(h(&r, "x-forwarded-proto"), "https");
        assert_eq!(
            h(&r, "forwarded"),
            "for=1.2.3.4;proto=https, for=10.0.0.7;host=shop.example;proto=http"
        );
        assert_eq!(h(&r, "host"), "127.0.0.1:9");
    }
}

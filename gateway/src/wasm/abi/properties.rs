//! Properties: `proxy_get_property`, `proxy_set_property`.
//!
//! Paths are NUL-separated segments (`request\0path`). Names and encodings follow Envoy's
//! attributes: strings raw, integers 8-byte little-endian, timestamps as nanoseconds since
//! the Unix epoch (8-byte little-endian). Answered so far:
//!
//! | path | value |
//! |---|---|
//! | `request.id` | the request id the core accepted or assigned |
//! | `request.path`, `request.url_path`, `request.query` | `:path`, without / only its query |
//! | `request.host`, `request.method`, `request.scheme`, `request.protocol` | strings |
//! | `request.time` | when the request started |
//! | `request.headers.<name>`, `request.useragent`, `request.referer` | during request headers |
//! | `response.code` | int; `response.headers.<name>` during response headers |
//! | `source.address`, `destination.address` | `ip:port`; `.port` as int |
//! | `aistack.client_ip` | the client's IP (no port): the peer's, or the `X-Forwarded-For` client behind a trusted proxy (`server.trusted_proxies`) |
//! | `route_name`, `xds.route_name` | the matched route |
//! | `plugin_name`, `plugin_root_id`, `plugin_vm_id` | the filter (the VM id is empty) |
//! | `aistack.upstreams.<name>` | `<name>` when the config has that upstream (any context, the root's `on_configure` too), else `NotFound` |
//! | `aistack.upstream` | the upstream a filter chose for this request with `proxy_set_property` (see below) |
//!
//! Setting `aistack.upstream` to the name of a configured upstream during the request
//! headers (or a callout answer the request waited for) sends the request there instead of
//! to the route's upstream; an empty value goes back to the route's (the proxy reads the
//! choice just before it picks a target, so one made in a streamed body's callbacks comes
//! too late and does nothing). Another name, or a set once the request headers are gone
//! (response phases, `on_log`), is refused with `BadArgument`: the Rust SDK traps on it,
//! so the filter faults (500 fail-closed, the reason logged) rather than routing somewhere
//! nobody configured.
//!
//! Anything else is looked up among the values set with `proxy_set_property` during this
//! request (by any filter of the chain, so filters can pass values on); well-known names
//! win, as in Envoy. Outside a request (root context) request properties and
//! `proxy_set_property` answer `NotFound`, as Envoy does without stream info.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::UNIX_EPOCH;

use wasmtime::{Caller, Linker};

use super::memory::{memory, return_scratch, slice};
use super::{HostResult, Status, status};
use crate::wasm::host::{HostState, InfoSlot, authority};
use crate::wasm::types::UpstreamChoice;

/// The property a filter sets to choose the request's upstream.
const UPSTREAM_PROPERTY: &[u8] = b"aistack\0upstream";

/// Cap on the bytes one request may store with `proxy_set_property`.
const MAX_REQUEST_PROPERTY_BYTES: usize = 1024 * 1024;

pub(crate) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_get_property", get_property)?;
    linker.func_wrap("env", "proxy_set_property", set_property)?;
    Ok(())
}

fn get_property(
    mut caller: Caller<'_, HostState>,
    path_ptr: u32,
    path_len: u32,
    value_ptr_ptr: u32,
    value_len_ptr: u32,
) -> HostResult {
    let found = memory(&caller).and_then(|mem| {
        let (data, host) = mem.data_and_store_mut(&mut caller);
        let path = slice(data, path_ptr, path_len)?;
        let mut out = std::mem::take(&mut host.scratch);
        out.clear();
        let result = lookup(host, path, &mut out);
        host.scratch = out;
        result
    });
    if let Err(status) = found {
        return Ok(status as u32);
    }
    Ok(status(return_scratch(
        &mut caller,
        value_ptr_ptr,
        value_len_ptr,
    )?))
}

/// Writes the property at `path` into `out`.
pub(crate) fn lookup(host: &HostState, path: &[u8], out: &mut Vec<u8>) -> Result<(), Status> {
    let mut segments: [&[u8]; 4] = [&[]; 4];
    let mut count = 0;
    for segment in path.split(|b| *b == 0) {
        if count == segments.len() {
            count = 0;
            break;
        }
        segments[count] = segment;
        count += 1;
    }
    match well_known(host, &segments[..count], out) {
        Some(result) => result,
        None => custom(host, path, out),
    }
}

/// `None` when `segments` is not a well-known property.
fn well_known(
    host: &HostState,
    segments: &[&[u8]],
    out: &mut Vec<u8>,
) -> Option<Result<(), Status>> {
    let plugin = &host.plugin;
    let info = host.request_info();
    let found = match segments {
        [b"plugin_name"] => string(out, &plugin.name),
        [b"plugin_root_id"] => string(out, &plugin.root_id),
        [b"plugin_vm_id"] => Ok(()),
        [b"route_name"] | [b"xds", b"route_name"] => match info.and_then(|i| i.route_name.as_ref())
        {
            Some(route) => string(out, route),
            None => Err(Status::NotFound),
        },
        [b"cluster_name"] | [b"xds", b"cluster_name"] => {
            match info.and_then(|i| i.upstream_name.as_ref()) {
                Some(upstream) => string(out, upstream),
                None => Err(Status::NotFound),
            }
        }
        [b"request", field @ ..] => request(host, info?, field, out)?,
        [b"response", field @ ..] => response(host, info?, field, out)?,
        [b"source", field] => address(info?.client_addr, field, out)?,
        [b"destination", field] => address(info?.server_addr, field, out)?,
        [b"aistack", b"client_ip"] => match info?.client_ip {
            Some(ip) => write!(out, "{ip}").map_err(|_| Status::SerializationFailure),
            None => Err(Status::NotFound),
        },
        [b"aistack", b"upstreams", name] => {
            if upstream_configured(host, name) {
                bytes(out, Some(name))
            } else {
                Err(Status::NotFound)
            }
        }
        _ => return None,
    };
    Some(found)
}

fn request(
    host: &HostState,
    info: &InfoSlot,
    field: &[&[u8]],
    out: &mut Vec<u8>,
) -> Option<Result<(), Status>> {
    let http = &host.http;
    let live = (http.request_live && host.on_own_context()).then_some(&http.request);
    let snapshot = http.state.snapshot.as_ref();
    let path: Option<&[u8]> = match (live, snapshot) {
        (Some(req), _) => Some(req.raw_path()),
        (None, Some(s)) => s.uri.path_and_query().map(|p| p.as_str().as_bytes()),
        (None, None) => None,
    };
    let found = match field {
        [b"id"] => string(out, &info.request_id),
        [b"scheme"] => string(out, info.scheme),
        [b"protocol"] => string(out, info.protocol),
        [b"time"] => int(out, info.start.duration_since(UNIX_EPOCH).map_or(0, nanos)),
        [b"size"] => match info.request_size {
            Some(size) => int(out, i64::try_from(size).unwrap_or(i64::MAX)),
            None => Err(Status::NotFound),
        },
        [b"path"] => bytes(out, path),
        [b"url_path"] => bytes(
            out,
            path.map(|p| p.split(|b| *b == b'?').next().unwrap_or(p)),
        ),
        [b"query"] => bytes(
            out,
            path.map(|p| p.splitn(2, |b| *b == b'?').nth(1).unwrap_or(&[])),
        ),
        [b"method"] => match (live, snapshot) {
            (Some(req), _) => string(out, req.method.as_str()),
            (None, Some(s)) => string(out, s.method.as_str()),
            (None, None) => Err(Status::NotFound),
        },
        [b"host"] => bytes(
            out,
            match (live, snapshot) {
                (Some(req), _) => authority(req.headers.get(http::header::HOST), &req.uri),
                (None, Some(s)) => s.authority(),
                (None, None) => None,
            },
        ),
        [b"headers", name] => header(live.map(|r| &r.headers), name, out),
        [b"useragent"] => header(live.map(|r| &r.headers), b"user-agent", out),
        [b"referer"] => header(live.map(|r| &r.headers), b"referer", out),
        _ => return None,
    };
    Some(found)
}

fn response(
    host: &HostState,
    info: &InfoSlot,
    field: &[&[u8]],
    out: &mut Vec<u8>,
) -> Option<Result<(), Status>> {
    let http = &host.http;
    let live = (http.response_live && host.on_own_context()).then_some(&http.response);
    let found = match field {
        [b"code"] => match live.map(|r| r.status.as_u16()).or(info.response_code) {
            Some(code) => int(out, i64::from(code)),
            None => Err(Status::NotFound),
        },
        [b"code_details"] => match info.code_details {
            "" => Err(Status::NotFound),
            details => string(out, details),
        },
        [b"headers", name] => header(live.map(|r| &r.headers), name, out),
        _ => return None,
    };
    Some(found)
}

fn address(
    addr: Option<SocketAddr>,
    field: &[u8],
    out: &mut Vec<u8>,
) -> Option<Result<(), Status>> {
    let found = match (field, addr) {
        (b"address", Some(addr)) => write!(out, "{addr}").map_err(|_| Status::SerializationFailure),
        (b"port", Some(addr)) => int(out, i64::from(addr.port())),
        (b"address" | b"port", None) => Err(Status::NotFound),
        _ => return None,
    };
    Some(found)
}

fn header(headers: Option<&http::HeaderMap>, name: &[u8], out: &mut Vec<u8>) -> Result<(), Status> {
    let name = std::str::from_utf8(name).map_err(|_| Status::NotFound)?;
    let value = headers.and_then(|h| h.get(name)).ok_or(Status::NotFound)?;
    out.extend_from_slice(value.as_bytes());
    Ok(())
}

fn custom(host: &HostState, path: &[u8], out: &mut Vec<u8>) -> Result<(), Status> {
    let (_, value) = host
        .http
        .state
        .properties
        .iter()
        .find(|(key, _)| **key == *path)
        .ok_or(Status::NotFound)?;
    out.extend_from_slice(value);
    Ok(())
}

fn string(out: &mut Vec<u8>, value: &str) -> Result<(), Status> {
    out.extend_from_slice(value.as_bytes());
    Ok(())
}

fn bytes(out: &mut Vec<u8>, value: Option<&[u8]>) -> Result<(), Status> {
    out.extend_from_slice(value.ok_or(Status::NotFound)?);
    Ok(())
}

/// Envoy encodes integers (and timestamps) as 8-byte little-endian `int64`.
fn int(out: &mut Vec<u8>, value: i64) -> Result<(), Status> {
    out.extend_from_slice(&value.to_le_bytes());
    Ok(())
}

fn nanos(since_epoch: std::time::Duration) -> i64 {
    i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX)
}

fn set_property(
    mut caller: Caller<'_, HostState>,
    path_ptr: u32,
    path_len: u32,
    value_ptr: u32,
    value_len: u32,
) -> HostResult {
    let result = memory(&caller).and_then(|mem| {
        let (data, host) = mem.data_and_store_mut(&mut caller);
        let path = slice(data, path_ptr, path_len)?;
        let value = slice(data, value_ptr, value_len)?;
        store(host, path, value)
    });
    Ok(status(result))
}

/// Stores a request property (replacing an earlier value at the same path).
pub(crate) fn store(host: &mut HostState, path: &[u8], value: &[u8]) -> Result<(), Status> {
    if !host.http.info.present {
        return Err(Status::NotFound);
    }
    if path == UPSTREAM_PROPERTY {
        choose_upstream(host, value)?;
    }
    let properties = &mut host.http.state.properties;
    let used: usize = properties
        .iter()
        .filter(|(key, _)| **key != *path)
        .map(|(key, value)| key.len() + value.len())
        .sum();
    if used + path.len() + value.len() > MAX_REQUEST_PROPERTY_BYTES {
        host.call.host_note = Some(format!(
            "proxy_set_property: a request may store at most {MAX_REQUEST_PROPERTY_BYTES} bytes of properties"
        ));
        return Err(Status::BadArgument);
    }
    match properties.iter_mut().find(|(key, _)| **key == *path) {
        Some((_, slot)) => *slot = value.into(),
        None => properties.push((path.into(), value.into())),
    }
    Ok(())
}

/// Whether the config has an upstream named `name` (as callouts see them: the same list).
fn upstream_configured(host: &HostState, name: &[u8]) -> bool {
    std::str::from_utf8(name).is_ok_and(|name| host.plugin.upstreams.contains(name))
}

/// `aistack.upstream`: records the choice on the request header itself (an extension,
/// never sent), where the proxy reads it before it picks a target.
fn choose_upstream(host: &mut HostState, value: &[u8]) -> Result<(), Status> {
    if !(host.http.request_live && host.on_own_context()) {
        host.call.host_note = Some(
            "proxy_set_property(aistack.upstream): only during the request headers (the upstream is chosen after them)"
                .to_owned(),
        );
        return Err(Status::BadArgument);
    }
    if value.is_empty() {
        host.http
            .request
            .extensions_mut()
            .remove::<UpstreamChoice>();
        return Ok(());
    }
    match std::str::from_utf8(value) {
        Ok(name) if upstream_configured(host, value) => {
            host.http
                .request
                .extensions_mut()
                .insert(UpstreamChoice(name.into()));
            Ok(())
        }
        _ => {
            host.call.host_note = Some(format!(
                "proxy_set_property(aistack.upstream): {:?} is not an upstream of the config",
                String::from_utf8_lossy(value)
            ));
            Err(Status::BadArgument)
        }
    }
}

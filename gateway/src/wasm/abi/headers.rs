//! HTTP header maps: `proxy_{get,set}_header_map_pairs`, `proxy_get_header_map_value`,
//! `proxy_{add,replace,remove}_header_map_value`, `proxy_get_header_map_size`.
//!
//! As in Envoy, the request map exposes `:authority`, `:path`, `:method`, `:scheme` and the
//! response map `:status`; names are lower-cased; `host` is the `:authority` (the pairs list
//! it once, as `:authority`). A map is available only during its own callback (request
//! headers in `on_request_headers`, response headers in `on_response_headers`); elsewhere
//! reads answer `BadArgument` (`NotFound` in `on_log`), pairs are empty and writes answer
//! `BadArgument`: the same statuses Envoy returns. The HTTP call response's headers
//! (`:status` first) and trailers are readable during `proxy_on_http_call_response`
//! (read-only). Response trailers are the map during `proxy_on_response_trailers` (lent in
//! the response slot, without pseudo-headers); request trailers are never available:
//! Pingora's proxy phases do not expose them (reads answer as outside their callback).

use http::header::HOST;
use http::{HeaderName, HeaderValue, Method};
use pingora::http::{RequestHeader, ResponseHeader};
use wasmtime::{Caller, Linker};

use super::memory::{memory, return_scratch, slice, write_u32};
use super::{HostResult, Status, pairs, status};
use crate::wasm::host::{HostState, HttpIo, Phase, authority};

/// Highest `proxy_map_type_t` (HTTP call response trailers).
const MAX_MAP_TYPE: u32 = 7;
const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;
const RESPONSE_TRAILERS: u32 = 3;
const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
const HTTP_CALL_RESPONSE_TRAILERS: u32 = 7;
const READ_ONLY: &str = "the HTTP call response's headers and trailers are read-only";

pub(crate) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_get_header_map_value", get_value)?;
    linker.func_wrap("env", "proxy_get_header_map_pairs", get_pairs)?;
    linker.func_wrap("env", "proxy_set_header_map_pairs", set_pairs)?;
    linker.func_wrap("env", "proxy_get_header_map_size", get_size)?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |caller: Caller<'_, HostState>, map: u32, kp: u32, kl: u32, vp: u32, vl: u32| {
            edit(caller, map, (kp, kl), (vp, vl), Edit::Add)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |caller: Caller<'_, HostState>, map: u32, kp: u32, kl: u32, vp: u32, vl: u32| {
            edit(caller, map, (kp, kl), (vp, vl), Edit::Replace)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |caller: Caller<'_, HostState>, map: u32, kp: u32, kl: u32| {
            edit(caller, map, (kp, kl), (0, 0), Edit::Remove)
        },
    )?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Request,
    Response,
    /// During `proxy_on_response_trailers`: the trailers, lent in the response slot.
    ResponseTrailers,
    CallHeaders,
    CallTrailers,
}

/// A single-header change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edit {
    Add,
    Replace,
    Remove,
}

/// The live map `map_type` names, `None` when it exists in the ABI but not right now.
fn target(host: &HostState, map_type: u32) -> Result<Option<Target>, Status> {
    if map_type > MAX_MAP_TYPE {
        return Err(Status::BadArgument);
    }
    let own = host.on_own_context();
    let trailers = host.call.phase == Phase::ResponseTrailers;
    Ok(match map_type {
        REQUEST_HEADERS if own && host.http.request_live => Some(Target::Request),
        RESPONSE_HEADERS if own && host.http.response_live && !trailers => Some(Target::Response),
        RESPONSE_TRAILERS if own && host.http.response_live && trailers => {
            Some(Target::ResponseTrailers)
        }
        HTTP_CALL_RESPONSE_HEADERS if host.call_response.is_some() => Some(Target::CallHeaders),
        HTTP_CALL_RESPONSE_TRAILERS if host.call_response.is_some() => Some(Target::CallTrailers),
        _ => None,
    })
}

fn get_value(
    mut caller: Caller<'_, HostState>,
    map_type: u32,
    key_ptr: u32,
    key_len: u32,
    value_ptr_ptr: u32,
    value_len_ptr: u32,
) -> HostResult {
    let found = memory(&caller).and_then(|mem| {
        let (data, host) = mem.data_and_store_mut(&mut caller);
        let key = slice(data, key_ptr, key_len)?;
        let mut out = std::mem::take(&mut host.scratch);
        out.clear();
        let result = lookup(host, map_type, key, &mut out);
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

/// Writes the first value of `key` in the map `map_type` into `out`.
pub(crate) fn lookup(
    host: &HostState,
    map_type: u32,
    key: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Status> {
    let value = match target(host, map_type)? {
        None if host.call.phase == Phase::Log => return Err(Status::NotFound),
        None => return Err(Status::BadArgument),
        Some(Target::Request) => request_value(&host.http, key),
        Some(Target::Response) => response_value(&host.http.response, key),
        Some(Target::ResponseTrailers) => first_value(&host.http.response.headers, key),
        Some(target) => call_pairs(host, target)
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value),
    };
    out.extend_from_slice(value.ok_or(Status::NotFound)?);
    Ok(())
}

fn request_value<'a>(http: &'a HttpIo, key: &[u8]) -> Option<&'a [u8]> {
    let req = &http.request;
    match pseudo(key) {
        Some(":authority") => authority(req.headers.get(HOST), &req.uri),
        Some(":path") => Some(req.raw_path()),
        Some(":method") => Some(req.method.as_str().as_bytes()),
        Some(":scheme") => Some(http.info.scheme.as_bytes()),
        Some(_) => None,
        None => first_value(&req.headers, key),
    }
}

fn response_value<'a>(resp: &'a ResponseHeader, key: &[u8]) -> Option<&'a [u8]> {
    match pseudo(key) {
        Some(":status") => Some(resp.status.as_str().as_bytes()),
        Some(_) => None,
        None => first_value(&resp.headers, key),
    }
}

/// The canonical pseudo-header name `key` denotes (case-insensitively), if it is one.
fn pseudo(key: &[u8]) -> Option<&'static str> {
    if key.first() != Some(&b':') {
        return None;
    }
    [":authority", ":path", ":method", ":scheme", ":status"]
        .into_iter()
        .find(|p| p.as_bytes().eq_ignore_ascii_case(key))
        .or(Some(":unknown"))
}

/// Envoy returns the first value of a repeated header.
fn first_value<'a>(headers: &'a http::HeaderMap, key: &[u8]) -> Option<&'a [u8]> {
    let name = std::str::from_utf8(key).ok()?;
    headers.get(name).map(HeaderValue::as_bytes)
}

fn request_pairs(http: &HttpIo) -> impl Iterator<Item = (&[u8], &[u8])> {
    let req = &http.request;
    let pseudo: [Option<(&[u8], &[u8])>; 4] = [
        authority(req.headers.get(HOST), &req.uri).map(|a| (&b":authority"[..], a)),
        Some((b":path", req.raw_path())),
        Some((b":method", req.method.as_str().as_bytes())),
        Some((b":scheme", http.info.scheme.as_bytes())),
    ];
    pseudo.into_iter().flatten().chain(
        req.headers
            .iter()
            .filter(|(name, _)| **name != HOST)
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes())),
    )
}

fn plain_pairs(headers: &http::HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
}

fn response_pairs(resp: &ResponseHeader) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::once((&b":status"[..], resp.status.as_str().as_bytes())).chain(
        resp.headers
            .iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes())),
    )
}

/// The HTTP call response's headers or trailers (empty outside its callback).
fn call_pairs(host: &HostState, target: Target) -> impl Iterator<Item = (&[u8], &[u8])> {
    let pairs = match (&host.call_response, target) {
        (Some(call), Target::CallHeaders) => call.headers.as_slice(),
        (Some(call), Target::CallTrailers) => call.trailers.as_slice(),
        _ => &[],
    };
    pairs.iter().map(|(n, v)| (n.as_slice(), v.as_slice()))
}

fn get_pairs(
    mut caller: Caller<'_, HostState>,
    map_type: u32,
    ptr_ptr: u32,
    len_ptr: u32,
) -> HostResult {
    if let Err(status) = serialize_map(caller.data_mut(), map_type) {
        return Ok(status as u32);
    }
    Ok(status(return_scratch(&mut caller, ptr_ptr, len_ptr)?))
}

/// Serializes the map `map_type` into the VM's scratch buffer (empty when unavailable).
pub(crate) fn serialize_map(host: &mut HostState, map_type: u32) -> Result<(), Status> {
    let target = target(host, map_type)?;
    let mut out = std::mem::take(&mut host.scratch);
    let http = &host.http;
    match target {
        Some(Target::Request) => pairs::serialize(|| request_pairs(http), &mut out),
        Some(Target::Response) => pairs::serialize(|| response_pairs(&http.response), &mut out),
        Some(Target::ResponseTrailers) => {
            pairs::serialize(|| plain_pairs(&http.response.headers), &mut out)
        }
        Some(call) => pairs::serialize(|| call_pairs(host, call), &mut out),
        None => out.clear(),
    }
    host.scratch = out;
    Ok(())
}

fn get_size(mut caller: Caller<'_, HostState>, map_type: u32, size_ptr: u32) -> HostResult {
    let host = caller.data();
    let size: usize = match target(host, map_type) {
        Ok(Some(Target::Request)) => request_pairs(&host.http)
            .map(|(n, v)| n.len() + v.len())
            .sum(),
        Ok(Some(Target::Response)) => response_pairs(&host.http.response)
            .map(|(n, v)| n.len() + v.len())
            .sum(),
        Ok(Some(Target::ResponseTrailers)) => plain_pairs(&host.http.response.headers)
            .map(|(n, v)| n.len() + v.len())
            .sum(),
        Ok(Some(call)) => call_pairs(host, call).map(|(n, v)| n.len() + v.len()).sum(),
        Ok(None) => return Ok(Status::BadArgument as u32),
        Err(status) => return Ok(status as u32),
    };
    let size = u32::try_from(size).unwrap_or(u32::MAX);
    let result = memory(&caller).and_then(|m| write_u32(m.data_mut(&mut caller), size_ptr, size));
    Ok(status(result))
}

fn set_pairs(mut caller: Caller<'_, HostState>, map_type: u32, ptr: u32, len: u32) -> HostResult {
    let result = memory(&caller).and_then(|mem| {
        let (data, host) = mem.data_and_store_mut(&mut caller);
        replace_map(host, map_type, slice(data, ptr, len)?)
    });
    Ok(status(result))
}

/// Replaces the whole map `map_type` with the serialized pairs in `serialized`.
pub(crate) fn replace_map(
    host: &mut HostState,
    map_type: u32,
    serialized: &[u8],
) -> Result<(), Status> {
    let pairs = pairs::parse(serialized);
    let target = target(host, map_type)?.ok_or(Status::BadArgument)?;
    let outcome = match target {
        Target::Request => {
            let req = &mut host.http.request;
            let names: Vec<HeaderName> = req.headers.keys().cloned().collect();
            names.iter().for_each(|name| drop(req.remove_header(name)));
            pairs
                .iter()
                .try_for_each(|(k, v)| edit_request(req, k, v, Edit::Add))
        }
        Target::Response | Target::ResponseTrailers => {
            let resp = &mut host.http.response;
            let names: Vec<HeaderName> = resp.headers.keys().cloned().collect();
            names.iter().for_each(|name| drop(resp.remove_header(name)));
            let trailers = target == Target::ResponseTrailers;
            pairs.iter().try_for_each(|(k, v)| {
                if trailers {
                    edit_trailers(resp, k, v, Edit::Add)
                } else {
                    edit_response(resp, k, v, Edit::Add)
                }
            })
        }
        Target::CallHeaders | Target::CallTrailers => Err(READ_ONLY.to_owned()),
    };
    outcome.map_err(|note| refuse(host, "proxy_set_header_map_pairs", note))
}

fn edit(
    mut caller: Caller<'_, HostState>,
    map_type: u32,
    (key_ptr, key_len): (u32, u32),
    (value_ptr, value_len): (u32, u32),
    how: Edit,
) -> HostResult {
    let result = memory(&caller).and_then(|mem| {
        let (data, host) = mem.data_and_store_mut(&mut caller);
        let key = slice(data, key_ptr, key_len)?;
        let value = slice(data, value_ptr, value_len)?;
        edit_map(host, map_type, key, value, how)
    });
    Ok(status(result))
}

/// Adds, replaces or removes `key` in the map `map_type`.
pub(crate) fn edit_map(
    host: &mut HostState,
    map_type: u32,
    key: &[u8],
    value: &[u8],
    how: Edit,
) -> Result<(), Status> {
    let target = target(host, map_type)?.ok_or(Status::BadArgument)?;
    let outcome = match target {
        Target::Request => edit_request(&mut host.http.request, key, value, how),
        Target::Response => edit_response(&mut host.http.response, key, value, how),
        Target::ResponseTrailers => edit_trailers(&mut host.http.response, key, value, how),
        Target::CallHeaders | Target::CallTrailers => Err(READ_ONLY.to_owned()),
    };
    outcome.map_err(|note| refuse(host, "a header map edit", note))
}

/// Records why a header edit was refused and answers `BadArgument` (the SDK then traps;
/// the fault carries this note).
fn refuse(host: &mut HostState, what: &str, note: String) -> Status {
    host.call.host_note = Some(format!("{what} was refused: {note}"));
    Status::BadArgument
}

fn edit_request(
    req: &mut RequestHeader,
    key: &[u8],
    value: &[u8],
    how: Edit,
) -> Result<(), String> {
    let set = how != Edit::Remove;
    match pseudo(key) {
        Some(":method") if set => {
            let method = Method::from_bytes(value).map_err(|_| invalid(":method", value))?;
            req.set_method(method);
        }
        Some(":path") if set => req
            .set_raw_path(value)
            .map_err(|_| invalid(":path", value))?,
        Some(":authority") if set => {
            let host = HeaderValue::from_bytes(value).map_err(|_| invalid(":authority", value))?;
            req.insert_header(HOST, host).map_err(|e| e.to_string())?;
        }
        Some(":authority") => drop(req.remove_header(&HOST)),
        // Removing :path or :method, or touching :scheme or an unknown pseudo-header, has
        // no meaning for a request Pingora forwards: accepted and ignored.
        Some(_) => {}
        None => {
            let name = header_name(key)?;
            match how {
                Edit::Remove => drop(req.remove_header(&name)),
                Edit::Add => drop(
                    req.append_header(name, header_value(key, value)?)
                        .map_err(|e| e.to_string())?,
                ),
                Edit::Replace => req
                    .insert_header(name, header_value(key, value)?)
                    .map_err(|e| e.to_string())?,
            }
        }
    }
    Ok(())
}

fn edit_response(
    resp: &mut ResponseHeader,
    key: &[u8],
    value: &[u8],
    how: Edit,
) -> Result<(), String> {
    match pseudo(key) {
        Some(":status") if how != Edit::Remove => {
            let code = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
                .ok_or_else(|| invalid(":status", value))?;
            resp.set_status(code)
                .map_err(|_| invalid(":status", value))?;
        }
        Some(_) => {}
        None => {
            let name = header_name(key)?;
            match how {
                Edit::Remove => drop(resp.remove_header(&name)),
                Edit::Add => drop(
                    resp.append_header(name, header_value(key, value)?)
                        .map_err(|e| e.to_string())?,
                ),
                Edit::Replace => resp
                    .insert_header(name, header_value(key, value)?)
                    .map_err(|e| e.to_string())?,
            }
        }
    }
    Ok(())
}

/// Trailers have no pseudo-headers: edits of one are accepted and ignored.
fn edit_trailers(
    trailers: &mut ResponseHeader,
    key: &[u8],
    value: &[u8],
    how: Edit,
) -> Result<(), String> {
    if pseudo(key).is_some() {
        return Ok(());
    }
    edit_response(trailers, key, value, how)
}

fn header_name(key: &[u8]) -> Result<HeaderName, String> {
    HeaderName::from_bytes(key)
        .map_err(|_| format!("invalid header name {:?}", String::from_utf8_lossy(key)))
}

fn header_value(key: &[u8], value: &[u8]) -> Result<HeaderValue, String> {
    HeaderValue::from_bytes(value).map_err(|_| invalid(&String::from_utf8_lossy(key), value))
}

fn invalid(what: &str, value: &[u8]) -> String {
    format!(
        "invalid value for `{what}`: {:?}",
        String::from_utf8_lossy(value)
    )
}

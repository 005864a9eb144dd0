//! Timers and HTTP callouts: `proxy_set_tick_period_milliseconds`, `proxy_http_call`.
//!
//! Nothing is performed inside the guest call: a dispatched call is checked, given a token
//! and queued on the VM (`HostState::callouts`); the request's chain (HTTP contexts) or the
//! thread's tick pump (root context) performs it and delivers the answer with
//! `proxy_on_http_call_response`.
//!
//! Statuses, as Envoy: an unknown upstream, or headers without `:method`, `:path` or
//! `:authority`, answer `BadArgument` (the SDK returns it as an `Err`).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use wasmtime::{Caller, Linker};

use super::memory::{memory, slice, write_u32};
use super::{HostResult, Status, pairs, status};
use crate::wasm::callout::{CalloutRequest, HttpCall, Work};
use crate::wasm::host::{HostState, Phase};

/// A call without a timeout (0) gets this one; longer ones are cut to [`MAX_TIMEOUT`].
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Calls (HTTP and asynchronous foreign ones) one VM may have queued and not yet started.
pub(crate) const MAX_QUEUED_CALLS: usize = 64;

pub(crate) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_set_tick_period_milliseconds", set_tick_period)?;
    linker.func_wrap("env", "proxy_http_call", http_call)?;
    Ok(())
}

/// Ticks go to the root context (`proxy_on_tick`); 0 stops them.
fn set_tick_period(mut caller: Caller<'_, HostState>, period_ms: u32) -> HostResult {
    let host = caller.data_mut();
    host.tick_period = (period_ms > 0).then(|| Duration::from_millis(u64::from(period_ms)));
    Ok(Status::Ok as u32)
}

#[allow(clippy::too_many_arguments)] // the ABI's signature
fn http_call(
    mut caller: Caller<'_, HostState>,
    upstream_ptr: u32,
    upstream_len: u32,
    headers_ptr: u32,
    headers_len: u32,
    body_ptr: u32,
    body_len: u32,
    trailers_ptr: u32,
    trailers_len: u32,
    timeout_ms: u32,
    token_ptr: u32,
) -> HostResult {
    let result = memory(&caller).and_then(|mem| {
        let (data, host) = mem.data_and_store_mut(&mut caller);
        let upstream = slice(data, upstream_ptr, upstream_len)?;
        let headers = slice(data, headers_ptr, headers_len)?;
        let body = slice(data, body_ptr, body_len)?;
        slice(data, trailers_ptr, trailers_len)?;
        let call = prepare(host, upstream, headers, body, timeout_ms)
            .map_err(|note| refuse(host, note))?;
        let token = call.token;
        host.callouts.push(call);
        write_u32(data, token_ptr, token)
    });
    Ok(status(result))
}

fn refuse(host: &mut HostState, note: String) -> Status {
    host.call.host_note = Some(format!("proxy_http_call was refused: {note}"));
    Status::BadArgument
}

fn prepare(
    host: &mut HostState,
    upstream: &[u8],
    headers: &[u8],
    body: &[u8],
    timeout_ms: u32,
) -> Result<CalloutRequest, String> {
    if host.call.phase == Phase::Initialize {
        return Err("no context exists yet (called from _initialize)".into());
    }
    if host.callouts.len() >= MAX_QUEUED_CALLS {
        return Err(format!("more than {MAX_QUEUED_CALLS} calls queued"));
    }
    let name = String::from_utf8_lossy(upstream);
    let (target, connect_timeout) = host.plugin.upstreams.pick(&name).ok_or_else(|| {
        if host.plugin.upstreams.is_tls(&name) {
            format!("upstream `{name}` is spoken to over TLS: callouts cannot reach it yet")
        } else {
            format!("no upstream named `{name}` (callouts name a config upstream)")
        }
    })?;
    let (mut method, mut path, mut authority) = (None, None, None);
    let mut extra = Vec::new();
    for (key, value) in pairs::parse(headers) {
        match key {
            b":method" => method = Some(Method::from_bytes(value).map_err(|e| e.to_string())?),
            b":path" => path = Some(value.to_vec()),
            b":authority" => authority = Some(value.to_vec()),
            _ if key.first() == Some(&b':') => {}
            _ => extra.push((
                HeaderName::from_bytes(key).map_err(|e| e.to_string())?,
                HeaderValue::from_bytes(value).map_err(|e| e.to_string())?,
            )),
        }
    }
    let (Some(method), Some(path), Some(authority)) = (method, path, authority) else {
        return Err("the headers need `:method`, `:path` and `:authority`".into());
    };
    let timeout = match timeout_ms {
        0 => DEFAULT_TIMEOUT,
        ms => Duration::from_millis(u64::from(ms)).min(MAX_TIMEOUT),
    };
    host.last_token = host.last_token.wrapping_add(1).max(1);
    Ok(CalloutRequest {
        context_id: host.call.effective_context_id,
        token: host.last_token,
        work: Work::Http(HttpCall {
            target,
            connect_timeout,
            method,
            path,
            authority,
            headers: extra,
            body: Bytes::copy_from_slice(body),
            timeout,
        }),
    })
}

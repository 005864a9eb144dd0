//! Buffers: `proxy_get_buffer_bytes`, `proxy_get_buffer_status`, `proxy_set_buffer_bytes`.
//!
//! Available so far: `VM_CONFIGURATION` (always; empty), `PLUGIN_CONFIGURATION` (during
//! `proxy_on_configure`, as in Envoy) and `HTTP_CALL_RESPONSE_BODY` (during
//! `proxy_on_http_call_response`, read-only), `HTTP_REQUEST_BODY` and `HTTP_RESPONSE_BODY`
//! (during their body callback, on the callback's own context: what the host buffered so
//! far; `proxy_set_buffer_bytes` replaces `size` bytes at `start` with the new data, as
//! Envoy does, so `(0, len)` replaces the whole body and `(len, 0)` appends).
//! Configuration buffers are read-only (`BadArgument` on write, as Envoy's constant
//! buffers), and `CALL_DATA` (during `proxy_on_foreign_function`, read-only: the
//! answer of an asynchronous foreign call, see [`crate::wasm::foreign`]). The other types
//! answer `NotFound`: downstream and upstream data (no L4 filters) and the gRPC receive
//! buffer (no gRPC calls).

use wasmtime::{Caller, Linker};

use super::memory::{memory, return_scratch, slice, write_u32};
use super::{HostResult, Status, status};
use crate::wasm::host::{BodyKind, HostState, Phase};

const MAX_BUFFER_TYPE: u32 = 8;
const HTTP_CALL_RESPONSE_BODY: u32 = 4;
const HTTP_REQUEST_BODY: u32 = 0;
const HTTP_RESPONSE_BODY: u32 = 1;
const VM_CONFIGURATION: u32 = 6;
const PLUGIN_CONFIGURATION: u32 = 7;
const CALL_DATA: u32 = 8;

pub(crate) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_get_buffer_bytes", get_bytes)?;
    linker.func_wrap("env", "proxy_get_buffer_status", get_status)?;
    linker.func_wrap("env", "proxy_set_buffer_bytes", set_bytes)?;
    Ok(())
}

/// The buffer `buffer_type` names right now.
fn buffer(host: &HostState, buffer_type: u32) -> Result<&[u8], Status> {
    match buffer_type {
        VM_CONFIGURATION => Ok(&host.plugin.vm_configuration),
        PLUGIN_CONFIGURATION if host.call.phase == Phase::Configure => {
            Ok(&host.plugin.configuration)
        }
        HTTP_REQUEST_BODY | HTTP_RESPONSE_BODY => body_kind(host, buffer_type)
            .map(|_| host.http.body.as_slice())
            .ok_or(Status::NotFound),
        HTTP_CALL_RESPONSE_BODY => match &host.call_response {
            Some(call) => Ok(&call.body),
            None => Err(Status::NotFound),
        },
        CALL_DATA => host.call_data.as_deref().ok_or(Status::NotFound),
        t if t > MAX_BUFFER_TYPE => Err(Status::BadArgument),
        _ => Err(Status::NotFound),
    }
}

/// The body `buffer_type` names, if its callback runs now on its own context.
fn body_kind(host: &HostState, buffer_type: u32) -> Option<BodyKind> {
    let kind = match buffer_type {
        HTTP_REQUEST_BODY => BodyKind::Request,
        HTTP_RESPONSE_BODY => BodyKind::Response,
        _ => return None,
    };
    (host.http.body_live == Some(kind) && host.on_own_context()).then_some(kind)
}

fn get_bytes(
    mut caller: Caller<'_, HostState>,
    buffer_type: u32,
    start: u32,
    max_size: u32,
    ptr_ptr: u32,
    len_ptr: u32,
) -> HostResult {
    let host = caller.data_mut();
    let mut out = std::mem::take(&mut host.scratch);
    out.clear();
    let found = buffer(host, buffer_type).map(|bytes| {
        // Envoy clamps the window to the buffer instead of failing.
        let start = (start as usize).min(bytes.len());
        let end = start.saturating_add(max_size as usize).min(bytes.len());
        out.extend_from_slice(&bytes[start..end]);
    });
    host.scratch = out;
    if let Err(status) = found {
        return Ok(status as u32);
    }
    Ok(status(return_scratch(&mut caller, ptr_ptr, len_ptr)?))
}

fn get_status(
    mut caller: Caller<'_, HostState>,
    buffer_type: u32,
    len_ptr: u32,
    flags_ptr: u32,
) -> HostResult {
    let len = match buffer(caller.data(), buffer_type) {
        Ok(bytes) => u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        Err(status) => return Ok(status as u32),
    };
    let result = memory(&caller).and_then(|mem| {
        let data = mem.data_mut(&mut caller);
        write_u32(data, len_ptr, len)?;
        write_u32(data, flags_ptr, 0)
    });
    Ok(status(result))
}

fn set_bytes(
    mut caller: Caller<'_, HostState>,
    buffer_type: u32,
    start: u32,
    size: u32,
    data_ptr: u32,
    data_len: u32,
) -> HostResult {
    if body_kind(caller.data(), buffer_type).is_some() {
        let result = memory(&caller).and_then(|mem| {
            let (data, host) = mem.data_and_store_mut(&mut caller);
            let new = slice(data, data_ptr, data_len)?;
            let body = &mut host.http.body;
            let start = (start as usize).min(body.len());
            let end = start.saturating_add(size as usize).min(body.len());
            body.splice(start..end, new.iter().copied());
            Ok(())
        });
        return Ok(status(result));
    }
    let result = memory(&caller).and_then(|mem| {
        slice(mem.data(&caller), data_ptr, data_len)?;
        buffer(caller.data(), buffer_type).map(|_| ())
    });
    let result = match result {
        // The configuration buffers are read-only.
        Ok(()) => {
            caller.data_mut().call.host_note =
                Some("proxy_set_buffer_bytes: this buffer is read-only".into());
            Err(Status::BadArgument)
        }
        Err(status) => Err(status),
    };
    Ok(status(result))
}

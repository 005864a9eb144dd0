//! Stream control: `proxy_send_local_response`, `proxy_continue_stream`,
//! `proxy_close_stream`, `proxy_set_effective_context`, `proxy_done`, `proxy_get_status`.
//!
//! As in Envoy, nothing happens inside the guest call: the request is recorded in the
//! call's `Deferred` actions and applied once the callback returns (see `outcome::decide`).

use bytes::Bytes;
use wasmtime::{Caller, Linker};

use super::memory::{memory, slice, write_u32};
use super::{HostResult, Status, pairs, status};
use crate::wasm::host::{HostState, Phase};
use crate::wasm::types::LocalResponse;

pub(crate) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_send_local_response", send_local_response)?;
    linker.func_wrap("env", "proxy_continue_stream", continue_stream)?;
    linker.func_wrap("env", "proxy_close_stream", close_stream)?;
    linker.func_wrap("env", "proxy_set_effective_context", set_effective_context)?;
    linker.func_wrap("env", "proxy_done", done)?;
    linker.func_wrap("env", "proxy_get_status", get_status)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)] // the ABI's signature
fn send_local_response(
    mut caller: Caller<'_, HostState>,
    status_code: u32,
    details_ptr: u32,
    details_len: u32,
    body_ptr: u32,
    body_len: u32,
    headers_ptr: u32,
    headers_len: u32,
    grpc_status: i32,
) -> HostResult {
    let result = memory(&caller).and_then(|mem| {
        let (data, host) = mem.data_and_store_mut(&mut caller);
        let details = slice(data, details_ptr, details_len)?;
        let body = slice(data, body_ptr, body_len)?;
        let headers = slice(data, headers_ptr, headers_len)?;
        if !host.http.info.present || host.call.deferred.local_response.is_some() {
            // No stream to answer (root context), or already answered: ignored, as Envoy.
            return Ok(());
        }
        let mut headers: Vec<(String, String)> = pairs::parse(headers)
            .into_iter()
            .map(|(name, value)| (lossy(name).to_ascii_lowercase(), lossy(value)))
            .collect();
        if (0..=16).contains(&grpc_status) {
            headers.push(("grpc-status".to_owned(), grpc_status.to_string()));
        }
        host.call.deferred.local_response = Some(LocalResponse {
            status: u16::try_from(status_code)
                .ok()
                .filter(|code| (100..=599).contains(code))
                .unwrap_or(500),
            headers,
            body: Bytes::copy_from_slice(body),
            details: lossy(details),
        });
        Ok(())
    });
    Ok(status(result))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `proxy_stream_type_t`: 0 request, 1 response, 2 downstream, 3 upstream.
fn continue_stream(mut caller: Caller<'_, HostState>, stream_type: u32) -> HostResult {
    let deferred = &mut caller.data_mut().call.deferred;
    let result = match stream_type {
        0 => {
            deferred.continue_request = true;
            Ok(())
        }
        1 => {
            deferred.continue_response = true;
            Ok(())
        }
        // No TCP streams here; Envoy answers these two the same way.
        2 => Ok(()),
        3 => Err(Status::Unimplemented),
        _ => Err(Status::BadArgument),
    };
    Ok(status(result))
}

fn close_stream(mut caller: Caller<'_, HostState>, stream_type: u32) -> HostResult {
    let deferred = &mut caller.data_mut().call.deferred;
    let result = match stream_type {
        0 => {
            deferred.close_request = true;
            Ok(())
        }
        1 => {
            deferred.close_response = true;
            Ok(())
        }
        2 | 3 => Ok(()),
        _ => Err(Status::BadArgument),
    };
    Ok(status(result))
}

fn set_effective_context(mut caller: Caller<'_, HostState>, context_id: u32) -> HostResult {
    let host = caller.data_mut();
    let known = context_id == host.call.context_id
        || context_id == host.root_context_id
        || host.http_contexts.contains(&context_id);
    if !known {
        return Ok(Status::BadArgument as u32);
    }
    host.switch_effective(context_id);
    Ok(Status::Ok as u32)
}

/// Only a root context finishing asynchronously (its `proxy_on_done` returned false) may
/// call `proxy_done`; otherwise Envoy answers `NotFound`.
fn done(mut caller: Caller<'_, HostState>) -> HostResult {
    let host = caller.data_mut();
    if host.call.phase == Phase::Done && host.call.context_id == host.root_context_id {
        host.call.done_called = true;
        return Ok(Status::Ok as u32);
    }
    Ok(Status::NotFound as u32)
}

/// The status of the last gRPC call: this host makes none (the gRPC calls answer
/// `Unimplemented`), so code 0 and no message. An HTTP call's answer carries its status in
/// the `:status` header of `proxy_on_http_call_response`.
fn get_status(
    mut caller: Caller<'_, HostState>,
    code_ptr: u32,
    msg_ptr_ptr: u32,
    msg_len_ptr: u32,
) -> HostResult {
    let result = memory(&caller).and_then(|mem| {
        let data = mem.data_mut(&mut caller);
        write_u32(data, code_ptr, 0)?;
        write_u32(data, msg_ptr_ptr, 0)?;
        write_u32(data, msg_len_ptr, 0)
    });
    Ok(status(result))
}

//! Buffers: `proxy_get_buffer_bytes`, `proxy_get_buffer_status`, `proxy_set_buffer_bytes`.
//!
//! Available so far: `VM_CONFIGURATION` (always; empty) and `PLUGIN_CONFIGURATION` (during
//! `proxy_on_configure`, as in Envoy). Body, call and foreign-function buffers answer
//! `NotFound` until their phases exist. Configuration buffers are read-only
//! (`BadArgument` on write, as Envoy's constant buffers).

use std::sync::Arc;

use wasmtime::{Caller, Linker};

use super::memory::{memory, return_scratch, slice, write_u32};
use super::{HostResult, Status, status};
use crate::wasm::host::{HostState, Phase};

const MAX_BUFFER_TYPE: u32 = 8;
const VM_CONFIGURATION: u32 = 6;
const PLUGIN_CONFIGURATION: u32 = 7;

pub(crate) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_get_buffer_bytes", get_bytes)?;
    linker.func_wrap("env", "proxy_get_buffer_status", get_status)?;
    linker.func_wrap("env", "proxy_set_buffer_bytes", set_bytes)?;
    Ok(())
}

/// The buffer `buffer_type` names right now.
fn buffer(host: &HostState, buffer_type: u32) -> Result<Arc<[u8]>, Status> {
    match buffer_type {
        VM_CONFIGURATION => Ok(Arc::clone(&host.plugin.vm_configuration)),
        PLUGIN_CONFIGURATION if host.call.phase == Phase::Configure => {
            Ok(Arc::clone(&host.plugin.configuration))
        }
        t if t > MAX_BUFFER_TYPE => Err(Status::BadArgument),
        _ => Err(Status::NotFound),
    }
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
    let bytes = match buffer(host, buffer_type) {
        Ok(bytes) => bytes,
        Err(status) => return Ok(status as u32),
    };
    // Envoy clamps the window to the buffer instead of failing.
    let start = (start as usize).min(bytes.len());
    let end = start.saturating_add(max_size as usize).min(bytes.len());
    host.scratch.clear();
    host.scratch.extend_from_slice(&bytes[start..end]);
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
    _start: u32,
    _size: u32,
    data_ptr: u32,
    data_len: u32,
) -> HostResult {
    let result = memory(&caller).and_then(|mem| {
        slice(mem.data(&caller), data_ptr, data_len)?;
        buffer(caller.data(), buffer_type).map(|_| ())
    });
    let result = match result {
        // The configuration buffers are read-only.
        Ok(()) => {
            caller.data_mut().call.host_note =
                Some("proxy_set_buffer_bytes: the configuration buffers are read-only".into());
            Err(Status::BadArgument)
        }
        Err(status) => Err(status),
    };
    Ok(status(result))
}

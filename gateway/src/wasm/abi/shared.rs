//! Shared data and shared queues (`proxy_{get,set}_shared_data`,
//! `proxy_{register,resolve,enqueue,dequeue}_shared_queue`) over the process-wide store
//! of [`crate::wasm::shared`]: visible to every VM of the plugin on every worker thread.
//!
//! Statuses, as Envoy (and the only ones the Rust SDK accepts): get → `Ok` or `NotFound`;
//! set → `Ok` or `CasMismatch`; resolve → `Ok` or `NotFound`; enqueue → `Ok` or
//! `NotFound`; dequeue → `Ok`, `Empty` or `NotFound`. The vm_id is the plugin's name; an
//! empty vm_id in `resolve` means the caller's own.

use wasmtime::{Caller, Linker};

use super::memory::{memory, return_scratch, slice, write_u32};
use super::{HostResult, Status, status};
use crate::wasm::host::HostState;
use crate::wasm::shared::{DATA, QUEUES, QueueError, QueueOwner, SetError};

pub(crate) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_get_shared_data", get_shared_data)?;
    linker.func_wrap("env", "proxy_set_shared_data", set_shared_data)?;
    linker.func_wrap("env", "proxy_register_shared_queue", register_queue)?;
    linker.func_wrap("env", "proxy_resolve_shared_queue", resolve_queue)?;
    linker.func_wrap("env", "proxy_enqueue_shared_queue", enqueue)?;
    linker.func_wrap("env", "proxy_dequeue_shared_queue", dequeue)?;
    Ok(())
}

fn get_shared_data(
    mut caller: Caller<'_, HostState>,
    key_ptr: u32,
    key_len: u32,
    value_ptr_ptr: u32,
    value_len_ptr: u32,
    cas_ptr: u32,
) -> HostResult {
    let found = memory(&caller).and_then(|mem| {
        let (data, host) = mem.data_and_store_mut(&mut caller);
        let key = slice(data, key_ptr, key_len)?;
        let (value, cas) = DATA.get(&host.plugin.name, key).ok_or(Status::NotFound)?;
        host.scratch.clear();
        host.scratch.extend_from_slice(&value);
        Ok(cas)
    });
    let cas = match found {
        Ok(cas) => cas,
        Err(status) => return Ok(status as u32),
    };
    if let Err(status) = return_scratch(&mut caller, value_ptr_ptr, value_len_ptr)? {
        return Ok(status as u32);
    }
    Ok(status(memory(&caller).and_then(|mem| {
        write_u32(mem.data_mut(&mut caller), cas_ptr, cas)
    })))
}

fn set_shared_data(
    mut caller: Caller<'_, HostState>,
    key_ptr: u32,
    key_len: u32,
    value_ptr: u32,
    value_len: u32,
    cas: u32,
) -> HostResult {
    Ok(status(memory(&caller).and_then(|mem| {
        let (data, host) = mem.data_and_store_mut(&mut caller);
        let key = slice(data, key_ptr, key_len)?;
        let value = slice(data, value_ptr, value_len)?;
        DATA.set(&host.plugin.name, key, value, cas)
            .map_err(|SetError::CasMismatch| Status::CasMismatch)
    })))
}

fn register_queue(
    mut caller: Caller<'_, HostState>,
    name_ptr: u32,
    name_len: u32,
    token_ptr: u32,
) -> HostResult {
    Ok(status(memory(&caller).and_then(|mem| {
        let (data, host) = mem.data_and_store_mut(&mut caller);
        let name = slice(data, name_ptr, name_len)?;
        let owner = QueueOwner {
            filter_id: host.plugin.filter_id,
            root_context_id: host.root_context_id,
            handle: tokio::runtime::Handle::try_current().ok(),
        };
        let token = QUEUES.register(&host.plugin.name, name, owner);
        if !host.registered_queues.contains(&token) {
            host.registered_queues.push(token);
        }
        write_u32(data, token_ptr, token)
    })))
}

fn resolve_queue(
    mut caller: Caller<'_, HostState>,
    vm_id_ptr: u32,
    vm_id_len: u32,
    name_ptr: u32,
    name_len: u32,
    token_ptr: u32,
) -> HostResult {
    Ok(status(memory(&caller).and_then(|mem| {
        let (data, host) = mem.data_and_store_mut(&mut caller);
        let vm_id = slice(data, vm_id_ptr, vm_id_len)?;
        let name = slice(data, name_ptr, name_len)?;
        let vm_id = match vm_id {
            [] => host.plugin.name.to_string(),
            bytes => String::from_utf8_lossy(bytes).into_owned(),
        };
        let token = QUEUES.resolve(&vm_id, name).ok_or(Status::NotFound)?;
        write_u32(data, token_ptr, token)
    })))
}

fn enqueue(caller: Caller<'_, HostState>, token: u32, ptr: u32, len: u32) -> HostResult {
    Ok(status(memory(&caller).and_then(|mem| {
        let data = mem.data(&caller);
        let item = slice(data, ptr, len)?;
        QUEUES
            .enqueue(token, item, crate::wasm::registry::notify_queue_ready)
            .map_err(queue_status)
    })))
}

fn dequeue(
    mut caller: Caller<'_, HostState>,
    token: u32,
    value_ptr_ptr: u32,
    value_len_ptr: u32,
) -> HostResult {
    let item = match QUEUES.dequeue(token) {
        Ok(item) => item,
        Err(e) => return Ok(queue_status(e) as u32),
    };
    caller.data_mut().scratch = item;
    Ok(status(return_scratch(
        &mut caller,
        value_ptr_ptr,
        value_len_ptr,
    )?))
}

fn queue_status(error: QueueError) -> Status {
    match error {
        QueueError::NotFound => Status::NotFound,
        QueueError::Empty => Status::Empty,
    }
}

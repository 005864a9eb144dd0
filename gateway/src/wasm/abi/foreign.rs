//! `proxy_call_foreign_function`: calls a named host function of
//! [`crate::wasm::foreign`] with the guest's argument bytes and hands back its result.
//!
//! Statuses, as Envoy and the SDK: `Ok`, `NotFound` (no such function), `BadArgument`,
//! `InternalFailure`.

use wasmtime::{Caller, Linker};

use super::memory::{memory, return_scratch, slice};
use super::{HostResult, Status, status};
use crate::wasm::foreign::{ForeignCaller, ForeignError};
use crate::wasm::host::HostState;

pub(crate) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_call_foreign_function", call)?;
    Ok(())
}

fn call(
    mut caller: Caller<'_, HostState>,
    name_ptr: u32,
    name_len: u32,
    args_ptr: u32,
    args_len: u32,
    results_ptr_ptr: u32,
    results_len_ptr: u32,
) -> HostResult {
    let result = memory(&caller).and_then(|mem| {
        let (data, host) = mem.data_and_store_mut(&mut caller);
        let name = slice(data, name_ptr, name_len)?;
        let args = slice(data, args_ptr, args_len)?;
        let plugin = &host.plugin;
        let function = plugin.foreign.get(name).ok_or(Status::NotFound)?;
        let who = ForeignCaller {
            plugin: &plugin.name,
            upstreams: &plugin.upstreams,
        };
        match function(who, args) {
            Ok(result) => {
                host.scratch = result;
                Ok(())
            }
            Err(error) => {
                let (status, why) = match error {
                    ForeignError::BadArgument(why) => (Status::BadArgument, why),
                    ForeignError::Failed(why) => (Status::InternalFailure, why),
                };
                let function = String::from_utf8_lossy(name);
                host.call.host_note = Some(format!("foreign function `{function}`: {why}"));
                Err(status)
            }
        }
    });
    if let Err(status) = result {
        return Ok(status as u32);
    }
    Ok(status(return_scratch(
        &mut caller,
        results_ptr_ptr,
        results_len_ptr,
    )?))
}

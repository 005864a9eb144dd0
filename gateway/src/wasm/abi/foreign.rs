//! `proxy_call_foreign_function`: calls a named host function of
//! [`crate::wasm::foreign`] with the guest's argument bytes and hands back its result — or,
//! for an asynchronous function, queues its work beside the context's HTTP calls and hands
//! back the call's id (u32 LE); the answer comes later with `proxy_on_foreign_function`.
//!
//! Statuses, as Envoy and the SDK: `Ok`, `NotFound` (no such function), `BadArgument`
//! (malformed arguments; an asynchronous function called outside an HTTP context),
//! `InternalFailure` (a failing function; too many calls queued).

use std::sync::Arc;

use wasmtime::{Caller, Linker};

use super::callouts::MAX_QUEUED_CALLS;
use super::memory::{memory, return_scratch, slice};
use super::{HostResult, Status, status};
use crate::wasm::callout::{CalloutRequest, ForeignCall, Work};
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
        let plugin = Arc::clone(&host.plugin);
        let who = ForeignCaller {
            plugin: &plugin.name,
            upstreams: &plugin.upstreams,
        };
        let outcome = match plugin.foreign.get(name) {
            Some(function) => function(who, args),
            None => {
                let Some((function, start)) = plugin.foreign.get_async(name) else {
                    return Err(Status::NotFound);
                };
                start(who, args).and_then(|work| {
                    let call = ForeignCall {
                        function: Arc::from(function),
                        work: std::sync::Mutex::new(work),
                        registry: Arc::clone(&plugin.foreign),
                    };
                    queue(host, call).map(|id| id.to_le_bytes().to_vec())
                })
            }
        };
        match outcome {
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

/// Queues an asynchronous call for the effective context (an HTTP context) and returns
/// its id, from the sequence of HTTP call tokens.
fn queue(host: &mut HostState, call: ForeignCall) -> Result<u32, ForeignError> {
    let context_id = host.call.effective_context_id;
    if !host.http_contexts.contains(&context_id) {
        return Err(ForeignError::BadArgument(
            "asynchronous functions are called from HTTP contexts only".into(),
        ));
    }
    if host.callouts.len() >= MAX_QUEUED_CALLS {
        return Err(ForeignError::Failed(format!(
            "more than {MAX_QUEUED_CALLS} calls queued"
        )));
    }
    host.last_token = host.last_token.wrapping_add(1).max(1);
    let token = host.last_token;
    host.callouts.push(CalloutRequest {
        context_id,
        token,
        work: Work::Foreign(call),
    });
    Ok(token)
}

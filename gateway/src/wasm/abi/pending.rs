//! Host functions this gateway does not offer yet: timers, shared data and queues,
//! metrics, HTTP and gRPC callouts. They answer `Unimplemented` (the Rust SDK then
//! panics, so the plugin's VM is replaced and the fault names the function), which turns
//! a plugin that needs them into a clear load-time error when it calls them while
//! starting, and a clear fault otherwise.
//!
//! `proxy_call_foreign_function` is complete in its own way: no foreign functions are
//! registered yet, and an unknown name answers `NotFound`, as in Envoy.

use wasmtime::{Caller, Linker};

use super::{HostResult, Status};
use crate::wasm::host::HostState;

/// Records which function was refused (it explains the trap that usually follows).
fn unimplemented(caller: &mut Caller<'_, HostState>, name: &'static str) -> u32 {
    let host = caller.data_mut();
    tracing::warn!(
        plugin = &*host.plugin.name,
        function = name,
        "plugin called a Proxy-Wasm host function this gateway does not implement yet"
    );
    host.call.unimplemented = Some(name);
    Status::Unimplemented as u32
}

macro_rules! pending {
    ($linker:expr, $name:literal, ($($arg:ident: $ty:ty),*)) => {
        $linker.func_wrap(
            "env",
            $name,
            |mut caller: Caller<'_, HostState>, $($arg: $ty),*| -> HostResult {
                $(let _ = $arg;)*
                Ok(unimplemented(&mut caller, $name))
            },
        )?
    };
}

pub(crate) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    pending!(linker, "proxy_set_tick_period_milliseconds", (period: u32));
    pending!(linker, "proxy_get_shared_data", (a: u32, b: u32, c: u32, d: u32, e: u32));
    pending!(linker, "proxy_set_shared_data", (a: u32, b: u32, c: u32, d: u32, e: u32));
    pending!(linker, "proxy_register_shared_queue", (a: u32, b: u32, c: u32));
    pending!(linker, "proxy_resolve_shared_queue", (a: u32, b: u32, c: u32, d: u32, e: u32));
    pending!(linker, "proxy_enqueue_shared_queue", (a: u32, b: u32, c: u32));
    pending!(linker, "proxy_dequeue_shared_queue", (a: u32, b: u32, c: u32));
    pending!(linker, "proxy_define_metric", (a: u32, b: u32, c: u32, d: u32));
    pending!(linker, "proxy_record_metric", (id: u32, value: u64));
    pending!(linker, "proxy_increment_metric", (id: u32, offset: i64));
    pending!(linker, "proxy_get_metric", (id: u32, ptr: u32));
    pending!(linker, "proxy_http_call", (
        a: u32, b: u32, c: u32, d: u32, e: u32, f: u32, g: u32, h: u32, i: u32, j: u32
    ));
    pending!(linker, "proxy_grpc_call", (
        a: u32, b: u32, c: u32, d: u32, e: u32, f: u32, g: u32, h: u32, i: u32, j: u32,
        k: u32, l: u32
    ));
    pending!(linker, "proxy_grpc_stream", (
        a: u32, b: u32, c: u32, d: u32, e: u32, f: u32, g: u32, h: u32, i: u32
    ));
    pending!(linker, "proxy_grpc_send", (a: u32, b: u32, c: u32, d: u32));
    pending!(linker, "proxy_grpc_cancel", (token: u32));
    pending!(linker, "proxy_grpc_close", (token: u32));
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |_: Caller<'_, HostState>, _: u32, _: u32, _: u32, _: u32, _: u32, _: u32| -> HostResult {
            Ok(Status::NotFound as u32)
        },
    )?;
    Ok(())
}

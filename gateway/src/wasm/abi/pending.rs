//! Host functions this gateway does not offer: gRPC calls. They answer `Unimplemented` (the Rust SDK then
//! panics, so the plugin's VM is replaced and the fault names the function), which turns
//! a plugin that needs them into a clear load-time error when it calls them while
//! starting, and a clear fault otherwise.

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
    Ok(())
}

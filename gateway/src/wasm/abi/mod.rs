//! The host side of the Proxy-Wasm ABI (0.2.1 and 0.2.0): every `env.proxy_*` function a
//! module built with a Proxy-Wasm SDK may import, plus the WASI preview-1 functions those
//! modules import.
//!
//! Status codes follow Envoy's host exactly: the Rust SDK panics (traps) on any status it
//! does not expect, so "close enough" is not enough. The one family the gateway does not
//! offer, the gRPC calls, answers [`Status::Unimplemented`] (the SDK then traps; the fault
//! names the function).
//!
//! Layout: [`memory`] (guest memory access and the allocator), [`pairs`] (the map
//! serialization), [`log`] (logging, clocks), [`headers`], [`buffers`] (bodies,
//! configuration, HTTP call answers), [`callouts`] (ticks, HTTP calls), [`properties`],
//! [`shared`] (shared data and queues), [`metrics`] (plugin metrics), [`foreign`]
//! (`proxy_call_foreign_function`), [`stream`] (local responses, continue/close,
//! effective context, status), [`pending`] (the gRPC calls: `Unimplemented`), [`wasi`].

pub(crate) mod buffers;
pub(crate) mod callouts;
pub(crate) mod foreign;
pub(crate) mod headers;
pub(crate) mod log;
pub(crate) mod memory;
pub(crate) mod metrics;
pub(crate) mod pairs;
pub(crate) mod pending;
pub(crate) mod properties;
pub(crate) mod shared;
pub(crate) mod stream;
pub(crate) mod wasi;

use wasmtime::{Engine, Linker};

use super::host::HostState;

/// `proxy_status_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    #[allow(dead_code)] // part of the ABI; no host function offered here answers it
    ParseFailure = 4,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
    Unimplemented = 12,
}

/// The result type of most host functions: the guest sees the status; `Err` traps.
pub(crate) type HostResult = wasmtime::Result<u32>;

/// Collapses an inner result into the status the guest sees.
pub(crate) fn status(result: Result<(), Status>) -> u32 {
    match result {
        Ok(()) => Status::Ok as u32,
        Err(status) => status as u32,
    }
}

/// A guest broke the ABI badly enough that the call must stop (reported as
/// [`FaultKind::Abi`](super::FaultKind::Abi)).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct AbiViolation(pub(crate) String);

/// Builds the process-wide linker with every host function defined.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    log::define(&mut linker)?;
    headers::define(&mut linker)?;
    buffers::define(&mut linker)?;
    callouts::define(&mut linker)?;
    properties::define(&mut linker)?;
    shared::define(&mut linker)?;
    metrics::define(&mut linker)?;
    foreign::define(&mut linker)?;
    stream::define(&mut linker)?;
    pending::define(&mut linker)?;
    wasi::define(&mut linker, "wasi_snapshot_preview1")?;
    wasi::define(&mut linker, "wasi_unstable")?;
    Ok(linker)
}

/// Every `env` function of the Proxy-Wasm 0.2.1 specification (and Envoy's
/// `proxy_get_log_level`); the conformance tests check the linker defines each one.
#[cfg(test)]
pub(crate) const SPEC_HOST_FUNCTIONS: &[&str] = &[
    "proxy_log",
    "proxy_get_log_level",
    "proxy_get_current_time_nanoseconds",
    "proxy_set_tick_period_milliseconds",
    "proxy_get_buffer_bytes",
    "proxy_set_buffer_bytes",
    "proxy_get_buffer_status",
    "proxy_get_header_map_pairs",
    "proxy_set_header_map_pairs",
    "proxy_get_header_map_value",
    "proxy_get_header_map_size",
    "proxy_add_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_get_property",
    "proxy_set_property",
    "proxy_continue_stream",
    "proxy_close_stream",
    "proxy_get_status",
    "proxy_send_local_response",
    "proxy_set_effective_context",
    "proxy_done",
    "proxy_call_foreign_function",
    "proxy_http_call",
    "proxy_grpc_call",
    "proxy_grpc_stream",
    "proxy_grpc_send",
    "proxy_grpc_cancel",
    "proxy_grpc_close",
    "proxy_get_shared_data",
    "proxy_set_shared_data",
    "proxy_register_shared_queue",
    "proxy_resolve_shared_queue",
    "proxy_enqueue_shared_queue",
    "proxy_dequeue_shared_queue",
    "proxy_define_metric",
    "proxy_record_metric",
    "proxy_increment_metric",
    "proxy_get_metric",
];

/// The WASI functions of the specification, plus the few more Proxy-Wasm SDKs import.
#[cfg(test)]
pub(crate) const WASI_FUNCTIONS: &[&str] = &[
    "fd_write",
    "fd_read",
    "fd_seek",
    "fd_close",
    "fd_fdstat_get",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "environ_get",
    "environ_sizes_get",
    "args_get",
    "args_sizes_get",
    "clock_time_get",
    "clock_res_get",
    "random_get",
    "sched_yield",
    "poll_oneoff",
    "proc_exit",
];

//! Logging and clocks: `proxy_log`, `proxy_get_log_level`,
//! `proxy_get_current_time_nanoseconds`. Guest log lines become `tracing` events with
//! target `aistack::wasm::guest`, tagged with the plugin and context.

use std::time::{SystemTime, UNIX_EPOCH};

use tracing::level_filters::LevelFilter;
use wasmtime::{Caller, Linker};

use super::memory::{memory, slice, write_u32, write_u64};
use super::{HostResult, Status, status};
use crate::wasm::host::HostState;

/// Longest guest error line kept to explain a later fault.
const KEPT_ERROR_BYTES: usize = 1024;

pub(crate) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_log", proxy_log)?;
    linker.func_wrap("env", "proxy_get_log_level", proxy_get_log_level)?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        proxy_get_current_time_nanoseconds,
    )?;
    Ok(())
}

fn proxy_log(mut caller: Caller<'_, HostState>, level: u32, ptr: u32, len: u32) -> HostResult {
    if level > 5 {
        return Ok(Status::BadArgument as u32);
    }
    let result = memory(&caller).and_then(|mem| {
        let (data, host) = mem.data_and_store_mut(&mut caller);
        let message = slice(data, ptr, len)?;
        emit(host, level, message);
        Ok(())
    });
    Ok(status(result))
}

/// Emits one guest log line (`proxy_log` or WASI stdout/stderr). Levels are
/// `proxy_log_level_t`: 0 trace … 4 error, 5 critical.
pub(crate) fn emit(host: &mut HostState, level: u32, message: &[u8]) {
    let text = String::from_utf8_lossy(message);
    let plugin = &*host.plugin.name;
    let context = host.call.context_id;
    match level {
        0 => tracing::trace!(target: "aistack::wasm::guest", plugin, context, "{text}"),
        1 => tracing::debug!(target: "aistack::wasm::guest", plugin, context, "{text}"),
        2 => tracing::info!(target: "aistack::wasm::guest", plugin, context, "{text}"),
        3 => tracing::warn!(target: "aistack::wasm::guest", plugin, context, "{text}"),
        _ => tracing::error!(target: "aistack::wasm::guest", plugin, context, "{text}"),
    }
    if level >= 4 {
        let mut kept = text.into_owned();
        if kept.len() > KEPT_ERROR_BYTES {
            let mut end = KEPT_ERROR_BYTES;
            while !kept.is_char_boundary(end) {
                end -= 1;
            }
            kept.truncate(end);
        }
        host.call.last_error_log = Some(kept);
    }
}

fn proxy_get_log_level(mut caller: Caller<'_, HostState>, level_ptr: u32) -> HostResult {
    let level = match LevelFilter::current() {
        LevelFilter::TRACE => 0,
        LevelFilter::DEBUG => 1,
        LevelFilter::INFO => 2,
        LevelFilter::WARN => 3,
        LevelFilter::ERROR => 4,
        _ => 5,
    };
    let result = memory(&caller).and_then(|m| write_u32(m.data_mut(&mut caller), level_ptr, level));
    Ok(status(result))
}

/// Nanoseconds since the Unix epoch, wall clock.
pub(crate) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn proxy_get_current_time_nanoseconds(mut caller: Caller<'_, HostState>, ptr: u32) -> HostResult {
    let result = memory(&caller).and_then(|m| write_u64(m.data_mut(&mut caller), ptr, now_nanos()));
    Ok(status(result))
}

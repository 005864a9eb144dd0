//! Plugin metrics: `proxy_define_metric`, `proxy_increment_metric`, `proxy_record_metric`,
//! `proxy_get_metric`, over [`crate::wasm::metrics`] (the name mapping and the cap are
//! documented there).
//!
//! Statuses, as the Rust SDK accepts them: define → `Ok` (even for a dropped metric) or
//! `BadArgument` for an unknown type or a name that is not UTF-8; increment → `Ok`,
//! `NotFound`, `BadArgument`; record → `Ok`, `NotFound`; get → `Ok`, `NotFound`,
//! `BadArgument`.

use wasmtime::{Caller, Linker};

use super::memory::{memory, slice, write_u32, write_u64};
use super::{HostResult, Status, status};
use crate::wasm::host::HostState;
use crate::wasm::metrics::{MetricError, MetricType};

pub(crate) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_define_metric", define_metric)?;
    linker.func_wrap("env", "proxy_increment_metric", increment_metric)?;
    linker.func_wrap("env", "proxy_record_metric", record_metric)?;
    linker.func_wrap("env", "proxy_get_metric", get_metric)?;
    Ok(())
}

fn define_metric(
    mut caller: Caller<'_, HostState>,
    kind: u32,
    name_ptr: u32,
    name_len: u32,
    id_ptr: u32,
) -> HostResult {
    Ok(status(memory(&caller).and_then(|mem| {
        let (data, host) = mem.data_and_store_mut(&mut caller);
        let kind = MetricType::from_abi(kind).ok_or(Status::BadArgument)?;
        let name = slice(data, name_ptr, name_len)?;
        let name = std::str::from_utf8(name).map_err(|_| Status::BadArgument)?;
        let plugin = &host.plugin;
        let id = plugin.metrics.define(&plugin.name, kind, name);
        write_u32(data, id_ptr, id)
    })))
}

fn metric_status(error: MetricError) -> Status {
    match error {
        MetricError::NotFound => Status::NotFound,
        MetricError::BadArgument => Status::BadArgument,
    }
}

fn increment_metric(caller: Caller<'_, HostState>, id: u32, offset: i64) -> HostResult {
    let plugin = &caller.data().plugin;
    Ok(status(
        plugin
            .metrics
            .increment(&plugin.name, id, offset)
            .map_err(metric_status),
    ))
}

fn record_metric(caller: Caller<'_, HostState>, id: u32, value: u64) -> HostResult {
    let plugin = &caller.data().plugin;
    Ok(status(
        plugin
            .metrics
            .record(&plugin.name, id, value)
            .map_err(metric_status),
    ))
}

fn get_metric(mut caller: Caller<'_, HostState>, id: u32, value_ptr: u32) -> HostResult {
    let plugin = &caller.data().plugin;
    let value = match plugin.metrics.get(&plugin.name, id) {
        Ok(value) => value,
        Err(e) => return Ok(metric_status(e) as u32),
    };
    Ok(status(memory(&caller).and_then(|mem| {
        write_u64(mem.data_mut(&mut caller), value_ptr, value)
    })))
}

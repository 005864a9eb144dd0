//! The WASI preview-1 functions Proxy-Wasm modules import, hand-written (no filesystem,
//! no sockets, no environment): stdout/stderr go to the log, clocks and randomness are
//! the host's, everything else answers the errno Envoy's host answers. Defined under both
//! `wasi_snapshot_preview1` and the older `wasi_unstable`.

use std::sync::OnceLock;
use std::time::Instant;

use rand::RngCore as _;
use wasmtime::{Caller, Linker};

use super::log::{emit, now_nanos};
use super::memory::{memory, read_u32, slice, slice_mut, write_u32, write_u64};
use crate::wasm::host::HostState;

const SUCCESS: u32 = 0;
const BADF: u32 = 8;
const FAULT: u32 = 21;
const INVAL: u32 = 28;
const NOSYS: u32 = 52;
const NOTSUP: u32 = 58;

/// Largest `random_get` request served (Envoy's limit).
const MAX_RANDOM_BYTES: u32 = 64 * 1024;

/// `proc_exit` was called: the guest wants to stop. Ends the call as a trap; `_start`
/// ending in `proc_exit(0)` counts as a normal return.
#[derive(Debug, thiserror::Error)]
#[error("the plugin called proc_exit({0})")]
pub(crate) struct ProcExit(pub(crate) u32);

type Wasi<'a> = Caller<'a, HostState>;

pub(crate) fn define(linker: &mut Linker<HostState>, module: &str) -> wasmtime::Result<()> {
    linker.func_wrap(module, "fd_write", fd_write)?;
    linker.func_wrap(
        module,
        "fd_read",
        |_: Wasi<'_>, _: u32, _: u32, _: u32, _: u32| NOSYS,
    )?;
    linker.func_wrap(
        module,
        "fd_seek",
        |_: Wasi<'_>, _: u32, _: i64, _: u32, _: u32| SUCCESS,
    )?;
    linker.func_wrap(module, "fd_close", |_: Wasi<'_>, _: u32| SUCCESS)?;
    linker.func_wrap(module, "fd_fdstat_get", fd_fdstat_get)?;
    linker.func_wrap(module, "fd_prestat_get", |_: Wasi<'_>, _: u32, _: u32| BADF)?;
    linker.func_wrap(
        module,
        "fd_prestat_dir_name",
        |_: Wasi<'_>, _: u32, _: u32, _: u32| NOSYS,
    )?;
    linker.func_wrap(module, "environ_sizes_get", two_zeros)?;
    linker.func_wrap(module, "environ_get", |_: Wasi<'_>, _: u32, _: u32| SUCCESS)?;
    linker.func_wrap(module, "args_sizes_get", two_zeros)?;
    linker.func_wrap(module, "args_get", |_: Wasi<'_>, _: u32, _: u32| SUCCESS)?;
    linker.func_wrap(module, "clock_time_get", clock_time_get)?;
    linker.func_wrap(module, "clock_res_get", clock_res_get)?;
    linker.func_wrap(module, "random_get", random_get)?;
    linker.func_wrap(module, "sched_yield", |_: Wasi<'_>| SUCCESS)?;
    linker.func_wrap(module, "poll_oneoff", poll_oneoff)?;
    linker.func_wrap(
        module,
        "proc_exit",
        |_: Wasi<'_>, code: u32| -> wasmtime::Result<()> { Err(ProcExit(code).into()) },
    )?;
    Ok(())
}

/// errno for a failed memory access.
fn errno(result: Result<(), super::Status>) -> u32 {
    if result.is_ok() { SUCCESS } else { FAULT }
}

/// Writes stdout (as info) and stderr (as error) into the log, one event per call, the
/// trailing newline dropped.
fn fd_write(mut caller: Wasi<'_>, fd: u32, iovs: u32, iovs_len: u32, written_ptr: u32) -> u32 {
    let level = match fd {
        1 => 2,
        2 => 4,
        _ => return BADF,
    };
    let Ok(mem) = memory(&caller) else {
        return FAULT;
    };
    let (data, host) = mem.data_and_store_mut(&mut caller);
    let mut text = std::mem::take(&mut host.scratch);
    text.clear();
    let gathered = (0..iovs_len).try_for_each(|i| -> Result<(), super::Status> {
        let entry = iovs.checked_add(i.checked_mul(8).ok_or(super::Status::InvalidMemoryAccess)?);
        let entry = entry.ok_or(super::Status::InvalidMemoryAccess)?;
        let buf = read_u32(data, entry)?;
        let len = read_u32(data, entry + 4)?;
        text.extend_from_slice(slice(data, buf, len)?);
        Ok(())
    });
    let written = u32::try_from(text.len()).unwrap_or(u32::MAX);
    if gathered.is_ok() && !text.is_empty() {
        let line = text.strip_suffix(b"\n").unwrap_or(&text);
        emit(host, level, line);
    }
    host.scratch = text;
    if gathered.is_err() {
        return FAULT;
    }
    errno(write_u32(data, written_ptr, written))
}

/// Only stdout and stderr exist: write-only character devices.
fn fd_fdstat_get(mut caller: Wasi<'_>, fd: u32, stat_ptr: u32) -> u32 {
    if fd != 1 && fd != 2 {
        return BADF;
    }
    const FD_WRITE_RIGHT: u64 = 64;
    let result = memory(&caller).and_then(|mem| {
        let data = mem.data_mut(&mut caller);
        write_u64(data, stat_ptr, 0)?;
        write_u64(data, stat_ptr.wrapping_add(8), FD_WRITE_RIGHT)?;
        write_u64(data, stat_ptr.wrapping_add(16), 0)
    });
    errno(result)
}

/// No environment variables and no arguments: both counts and sizes are zero.
fn two_zeros(mut caller: Wasi<'_>, count_ptr: u32, size_ptr: u32) -> u32 {
    let result = memory(&caller).and_then(|mem| {
        let data = mem.data_mut(&mut caller);
        write_u32(data, count_ptr, 0)?;
        write_u32(data, size_ptr, 0)
    });
    errno(result)
}

/// Monotonic nanoseconds since the first call in this process.
fn monotonic_nanos() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let elapsed = BASE.get_or_init(Instant::now).elapsed().as_nanos();
    u64::try_from(elapsed).unwrap_or(u64::MAX)
}

fn clock_time_get(mut caller: Wasi<'_>, clock: u32, _precision: u64, time_ptr: u32) -> u32 {
    let now = match clock {
        0 => now_nanos(),
        1 => monotonic_nanos(),
        _ => return NOTSUP,
    };
    errno(memory(&caller).and_then(|m| write_u64(m.data_mut(&mut caller), time_ptr, now)))
}

fn clock_res_get(mut caller: Wasi<'_>, clock: u32, res_ptr: u32) -> u32 {
    if clock > 1 {
        return NOTSUP;
    }
    errno(memory(&caller).and_then(|m| write_u64(m.data_mut(&mut caller), res_ptr, 1)))
}

/// Fills the buffer from the thread's CSPRNG (ChaCha, seeded and reseeded from the OS).
fn random_get(mut caller: Wasi<'_>, buf: u32, len: u32) -> u32 {
    if len > MAX_RANDOM_BYTES {
        return INVAL;
    }
    let result = memory(&caller).and_then(|mem| {
        let target = slice_mut(mem.data_mut(&mut caller), buf, len as usize)?;
        rand::rng().fill_bytes(target);
        Ok(())
    });
    errno(result)
}

/// No events are ever ready; Go's runtime needs this to succeed.
fn poll_oneoff(mut caller: Wasi<'_>, _in: u32, _out: u32, _count: u32, events_ptr: u32) -> u32 {
    errno(memory(&caller).and_then(|m| write_u32(m.data_mut(&mut caller), events_ptr, 0)))
}

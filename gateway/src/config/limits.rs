//! `server.plugins` validated: the limits the plugin runtime is built with, within the
//! bounds [`RuntimeOptions`] accepts, each error at its key.

use std::time::Duration;

use super::error::Diagnostics;
use super::surface::PluginLimitsConf;
use crate::wasm::RuntimeOptions;

/// The limits every plugin VM runs under (`server.plugins`). Applied at start only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLimits {
    /// Most linear memory one VM may use, in bytes.
    pub memory_limit: usize,
    /// Longest one guest call may run.
    pub call_deadline: Duration,
    /// Plugin entries the pool of VMs is sized for.
    pub max_plugins: usize,
    /// Largest request body buffered for a filter that holds the headers for it.
    pub max_buffered_body: usize,
}

/// The most a buffered request body may be: Pingora replays a body read before the
/// upstream request from its retry buffer, which holds 64 KiB.
pub const MAX_BUFFERED_BODY: usize = 64 * 1024;
const MIN_BUFFERED_BODY: usize = 1024;

impl PluginLimits {
    /// Whether the runtime-shaping limits (all but the body limit) differ: those need a
    /// restart.
    pub fn restart_needed(&self, other: &PluginLimits) -> bool {
        (self.memory_limit, self.call_deadline, self.max_plugins)
            != (other.memory_limit, other.call_deadline, other.max_plugins)
    }
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory_limit: RuntimeOptions::DEFAULT_MEMORY_LIMIT,
            call_deadline: RuntimeOptions::DEFAULT_CALL_DEADLINE,
            max_plugins: RuntimeOptions::DEFAULT_MAX_PLUGINS,
            max_buffered_body: MAX_BUFFERED_BODY,
        }
    }
}

/// Checks `conf` against the runtime's bounds; `threads` (the validated `server.threads`)
/// sizes the pool with `max_plugins`. A value out of range is recorded and the default
/// kept, so that validation goes on.
pub(super) fn plugin_limits(
    d: &mut Diagnostics,
    conf: &PluginLimitsConf,
    threads: usize,
) -> PluginLimits {
    let mut limits = PluginLimits::default();
    let memory = &conf.memory_limit;
    let min_memory = u64::try_from(RuntimeOptions::MIN_MEMORY_LIMIT).unwrap_or(u64::MAX);
    match usize::try_from(memory.value.0) {
        Ok(bytes) if (min_memory..=RuntimeOptions::MAX_MEMORY_LIMIT).contains(&memory.value.0) => {
            limits.memory_limit = bytes;
        }
        _ => d.error(
            &memory.referenced,
            "server.plugins.memory_limit",
            "must be between 64KiB (one WebAssembly page) and 4GiB (what a 32-bit \
             WebAssembly memory can address)",
        ),
    }
    let deadline = &conf.call_deadline;
    let range = RuntimeOptions::MIN_CALL_DEADLINE..=RuntimeOptions::MAX_CALL_DEADLINE;
    if range.contains(&deadline.value.0) {
        limits.call_deadline = deadline.value.0;
    } else {
        d.error(
            &deadline.referenced,
            "server.plugins.call_deadline",
            "must be between 1ms and 10s (a callback holds its worker thread while it runs)",
        );
    }
    let max_plugins = &conf.max_plugins;
    let slots = RuntimeOptions::pool_slots(threads, max_plugins.value);
    if max_plugins.value == 0 {
        d.error(
            &max_plugins.referenced,
            "server.plugins.max_plugins",
            "must be at least 1",
        );
    } else if slots > RuntimeOptions::MAX_POOL_SLOTS {
        d.error(
            &max_plugins.referenced,
            "server.plugins.max_plugins",
            format!(
                "too large: with {threads} threads, {} plugin entries need {slots} VM slots \
                 ((threads + 2) × max_plugins × 2), each reserving 4GiB of address space; at \
                 most {} fit: lower it or `server.threads`",
                max_plugins.value,
                RuntimeOptions::MAX_POOL_SLOTS
            ),
        );
    } else {
        limits.max_plugins = max_plugins.value;
    }
    let body = &conf.max_buffered_body;
    match usize::try_from(body.value.0) {
        Ok(bytes) if (MIN_BUFFERED_BODY..=MAX_BUFFERED_BODY).contains(&bytes) => {
            limits.max_buffered_body = bytes;
        }
        _ => d.error(
            &body.referenced,
            "server.plugins.max_buffered_body",
            "must be between 1KiB and 64KiB (Pingora replays a buffered body from its 64 KiB \
             retry buffer); bodies that stream through the filters have no limit",
        ),
    }
    limits
}

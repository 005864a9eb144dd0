//! The Proxy-Wasm host: runs WebAssembly filters written against the standard Proxy-Wasm
//! ABI (0.2.1 and 0.2.0) — a filter built for Envoy with the `proxy-wasm` SDK runs here
//! unmodified — on wasmtime.
//!
//! Start with [`WasmRuntime`] (one per process): [`WasmRuntime::load_module`] compiles a
//! module once, [`WasmRuntime::filter`] configures it (and refuses a bad configuration at
//! load). Per request, [`HttpFilters`] drives a route's chain through the phases and
//! returns [`Decision`]s; a misbehaving filter yields a [`PluginFault`] and never takes
//! the gateway down (memory limit, per-call deadline, traps caught, VM replaced). Faults
//! no request answers for (root-context callbacks, `on_log`, `on_done`, `on_delete`) are
//! counted by the host itself, in [`RuntimeOptions::fault_counter`].
//!
//! # Lifecycle
//!
//! ```text
//!  control plane                          each worker thread, lazily, once per filter
//!  ─────────────                          ───────────────────────────────────────────
//!  load_module ── compile, validate,      instantiate (pooling allocator)
//!                 instantiate_pre         → _initialize
//!  filter ─────── starts one VM here ───→ → proxy_on_context_create(root, 0)
//!                 (bad config = Err;      → proxy_on_vm_start → proxy_on_configure
//!                  the first thread to run the filter adopts this VM)
//!
//!  per request (HttpFilters, on the request's thread)
//!  on_request_headers ─→ [first call] proxy_on_context_create(ctx, root)
//!                     ─→ proxy_on_request_headers(ctx, n, eos)   each filter, in order
//!                     ─→ [paused for a callout] perform it on this thread,
//!                        proxy_on_http_call_response(ctx, token, …); resumed → next
//!                     ─→ [paused for an async foreign call] run it on this thread,
//!                        proxy_on_foreign_function(ctx, id, size), answer in CallData
//!                     ─→ [paused, no call] parked until another context (the root's
//!                        on_tick / on_http_call_response) resumes or answers it
//!  request_body ───────→ proxy_on_request_body(ctx, size, true)   whole body, buffered
//!  on_response_headers ─→ proxy_on_response_headers(ctx, n, eos) each filter, reversed
//!  response_body ──────→ proxy_on_response_body(ctx, size, eos)  per chunk; Pause =
//!                        buffer until the filter continues or the stream ends
//!  on_log ─────────────→ proxy_on_log(ctx) … then proxy_on_done, proxy_on_delete
//!  drop without on_log ─→ proxy_on_done(ctx) → proxy_on_delete(ctx)
//! ```
//!
//! Every phase returns `Continue`, `Pause` or `Respond(local response)`; local responses,
//! stream closes and resumes the guest asks for are applied after its call returns, as
//! Envoy does.
//!
//! # Threads and VMs
//!
//! One VM per (worker thread, filter instance), many HTTP contexts inside it (Envoy's
//! model): Pingora runs with `work_stealing: false`, so a request stays on its thread.
//! A VM that traps, overruns its deadline or runs out of memory is discarded and the
//! next request starts a fresh one; contexts that lived in it answer as faults.
//! A root context that asked for ticks (`proxy_set_tick_period_milliseconds`) is ticked
//! on every thread holding a VM of its filter, from that VM's first request there on;
//! HTTP calls the root context dispatches are performed by the same per-thread pump. VMs of
//! filters dropped by a reload are freed by their thread shortly after.
//!
//! # Layout
//!
//! `runtime` (engine, linker, pool, epoch ticker) · `callout` (HTTP callouts: named
//! upstreams, performing a call; asynchronous foreign calls travel the same way) ·
//! `foreign` (named host functions, sync and async) · `ticker` (per-thread `on_tick` pump and root-context
//! calls) · `plugin` (modules, filter
//! instances) · `vm` (one instance and its calls) · `park` (requests paused for
//! another context) · `outcome` (actions to
//! decisions, errors to faults) · `registry` (the per-thread VM map) ·
//! `filters` (the per-request chain) · `host` (the Store's data) · `abi` (the host
//! functions) · `builtin` (the embedded filters of `plugins/`).

mod abi;
mod builtin;
mod callout;
mod error;
mod filters;
mod foreign;
mod host;
mod metrics;
mod outcome;
mod park;
mod plugin;
mod registry;
mod runtime;
mod shared;
mod ticker;
mod types;
mod vm;

#[cfg(test)]
mod tests;

pub use builtin::{builtin_module_bytes, builtin_names};
pub use callout::{CalloutUpstreams, MAX_CALLOUT_BODY_BYTES};
pub use error::{FaultKind, PluginFault, WasmError};
pub use filters::HttpFilters;
pub use foreign::{
    ANSWER_FAILED, ANSWER_OK, ANSWER_TIMED_OUT, AsyncForeignFunction, ForeignCaller, ForeignError,
    ForeignFunction, ForeignFunctions, ForeignFuture, MAX_ASYNC_CALL,
};
pub use metrics::MAX_SERIES_PER_PLUGIN;
pub use outcome::CLOSE_STREAM_DETAILS;
pub use plugin::{FilterInstance, FilterSettings, PluginModule};
pub use runtime::{RuntimeOptions, WasmRuntime};
pub use types::{Decision, LocalResponse, RequestInfo, UpstreamChoice};

//! Faults no request answers for (the root context's `proxy_on_tick`, `proxy_on_log`,
//! `proxy_on_done`, …) are counted in the runtime's fault counter, the gateway's
//! `aistack_plugin_errors_total`; a request's own fault is returned for the proxy to count,
//! and counts once.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, Opts};

use super::asm::{self, I32, op, proxy_base, proxy_module};
use super::{info, request};
use crate::wasm::{FaultKind, FilterInstance, HttpFilters, RuntimeOptions, WasmRuntime, registry};

/// A runtime of its own, counting into a counter shaped like the gateway's.
fn counted() -> &'static (WasmRuntime, IntCounterVec) {
    static COUNTED: OnceLock<(WasmRuntime, IntCounterVec)> = OnceLock::new();
    COUNTED.get_or_init(|| {
        let opts = Opts::new("plugin_errors_total", "plugin faults");
        let counter = IntCounterVec::new(opts, &["plugin", "kind"]).expect("a valid counter");
        let options = RuntimeOptions {
            worker_threads: 2,
            max_plugins: 8,
            fault_counter: Some(counter.clone()),
            ..RuntimeOptions::default()
        };
        let runtime = WasmRuntime::new(options).expect("the WASM runtime starts");
        (runtime, counter)
    })
}

fn errors(plugin: &str, kind: FaultKind) -> u64 {
    counted()
        .1
        .with_label_values(&[plugin, kind.as_str()])
        .get()
}

fn filter(name: &str, wasm: &[u8]) -> Arc<FilterInstance> {
    let runtime = &counted().0;
    let module = runtime.load_module(name, wasm).expect("loads");
    runtime.filter(&module, Vec::new(), "").expect("starts")
}

/// A module whose request headers continue, with one more callback exported.
fn with_callback(name: &str, params: &[u8], results: &[u8], code: &[u8]) -> Vec<u8> {
    let mut asm = proxy_base(&[], &asm::i32_const(1));
    let continue_ = asm::continue_();
    asm.export_func("proxy_on_request_headers", &[I32; 3], &[I32], &continue_);
    asm.export_func(name, params, results, code);
    asm.finish()
}

#[test]
fn a_trap_in_on_tick_is_counted() {
    // `proxy_on_configure` asks for a tick every millisecond; `proxy_on_tick` traps.
    let mut configure = asm::i32_const(1);
    configure.extend([op::CALL, 0, op::DROP]);
    configure.extend(asm::i32_const(1));
    let tick_period = ("proxy_set_tick_period_milliseconds", &[I32][..], &[I32][..]);
    let mut module = proxy_base(&[tick_period], &configure);
    let continue_ = asm::continue_();
    module.export_func("proxy_on_request_headers", &[I32; 3], &[I32], &continue_);
    module.export_func("proxy_on_tick", &[I32], &[], &asm::trap());
    let wasm = module.finish();
    // A thread of its own: the VM comes to it with the first request, as to a worker.
    std::thread::spawn(move || {
        let filter = filter("tick-trapper", &wasm);
        let mut filters = HttpFilters::new(&[Arc::clone(&filter)]);
        filters
            .on_request_headers(&mut request("/"), &info("tick"), true)
            .expect("no fault");
        filters.on_log(&info("tick"));
        let now = Instant::now();
        let (_, next) = registry::tick_due(now);
        assert!(next.is_some(), "the VM wants ticks");
        assert_eq!(errors("tick-trapper", FaultKind::Trap), 0, "none due yet");
        registry::tick_due(now + Duration::from_secs(1));
        assert_eq!(errors("tick-trapper", FaultKind::Trap), 1, "counted");
        assert_eq!(filter.faults(), 1);
        assert_eq!(registry::vms_on_this_thread(), 0, "the VM was discarded");
    })
    .join()
    .expect("the thread ran");
}

#[test]
fn faults_in_on_log_and_on_done_are_counted() {
    let log_trapper = filter(
        "log-trapper",
        &with_callback("proxy_on_log", &[I32], &[], &asm::trap()),
    );
    let mut filters = HttpFilters::new(&[Arc::clone(&log_trapper)]);
    filters
        .on_request_headers(&mut request("/"), &info("log"), true)
        .expect("no fault");
    filters.on_log(&info("log"));
    assert_eq!(errors("log-trapper", FaultKind::Trap), 1);
    assert_eq!(log_trapper.faults(), 1);

    // A request dropped midway (no `on_log`) still finishes its context.
    let done_trapper = filter(
        "done-trapper",
        &with_callback("proxy_on_done", &[I32], &[I32], &asm::trap()),
    );
    let mut filters = HttpFilters::new(&[Arc::clone(&done_trapper)]);
    filters
        .on_request_headers(&mut request("/"), &info("done"), true)
        .expect("no fault");
    drop(filters);
    assert_eq!(errors("done-trapper", FaultKind::Trap), 1);
    assert_eq!(done_trapper.faults(), 1);
}

#[test]
fn a_request_fault_is_left_to_the_proxy_and_counts_once() {
    let trapper = filter(
        "request-trapper",
        &proxy_module(true, &asm::trap(), &asm::continue_()),
    );
    let mut filters = HttpFilters::new(&[Arc::clone(&trapper)]);
    let fault = filters
        .on_request_headers(&mut request("/"), &info("req"), true)
        .expect_err("traps");
    assert_eq!(fault.kind, FaultKind::Trap, "returned: the proxy counts it");
    // `on_log` then finds the context gone with its VM: a consequence, not a new fault.
    filters.on_log(&info("req"));
    for kind in [FaultKind::Trap, FaultKind::Abi] {
        assert_eq!(errors("request-trapper", kind), 0, "{kind}");
    }
    assert_eq!(trapper.faults(), 1);
}

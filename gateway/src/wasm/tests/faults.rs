//! A plugin can never take the gateway down: traps, deadlines and memory exhaustion become
//! `PluginFault`s, the VM is replaced, and the contexts it held answer as faults.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::asm::{self, proxy_module};
use super::{info, request, response, runtime};
use crate::wasm::{
    Decision, FaultKind, FilterInstance, HttpFilters, RuntimeOptions, WasmError, WasmRuntime,
    registry,
};

fn filter(name: &str, wasm: &[u8]) -> Arc<FilterInstance> {
    let module = runtime().load_module(name, wasm).expect("loads");
    runtime()
        .filter(&module, Vec::new(), "root")
        .expect("starts")
}

#[test]
fn a_minimal_hand_written_module_runs() {
    let filter = filter(
        "minimal",
        &proxy_module(true, &asm::continue_(), &asm::i32_const(1)),
    );
    let mut filters = HttpFilters::new(&[Arc::clone(&filter)]);
    let mut req = request("/");
    assert_eq!(
        filters.on_request_headers(&mut req, &info("m"), true).ok(),
        Some(Decision::Continue)
    );
    let mut resp = response(200);
    assert_eq!(
        filters
            .on_response_headers(&mut resp, &info("m"), true)
            .ok(),
        Some(Decision::Pause)
    );
    drop(filters);
    assert_eq!(registry::live_contexts(&filter), Some(0));
}

#[test]
fn configure_returning_false_is_refused_at_load() {
    let module = runtime()
        .load_module(
            "grumpy",
            &proxy_module(false, &asm::continue_(), &asm::continue_()),
        )
        .expect("loads");
    let error = runtime()
        .filter(&module, b"{}".to_vec(), "")
        .expect_err("refused");
    assert!(matches!(error, WasmError::Configure { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "plugin `grumpy` rejected its configuration: proxy_on_configure returned false"
    );
}

#[test]
fn a_trap_is_a_fault_and_the_vm_is_replaced() {
    let filter = filter(
        "trapper",
        &proxy_module(true, &asm::continue_(), &asm::trap()),
    );
    let mut first = HttpFilters::new(&[Arc::clone(&filter)]);
    let mut second = HttpFilters::new(&[Arc::clone(&filter)]);
    for filters in [&mut first, &mut second] {
        let mut req = request("/");
        assert_eq!(
            filters.on_request_headers(&mut req, &info("t"), true).ok(),
            Some(Decision::Continue)
        );
    }
    let mut resp = response(200);
    let fault = first
        .on_response_headers(&mut resp, &info("t"), true)
        .expect_err("traps");
    assert_eq!(fault.kind, FaultKind::Trap);
    assert_eq!(&*fault.plugin, "trapper");
    assert!(fault.message.contains("unreachable"), "{}", fault.message);
    assert_eq!(resp.status.as_u16(), 200, "the response was handed back");
    assert_eq!(filter.faults(), 1);

    // The other request's context lived in the discarded VM.
    let lost = second
        .on_response_headers(&mut response(200), &info("t"), true)
        .expect_err("lost");
    assert_eq!(lost.kind, FaultKind::Abi);
    assert!(lost.message.contains("context is gone"), "{}", lost.message);

    // The next request gets a fresh VM.
    let mut third = HttpFilters::new(&[Arc::clone(&filter)]);
    let mut req = request("/");
    assert_eq!(
        third.on_request_headers(&mut req, &info("t"), true).ok(),
        Some(Decision::Continue)
    );
    assert_eq!(filter.vm_starts(), 2);
    drop((first, second, third));
    assert_eq!(registry::live_contexts(&filter), Some(0));
}

#[test]
fn a_runaway_call_hits_the_deadline() {
    let filter = filter(
        "spinner",
        &proxy_module(true, &asm::spin(), &asm::continue_()),
    );
    let mut filters = HttpFilters::new(&[filter]);
    let started = Instant::now();
    let fault = filters
        .on_request_headers(&mut request("/"), &info("d"), true)
        .expect_err("interrupted");
    assert_eq!(fault.kind, FaultKind::Deadline, "{}", fault.message);
    assert_eq!(fault.message, "exceeded the 100 ms call deadline");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn memory_exhaustion_is_contained() {
    let filter = filter(
        "hog",
        &proxy_module(true, &asm::exhaust_memory(), &asm::continue_()),
    );
    let mut filters = HttpFilters::new(&[filter]);
    let fault = filters
        .on_request_headers(&mut request("/"), &info("m"), true)
        .expect_err("out of memory");
    assert_eq!(fault.kind, FaultKind::OutOfMemory, "{}", fault.message);
    assert_eq!(fault.message, "exceeded its memory limit of 64 MiB");
}

#[test]
fn a_fault_stops_the_chain() {
    let trapper = filter(
        "first-trapper",
        &proxy_module(true, &asm::trap(), &asm::continue_()),
    );
    let after = filter(
        "never-reached",
        &proxy_module(true, &asm::continue_(), &asm::continue_()),
    );
    let mut filters = HttpFilters::new(&[trapper, Arc::clone(&after)]);
    let fault = filters
        .on_request_headers(&mut request("/"), &info("c"), true)
        .expect_err("traps");
    assert_eq!(&*fault.plugin, "first-trapper");
    assert_eq!(after.vm_starts(), 1, "only the spare VM from loading");
    assert_eq!(
        registry::live_contexts(&after),
        None,
        "never run on this thread"
    );
}

#[test]
fn a_module_starting_with_more_than_the_memory_limit_is_refused_at_load() {
    let small = WasmRuntime::new(RuntimeOptions {
        worker_threads: 1,
        max_plugins: 1,
        memory_limit_bytes: 64 * 1024,
        ..RuntimeOptions::default()
    })
    .expect("the WASM runtime starts");
    // Two pages of memory at start, against a limit of one.
    let wasm = proxy_module(true, &asm::continue_(), &asm::continue_());
    let error = small.load_module("roomy", &wasm).expect_err("refused");
    assert!(matches!(error, WasmError::Incompatible { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.starts_with(
            "plugin `roomy` cannot run on this host: it starts with more memory than the \
             memory limit of 64 KiB (raise `server.plugins.memory_limit`): "
        ),
        "{message}"
    );
}

//! Import coverage: every host function the gateway's linker defines is imported by at
//! least one conformance filter (tests/filters, examples/hello-filter), so each is
//! exercised through a real SDK-built module — or it is listed below with the reason it
//! is not.

use std::collections::BTreeSet;

use aistack_e2e::filters;
use aistack_gateway::wasm::{RuntimeOptions, WasmRuntime};

/// Defined by the linker, imported by no conformance filter, and why.
const NOT_IMPORTED: &[(&str, &str)] = &[
    // Empty: every filter built with the Rust SDK imports the gRPC functions too (they
    // answer Unimplemented by design), and the conformance filters import the rest.
];

/// WASI functions defined for SDKs other than Rust's (TinyGo, C++ and AssemblyScript
/// runtimes import them); the Rust SDK imports only a few. Covered by the gateway's unit
/// tests with hand-assembled modules instead.
const WASI_FOR_OTHER_SDKS: &str = "wasi";

#[test]
fn every_host_function_is_imported_by_a_conformance_filter_or_listed() {
    let runtime = WasmRuntime::new(RuntimeOptions {
        worker_threads: 1,
        max_plugins: 1,
        ..RuntimeOptions::default()
    })
    .expect("runtime");
    let mut imported = BTreeSet::new();
    for (_, path) in filters::FILTERS {
        let wasm = std::fs::read(path).expect("read wasm");
        for (module, function) in runtime.module_imports(&wasm).expect("a module") {
            imported.insert((module, function));
        }
    }
    let defined = runtime.host_functions();
    let mut missing = Vec::new();
    for (module, function) in &defined {
        let covered = imported.contains(&(module.clone(), function.clone()))
            || NOT_IMPORTED.iter().any(|(n, _)| n == function)
            || (module != "env" && module.contains(WASI_FOR_OTHER_SDKS));
        if !covered {
            missing.push(format!("{module}.{function}"));
        }
    }
    assert!(
        missing.is_empty(),
        "host functions no conformance filter imports (import them in tests/filters, or \
         list them with a reason): {missing:?}"
    );
    // Every `env` import of every filter is one the linker defines (else it would not load).
    for (module, function) in &imported {
        assert!(
            defined.contains(&(module.clone(), function.clone())),
            "{module}.{function} imported but not defined"
        );
    }
    // The list itself stays honest: nothing listed is in fact imported.
    for (function, why) in NOT_IMPORTED {
        assert!(
            !imported.iter().any(|(_, f)| f == function),
            "{function} is imported now; drop it from NOT_IMPORTED ({why})"
        );
    }
}

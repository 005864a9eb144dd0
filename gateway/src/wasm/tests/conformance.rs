//! What modules are accepted, and that instantiation can never fail on a missing import.

use std::sync::Arc;

use wasmtime::{ExternType, Module, Store};

use super::asm::{self, Asm, I32};
use super::runtime;
use crate::wasm::WasmError;
use crate::wasm::abi::{SPEC_HOST_FUNCTIONS, WASI_FUNCTIONS};
use crate::wasm::builtin_module_bytes;
use crate::wasm::host::{HostState, PluginIdentity};

fn store() -> Store<HostState> {
    let identity = Arc::new(PluginIdentity {
        name: Arc::from("probe"),
        root_id: Arc::from(""),
        configuration: Arc::from(Vec::new()),
        vm_configuration: Arc::from(Vec::new()),
        upstreams: Arc::default(),
        filter_id: 0,
        metrics: Arc::new(crate::wasm::metrics::PluginMetrics::new(None)),
        foreign: Arc::default(),
    });
    Store::new(&runtime().inner().engine, HostState::new(identity, 1 << 20))
}

#[test]
fn the_linker_defines_every_import_of_every_built_in_filter() {
    let inner = runtime().inner();
    let mut store = store();
    for name in crate::wasm::builtin_names() {
        let wasm = builtin_module_bytes(name).expect("listed");
        let module = Module::new(&inner.engine, wasm).expect("compiles");
        let mut imports = 0;
        for import in module.imports() {
            imports += 1;
            let defined = inner.linker.get_by_import(&mut store, &import);
            assert!(
                defined.is_some(),
                "{name} imports {}.{}",
                import.module(),
                import.name()
            );
            assert!(matches!(import.ty(), ExternType::Func(_)));
        }
        assert!(imports >= 30, "{name} imports only {imports} functions");
    }
}

#[test]
fn the_linker_defines_every_function_of_the_specification() {
    let linker = &runtime().inner().linker;
    let mut store = store();
    for name in SPEC_HOST_FUNCTIONS {
        assert!(linker.get(&mut store, "env", name).is_ok(), "env.{name}");
    }
    for module in ["wasi_snapshot_preview1", "wasi_unstable"] {
        for name in WASI_FUNCTIONS {
            assert!(
                linker.get(&mut store, module, name).is_ok(),
                "{module}.{name}"
            );
        }
    }
}

#[test]
fn a_module_without_the_abi_marker_is_refused() {
    let mut bare = Asm::default();
    bare.memory(1);
    bare.export_func(
        "proxy_on_memory_allocate",
        &[I32],
        &[I32],
        &asm::i32_const(0),
    );
    let error = runtime()
        .load_module("plain", &bare.finish())
        .expect_err("refused");
    assert!(matches!(error, WasmError::NotProxyWasm { .. }));
    assert_eq!(
        error.to_string(),
        "plugin `plain` is not a Proxy-Wasm module (exports neither proxy_abi_version_0_2_1 \
         nor proxy_abi_version_0_2_0)"
    );
}

#[test]
fn an_abi_0_1_0_module_is_refused_with_its_own_message() {
    let mut old = Asm::default();
    old.memory(1);
    old.export_func("proxy_abi_version_0_1_0", &[], &[], &[]);
    let error = runtime()
        .load_module("old", &old.finish())
        .expect_err("refused");
    assert!(matches!(error, WasmError::UnsupportedAbi { .. }), "{error}");
    assert!(error.to_string().contains("ABI 0.1.0"), "{error}");
}

#[test]
fn garbage_is_refused() {
    for bytes in [&b""[..], b"not wasm at all", b"\0asm\x01\0\0\0\x01\xff"] {
        let error = runtime().load_module("junk", bytes).expect_err("refused");
        assert!(matches!(error, WasmError::InvalidModule { .. }), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("plugin `junk` is not a valid WebAssembly module: ")
        );
    }
}

#[test]
fn an_import_the_host_does_not_provide_is_refused_at_load() {
    let mut module = Asm::default();
    module.import("env", "proxy_teleport", &[I32], &[I32]);
    module.memory(1);
    module.export_func("proxy_abi_version_0_2_1", &[], &[], &[]);
    module.export_func("malloc", &[I32], &[I32], &asm::i32_const(0));
    let error = runtime()
        .load_module("teleport", &module.finish())
        .expect_err("refused");
    assert!(matches!(error, WasmError::Incompatible { .. }), "{error}");
    assert!(error.to_string().contains("proxy_teleport"), "{error}");
}

#[test]
fn a_callback_with_the_wrong_signature_is_refused_at_load() {
    let mut module = Asm::default();
    module.memory(1);
    module.export_func("proxy_abi_version_0_2_0", &[], &[], &[]);
    module.export_func("malloc", &[I32], &[I32], &asm::i32_const(0));
    // The 0.1.0 shape: no end_of_stream.
    module.export_func(
        "proxy_on_request_headers",
        &[I32, I32],
        &[I32],
        &asm::i32_const(0),
    );
    let error = runtime()
        .load_module("shape", &module.finish())
        .expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("`proxy_on_request_headers` has signature (ii) -> (i)"),
        "{error}"
    );
}

#[test]
fn a_module_without_an_allocator_is_refused() {
    let mut module = Asm::default();
    module.memory(1);
    module.export_func("proxy_abi_version_0_2_1", &[], &[], &[]);
    let error = runtime()
        .load_module("noalloc", &module.finish())
        .expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("neither `proxy_on_memory_allocate` nor `malloc`"),
        "{error}"
    );
}

//! The built-in filters: every member of the `plugins/` workspace, built for
//! wasm32-wasip1 by `gateway/build.rs` and embedded in the binary.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// The module bytes of the built-in filter `name` (its package name in `plugins/`, e.g.
/// `request-id`), for [`WasmRuntime::load_module`](super::WasmRuntime::load_module).
pub fn builtin_module_bytes(name: &str) -> Option<&'static [u8]> {
    BUILTIN_PLUGINS
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, wasm)| *wasm)
}

/// The names of the built-in filters, in `plugins/Cargo.toml` member order.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN_PLUGINS.iter().map(|(name, _)| *name)
}

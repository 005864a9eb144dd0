//! Errors of the WASM host: [`WasmError`] when loading (control plane, a config error),
//! [`PluginFault`] when a filter misbehaves on the data path (one request fails, the VM is
//! replaced), and [`FaultCounter`], where the host counts the faults no request answers
//! for.

use std::fmt;
use std::sync::Arc;

/// Why a module or a filter could not be loaded. Every variant names the plugin.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WasmError {
    /// [`RuntimeOptions`](super::RuntimeOptions) out of range, or the engine could not start.
    #[error("WASM runtime: {0}")]
    Runtime(String),
    /// The bytes are not a valid WebAssembly module.
    #[error("plugin `{plugin}` is not a valid WebAssembly module: {message}")]
    InvalidModule { plugin: Arc<str>, message: String },
    /// Valid WebAssembly, but without a Proxy-Wasm ABI marker export.
    #[error(
        "plugin `{plugin}` is not a Proxy-Wasm module (exports neither \
         proxy_abi_version_0_2_1 nor proxy_abi_version_0_2_0)"
    )]
    NotProxyWasm { plugin: Arc<str> },
    /// A Proxy-Wasm 0.1.0 module: its callbacks have other signatures.
    #[error(
        "plugin `{plugin}` targets Proxy-Wasm ABI 0.1.0, which this gateway does not \
         support: rebuild it with an SDK for ABI 0.2.1 or 0.2.0 (proxy-wasm crate 0.2)"
    )]
    UnsupportedAbi { plugin: Arc<str> },
    /// A Proxy-Wasm module this host cannot run (missing memory or allocator export,
    /// a callback with the wrong signature, an import the host does not provide).
    #[error("plugin `{plugin}` cannot run on this host: {message}")]
    Incompatible { plugin: Arc<str>, message: String },
    /// Instantiation, `_initialize` or `proxy_on_vm_start` failed.
    #[error("plugin `{plugin}` failed to start: {message}")]
    Start { plugin: Arc<str>, message: String },
    /// `proxy_on_configure` returned false (or trapped): the plugin refused its
    /// configuration. `message` carries what the plugin logged, when it logged an error.
    #[error("plugin `{plugin}` rejected its configuration: {message}")]
    Configure { plugin: Arc<str>, message: String },
}

/// What went wrong with a plugin during a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The guest trapped (panic, `unreachable`, out-of-bounds access, ...).
    Trap,
    /// The guest ran past the per-call deadline (epoch interruption).
    Deadline,
    /// The guest tried to grow its memory past the limit and then failed.
    OutOfMemory,
    /// The guest broke the ABI contract (bad context, unsupported call, lost context).
    Abi,
}

impl FaultKind {
    /// A stable lower-case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Trap => "trap",
            FaultKind::Deadline => "deadline",
            FaultKind::OutOfMemory => "out_of_memory",
            FaultKind::Abi => "abi",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A filter failed while handling a request. The VM it ran in has been discarded (a fresh
/// one is started for the next request); the proxy answers fail-closed (500) unless the
/// route says otherwise. Internal detail: log it, never send it to the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin `{plugin}` failed ({kind}): {message}")]
pub struct PluginFault {
    /// The plugin's name as given to [`WasmRuntime::load_module`](super::WasmRuntime::load_module).
    pub plugin: Arc<str>,
    /// The class of failure (bounded: usable as a metric label).
    pub kind: FaultKind,
    /// Human-readable detail: the trap, the guest's last error log line, the limit hit.
    pub message: String,
}

impl PluginFault {
    pub(crate) fn new(plugin: &Arc<str>, kind: FaultKind, message: impl Into<String>) -> Self {
        PluginFault {
            plugin: Arc::clone(plugin),
            kind,
            message: message.into(),
        }
    }
}

/// Where the host counts the faults no request answers for (root-context callbacks,
/// `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`): the runtime's
/// [`fault_counter`](super::RuntimeOptions::fault_counter), labelled (plugin, kind). The
/// faults of request phases are returned instead, and counted by whoever answers the
/// request (the proxy, in the same counter), so that each fault counts once.
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultCounter(Option<prometheus::IntCounterVec>);

impl FaultCounter {
    pub(crate) fn new(counter: Option<prometheus::IntCounterVec>) -> Self {
        FaultCounter(counter)
    }

    /// Counts `fault` once (nothing without a counter).
    pub(crate) fn count(&self, fault: &PluginFault) {
        let Some(counter) = &self.0 else {
            return;
        };
        // The labels were checked when the runtime was built: this cannot fail.
        if let Ok(series) =
            counter.get_metric_with_label_values(&[&fault.plugin, fault.kind.as_str()])
        {
            series.inc();
        }
    }
}

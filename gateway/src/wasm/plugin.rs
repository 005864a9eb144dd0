//! [`PluginModule`] (a module compiled once, checked to be Proxy-Wasm, pre-linked) and
//! [`FilterInstance`] (a module plus its configuration and root id: one entry of a route's
//! filter chain).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::{ExternType, FuncType, InstancePre, Module, ValType};

use super::callout::CalloutUpstreams;
use super::error::WasmError;
use super::host::{HostState, PluginIdentity};
use super::outcome::size;
use super::runtime::RuntimeInner;
use super::vm::Vm;

/// The callbacks the host calls, with their wasm32 signatures (`i` = i32, params then
/// results). A module exporting one of these names with another signature is refused at
/// load, so that calling it can never fail on a type mismatch.
const CALLBACKS: &[(&str, &str, &str)] = &[
    ("_initialize", "", ""),
    ("_start", "", ""),
    ("proxy_on_memory_allocate", "i", "i"),
    ("malloc", "i", "i"),
    ("proxy_on_context_create", "ii", ""),
    ("proxy_on_vm_start", "ii", "i"),
    ("proxy_on_configure", "ii", "i"),
    ("proxy_on_request_headers", "iii", "i"),
    ("proxy_on_response_headers", "iii", "i"),
    ("proxy_on_log", "i", ""),
    ("proxy_on_done", "i", "i"),
    ("proxy_on_delete", "i", ""),
    ("proxy_on_tick", "i", ""),
    ("proxy_on_request_body", "iii", "i"),
    ("proxy_on_response_body", "iii", "i"),
    ("proxy_on_http_call_response", "iiiii", ""),
    ("proxy_on_queue_ready", "ii", ""),
];

/// A compiled Proxy-Wasm module, ready to instantiate. Built by
/// [`WasmRuntime::load_module`](super::WasmRuntime::load_module); compiled once, shared by
/// every filter and VM that uses it.
pub struct PluginModule {
    pub(crate) name: Arc<str>,
    pub(crate) runtime: Arc<RuntimeInner>,
    pub(crate) pre: InstancePre<HostState>,
    abi_version: &'static str,
    /// Which body callbacks the module exports (request, response).
    pub(crate) body_callbacks: (bool, bool),
}

impl fmt::Debug for PluginModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginModule")
            .field("name", &self.name)
            .field("abi_version", &self.abi_version)
            .finish_non_exhaustive()
    }
}

impl PluginModule {
    /// The name given at load (used in errors, logs, metrics and `plugin_name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Proxy-Wasm ABI the module declares: `"0.2.1"` or `"0.2.0"`.
    pub fn abi_version(&self) -> &'static str {
        self.abi_version
    }

    /// Compiles and checks `wasm`; see [`WasmRuntime::load_module`](super::WasmRuntime::load_module).
    pub(crate) fn compile(
        runtime: &Arc<RuntimeInner>,
        name: &str,
        wasm: &[u8],
    ) -> Result<Arc<PluginModule>, WasmError> {
        let plugin: Arc<str> = Arc::from(name);
        let module = Module::new(&runtime.engine, wasm).map_err(|e| {
            if e.to_string() == MEMORY_TOO_SMALL {
                let limit = size(runtime.options.memory_limit_bytes);
                return WasmError::Incompatible {
                    plugin: Arc::clone(&plugin),
                    message: format!(
                        "it starts with more memory than the memory limit of {limit} (raise \
                         `server.plugins.memory_limit`): {}",
                        e.root_cause()
                    ),
                };
            }
            WasmError::InvalidModule {
                plugin: Arc::clone(&plugin),
                message: one_line(&format!("{e:#}")),
            }
        })?;
        let abi_version = abi_version(&module, &plugin)?;
        check_exports(&module).map_err(|message| WasmError::Incompatible {
            plugin: Arc::clone(&plugin),
            message,
        })?;
        let pre = runtime
            .linker
            .instantiate_pre(&module)
            .map_err(|e| WasmError::Incompatible {
                plugin: Arc::clone(&plugin),
                message: format!("{e:#}"),
            })?;
        let body_callbacks = (
            module.get_export("proxy_on_request_body").is_some(),
            module.get_export("proxy_on_response_body").is_some(),
        );
        Ok(Arc::new(PluginModule {
            body_callbacks,
            name: plugin,
            runtime: Arc::clone(runtime),
            pre,
            abi_version,
        }))
    }
}

/// What wasmtime says of a module whose initial memory exceeds the pool's memory limit.
const MEMORY_TOO_SMALL: &str = "module memory does not fit in pooling allocator requirements";

/// wasmparser's messages may span lines; errors here are one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The ABI marker export decides: 0.2.1 and 0.2.0 share every signature we call.
fn abi_version(module: &Module, plugin: &Arc<str>) -> Result<&'static str, WasmError> {
    let exports = |name: &str| module.get_export(name).is_some();
    if exports("proxy_abi_version_0_2_1") {
        Ok("0.2.1")
    } else if exports("proxy_abi_version_0_2_0") {
        Ok("0.2.0")
    } else if exports("proxy_abi_version_0_1_0") {
        Err(WasmError::UnsupportedAbi {
            plugin: Arc::clone(plugin),
        })
    } else {
        Err(WasmError::NotProxyWasm {
            plugin: Arc::clone(plugin),
        })
    }
}

fn check_exports(module: &Module) -> Result<(), String> {
    match module.get_export("memory") {
        Some(ExternType::Memory(memory)) if !memory.is_64() && !memory.is_shared() => {}
        _ => return Err("it does not export a 32-bit linear memory named `memory`".into()),
    }
    if module.get_export("proxy_on_memory_allocate").is_none()
        && module.get_export("malloc").is_none()
    {
        return Err("it exports neither `proxy_on_memory_allocate` nor `malloc`".into());
    }
    for (name, params, results) in CALLBACKS {
        let Some(export) = module.get_export(name) else {
            continue;
        };
        let ExternType::Func(func) = export else {
            return Err(format!("its export `{name}` is not a function"));
        };
        let (got_params, got_results) = signature(&func);
        if got_params != *params || got_results != *results {
            return Err(format!(
                "its export `{name}` has signature ({got_params}) -> ({got_results}), \
                 Proxy-Wasm 0.2 expects ({params}) -> ({results}) (i = i32)"
            ));
        }
    }
    Ok(())
}

fn signature(func: &FuncType) -> (String, String) {
    let code = |t: ValType| match t {
        ValType::I32 => 'i',
        ValType::I64 => 'I',
        ValType::F32 => 'f',
        ValType::F64 => 'F',
        _ => '?',
    };
    (
        func.params().map(code).collect(),
        func.results().map(code).collect(),
    )
}

/// How one entry of a route's filter chain configures its module.
#[derive(Debug, Clone, Default)]
pub struct FilterSettings {
    /// The plugin configuration (`get_plugin_configuration`): the entry's `config` as
    /// JSON text, empty when absent.
    pub configuration: Vec<u8>,
    /// The root id (`plugin_root_id`). Default: empty.
    pub root_id: String,
    /// The upstreams its HTTP callouts may name. Default: none.
    pub upstreams: Arc<CalloutUpstreams>,
    /// What a fault of the filter does to a request: `false` (default) fails it closed
    /// (the proxy answers 500); `true` skips the filter for the rest of that request and
    /// goes on (the route entry's `on_error: continue`). Counted either way.
    pub fail_open: bool,
}

/// Counters of one filter instance, for tests and metrics.
#[derive(Debug, Default)]
pub(crate) struct FilterStats {
    pub(crate) vm_starts: AtomicU64,
    pub(crate) faults: AtomicU64,
}

/// A configured filter: a module, its plugin configuration and root id. Built by
/// [`WasmRuntime::filter`](super::WasmRuntime::filter), which has already started one VM
/// of it (so its configuration is known good): the first thread that runs the filter
/// adopts that VM, the others start their own. Dropping the last `Arc` retires its VMs
/// (each thread frees its VM the next time it starts a VM, or within 1024 calls).
#[derive(Debug)]
pub struct FilterInstance {
    /// Unique per process: keys the per-thread VM map.
    pub(crate) id: u64,
    pub(crate) module: Arc<PluginModule>,
    pub(crate) identity: Arc<PluginIdentity>,
    pub(crate) stats: FilterStats,
    /// The VM started by `WasmRuntime::filter`, until a thread adopts it.
    pub(crate) spare: Mutex<Option<Vm>>,
    /// See [`FilterSettings::fail_open`].
    pub(crate) fail_open: bool,
}

impl FilterInstance {
    pub(crate) fn new(module: &Arc<PluginModule>, settings: FilterSettings) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        FilterInstance {
            id,
            module: Arc::clone(module),
            identity: Arc::new(PluginIdentity {
                name: Arc::clone(&module.name),
                root_id: Arc::from(settings.root_id),
                configuration: Arc::from(settings.configuration),
                vm_configuration: Arc::from(Vec::new()),
                upstreams: settings.upstreams,
                filter_id: id,
                metrics: Arc::clone(&module.runtime.metrics),
                foreign: Arc::clone(&module.runtime.foreign),
            }),
            stats: FilterStats::default(),
            spare: Mutex::new(None),
            fail_open: settings.fail_open,
        }
    }

    /// The module's name.
    pub fn name(&self) -> &str {
        &self.identity.name
    }

    /// The root id the filter was configured with (`plugin_root_id`).
    pub fn root_id(&self) -> &str {
        &self.identity.root_id
    }

    /// The plugin configuration bytes (what `get_plugin_configuration` returns).
    pub fn configuration(&self) -> &[u8] {
        &self.identity.configuration
    }

    /// How many VMs were started for this filter: one per thread that ran it, plus one
    /// per restart after a fault. Stays at 1 while one thread serves any number of
    /// requests.
    pub fn vm_starts(&self) -> u64 {
        self.stats.vm_starts.load(Ordering::Relaxed)
    }

    /// How many faults (traps, deadlines, out-of-memory, ABI misuse) this filter had.
    pub fn faults(&self) -> u64 {
        self.stats.faults.load(Ordering::Relaxed)
    }
}

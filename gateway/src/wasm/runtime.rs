//! [`WasmRuntime`]: the process's one wasmtime `Engine` and `Linker`, the pooling
//! allocator sized for the gateway, and the epoch ticker that enforces call deadlines.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig, Store,
};

use super::abi;
use super::error::WasmError;
use super::foreign::ForeignFunctions;
use super::host::{HostState, PluginIdentity};
use super::metrics::PluginMetrics;
use super::plugin::{FilterInstance, FilterSettings, PluginModule};
use super::registry;

/// Sizes and limits of the WASM runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Threads that run filters (Pingora's worker threads). Default: available cores.
    pub worker_threads: usize,
    /// Filter instances expected at once (across all routes). Default: 16.
    pub max_plugins: usize,
    /// Longest a single guest call may run before it is interrupted (a `Deadline`
    /// fault). Default: 100 ms. VM start-up gets at least one second.
    pub call_deadline: Duration,
    /// Most linear memory one VM may use. Default: 64 MiB.
    pub memory_limit_bytes: usize,
    /// Where plugin metrics are exported (the gateway's `/metrics` registry). Default:
    /// none (metrics are kept and readable by plugins, exported nowhere).
    pub metrics_registry: Option<prometheus::Registry>,
    /// The named host functions filters may call (`proxy_call_foreign_function`).
    /// Default: the built-ins of [`ForeignFunctions::default`].
    pub foreign_functions: ForeignFunctions,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            worker_threads: thread::available_parallelism().map_or(1, usize::from),
            max_plugins: 16,
            call_deadline: Duration::from_millis(100),
            memory_limit_bytes: 64 * 1024 * 1024,
            metrics_registry: None,
            foreign_functions: ForeignFunctions::default(),
        }
    }
}

/// The shared state behind a [`WasmRuntime`] handle.
pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) options: RuntimeOptions,
    /// Epoch ticks a guest call may run (the deadline, rounded up, plus one).
    pub(crate) call_ticks: u64,
    /// Epoch ticks VM start-up may run.
    pub(crate) start_ticks: u64,
    /// Every plugin metric of the process.
    pub(crate) metrics: Arc<PluginMetrics>,
    pub(crate) foreign: Arc<ForeignFunctions>,
    _ticker: EpochTicker,
}

/// The WASM host of the process: one per process, a cheap `Clone` handle. Compiles
/// modules ([`load_module`](Self::load_module)) and configures filters
/// ([`filter`](Self::filter)); VMs are then started lazily, one per worker thread and
/// filter.
#[derive(Clone)]
pub struct WasmRuntime {
    inner: Arc<RuntimeInner>,
}

impl std::fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRuntime")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// Epoch tick length: a tenth of the deadline, between 1 and 10 ms.
fn tick_for(deadline: Duration) -> Duration {
    (deadline / 10).clamp(Duration::from_millis(1), Duration::from_millis(10))
}

fn ticks(deadline: Duration, tick: Duration) -> u64 {
    let ticks = deadline.as_nanos().div_ceil(tick.as_nanos().max(1));
    u64::try_from(ticks).unwrap_or(u64::MAX / 2) + 1
}

impl WasmRuntime {
    /// Builds the engine, the linker (every host function defined) and the instance
    /// pool, and starts the epoch ticker thread.
    ///
    /// The pool holds `(worker_threads + 2) × max_plugins × 2` instances: one VM per
    /// worker and filter, the thread that loads the configuration and a spare, doubled
    /// because during a reload old and new filters live side by side until in-flight
    /// requests finish. Each slot reserves address space, not memory.
    ///
    /// # Errors
    /// [`WasmError::Runtime`] when an option is out of range or the engine cannot start.
    pub fn new(options: RuntimeOptions) -> Result<Self, WasmError> {
        check(&options)?;
        let slots = options
            .worker_threads
            .saturating_add(2)
            .saturating_mul(options.max_plugins)
            .saturating_mul(2);
        let slots = u32::try_from(slots).unwrap_or(u32::MAX).max(8);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots)
            .max_memory_size(options.memory_limit_bytes);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| runtime_error("engine", &e))?;
        let linker = abi::linker(&engine).map_err(|e| runtime_error("linker", &e))?;
        let tick = tick_for(options.call_deadline);
        let start_deadline = options.call_deadline.max(Duration::from_secs(1));
        let inner = RuntimeInner {
            call_ticks: ticks(options.call_deadline, tick),
            start_ticks: ticks(start_deadline, tick),
            _ticker: EpochTicker::start(engine.clone(), tick)?,
            metrics: Arc::new(PluginMetrics::new(options.metrics_registry.clone())),
            foreign: Arc::new(options.foreign_functions.clone()),
            engine,
            linker,
            options,
        };
        Ok(WasmRuntime {
            inner: Arc::new(inner),
        })
    }

    #[cfg(test)]
    pub(crate) fn inner(&self) -> &Arc<RuntimeInner> {
        &self.inner
    }

    /// The options the runtime was built with.
    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }

    /// Every host function the linker defines, as (import module, name), sorted: what a
    /// filter may import. For tooling and the import-coverage test.
    pub fn host_functions(&self) -> Vec<(String, String)> {
        let identity = Arc::new(PluginIdentity {
            name: Arc::from("host-functions"),
            root_id: Arc::from(""),
            configuration: Arc::from(Vec::new()),
            vm_configuration: Arc::from(Vec::new()),
            upstreams: Arc::default(),
            filter_id: 0,
            metrics: Arc::clone(&self.inner.metrics),
            foreign: Arc::clone(&self.inner.foreign),
        });
        let mut store = Store::new(&self.inner.engine, HostState::new(identity, 64 * 1024));
        let mut names: Vec<(String, String)> = self
            .inner
            .linker
            .iter(&mut store)
            .map(|(module, name, _)| (module.to_owned(), name.to_owned()))
            .collect();
        names.sort();
        names
    }

    /// The functions `wasm` imports, as (import module, name), sorted. Compiles it (no
    /// Proxy-Wasm checks).
    ///
    /// # Errors
    /// [`WasmError::InvalidModule`] when `wasm` is not a WebAssembly module.
    pub fn module_imports(&self, wasm: &[u8]) -> Result<Vec<(String, String)>, WasmError> {
        let module =
            Module::new(&self.inner.engine, wasm).map_err(|e| WasmError::InvalidModule {
                plugin: Arc::from("module"),
                message: format!("{e:#}"),
            })?;
        let mut names: Vec<(String, String)> = module
            .imports()
            .map(|i| (i.module().to_owned(), i.name().to_owned()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Compiles `wasm` once and checks it is a Proxy-Wasm 0.2.x module this host can run
    /// (ABI marker export, memory and allocator exports, callback signatures, imports all
    /// provided). `name` is used in errors, logs and metrics, and as `plugin_name`.
    ///
    /// # Errors
    /// [`WasmError::InvalidModule`] (not WebAssembly), [`WasmError::NotProxyWasm`],
    /// [`WasmError::UnsupportedAbi`] (0.1.0), [`WasmError::Incompatible`].
    pub fn load_module(&self, name: &str, wasm: &[u8]) -> Result<Arc<PluginModule>, WasmError> {
        PluginModule::compile(&self.inner, name, wasm)
    }

    /// A configured filter: `module` with its plugin configuration (`config`, the JSON
    /// text from the YAML) and `root_id`. Starts one VM right here, on the calling thread,
    /// through `proxy_on_vm_start` and `proxy_on_configure`, so that a bad configuration
    /// is refused now rather than at the first request. That VM is kept with the filter
    /// and adopted by the first thread that runs it (nothing stays on this thread).
    ///
    /// # Errors
    /// [`WasmError::Configure`] when `proxy_on_configure` returns false or traps (the
    /// message is what the plugin logged); [`WasmError::Start`] when instantiation,
    /// `_initialize` or `proxy_on_vm_start` fails.
    pub fn filter(
        &self,
        module: &Arc<PluginModule>,
        config: Vec<u8>,
        root_id: &str,
    ) -> Result<Arc<FilterInstance>, WasmError> {
        let settings = FilterSettings {
            configuration: config,
            root_id: root_id.to_owned(),
            ..FilterSettings::default()
        };
        self.filter_with(module, settings)
    }

    /// [`filter`](Self::filter) with every setting of a route entry: the upstreams its
    /// callouts may name, and what a fault does.
    ///
    /// # Errors
    /// As [`filter`](Self::filter).
    pub fn filter_with(
        &self,
        module: &Arc<PluginModule>,
        settings: FilterSettings,
    ) -> Result<Arc<FilterInstance>, WasmError> {
        if !Arc::ptr_eq(&module.runtime, &self.inner) {
            return Err(WasmError::Runtime(format!(
                "plugin `{}` was loaded by another WASM runtime",
                module.name
            )));
        }
        let filter = Arc::new(FilterInstance::new(module, settings));
        registry::start_spare(&filter).map_err(|e| {
            let plugin = Arc::clone(&module.name);
            let message = e.fault.message;
            if e.configuring {
                WasmError::Configure { plugin, message }
            } else {
                WasmError::Start { plugin, message }
            }
        })?;
        Ok(filter)
    }
}

fn check(options: &RuntimeOptions) -> Result<(), WasmError> {
    let problem = if options.worker_threads == 0 {
        "worker_threads must be at least 1"
    } else if options.max_plugins == 0 {
        "max_plugins must be at least 1"
    } else if options.call_deadline.is_zero() {
        "call_deadline must be positive"
    } else if options.memory_limit_bytes < 64 * 1024 {
        "memory_limit_bytes must be at least one WebAssembly page (64 KiB)"
    } else {
        return Ok(());
    };
    Err(WasmError::Runtime(problem.to_owned()))
}

fn runtime_error(what: &str, error: &wasmtime::Error) -> WasmError {
    WasmError::Runtime(format!("cannot build the {what}: {error:#}"))
}

/// Advances the engine's epoch every tick; stops when the runtime is dropped (the
/// sender's drop wakes the thread).
struct EpochTicker {
    _stop: mpsc::Sender<()>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Result<Self, WasmError> {
        let (stop, stopped) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })
            .map_err(|e| WasmError::Runtime(format!("cannot start the epoch thread: {e}")))?;
        Ok(EpochTicker { _stop: stop })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_ticks() {
        let tick = tick_for(Duration::from_millis(100));
        assert_eq!(tick, Duration::from_millis(10));
        assert_eq!(ticks(Duration::from_millis(100), tick), 11);
        assert_eq!(ticks(Duration::from_millis(101), tick), 12);
        assert_eq!(tick_for(Duration::from_millis(3)), Duration::from_millis(1));
        assert_eq!(tick_for(Duration::from_secs(5)), Duration::from_millis(10));
    }

    #[test]
    fn options_are_checked() {
        let bad = RuntimeOptions {
            worker_threads: 0,
            ..RuntimeOptions::default()
        };
        assert!(matches!(WasmRuntime::new(bad), Err(WasmError::Runtime(_))));
    }
}

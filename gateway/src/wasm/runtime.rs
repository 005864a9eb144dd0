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
use super::error::{FaultCounter, WasmError};
use super::foreign::ForeignFunctions;
use super::host::{HostState, PluginIdentity};
use super::metrics::PluginMetrics;
use super::plugin::{FilterInstance, FilterSettings, PluginModule};
use super::registry;

/// Sizes and limits of the WASM runtime. The gateway takes the limits from the YAML
/// (`server.plugins`, see `config::surface::PluginLimitsConf`), whose defaults and bounds
/// are the constants here.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Threads that run filters (Pingora's worker threads). Default: available cores.
    pub worker_threads: usize,
    /// Filter instances (plugin entries of routes, across all routes) the instance pool
    /// is sized for. Default: [`DEFAULT_MAX_PLUGINS`](Self::DEFAULT_MAX_PLUGINS).
    pub max_plugins: usize,
    /// Longest a single guest call may run before it is interrupted (a `Deadline`
    /// fault). Default: [`DEFAULT_CALL_DEADLINE`](Self::DEFAULT_CALL_DEADLINE) (100 ms),
    /// between [`MIN_CALL_DEADLINE`](Self::MIN_CALL_DEADLINE) and
    /// [`MAX_CALL_DEADLINE`](Self::MAX_CALL_DEADLINE). VM start-up gets at least one
    /// second.
    pub call_deadline: Duration,
    /// Most linear memory one VM may use. Default:
    /// [`DEFAULT_MEMORY_LIMIT`](Self::DEFAULT_MEMORY_LIMIT) (64 MiB), between one
    /// WebAssembly page and 4 GiB.
    pub memory_limit_bytes: usize,
    /// Where plugin metrics are exported (the gateway's `/metrics` registry). Default:
    /// none (metrics are kept and readable by plugins, exported nowhere).
    pub metrics_registry: Option<prometheus::Registry>,
    /// Where the host counts the faults no request answers for: those of root-context
    /// callbacks (`proxy_on_tick`, `proxy_on_queue_ready`, the root's
    /// `proxy_on_http_call_response`, its `proxy_on_done`/`proxy_on_delete` when its
    /// filter is dropped) and of `proxy_on_log`, `proxy_on_done` and `proxy_on_delete`.
    /// Its labels must be `plugin` and `kind`: the gateway passes its
    /// `aistack_plugin_errors_total`, the counter the proxy counts the faults
    /// [`HttpFilters`](super::HttpFilters) returns in. Default: none (logged only).
    pub fault_counter: Option<prometheus::IntCounterVec>,
    /// The named host functions filters may call (`proxy_call_foreign_function`).
    /// Default: the built-ins of [`ForeignFunctions::default`].
    pub foreign_functions: ForeignFunctions,
}

impl RuntimeOptions {
    /// Default [`max_plugins`](Self::max_plugins).
    pub const DEFAULT_MAX_PLUGINS: usize = 16;
    /// Default [`call_deadline`](Self::call_deadline).
    pub const DEFAULT_CALL_DEADLINE: Duration = Duration::from_millis(100);
    /// Default [`memory_limit_bytes`](Self::memory_limit_bytes).
    pub const DEFAULT_MEMORY_LIMIT: usize = 64 * 1024 * 1024;
    /// The shortest call deadline: deadlines are enforced in epoch ticks of 1 to 10 ms.
    pub const MIN_CALL_DEADLINE: Duration = Duration::from_millis(1);
    /// The longest call deadline: a guest call holds its worker thread (and every request
    /// on it) for as long as it runs.
    pub const MAX_CALL_DEADLINE: Duration = Duration::from_secs(10);
    /// The smallest memory limit: one WebAssembly page.
    pub const MIN_MEMORY_LIMIT: usize = 64 * 1024;
    /// The largest memory limit: all a 32-bit linear memory can address, and the address
    /// space the engine reserves for each VM anyway.
    pub const MAX_MEMORY_LIMIT: u64 = 4 << 30;
    /// The most instance slots the pool may have: each reserves 4 GiB of address space
    /// (not memory), so 8192 of them take 32 TiB, a quarter of what x86-64 gives a process.
    pub const MAX_POOL_SLOTS: usize = 8192;

    /// The instance slots a pool for `worker_threads` and `max_plugins` has:
    /// `(worker_threads + 2) × max_plugins × 2` (see [`WasmRuntime::new`]).
    pub fn pool_slots(worker_threads: usize, max_plugins: usize) -> usize {
        worker_threads
            .saturating_add(2)
            .saturating_mul(max_plugins)
            .saturating_mul(2)
    }
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            worker_threads: thread::available_parallelism().map_or(1, usize::from),
            max_plugins: Self::DEFAULT_MAX_PLUGINS,
            call_deadline: Self::DEFAULT_CALL_DEADLINE,
            memory_limit_bytes: Self::DEFAULT_MEMORY_LIMIT,
            metrics_registry: None,
            fault_counter: None,
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
    /// Where faults no request answers for are counted.
    pub(crate) faults: FaultCounter,
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

/// The options' foreign functions, counting their asynchronous calls in
/// `aistack_foreign_calls_total{function, outcome}` when there is a registry.
fn foreign_with_metrics(options: &RuntimeOptions) -> ForeignFunctions {
    let mut foreign = options.foreign_functions.clone();
    if let Some(registry) = &options.metrics_registry {
        let opts = prometheus::Opts::new(
            "aistack_foreign_calls_total",
            "Asynchronous foreign-function calls of filters, by function and outcome \
             (ok, failed, timed_out, abandoned: the calling context was gone)",
        );
        if let Ok(calls) = prometheus::IntCounterVec::new(opts, &["function", "outcome"])
            && registry.register(Box::new(calls.clone())).is_ok()
        {
            foreign.calls = Some(calls);
        }
    }
    foreign
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
    /// [`WasmError::Runtime`] when an option is out of range (see the bounds on
    /// [`RuntimeOptions`]; a fault counter without the labels `plugin` and `kind`), or the
    /// engine cannot start.
    pub fn new(options: RuntimeOptions) -> Result<Self, WasmError> {
        check(&options)?;
        let slots = RuntimeOptions::pool_slots(options.worker_threads, options.max_plugins);
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
        // `AISTACK_WASM_PERFMAP=1`: write /tmp/perf-PID.map so `perf` names the plugins'
        // compiled functions (for plugin authors profiling a filter under load).
        if std::env::var_os("AISTACK_WASM_PERFMAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| runtime_error("engine", &e))?;
        let linker = abi::linker(&engine).map_err(|e| runtime_error("linker", &e))?;
        let tick = tick_for(options.call_deadline);
        let start_deadline = options.call_deadline.max(Duration::from_secs(1));
        let inner = RuntimeInner {
            call_ticks: ticks(options.call_deadline, tick),
            start_ticks: ticks(start_deadline, tick),
            _ticker: EpochTicker::start(engine.clone(), tick)?,
            metrics: Arc::new(PluginMetrics::new(options.metrics_registry.clone())),
            foreign: Arc::new(foreign_with_metrics(&options)),
            faults: FaultCounter::new(options.fault_counter.clone()),
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
    let slots = RuntimeOptions::pool_slots(options.worker_threads, options.max_plugins);
    let memory = u64::try_from(options.memory_limit_bytes).unwrap_or(u64::MAX);
    let problem = if options.worker_threads == 0 {
        "worker_threads must be at least 1".to_owned()
    } else if options.max_plugins == 0 {
        "max_plugins must be at least 1".to_owned()
    } else if slots > RuntimeOptions::MAX_POOL_SLOTS {
        format!(
            "max_plugins {} with {} worker threads needs {slots} instance slots, more than {}",
            options.max_plugins,
            options.worker_threads,
            RuntimeOptions::MAX_POOL_SLOTS
        )
    } else if !(RuntimeOptions::MIN_CALL_DEADLINE..=RuntimeOptions::MAX_CALL_DEADLINE)
        .contains(&options.call_deadline)
    {
        "call_deadline must be between 1 ms and 10 s".to_owned()
    } else if options.memory_limit_bytes < RuntimeOptions::MIN_MEMORY_LIMIT
        || memory > RuntimeOptions::MAX_MEMORY_LIMIT
    {
        "memory_limit_bytes must be between one WebAssembly page (64 KiB) and 4 GiB".to_owned()
    } else if let Some(counter) = &options.fault_counter
        && !has_labels(counter, &["plugin", "kind"])
    {
        "the fault counter must have the labels plugin and kind".to_owned()
    } else {
        return Ok(());
    };
    Err(WasmError::Runtime(problem))
}

fn has_labels(counter: &prometheus::IntCounterVec, labels: &[&str]) -> bool {
    use prometheus::core::Collector;
    counter
        .desc()
        .first()
        .is_some_and(|desc| desc.variable_labels == labels)
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
        let out_of_range = [
            RuntimeOptions {
                call_deadline: Duration::from_micros(500),
                ..RuntimeOptions::default()
            },
            RuntimeOptions {
                call_deadline: Duration::from_secs(11),
                ..RuntimeOptions::default()
            },
            RuntimeOptions {
                memory_limit_bytes: 1024,
                ..RuntimeOptions::default()
            },
            RuntimeOptions {
                worker_threads: 62,
                max_plugins: 65,
                ..RuntimeOptions::default()
            },
        ];
        for options in out_of_range {
            let error = check(&options).expect_err("out of range");
            assert!(matches!(error, WasmError::Runtime(_)), "{error}");
        }
        let pool = RuntimeOptions {
            worker_threads: 62,
            max_plugins: 64,
            ..RuntimeOptions::default()
        };
        assert_eq!(RuntimeOptions::pool_slots(62, 64), 8192);
        assert!(check(&pool).is_ok(), "exactly the largest pool");
    }

    #[test]
    fn a_fault_counter_needs_the_plugin_and_kind_labels() {
        let counter = |labels: &[&str]| {
            prometheus::IntCounterVec::new(prometheus::Opts::new("faults_total", "faults"), labels)
                .expect("a valid counter")
        };
        let options = |labels: &[&str]| RuntimeOptions {
            fault_counter: Some(counter(labels)),
            ..RuntimeOptions::default()
        };
        assert!(check(&options(&["plugin", "kind"])).is_ok());
        assert!(check(&options(&["kind", "plugin"])).is_err());
        assert!(check(&options(&["plugin"])).is_err());
    }
}

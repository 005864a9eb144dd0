//! One immutable config snapshot: routes, upstreams and filter chains, built
//! whole from a validated config and swapped atomically on reload. A request
//! keeps the snapshot it started with until it finishes.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::model::RetrySpec;
use crate::config::{ConfigError, ConfigErrors, GatewayConfig};
use crate::router::Router;
use crate::upstream::HealthRegistry;
pub use crate::upstream::Upstream;
use crate::wasm::{FilterInstance, WasmRuntime};

/// Everything a request needs, fixed for its lifetime.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one on each successful reload (1 at start).
    pub generation: u64,
    pub config: Arc<GatewayConfig>,
    pub router: Router,
    pub routes: Vec<Route>,
    pub upstreams: Vec<Upstream>,
}

/// A route as the hot path uses it.
#[derive(Debug)]
pub struct Route {
    /// The metrics/log label (the config's name).
    pub name: Arc<str>,
    pub prefix: String,
    pub strip_prefix: bool,
    pub upstream: usize,
    /// The filter chain, in order.
    pub filters: Vec<Arc<FilterInstance>>,
    /// Whole-request deadline.
    pub timeout: Option<Duration>,
    pub retries: RetrySpec,
    /// Shared with the next snapshot while the route stays (see
    /// [`Snapshot::keep_retry_budgets`]).
    pub retry_budget: Arc<RetryBudget>,
}

/// Retries may add at most `ratio` of a route's requests, plus a reserve of
/// [`RetryBudget::RESERVE`] so a quiet route can still retry. Counted in
/// thousandths of a retry. A token bucket without a clock: each request
/// deposits `ratio` of a retry, each retry withdraws one, and the balance never
/// exceeds the reserve, so after an outage the reserve comes back through
/// requests, not through time.
#[derive(Debug)]
pub struct RetryBudget {
    ratio_milli: i64,
    balance: AtomicI64,
}

impl RetryBudget {
    pub const RESERVE: i64 = 10;

    pub fn new(ratio: f64) -> Self {
        Self {
            ratio_milli: (ratio * 1000.0) as i64,
            balance: AtomicI64::new(Self::RESERVE * 1000),
        }
    }

    /// A request arrived: it earns `ratio` of a retry, up to the cap.
    pub fn deposit(&self) {
        let cap = Self::RESERVE * 1000;
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b < cap).then(|| (b + self.ratio_milli).min(cap))
            });
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= 1000).then_some(b - 1000)
            })
            .is_ok()
    }
}

impl Snapshot {
    /// Builds a snapshot: compiles each plugin module once and starts each
    /// filter (its `on_configure` must accept the configuration). Errors name
    /// the route entry that brought the plugin in.
    pub fn build(
        config: GatewayConfig,
        wasm: &WasmRuntime,
        health: &HealthRegistry,
        generation: u64,
        file: &str,
    ) -> Result<Snapshot, ConfigErrors> {
        let mut errors = Vec::new();
        let mut modules = std::collections::HashMap::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        let callouts = crate::wasm::CalloutUpstreams::from_config(&config);
        for spec in &config.routes {
            let mut filters = Vec::with_capacity(spec.plugins.len());
            for p in &spec.plugins {
                let err = |message: String| ConfigError {
                    file: file.to_owned(),
                    line: p.line,
                    column: p.column,
                    key: format!("{}.name", p.key),
                    message: crate::config::error::one_line(&message),
                };
                let module = match modules.get(&p.name) {
                    Some(m) => Arc::clone(m),
                    None => match load_module(&config, wasm, &p.name) {
                        Ok(m) => {
                            modules.insert(p.name.clone(), Arc::clone(&m));
                            m
                        }
                        Err(message) => {
                            errors.push(err(message));
                            continue;
                        }
                    },
                };
                let settings = crate::wasm::FilterSettings {
                    configuration: p.config.clone(),
                    root_id: String::new(),
                    upstreams: Arc::clone(&callouts),
                    fail_open: p.fail_open,
                };
                match wasm.filter_with(&module, settings) {
                    Ok(f) => filters.push(f),
                    Err(e) => errors.push(err(format!(
                        "plugin `{}` refused its configuration: {e}",
                        p.name
                    ))),
                }
            }
            routes.push(Route {
                name: Arc::from(spec.name.as_str()),
                prefix: spec.path.clone(),
                strip_prefix: spec.strip_prefix,
                upstream: spec.upstream,
                filters,
                timeout: spec.timeout,
                retries: spec.retries.clone(),
                retry_budget: Arc::new(RetryBudget::new(spec.retries.budget)),
            });
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| Upstream::new(u.clone(), health))
            .collect();
        Ok(Snapshot {
            generation,
            router: Router::new(&config.routes),
            config: Arc::new(config),
            routes,
            upstreams,
        })
    }

    /// Takes over the retry budgets of `previous` for the routes that stay (same
    /// name, same budget ratio), so that a reload neither refills a budget an
    /// outage has spent nor empties one. Requests still on `previous` keep
    /// spending from the same budget. Like Envoy, which keeps a cluster's
    /// circuit-breaker state when a config update leaves the cluster unchanged.
    pub fn keep_retry_budgets(&mut self, previous: &Snapshot) {
        keep_retry_budgets(&mut self.routes, &previous.routes);
    }
}

fn keep_retry_budgets(routes: &mut [Route], previous: &[Route]) {
    for route in routes {
        if let Some(old) = previous
            .iter()
            .find(|o| o.name == route.name && o.retries.budget == route.retries.budget)
        {
            route.retry_budget = Arc::clone(&old.retry_budget);
        }
    }
}

fn load_module(
    config: &GatewayConfig,
    wasm: &WasmRuntime,
    name: &str,
) -> Result<Arc<crate::wasm::PluginModule>, String> {
    if let Some(path) = config.plugin_files.get(name) {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        return wasm
            .load_module(name, &bytes)
            .map_err(|e| format!("{}: {e}", path.display()));
    }
    let bytes = crate::wasm::builtin_module_bytes(name)
        .ok_or_else(|| format!("unknown plugin `{name}`"))?;
    wasm.load_module(name, bytes).map_err(|e| e.to_string())
}

/// The live snapshot, shared by the proxy, the admin API and the reloader.
#[derive(Debug, Clone)]
pub struct SnapshotHandle {
    current: Arc<ArcSwap<Snapshot>>,
    generations: Arc<AtomicU64>,
}

impl SnapshotHandle {
    pub fn new(initial: Snapshot) -> Self {
        let generation = initial.generation;
        Self {
            current: Arc::new(ArcSwap::from_pointee(initial)),
            generations: Arc::new(AtomicU64::new(generation)),
        }
    }

    /// The snapshot a new request should use.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The generation number the next snapshot should carry.
    pub fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Makes `next` the snapshot for new requests; in-flight ones keep theirs.
    pub fn swap(&self, next: Snapshot) {
        self.current.store(Arc::new(next));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_budget_spends_the_reserve_then_the_ratio() {
        let b = RetryBudget::new(0.2);
        // A route that has had no requests yet may retry RESERVE times.
        for i in 0..RetryBudget::RESERVE {
            assert!(b.withdraw(), "retry {i} of the reserve");
        }
        assert!(!b.withdraw(), "the reserve is spent");
        // Then one retry per five requests, never two in a row.
        for round in 0..4 {
            for _ in 0..4 {
                b.deposit();
                assert!(!b.withdraw(), "round {round}: not earned yet");
            }
            b.deposit();
            assert!(b.withdraw(), "round {round}: five requests earn a retry");
            assert!(!b.withdraw(), "round {round}: one retry only");
        }
        // Requests refill the reserve, but no further than it.
        for _ in 0..1000 {
            b.deposit();
        }
        for i in 0..RetryBudget::RESERVE {
            assert!(b.withdraw(), "retry {i} of the refilled reserve");
        }
        assert!(!b.withdraw(), "the balance stops at the reserve");
    }

    #[test]
    fn retry_budget_ratios_at_the_edges() {
        let none = RetryBudget::new(0.0);
        for _ in 0..RetryBudget::RESERVE {
            assert!(none.withdraw());
        }
        for _ in 0..100 {
            none.deposit();
        }
        assert!(!none.withdraw(), "ratio 0: only the reserve");

        let all = RetryBudget::new(1.0);
        for _ in 0..RetryBudget::RESERVE {
            assert!(all.withdraw());
        }
        for _ in 0..100 {
            all.deposit();
            assert!(all.withdraw(), "ratio 1: every request may retry");
            assert!(!all.withdraw());
        }
    }

    fn route(name: &str, budget: f64) -> Route {
        Route {
            name: Arc::from(name),
            prefix: "/".to_owned(),
            strip_prefix: false,
            upstream: 0,
            filters: Vec::new(),
            timeout: None,
            retries: RetrySpec {
                max: 1,
                budget,
                non_idempotent: false,
            },
            retry_budget: Arc::new(RetryBudget::new(budget)),
        }
    }

    #[test]
    fn a_reload_keeps_the_budgets_of_unchanged_routes() {
        let old = vec![route("a", 0.2), route("b", 0.2), route("gone", 0.2)];
        for r in &old {
            while r.retry_budget.withdraw() {}
        }
        let mut new = vec![route("a", 0.2), route("b", 0.5), route("new", 0.2)];
        keep_retry_budgets(&mut new, &old);
        assert!(Arc::ptr_eq(&new[0].retry_budget, &old[0].retry_budget));
        assert!(
            !new[0].retry_budget.withdraw(),
            "still spent after the reload"
        );
        assert!(
            new[1].retry_budget.withdraw(),
            "a changed ratio starts afresh"
        );
        assert!(
            new[2].retry_budget.withdraw(),
            "a new route has its reserve"
        );
    }
}

//! Upstreams at run time: the targets of each upstream, load balancing over
//! the healthy ones, and the background work that keeps target state fresh.
//!
//! - [`Upstream::pick`] chooses a target: smooth weighted round robin,
//!   least connections (in-flight requests per unit of weight), or a
//!   consistent hash (Pingora's Ketama ring) on the client IP, a header or a
//!   cookie. Targets that are unhealthy, ejected, or already tried by this
//!   request are skipped; no target left means `None` (a 503 for the client).
//! - [`health`]: per-target state in a process-wide registry, so it survives
//!   reloads for upstreams that stay.
//! - [`checks`]: active HTTP/TCP health checks, and [`dns`]: DNS names
//!   resolved again on a schedule; both run on the side runtime against
//!   whatever snapshot is current.

pub mod checks;
pub mod dns;
pub mod health;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use pingora::lb::Backend;
use pingora::lb::selection::consistent::KetamaHashing;
use pingora::lb::selection::{BackendIter, BackendSelection};

use crate::config::model::UpstreamSpec;
use crate::config::surface::Balance;
pub use health::{HealthRegistry, InFlight, TargetHealth};

/// One address of an upstream, with its shared health state.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub weight: u32,
    /// The configured target it came from (`host:port` as written).
    pub target: Arc<str>,
    pub health: Arc<TargetHealth>,
}

/// The current addresses of an upstream and the selection structures built
/// from them; replaced whole when DNS answers change.
struct Endpoints {
    list: Vec<Endpoint>,
    /// What each configured target resolved to, in the order of the spec's
    /// targets, before an address two targets share was kept once in `list`:
    /// what the next DNS answer is compared with.
    answers: Vec<Vec<SocketAddr>>,
    /// Smooth weighted round-robin order: indexes into `list`.
    schedule: Vec<usize>,
    ring: Option<Arc<KetamaHashing>>,
}

/// An upstream of one snapshot.
pub struct Upstream {
    pub name: Arc<str>,
    pub spec: UpstreamSpec,
    endpoints: ArcSwap<Endpoints>,
    next: AtomicUsize,
    /// When the DNS names were last resolved (see [`dns`]).
    last_resolved: Mutex<Instant>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("endpoints", &self.endpoints.load().list)
            .finish()
    }
}

impl Upstream {
    pub fn new(spec: UpstreamSpec, registry: &HealthRegistry) -> Self {
        let answers = spec.targets.iter().map(|t| t.resolved.clone()).collect();
        let endpoints = build_endpoints(&spec, answers, registry);
        Self {
            name: Arc::from(spec.name.as_str()),
            endpoints: ArcSwap::from_pointee(endpoints),
            spec,
            next: AtomicUsize::new(0),
            last_resolved: Mutex::new(Instant::now()),
        }
    }

    /// The current endpoints (for the admin API and the health checker).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.endpoints.load().list.clone()
    }

    /// A target for a request. `hash_key` is the consistent-hash input (None
    /// falls back to round robin); `avoid` lists targets this request already
    /// tried. Returns None when no target is available.
    pub fn pick(&self, hash_key: Option<&[u8]>, avoid: &[SocketAddr]) -> Option<Endpoint> {
        let eps = self.endpoints.load();
        let usable = |e: &Endpoint| e.health.is_available() && !avoid.contains(&e.addr);
        let found = match (self.spec.balance, hash_key, &eps.ring) {
            (Balance::LeastConnections, ..) => self.least_connections(&eps, &usable),
            (Balance::ConsistentHash, Some(key), Some(ring)) => {
                let mut it = ring.iter(key);
                // Walk the ring a bounded number of points past unusable targets.
                let mut found = None;
                for _ in 0..eps.list.len() * 8 + 8 {
                    let Some(b) = it.next() else { break };
                    let addr = b.addr.as_inet().copied();
                    if let Some(e) = eps.list.iter().find(|e| Some(e.addr) == addr)
                        && usable(e)
                    {
                        found = Some(e.clone());
                        break;
                    }
                }
                found.or_else(|| self.round_robin(&eps, &usable))
            }
            _ => self.round_robin(&eps, &usable),
        };
        // Every other target is out: a target already tried beats none.
        found.or_else(|| {
            (!avoid.is_empty())
                .then(|| self.round_robin(&eps, &|e: &Endpoint| e.health.is_available()))
                .flatten()
        })
    }

    fn round_robin(&self, eps: &Endpoints, usable: &dyn Fn(&Endpoint) -> bool) -> Option<Endpoint> {
        let n = eps.schedule.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &eps.list[eps.schedule[(start + i) % n]])
            .find(|e| usable(e))
            .cloned()
    }

    fn least_connections(
        &self,
        eps: &Endpoints,
        usable: &dyn Fn(&Endpoint) -> bool,
    ) -> Option<Endpoint> {
        let n = eps.list.len();
        if n == 0 {
            return None;
        }
        // Start at a rotating offset so ties spread evenly.
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<&Endpoint> = None;
        for i in 0..n {
            let e = &eps.list[(start + i) % n];
            if !usable(e) {
                continue;
            }
            let better = best.is_none_or(|b| {
                // in_flight/weight < b.in_flight/b.weight, without division.
                (e.health.in_flight() as u64) * u64::from(b.weight)
                    < (b.health.in_flight() as u64) * u64::from(e.weight)
            });
            if better {
                best = Some(e);
            }
        }
        best.cloned()
    }

    /// Whether some target may take a request now.
    pub fn has_available(&self) -> bool {
        self.endpoints
            .load()
            .list
            .iter()
            .any(|e| e.health.is_available())
    }
}

/// The endpoints for these answers (one list of addresses per configured
/// target); an address two targets share is kept once, with the first one's
/// weight.
fn build_endpoints(
    spec: &UpstreamSpec,
    answers: Vec<Vec<SocketAddr>>,
    registry: &HealthRegistry,
) -> Endpoints {
    let mut list: Vec<Endpoint> = Vec::new();
    for (t, addrs) in spec.targets.iter().zip(&answers) {
        let target: Arc<str> = Arc::from(t.address.as_str());
        for addr in addrs {
            if list.iter().any(|e| e.addr == *addr) {
                continue;
            }
            list.push(Endpoint {
                addr: *addr,
                weight: t.weight,
                target: Arc::clone(&target),
                health: registry.get(&spec.name, *addr),
            });
        }
    }
    let weights: Vec<u32> = list.iter().map(|e| e.weight).collect();
    let schedule = smooth_weighted_order(&weights);
    let ring = (spec.balance == Balance::ConsistentHash).then(|| {
        let backends: BTreeSet<Backend> = list
            .iter()
            .filter_map(|e| Backend::new_with_weight(&e.addr.to_string(), e.weight as usize).ok())
            .collect();
        Arc::new(KetamaHashing::build(&backends))
    });
    Endpoints {
        list,
        answers,
        schedule,
        ring,
    }
}

/// nginx's smooth weighted round robin, unrolled into one cycle: weights
/// 5,1,1 give a,a,b,a,c,a,a rather than a,a,a,a,a,b,c.
fn smooth_weighted_order(weights: &[u32]) -> Vec<usize> {
    if weights.windows(2).all(|w| w[0] == w[1]) {
        return (0..weights.len()).collect();
    }
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += i64::from(*w);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        order.push(best);
    }
    order
}

#[cfg(test)]
mod tests;

//! DNS names among an upstream's targets, resolved again on a schedule: each
//! upstream on its own `resolve_interval`, the current snapshot's upstreams
//! only (a reload resolves everything afresh anyway). New answers replace the
//! endpoints whole; an address that stays keeps its health state (it lives in
//! the [`HealthRegistry`]), and a name that fails to resolve keeps its old
//! addresses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{HealthRegistry, Upstream, build_endpoints};
use crate::snapshot::SnapshotHandle;

/// How often the loop looks for upstreams due for resolution.
const DNS_TICK: Duration = Duration::from_secs(1);

/// Resolves `host:port` to its addresses, sorted and without duplicates; an
/// error says why not. Blocking: it runs on tokio's blocking pool.
pub type Resolver = Arc<dyn Fn(&str) -> Result<Vec<SocketAddr>, String> + Send + Sync>;

/// The system's resolver (`getaddrinfo`), as used when the config is loaded.
pub fn system_resolver() -> Resolver {
    Arc::new(crate::config::upstream::resolve)
}

/// Resolves DNS names among the targets again, each upstream on its own
/// `resolve_interval`, until `stop` turns true.
pub async fn run_dns_refresh(
    snapshots: SnapshotHandle,
    registry: HealthRegistry,
    resolver: Resolver,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(DNS_TICK) => {}
            _ = stop.changed() => return,
        }
        let snapshot = snapshots.load();
        if !snapshot.upstreams.iter().any(Upstream::has_names) {
            continue;
        }
        let (registry, resolver) = (registry.clone(), Arc::clone(&resolver));
        let now = Instant::now();
        let _ = tokio::task::spawn_blocking(move || {
            refresh_due(&snapshot.upstreams, &registry, &*resolver, now)
        })
        .await;
    }
}

/// Resolves the upstreams whose `resolve_interval` has passed at `now`, one
/// after the other (blocking); returns how many were resolved.
fn refresh_due(
    upstreams: &[Upstream],
    registry: &HealthRegistry,
    resolve: &dyn Fn(&str) -> Result<Vec<SocketAddr>, String>,
    now: Instant,
) -> usize {
    let mut resolved = 0;
    for upstream in upstreams {
        if upstream.claim_resolution(now) {
            upstream.refresh_dns(registry, resolve);
            resolved += 1;
        }
    }
    resolved
}

impl Upstream {
    /// Whether any target is a DNS name (resolved again on a schedule).
    pub fn has_names(&self) -> bool {
        self.spec.targets.iter().any(|t| t.is_name)
    }

    /// True (and the next resolution is `resolve_interval` from `now`) when
    /// this upstream has names and its last resolution is that long ago. The
    /// first is due one interval after the upstream was built from the config,
    /// which had just resolved the names.
    fn claim_resolution(&self, now: Instant) -> bool {
        if !self.has_names() {
            return false;
        }
        let mut last = self.last_resolved.lock().unwrap_or_else(|p| p.into_inner());
        if now.saturating_duration_since(*last) < self.spec.resolve_interval {
            return false;
        }
        *last = now;
        true
    }

    /// Resolves the DNS names again with `resolve` (blocking) and swaps in new
    /// endpoints when an answer changed. A name that fails to resolve keeps its
    /// old addresses; IP literals are never resolved. Returns whether the
    /// endpoints changed.
    pub fn refresh_dns(
        &self,
        registry: &HealthRegistry,
        resolve: &dyn Fn(&str) -> Result<Vec<SocketAddr>, String>,
    ) -> bool {
        let current = self.endpoints.load();
        let mut changed = false;
        let answers: Vec<Vec<SocketAddr>> = self
            .spec
            .targets
            .iter()
            .zip(&current.answers)
            .map(|(t, old)| {
                if !t.is_name {
                    return old.clone();
                }
                match resolve(&t.address) {
                    Ok(new) => {
                        changed |= new != *old;
                        new
                    }
                    Err(e) => {
                        tracing::warn!(upstream = %self.name, "DNS: {e}; keeping the old addresses");
                        old.clone()
                    }
                }
            })
            .collect();
        if changed {
            let eps = build_endpoints(&self.spec, answers, registry);
            tracing::info!(
                upstream = %self.name,
                addresses = ?eps.list.iter().map(|e| e.addr).collect::<Vec<_>>(),
                "DNS answers changed"
            );
            self.endpoints.store(Arc::new(eps));
        } else {
            tracing::debug!(upstream = %self.name, "DNS answers unchanged");
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::config::model::TargetSpec;
    use crate::config::surface::Balance;

    /// A resolver with set answers that records what it was asked.
    #[derive(Default)]
    struct FakeDns {
        answers: Mutex<HashMap<String, Result<Vec<SocketAddr>, String>>>,
        asked: Mutex<Vec<String>>,
    }

    impl FakeDns {
        fn set(&self, name: &str, answer: Result<Vec<SocketAddr>, String>) {
            self.answers
                .lock()
                .expect("lock")
                .insert(name.to_owned(), answer);
        }

        fn resolve(&self, name: &str) -> Result<Vec<SocketAddr>, String> {
            self.asked.lock().expect("lock").push(name.to_owned());
            self.answers
                .lock()
                .expect("lock")
                .get(name)
                .cloned()
                .unwrap_or_else(|| Err(format!("no answer for {name}")))
        }

        fn asked(&self) -> Vec<String> {
            std::mem::take(&mut *self.asked.lock().expect("lock"))
        }
    }

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 80))
    }

    /// An upstream `u` over `targets`: (address as written, what it resolved to at load).
    fn upstream(targets: &[(&str, Vec<SocketAddr>)], registry: &HealthRegistry) -> Upstream {
        let targets = targets
            .iter()
            .map(|(address, resolved)| TargetSpec {
                address: (*address).to_owned(),
                weight: 1,
                resolved: resolved.clone(),
                is_name: address.parse::<SocketAddr>().is_err(),
            })
            .collect();
        let spec = crate::upstream::tests::spec_of(Balance::RoundRobin, targets);
        Upstream::new(spec, registry)
    }

    fn addrs(u: &Upstream) -> Vec<SocketAddr> {
        u.endpoints().iter().map(|e| e.addr).collect()
    }

    #[test]
    fn a_changed_answer_is_swapped_in_and_kept_addresses_keep_their_health() {
        let reg = HealthRegistry::new();
        let u = upstream(&[("svc.test:80", vec![addr(1), addr(2)])], &reg);
        let ejected = reg.get("u", addr(1));
        assert!(ejected.record_failure(u.spec.passive.as_ref()));
        let dns = FakeDns::default();
        dns.set("svc.test:80", Ok(vec![addr(1), addr(3)]));

        assert!(u.refresh_dns(&reg, &|n| dns.resolve(n)), "a change");
        assert_eq!(addrs(&u), [addr(1), addr(3)]);
        let eps = u.endpoints();
        assert!(Arc::ptr_eq(&eps[0].health, &ejected), "the same state");
        assert!(!eps[0].health.is_available(), "still ejected");
        assert!(eps[1].health.is_available());
        for _ in 0..4 {
            let picked = u.pick(None, &[]).expect("a target").addr;
            assert_eq!(picked, addr(3), "neither the ejected nor the removed one");
        }

        assert!(!u.refresh_dns(&reg, &|n| dns.resolve(n)), "same answer");
        assert_eq!(dns.asked(), ["svc.test:80", "svc.test:80"]);
    }

    #[test]
    fn a_failed_lookup_keeps_the_old_addresses() {
        let reg = HealthRegistry::new();
        let u = upstream(
            &[("a.test:80", vec![addr(1)]), ("b.test:80", vec![addr(2)])],
            &reg,
        );
        let dns = FakeDns::default();
        dns.set("a.test:80", Err("cannot resolve `a.test:80`".to_owned()));
        dns.set("b.test:80", Ok(vec![addr(2)]));
        assert!(!u.refresh_dns(&reg, &|n| dns.resolve(n)));
        assert_eq!(addrs(&u), [addr(1), addr(2)]);

        // One name fails while the other changes: the failed one keeps its address.
        dns.set("b.test:80", Ok(vec![addr(3)]));
        assert!(u.refresh_dns(&reg, &|n| dns.resolve(n)));
        assert_eq!(addrs(&u), [addr(1), addr(3)]);
        // It comes back with its old answer: nothing changed for it.
        dns.set("a.test:80", Ok(vec![addr(1)]));
        assert!(!u.refresh_dns(&reg, &|n| dns.resolve(n)));
    }

    #[test]
    fn ip_literals_are_never_resolved() {
        let reg = HealthRegistry::new();
        let literal = addr(9).to_string();
        let u = upstream(
            &[
                (literal.as_str(), vec![addr(9)]),
                ("svc.test:80", vec![addr(1)]),
            ],
            &reg,
        );
        let dns = FakeDns::default();
        dns.set("svc.test:80", Ok(vec![addr(2)]));
        assert!(u.refresh_dns(&reg, &|n| dns.resolve(n)));
        assert_eq!(dns.asked(), ["svc.test:80"]);
        assert_eq!(addrs(&u), [addr(9), addr(2)]);
    }

    #[test]
    fn two_names_for_one_address_are_no_change_at_every_interval() {
        let reg = HealthRegistry::new();
        let u = upstream(
            &[
                ("a.test:80", vec![addr(1)]),
                ("b.test:80", vec![addr(1), addr(2)]),
            ],
            &reg,
        );
        assert_eq!(addrs(&u), [addr(1), addr(2)], "a shared address once");
        let dns = FakeDns::default();
        dns.set("a.test:80", Ok(vec![addr(1)]));
        dns.set("b.test:80", Ok(vec![addr(1), addr(2)]));
        for round in 0..3 {
            assert!(
                !u.refresh_dns(&reg, &|n| dns.resolve(n)),
                "round {round}: the same answers are no change"
            );
        }
        // The second name drops the shared address: the first still has it.
        dns.set("b.test:80", Ok(vec![addr(2)]));
        assert!(u.refresh_dns(&reg, &|n| dns.resolve(n)));
        assert_eq!(addrs(&u), [addr(1), addr(2)]);
        assert!(!u.refresh_dns(&reg, &|n| dns.resolve(n)));
    }

    #[test]
    fn each_upstream_is_resolved_once_per_interval() {
        let reg = HealthRegistry::new();
        let named = upstream(&[("svc.test:80", vec![addr(1)])], &reg);
        let literal = addr(9).to_string();
        let literal_only = upstream(&[(literal.as_str(), vec![addr(9)])], &reg);
        let t0 = Instant::now();
        let dns = FakeDns::default();
        dns.set("svc.test:80", Ok(vec![addr(1)]));
        let list = [named, literal_only];
        let pass = |at: Duration| refresh_due(&list, &reg, &|n| dns.resolve(n), t0 + at);

        assert_eq!(pass(Duration::ZERO), 0, "just resolved by the config load");
        assert_eq!(pass(Duration::from_secs(29)), 0);
        assert_eq!(pass(Duration::from_secs(30)), 1, "one interval later");
        assert_eq!(pass(Duration::from_secs(31)), 0, "not again right away");
        assert_eq!(pass(Duration::from_secs(59)), 0);
        assert_eq!(pass(Duration::from_secs(60)), 1);
        assert_eq!(dns.asked(), ["svc.test:80", "svc.test:80"]);
    }
}

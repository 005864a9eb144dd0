//! Health of each upstream target: active-check state, passive ejection and
//! in-flight request counts. Kept in a process-wide [`HealthRegistry`] keyed by
//! (upstream name, address), so a reload that keeps an upstream keeps what is
//! known about its targets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::model::PassiveSpec;

/// What is known about one target. All fields are atomics: the proxy threads,
/// the health checker and the admin API read and write them concurrently.
#[derive(Debug)]
pub struct TargetHealth {
    epoch: Instant,
    /// Verdict of the active checks (true until they say otherwise).
    active_healthy: AtomicBool,
    /// Consecutive active results that disagree with the current verdict.
    active_streak: AtomicU32,
    /// Consecutive failed requests (passive).
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which the target is ejected; 0 = not ejected.
    ejected_until: AtomicU64,
    /// Milliseconds since `epoch` of the next active check.
    next_check: AtomicU64,
    pub(super) probing: AtomicBool,
    /// Requests in flight to this target (least-connections).
    in_flight: AtomicUsize,
}

impl TargetHealth {
    fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            active_healthy: AtomicBool::new(true),
            active_streak: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            next_check: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether new requests may go to this target.
    pub fn is_available(&self) -> bool {
        self.active_healthy.load(Ordering::Relaxed) && !self.is_ejected()
    }

    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    pub fn active_healthy(&self) -> bool {
        self.active_healthy.load(Ordering::Relaxed)
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn track(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// A request got a response from this target.
    pub fn record_success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// A request failed to reach this target or lost it midway. Returns true
    /// when this failure ejected the target.
    pub fn record_failure(&self, passive: Option<&PassiveSpec>) -> bool {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(p) = passive else {
            return false;
        };
        if n < p.max_failures || self.is_ejected() {
            return false;
        }
        let until = self.now_ms() + p.ejection_time.as_millis() as u64;
        self.ejected_until.store(until.max(1), Ordering::Relaxed);
        // After the ejection a single further failure ejects it again; one
        // success resets the count (recovery).
        self.failures
            .store(p.max_failures.saturating_sub(1), Ordering::Relaxed);
        true
    }

    /// Folds one active check result in; returns the new verdict when it changed.
    pub fn record_check(&self, ok: bool, healthy_after: u32, unhealthy_after: u32) -> Option<bool> {
        let healthy = self.active_healthy.load(Ordering::Relaxed);
        if ok == healthy {
            self.active_streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.active_streak.fetch_add(1, Ordering::Relaxed) + 1;
        let needed = if ok { healthy_after } else { unhealthy_after };
        if streak < needed {
            return None;
        }
        self.active_streak.store(0, Ordering::Relaxed);
        self.active_healthy.store(ok, Ordering::Relaxed);
        if ok {
            // A target the checks found healthy again gets traffic again.
            self.ejected_until.store(0, Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
        }
        Some(ok)
    }

    /// Claims the next check if it is due; false when not due or already running.
    pub(super) fn claim_check(&self, interval: Duration) -> bool {
        let now = self.now_ms();
        if self.next_check.load(Ordering::Relaxed) > now {
            return false;
        }
        if self.probing.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.next_check
            .store(now + interval.as_millis() as u64, Ordering::Relaxed);
        true
    }
}

/// Decrements the target's in-flight count when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<TargetHealth>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

type Entries = HashMap<(String, SocketAddr), Arc<TargetHealth>>;

/// Every target's health, shared by all snapshots of the process.
#[derive(Debug, Clone)]
pub struct HealthRegistry {
    epoch: Instant,
    entries: Arc<Mutex<Entries>>,
}

impl Default for HealthRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthRegistry {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            entries: Arc::default(),
        }
    }

    /// The state of `addr` in `upstream`, created healthy if unknown.
    pub fn get(&self, upstream: &str, addr: SocketAddr) -> Arc<TargetHealth> {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            map.entry((upstream.to_owned(), addr))
                .or_insert_with(|| Arc::new(TargetHealth::new(self.epoch))),
        )
    }

    /// Forgets targets no longer in use (after a reload or a DNS change).
    pub fn retain(&self, keep: impl Fn(&str, SocketAddr) -> bool) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|(u, a), _| keep(u, *a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_ejection_and_recovery() {
        let h = TargetHealth::new(Instant::now());
        let p = PassiveSpec {
            max_failures: 3,
            ejection_time: Duration::from_millis(50),
        };
        assert!(!h.record_failure(Some(&p)));
        assert!(!h.record_failure(Some(&p)));
        assert!(h.record_failure(Some(&p)));
        assert!(!h.is_available());
        std::thread::sleep(Duration::from_millis(80));
        assert!(h.is_available(), "back after the ejection time");
        assert!(h.record_failure(Some(&p)), "one more failure ejects again");
        std::thread::sleep(Duration::from_millis(80));
        h.record_success();
        assert_eq!(h.consecutive_failures(), 0);
        assert!(!h.record_failure(Some(&p)));
    }

    #[test]
    fn active_thresholds() {
        let h = TargetHealth::new(Instant::now());
        assert_eq!(h.record_check(false, 2, 2), None);
        assert_eq!(h.record_check(false, 2, 2), Some(false));
        assert!(!h.is_available());
        assert_eq!(h.record_check(true, 2, 2), None);
        assert_eq!(h.record_check(false, 2, 2), None, "streak broken");
        assert_eq!(h.record_check(true, 2, 2), None);
        assert_eq!(h.record_check(true, 2, 2), Some(true));
        assert!(h.is_available());
    }
}

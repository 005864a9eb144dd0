use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::config::model::{PassiveSpec, TargetSpec, UpstreamSpec};

fn spec(balance: Balance, weights: &[u32]) -> UpstreamSpec {
    let targets = weights
        .iter()
        .enumerate()
        .map(|(i, w)| TargetSpec {
            address: format!("127.0.0.1:{}", 1000 + i),
            weight: *w,
            resolved: vec![addr(i)],
            is_name: false,
        })
        .collect();
    spec_of(balance, targets)
}

/// An upstream `u` over `targets` with short timeouts and passive ejection after one
/// failure (also for the DNS tests).
pub(super) fn spec_of(balance: Balance, targets: Vec<TargetSpec>) -> UpstreamSpec {
    UpstreamSpec {
        name: "u".to_owned(),
        targets,
        balance,
        hash_on: (balance == Balance::ConsistentHash).then_some(crate::config::model::HashOn::Ip),
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
        http2: false,
        tls: None,
        resolve_interval: Duration::from_secs(30),
        health_check: None,
        passive: Some(PassiveSpec {
            max_failures: 1,
            ejection_time: Duration::from_secs(60),
        }),
    }
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16))
}

fn picks(u: &Upstream, n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| u.pick(None, &[]).expect("a target").addr.port() - 1000)
        .collect()
}

#[test]
fn smooth_weighted_round_robin_interleaves() {
    assert_eq!(smooth_weighted_order(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(smooth_weighted_order(&[1, 1, 1]), vec![0, 1, 2]);
    let u = Upstream::new(spec(Balance::RoundRobin, &[3, 1]), &HealthRegistry::new());
    let p = picks(&u, 8);
    assert_eq!(p.iter().filter(|&&i| i == 0).count(), 6, "{p:?}");
}

#[test]
fn unavailable_and_tried_targets_are_skipped() {
    let reg = HealthRegistry::new();
    let u = Upstream::new(spec(Balance::RoundRobin, &[1, 1, 1]), &reg);
    reg.get("u", addr(1))
        .record_failure(u.spec.passive.as_ref());
    for p in picks(&u, 6) {
        assert_ne!(p, 1);
    }
    let e = u.pick(None, &[addr(0)]).expect("target");
    assert_eq!(e.addr, addr(2));
    // Only tried targets left: one of them rather than none.
    assert!(u.pick(None, &[addr(0), addr(2)]).is_some());
    for i in [0, 2] {
        reg.get("u", addr(i))
            .record_failure(u.spec.passive.as_ref());
    }
    assert!(u.pick(None, &[]).is_none(), "no healthy target: none");
}

#[test]
fn least_connections_prefers_the_idle_target() {
    let reg = HealthRegistry::new();
    let u = Upstream::new(spec(Balance::LeastConnections, &[1, 1]), &reg);
    let busy = reg.get("u", addr(0)).track();
    for _ in 0..4 {
        assert_eq!(u.pick(None, &[]).expect("target").addr, addr(1));
    }
    drop(busy);
}

#[test]
fn consistent_hash_is_sticky_and_moves_off_an_ejected_target() {
    let reg = HealthRegistry::new();
    let u = Upstream::new(spec(Balance::ConsistentHash, &[1, 1, 1]), &reg);
    let first = u.pick(Some(b"user-42"), &[]).expect("target").addr;
    for _ in 0..10 {
        assert_eq!(u.pick(Some(b"user-42"), &[]).expect("target").addr, first);
    }
    let spread: std::collections::HashSet<SocketAddr> = (0..50)
        .map(|i| {
            u.pick(Some(format!("k{i}").as_bytes()), &[])
                .expect("t")
                .addr
        })
        .collect();
    assert!(spread.len() > 1, "keys spread over targets");
    reg.get("u", first).record_failure(u.spec.passive.as_ref());
    let moved = u.pick(Some(b"user-42"), &[]).expect("target").addr;
    assert_ne!(moved, first);
}

#[test]
fn health_survives_a_rebuild_of_the_same_upstream() {
    let reg = HealthRegistry::new();
    let a = Upstream::new(spec(Balance::RoundRobin, &[1, 1]), &reg);
    reg.get("u", addr(0))
        .record_failure(a.spec.passive.as_ref());
    let b = Upstream::new(spec(Balance::RoundRobin, &[1, 1]), &reg);
    for p in picks(&b, 4) {
        assert_eq!(p, 1, "the ejected target stays ejected after a reload");
    }
}

//! Upstreams in the validated model: targets resolved, balancing and health
//! settings checked.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::error::Diagnostics;
use super::surface::{Balance, HealthCheckKind, UpstreamConf};

#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    pub name: String,
    pub targets: Vec<TargetSpec>,
    pub balance: Balance,
    /// Set when `balance` is `consistent_hash`.
    pub hash_on: Option<HashOn>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub resolve_interval: Duration,
    pub health_check: Option<HealthCheckSpec>,
    pub passive: Option<PassiveSpec>,
    /// HTTP/2 (prior knowledge) to the targets.
    pub http2: bool,
    /// TLS to the targets; `None` for plaintext.
    pub tls: Option<super::tls::UpstreamTls>,
}

/// One configured target; a DNS name may stand for several addresses.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// As written: `host:port`.
    pub address: String,
    pub weight: u32,
    /// The addresses it resolved to when the config was loaded.
    pub resolved: Vec<SocketAddr>,
    /// False for IP literals (never resolved again).
    pub is_name: bool,
}

/// What a consistent hash is computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    Ip,
    Header(http::HeaderName),
    Cookie(String),
}

impl fmt::Display for HashOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashOn::Ip => f.write_str("ip"),
            HashOn::Header(h) => write!(f, "header:{h}"),
            HashOn::Cookie(c) => write!(f, "cookie:{c}"),
        }
    }
}

impl Balance {
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastConnections => "least_connections",
            Balance::ConsistentHash => "consistent_hash",
        }
    }
}

impl HealthCheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthCheckKind::Http => "http",
            HealthCheckKind::Tcp => "tcp",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckSpec {
    pub kind: HealthCheckKind,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PassiveSpec {
    pub max_failures: u32,
    pub ejection_time: Duration,
}

/// Largest sum of weights in one upstream (the round-robin schedule has one
/// slot per unit of weight).
const MAX_TOTAL_WEIGHT: u64 = 10_000;

pub(super) fn upstream(
    d: &mut Diagnostics,
    name: &str,
    u: &UpstreamConf,
    base_dir: &std::path::Path,
) -> UpstreamSpec {
    let key = |field: &str| format!("upstreams.{name}.{field}");
    let mut targets = Vec::with_capacity(u.targets.len());
    if u.targets.is_empty() {
        d.error(
            &Location::UNKNOWN,
            key("targets"),
            "at least one target is required",
        );
    }
    let mut total_weight = 0u64;
    for (i, t) in u.targets.iter().enumerate() {
        let at = &t.referenced;
        let tkey = key(&format!("targets[{i}]"));
        if t.value.weight == 0 {
            d.error(at, format!("{tkey}.weight"), "must be at least 1");
        }
        total_weight += u64::from(t.value.weight);
        let address = t.value.address.trim().to_owned();
        match resolve(&address) {
            Ok(resolved) => targets.push(TargetSpec {
                is_name: address.parse::<SocketAddr>().is_err(),
                address,
                weight: t.value.weight.max(1),
                resolved,
            }),
            Err(msg) => d.error(at, tkey, msg),
        }
    }
    if total_weight > MAX_TOTAL_WEIGHT {
        d.error(
            &Location::UNKNOWN,
            key("targets"),
            format!("weights add up to {total_weight}; at most {MAX_TOTAL_WEIGHT}"),
        );
    }
    let hash_on = match (&u.balance, &u.hash_on) {
        (Balance::ConsistentHash, None) => Some(HashOn::Ip),
        (Balance::ConsistentHash, Some(h)) => parse_hash_on(d, h, &key("hash_on")),
        (_, Some(h)) => {
            d.error(
                &h.referenced,
                key("hash_on"),
                "only used with `balance: consistent_hash`",
            );
            None
        }
        (_, None) => None,
    };
    let health_check = u.health_check.as_ref().map(|h| {
        positive(
            d,
            &h.healthy_threshold,
            &key("health_check.healthy_threshold"),
        );
        positive(
            d,
            &h.unhealthy_threshold,
            &key("health_check.unhealthy_threshold"),
        );
        if !h.path.value.starts_with('/') {
            d.error(
                &h.path.referenced,
                key("health_check.path"),
                "must start with `/`",
            );
        }
        HealthCheckSpec {
            kind: h.kind,
            path: h.path.value.clone(),
            interval: h.interval.max(Duration::from_millis(10)),
            timeout: h.timeout.max(Duration::from_millis(1)),
            healthy_threshold: h.healthy_threshold.value.max(1),
            unhealthy_threshold: h.unhealthy_threshold.value.max(1),
        }
    });
    let passive = u.passive.as_ref().map(|p| {
        positive(d, &p.max_failures, &key("passive.max_failures"));
        PassiveSpec {
            max_failures: p.max_failures.value.max(1),
            ejection_time: p.ejection_time,
        }
    });
    let tls = u
        .tls
        .as_ref()
        .and_then(|t| super::tls::upstream_tls(d, name, t, base_dir));
    if let (Some(_), Some(h)) = (&tls, &u.health_check)
        && h.kind == HealthCheckKind::Http
    {
        d.error(
            &h.path.referenced,
            key("health_check.type"),
            "HTTP health checks speak plaintext; on a TLS upstream use `type: tcp`",
        );
    }
    UpstreamSpec {
        name: name.to_owned(),
        targets,
        balance: u.balance,
        hash_on,
        connect_timeout: u.connect_timeout,
        read_timeout: u.read_timeout,
        write_timeout: u.write_timeout,
        resolve_interval: u.resolve_interval.max(Duration::from_secs(1)),
        health_check,
        passive,
        http2: u.http2,
        tls,
    }
}

fn positive(d: &mut Diagnostics, v: &Spanned<u32>, key: &str) {
    if v.value == 0 {
        d.error(&v.referenced, key, "must be at least 1");
    }
}

fn parse_hash_on(d: &mut Diagnostics, h: &Spanned<String>, key: &str) -> Option<HashOn> {
    let v = h.value.trim();
    let parsed = match v.split_once(':') {
        None if v == "ip" => Some(HashOn::Ip),
        Some(("header", name)) => http::HeaderName::from_bytes(name.trim().as_bytes())
            .ok()
            .map(HashOn::Header),
        Some(("cookie", name)) if !name.trim().is_empty() => {
            Some(HashOn::Cookie(name.trim().to_owned()))
        }
        _ => None,
    };
    if parsed.is_none() {
        d.error(
            &h.referenced,
            key,
            format!("invalid `{v}`; expected `ip`, `header:NAME` or `cookie:NAME`"),
        );
    }
    parsed
}

/// Resolves `host:port` (blocking; at load and from the resolver task).
pub fn resolve(address: &str) -> Result<Vec<SocketAddr>, String> {
    match address.to_socket_addrs() {
        Ok(it) => {
            let mut v: Vec<SocketAddr> = it.collect();
            v.sort();
            v.dedup();
            if v.is_empty() {
                Err(format!(
                    "cannot resolve `{address}`: no addresses; expected HOST:PORT"
                ))
            } else {
                Ok(v)
            }
        }
        Err(e) => Err(format!(
            "cannot resolve `{address}` ({e}); expected HOST:PORT"
        )),
    }
}

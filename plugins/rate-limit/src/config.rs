//! The plugin configuration: the operator's JSON ([`RawConfig`], unknown keys refused) and
//! the validated form the request path uses ([`Config`]). Every error names the key at
//! fault.

use serde::Deserialize;

/// Longest `per` / `window`: a day. Keeps every product of the limiter's arithmetic far
/// inside `u128`.
const MAX_PERIOD_NS: u64 = 86_400 * 1_000_000_000;
/// Largest `rate`, `burst` and `limit`.
const MAX_COUNT: u64 = 1_000_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    algorithm: Option<String>,
    rate: Option<u64>,
    per: Option<String>,
    burst: Option<u64>,
    limit: Option<u64>,
    window: Option<String>,
    key: Option<String>,
    mode: Option<String>,
    on_redis_error: Option<String>,
}

/// How requests are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `burst` tokens, refilled at `rate` per `per_ns`; a request takes one.
    TokenBucket { rate: u64, per_ns: u64, burst: u64 },
    /// At most `limit` requests in each aligned window of `window_ns`.
    FixedWindow { limit: u64, window_ns: u64 },
    /// At most `limit` requests in any `window_ns`, estimated from the current and the
    /// previous aligned window (the previous one weighted by how much of it still
    /// overlaps).
    SlidingWindow { limit: u64, window_ns: u64 },
}

/// What a request is counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// The `aistack.consumer` property (set by the auth filters); the client IP without.
    Consumer,
    /// One budget for the whole route.
    Route,
    /// The connection's client IP.
    Ip,
    /// A request header's value (lower-case name); the client IP without it.
    Header(String),
}

/// Where the counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Proxy-Wasm shared data: exact across the worker threads of one gateway.
    Local,
    /// Redis (the gateway's `aistack.rate_limit` foreign function): one limit for every
    /// gateway sharing the Redis; `on_error` applies when Redis fails or times out.
    Cluster { on_error: Policy },
}

/// What a cluster-mode check does when Redis cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Admit the request (the default: a Redis outage does not take the API down).
    Allow,
    /// Refuse it with 503 `rate_limit_unavailable`.
    Deny,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Allow => "allow",
            Policy::Deny => "deny",
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub algorithm: Algorithm,
    pub key: Key,
    pub mode: Mode,
}

/// Parses and validates the configuration (empty means all defaults, which is refused:
/// `rate` and `per` have none).
pub fn parse(bytes: &[u8]) -> Result<Config, String> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    let raw: RawConfig =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid configuration: {e}"))?;
    let invalid = |e: String| format!("invalid configuration: {e}");
    let mode = mode(&raw).map_err(invalid)?;
    let algorithm = algorithm(&raw).map_err(invalid)?;
    let key = key(raw.key.as_deref().unwrap_or("consumer")).map_err(invalid)?;
    Ok(Config {
        algorithm,
        key,
        mode,
    })
}

fn mode(raw: &RawConfig) -> Result<Mode, String> {
    let policy = raw.on_redis_error.as_deref();
    match raw.mode.as_deref().unwrap_or("local") {
        "local" if policy.is_some() => {
            Err("on_redis_error: only a setting of mode `cluster`".to_owned())
        }
        "local" => Ok(Mode::Local),
        "cluster" => {
            let on_error = match policy.unwrap_or("allow") {
                "allow" => Policy::Allow,
                "deny" => Policy::Deny,
                other => {
                    return Err(format!(
                        "on_redis_error: unknown policy {other:?} (expected allow or deny)"
                    ));
                }
            };
            Ok(Mode::Cluster { on_error })
        }
        other => Err(format!(
            "mode: unknown mode {other:?} (expected local or cluster)"
        )),
    }
}

fn algorithm(raw: &RawConfig) -> Result<Algorithm, String> {
    let name = raw.algorithm.as_deref().unwrap_or("token_bucket");
    let forbid = |present: bool, field: &str| {
        if present {
            Err(format!("{field}: not a setting of algorithm `{name}`"))
        } else {
            Ok(())
        }
    };
    match name {
        "token_bucket" => {
            forbid(raw.limit.is_some(), "limit")?;
            forbid(raw.window.is_some(), "window")?;
            let rate = count(raw.rate, "rate")?;
            let per_ns = period(raw.per.as_deref(), "per")?;
            let burst = match raw.burst {
                None => rate,
                Some(0) => return Err("burst: must be at least 1".to_owned()),
                Some(b) if b > MAX_COUNT => {
                    return Err(format!("burst: must be at most {MAX_COUNT}"));
                }
                Some(b) => b,
            };
            Ok(Algorithm::TokenBucket {
                rate,
                per_ns,
                burst,
            })
        }
        "fixed_window" | "sliding_window" => {
            forbid(raw.rate.is_some(), "rate")?;
            forbid(raw.per.is_some(), "per")?;
            forbid(raw.burst.is_some(), "burst")?;
            let limit = count(raw.limit, "limit")?;
            let window_ns = period(raw.window.as_deref(), "window")?;
            Ok(if name == "fixed_window" {
                Algorithm::FixedWindow { limit, window_ns }
            } else {
                Algorithm::SlidingWindow { limit, window_ns }
            })
        }
        other => Err(format!(
            "algorithm: unknown algorithm {other:?} (expected token_bucket, fixed_window or sliding_window)"
        )),
    }
}

fn count(value: Option<u64>, field: &str) -> Result<u64, String> {
    match value {
        None => Err(format!("{field}: missing (a number greater than 0)")),
        Some(0) => Err(format!("{field}: must be greater than 0")),
        Some(n) if n > MAX_COUNT => Err(format!("{field}: must be at most {MAX_COUNT}")),
        Some(n) => Ok(n),
    }
}

fn period(value: Option<&str>, field: &str) -> Result<u64, String> {
    let text = value.ok_or_else(|| format!("{field}: missing (a duration like 1s or 1m)"))?;
    let ns = duration_ns(text).map_err(|e| format!("{field}: {e}"))?;
    if ns == 0 {
        return Err(format!("{field}: must be longer than 0"));
    }
    if ns > MAX_PERIOD_NS {
        return Err(format!("{field}: must be at most 24h"));
    }
    Ok(ns)
}

/// `500ms`, `1s`, `5m`, `1h`, `1d`, in nanoseconds.
pub fn duration_ns(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a duration like 500ms, 1s, 1m, 1h or 1d");
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let scale: u64 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

fn key(text: &str) -> Result<Key, String> {
    match text {
        "consumer" => Ok(Key::Consumer),
        "route" => Ok(Key::Route),
        "ip" => Ok(Key::Ip),
        _ => match text.split_once(':') {
            Some(("header", name)) => {
                let name = name.trim().to_ascii_lowercase();
                if is_header_name(&name) {
                    Ok(Key::Header(name))
                } else {
                    Err(format!("key: {name:?} is not an HTTP header name"))
                }
            }
            _ => Err(format!(
                "key: unknown key kind {text:?} (expected consumer, route, ip or header:NAME)"
            )),
        },
    }
}

/// RFC 9110 token characters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests;

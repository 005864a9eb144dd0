//! The plugin configuration: the operator's JSON (`Raw*`, unknown keys refused) and the
//! validated form the request path uses ([`Config`]). Every error names the key at fault.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// Default `cooldown`: how long the circuit stays open before it lets probes through.
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(10);
/// Default `window` of `failure_ratio`.
const DEFAULT_WINDOW: Duration = Duration::from_secs(30);
/// Default `min_requests` of `failure_ratio`.
const DEFAULT_MIN_REQUESTS: u32 = 10;
/// Default `half_open_probes`.
const DEFAULT_PROBES: u32 = 1;
/// Default fallback status.
const DEFAULT_FALLBACK_STATUS: u16 = 503;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    failure_ratio: Option<f64>,
    min_requests: Option<u32>,
    window: Option<String>,
    consecutive_failures: Option<u32>,
    failure_statuses: Option<Vec<RawStatus>>,
    cooldown: Option<String>,
    half_open_probes: Option<u32>,
    fallback: Option<RawFallback>,
    scope: Option<String>,
}

/// `503` or a range `"500-599"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawStatus {
    Code(u16),
    Range(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFallback {
    upstream: Option<String>,
    status: Option<u16>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
}

/// Trip on the share of failures among recent requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratio {
    /// 0 < ratio ≤ 1.
    pub ratio: f64,
    /// Fewer requests than this in the window never trip.
    pub min_requests: u32,
    pub window: Duration,
}

/// What the client gets while the circuit is open (or a half-open one is full).
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    /// Send the request to this upstream instead (`aistack.upstream`); the static
    /// response below is then unused.
    pub upstream: Option<String>,
    pub status: u16,
    /// Lowercase names.
    pub headers: Vec<(String, String)>,
    /// `None`: the JSON error `circuit_open` with the request id.
    pub body: Option<String>,
}

/// Whose circuit an entry drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One circuit per route (`circuit:<route_name>`).
    Route,
    /// One circuit per upstream, shared by every route that names it and has the filter
    /// with `scope: upstream` (`circuit:upstream:<cluster_name>`).
    Upstream,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub scope: Scope,
    pub ratio: Option<Ratio>,
    pub consecutive: Option<u32>,
    /// Inclusive ranges of upstream statuses that count as failures.
    pub failure_statuses: Vec<(u16, u16)>,
    pub cooldown: Duration,
    pub probes: u32,
    pub fallback: Fallback,
}

impl Config {
    /// Whether an upstream's status counts as a failure.
    pub fn is_failure_status(&self, status: u16) -> bool {
        self.failure_statuses
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&status))
    }
}

/// Parses and validates the configuration; the error says which key is wrong and why.
pub fn parse(bytes: &[u8]) -> Result<Config, String> {
    let raw: RawConfig =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid configuration: {e}"))?;
    parse_raw(raw).map_err(|e| format!("invalid configuration: {e}"))
}

fn parse_raw(raw: RawConfig) -> Result<Config, String> {
    let ratio = match raw.failure_ratio {
        Some(ratio) => Some(ratio_of(ratio, raw.min_requests, raw.window.as_deref())?),
        None if raw.min_requests.is_some() || raw.window.is_some() => {
            return Err("`min_requests` and `window` apply only with `failure_ratio`".to_owned());
        }
        None => None,
    };
    if raw.consecutive_failures == Some(0) {
        return Err("consecutive_failures must be at least 1".to_owned());
    }
    if ratio.is_none() && raw.consecutive_failures.is_none() {
        return Err(
            "give `failure_ratio` (with `min_requests` and `window`), `consecutive_failures`, or both"
                .to_owned(),
        );
    }
    let failure_statuses = match raw.failure_statuses {
        None => vec![(500, 599)],
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, s)| status_range(s).map_err(|e| format!("failure_statuses[{i}]: {e}")))
            .collect::<Result<_, _>>()?,
    };
    let cooldown = match raw.cooldown.as_deref() {
        Some(text) => duration(text).map_err(|e| format!("cooldown: {e}"))?,
        None => DEFAULT_COOLDOWN,
    };
    if cooldown.is_zero() {
        return Err("cooldown must be longer than 0".to_owned());
    }
    let probes = raw.half_open_probes.unwrap_or(DEFAULT_PROBES);
    if probes == 0 {
        return Err("half_open_probes must be at least 1".to_owned());
    }
    let fallback = match raw.fallback {
        Some(f) => fallback(f)?,
        None => Fallback {
            upstream: None,
            status: DEFAULT_FALLBACK_STATUS,
            headers: Vec::new(),
            body: None,
        },
    };
    let scope = match raw.scope.as_deref() {
        None | Some("route") => Scope::Route,
        Some("upstream") => Scope::Upstream,
        Some(other) => {
            return Err(format!(
                "scope must be `route` or `upstream`, got {other:?}"
            ));
        }
    };
    Ok(Config {
        scope,
        ratio,
        consecutive: raw.consecutive_failures,
        failure_statuses,
        cooldown,
        probes,
        fallback,
    })
}

fn ratio_of(ratio: f64, min_requests: Option<u32>, window: Option<&str>) -> Result<Ratio, String> {
    if !(ratio > 0.0 && ratio <= 1.0) {
        return Err(format!(
            "failure_ratio must be greater than 0 and at most 1, got {ratio}"
        ));
    }
    let min_requests = min_requests.unwrap_or(DEFAULT_MIN_REQUESTS);
    if min_requests == 0 {
        return Err("min_requests must be at least 1".to_owned());
    }
    let window = match window {
        Some(text) => duration(text).map_err(|e| format!("window: {e}"))?,
        None => DEFAULT_WINDOW,
    };
    if window < Duration::from_millis(10) {
        return Err("window must be at least 10ms".to_owned());
    }
    Ok(Ratio {
        ratio,
        min_requests,
        window,
    })
}

fn status_range(raw: &RawStatus) -> Result<(u16, u16), String> {
    let (low, high) = match raw {
        RawStatus::Code(code) => (*code, *code),
        RawStatus::Range(text) => {
            let parse = |s: &str| s.trim().parse::<u16>().ok();
            match text.split_once('-') {
                Some((a, b)) => match (parse(a), parse(b)) {
                    (Some(a), Some(b)) => (a, b),
                    _ => {
                        return Err(format!(
                            "{text:?} is not a status or a range like \"500-599\""
                        ))
                    }
                },
                None => match parse(text) {
                    Some(code) => (code, code),
                    None => {
                        return Err(format!(
                            "{text:?} is not a status or a range like \"500-599\""
                        ))
                    }
                },
            }
        }
    };
    if !(100..=599).contains(&low) || !(100..=599).contains(&high) || low > high {
        return Err(format!(
            "{low}-{high} is not a range of HTTP statuses (100 to 599)"
        ));
    }
    Ok((low, high))
}

fn fallback(raw: RawFallback) -> Result<Fallback, String> {
    if let Some(upstream) = &raw.upstream {
        if upstream.is_empty() {
            return Err("fallback.upstream must name an upstream".to_owned());
        }
        if raw.status.is_some() || !raw.headers.is_empty() || raw.body.is_some() {
            return Err(
                "fallback: give either `upstream` or a static response (`status`, `headers`, `body`), not both"
                    .to_owned(),
            );
        }
    }
    let status = raw.status.unwrap_or(DEFAULT_FALLBACK_STATUS);
    if !(200..=599).contains(&status) {
        return Err(format!("fallback.status must be 200 to 599, got {status}"));
    }
    let mut headers = Vec::new();
    for (name, value) in raw.headers {
        let name = name.to_ascii_lowercase();
        if !is_header_name(&name) {
            return Err(format!(
                "fallback.headers: {name:?} is not an HTTP header name"
            ));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!(
                "fallback.headers.{name}: the value holds control characters"
            ));
        }
        headers.push((name, value));
    }
    Ok(Fallback {
        upstream: raw.upstream,
        status,
        headers,
        body: raw.body,
    })
}

/// `250ms`, `30s`, `5m`, `1h`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("{text:?} is not a duration like 10s, 5m, 1h or 500ms");
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(bad()),
    }
}

/// RFC 9110 token characters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

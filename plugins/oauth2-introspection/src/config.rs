//! The plugin configuration: the operator's JSON (`Raw*`, unknown keys refused) and the
//! validated form the request path uses ([`Config`]). Every error names the key at fault.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// Default `introspection.timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `cache.max_ttl`: an active token is trusted this long at most without asking
/// again (less when it expires sooner).
const DEFAULT_MAX_TTL: Duration = Duration::from_secs(300);
/// Default `cache.negative_ttl`: how long an inactive token is remembered as such.
const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Default `cache.max_entries`.
const DEFAULT_MAX_ENTRIES: u32 = 10_000;
/// Largest `cache.max_entries` accepted (each entry is a shared-data slot).
const MAX_ENTRIES_LIMIT: u32 = 1_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    introspection: RawEndpoint,
    client_id: String,
    client_secret: String,
    #[serde(default)]
    required_scopes: Vec<String>,
    #[serde(default = "default_consumer_claim")]
    consumer_claim: String,
    consumer_name_claim: Option<String>,
    #[serde(default)]
    forward_claims: BTreeMap<String, String>,
    #[serde(default = "default_header")]
    header: String,
    #[serde(default)]
    hide_credentials: bool,
    #[serde(default)]
    cache: RawCache,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    upstream: String,
    path: String,
    authority: Option<String>,
    timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCache {
    max_ttl: Option<String>,
    negative_ttl: Option<String>,
    max_entries: Option<u32>,
}

fn default_consumer_claim() -> String {
    "sub".to_owned()
}
fn default_header() -> String {
    "authorization".to_owned()
}

/// Where the introspection endpoint is: an upstream of the gateway's config and a path.
pub struct Endpoint {
    pub upstream: String,
    pub path: String,
    pub authority: String,
    pub timeout: Duration,
}

/// How answers are cached (in shared data, so every worker thread shares them).
pub struct Cache {
    pub max_ttl: Duration,
    pub negative_ttl: Duration,
    pub max_entries: u32,
}

/// The validated configuration.
pub struct Config {
    pub endpoint: Endpoint,
    /// `Basic …` from `client_id:client_secret`, each form-encoded first (RFC 6749 §2.3.1).
    pub client_authorization: String,
    pub required_scopes: Vec<String>,
    pub consumer_claim: String,
    pub consumer_name_claim: String,
    /// Claim name → request header name (lowercase).
    pub forward_claims: Vec<(String, String)>,
    pub header: String,
    pub hide_credentials: bool,
    pub cache: Cache,
}

/// Parses and validates the configuration; the error says which key is wrong and why.
pub fn parse(bytes: &[u8]) -> Result<Config, String> {
    let raw: RawConfig =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid configuration: {e}"))?;
    parse_raw(raw).map_err(|e| format!("invalid configuration: {e}"))
}

fn parse_raw(raw: RawConfig) -> Result<Config, String> {
    let endpoint = endpoint(raw.introspection)?;
    if raw.client_id.is_empty() {
        return Err("client_id must not be empty".to_owned());
    }
    if raw.client_secret.is_empty() {
        return Err("client_secret must not be empty".to_owned());
    }
    let mut required_scopes = Vec::new();
    for (i, scope) in raw.required_scopes.into_iter().enumerate() {
        // RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E.
        let valid = !scope.is_empty()
            && scope
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !valid {
            return Err(format!(
                "required_scopes[{i}]: {scope:?} is not a scope (no spaces, quotes or backslashes)"
            ));
        }
        required_scopes.push(scope);
    }
    let mut forward_claims = Vec::new();
    for (claim, header) in raw.forward_claims {
        let header = header.to_ascii_lowercase();
        if !is_header_name(&header) {
            return Err(format!(
                "forward_claims.{claim}: {header:?} is not an HTTP header name"
            ));
        }
        forward_claims.push((claim, header));
    }
    let header = raw.header.to_ascii_lowercase();
    if !is_header_name(&header) {
        return Err(format!("header: {header:?} is not an HTTP header name"));
    }
    if raw.consumer_claim.is_empty() {
        return Err("consumer_claim must not be empty".to_owned());
    }
    Ok(Config {
        endpoint,
        client_authorization: crate::introspect::basic(&raw.client_id, &raw.client_secret),
        required_scopes,
        consumer_name_claim: raw
            .consumer_name_claim
            .unwrap_or_else(|| raw.consumer_claim.clone()),
        consumer_claim: raw.consumer_claim,
        forward_claims,
        header,
        hide_credentials: raw.hide_credentials,
        cache: cache(raw.cache)?,
    })
}

fn endpoint(raw: RawEndpoint) -> Result<Endpoint, String> {
    if raw.upstream.is_empty() {
        return Err("introspection.upstream must name an upstream".to_owned());
    }
    if !raw.path.starts_with('/') {
        return Err(format!(
            "introspection.path must start with `/`, got {:?}",
            raw.path
        ));
    }
    let timeout = optional_duration(raw.timeout.as_deref(), "introspection.timeout")?
        .unwrap_or(DEFAULT_TIMEOUT);
    if timeout.is_zero() {
        return Err("introspection.timeout must be longer than 0".to_owned());
    }
    Ok(Endpoint {
        authority: raw.authority.unwrap_or_else(|| raw.upstream.clone()),
        upstream: raw.upstream,
        path: raw.path,
        timeout,
    })
}

fn cache(raw: RawCache) -> Result<Cache, String> {
    let max_ttl =
        optional_duration(raw.max_ttl.as_deref(), "cache.max_ttl")?.unwrap_or(DEFAULT_MAX_TTL);
    let negative_ttl = optional_duration(raw.negative_ttl.as_deref(), "cache.negative_ttl")?
        .unwrap_or(DEFAULT_NEGATIVE_TTL);
    let max_entries = raw.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES);
    if max_entries > MAX_ENTRIES_LIMIT {
        return Err(format!(
            "cache.max_entries must be at most {MAX_ENTRIES_LIMIT}, got {max_entries}"
        ));
    }
    Ok(Cache {
        max_ttl,
        negative_ttl,
        max_entries,
    })
}

fn optional_duration(text: Option<&str>, key: &str) -> Result<Option<Duration>, String> {
    text.map(duration)
        .transpose()
        .map_err(|e| format!("{key}: {e}"))
}

/// `0s`, `250ms`, `30s`, `5m`, `1h`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("{text:?} is not a duration like 300s, 5m, 1h or 500ms");
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

#[cfg(test)]
mod tests;

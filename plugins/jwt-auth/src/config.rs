//! The plugin configuration: the operator's JSON (`Raw*`, unknown keys refused) and the
//! validated form the request path uses ([`Config`]). Every error names the key at fault.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// Default `leeway_seconds`: clock skew tolerated on `exp` and `nbf`.
const DEFAULT_LEEWAY: u64 = 60;
/// Default `jwks.refresh`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// Default `jwks.timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    keys: Vec<RawKey>,
    jwks: Option<RawJwks>,
    issuer: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default = "default_leeway")]
    leeway_seconds: u64,
    #[serde(default)]
    forward_claims: BTreeMap<String, String>,
    #[serde(default = "default_consumer_claim")]
    consumer_claim: String,
    consumer_name_claim: Option<String>,
    #[serde(default = "default_header")]
    header: String,
    #[serde(default)]
    hide_credentials: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    kid: Option<String>,
    alg: String,
    secret: Option<String>,
    public_key_pem: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwks {
    upstream: String,
    path: String,
    refresh: Option<String>,
    timeout: Option<String>,
    authority: Option<String>,
}

fn default_leeway() -> u64 {
    DEFAULT_LEEWAY
}
fn default_consumer_claim() -> String {
    "sub".to_owned()
}
fn default_header() -> String {
    "authorization".to_owned()
}

/// A verification key; its algorithm pins it (a token naming another algorithm never
/// reaches it, which is what stops algorithm confusion).
#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// Where and how often the JWKS is fetched.
pub struct Jwks {
    pub upstream: String,
    pub path: String,
    pub authority: String,
    pub refresh: Duration,
    pub timeout: Duration,
}

/// The validated configuration.
pub struct Config {
    pub keys: Vec<Key>,
    pub jwks: Option<Jwks>,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub leeway: u64,
    /// Claim name → request header name (lowercase).
    pub forward_claims: Vec<(String, String)>,
    pub consumer_claim: String,
    pub consumer_name_claim: String,
    pub header: String,
    pub hide_credentials: bool,
}

/// Parses and validates the configuration; the error says which key is wrong and why.
pub fn parse(bytes: &[u8]) -> Result<Config, String> {
    let raw: RawConfig =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid configuration: {e}"))?;
    if raw.keys.is_empty() && raw.jwks.is_none() {
        return Err("invalid configuration: give `keys`, `jwks`, or both".to_owned());
    }
    let keys = raw
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| key(k).map_err(|e| format!("invalid configuration: keys[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let jwks = raw.jwks.map(jwks).transpose()?;
    let mut forward_claims = Vec::new();
    for (claim, header) in raw.forward_claims {
        let header = header.to_ascii_lowercase();
        if !is_header_name(&header) {
            return Err(format!(
                "invalid configuration: forward_claims.{claim}: {header:?} is not an HTTP header name"
            ));
        }
        forward_claims.push((claim, header));
    }
    let header = raw.header.to_ascii_lowercase();
    if !is_header_name(&header) {
        return Err(format!(
            "invalid configuration: header: {header:?} is not an HTTP header name"
        ));
    }
    if raw.consumer_claim.is_empty() {
        return Err("invalid configuration: consumer_claim must not be empty".to_owned());
    }
    Ok(Config {
        keys,
        jwks,
        issuer: raw.issuer,
        audiences: raw.audiences,
        leeway: raw.leeway_seconds,
        forward_claims,
        consumer_name_claim: raw
            .consumer_name_claim
            .unwrap_or_else(|| raw.consumer_claim.clone()),
        consumer_claim: raw.consumer_claim,
        header,
        hide_credentials: raw.hide_credentials,
    })
}

fn key(raw: &RawKey) -> Result<Key, String> {
    let alg = Algorithm::from_str(&raw.alg).map_err(|_| {
        format!(
            "unknown algorithm {:?} (expected HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA)",
            raw.alg
        )
    })?;
    let key = match (alg, &raw.secret, &raw.public_key_pem) {
        (Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512, Some(secret), None) => {
            if secret.is_empty() {
                return Err("`secret` must not be empty".to_owned());
            }
            DecodingKey::from_secret(secret.as_bytes()).map_err(|e| format!("`secret`: {e}"))?
        }
        (Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512, _, _) => {
            return Err(format!("{alg:?} needs `secret` (and no `public_key_pem`)"));
        }
        (_, None, Some(pem)) => pem_key(alg, pem.as_bytes())
            .map_err(|e| format!("`public_key_pem` is not a {alg:?} public key: {e}"))?,
        (_, _, _) => {
            return Err(format!("{alg:?} needs `public_key_pem` (and no `secret`)"));
        }
    };
    Ok(Key {
        kid: raw.kid.clone(),
        alg,
        key,
    })
}

fn pem_key(alg: Algorithm, pem: &[u8]) -> Result<DecodingKey, jsonwebtoken::errors::Error> {
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        _ => DecodingKey::from_rsa_pem(pem),
    }
}

fn jwks(raw: RawJwks) -> Result<Jwks, String> {
    if raw.upstream.is_empty() {
        return Err("invalid configuration: jwks.upstream must name an upstream".to_owned());
    }
    if !raw.path.starts_with('/') {
        return Err(format!(
            "invalid configuration: jwks.path must start with `/`, got {:?}",
            raw.path
        ));
    }
    let refresh = raw
        .refresh
        .as_deref()
        .map(duration)
        .transpose()
        .map_err(|e| format!("invalid configuration: jwks.refresh: {e}"))?
        .unwrap_or(DEFAULT_REFRESH);
    let timeout = raw
        .timeout
        .as_deref()
        .map(duration)
        .transpose()
        .map_err(|e| format!("invalid configuration: jwks.timeout: {e}"))?
        .unwrap_or(DEFAULT_TIMEOUT);
    if refresh < Duration::from_secs(1) {
        return Err("invalid configuration: jwks.refresh must be at least 1s".to_owned());
    }
    Ok(Jwks {
        authority: raw.authority.unwrap_or_else(|| raw.upstream.clone()),
        upstream: raw.upstream,
        path: raw.path,
        refresh,
        timeout,
    })
}

/// `250ms`, `30s`, `5m`, `1h`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 300s, 5m, 1h or 500ms"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!(
            "{text:?} is not a duration like 300s, 5m, 1h or 500ms"
        )),
    }
}

/// RFC 9110 token characters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

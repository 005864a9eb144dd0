//! Token verification (signature by a pinned key, then the time and audience claims) and
//! JWKS parsing. Pure functions: the host is reached only by the caller.

use std::str::FromStr;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::{Config, Key};

/// Why a token was refused: a short reason safe to show the client (never the token).
pub type Refusal = &'static str;

/// Verifies `token` against `keys` and the claim rules of `config` at `now` (Unix seconds).
pub fn verify(
    token: &str,
    keys: &[&Key],
    config: &Config,
    now: u64,
) -> Result<Map<String, Value>, Refusal> {
    // `alg: none` (and any algorithm the library does not know) fails here.
    let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token")?;
    // A key id the configuration knows pins the key (and so its algorithm): a token
    // naming an RSA key's id with `HS256` is refused here, never tried as HMAC. A key id
    // no key carries falls back to the keys configured without one.
    let named = |k: &&&Key| k.kid.is_some() && k.kid == header.kid;
    let pool: Vec<&&Key> = match &header.kid {
        Some(_) if keys.iter().any(|k| named(&k)) => keys.iter().filter(named).collect(),
        Some(_) => keys.iter().filter(|k| k.kid.is_none()).collect(),
        None => keys.iter().collect(),
    };
    let candidates: Vec<&&Key> = pool.into_iter().filter(|k| k.alg == header.alg).collect();
    if candidates.is_empty() {
        return Err("no key accepts this token's algorithm and key id");
    }
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = candidates
        .iter()
        .find_map(|k| jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, &validation).ok())
        .ok_or("invalid signature")?
        .claims;
    check_claims(&claims, config, now)?;
    Ok(claims)
}

fn check_claims(claims: &Map<String, Value>, config: &Config, now: u64) -> Result<(), Refusal> {
    let number = |name: &str| -> Result<Option<u64>, Refusal> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|n| *n >= 0.0)
                .map(|n| Some(n as u64))
                .ok_or("malformed time claim"),
        }
    };
    if let Some(exp) = number("exp")? {
        if now >= exp.saturating_add(config.leeway) {
            return Err("token expired");
        }
    }
    if let Some(nbf) = number("nbf")? {
        if now.saturating_add(config.leeway) < nbf {
            return Err("token not yet valid");
        }
    }
    if let Some(issuer) = &config.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
            return Err("wrong issuer");
        }
    }
    if !config.audiences.is_empty() {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => config.audiences.contains(a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| config.audiences.iter().any(|want| want == a)),
            _ => false,
        };
        if !ok {
            return Err("wrong audience");
        }
    }
    Ok(())
}

/// The signing keys of a JWKS document. Symmetric (`oct`) keys and encryption keys are
/// skipped: a JWKS is public, an HMAC key in it would let anyone sign. A key without
/// `alg` is pinned by its type: RSA → RS256, EC P-256 → ES256, P-384 → ES384,
/// OKP Ed25519 → EdDSA. Keys that do not parse are skipped; returns how many were.
pub fn parse_jwks(body: &[u8]) -> Result<(Vec<Key>, usize), String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no `keys` array")?;
    let mut keys = Vec::new();
    let mut skipped = 0;
    for entry in list {
        match jwk_key(entry) {
            Some(k) => keys.push(k),
            None => skipped += 1,
        }
    }
    Ok((keys, skipped))
}

fn jwk_key(entry: &Value) -> Option<Key> {
    if entry
        .get("use")
        .and_then(Value::as_str)
        .is_some_and(|u| u != "sig")
    {
        return None;
    }
    let kty = entry.get("kty").and_then(Value::as_str)?;
    let alg = match entry.get("alg").and_then(Value::as_str) {
        Some(name) => Algorithm::from_str(name).ok()?,
        None => match (kty, entry.get("crv").and_then(Value::as_str)) {
            ("RSA", _) => Algorithm::RS256,
            ("EC", Some("P-256")) => Algorithm::ES256,
            ("EC", Some("P-384")) => Algorithm::ES384,
            ("OKP", Some("Ed25519")) => Algorithm::EdDSA,
            _ => return None,
        },
    };
    let family_ok = matches!(
        (kty, alg),
        (
            "RSA",
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512
        ) | (
            "RSA",
            Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512
        ) | ("EC", Algorithm::ES256 | Algorithm::ES384)
            | ("OKP", Algorithm::EdDSA)
    );
    if !family_ok {
        return None;
    }
    let jwk: Jwk = serde_json::from_value(entry.clone()).ok()?;
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id,
        alg,
        key,
    })
}

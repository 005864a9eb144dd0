//! RFC 7662 on the wire: the request the filter sends ([`basic`], [`form_body`]), the
//! answer it accepts ([`parse_response`]) and what an active token's claims allow
//! ([`check`]). Pure functions, tested without a host.

use base64::Engine as _;
use serde_json::{Map, Value};

/// What the authorization server said about a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// `"active": true` with the response's members (`scope`, `exp`, `sub`, …).
    Active(Map<String, Value>),
    /// `"active": false`.
    Inactive,
}

/// Why an active token is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401 `invalid_token`, with the message.
    Invalid(&'static str),
    /// 403 `insufficient_scope`.
    Scope,
}

/// The `Authorization` value for client credentials: HTTP Basic over the form-encoded
/// `client_id` and `client_secret` (RFC 6749 §2.3.1).
pub fn basic(client_id: &str, client_secret: &str) -> String {
    let pair = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// `token=…&token_type_hint=access_token` (RFC 7662 §2.1).
pub fn form_body(token: &str) -> String {
    format!("token={}&token_type_hint=access_token", form_encode(token))
}

/// `application/x-www-form-urlencoded` encoding of one value (WHATWG URL: `*-._` and
/// alphanumerics as they are, space as `+`, every other byte `%XX`).
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
    out
}

/// Reads the introspection answer: HTTP 200 and a JSON object whose `active` is a
/// boolean (RFC 7662 §2.2). Anything else (another status, no answer, garbage) is an
/// error: the filter fails closed.
pub fn parse_response(status: Option<&str>, body: &[u8]) -> Result<Verdict, String> {
    match status {
        Some("200") => {}
        Some(other) => return Err(format!("the authorization server answered {other}")),
        None => return Err("the introspection call failed (connection or timeout)".to_owned()),
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| "the introspection answer is not JSON".to_owned())?;
    let Value::Object(mut members) = value else {
        return Err("the introspection answer is not a JSON object".to_owned());
    };
    match members.remove("active") {
        Some(Value::Bool(true)) => Ok(Verdict::Active(members)),
        Some(Value::Bool(false)) => Ok(Verdict::Inactive),
        _ => Err("the introspection answer has no boolean `active`".to_owned()),
    }
}

/// A numeric-date member (`exp`, `nbf`) in seconds, if present and a number.
pub fn seconds(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    let n = claims.get(name)?;
    n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))
}

/// Checks an active token's claims at `now` (Unix seconds): `exp` in the past or `nbf`
/// in the future refuse it (the server said active, but it is not, now), and every
/// required scope must be among the space-separated `scope`.
pub fn check(claims: &Map<String, Value>, required: &[String], now: i64) -> Result<(), Refusal> {
    if seconds(claims, "exp").is_some_and(|exp| exp <= now) {
        return Err(Refusal::Invalid("token expired"));
    }
    if seconds(claims, "nbf").is_some_and(|nbf| nbf > now) {
        return Err(Refusal::Invalid("token not yet valid"));
    }
    let granted: Vec<&str> = claims
        .get("scope")
        .and_then(Value::as_str)
        .map(|s| s.split(' ').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    if required.iter().all(|r| granted.contains(&r.as_str())) {
        Ok(())
    } else {
        Err(Refusal::Scope)
    }
}

/// A claim as header text: strings as they are, numbers and booleans printed, anything
/// else as compact JSON; `None` when absent or when it would not be a valid header value.
pub fn claim_text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    let text = match claims.get(name)? {
        Value::String(s) => s.clone(),
        Value::Null => return None,
        other => other.to_string(),
    };
    (!text.is_empty() && !text.chars().any(char::is_control)).then_some(text)
}

#[cfg(test)]
mod tests;

//! The plugin configuration: the operator's JSON (unknown keys refused) and its validated
//! form. Every error names the key at fault.

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_header")]
    header: Option<String>,
    #[serde(default = "default_bearer")]
    bearer: bool,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default = "default_realm")]
    realm: String,
}

fn default_header() -> Option<String> {
    Some("x-api-key".to_owned())
}
fn default_bearer() -> bool {
    true
}
fn default_realm() -> String {
    "aistack".to_owned()
}

/// Where the key is looked for, and what it must allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// A request header carrying the bare key (lower-case); `None`: not looked at.
    pub header: Option<String>,
    /// `Authorization: Bearer <key>` is accepted.
    pub bearer: bool,
    /// A query parameter carrying the key; `None` (the default): not looked at.
    pub query: Option<String>,
    /// Scopes the key must all have (403 otherwise).
    pub scopes: Vec<String>,
    /// The `realm` of `WWW-Authenticate`.
    pub realm: String,
}

/// Parses the plugin configuration (empty means all defaults).
pub fn parse(bytes: &[u8]) -> Result<Config, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the configuration is not UTF-8")?;
    let raw: RawConfig = if text.trim().is_empty() {
        serde_json::from_str("{}")
    } else {
        serde_json::from_str(text)
    }
    .map_err(|e| format!("invalid configuration: {e}"))?;
    let header = match raw.header {
        Some(h) if !is_token(&h) => {
            return Err(format!("`header`: {h:?} is not a header name"));
        }
        Some(h) if h.eq_ignore_ascii_case("authorization") => {
            return Err("`header`: use `bearer: true` for the Authorization header".to_owned());
        }
        other => other.map(|h| h.to_ascii_lowercase()),
    };
    let url_safe = |q: &str| {
        !q.is_empty()
            && q.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    };
    if let Some(q) = raw.query.as_deref().filter(|q| !url_safe(q)) {
        return Err(format!(
            "`query`: {q:?} is not a query parameter name (A-Z a-z 0-9 - . _ ~)"
        ));
    }
    if header.is_none() && !raw.bearer && raw.query.is_none() {
        return Err("no place to read the key from: set `header`, `bearer` or `query`".to_owned());
    }
    if let Some(s) = raw
        .scopes
        .iter()
        .find(|s| s.is_empty() || s.contains(['"', ' ', '\\']))
    {
        return Err(format!("`scopes`: {s:?} is not a scope"));
    }
    if raw.realm.contains(['"', '\\']) || raw.realm.chars().any(char::is_control) {
        return Err("`realm`: no quotes, backslashes or control characters".to_owned());
    }
    Ok(Config {
        header,
        bearer: raw.bearer,
        query: raw.query,
        scopes: raw.scopes,
        realm: raw.realm,
    })
}

/// An HTTP token (RFC 9110 `tchar`s), as header names are.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals() {
        let c = parse(b"").expect("defaults");
        assert_eq!(c.header.as_deref(), Some("x-api-key"));
        assert!(c.bearer);
        assert_eq!(c.query, None);
        assert!(c.scopes.is_empty());
        let c = parse(br#"{"header": "X-Key", "query": "api_key", "scopes": ["read"]}"#)
            .expect("parse");
        assert_eq!(c.header.as_deref(), Some("x-key"));
        assert_eq!(c.query.as_deref(), Some("api_key"));
        for (bad, why) in [
            (r#"{"hedaer": "x"}"#, "unknown field `hedaer`"),
            (r#"{"header": "bad header"}"#, "`header`"),
            (r#"{"header": "Authorization"}"#, "`bearer: true`"),
            (r#"{"query": "a&b"}"#, "`query`"),
            (r#"{"header": null, "bearer": false}"#, "no place"),
            (r#"{"scopes": [""]}"#, "`scopes`"),
            (r#"{"bearer": "yes"}"#, "invalid type"),
        ] {
            let e = parse(bad.as_bytes()).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}

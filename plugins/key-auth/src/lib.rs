//! `key-auth`: a Proxy-Wasm HTTP filter that admits a request only with a valid API key
//! from the gateway's key store.
//!
//! The key comes from the configured header (`x-api-key` by default), else
//! `Authorization: Bearer <key>`, else (only when configured) a query parameter. The filter
//! hands it to the gateway's foreign function `aistack.key_lookup`, which finds it in the
//! key store's in-memory cache and compares digests in constant time; the filter never
//! compares, stores or logs a key. On success the consumer becomes `x-consumer-id`,
//! `x-consumer-name` (and `x-consumer-group` when it has one) and the `aistack.consumer`
//! property, and the key is removed from the request before it goes upstream. Otherwise:
//! 401 JSON with `WWW-Authenticate` (missing, unknown, expired or revoked key), 403 when a
//! required scope is missing, 503 when the key store is not available.
//!
//! Start at [`KeyAuth::on_http_request_headers`] (config: `config.rs`, query handling:
//! `query.rs`).

mod config;
mod query;

use std::borrow::Cow;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};
use serde::Deserialize;

use crate::config::Config;

/// The key store's lookup (see the gateway's `keys/lookup.rs`).
const LOOKUP: &str = "aistack.key_lookup";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(KeyAuthRoot { config: None }));
}}

struct KeyAuthRoot {
    config: Option<Rc<Config>>,
}

impl Context for KeyAuthRoot {}

impl RootContext for KeyAuthRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match config::parse(&bytes) {
            Ok(config) => {
                self.config = Some(Rc::new(config));
                true
            }
            Err(message) => {
                log(LogLevel::Error, &format!("key-auth: {message}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(KeyAuth { config }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct KeyAuth {
    config: Rc<Config>,
}

impl Context for KeyAuth {}

impl HttpContext for KeyAuth {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        match authorize(&self.config) {
            Ok(()) => Action::Continue,
            Err(refusal) => {
                respond(&self.config, &refusal);
                Action::Pause
            }
        }
    }
}

/// What `aistack.key_lookup` answers, borrowed from the answer where no escape forces a
/// copy (this runs on every request).
#[derive(Deserialize)]
struct Found<'a> {
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(borrow)]
    consumer: Option<Consumer<'a>>,
    #[serde(default, borrow)]
    scopes: Vec<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Consumer<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    group: Option<Cow<'a, str>>,
}

/// Why a request is refused.
enum Refusal {
    Missing,
    Invalid(&'static str),
    Scope(Vec<String>),
    Unavailable,
}

/// Finds, removes and judges the key; on success sets the identity headers and property.
fn authorize(config: &Config) -> Result<(), Refusal> {
    let key = take_key(config).ok_or(Refusal::Missing)?;
    // `NotFound`: a host without the key store; anything else is as bad.
    let Ok(Some(answer)) = hostcalls::call_foreign_function(LOOKUP, Some(key.as_bytes())) else {
        return Err(Refusal::Unavailable);
    };
    let found: Found = serde_json::from_slice(&answer).map_err(|_| Refusal::Unavailable)?;
    let consumer = match (&*found.status, found.consumer) {
        ("valid", Some(consumer)) => consumer,
        ("expired", _) => return Err(Refusal::Invalid("the API key has expired")),
        ("revoked", _) => return Err(Refusal::Invalid("the API key has been revoked")),
        ("unavailable", _) => return Err(Refusal::Unavailable),
        _ => return Err(Refusal::Invalid("invalid API key")),
    };
    let missing: Vec<String> = config
        .scopes
        .iter()
        .filter(|s| !found.scopes.iter().any(|f| f == s.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(Refusal::Scope(missing));
    }
    set_request_header("x-consumer-id", Some(&consumer.id));
    set_request_header("x-consumer-name", Some(&consumer.name));
    set_request_header("x-consumer-group", consumer.group.as_deref());
    let _ = hostcalls::set_property(vec!["aistack", "consumer"], Some(consumer.id.as_bytes()));
    Ok(())
}

/// The presented key, from the first configured place that has one. Every configured
/// place that carries a key of ours loses it, used or not: no key goes upstream.
fn take_key(config: &Config) -> Option<String> {
    let mut key = None;
    if let Some(header) = &config.header {
        if let Some(value) = request_header(header) {
            set_request_header(header, None);
            let value = value.trim();
            if !value.is_empty() {
                key = Some(value.to_owned());
            }
        }
    }
    if config.bearer {
        if let Some(token) = request_header("authorization").and_then(|v| bearer(&v)) {
            // Someone else's bearer token (a JWT for the upstream) is left alone unless it
            // is the only candidate.
            if key.is_none() || token.starts_with("ak_") {
                set_request_header("authorization", None);
                key = key.or(Some(token));
            }
        }
    }
    if let Some(name) = &config.query {
        if let Some(path) = request_header(":path") {
            let (rest, found) = query::take(&path, name);
            if found.is_some() {
                set_request_header(":path", Some(&rest));
            }
            key = key.or(found.filter(|k| !k.is_empty()));
        }
    }
    key
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer(value: &str) -> Option<String> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

fn request_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

fn set_request_header(name: &str, value: Option<&str>) {
    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
}

/// Answers the request with the JSON error body and, for 401/403, `WWW-Authenticate`:
/// RFC 6750's `Bearer` when bearer keys are accepted, else `ApiKey` naming the header.
fn respond(config: &Config, refusal: &Refusal) {
    let scheme = if config.bearer {
        format!("Bearer realm=\"{}\"", config.realm)
    } else {
        let place = config.header.as_deref().map_or_else(
            || format!("query=\"{}\"", config.query.as_deref().unwrap_or_default()),
            |h| format!("header=\"{h}\""),
        );
        format!("ApiKey realm=\"{}\", {place}", config.realm)
    };
    let (status, code, message, challenge) = match refusal {
        Refusal::Missing => (
            401,
            "unauthorized",
            "missing API key".to_owned(),
            Some(scheme),
        ),
        Refusal::Invalid(why) => (
            401,
            "unauthorized",
            (*why).to_owned(),
            Some(format!("{scheme}, error=\"invalid_token\"")),
        ),
        Refusal::Scope(missing) => (
            403,
            "forbidden",
            format!("the API key lacks the scopes {}", missing.join(", ")),
            Some(format!(
                "{scheme}, error=\"insufficient_scope\", scope=\"{}\"",
                config.scopes.join(" ")
            )),
        ),
        Refusal::Unavailable => (
            503,
            "unavailable",
            "the key store is not available".to_owned(),
            None,
        ),
    };
    let request_id = hostcalls::get_property(vec!["request", "id"])
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok());
    let body = serde_json::json!({
        "error": {"code": code, "message": message, "request_id": request_id}
    })
    .to_string();
    let mut headers = vec![("content-type", "application/json")];
    if let Some(challenge) = &challenge {
        headers.push(("www-authenticate", challenge.as_str()));
    }
    let _ = hostcalls::send_http_response(status, headers, Some(body.as_bytes()));
}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

//! `jwt-auth`: a Proxy-Wasm HTTP filter that admits a request only with a valid JWT.
//!
//! The token comes from `Authorization: Bearer …` (or the configured header). Its signature
//! is checked with a key whose algorithm is pinned by the configuration (static keys) or by
//! the JWKS entry, then `exp`/`nbf` (with leeway), `iss` and `aud`. On success the consumer
//! claim becomes `x-consumer-id`/`x-consumer-name` and the `aistack.consumer` property,
//! and chosen claims are forwarded as headers; otherwise the client gets a 401 JSON error
//! with `WWW-Authenticate: Bearer …` (RFC 6750). Tokens are never logged.
//!
//! JWKS keys are fetched by the root context from `on_tick` through an HTTP callout to a
//! named upstream, and refreshed. A request that arrives before the first fetch has landed
//! waits (paused) and is resumed when it lands, or answered 503 when it fails.
//!
//! Start at [`JwtRoot::on_configure`] (config: `config.rs`), then [`authorize`].

mod config;
mod verify;

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};
use serde_json::{Map, Value};

use crate::config::{Config, Key};

/// Tick period before the first JWKS fetch succeeded (the first fetch goes out on the
/// first tick), and between retries of a failed first fetch.
const FIRST_FETCH_TICK: Duration = Duration::from_millis(100);
const RETRY_TICK: Duration = Duration::from_secs(1);

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(JwtRoot { state: None }));
}}

/// What the root context and the request contexts of one VM share.
struct Shared {
    config: Config,
    /// The JWKS keys from the last successful fetch (`None`: none yet).
    jwks_keys: Option<Vec<Key>>,
    /// The last fetch failed and no keys were ever loaded: answer 503 instead of waiting.
    jwks_failed: bool,
    /// Request contexts paused until the first JWKS fetch lands.
    waiting: Vec<u32>,
    /// Request contexts whose token was accepted.
    passed: HashSet<u32>,
    /// The token of the JWKS callout in flight.
    in_flight: Option<u32>,
}

type State = Rc<RefCell<Shared>>;

struct JwtRoot {
    state: Option<State>,
}

impl Context for JwtRoot {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _: usize) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let status = self.get_http_call_response_header(":status");
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let result = match status.as_deref() {
            Some("200") => verify::parse_jwks(&body),
            Some(other) => Err(format!("the JWKS upstream answered {other}")),
            None => Err("the JWKS callout failed (connection or timeout)".to_owned()),
        };
        let (waiting, next_tick) = {
            let mut s = state.borrow_mut();
            if s.in_flight == Some(token) {
                s.in_flight = None;
            }
            let refresh = s.config.jwks.as_ref().map_or(RETRY_TICK, |j| j.refresh);
            match result {
                Ok((keys, skipped)) if !keys.is_empty() => {
                    if skipped > 0 {
                        log(
                            LogLevel::Info,
                            &format!("JWKS: {skipped} non-signing or unusable keys skipped"),
                        );
                    }
                    s.jwks_keys = Some(keys);
                    s.jwks_failed = false;
                    (std::mem::take(&mut s.waiting), refresh)
                }
                outcome => {
                    let why = match outcome {
                        Err(e) => e,
                        Ok(_) => "the JWKS holds no usable signing key".to_owned(),
                    };
                    if s.jwks_keys.is_some() {
                        log(
                            LogLevel::Warn,
                            &format!("JWKS refresh failed, keeping the cached keys: {why}"),
                        );
                        (Vec::new(), refresh)
                    } else {
                        log(LogLevel::Error, &format!("JWKS fetch failed: {why}"));
                        s.jwks_failed = true;
                        (std::mem::take(&mut s.waiting), RETRY_TICK)
                    }
                }
            }
        };
        self.set_tick_period(next_tick);
        for id in waiting {
            if hostcalls::set_effective_context(id).is_err() {
                continue; // the request went away while it waited
            }
            let decision = authorize(&state.borrow());
            match decision {
                Decision::Continue => {
                    state.borrow_mut().passed.insert(id);
                    let _ = hostcalls::resume_http_request();
                }
                Decision::Wait => {
                    // Cannot happen once the fetch landed or failed; do not strand it.
                    respond(503, "unavailable", "signing keys are not available", None);
                }
                Decision::Respond(status, code, message, challenge) => {
                    respond(status, code, message, challenge);
                }
            }
        }
    }
}

impl RootContext for JwtRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match config::parse(&bytes) {
            Ok(config) => {
                if config.jwks.is_some() {
                    self.set_tick_period(FIRST_FETCH_TICK);
                }
                self.state = Some(Rc::new(RefCell::new(Shared {
                    config,
                    jwks_keys: None,
                    jwks_failed: false,
                    waiting: Vec::new(),
                    passed: HashSet::new(),
                    in_flight: None,
                })));
                true
            }
            Err(message) => {
                log(LogLevel::Error, &format!("jwt-auth: {message}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(state) = &self.state else { return };
        let mut s = state.borrow_mut();
        let Some(jwks) = &s.config.jwks else { return };
        if s.in_flight.is_some() {
            return;
        }
        let headers = vec![
            (":method", "GET"),
            (":path", jwks.path.as_str()),
            (":authority", jwks.authority.as_str()),
            ("accept", "application/json"),
        ];
        match self.dispatch_http_call(&jwks.upstream, headers, None, vec![], jwks.timeout) {
            Ok(token) => s.in_flight = Some(token),
            Err(status) => log(
                LogLevel::Error,
                &format!(
                    "JWKS callout to upstream {:?} refused: {status:?}",
                    jwks.upstream
                ),
            ),
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let state = self.state.clone()?;
        Some(Box::new(JwtAuth { state, context_id }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct JwtAuth {
    state: State,
    context_id: u32,
}

impl Context for JwtAuth {
    fn on_done(&mut self) -> bool {
        let mut s = self.state.borrow_mut();
        s.waiting.retain(|id| *id != self.context_id);
        s.passed.remove(&self.context_id);
        true
    }
}

impl HttpContext for JwtAuth {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        // Forwarded-claim headers are ours to set: a client's copy never passes.
        for (_, header) in &self.state.borrow().config.forward_claims {
            self.set_http_request_header(header, None);
        }
        self.check()
    }

    /// A body callback that continues resumes headers its filter had paused (in Envoy as
    /// here), so the body may pass only once the token did: if the keys landed while the
    /// body was arriving, the token is checked now.
    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        let s = self.state.borrow();
        if s.passed.contains(&self.context_id) {
            return Action::Continue;
        }
        if s.waiting.contains(&self.context_id) {
            return Action::Pause;
        }
        drop(s);
        self.check()
    }
}

impl JwtAuth {
    /// Checks the request's token; pauses it while the keys are being fetched.
    fn check(&mut self) -> Action {
        let decision = authorize(&self.state.borrow());
        match decision {
            Decision::Continue => {
                self.state.borrow_mut().passed.insert(self.context_id);
                Action::Continue
            }
            Decision::Wait => {
                self.state.borrow_mut().waiting.push(self.context_id);
                Action::Pause
            }
            Decision::Respond(status, code, message, challenge) => {
                respond(status, code, message, challenge);
                Action::Pause
            }
        }
    }
}

/// What to do with the request whose context is the effective one.
enum Decision {
    Continue,
    /// Keys are still being fetched.
    Wait,
    /// Status, error code, message, `WWW-Authenticate` value.
    Respond(u32, &'static str, &'static str, Option<&'static str>),
}

const INVALID: Option<&str> = Some("Bearer error=\"invalid_token\"");

/// Verifies the effective request's token and, on success, sets the identity headers,
/// forwarded claims and the `aistack.consumer` property.
fn authorize(s: &Shared) -> Decision {
    let config = &s.config;
    let Some(token) = request_header(&config.header).and_then(|v| bearer(&v)) else {
        return Decision::Respond(401, "unauthorized", "missing bearer token", Some("Bearer"));
    };
    let static_keys = config.keys.iter();
    let keys: Vec<&Key> = static_keys.chain(s.jwks_keys.iter().flatten()).collect();
    if config.jwks.is_some() && s.jwks_keys.is_none() {
        if s.jwks_failed {
            return Decision::Respond(503, "unavailable", "signing keys are not available", None);
        }
        return Decision::Wait;
    }
    let now = hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let claims = match verify::verify(&token, &keys, config, now) {
        Ok(claims) => claims,
        Err(reason) => return Decision::Respond(401, "unauthorized", reason, INVALID),
    };
    let Some(consumer) = claim_text(&claims, &config.consumer_claim) else {
        return Decision::Respond(401, "unauthorized", "token names no consumer", INVALID);
    };
    let name = claim_text(&claims, &config.consumer_name_claim).unwrap_or_else(|| consumer.clone());
    set_request_header("x-consumer-id", Some(&consumer));
    set_request_header("x-consumer-name", Some(&name));
    let _ = hostcalls::set_property(vec!["aistack", "consumer"], Some(consumer.as_bytes()));
    for (claim, header) in &config.forward_claims {
        if let Some(value) = claim_text(&claims, claim) {
            set_request_header(header, Some(&value));
        }
    }
    if config.hide_credentials {
        set_request_header(&config.header, None);
    }
    Decision::Continue
}

/// The token of `Bearer <token>` (scheme case-insensitive); a bare token is accepted too
/// (for custom headers).
fn bearer(value: &str) -> Option<String> {
    let value = value.trim();
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some(_) => return None,
        None => value,
    };
    (!token.is_empty()).then(|| token.to_owned())
}

/// A claim as header text: strings as they are, numbers and booleans printed, anything
/// else as compact JSON; `None` when absent or when it would not be a valid header value.
fn claim_text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    let text = match claims.get(name)? {
        Value::String(s) => s.clone(),
        Value::Null => return None,
        other => other.to_string(),
    };
    (!text.is_empty() && !text.chars().any(char::is_control)).then_some(text)
}

fn request_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

fn set_request_header(name: &str, value: Option<&str>) {
    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
}

/// Answers the effective request with the JSON error body.
fn respond(status: u32, code: &str, message: &str, challenge: Option<&str>) {
    let request_id = hostcalls::get_property(vec!["request", "id"])
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok());
    let body = serde_json::json!({
        "error": {"code": code, "message": message, "request_id": request_id}
    })
    .to_string();
    let mut headers = vec![("content-type", "application/json")];
    if let Some(challenge) = challenge {
        headers.push(("www-authenticate", challenge));
    }
    let _ = hostcalls::send_http_response(status, headers, Some(body.as_bytes()));
}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

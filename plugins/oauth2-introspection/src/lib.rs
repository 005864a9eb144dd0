//! `oauth2-introspection`: a Proxy-Wasm HTTP filter that admits a request only with an
//! OAuth 2.0 access token its authorization server calls active (RFC 7662).
//!
//! The token comes from `Authorization: Bearer …` (or the configured header). The filter
//! asks the introspection endpoint — an upstream of the gateway's config and a path —
//! with an HTTP callout: `POST` of `token=…&token_type_hint=access_token`, the gateway
//! authenticating as an OAuth client with HTTP Basic (RFC 6749 §2.3.1). An inactive,
//! expired or not-yet-valid token gets 401 (`WWW-Authenticate: Bearer
//! error="invalid_token"`), a token without a required scope 403 (`insufficient_scope`);
//! an authorization server that is down or answers anything but RFC 7662 JSON gets the
//! client a 503 (fail closed). On success the consumer claim becomes
//! `x-consumer-id`/`x-consumer-name` and the `aistack.consumer` property, chosen claims are
//! forwarded as headers, and the token may be hidden from the upstream.
//!
//! Answers are cached in shared data (every worker thread shares them: `cache.rs`) until
//! the token's `exp` or `cache.max_ttl`, whichever comes first; inactive tokens for
//! `cache.negative_ttl`. Tokens are never logged or stored (only their SHA-256).
//!
//! Start at [`Root::on_configure`] (config: `config.rs`), then [`Filter`]; the wire format
//! is `introspect.rs`.

mod cache;
mod config;
mod introspect;

use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};
use serde_json::{Map, Value};

use crate::cache::{Entry, Slot};
use crate::config::Config;
use crate::introspect::{Refusal, Verdict};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(Root { setup: None }));
}}

/// The configuration and the cache namespace it implies.
struct Setup {
    config: Config,
    namespace: String,
}

struct Root {
    setup: Option<Rc<Setup>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let parsed = config::parse(&bytes).and_then(|config| {
            let upstream = &config.endpoint.upstream;
            // The gateway answers `aistack.upstreams.<name>` only for a configured one.
            match hostcalls::get_property(vec!["aistack", "upstreams", upstream]) {
                Ok(Some(_)) => Ok(config),
                _ => Err(format!(
                    "invalid configuration: introspection.upstream: the config has no upstream {upstream:?}"
                )),
            }
        });
        match parsed {
            Ok(config) => {
                let namespace = cache::sha256_hex(&bytes)[..16].to_owned();
                self.setup = Some(Rc::new(Setup { config, namespace }));
                true
            }
            Err(message) => {
                log(LogLevel::Error, &format!("oauth2-introspection: {message}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let setup = self.setup.clone()?;
        Some(Box::new(Filter {
            setup,
            stage: Stage::Start,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Where one request stands.
enum Stage {
    Start,
    /// The introspection call is out; the token's cache slot.
    Asking(Slot),
    /// The token passed: the request goes on.
    Passed,
    /// The filter answered the client.
    Answered,
}

/// One request.
struct Filter {
    setup: Rc<Setup>,
    stage: Stage,
}

impl Context for Filter {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, body_size: usize, _: usize) {
        let Stage::Asking(slot) = std::mem::replace(&mut self.stage, Stage::Start) else {
            return;
        };
        let status = self.get_http_call_response_header(":status");
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let setup = Rc::clone(&self.setup);
        let config = &setup.config;
        match introspect::parse_response(status.as_deref(), &body) {
            Ok(verdict) => {
                let now = now_ms();
                if config.cache.max_entries > 0 {
                    cache::put(&slot, &entry(config, &slot, verdict.clone(), now));
                }
                let claims = match verdict {
                    Verdict::Active(claims) => Some(claims),
                    Verdict::Inactive => None,
                };
                if self.decide(claims.as_ref(), now) {
                    let _ = hostcalls::resume_http_request();
                }
            }
            Err(why) => {
                log(
                    LogLevel::Error,
                    &format!(
                        "oauth2-introspection: upstream {:?}: {why}",
                        config.endpoint.upstream
                    ),
                );
                self.unavailable();
            }
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let setup = Rc::clone(&self.setup);
        let config = &setup.config;
        // Forwarded-claim headers are ours to set: a client's copy never passes.
        for (_, header) in &config.forward_claims {
            set_request_header(header, None);
        }
        let Some(token) = request_header(&config.header).and_then(|v| bearer(&v)) else {
            self.stage = Stage::Answered;
            respond(401, "unauthorized", "missing bearer token", Some("Bearer"));
            return Action::Pause;
        };
        let now = now_ms();
        let slot = cache::slot(&setup.namespace, config.cache.max_entries, &token);
        let cached = (config.cache.max_entries > 0)
            .then(|| cache::get(&slot, now))
            .flatten();
        if let Some(entry) = cached {
            return match self.decide(entry.claims.as_ref(), now) {
                true => Action::Continue,
                false => Action::Pause,
            };
        }
        let endpoint = &config.endpoint;
        let body = introspect::form_body(&token);
        let headers = vec![
            (":method", "POST"),
            (":path", endpoint.path.as_str()),
            (":authority", endpoint.authority.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
            ("authorization", config.client_authorization.as_str()),
        ];
        let call = self.dispatch_http_call(
            &endpoint.upstream,
            headers,
            Some(body.as_bytes()),
            vec![],
            endpoint.timeout,
        );
        match call {
            Ok(_) => {
                self.stage = Stage::Asking(slot);
            }
            Err(status) => {
                log(
                    LogLevel::Error,
                    &format!(
                        "oauth2-introspection: the callout to upstream {:?} was refused: {status:?}",
                        endpoint.upstream
                    ),
                );
                self.unavailable();
            }
        }
        Action::Pause
    }

    /// A body callback that continues resumes headers its filter had paused, so the body
    /// may pass only once the token did.
    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        match self.stage {
            Stage::Passed => Action::Continue,
            Stage::Start | Stage::Asking(_) | Stage::Answered => Action::Pause,
        }
    }
}

impl Filter {
    /// Admits or refuses the effective request by its token's claims (`None`: inactive).
    /// `true` when it may go on; otherwise the client has been answered.
    fn decide(&mut self, claims: Option<&Map<String, Value>>, now_ms: u64) -> bool {
        let setup = Rc::clone(&self.setup);
        let config = &setup.config;
        let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        let checked = match claims {
            None => Err(Refusal::Invalid("token is not active")),
            Some(claims) => {
                introspect::check(claims, &config.required_scopes, now).and_then(|()| {
                    introspect::claim_text(claims, &config.consumer_claim)
                        .map(|consumer| (claims, consumer))
                        .ok_or(Refusal::Invalid("token names no consumer"))
                })
            }
        };
        match checked {
            Ok((claims, consumer)) => {
                let name = introspect::claim_text(claims, &config.consumer_name_claim)
                    .unwrap_or_else(|| consumer.clone());
                set_request_header("x-consumer-id", Some(&consumer));
                set_request_header("x-consumer-name", Some(&name));
                let _ =
                    hostcalls::set_property(vec!["aistack", "consumer"], Some(consumer.as_bytes()));
                for (claim, header) in &config.forward_claims {
                    if let Some(value) = introspect::claim_text(claims, claim) {
                        set_request_header(header, Some(&value));
                    }
                }
                if config.hide_credentials {
                    set_request_header(&config.header, None);
                }
                self.stage = Stage::Passed;
                true
            }
            Err(Refusal::Invalid(message)) => {
                self.stage = Stage::Answered;
                let challenge = "Bearer error=\"invalid_token\"";
                respond(401, "unauthorized", message, Some(challenge));
                false
            }
            Err(Refusal::Scope) => {
                self.stage = Stage::Answered;
                let challenge = format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                    config.required_scopes.join(" ")
                );
                respond(
                    403,
                    "forbidden",
                    "the token lacks a required scope",
                    Some(&challenge),
                );
                false
            }
        }
    }

    /// The authorization server could not say: 503, the request does not pass.
    fn unavailable(&mut self) {
        self.stage = Stage::Answered;
        respond(
            503,
            "unavailable",
            "the authorization server is unavailable",
            None,
        );
    }
}

/// The cache entry for a verdict reached at `now`: an active token until its `exp` or
/// `max_ttl`, whichever comes first; an inactive one for `negative_ttl`.
fn entry(config: &Config, slot: &Slot, verdict: Verdict, now: u64) -> Entry {
    let ttl = |d: Duration| now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (until_ms, claims) = match verdict {
        Verdict::Active(claims) => {
            let mut until = ttl(config.cache.max_ttl);
            if let Some(exp) = introspect::seconds(&claims, "exp") {
                let exp_ms = u64::try_from(exp).unwrap_or(0).saturating_mul(1000);
                until = until.min(exp_ms);
            }
            (until, Some(claims))
        }
        Verdict::Inactive => (ttl(config.cache.negative_ttl), None),
    };
    Entry {
        token: slot.token.clone(),
        until_ms,
        claims,
    }
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

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

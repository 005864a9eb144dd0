//! `rate-limit`: a Proxy-Wasm HTTP filter that admits at most so many requests per key.
//!
//! Algorithms: token bucket (`rate` per `per`, `burst` capacity), fixed window and
//! sliding window (`limit` per `window`). The key is the consumer (the `aistack.consumer`
//! property an auth filter set; the client IP without one), the route, the client IP,
//! or a request header. A refused request gets 429 JSON `rate_limited` with `Retry-After`
//! and the `RateLimit-*` / `X-RateLimit-*` headers; an admitted one gets those headers on
//! its response.
//!
//! `mode: local` (the default): the state lives in Proxy-Wasm shared data (`store.rs`), so
//! the limit is exact across every worker thread of one gateway process, and not shared
//! between processes. `mode: cluster`: the check runs in Redis through the gateway's
//! asynchronous foreign function `aistack.rate_limit` (`cluster.rs`), so every gateway
//! sharing the Redis enforces one limit; when Redis fails, `on_redis_error` decides
//! (`allow`, the default, or `deny`: 503), and the failure is counted in the plugin
//! metric `rate_limit_redis_errors;policy=…` (the gateway logs it, throttled). Cluster
//! mode is refused at load when the gateway has no Redis (no such function).
//!
//! The `ip` key (and the fallback of the others) is `aistack.client_ip`: the connection's
//! address, or the `X-Forwarded-For` client behind the gateway's `server.trusted_proxies`.
//!
//! Start at [`RateLimitRoot::on_configure`] (config: `config.rs`), then
//! [`RateLimit::on_http_request_headers`]; the arithmetic is in `limiter.rs`.

mod cluster;
mod config;
mod limiter;
mod store;

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};

use crate::config::{Config, Key, Mode, Policy};
use crate::limiter::Verdict;
use crate::store::Store;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(RateLimitRoot { state: None }));
}}

/// What every request context of one VM shares.
struct Shared {
    config: Config,
    store: Store,
    /// `rate_limit_redis_errors;policy=…` (cluster mode).
    redis_errors: Option<u32>,
}

struct RateLimitRoot {
    state: Option<Rc<Shared>>,
}

impl Context for RateLimitRoot {}

impl RootContext for RateLimitRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match config::parse(&bytes) {
            Ok(config) => {
                let redis_errors = match config.mode {
                    Mode::Local => None,
                    Mode::Cluster { on_error } => {
                        if let Err(message) = probe_cluster() {
                            log(LogLevel::Error, &format!("rate-limit: {message}"));
                            return false;
                        }
                        let name = format!("rate_limit_redis_errors;policy={}", on_error.as_str());
                        hostcalls::define_metric(MetricType::Counter, &name).ok()
                    }
                };
                let store = Store::new(&bytes);
                if config.mode == Mode::Local {
                    store.create();
                }
                self.state = Some(Rc::new(Shared {
                    config,
                    store,
                    redis_errors,
                }));
                true
            }
            Err(message) => {
                log(LogLevel::Error, &format!("rate-limit: {message}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.state.clone()?;
        Some(Box::new(RateLimit {
            shared,
            verdict: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct RateLimit {
    shared: Rc<Shared>,
    /// The verdict of an admitted request, for its response headers.
    verdict: Option<Verdict>,
}

impl Context for RateLimit {
    /// Cluster mode: Redis's verdict (or failure) arrived; resume or answer.
    fn on_foreign_function(&mut self, _call_id: u32, size: usize) {
        let data = hostcalls::get_buffer(BufferType::CallData, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        match cluster::answer(&data) {
            Ok(verdict) if verdict.allowed => {
                self.verdict = Some(verdict);
                let _ = hostcalls::resume_http_request();
            }
            Ok(verdict) => refuse(&verdict),
            Err(_) => {
                if self.redis_failed() == Action::Continue {
                    let _ = hostcalls::resume_http_request();
                }
            }
        }
    }
}

impl RateLimit {
    /// Redis could not answer: counts it and applies the policy (`Pause` after a 503).
    fn redis_failed(&self) -> Action {
        if let Some(metric) = self.shared.redis_errors {
            let _ = hostcalls::increment_metric(metric, 1);
        }
        match self.shared.config.mode {
            Mode::Cluster {
                on_error: Policy::Deny,
            } => {
                unavailable();
                Action::Pause
            }
            _ => Action::Continue,
        }
    }
}

impl HttpContext for RateLimit {
    /// Counts the request; refuses it with 429 past the limit. In cluster mode the check
    /// goes to Redis and the request waits for it (`on_foreign_function`).
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let key = limit_key(&self.shared.config.key);
        if let Mode::Cluster { .. } = self.shared.config.mode {
            let args = cluster::args(&self.shared.config.algorithm, &key);
            return match hostcalls::call_foreign_function(cluster::FUNCTION, Some(&args)) {
                Ok(_) => Action::Pause,
                Err(_) => self.redis_failed(),
            };
        }
        let now = hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let verdict = self
            .shared
            .store
            .check(&self.shared.config.algorithm, &key, now);
        if verdict.allowed {
            self.verdict = Some(verdict);
            Action::Continue
        } else {
            refuse(&verdict);
            Action::Pause
        }
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if let Some(verdict) = &self.verdict {
            for (name, value) in limit_headers(verdict) {
                self.set_http_response_header(name, Some(&value));
            }
        }
        Action::Continue
    }
}

/// The record key: the route name, then the limit key (kind-tagged, so that a consumer
/// named like an IP never shares an IP's budget).
fn limit_key(kind: &Key) -> Vec<u8> {
    let mut key = property(&["route_name"]).unwrap_or_default();
    key.push(0);
    let (tag, value) = match kind {
        Key::Route => (b'r', Vec::new()),
        Key::Ip => (b'i', client_ip()),
        Key::Consumer => match property(&["aistack", "consumer"]).filter(|c| !c.is_empty()) {
            Some(consumer) => (b'c', consumer),
            None => (b'i', client_ip()),
        },
        Key::Header(name) => {
            match hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name) {
                Ok(Some(value)) => (b'h', value),
                _ => (b'i', client_ip()),
            }
        }
    };
    key.push(tag);
    key.extend_from_slice(&value);
    key
}

/// The client's IP: the gateway's `aistack.client_ip` (behind trusted proxies, the
/// forwarded client), else the connection's `source.address` without its port.
fn client_ip() -> Vec<u8> {
    if let Some(ip) = property(&["aistack", "client_ip"]).filter(|ip| !ip.is_empty()) {
        return ip;
    }
    let address = property(&["source", "address"]).unwrap_or_default();
    let text = String::from_utf8_lossy(&address);
    let ip = if let Some(rest) = text.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        match text.rsplit_once(':') {
            Some((ip, _port)) if !ip.contains(':') => ip,
            _ => &text,
        }
    };
    ip.as_bytes().to_vec()
}

fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

/// The `RateLimit-*` headers and their `X-RateLimit-*` forms.
fn limit_headers(v: &Verdict) -> [(&'static str, String); 6] {
    let (limit, remaining, reset) = (decimal(v.limit), decimal(v.remaining), decimal(v.reset));
    [
        ("ratelimit-limit", limit.clone()),
        ("ratelimit-remaining", remaining.clone()),
        ("ratelimit-reset", reset.clone()),
        ("x-ratelimit-limit", limit),
        ("x-ratelimit-remaining", remaining),
        ("x-ratelimit-reset", reset),
    ]
}

/// `n` in decimal, without the formatting machinery (measurable on every request in a VM).
fn decimal(mut n: u64) -> String {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // A digit: n % 10 < 10.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[at..].iter().map(|&d| char::from(d)).collect()
}

/// Answers the effective request with 429 JSON `rate_limited`.
fn refuse(verdict: &Verdict) {
    let request_id = property(&["request", "id"]).and_then(|b| String::from_utf8(b).ok());
    let body = serde_json::json!({
        "error": {
            "code": "rate_limited",
            "message": "rate limit exceeded; retry later",
            "request_id": request_id,
        }
    })
    .to_string();
    let retry_after = verdict.retry_after.to_string();
    let limits = limit_headers(verdict);
    let mut headers = vec![
        ("content-type", "application/json"),
        ("retry-after", retry_after.as_str()),
    ];
    headers.extend(limits.iter().map(|(n, v)| (*n, v.as_str())));
    let _ = hostcalls::send_http_response(429, headers, Some(body.as_bytes()));
}

/// Answers with 503 JSON `rate_limit_unavailable` (cluster mode, Redis down, `deny`).
fn unavailable() {
    let request_id = property(&["request", "id"]).and_then(|b| String::from_utf8(b).ok());
    let body = serde_json::json!({
        "error": {
            "code": "rate_limit_unavailable",
            "message": "the rate limit cannot be checked right now; retry later",
            "request_id": request_id,
        }
    })
    .to_string();
    let headers = vec![("content-type", "application/json"), ("retry-after", "1")];
    let _ = hostcalls::send_http_response(503, headers, Some(body.as_bytes()));
}

/// Cluster mode needs the gateway's `aistack.rate_limit`, which exists only when the
/// gateway has a Redis URL. An empty argument is never valid, so the function, when it
/// exists, refuses it (`BadArgument`) without doing anything.
fn probe_cluster() -> Result<(), String> {
    match hostcalls::call_foreign_function(cluster::FUNCTION, None) {
        Err(Status::NotFound) => Err(
            "invalid configuration: mode: `cluster` needs the gateway's Redis: set `redis.url` \
             in the gateway config (or REDIS_URL)"
                .to_owned(),
        ),
        _ => Ok(()),
    }
}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

#[cfg(test)]
mod decimal_tests {
    #[test]
    fn decimal_matches_display() {
        for n in [0, 7, 10, 99, 100, 12_345, u64::MAX] {
            assert_eq!(super::decimal(n), n.to_string());
        }
    }
}

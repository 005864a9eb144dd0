//! The config file as users write it: serde structs with `deny_unknown_fields` and
//! named defaults. Nothing here is used on the hot path; [`super::model`] turns it
//! into the validated snapshot.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::units::{ByteSize, HumanDuration};
use crate::wasm::RuntimeOptions;

/// The whole `aistack.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Proxy listeners. Default: one on `0.0.0.0:8080`.
    #[serde(default = "default_listeners")]
    pub listeners: Vec<ListenerConf>,
    #[serde(default)]
    pub admin: AdminConf,
    #[serde(default)]
    pub backend: BackendConf,
    #[serde(default)]
    pub database: DatabaseConf,
    #[serde(default)]
    pub redis: Option<RedisConf>,
    /// Process-wide runtime options (threads, logging, shutdown, plugin limits).
    #[serde(default)]
    pub server: ServerConf,
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConf>,
    #[serde(default)]
    pub routes: Vec<RouteConf>,
    /// Custom plugins: name → module. Built-in plugins need no entry.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConf {
    pub address: Spanned<String>,
    /// TLS termination on this listener. Without it the listener is plaintext
    /// (HTTP/1.1, and HTTP/2 with prior knowledge).
    #[serde(default)]
    pub tls: Option<super::tls::ListenerTlsConf>,
}

fn default_listeners() -> Vec<ListenerConf> {
    vec![ListenerConf {
        address: unspanned("0.0.0.0:8080".to_owned()),
        tls: None,
    }]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConf {
    /// Admin API and `/metrics`. Default `127.0.0.1:9080`.
    #[serde(default = "default_admin_address")]
    pub address: Spanned<String>,
    /// Read-write bearer token for the admin API (use `${ENV_VAR}`). Optional on loopback.
    #[serde(default)]
    pub token: Option<Spanned<String>>,
    /// Bearer token for the read-only endpoints (GET) only.
    #[serde(default)]
    pub read_only_token: Option<Spanned<String>>,
}

impl Default for AdminConf {
    fn default() -> Self {
        Self {
            address: default_admin_address(),
            token: None,
            read_only_token: None,
        }
    }
}

fn default_admin_address() -> Spanned<String> {
    unspanned("127.0.0.1:9080".to_owned())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConf {
    /// Run the collaboration backend in this process (`aistack up`). Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Where the backend listens. Default `127.0.0.1:8081`.
    #[serde(default = "default_backend_address")]
    pub address: Spanned<String>,
    /// Email notifications over SMTP. Default: none (unless `AISTACK_SMTP_HOST` is set).
    #[serde(default)]
    pub email: Option<EmailConf>,
    /// `task.due_soon` reminders.
    #[serde(default)]
    pub due_soon: DueSoonConf,
}

impl Default for BackendConf {
    fn default() -> Self {
        Self {
            enabled: true,
            address: default_backend_address(),
            email: None,
            due_soon: DueSoonConf::default(),
        }
    }
}

/// `backend.email`. Each key has an `AISTACK_SMTP_*` / `AISTACK_EMAIL_*` environment
/// variable that overrides it (see the README).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConf {
    /// SMTP server host name (also checked against its TLS certificate).
    pub smtp_host: Spanned<String>,
    /// Default 587.
    #[serde(default)]
    pub smtp_port: Option<Spanned<u16>>,
    /// Default `starttls`.
    #[serde(default)]
    pub smtp_tls: Option<SmtpTlsConf>,
    /// A PEM file of CA certificates trusted for the server's certificate besides the
    /// Mozilla roots (relative to the config file's folder). Default none.
    #[serde(default)]
    pub smtp_tls_ca: Option<Spanned<String>>,
    /// SMTP AUTH user (none).
    #[serde(default)]
    pub smtp_user: Option<Spanned<String>>,
    /// SMTP AUTH password (use `${ENV_VAR}`).
    #[serde(default)]
    pub smtp_password: Option<Spanned<String>>,
    /// Per SMTP command, 1s to 10m. Default `30s`.
    #[serde(default)]
    pub smtp_timeout: Option<Spanned<HumanDuration>>,
    /// The `From:` address, e.g. `AI Stack <notify@example.com>`.
    pub from: Spanned<String>,
    /// The base of every link in an email. Default `http://localhost:8080`.
    #[serde(default)]
    pub public_url: Option<Spanned<String>>,
    /// HMAC key of unsubscribe links, at least 16 bytes (use `${ENV_VAR}`).
    pub unsubscribe_secret: Spanned<String>,
    /// The version written into new links. Default 1.
    #[serde(default)]
    pub unsubscribe_key_version: Option<Spanned<u32>>,
    /// Earlier secrets by version, whose links still work.
    #[serde(default)]
    pub unsubscribe_old_keys: BTreeMap<u32, Spanned<String>>,
    /// Emails in flight at once, 1 to 256. Default 4.
    #[serde(default)]
    pub concurrency: Option<Spanned<usize>>,
    /// Emails started per second, 1 to 10000. Default 10.
    #[serde(default)]
    pub rate: Option<Spanned<u32>>,
    /// Attempts before a temporarily failing email is recorded as failed, 1 to 100.
    /// Default 8.
    #[serde(default)]
    pub max_attempts: Option<Spanned<u32>>,
    /// How often the outbox and digest windows are polled, 10ms to 1h. Default `5s`.
    #[serde(default)]
    pub poll_interval: Option<Spanned<HumanDuration>>,
}

/// `backend.email.smtp_tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTlsConf {
    /// Plain text (a local relay).
    None,
    /// `STARTTLS`, required.
    Starttls,
    /// Implicit TLS (usually port 465).
    Tls,
}

/// `backend.due_soon`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DueSoonConf {
    /// A task is due at the end of its due date (UTC); its assignees are reminded this
    /// long before, 1m to 30 days. Default `24h`.
    #[serde(default)]
    pub window: Option<Spanned<HumanDuration>>,
    /// How often tasks are scanned, 1s to 1h. Default `1m`.
    #[serde(default)]
    pub scan_interval: Option<Spanned<HumanDuration>>,
}

fn default_backend_address() -> Spanned<String> {
    unspanned("127.0.0.1:8081".to_owned())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConf {
    /// `sqlite://PATH` or `postgres://…`. Default: `sqlite://DATA_DIR/aistack.db`.
    /// `DATABASE_URL` in the environment overrides it.
    #[serde(default)]
    pub url: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConf {
    /// `redis://host:port`. `REDIS_URL` in the environment overrides it.
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    /// Prepended to every key the gateway keeps in Redis, so that gateways (or tests)
    /// sharing one Redis stay apart. Default: `aistack:`.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// Longest one Redis command may take, connecting included (1ms to 10s). Default:
    /// `500ms`.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConf {
    /// Proxy worker threads. Default: the number of CPUs.
    #[serde(default)]
    pub threads: Option<Spanned<usize>>,
    /// How long a stopping gateway lets in-flight requests finish. Default 5s.
    #[serde(default = "default_grace", with = "humantime_serde_compat")]
    pub grace_period: Duration,
    /// One structured log line per request. Default true.
    #[serde(default = "yes")]
    pub access_log: bool,
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter). Default `info`.
    /// `AISTACK_LOG` in the environment overrides it.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Reload when the config file or a plugin's `.wasm` file changes. Default true.
    #[serde(default = "yes")]
    pub watch: bool,
    /// How often the watched files are checked. Default 1s.
    #[serde(default = "default_watch_interval", with = "humantime_serde_compat")]
    pub watch_interval: Duration,
    /// Peers (IPs or CIDRs) whose `X-Forwarded-*` and `Forwarded` headers are
    /// believed and extended; from anyone else they are replaced. Default none.
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// Limits of the plugin runtime. Defaults: see [`PluginLimitsConf`].
    #[serde(default)]
    pub plugins: PluginLimitsConf,
    /// Most request header fields a client may send (431 past it). Default 100.
    #[serde(default = "default_max_request_headers")]
    pub max_request_headers: usize,
    /// Most bytes of request header fields (names and values) a client may send (431
    /// past it). Default `32KiB`.
    #[serde(default = "default_max_request_header_bytes")]
    pub max_request_header_bytes: ByteSize,
    /// Largest request body on any route (413 past it): by `content-length` before
    /// anything goes upstream, else counted as it streams. Default none.
    #[serde(default)]
    pub max_request_body: Option<ByteSize>,
    /// Requests one client connection may carry before the gateway closes it (none).
    /// Restart to change.
    #[serde(default)]
    pub keepalive_requests: Option<u32>,
    /// How long an idle client connection is kept open between requests. Default 60s.
    #[serde(default = "default_keepalive_timeout", with = "humantime_serde_compat")]
    pub keepalive_timeout: Duration,
    /// Longest wait for the next piece of a request body from the client (slow
    /// senders); past it, 408. Default 60s.
    #[serde(
        default = "default_client_body_timeout",
        with = "humantime_serde_compat"
    )]
    pub client_body_timeout: Duration,
    /// Longest time a request head may take to arrive whole (slow senders), in total: a
    /// connection's first from its accept, a later one from its first byte (the idle wait
    /// before it is `keepalive_timeout`); past it the connection is closed. At least 1s
    /// (shorter counts as 1s). Default 60s. Restart to change.
    #[serde(
        default = "default_client_header_timeout",
        with = "humantime_serde_compat"
    )]
    pub client_header_timeout: Duration,
}

impl Default for ServerConf {
    fn default() -> Self {
        Self {
            threads: None,
            grace_period: default_grace(),
            access_log: true,
            log_level: default_log_level(),
            watch: true,
            watch_interval: default_watch_interval(),
            trusted_proxies: Vec::new(),
            plugins: PluginLimitsConf::default(),
            max_request_headers: default_max_request_headers(),
            max_request_header_bytes: default_max_request_header_bytes(),
            max_request_body: None,
            keepalive_requests: None,
            keepalive_timeout: default_keepalive_timeout(),
            client_body_timeout: default_client_body_timeout(),
            client_header_timeout: default_client_header_timeout(),
        }
    }
}

/// `server.plugins`: the limits every Proxy-Wasm VM runs under. They live under `server`
/// beside `threads` because, like it, they size the process's plugin runtime (one per
/// process, built at start: a change needs a restart); the top-level `plugins` names
/// modules. Their defaults and bounds are those of [`RuntimeOptions`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginLimitsConf {
    /// Most linear memory one VM may use: bytes, or with `KiB`, `MiB`, `GiB`. Past it,
    /// a fault `out_of_memory`. Default `64MiB`; 64KiB to 4GiB.
    #[serde(default = "default_memory_limit")]
    pub memory_limit: Spanned<ByteSize>,
    /// Longest one callback may run; past it, a fault `deadline`. Default `100ms`; 1ms
    /// to 10s.
    #[serde(default = "default_call_deadline")]
    pub call_deadline: Spanned<HumanDuration>,
    /// Plugin entries (of all routes, built-ins included) the pool of VMs is sized for:
    /// `(threads + 2) × max_plugins × 2` VMs. Default 16.
    #[serde(default = "default_max_plugins")]
    pub max_plugins: Spanned<usize>,
    /// Largest request body the gateway buffers for a filter that holds the request
    /// headers until it has seen the body (413 past it); streamed bodies have no limit.
    /// Default and most `64KiB` (Pingora replays such a body from its retry buffer, which
    /// holds 64 KiB); at least 1KiB. Applies on reload.
    #[serde(default = "default_max_buffered_body")]
    pub max_buffered_body: Spanned<ByteSize>,
}

impl Default for PluginLimitsConf {
    fn default() -> Self {
        Self {
            memory_limit: default_memory_limit(),
            call_deadline: default_call_deadline(),
            max_plugins: default_max_plugins(),
            max_buffered_body: default_max_buffered_body(),
        }
    }
}

fn default_memory_limit() -> Spanned<ByteSize> {
    let bytes = RuntimeOptions::DEFAULT_MEMORY_LIMIT;
    unspanned(ByteSize(u64::try_from(bytes).unwrap_or(u64::MAX)))
}

fn default_call_deadline() -> Spanned<HumanDuration> {
    unspanned(HumanDuration(RuntimeOptions::DEFAULT_CALL_DEADLINE))
}

fn default_keepalive_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_client_header_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_client_body_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_max_request_headers() -> usize {
    100
}

fn default_max_request_header_bytes() -> ByteSize {
    ByteSize(32 * 1024)
}

fn default_max_buffered_body() -> Spanned<ByteSize> {
    unspanned(ByteSize(super::limits::MAX_BUFFERED_BODY as u64))
}

fn default_max_plugins() -> Spanned<usize> {
    unspanned(RuntimeOptions::DEFAULT_MAX_PLUGINS)
}

fn default_grace() -> Duration {
    Duration::from_secs(5)
}

fn default_watch_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_log_level() -> String {
    "info".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConf {
    /// `host:port` or `{address: host:port, weight: N}` (weight default 1).
    pub targets: Vec<Spanned<TargetConf>>,
    /// `round_robin` (weighted), `least_connections` or `consistent_hash`.
    /// Default `round_robin`.
    #[serde(default)]
    pub balance: Balance,
    /// For `consistent_hash`: `ip`, `header:NAME` or `cookie:NAME`. Default `ip`.
    #[serde(default)]
    pub hash_on: Option<Spanned<String>>,
    /// Default 2s.
    #[serde(default = "default_connect_timeout", with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// Time allowed between reads of the upstream response. Default 60s.
    #[serde(default = "default_read_timeout", with = "humantime_serde_compat")]
    pub read_timeout: Duration,
    /// Time allowed for each write to the upstream. Default 60s.
    #[serde(default = "default_read_timeout", with = "humantime_serde_compat")]
    pub write_timeout: Duration,
    /// How often DNS names among the targets are resolved again. Default 30s.
    #[serde(default = "default_resolve_interval", with = "humantime_serde_compat")]
    pub resolve_interval: Duration,
    /// Active health checks; none by default.
    #[serde(default)]
    pub health_check: Option<HealthCheckConf>,
    /// Passive ejection after consecutive failures; off by default.
    #[serde(default)]
    pub passive: Option<PassiveConf>,
    /// Speak HTTP/2 to the targets (prior knowledge: h2c, as gRPC servers do). Default
    /// false (HTTP/1.1).
    #[serde(default)]
    pub http2: bool,
    /// TLS to the targets: `true`, or `{sni, verify, ca}`. Certificates are verified by
    /// default. Default: plaintext.
    #[serde(default)]
    pub tls: Option<Spanned<super::tls::UpstreamTlsConf>>,
}

/// One upstream target as written: a string or a map.
#[derive(Debug)]
pub struct TargetConf {
    pub address: String,
    pub weight: u32,
}

impl<'de> Deserialize<'de> for TargetConf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = TargetConf;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`host:port` or `{address: host:port, weight: N}`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TargetConf, E> {
                Ok(TargetConf {
                    address: v.to_owned(),
                    weight: 1,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<TargetConf, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Full {
                    address: String,
                    #[serde(default = "one")]
                    weight: u32,
                }
                fn one() -> u32 {
                    1
                }
                let f = Full::deserialize(serde::de::value::MapAccessDeserializer::new(m))?;
                Ok(TargetConf {
                    address: f.address,
                    weight: f.weight,
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    LeastConnections,
    ConsistentHash,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConf {
    /// `http` (default) or `tcp` (a connect is enough).
    #[serde(default, rename = "type")]
    pub kind: HealthCheckKind,
    /// HTTP path probed with GET; 2xx and 3xx are healthy. Default `/`.
    #[serde(default = "default_path")]
    pub path: Spanned<String>,
    /// Default 5s.
    #[serde(default = "default_hc_interval", with = "humantime_serde_compat")]
    pub interval: Duration,
    /// Default 1s.
    #[serde(default = "default_hc_timeout", with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Consecutive successes that make an unhealthy target healthy. Default 2.
    #[serde(default = "two")]
    pub healthy_threshold: Spanned<u32>,
    /// Consecutive failures that make a healthy target unhealthy. Default 3.
    #[serde(default = "three")]
    pub unhealthy_threshold: Spanned<u32>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    #[default]
    Http,
    Tcp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveConf {
    /// Consecutive failures (connect errors, resets, timeouts) that eject a target. Default 5.
    #[serde(default = "five")]
    pub max_failures: Spanned<u32>,
    /// How long an ejected target gets no traffic before it is tried again. Default 30s.
    #[serde(default = "default_ejection", with = "humantime_serde_compat")]
    pub ejection_time: Duration,
}

fn two() -> Spanned<u32> {
    unspanned(2)
}

fn three() -> Spanned<u32> {
    unspanned(3)
}

fn five() -> Spanned<u32> {
    unspanned(5)
}

fn default_hc_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_hc_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_ejection() -> Duration {
    Duration::from_secs(30)
}

fn default_resolve_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_read_timeout() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConf {
    /// Unique; used as the `route` label in metrics and logs.
    pub name: Spanned<String>,
    /// Exact `Host` to match (port ignored); absent matches any host.
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    /// Path prefix, matched on segment boundaries. Default `/`.
    #[serde(default = "default_path")]
    pub path: Spanned<String>,
    /// Allowed methods; empty allows all.
    #[serde(default)]
    pub methods: Vec<Spanned<String>>,
    /// Remove the route's path prefix before proxying. Default false.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Name of an entry in `upstreams`.
    pub upstream: Spanned<String>,
    /// Filter chain, run in order.
    #[serde(default)]
    pub plugins: Vec<RoutePluginConf>,
    /// Whole-request deadline (connect + send + response header + body). None by default.
    #[serde(default, with = "humantime_serde_compat::option")]
    pub timeout: Option<Duration>,
    /// Send the client's `Host` to the upstream. Default true; false sends
    /// the target's `host:port` as configured.
    #[serde(default = "yes")]
    pub preserve_host: bool,
    /// Send this `Host` to the upstream instead (overrides `preserve_host`).
    #[serde(default)]
    pub host_rewrite: Option<Spanned<String>>,
    /// Retries on another target. Default `{max: 1, budget: 0.2}`.
    #[serde(default)]
    pub retries: RetryConf,
    /// A WebSocket (or other upgraded) tunnel on this route is closed when the client
    /// or the upstream has sent nothing for this long. Default: the client side waits
    /// `server.client_body_timeout`, the upstream side the upstream's `read_timeout`.
    #[serde(default, with = "humantime_serde_compat::option")]
    pub websocket_idle_timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConf {
    /// Retries after the first try (0 disables). Default 1.
    #[serde(default = "one_retry")]
    pub max: u32,
    /// Retries may add at most this fraction of the route's requests (plus a
    /// reserve of 10). Default 0.2.
    #[serde(default = "default_budget")]
    pub budget: Spanned<f64>,
    /// Also retry non-idempotent methods (POST, PATCH) when the error came
    /// before any request body was sent. Default false.
    #[serde(default)]
    pub non_idempotent: bool,
}

impl Default for RetryConf {
    fn default() -> Self {
        Self {
            max: one_retry(),
            budget: default_budget(),
            non_idempotent: false,
        }
    }
}

fn one_retry() -> u32 {
    1
}

fn default_budget() -> Spanned<f64> {
    unspanned(0.2)
}

fn default_path() -> Spanned<String> {
    unspanned("/".to_owned())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePluginConf {
    /// A built-in plugin (`request-id`, …) or a name from `plugins`.
    pub name: Spanned<String>,
    /// Handed to the filter as its plugin configuration (JSON).
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// What a fault of this filter (trap, deadline, memory limit) does to a request:
    /// `fail` (default: 500 JSON `plugin_error`) or `continue` (the filter is skipped
    /// for that request). Counted in `aistack_plugin_errors_total` either way.
    #[serde(default)]
    pub on_error: OnError,
}

/// A route plugin entry's `on_error`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    #[default]
    Fail,
    Continue,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConf {
    /// Path to the `.wasm` file, relative to the config file's directory.
    pub path: Spanned<String>,
}

fn yes() -> bool {
    true
}

/// A value that did not come from the file (a default).
fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned {
        value,
        referenced: serde_saphyr::Location::UNKNOWN,
        defined: serde_saphyr::Location::UNKNOWN,
    }
}

/// `"2s"`, `"150ms"`, `"1m 30s"` → `Duration`, with a clear message otherwise.
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer, de::Error};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::super::units::parse_duration(&text).map_err(D::Error::custom)
    }

    pub mod option {
        use serde::Deserializer;
        use std::time::Duration;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

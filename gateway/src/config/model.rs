//! The validated config: addresses parsed, references resolved, defaults
//! applied. Built from [`ConfigFile`]; the snapshot is built from this.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::error::{ConfigErrors, Diagnostics};
use super::load::EnvLookup;
use super::surface::{ConfigFile, RouteConf};
use crate::router::normalize_path;

/// A whole, valid configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Fingerprint of the config text (see the admin API).
    pub hash: String,
    pub listeners: Vec<ListenerSpec>,
    pub admin: AdminSettings,
    pub backend: BackendSettings,
    pub database_url: String,
    pub redis_url: Option<String>,
    /// `redis.key_prefix` (default `aistack:`).
    pub redis_key_prefix: String,
    /// `redis.timeout` (default 500 ms).
    pub redis_timeout: Duration,
    pub server: ServerSettings,
    pub upstreams: Vec<UpstreamSpec>,
    pub routes: Vec<RouteSpec>,
    /// Custom plugin modules by name (built-ins are not listed).
    pub plugin_files: BTreeMap<String, PathBuf>,
    /// `${NAME}` substitutions, so the admin API can redact them.
    pub env_values: super::load::EnvValues,
}

/// One proxy listener.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub address: SocketAddr,
    /// TLS termination, with its certificates loaded; `None` for plaintext.
    pub tls: Option<Arc<ListenerTls>>,
}

impl ListenerSpec {
    /// What a running listener cannot change without a restart: its address, whether
    /// it speaks TLS, and the protocols it offers through ALPN.
    pub fn restart_shape(&self) -> (SocketAddr, Option<bool>) {
        (self.address, self.tls.as_ref().map(|t| t.http2))
    }
}

pub use super::tls::{ListenerTls, TlsVersion, UpstreamTls};

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub address: SocketAddr,
    /// Read-write token.
    pub token: Option<String>,
    /// Token for GET endpoints only.
    pub read_only_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct BackendSettings {
    pub enabled: bool,
    pub address: SocketAddr,
    /// `backend.email`, before the environment's `AISTACK_SMTP_*` / `AISTACK_EMAIL_*`
    /// overrides (applied when the backend starts).
    pub email: Option<aistack_collab::email::EmailOptions>,
    /// `backend.due_soon.window`.
    pub due_soon_window: Duration,
    /// `backend.due_soon.scan_interval`.
    pub due_soon_scan: Duration,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub threads: usize,
    pub grace_period: Duration,
    pub access_log: bool,
    pub log_level: String,
    pub watch: bool,
    pub watch_interval: Duration,
    pub trusted_proxies: Vec<super::cidr::Cidr>,
    /// `server.plugins`: what the plugin runtime is built with (at start only).
    pub plugins: PluginLimits,
    /// Request limits: header fields and their bytes (431), body bytes (413).
    pub max_request_headers: usize,
    pub max_request_header_bytes: u64,
    pub max_request_body: Option<u64>,
    /// Client connections: requests per connection (restart-only), idle keep-alive, the
    /// wait for each piece of a request body.
    pub keepalive_requests: Option<u32>,
    pub keepalive_timeout: Duration,
    pub client_body_timeout: Duration,
    /// The wait for a new connection's first request head (see `connections`).
    pub client_header_timeout: Duration,
}

pub use super::limits::PluginLimits;

pub use super::upstream::{HashOn, HealthCheckSpec, PassiveSpec, TargetSpec, UpstreamSpec};

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: String,
    /// Lower-case host without port.
    pub host: Option<String>,
    /// Normalized prefix without a trailing `/` (the root is `/`).
    pub path: String,
    /// Upper-case method names; empty allows every method.
    pub methods: Vec<http::Method>,
    pub strip_prefix: bool,
    /// Index into [`GatewayConfig::upstreams`].
    pub upstream: usize,
    pub plugins: Vec<PluginRef>,
    /// Whole-request deadline.
    pub timeout: Option<Duration>,
    pub retries: RetrySpec,
    pub upstream_host: UpstreamHost,
    /// Upgraded tunnels: the longest silence from either side.
    pub websocket_idle_timeout: Option<Duration>,
}

/// The `Host` header the upstream receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamHost {
    /// The client's.
    Preserve,
    /// The target's `host:port` as configured.
    Target,
    /// A fixed value.
    Fixed(http::HeaderValue),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetrySpec {
    /// Retries after the first try.
    pub max: u32,
    /// Retries may add at most this fraction of the route's requests.
    pub budget: f64,
    pub non_idempotent: bool,
}

/// One entry of a route's filter chain.
#[derive(Debug, Clone)]
pub struct PluginRef {
    pub name: String,
    /// The plugin configuration handed to the filter (JSON text, empty if none).
    pub config: Vec<u8>,
    /// `on_error: continue`: a fault skips the filter instead of failing the request.
    pub fail_open: bool,
    /// Where the entry stands, for errors raised while the plugin is built.
    pub key: String,
    pub line: u64,
    pub column: u64,
}

pub(super) fn validate(
    file: ConfigFile,
    file_name: &str,
    base_dir: &Path,
    data_dir: &Path,
    env: EnvLookup<'_>,
    hash: String,
) -> Result<GatewayConfig, ConfigErrors> {
    let mut d = Diagnostics::new(file_name);
    let mut listeners: Vec<ListenerSpec> = Vec::with_capacity(file.listeners.len());
    for (i, l) in file.listeners.iter().enumerate() {
        let key = format!("listeners[{i}].address");
        let address = socket_addr(&mut d, &l.address, &key);
        let tls = l
            .tls
            .as_ref()
            .and_then(|t| super::tls::listener_tls(&mut d, i, t, base_dir));
        let Some(address) = address else { continue };
        if listeners.iter().any(|o| o.address == address) {
            d.error(
                &l.address.referenced,
                key,
                format!("`{address}` is listed twice"),
            );
        }
        listeners.push(ListenerSpec { address, tls });
    }
    if file.listeners.is_empty() {
        d.error(
            &Location::UNKNOWN,
            "listeners",
            "at least one listener is required",
        );
    }
    let admin_address = socket_addr(&mut d, &file.admin.address, "admin.address");
    let admin_token = file.admin.token.as_ref().map(|t| t.value.clone());
    let read_only_token = file.admin.read_only_token.as_ref().map(|t| t.value.clone());
    if let (Some(addr), None) = (admin_address, &admin_token)
        && !addr.ip().is_loopback()
    {
        d.error(
            &file.admin.address.referenced,
            "admin.address",
            "the admin API may listen beyond loopback only with `admin.token` set",
        );
    }
    for (t, key) in [
        (&file.admin.token, "admin.token"),
        (&file.admin.read_only_token, "admin.read_only_token"),
    ] {
        let Some(t) = t else { continue };
        if t.value.starts_with(crate::admin::DIGEST_PREFIX) {
            if crate::admin::token_digest(&t.value).is_none() {
                d.error(
                    &t.referenced,
                    key,
                    "a digest is `sha256:` followed by 64 hex digits (the token's SHA-256)",
                );
            }
        } else if t.value.len() < 16 {
            d.error(&t.referenced, key, "too short: use at least 16 characters");
        }
    }
    if let (Some(rw), Some(ro)) = (&admin_token, &file.admin.read_only_token)
        && crate::admin::token_digest(rw).is_some()
        && crate::admin::token_digest(rw) == crate::admin::token_digest(&ro.value)
    {
        d.error(
            &ro.referenced,
            "admin.read_only_token",
            "must differ from `admin.token`",
        );
    }
    if file.admin.read_only_token.is_some() && admin_token.is_none() {
        d.error(
            &Location::UNKNOWN,
            "admin.token",
            "`admin.read_only_token` needs `admin.token` too (otherwise writes would be open)",
        );
    }
    let backend_address = socket_addr(&mut d, &file.backend.address, "backend.address");
    let email = file
        .backend
        .email
        .as_ref()
        .and_then(|conf| super::backend::email(&mut d, conf, base_dir));
    let (due_soon_window, due_soon_scan) = super::backend::due_soon(&mut d, &file.backend.due_soon);
    let database_url = env("DATABASE_URL")
        .or_else(|| file.database.url.as_ref().map(|u| u.value.clone()))
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("aistack.db").display()));
    let redis_url = env("REDIS_URL").or_else(|| {
        let url = file.redis.as_ref().and_then(|r| r.url.as_ref());
        url.map(|u| u.value.clone())
    });
    let redis_key_prefix = file
        .redis
        .as_ref()
        .and_then(|r| r.key_prefix.clone())
        .unwrap_or_else(|| "aistack:".to_owned());
    let redis_timeout = match file.redis.as_ref().and_then(|r| r.timeout.as_ref()) {
        Some(t) if !(Duration::from_millis(1)..=Duration::from_secs(10)).contains(&t.value.0) => {
            d.error(
                &t.referenced,
                "redis.timeout",
                "must be between 1ms and 10s",
            );
            Duration::from_millis(500)
        }
        Some(t) => t.value.0,
        None => Duration::from_millis(500),
    };
    let threads = match &file.server.threads {
        Some(t) if t.value == 0 => {
            d.error(&t.referenced, "server.threads", "must be at least 1");
            1
        }
        Some(t) => t.value,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let plugin_limits = super::limits::plugin_limits(&mut d, &file.server.plugins, threads);

    let trusted_proxies = file
        .server
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let parsed = super::cidr::Cidr::parse(&t.value);
            if parsed.is_none() {
                d.error(
                    &t.referenced,
                    format!("server.trusted_proxies[{i}]"),
                    format!(
                        "invalid `{}`; expected an IP or a CIDR such as 10.0.0.0/8",
                        t.value
                    ),
                );
            }
            parsed
        })
        .collect();
    let upstreams: Vec<UpstreamSpec> = file
        .upstreams
        .iter()
        .map(|(name, u)| super::upstream::upstream(&mut d, name, u, base_dir))
        .collect();
    let mut route_names = BTreeMap::new();
    let mut routes = Vec::with_capacity(file.routes.len());
    for (i, r) in file.routes.iter().enumerate() {
        if let Some(prev) = route_names.insert(r.name.value.clone(), i) {
            d.error(
                &r.name.referenced,
                format!("routes[{i}].name"),
                format!(
                    "duplicate route name `{}` (also routes[{prev}])",
                    r.name.value
                ),
            );
        }
        if let Some(spec) = route(&mut d, i, r, &upstreams) {
            routes.push(spec);
        }
    }
    let mut plugin_files = BTreeMap::new();
    for (name, p) in &file.plugins {
        let key = format!("plugins.{name}");
        if crate::wasm::builtin_module_bytes(name).is_some() {
            d.error(
                &p.path.referenced,
                &key,
                format!("`{name}` is a built-in plugin; choose another name"),
            );
        }
        let path = base_dir.join(&p.path.value);
        if !path.is_file() {
            d.error(
                &p.path.referenced,
                format!("{key}.path"),
                format!("no such file: {}", path.display()),
            );
        }
        plugin_files.insert(name.clone(), path);
    }
    for (i, r) in file.routes.iter().enumerate() {
        for (j, p) in r.plugins.iter().enumerate() {
            let known = plugin_files.contains_key(&p.name.value)
                || crate::wasm::builtin_module_bytes(&p.name.value).is_some();
            if !known {
                let builtins: Vec<&str> = crate::wasm::builtin_names().collect();
                d.error(
                    &p.name.referenced,
                    format!("routes[{i}].plugins[{j}].name"),
                    format!(
                        "unknown plugin `{}`; expected a built-in ({}) or a name under `plugins`",
                        p.name.value,
                        builtins.join(", ")
                    ),
                );
            }
        }
    }
    let (Some(admin_address), Some(backend_address)) = (admin_address, backend_address) else {
        return Err(d
            .finish(())
            .err()
            .unwrap_or_else(|| unreachable_errors(file_name)));
    };
    d.finish(GatewayConfig {
        hash,
        listeners,
        admin: AdminSettings {
            address: admin_address,
            token: admin_token,
            read_only_token,
        },
        backend: BackendSettings {
            enabled: file.backend.enabled,
            address: backend_address,
            email,
            due_soon_window,
            due_soon_scan,
        },
        database_url,
        redis_url,
        redis_key_prefix,
        redis_timeout,
        server: ServerSettings {
            threads,
            grace_period: file.server.grace_period,
            access_log: file.server.access_log,
            log_level: file.server.log_level,
            watch: file.server.watch,
            watch_interval: file.server.watch_interval.max(Duration::from_millis(50)),
            trusted_proxies,
            plugins: plugin_limits,
            max_request_headers: file.server.max_request_headers.max(1),
            max_request_header_bytes: file.server.max_request_header_bytes.0.max(1),
            max_request_body: file.server.max_request_body.map(|b| b.0),
            keepalive_requests: file.server.keepalive_requests.filter(|n| *n > 0),
            keepalive_timeout: file.server.keepalive_timeout.max(Duration::from_secs(1)),
            client_body_timeout: file
                .server
                .client_body_timeout
                .max(Duration::from_millis(100)),
            client_header_timeout: file
                .server
                .client_header_timeout
                .max(Duration::from_secs(1)),
        },
        upstreams,
        routes,
        plugin_files,
        env_values: Default::default(),
    })
}

/// Only reached if an address failed without recording an error, which
/// `socket_addr` never does; kept total rather than panicking.
fn unreachable_errors(file: &str) -> ConfigErrors {
    ConfigErrors::single(super::ConfigError {
        file: file.to_owned(),
        line: 0,
        column: 0,
        key: String::new(),
        message: "invalid address".to_owned(),
    })
}

fn socket_addr(d: &mut Diagnostics, value: &Spanned<String>, key: &str) -> Option<SocketAddr> {
    match value.value.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            d.error(
                &value.referenced,
                key,
                format!(
                    "invalid address `{}`; expected IP:PORT, e.g. 127.0.0.1:8080",
                    value.value
                ),
            );
            None
        }
    }
}

fn route(
    d: &mut Diagnostics,
    i: usize,
    r: &RouteConf,
    upstreams: &[UpstreamSpec],
) -> Option<RouteSpec> {
    let key = |field: &str| format!("routes[{i}].{field}");
    if r.name.value.is_empty() || r.name.value.len() > 64 {
        d.error(
            &r.name.referenced,
            key("name"),
            "must be 1 to 64 characters",
        );
    }
    let path = &r.path.value;
    if !path.starts_with('/') {
        d.error(
            &r.path.referenced,
            key("path"),
            format!("`{path}` must start with `/`"),
        );
    }
    let normalized = normalize_path(path);
    let mut prefix = normalized.trim_end_matches('/').to_owned();
    if prefix.is_empty() {
        prefix.push('/');
    }
    let mut methods = Vec::with_capacity(r.methods.len());
    for (j, m) in r.methods.iter().enumerate() {
        match http::Method::from_bytes(m.value.to_ascii_uppercase().as_bytes()) {
            Ok(method) => methods.push(method),
            Err(_) => d.error(
                &m.referenced,
                key(&format!("methods[{j}]")),
                format!("invalid method `{}`", m.value),
            ),
        }
    }
    let upstream = upstreams.iter().position(|u| u.name == r.upstream.value);
    if upstream.is_none() {
        let names: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
        d.error(
            &r.upstream.referenced,
            key("upstream"),
            format!(
                "unknown upstream `{}`; defined: {}",
                r.upstream.value,
                list_or_none(&names)
            ),
        );
    }
    let plugins = r
        .plugins
        .iter()
        .enumerate()
        .map(|(j, p)| PluginRef {
            name: p.name.value.clone(),
            config: p
                .config
                .as_ref()
                .map(|c| c.to_string().into_bytes())
                .unwrap_or_default(),
            fail_open: p.on_error == super::surface::OnError::Continue,
            key: key(&format!("plugins[{j}]")),
            line: p.name.referenced.line(),
            column: p.name.referenced.column(),
        })
        .collect();
    let budget = &r.retries.budget;
    if !(0.0..=1.0).contains(&budget.value) {
        d.error(
            &budget.referenced,
            key("retries.budget"),
            "must be between 0 and 1",
        );
    }
    let upstream_host = match &r.host_rewrite {
        Some(h) => match http::HeaderValue::from_str(h.value.trim()) {
            Ok(v) if !h.value.trim().is_empty() => UpstreamHost::Fixed(v),
            _ => {
                d.error(&h.referenced, key("host_rewrite"), "not a valid Host value");
                UpstreamHost::Preserve
            }
        },
        None if r.preserve_host => UpstreamHost::Preserve,
        None => UpstreamHost::Target,
    };
    Some(RouteSpec {
        name: r.name.value.clone(),
        host: r
            .host
            .as_ref()
            .map(|h| host_without_port(&h.value).to_ascii_lowercase()),
        path: prefix,
        methods,
        strip_prefix: r.strip_prefix,
        upstream: upstream?,
        plugins,
        timeout: r.timeout,
        retries: RetrySpec {
            max: r.retries.max,
            budget: budget.value.clamp(0.0, 1.0),
            non_idempotent: r.retries.non_idempotent,
        },
        upstream_host,
        websocket_idle_timeout: r
            .websocket_idle_timeout
            .map(|t| t.max(Duration::from_millis(100))),
    })
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    })
}

//! The config file as users write it: serde structs with `deny_unknown_fields` and
//! named defaults. Nothing here is used on the hot path; [`super::model`] turns it
//! into the validated snapshot.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

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
    /// Process-wide runtime options (threads, logging, shutdown).
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
}

fn default_listeners() -> Vec<ListenerConf> {
    vec![ListenerConf {
        address: unspanned("0.0.0.0:8080".to_owned()),
    }]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConf {
    /// Admin API and `/metrics`. Default `127.0.0.1:9080`.
    #[serde(default = "default_admin_address")]
    pub address: Spanned<String>,
    /// Bearer token for the admin API (use `${ENV_VAR}`). Optional on loopback.
    #[serde(default)]
    pub token: Option<Spanned<String>>,
}

impl Default for AdminConf {
    fn default() -> Self {
        Self {
            address: default_admin_address(),
            token: None,
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
}

impl Default for BackendConf {
    fn default() -> Self {
        Self {
            enabled: true,
            address: default_backend_address(),
        }
    }
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
    pub url: Spanned<String>,
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
}

impl Default for ServerConf {
    fn default() -> Self {
        Self {
            threads: None,
            grace_period: default_grace(),
            access_log: true,
            log_level: default_log_level(),
        }
    }
}

fn default_grace() -> Duration {
    Duration::from_secs(5)
}

fn default_log_level() -> String {
    "info".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConf {
    /// `host:port` targets, balanced round robin.
    pub targets: Vec<Spanned<String>>,
    /// Default 2s.
    #[serde(default = "default_connect_timeout", with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// Time allowed between reads of the upstream response. Default 60s.
    #[serde(default = "default_read_timeout", with = "humantime_serde_compat")]
    pub read_timeout: Duration,
    /// Time allowed for each write to the upstream. Default 60s.
    #[serde(default = "default_read_timeout", with = "humantime_serde_compat")]
    pub write_timeout: Duration,
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
        humantime::parse_duration(&text).map_err(|e| {
            D::Error::custom(format!(
                "invalid duration `{text}` ({e}); expected e.g. `500ms`, `2s`, `1m`"
            ))
        })
    }
}

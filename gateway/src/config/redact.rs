//! The active config as the admin API shows it (`GET /config`): the validated
//! model rendered as JSON with secrets removed. Redacted are the admin token,
//! passwords in database and Redis URLs, the SMTP password and unsubscribe secrets, plugin-config values under
//! secret-looking keys, and every value that came from `${ENV}` (shown as
//! `${NAME}` wherever it appears).

use serde_json::{Value, json};

use super::model::{GatewayConfig, HashOn, ListenerSpec, UpstreamSpec};

/// What replaces a secret that did not come from `${ENV}`.
pub const REDACTED: &str = "<redacted>";

/// The JSON view of `cfg` with every secret removed.
pub fn redacted(cfg: &GatewayConfig) -> Value {
    let mut v = render(cfg);
    let mut subs: Vec<&(String, String)> = cfg
        .env_values
        .0
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .collect();
    // Longest first, so a value that contains another is replaced whole.
    subs.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
    if !subs.is_empty() {
        replace_strings(&mut v, &|s: &str| {
            let mut out = s.to_owned();
            for (name, value) in &subs {
                if out.contains(value.as_str()) {
                    out = out.replace(value.as_str(), &format!("${{{name}}}"));
                }
            }
            out
        });
    }
    v
}

fn render(cfg: &GatewayConfig) -> Value {
    json!({
        "hash": cfg.hash,
        "listeners": cfg.listeners.iter().map(listener).collect::<Vec<_>>(),
        "admin": {
            "address": cfg.admin.address.to_string(),
            "token": cfg.admin.token.as_ref().map(|_| REDACTED),
            "read_only_token": cfg.admin.read_only_token.as_ref().map(|_| REDACTED),
        },
        "backend": {
            "enabled": cfg.backend.enabled,
            "address": cfg.backend.address.to_string(),
            "email": cfg.backend.email.as_ref().map(email),
            "due_soon": {
                "window": dur(cfg.backend.due_soon_window),
                "scan_interval": dur(cfg.backend.due_soon_scan),
            },
        },
        "database": { "url": redact_url_password(&cfg.database_url) },
        "redis": cfg.redis_url.as_deref().map(|u| json!({ "url": redact_url_password(u) })),
        "server": {
            "threads": cfg.server.threads,
            "grace_period": humantime::format_duration(cfg.server.grace_period).to_string(),
            "access_log": cfg.server.access_log,
            "log_level": cfg.server.log_level,
            "watch": cfg.server.watch,
            "watch_interval": humantime::format_duration(cfg.server.watch_interval).to_string(),
            "trusted_proxies": cfg.server.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "plugins": {
                "memory_limit": cfg.server.plugins.memory_limit,
                "call_deadline": dur(cfg.server.plugins.call_deadline),
                "max_plugins": cfg.server.plugins.max_plugins,
            },
        },
        "upstreams": cfg.upstreams.iter().map(|u| (u.name.clone(), upstream(u))).collect::<serde_json::Map<_, _>>(),
        "routes": cfg.routes.iter().map(|r| route(cfg, r)).collect::<Vec<_>>(),
        "plugins": cfg.plugin_files.iter().map(|(name, path)| (name.clone(), json!({ "path": path.display().to_string() }))).collect::<serde_json::Map<_, _>>(),
    })
}

/// `backend.email` without its password and unsubscribe secrets.
fn email(e: &aistack_collab::email::EmailOptions) -> Value {
    use aistack_collab::email::SmtpTls;
    json!({
        "smtp_host": e.smtp_host,
        "smtp_port": e.smtp_port,
        "smtp_tls": match e.smtp_tls {
            SmtpTls::None => "none",
            SmtpTls::StartTls => "starttls",
            SmtpTls::Implicit => "tls",
        },
        "smtp_tls_ca": e.smtp_tls_ca.as_ref().map(|ca| ca.path.display().to_string()),
        "smtp_user": e.smtp_credentials.as_ref().map(|(user, _)| user),
        "smtp_password": e.smtp_credentials.as_ref().map(|_| REDACTED),
        "smtp_timeout": dur(e.smtp_timeout),
        "from": e.from,
        "public_url": e.public_url,
        "unsubscribe_secret": REDACTED,
        "unsubscribe_key_versions": e.unsubscribe_keys.iter().map(|k| k.version).collect::<Vec<_>>(),
        "concurrency": e.concurrency,
        "rate": e.rate_per_second,
        "max_attempts": e.max_attempts,
        "poll_interval": dur(e.poll_interval),
    })
}

fn dur(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A plaintext listener is its address; a TLS one also names its files (never keys).
fn listener(l: &ListenerSpec) -> Value {
    let Some(tls) = &l.tls else {
        return json!(l.address.to_string());
    };
    json!({
        "address": l.address.to_string(),
        "tls": {
            "certificates": tls.certificates.iter().map(|c| json!({
                "cert": c.cert_path.display().to_string(),
                "names": c.names,
            })).collect::<Vec<_>>(),
            "min_version": tls.min_version.as_str(),
            "http2": tls.http2,
            "client_auth": tls.client_auth.as_ref().map(|c| json!({ "required": c.required })),
        },
    })
}

fn upstream(u: &UpstreamSpec) -> Value {
    json!({
        "targets": u.targets.iter().map(|t| json!({ "address": t.address, "weight": t.weight })).collect::<Vec<_>>(),
        "balance": u.balance.as_str(),
        "hash_on": u.hash_on.as_ref().map(HashOn::to_string),
        "connect_timeout": dur(u.connect_timeout),
        "read_timeout": dur(u.read_timeout),
        "write_timeout": dur(u.write_timeout),
        "http2": u.http2,
        "tls": u.tls.as_ref().map(|t| json!({
            "sni": t.sni,
            "verify": t.verify,
            "ca": t.ca.as_ref().map(|(path, _)| path.display().to_string()),
        })),
        "resolve_interval": dur(u.resolve_interval),
        "health_check": u.health_check.as_ref().map(|h| json!({
            "type": h.kind.as_str(),
            "path": h.path,
            "interval": dur(h.interval),
            "timeout": dur(h.timeout),
            "healthy_threshold": h.healthy_threshold,
            "unhealthy_threshold": h.unhealthy_threshold,
        })),
        "passive": u.passive.as_ref().map(|p| json!({
            "max_failures": p.max_failures,
            "ejection_time": dur(p.ejection_time),
        })),
    })
}

fn route(cfg: &GatewayConfig, r: &super::model::RouteSpec) -> Value {
    json!({
        "name": r.name,
        "host": r.host,
        "path": r.path,
        "methods": r.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "strip_prefix": r.strip_prefix,
        "upstream": cfg.upstreams.get(r.upstream).map(|u| u.name.as_str()),
        "timeout": r.timeout.map(dur),
        "upstream_host": match &r.upstream_host {
            super::model::UpstreamHost::Preserve => "preserve".to_owned(),
            super::model::UpstreamHost::Target => "target".to_owned(),
            super::model::UpstreamHost::Fixed(v) => v.to_str().unwrap_or_default().to_owned(),
        },
        "retries": Some(&r.retries).map(|x| json!({
            "max": x.max,
            "budget": x.budget,
            "non_idempotent": x.non_idempotent,
        })),
        "plugins": r.plugins.iter().map(|p| {
            let mut config: Value = serde_json::from_slice(&p.config).unwrap_or(Value::Null);
            redact_secret_keys(&mut config);
            json!({ "name": p.name, "config": config })
        }).collect::<Vec<_>>(),
    })
}

/// `postgres://user:secret@host/db` → `postgres://user:<redacted>@host/db`.
pub fn redact_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
    if user.len() == userinfo.len() {
        return url.to_owned();
    }
    format!("{}{user}:{REDACTED}{}", &url[..scheme_end + 3], &rest[at..])
}

/// Plugin settings whose key names a secret (`secret`, `password`, `token`,
/// `api_key`, `private_key`, …) are redacted whatever their source.
fn redact_secret_keys(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                let k = k.to_ascii_lowercase();
                let secret = ["secret", "password", "passwd", "token", "private_key"]
                    .iter()
                    .any(|s| k.contains(s))
                    || k == "key"
                    || k.ends_with("_key")
                    || k.ends_with("-key");
                if secret && !val.is_object() && !val.is_array() && !val.is_null() {
                    *val = Value::String(REDACTED.to_owned());
                } else {
                    redact_secret_keys(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_secret_keys),
        _ => {}
    }
}

fn replace_strings(v: &mut Value, f: &dyn Fn(&str) -> String) {
    match v {
        Value::String(s) => *s = f(s),
        Value::Array(items) => items.iter_mut().for_each(|i| replace_strings(i, f)),
        Value::Object(map) => map.values_mut().for_each(|i| replace_strings(i, f)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url_password("postgres://app:s3cret@db:5432/x"),
            "postgres://app:<redacted>@db:5432/x"
        );
        assert_eq!(
            redact_url_password("redis://:pw@127.0.0.1:6379"),
            "redis://:<redacted>@127.0.0.1:6379"
        );
        assert_eq!(
            redact_url_password("sqlite:///data/a.db"),
            "sqlite:///data/a.db"
        );
        assert_eq!(
            redact_url_password("postgres://app@db/x"),
            "postgres://app@db/x"
        );
    }

    #[test]
    fn secret_looking_plugin_keys_are_redacted() {
        let mut v = json!({"secret": "a", "nested": {"api_key": "b", "name": "c"}, "keys": ["d"]});
        redact_secret_keys(&mut v);
        assert_eq!(
            v,
            json!({"secret": REDACTED, "nested": {"api_key": REDACTED, "name": "c"}, "keys": ["d"]})
        );
    }
}

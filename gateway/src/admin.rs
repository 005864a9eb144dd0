//! The admin API (default 127.0.0.1:9080): `/metrics` in Prometheus text,
//! `/status`, `/config` (secrets redacted), `/routes`, `/upstreams` (target
//! health), `/plugins`, `POST /config/reload`, and the consumers and API keys of the
//! key store (`admin/keys.rs`). With `admin.token` set,
//! every endpoint requires `Authorization: Bearer TOKEN`; the optional
//! `admin.read_only_token` opens the GET endpoints only. Tokens are kept as
//! SHA-256 digests and compared in constant time; the config may give a token as its
//! digest (`sha256:<hex>`), so the file holds no secret.

mod keys;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::observability::Metrics;
use crate::reload::Reloader;
use crate::snapshot::SnapshotHandle;

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub snapshots: SnapshotHandle,
    pub metrics: Metrics,
    pub reloader: Option<Arc<Reloader>>,
    pub tokens: Tokens,
    /// The key store (consumers, API keys); `None` in a process without one.
    pub keys: Option<crate::keys::KeyStore>,
}

/// The admin tokens as SHA-256 digests; no read-write token means no auth.
#[derive(Clone, Default)]
pub struct Tokens {
    read_write: Option<[u8; 32]>,
    read_only: Option<[u8; 32]>,
}

impl Tokens {
    /// The digests of the configured tokens (see [`token_digest`]); a malformed
    /// `sha256:` value (refused by config validation) opens nothing.
    pub fn new(read_write: Option<&str>, read_only: Option<&str>) -> Self {
        let digest = |t: &str| token_digest(t).unwrap_or_else(|| sha256(t.as_bytes()));
        Self {
            read_write: read_write.map(digest),
            read_only: read_only.map(digest),
        }
    }
}

/// Prefix of a configured token given as its SHA-256 digest (64 hex digits), so that
/// the config file holds no secret.
pub const DIGEST_PREFIX: &str = "sha256:";

/// The SHA-256 digest a configured token stands for: `sha256:<64 hex digits>` is the
/// digest itself, any other value is the token in plain text. `None` for a `sha256:`
/// value that is not 64 hex digits.
pub fn token_digest(configured: &str) -> Option<[u8; 32]> {
    let Some(hex_digits) = configured.strip_prefix(DIGEST_PREFIX) else {
        return Some(sha256(configured.as_bytes()));
    };
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut digest).ok()?;
    Some(digest)
}

/// What a presented token allows.
#[derive(Debug, PartialEq, Eq)]
enum Access {
    Denied,
    ReadOnly,
    ReadWrite,
}

/// The admin app.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/config", get(config))
        .route("/routes", get(routes))
        .route("/upstreams", get(upstreams))
        .route("/plugins", get(plugins))
        .route("/config/reload", post(reload))
        .merge(keys::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let mut resp = s.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

async fn status(State(s): State<AdminState>) -> Response {
    let snap = s.snapshots.load();
    axum::Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "config": { "hash": snap.config.hash, "generation": snap.generation },
        "routes": snap.routes.len(),
        "upstreams": snap.upstreams.len(),
    }))
    .into_response()
}

async fn config(State(s): State<AdminState>) -> Response {
    let snap = s.snapshots.load();
    axum::Json(serde_json::json!({
        "generation": snap.generation,
        "config": crate::config::redact::redacted(&snap.config),
    }))
    .into_response()
}

async fn upstreams(State(s): State<AdminState>) -> Response {
    let snap = s.snapshots.load();
    let list: serde_json::Map<String, serde_json::Value> = snap
        .upstreams
        .iter()
        .map(|u| {
            let targets: Vec<_> = u
                .endpoints()
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "target": &*e.target,
                        "address": e.addr.to_string(),
                        "weight": e.weight,
                        "available": e.health.is_available(),
                        "health_check": if u.spec.health_check.is_none() {
                            "off"
                        } else if e.health.active_healthy() {
                            "healthy"
                        } else {
                            "unhealthy"
                        },
                        "ejected": e.health.is_ejected(),
                        "consecutive_failures": e.health.consecutive_failures(),
                        "in_flight": e.health.in_flight(),
                    })
                })
                .collect();
            let available = targets.iter().filter(|t| t["available"] == true).count();
            (
                u.name.to_string(),
                serde_json::json!({
                    "balance": u.spec.balance.as_str(),
                    "available": available,
                    "targets": targets,
                }),
            )
        })
        .collect();
    axum::Json(serde_json::json!({ "upstreams": list })).into_response()
}

async fn plugins(State(s): State<AdminState>) -> Response {
    let snap = s.snapshots.load();
    let used_by = |name: &str| -> Vec<&str> {
        snap.config
            .routes
            .iter()
            .filter(|r| r.plugins.iter().any(|p| p.name == name))
            .map(|r| r.name.as_str())
            .collect()
    };
    let mut list: Vec<serde_json::Value> = crate::wasm::builtin_names()
        .map(
            |name| serde_json::json!({ "name": name, "kind": "built-in", "routes": used_by(name) }),
        )
        .collect();
    list.extend(snap.config.plugin_files.iter().map(|(name, path)| {
        serde_json::json!({
            "name": name,
            "kind": "custom",
            "path": path.display().to_string(),
            "routes": used_by(name),
        })
    }));
    axum::Json(serde_json::json!({ "plugins": list })).into_response()
}

async fn routes(State(s): State<AdminState>) -> Response {
    let snap = s.snapshots.load();
    let list: Vec<_> = snap
        .config
        .routes
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "host": r.host,
                "path": r.path,
                "methods": r.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                "strip_prefix": r.strip_prefix,
                "upstream": snap.config.upstreams[r.upstream].name,
                "plugins": r.plugins.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "routes": list })).into_response()
}

async fn reload(State(s): State<AdminState>) -> Response {
    let Some(reloader) = s.reloader.clone() else {
        return error(
            StatusCode::CONFLICT,
            "reload_unavailable",
            "this process has no config file to reload",
        );
    };
    match tokio::task::spawn_blocking(move || reloader.reload("admin")).await {
        Ok(Ok(generation)) => {
            axum::Json(serde_json::json!({ "result": "ok", "generation": generation }))
                .into_response()
        }
        Ok(Err(errors)) => {
            let list: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(serde_json::json!({
                    "error": { "code": "invalid_config", "message": "the new config was refused; the old one keeps serving", "details": list, "request_id": null }
                })),
            )
                .into_response()
        }
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "reload task failed",
        ),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint")
}

async fn require_token(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let Some(read_write) = s.tokens.read_write else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let access = presented.map_or(Access::Denied, |token| {
        let digest = sha256(token.as_bytes());
        // Both comparisons always run: timing says nothing about which matched.
        let rw = constant_time_eq(&digest, &read_write);
        let ro = s
            .tokens
            .read_only
            .is_some_and(|ro| constant_time_eq(&digest, &ro));
        match (rw, ro) {
            (true, _) => Access::ReadWrite,
            (false, true) => Access::ReadOnly,
            _ => Access::Denied,
        }
    });
    let read = matches!(*req.method(), http::Method::GET | http::Method::HEAD);
    match access {
        Access::ReadWrite => next.run(req).await,
        Access::ReadOnly if read => next.run(req).await,
        Access::ReadOnly => error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the read-only admin token cannot change anything",
        ),
        Access::Denied => {
            let mut resp = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid admin bearer token is required",
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"aistack-admin\""),
            );
            resp
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` value. The scheme's name is
/// case-insensitive (RFC 9110, section 11.1): `bearer TOKEN` is the same credential.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": { "code": code, "message": message, "request_id": null } })),
    )
        .into_response()
}

/// SHA-256 of a secret, the form in which tokens are kept in memory.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn a_configured_digest_stands_for_its_token() {
        use super::{sha256, token_digest};
        let plain = "a-read-write-admin-token";
        let hex_digest = hex::encode(sha256(plain.as_bytes()));
        assert_eq!(token_digest(plain), Some(sha256(plain.as_bytes())));
        assert_eq!(
            token_digest(&format!("sha256:{hex_digest}")),
            Some(sha256(plain.as_bytes()))
        );
        assert_eq!(
            token_digest(&format!("sha256:{}", hex_digest.to_uppercase())),
            Some(sha256(plain.as_bytes()))
        );
        assert_eq!(token_digest("sha256:abc"), None, "too short");
        assert_eq!(token_digest(&format!("sha256:{}", "g".repeat(64))), None);
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_kept_whole() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc"), Some("abc"));
        assert_eq!(bearer_token("Bearer a b"), Some("a b"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token("abc"), None);
    }
}

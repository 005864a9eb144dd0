//! The admin API (default 127.0.0.1:9080): `/metrics` in Prometheus text, and
//! status of the running gateway. With `admin.token` set, every endpoint
//! requires `Authorization: Bearer TOKEN` (compared in constant time).

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
    /// SHA-256 of the admin token, if one is configured.
    pub token_hash: Option<[u8; 32]>,
}

/// The admin app.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/routes", get(routes))
        .route("/config/reload", post(reload))
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
    let Some(expected) = s.token_hash else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if constant_time_eq(&sha256(token.as_bytes()), &expected) => {
            next.run(req).await
        }
        _ => {
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

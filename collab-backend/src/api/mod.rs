//! The HTTP surface: every route lives under `/api/v1`, every failure is an
//! [`ApiError`](crate::ApiError) rendered by [`boundary`].

pub(crate) mod boundary;
mod extract;
mod health;
mod organizations;

use axum::routing::get;
use axum::{Router, middleware};

use crate::Db;
use crate::error::ApiError;

/// Shared by all handlers. Grows with the app (config, notifier, …).
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub db: Db,
}

/// The whole application as a [`Router`], ready to serve or to drive in memory.
///
/// Routes: `GET /api/v1/healthz`; `POST`/`GET /api/v1/organizations`;
/// `GET /api/v1/organizations/{id}`. Unknown paths answer 404 and known paths with the
/// wrong method 405, both as JSON errors. Request bodies are limited to axum's default
/// (2 MiB; larger → 413).
pub fn router(db: Db) -> Router {
    let v1 = Router::new()
        .route("/healthz", get(health::healthz))
        .merge(organizations::routes());
    Router::new()
        .nest("/api/v1", v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(boundary::error_boundary))
        .with_state(AppState { db })
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

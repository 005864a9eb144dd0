//! The HTTP surface: every route lives under `/api/v1`, every failure is an
//! [`ApiError`](crate::ApiError) rendered by [`boundary`]. Routes are registered through
//! [`common::Api`], which records each one's OpenAPI description beside it, so
//! `/api/v1/openapi.json` covers every route by construction.

mod auth;
pub(crate) mod boundary;
mod comments;
mod common;
mod email;
mod extract;
mod files;
mod health;
mod notifications;
mod openapi;
mod organizations;
mod orgtree;
mod roles;
mod schemas;
mod tasks;
mod workload;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::error::ApiError;
use crate::notifications::hub::Hub;
use crate::{BackendOptions, Db};

/// Shared by all handlers.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub db: Db,
    pub options: Arc<BackendOptions>,
    /// Wakes the notification dispatcher; carries signals to WebSocket sessions.
    pub hub: Hub,
}

/// The whole application for `db` with [`BackendOptions::from_env`].
pub fn router(db: Db) -> Router {
    let options = BackendOptions::from_env(&db);
    router_with(db, options)
}

/// The whole application as a [`Router`], ready to serve or to drive in memory.
///
/// Every route is listed in the OpenAPI document it serves at `/api/v1/openapi.json`.
/// Unknown paths answer 404 and known paths with the wrong method 405, both as JSON
/// errors. JSON request bodies are limited to axum's default (2 MiB; larger → 413).
pub fn router_with(db: Db, options: BackendOptions) -> Router {
    build(db, options, Hub::new())
}

/// [`router_with`] sharing `hub` with the background tasks of [`crate::serve_with`].
pub(crate) fn build(db: Db, options: BackendOptions, hub: Hub) -> Router {
    let api = all_routes();
    let document = Arc::new(openapi::document(&api.docs));
    let v1 = api.router.route(
        "/openapi.json",
        axum::routing::get(move || {
            let document = Arc::clone(&document);
            async move { axum::Json(document.as_ref().clone()) }
        }),
    );
    Router::new()
        .nest("/api/v1", v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(boundary::error_boundary))
        .layer(middleware::from_fn_with_state(
            hub.clone(),
            wake_after_writes,
        ))
        .with_state(AppState {
            db,
            options: Arc::new(options),
            hub,
        })
}

/// Wakes the notification dispatcher after every successful write: any write may have
/// queued events, and a wasted pass is one cheap query.
async fn wake_after_writes(State(hub): State<Hub>, request: Request, next: Next) -> Response {
    let write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let response = next.run(request).await;
    if write && response.status().is_success() {
        hub.wake();
    }
    response
}

fn all_routes() -> common::Api {
    common::Api::new()
        .merge(health::routes())
        .merge(organizations::routes())
        .merge(auth::routes())
        .merge(orgtree::routes())
        .merge(roles::routes())
        .merge(tasks::routes())
        .merge(workload::routes())
        .merge(comments::routes())
        .merge(notifications::routes())
        .merge(ws::routes())
        .merge(email::routes())
        .merge(files::routes())
}

/// The documented routes as `(path, methods)`, for tests that check the document
/// against the router.
pub fn documented_routes() -> Vec<(String, Vec<String>)> {
    let mut routes: Vec<(String, Vec<String>)> = all_routes()
        .docs
        .into_iter()
        .map(|(path, ops)| {
            (
                format!("/api/v1{path}"),
                ops.iter().map(|o| o.method.to_string()).collect(),
            )
        })
        .collect();
    routes.push(("/api/v1/openapi.json".to_owned(), vec!["GET".to_owned()]));
    routes
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

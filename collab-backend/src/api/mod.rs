//! The HTTP surface: every route lives under `/api/v1`, every failure is an
//! [`ApiError`](crate::ApiError) rendered by [`boundary`]. Routes are registered through
//! [`common::Api`], which records each one's OpenAPI description beside it, so
//! `/api/v1/openapi.json` covers every route by construction.

mod auth;
pub(crate) mod boundary;
mod comments;
mod common;
mod extract;
mod health;
mod openapi;
mod organizations;
mod orgtree;
mod roles;
mod schemas;
mod tasks;
mod workload;

use std::sync::Arc;

use axum::{Router, middleware};

use crate::error::ApiError;
use crate::{BackendOptions, Db};

/// Shared by all handlers.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub db: Db,
    pub options: Arc<BackendOptions>,
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
        .with_state(AppState {
            db,
            options: Arc::new(options),
        })
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

//! The AI Stack collaboration backend: the REST API behind the gateway's `/api/v1/`,
//! on axum and sqlx, over an embedded SQLite file (the default) or PostgreSQL, with the
//! same code and SQL for both.
//!
//! Start with [`Db::connect`] (opens the pool, runs the migrations), then [`serve`] it,
//! or build the [`router`] and drive it in memory as the tests do. Inside:
//!
//! - `api`: routes and handlers, one module per resource; the error boundary
//!   middleware that adds the request id to error bodies and logs failures once.
//! - [`error`]: [`ApiError`], the one error type handlers return, and how it renders
//!   (`{"error":{"code","message","request_id"}}`).
//! - [`domain`]: the model and its validation rules, free of HTTP and SQL.
//! - `store`: the SQL, one module per table family.
//! - [`db`]: the pool, dialect, connection settings and migrations
//!   (`migrations/sqlite`, `migrations/postgres`).
//! - `timestamp`: the one text form of times, stored and served.

#![forbid(unsafe_code)]

mod api;
pub mod db;
pub mod domain;
pub mod error;
mod store;
mod timestamp;

use std::future::Future;

use tokio::net::TcpListener;

pub use api::router;
pub use db::{Db, DbError, Dialect};
pub use error::ApiError;

/// Serves the [`router`] for `db` on an already-bound `listener` until `shutdown`
/// resolves, then stops accepting and waits for in-flight requests to finish.
///
/// Does not close `db`; the caller owns it (call [`Db::close`] afterwards).
///
/// # Errors
/// An I/O error from the listener.
pub async fn serve(
    listener: TcpListener,
    db: Db,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(db))
        .with_graceful_shutdown(shutdown)
        .await
}

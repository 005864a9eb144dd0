//! The AI Stack collaboration backend: the REST API behind the gateway's `/api/v1/`,
//! on axum and sqlx, over an embedded SQLite file (the default) or PostgreSQL, with the
//! same code and SQL for both.
//!
//! Start with [`Db::connect`] (opens the pool, runs the migrations), then [`serve`] it
//! (options from the environment) or [`serve_with`] explicit [`BackendOptions`], or build
//! the [`router_with`] and serve it yourself (as the tests do, on a loopback port). The
//! OpenAPI 3.1 document of every route is served at `/api/v1/openapi.json`.
//!
//! **Identity** (see [`auth`]): sign-in checks an argon2id password hash and issues an
//! opaque session token (32 random bytes, `aist_s_…`, 12 h); users also create personal
//! API tokens (`aist_p_…`, optional expiry). Both are checked by this backend — only their
//! SHA-256 is stored — rather than being JWTs for the gateway's jwt-auth filter: they can
//! be revoked at once (sign-out, token deletion) and need no key distribution. When the
//! backend sits behind the gateway ([`BackendOptions::trust_gateway_headers`]), the
//! gateway's `X-Consumer-Id` (a user id) is trusted too; never otherwise.
//!
//! **Permissions** (see [`authz`]): roles (built-in owner ⊃ admin ⊃ member ⊃ guest, and
//! custom roles extending them) granted on the organization, a department, a team or a
//! workspace, inherited downwards, additive only; [`authz::authorize`] is the one check,
//! [`authz::visible_workspace_ids`] the one list filter; what a caller cannot see is 404.
//!
//! **Tasks and comments** (`api::tasks`, `api::comments`; comments are on tasks or
//! files, read by whoever reads their task or file): tasks carry a `revision`
//! served as a strong `ETag`; `PATCH` needs `If-Match` (428 without it, 412 when stale,
//! `*` to overwrite whatever is current), `DELETE` checks it when sent. Comment threads
//! are one level deep; deletes are soft (tombstones keep threads); reactions are unique
//! per user, emoji and comment by a database constraint.
//!
//! **Files** (`api::files`, `storage`): uploads stream to objects named by generated
//! ids under [`BackendOptions::storage_root`], made durable before their metadata row;
//! every upload to a file is a new version with its SHA-256, verified on each download
//! (`Range` supported); shares add per-file access on top of the workspace's grants.
//!
//! **Notifications** (see [`outbox`]): mentions (`@user`, `@team-slug`, and `@all` with
//! `mention.all` for at most 50 readers), assignments, status changes and comments on a
//! user's task, and files shared with a user (`file.shared`), write rows into the
//! `events` outbox table in the same transaction as the change; a periodic scan queues
//! `task.due_soon` for open tasks whose due date is near. Only people who can read
//! the workspace (for file events: the file, shares included) are ever notified; [`outbox`]
//! documents the table's columns and payloads for the notifications service.
//!
//! **Email** (see [`email`]): notifications also become emails (SMTP through lettre,
//! minijinja templates in English and Simplified Chinese, hourly/daily digests) through
//! the `email_outbox` table, each with a signed one-click unsubscribe link, when
//! [`BackendOptions::email`] is set.
//!
//! Inside:
//!
//! - `api`: routes and handlers, one module per resource, each route registered with its
//!   OpenAPI description; the error boundary middleware that adds the request id to error
//!   bodies and logs failures once.
//! - [`auth`], [`authz`]: who is calling, and what they may do.
//! - [`error`]: [`ApiError`], the one error type handlers return, and how it renders
//!   (`{"error":{"code","message","request_id"}}`).
//! - [`domain`]: the model and its validation rules, free of HTTP and SQL.
//! - `notify`: mention resolution and which events a write queues.
//! - `store`: the SQL, one module per table family.
//! - `storage`: file contents on the local filesystem.
//! - [`db`]: the pool, dialect, connection settings and migrations
//!   (`migrations/sqlite`, `migrations/postgres`).
//! - `timestamp`: the one text form of times, stored and served.

#![forbid(unsafe_code)]

mod api;
pub mod auth;
pub mod authz;
pub mod db;
pub mod domain;
pub mod email;
pub mod error;
pub mod notifications;
mod notify;
mod options;
pub mod outbox;
mod storage;
mod store;
mod timestamp;

use std::future::Future;

use tokio::net::TcpListener;

pub use api::{documented_routes, router, router_with};
pub use db::{Db, DbError, Dialect};
pub use error::ApiError;
pub use options::{BackendOptions, DEFAULT_DUE_SOON_SCAN, DEFAULT_DUE_SOON_WINDOW};

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
    let options = BackendOptions::from_env(&db);
    serve_with(listener, db, options, shutdown).await
}

/// [`serve`] with explicit [`BackendOptions`] instead of the environment's, on any axum
/// listener (the gateway's stops accepting when it hands its sockets to a successor).
///
/// # Errors
/// An I/O error from the listener.
pub async fn serve_with<L>(
    listener: L,
    db: Db,
    options: BackendOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    storage::sweep_partial(&options.storage_root).await;
    let hub = notifications::hub::Hub::new();
    let sweep = options.dispatch_sweep;
    let mailer = match options.email.clone().map(email::Mailer::new).transpose() {
        Ok(mailer) => mailer.map(std::sync::Arc::new),
        Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)),
    };
    let mut background = vec![tokio::spawn(notifications::dispatch::run(
        db.clone(),
        hub.clone(),
        sweep,
        mailer.clone(),
    ))];
    background.push(tokio::spawn(notifications::due::run(
        db.clone(),
        hub.clone(),
        options.due_soon_scan,
        options.due_soon_window,
    )));
    if let Some(mailer) = mailer {
        background.push(tokio::spawn(email::run(db.clone(), mailer)));
    }
    if db.dialect() == Dialect::Postgres {
        background.push(tokio::spawn(notifications::hub::listen(
            db.clone(),
            hub.clone(),
        )));
    }
    let served = axum::serve(listener, api::build(db, options, hub.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    // Upgraded WebSockets outlive graceful shutdown: close them, then stop the tasks.
    hub.close();
    for task in background {
        task.abort();
    }
    served
}

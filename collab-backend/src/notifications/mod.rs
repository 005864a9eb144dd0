//! Notifications: the `events` outbox turned into per-user notifications, served by the
//! notification center API and pushed over WebSocket.
//!
//! - **Dispatch** (`dispatch`): a background task started by [`serve`](crate::serve) /
//!   [`serve_with`](crate::serve_with) reads pending events in id order and makes one
//!   `notifications` row per event — unless the recipient turned that kind off for the
//!   in-app channel, muted the workspace, or can no longer read it — marking the event
//!   delivered in the same transaction. It runs after every successful write request
//!   (an in-process wake) and every [`BackendOptions::dispatch_sweep`](crate::BackendOptions)
//!   (events from other nodes, retries). Idempotent: `notifications.event_id` is unique.
//! - **Push** (`hub`, `api::ws`): `GET /api/v1/ws` upgrades to a WebSocket that receives
//!   `{"type":"notification","notification":{…}}` for each new notification and
//!   `{"type":"unread_count","count":n}` whenever the count changes; `?after=<id>`
//!   replays what was created after the last id a client saw. With PostgreSQL, signals
//!   cross nodes through `LISTEN`/`NOTIFY`.
//! - **Due dates** (`due`): a scan every [`BackendOptions::due_soon_scan`](crate::BackendOptions)
//!   queues one `task.due_soon` event per open task whose due date ends within
//!   [`BackendOptions::due_soon_window`](crate::BackendOptions), once per task and due date.
//! - **Preferences**: per kind and channel (`in_app`, `email`), per-workspace mutes,
//!   email mode (`immediate`, `hourly`, `daily`, `off`) and locale (`en`, `zh-CN`).

pub(crate) mod dispatch;
pub(crate) mod due;
pub(crate) mod hub;
pub(crate) mod session;

pub use hub::CHANNEL;

use crate::Db;
use crate::store::StoreError;

/// The notification kinds users can set preferences for: the [`outbox`](crate::outbox)
/// kinds.
pub const KINDS: [&str; 6] = [
    "mention",
    "task.assigned",
    "task.status_changed",
    "task.commented",
    "file.shared",
    "task.due_soon",
];

/// The delivery channels.
pub const CHANNELS: [&str; 2] = ["in_app", "email"];

/// Email modes: one email per notification, an hourly or daily digest, or none.
pub const EMAIL_MODES: [&str; 4] = ["immediate", "hourly", "daily", "off"];

/// Supported locales of emails.
pub const LOCALES: [&str; 2] = ["en", "zh-CN"];

/// Dispatches every pending event now, as the background task does, and returns how
/// many notifications it created. For tools and tests that drive the router in memory
/// (no background task runs there); WebSocket sessions of a served router are not told.
///
/// # Errors
/// A database failure reading the outbox (a failure on one event only counts an
/// attempt on it).
pub async fn dispatch_pending(db: &Db) -> Result<usize, StoreError> {
    dispatch::pass(db, None, None).await
}

/// Scans for due dates now, as the background task does every
/// [`BackendOptions::due_soon_scan`](crate::BackendOptions), and returns how many tasks it
/// reminded (queued `task.due_soon` events for; [`dispatch_pending`] turns them into
/// notifications). A task already reminded of its due date, by this or any node, is not
/// reminded again.
///
/// # Errors
/// A database failure (tasks reminded before it stay reminded).
pub async fn scan_due_dates(db: &Db, window: std::time::Duration) -> Result<usize, StoreError> {
    due::scan(db, chrono::Utc::now(), window).await
}

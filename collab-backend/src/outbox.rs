//! The notification outbox: the `events` table, which the notifications service
//! consumes.
//!
//! Every change that should notify someone writes its events **in the same
//! transaction** as the change itself, so an acknowledged write never loses its
//! notifications and a rolled-back one never sends any. One row per event per
//! recipient:
//!
//! | column          | meaning                                                            |
//! |-----------------|--------------------------------------------------------------------|
//! | `id`            | UUID v7 text: id order is creation order (consume in id order)     |
//! | `org_id`        | the organization                                                   |
//! | `workspace_id`  | the workspace the resource lives in                                |
//! | `kind`          | one of [`kind`]                                                    |
//! | `recipient_id`  | the user to notify; always someone who could read the resource     |
//! | `actor_id`      | who caused it (null for system events)                             |
//! | `resource_type` | `task`, `comment` or `file`: what the notification links to        |
//! | `resource_id`   | its id                                                             |
//! | `payload`       | JSON text, per kind (below)                                        |
//! | `created_at`    | RFC 3339, microseconds                                             |
//! | `attempts`      | delivery attempts so far (0 when queued)                           |
//! | `delivered_at`  | null until delivered; set once by the consumer ([`mark_delivered`]) |
//!
//! Payloads (every one also carries `task_id`, the task the resource belongs to, or for
//! file events `file_id` instead, the file it belongs to):
//! - `mention`: `{"task_id"|"file_id", "source_kind": "task"|"comment", "via":
//!   "user"|"team"|"all"}`; the resource is the task or comment (on a task or a file)
//!   whose text mentions the recipient;
//! - `task.assigned`: `{"task_id", "title"}`, resource the task;
//! - `task.status_changed`: `{"task_id", "title", "from", "to"}`, resource the task, to its
//!   creator and assignees;
//! - `task.commented`: `{"task_id", "comment_id"}`, resource the comment, to the task's
//!   creator and assignees (those mentioned in the comment get `mention` instead);
//! - `file.shared`: `{"file_id", "name", "access": "read"|"write"}`, resource the file, to
//!   the user it was shared with (a share with a workspace queues nothing). The recipient
//!   may not read the file's workspace: for file events "could read the resource" means
//!   the file, shares included.
//! - `task.due_soon`: `{"task_id", "title", "due_at"}` (`due_at` the due date,
//!   `YYYY-MM-DD`), resource the task, to its assignees (its creator when nobody is
//!   assigned), once per task per due date; no actor: a periodic scan queues it.
//!
//! The actor is never notified of their own action (a due-date reminder has none). Payloads never carry comment
//! bodies or task descriptions: the consumer reads the resource (as the recipient) when
//! it renders a message, so a later edit or deletion is honoured.

use serde::Serialize;
use uuid::Uuid;

use crate::Db;
use crate::store::{self, StoreError};

/// The event kinds.
pub mod kind {
    /// The recipient was `@mentioned` (directly, through a team, or `@all`).
    pub const MENTION: &str = "mention";
    /// The recipient was added to a task's assignees.
    pub const TASK_ASSIGNED: &str = "task.assigned";
    /// A task the recipient created or is assigned to changed status.
    pub const TASK_STATUS_CHANGED: &str = "task.status_changed";
    /// Someone commented on a task the recipient created or is assigned to.
    pub const TASK_COMMENTED: &str = "task.commented";
    /// A file was shared with the recipient (a user share).
    pub const FILE_SHARED: &str = "file.shared";
    /// A task the recipient is assigned to (or created, when nobody is assigned) is due
    /// soon (queued by a periodic scan, see [`crate::notifications`]).
    pub const TASK_DUE_SOON: &str = "task.due_soon";
}

/// One queued event, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// UUID v7.
    pub id: Uuid,
    /// The organization.
    pub org_id: Uuid,
    /// The workspace of the resource.
    pub workspace_id: Uuid,
    /// One of [`kind`].
    pub kind: String,
    /// Who to notify.
    pub recipient_id: Uuid,
    /// Who caused it.
    pub actor_id: Option<Uuid>,
    /// `task`, `comment` or `file`.
    pub resource_type: String,
    /// The resource's id.
    pub resource_id: Uuid,
    /// Kind-specific details.
    pub payload: serde_json::Value,
    /// RFC 3339.
    pub created_at: String,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// When it was delivered; `None` while pending.
    pub delivered_at: Option<String>,
}

/// An event to queue (see [`store::events::enqueue`]).
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    pub org_id: Uuid,
    pub workspace_id: Uuid,
    pub kind: &'static str,
    pub recipient_id: Uuid,
    pub actor_id: Option<Uuid>,
    pub resource_type: &'static str,
    pub resource_id: Uuid,
    pub payload: serde_json::Value,
}

/// Undelivered events with ids after `after`, oldest first, at most `limit`.
///
/// # Errors
/// A database failure.
pub async fn pending(db: &Db, after: Option<Uuid>, limit: u32) -> Result<Vec<Event>, StoreError> {
    store::events::pending(db, after, limit).await
}

/// Every event queued for `recipient_id`, delivered or not, oldest first.
///
/// # Errors
/// A database failure.
pub async fn for_recipient(db: &Db, recipient_id: Uuid) -> Result<Vec<Event>, StoreError> {
    store::events::of_recipient(db, recipient_id).await
}

/// Marks event `id` delivered (counting the attempt); idempotent. False when there is no
/// such event.
///
/// # Errors
/// A database failure.
pub async fn mark_delivered(db: &Db, id: Uuid) -> Result<bool, StoreError> {
    store::events::mark_delivered(db, id).await
}

/// Counts a failed delivery attempt of event `id` (it stays pending).
///
/// # Errors
/// A database failure.
pub async fn record_failed_attempt(db: &Db, id: Uuid) -> Result<(), StoreError> {
    store::events::record_attempt(db, id).await
}

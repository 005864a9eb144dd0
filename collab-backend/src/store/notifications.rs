//! The `notifications` table: what a user sees in the notification center.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::tasks::placeholders;
use super::{Page, StoreError, opt_uuid_at, paginate, uuid_at};
use crate::Db;
use crate::outbox::Event;
use crate::timestamp;

/// One notification, as served.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Notification {
    /// UUID v7: id order is creation order (the WebSocket's `after` and the list cursor).
    pub id: Uuid,
    /// The event kind: `mention`, `task.assigned`, `task.status_changed`,
    /// `task.commented`.
    pub kind: String,
    /// The workspace of the resource.
    pub workspace_id: Uuid,
    /// Who caused it; null for system events.
    pub actor_id: Option<Uuid>,
    /// What it is about: `task` or `comment`.
    pub resource_type: String,
    /// The resource's id.
    pub resource_id: Uuid,
    /// The API path of the resource (`/api/v1/tasks/{id}` or `/api/v1/comments/{id}`).
    pub link: String,
    /// Kind-specific details, as in the `events` outbox (always has `task_id`).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; null while unread.
    pub read_at: Option<String>,
}

/// List filters.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only unread ones.
    pub unread_only: bool,
    /// Only this kind.
    pub kind: Option<String>,
}

const COLUMNS: &str = "id, kind, workspace_id, actor_id, resource_type, resource_id, payload, \
                       created_at, read_at";

/// Creates the notification of `event` for its recipient inside the caller's
/// transaction; `None` when that event already has one (processed before).
pub async fn insert_for_event(
    tx: &mut sqlx::AnyConnection,
    event: &Event,
) -> Result<Option<Uuid>, StoreError> {
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO notifications (id, event_id, user_id, org_id, workspace_id, kind, \
         actor_id, resource_type, resource_id, payload, created_at, read_at, deleted_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, NULL) \
         ON CONFLICT DO NOTHING",
    )
    .bind(id.to_string())
    .bind(event.id.to_string())
    .bind(event.recipient_id.to_string())
    .bind(event.org_id.to_string())
    .bind(event.workspace_id.to_string())
    .bind(&event.kind)
    .bind(event.actor_id.map(|a| a.to_string()))
    .bind(&event.resource_type)
    .bind(event.resource_id.to_string())
    .bind(event.payload.to_string())
    .bind(timestamp::format(timestamp::now()))
    .execute(tx)
    .await?;
    Ok((inserted.rows_affected() > 0).then_some(id))
}

/// `user_id`'s notifications, newest first, before cursor `before`.
pub async fn list(
    db: &Db,
    user_id: Uuid,
    filter: &Filter,
    limit: u32,
    before: Option<Uuid>,
) -> Result<Page<Notification>, StoreError> {
    let mut sql =
        format!("SELECT {COLUMNS} FROM notifications WHERE user_id = $1 AND deleted_at IS NULL");
    let mut binds = vec![user_id.to_string()];
    if let Some(before) = before {
        binds.push(before.to_string());
        sql.push_str(&format!(" AND id < ${}", binds.len()));
    }
    if filter.unread_only {
        sql.push_str(" AND read_at IS NULL");
    }
    if let Some(kind) = &filter.kind {
        binds.push(kind.clone());
        sql.push_str(&format!(" AND kind = ${}", binds.len()));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", binds.len() + 1));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for bind in binds {
        query = query.bind(bind);
    }
    let rows = query
        .bind(i64::from(limit) + 1)
        .fetch_all(db.pool())
        .await?;
    let items = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    Ok(paginate(items, limit, |n| n.id))
}

/// `user_id`'s notifications created after `after`, oldest first, at most `limit`
/// (what a WebSocket pushes or replays).
pub async fn after(
    db: &Db,
    user_id: Uuid,
    after: Uuid,
    limit: u32,
) -> Result<Vec<Notification>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM notifications WHERE user_id = $1 AND id > $2 \
         AND deleted_at IS NULL ORDER BY id LIMIT $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user_id.to_string())
        .bind(after.to_string())
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(decode).collect()
}

/// The newest notification id of `user_id` (deleted ones included), if any.
pub async fn latest_id(db: &Db, user_id: Uuid) -> Result<Option<Uuid>, StoreError> {
    let row = sqlx::query("SELECT MAX(id) AS id FROM notifications WHERE user_id = $1")
        .bind(user_id.to_string())
        .fetch_one(db.pool())
        .await?;
    opt_uuid_at(&row, "id")
}

/// Notification `id` of `user_id`, unless deleted.
pub async fn get(db: &Db, user_id: Uuid, id: Uuid) -> Result<Option<Notification>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM notifications WHERE id = $1 AND user_id = $2 \
         AND deleted_at IS NULL"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .bind(user_id.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(decode).transpose()
}

/// How many of `user_id`'s notifications are unread.
pub async fn unread_count(db: &Db, user_id: Uuid) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM notifications WHERE user_id = $1 AND read_at IS NULL \
         AND deleted_at IS NULL",
    )
    .bind(user_id.to_string())
    .fetch_one(db.pool())
    .await?;
    Ok(row.try_get("n")?)
}

/// Marks `ids` (all of `user_id`'s when `None`) read; returns how many were unread.
/// Ids of other users' notifications are ignored.
pub async fn mark_read(db: &Db, user_id: Uuid, ids: Option<&[Uuid]>) -> Result<u64, StoreError> {
    let mut sql = "UPDATE notifications SET read_at = $1 WHERE user_id = $2 \
                   AND read_at IS NULL AND deleted_at IS NULL"
        .to_owned();
    if let Some(ids) = ids {
        if ids.is_empty() {
            return Ok(0);
        }
        sql.push_str(&format!(" AND id IN ({})", placeholders(3, ids.len())));
    }
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(timestamp::format(timestamp::now()))
        .bind(user_id.to_string());
    for id in ids.unwrap_or_default() {
        query = query.bind(id.to_string());
    }
    Ok(query.execute(db.pool()).await?.rows_affected())
}

/// Deletes (softly) notification `id` of `user_id`; false when there is none.
pub async fn delete(db: &Db, user_id: Uuid, id: Uuid) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE notifications SET deleted_at = $1 WHERE id = $2 AND user_id = $3 \
         AND deleted_at IS NULL",
    )
    .bind(timestamp::format(timestamp::now()))
    .bind(id.to_string())
    .bind(user_id.to_string())
    .execute(db.pool())
    .await?;
    Ok(result.rows_affected() > 0)
}

/// The API path of a resource.
pub fn link(resource_type: &str, resource_id: Uuid) -> String {
    match resource_type {
        "comment" => format!("/api/v1/comments/{resource_id}"),
        "file" => format!("/api/v1/files/{resource_id}"),
        _ => format!("/api/v1/tasks/{resource_id}"),
    }
}

fn decode(row: &AnyRow) -> Result<Notification, StoreError> {
    let payload: String = row.try_get("payload")?;
    let resource_type: String = row.try_get("resource_type")?;
    let resource_id = uuid_at(row, "resource_id")?;
    Ok(Notification {
        id: uuid_at(row, "id")?,
        kind: row.try_get("kind")?,
        workspace_id: uuid_at(row, "workspace_id")?,
        actor_id: opt_uuid_at(row, "actor_id")?,
        link: link(&resource_type, resource_id),
        resource_type,
        resource_id,
        payload: serde_json::from_str(&payload)
            .map_err(|e| StoreError::corrupt("notification payload", e))?,
        created_at: row.try_get("created_at")?,
        read_at: row.try_get("read_at")?,
    })
}

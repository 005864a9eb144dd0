//! The `notifications` table: what a user sees in the notification center.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::tasks::placeholders;
use super::{IN_CHUNK, Page, StoreError, opt_uuid_at, paginate, uuid_at};
use crate::outbox::Event;
use crate::timestamp;
use crate::{Db, Dialect};

/// One notification, as served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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

/// Creates the notifications of `events` for their recipients inside the caller's
/// transaction, a few hundred rows per statement; returns one entry per event, in order:
/// `None` for an event that already has one (processed before).
///
/// Each id is above every id its recipient's committed notifications have, and stays so
/// until the transaction ends, so per user id order is commit order: what a session
/// pushes in id order, or replays after the last id a client saw, never skips a
/// notification committed late. One node's dispatcher writes one transaction at a time
/// (SQLite has one node); on PostgreSQL per-user transaction locks (taken first, for
/// every recipient, in key order: two nodes' dispatchers cannot deadlock on them) order
/// the nodes' dispatchers, and an id goes past the newest one even when this node's clock
/// is behind.
pub async fn insert_for_events(
    tx: &mut sqlx::AnyConnection,
    dialect: Dialect,
    events: &[&Event],
) -> Result<Vec<Option<Notification>>, StoreError> {
    let users: Vec<Uuid> = events.iter().map(|event| event.recipient_id).collect();
    let mut newest = HashMap::new();
    if dialect == Dialect::Postgres && !users.is_empty() {
        lock_users(tx, users.iter().copied()).await?;
        newest = newest_ids(tx, &users).await?;
    }
    let created_at = timestamp::format(timestamp::now());
    let made: Vec<Notification> = events
        .iter()
        .map(|event| {
            let id = next_id(Uuid::now_v7(), newest.get(&event.recipient_id).copied());
            newest.insert(event.recipient_id, id);
            Notification {
                id,
                kind: event.kind.clone(),
                workspace_id: event.workspace_id,
                actor_id: event.actor_id,
                resource_type: event.resource_type.clone(),
                resource_id: event.resource_id,
                link: link(&event.resource_type, event.resource_id),
                payload: event.payload.clone(),
                created_at: created_at.clone(),
                read_at: None,
            }
        })
        .collect();
    let mut inserted = HashSet::new();
    let rows = IN_CHUNK / 4;
    for (events, made) in events.chunks(rows).zip(made.chunks(rows)) {
        for row in insert_rows(events, made).fetch_all(&mut *tx).await? {
            inserted.insert(uuid_at(&row, "id")?);
        }
    }
    Ok(made
        .into_iter()
        .map(|n| inserted.contains(&n.id).then_some(n))
        .collect())
}

/// One multi-row `INSERT … RETURNING id` of `made`, the notifications of `events`.
fn insert_rows<'q>(
    events: &[&Event],
    made: &[Notification],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    const BINDS: usize = 11;
    let values: Vec<String> = (0..events.len())
        .map(|i| {
            let params: Vec<String> = (1..=BINDS).map(|k| format!("${}", i * BINDS + k)).collect();
            format!("({}, NULL, NULL)", params.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO notifications (id, event_id, user_id, org_id, workspace_id, kind, \
         actor_id, resource_type, resource_id, payload, created_at, read_at, deleted_at) \
         VALUES {} ON CONFLICT DO NOTHING RETURNING id",
        values.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (event, n) in events.iter().zip(made) {
        query = query
            .bind(n.id.to_string())
            .bind(event.id.to_string())
            .bind(event.recipient_id.to_string())
            .bind(event.org_id.to_string())
            .bind(event.workspace_id.to_string())
            .bind(event.kind.clone())
            .bind(event.actor_id.map(|a| a.to_string()))
            .bind(event.resource_type.clone())
            .bind(event.resource_id.to_string())
            .bind(event.payload.to_string())
            .bind(n.created_at.clone());
    }
    query
}

/// The newest notification id of each of `users` that has one, inside the caller's
/// transaction.
async fn newest_ids(
    tx: &mut sqlx::AnyConnection,
    users: &[Uuid],
) -> Result<HashMap<Uuid, Uuid>, StoreError> {
    let mut unique = users.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let mut newest = HashMap::new();
    for chunk in unique.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT user_id, MAX(id) AS id FROM notifications WHERE user_id IN ({}) \
             GROUP BY user_id",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for user in chunk {
            query = query.bind(user.to_string());
        }
        for row in query.fetch_all(&mut *tx).await? {
            newest.insert(uuid_at(&row, "user_id")?, uuid_at(&row, "id")?);
        }
    }
    Ok(newest)
}

/// Takes the per-user locks of [`insert_for_events`] for every one of `users` inside the
/// caller's PostgreSQL transaction, in key order (one statement per few hundred keys: a
/// `VALUES` list is scanned in order), so that transactions writing several users'
/// notifications (two nodes' dispatchers) cannot deadlock on them.
async fn lock_users(
    tx: &mut sqlx::AnyConnection,
    users: impl IntoIterator<Item = Uuid>,
) -> Result<(), StoreError> {
    let mut keys: Vec<i32> = users.into_iter().map(lock_key).collect();
    keys.sort_unstable();
    keys.dedup();
    for chunk in keys.chunks(IN_CHUNK) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("(CAST(${} AS INTEGER))", i + 2))
            .collect();
        let sql = format!(
            "SELECT pg_advisory_xact_lock(CAST($1 AS INTEGER), k) FROM (VALUES {}) AS t(k)",
            values.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(LOCK_CLASS);
        for &key in chunk {
            query = query.bind(key);
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}

/// First key of the PostgreSQL advisory locks that order one user's notifications
/// (`pg_advisory_xact_lock(LOCK_CLASS, user key)`).
const LOCK_CLASS: i32 = 0x6e6f_7466; // "notf"

/// The second key: 32 bits of the user id (two users sharing one only wait on each
/// other).
fn lock_key(user_id: Uuid) -> i32 {
    let b = user_id.as_bytes();
    i32::from_be_bytes([b[12], b[13], b[14], b[15]])
}

/// `now`, or a UUID v7 one millisecond past `newest` when `now` is not above it.
fn next_id(now: Uuid, newest: Option<Uuid>) -> Uuid {
    match newest {
        Some(newest) if newest >= now => {
            let (secs, nanos) = newest.get_timestamp().map_or((0, 0), |t| t.to_unix());
            let next = std::time::Duration::new(secs, nanos) + std::time::Duration::from_millis(1);
            Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                next.as_secs(),
                next.subsec_nanos(),
            ))
        }
        _ => now,
    }
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

/// How many of `user_id`'s notifications with ids up to `last` are unread.
pub async fn unread_count_upto(db: &Db, user_id: Uuid, last: Uuid) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM notifications WHERE user_id = $1 AND id <= $2 \
         AND read_at IS NULL AND deleted_at IS NULL",
    )
    .bind(user_id.to_string())
    .bind(last.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_id_passes_the_newest() {
        let older = Uuid::now_v7();
        let now = Uuid::now_v7();
        assert_eq!(next_id(now, None), now);
        assert_eq!(next_id(now, Some(older)), now);
        // A newer id (another node's clock ahead) is passed, by a valid v7.
        let ahead = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            4_000_000_000,
            999_000_000,
        ));
        let next = next_id(now, Some(ahead));
        assert!(next > ahead);
        assert_eq!(next.get_version_num(), 7);
        assert!(next_id(ahead, Some(ahead)) > ahead);
    }
}

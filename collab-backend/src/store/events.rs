//! The `events` table: the notification outbox (shape documented in
//! [`crate::outbox`]), and the `mentions` table that remembers who a task's or comment's
//! mentions already notified.

use std::collections::BTreeSet;

use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{StoreError, opt_uuid_at, uuid_at};
use crate::Db;
use crate::outbox::{Event, NewEvent};
use crate::timestamp;

/// Queues `events` inside the caller's transaction, in order (their ids ascend), a few
/// hundred rows per statement.
pub async fn enqueue(tx: &mut sqlx::AnyConnection, events: &[NewEvent]) -> Result<(), StoreError> {
    /// Bind parameters per row.
    const BINDS: usize = 10;
    let created_at = timestamp::format(timestamp::now());
    for chunk in events.chunks(super::IN_CHUNK / 4) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = |k: usize| i * BINDS + k;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, 0, NULL)",
                    p(1),
                    p(2),
                    p(3),
                    p(4),
                    p(5),
                    p(6),
                    p(7),
                    p(8),
                    p(9),
                    p(10)
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO events (id, org_id, workspace_id, kind, recipient_id, actor_id, \
             resource_type, resource_id, payload, created_at, attempts, delivered_at) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for event in chunk {
            query = query
                .bind(Uuid::now_v7().to_string())
                .bind(event.org_id.to_string())
                .bind(event.workspace_id.to_string())
                .bind(event.kind)
                .bind(event.recipient_id.to_string())
                .bind(event.actor_id.map(|a| a.to_string()))
                .bind(event.resource_type)
                .bind(event.resource_id.to_string())
                .bind(event.payload.to_string())
                .bind(created_at.clone());
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}

/// Records in the `mentions` table that `users` were mentioned by `source` (`task` or
/// `comment`, and its id) inside the caller's transaction; returns those who were not
/// already (the ones to notify).
pub async fn record_mentions(
    tx: &mut sqlx::AnyConnection,
    source_kind: &str,
    source_id: Uuid,
    users: &[Uuid],
) -> Result<BTreeSet<Uuid>, StoreError> {
    let created_at = timestamp::format(timestamp::now());
    let mut new = BTreeSet::new();
    for chunk in users.chunks(super::IN_CHUNK) {
        // $1 to $3 are shared by every row.
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("($1, $2, ${}, $3)", i + 4))
            .collect();
        let sql = format!(
            "INSERT INTO mentions (source_kind, source_id, user_id, created_at) VALUES {} \
             ON CONFLICT DO NOTHING RETURNING user_id",
            rows.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(source_kind.to_owned())
            .bind(source_id.to_string())
            .bind(created_at.clone());
        for user in chunk {
            query = query.bind(user.to_string());
        }
        for row in query.fetch_all(&mut *tx).await? {
            new.insert(uuid_at(&row, "user_id")?);
        }
    }
    Ok(new)
}

const COLUMNS: &str = "id, org_id, workspace_id, kind, recipient_id, actor_id, resource_type, \
                       resource_id, payload, created_at, attempts, delivered_at";

/// Undelivered events after `after`, oldest first, at most `limit`.
pub async fn pending(db: &Db, after: Option<Uuid>, limit: u32) -> Result<Vec<Event>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE delivered_at IS NULL AND id > $1 ORDER BY id LIMIT $2"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(decode).collect()
}

/// Every event for `recipient_id`, oldest first.
pub async fn of_recipient(db: &Db, recipient_id: Uuid) -> Result<Vec<Event>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM events WHERE recipient_id = $1 ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(recipient_id.to_string())
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(decode).collect()
}

/// Marks `id` delivered (idempotent); false when there is no such event.
pub async fn mark_delivered(db: &Db, id: Uuid) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE events SET delivered_at = COALESCE(delivered_at, $1), attempts = attempts + 1 \
         WHERE id = $2",
    )
    .bind(timestamp::format(timestamp::now()))
    .bind(id.to_string())
    .execute(db.pool())
    .await?;
    Ok(result.rows_affected() > 0)
}

/// Marks `ids` delivered (idempotent), counting an attempt on each, inside the caller's
/// transaction.
pub async fn mark_all_delivered(
    tx: &mut sqlx::AnyConnection,
    ids: &[Uuid],
) -> Result<(), StoreError> {
    let delivered_at = timestamp::format(timestamp::now());
    for chunk in ids.chunks(super::IN_CHUNK) {
        let sql = format!(
            "UPDATE events SET delivered_at = COALESCE(delivered_at, $1), \
             attempts = attempts + 1 WHERE id IN ({})",
            super::tasks::placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(delivered_at.clone());
        for id in chunk {
            query = query.bind(id.to_string());
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}

/// Counts a failed delivery attempt of `id`.
pub async fn record_attempt(db: &Db, id: Uuid) -> Result<(), StoreError> {
    sqlx::query("UPDATE events SET attempts = attempts + 1 WHERE id = $1")
        .bind(id.to_string())
        .execute(db.pool())
        .await?;
    Ok(())
}

fn decode(row: &AnyRow) -> Result<Event, StoreError> {
    let payload: String = row.try_get("payload")?;
    Ok(Event {
        id: uuid_at(row, "id")?,
        org_id: uuid_at(row, "org_id")?,
        workspace_id: uuid_at(row, "workspace_id")?,
        kind: row.try_get("kind")?,
        recipient_id: uuid_at(row, "recipient_id")?,
        actor_id: opt_uuid_at(row, "actor_id")?,
        resource_type: row.try_get("resource_type")?,
        resource_id: uuid_at(row, "resource_id")?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| StoreError::Internal(format!("corrupt event payload: {e}").into()))?,
        created_at: row.try_get("created_at")?,
        attempts: row.try_get("attempts")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

//! The `events` table: the notification outbox (shape documented in
//! [`crate::outbox`]).

use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{StoreError, opt_uuid_at, uuid_at};
use crate::Db;
use crate::outbox::{Event, NewEvent};
use crate::timestamp;

/// Queues `event` inside the caller's transaction.
pub async fn enqueue(tx: &mut sqlx::AnyConnection, event: &NewEvent) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (id, org_id, workspace_id, kind, recipient_id, actor_id, \
         resource_type, resource_id, payload, created_at, attempts, delivered_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, NULL)",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(event.org_id.to_string())
    .bind(event.workspace_id.to_string())
    .bind(event.kind)
    .bind(event.recipient_id.to_string())
    .bind(event.actor_id.map(|a| a.to_string()))
    .bind(event.resource_type)
    .bind(event.resource_id.to_string())
    .bind(event.payload.to_string())
    .bind(timestamp::format(timestamp::now()))
    .execute(tx)
    .await?;
    Ok(())
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

//! The `audit_log` table: permission and membership changes, append-only.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Page, StoreError, opt_uuid_at, paginate, uuid_at};
use crate::Db;
use crate::timestamp;

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditEntry {
    /// UUID v7 (time-ordered).
    pub id: Uuid,
    /// Who did it; null for the system.
    pub actor_id: Option<Uuid>,
    /// e.g. `grant.create`, `grant.delete`, `team.member.remove`, `role.create`.
    pub action: String,
    /// The kind of thing changed (`grant`, `team`, `role`, `department`, `file`…).
    pub target_kind: String,
    /// Its id.
    pub target_id: String,
    /// Action-specific detail.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// RFC 3339.
    pub created_at: String,
}

/// Appends an entry.
pub async fn record(
    db: &Db,
    org_id: Uuid,
    actor_id: Option<Uuid>,
    action: &str,
    target_kind: &str,
    target_id: &str,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (id, org_id, actor_id, action, target_kind, target_id, detail, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(org_id.to_string())
    .bind(actor_id.map(|a| a.to_string()))
    .bind(action)
    .bind(target_kind)
    .bind(target_id)
    .bind(detail.to_string())
    .bind(timestamp::format(timestamp::now()))
    .execute(db.pool())
    .await?;
    Ok(())
}

/// A page of `org_id`'s entries, oldest first, after `after`.
pub async fn list(
    db: &Db,
    org_id: Uuid,
    limit: u32,
    after: Option<Uuid>,
) -> Result<Page<AuditEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, actor_id, action, target_kind, target_id, detail, created_at FROM audit_log \
         WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(org_id.to_string())
    .bind(after.map(|a| a.to_string()).unwrap_or_default())
    .bind(i64::from(limit) + 1)
    .fetch_all(db.pool())
    .await?;
    let items = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    Ok(paginate(items, limit, |e| e.id))
}

fn decode(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    let detail: String = row.try_get("detail")?;
    Ok(AuditEntry {
        id: uuid_at(row, "id")?,
        actor_id: opt_uuid_at(row, "actor_id")?,
        action: row.try_get("action")?,
        target_kind: row.try_get("target_kind")?,
        target_id: row.try_get("target_id")?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        created_at: row.try_get("created_at")?,
    })
}

//! The `grants` table: a user holds a role on a scope (org, department, team,
//! workspace). Team membership is a grant on the team.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{StoreError, uuid_at};
use crate::Db;
use crate::timestamp;

/// One grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Grant {
    /// UUID v7.
    pub id: Uuid,
    /// The user holding the role.
    pub user_id: Uuid,
    /// The role id (`owner`, `admin`, `member`, `guest` or a custom role's UUID).
    pub role: String,
    /// `org`, `department`, `team` or `workspace`.
    pub scope_kind: String,
    /// The id of the org, department, team or workspace.
    pub scope_id: Uuid,
    /// RFC 3339.
    pub created_at: String,
}

const COLUMNS: &str = "id, user_id, role_id, scope_kind, scope_id, created_at";

/// Inserts a grant.
///
/// # Errors
/// [`StoreError::Conflict`] when the user already holds that role there.
pub async fn create(
    tx: &mut sqlx::AnyConnection,
    org_id: Uuid,
    user_id: Uuid,
    role: &str,
    scope_kind: &str,
    scope_id: Uuid,
) -> Result<Grant, StoreError> {
    let grant = Grant {
        id: Uuid::now_v7(),
        user_id,
        role: role.to_owned(),
        scope_kind: scope_kind.to_owned(),
        scope_id,
        created_at: timestamp::format(timestamp::now()),
    };
    sqlx::query(
        "INSERT INTO grants (id, org_id, user_id, role_id, scope_kind, scope_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(grant.id.to_string())
    .bind(org_id.to_string())
    .bind(user_id.to_string())
    .bind(role)
    .bind(scope_kind)
    .bind(scope_id.to_string())
    .bind(&grant.created_at)
    .execute(tx)
    .await?;
    Ok(grant)
}

/// The grant `id`.
pub async fn get(db: &Db, id: Uuid) -> Result<Option<Grant>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM grants WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(decode).transpose()
}

/// Deletes the grant `id`.
pub async fn delete(db: &Db, id: Uuid) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM grants WHERE id = $1")
        .bind(id.to_string())
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Deletes every grant of `user_id` on one scope; how many there were.
pub async fn delete_on_scope(
    db: &Db,
    user_id: Uuid,
    kind: &str,
    scope_id: Uuid,
) -> Result<u64, StoreError> {
    let result =
        sqlx::query("DELETE FROM grants WHERE user_id = $1 AND scope_kind = $2 AND scope_id = $3")
            .bind(user_id.to_string())
            .bind(kind)
            .bind(scope_id.to_string())
            .execute(db.pool())
            .await?;
    Ok(result.rows_affected())
}

/// Grants on one scope (e.g. a team's members).
pub async fn on_scope(db: &Db, kind: &str, scope_id: Uuid) -> Result<Vec<Grant>, StoreError> {
    let sql =
        format!("SELECT {COLUMNS} FROM grants WHERE scope_kind = $1 AND scope_id = $2 ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(kind)
        .bind(scope_id.to_string())
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(decode).collect()
}

/// Every grant `user_id` holds.
pub async fn of_user(db: &Db, user_id: Uuid) -> Result<Vec<Grant>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM grants WHERE user_id = $1 ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user_id.to_string())
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(decode).collect()
}

/// Every grant any of `users` holds (chunked `IN` lists, so any number of users).
pub async fn of_users(db: &Db, users: &[Uuid]) -> Result<Vec<Grant>, StoreError> {
    let mut grants = Vec::new();
    for chunk in users.chunks(super::IN_CHUNK) {
        let sql = format!(
            "SELECT {COLUMNS} FROM grants WHERE user_id IN ({})",
            super::tasks::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for user in chunk {
            query = query.bind(user.to_string());
        }
        for row in query.fetch_all(db.pool()).await? {
            grants.push(decode(&row)?);
        }
    }
    Ok(grants)
}

fn decode(row: &AnyRow) -> Result<Grant, StoreError> {
    Ok(Grant {
        id: uuid_at(row, "id")?,
        user_id: uuid_at(row, "user_id")?,
        role: row.try_get("role_id")?,
        scope_kind: row.try_get("scope_kind")?,
        scope_id: uuid_at(row, "scope_id")?,
        created_at: row.try_get("created_at")?,
    })
}

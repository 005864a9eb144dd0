//! The `users` table.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{StoreError, uuid_at};
use crate::Db;
use crate::timestamp;

/// A user as served: never with the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct User {
    /// UUID v7.
    pub id: Uuid,
    /// The organization the user belongs to.
    pub org_id: Uuid,
    /// Unique across the installation; what `@mentions` name.
    pub username: String,
    /// Free-form display name.
    pub display_name: String,
    /// RFC 3339.
    pub created_at: String,
}

const COLUMNS: &str = "id, org_id, username, display_name, created_at";

/// Inserts a user.
///
/// # Errors
/// [`StoreError::Conflict`] when the username is taken.
pub async fn create(
    tx: &mut sqlx::AnyConnection,
    org_id: Uuid,
    username: &str,
    display_name: &str,
    password_hash: &str,
) -> Result<User, StoreError> {
    let user = User {
        id: Uuid::now_v7(),
        org_id,
        username: username.to_owned(),
        display_name: display_name.to_owned(),
        created_at: timestamp::format(timestamp::now()),
    };
    sqlx::query(
        "INSERT INTO users (id, org_id, username, display_name, password_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(user.id.to_string())
    .bind(org_id.to_string())
    .bind(username)
    .bind(display_name)
    .bind(password_hash)
    .bind(&user.created_at)
    .execute(tx)
    .await?;
    Ok(user)
}

/// Whether `org_id` has any user yet (the first one to register becomes its owner).
pub async fn org_has_users(tx: &mut sqlx::AnyConnection, org_id: Uuid) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT id FROM users WHERE org_id = $1 LIMIT 1")
        .bind(org_id.to_string())
        .fetch_optional(tx)
        .await?;
    Ok(row.is_some())
}

/// The user with `id`.
pub async fn get(db: &Db, id: Uuid) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(decode).transpose()
}

/// The user named `username` and their password hash, for sign-in.
pub async fn by_username_with_hash(
    db: &Db,
    username: &str,
) -> Result<Option<(User, String)>, StoreError> {
    let sql = format!("SELECT {COLUMNS}, password_hash FROM users WHERE username = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(username)
        .fetch_optional(db.pool())
        .await?;
    match row {
        Some(row) => Ok(Some((decode(&row)?, row.try_get("password_hash")?))),
        None => Ok(None),
    }
}

/// The user named `username` (usernames are unique across the installation).
pub async fn by_username(db: &Db, username: &str) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE username = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(username)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(decode).transpose()
}

/// Every user of `org_id`, in creation order.
pub async fn list(db: &Db, org_id: Uuid) -> Result<Vec<User>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE org_id = $1 ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org_id.to_string())
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(decode).collect()
}

fn decode(row: &AnyRow) -> Result<User, StoreError> {
    Ok(User {
        id: uuid_at(row, "id")?,
        org_id: uuid_at(row, "org_id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        created_at: row.try_get("created_at")?,
    })
}

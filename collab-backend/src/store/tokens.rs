//! The `tokens` table: session and personal API tokens, stored as SHA-256 hashes.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{StoreError, uuid_at};
use crate::Db;
use crate::timestamp;

/// A token's metadata, as listed (never the secret or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TokenInfo {
    /// UUID v7.
    pub id: Uuid,
    /// `session` or `personal`.
    pub kind: String,
    /// The name given at creation (`session` for sign-ins).
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; `null` for a personal token that never expires.
    pub expires_at: Option<String>,
}

/// Stores a new token for `user_id`.
pub async fn insert(
    db: &Db,
    user_id: Uuid,
    kind: &str,
    name: &str,
    hash: &str,
    expires_at: Option<String>,
) -> Result<TokenInfo, StoreError> {
    let info = TokenInfo {
        id: Uuid::now_v7(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        created_at: timestamp::format(timestamp::now()),
        expires_at,
    };
    sqlx::query(
        "INSERT INTO tokens (id, user_id, kind, name, token_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(info.id.to_string())
    .bind(user_id.to_string())
    .bind(kind)
    .bind(name)
    .bind(hash)
    .bind(&info.created_at)
    .bind(info.expires_at.clone())
    .execute(db.pool())
    .await?;
    Ok(info)
}

/// The user and token id behind a live (unrevoked, unexpired) token hash.
pub async fn lookup(db: &Db, hash: &str) -> Result<Option<(Uuid, Uuid)>, StoreError> {
    let now = timestamp::format(timestamp::now());
    let row = sqlx::query(
        "SELECT id, user_id FROM tokens WHERE token_hash = $1 AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(hash)
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    match row {
        Some(row) => Ok(Some((uuid_at(&row, "user_id")?, uuid_at(&row, "id")?))),
        None => Ok(None),
    }
}

/// Whether the token `id` is still live (neither revoked nor expired).
pub async fn is_live(db: &Db, id: Uuid) -> Result<bool, StoreError> {
    let now = timestamp::format(timestamp::now());
    let row = sqlx::query(
        "SELECT id FROM tokens WHERE id = $1 AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(id.to_string())
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.is_some())
}

/// The live personal tokens of `user_id`.
pub async fn list_personal(db: &Db, user_id: Uuid) -> Result<Vec<TokenInfo>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, kind, name, created_at, expires_at FROM tokens \
         WHERE user_id = $1 AND kind = 'personal' AND revoked_at IS NULL ORDER BY id",
    )
    .bind(user_id.to_string())
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(decode).collect()
}

/// Revokes token `id` of `user_id`; false when there is no such live token.
pub async fn revoke(db: &Db, user_id: Uuid, id: Uuid) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
    )
    .bind(timestamp::format(timestamp::now()))
    .bind(id.to_string())
    .bind(user_id.to_string())
    .execute(db.pool())
    .await?;
    Ok(result.rows_affected() > 0)
}

fn decode(row: &AnyRow) -> Result<TokenInfo, StoreError> {
    Ok(TokenInfo {
        id: uuid_at(row, "id")?,
        kind: row.try_get("kind")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

//! The SQL of the key store: consumers and keys, written once with `$n` placeholders and
//! the types sqlx's `Any` driver knows (text, BIGINT, bytes), for SQLite and PostgreSQL.
//! Every change also bumps `gateway_key_changes.version`, in the same transaction.

use std::time::Duration;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::cache::Entry;
use super::{KeyStore, KeyStoreError, format_ms, now_ms, secret};

/// Most tags per consumer, scopes per key, and the longest name, group, tag or scope.
const MAX_ITEMS: usize = 64;
const MAX_LEN: usize = 128;

/// A consumer as served by the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct Consumer {
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub group: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A key as served by the admin API: never its secret.
#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub consumer_id: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub created_at: String,
    /// `active`, `expired` or `revoked`, now.
    pub status: &'static str,
}

/// What creating a consumer takes.
#[derive(Debug, Clone, Default)]
pub struct NewConsumer {
    pub name: String,
    pub tags: Vec<String>,
    pub group: Option<String>,
}

/// What creating a key takes.
#[derive(Debug, Clone, Default)]
pub struct NewKeyRequest {
    pub scopes: Vec<String>,
    /// Unix milliseconds; `None`: never expires.
    pub expires_at: Option<i64>,
}

/// Names, groups, tags and scopes: 1–128 characters from `A–Z a–z 0–9 . _ - @ :` (they
/// travel in headers and JSON; nothing there needs quoting).
fn check_word(field: &str, value: &str) -> Result<(), KeyStoreError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_@:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(KeyStoreError::Invalid(format!(
            "`{field}` must be 1 to {MAX_LEN} characters of A-Z a-z 0-9 . _ - @ :, got {value:?}"
        )))
    }
}

fn check_list(field: &str, values: &[String]) -> Result<(), KeyStoreError> {
    if values.len() > MAX_ITEMS {
        return Err(KeyStoreError::Invalid(format!(
            "`{field}`: at most {MAX_ITEMS} entries"
        )));
    }
    values.iter().try_for_each(|v| check_word(field, v))
}

fn list_json(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".to_owned())
}

fn parse_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn consumer_from(row: &AnyRow) -> Result<Consumer, sqlx::Error> {
    Ok(Consumer {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        tags: parse_list(&row.try_get::<String, _>("tags")?),
        group: row.try_get("consumer_group")?,
        created_at: format_ms(row.try_get("created_at")?),
        updated_at: format_ms(row.try_get("updated_at")?),
    })
}

fn key_from(row: &AnyRow) -> Result<ApiKey, sqlx::Error> {
    let now = now_ms();
    let expires_at: Option<i64> = row.try_get("expires_at")?;
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    let status = if revoked_at.is_some_and(|t| t <= now) {
        "revoked"
    } else if expires_at.is_some_and(|t| t <= now) {
        "expired"
    } else {
        "active"
    };
    Ok(ApiKey {
        id: row.try_get("id")?,
        consumer_id: row.try_get("consumer_id")?,
        scopes: parse_list(&row.try_get::<String, _>("scopes")?),
        expires_at: expires_at.map(format_ms),
        revoked_at: revoked_at.map(format_ms),
        created_at: format_ms(row.try_get("created_at")?),
        status,
    })
}

const CONSUMER_COLUMNS: &str = "id, name, tags, consumer_group, created_at, updated_at";
const KEY_COLUMNS: &str = "id, consumer_id, scopes, expires_at, revoked_at, created_at";

pub(super) async fn version(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM gateway_key_changes WHERE id = 1")
        .fetch_one(pool)
        .await
}

pub(super) async fn load_entries(pool: &AnyPool) -> Result<Vec<Entry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT k.id, k.digest, k.scopes, k.expires_at, k.revoked_at, \
         c.id AS consumer_id, c.name, c.consumer_group \
         FROM gateway_api_keys k JOIN gateway_consumers c ON c.id = k.consumer_id",
    )
    .fetch_all(pool)
    .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let digest: Vec<u8> = row.try_get("digest")?;
        let Ok(digest) = <[u8; 32]>::try_from(digest.as_slice()) else {
            continue; // not a digest we wrote: no presented key can match it
        };
        entries.push(Entry {
            key_id: row.try_get("id")?,
            digest,
            consumer_id: row.try_get("consumer_id")?,
            consumer_name: row.try_get("name")?,
            group: row.try_get("consumer_group")?,
            scopes: parse_list(&row.try_get::<String, _>("scopes")?),
            expires_at: row.try_get("expires_at")?,
            revoked_at: row.try_get("revoked_at")?,
        });
    }
    Ok(entries)
}

async fn bump(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE gateway_key_changes SET version = version + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await
        .map(drop)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl KeyStore {
    /// Creates a consumer.
    ///
    /// # Errors
    /// `Invalid` for a bad name, group or tag; `Conflict` when the name is taken.
    pub async fn create_consumer(&self, new: NewConsumer) -> Result<Consumer, KeyStoreError> {
        check_word("name", &new.name)?;
        check_list("tags", &new.tags)?;
        if let Some(group) = &new.group {
            check_word("group", group)?;
        }
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let mut tx = self.pool().await?.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO gateway_consumers (id, name, tags, consumer_group, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&id)
        .bind(&new.name)
        .bind(list_json(&new.tags))
        .bind(new.group.clone())
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(KeyStoreError::Conflict(format!(
                    "a consumer named {:?} exists",
                    new.name
                )));
            }
            other => other?,
        };
        bump(&mut tx).await?;
        tx.commit().await?;
        self.refresh_quietly().await;
        Ok(Consumer {
            id,
            name: new.name,
            tags: new.tags,
            group: new.group,
            created_at: format_ms(now),
            updated_at: format_ms(now),
        })
    }

    /// Every consumer, by name.
    pub async fn list_consumers(&self) -> Result<Vec<Consumer>, KeyStoreError> {
        let sql = format!("SELECT {CONSUMER_COLUMNS} FROM gateway_consumers ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool().await?)
            .await?;
        Ok(rows.iter().map(consumer_from).collect::<Result<_, _>>()?)
    }

    /// The consumer whose id or name is `id_or_name`.
    pub async fn consumer(&self, id_or_name: &str) -> Result<Consumer, KeyStoreError> {
        let sql = format!(
            "SELECT {CONSUMER_COLUMNS} FROM gateway_consumers WHERE id = $1 OR name = $1 \
             ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_or_name)
            .fetch_optional(self.pool().await?)
            .await?
            .ok_or_else(|| KeyStoreError::NotFound(format!("no consumer {id_or_name:?}")))?;
        Ok(consumer_from(&row)?)
    }

    /// Deletes a consumer and all its keys (they stop working at once here, within a
    /// poll elsewhere).
    pub async fn delete_consumer(&self, id_or_name: &str) -> Result<(), KeyStoreError> {
        let consumer = self.consumer(id_or_name).await?;
        let mut tx = self.pool().await?.begin().await?;
        // Keys first: SQLite enforces the cascade only with foreign keys on.
        sqlx::query("DELETE FROM gateway_api_keys WHERE consumer_id = $1")
            .bind(&consumer.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM gateway_consumers WHERE id = $1")
            .bind(&consumer.id)
            .execute(&mut *tx)
            .await?;
        bump(&mut tx).await?;
        tx.commit().await?;
        self.refresh_quietly().await;
        Ok(())
    }

    /// Creates a key for the consumer `id_or_name`; returns it and the full key (the only
    /// time the key exists outside the caller).
    pub async fn create_key(
        &self,
        id_or_name: &str,
        request: NewKeyRequest,
    ) -> Result<(ApiKey, String), KeyStoreError> {
        check_list("scopes", &request.scopes)?;
        let consumer = self.consumer(id_or_name).await?;
        let mut tx = self.pool().await?.begin().await?;
        let (key, secret) = insert_key(&mut tx, &consumer.id, &request).await?;
        bump(&mut tx).await?;
        tx.commit().await?;
        self.refresh_quietly().await;
        Ok((key, secret))
    }

    /// The keys of the consumer `id_or_name`, oldest first.
    pub async fn list_keys(&self, id_or_name: &str) -> Result<Vec<ApiKey>, KeyStoreError> {
        let consumer = self.consumer(id_or_name).await?;
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM gateway_api_keys WHERE consumer_id = $1 \
             ORDER BY created_at, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&consumer.id)
            .fetch_all(self.pool().await?)
            .await?;
        Ok(rows.iter().map(key_from).collect::<Result<_, _>>()?)
    }

    /// The key `id`.
    pub async fn key(&self, id: &str) -> Result<ApiKey, KeyStoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM gateway_api_keys WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool().await?)
            .await?
            .ok_or_else(|| KeyStoreError::NotFound(format!("no key {id:?}")))?;
        Ok(key_from(&row)?)
    }

    /// Revokes the key `id` now (revoking twice keeps the first time).
    pub async fn revoke_key(&self, id: &str) -> Result<ApiKey, KeyStoreError> {
        self.key(id).await?;
        let mut tx = self.pool().await?.begin().await?;
        sqlx::query(
            "UPDATE gateway_api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        bump(&mut tx).await?;
        tx.commit().await?;
        self.refresh_quietly().await;
        self.key(id).await
    }

    /// Replaces the key `id`: a new key for the same consumer with the same scopes and
    /// expiry, valid at once; the old one stays valid for `grace` more (never longer than
    /// it would have anyway). Returns the new key, its full key, and the old key.
    ///
    /// # Errors
    /// `NotFound`; `Invalid` when the old key is already revoked or expired.
    pub async fn rotate_key(
        &self,
        id: &str,
        grace: Duration,
    ) -> Result<(ApiKey, String, ApiKey), KeyStoreError> {
        let old = self.key(id).await?;
        if old.status != "active" {
            return Err(KeyStoreError::Invalid(format!(
                "key {id:?} is {}: only an active key can be rotated",
                old.status
            )));
        }
        let now = now_ms();
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let old_expiry: Option<i64> =
            sqlx::query_scalar("SELECT expires_at FROM gateway_api_keys WHERE id = $1")
                .bind(id)
                .fetch_one(self.pool().await?)
                .await?;
        let until = now.saturating_add(grace_ms);
        let request = NewKeyRequest {
            scopes: old.scopes.clone(),
            expires_at: old_expiry,
        };
        let mut tx = self.pool().await?.begin().await?;
        let (new_key, secret) = insert_key(&mut tx, &old.consumer_id, &request).await?;
        sqlx::query("UPDATE gateway_api_keys SET expires_at = $2 WHERE id = $1")
            .bind(id)
            .bind(old_expiry.map_or(until, |e| e.min(until)))
            .execute(&mut *tx)
            .await?;
        bump(&mut tx).await?;
        tx.commit().await?;
        self.refresh_quietly().await;
        Ok((new_key, secret, self.key(id).await?))
    }

    /// After a change made here: this node sees it at once (others within a poll).
    async fn refresh_quietly(&self) {
        if let Err(e) = self.refresh().await {
            tracing::warn!("key store: refresh after a change failed (the poll retries): {e}");
        }
    }
}

async fn insert_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    consumer_id: &str,
    request: &NewKeyRequest,
) -> Result<(ApiKey, String), KeyStoreError> {
    let new = secret::generate();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO gateway_api_keys (id, consumer_id, digest, scopes, expires_at, revoked_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, NULL, $6)",
    )
    .bind(&new.id)
    .bind(consumer_id)
    .bind(secret::digest(&new.key).to_vec())
    .bind(list_json(&request.scopes))
    .bind(request.expires_at)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let status = if request.expires_at.is_some_and(|t| t <= now) {
        "expired"
    } else {
        "active"
    };
    let key = ApiKey {
        id: new.id,
        consumer_id: consumer_id.to_owned(),
        scopes: request.scopes.clone(),
        expires_at: request.expires_at.map(format_ms),
        revoked_at: None,
        created_at: format_ms(now),
        status,
    };
    Ok((key, new.key))
}

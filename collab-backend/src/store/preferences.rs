//! The `notification_preferences`, `notification_settings`, `workspace_mutes` and
//! `ws_tickets` tables.

use std::collections::{HashMap, HashSet};

use sqlx::Row;
use uuid::Uuid;

use super::{StoreError, opt_uuid_at, uuid_at};
use crate::Db;
use crate::timestamp;

/// A user's per-user settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `immediate`, `hourly`, `daily` or `off`.
    pub email_mode: String,
    /// `en` or `zh-CN`.
    pub locale: String,
    /// Where notification emails go; none, no email.
    pub email: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            email_mode: "immediate".to_owned(),
            locale: "en".to_owned(),
            email: None,
        }
    }
}

/// The explicit `(kind, channel, enabled)` choices of `user_id` (absent ones are on).
pub async fn choices(db: &Db, user_id: Uuid) -> Result<Vec<(String, String, bool)>, StoreError> {
    let rows = sqlx::query(
        "SELECT kind, channel, enabled FROM notification_preferences WHERE user_id = $1",
    )
    .bind(user_id.to_string())
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let enabled: i64 = row.try_get("enabled")?;
            Ok((row.try_get("kind")?, row.try_get("channel")?, enabled != 0))
        })
        .collect()
}

/// Sets one choice.
pub async fn set_choice(
    db: &Db,
    user_id: Uuid,
    kind: &str,
    channel: &str,
    enabled: bool,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO notification_preferences (user_id, kind, channel, enabled) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id, kind, channel) DO UPDATE SET enabled = excluded.enabled",
    )
    .bind(user_id.to_string())
    .bind(kind)
    .bind(channel)
    .bind(i64::from(enabled))
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The mutes and turned-off kinds of many users, read at once (see [`choices_of`]).
#[derive(Debug, Clone, Default)]
pub struct Choices {
    /// `(user, workspace)` pairs muted.
    muted: HashSet<(Uuid, Uuid)>,
    /// `(user, kind, channel)` triples turned off.
    off: HashSet<(Uuid, String, String)>,
}

impl Choices {
    /// Whether `user_id` wants `kind` on `channel` and has not muted `workspace_id`.
    pub fn wants(&self, user_id: Uuid, workspace_id: Uuid, kind: &str, channel: &str) -> bool {
        !self.muted.contains(&(user_id, workspace_id))
            && !self
                .off
                .contains(&(user_id, kind.to_owned(), channel.to_owned()))
    }
}

/// The mutes and turned-off kinds of every one of `users`, in two queries per few
/// hundred users.
pub async fn choices_of(db: &Db, users: &[Uuid]) -> Result<Choices, StoreError> {
    let mut choices = Choices::default();
    for chunk in users.chunks(super::IN_CHUNK) {
        let list = super::tasks::placeholders(1, chunk.len());
        let mutes =
            format!("SELECT user_id, workspace_id FROM workspace_mutes WHERE user_id IN ({list})");
        for row in bind_all(&mutes, chunk).fetch_all(db.pool()).await? {
            choices
                .muted
                .insert((uuid_at(&row, "user_id")?, uuid_at(&row, "workspace_id")?));
        }
        let off = format!(
            "SELECT user_id, kind, channel FROM notification_preferences \
             WHERE enabled = 0 AND user_id IN ({list})"
        );
        for row in bind_all(&off, chunk).fetch_all(db.pool()).await? {
            let user = uuid_at(&row, "user_id")?;
            choices
                .off
                .insert((user, row.try_get("kind")?, row.try_get("channel")?));
        }
    }
    Ok(choices)
}

/// The settings of every one of `users` who has set any (the others have the defaults).
pub async fn settings_of(db: &Db, users: &[Uuid]) -> Result<HashMap<Uuid, Settings>, StoreError> {
    let mut found = HashMap::new();
    for chunk in users.chunks(super::IN_CHUNK) {
        let sql = format!(
            "SELECT user_id, email_mode, locale, email FROM notification_settings \
             WHERE user_id IN ({})",
            super::tasks::placeholders(1, chunk.len())
        );
        for row in bind_all(&sql, chunk).fetch_all(db.pool()).await? {
            let settings = Settings {
                email_mode: row.try_get("email_mode")?,
                locale: row.try_get("locale")?,
                email: row.try_get("email")?,
            };
            found.insert(uuid_at(&row, "user_id")?, settings);
        }
    }
    Ok(found)
}

fn bind_all<'q>(
    sql: &str,
    ids: &[Uuid],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
    for id in ids {
        query = query.bind(id.to_string());
    }
    query
}

/// `user_id`'s settings (defaults when never set).
pub async fn settings(db: &Db, user_id: Uuid) -> Result<Settings, StoreError> {
    let row = sqlx::query(
        "SELECT email_mode, locale, email FROM notification_settings WHERE user_id = $1",
    )
    .bind(user_id.to_string())
    .fetch_optional(db.pool())
    .await?;
    match row {
        Some(row) => Ok(Settings {
            email_mode: row.try_get("email_mode")?,
            locale: row.try_get("locale")?,
            email: row.try_get("email")?,
        }),
        None => Ok(Settings::default()),
    }
}

/// Stores `user_id`'s settings.
pub async fn set_settings(db: &Db, user_id: Uuid, settings: &Settings) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO notification_settings (user_id, email_mode, locale, updated_at, email) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO UPDATE SET \
         email_mode = excluded.email_mode, locale = excluded.locale, \
         updated_at = excluded.updated_at, email = excluded.email",
    )
    .bind(user_id.to_string())
    .bind(&settings.email_mode)
    .bind(&settings.locale)
    .bind(timestamp::format(timestamp::now()))
    .bind(settings.email.clone())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The workspaces `user_id` muted, in id order.
pub async fn mutes(db: &Db, user_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
    let rows = sqlx::query(
        "SELECT workspace_id FROM workspace_mutes WHERE user_id = $1 ORDER BY workspace_id",
    )
    .bind(user_id.to_string())
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| uuid_at(row, "workspace_id"))
        .collect()
}

/// Mutes (`true`) or unmutes `workspace_id` for `user_id`; idempotent.
pub async fn set_mute(
    db: &Db,
    user_id: Uuid,
    workspace_id: Uuid,
    muted: bool,
) -> Result<(), StoreError> {
    let query = if muted {
        sqlx::query(
            "INSERT INTO workspace_mutes (user_id, workspace_id, created_at) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(user_id.to_string())
        .bind(workspace_id.to_string())
        .bind(timestamp::format(timestamp::now()))
    } else {
        sqlx::query("DELETE FROM workspace_mutes WHERE user_id = $1 AND workspace_id = $2")
            .bind(user_id.to_string())
            .bind(workspace_id.to_string())
    };
    query.execute(db.pool()).await?;
    Ok(())
}

/// Stores a WebSocket ticket (its hash) for `user_id`, valid until `expires_at`.
pub async fn insert_ticket(
    db: &Db,
    user_id: Uuid,
    token_id: Option<Uuid>,
    hash: &str,
    expires_at: &str,
) -> Result<(), StoreError> {
    let now = timestamp::format(timestamp::now());
    // Expired tickets are swept here: the table stays as small as the live ones.
    sqlx::query("DELETE FROM ws_tickets WHERE expires_at <= $1")
        .bind(&now)
        .execute(db.pool())
        .await?;
    sqlx::query(
        "INSERT INTO ws_tickets (ticket_hash, user_id, token_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash)
    .bind(user_id.to_string())
    .bind(token_id.map(|id| id.to_string()))
    .bind(now)
    .bind(expires_at)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Consumes the live ticket with `hash`: deletes it and returns its user and the token
/// it was minted with (none when minted through the gateway's identity headers). The
/// delete is the claim, so two concurrent uses cannot both succeed.
pub async fn consume_ticket(
    db: &Db,
    hash: &str,
) -> Result<Option<(Uuid, Option<Uuid>)>, StoreError> {
    let row = sqlx::query(
        "DELETE FROM ws_tickets WHERE ticket_hash = $1 AND expires_at > $2 \
         RETURNING user_id, token_id",
    )
    .bind(hash)
    .bind(timestamp::format(timestamp::now()))
    .fetch_optional(db.pool())
    .await?;
    row.as_ref()
        .map(|row| Ok((uuid_at(row, "user_id")?, opt_uuid_at(row, "token_id")?)))
        .transpose()
}

//! The `email_outbox` and `email_digest_items` tables.

use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{StoreError, uuid_at};
use crate::timestamp;
use crate::{Db, Dialect};

/// One email of the outbox, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutboxEmail {
    /// UUID v7.
    pub id: Uuid,
    /// `event:<event id>` or `digest:<user>:<mode>:<window end>`; unique.
    pub idempotency_key: String,
    /// The recipient user.
    pub user_id: Uuid,
    /// A notification kind, or `digest`: what its unsubscribe link turns off.
    pub category: String,
    /// The address.
    pub recipient: String,
    /// Subject line.
    pub subject: String,
    /// `text/plain` part.
    pub text_body: String,
    /// `text/html` part.
    pub html_body: String,
    /// The signed one-click unsubscribe URL.
    pub unsubscribe_url: String,
    /// `pending`, `sending`, `sent` or `failed`.
    pub status: String,
    /// Attempts so far (counted when claimed).
    pub attempts: i64,
    /// When it may next be tried.
    pub next_attempt_at: String,
    /// The last failure, if any (the SMTP reply or the connection error).
    pub last_error: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// When the server accepted it.
    pub sent_at: Option<String>,
}

/// An email to queue.
#[derive(Debug, Clone)]
pub struct NewEmail {
    pub idempotency_key: String,
    pub user_id: Uuid,
    pub category: String,
    pub recipient: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    pub unsubscribe_url: String,
}

const COLUMNS: &str = "id, idempotency_key, user_id, category, recipient, subject, text_body, \
                       html_body, unsubscribe_url, status, attempts, next_attempt_at, \
                       last_error, created_at, sent_at";

/// Queues `email` inside the caller's transaction; false when its idempotency key is
/// already queued (the same notification or digest handled twice).
pub async fn enqueue(tx: &mut sqlx::AnyConnection, email: &NewEmail) -> Result<bool, StoreError> {
    let now = timestamp::format(timestamp::now());
    let done = sqlx::query(
        "INSERT INTO email_outbox (id, idempotency_key, user_id, category, recipient, subject, \
         text_body, html_body, unsubscribe_url, status, attempts, next_attempt_at, \
         lease_until, last_error, created_at, sent_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $10, NULL, NULL, $10, NULL) \
         ON CONFLICT DO NOTHING",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(&email.idempotency_key)
    .bind(email.user_id.to_string())
    .bind(&email.category)
    .bind(&email.recipient)
    .bind(&email.subject)
    .bind(&email.text_body)
    .bind(&email.html_body)
    .bind(&email.unsubscribe_url)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Claims up to `limit` due emails — pending ones whose time has come, and claimed ones
/// whose lease lapsed (their node died mid-send) — until `lease_until`, counting an
/// attempt on each. On PostgreSQL the rows are locked `SKIP LOCKED`, so two nodes never
/// claim the same row; SQLite serialises writers.
pub async fn claim(db: &Db, lease_until: &str, limit: u32) -> Result<Vec<OutboxEmail>, StoreError> {
    let lock = if db.dialect() == Dialect::Postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE email_outbox SET status = 'sending', lease_until = $1, attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM email_outbox \
           WHERE (status = 'pending' AND next_attempt_at <= $2) \
              OR (status = 'sending' AND lease_until <= $2) \
           ORDER BY id LIMIT $3{lock}) \
         RETURNING {COLUMNS}"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(lease_until)
        .bind(timestamp::format(timestamp::now()))
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(decode).collect()
}

/// Records the server's acceptance of email `id`.
pub async fn mark_sent(db: &Db, id: Uuid) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE email_outbox SET status = 'sent', sent_at = $1, lease_until = NULL \
         WHERE id = $2",
    )
    .bind(timestamp::format(timestamp::now()))
    .bind(id.to_string())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Puts email `id` back for another attempt at `next_attempt_at` (a temporary failure).
pub async fn mark_retry(
    db: &Db,
    id: Uuid,
    next_attempt_at: &str,
    error: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE email_outbox SET status = 'pending', next_attempt_at = $1, last_error = $2, \
         lease_until = NULL WHERE id = $3",
    )
    .bind(next_attempt_at)
    .bind(error)
    .bind(id.to_string())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Records email `id` as failed for good (a permanent failure, or attempts exhausted).
pub async fn mark_failed(db: &Db, id: Uuid, error: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE email_outbox SET status = 'failed', last_error = $1, lease_until = NULL \
         WHERE id = $2",
    )
    .bind(error)
    .bind(id.to_string())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Every email queued for `user_id`, oldest first.
pub async fn of_user(db: &Db, user_id: Uuid) -> Result<Vec<OutboxEmail>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM email_outbox WHERE user_id = $1 ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user_id.to_string())
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(decode).collect()
}

/// Puts notification `notification_id` into `user_id`'s `mode` digest closing at
/// `window_end`, inside the caller's transaction.
pub async fn add_digest_item(
    tx: &mut sqlx::AnyConnection,
    notification_id: Uuid,
    user_id: Uuid,
    mode: &str,
    window_end: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO email_digest_items (notification_id, user_id, mode, window_end, queued_at) \
         VALUES ($1, $2, $3, $4, NULL) ON CONFLICT DO NOTHING",
    )
    .bind(notification_id.to_string())
    .bind(user_id.to_string())
    .bind(mode)
    .bind(window_end)
    .execute(tx)
    .await?;
    Ok(())
}

/// One closed digest window with notifications not yet queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDigest {
    pub user_id: Uuid,
    pub mode: String,
    pub window_end: String,
    /// Its notifications, in id order.
    pub notification_ids: Vec<Uuid>,
}

/// Digest windows closed by `now` with items not yet queued, at most `limit` windows.
pub async fn due_digests(db: &Db, now: &str, limit: u32) -> Result<Vec<DueDigest>, StoreError> {
    let rows = sqlx::query(
        "SELECT user_id, mode, window_end, notification_id FROM email_digest_items \
         WHERE queued_at IS NULL AND window_end <= $1 \
         ORDER BY user_id, mode, window_end, notification_id",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    let mut due: Vec<DueDigest> = Vec::new();
    for row in &rows {
        let user_id = uuid_at(row, "user_id")?;
        let mode: String = row.try_get("mode")?;
        let window_end: String = row.try_get("window_end")?;
        let id = uuid_at(row, "notification_id")?;
        if let Some(d) = due.last_mut()
            && d.user_id == user_id
            && d.mode == mode
            && d.window_end == window_end
        {
            d.notification_ids.push(id);
            continue;
        }
        if due.len() == limit as usize {
            break;
        }
        due.push(DueDigest {
            user_id,
            mode,
            window_end,
            notification_ids: vec![id],
        });
    }
    Ok(due)
}

/// Marks the items of `digest` queued, inside the caller's transaction.
pub async fn mark_digest_queued(
    tx: &mut sqlx::AnyConnection,
    digest: &DueDigest,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE email_digest_items SET queued_at = $1 \
         WHERE user_id = $2 AND mode = $3 AND window_end = $4 AND queued_at IS NULL",
    )
    .bind(timestamp::format(timestamp::now()))
    .bind(digest.user_id.to_string())
    .bind(&digest.mode)
    .bind(&digest.window_end)
    .execute(tx)
    .await?;
    Ok(())
}

fn decode(row: &AnyRow) -> Result<OutboxEmail, StoreError> {
    Ok(OutboxEmail {
        id: uuid_at(row, "id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        user_id: uuid_at(row, "user_id")?,
        category: row.try_get("category")?,
        recipient: row.try_get("recipient")?,
        subject: row.try_get("subject")?,
        text_body: row.try_get("text_body")?,
        html_body: row.try_get("html_body")?,
        unsubscribe_url: row.try_get("unsubscribe_url")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        sent_at: row.try_get("sent_at")?,
    })
}

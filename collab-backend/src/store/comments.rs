//! The `comments`, `comment_edits` and `reactions` tables.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::tasks::placeholders;
use super::{Page, StoreError, opt_uuid_at, paginate, uuid_at};
use crate::Db;
use crate::timestamp;

/// A comment as served. A deleted comment stays in its thread as a tombstone:
/// `deleted: true`, empty body, no reactions, no edit history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Comment {
    /// UUID v7.
    pub id: Uuid,
    /// The workspace of the resource it is on.
    pub workspace_id: Uuid,
    /// What it is on: `task` or `file`.
    pub resource_kind: String,
    /// The id of the task or file it is on.
    pub resource_id: Uuid,
    /// The top-level comment this one replies to; null for a top-level comment.
    pub parent_id: Option<Uuid>,
    /// The author.
    pub author_id: Uuid,
    /// The text (may contain `@mentions`); empty once deleted.
    pub body: String,
    /// Whether it was soft-deleted.
    pub deleted: bool,
    /// How many times it was edited (see `GET /comments/{id}/edits`).
    pub edit_count: i64,
    /// Reactions, one entry per emoji, in emoji order.
    pub reactions: Vec<ReactionSummary>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Starts at 1, increases on every edit and on deletion; the `ETag` is
    /// `"<revision>"`.
    pub revision: i64,
}

/// Who reacted with one emoji.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReactionSummary {
    /// The emoji.
    pub emoji: String,
    /// How many users reacted with it.
    pub count: usize,
    /// Who, in user id order.
    pub users: Vec<Uuid>,
}

/// An earlier text of a comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CommentEdit {
    /// The text before the edit.
    pub body: String,
    /// When it was replaced (RFC 3339).
    pub edited_at: String,
}

/// What [`insert`] writes.
#[derive(Debug, Clone)]
pub struct NewComment<'a> {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub resource_kind: &'a str,
    pub resource_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub author_id: Uuid,
    pub body: &'a str,
}

const COLUMNS: &str = "id, workspace_id, resource_kind, resource_id, parent_id, author_id, body, \
                       edit_count, created_at, updated_at, deleted_at, revision";

/// Inserts a comment (revision 1).
pub async fn insert(tx: &mut sqlx::AnyConnection, new: &NewComment<'_>) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO comments ({COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8, NULL, 1)"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(new.id.to_string())
        .bind(new.workspace_id.to_string())
        .bind(new.resource_kind)
        .bind(new.resource_id.to_string())
        .bind(new.parent_id.map(|p| p.to_string()))
        .bind(new.author_id.to_string())
        .bind(new.body)
        .bind(timestamp::format(timestamp::now()))
        .execute(tx)
        .await?;
    Ok(())
}

/// Replaces the body if the revision is still `revision` and the comment is not
/// deleted, keeping `old_body` in the edit history; false otherwise.
pub async fn edit(
    tx: &mut sqlx::AnyConnection,
    id: Uuid,
    old_body: &str,
    body: &str,
    revision: i64,
) -> Result<bool, StoreError> {
    let now = timestamp::format(timestamp::now());
    let result = sqlx::query(
        "UPDATE comments SET body = $1, updated_at = $2, revision = revision + 1, \
         edit_count = edit_count + 1 WHERE id = $3 AND revision = $4 AND deleted_at IS NULL",
    )
    .bind(body)
    .bind(&now)
    .bind(id.to_string())
    .bind(revision)
    .execute(&mut *tx)
    .await?;
    if result.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO comment_edits (id, comment_id, body, edited_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(id.to_string())
    .bind(old_body)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(true)
}

/// Soft-deletes the comment if it is not deleted yet and (when given) its revision is
/// still `revision`: the body and its history are erased, reactions removed, the row
/// kept. False when nothing was deleted.
pub async fn soft_delete(db: &Db, id: Uuid, revision: Option<i64>) -> Result<bool, StoreError> {
    let now = timestamp::format(timestamp::now());
    let mut tx = db.pool().begin().await?;
    let result = sqlx::query(
        "UPDATE comments SET body = '', deleted_at = $1, updated_at = $1, \
         revision = revision + 1 WHERE id = $2 AND deleted_at IS NULL \
         AND ($3 < 0 OR revision = $3)",
    )
    .bind(now)
    .bind(id.to_string())
    .bind(revision.unwrap_or(-1))
    .execute(&mut *tx)
    .await?;
    if result.rows_affected() == 0 {
        return Ok(false);
    }
    for sql in [
        "DELETE FROM comment_edits WHERE comment_id = $1",
        "DELETE FROM reactions WHERE comment_id = $1",
    ] {
        sqlx::query(sql)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// The workspace of comment `id`.
pub async fn workspace_of(db: &Db, id: Uuid) -> Result<Option<Uuid>, StoreError> {
    let row = sqlx::query("SELECT workspace_id FROM comments WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.as_ref()
        .map(|row| uuid_at(row, "workspace_id"))
        .transpose()
}

/// What comment `id` is on: its `resource_kind` and `resource_id`.
pub async fn resource_of(db: &Db, id: Uuid) -> Result<Option<(String, Uuid)>, StoreError> {
    let row = sqlx::query("SELECT resource_kind, resource_id FROM comments WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.as_ref()
        .map(|row| Ok((row.try_get("resource_kind")?, uuid_at(row, "resource_id")?)))
        .transpose()
}

/// Deletes every comment on one resource (`kind`, `resource_id`) with their edits,
/// reactions and remembered mentions, inside the caller's transaction (the resource's
/// own deletion).
pub async fn delete_on(
    tx: &mut sqlx::AnyConnection,
    kind: &str,
    resource_id: Uuid,
) -> Result<(), StoreError> {
    let comments = "SELECT id FROM comments WHERE resource_kind = $1 AND resource_id = $2";
    let statements = [
        format!("DELETE FROM reactions WHERE comment_id IN ({comments})"),
        format!("DELETE FROM comment_edits WHERE comment_id IN ({comments})"),
        format!("DELETE FROM mentions WHERE source_kind = 'comment' AND source_id IN ({comments})"),
        // Replies first: they reference their parent comment.
        "DELETE FROM comments WHERE resource_kind = $1 AND resource_id = $2 \
         AND parent_id IS NOT NULL"
            .to_owned(),
        "DELETE FROM comments WHERE resource_kind = $1 AND resource_id = $2".to_owned(),
    ];
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(kind)
            .bind(resource_id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// The comment `id`.
pub async fn get(db: &Db, id: Uuid) -> Result<Option<Comment>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM comments WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    Ok(decode_all(db, row.as_slice()).await?.pop())
}

/// A page of the comments on one resource (replies included), in creation order;
/// with `thread`, only the replies to that comment.
pub async fn list(
    db: &Db,
    kind: &str,
    resource_id: Uuid,
    thread: Option<Uuid>,
    limit: u32,
    after: Option<Uuid>,
) -> Result<Page<Comment>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM comments WHERE resource_kind = $1 AND resource_id = $2 \
         AND id > $3 AND ($4 = '' OR parent_id = $4) ORDER BY id LIMIT $5"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(kind)
        .bind(resource_id.to_string())
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(thread.map(|t| t.to_string()).unwrap_or_default())
        .bind(i64::from(limit) + 1)
        .fetch_all(db.pool())
        .await?;
    let items = decode_all(db, &rows).await?;
    Ok(paginate(items, limit, |c| c.id))
}

/// The earlier texts of comment `id`, oldest first.
pub async fn edits(db: &Db, id: Uuid) -> Result<Vec<CommentEdit>, StoreError> {
    let rows =
        sqlx::query("SELECT body, edited_at FROM comment_edits WHERE comment_id = $1 ORDER BY id")
            .bind(id.to_string())
            .fetch_all(db.pool())
            .await?;
    rows.iter()
        .map(|row| {
            Ok(CommentEdit {
                body: row.try_get("body")?,
                edited_at: row.try_get("edited_at")?,
            })
        })
        .collect()
}

/// Adds a reaction; false when this user already reacted with this emoji. The UNIQUE
/// constraint decides, so of concurrent duplicates exactly one lands.
pub async fn react(db: &Db, id: Uuid, user_id: Uuid, emoji: &str) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "INSERT INTO reactions (comment_id, user_id, emoji, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(id.to_string())
    .bind(user_id.to_string())
    .bind(emoji)
    .bind(timestamp::format(timestamp::now()))
    .execute(db.pool())
    .await?;
    Ok(result.rows_affected() > 0)
}

/// Removes a reaction; false when there was none.
pub async fn unreact(db: &Db, id: Uuid, user_id: Uuid, emoji: &str) -> Result<bool, StoreError> {
    let result =
        sqlx::query("DELETE FROM reactions WHERE comment_id = $1 AND user_id = $2 AND emoji = $3")
            .bind(id.to_string())
            .bind(user_id.to_string())
            .bind(emoji)
            .execute(db.pool())
            .await?;
    Ok(result.rows_affected() > 0)
}

/// Decodes rows, fetching the reactions of all of them in one query.
async fn decode_all(db: &Db, rows: &[AnyRow]) -> Result<Vec<Comment>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids = rows
        .iter()
        .map(|row| uuid_at(row, "id"))
        .collect::<Result<Vec<_>, _>>()?;
    let sql = format!(
        "SELECT comment_id, emoji, user_id FROM reactions WHERE comment_id IN ({}) \
         ORDER BY emoji, user_id",
        placeholders(1, ids.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in &ids {
        query = query.bind(id.to_string());
    }
    let mut reactions: BTreeMap<Uuid, BTreeMap<String, Vec<Uuid>>> = BTreeMap::new();
    for row in query.fetch_all(db.pool()).await? {
        reactions
            .entry(uuid_at(&row, "comment_id")?)
            .or_default()
            .entry(row.try_get("emoji")?)
            .or_default()
            .push(uuid_at(&row, "user_id")?);
    }
    rows.iter()
        .zip(ids)
        .map(|(row, id)| {
            let deleted_at: Option<String> = row.try_get("deleted_at")?;
            let summaries = reactions
                .remove(&id)
                .unwrap_or_default()
                .into_iter()
                .map(|(emoji, users)| ReactionSummary {
                    emoji,
                    count: users.len(),
                    users,
                })
                .collect();
            Ok(Comment {
                id,
                workspace_id: uuid_at(row, "workspace_id")?,
                resource_kind: row.try_get("resource_kind")?,
                resource_id: uuid_at(row, "resource_id")?,
                parent_id: opt_uuid_at(row, "parent_id")?,
                author_id: uuid_at(row, "author_id")?,
                body: row.try_get("body")?,
                deleted: deleted_at.is_some(),
                edit_count: row.try_get("edit_count")?,
                reactions: summaries,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                revision: row.try_get("revision")?,
            })
        })
        .collect()
}

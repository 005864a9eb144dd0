//! The `task_due_reminders` table: which tasks were reminded of which due date.

use sqlx::Row;
use uuid::Uuid;

use super::{StoreError, uuid_at};
use crate::Db;
use crate::timestamp;

/// A task due in the scanned range that has no reminder for its due date yet.
#[derive(Debug, Clone)]
pub struct Unreminded {
    pub task_id: Uuid,
    pub title: String,
    pub due_date: String,
    pub status: String,
    pub created_by: Uuid,
    pub org_id: Uuid,
    pub workspace_id: Uuid,
    /// The workspace's statuses; the last one means done.
    pub statuses: Vec<String>,
    /// In id order.
    pub assignees: Vec<Uuid>,
}

/// Tasks due from `first` to `last` (`YYYY-MM-DD`, inclusive) without a reminder for
/// that date, with ids after `after`, in id order, at most `limit`.
pub async fn unreminded(
    db: &Db,
    first: &str,
    last: &str,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Unreminded>, StoreError> {
    let rows = sqlx::query(
        "SELECT t.id, t.title, t.due_date, t.status, t.created_by, w.org_id, \
         t.workspace_id, w.task_statuses FROM tasks t \
         JOIN workspaces w ON w.id = t.workspace_id \
         WHERE t.due_date >= $1 AND t.due_date <= $2 AND t.id > $3 \
         AND NOT EXISTS (SELECT 1 FROM task_due_reminders r \
                         WHERE r.task_id = t.id AND r.due_date = t.due_date) \
         ORDER BY t.id LIMIT $4",
    )
    .bind(first)
    .bind(last)
    .bind(after.map(|a| a.to_string()).unwrap_or_default())
    .bind(i64::from(limit))
    .fetch_all(db.pool())
    .await?;
    let mut found = Vec::with_capacity(rows.len());
    for row in &rows {
        let task_id = uuid_at(row, "id")?;
        let statuses: String = row.try_get("task_statuses")?;
        let assignees =
            sqlx::query("SELECT user_id FROM task_assignees WHERE task_id = $1 ORDER BY user_id")
                .bind(task_id.to_string())
                .fetch_all(db.pool())
                .await?
                .iter()
                .map(|row| uuid_at(row, "user_id"))
                .collect::<Result<_, _>>()?;
        found.push(Unreminded {
            task_id,
            title: row.try_get("title")?,
            due_date: row.try_get("due_date")?,
            status: row.try_get("status")?,
            created_by: uuid_at(row, "created_by")?,
            org_id: uuid_at(row, "org_id")?,
            workspace_id: uuid_at(row, "workspace_id")?,
            statuses: statuses.split(',').map(str::to_owned).collect(),
            assignees,
        });
    }
    Ok(found)
}

/// Records the reminder of `task_id` for `due_date` inside the caller's transaction;
/// false when it exists (another pass or node made it).
pub async fn claim(
    tx: &mut sqlx::AnyConnection,
    task_id: Uuid,
    due_date: &str,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO task_due_reminders (task_id, due_date, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(task_id.to_string())
    .bind(due_date)
    .bind(timestamp::format(timestamp::now()))
    .execute(tx)
    .await?;
    Ok(inserted.rows_affected() > 0)
}

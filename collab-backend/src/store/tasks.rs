//! The `tasks` and `task_assignees` tables.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Page, StoreError, opt_uuid_at, paginate, uuid_at};
use crate::Db;

/// A task as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Task {
    /// UUID v7.
    pub id: Uuid,
    /// The workspace it belongs to.
    pub workspace_id: Uuid,
    /// The parent task, for subtasks (same workspace; fixed at creation).
    pub parent_id: Option<Uuid>,
    /// 1..=500 characters.
    pub title: String,
    /// Free text (may contain `@mentions`).
    pub description: String,
    /// One of the workspace's `task_statuses`; the last one means done.
    pub status: String,
    /// `low`, `medium`, `high` or `urgent`.
    pub priority: String,
    /// `YYYY-MM-DD`.
    pub due_date: Option<String>,
    /// Percent done, 0..=100.
    pub progress: i64,
    /// Estimated effort in minutes.
    pub estimate_minutes: Option<i64>,
    /// Assigned users, in id order.
    pub assignees: Vec<Uuid>,
    /// Creator.
    pub created_by: Uuid,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Starts at 1 and increases on every change; the `ETag` is `"<revision>"`.
    pub revision: i64,
}

/// Filters of a task list; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only tasks assigned to this user.
    pub assignee: Option<Uuid>,
    /// Only tasks in this status.
    pub status: Option<String>,
    /// Only tasks due on or before this date (`YYYY-MM-DD`).
    pub due_before: Option<String>,
    /// Only tasks due on or after this date.
    pub due_after: Option<String>,
    /// Only subtasks of this task.
    pub parent: Option<Uuid>,
}

const COLUMNS: &str = "id, workspace_id, parent_id, title, description, status, priority, \
                       due_date, progress, estimate_minutes, created_by, created_at, \
                       updated_at, revision";

/// Inserts `task` with its assignees.
pub async fn insert(tx: &mut sqlx::AnyConnection, task: &Task) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO tasks ({COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(task.id.to_string())
        .bind(task.workspace_id.to_string())
        .bind(task.parent_id.map(|p| p.to_string()))
        .bind(&task.title)
        .bind(&task.description)
        .bind(&task.status)
        .bind(&task.priority)
        .bind(task.due_date.clone())
        .bind(task.progress)
        .bind(task.estimate_minutes)
        .bind(task.created_by.to_string())
        .bind(&task.created_at)
        .bind(&task.updated_at)
        .bind(task.revision)
        .execute(&mut *tx)
        .await?;
    set_assignees(tx, task.id, &task.assignees).await
}

/// Writes `task` over the stored row if the stored revision is still `task.revision - 1`;
/// false when someone else changed it first.
pub async fn update(tx: &mut sqlx::AnyConnection, task: &Task) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE tasks SET title = $1, description = $2, status = $3, priority = $4, \
         due_date = $5, progress = $6, estimate_minutes = $7, updated_at = $8, revision = $9 \
         WHERE id = $10 AND revision = $11",
    )
    .bind(&task.title)
    .bind(&task.description)
    .bind(&task.status)
    .bind(&task.priority)
    .bind(task.due_date.clone())
    .bind(task.progress)
    .bind(task.estimate_minutes)
    .bind(&task.updated_at)
    .bind(task.revision)
    .bind(task.id.to_string())
    .bind(task.revision - 1)
    .execute(&mut *tx)
    .await?;
    if result.rows_affected() == 0 {
        return Ok(false);
    }
    set_assignees(tx, task.id, &task.assignees).await?;
    Ok(true)
}

async fn set_assignees(
    tx: &mut sqlx::AnyConnection,
    task_id: Uuid,
    users: &[Uuid],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM task_assignees WHERE task_id = $1")
        .bind(task_id.to_string())
        .execute(&mut *tx)
        .await?;
    for user in users {
        sqlx::query("INSERT INTO task_assignees (task_id, user_id) VALUES ($1, $2)")
            .bind(task_id.to_string())
            .bind(user.to_string())
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// The workspace of task `id`.
pub async fn workspace_of(db: &Db, id: Uuid) -> Result<Option<Uuid>, StoreError> {
    let row = sqlx::query("SELECT workspace_id FROM tasks WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.as_ref()
        .map(|row| uuid_at(row, "workspace_id"))
        .transpose()
}

/// The task `id`.
pub async fn get(db: &Db, id: Uuid) -> Result<Option<Task>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    Ok(decode_all(db, row.as_slice()).await?.pop())
}

/// Whether task `id` has subtasks.
pub async fn has_subtasks(db: &Db, id: Uuid) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT id FROM tasks WHERE parent_id = $1 LIMIT 1")
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    Ok(row.is_some())
}

/// Deletes task `id` (without subtasks), its assignees, and its comments with their
/// edits, reactions and remembered mentions, if its revision is still `expected` (when
/// given); false otherwise. Outbox events stay: they are history.
pub async fn delete(db: &Db, id: Uuid, expected: Option<i64>) -> Result<bool, StoreError> {
    let statements = [
        "DELETE FROM mentions WHERE source_kind = 'task' AND source_id = $1",
        "DELETE FROM task_assignees WHERE task_id = $1",
        "DELETE FROM task_due_reminders WHERE task_id = $1",
        "DELETE FROM tasks WHERE id = $1",
    ];
    let mut tx = db.pool().begin().await?;
    // Claims the row first (and takes the write lock), so a concurrent update either
    // lands before and fails this check, or waits and finds no row.
    let claimed = sqlx::query(
        "UPDATE tasks SET revision = revision + 1 WHERE id = $1 AND ($2 < 0 OR revision = $2)",
    )
    .bind(id.to_string())
    .bind(expected.unwrap_or(-1))
    .execute(&mut *tx)
    .await?;
    if claimed.rows_affected() == 0 {
        return Ok(false);
    }
    super::comments::delete_on(&mut tx, "task", id).await?;
    for sql in statements {
        sqlx::query(sql)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// A page of the tasks in `workspaces` matching `filter`, in creation order.
pub async fn list(
    db: &Db,
    workspaces: &[Uuid],
    filter: &Filter,
    limit: u32,
    after: Option<Uuid>,
) -> Result<Page<Task>, StoreError> {
    if workspaces.is_empty() {
        return Ok(Page {
            items: Vec::new(),
            next_cursor: None,
        });
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM tasks WHERE id > $1 \
         AND ($2 = '' OR id IN (SELECT task_id FROM task_assignees WHERE user_id = $2)) \
         AND ($3 = '' OR status = $3) \
         AND ($4 = '' OR (due_date IS NOT NULL AND due_date <= $4)) \
         AND ($5 = '' OR (due_date IS NOT NULL AND due_date >= $5)) \
         AND ($6 = '' OR parent_id = $6) \
         AND workspace_id IN ({}) ORDER BY id LIMIT $7",
        placeholders(8, workspaces.len())
    );
    let text = |v: Option<String>| v.unwrap_or_default();
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(text(after.map(|a| a.to_string())))
        .bind(text(filter.assignee.map(|a| a.to_string())))
        .bind(text(filter.status.clone()))
        .bind(text(filter.due_before.clone()))
        .bind(text(filter.due_after.clone()))
        .bind(text(filter.parent.map(|p| p.to_string())))
        .bind(i64::from(limit) + 1);
    for workspace in workspaces {
        query = query.bind(workspace.to_string());
    }
    let rows = query.fetch_all(db.pool()).await?;
    let items = decode_all(db, &rows).await?;
    Ok(paginate(items, limit, |t| t.id))
}

/// One assignment of a task in a workspace: what the workload view adds up.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// The assignee.
    pub user_id: Uuid,
    /// The task's status.
    pub status: String,
    /// The task's due date.
    pub due_date: Option<String>,
    /// The task's estimate.
    pub estimate_minutes: Option<i64>,
}

/// Every (task, assignee) pair of workspace `workspace_id`.
pub async fn assignments(db: &Db, workspace_id: Uuid) -> Result<Vec<Assignment>, StoreError> {
    let rows = sqlx::query(
        "SELECT a.user_id, t.status, t.due_date, t.estimate_minutes FROM tasks t \
         JOIN task_assignees a ON a.task_id = t.id WHERE t.workspace_id = $1",
    )
    .bind(workspace_id.to_string())
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Assignment {
                user_id: uuid_at(row, "user_id")?,
                status: row.try_get("status")?,
                due_date: row.try_get("due_date")?,
                estimate_minutes: row.try_get("estimate_minutes")?,
            })
        })
        .collect()
}

/// `$first, $first+1, …` for `count` values.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes rows, fetching the assignees of all of them in one query.
async fn decode_all(db: &Db, rows: &[AnyRow]) -> Result<Vec<Task>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids = rows
        .iter()
        .map(|row| uuid_at(row, "id"))
        .collect::<Result<Vec<_>, _>>()?;
    let sql = format!(
        "SELECT task_id, user_id FROM task_assignees WHERE task_id IN ({}) ORDER BY user_id",
        placeholders(1, ids.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in &ids {
        query = query.bind(id.to_string());
    }
    let mut assignees: BTreeMap<Uuid, Vec<Uuid>> = BTreeMap::new();
    for row in query.fetch_all(db.pool()).await? {
        let task = uuid_at(&row, "task_id")?;
        assignees
            .entry(task)
            .or_default()
            .push(uuid_at(&row, "user_id")?);
    }
    rows.iter()
        .zip(ids)
        .map(|(row, id)| {
            Ok(Task {
                id,
                workspace_id: uuid_at(row, "workspace_id")?,
                parent_id: opt_uuid_at(row, "parent_id")?,
                title: row.try_get("title")?,
                description: row.try_get("description")?,
                status: row.try_get("status")?,
                priority: row.try_get("priority")?,
                due_date: row.try_get("due_date")?,
                progress: row.try_get("progress")?,
                estimate_minutes: row.try_get("estimate_minutes")?,
                assignees: assignees.remove(&id).unwrap_or_default(),
                created_by: uuid_at(row, "created_by")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                revision: row.try_get("revision")?,
            })
        })
        .collect()
}

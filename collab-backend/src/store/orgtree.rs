//! The organization tree: `departments` (nested), `teams`, `workspaces`, and the
//! ancestor/descendant walks that permission inheritance needs.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{StoreError, opt_uuid_at, uuid_at};
use crate::Db;
use crate::timestamp;

/// Default task workflow of a new workspace: the last status counts as done.
pub const DEFAULT_STATUSES: &str = "todo,in_progress,review,done";

/// A department: a node of the organization's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Department {
    /// UUID v7.
    pub id: Uuid,
    /// The organization.
    pub org_id: Uuid,
    /// The parent department; null at the top level.
    pub parent_id: Option<Uuid>,
    /// Display name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A team: members (by grant) and workspaces, optionally inside a department.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Team {
    /// UUID v7.
    pub id: Uuid,
    /// The organization.
    pub org_id: Uuid,
    /// The department; null for a team at the top level.
    pub department_id: Option<Uuid>,
    /// Display name.
    pub name: String,
    /// Unique in the organization; what `@team-name` mentions name.
    pub slug: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A workspace: every task, comment and file belongs to exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Workspace {
    /// UUID v7.
    pub id: Uuid,
    /// The organization.
    pub org_id: Uuid,
    /// The team owning it.
    pub team_id: Uuid,
    /// Display name.
    pub name: String,
    /// The task workflow, in order; the last status counts as done.
    pub task_statuses: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// Inserts a department.
pub async fn create_department(
    db: &Db,
    org_id: Uuid,
    parent_id: Option<Uuid>,
    name: &str,
) -> Result<Department, StoreError> {
    let department = Department {
        id: Uuid::now_v7(),
        org_id,
        parent_id,
        name: name.to_owned(),
        created_at: timestamp::format(timestamp::now()),
    };
    sqlx::query(
        "INSERT INTO departments (id, org_id, parent_id, name, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(department.id.to_string())
    .bind(org_id.to_string())
    .bind(parent_id.map(|p| p.to_string()))
    .bind(name)
    .bind(&department.created_at)
    .execute(db.pool())
    .await?;
    Ok(department)
}

/// The department `id`.
pub async fn department(db: &Db, id: Uuid) -> Result<Option<Department>, StoreError> {
    let row = sqlx::query(
        "SELECT id, org_id, parent_id, name, created_at FROM departments WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(decode_department).transpose()
}

/// Every department of `org_id`.
pub async fn departments(db: &Db, org_id: Uuid) -> Result<Vec<Department>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, org_id, parent_id, name, created_at FROM departments WHERE org_id = $1 ORDER BY id",
    )
    .bind(org_id.to_string())
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(decode_department).collect()
}

/// Renames and/or re-parents a department.
pub async fn update_department(
    db: &Db,
    id: Uuid,
    name: &str,
    parent_id: Option<Uuid>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE departments SET name = $1, parent_id = $2 WHERE id = $3")
        .bind(name)
        .bind(parent_id.map(|p| p.to_string()))
        .bind(id.to_string())
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Whether the department has sub-departments or teams.
pub async fn department_has_children(db: &Db, id: Uuid) -> Result<bool, StoreError> {
    let sql = "SELECT id FROM departments WHERE parent_id = $1 \
               UNION ALL SELECT id FROM teams WHERE department_id = $1 LIMIT 1";
    let row = sqlx::query(sql)
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    Ok(row.is_some())
}

/// Deletes a department (no children) and the grants on it.
pub async fn delete_department(db: &Db, id: Uuid) -> Result<(), StoreError> {
    let mut tx = db.pool().begin().await?;
    sqlx::query("DELETE FROM grants WHERE scope_kind = 'department' AND scope_id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM departments WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// `id` and its ancestors, nearest first.
pub async fn department_ancestry(db: &Db, id: Uuid) -> Result<Vec<Uuid>, StoreError> {
    let rows = sqlx::query(
        "WITH RECURSIVE up(id, parent_id, depth) AS ( \
             SELECT id, parent_id, 0 FROM departments WHERE id = $1 \
             UNION ALL SELECT d.id, d.parent_id, up.depth + 1 FROM departments d \
             JOIN up ON d.id = up.parent_id WHERE up.depth < 64) \
         SELECT id FROM up ORDER BY depth",
    )
    .bind(id.to_string())
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(|row| uuid_at(row, "id")).collect()
}

/// `id` and every department below it.
pub async fn department_subtree(db: &Db, id: Uuid) -> Result<Vec<Uuid>, StoreError> {
    let rows = sqlx::query(
        "WITH RECURSIVE down(id, depth) AS ( \
             SELECT id, 0 FROM departments WHERE id = $1 \
             UNION ALL SELECT d.id, down.depth + 1 FROM departments d \
             JOIN down ON d.parent_id = down.id WHERE down.depth < 64) \
         SELECT id FROM down",
    )
    .bind(id.to_string())
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(|row| uuid_at(row, "id")).collect()
}

/// Inserts a team.
pub async fn create_team(
    db: &Db,
    org_id: Uuid,
    department_id: Option<Uuid>,
    name: &str,
    slug: &str,
) -> Result<Team, StoreError> {
    let team = Team {
        id: Uuid::now_v7(),
        org_id,
        department_id,
        name: name.to_owned(),
        slug: slug.to_owned(),
        created_at: timestamp::format(timestamp::now()),
    };
    sqlx::query(
        "INSERT INTO teams (id, org_id, department_id, name, slug, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(team.id.to_string())
    .bind(org_id.to_string())
    .bind(department_id.map(|d| d.to_string()))
    .bind(name)
    .bind(slug)
    .bind(&team.created_at)
    .execute(db.pool())
    .await?;
    Ok(team)
}

const TEAM_COLUMNS: &str = "id, org_id, department_id, name, slug, created_at";

/// The team `id`.
pub async fn team(db: &Db, id: Uuid) -> Result<Option<Team>, StoreError> {
    let sql = format!("SELECT {TEAM_COLUMNS} FROM teams WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(decode_team).transpose()
}

/// Teams of `org_id`, optionally only those whose slug is `slug`.
pub async fn teams(db: &Db, org_id: Uuid, slug: Option<&str>) -> Result<Vec<Team>, StoreError> {
    let sql = format!(
        "SELECT {TEAM_COLUMNS} FROM teams WHERE org_id = $1 AND ($2 = '' OR slug = $2) ORDER BY id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org_id.to_string())
        .bind(slug.unwrap_or("").to_owned())
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(decode_team).collect()
}

/// Renames and/or moves a team.
pub async fn update_team(
    db: &Db,
    id: Uuid,
    name: &str,
    department_id: Option<Uuid>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE teams SET name = $1, department_id = $2 WHERE id = $3")
        .bind(name)
        .bind(department_id.map(|d| d.to_string()))
        .bind(id.to_string())
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Whether the team still owns workspaces.
pub async fn team_has_workspaces(db: &Db, id: Uuid) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT id FROM workspaces WHERE team_id = $1 LIMIT 1")
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    Ok(row.is_some())
}

/// Deletes a team (no workspaces) and the grants (memberships) on it.
pub async fn delete_team(db: &Db, id: Uuid) -> Result<(), StoreError> {
    let mut tx = db.pool().begin().await?;
    sqlx::query("DELETE FROM grants WHERE scope_kind = 'team' AND scope_id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM teams WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Ids of the teams in any of `departments`.
pub async fn teams_in(db: &Db, departments: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
    let mut ids = Vec::new();
    for department in departments {
        let rows = sqlx::query("SELECT id FROM teams WHERE department_id = $1")
            .bind(department.to_string())
            .fetch_all(db.pool())
            .await?;
        for row in &rows {
            ids.push(uuid_at(row, "id")?);
        }
    }
    Ok(ids)
}

/// Inserts a workspace.
pub async fn create_workspace(db: &Db, team: &Team, name: &str) -> Result<Workspace, StoreError> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO workspaces (id, org_id, team_id, name, task_statuses, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id.to_string())
    .bind(team.org_id.to_string())
    .bind(team.id.to_string())
    .bind(name)
    .bind(DEFAULT_STATUSES)
    .bind(timestamp::format(timestamp::now()))
    .execute(db.pool())
    .await?;
    workspace(db, id)
        .await?
        .ok_or_else(|| StoreError::Internal("workspace vanished".into()))
}

const WORKSPACE_COLUMNS: &str = "id, org_id, team_id, name, task_statuses, created_at";

/// The workspace `id`.
pub async fn workspace(db: &Db, id: Uuid) -> Result<Option<Workspace>, StoreError> {
    let sql = format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(decode_workspace).transpose()
}

/// Workspaces of an organization, a team, or every one (`None`), as ids.
pub async fn workspace_ids(
    db: &Db,
    org_id: Option<Uuid>,
    team_id: Option<Uuid>,
) -> Result<Vec<Uuid>, StoreError> {
    let rows = sqlx::query(
        "SELECT id FROM workspaces WHERE ($1 = '' OR org_id = $1) AND ($2 = '' OR team_id = $2)",
    )
    .bind(org_id.map(|o| o.to_string()).unwrap_or_default())
    .bind(team_id.map(|t| t.to_string()).unwrap_or_default())
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(|row| uuid_at(row, "id")).collect()
}

/// Renames a workspace and/or sets its workflow.
pub async fn update_workspace(
    db: &Db,
    id: Uuid,
    name: &str,
    statuses: &[String],
) -> Result<(), StoreError> {
    sqlx::query("UPDATE workspaces SET name = $1, task_statuses = $2 WHERE id = $3")
        .bind(name)
        .bind(statuses.join(","))
        .bind(id.to_string())
        .execute(db.pool())
        .await?;
    Ok(())
}

fn decode_department(row: &AnyRow) -> Result<Department, StoreError> {
    Ok(Department {
        id: uuid_at(row, "id")?,
        org_id: uuid_at(row, "org_id")?,
        parent_id: opt_uuid_at(row, "parent_id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

fn decode_team(row: &AnyRow) -> Result<Team, StoreError> {
    Ok(Team {
        id: uuid_at(row, "id")?,
        org_id: uuid_at(row, "org_id")?,
        department_id: opt_uuid_at(row, "department_id")?,
        name: row.try_get("name")?,
        slug: row.try_get("slug")?,
        created_at: row.try_get("created_at")?,
    })
}

fn decode_workspace(row: &AnyRow) -> Result<Workspace, StoreError> {
    let statuses: String = row.try_get("task_statuses")?;
    Ok(Workspace {
        id: uuid_at(row, "id")?,
        org_id: uuid_at(row, "org_id")?,
        team_id: uuid_at(row, "team_id")?,
        name: row.try_get("name")?,
        task_statuses: statuses.split(',').map(str::to_owned).collect(),
        created_at: row.try_get("created_at")?,
    })
}

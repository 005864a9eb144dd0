//! The `roles` and `role_permissions` tables; built-in roles' permissions come from
//! [`crate::authz::permission`].

use std::collections::BTreeSet;

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{StoreError, opt_uuid_at};
use crate::Db;
use crate::authz::permission;
use crate::timestamp;

/// Longest `extends` chain followed (custom roles can only extend existing roles, so
/// chains cannot cycle; this bounds a corrupt database).
const MAX_DEPTH: usize = 32;

/// A role: built-in (`org_id` null, id = name) or custom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Role {
    /// `owner`, `admin`, `member`, `guest`, or a UUID for custom roles.
    pub id: String,
    /// Null for built-in roles.
    pub org_id: Option<Uuid>,
    /// Unique within the organization.
    pub name: String,
    /// The role this one extends (inherits every permission of).
    pub extends: Option<String>,
    /// Every permission the role holds, inherited ones included, sorted.
    pub permissions: Vec<String>,
}

/// Inserts a custom role of `org_id`.
pub async fn create(
    db: &Db,
    org_id: Uuid,
    name: &str,
    extends: Option<&str>,
    permissions: &[String],
) -> Result<Role, StoreError> {
    let id = Uuid::now_v7().to_string();
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "INSERT INTO roles (id, org_id, name, extends_id, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(org_id.to_string())
    .bind(name)
    .bind(extends.map(str::to_owned))
    .bind(timestamp::format(timestamp::now()))
    .execute(&mut *tx)
    .await?;
    for permission in permissions.iter().collect::<BTreeSet<_>>() {
        sqlx::query("INSERT INTO role_permissions (role_id, permission) VALUES ($1, $2)")
            .bind(&id)
            .bind(permission)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    get(db, &id)
        .await?
        .ok_or_else(|| StoreError::Internal("role vanished".into()))
}

/// The role `id` with its effective permissions.
pub async fn get(db: &Db, id: &str) -> Result<Option<Role>, StoreError> {
    let row = sqlx::query("SELECT id, org_id, name, extends_id FROM roles WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    match row {
        Some(row) => Ok(Some(decode(db, &row).await?)),
        None => Ok(None),
    }
}

/// The built-in roles and the custom roles of `org_id`.
pub async fn list(db: &Db, org_id: Uuid) -> Result<Vec<Role>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, org_id, name, extends_id FROM roles \
         WHERE org_id IS NULL OR org_id = $1 ORDER BY created_at, id",
    )
    .bind(org_id.to_string())
    .fetch_all(db.pool())
    .await?;
    let mut roles = Vec::with_capacity(rows.len());
    for row in &rows {
        roles.push(decode(db, row).await?);
    }
    Ok(roles)
}

/// Every permission of `role_id`, following `extends` to the root.
pub async fn effective_permissions(db: &Db, role_id: &str) -> Result<BTreeSet<String>, StoreError> {
    let mut permissions = BTreeSet::new();
    let mut next = Some(role_id.to_owned());
    for _ in 0..MAX_DEPTH {
        let Some(id) = next.take() else { break };
        if let Some(builtin) = permission::builtin_grants(&id) {
            permissions.extend(builtin.iter().map(|p| (*p).to_owned()));
        } else {
            let rows = sqlx::query("SELECT permission FROM role_permissions WHERE role_id = $1")
                .bind(&id)
                .fetch_all(db.pool())
                .await?;
            for row in &rows {
                permissions.insert(row.try_get("permission")?);
            }
        }
        next =
            sqlx::query_scalar::<_, Option<String>>("SELECT extends_id FROM roles WHERE id = $1")
                .bind(&id)
                .fetch_optional(db.pool())
                .await?
                .flatten();
    }
    Ok(permissions)
}

async fn decode(db: &Db, row: &AnyRow) -> Result<Role, StoreError> {
    let id: String = row.try_get("id")?;
    let permissions = effective_permissions(db, &id).await?.into_iter().collect();
    Ok(Role {
        org_id: opt_uuid_at(row, "org_id")?,
        name: row.try_get("name")?,
        extends: row.try_get("extends_id")?,
        permissions,
        id,
    })
}

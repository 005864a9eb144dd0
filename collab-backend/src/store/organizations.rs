//! The `organizations` table.

use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{Page, StoreError, decode_id};
use crate::Db;
use crate::domain::organization::{NewOrganization, Organization};
use crate::timestamp;

/// Inserts `new` with a fresh UUID v7 id and the current time.
///
/// # Errors
/// [`StoreError::Conflict`] when the slug is taken.
pub async fn create(db: &Db, new: &NewOrganization) -> Result<Organization, StoreError> {
    let organization = Organization {
        id: Uuid::now_v7(),
        name: new.name().to_owned(),
        slug: new.slug().to_owned(),
        created_at: timestamp::now(),
    };
    sqlx::query("INSERT INTO organizations (id, name, slug, created_at) VALUES ($1, $2, $3, $4)")
        .bind(organization.id.to_string())
        .bind(&organization.name)
        .bind(&organization.slug)
        .bind(timestamp::format(organization.created_at))
        .execute(db.pool())
        .await?;
    Ok(organization)
}

/// The organization with `id`, if any.
pub async fn get(db: &Db, id: Uuid) -> Result<Option<Organization>, StoreError> {
    let row = sqlx::query("SELECT id, name, slug, created_at FROM organizations WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(decode).transpose()
}

/// Up to `limit` organizations in id (creation) order, starting after `after`.
///
/// The cursor of the returned page is the last id on it; one extra row is fetched to
/// tell whether another page exists.
pub async fn list(
    db: &Db,
    limit: u32,
    after: Option<Uuid>,
) -> Result<Page<Organization>, StoreError> {
    let fetch = i64::from(limit) + 1;
    let rows = match after {
        Some(after) => {
            sqlx::query(
                "SELECT id, name, slug, created_at FROM organizations \
                 WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after.to_string())
            .bind(fetch)
            .fetch_all(db.pool())
            .await?
        }
        None => {
            sqlx::query("SELECT id, name, slug, created_at FROM organizations ORDER BY id LIMIT $1")
                .bind(fetch)
                .fetch_all(db.pool())
                .await?
        }
    };
    let mut items = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|last| last.id.to_string())
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

fn decode(row: &AnyRow) -> Result<Organization, StoreError> {
    let id: String = row.try_get("id")?;
    let created_at: String = row.try_get("created_at")?;
    Ok(Organization {
        id: decode_id(&id)?,
        name: row.try_get("name")?,
        slug: row.try_get("slug")?,
        created_at: timestamp::parse(&created_at)
            .map_err(|e| StoreError::corrupt("created_at", e))?,
    })
}

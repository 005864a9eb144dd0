//! The `files`, `file_versions` and `file_shares` tables.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::tasks::placeholders;
use super::{Page, StoreError, paginate, uuid_at};
use crate::Db;

/// A file as served: its metadata and its current version's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct File {
    /// UUID v7.
    pub id: Uuid,
    /// The workspace it belongs to.
    pub workspace_id: Uuid,
    /// The uploaded name, cleaned (no path, no control characters); metadata only.
    pub name: String,
    /// The current version (1 for the first upload); the `ETag` is `"<version>"`.
    pub version: i64,
    /// Size of the current version in bytes.
    pub size: i64,
    /// Sniffed from the current version's bytes.
    pub content_type: String,
    /// Lowercase hex SHA-256 of the current version.
    pub sha256: String,
    /// Who uploaded the first version.
    pub created_by: Uuid,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: when the current version was made.
    pub updated_at: String,
}

/// One version of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FileVersion {
    /// 1, 2, … in upload order.
    pub version: i64,
    /// Bytes.
    pub size: i64,
    /// Sniffed from the bytes.
    pub content_type: String,
    /// Lowercase hex SHA-256, verified on every download.
    pub sha256: String,
    /// For a restore: the version whose content this one repeats.
    pub restored_from: Option<i64>,
    /// Who made it.
    pub uploaded_by: Uuid,
    /// RFC 3339.
    pub created_at: String,
    /// The storage object (internal).
    #[serde(skip)]
    pub object_id: Uuid,
}

/// A share of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FileShare {
    /// UUID v7.
    pub id: Uuid,
    /// The shared file.
    pub file_id: Uuid,
    /// `user` or `workspace` (every reader of that workspace).
    pub target_kind: String,
    /// The user or workspace id.
    pub target_id: Uuid,
    /// `read` (download, list versions) or `write` (also upload and restore versions).
    pub access: String,
    /// Whether the holder may share the file on (never beyond what they hold).
    pub reshare: bool,
    /// Who shared it.
    pub granted_by: Uuid,
    /// RFC 3339.
    pub created_at: String,
}

const FILE_COLUMNS: &str = "f.id, f.workspace_id, f.name, f.version, f.created_by, f.created_at, \
                            f.updated_at, v.size, v.content_type, v.sha256";
const FILE_JOIN: &str =
    "files f JOIN file_versions v ON v.file_id = f.id AND v.version = f.version";
const VERSION_COLUMNS: &str =
    "version, object_id, size, content_type, sha256, restored_from, uploaded_by, created_at";
const SHARE_COLUMNS: &str =
    "id, file_id, target_kind, target_id, access, reshare, granted_by, created_at";

/// Inserts a new file with its first `version`.
pub async fn insert(
    tx: &mut sqlx::AnyConnection,
    file: &File,
    version: &FileVersion,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO files (id, workspace_id, name, version, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(file.id.to_string())
    .bind(file.workspace_id.to_string())
    .bind(&file.name)
    .bind(version.version)
    .bind(file.created_by.to_string())
    .bind(&file.created_at)
    .bind(&file.updated_at)
    .execute(&mut *tx)
    .await?;
    insert_version(tx, file.id, version).await
}

async fn insert_version(
    tx: &mut sqlx::AnyConnection,
    file_id: Uuid,
    v: &FileVersion,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO file_versions (file_id, version, object_id, size, content_type, sha256, \
         restored_from, uploaded_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(file_id.to_string())
    .bind(v.version)
    .bind(v.object_id.to_string())
    .bind(v.size)
    .bind(&v.content_type)
    .bind(&v.sha256)
    .bind(v.restored_from)
    .bind(v.uploaded_by.to_string())
    .bind(&v.created_at)
    .execute(tx)
    .await?;
    Ok(())
}

/// Adds `v` as the next version of `file_id` (its `version` field is ignored and the
/// number given is returned), if the current version is still `expected` (when given);
/// `None` when it is not, or the file is gone.
pub async fn add_version(
    db: &Db,
    file_id: Uuid,
    expected: Option<i64>,
    mut v: FileVersion,
) -> Result<Option<FileVersion>, StoreError> {
    let mut tx = db.pool().begin().await?;
    // The conditional bump takes the row's write lock: concurrent uploads get
    // consecutive numbers, and a stale If-Match finds no row.
    let row = sqlx::query(
        "UPDATE files SET version = version + 1, updated_at = $1 \
         WHERE id = $2 AND ($3 < 0 OR version = $3) RETURNING version",
    )
    .bind(&v.created_at)
    .bind(file_id.to_string())
    .bind(expected.unwrap_or(-1))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    v.version = row.try_get("version")?;
    insert_version(&mut tx, file_id, &v).await?;
    tx.commit().await?;
    Ok(Some(v))
}

/// The file `id`.
pub async fn get(db: &Db, id: Uuid) -> Result<Option<File>, StoreError> {
    let sql = format!("SELECT {FILE_COLUMNS} FROM {FILE_JOIN} WHERE f.id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(decode_file).transpose()
}

/// The workspace of file `id`.
pub async fn workspace_of(db: &Db, id: Uuid) -> Result<Option<Uuid>, StoreError> {
    let row = sqlx::query("SELECT workspace_id FROM files WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.as_ref()
        .map(|row| uuid_at(row, "workspace_id"))
        .transpose()
}

/// A page of the files of `workspace_id`, in creation order.
pub async fn list(
    db: &Db,
    workspace_id: Uuid,
    limit: u32,
    after: Option<Uuid>,
) -> Result<Page<File>, StoreError> {
    let sql = format!(
        "SELECT {FILE_COLUMNS} FROM {FILE_JOIN} WHERE f.workspace_id = $1 AND f.id > $2 \
         ORDER BY f.id LIMIT $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(workspace_id.to_string())
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(i64::from(limit) + 1)
        .fetch_all(db.pool())
        .await?;
    let items = rows
        .iter()
        .map(decode_file)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(paginate(items, limit, |f| f.id))
}

/// Every version of `file_id`, oldest first.
pub async fn versions(db: &Db, file_id: Uuid) -> Result<Vec<FileVersion>, StoreError> {
    let sql =
        format!("SELECT {VERSION_COLUMNS} FROM file_versions WHERE file_id = $1 ORDER BY version");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(file_id.to_string())
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(decode_version).collect()
}

/// Version `version` of `file_id`.
pub async fn version(
    db: &Db,
    file_id: Uuid,
    version: i64,
) -> Result<Option<FileVersion>, StoreError> {
    let sql =
        format!("SELECT {VERSION_COLUMNS} FROM file_versions WHERE file_id = $1 AND version = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(file_id.to_string())
        .bind(version)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(decode_version).transpose()
}

/// Deletes file `id` with its versions, shares and comments if its version is still `expected`
/// (when given); the storage objects it referenced (for the caller to remove), or
/// `None` when it changed or is gone.
pub async fn delete(
    db: &Db,
    id: Uuid,
    expected: Option<i64>,
) -> Result<Option<Vec<Uuid>>, StoreError> {
    let mut tx = db.pool().begin().await?;
    let claimed = sqlx::query(
        "UPDATE files SET version = version WHERE id = $1 AND ($2 < 0 OR version = $2)",
    )
    .bind(id.to_string())
    .bind(expected.unwrap_or(-1))
    .execute(&mut *tx)
    .await?;
    if claimed.rows_affected() == 0 {
        return Ok(None);
    }
    let rows = sqlx::query("SELECT DISTINCT object_id FROM file_versions WHERE file_id = $1")
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
    let objects = rows
        .iter()
        .map(|row| uuid_at(row, "object_id"))
        .collect::<Result<Vec<_>, _>>()?;
    super::comments::delete_on(&mut tx, "file", id).await?;
    for sql in [
        "DELETE FROM file_shares WHERE file_id = $1",
        "DELETE FROM file_versions WHERE file_id = $1",
        "DELETE FROM files WHERE id = $1",
    ] {
        sqlx::query(sql)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Some(objects))
}

/// Inserts a share.
///
/// # Errors
/// [`StoreError::Conflict`] when the file is already shared with that target.
pub async fn insert_share(
    tx: &mut sqlx::AnyConnection,
    share: &FileShare,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO file_shares (id, file_id, target_kind, target_id, access, reshare, \
         granted_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(share.id.to_string())
    .bind(share.file_id.to_string())
    .bind(&share.target_kind)
    .bind(share.target_id.to_string())
    .bind(&share.access)
    .bind(i64::from(share.reshare))
    .bind(share.granted_by.to_string())
    .bind(&share.created_at)
    .execute(tx)
    .await?;
    Ok(())
}

/// The shares of `file_id`, oldest first.
pub async fn shares(db: &Db, file_id: Uuid) -> Result<Vec<FileShare>, StoreError> {
    let sql = format!("SELECT {SHARE_COLUMNS} FROM file_shares WHERE file_id = $1 ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(file_id.to_string())
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(decode_share).collect()
}

/// Deletes share `id` of `file_id`; false when there is no such share.
pub async fn delete_share(db: &Db, file_id: Uuid, id: Uuid) -> Result<bool, StoreError> {
    let result = sqlx::query("DELETE FROM file_shares WHERE id = $1 AND file_id = $2")
        .bind(id.to_string())
        .bind(file_id.to_string())
        .execute(db.pool())
        .await?;
    Ok(result.rows_affected() > 0)
}

/// The files shared directly with `user_id` or with any of `workspaces`.
pub async fn shared_with(
    db: &Db,
    user_id: Uuid,
    workspaces: &[Uuid],
) -> Result<Vec<File>, StoreError> {
    let sql = format!(
        "SELECT {FILE_COLUMNS} FROM {FILE_JOIN} WHERE f.id IN (SELECT file_id FROM file_shares \
         WHERE (target_kind = 'user' AND target_id = $1) \
         OR (target_kind = 'workspace' AND target_id IN ({}))) ORDER BY f.id",
        if workspaces.is_empty() {
            "''".to_owned()
        } else {
            placeholders(2, workspaces.len())
        }
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id.to_string());
    for ws in workspaces {
        query = query.bind(ws.to_string());
    }
    let rows = query.fetch_all(db.pool()).await?;
    rows.iter().map(decode_file).collect()
}

fn decode_file(row: &AnyRow) -> Result<File, StoreError> {
    Ok(File {
        id: uuid_at(row, "id")?,
        workspace_id: uuid_at(row, "workspace_id")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        size: row.try_get("size")?,
        content_type: row.try_get("content_type")?,
        sha256: row.try_get("sha256")?,
        created_by: uuid_at(row, "created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn decode_version(row: &AnyRow) -> Result<FileVersion, StoreError> {
    Ok(FileVersion {
        version: row.try_get("version")?,
        size: row.try_get("size")?,
        content_type: row.try_get("content_type")?,
        sha256: row.try_get("sha256")?,
        restored_from: row.try_get("restored_from")?,
        uploaded_by: uuid_at(row, "uploaded_by")?,
        created_at: row.try_get("created_at")?,
        object_id: uuid_at(row, "object_id")?,
    })
}

fn decode_share(row: &AnyRow) -> Result<FileShare, StoreError> {
    let reshare: i64 = row.try_get("reshare")?;
    Ok(FileShare {
        id: uuid_at(row, "id")?,
        file_id: uuid_at(row, "file_id")?,
        target_kind: row.try_get("target_kind")?,
        target_id: uuid_at(row, "target_id")?,
        access: row.try_get("access")?,
        reshare: reshare != 0,
        granted_by: uuid_at(row, "granted_by")?,
        created_at: row.try_get("created_at")?,
    })
}

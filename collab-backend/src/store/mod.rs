//! SQL access, one module per table family. Stores take a [`Db`](crate::Db), speak
//! dialect-neutral SQL through the `Any` driver, and return domain types or a
//! [`StoreError`] that says what the caller may tell a client.

pub mod audit;
pub mod comments;
pub mod email;
pub mod events;
pub mod files;
pub mod grants;
pub mod notifications;
pub mod organizations;
pub mod orgtree;
pub mod preferences;
pub mod reminders;
pub mod roles;
pub mod tasks;
pub mod tokens;
pub mod users;

use sqlx::Row;
use sqlx::any::AnyRow;
use sqlx::error::DatabaseError;
use sqlx::postgres::PgDatabaseError;
use sqlx::sqlite::SqliteError;
use uuid::Uuid;

/// A page of rows in a stable order, and the cursor for the next page, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// Rows of this page, in order.
    pub items: Vec<T>,
    /// Pass back to get the rows after this page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// What went wrong with a database call, classified for the API boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint rejected the write.
    #[error("unique constraint violated")]
    Conflict(#[source] sqlx::Error),
    /// The database cannot be reached or is overloaded; retrying later may work.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else: a bug, a schema mismatch, a corrupt row.
    #[error("database error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(error),
            sqlx::Error::Database(db) if is_transient(db.as_ref()) => {
                StoreError::Unavailable(error)
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error),
            _ => StoreError::Internal(Box::new(error)),
        }
    }
}

impl StoreError {
    /// A stored value that does not decode: the row is corrupt or the schema drifted.
    pub(crate) fn corrupt(
        what: &'static str,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Internal(format!("corrupt {what} in the database: {error}").into())
    }
}

/// Whether a database error means "not usable right now" rather than "this query is
/// wrong". The `Any` driver passes the backend's own error through, so its codes are
/// read per backend.
fn is_transient(error: &dyn DatabaseError) -> bool {
    let Some(code) = error.code() else {
        return false;
    };
    if error.try_downcast_ref::<PgDatabaseError>().is_some() {
        is_transient_sqlstate(&code)
    } else if error.try_downcast_ref::<SqliteError>().is_some() {
        is_transient_sqlite_code(&code)
    } else {
        false
    }
}

/// PostgreSQL SQLSTATE classes: 08 connection exception, 53 insufficient resources,
/// 57P operator intervention (shutdown, terminated); 3D000 database does not exist.
fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") || code == "3D000"
}

/// SQLite result codes 5 BUSY and 6 LOCKED, also as extended codes (primary in the low
/// byte).
fn is_transient_sqlite_code(code: &str) -> bool {
    code.parse::<u32>()
        .is_ok_and(|code| matches!(code & 0xff, 5 | 6))
}

fn decode_id(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::corrupt("id", e))
}

/// The UUID in text column `column`.
pub(crate) fn uuid_at(row: &AnyRow, column: &str) -> Result<Uuid, StoreError> {
    let text: String = row.try_get(column)?;
    decode_id(&text)
}

/// The UUID in nullable text column `column`.
pub(crate) fn opt_uuid_at(row: &AnyRow, column: &str) -> Result<Option<Uuid>, StoreError> {
    let text: Option<String> = row.try_get(column)?;
    text.as_deref().map(decode_id).transpose()
}

/// Ids per `IN (…)` list, and rows per multi-row `INSERT` of a few columns: well under
/// SQLite's 32,766 and PostgreSQL's 65,535 bind parameters per statement.
pub(crate) const IN_CHUNK: usize = 500;

/// Rows fetched per page when a list endpoint's `limit` is absent.
pub(crate) const DEFAULT_PAGE: u32 = 50;

/// Splits `limit + 1` fetched rows into a page and the cursor of its last row.
pub(crate) fn paginate<T>(mut items: Vec<T>, limit: u32, id: impl Fn(&T) -> Uuid) -> Page<T> {
    let limit = limit as usize;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| id(last).to_string())
    } else {
        None
    };
    Page { items, next_cursor }
}

#[cfg(test)]
mod tests {
    use super::{is_transient_sqlite_code, is_transient_sqlstate};

    #[test]
    fn transient_codes() {
        for code in ["08006", "08001", "57P01", "53300", "3D000"] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "22001", "40001"] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
        for code in ["5", "517", "6", "262"] {
            assert!(is_transient_sqlite_code(code), "{code}");
        }
        for code in ["1", "19", "2067", "787", "11"] {
            assert!(!is_transient_sqlite_code(code), "{code}");
        }
    }
}

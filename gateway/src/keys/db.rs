//! Opening the key store's database: one sqlx `Any` pool over SQLite or PostgreSQL,
//! set up as the collaboration backend sets up the same database (SQLite file created if
//! missing, WAL, a busy timeout, foreign keys on), and the gateway's own migrations.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, AnyPool, Executor};

use super::KeyStoreError;

/// The table that records which of the gateway's migrations ran. Not sqlx's default: the
/// collaboration backend keeps its own migrations in the same database, and sqlx refuses
/// to run when its table lists migrations the current migrator does not know.
pub const MIGRATIONS_TABLE: &str = "_aistack_gateway_migrations";

/// How long a SQLite connection waits on a locked database (the backend writes too).
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a query waits for a pooled connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite or PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A pool for `url` (`sqlite://PATH` or `postgres://…`) that connects on first use (so a
/// database that is down at start-up does not stop the gateway). Checks the URL and
/// creates the SQLite file's directory. Errors never contain the URL (it may hold a
/// password). Must run inside a tokio runtime.
pub fn pool(url: &str) -> Result<(AnyPool, Dialect), KeyStoreError> {
    sqlx::any::install_default_drivers();
    let scheme = url.split_once(':').map_or("", |(s, _)| s);
    let (dialect, url) = match scheme {
        "sqlite" => (Dialect::Sqlite, sqlite_url(url)?),
        "postgres" | "postgresql" => (Dialect::Postgres, url.to_owned()),
        _ => {
            return Err(KeyStoreError::Config(format!(
                "unsupported database URL scheme {:?}: expected sqlite://PATH or postgres://…",
                scheme.chars().take(32).collect::<String>()
            )));
        }
    };
    let mut options = AnyPoolOptions::new()
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .max_connections(4);
    if dialect == Dialect::Sqlite {
        options = options.after_connect(|conn, meta| Box::pin(configure_sqlite(conn, meta)));
    }
    Ok((options.connect_lazy(&url)?, dialect))
}

/// Once per pool, before its first query: WAL for SQLite, then the gateway's migrations.
pub async fn prepare(pool: &AnyPool, dialect: Dialect) -> Result<(), KeyStoreError> {
    if dialect == Dialect::Sqlite {
        // Stored in the file: once covers every connection (and the backend's).
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
            .fetch_one(pool)
            .await?;
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            tracing::warn!(journal_mode = %mode, "SQLite refused WAL mode; writers will block readers");
        }
    }
    let mut migrator: Migrator = match dialect {
        Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Dialect::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator.run(pool).await?;
    Ok(())
}

/// Per-connection SQLite settings (set explicitly so a driver upgrade cannot drift them).
async fn configure_sqlite(
    conn: &mut AnyConnection,
    _meta: PoolConnectionMetadata,
) -> Result<(), sqlx::Error> {
    let busy_ms = SQLITE_BUSY_TIMEOUT.as_millis();
    conn.execute(sqlx::AssertSqlSafe(format!(
        "PRAGMA busy_timeout = {busy_ms}"
    )))
    .await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    Ok(())
}

/// Checks a `sqlite:` URL, creates the file's directory, and asks sqlx to create the file
/// (`mode=rwc`) unless the URL names a mode itself.
fn sqlite_url(url: &str) -> Result<String, KeyStoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| KeyStoreError::Config(format!("invalid SQLite database URL: {e}")))?;
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let has_mode = query
        .split('&')
        .any(|p| p.split('=').next() == Some("mode"));
    if url.contains(":memory:") || has_mode {
        return Ok(url.to_owned());
    }
    if let Some(dir) = options.get_filename().parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            KeyStoreError::Config(format!(
                "cannot create the database directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}mode=rwc"))
}

//! The database handle: one sqlx `Any` pool over SQLite or PostgreSQL, its
//! connection settings, and this crate's embedded migrations.
//!
//! Queries are written once, with `$1, $2…` placeholders (both PostgreSQL and
//! sqlx's SQLite driver accept them) and only the types the `Any` driver knows
//! (`i64`, `f64`, `bool`, `String`, `Vec<u8>`). Ids are UUID v7 text, timestamps
//! RFC 3339 text with microseconds (the crate's `timestamp` module).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::pool::PoolConnectionMetadata;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, AnyPool, Executor};

/// The table that records which of this crate's migrations ran.
///
/// Not sqlx's default `_sqlx_migrations`: the gateway keeps its own tables (consumers,
/// API keys) in the same database with its own migrations, and sqlx refuses to run when
/// its table lists migrations the current migrator does not know.
pub const MIGRATIONS_TABLE: &str = "_aistack_collab_migrations";

/// How long a SQLite connection waits on a locked database before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request waits for a pooled connection before the database counts as
/// unavailable (503).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQL dialect behind a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// SQLite, the embedded single-machine default (`sqlite://PATH`).
    Sqlite,
    /// PostgreSQL, for several gateway nodes sharing one database (`postgres://…`).
    Postgres,
}

impl Dialect {
    /// The lowercase name reported by `/api/v1/healthz`: `"sqlite"` or `"postgres"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    /// The dialect named by a connection URL's scheme.
    fn from_url(url: &str) -> Result<Self, DbError> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme {
            "sqlite" => Ok(Dialect::Sqlite),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            _ => Err(DbError::UnsupportedUrl {
                // Only the scheme: the rest of the URL may carry a password.
                scheme: scheme.chars().take(32).collect(),
            }),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why [`Db::connect`] failed. Messages never contain the database URL (it may hold a
/// password); the underlying error is the [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is neither `sqlite:` nor `postgres:`/`postgresql:`.
    #[error("unsupported database URL scheme {scheme:?}: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl {
        /// The scheme found (empty when the URL has none).
        scheme: String,
    },
    /// A `sqlite:` URL sqlx cannot parse (unknown query parameter, bad mode, …).
    #[error("invalid SQLite database URL")]
    InvalidSqliteUrl(#[source] sqlx::Error),
    /// The directory that should hold the SQLite file could not be created.
    #[error("cannot create the database directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Opening the pool (or configuring a fresh connection) failed.
    #[error("cannot connect to the {dialect} database")]
    Connect {
        /// The dialect being connected to.
        dialect: Dialect,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// Running this crate's migrations failed; the database may be partly migrated.
    #[error("cannot migrate the {dialect} database")]
    Migrate {
        /// The dialect being migrated.
        dialect: Dialect,
        /// The migration error.
        #[source]
        source: MigrateError,
    },
}

/// A handle to the collaboration database: a connection pool that knows its dialect.
///
/// Cheap to clone (clones share the pool). Dropping the last clone does not wait for
/// connections to close; call [`Db::close`] for an orderly shutdown.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
    /// The directory of the SQLite file, if this is a file-backed SQLite database.
    sqlite_dir: Option<PathBuf>,
    /// The URL connected to, for a dedicated PostgreSQL `LISTEN` connection.
    url: RedactedUrl,
}

/// A connection URL whose `Debug` hides it (it may carry a password).
#[derive(Clone)]
struct RedactedUrl(String);

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Db {
    /// Connects to `database_url` and runs this crate's migrations for its dialect.
    ///
    /// - `sqlite://PATH` (relative to the working directory) or `sqlite:///ABSOLUTE/PATH`:
    ///   the file and its parent directories are created if missing (unless the URL sets
    ///   its own `mode=`); the database is switched to WAL; every connection gets a
    ///   5 s busy timeout, foreign keys on and `synchronous = NORMAL`.
    /// - `postgres://…` / `postgresql://…`: the database must exist.
    ///
    /// Migrations are recorded in [`MIGRATIONS_TABLE`]. Installs sqlx's default `Any`
    /// drivers on first use.
    ///
    /// # Errors
    /// [`DbError`] for an unsupported or invalid URL, a directory that cannot be created,
    /// a failed connection, or a failed migration.
    ///
    /// # Panics
    /// If some other code installed a non-default driver set with
    /// `sqlx::any::install_drivers` (sqlx allows one installation per process).
    pub async fn connect(database_url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_url(database_url)?;
        let (url, sqlite_dir) = match dialect {
            Dialect::Sqlite => prepare_sqlite_url(database_url)?,
            Dialect::Postgres => (database_url.to_owned(), None),
        };
        let pool = pool_options(dialect)
            .connect(&url)
            .await
            .map_err(|source| DbError::Connect { dialect, source })?;
        let db = Db {
            pool,
            dialect,
            sqlite_dir,
            url: RedactedUrl(url),
        };
        if dialect == Dialect::Sqlite {
            db.enable_wal().await?;
        }
        db.migrate().await?;
        Ok(db)
    }

    /// The dialect this handle speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes the pool: waits for checked-out connections to come back, then closes
    /// them all. Later queries through any clone fail (the API answers 503).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The directory holding the SQLite database file (`None` for PostgreSQL and
    /// in-memory SQLite): the default home of uploaded files.
    pub fn sqlite_dir(&self) -> Option<&Path> {
        self.sqlite_dir.as_deref()
    }

    /// The URL this handle connected to (with its password, if any: never log it).
    pub(crate) fn url(&self) -> &str {
        &self.url.0
    }

    /// The pool, for this crate's stores.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Runs a trivial `SELECT 1` round trip.
    pub(crate) async fn ping(&self) -> Result<(), sqlx::Error> {
        self.pool.execute("SELECT 1").await.map(drop)
    }

    /// WAL lets readers proceed while one writer writes. The journal mode is stored in
    /// the file, so setting it once here covers every connection; doing it per
    /// connection would need an exclusive lock that the busy timeout cannot wait for.
    async fn enable_wal(&self) -> Result<(), DbError> {
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
            .fetch_one(&self.pool)
            .await
            .map_err(|source| DbError::Connect {
                dialect: self.dialect,
                source,
            })?;
        // In-memory databases report "memory"; some file systems cannot do WAL.
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            tracing::warn!(journal_mode = %mode, "SQLite refused WAL mode; writers will block readers");
        }
        Ok(())
    }

    async fn migrate(&self) -> Result<(), DbError> {
        migrator(self.dialect)
            .run(&self.pool)
            .await
            .map_err(|source| DbError::Migrate {
                dialect: self.dialect,
                source,
            })
    }
}

/// This crate's migrations for `dialect`, recorded in [`MIGRATIONS_TABLE`].
fn migrator(dialect: Dialect) -> Migrator {
    let mut migrator = match dialect {
        Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Dialect::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    // "dangerous" only because renaming the table of an existing database would rerun
    // its migrations; this crate has used this name from its first migration on.
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

fn pool_options(dialect: Dialect) -> AnyPoolOptions {
    let options = AnyPoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
    match dialect {
        // An embedded file has no network to break a connection: the ping sqlx sends
        // before handing one out only doubles the round trips to its worker thread.
        Dialect::Sqlite => options
            .test_before_acquire(false)
            .after_connect(|conn, meta| Box::pin(configure_sqlite(conn, meta))),
        Dialect::Postgres => options,
    }
}

/// Per-connection SQLite settings: busy timeout and foreign keys (sqlx's defaults happen
/// to match today; setting them explicitly keeps them from drifting with a driver
/// upgrade), and `synchronous = NORMAL` (sqlx leaves SQLite's FULL).
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
    // In WAL mode NORMAL syncs at checkpoints instead of at every commit: a committed
    // transaction survives a crash of the process, and a power loss can only roll back
    // the last ones, never corrupt the file (SQLite's recommended setting for WAL).
    conn.execute("PRAGMA synchronous = NORMAL").await?;
    Ok(())
}

/// Validates a `sqlite:` URL, creates the file's parent directory and asks sqlx to create
/// the file (`mode=rwc`) unless the URL chose a mode itself.
/// Also returns the directory of the file (`None` in memory).
fn prepare_sqlite_url(url: &str) -> Result<(String, Option<PathBuf>), DbError> {
    let options = SqliteConnectOptions::from_str(url).map_err(DbError::InvalidSqliteUrl)?;
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let in_memory = url.contains(":memory:") || query_has(query, "mode", "memory");
    let dir = if in_memory {
        None
    } else {
        create_parent_dir(options.get_filename())?;
        let parent = options.get_filename().parent().map(Path::to_path_buf);
        Some(
            parent
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from(".")),
        )
    };
    if in_memory || query_has_key(query, "mode") {
        return Ok((url.to_owned(), dir));
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok((format!("{url}{separator}mode=rwc"), dir))
}

fn create_parent_dir(file: &Path) -> Result<(), DbError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })
        }
        _ => Ok(()),
    }
}

fn query_has_key(query: &str, key: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.split('=').next() == Some(key))
}

fn query_has(query: &str, key: &str, value: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.split_once('=') == Some((key, value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_comes_from_the_scheme() {
        assert_eq!(
            Dialect::from_url("sqlite://a.db").ok(),
            Some(Dialect::Sqlite)
        );
        assert_eq!(
            Dialect::from_url("sqlite::memory:").ok(),
            Some(Dialect::Sqlite)
        );
        assert_eq!(
            Dialect::from_url("postgres://u@h/d").ok(),
            Some(Dialect::Postgres)
        );
        assert_eq!(
            Dialect::from_url("postgresql://h/d").ok(),
            Some(Dialect::Postgres)
        );
        assert!(matches!(
            Dialect::from_url("mysql://root:secret@h/d"),
            Err(DbError::UnsupportedUrl { scheme }) if scheme == "mysql"
        ));
        assert!(Dialect::from_url("no-scheme").is_err());
    }

    #[test]
    fn sqlite_url_gets_create_mode_unless_it_has_one() -> Result<(), DbError> {
        let dir = std::env::temp_dir();
        let file = dir.join("aistack-collab-url-test.db");
        let url = format!("sqlite://{}", file.display());
        assert_eq!(prepare_sqlite_url(&url)?.0, format!("{url}?mode=rwc"));
        assert_eq!(prepare_sqlite_url(&url)?.1.as_deref(), Some(dir.as_path()));
        let read_only = format!("{url}?mode=ro");
        assert_eq!(prepare_sqlite_url(&read_only)?.0, read_only);
        assert_eq!(
            prepare_sqlite_url("sqlite::memory:")?,
            ("sqlite::memory:".to_owned(), None)
        );
        Ok(())
    }

    #[test]
    fn sqlite_url_with_unknown_parameter_is_rejected() {
        assert!(matches!(
            prepare_sqlite_url("sqlite://x.db?bogus=1"),
            Err(DbError::InvalidSqliteUrl(_))
        ));
    }
}

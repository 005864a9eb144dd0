//! The API key store: consumers (a unique name, tags, an optional group) and their API
//! keys, kept in the gateway's database beside the collaboration backend's tables (own
//! migrations, `migrations/{sqlite,postgres}`), and an in-memory cache the `key-auth`
//! filter reads through the foreign function `aistack.key_lookup` ([`lookup`]).
//!
//! - Keys are `ak_<id>_<secret>` ([`secret`]): the id is public (listings, URLs), only
//!   the SHA-256 digest of the whole key is stored, and a presented key is compared with
//!   its digest in constant time. The key itself is returned once, at creation.
//! - Every change bumps one version row in the same transaction. Each gateway node polls
//!   that row every [`POLL_INTERVAL`] and reloads its cache when it moved, so a key
//!   revoked through any node stops working on every node within a couple of seconds. A
//!   database outage keeps the last good cache (and is logged once, and its end too).
//! - Rotation creates a new key (valid at once, same consumer and scopes) and lets the
//!   old one live for a grace period.
//!
//! Start at [`KeyStore::open`]; the admin API's handlers are in `admin/keys.rs`.

mod cache;
mod db;
pub mod lookup;
pub mod secret;
mod store;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use sqlx::AnyPool;

pub use cache::{Cache, Entry, KeyCache, Lookup, Verdict};
pub use db::{Dialect, MIGRATIONS_TABLE};
pub use store::{ApiKey, Consumer, NewConsumer, NewKeyRequest};

/// How often each node asks the database whether consumers or keys changed.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Why a key store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// A bad database URL or directory (at start-up).
    #[error("{0}")]
    Config(String),
    /// The database failed or is unreachable.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The migrations failed.
    #[error("cannot migrate the key store: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// No such consumer or key (what was looked for).
    #[error("{0}")]
    NotFound(String),
    /// A consumer with that name exists.
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed (which field, why).
    #[error("{0}")]
    Invalid(String),
}

/// The store: a pool over the gateway's database and the cache the filter reads.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct KeyStore {
    pool: AnyPool,
    dialect: Dialect,
    cache: KeyCache,
    /// Set once the database was prepared (WAL, migrations); retried until it is.
    prepared: Arc<tokio::sync::OnceCell<()>>,
}

impl KeyStore {
    /// A store over the database at `url` (`sqlite://PATH`, created if missing, or
    /// `postgres://…`) filling `cache`. Nothing is connected yet: the first query connects,
    /// and runs the gateway's migrations, so a database that is down at start-up only
    /// delays the first load (lookups answer `unavailable` until then). Must run inside a
    /// tokio runtime.
    ///
    /// # Errors
    /// A bad URL, or a SQLite directory that cannot be created.
    pub fn new(url: &str, cache: KeyCache) -> Result<KeyStore, KeyStoreError> {
        let (pool, dialect) = db::pool(url)?;
        Ok(KeyStore {
            pool,
            dialect,
            cache,
            prepared: Arc::new(tokio::sync::OnceCell::new()),
        })
    }

    /// [`KeyStore::new`], then the first load of the cache.
    ///
    /// # Errors
    /// As `new`, and an unreachable database, failed migrations or a failed load.
    pub async fn open(url: &str, cache: KeyCache) -> Result<KeyStore, KeyStoreError> {
        let store = KeyStore::new(url, cache)?;
        store.refresh().await?;
        Ok(store)
    }

    /// The dialect of the database.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The cache this store fills.
    pub fn cache(&self) -> &KeyCache {
        &self.cache
    }

    /// Reloads the cache if the database's version moved since the last load; returns
    /// whether it reloaded.
    ///
    /// # Errors
    /// The database failed; the cache is left as it was.
    pub async fn refresh(&self) -> Result<bool, KeyStoreError> {
        let pool = self.pool().await?;
        let version = store::version(pool).await?;
        if self.cache.version() == Some(version) {
            return Ok(false);
        }
        let entries = store::load_entries(pool).await?;
        self.cache.replace(Cache::new(version, entries));
        Ok(true)
    }

    /// Refreshes the cache every [`POLL_INTERVAL`] until `stop` turns true. A failing
    /// database is logged when the failure starts and when it ends; the last good cache
    /// keeps answering meanwhile.
    pub async fn poll(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A cache never loaded means the caller saw (and logged) the first load fail.
        let mut failing = self.cache.version().is_none();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
            match self.refresh().await {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("key store: the database answers again; cache refreshed");
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(
                        "key store: cannot refresh the cache, keeping the last good one: {e}"
                    );
                }
                Err(_) => {}
            }
        }
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The pool, once the database is prepared (prepared on first use, retried after a
    /// failure).
    async fn pool(&self) -> Result<&AnyPool, KeyStoreError> {
        self.prepared
            .get_or_try_init(|| db::prepare(&self.pool, self.dialect))
            .await?;
        Ok(&self.pool)
    }
}

/// A new, empty cache handle (nothing loaded: lookups answer `unavailable`).
pub fn new_cache() -> KeyCache {
    KeyCache(Arc::new(ArcSwapOption::empty()))
}

/// Now, in Unix milliseconds (what the tables store).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A stored timestamp as RFC 3339 (UTC, milliseconds).
pub fn format_ms(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

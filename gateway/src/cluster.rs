//! Cluster-wide state in Redis: what gateway nodes share (DESIGN: "cluster-wide rate
//! limits … use Redis"). [`Redis`] is the client: the URL of `redis.url` or `REDIS_URL`,
//! keys under `redis.key_prefix`, every command bounded by `redis.timeout`. Filters reach
//! it through asynchronous foreign functions ([`register`]), never directly.
//!
//! Connections are made lazily, one per worker thread (a connection's I/O runs on the
//! thread that made it, as HTTP callouts do), and re-established by the `redis` crate's
//! connection manager when they break. After a failed connect a thread does not try again
//! for [`RETRY_AFTER`]: calls meanwhile fail at once instead of each waiting for a dead
//! server. Failures are logged at most once per [`LOG_EVERY`], with a count of those
//! left out.

mod rate_limit;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::wasm::ForeignFunctions;

pub use rate_limit::RATE_LIMIT_FUNCTION;

/// How long a thread waits after a failed connect before it tries again.
pub const RETRY_AFTER: Duration = Duration::from_millis(500);
/// Redis failures are logged at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A thread's connection to one [`Redis`], or when its last connect failed.
#[derive(Clone)]
enum Link {
    Up(ConnectionManager),
    Down(Instant),
}

thread_local! {
    /// This thread's connections, by [`Redis::id`].
    static LINKS: RefCell<HashMap<u64, Link>> = RefCell::new(HashMap::new());
    /// Held while this thread connects to a [`Redis`], by [`Redis::id`].
    static CONNECTING: RefCell<HashMap<u64, Arc<tokio::sync::Mutex<()>>>> =
        RefCell::new(HashMap::new());
}

/// The gateway's Redis: a parsed URL, the key prefix and the per-command timeout. Cheap to
/// share (`Arc`); connects on first use.
pub struct Redis {
    client: redis::Client,
    id: u64,
    prefix: String,
    timeout: Duration,
    errors: ErrorLog,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("Redis")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// A client of `url` (nothing is connected yet).
    ///
    /// # Errors
    /// The URL is not a Redis URL (the message does not repeat it: it may hold a password).
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Arc<Redis>, String> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let client = redis::Client::open(url)
            .map_err(|e| format!("invalid Redis URL (redis.url or REDIS_URL): {e}"))?;
        Ok(Arc::new(Redis {
            client,
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            prefix: prefix.to_owned(),
            timeout,
            errors: ErrorLog::default(),
        }))
    }

    /// The full key for `parts` under the configured prefix.
    fn key(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut key = self.prefix.as_bytes().to_vec();
        for part in parts {
            key.extend_from_slice(part);
        }
        key
    }

    /// This thread's connection, made now if there is none (and the last failure is not
    /// too recent). One connect at a time per thread: the calls that arrive meanwhile
    /// wait for it and share its outcome instead of each opening a connection.
    async fn connection(&self) -> Result<ConnectionManager, String> {
        if let Some(known) = self.known_link() {
            return known;
        }
        let gate =
            CONNECTING.with(|gates| Arc::clone(gates.borrow_mut().entry(self.id).or_default()));
        let _turn = gate.lock().await;
        if let Some(known) = self.known_link() {
            return known;
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let made = self.client.get_connection_manager_with_config(config).await;
        let link = match &made {
            Ok(connection) => Link::Up(connection.clone()),
            Err(_) => Link::Down(Instant::now()),
        };
        LINKS.with(|links| links.borrow_mut().insert(self.id, link));
        made.map_err(|e| format!("cannot connect to Redis: {e}"))
    }

    /// What this thread knows: a connection, a failure too recent to retry, or nothing.
    fn known_link(&self) -> Option<Result<ConnectionManager, String>> {
        match LINKS.with(|links| links.borrow().get(&self.id).cloned())? {
            Link::Up(connection) => Some(Ok(connection)),
            Link::Down(at) if at.elapsed() < RETRY_AFTER => Some(Err(
                "Redis is unreachable (the last connect failed just now)".into(),
            )),
            Link::Down(_) => None,
        }
    }

    /// Runs `op` on this thread's connection within the timeout (connecting included);
    /// a failure is logged (throttled) and returned as its message.
    async fn run<T, F>(&self, op: impl FnOnce(ConnectionManager) -> F) -> Result<T, String>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            let connection = self.connection().await?;
            op(connection).await.map_err(|e| format!("Redis: {e}"))
        };
        let result = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "Redis did not answer within {} ms",
                self.timeout.as_millis()
            )),
        };
        if let Err(why) = &result {
            self.errors.report(why);
        }
        result
    }
}

/// Registers the asynchronous foreign functions backed by `redis` (see
/// [`crate::wasm`]'s foreign-function docs): `aistack.rate_limit`.
pub fn register(functions: &mut ForeignFunctions, redis: &Arc<Redis>) {
    rate_limit::register(functions, Arc::clone(redis));
}

/// Logs Redis failures at most once per [`LOG_EVERY`], saying how many were left out.
#[derive(Default)]
struct ErrorLog {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl ErrorLog {
    fn report(&self, why: &str) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(Instant::now());
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(
            suppressed,
            "{why} (cluster features fall back to their configured policy; further \
             failures are logged at most every {} s)",
            LOG_EVERY.as_secs()
        );
    }
}

//! The in-memory side of the key store: every key's digest, consumer, scopes and
//! lifetime, by key id, swapped whole when the database changed. Lookups are lock-free
//! reads from any thread (the filter calls them inside a guest call on a proxy thread).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::secret;

/// What the cache holds of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key_id: String,
    pub digest: [u8; 32],
    pub consumer_id: String,
    pub consumer_name: String,
    pub group: Option<String>,
    pub scopes: Vec<String>,
    /// Unix milliseconds; `None`: never.
    pub expires_at: Option<i64>,
    /// Unix milliseconds; `None`: not revoked.
    pub revoked_at: Option<i64>,
}

/// One loaded state of the tables.
#[derive(Debug)]
pub struct Cache {
    version: i64,
    entries: HashMap<String, Entry>,
}

impl Cache {
    pub fn new(version: i64, entries: Vec<Entry>) -> Cache {
        let entries = entries.into_iter().map(|e| (e.key_id.clone(), e)).collect();
        Cache { version, entries }
    }

    /// How many keys are loaded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is loaded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A shared handle to the current [`Cache`] (none before the first load).
#[derive(Clone, Debug)]
pub struct KeyCache(pub(super) Arc<ArcSwapOption<Cache>>);

/// Why a key is or is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// Not a key of ours, or the secret does not match.
    Unknown,
    Expired,
    Revoked,
    /// The cache was never loaded.
    Unavailable,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Unknown => "unknown",
            Verdict::Expired => "expired",
            Verdict::Revoked => "revoked",
            Verdict::Unavailable => "unavailable",
        }
    }
}

/// The answer for a presented key: the verdict, and the entry when it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub verdict: Verdict,
    pub entry: Option<Entry>,
}

impl KeyCache {
    pub(super) fn version(&self) -> Option<i64> {
        self.0.load().as_ref().map(|c| c.version)
    }

    pub(super) fn replace(&self, cache: Cache) {
        self.0.store(Some(Arc::new(cache)));
    }

    /// How many keys are loaded (`None` before the first load).
    pub fn loaded_keys(&self) -> Option<usize> {
        self.0.load().as_ref().map(|c| c.len())
    }

    /// Judges a presented key at `now_ms` (Unix milliseconds). The entry is found by the
    /// key's public id; the digest of what was presented is compared with the stored
    /// one in constant time. A revoked or expired key is only reported as such when the
    /// secret matched (a guess learns nothing).
    pub fn lookup(&self, presented: &str, now_ms: i64) -> Lookup {
        self.lookup_with(presented, now_ms, |verdict, entry| Lookup {
            verdict,
            entry: entry.cloned(),
        })
    }

    /// [`lookup`](Self::lookup) without copying the entry: `f` sees the verdict and, for
    /// a valid key, the entry as the cache holds it.
    pub fn lookup_with<R>(
        &self,
        presented: &str,
        now_ms: i64,
        f: impl FnOnce(Verdict, Option<&Entry>) -> R,
    ) -> R {
        let guard = self.0.load();
        let Some(cache) = guard.as_ref() else {
            return f(Verdict::Unavailable, None);
        };
        let Some(entry) = secret::id_of(presented).and_then(|id| cache.entries.get(id)) else {
            return f(Verdict::Unknown, None);
        };
        if !secret::constant_time_eq(&secret::digest(presented), &entry.digest) {
            return f(Verdict::Unknown, None);
        }
        let verdict = if entry.revoked_at.is_some_and(|at| at <= now_ms) {
            Verdict::Revoked
        } else if entry.expires_at.is_some_and(|at| at <= now_ms) {
            Verdict::Expired
        } else {
            Verdict::Valid
        };
        f(verdict, (verdict == Verdict::Valid).then_some(entry))
    }
}

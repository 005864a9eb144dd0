//! The limiter state in Proxy-Wasm shared data, exact across every worker thread: each
//! check reads an entry with its cas token, decides, and writes back with that token,
//! retrying on `CasMismatch`.
//!
//! Why shards and not one entry per key: Proxy-Wasm shared data has no create-if-absent
//! (an absent entry accepts any cas), so two threads that both find a fresh key absent
//! would both write it and one request would go uncounted. The entries are therefore
//! created up front, in `on_configure` (which the first VM of a configuration runs when
//! the config loads, before any request can reach it): [`SHARDS`] entries per
//! configuration, named `rate-limit/<config hash>/<shard>`. Each holds the records of the
//! keys hashed to it (route name + limit key), and only ever changes by compare-and-swap.
//!
//! Value layout: a version byte, then records of `key length (u16 LE), key, 3 × u64 LE`,
//! least recently updated first. Records that say no more than an absent key (a full
//! bucket, a past window) are dropped on every write; past [`MAX_RECORDS`] the least
//! recently updated are dropped too.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, Status};

use crate::config::Algorithm;
use crate::limiter::{self, State, Verdict};

/// Shard entries per configuration.
pub const SHARDS: u64 = 32;
/// Records one shard keeps (so at most 32,768 keys are tracked per configuration).
const MAX_RECORDS: usize = 1024;
/// Compare-and-swap attempts before giving up (and admitting the request).
const MAX_ATTEMPTS: usize = 256;
/// Longest key stored as it is; longer ones are stored by their hash.
const MAX_KEY: usize = 256;
const VERSION: u8 = 1;
const RECORD_STATE: usize = 24;

/// The shard entries of one configuration.
pub struct Store {
    /// The entries' names, by shard (made once: formatting is not free in a VM).
    names: Vec<String>,
}

impl Store {
    /// The store of the configuration whose JSON is `config`.
    pub fn new(config: &[u8]) -> Store {
        let prefix = format!("rate-limit/{:016x}", fnv1a(config));
        Store {
            names: (0..SHARDS)
                .map(|shard| format!("{prefix}/{shard}"))
                .collect(),
        }
    }

    /// Creates the shard entries that do not exist yet. Call from `on_configure`.
    pub fn create(&self) {
        for name in &self.names {
            if let Ok((None, None)) = hostcalls::get_shared_data(name) {
                let _ = hostcalls::set_shared_data(name, Some(&[VERSION]), None);
            }
        }
    }

    /// Counts one request under `key` at `now` (Unix nanoseconds).
    pub fn check(&self, alg: &Algorithm, key: &[u8], now: u64) -> Verdict {
        let hashed;
        let key = if key.len() > MAX_KEY {
            hashed = format!("#{:016x}", fnv1a(key));
            hashed.as_bytes()
        } else {
            key
        };
        // The remainder is below SHARDS, so it indexes `names`.
        let name = &self.names[(fnv1a(key) % SHARDS) as usize];
        let mut verdict = limiter::check(alg, None, now).0;
        for _ in 0..MAX_ATTEMPTS {
            let (value, cas) = match hostcalls::get_shared_data(name) {
                Ok(found) => found,
                Err(status) => {
                    log(&format!("reading {name}: {status:?}; request admitted"));
                    return verdict;
                }
            };
            if cas.is_none() {
                // Only if shared data was lost; the write below recreates the shard.
                log(&format!("{name} is missing; recreating it"));
            }
            let records = decode(value.as_deref().unwrap_or(&[VERSION]));
            let state = records.iter().find(|(k, _)| *k == key).map(|(_, s)| *s);
            let (v, new) = limiter::check(alg, state, now);
            verdict = v;
            let Some(new) = new else {
                // Refused: nothing changes, nothing to write.
                return verdict;
            };
            let kept = records
                .iter()
                .filter(|(k, s)| *k != key && !limiter::is_idle(alg, s, now));
            let value = encode(kept, (key, new));
            match hostcalls::set_shared_data(name, Some(&value), cas) {
                Ok(()) => return verdict,
                Err(Status::CasMismatch) => continue,
                Err(status) => {
                    log(&format!("writing {name}: {status:?}; request admitted"));
                    return verdict;
                }
            }
        }
        log(&format!(
            "{name}: {MAX_ATTEMPTS} compare-and-swap attempts failed; request admitted"
        ));
        verdict
    }
}

/// The records of a shard value; a malformed tail is ignored.
fn decode(value: &[u8]) -> Vec<(&[u8], State)> {
    let mut records = Vec::new();
    let Some((&VERSION, mut rest)) = value.split_first() else {
        return records;
    };
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let Some(record) = rest.get(2..2 + len + RECORD_STATE) else {
            break;
        };
        let (key, state) = record.split_at(len);
        let mut words = [0u64; 3];
        for (word, bytes) in words.iter_mut().zip(state.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(bytes);
            *word = u64::from_le_bytes(b);
        }
        records.push((key, words));
        rest = &rest[2 + len + RECORD_STATE..];
    }
    records
}

/// A shard value: `kept` (oldest first, the oldest dropped past [`MAX_RECORDS`]), then
/// `last`.
fn encode<'a>(kept: impl Iterator<Item = &'a (&'a [u8], State)>, last: (&[u8], State)) -> Vec<u8> {
    let kept: Vec<_> = kept.collect();
    let skip = (kept.len() + 1).saturating_sub(MAX_RECORDS);
    let mut out = vec![VERSION];
    let all = kept
        .into_iter()
        .skip(skip)
        .map(|(k, s)| (*k, *s))
        .chain(std::iter::once(last));
    for (key, state) in all {
        // Keys are at most MAX_KEY bytes (hashed beyond), so the length fits.
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key);
        for word in state {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }
    out
}

/// FNV-1a, 64 bits: stable across builds and platforms (std's hasher is not).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn log(message: &str) {
    let _ = hostcalls::log(LogLevel::Warn, &format!("rate-limit: {message}"));
}

#[cfg(test)]
mod tests;

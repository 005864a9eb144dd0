//! The introspection cache, in shared data so every worker thread (every VM of the filter)
//! shares it. Bounded by construction: `max_entries` slots, a token's slot chosen by its
//! hash (`<namespace>:<slot>`), a newer answer replacing whatever the slot held. An entry
//! names the token's SHA-256 (the token itself is never stored) and when it stops being
//! trusted; the namespace is a hash of the plugin configuration, so two routes asking two
//! authorization servers never read each other's answers.

use proxy_wasm::hostcalls;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// One cached answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// SHA-256 of the token, hex.
    pub token: String,
    /// Unix milliseconds after which the entry is stale.
    pub until_ms: u64,
    /// `None`: the token was inactive.
    pub claims: Option<Map<String, Value>>,
}

/// A token's place in the cache.
pub struct Slot {
    pub key: String,
    pub token: String,
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// Where `token` lives in the cache of `namespace` with `max_entries` slots.
pub fn slot(namespace: &str, max_entries: u32, token: &str) -> Slot {
    let digest = Sha256::digest(token.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let index = u64::from_le_bytes(first) % u64::from(max_entries.max(1));
    Slot {
        key: format!("oauth2-introspection:{namespace}:{index}"),
        token: hex(&digest),
    }
}

/// The fresh entry for the token at `slot`, if any.
pub fn get(slot: &Slot, now_ms: u64) -> Option<Entry> {
    let (bytes, _) = hostcalls::get_shared_data(&slot.key).ok()?;
    let entry: Entry = serde_json::from_slice(&bytes?).ok()?;
    (entry.token == slot.token && entry.until_ms > now_ms).then_some(entry)
}

/// Stores `entry` in its slot (replacing what was there). Best effort: a refused write
/// only costs a later call.
pub fn put(slot: &Slot, entry: &Entry) {
    if let Ok(bytes) = serde_json::to_vec(entry) {
        let _ = hostcalls::set_shared_data(&slot.key, Some(&bytes), None);
    }
}

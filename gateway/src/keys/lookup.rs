//! The foreign function `aistack.key_lookup`, through which the `key-auth` filter asks the
//! key store about a presented key (see `wasm/foreign.rs` for the registry).
//!
//! Argument: the presented key, as its bytes (UTF-8). Result: a JSON object,
//! `{"status": "valid", "key_id": …, "consumer": {"id": …, "name": …, "group": …|null},
//! "scopes": […], "expires_at": RFC 3339|null}` for a valid key, otherwise only
//! `{"status": S}` with S one of `unknown` (not a key, or a wrong secret), `expired`,
//! `revoked`, `unavailable` (the store has not loaded yet). A key that is not UTF-8
//! answers `unknown` too. Never fails otherwise.

use super::{KeyCache, format_ms, now_ms};
use crate::wasm::ForeignFunctions;

/// The function's registered name.
pub const NAME: &str = "aistack.key_lookup";

/// Registers [`NAME`] over `cache` in `registry`.
pub fn register(registry: &mut ForeignFunctions, cache: KeyCache) {
    registry.register(NAME, move |_, args| Ok(answer(&cache, args)));
}

/// The answer's JSON, serialized from borrowed fields (no `serde_json::Value` tree: this
/// runs on every request through key-auth).
#[derive(serde::Serialize)]
struct Answer<'a> {
    status: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    found: Option<Found<'a>>,
}

#[derive(serde::Serialize)]
struct Found<'a> {
    key_id: &'a str,
    consumer: Consumer<'a>,
    scopes: &'a [String],
    expires_at: Option<String>,
}

#[derive(serde::Serialize)]
struct Consumer<'a> {
    id: &'a str,
    name: &'a str,
    group: Option<&'a str>,
}

fn answer(cache: &KeyCache, args: &[u8]) -> Vec<u8> {
    let Ok(presented) = std::str::from_utf8(args) else {
        return br#"{"status":"unknown"}"#.to_vec();
    };
    cache.lookup_with(presented, now_ms(), |verdict, entry| {
        let answer = Answer {
            status: verdict.as_str(),
            found: entry.map(|e| Found {
                key_id: &e.key_id,
                consumer: Consumer {
                    id: &e.consumer_id,
                    name: &e.consumer_name,
                    group: e.group.as_deref(),
                },
                scopes: &e.scopes,
                expires_at: e.expires_at.map(format_ms),
            }),
        };
        serde_json::to_vec(&answer).unwrap_or_else(|_| br#"{"status":"unavailable"}"#.to_vec())
    })
}

//! Named host functions a filter reaches through `proxy_call_foreign_function`: the
//! gateway's word for what the Proxy-Wasm ABI has none for (DESIGN: "use
//! `proxy_call_foreign_function` with named, documented functions rather than inventing
//! new imports").
//!
//! Each function takes the call's argument bytes and returns result bytes, synchronously,
//! inside the guest call (so it must be quick: an in-memory lookup, a hash). Names are
//! `aistack.<name>`; an unknown name answers `NotFound` (as Envoy), bad arguments
//! `BadArgument`, a failing function `InternalFailure`. The registry is built once per
//! runtime, from [`RuntimeOptions::foreign_functions`](super::RuntimeOptions): the
//! gateway runs with the built-ins below; an embedder adds its own with
//! [`ForeignFunctions::register`] before it builds the runtime.
//!
//! # Functions
//!
//! - `aistack.sha256` — argument: any bytes; result: their SHA-256 digest (32 bytes).
//!   What the key-auth filter hashes a presented key with before a lookup, at native
//!   speed instead of a hash compiled into every filter.
//! - `aistack.hmac_sha256` — argument: a little-endian u32 key length, the key, then the
//!   message; result: HMAC-SHA256(key, message) (32 bytes). What HS256 JWT verification
//!   and signed-ticket checks need.
//! - `aistack.constant_time_eq` — argument: a little-endian u32 length of the first
//!   value, the first value, then the second; result: one byte, 1 if equal, else 0, in
//!   time that depends only on the lengths. What comparing a presented signature or
//!   secret against the expected one needs (a guest's `==` leaks timing).
//! - `aistack.upstream_exists` — argument: an upstream's name; result: one byte, 1 if the
//!   config has an upstream of that name with at least one target (one an HTTP callout
//!   may name), else 0. What a filter checks in `on_configure` to refuse a config naming
//!   an upstream that does not exist (the tracing filter's collector).
//! - `aistack.key_lookup` — argument: a presented API key (its bytes); result: JSON,
//!   `{"status":"valid","key_id","consumer":{"id","name","group"},"scopes":[…],
//!   "expires_at"}` or `{"status": "unknown" | "expired" | "revoked" | "unavailable"}`.
//!   The key store's in-memory lookup (digests compared in constant time), registered by
//!   the gateway where it builds the runtime options; the code is `crate::keys::lookup`.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::callout::CalloutUpstreams;

/// Why a foreign function failed (mapped to the ABI status by the host function).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForeignError {
    /// The arguments are malformed (`BadArgument`).
    BadArgument(String),
    /// The function could not do its work (`InternalFailure`).
    Failed(String),
}

/// What a foreign function knows of its caller.
#[derive(Debug, Clone, Copy)]
pub struct ForeignCaller<'a> {
    /// The plugin's name (under `plugins:`).
    pub plugin: &'a str,
    /// The upstreams its HTTP callouts may name.
    pub upstreams: &'a CalloutUpstreams,
}

/// A named host function.
pub type ForeignFunction =
    Arc<dyn Fn(ForeignCaller<'_>, &[u8]) -> Result<Vec<u8>, ForeignError> + Send + Sync>;

/// The registry of named host functions.
#[derive(Clone)]
pub struct ForeignFunctions {
    functions: HashMap<String, ForeignFunction>,
}

impl std::fmt::Debug for ForeignFunctions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.functions.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("ForeignFunctions")
            .field("names", &names)
            .finish()
    }
}

impl Default for ForeignFunctions {
    /// The built-in functions of the module docs.
    fn default() -> Self {
        let mut registry = ForeignFunctions {
            functions: HashMap::new(),
        };
        registry.register(
            "aistack.sha256",
            |_, args| Ok(Sha256::digest(args).to_vec()),
        );
        registry.register("aistack.hmac_sha256", |_, args| {
            let (key, message) = split_prefixed(args)?;
            Ok(hmac_sha256(key, message).to_vec())
        });
        registry.register("aistack.constant_time_eq", |_, args| {
            let (a, b) = split_prefixed(args)?;
            Ok(vec![u8::from(constant_time_eq(a, b))])
        });
        registry.register("aistack.upstream_exists", |caller, args| {
            let name = std::str::from_utf8(args)
                .map_err(|_| ForeignError::BadArgument("the name is not UTF-8".into()))?;
            Ok(vec![u8::from(caller.upstreams.contains(name))])
        });
        registry
    }
}

impl ForeignFunctions {
    /// Adds (or replaces) the function `name`.
    pub fn register(
        &mut self,
        name: &str,
        function: impl Fn(ForeignCaller<'_>, &[u8]) -> Result<Vec<u8>, ForeignError>
        + Send
        + Sync
        + 'static,
    ) {
        self.functions.insert(name.to_owned(), Arc::new(function));
    }

    /// The function `name`, if registered.
    pub(crate) fn get(&self, name: &[u8]) -> Option<&ForeignFunction> {
        std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.functions.get(n))
    }

    /// Every registered name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.functions.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// `u32 LE length, first, second`.
fn split_prefixed(args: &[u8]) -> Result<(&[u8], &[u8]), ForeignError> {
    let bad = || ForeignError::BadArgument("expected a u32 LE length, then two values".into());
    let (len, rest) = args.split_first_chunk::<4>().ok_or_else(bad)?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > rest.len() {
        return Err(bad());
    }
    Ok(rest.split_at(len))
}

/// HMAC-SHA256 (RFC 2104) over `sha2`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Equal-length inputs are compared in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn prefixed(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut args = (a.len() as u32).to_le_bytes().to_vec();
        args.extend_from_slice(a);
        args.extend_from_slice(b);
        args
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex(&mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn the_registry_calls_by_name() {
        let registry = ForeignFunctions::default();
        let upstreams = CalloutUpstreams::new([(
            "otel".to_owned(),
            vec!["127.0.0.1:4318".parse().expect("addr")],
            std::time::Duration::from_secs(1),
        )]);
        let caller = ForeignCaller {
            plugin: "p",
            upstreams: &upstreams,
        };
        assert_eq!(
            registry.names(),
            [
                "aistack.constant_time_eq",
                "aistack.hmac_sha256",
                "aistack.sha256",
                "aistack.upstream_exists"
            ]
        );
        let exists = registry
            .get(b"aistack.upstream_exists")
            .expect("registered");
        assert_eq!(exists(caller, b"otel"), Ok(vec![1]));
        assert_eq!(exists(caller, b"nope"), Ok(vec![0]));
        let sha = registry.get(b"aistack.sha256").expect("registered");
        assert_eq!(
            hex(&sha(caller, b"abc").expect("ok")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let eq = registry
            .get(b"aistack.constant_time_eq")
            .expect("registered");
        assert_eq!(eq(caller, &prefixed(b"abc", b"abc")), Ok(vec![1]));
        assert_eq!(eq(caller, &prefixed(b"abc", b"abd")), Ok(vec![0]));
        assert_eq!(eq(caller, &prefixed(b"abc", b"ab")), Ok(vec![0]));
        assert!(matches!(
            eq(caller, b"\x09\0\0\0abc"),
            Err(ForeignError::BadArgument(_))
        ));
        assert!(registry.get(b"aistack.nope").is_none());
    }
}

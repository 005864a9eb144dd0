//! Named host functions a filter reaches through `proxy_call_foreign_function`: the
//! gateway's word for what the Proxy-Wasm ABI has none for (DESIGN: "use
//! `proxy_call_foreign_function` with named, documented functions rather than inventing
//! new imports").
//!
//! Names are `aistack.<name>`; an unknown name answers `NotFound` (as Envoy), bad
//! arguments `BadArgument`, a failing synchronous function `InternalFailure`. The registry
//! is built once per runtime, from
//! [`RuntimeOptions::foreign_functions`](super::RuntimeOptions): the gateway runs with the
//! built-ins below; an embedder adds its own with [`ForeignFunctions::register`] or
//! [`ForeignFunctions::register_async`] before it builds the runtime.
//!
//! # Synchronous functions
//!
//! Registered with [`register`](ForeignFunctions::register): each takes the call's
//! argument bytes and returns result bytes inside the guest call (so it must be quick: an
//! in-memory lookup, a hash); the guest gets them as the call's result.
//!
//! # Asynchronous functions
//!
//! Registered with [`register_async`](ForeignFunctions::register_async), for work that
//! waits on the network (Redis). From an HTTP context only:
//!
//! 1. the guest calls `proxy_call_foreign_function(name, args)`; the function checks the
//!    arguments at once (`BadArgument` if they are malformed: an empty argument is never
//!    valid, which lets a filter probe whether the function exists, `NotFound` meaning
//!    it does not) and the call returns `Ok` with a 4-byte result: the call's id (u32
//!    LE), unique within the VM;
//! 2. the filter returns `Action::Pause` (or goes on: the answer is then delivered
//!    detached, without the request's headers, if the context still lives);
//! 3. the host runs the work on the request's thread, never blocking it, bounded by
//!    [`MAX_ASYNC_CALL`] (the function's own timeout is usually shorter);
//! 4. the host calls `proxy_on_foreign_function(context_id, call_id, size)` on the HTTP
//!    context that called (the SDK's `on_foreign_function(function_id, size)` — the
//!    `function_id` is the call's id), and during that callback the answer is readable as
//!    buffer type 8 (`CallData`) with `proxy_get_buffer_bytes`: one status byte, then
//!    the payload — [`ANSWER_OK`] then the function's result, [`ANSWER_FAILED`] then a
//!    UTF-8 reason, [`ANSWER_TIMED_OUT`] then nothing;
//! 5. the filter resumes (`proxy_continue_stream`) or answers (`send_http_response`), as
//!    after an HTTP callout. A context that is gone when the answer arrives (its request
//!    ended, its VM was replaced) never sees it.
//!
//! Every completed call is counted in `aistack_foreign_calls_total{function, outcome}`
//! (`ok`, `failed`, `timed_out`; `abandoned` when its context was gone), when the runtime
//! has a metrics registry.
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
//! - `aistack.rate_limit` (asynchronous; registered only when the gateway has a Redis
//!   URL, `redis.url` or `REDIS_URL`) — one rate-limit check performed atomically in
//!   Redis, shared by every gateway node: see [`crate::cluster`] for its argument and
//!   result layout.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

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

/// The work of an asynchronous function: its result bytes, or why it failed.
pub type ForeignFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, ForeignError>> + Send>>;

/// A named asynchronous host function: checks the arguments at once (an `Err` answers the
/// guest's call with `BadArgument` or `InternalFailure`), then returns the work to run.
pub type AsyncForeignFunction =
    Arc<dyn Fn(ForeignCaller<'_>, &[u8]) -> Result<ForeignFuture, ForeignError> + Send + Sync>;

/// Longest an asynchronous call may run before the host gives up on it (the guest then
/// gets [`ANSWER_TIMED_OUT`]).
pub const MAX_ASYNC_CALL: Duration = Duration::from_secs(10);
/// An asynchronous call's answer: the function's result follows.
pub const ANSWER_OK: u8 = 0;
/// An asynchronous call's answer: the function failed; a UTF-8 reason follows.
pub const ANSWER_FAILED: u8 = 1;
/// An asynchronous call's answer: it ran past [`MAX_ASYNC_CALL`].
pub const ANSWER_TIMED_OUT: u8 = 2;

/// The registry of named host functions.
#[derive(Clone)]
pub struct ForeignFunctions {
    functions: HashMap<String, ForeignFunction>,
    async_functions: HashMap<String, AsyncForeignFunction>,
    /// `aistack_foreign_calls_total{function, outcome}`, set by the runtime.
    pub(crate) calls: Option<prometheus::IntCounterVec>,
}

impl std::fmt::Debug for ForeignFunctions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForeignFunctions")
            .field("names", &self.names())
            .finish()
    }
}

impl Default for ForeignFunctions {
    /// The built-in functions of the module docs.
    fn default() -> Self {
        let mut registry = ForeignFunctions {
            functions: HashMap::new(),
            async_functions: HashMap::new(),
            calls: None,
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
    /// Adds (or replaces) the synchronous function `name`.
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

    /// Adds (or replaces) the asynchronous function `name` (see the module docs): it
    /// checks the arguments when called and returns the work, which the host runs on the
    /// calling request's thread and answers with `proxy_on_foreign_function`. A name
    /// registered both ways is the synchronous one.
    pub fn register_async(
        &mut self,
        name: &str,
        function: impl Fn(ForeignCaller<'_>, &[u8]) -> Result<ForeignFuture, ForeignError>
        + Send
        + Sync
        + 'static,
    ) {
        self.async_functions
            .insert(name.to_owned(), Arc::new(function));
    }

    /// The synchronous function `name`, if registered.
    pub(crate) fn get(&self, name: &[u8]) -> Option<&ForeignFunction> {
        std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.functions.get(n))
    }

    /// The asynchronous function `name`, if registered (and its name as registered).
    pub(crate) fn get_async(&self, name: &[u8]) -> Option<(&str, &AsyncForeignFunction)> {
        let name = std::str::from_utf8(name).ok()?;
        self.async_functions
            .get_key_value(name)
            .map(|(n, f)| (n.as_str(), f))
    }

    /// Every registered name, synchronous and asynchronous, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .functions
            .keys()
            .chain(self.async_functions.keys())
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Counts a completed asynchronous call of `function` (no-op without metrics).
    pub(crate) fn count(&self, function: &str, outcome: &str) {
        if let Some(calls) = &self.calls
            && let Ok(series) = calls.get_metric_with_label_values(&[function, outcome])
        {
            series.inc();
        }
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

    #[test]
    fn async_functions_check_their_arguments_at_once_and_list_with_the_rest() {
        let mut registry = ForeignFunctions::default();
        registry.register_async("aistack.echo_later", |_, args| {
            if args.is_empty() {
                return Err(ForeignError::BadArgument("empty".into()));
            }
            let args = args.to_vec();
            Ok(Box::pin(async move { Ok(args) }))
        });
        assert!(registry.names().contains(&"aistack.echo_later"));
        assert!(
            registry.get(b"aistack.echo_later").is_none(),
            "not a sync one"
        );
        let (name, start) = registry
            .get_async(b"aistack.echo_later")
            .expect("registered");
        assert_eq!(name, "aistack.echo_later");
        let upstreams = CalloutUpstreams::default();
        let caller = ForeignCaller {
            plugin: "p",
            upstreams: &upstreams,
        };
        assert!(matches!(
            start(caller, b""),
            Err(ForeignError::BadArgument(_))
        ));
        let work = start(caller, b"hi").expect("valid");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert_eq!(runtime.block_on(work), Ok(b"hi".to_vec()));
        assert!(registry.get_async(b"aistack.sha256").is_none());
    }
}

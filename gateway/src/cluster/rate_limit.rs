//! `aistack.rate_limit`: one rate-limit check, performed atomically in Redis by a Lua
//! script, so that every gateway node sharing the Redis enforces one limit. The script
//! reads Redis's own clock (`TIME`), so nodes need not agree on the time.
//!
//! # Argument (25 bytes, then the key)
//!
//! | bytes | meaning |
//! | --- | --- |
//! | 0 | algorithm: 0 token bucket, 1 fixed window, 2 sliding window |
//! | 1..9 | u64 LE: token bucket `rate`; windows `limit` (1 to 10⁹) |
//! | 9..17 | u64 LE: token bucket `per`; windows `window`; in milliseconds (1 ms to 1 day) |
//! | 17..25 | u64 LE: token bucket `burst` (1 to 10⁹); windows 0 |
//! | 25.. | the limit key (1 to 1024 bytes, any bytes) |
//!
//! Stored under `<redis.key_prefix>rate-limit:<algorithm>:<key>`, a hash that expires
//! once it says no more than an absent key would (a full bucket, a past window).
//!
//! # Result (33 bytes, after the answer's status byte)
//!
//! | bytes | meaning |
//! | --- | --- |
//! | 0 | 1 admitted, 0 refused |
//! | 1..9 | u64 LE `RateLimit-Limit` |
//! | 9..17 | u64 LE `RateLimit-Remaining` (after this request) |
//! | 17..25 | u64 LE `RateLimit-Reset`, seconds |
//! | 25..33 | u64 LE `Retry-After`, seconds (at least 1; meaningful when refused) |
//!
//! A Redis failure or timeout answers `ANSWER_FAILED` with the reason: the filter applies
//! its `on_redis_error` policy.

use std::sync::Arc;

use redis::Script;

use super::Redis;
use crate::wasm::{ForeignError, ForeignFunctions};

/// The function's name.
pub const RATE_LIMIT_FUNCTION: &str = "aistack.rate_limit";

const MAX_COUNT: u64 = 1_000_000_000;
const MAX_PERIOD_MS: u64 = 86_400_000;
const MAX_KEY: usize = 1024;
const HEADER: usize = 25;

/// KEYS[1]: the record. ARGV: algorithm, rate|limit, period (ms), burst.
/// Returns {admitted, limit, remaining, reset s, retry-after s}.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local alg = tonumber(ARGV[1])
local a = tonumber(ARGV[2])
local period = tonumber(ARGV[3]) * 1000
local key = KEYS[1]
-- Expiry in ms, at most two days (PEXPIRE wants an integer Lua still prints as one).
local function ttl(us) return math.min(math.ceil(us / 1000) + 1000, 172800000) end
if alg == 0 then
  local rate, cap = a, tonumber(ARGV[4])
  local st = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(st[1]) or cap
  local ts = tonumber(st[2]) or now
  if now > ts then tokens = math.min(cap, tokens + (now - ts) * rate / period) end
  local admitted = 0
  if tokens >= 1 then
    tokens = tokens - 1
    admitted = 1
    redis.call('HSET', key, 'tokens', string.format('%.9f', tokens), 'ts', string.format('%.0f', now))
    redis.call('PEXPIRE', key, ttl((cap - tokens) * period / rate))
  end
  local reset = math.ceil((cap - tokens) * period / rate / 1000000)
  local retry = 0
  if admitted == 0 then retry = math.ceil((1 - tokens) * period / rate / 1000000) end
  return {admitted, cap, math.floor(tokens), reset, math.max(1, retry)}
end
local limit, win = a, period
local idx = math.floor(now / win)
local elapsed = now - idx * win
local st = redis.call('HMGET', key, 'i', 'c', 'p')
local i = tonumber(st[1])
local cur, prev = 0, 0
if i == idx then
  cur = tonumber(st[2]) or 0
  prev = tonumber(st[3]) or 0
elseif alg == 2 and i == idx - 1 then
  prev = tonumber(st[2]) or 0
end
local until_end = win - elapsed
if alg == 1 then
  local admitted = 0
  if cur < limit then
    cur = cur + 1
    admitted = 1
    redis.call('HSET', key, 'i', string.format('%.0f', idx), 'c', cur, 'p', 0)
    redis.call('PEXPIRE', key, ttl(until_end))
  end
  local reset = math.ceil(until_end / 1000000)
  return {admitted, limit, limit - cur, reset, math.max(1, reset)}
end
local weighted = prev * (win - elapsed) / win + cur
local admitted = 0
if weighted + 1 <= limit then
  cur = cur + 1
  weighted = weighted + 1
  admitted = 1
  redis.call('HSET', key, 'i', string.format('%.0f', idx), 'c', cur, 'p', prev)
  redis.call('PEXPIRE', key, ttl(until_end + win))
end
local retry = 0
if admitted == 0 then
  if cur < limit then
    retry = win - (limit - cur - 1) * win / math.max(prev, 1) - elapsed
  else
    retry = until_end + win - (limit - 1) * win / math.max(cur, 1)
  end
end
return {admitted, limit, math.max(0, math.floor(limit - weighted)), math.ceil(until_end / 1000000), math.max(1, math.ceil(retry / 1000000))}
";

/// A checked argument.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Check {
    algorithm: u8,
    count: u64,
    period_ms: u64,
    burst: u64,
    key: Vec<u8>,
}

fn parse(args: &[u8]) -> Result<Check, ForeignError> {
    let bad = |why: &str| ForeignError::BadArgument(format!("{RATE_LIMIT_FUNCTION}: {why}"));
    let Some((head, key)) = args.split_at_checked(HEADER) else {
        return Err(bad("expected 25 bytes of limits, then the key"));
    };
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&head[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    let (algorithm, count, period_ms, burst) = (head[0], word(1), word(9), word(17));
    if algorithm > 2 {
        return Err(bad("unknown algorithm (0, 1 or 2)"));
    }
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(bad("rate or limit out of range"));
    }
    if !(1..=MAX_PERIOD_MS).contains(&period_ms) {
        return Err(bad("period out of range"));
    }
    if algorithm == 0 && !(1..=MAX_COUNT).contains(&burst) {
        return Err(bad("burst out of range"));
    }
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(bad("the key must have 1 to 1024 bytes"));
    }
    Ok(Check {
        algorithm,
        count,
        period_ms,
        burst,
        key: key.to_vec(),
    })
}

/// The result layout of the module docs.
fn encode(reply: [i64; 5]) -> Vec<u8> {
    let [admitted, limit, remaining, reset, retry] = reply.map(|v| u64::try_from(v).unwrap_or(0));
    let mut out = Vec::with_capacity(33);
    out.push(u8::from(admitted == 1));
    for value in [limit, remaining, reset, retry.max(1)] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

pub(super) fn register(functions: &mut ForeignFunctions, redis: Arc<Redis>) {
    let script = Arc::new(Script::new(SCRIPT));
    functions.register_async(RATE_LIMIT_FUNCTION, move |_, args| {
        let check = parse(args)?;
        Ok(Box::pin(run(
            Arc::clone(&redis),
            Arc::clone(&script),
            check,
        )))
    });
}

/// Runs the script for `check`: the result layout, or why Redis could not answer.
async fn run(
    redis: Arc<Redis>,
    script: Arc<Script>,
    check: Check,
) -> Result<Vec<u8>, ForeignError> {
    let tag = [b'0' + check.algorithm, b':'];
    let key = redis.key(&[b"rate-limit:", &tag, &check.key]);
    let reply: Vec<i64> = redis
        .run(|mut connection| async move {
            script
                .key(key)
                .arg(check.algorithm)
                .arg(check.count)
                .arg(check.period_ms)
                .arg(check.burst)
                .invoke_async(&mut connection)
                .await
        })
        .await
        .map_err(ForeignError::Failed)?;
    let reply = <[i64; 5]>::try_from(reply)
        .map_err(|_| ForeignError::Failed("the rate-limit script answered oddly".into()))?;
    Ok(encode(reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(algorithm: u8, count: u64, period_ms: u64, burst: u64, key: &[u8]) -> Vec<u8> {
        let mut out = vec![algorithm];
        for v in [count, period_ms, burst] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(key);
        out
    }

    #[test]
    fn arguments_are_checked_before_anything_is_sent() {
        let ok = parse(&args(0, 100, 60_000, 100, b"route\0ik")).expect("valid");
        assert_eq!(ok.key, b"route\0ik");
        for bad in [
            Vec::new(),
            args(3, 1, 1, 1, b"k"),
            args(0, 0, 1, 1, b"k"),
            args(1, 1, 0, 0, b"k"),
            args(0, 1, 1, 0, b"k"),
            args(2, 1, MAX_PERIOD_MS + 1, 0, b"k"),
            args(1, 1, 1, 0, b""),
            args(1, 1, 1, 0, &[b'k'; 1025]),
        ] {
            assert!(
                matches!(parse(&bad), Err(ForeignError::BadArgument(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_result_has_the_documented_layout() {
        let out = encode([1, 100, 99, 36, 1]);
        assert_eq!(out.len(), 33);
        assert_eq!(out[0], 1);
        assert_eq!(out[1..9], 100u64.to_le_bytes());
        assert_eq!(out[9..17], 99u64.to_le_bytes());
        assert_eq!(out[17..25], 36u64.to_le_bytes());
        assert_eq!(out[25..33], 1u64.to_le_bytes());
        assert_eq!(encode([0, 5, -1, 2, 0])[9..17], 0u64.to_le_bytes());
    }
}

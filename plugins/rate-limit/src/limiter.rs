//! The three algorithms as pure functions of a key's stored state and the time, in
//! integers only (no float drift): a token bucket holds `tokens × per_ns` "token
//! nanoseconds", refilled by `rate` per elapsed nanosecond; windows count requests per
//! aligned window index.

use crate::config::Algorithm;

const NS_PER_S: u128 = 1_000_000_000;

/// A key's stored state: token bucket `[last_ns, scaled_lo, scaled_hi]`; fixed window
/// `[index, count, 0]`; sliding window `[index, current, previous]`.
pub type State = [u64; 3];

/// What a check decided, with the header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// `RateLimit-Limit`.
    pub limit: u64,
    /// `RateLimit-Remaining`, after this request.
    pub remaining: u64,
    /// `RateLimit-Reset`, seconds (ceiling).
    pub reset: u64,
    /// `Retry-After`, seconds (ceiling, at least 1); meaningful when refused.
    pub retry_after: u64,
}

/// Checks one request at `now` (Unix nanoseconds) against `state` (`None`: never seen or
/// forgotten). Returns the verdict and, when allowed, the state to store.
pub fn check(alg: &Algorithm, state: Option<State>, now: u64) -> (Verdict, Option<State>) {
    match *alg {
        Algorithm::TokenBucket {
            rate,
            per_ns,
            burst,
        } => token_bucket(rate, per_ns, burst, state, now),
        Algorithm::FixedWindow { limit, window_ns } => fixed_window(limit, window_ns, state, now),
        Algorithm::SlidingWindow { limit, window_ns } => {
            sliding_window(limit, window_ns, state, now)
        }
    }
}

/// Whether `state` says nothing more than an absent entry would at `now` (a full bucket,
/// windows that no longer count): such entries are dropped from the store.
pub fn is_idle(alg: &Algorithm, state: &State, now: u64) -> bool {
    match *alg {
        Algorithm::TokenBucket {
            rate,
            per_ns,
            burst,
        } => bucket_tokens(rate, per_ns, burst, Some(*state), now) == capacity(per_ns, burst),
        Algorithm::FixedWindow { window_ns, .. } => state[0] < now / window_ns,
        Algorithm::SlidingWindow { window_ns, .. } => state[0].saturating_add(1) < now / window_ns,
    }
}

fn secs_ceil(ns: u128) -> u64 {
    u64::try_from(ns.div_ceil(NS_PER_S)).unwrap_or(u64::MAX)
}

fn capacity(per_ns: u64, burst: u64) -> u128 {
    u128::from(per_ns) * u128::from(burst)
}

/// The bucket's content at `now`, in token nanoseconds.
fn bucket_tokens(rate: u64, per_ns: u64, burst: u64, state: Option<State>, now: u64) -> u128 {
    let cap = capacity(per_ns, burst);
    match state {
        None => cap,
        Some([last, lo, hi]) => {
            let stored = (u128::from(hi) << 64) | u128::from(lo);
            let refill = u128::from(now.saturating_sub(last)) * u128::from(rate);
            stored.saturating_add(refill).min(cap)
        }
    }
}

fn token_bucket(
    rate: u64,
    per_ns: u64,
    burst: u64,
    state: Option<State>,
    now: u64,
) -> (Verdict, Option<State>) {
    let cap = capacity(per_ns, burst);
    let cost = u128::from(per_ns);
    let rate128 = u128::from(rate);
    let tokens = bucket_tokens(rate, per_ns, burst, state, now);
    let allowed = tokens >= cost;
    let left = if allowed { tokens - cost } else { tokens };
    let verdict = Verdict {
        allowed,
        limit: burst,
        remaining: u64::try_from(left / cost).unwrap_or(u64::MAX),
        reset: secs_ceil((cap - left).div_ceil(rate128)),
        retry_after: secs_ceil(cost.saturating_sub(tokens).div_ceil(rate128)).max(1),
    };
    // Truncation is the point: the 128-bit content split into two words.
    let new = allowed.then_some([now, left as u64, (left >> 64) as u64]);
    (verdict, new)
}

fn fixed_window(
    limit: u64,
    window_ns: u64,
    state: Option<State>,
    now: u64,
) -> (Verdict, Option<State>) {
    let index = now / window_ns;
    let count = match state {
        Some([i, c, _]) if i == index => c,
        _ => 0,
    };
    let allowed = count < limit;
    let count = if allowed { count + 1 } else { count };
    let end = (u128::from(index) + 1) * u128::from(window_ns);
    let reset = secs_ceil(end - u128::from(now));
    let verdict = Verdict {
        allowed,
        limit,
        remaining: limit - count,
        reset,
        retry_after: reset.max(1),
    };
    (verdict, allowed.then_some([index, count, 0]))
}

fn sliding_window(
    limit: u64,
    window_ns: u64,
    state: Option<State>,
    now: u64,
) -> (Verdict, Option<State>) {
    let index = now / window_ns;
    let w = u128::from(window_ns);
    let elapsed = u128::from(now % window_ns);
    let (current, previous) = match state {
        Some([i, c, p]) if i == index => (c, p),
        Some([i, c, _]) if i.saturating_add(1) == index => (0, c),
        _ => (0, 0),
    };
    let (cur, prev, lim) = (u128::from(current), u128::from(previous), u128::from(limit));
    // The estimated count, scaled by the window: the previous window weighted by the part
    // of it the sliding window still covers.
    let weighted = prev * (w - elapsed) + cur * w;
    let allowed = weighted + w <= lim * w;
    let (current, weighted) = if allowed {
        (current + 1, weighted + w)
    } else {
        (current, weighted)
    };
    let until_end = w - elapsed;
    let retry_ns = if allowed {
        0
    } else if cur < lim {
        // The previous window's weight must fall far enough within this window.
        let needed = w - ((lim - cur - 1) * w) / prev.max(1);
        needed.saturating_sub(elapsed)
    } else {
        // Next window: this one becomes the previous.
        let needed = w - ((lim - 1) * w) / cur.max(1);
        until_end + needed
    };
    let verdict = Verdict {
        allowed,
        limit,
        remaining: u64::try_from(lim.saturating_sub(weighted.div_ceil(w))).unwrap_or(0),
        reset: secs_ceil(until_end),
        retry_after: secs_ceil(retry_ns).max(1),
    };
    (verdict, allowed.then_some([index, current, previous]))
}

#[cfg(test)]
mod tests;

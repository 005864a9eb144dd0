//! Cluster mode: the check runs in Redis through the gateway's asynchronous foreign
//! function `aistack.rate_limit` (its argument and result layout are documented with the
//! function, in the gateway's `cluster::rate_limit`). The filter pauses the request, and
//! `on_foreign_function` resumes or answers it.

use crate::config::Algorithm;
use crate::limiter::Verdict;
use crate::store::fnv1a;

/// The gateway's function.
pub const FUNCTION: &str = "aistack.rate_limit";
/// Longest key sent as it is; longer ones are sent by their hash.
const MAX_KEY: usize = 256;
const NS_PER_MS: u64 = 1_000_000;

/// The call's argument: algorithm, three u64 LE limits (periods in milliseconds), key.
pub fn args(alg: &Algorithm, key: &[u8]) -> Vec<u8> {
    let (tag, count, period_ns, burst) = match *alg {
        Algorithm::TokenBucket {
            rate,
            per_ns,
            burst,
        } => (0u8, rate, per_ns, burst),
        Algorithm::FixedWindow { limit, window_ns } => (1, limit, window_ns, 0),
        Algorithm::SlidingWindow { limit, window_ns } => (2, limit, window_ns, 0),
    };
    let mut out = Vec::with_capacity(25 + key.len().min(MAX_KEY));
    out.push(tag);
    for word in [count, (period_ns / NS_PER_MS).max(1), burst] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    if key.len() > MAX_KEY {
        out.extend_from_slice(format!("#{:016x}", fnv1a(key)).as_bytes());
    } else {
        out.extend_from_slice(key);
    }
    out
}

/// The call's answer (`CallData`): the verdict, or why Redis could not give one.
pub fn answer(data: &[u8]) -> Result<Verdict, String> {
    let Some((&status, payload)) = data.split_first() else {
        return Err("an empty answer".to_owned());
    };
    match status {
        0 => {}
        1 => return Err(String::from_utf8_lossy(payload).into_owned()),
        2 => return Err("the call timed out".to_owned()),
        other => return Err(format!("an answer with status {other}")),
    }
    if payload.len() != 33 {
        return Err(format!("an answer of {} bytes", payload.len()));
    }
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&payload[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    Ok(Verdict {
        allowed: payload[0] == 1,
        limit: word(1),
        remaining: word(9),
        reset: word(17),
        retry_after: word(25).max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_carry_the_limits_in_milliseconds() {
        let alg = Algorithm::TokenBucket {
            rate: 100,
            per_ns: 3_600_000_000_000,
            burst: 50,
        };
        let out = args(&alg, b"route\0ik");
        assert_eq!(out[0], 0);
        assert_eq!(out[1..9], 100u64.to_le_bytes());
        assert_eq!(out[9..17], 3_600_000u64.to_le_bytes());
        assert_eq!(out[17..25], 50u64.to_le_bytes());
        assert_eq!(&out[25..], b"route\0ik");
        let long = args(&alg, &[b'x'; 300]);
        assert_eq!(long.len(), 25 + 17);
        let window = Algorithm::SlidingWindow {
            limit: 3,
            window_ns: 500_000_000,
        };
        assert_eq!(
            args(&window, b"k")[..17],
            {
                let mut want = vec![2u8];
                want.extend_from_slice(&3u64.to_le_bytes());
                want.extend_from_slice(&500u64.to_le_bytes());
                want
            }[..]
        );
    }

    #[test]
    fn answers_decode_or_say_what_went_wrong() {
        let mut data = vec![0, 1];
        for word in [100u64, 99, 36, 1] {
            data.extend_from_slice(&word.to_le_bytes());
        }
        let verdict = answer(&data).expect("a verdict");
        assert!(verdict.allowed);
        assert_eq!(
            (verdict.limit, verdict.remaining, verdict.reset),
            (100, 99, 36)
        );
        assert_eq!(
            answer(b"\x01Redis: connection refused"),
            Err("Redis: connection refused".to_owned())
        );
        assert!(answer(&[2]).is_err());
        assert!(answer(&[]).is_err());
        assert!(answer(&data[..10]).is_err());
    }
}

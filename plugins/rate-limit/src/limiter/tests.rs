//! The arithmetic, driven with explicit times (nanoseconds).

use super::*;

const S: u64 = 1_000_000_000;

/// Runs `n` checks at `now`, threading the state; returns how many were admitted.
fn admit(alg: &Algorithm, state: &mut Option<State>, now: u64, n: u64) -> u64 {
    let mut admitted = 0;
    for _ in 0..n {
        let (v, new) = check(alg, *state, now);
        if v.allowed {
            admitted += 1;
            *state = new;
        }
    }
    admitted
}

#[test]
fn a_token_bucket_refills_exactly_without_drift() {
    // 3 per second does not divide a second in nanoseconds: the scaled integers must
    // still give exactly 3 per second over a long run.
    let alg = Algorithm::TokenBucket {
        rate: 3,
        per_ns: S,
        burst: 3,
    };
    let mut state = None;
    let start = 1_700_000_000 * S;
    assert_eq!(admit(&alg, &mut state, start, 10), 3);
    let mut admitted = 0;
    for ms in 1..=100_000u64 {
        admitted += admit(&alg, &mut state, start + ms * 1_000_000, 1);
    }
    assert_eq!(admitted, 300);
}

#[test]
fn token_bucket_headers() {
    let alg = Algorithm::TokenBucket {
        rate: 2,
        per_ns: 60 * S,
        burst: 2,
    };
    let (v, state) = check(&alg, None, 1000 * S);
    assert_eq!((v.allowed, v.limit, v.remaining, v.reset), (true, 2, 1, 30));
    let (v, state) = check(&alg, state, 1000 * S);
    assert_eq!((v.allowed, v.remaining, v.reset), (true, 0, 60));
    let (v, none) = check(&alg, state, 1000 * S + S / 2);
    assert!(!v.allowed && none.is_none());
    assert_eq!((v.remaining, v.retry_after), (0, 30));
    let full = state.map(|s| is_idle(&alg, &s, 1060 * S));
    assert_eq!(full, Some(true));
    assert_eq!(state.map(|s| is_idle(&alg, &s, 1059 * S)), Some(false));
}

#[test]
fn a_fixed_window_resets_at_its_boundary() {
    let alg = Algorithm::FixedWindow {
        limit: 2,
        window_ns: 10 * S,
    };
    let mut state = None;
    assert_eq!(admit(&alg, &mut state, 100 * S + 3 * S, 5), 2);
    let (v, _) = check(&alg, state, 109 * S);
    assert_eq!((v.allowed, v.retry_after, v.reset), (false, 1, 1));
    assert_eq!(admit(&alg, &mut state, 110 * S, 5), 2);
    assert!(state.is_some_and(|s| is_idle(&alg, &s, 120 * S)));
}

#[test]
fn a_sliding_window_weighs_the_previous_window() {
    let alg = Algorithm::SlidingWindow {
        limit: 10,
        window_ns: 10 * S,
    };
    let mut state = None;
    assert_eq!(admit(&alg, &mut state, 105 * S, 20), 10);
    // Halfway through the next window half of the previous one still counts: 5 more.
    assert_eq!(admit(&alg, &mut state, 115 * S, 20), 5);
    let (v, _) = check(&alg, state, 115 * S);
    assert!(!v.allowed);
    // One more fits once 10 × (10 - e) + 5 × 10 + 10 ≤ 100, at e = 6 s: 1 s from now.
    assert_eq!(v.retry_after, 1);
    let (v, _) = check(&alg, state, 116 * S);
    assert!(v.allowed);
    let (v, _) = check(&alg, state, 122 * S);
    assert!(v.allowed);
    assert!(state.is_some_and(|s| is_idle(&alg, &s, 130 * S)));
}

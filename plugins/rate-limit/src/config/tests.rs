//! Parsing: defaults, and every refusal naming its key.

use super::*;

fn err(json: &str) -> String {
    parse(json.as_bytes()).expect_err(json)
}

#[test]
fn defaults_are_token_bucket_by_consumer_with_burst_equal_to_rate() {
    let config = parse(br#"{"rate": 10, "per": "1m"}"#).expect("valid");
    assert_eq!(
        config,
        Config {
            algorithm: Algorithm::TokenBucket {
                rate: 10,
                per_ns: 60_000_000_000,
                burst: 10
            },
            key: Key::Consumer,
            mode: Mode::Local,
        }
    );
    let config = parse(
        br#"{"algorithm": "sliding_window", "limit": 5, "window": "500ms", "key": "header:X-Key", "mode": "local"}"#,
    )
    .expect("valid");
    assert_eq!(
        config.algorithm,
        Algorithm::SlidingWindow {
            limit: 5,
            window_ns: 500_000_000
        }
    );
    assert_eq!(config.key, Key::Header("x-key".to_owned()));
}

#[test]
fn bad_values_are_refused_naming_the_key() {
    for (json, want) in [
        (
            r#"{"rate": 0, "per": "1s"}"#,
            "rate: must be greater than 0",
        ),
        (r#"{"per": "1s"}"#, "rate: missing"),
        (r#"{"rate": 1, "per": "0s"}"#, "per: must be longer than 0"),
        (r#"{"rate": 1, "per": "2d"}"#, "per: must be at most 24h"),
        (
            r#"{"rate": 1, "per": "1s", "burst": 0}"#,
            "burst: must be at least 1",
        ),
        (
            r#"{"algorithm": "fixed_window", "limit": 0, "window": "1s"}"#,
            "limit: must be greater than 0",
        ),
        (
            r#"{"algorithm": "fixed_window", "limit": 1, "window": "1s", "rate": 1}"#,
            "rate: not a setting of algorithm `fixed_window`",
        ),
        (
            r#"{"algorithm": "gcra"}"#,
            "algorithm: unknown algorithm \"gcra\"",
        ),
        (
            r#"{"rate": 1, "per": "1s", "key": "user"}"#,
            "key: unknown key kind \"user\"",
        ),
        (
            r#"{"rate": 1, "per": "1s", "key": "header:"}"#,
            "key: \"\" is not an HTTP header name",
        ),
        (
            r#"{"rate": 1, "per": "1s", "mode": "cluster", "on_redis_error": "maybe"}"#,
            "on_redis_error: unknown policy \"maybe\" (expected allow or deny)",
        ),
        (
            r#"{"rate": 1, "per": "1s", "on_redis_error": "deny"}"#,
            "on_redis_error: only a setting of mode `cluster`",
        ),
        (
            r#"{"rate": 1, "per": "1s", "mode": "global"}"#,
            "mode: unknown mode \"global\"",
        ),
        (
            r#"{"rate": 1, "per": "1s", "rates": 1}"#,
            "unknown field `rates`",
        ),
        ("", "rate: missing"),
    ] {
        let e = err(json);
        assert!(e.contains(want), "{json}: want {want:?}, got {e:?}");
    }
}

#[test]
fn cluster_mode_allows_on_redis_errors_unless_told_to_deny() {
    let config = parse(br#"{"rate": 1, "per": "1s", "mode": "cluster"}"#).expect("valid");
    assert_eq!(
        config.mode,
        Mode::Cluster {
            on_error: Policy::Allow
        }
    );
    let config = parse(br#"{"rate": 1, "per": "1s", "mode": "cluster", "on_redis_error": "deny"}"#)
        .expect("valid");
    assert_eq!(
        config.mode,
        Mode::Cluster {
            on_error: Policy::Deny
        }
    );
}

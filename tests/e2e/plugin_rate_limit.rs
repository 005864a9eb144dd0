//! The built-in `rate-limit` filter through the real gateway: exact counting across two
//! worker threads under concurrency, the `RateLimit-*` headers both ways, budgets per
//! header value, a fixed window that resets, configurations refused at load, and a route
//! without the filter.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::run_cli;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::wasm_common::{header, start};

const SECRET: &str = "a-test-secret-of-decent-length!!";

/// `routes:` entries (name, path, rate-limit config or none) behind the echo upstream.
fn routes(routes: &[(&str, Option<Value>)]) -> String {
    let mut yaml = "upstreams:\n  echo:\n    targets: [127.0.0.1:{echo}]\nroutes:\n".to_owned();
    for (name, config) in routes {
        yaml.push_str(&format!(
            "  - name: {name}\n    path: /{name}\n    upstream: echo\n"
        ));
        if let Some(config) = config {
            // JSON is YAML: one flow mapping on one line.
            yaml.push_str(&format!(
                "    plugins:\n      - name: rate-limit\n        config: {config}\n"
            ));
        }
    }
    yaml
}

async fn get(client: &reqwest::Client, url: String, api_key: Option<&str>) -> reqwest::Response {
    let mut req = client.get(url);
    if let Some(key) = api_key {
        req = req.header("x-api-key", key);
    }
    req.send().await.expect("request")
}

/// Asserts `r` is the filter's 429 and returns its `Retry-After`.
async fn assert_refused(r: reqwest::Response, limit: &str) -> u64 {
    assert_eq!(r.status(), 429);
    let retry_after: u64 = header(&r, "retry-after")
        .parse()
        .expect("Retry-After seconds");
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    for prefix in ["", "x-"] {
        assert_eq!(header(&r, &format!("{prefix}ratelimit-limit")), limit);
        assert_eq!(header(&r, &format!("{prefix}ratelimit-remaining")), "0");
        let reset: u64 = header(&r, &format!("{prefix}ratelimit-reset"))
            .parse()
            .expect("reset seconds");
        assert!(reset >= 1, "{prefix}RateLimit-Reset {reset}");
    }
    assert_eq!(header(&r, "content-type"), "application/json");
    let request_id = header(&r, "x-request-id");
    let body: Value = r.json().await.expect("json body");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    let id = body["error"]["request_id"].as_str().unwrap_or_default();
    assert!(!id.is_empty(), "{body}");
    assert_eq!(id, request_id, "{body}");
    retry_after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_bucket_admits_exactly_its_burst_across_worker_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    // One token per 36 s: none comes back while the test runs, so the count is exact
    // whatever the machine's load (with `per: 1m` one would every 600 ms).
    let config = json!({"rate": 100, "per": "1h", "burst": 100});
    let gw = start(&echo, dir.path(), 2, &routes(&[("api", Some(config))])).await;

    let clients: Vec<reqwest::Client> = (0..8).map(|_| reqwest::Client::new()).collect();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let client = clients[i % clients.len()].clone();
            let url = gw.url(&format!("/api/{i}"));
            tokio::spawn(async move {
                let r = get(&client, url, None).await;
                let status = r.status().as_u16();
                if status == 429 {
                    assert_refused(r, "100").await;
                    return (status, None);
                }
                if header(&r, "ratelimit-limit") != "100" {
                    let head = format!("{status} {:?}", r.headers());
                    panic!("{head}: {}", r.text().await.unwrap_or_default());
                }
                assert_eq!(header(&r, "x-ratelimit-limit"), "100");
                let remaining: u64 = header(&r, "ratelimit-remaining")
                    .parse()
                    .expect("remaining");
                (status, Some(remaining))
            })
        })
        .collect();
    let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
    let mut remaining = Vec::new();
    for task in tasks {
        let (status, left) = task.await.expect("task");
        *counts.entry(status).or_default() += 1;
        remaining.extend(left);
    }
    assert_eq!(counts.get(&200), Some(&100), "{counts:?}");
    assert_eq!(counts.get(&429), Some(&900), "{counts:?}");
    assert_eq!(echo.hits(), 100);
    // Each admitted request took its own token: 99, 98, … 0, every one once.
    remaining.sort_unstable();
    assert_eq!(remaining, (0..100).collect::<Vec<u64>>());
}

#[tokio::test]
async fn admitted_responses_carry_the_limit_headers_and_refusals_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let config = json!({"algorithm": "token_bucket", "rate": 2, "per": "1m", "key": "route"});
    let gw = start(&echo, dir.path(), 2, &routes(&[("api", Some(config))])).await;
    let client = reqwest::Client::new();

    for remaining in ["1", "0"] {
        let r = get(&client, gw.url("/api/x"), None).await;
        assert_eq!(r.status(), 200);
        for prefix in ["", "x-"] {
            assert_eq!(header(&r, &format!("{prefix}ratelimit-limit")), "2");
            assert_eq!(
                header(&r, &format!("{prefix}ratelimit-remaining")),
                remaining
            );
            let reset: u64 = header(&r, &format!("{prefix}ratelimit-reset"))
                .parse()
                .expect("reset seconds");
            // Back to full: 30 s per token missing.
            assert!((1..=60).contains(&reset), "reset {reset}");
        }
        assert_eq!(header(&r, "retry-after"), "");
    }
    let retry_after = assert_refused(get(&client, gw.url("/api/x"), None).await, "2").await;
    // One token comes back every 30 s.
    assert!((1..=30).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(echo.hits(), 2);
}

#[tokio::test]
async fn each_header_value_has_its_own_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let config = json!({"rate": 2, "per": "1h", "key": "header:X-Api-Key"});
    let gw = start(&echo, dir.path(), 2, &routes(&[("api", Some(config))])).await;
    let client = reqwest::Client::new();

    for key in ["alice", "bob"] {
        for _ in 0..2 {
            let r = get(&client, gw.url("/api/x"), Some(key)).await;
            assert_eq!(r.status(), 200, "{key}");
        }
        assert_refused(get(&client, gw.url("/api/x"), Some(key)).await, "2").await;
    }
    // Requests without the header are counted by client IP, apart from both.
    let r = get(&client, gw.url("/api/x"), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(echo.hits(), 5);
}

#[tokio::test]
async fn consumers_set_by_jwt_auth_have_their_own_budgets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let body = format!(
        "upstreams:\n  echo:\n    targets: [127.0.0.1:{{echo}}]\nroutes:\n\
         \x20 - name: api\n    path: /api\n    upstream: echo\n    plugins:\n\
         \x20     - name: jwt-auth\n        config: {}\n\
         \x20     - name: rate-limit\n        config: {}\n",
        json!({"keys": [{"alg": "HS256", "secret": SECRET}]}),
        json!({"rate": 1, "per": "1h", "key": "consumer"}),
    );
    let gw = start(&echo, dir.path(), 2, &body).await;
    let client = reqwest::Client::new();
    let key = EncodingKey::from_secret(SECRET.as_bytes()).expect("hmac key");
    for user in ["alice", "bob"] {
        let token =
            encode(&Header::new(Algorithm::HS256), &json!({"sub": user}), &key).expect("sign");
        let send = || {
            client
                .get(gw.url("/api/x"))
                .header("authorization", format!("Bearer {token}"))
                .send()
        };
        assert_eq!(send().await.expect("request").status(), 200, "{user}");
        assert_refused(send().await.expect("request"), "1").await;
    }
    assert_eq!(echo.hits(), 2);
}

#[tokio::test]
async fn a_fixed_window_admits_again_in_the_next_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let config = json!({"algorithm": "fixed_window", "limit": 3, "window": "1s"});
    let gw = start(&echo, dir.path(), 2, &routes(&[("api", Some(config))])).await;
    let client = reqwest::Client::new();

    // Use up the window (it may roll over meanwhile: then keep going until refused).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = get(&client, gw.url("/api/x"), None).await;
        if r.status() == 429 {
            assert_refused(r, "3").await;
            break;
        }
        assert_eq!(r.status(), 200);
        assert!(Instant::now() < deadline, "never refused");
    }
    let refused_at = Instant::now();
    // Poll for the next window; refusals do not count against it.
    let r = loop {
        let r = get(&client, gw.url("/api/x"), None).await;
        if r.status() == 200 {
            break r;
        }
        assert_eq!(r.status(), 429);
        assert!(
            refused_at.elapsed() < Duration::from_secs(3),
            "the window never reset"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(refused_at.elapsed() <= Duration::from_millis(1500));
    assert_eq!(header(&r, "ratelimit-limit"), "3");
    assert_eq!(header(&r, "ratelimit-remaining"), "2");
    assert_eq!(header(&r, "ratelimit-reset"), "1");
}

#[tokio::test]
async fn a_route_without_the_filter_is_not_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let config = json!({"algorithm": "sliding_window", "limit": 1, "window": "1h"});
    let gw = start(
        &echo,
        dir.path(),
        2,
        &routes(&[("limited", Some(config)), ("open", None)]),
    )
    .await;
    let client = reqwest::Client::new();

    // The filter is applied where configured (this fails if it is not)...
    assert_eq!(get(&client, gw.url("/limited/x"), None).await.status(), 200);
    assert_refused(get(&client, gw.url("/limited/x"), None).await, "1").await;
    // ...and only there.
    for _ in 0..5 {
        let r = get(&client, gw.url("/open/x"), None).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "ratelimit-limit"), "");
    }
    assert_eq!(echo.hits(), 6);
}

#[test]
fn bad_configurations_are_refused_at_load_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            json!({"rate": 0, "per": "1s"}),
            "rate: must be greater than 0",
        ),
        (
            json!({"algorithm": "fixed_window", "limit": 0, "window": "1s"}),
            "limit: must be greater than 0",
        ),
        (
            json!({"algorithm": "leaky_bucket", "rate": 1, "per": "1s"}),
            "algorithm: unknown algorithm \"leaky_bucket\"",
        ),
        (
            json!({"rate": 1, "per": "1s", "key": "cookie:session"}),
            "key: unknown key kind \"cookie:session\"",
        ),
        (
            json!({"rate": 1, "per": "1s", "mode": "cluster", "on_redis_error": "maybe"}),
            "on_redis_error: unknown policy \"maybe\" (expected allow or deny)",
        ),
        (
            json!({"rate": 1, "per": "1s", "mode": "everywhere"}),
            "mode: unknown mode \"everywhere\" (expected local or cluster)",
        ),
        (
            json!({"rate": 1, "per": "soon"}),
            "per: \"soon\" is not a duration",
        ),
        (
            json!({"rate": 1, "per": "1s", "burst": 0}),
            "burst: must be at least 1",
        ),
        (
            json!({"rate": 1, "per": "1s", "burts": 2}),
            "unknown field `burts`",
        ),
        (
            json!({"rate": 1, "per": "1s", "window": "1s"}),
            "window: not a setting of algorithm `token_bucket`",
        ),
    ];
    for (config, reason) in cases {
        let yaml = format!(
            "backend:\n  enabled: false\nupstreams:\n  app:\n    targets: [127.0.0.1:9]\n\
             routes:\n  - name: app\n    upstream: app\n    plugins:\n\
             \x20     - name: rate-limit\n        config: {config}\n"
        );
        std::fs::write(dir.path().join("aistack.yaml"), yaml).expect("write");
        let (status, _, stderr) = run_cli(&["validate", "aistack.yaml"], dir.path());
        assert!(!status.success(), "accepted {config}");
        assert!(stderr.contains("aistack.yaml:"), "{stderr}");
        assert!(
            stderr.contains("rate-limit") && stderr.contains("refused its configuration"),
            "{stderr}"
        );
        assert!(
            stderr.contains(reason),
            "{config}: want {reason:?} in\n{stderr}"
        );
    }
}

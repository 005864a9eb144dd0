//! The `rate-limit` filter in cluster mode, through real gateways and a real Redis: two
//! gateway processes sharing one Redis enforce one limit; with Redis unreachable the
//! configured policy applies (allow, or deny with 503), counted and logged once; the
//! `ip` key behind trusted and untrusted peers.
//!
//! Each test keeps its keys under a prefix of its own (`redis.key_prefix`) and deletes
//! them at the end ([`RedisPrefix`]). The Redis is `REDIS_URL`, else 127.0.0.1:6379.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::{Aistack, Ports, aistack_bin, free_port, render};
use serde_json::{Value, json};

use crate::reload::metric;
use crate::wasm_common::header;

/// The tests' Redis.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test run uses; its keys are deleted on drop.
pub struct RedisPrefix(pub String);

impl RedisPrefix {
    pub fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let n = N.fetch_add(1, Ordering::Relaxed);
        RedisPrefix(format!("aistack-test:{}:{nanos}:{n}:", std::process::id()))
    }

    fn connection() -> redis::Connection {
        redis::Client::open(redis_url())
            .and_then(|c| c.get_connection())
            .expect("the tests' Redis answers")
    }

    /// The keys under the prefix.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        redis::cmd("KEYS")
            .arg(format!("{}*", self.0))
            .query(&mut Self::connection())
            .expect("KEYS")
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let keys = self.keys();
        if !keys.is_empty() {
            let _: Result<u64, _> = redis::cmd("DEL").arg(keys).query(&mut Self::connection());
        }
    }
}

/// Starts `aistack gateway` (2 threads) with `body` after a base config whose Redis is
/// `redis_url` (passed as `REDIS_URL`, which overrides `redis.url`) under `prefix`, with
/// `redis.timeout` set to `timeout`.
pub async fn start(
    echo: &EchoUpstream,
    dir: &Path,
    redis_url: &str,
    prefix: &str,
    timeout: &str,
    body: &str,
) -> Aistack {
    let ports = Ports::free();
    let config = format!(
        "listeners:\n  - address: 127.0.0.1:{{proxy}}\nadmin:\n  address: 127.0.0.1:{{admin}}\n\
         backend:\n  enabled: false\n  address: 127.0.0.1:{{backend}}\n\
         redis:\n  key_prefix: \"{prefix}\"\n  timeout: {timeout}\n\
         server:\n  threads: 2\n  grace_period: 1s\n  access_log: false\n\
         upstreams:\n  echo:\n    targets: [127.0.0.1:{{echo}}]\n{body}"
    );
    let config = render(&config, ports).replace("{echo}", &echo.port().to_string());
    Aistack::start_with_env("gateway", &config, ports, dir, &[("REDIS_URL", redis_url)]).await
}

/// `routes:` with the rate-limit filter configured as given, one route per entry.
fn routes(routes: &[(&str, Value)]) -> String {
    let mut yaml = "routes:\n".to_owned();
    for (name, config) in routes {
        yaml.push_str(&format!(
            "  - name: {name}\n    path: /{name}\n    upstream: echo\n    plugins:\n\
             \x20     - name: rate-limit\n        config: {config}\n"
        ));
    }
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_sharing_redis_enforce_one_limit() {
    let prefix = RedisPrefix::new();
    let echo = EchoUpstream::start().await;
    // `deny` and a generous timeout: a Redis answer slower than a loaded machine allows
    // shows up as 503s in the counts rather than as unlimited 200s.
    let config = json!({"rate": 100, "per": "1h", "burst": 100, "key": "route",
        "mode": "cluster", "on_redis_error": "deny"});
    let body = routes(&[("api", config)]);
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let url = redis_url();
    let a = start(&echo, dir_a.path(), &url, &prefix.0, "10s", &body).await;
    let b = start(&echo, dir_b.path(), &url, &prefix.0, "10s", &body).await;

    let clients: Vec<reqwest::Client> = (0..8).map(|_| reqwest::Client::new()).collect();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let client = clients[i % clients.len()].clone();
            let gw = if i % 2 == 0 { &a } else { &b };
            let url = gw.url(&format!("/api/{i}"));
            tokio::spawn(async move {
                let r = client.get(url).send().await.expect("request");
                let status = r.status().as_u16();
                if status == 503 {
                    return status; // Redis did not answer in time: in the counts
                }
                let limit = header(&r, "ratelimit-limit");
                let x_limit = header(&r, "x-ratelimit-limit");
                let retry_after = header(&r, "retry-after");
                if status == 429 {
                    assert_eq!(header(&r, "ratelimit-remaining"), "0");
                    assert!(
                        retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
                        "{retry_after}"
                    );
                    let body: Value = r.json().await.expect("json");
                    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
                }
                assert_eq!(
                    (limit.as_str(), x_limit.as_str()),
                    ("100", "100"),
                    "{status}"
                );
                status
            })
        })
        .collect();
    let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
    for task in tasks {
        *counts.entry(task.await.expect("task")).or_default() += 1;
    }
    let passed = counts.get(&200).copied().unwrap_or(0);
    println!(
        "cluster mode, 2 gateways, 1000 concurrent requests, limit 100: {passed} passed ({counts:?})"
    );
    assert!((99..=101).contains(&passed), "{counts:?}");
    assert_eq!(
        passed + counts.get(&429).copied().unwrap_or(0),
        1000,
        "{counts:?}"
    );
    assert_eq!(echo.hits(), passed);
    // The counter lives in Redis, under the test's prefix (one key: one route budget).
    assert_eq!(prefix.keys().len(), 1, "{:?}", prefix.keys());
}

/// The value of the first `/metrics` series starting with `name{` whose labels include
/// every one of `labels`.
async fn series(gw: &Aistack, name: &str, labels: &[&str]) -> f64 {
    let text = reqwest::get(gw.admin_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn with_redis_unreachable_the_policy_applies_and_is_counted() {
    let prefix = RedisPrefix::new();
    let echo = EchoUpstream::start().await;
    let dir = tempfile::tempdir().expect("dir");
    // Nothing listens there: every connect is refused.
    let closed = format!("redis://127.0.0.1:{}", free_port());
    let limit = |policy: &str| json!({"rate": 1, "per": "1h", "key": "route", "mode": "cluster", "on_redis_error": policy});
    let body = routes(&[("open", limit("allow")), ("shut", limit("deny"))]);
    let gw = start(&echo, dir.path(), &closed, &prefix.0, "1s", &body).await;
    let client = reqwest::Client::new();

    // Far past the limit of 1: `allow` admits every one (no limit headers: no verdict).
    for _ in 0..5 {
        let r = client.get(gw.url("/open/x")).send().await.expect("request");
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "ratelimit-limit"), "");
    }
    for _ in 0..5 {
        let r = client.get(gw.url("/shut/x")).send().await.expect("request");
        assert_eq!(r.status(), 503);
        assert_eq!(header(&r, "retry-after"), "1");
        let request_id = header(&r, "x-request-id");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "rate_limit_unavailable", "{body}");
        assert_eq!(body["error"]["request_id"], request_id.as_str(), "{body}");
    }
    assert_eq!(echo.hits(), 5);
    let errors = "aistack_plugin_rate_limit_redis_errors_total";
    assert_eq!(series(&gw, errors, &["policy=\"allow\""]).await, 5.0);
    assert_eq!(series(&gw, errors, &["policy=\"deny\""]).await, 5.0);
    let calls = "aistack_foreign_calls_total";
    let failed = ["function=\"aistack.rate_limit\"", "outcome=\"failed\""];
    assert_eq!(series(&gw, calls, &failed).await, 10.0);
    // Logged, but not once per request.
    let output = gw.wait_for_output("Redis").await;
    let lines = output.lines().filter(|l| l.contains("Redis")).count();
    assert!((1..=2).contains(&lines), "{lines} lines:\n{output}");
    assert!(prefix.keys().is_empty());
    // A Redis failure is the policy's business, not a plugin fault.
    assert!(
        metric(&gw, "aistack_plugin_errors_total{")
            .await
            .is_none_or(|v| v == 0.0)
    );
}

/// Sends a request to `path` from 127.0.0.1 with `X-Forwarded-For: xff`.
async fn from(client: &reqwest::Client, gw: &Aistack, path: &str, xff: &str) -> u16 {
    let r = client
        .get(gw.url(path))
        .header("x-forwarded-for", xff)
        .send()
        .await
        .expect("request");
    r.status().as_u16()
}

#[tokio::test]
async fn the_ip_key_uses_x_forwarded_for_only_from_trusted_proxies() {
    let echo = EchoUpstream::start().await;
    let config = json!({"rate": 1, "per": "1h", "key": "ip"});
    let body = format!(
        "upstreams:\n  echo:\n    targets: [127.0.0.1:{{echo}}]\n{}",
        routes(&[("api", config)])
    );
    let client = reqwest::Client::new();

    // The test's connections come from 127.0.0.1: trusted here, so each forwarded
    // client has its own budget.
    let dir = tempfile::tempdir().expect("dir");
    let trusted = "  trusted_proxies: [127.0.0.1/32]\n";
    let gw = crate::wasm_common::start_with_server(&echo, dir.path(), 2, trusted, &body).await;
    assert_eq!(from(&client, &gw, "/api/x", "1.1.1.1").await, 200);
    assert_eq!(from(&client, &gw, "/api/x", "1.1.1.1").await, 429);
    // A client spoofing the left of the chain is still counted as the rightmost.
    assert_eq!(from(&client, &gw, "/api/x", "9.9.9.9, 1.1.1.1").await, 429);
    assert_eq!(from(&client, &gw, "/api/x", "2.2.2.2").await, 200);
    drop(gw);

    // Untrusted: the header is ignored, every request is 127.0.0.1's.
    let dir = tempfile::tempdir().expect("dir");
    let gw = crate::wasm_common::start(&echo, dir.path(), 2, &body).await;
    assert_eq!(from(&client, &gw, "/api/x", "3.3.3.3").await, 200);
    assert_eq!(from(&client, &gw, "/api/x", "4.4.4.4").await, 429);
    assert_eq!(echo.hits(), 3);
}

/// `aistack validate` on `yaml`, without `REDIS_URL` from the environment.
fn validate(dir: &Path, yaml: &str) -> (bool, String) {
    std::fs::write(dir.join("aistack.yaml"), yaml).expect("write");
    let out = std::process::Command::new(aistack_bin())
        .args(["validate", "aistack.yaml"])
        .current_dir(dir)
        .env_remove("REDIS_URL")
        .output()
        .expect("run aistack");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cluster_mode_needs_a_redis_url_and_redis_settings_are_checked() {
    let dir = tempfile::tempdir().expect("dir");
    let config = json!({"rate": 1, "per": "1s", "mode": "cluster"});
    let base = format!(
        "backend:\n  enabled: false\nupstreams:\n  app:\n    targets: [127.0.0.1:9]\n\
         routes:\n  - name: app\n    upstream: app\n    plugins:\n\
         \x20     - name: rate-limit\n        config: {config}\n"
    );
    let (ok, stderr) = validate(dir.path(), &base);
    assert!(!ok, "accepted cluster mode without Redis");
    assert!(stderr.contains("aistack.yaml:"), "{stderr}");
    assert!(
        stderr.contains("mode: `cluster` needs the gateway's Redis: set `redis.url`"),
        "{stderr}"
    );
    // With a URL it loads (nothing connects at load: Redis may come up later).
    let with_url = format!("redis:\n  url: redis://127.0.0.1:{}\n{base}", free_port());
    let (ok, stderr) = validate(dir.path(), &with_url);
    assert!(ok, "{stderr}");
    let bad_timeout = format!("redis:\n  url: redis://127.0.0.1:1\n  timeout: 0s\n{base}");
    let (ok, stderr) = validate(dir.path(), &bad_timeout);
    assert!(!ok);
    assert!(
        stderr.contains("redis.timeout") && stderr.contains("must be between 1ms and 10s"),
        "{stderr}"
    );
}

#[test]
fn the_cluster_example_config_validates() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let out = std::process::Command::new(aistack_bin())
        .args(["validate", "rate-limit-cluster.yaml"])
        .current_dir(&example)
        .env_remove("REDIS_URL")
        .output()
        .expect("run aistack");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

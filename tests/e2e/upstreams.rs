//! Upstream behaviour through the real binary: active health checks eject
//! and recover targets, passive ejection and recovery, 503 JSON without a
//! healthy target, retries only where allowed, balancing.

use std::time::{Duration, Instant};

use aistack_e2e::{Aistack, Ports, free_port, render};
use serde_json::Value;

use crate::flaky::{Flaky, Mode};

/// Listeners, admin and server settings; upstreams and routes follow.
pub(crate) const BASE: &str = r#"
listeners:
  - address: 127.0.0.1:{proxy}
admin:
  address: 127.0.0.1:{admin}
backend:
  enabled: false
server:
  threads: 2
  grace_period: 1s
  watch: false
"#;

/// A gateway with `extra` (upstreams, routes) after the base config.
pub(crate) async fn start(extra: &str, dir: &std::path::Path) -> Aistack {
    start_with_server("", extra, dir).await
}

/// Like [`start`], with `server_extra` (lines indented by two) added to `server:`.
pub(crate) async fn start_with_server(
    server_extra: &str,
    extra: &str,
    dir: &std::path::Path,
) -> Aistack {
    let ports = Ports::free();
    let config = format!("{}{server_extra}{extra}", render(BASE, ports));
    Aistack::start("gateway", &config, ports, dir).await
}

/// GETs `url`: the status and the JSON body (null if none). Panics on a transport error.
pub(crate) async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    match client.get(url).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or(Value::Null))
        }
        Err(e) => panic!("transport error: {e}"),
    }
}

/// Polls `/upstreams` until `pred` holds for the upstream `name`.
pub(crate) async fn wait_upstream(
    gw: &Aistack,
    name: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, v) = get(&client, &gw.admin_url("/upstreams")).await;
        if pred(&v["upstreams"][name]) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The target `127.0.0.1:PORT` of an upstream in `/upstreams`, or null.
pub(crate) fn target(u: &Value, port: u16) -> &Value {
    u["targets"]
        .as_array()
        .and_then(|t| {
            t.iter()
                .find(|t| t["address"].as_str() == Some(&format!("127.0.0.1:{port}")))
        })
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn active_health_checks_eject_and_recover_a_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (t1, t2) = (Flaky::start("t1").await, Flaky::start("t2").await);
    let gw = start(
        &format!(
            r#"
upstreams:
  pool:
    targets: [127.0.0.1:{}, 127.0.0.1:{}]
    health_check:
      path: /healthz
      interval: 100ms
      timeout: 500ms
      healthy_threshold: 2
      unhealthy_threshold: 2
routes:
  - name: r
    path: /
    upstream: pool
"#,
            t1.port(),
            t2.port()
        ),
        dir.path(),
    )
    .await;
    let client = reqwest::Client::new();
    let (p1, p2) = (t1.port(), t2.port());

    t1.set_mode(Mode::Unhealthy);
    wait_upstream(&gw, "pool", "t1 marked unhealthy", |u| {
        target(u, p1)["health_check"] == "unhealthy" && u["available"] == 1
    })
    .await;
    for _ in 0..20 {
        let (status, body) = get(&client, &gw.url("/x")).await;
        assert_eq!((status, body["upstream"].as_str()), (200, Some("t2")));
    }

    t1.set_mode(Mode::Ok);
    wait_upstream(&gw, "pool", "t1 healthy again", |u| {
        target(u, p1)["health_check"] == "healthy" && target(u, p2)["available"] == true
    })
    .await;
    let mut seen_t1 = 0;
    for _ in 0..20 {
        let (status, body) = get(&client, &gw.url("/x")).await;
        assert_eq!(status, 200);
        seen_t1 += usize::from(body["upstream"] == "t1");
    }
    assert_eq!(seen_t1, 10, "round robin over both again");
}

#[tokio::test]
async fn no_healthy_target_answers_a_json_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t1 = Flaky::start("t1").await;
    let gw = start(
        &format!(
            r#"
upstreams:
  pool:
    targets: [127.0.0.1:{}]
    health_check: {{ type: http, path: /, interval: 100ms, unhealthy_threshold: 1, healthy_threshold: 1 }}
routes:
  - name: r
    path: /
    upstream: pool
"#,
            t1.port()
        ),
        dir.path(),
    )
    .await;
    t1.set_mode(Mode::Unhealthy);
    wait_upstream(&gw, "pool", "no target available", |u| u["available"] == 0).await;
    let client = reqwest::Client::new();
    let before = t1.proxied();
    let (status, body) = get(&client, &gw.url("/x")).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "no_upstream");
    assert!(body["error"]["request_id"].is_string());
    assert_eq!(
        t1.proxied(),
        before,
        "nothing was sent to the unhealthy target"
    );
    // The connection stays usable after the gateway's own 503.
    let (status, _) = get(&client, &gw.url("/y")).await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn passive_ejection_after_consecutive_failures_and_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (t1, t2) = (Flaky::start("t1").await, Flaky::start("t2").await);
    let (p1, p2) = (t1.port(), t2.port());
    let gw = start(
        &format!(
            r#"
upstreams:
  pool:
    targets: [127.0.0.1:{p1}, 127.0.0.1:{p2}]
    connect_timeout: 500ms
    passive: {{ max_failures: 2, ejection_time: 1s }}
routes:
  - name: r
    path: /
    upstream: pool
    retries: {{ max: 0 }}
"#
        ),
        dir.path(),
    )
    .await;
    let client = reqwest::Client::new();
    let t1_addr = t1.stop();
    let mut failed = 0;
    for _ in 0..10 {
        let (status, _) = get(&client, &gw.url("/x")).await;
        if status != 200 {
            assert_eq!(status, 502);
            failed += 1;
        }
    }
    assert_eq!(failed, 2, "two failures eject t1; retries are off here");
    wait_upstream(&gw, "pool", "t1 ejected", |u| {
        target(u, p1)["ejected"] == true
    })
    .await;
    for _ in 0..10 {
        let (status, body) = get(&client, &gw.url("/x")).await;
        assert_eq!((status, body["upstream"].as_str()), (200, Some("t2")));
    }
    // t1 comes back; after the ejection time it gets traffic again.
    let t1 = Flaky::restart_on("t1", t1_addr).await;
    wait_upstream(&gw, "pool", "t1 back", |u| {
        target(u, p1)["available"] == true
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while t1.proxied() == 0 {
        let (status, _) = get(&client, &gw.url("/x")).await;
        assert_eq!(status, 200);
        assert!(Instant::now() < deadline, "t1 never got traffic again");
    }
    wait_upstream(&gw, "pool", "failures reset", |u| {
        target(u, p1)["consecutive_failures"] == 0
    })
    .await;
}

#[tokio::test]
async fn retries_only_where_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bad, good) = (Flaky::start("bad").await, Flaky::start("good").await);
    bad.set_mode(Mode::Reset);
    let dead = free_port();
    let gw = start(
        &format!(
            r#"
upstreams:
  resets:
    targets: [127.0.0.1:{}, 127.0.0.1:{}]
  refuses:
    targets: [127.0.0.1:{dead}, 127.0.0.1:{}]
    connect_timeout: 500ms
routes:
  - name: default
    path: /default
    upstream: resets
  - name: non-idempotent
    path: /post-ok
    upstream: resets
    retries: {{ max: 1, non_idempotent: true }}
  - name: none
    path: /none
    upstream: resets
    retries: {{ max: 0 }}
  - name: connect
    path: /connect
    upstream: refuses
"#,
            bad.port(),
            good.port(),
            good.port()
        ),
        dir.path(),
    )
    .await;
    let client = reqwest::Client::new();
    let count = |bodies: &[(u16, Value)], s: u16| bodies.iter().filter(|b| b.0 == s).count();
    let send = |method: reqwest::Method, path: &str, body: Option<&'static str>| {
        let mut req = client.request(method, gw.url(path));
        if let Some(b) = body {
            req = req.body(b);
        }
        async move {
            let r = req.send().await.expect("transport");
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // GET is idempotent and bodyless: a reset is retried on the other target.
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(send(reqwest::Method::GET, "/default/x", None).await);
    }
    assert_eq!(count(&got, 200), 6, "{got:?}");
    assert!(bad.proxied() >= 3, "the resetting target was tried");

    // POST is not retried after the connection was made: some fail.
    let before = bad.proxied();
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(send(reqwest::Method::POST, "/default/x", None).await);
    }
    let failed = count(&got, 502);
    assert!(failed >= 2, "{got:?}");
    assert_eq!(
        bad.proxied() - before,
        failed,
        "each failed POST reached one target only"
    );

    // Allowed by the route: a bodyless POST is retried ...
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(send(reqwest::Method::POST, "/post-ok/x", None).await);
    }
    assert_eq!(count(&got, 200), 6, "{got:?}");
    // ... but never once a request body was sent.
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(send(reqwest::Method::POST, "/post-ok/x", Some("payload")).await);
    }
    assert!(count(&got, 502) >= 2, "{got:?}");

    // `max: 0`: even GET is not retried.
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(send(reqwest::Method::GET, "/none/x", None).await);
    }
    assert!(count(&got, 502) >= 2, "{got:?}");

    // A refused connection reached nobody: retried for POST with a body too.
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(send(reqwest::Method::POST, "/connect/x", Some("payload")).await);
    }
    assert_eq!(count(&got, 200), 6, "{got:?}");
    assert!(got.iter().all(|b| b.1["body"] == "payload"));
}

/// Sends `n` GETs to `url` one after another, each failing (502) because the only
/// target resets every connection; returns how many tries reached that target.
async fn failing_gets(client: &reqwest::Client, url: &str, n: usize, target: &Flaky) -> usize {
    let before = target.proxied();
    for i in 0..n {
        let (status, body) = get(client, url).await;
        assert_eq!(status, 502, "request {i}: {body}");
    }
    target.proxied() - before
}

#[tokio::test]
async fn the_retry_budget_stops_retries_once_spent_even_across_a_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = Flaky::start("bad").await;
    bad.set_mode(Mode::Reset);
    let config = format!(
        r#"
upstreams:
  resets:
    targets: [127.0.0.1:{}]
routes:
  - name: budgeted
    path: /budgeted
    upstream: resets
    retries: {{ max: 1, budget: 0.2 }}
  - name: unbounded
    path: /unbounded
    upstream: resets
    retries: {{ max: 1, budget: 1.0 }}
"#,
        bad.port()
    );
    let gw = start(&config, dir.path()).await;
    let client = reqwest::Client::new();

    // With a budget of 1 every failed GET is tried twice: the count is exact.
    let hits = failing_gets(&client, &gw.url("/unbounded"), 20, &bad).await;
    assert_eq!(hits, 40, "each request retried once");

    // Budget 0.2: the reserve of 10 retries, plus 0.2 per request, then one
    // retry per five requests. Bounds rather than exact counts, with slack.
    let retries = failing_gets(&client, &gw.url("/budgeted"), 60, &bad).await - 60;
    assert!(
        (10..=24).contains(&retries),
        "60 failing requests: the reserve and about a fifth retried, got {retries} retries"
    );
    let retries = failing_gets(&client, &gw.url("/budgeted"), 50, &bad).await - 50;
    assert!(
        (8..=12).contains(&retries),
        "budget spent: about one in five of 50 requests retried, got {retries}"
    );

    // A reload that leaves the route alone does not refill its reserve.
    let mut file = std::fs::read_to_string(&gw.config_path).expect("config");
    file.push_str("  - { name: extra, path: /extra, upstream: resets }\n");
    std::fs::write(&gw.config_path, file).expect("write config");
    let r = client
        .post(gw.admin_url("/config/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 200);
    let (status, _) = get(&client, &gw.url("/extra")).await;
    assert_eq!(status, 502, "the reloaded config is in force");
    let retries = failing_gets(&client, &gw.url("/budgeted"), 20, &bad).await - 20;
    assert!(
        retries <= 6,
        "after the reload 20 requests still earn about 4 retries (a refilled reserve would give 12+), got {retries}"
    );
}

#[tokio::test]
async fn weighted_and_consistent_hash_balancing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (t1, t2) = (Flaky::start("t1").await, Flaky::start("t2").await);
    let gw = start(
        &format!(
            r#"
upstreams:
  weighted:
    targets:
      - {{ address: 127.0.0.1:{p1}, weight: 3 }}
      - 127.0.0.1:{p2}
  sticky:
    targets: [127.0.0.1:{p1}, 127.0.0.1:{p2}]
    balance: consistent_hash
    hash_on: header:x-user
  least:
    targets: [127.0.0.1:{p1}, 127.0.0.1:{p2}]
    balance: least_connections
routes:
  - {{ name: weighted, path: /w, upstream: weighted }}
  - {{ name: sticky, path: /s, upstream: sticky }}
  - {{ name: least, path: /l, upstream: least }}
"#,
            p1 = t1.port(),
            p2 = t2.port()
        ),
        dir.path(),
    )
    .await;
    let client = reqwest::Client::new();
    let mut t1_hits = 0;
    for _ in 0..40 {
        let (_, b) = get(&client, &gw.url("/w")).await;
        t1_hits += usize::from(b["upstream"] == "t1");
    }
    assert_eq!(t1_hits, 30, "weight 3:1");

    let mut spread = std::collections::HashSet::new();
    for user in 0..20 {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            let r = client
                .get(gw.url("/s"))
                .header("x-user", format!("user-{user}"))
                .send()
                .await
                .expect("request");
            let b: Value = r.json().await.expect("json");
            seen.insert(b["upstream"].as_str().unwrap_or_default().to_owned());
        }
        assert_eq!(seen.len(), 1, "user-{user} sticks to one target");
        spread.extend(seen);
    }
    assert_eq!(spread.len(), 2, "users spread over both targets");

    // Least connections: t1 is slow and busy, so new requests go to t2.
    t1.set_delay(Duration::from_millis(1500));
    let url = gw.url("/l/busy");
    let mut slow = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        slow.push(tokio::spawn(async move {
            reqwest::get(url).await.map(|r| r.status())
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t1.set_delay(Duration::ZERO);
    let p1 = t1.port();
    wait_upstream(&gw, "least", "a request in flight on t1", |u| {
        target(u, p1)["in_flight"].as_u64() >= Some(1)
    })
    .await;
    let (_, b) = get(&client, &gw.url("/l/now")).await;
    assert_eq!(b["upstream"], "t2", "the idle target wins");
    for s in slow {
        assert_eq!(s.await.expect("task").expect("request"), 200);
    }
}

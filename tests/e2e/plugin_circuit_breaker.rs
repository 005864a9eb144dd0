//! The built-in `circuit-breaker` filter through the real gateway (two worker threads, so
//! the circuit is shared between VMs): closed → open on consecutive failures of an
//! upstream told to fail, the fallback while open with nothing reaching the upstream,
//! half-open admitting exactly K probes under concurrency, closed again after a probe
//! succeeds, a failing probe reopening, the gateway's own connect errors counting, the
//! failure ratio, the state gauge on `/metrics`, a fallback upstream taking the traffic
//! while the circuit is open, and configurations refused at load.

use std::time::{Duration, Instant};

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::{Aistack, free_port, run_cli};
use serde_json::{Value, json};

use crate::flaky::{Flaky, Mode};
use crate::wasm_common::{header, start};

/// Routes `guarded` (the filter) and `bare` (no filter) on the `flaky` upstream.
fn routes(flaky: &Flaky, config: &Value) -> String {
    format!(
        "upstreams:\n  echo:\n    targets: [127.0.0.1:{{echo}}]\n\
         \x20 flaky:\n    targets: [127.0.0.1:{}]\n\
         routes:\n  - name: guarded\n    path: /guarded\n    upstream: flaky\n    plugins:\n\
         \x20     - name: circuit-breaker\n        config: {config}\n\
         \x20 - name: bare\n    path: /bare\n    upstream: flaky\n",
        flaky.port()
    )
}

async fn get(client: &reqwest::Client, gw: &Aistack, path: &str) -> (u16, String, Value) {
    let r = client.get(gw.url(path)).send().await.expect("request");
    let status = r.status().as_u16();
    let id = header(&r, "x-request-id");
    let body = r.json().await.unwrap_or(Value::Null);
    (status, id, body)
}

/// Asserts a fallback answer: 503 JSON `circuit_open` carrying the request id.
fn assert_fallback(status: u16, id: &str, body: &Value) {
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "circuit_open", "{body}");
    assert!(!id.is_empty());
    assert_eq!(body["error"]["request_id"], id, "{body}");
}

/// Waits (up to 10 s) until `needle` was logged `n` times.
async fn wait_logged(gw: &Aistack, needle: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = gw.output();
        if output.matches(needle).count() >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} not logged {n} times:\n{output}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The circuit-state gauge of `route` on the admin `/metrics` ("" when absent).
async fn gauge(gw: &Aistack, route: &str) -> String {
    let text = reqwest::get(gw.admin_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let series =
        format!("aistack_plugin_circuit_state{{plugin=\"circuit-breaker\",route=\"{route}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .unwrap_or_default()
        .to_owned()
}

/// Sleeps until `cooldown` has passed since `opened` (the circuit goes half-open only on
/// a request, so there is nothing to poll before that).
async fn after_cooldown(opened: Instant, cooldown: Duration) {
    tokio::time::sleep_until((opened + cooldown + Duration::from_millis(150)).into()).await;
}

#[tokio::test]
async fn opens_on_failures_answers_the_fallback_then_probes_and_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let flaky = Flaky::start("flaky").await;
    let config = json!({"consecutive_failures": 3, "cooldown": "1s", "half_open_probes": 2});
    let gw = start(&echo, dir.path(), 2, &routes(&flaky, &config)).await;
    let client = reqwest::Client::new();

    // Closed: everything passes.
    for _ in 0..3 {
        assert_eq!(get(&client, &gw, "/guarded/x").await.0, 200);
    }
    // The upstream fails: the failures reach the client until the third trips the circuit.
    flaky.set_mode(Mode::Unhealthy);
    for _ in 0..3 {
        let (status, _, body) = get(&client, &gw, "/guarded/x").await;
        assert_eq!(status, 503);
        assert_eq!(body["upstream"], "flaky", "the upstream's own 503: {body}");
    }
    wait_logged(
        &gw,
        "route guarded: circuit closed -> open (3 consecutive failures)",
        1,
    )
    .await;
    let opened = Instant::now();
    assert_eq!(flaky.proxied(), 6);
    assert_eq!(gauge(&gw, "guarded").await, "1");

    // Open: the fallback at once, and the upstream sees none of it.
    for _ in 0..5 {
        let (status, id, body) = get(&client, &gw, "/guarded/x").await;
        assert_fallback(status, &id, &body);
    }
    assert_eq!(
        flaky.proxied(),
        6,
        "no request reached the upstream while open"
    );
    // The filter is what answers: the route without it still reaches the failing upstream.
    for _ in 0..3 {
        assert_eq!(get(&client, &gw, "/bare/x").await.0, 503);
    }
    assert_eq!(flaky.proxied(), 9);

    // Half-open: of 20 concurrent requests exactly 2 probes reach the (now healthy, but
    // slow: the probes must not close the circuit before the other 18 are decided)
    // upstream; the others get the fallback.
    flaky.set_mode(Mode::Ok);
    flaky.set_delay(Duration::from_secs(2));
    after_cooldown(opened, Duration::from_secs(1)).await;
    let requests = (0..20).map(|_| {
        let client = client.clone();
        let url = gw.url("/guarded/x");
        tokio::spawn(async move {
            let r = client.get(url).send().await.expect("request");
            let status = r.status().as_u16();
            let id = header(&r, "x-request-id");
            (status, id, r.json::<Value>().await.unwrap_or(Value::Null))
        })
    });
    let mut answers = Vec::new();
    for handle in requests.collect::<Vec<_>>() {
        answers.push(handle.await.expect("task"));
    }
    let passed: Vec<&Value> = answers
        .iter()
        .filter(|(status, _, _)| *status == 200)
        .map(|(_, _, body)| body)
        .collect();
    assert_eq!(
        passed.len(),
        2,
        "exactly half_open_probes pass: {answers:?}"
    );
    assert!(
        passed.iter().all(|b| b["upstream"] == "flaky"),
        "{passed:?}"
    );
    for (status, id, body) in answers.iter().filter(|(status, _, _)| *status != 200) {
        assert_fallback(*status, id, body);
    }
    assert_eq!(flaky.proxied(), 11, "the upstream saw exactly the 2 probes");

    // A probe succeeded: closed, everything passes again.
    wait_logged(
        &gw,
        "route guarded: circuit half-open -> closed (a probe succeeded)",
        1,
    )
    .await;
    assert!(
        gw.output()
            .contains("route guarded: circuit open -> half-open (cooldown over)")
    );
    flaky.set_delay(Duration::ZERO);
    for _ in 0..10 {
        assert_eq!(get(&client, &gw, "/guarded/x").await.0, 200);
    }
    assert_eq!(flaky.proxied(), 21);
    assert_eq!(gauge(&gw, "guarded").await, "0");
}

/// `scope: upstream`: one circuit for the upstream, whichever route its failures came
/// through. Failures through `one` open it; `two` (same upstream) then answers the
/// fallback without reaching it, while `three` (route scope, same upstream) still passes.
#[tokio::test]
async fn an_upstream_scoped_circuit_is_shared_by_the_routes_that_name_the_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let flaky = Flaky::start("flaky").await;
    let shared = json!({"consecutive_failures": 3, "cooldown": "1m", "scope": "upstream"});
    let own = json!({"consecutive_failures": 3, "cooldown": "1m"});
    let routes = format!(
        "upstreams:\n  echo:\n    targets: [127.0.0.1:{{echo}}]\n\
         \x20 flaky:\n    targets: [127.0.0.1:{port}]\n\
         routes:\n\
         \x20 - name: one\n    path: /one\n    upstream: flaky\n    plugins:\n\
         \x20     - name: circuit-breaker\n        config: {shared}\n\
         \x20 - name: two\n    path: /two\n    upstream: flaky\n    plugins:\n\
         \x20     - name: circuit-breaker\n        config: {shared}\n\
         \x20 - name: three\n    path: /three\n    upstream: flaky\n    plugins:\n\
         \x20     - name: circuit-breaker\n        config: {own}\n",
        port = flaky.port()
    );
    let gw = start(&echo, dir.path(), 2, &routes).await;
    let client = reqwest::Client::new();
    flaky.set_mode(Mode::Unhealthy);
    for _ in 0..3 {
        assert_eq!(get(&client, &gw, "/one/x").await.0, 503);
    }
    wait_logged(
        &gw,
        "upstream flaky: circuit closed -> open (3 consecutive failures)",
        1,
    )
    .await;
    let reached = flaky.proxied();
    assert_eq!(reached, 3);
    for path in ["/two/x", "/one/x"] {
        let (status, id, body) = get(&client, &gw, path).await;
        assert_fallback(status, &id, &body);
    }
    assert_eq!(
        flaky.proxied(),
        reached,
        "the open circuit kept both routes away"
    );
    // A route-scoped entry keeps its own circuit (closed): its request reaches the upstream.
    let (status, _, body) = get(&client, &gw, "/three/x").await;
    assert_eq!(status, 503);
    assert_eq!(
        body["upstream"], "flaky",
        "the upstream's own answer: {body}"
    );
    assert_eq!(flaky.proxied(), reached + 1);
    let text = reqwest::get(gw.admin_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.lines().any(|l| l
            == "aistack_plugin_upstream_circuit_state{plugin=\"circuit-breaker\",upstream=\"flaky\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_failing_probe_reopens_the_circuit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let flaky = Flaky::start("flaky").await;
    let config = json!({"consecutive_failures": 2, "cooldown": "1s"});
    let gw = start(&echo, dir.path(), 2, &routes(&flaky, &config)).await;
    let client = reqwest::Client::new();

    flaky.set_mode(Mode::Unhealthy);
    for _ in 0..2 {
        assert_eq!(get(&client, &gw, "/guarded/x").await.0, 503);
    }
    wait_logged(&gw, "route guarded: circuit closed -> open", 1).await;
    let opened = Instant::now();
    let (status, id, body) = get(&client, &gw, "/guarded/x").await;
    assert_fallback(status, &id, &body);
    assert_eq!(flaky.proxied(), 2);

    // The one probe meets the still-failing upstream: open again, fallback at once.
    after_cooldown(opened, Duration::from_secs(1)).await;
    let (status, _, body) = get(&client, &gw, "/guarded/x").await;
    assert_eq!(status, 503);
    assert_eq!(
        body["upstream"], "flaky",
        "the probe reached the upstream: {body}"
    );
    assert_eq!(flaky.proxied(), 3);
    wait_logged(
        &gw,
        "route guarded: circuit half-open -> open (a probe failed)",
        1,
    )
    .await;
    let reopened = Instant::now();
    for _ in 0..3 {
        let (status, id, body) = get(&client, &gw, "/guarded/x").await;
        assert_fallback(status, &id, &body);
    }
    assert_eq!(flaky.proxied(), 3);
    assert_eq!(gauge(&gw, "guarded").await, "1");

    // Healthy again: the next probe closes it.
    flaky.set_mode(Mode::Ok);
    after_cooldown(reopened, Duration::from_secs(1)).await;
    assert_eq!(get(&client, &gw, "/guarded/x").await.0, 200);
    wait_logged(&gw, "route guarded: circuit half-open -> closed", 1).await;
    for _ in 0..3 {
        assert_eq!(get(&client, &gw, "/guarded/x").await.0, 200);
    }
    assert_eq!(flaky.proxied(), 7);
    assert_eq!(gauge(&gw, "guarded").await, "0");
}

#[tokio::test]
async fn gateway_connect_errors_count_and_the_failure_ratio_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let flaky = Flaky::start("flaky").await;
    // `dead`: nothing listens. Only 500 is a listed status, yet the gateway's own 502
    // (`bad_gateway`) counts as a failure.
    let dead = json!({"consecutive_failures": 2, "failure_statuses": [500], "cooldown": "60s",
        "fallback": {"status": 200, "headers": {"X-Fallback": "cached"}, "body": "stale"}});
    let ratio = json!({"failure_ratio": 0.5, "min_requests": 4, "window": "30s"});
    let body = format!(
        "upstreams:\n  echo:\n    targets: [127.0.0.1:{{echo}}]\n\
         \x20 dead:\n    targets: [127.0.0.1:{}]\n\
         \x20 flaky:\n    targets: [127.0.0.1:{}]\n\
         routes:\n  - name: dead\n    path: /dead\n    upstream: dead\n    plugins:\n\
         \x20     - name: circuit-breaker\n        config: {dead}\n\
         \x20 - name: ratio\n    path: /ratio\n    upstream: flaky\n    plugins:\n\
         \x20     - name: circuit-breaker\n        config: {ratio}\n",
        free_port(),
        flaky.port()
    );
    let gw = start(&echo, dir.path(), 2, &body).await;
    let client = reqwest::Client::new();

    for _ in 0..2 {
        let (status, _, body) = get(&client, &gw, "/dead/x").await;
        assert_eq!(status, 502);
        assert_eq!(body["error"]["code"], "bad_gateway", "{body}");
    }
    wait_logged(
        &gw,
        "route dead: circuit closed -> open (2 consecutive failures)",
        1,
    )
    .await;
    let r = client.get(gw.url("/dead/x")).send().await.expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-fallback"), "cached");
    assert_eq!(r.text().await.expect("body"), "stale");

    // Ratio: 2 successes then 2 failures is 50% of 4 requests.
    for _ in 0..2 {
        assert_eq!(get(&client, &gw, "/ratio/x").await.0, 200);
    }
    flaky.set_mode(Mode::Unhealthy);
    for _ in 0..2 {
        assert_eq!(get(&client, &gw, "/ratio/x").await.0, 503);
    }
    wait_logged(
        &gw,
        "route ratio: circuit closed -> open (2 of the last 4 requests failed)",
        1,
    )
    .await;
    let (status, id, body) = get(&client, &gw, "/ratio/x").await;
    assert_fallback(status, &id, &body);
    assert_eq!(flaky.proxied(), 4);
    assert_eq!(gauge(&gw, "ratio").await, "1");
    assert_eq!(gauge(&gw, "dead").await, "1");
}

#[test]
fn bad_configurations_are_refused_at_load_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            json!({"failure_ratio": 0}),
            "failure_ratio must be greater than 0 and at most 1, got 0",
        ),
        (
            json!({"failure_ratio": 1.5, "min_requests": 5}),
            "failure_ratio must be greater than 0 and at most 1, got 1.5",
        ),
        (
            json!({"failure_ratio": 0.5, "min_requests": 0}),
            "min_requests must be at least 1",
        ),
        (
            json!({"consecutive_failures": 0}),
            "consecutive_failures must be at least 1",
        ),
        (
            json!({"consecutive_failures": 3, "cooldwn": "1s"}),
            "unknown field `cooldwn`",
        ),
        (
            json!({"consecutive_failures": 3, "fallback": {"upstream": "backup"}}),
            "fallback.upstream: the config has no upstream \"backup\"",
        ),
        (
            json!({"consecutive_failures": 3, "fallback": {"upstream": "app", "status": 200}}),
            "give either `upstream` or a static response",
        ),
        (
            json!({"consecutive_failures": 3, "fallback": {"upstream": ""}}),
            "fallback.upstream must name an upstream",
        ),
        (json!({"cooldown": "5s"}), "give `failure_ratio`"),
        (
            json!({"consecutive_failures": 3, "scope": "host"}),
            "scope must be `route` or `upstream`",
        ),
        (
            json!({"consecutive_failures": 3, "window": "10s"}),
            "apply only with `failure_ratio`",
        ),
        (
            json!({"consecutive_failures": 3, "cooldown": "soon"}),
            "cooldown:",
        ),
        (
            json!({"consecutive_failures": 3, "half_open_probes": 0}),
            "half_open_probes must be at least 1",
        ),
        (
            json!({"consecutive_failures": 3, "failure_statuses": ["600-700"]}),
            "failure_statuses[0]",
        ),
    ];
    let yaml = |config: &Value| {
        format!(
            "backend:\n  enabled: false\nupstreams:\n  app:\n    targets: [127.0.0.1:9]\n\
             routes:\n  - name: app\n    upstream: app\n    plugins:\n\
             \x20     - name: circuit-breaker\n        config: {config}\n"
        )
    };
    for (config, reason) in cases {
        std::fs::write(dir.path().join("aistack.yaml"), yaml(&config)).expect("write");
        let (status, _, stderr) = run_cli(&["validate", "aistack.yaml"], dir.path());
        assert!(!status.success(), "accepted {config}");
        assert!(
            stderr.contains("circuit-breaker") && stderr.contains("refused its configuration"),
            "{stderr}"
        );
        assert!(
            stderr.contains(reason),
            "{config}: want {reason:?} in\n{stderr}"
        );
    }
    let good = json!({"failure_ratio": 0.5, "min_requests": 20, "window": "1m",
        "consecutive_failures": 5, "failure_statuses": [502, "503-504"], "cooldown": "30s",
        "half_open_probes": 3, "fallback": {"status": 503, "headers": {"retry-after": "30"}}});
    std::fs::write(dir.path().join("aistack.yaml"), yaml(&good)).expect("write");
    let (status, _, stderr) = run_cli(&["validate", "aistack.yaml"], dir.path());
    assert!(status.success(), "{stderr}");
    let to_upstream = json!({"consecutive_failures": 5, "fallback": {"upstream": "app"}});
    std::fs::write(dir.path().join("aistack.yaml"), yaml(&to_upstream)).expect("write");
    let (status, _, stderr) = run_cli(&["validate", "aistack.yaml"], dir.path());
    assert!(status.success(), "{stderr}");
}

#[test]
fn the_example_config_validates() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let (status, stdout, stderr) = run_cli(&["validate", "circuit-breaker.yaml"], &example);
    assert!(status.success(), "{stdout}{stderr}");
}

/// Sends `n` concurrent GETs to `path`; (status, the answering upstream's name) of each.
async fn burst(client: &reqwest::Client, gw: &Aistack, path: &str, n: usize) -> Vec<(u16, Value)> {
    let requests: Vec<_> = (0..n)
        .map(|_| {
            let client = client.clone();
            let url = gw.url(path);
            tokio::spawn(async move {
                let r = client.get(url).send().await.expect("request");
                let status = r.status().as_u16();
                (
                    status,
                    r.json::<Value>().await.unwrap_or(Value::Null)["upstream"].clone(),
                )
            })
        })
        .collect();
    let mut answers = Vec::new();
    for handle in requests {
        answers.push(handle.await.expect("task"));
    }
    answers
}

#[tokio::test]
async fn while_open_the_fallback_upstream_answers_and_probes_go_to_the_primary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let primary = Flaky::start("primary").await;
    let backup = Flaky::start("backup").await;
    let config = json!({"consecutive_failures": 3, "cooldown": "1s", "half_open_probes": 2,
        "fallback": {"upstream": "backup"}});
    let body = format!(
        "upstreams:\n  echo:\n    targets: [127.0.0.1:{{echo}}]\n\
         \x20 primary:\n    targets: [127.0.0.1:{}]\n\
         \x20 backup:\n    targets: [127.0.0.1:{}]\n\
         routes:\n  - name: guarded\n    path: /guarded\n    upstream: primary\n    plugins:\n\
         \x20     - name: circuit-breaker\n        config: {config}\n",
        primary.port(),
        backup.port()
    );
    let gw = start(&echo, dir.path(), 2, &body).await;
    let client = reqwest::Client::new();
    let answered_by = |answers: &[(u16, Value)], who: &str| {
        answers
            .iter()
            .filter(|(status, name)| *status == 200 && name == who)
            .count()
    };

    // Closed: the primary answers; then it fails until the circuit opens.
    assert_eq!(
        answered_by(&burst(&client, &gw, "/guarded/x", 1).await, "primary"),
        1
    );
    primary.set_mode(Mode::Unhealthy);
    for _ in 0..3 {
        let (status, _, body) = get(&client, &gw, "/guarded/x").await;
        assert_eq!(
            (status, &body["upstream"]),
            (503, &json!("primary")),
            "{body}"
        );
    }
    wait_logged(
        &gw,
        "route guarded: circuit closed -> open (3 consecutive failures)",
        1,
    )
    .await;
    let opened = Instant::now();
    assert_eq!(gauge(&gw, "guarded").await, "1");

    // Open: the backup answers, the primary is not reached. The backup's own failures are
    // not the primary's: they are passed on, and counted nowhere.
    let answers = burst(&client, &gw, "/guarded/x", 6).await;
    assert_eq!(answered_by(&answers, "backup"), 6, "{answers:?}");
    backup.set_mode(Mode::Unhealthy);
    for _ in 0..3 {
        let (status, _, body) = get(&client, &gw, "/guarded/x").await;
        assert_eq!(
            (status, &body["upstream"]),
            (503, &json!("backup")),
            "{body}"
        );
    }
    backup.set_mode(Mode::Ok);
    assert_eq!(primary.proxied(), 4, "the primary saw nothing while open");
    assert_eq!(backup.proxied(), 9);

    // Half-open: of 20 concurrent requests exactly 2 probes reach the (healthy again, slow
    // so that the probes are still out while the others are decided) primary; the backup
    // answers the other 18.
    primary.set_mode(Mode::Ok);
    primary.set_delay(Duration::from_secs(2));
    after_cooldown(opened, Duration::from_secs(1)).await;
    let answers = burst(&client, &gw, "/guarded/x", 20).await;
    assert_eq!(answered_by(&answers, "primary"), 2, "{answers:?}");
    assert_eq!(answered_by(&answers, "backup"), 18, "{answers:?}");
    assert_eq!(
        primary.proxied(),
        6,
        "exactly half_open_probes reached the primary"
    );
    assert_eq!(backup.proxied(), 27);
    wait_logged(
        &gw,
        "route guarded: circuit half-open -> closed (a probe succeeded)",
        1,
    )
    .await;
    assert_eq!(gauge(&gw, "guarded").await, "0");

    // Closed again: the primary takes everything.
    primary.set_delay(Duration::ZERO);
    let answers = burst(&client, &gw, "/guarded/x", 5).await;
    assert_eq!(answered_by(&answers, "primary"), 5, "{answers:?}");
    assert_eq!(backup.proxied(), 27);

    // Reopen: the primary fails again, the circuit opens, and the one probe after the
    // cooldown (half_open_probes is 2, so send one at a time) fails: open again.
    primary.set_mode(Mode::Unhealthy);
    for _ in 0..3 {
        assert_eq!(get(&client, &gw, "/guarded/x").await.0, 503);
    }
    wait_logged(&gw, "route guarded: circuit closed -> open", 2).await;
    let reopened = Instant::now();
    assert_eq!(
        answered_by(&burst(&client, &gw, "/guarded/x", 1).await, "backup"),
        1
    );
    after_cooldown(reopened, Duration::from_secs(1)).await;
    let (status, _, body) = get(&client, &gw, "/guarded/x").await;
    assert_eq!(
        (status, &body["upstream"]),
        (503, &json!("primary")),
        "the probe: {body}"
    );
    wait_logged(
        &gw,
        "route guarded: circuit half-open -> open (a probe failed)",
        1,
    )
    .await;
    let answers = burst(&client, &gw, "/guarded/x", 4).await;
    assert_eq!(answered_by(&answers, "backup"), 4, "{answers:?}");
    assert_eq!(primary.proxied(), 15);
    assert_eq!(gauge(&gw, "guarded").await, "1");
}

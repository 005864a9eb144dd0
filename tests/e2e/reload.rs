//! Config reload through the real binary: under load with zero failures, a
//! refused config leaves the old one serving, SIGHUP, file change, and the
//! active config (secrets redacted) on the admin API.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aistack_e2e::{Aistack, Ports, render};
use serde_json::Value;

use crate::flaky::Flaky;

/// Route set A: `/one` → u1 with the prefix stripped, `/two` → u2 as is,
/// `/only-a`. Route set B swaps them and has `/only-b` instead.
const CONFIG: &str = r#"
listeners:
  - address: 127.0.0.1:{proxy}
admin:
  address: 127.0.0.1:{admin}
backend:
  enabled: false
server:
  threads: 2
  grace_period: 1s
  watch: {watch}
  watch_interval: 100ms
upstreams:
  u1:
    targets: [127.0.0.1:{u1}]
  u2:
    targets: [127.0.0.1:{u2}]
routes:
  - name: one
    path: /one
    upstream: {one}
    strip_prefix: {strip_one}
  - name: two
    path: /two
    upstream: {two}
    strip_prefix: {strip_two}
  - name: only-{set}
    path: /only-{set}
    upstream: u1
"#;

struct Setup {
    ports: Ports,
    u1: Flaky,
    u2: Flaky,
    watch: bool,
}

impl Setup {
    async fn new(watch: bool) -> Setup {
        Setup {
            ports: Ports::free(),
            u1: Flaky::start("u1").await,
            u2: Flaky::start("u2").await,
            watch,
        }
    }

    fn config(&self, set: char) -> String {
        let a = set == 'a';
        render(CONFIG, self.ports)
            .replace("{watch}", &self.watch.to_string())
            .replace("{u1}", &self.u1.port().to_string())
            .replace("{u2}", &self.u2.port().to_string())
            .replace("{one}", if a { "u1" } else { "u2" })
            .replace("{two}", if a { "u2" } else { "u1" })
            .replace("{strip_one}", if a { "true" } else { "false" })
            .replace("{strip_two}", if a { "false" } else { "true" })
            .replace("{set}", &set.to_string())
    }
}

/// What `/one/x` and `/two/x` must answer under route set `set`: (upstream, path seen).
fn expected(set: char, route: &str) -> (&'static str, &'static str) {
    match (set, route) {
        ('a', "one") => ("u1", "/x"),
        ('a', _) => ("u2", "/two/x"),
        (_, "one") => ("u2", "/one/x"),
        _ => ("u1", "/x"),
    }
}

/// Replaces the config file in one step (no half-written file is ever seen).
pub fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = client.get(url).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub async fn metric(gw: &Aistack, line_start: &str) -> Option<f64> {
    let text = reqwest::get(gw.admin_url("/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// One request of the load: when it ran and what answered.
struct Sample {
    start: Instant,
    end: Instant,
    route: &'static str,
    outcome: Result<(String, String), String>,
}

#[tokio::test]
async fn reload_ten_times_under_load_with_zero_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new(false).await;
    let gw = Aistack::start("gateway", &setup.config('a'), setup.ports, dir.path()).await;
    let client = reqwest::Client::new();

    // A bounded loopback load: 4 clients, each one request at a time.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let stop = Arc::clone(&stop);
        let base = gw.url("");
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut samples = Vec::new();
            let mut i = c;
            while !stop.load(Ordering::SeqCst) && samples.len() < 20_000 {
                let route = if i % 2 == 0 { "one" } else { "two" };
                i += 1;
                let start = Instant::now();
                let outcome = match client.get(format!("{base}/{route}/x")).send().await {
                    Ok(r) if r.status() == 200 => match r.json::<Value>().await {
                        Ok(v) => Ok((
                            v["upstream"].as_str().unwrap_or_default().to_owned(),
                            v["path"].as_str().unwrap_or_default().to_owned(),
                        )),
                        Err(e) => Err(format!("body: {e}")),
                    },
                    Ok(r) => Err(format!("status {}", r.status())),
                    Err(e) => Err(format!("transport: {e}")),
                };
                samples.push(Sample {
                    start,
                    end: Instant::now(),
                    route,
                    outcome,
                });
            }
            samples
        }));
    }

    // Windows of time in which one route set was in force: (set, from, to).
    let mut windows: Vec<(char, Instant, Instant)> = Vec::new();
    let mut in_force = ('a', Instant::now());
    tokio::time::sleep(Duration::from_millis(150)).await;
    for i in 0..10 {
        let set = if i % 2 == 0 { 'b' } else { 'a' };
        write_config(&gw.config_path, &setup.config(set));
        let asked = Instant::now();
        windows.push((in_force.0, in_force.1, asked));
        let r = client
            .post(gw.admin_url("/config/reload"))
            .send()
            .await
            .expect("reload");
        assert_eq!(
            r.status(),
            200,
            "reload {i}: {}",
            r.text().await.unwrap_or_default()
        );
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["generation"], i + 2, "{body}");
        in_force = (set, Instant::now());
        // The route only one set has answers per the set in force.
        let (own, other) = if set == 'a' { ("a", "b") } else { ("b", "a") };
        assert_eq!(
            get_json(&client, &gw.url(&format!("/only-{own}/y")))
                .await
                .0,
            200
        );
        assert_eq!(
            get_json(&client, &gw.url(&format!("/only-{other}/y")))
                .await
                .0,
            404
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    windows.push((in_force.0, in_force.1, Instant::now()));
    stop.store(true, Ordering::SeqCst);

    let mut total = 0;
    let mut checked = vec![0usize; windows.len()];
    for c in clients {
        for s in c.await.expect("client task") {
            total += 1;
            let (upstream, path) = match &s.outcome {
                Ok(v) => v,
                Err(e) => panic!("a request failed during reloads: {e}"),
            };
            // A request that ran wholly inside one window must match its set.
            if let Some(w) = windows
                .iter()
                .position(|(_, from, to)| s.start >= *from && s.end <= *to)
            {
                let want = expected(windows[w].0, s.route);
                assert_eq!(
                    (upstream.as_str(), path.as_str()),
                    want,
                    "route {} under set {}",
                    s.route,
                    windows[w].0
                );
                checked[w] += 1;
            }
        }
    }
    assert!(total > 100, "the load ran: {total} requests");
    assert!(
        checked.iter().all(|&n| n > 0),
        "every config in force answered some requests: {checked:?}"
    );
    let ok = metric(&gw, r#"aistack_config_reloads_total{result="ok"}"#).await;
    assert_eq!(ok, Some(10.0));
}

#[tokio::test]
async fn a_routed_request_finishes_on_the_old_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new(false).await;
    let gw = Aistack::start("gateway", &setup.config('a'), setup.ports, dir.path()).await;
    setup.u1.set_delay(Duration::from_millis(1500));
    // `/only-a` exists in set A only; the request is routed before the reload.
    let url = gw.url("/only-a/slow");
    let slow = tokio::spawn(async move { get_json(&reqwest::Client::new(), &url).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    write_config(&gw.config_path, &setup.config('b'));
    let r = reqwest::Client::new()
        .post(gw.admin_url("/config/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 200);
    let (status, body) = slow.await.expect("task");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/only-a/slow");
    setup.u1.set_delay(Duration::ZERO);
    assert_eq!(
        get_json(&reqwest::Client::new(), &gw.url("/only-a/slow"))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn a_refused_config_names_file_line_column_and_the_old_one_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new(false).await;
    let gw = Aistack::start("gateway", &setup.config('a'), setup.ports, dir.path()).await;
    let client = reqwest::Client::new();
    let (_, before) = get_json(&client, &gw.admin_url("/status")).await;

    let broken = setup
        .config('b')
        .replace("    upstream: u1\n", "    upstream: nowhere\n")
        .replace("strip_prefix: true", "strip_prefx: true");
    write_config(&gw.config_path, &broken);
    let r = client
        .post(gw.admin_url("/config/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_config");
    let details = body["error"]["details"].to_string();
    let file = gw.config_path.display().to_string();
    assert!(
        details.contains(&format!("{file}:")) && details.contains("strip_prefx"),
        "{details}"
    );
    let line_col = regex_like_line_col(&details, &file);
    assert!(line_col, "file:line:column in {details}");

    // The old config still serves, unchanged.
    assert_eq!(get_json(&client, &gw.url("/only-a/z")).await.0, 200);
    let (_, after) = get_json(&client, &gw.admin_url("/status")).await;
    assert_eq!(before["config"], after["config"]);
    let errors = metric(&gw, r#"aistack_config_reloads_total{result="error"}"#).await;
    assert_eq!(errors, Some(1.0));
    // The log says why, with the place.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.output().contains("config reload refused") {
        assert!(Instant::now() < deadline, "{}", gw.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = gw.output();
    let line = log
        .lines()
        .find(|l| l.contains("config reload refused"))
        .unwrap_or_default();
    assert!(regex_like_line_col(line, &file), "{line}");
}

/// `FILE:LINE:COL:` somewhere in `text`.
fn regex_like_line_col(text: &str, file: &str) -> bool {
    text.match_indices(file).any(|(i, _)| {
        let rest = &text[i + file.len()..];
        let mut parts = rest.splitn(4, ':');
        parts.next() == Some("")
            && parts
                .next()
                .is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
            && parts
                .next()
                .is_some_and(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[tokio::test]
async fn sighup_reloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new(false).await;
    let gw = Aistack::start("gateway", &setup.config('a'), setup.ports, dir.path()).await;
    let client = reqwest::Client::new();
    write_config(&gw.config_path, &setup.config('b'));
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_json(&client, &gw.url("/only-b/q")).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload:\n{}",
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get_json(&client, &gw.url("/only-a/q")).await.0, 404);
    assert!(
        gw.wait_for_output("SIGHUP").await.contains("SIGHUP"),
        "the reload is logged with its trigger"
    );
}

#[tokio::test]
async fn a_changed_file_is_reloaded_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new(true).await;
    let gw = Aistack::start("gateway", &setup.config('a'), setup.ports, dir.path()).await;
    let client = reqwest::Client::new();
    write_config(&gw.config_path, &setup.config('b'));
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_json(&client, &gw.url("/only-b/q")).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "file change not seen:\n{}",
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Debounced: one change, one reload, however many polls saw it.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ok = metric(&gw, r#"aistack_config_reloads_total{result="ok"}"#).await;
    assert_eq!(ok, Some(1.0));
    let (_, status) = get_json(&client, &gw.admin_url("/status")).await;
    assert_eq!(status["config"]["generation"], 2);
}

#[tokio::test]
async fn admin_shows_the_active_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new(false).await;
    let config = setup.config('a');
    let config = format!(
        "{}admin:\n  address: 127.0.0.1:{}\n  token: ${{TEST_ADMIN_TOKEN}}\n  read_only_token: literal-read-only-token-123\ndatabase:\n  url: postgres://app:db-password-456@127.0.0.1:1/aistack\nredis:\n  url: redis://:redis-password-789@127.0.0.1:1\n",
        config.replace(
            &format!("admin:\n  address: 127.0.0.1:{}\n", setup.ports.admin),
            ""
        ),
        setup.ports.admin
    );
    let config = config.replace(
        "  - name: only-a\n    path: /only-a\n    upstream: u1\n",
        "  - name: only-a\n    path: /only-a\n    upstream: u1\n    plugins:\n      - name: request-id\n        config: { header: \"${TEST_HEADER_NAME}\" }\n",
    );
    let token = "env-admin-token-abcdef";
    let gw = Aistack::start_with_env(
        "gateway",
        &config,
        setup.ports,
        dir.path(),
        &[
            ("TEST_ADMIN_TOKEN", token),
            ("TEST_HEADER_NAME", "x-secret-header-name"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let r = client
        .get(gw.admin_url("/config"))
        .bearer_auth(token)
        .send()
        .await
        .expect("config");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    for secret in [
        token,
        "literal-read-only-token-123",
        "db-password-456",
        "redis-password-789",
        "x-secret-header-name",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let v: Value = serde_json::from_str(&text).expect("json");
    let c = &v["config"];
    assert_eq!(c["admin"]["token"], "<redacted>");
    assert_eq!(
        c["database"]["url"],
        "postgres://app:<redacted>@127.0.0.1:1/aistack"
    );
    let plugin = &c["routes"][2]["plugins"][0];
    assert_eq!(
        plugin["config"]["header"], "${TEST_HEADER_NAME}",
        "{plugin}"
    );
    assert_eq!(c["routes"][0]["upstream"], "u1");
    // The hash shown is the active config's, as in /status.
    let status: Value = client
        .get(gw.admin_url("/status"))
        .bearer_auth(token)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(c["hash"], status["config"]["hash"]);
    assert_eq!(status["config"]["hash"].as_str().map(str::len), Some(16));
}

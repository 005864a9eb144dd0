//! Keeping upstream targets fresh, through the real binary: the TCP health
//! check ejects a target whose port closed and takes it back when it reopens;
//! HTTP health checks speak HTTP/2 to an `http2` upstream; a target named by
//! DNS is proxied to and resolved again on its interval.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aistack_e2e::{Aistack, Ports, render};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::flaky::Flaky;
use crate::upstreams::{BASE, get, start, target, wait_upstream};

#[tokio::test]
async fn tcp_health_checks_eject_a_closed_port_and_recover_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (t1, t2) = (Flaky::start("t1").await, Flaky::start("t2").await);
    let (p1, p2) = (t1.port(), t2.port());
    let gw = start(
        &format!(
            r#"
upstreams:
  pool:
    targets: [127.0.0.1:{p1}, 127.0.0.1:{p2}]
    health_check:
      type: tcp
      interval: 100ms
      timeout: 500ms
      healthy_threshold: 2
      unhealthy_threshold: 2
routes:
  - {{ name: r, path: /, upstream: pool }}
"#
        ),
        dir.path(),
    )
    .await;
    let client = reqwest::Client::new();
    wait_upstream(&gw, "pool", "both targets up", |u| u["available"] == 2).await;

    let t1_addr = t1.stop();
    wait_upstream(&gw, "pool", "t1 marked unhealthy", |u| {
        target(u, p1)["health_check"] == "unhealthy" && u["available"] == 1
    })
    .await;
    for _ in 0..20 {
        let (status, body) = get(&client, &gw.url("/x")).await;
        assert_eq!((status, body["upstream"].as_str()), (200, Some("t2")));
    }

    let t1 = Flaky::restart_on("t1", t1_addr).await;
    wait_upstream(&gw, "pool", "t1 healthy again", |u| {
        target(u, p1)["health_check"] == "healthy" && u["available"] == 2
    })
    .await;
    for _ in 0..20 {
        let (status, _) = get(&client, &gw.url("/x")).await;
        assert_eq!(status, 200);
    }
    assert_eq!(t1.proxied(), 10, "round robin over both again");
}

/// An upstream that speaks HTTP/2 with prior knowledge only (an HTTP/1.1 request
/// fails its handshake): answers every request with `status` and no body,
/// counting health checks (by their `User-Agent`) apart from other requests.
struct H2Only {
    port: u16,
    status: Arc<AtomicU16>,
    checks: Arc<AtomicUsize>,
    proxied: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl H2Only {
    async fn start() -> H2Only {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let status = Arc::new(AtomicU16::new(200));
        let checks = Arc::new(AtomicUsize::new(0));
        let proxied = Arc::new(AtomicUsize::new(0));
        let state = (
            Arc::clone(&status),
            Arc::clone(&checks),
            Arc::clone(&proxied),
        );
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (status, checks, proxied) = (
                    Arc::clone(&state.0),
                    Arc::clone(&state.1),
                    Arc::clone(&state.2),
                );
                conns.spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(stream).await else {
                        return;
                    };
                    while let Some(Ok((request, mut respond))) = conn.accept().await {
                        let is_check = request
                            .headers()
                            .get("user-agent")
                            .is_some_and(|v| v.as_bytes() == b"aistack-health-check");
                        if is_check && request.uri().path() == "/healthz" {
                            checks.fetch_add(1, Ordering::SeqCst);
                        } else if !is_check {
                            proxied.fetch_add(1, Ordering::SeqCst);
                        }
                        let response = http::Response::builder()
                            .status(status.load(Ordering::SeqCst))
                            .body(())
                            .expect("response");
                        let _ = respond.send_response(response, true);
                    }
                });
            }
        });
        H2Only {
            port,
            status,
            checks,
            proxied,
            task,
        }
    }
}

impl Drop for H2Only {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn http_health_checks_speak_http2_to_an_http2_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = H2Only::start().await;
    let port = up.port;
    let gw = start(
        &format!(
            r#"
upstreams:
  h2:
    targets: [127.0.0.1:{port}]
    http2: true
    health_check:
      path: /healthz
      interval: 100ms
      timeout: 1s
      healthy_threshold: 1
      unhealthy_threshold: 2
routes:
  - {{ name: h2, path: /, upstream: h2 }}
"#
        ),
        dir.path(),
    )
    .await;
    let client = reqwest::Client::new();

    let deadline = Instant::now() + Duration::from_secs(15);
    while up.checks.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline,
            "the h2-only upstream got no HTTP/2 health check; /upstreams: {}",
            get(&client, &gw.admin_url("/upstreams")).await.1
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_upstream(&gw, "h2", "healthy after passing checks", |u| {
        target(u, port)["health_check"] == "healthy" && u["available"] == 1
    })
    .await;
    let (status, _) = get(&client, &gw.url("/x")).await;
    assert_eq!(status, 200);
    assert_eq!(up.proxied.load(Ordering::SeqCst), 1, "proxied over HTTP/2");

    // The checks read the HTTP/2 status: a 503 takes the target out ...
    up.status.store(503, Ordering::SeqCst);
    wait_upstream(&gw, "h2", "unhealthy on 503", |u| {
        target(u, port)["health_check"] == "unhealthy" && u["available"] == 0
    })
    .await;
    let (status, body) = get(&client, &gw.url("/x")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &Value::from("no_upstream"))
    );

    // ... and a 200 brings it back.
    up.status.store(200, Ordering::SeqCst);
    wait_upstream(&gw, "h2", "healthy again", |u| u["available"] == 1).await;
    let (status, _) = get(&client, &gw.url("/x")).await;
    assert_eq!(status, 200);
}

/// Lines of the gateway's output containing every one of `needles`.
fn lines_with(gw: &Aistack, needles: &[&str]) -> usize {
    gw.output()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

#[tokio::test]
async fn a_target_named_by_dns_is_proxied_and_resolved_again_without_churn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = Flaky::start("local").await;
    let port = local.port();
    // `localhost` may stand for ::1 too: listen there as well, on the same port.
    let resolved: Vec<std::net::SocketAddr> = tokio::net::lookup_host(("localhost", port))
        .await
        .expect("resolve localhost")
        .collect();
    let mut also = Vec::new();
    for addr in resolved.iter().filter(|a| **a != local.addr) {
        if let Ok(f) = Flaky::start_on("local", *addr).await {
            also.push(f);
        }
    }
    // `shared`: a name and an IP literal for one address (the name's answer must not
    // look new at every interval). Passive ejection takes out an address of
    // `localhost` nothing could listen on.
    let upstreams = format!(
        r#"
upstreams:
  named:
    targets: [localhost:{port}]
    resolve_interval: 1s
    passive: {{ max_failures: 1, ejection_time: 60s }}
  shared:
    targets: [127.0.0.1:{port}, localhost:{port}]
    resolve_interval: 1s
    passive: {{ max_failures: 1, ejection_time: 60s }}
routes:
  - {{ name: named, path: /named, upstream: named }}
  - {{ name: shared, path: /shared, upstream: shared }}
"#
    );
    let ports = Ports::free();
    let config = format!("{}{upstreams}", render(BASE, ports));
    let env = [("AISTACK_LOG", "info,aistack_gateway::upstream::dns=debug")];
    let gw = Aistack::start_with_env("gateway", &config, ports, dir.path(), &env).await;
    let client = reqwest::Client::new();

    let (_, v) = get(&client, &gw.admin_url("/upstreams")).await;
    let named = v["upstreams"]["named"]["targets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut addresses: Vec<&str> = named.iter().filter_map(|t| t["address"].as_str()).collect();
    addresses.sort_unstable();
    let mut expected: Vec<String> = resolved.iter().map(ToString::to_string).collect();
    expected.sort_unstable();
    assert_eq!(addresses, expected, "every address of localhost: {v}");
    let name = format!("localhost:{port}");
    assert!(named.iter().all(|t| t["target"] == name.as_str()), "{v}");

    let send_all = || async {
        for path in ["/named/x", "/shared/x"] {
            for _ in 0..6 {
                let (status, body) = get(&client, &gw.url(path)).await;
                assert_eq!((status, body["upstream"].as_str()), (200, Some("local")));
            }
        }
    };
    send_all().await;

    // Both upstreams are resolved again each second; the answers stay the same.
    let deadline = Instant::now() + Duration::from_secs(20);
    for upstream in ["upstream=named", "upstream=shared"] {
        while lines_with(&gw, &["DNS answers unchanged", upstream]) < 2 {
            assert!(
                Instant::now() < deadline,
                "no two unchanged resolutions of {upstream}:\n{}",
                gw.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    send_all().await;
    assert_eq!(
        lines_with(&gw, &["DNS answers changed"]),
        0,
        "{}",
        gw.output()
    );
}

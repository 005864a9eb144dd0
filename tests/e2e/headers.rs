//! Request headers and paths as the upstream sees them, over raw HTTP/1.1
//! (a client library would normalize the path and add headers of its own).

use std::time::Duration;

use aistack_e2e::{Aistack, Ports, render};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::flaky::Flaky;

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
  watch: false
  trusted_proxies: [{trusted}]
upstreams:
  echo:
    targets: [127.0.0.1:{echo}]
routes:
  - name: preserve
    path: /preserve
    upstream: echo
  - name: target
    path: /target
    upstream: echo
    preserve_host: false
  - name: rewrite
    path: /rewrite
    upstream: echo
    host_rewrite: api.internal
"#;

async fn start(trusted: &str, echo: &Flaky, dir: &std::path::Path) -> Aistack {
    let ports = Ports::free();
    let config = render(CONFIG, ports)
        .replace("{trusted}", trusted)
        .replace("{echo}", &echo.port().to_string());
    Aistack::start("gateway", &config, ports, dir).await
}

/// Sends `head` (request line and headers, without the blank line) and
/// returns the status and the JSON body.
async fn raw(gw: &Aistack, head: &str) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", gw.ports.proxy))
        .await
        .expect("connect");
    let req = format!("{head}\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap_or(0);
                let body = serde_json::from_slice(&buf[end + 4..end + 4 + len])
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&buf)));
                return (status, body);
            }
        }
    }
    panic!("incomplete response: {}", String::from_utf8_lossy(&buf));
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn one<'a>(seen: &'a Value, name: &str) -> Option<&'a str> {
    seen["headers"][name][0].as_str()
}

#[tokio::test]
async fn forwarded_headers_are_replaced_unless_the_peer_is_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = Flaky::start("echo").await;
    let head = "GET /preserve/x HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nForwarded: for=6.6.6.6";

    // 192.0.2.0/24 is not us: everything the client claimed is replaced.
    let gw = start("192.0.2.0/24", &echo, dir.path()).await;
    let (status, seen) = raw(&gw, head).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(one(&seen, "x-forwarded-for"), Some("127.0.0.1"), "{seen}");
    assert_eq!(one(&seen, "x-forwarded-proto"), Some("http"));
    assert_eq!(one(&seen, "x-forwarded-host"), Some("shop.example"));
    assert_eq!(
        one(&seen, "forwarded"),
        Some("for=127.0.0.1;host=shop.example;proto=http")
    );
    assert_eq!(
        seen["headers"]["x-forwarded-for"].as_array().map(Vec::len),
        Some(1)
    );
    drop(gw);

    // Loopback trusted: the chain is extended.
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start("127.0.0.0/8", &echo, dir.path()).await;
    let (_, seen) = raw(&gw, head).await;
    assert_eq!(one(&seen, "x-forwarded-for"), Some("6.6.6.6, 127.0.0.1"));
    assert_eq!(one(&seen, "x-forwarded-proto"), Some("https"));
    assert_eq!(one(&seen, "x-forwarded-host"), Some("evil.example"));
    assert_eq!(
        one(&seen, "forwarded"),
        Some("for=6.6.6.6, for=127.0.0.1;host=shop.example;proto=http")
    );
}

#[tokio::test]
async fn hop_by_hop_headers_go_but_gateway_headers_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = Flaky::start("echo").await;
    let gw = start("192.0.2.1", &echo, dir.path()).await;
    let (status, seen) = raw(
        &gw,
        "GET /preserve/x HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive, X-Drop-Me, Forwarded\r\nX-Drop-Me: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eDp5\r\nTE: gzip\r\nX-Kept: yes",
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    for gone in [
        "x-drop-me",
        "keep-alive",
        "proxy-authorization",
        "te",
        "connection",
    ] {
        assert!(
            seen["headers"].get(gone).is_none(),
            "{gone} reached the upstream: {seen}"
        );
    }
    assert_eq!(one(&seen, "x-kept"), Some("yes"));
    // Named in Connection by the client, yet added by the gateway: kept.
    assert_eq!(one(&seen, "x-forwarded-for"), Some("127.0.0.1"));
    assert!(one(&seen, "forwarded").is_some());
    // Pingora refuses outright a client that names Host or X-Forwarded-* in
    // `Connection` (fail closed): a JSON 400, nothing sent upstream.
    let before = echo.proxied();
    let (status, body) = raw(
        &gw,
        "GET /preserve/x HTTP/1.1\r\nHost: a.example\r\nConnection: X-Forwarded-For",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");
    assert_eq!(echo.proxied(), before);
}

#[tokio::test]
async fn host_is_preserved_or_rewritten_per_route() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = Flaky::start("echo").await;
    let gw = start("192.0.2.1", &echo, dir.path()).await;
    let host = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: Client.Example:8080");
    let (_, seen) = raw(&gw, &host("/preserve/h")).await;
    assert_eq!(one(&seen, "host"), Some("Client.Example:8080"));
    let (_, seen) = raw(&gw, &host("/target/h")).await;
    assert_eq!(
        one(&seen, "host"),
        Some(format!("127.0.0.1:{}", echo.port()).as_str())
    );
    let (_, seen) = raw(&gw, &host("/rewrite/h")).await;
    assert_eq!(one(&seen, "host"), Some("api.internal"));
    assert_eq!(one(&seen, "x-forwarded-host"), Some("Client.Example:8080"));
}

#[tokio::test]
async fn routing_and_upstream_use_the_normalized_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = Flaky::start("echo").await;
    let gw = start("192.0.2.1", &echo, dir.path()).await;
    let cases = [
        // (sent, routed as, upstream sees)
        ("/preserve/a/./b/../c", 200, "/preserve/a/c"),
        ("/x/../preserve/y", 200, "/preserve/y"),
        ("/%70reserve/%7Euser", 200, "/preserve/~user"),
        ("/preserve/a%2Fb", 200, "/preserve/a%2Fb"),
        ("/preserve/a%2fb/%41", 200, "/preserve/a%2Fb/A"),
        ("/preserve/../../etc/passwd", 404, ""),
        ("/preservex", 404, ""),
        (
            "/preserve/q?x=%2e%2e/&y=1",
            200,
            "/preserve/q?x=%2e%2e/&y=1",
        ),
    ];
    for (sent, status, seen_path) in cases {
        let (got, seen) = raw(&gw, &format!("GET {sent} HTTP/1.1\r\nHost: a")).await;
        assert_eq!(got, status, "{sent}: {seen}");
        if status == 200 {
            assert_eq!(seen["path"], seen_path, "{sent}");
        } else {
            assert_eq!(seen["error"]["code"], "route_not_found", "{sent}");
        }
    }
}

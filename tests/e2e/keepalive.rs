//! Client connections kept alive, on raw sockets: one left idle is closed after
//! `server.keepalive_timeout`; the gateway's own error answers (404 no route, 503 no
//! available target, 431 too many header fields, 413 a declared body over the limit) keep
//! the connection, say nothing of closing it, and the next request on the same socket is
//! served, also when the request's body was sent but not read before the answer (it is
//! read and dropped after it); a body too long to drop that way, or one the client waits
//! to send (`Expect: 100-continue`), gets `Connection: close` instead.

use std::time::{Duration, Instant};

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::raw::{read_message, read_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::flaky::{Flaky, Mode};
use crate::upstreams::wait_upstream;
use crate::wasm_common::start_with_server;

/// A GET of `path` on the route to the echo upstream.
fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: keepalive.test\r\n\r\n")
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_keepalive_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let routes = "upstreams:\n  echo:\n    targets: [127.0.0.1:{echo}]\n\
                  routes:\n  - name: all\n    path: /\n    upstream: echo\n";
    let server = "  keepalive_timeout: 1s\n";
    let gw = start_with_server(&echo, dir.path(), 1, server, routes).await;

    let mut stream = TcpStream::connect(("127.0.0.1", gw.ports.proxy))
        .await
        .expect("connect");
    stream
        .write_all(get("/once").as_bytes())
        .await
        .expect("write");
    let (head, _) = read_response(&mut stream).await.expect("a response");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");

    // Idle from here: the gateway ends the connection (an orderly close, no bytes).
    let idle_since = Instant::now();
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed long before 20 s");
    ended.expect("a close, not a reset");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    // Not at once: it was kept alive until the timeout (1 s from when the gateway
    // started waiting, a little before the response reached this client).
    assert!(
        idle_since.elapsed() >= Duration::from_millis(500),
        "closed after {:?}",
        idle_since.elapsed()
    );
}

#[tokio::test]
async fn the_gateways_own_error_answers_keep_the_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let down = Flaky::start("down").await;
    down.set_mode(Mode::Unhealthy);
    let routes = format!(
        "upstreams:\n  echo:\n    targets: [127.0.0.1:{{echo}}]\n\
         \x20 down:\n    targets: [127.0.0.1:{}]\n\
         \x20   health_check: {{ path: /, interval: 100ms, unhealthy_threshold: 1 }}\n\
         routes:\n  - name: ok\n    path: /ok\n    upstream: echo\n\
         \x20 - name: down\n    path: /down\n    upstream: down\n",
        down.port()
    );
    let server = "  max_request_headers: 8\n  max_request_body: 1KiB\n";
    let gw = start_with_server(&echo, dir.path(), 1, server, &routes).await;
    wait_upstream(&gw, "down", "no target available", |u| u["available"] == 0).await;

    let mut many_fields = "GET /ok/many HTTP/1.1\r\nhost: keepalive.test\r\n".to_owned();
    for i in 0..10 {
        many_fields.push_str(&format!("x-h{i}: v\r\n"));
    }
    many_fields.push_str("\r\n");
    let mut upload = "POST /ok/upload HTTP/1.1\r\nhost: keepalive.test\r\n\
                      content-type: application/octet-stream\r\ncontent-length: 2048\r\n\r\n"
        .to_owned();
    upload.push_str(&"u".repeat(2048));
    let mut unrouted_post = "POST /nowhere HTTP/1.1\r\nhost: keepalive.test\r\n\
                             content-length: 100\r\n\r\n"
        .to_owned();
    unrouted_post.push_str(&"p".repeat(100));
    let cases = [
        ("no route", get("/nowhere"), 404, "route_not_found"),
        (
            "no route, a body unread",
            unrouted_post,
            404,
            "route_not_found",
        ),
        ("no available target", get("/down/x"), 503, "no_upstream"),
        (
            "too many fields",
            many_fields,
            431,
            "request_header_fields_too_large",
        ),
        ("body over the limit", upload, 413, "payload_too_large"),
    ];
    for (what, request, status, code) in cases {
        let mut stream = TcpStream::connect(("127.0.0.1", gw.ports.proxy))
            .await
            .expect("connect");
        let hits = echo.hits();
        stream.write_all(request.as_bytes()).await.expect("write");
        let (head, _, body) = read_message(&mut stream)
            .await
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert!(
            head.starts_with(&format!("http/1.1 {status} ")),
            "{what}: {head}"
        );
        assert!(head.contains("application/json"), "{what}: {head}");
        assert!(body.contains(code), "{what}: {body}");
        assert!(!head.contains("connection: close"), "{what}: {head}");
        assert_eq!(echo.hits(), hits, "{what}: nothing went upstream");

        stream
            .write_all(get("/ok/after").as_bytes())
            .await
            .expect("write");
        let (head, _, body) = read_message(&mut stream)
            .await
            .unwrap_or_else(|| panic!("{what}: the connection closed after the {status}"));
        assert!(head.starts_with("http/1.1 200 "), "{what}: {head}");
        assert!(body.contains("/ok/after"), "{what}: {body}");
        assert_eq!(echo.hits(), hits + 1, "{what}");
    }
    assert_eq!(down.proxied(), 0, "the unhealthy target got no request");

    // Where the unread body cannot be read and dropped cheaply, or may never come, the
    // answer says `Connection: close` and the connection ends (no body was sent here, so
    // the close is orderly and cannot discard the answer).
    let cases = [
        (
            "a body over the drain limit",
            "POST /ok/huge HTTP/1.1\r\nhost: keepalive.test\r\ncontent-length: 2097152\r\n\r\n",
        ),
        (
            "a body awaiting 100-continue",
            "POST /ok/ask HTTP/1.1\r\nhost: keepalive.test\r\ncontent-length: 2048\r\n\
             expect: 100-continue\r\n\r\n",
        ),
    ];
    for (what, request) in cases {
        let mut stream = TcpStream::connect(("127.0.0.1", gw.ports.proxy))
            .await
            .expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let (head, _, body) = read_message(&mut stream)
            .await
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert!(head.starts_with("http/1.1 413 "), "{what}: {head}");
        assert!(body.contains("payload_too_large"), "{what}: {body}");
        assert!(head.contains("connection: close"), "{what}: {head}");
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|_| panic!("{what}: the connection is still open"));
        assert!(
            ended.is_ok() && rest.is_empty(),
            "{what}: {ended:?} {rest:?}"
        );
    }
}

//! Conformance, HTTP callouts and ticks: the `conf-callout` filter
//! (tests/filters/conf-callout) pauses requests for `dispatch_http_call` to named
//! upstreams and resumes them from `on_http_call_response`; its root context ticks every
//! 50 ms and calls an upstream from `on_tick`.

use std::time::{Duration, Instant};

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::{filters, free_port};
use serde_json::Value;

use crate::wasm_common::{header, seen, start};

/// `dead` refuses connections; `silent` accepts them (the backlog) and never answers.
fn config(wasm: &str, tick_upstream: &str, dead: u16, silent: u16) -> String {
    format!(
        "upstreams:\n  echo:\n    targets: [127.0.0.1:{{echo}}]\n\
         \x20 side:\n    targets: [127.0.0.1:{{echo}}]\n\
         \x20 dead:\n    targets: [127.0.0.1:{dead}]\n\
         \x20 silent:\n    targets: [127.0.0.1:{silent}]\n\
         plugins:\n  conf-callout:\n    path: {wasm}\n\
         routes:\n  - name: callouts\n    path: /\n    upstream: echo\n    plugins:\n\
         \x20     - name: conf-callout\n        config: {tick_upstream:?}\n"
    )
}

#[tokio::test]
async fn a_request_waits_for_its_callout_and_resumes_with_what_it_learned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = filters::install("conf-callout", dir.path());
    let gw = start(
        &echo,
        dir.path(),
        2,
        &config(&wasm, "", free_port(), free_port()),
    )
    .await;
    let client = reqwest::Client::new();

    for round in 0..4 {
        let r = client
            .get(gw.url("/callout/side"))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "round {round}");
        let e: Value = r.json().await.expect("json");
        assert_eq!(
            e["path"], "/callout/side",
            "the paused request went on upstream"
        );
        assert_eq!(seen(&e, "x-callout-status"), "200");
        assert_eq!(
            seen(&e, "x-callout-echoed"),
            "true",
            "method, path, body, header: {e}"
        );
        assert_eq!(seen(&e, "x-callout-trailers"), "0");
        let pairs: usize = seen(&e, "x-callout-pairs").parse().expect("count");
        assert!(pairs >= 3, ":status, content-type, content-length: {pairs}");
        let bytes: usize = seen(&e, "x-callout-body-bytes").parse().expect("count");
        assert!(bytes > 20, "the callee's JSON: {bytes}");
    }
    assert_eq!(echo.hits(), 8, "4 callouts and 4 proxied requests");

    // The callback may answer instead of resuming.
    let r = client
        .get(gw.url("/callout/side?answer=local"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-callout-answered"), "yes");
    let e: Value = r.json().await.expect("the callee's body");
    assert_eq!(e["path"], "/from-callout");
    assert_eq!(echo.hits(), 9, "the request itself was not proxied");
}

#[tokio::test]
async fn failed_callouts_and_unknown_upstreams_are_reported_to_the_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = filters::install("conf-callout", dir.path());
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let config = config(&wasm, "", free_port(), silent_port);
    let gw = start(&echo, dir.path(), 2, &config).await;
    let client = reqwest::Client::new();

    // Refused connection: on_http_call_response with no headers.
    let r = client
        .get(gw.url("/callout/dead"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 504);
    assert_eq!(header(&r, "x-callout-failed"), "yes");

    // Timeout: the call's own timeout, not the upstream's.
    let started = Instant::now();
    let r = client
        .get(gw.url("/callout/silent?timeout=300"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 504);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");

    // An upstream the config does not name: dispatch answers BadArgument.
    let r = client
        .get(gw.url("/callout/nowhere"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.expect("body"),
        "dispatch refused: BadArgument"
    );
    assert_eq!(echo.hits(), 0);

    // The gateway still proxies.
    let r = client.get(gw.url("/plain")).send().await.expect("request");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_root_context_ticks_and_calls_out_from_on_tick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = filters::install("conf-callout", dir.path());
    let gw = start(
        &echo,
        dir.path(),
        1,
        &config(&wasm, "side", free_port(), free_port()),
    )
    .await;
    let client = reqwest::Client::new();

    // Ticks start when the VM reaches the worker thread (its first request there).
    let deadline = Instant::now() + Duration::from_secs(20);
    let (ticks, status) = loop {
        let r = client.get(gw.url("/poll")).send().await.expect("request");
        assert_eq!(r.status(), 200);
        let e: Value = r.json().await.expect("json");
        let ticks: u64 = seen(&e, "x-ticks").parse().expect("count");
        let status = seen(&e, "x-tick-callout");
        if ticks >= 3 && status == "200" {
            break (ticks, status);
        }
        assert!(
            Instant::now() < deadline,
            "ticks {ticks}, tick callout {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(ticks >= 3 && status == "200");
    assert!(echo.hits() >= 2, "tick calls reached the upstream");
}

#[tokio::test]
async fn calls_a_filter_does_not_wait_for_and_calls_from_on_log_are_performed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let side = EchoUpstream::start().await;
    let wasm = filters::install("conf-callout", dir.path());
    let config = format!(
        "upstreams:\n  echo:\n    targets: [127.0.0.1:{{echo}}]\n\
         \x20 side:\n    targets: [127.0.0.1:{}]\n\
         plugins:\n  conf-callout:\n    path: {wasm}\n\
         routes:\n  - name: callouts\n    path: /\n    upstream: echo\n    plugins:\n\
         \x20     - name: conf-callout\n        config: \"\"\n",
        side.port()
    );
    let gw = start(&echo, dir.path(), 1, &config).await;
    let r = reqwest::get(gw.url("/detached/side"))
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "the request did not wait");
    assert_eq!(echo.hits(), 1);
    // Both calls reach the side upstream: the one from the headers phase and the one
    // from on_log, though nothing waited for either.
    let deadline = Instant::now() + Duration::from_secs(30);
    while side.hits() < 2 {
        assert!(
            Instant::now() < deadline,
            "side upstream saw {} calls",
            side.hits()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(side.hits(), 2);
}

/// A callee that answers only once it holds two requests at the same time.
async fn pair_server() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            held.push(stream);
            if held.len() == 2 {
                for mut s in held.drain(..) {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                }
            }
        }
    });
    port
}

#[tokio::test]
async fn a_filters_calls_run_at_the_same_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let pair = pair_server().await;
    let wasm = filters::install("conf-callout", dir.path());
    let config = format!(
        "upstreams:\n  echo:\n    targets: [127.0.0.1:{{echo}}]\n\
         \x20 pair:\n    targets: [127.0.0.1:{pair}]\n\
         plugins:\n  conf-callout:\n    path: {wasm}\n\
         routes:\n  - name: callouts\n    path: /\n    upstream: echo\n    plugins:\n\
         \x20     - name: conf-callout\n        config: \"\"\n"
    );
    let gw = start(&echo, dir.path(), 1, &config).await;
    // Performed one after the other, the first call would wait for a second that never
    // comes, time out, and the filter would answer 504.
    let r = reqwest::get(gw.url("/callout-two/pair"))
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let e: Value = r.json().await.expect("json");
    assert_eq!(seen(&e, "x-callouts-answered"), "2");
}

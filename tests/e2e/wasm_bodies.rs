//! Conformance, bodies: the `conf-body` filter (tests/filters/conf-body) rewrites
//! request bodies (buffered whole before they go upstream), refuses some locally, and
//! rewrites response bodies buffered (pause until the end of the stream) or streamed.

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::filters;
use serde_json::Value;

use crate::wasm_common::start;

const CONFIG: &str = "upstreams:\n  echo:\n    targets: [127.0.0.1:{echo}]\n\
plugins:\n  conf-body:\n    path: {wasm}\n\
routes:\n  - name: bodies\n    path: /\n    upstream: echo\n    plugins:\n      - name: conf-body\n";

#[tokio::test]
async fn request_and_response_bodies_are_rewritten_buffered_and_streamed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = filters::install("conf-body", dir.path());
    let gw = start(&echo, dir.path(), 2, &CONFIG.replace("{wasm}", &wasm)).await;
    let client = reqwest::Client::new();

    // Request rewritten (a longer body: content-length follows); response buffered and
    // wrapped at the end of the stream.
    let r = client
        .post(gw.url("/submit"))
        .body("hello")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("body");
    let json = text
        .strip_prefix("wrapped:")
        .unwrap_or_else(|| panic!("not wrapped: {text}"));
    let e: Value = serde_json::from_str(json).expect("the echo's JSON");
    assert_eq!(e["body"], "HELLO|5", "the upstream got the rewritten body");
    assert_eq!(e["headers"]["content-length"][0], "7");

    // Streaming: every chunk upper-cased as it passes, both ways.
    let r = client
        .post(gw.url("/stream"))
        .body("abc")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("body");
    assert!(text.contains("\"BODY\":\"ABC\""), "{text}");

    // A streamed body has no buffering limit: 300 KiB pass through the filter.
    let big = vec![b'q'; 300 * 1024];
    let r = client
        .post(gw.url("/stream-big"))
        .body(big.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("body");
    let upper = "Q".repeat(big.len());
    assert!(
        text.contains(&format!("\"BODY\":\"{upper}\"")),
        "{}",
        &text[..200]
    );

    // A local response from the request-body callback: the upstream never sees it.
    let hits = echo.hits();
    let r = client
        .post(gw.url("/submit"))
        .body("this is forbidden")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.expect("body"), "body refused");
    assert_eq!(echo.hits(), hits);

    // Past the buffering limit: 413 with the JSON error body.
    let r = client
        .post(gw.url("/submit"))
        .body(vec![b'x'; 65 * 1024])
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 413);
    let e: Value = r.json().await.expect("json error");
    assert_eq!(e["error"]["code"], "payload_too_large");
    assert_eq!(echo.hits(), hits);

    // Without a body the request goes straight on; the response is still wrapped.
    let r = client.get(gw.url("/plain")).send().await.expect("request");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("body").starts_with("wrapped:{"));
}

#[tokio::test]
async fn the_buffered_body_limit_is_configurable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = filters::install("conf-body", dir.path());
    let gw = crate::wasm_common::start_with_server(
        &echo,
        dir.path(),
        1,
        "  plugins:\n    max_buffered_body: 2KiB\n",
        &CONFIG.replace("{wasm}", &wasm),
    )
    .await;
    let client = reqwest::Client::new();
    // Buffered (conf-body holds the headers for /submit): 1.5 KiB passes, 3 KiB is 413.
    let r = client
        .post(gw.url("/submit"))
        .body(vec![b'a'; 1536])
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let r = client
        .post(gw.url("/submit"))
        .body(vec![b'a'; 3 * 1024])
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 413);
    // Streamed bodies are not held to it.
    let r = client
        .post(gw.url("/stream"))
        .body(vec![b'a'; 3 * 1024])
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
}

//! Conformance, header maps and properties: the `conf-headers` filter
//! (tests/filters/conf-headers) reports what the host answered in request headers the
//! echo upstream sends back, and edits request and response headers.

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::{filters, raw};
use serde_json::Value;

use crate::wasm_common::{header, seen, seen_all, start};

const ROUTES: &str = "plugins:\n  conf-headers:\n    path: {wasm}\n\
routes:\n  - name: conf\n    path: /\n    upstream: echo\n    plugins:\n      - name: conf-headers\n\
upstreams:\n  echo:\n    targets: [127.0.0.1:{echo}]\n";

#[tokio::test]
async fn header_maps_properties_and_local_responses_behave_as_in_envoy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = filters::install("conf-headers", dir.path());
    let gw = start(&echo, dir.path(), 2, &ROUTES.replace("{wasm}", &wasm)).await;
    let client = reqwest::Client::new();

    let r = client
        .get(gw.url("/items/7?color=red"))
        .header("x-replaced", "by-client")
        .header("x-remove-me", "please")
        .header("x-request-id", "conf-req-1")
        .header("user-agent", "conformance/1")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-seen-status"),
        "200",
        ":status in the response map"
    );
    assert_eq!(header(&r, "x-seen-response-code"), "200", "response.code");
    assert_eq!(
        header(&r, "x-seen-code-details"),
        "via_upstream",
        "response.code_details"
    );
    let pairs: usize = header(&r, "x-seen-response-pairs")
        .parse()
        .expect("a count");
    assert!(
        pairs >= 3,
        ":status, content-type, content-length at least: {pairs}"
    );
    let e: Value = r.json().await.expect("json");

    // Pseudo-headers, as Envoy exposes them.
    assert_eq!(seen(&e, "x-seen-pseudo-method"), "GET");
    assert_eq!(seen(&e, "x-seen-pseudo-path"), "/items/7?color=red");
    assert_eq!(
        seen(&e, "x-seen-pseudo-authority"),
        format!("127.0.0.1:{}", gw.ports.proxy)
    );
    assert_eq!(seen(&e, "x-seen-pseudo-scheme"), "http");
    let count: usize = seen(&e, "x-seen-count").parse().expect("a count");
    let listed: usize = seen(&e, "x-seen-pairs").parse().expect("a count");
    assert_eq!(
        count, listed,
        "on_request_headers' count is the pairs' count"
    );
    assert!(count >= 8, "4 pseudo-headers and the client's: {count}");

    // Edits reached the upstream.
    assert_eq!(seen_all(&e, "x-replaced"), ["by-filter"]);
    assert_eq!(seen_all(&e, "x-added"), ["one", "two"]);
    assert!(e["headers"]["x-remove-me"].is_null(), "removed: {e}");

    // Properties.
    assert_eq!(seen(&e, "x-seen-request-path"), "/items/7?color=red");
    assert_eq!(seen(&e, "x-seen-request-url-path"), "/items/7");
    assert_eq!(
        seen(&e, "x-seen-request-host"),
        format!("127.0.0.1:{}", gw.ports.proxy)
    );
    assert_eq!(seen(&e, "x-seen-request-method"), "GET");
    assert_eq!(seen(&e, "x-seen-request-scheme"), "http");
    assert_eq!(seen(&e, "x-seen-request-id"), "conf-req-1");
    assert_eq!(seen(&e, "x-seen-request-protocol"), "HTTP/1.1");
    assert_eq!(
        seen(&e, "x-seen-request-headers-user-agent"),
        "conformance/1"
    );
    assert!(seen(&e, "x-seen-source-address").starts_with("127.0.0.1:"));
    let source_port: u16 = seen(&e, "x-seen-source-port").parse().expect("a port");
    assert!(seen(&e, "x-seen-source-address").ends_with(&format!(":{source_port}")));
    assert_eq!(
        seen(&e, "x-seen-destination-address"),
        format!("127.0.0.1:{}", gw.ports.proxy)
    );
    assert_eq!(
        seen(&e, "x-seen-destination-port"),
        gw.ports.proxy.to_string()
    );
    assert_eq!(seen(&e, "x-seen-plugin-name"), "conf-headers");
    assert_eq!(seen(&e, "x-seen-plugin-root-id"), "");
    assert_eq!(seen(&e, "x-seen-route-name"), "conf");
    assert_eq!(
        seen(&e, "x-seen-clock"),
        "true",
        "current time agrees with request.time"
    );
    assert_eq!(seen(&e, "x-seen-set-property"), "from-headers");
    assert_eq!(
        seen(&e, "x-seen-request-size"),
        "0",
        "request.size of a GET"
    );
    assert_eq!(
        seen(&e, "x-seen-map-size-agrees"),
        "true",
        "proxy_get_header_map_size is the bytes of the pairs"
    );
    let level = seen(&e, "x-seen-log-level");
    assert!(
        ["Trace", "Debug", "Info", "Warn", "Error", "Critical"].contains(&level.as_str()),
        "proxy_get_log_level: {level:?}"
    );

    // :status can be rewritten on the response.
    let r = client
        .get(gw.url("/x?status=201"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 201);

    // A local response from on_request_headers never reaches the upstream.
    let hits = echo.hits();
    let r = client.get(gw.url("/local")).send().await.expect("request");
    assert_eq!(r.status(), 418);
    assert_eq!(header(&r, "x-local"), "yes");
    assert!(
        !header(&r, "x-request-id").is_empty(),
        "the gateway adds the request id"
    );
    assert_eq!(r.text().await.expect("body"), "local answer");
    assert_eq!(echo.hits(), hits);
}

#[tokio::test]
async fn responses_through_a_filter_keep_the_connection_alive() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = filters::install("conf-headers", dir.path());
    let gw = start(&echo, dir.path(), 1, &ROUTES.replace("{wasm}", &wasm)).await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", gw.ports.proxy))
        .await
        .expect("connect");
    for i in 0..3 {
        let request = format!("GET /keep/{i} HTTP/1.1\r\nhost: keep.test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let (head, framing) = raw::read_response(&mut stream)
            .await
            .expect("the gateway closed the connection");
        assert_ne!(
            framing,
            raw::Framing::None,
            "a response without framing: {head}"
        );
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
    }
    assert_eq!(echo.hits(), 3);
}

#[tokio::test]
async fn an_http_1_0_request_reports_its_protocol() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = filters::install("conf-headers", dir.path());
    let gw = start(&echo, dir.path(), 1, &ROUTES.replace("{wasm}", &wasm)).await;
    let answer = raw::until_close(
        gw.ports.proxy,
        b"GET /old HTTP/1.0\r\nhost: old.test\r\n\r\n",
    )
    .await
    .expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    assert!(
        text.contains(r#""x-seen-request-protocol":["HTTP/1.0"]"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_closed_stream_drops_the_connection_without_a_response() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = filters::install("conf-headers", dir.path());
    let gw = start(&echo, dir.path(), 1, &ROUTES.replace("{wasm}", &wasm)).await;
    let read = raw::until_close(
        gw.ports.proxy,
        b"GET /reset HTTP/1.1\r\nhost: reset.test\r\n\r\n",
    )
    .await;
    // A reset or an orderly close, but not one byte of a response.
    if let Ok(answer) = read {
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    }
    assert_eq!(echo.hits(), 0);
    // The gateway keeps serving.
    let r = reqwest::get(gw.url("/after")).await.expect("request");
    assert_eq!(r.status(), 200);
}

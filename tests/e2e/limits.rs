//! Request limits on routes without filters: too many header fields or header bytes
//! (431), a body over `server.max_request_body` (413), declared or streamed, an HTTP/1.1
//! request without exactly one Host (400); the answers are the JSON error (on HTTP/2 too,
//! while the client still sends) and the gateway keeps serving.

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::raw;
use serde_json::Value;

use crate::wasm_common::start_with_server;

const LIMITS: &str =
    "  max_request_headers: 8\n  max_request_header_bytes: 400\n  max_request_body: 1KiB\n";
const ROUTES: &str = "upstreams:\n  echo:\n    targets: [127.0.0.1:{echo}]\n\
routes:\n  - name: open\n    path: /\n    upstream: echo\n";

#[tokio::test]
async fn headers_and_bodies_past_the_limits_get_431_and_413_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let gw = start_with_server(&echo, dir.path(), 1, LIMITS, ROUTES).await;
    let client = reqwest::Client::new();

    let ok = client.get(gw.url("/fine")).send().await.expect("request");
    assert_eq!(ok.status(), 200);

    let mut many = client.get(gw.url("/many"));
    for i in 0..10 {
        many = many.header(format!("x-h{i}"), "v");
    }
    let r = many.send().await.expect("request");
    assert_eq!(r.status(), 431);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["code"], "request_header_fields_too_large", "{e}");
    assert!(e["error"]["request_id"].is_string(), "{e}");

    let r = client
        .get(gw.url("/big"))
        .header("x-big", "b".repeat(500))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 431);

    // Declared too long: refused before anything goes upstream.
    let hits = echo.hits();
    let r = client
        .post(gw.url("/upload"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 413);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["code"], "payload_too_large", "{e}");
    assert_eq!(echo.hits(), hits);

    // Streamed (chunked, no length): counted as it passes.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", gw.ports.proxy))
            .await
            .expect("connect");
        let head =
            "POST /stream HTTP/1.1\r\nhost: limits.test\r\ntransfer-encoding: chunked\r\n\r\n";
        stream.write_all(head.as_bytes()).await.expect("write");
        // 1.5 KiB in three chunks, then nothing more: the gateway has read everything sent
        // when it refuses, so its close is orderly and cannot discard the 413 (a close
        // with unread bytes would be a reset).
        for _ in 0..3 {
            let chunk = format!("200\r\n{}\r\n", "y".repeat(512));
            stream.write_all(chunk.as_bytes()).await.expect("write");
        }
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut answer),
        )
        .await
        .expect("the gateway answers");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
        assert!(text.contains("payload_too_large"), "{text}");
    }

    // A head that outgrows the limit plus the allowance for its request line and framing
    // (400 + 8 x 4 + 16 KiB here) is refused as it arrives, before it is buffered whole:
    // 431 JSON, connection closed. The client has sent 64 KiB when the gateway answers:
    // the gateway reads and drops the rest before it closes, so the close is not a reset
    // that would discard the answer.
    {
        let mut head = b"GET /huge HTTP/1.1\r\nhost: limits.test\r\nx-big: ".to_vec();
        head.resize(64 * 1024, b'b');
        let answer = raw::until_close(gw.ports.proxy, &head)
            .await
            .expect("an answer, not a reset");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        assert!(
            answer.contains("request_header_fields_too_large") && answer.contains("request_id"),
            "{answer}"
        );
    }

    // HTTP/1.1 needs exactly one Host (RFC 9112 3.2): 400, on a connection that serves
    // on; HTTP/1.0 may go without.
    {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", gw.ports.proxy))
            .await
            .expect("connect");
        let hits = echo.hits();
        stream
            .write_all(b"GET /nohost HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let (head, _) = raw::read_response(&mut stream).await.expect("an answer");
        assert!(head.starts_with("http/1.1 400"), "{head}");
        assert!(head.contains("application/json"), "{head}");
        assert_eq!(echo.hits(), hits, "nothing went upstream");
        stream
            .write_all(b"GET /host HTTP/1.1\r\nhost: limits.test\r\n\r\n")
            .await
            .expect("write");
        let (head, _) = raw::read_response(&mut stream).await.expect("an answer");
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let two = raw::until_close(
            gw.ports.proxy,
            b"GET /twohosts HTTP/1.1\r\nhost: a.test\r\nhost: b.test\r\nconnection: close\r\n\r\n",
        )
        .await
        .expect("an answer");
        let two = String::from_utf8_lossy(&two);
        assert!(two.starts_with("HTTP/1.1 400"), "{two}");
        let two = raw::until_close(
            gw.ports.proxy,
            b"GET /twohosts HTTP/1.0\r\nhost: a.test\r\nhost: b.test\r\n\r\n",
        )
        .await
        .expect("an answer");
        let two = String::from_utf8_lossy(&two);
        assert!(
            two.starts_with("HTTP/1.1 400"),
            "HTTP/1.0, two Hosts: {two}"
        );
        let old = raw::until_close(gw.ports.proxy, b"GET /old HTTP/1.0\r\n\r\n")
            .await
            .expect("an answer");
        let old = String::from_utf8_lossy(&old);
        assert!(
            old.starts_with("HTTP/1.1 200") || old.starts_with("HTTP/1.0 200"),
            "{old}"
        );
    }

    let r = client
        .post(gw.url("/small"))
        .body("ok")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "the gateway keeps serving");
}

/// An HTTP/2 (h2c) POST of 1 MiB to the gateway on `port`, with or without a declared
/// length: the answer's status and body, or the stream error the client saw.
async fn h2_post_mib(port: u16, declared: bool) -> Result<(u16, String), String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2c handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1:{port}/h2/upload"));
    if declared {
        request = request.header("content-length", (1u32 << 20).to_string());
    }
    let (response, mut send) = client
        .send_request(request.body(()).expect("request"), false)
        .expect("send");
    // Queued whole; h2 sends what the gateway's window admits.
    send.send_data(bytes::Bytes::from(vec![b'z'; 1 << 20]), true)
        .expect("data");
    let response = response.await.map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| format!("body: {e:?}"))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    Ok((status, String::from_utf8_lossy(&data).into_owned()))
}

#[tokio::test]
async fn an_h2_body_past_the_limit_gets_the_413_not_a_stream_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let gw = start_with_server(&echo, dir.path(), 2, LIMITS, ROUTES).await;
    // The answer goes out while the client is still sending; a reset of the stream
    // right after it would discard it. curl saw that stream error in most tries before
    // the gateway read on after early answers; this client (the h2 crate's) never did, so
    // this checks the answer over HTTP/2, not that race.
    for round in 0..5 {
        for declared in [true, false] {
            let answer = h2_post_mib(gw.ports.proxy, declared).await;
            let (status, body) =
                answer.unwrap_or_else(|e| panic!("round {round}, declared {declared}: {e}"));
            assert_eq!(status, 413, "{body}");
            assert!(body.contains("payload_too_large"), "{body}");
        }
    }
}

#[tokio::test]
async fn keepalive_limits_and_slow_body_senders() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let server = "  keepalive_requests: 2\n  client_body_timeout: 500ms\n";
    let gw = start_with_server(&echo, dir.path(), 1, server, ROUTES).await;
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", gw.ports.proxy));

    // Two requests on one connection, then the gateway closes it.
    let mut stream = connect().await.expect("connect");
    let request = b"GET /k HTTP/1.1\r\nhost: limits.test\r\n\r\n";
    for i in 0..2 {
        stream.write_all(request).await.expect("write");
        let (head, _) = raw::read_response(&mut stream)
            .await
            .unwrap_or_else(|| panic!("response {i}"));
        assert!(head.starts_with("http/1.1 200"), "{head}");
    }
    let _ = stream.write_all(request).await;
    assert!(
        raw::read_response(&mut stream).await.is_none(),
        "a third request on the connection"
    );

    // A client that declares a body and stops sending it: 408 JSON after the timeout.
    let mut stream = connect().await.expect("connect");
    stream
        .write_all(b"POST /slow HTTP/1.1\r\nhost: limits.test\r\ncontent-length: 100\r\n\r\nabc")
        .await
        .expect("write");
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        raw::read_response(&mut stream),
    )
    .await
    .expect("the gateway gives up on the slow sender");
    let (head, _) = answer.expect("a response");
    assert!(head.starts_with("http/1.1 408"), "{head}");
}

//! HTTP/2 and gRPC through the gateway: a client speaking h2c (prior knowledge) to the
//! proxy listener, an upstream marked `http2: true` that speaks h2c, a unary gRPC call
//! whose message and trailers (`grpc-status`, `grpc-message`) arrive intact.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aistack_e2e::echo::EchoUpstream;
use bytes::Bytes;

use crate::wasm_common::start;

/// A gRPC framed message: compressed flag, big-endian length, payload.
fn frame(payload: &[u8]) -> Bytes {
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_be_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// An h2c upstream answering every call with the request's message reversed, then the
/// trailers `grpc-status: 0`, `grpc-message: reversed`, `x-seen-path`. Counts HTTP/2
/// requests (an HTTP/1.1 request fails its handshake and is not counted).
async fn grpc_upstream() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(stream).await else {
                    return;
                };
                while let Some(Ok((request, respond))) = conn.accept().await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(answer(request, respond));
                }
            });
        }
    });
    (port, calls)
}

async fn answer(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) -> Result<(), h2::Error> {
    let (parts, mut body) = request.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let mut payload: Vec<u8> = data.get(5..).unwrap_or_default().to_vec();
    payload.reverse();
    let response = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .expect("response");
    let mut send = respond.send_response(response, false)?;
    send.send_data(frame(&payload), false)?;
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    trailers.insert("grpc-message", http::HeaderValue::from_static("reversed"));
    if let Ok(path) = http::HeaderValue::from_str(parts.uri.path()) {
        trailers.insert("x-seen-path", path);
    }
    send.send_trailers(trailers)
}

#[tokio::test]
async fn a_unary_grpc_call_round_trips_over_h2c_with_its_trailers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let (grpc, calls) = grpc_upstream().await;
    let body = format!(
        "upstreams:\n  echo:\n    targets: [127.0.0.1:{{echo}}]\n\
         \x20 grpc:\n    targets: [127.0.0.1:{grpc}]\n    http2: true\n\
         routes:\n  - name: grpc\n    path: /demo.Echo\n    upstream: grpc\n\
         \x20 - name: plain\n    path: /\n    upstream: echo\n"
    );
    let gw = start(&echo, dir.path(), 2, &body).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.ports.proxy))
        .await
        .expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2c handshake");
    tokio::spawn(connection);

    for i in 0..3 {
        let mut client = client.clone().ready().await.expect("ready");
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://127.0.0.1:{}/demo.Echo/Say", gw.ports.proxy))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("request");
        let (response, mut send) = client.send_request(request, false).expect("send");
        send.send_data(frame(format!("hello {i}").as_bytes()), true)
            .expect("data");
        let response = response.await.expect("response");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/grpc");
        let mut body = response.into_body();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("data");
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let want: String = format!("hello {i}").chars().rev().collect();
        assert_eq!(&data[..], &frame(want.as_bytes())[..], "the message");
        let trailers = body
            .trailers()
            .await
            .expect("trailers")
            .expect("some trailers");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["grpc-message"], "reversed");
        assert_eq!(trailers["x-seen-path"], "/demo.Echo/Say");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "each call reached the upstream over h2"
    );

    // The same listener still speaks HTTP/1.1.
    let r = reqwest::get(gw.url("/plain")).await.expect("request");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn filters_read_and_edit_grpc_trailers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let (grpc, _) = grpc_upstream().await;
    let wasm = aistack_e2e::filters::install("conf-headers", dir.path());
    let body = format!(
        "upstreams:\n  echo:\n    targets: [127.0.0.1:{{echo}}]\n\
         \x20 grpc:\n    targets: [127.0.0.1:{grpc}]\n    http2: true\n\
         plugins:\n  conf-headers:\n    path: {wasm}\n\
         routes:\n  - name: grpc\n    path: /demo.Echo\n    upstream: grpc\n    plugins:\n\
         \x20     - name: conf-headers\n"
    );
    let gw = start(&echo, dir.path(), 1, &body).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.ports.proxy))
        .await
        .expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2c handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1:{}/demo.Echo/Say", gw.ports.proxy))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (response, mut send) = client.send_request(request, false).expect("send");
    send.send_data(frame(b"abc"), true).expect("data");
    let response = response.await.expect("response");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("data");
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    assert_eq!(
        &data[..],
        &frame(b"cba")[..],
        "the message passes the filter"
    );
    let trailers = body
        .trailers()
        .await
        .expect("trailers")
        .expect("some trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(
        trailers["x-seen-grpc-status"], "0",
        "the filter read the trailer"
    );
    assert_eq!(
        trailers["grpc-message"], "via-filter",
        "the filter replaced it"
    );
    assert_eq!(trailers["x-seen-trailer-count"], "true");
}

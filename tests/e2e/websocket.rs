//! WebSocket through the gateway: the upgrade is proxied (HTTP/1.1 `Upgrade`), the route's
//! request-side filters run before it, and no tunnel exists unless the upstream answers
//! 101. A WebSocket echo upstream runs in the test.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::filters;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

use crate::wasm_common::start;

/// A WebSocket echo server; `/refuse…` is answered 404 instead of 101. Counts the
/// connections it accepted.
pub(crate) async fn ws_echo() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                // The signature is tungstenite's handshake callback.
                #[allow(clippy::result_large_err)]
                let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                    if req.uri().path().starts_with("/ws/refuse") {
                        let mut refused = ErrorResponse::new(Some("no".into()));
                        *refused.status_mut() = http::StatusCode::NOT_FOUND;
                        return Err(refused);
                    }
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_close() {
                        break;
                    }
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, accepted)
}

fn config(ws: u16, wasm: &str) -> String {
    format!(
        "upstreams:\n  echo:\n    targets: [127.0.0.1:{{echo}}]\n\
         \x20 ws:\n    targets: [127.0.0.1:{ws}]\n\
         plugins:\n  conf-headers:\n    path: {wasm}\n\
         routes:\n  - name: ws\n    path: /ws\n    upstream: ws\n\
         \x20 - name: guarded\n    path: /local\n    upstream: ws\n    plugins:\n\
         \x20     - name: conf-headers\n"
    )
}

#[tokio::test]
async fn five_hundred_sequential_websocket_sessions_echo_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let (ws, accepted) = ws_echo().await;
    let wasm = filters::install("conf-headers", dir.path());
    let gw = start(&echo, dir.path(), 2, &config(ws, &wasm)).await;
    let url = format!("ws://127.0.0.1:{}/ws/echo", gw.ports.proxy);
    let mut intact = 0;
    for i in 0..500 {
        let (mut socket, response) = tokio_tungstenite::connect_async(&url)
            .await
            .unwrap_or_else(|e| panic!("handshake {i}: {e}"));
        assert_eq!(response.status(), 101);
        let text = format!("message {i} {}", "x".repeat(i % 64));
        socket
            .send(Message::text(text.clone()))
            .await
            .expect("send");
        let binary: Vec<u8> = (0..=255u8).cycle().take(i + 1).collect();
        socket
            .send(Message::binary(binary.clone()))
            .await
            .expect("send");
        let first = socket.next().await.expect("an echo").expect("a frame");
        let second = socket.next().await.expect("an echo").expect("a frame");
        if first == Message::text(text) && second == Message::binary(binary) {
            intact += 1;
        }
        socket.close(None).await.expect("close");
    }
    assert_eq!(intact, 500);
    assert_eq!(accepted.load(Ordering::SeqCst), 500);
}

#[tokio::test]
async fn no_tunnel_without_the_upstreams_101_or_past_a_refusing_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let (ws, accepted) = ws_echo().await;
    let wasm = filters::install("conf-headers", dir.path());
    let gw = start(&echo, dir.path(), 1, &config(ws, &wasm)).await;

    // The upstream refuses the upgrade: the client gets its 404, and no tunnel.
    let url = format!("ws://127.0.0.1:{}/ws/refuse", gw.ports.proxy);
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404);
        }
        Err(other) => panic!("expected the upstream's 404, got {other}"),
        Ok(_) => panic!("a tunnel was opened without a 101"),
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // The route's filter answers before the upgrade: the upstream never sees it.
    let url = format!("ws://127.0.0.1:{}/local/ws", gw.ports.proxy);
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 418, "the filter's answer");
        }
        Err(other) => panic!("expected the filter's 418, got {other}"),
        Ok(_) => panic!("the filter did not run before the upgrade"),
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

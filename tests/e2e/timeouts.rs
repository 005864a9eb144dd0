//! Slow and idle clients: a request head that does not arrive within
//! `server.client_header_timeout` ends the connection (Pingora's own wait is 60 s), and
//! a WebSocket tunnel idle past its route's `websocket_idle_timeout` is closed while a
//! busy one lives on.

use std::time::Duration;

use aistack_e2e::echo::EchoUpstream;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::wasm_common::start_with_server;
use crate::websocket::ws_echo;

/// Well under Pingora's 60 s, well over the 1 s configured.
const CUT_OFF_WITHIN: Duration = Duration::from_secs(20);

#[tokio::test]
async fn slow_request_heads_are_cut_off_at_the_client_header_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let routes = "upstreams:\n  echo:\n    targets: [127.0.0.1:{echo}]\n\
                  routes:\n  - name: all\n    path: /\n    upstream: echo\n";
    let routes = routes.replace("{echo}", &echo.port().to_string());
    let server = "  client_header_timeout: 1s\n";
    let gw = start_with_server(&echo, dir.path(), 1, server, &routes).await;
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", gw.ports.proxy));

    // Half a request head, then nothing; and a connection that never sends a byte.
    let mut half = connect().await.expect("connect");
    half.write_all(b"GET /slow HTTP/1.1\r\nhost: slow.test\r\n")
        .await
        .expect("write");
    let mut silent = connect().await.expect("connect");
    for (what, stream) in [("half a head", &mut half), ("nothing", &mut silent)] {
        let mut answer = Vec::new();
        let ended = tokio::time::timeout(CUT_OFF_WITHIN, stream.read_to_end(&mut answer)).await;
        assert!(
            ended.is_ok(),
            "a client that sent {what} is still connected"
        );
        assert!(
            answer.is_empty(),
            "{what}: {}",
            String::from_utf8_lossy(&answer)
        );
    }

    // A client that sends its head in time is served.
    let r = reqwest::get(gw.url("/prompt")).await.expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(echo.hits(), 1, "the cut-off requests never went upstream");
}

#[tokio::test]
async fn an_idle_websocket_tunnel_is_closed_and_a_busy_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let (ws, _) = ws_echo().await;
    let routes = format!(
        "upstreams:\n  ws:\n    targets: [127.0.0.1:{ws}]\n\
         routes:\n  - name: ws\n    path: /ws\n    upstream: ws\n    websocket_idle_timeout: 3s\n"
    );
    let gw = start_with_server(&echo, dir.path(), 1, "", &routes).await;
    let url = format!("ws://127.0.0.1:{}/ws/echo", gw.ports.proxy);

    // Busy: a message every 250 ms for longer than the idle timeout, each echoed.
    let (mut busy, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("handshake");
    for i in 0..16 {
        busy.send(Message::text(format!("ping {i}")))
            .await
            .expect("send");
        let echoed = busy.next().await.expect("open").expect("a frame");
        assert_eq!(echoed, Message::text(format!("ping {i}")));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Idle: one exchange, then silence until the gateway closes the tunnel.
    let (mut idle, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("handshake");
    idle.send(Message::text("hello")).await.expect("send");
    assert_eq!(
        idle.next().await.expect("open").expect("a frame"),
        Message::text("hello")
    );
    let closed = tokio::time::timeout(CUT_OFF_WITHIN, async {
        loop {
            match idle.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle tunnel is still open");
}

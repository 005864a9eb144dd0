//! Slow and idle clients: a request head that does not arrive whole within
//! `server.client_header_timeout` ends the connection (Pingora's own wait is 60 s per
//! read); a WebSocket tunnel idle past its route's `websocket_idle_timeout` is closed
//! while a busy one lives on.

use std::time::Duration;

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::raw::read_response;
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

/// The timeout is a total for each head, not a wait per read: a client dribbling a
/// header byte every 200 ms (each read well inside 1 s) is cut off, on a new connection
/// and on a kept-alive one; a kept-alive connection idle for longer than the timeout
/// between two requests is not (that wait is `keepalive_timeout`).
#[tokio::test]
async fn dribbled_request_heads_are_cut_off_on_new_and_kept_alive_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let routes = "upstreams:\n  echo:\n    targets: [127.0.0.1:{echo}]\n\
                  routes:\n  - name: all\n    path: /\n    upstream: echo\n";
    let routes = routes.replace("{echo}", &echo.port().to_string());
    let server = "  client_header_timeout: 1s\n  keepalive_timeout: 60s\n";
    let gw = start_with_server(&echo, dir.path(), 1, server, &routes).await;
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", gw.ports.proxy));

    let fresh = connect().await.expect("connect");
    assert_dribble_is_cut_off(fresh, "a new connection").await;

    let mut kept = connect().await.expect("connect");
    for path in ["/first", "/after-idle"] {
        let request = format!("GET {path} HTTP/1.1\r\nhost: kept.test\r\n\r\n");
        kept.write_all(request.as_bytes()).await.expect("write");
        let (head, _) = read_response(&mut kept).await.expect("a response");
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        // Idle between requests for longer than the header timeout.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert_dribble_is_cut_off(kept, "a kept-alive connection").await;
    assert_eq!(echo.hits(), 2, "the dribbled requests never went upstream");
}

/// Sends the start of a head, then one header byte every 200 ms for up to 20 s, and
/// asserts that the gateway closes the connection without an answer long before.
async fn assert_dribble_is_cut_off(stream: tokio::net::TcpStream, what: &str) {
    let (mut reader, mut writer) = stream.into_split();
    let started = std::time::Instant::now();
    let dribbler = tokio::spawn(async move {
        writer
            .write_all(b"GET /drip HTTP/1.1\r\nhost: drip.test\r\nx-drip: ")
            .await?;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            writer.write_all(b"x").await?;
        }
        std::io::Result::Ok(())
    });
    let mut answer = Vec::new();
    let ended = tokio::time::timeout(CUT_OFF_WITHIN, reader.read_to_end(&mut answer)).await;
    assert!(
        ended.is_ok(),
        "{what}: a dribbling client is still connected"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{what}: cut off only after {:?}",
        started.elapsed()
    );
    assert!(
        answer.is_empty(),
        "{what}: {}",
        String::from_utf8_lossy(&answer)
    );
    dribbler.abort();
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

//! Upstream timeouts through the real binary: an upstream slower than its `read_timeout`,
//! a route's whole-request `timeout` before the answer's head, and a target that never
//! completes the TCP handshake past `connect_timeout` all get the JSON 504; a route's
//! `timeout` reached while the body streams cuts the response short (its head is out:
//! no error can follow it) instead of splicing an error into it.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::flaky::Flaky;
use crate::upstreams::start;

/// Longer than any timeout configured here: a request that took this long was answered by
/// the upstream, not cut off by the gateway.
const UPSTREAM_DELAY: Duration = Duration::from_secs(10);
/// Well under [`UPSTREAM_DELAY`], well over the timeouts here (0.5 to 2 s).
const CUT_OFF_WITHIN: Duration = Duration::from_secs(8);

/// GET `path`: status, body as JSON (or Null), the `connection` header, time taken.
async fn timed_get(url: &str) -> (u16, Value, String, Duration) {
    let started = Instant::now();
    let r = reqwest::get(url).await.expect("an answer");
    let status = r.status().as_u16();
    let connection = r
        .headers()
        .get("connection")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, body, connection, started.elapsed())
}

fn assert_gateway_timeout(what: &str, answer: &(u16, Value, String, Duration)) {
    let (status, body, connection, took) = answer;
    assert_eq!(*status, 504, "{what}: {body}");
    assert_eq!(body["error"]["code"], "gateway_timeout", "{what}: {body}");
    assert!(body["error"]["request_id"].is_string(), "{what}: {body}");
    assert!(*took < CUT_OFF_WITHIN, "{what}: answered after {took:?}");
    // Pingora drops the client connection after a failure past choosing the target; the
    // answer says so rather than invite reuse of a connection about to close.
    assert_eq!(connection, "close", "{what}");
}

#[tokio::test]
async fn upstreams_slower_than_their_read_timeout_or_the_route_timeout_get_a_json_504() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (slow, fast) = (Flaky::start("slow").await, Flaky::start("fast").await);
    slow.set_delay(UPSTREAM_DELAY);
    let gw = start(
        &format!(
            r#"
upstreams:
  impatient:
    targets: [127.0.0.1:{slow}]
    read_timeout: 500ms
  patient:
    targets: [127.0.0.1:{slow}]
  fast:
    targets: [127.0.0.1:{fast}]
routes:
  - name: read-timeout
    path: /read
    upstream: impatient
    retries: {{ max: 0 }}
  - name: read-timeout-retried
    path: /retried
    upstream: impatient
  - name: route-timeout
    path: /deadline
    upstream: patient
    timeout: 1s
    retries: {{ max: 0 }}
  - name: fast
    path: /fast
    upstream: fast
"#,
            slow = slow.port(),
            fast = fast.port()
        ),
        dir.path(),
    )
    .await;

    let answer = timed_get(&gw.url("/read/x")).await;
    assert_gateway_timeout("read_timeout", &answer);
    assert_eq!(slow.proxied(), 1, "`max: 0`: one try");

    // By default a timed-out GET (idempotent, bodyless) is retried once: two tries, each
    // cut off by the read timeout.
    let answer = timed_get(&gw.url("/retried/x")).await;
    assert_gateway_timeout("read_timeout, retried", &answer);
    assert_eq!(slow.proxied(), 3, "the default retry");

    // The route's deadline caps the upstream's 60 s read timeout.
    let answer = timed_get(&gw.url("/deadline/x")).await;
    assert_gateway_timeout("route timeout", &answer);
    assert!(answer.3 >= Duration::from_millis(900), "{:?}", answer.3);
    assert_eq!(slow.proxied(), 4, "`max: 0`: one try");

    let (status, body, _, _) = timed_get(&gw.url("/fast/x")).await;
    assert_eq!((status, body["upstream"].as_str()), (200, Some("fast")));
}

/// An upstream that answers 200 at once and then sends its body of `BODY_LEN` `x` bytes
/// one every 100 ms: with a `content-length` on paths starting `/length`, else chunked.
async fn trickling_upstream() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = trickle(stream).await;
            });
        }
    });
    (port, task)
}

const BODY_LEN: usize = 200;

async fn trickle(stream: TcpStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 || line.trim_end().is_empty() {
            break;
        }
    }
    let chunked = !request_line.contains(" /length");
    let framing = if chunked {
        "transfer-encoding: chunked".to_owned()
    } else {
        format!("content-length: {BODY_LEN}")
    };
    write
        .write_all(format!("HTTP/1.1 200 OK\r\n{framing}\r\n\r\n").as_bytes())
        .await?;
    for _ in 0..BODY_LEN {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let piece: &[u8] = if chunked { b"1\r\nx\r\n" } else { b"x" };
        write.write_all(piece).await?;
    }
    if chunked {
        write.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_route_timeout_cuts_a_streaming_body_short_without_an_error_spliced_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, _upstream) = trickling_upstream().await;
    let gw = start(
        &format!(
            r#"
upstreams:
  trickle:
    targets: [127.0.0.1:{port}]
routes:
  - name: stream
    path: /
    upstream: trickle
    timeout: 2s
"#
        ),
        dir.path(),
    )
    .await;
    for path in ["/length", "/chunked"] {
        let mut stream = TcpStream::connect(("127.0.0.1", gw.ports.proxy))
            .await
            .expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nhost: trickle.test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let started = Instant::now();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(CUT_OFF_WITHIN, stream.read_to_end(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{path}: still streaming after {CUT_OFF_WITHIN:?}"));
        let took = started.elapsed();
        let answer = String::from_utf8_lossy(&answer);
        let Some((head, body)) = answer.split_once("\r\n\r\n") else {
            panic!("{path}: no response head: {answer}");
        };
        assert!(head.starts_with("HTTP/1.1 200 "), "{path}: {head}");
        assert!(
            took >= Duration::from_millis(1800),
            "{path}: cut after {took:?}"
        );
        // Only the upstream's bytes, fewer than it had to send, and no end of body: a
        // client sees the response cut short, not a complete one.
        let data: String = if path == "/length" {
            body.to_owned()
        } else {
            assert!(
                !body.contains("0\r\n\r\n"),
                "{path}: a last chunk: {body:?}"
            );
            dechunk(body)
        };
        assert!(!data.is_empty(), "{path}: some of the body came through");
        assert!(data.len() < BODY_LEN, "{path}: {} bytes", data.len());
        assert!(data.bytes().all(|b| b == b'x'), "{path}: {body:?}");
    }
}

/// The data of the complete chunks in a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut data = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            return format!("{data}<not a chunk size: {size:?}>");
        };
        if rest.len() < size + 2 {
            break;
        }
        data.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    data
}

/// A listening port that completes no TCP handshake: its accept queue (length 0: one
/// connection) is filled and never drained, so Linux drops further SYNs and a connect
/// hangs until the connecting side gives up. The listener and the connection filling
/// the queue must stay alive.
async fn blackhole() -> (TcpListener, TcpStream) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(([127, 0, 0, 1], 0).into())
        .expect("bind blackhole");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let filler = TcpStream::connect(addr)
        .await
        .expect("fill the accept queue");
    let probe = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await;
    assert!(
        probe.is_err(),
        "a connect to a full accept queue completed: no blackhole here"
    );
    (listener, filler)
}

#[tokio::test]
async fn a_target_that_never_accepts_gets_a_json_504_after_the_connect_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hole, _filler) = blackhole().await;
    let port = hole.local_addr().expect("addr").port();
    let gw = start(
        &format!(
            r#"
upstreams:
  hole:
    targets: [127.0.0.1:{port}]
    connect_timeout: 500ms
routes:
  - name: hole
    path: /
    upstream: hole
    retries: {{ max: 0 }}
"#
        ),
        dir.path(),
    )
    .await;
    let answer = timed_get(&gw.url("/x")).await;
    assert_gateway_timeout("connect_timeout", &answer);
    assert!(answer.3 >= Duration::from_millis(400), "{:?}", answer.3);
    drop(hole);
}

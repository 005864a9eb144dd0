//! Raw HTTP/1.x over TCP, for what a client library would hide: framing, connection
//! reuse and close, HTTP/1.0, resets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects to the proxy on `port`, sends `request` and reads until the gateway closes
/// the connection (at most 10 s, else a panic). `Err` when it reset it.
pub async fn until_close(port: u16, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the connection ends")
        .map(|_| answer)
}

/// How one response's body is delimited.
#[derive(Debug, PartialEq, Eq)]
pub enum Framing {
    Length,
    Chunked,
    /// Neither: the body ends with the connection.
    None,
}

/// Reads one response from `stream`: its head, lower-cased, and how its body was
/// framed; `None` when the connection closed first. A body without framing is taken
/// as empty.
pub async fn read_response(stream: &mut TcpStream) -> Option<(String, Framing)> {
    read_message(stream)
        .await
        .map(|(head, framing, _)| (head, framing))
}

/// [`read_response`] with the body too, as sent (chunked framing left in).
pub async fn read_message(stream: &mut TcpStream) -> Option<(String, Framing, String)> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
            let body = String::from_utf8_lossy(&seen[end + 4..]);
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let (done, framing) = if head.contains("transfer-encoding: chunked") {
                (body.ends_with("0\r\n\r\n"), Framing::Chunked)
            } else if let Some(len) = length {
                (body.len() >= len, Framing::Length)
            } else {
                (true, Framing::None)
            };
            if done {
                return Some((head, framing, body.into_owned()));
            }
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        seen.extend_from_slice(&buf[..n]);
    }
}

//! A minimal HTTP/1.1 GET over loopback, used to poll services for readiness and to
//! check that a proxy really reaches the bench upstream (no fixed sleeps anywhere).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response, read until the server closed the connection.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` with `Connection: close`; the whole exchange within two seconds.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Reply> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .context("timed out")??;
    parse(&raw)
}

fn parse(raw: &[u8]) -> Result<Reply> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("incomplete response head")?;
    let head = std::str::from_utf8(&raw[..end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let raw_body = &raw[end + 4..];
    // A filter on the route may change the body's length, so the gateway sends it chunked.
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(raw_body)?
    } else {
        raw_body.to_vec()
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// The data of a complete chunked body (no trailers expected).
fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("incomplete chunk size line")?;
        let line = std::str::from_utf8(&raw[..line_end]).context("chunk size is not UTF-8")?;
        let hex = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(hex, 16).with_context(|| format!("bad chunk size {line:?}"))?;
        if size == 0 {
            return Ok(body);
        }
        let data = line_end + 2;
        let stop = data.saturating_add(size);
        let chunk = raw.get(data..stop).context("chunk shorter than its size")?;
        body.extend_from_slice(chunk);
        raw = raw
            .get(stop.saturating_add(2)..)
            .context("chunk without its CRLF")?;
    }
}

/// Polls `GET /` on `addr` every 50 ms until `check` accepts the reply. Before each
/// attempt `alive` is asked whether the service is still running, so a crash fails
/// at once with its own error rather than after the deadline.
pub async fn wait_ready(
    what: &str,
    addr: SocketAddr,
    within: Duration,
    mut alive: impl FnMut() -> Result<()>,
    check: impl Fn(&Reply) -> Result<()>,
) -> Result<()> {
    let deadline = Instant::now() + within;
    let mut last = String::from("no attempt yet");
    while Instant::now() < deadline {
        alive()?;
        match get(addr, "/").await {
            Ok(reply) => match check(&reply) {
                Ok(()) => return Ok(()),
                Err(e) => last = format!("{e:#}"),
            },
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{what} on {addr} not ready within {within:?}: {last}")
}

/// The check for anything in front of the bench upstream: `200` with body `ok`.
pub fn upstream_ok(reply: &Reply) -> Result<()> {
    status_ok_with_body(reply, b"ok")
}

/// `200` with exactly `body`.
pub fn status_ok_with_body(reply: &Reply, body: &[u8]) -> Result<()> {
    if reply.status != 200 || reply.body != body {
        bail!(
            "expected 200 {:?}, got {} {:?}",
            String::from_utf8_lossy(body),
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_headers_body() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: abc\r\n\r\nok")
            .expect("parses");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-request-id"), Some("abc"));
        assert!(upstream_ok(&r).is_ok());
        assert!(parse(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nO\r\n1;x=y\r\nK\r\n0\r\n\r\n")
            .expect("parses");
        assert_eq!(r.body, b"OK");
        assert!(status_ok_with_body(&r, b"OK").is_ok() && upstream_ok(&r).is_err());
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nOK";
        assert!(parse(cut).is_err());
    }
}

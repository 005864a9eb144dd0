//! Active health checks of upstream targets, on the side runtime (HTTP GET or
//! TCP connect, per upstream interval and thresholds). They follow the current
//! snapshot, so a reload changes what is checked without restarting anything.
//! The HTTP check speaks the upstream's protocol: HTTP/1.1, or HTTP/2 with
//! prior knowledge (h2c) for an `http2` upstream, which may speak nothing else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::model::HealthCheckSpec;
use crate::config::surface::HealthCheckKind;
use crate::snapshot::SnapshotHandle;

/// How often the loop looks for due checks; each target keeps its own interval.
const TICK: Duration = Duration::from_millis(100);
/// The `User-Agent` of the HTTP checks.
const USER_AGENT: &str = "aistack-health-check";

/// Runs active health checks until `stop` turns true.
pub async fn run_health_checks(
    snapshots: SnapshotHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let snapshot = snapshots.load();
        for upstream in &snapshot.upstreams {
            let Some(hc) = &upstream.spec.health_check else {
                continue;
            };
            for ep in upstream.endpoints() {
                if !ep.health.claim_check(hc.interval) {
                    continue;
                }
                let hc = hc.clone();
                let name = Arc::clone(&upstream.name);
                let host = host_header(&ep.target);
                let http2 = upstream.spec.http2;
                tokio::spawn(async move {
                    let ok = probe(ep.addr, &host, &hc, http2).await;
                    ep.health
                        .probing
                        .store(false, std::sync::atomic::Ordering::Release);
                    if let Some(now) =
                        ep.health
                            .record_check(ok, hc.healthy_threshold, hc.unhealthy_threshold)
                    {
                        let state = if now { "healthy" } else { "unhealthy" };
                        tracing::warn!(upstream = %name, target = %ep.addr, "health check: target is now {state}");
                    }
                });
            }
        }
        drop(snapshot);
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One check: true when the target is healthy. `http2`: the upstream speaks
/// HTTP/2 with prior knowledge, so an HTTP check does too.
async fn probe(addr: SocketAddr, host: &str, hc: &HealthCheckSpec, http2: bool) -> bool {
    let attempt = async {
        let stream = TcpStream::connect(addr).await.ok()?;
        match (hc.kind, http2) {
            (HealthCheckKind::Tcp, _) => Some(true),
            (HealthCheckKind::Http, false) => probe_http1(stream, host, &hc.path).await,
            (HealthCheckKind::Http, true) => probe_h2(stream, host, &hc.path).await,
        }
    };
    matches!(
        tokio::time::timeout(hc.timeout, attempt).await,
        Ok(Some(true))
    )
}

/// `GET path` over HTTP/1.1: whether the status line says healthy.
async fn probe_http1(mut stream: TcpStream, host: &str, path: &str) -> Option<bool> {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = [0u8; 32];
    let mut n = 0;
    while n < 12 {
        let read = stream.read(&mut buf[n..]).await.ok()?;
        if read == 0 {
            break;
        }
        n += read;
    }
    Some(status_is_healthy(&buf[..n]))
}

/// `GET path` over HTTP/2 with prior knowledge (h2c): whether the status is
/// 2xx or 3xx. The connection is driven beside the request and dropped after
/// the response head.
async fn probe_h2(stream: TcpStream, host: &str, path: &str) -> Option<bool> {
    let (client, connection) = h2::client::handshake(stream).await.ok()?;
    let request = http::Request::get(format!("http://{host}{path}"))
        .header(http::header::USER_AGENT, USER_AGENT)
        .body(())
        .ok()?;
    let response = async {
        let mut client = client.ready().await.ok()?;
        let (response, _) = client.send_request(request, true).ok()?;
        response.await.ok()
    };
    tokio::select! {
        r = response => r.map(|r| r.status().is_success() || r.status().is_redirection()),
        _ = connection => None,
    }
}

/// `HTTP/1.x 2xx` or `3xx`.
fn status_is_healthy(head: &[u8]) -> bool {
    let Some(rest) = head.strip_prefix(b"HTTP/1.") else {
        return false;
    };
    matches!(rest.get(2), Some(b'2' | b'3')) && rest.get(1) == Some(&b' ')
}

/// The `Host` header for a check: the target as configured.
fn host_header(target: &str) -> String {
    target.to_owned()
}

#[cfg(test)]
mod tests {
    use super::status_is_healthy;

    #[test]
    fn status_lines() {
        assert!(status_is_healthy(b"HTTP/1.1 200 OK\r\n"));
        assert!(status_is_healthy(b"HTTP/1.0 302 Found"));
        assert!(!status_is_healthy(b"HTTP/1.1 503 Unavailable"));
        assert!(!status_is_healthy(b"HTTP/1.1 404"));
        assert!(!status_is_healthy(b"garbage"));
        assert!(!status_is_healthy(b""));
    }
}

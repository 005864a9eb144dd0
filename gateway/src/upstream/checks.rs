//! Background upkeep of upstream targets, on the side runtime: active health
//! checks (HTTP GET or TCP connect, per upstream interval and thresholds) and
//! DNS re-resolution. Both follow the current snapshot, so a reload changes
//! what is checked without restarting anything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::HealthRegistry;
use crate::config::model::HealthCheckSpec;
use crate::config::surface::HealthCheckKind;
use crate::snapshot::SnapshotHandle;

/// How often the loop looks for due checks; each target keeps its own interval.
const TICK: Duration = Duration::from_millis(100);
const DNS_TICK: Duration = Duration::from_secs(1);

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
                tokio::spawn(async move {
                    let ok = probe(ep.addr, &host, &hc).await;
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

/// Resolves DNS names among the targets again, each upstream on its own
/// `resolve_interval`, until `stop` turns true.
pub async fn run_dns_refresh(
    snapshots: SnapshotHandle,
    registry: HealthRegistry,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(DNS_TICK) => {}
            _ = stop.changed() => return,
        }
        let snapshot = snapshots.load();
        for (i, upstream) in snapshot.upstreams.iter().enumerate() {
            if !upstream.has_names() {
                continue;
            }
            {
                let mut last = upstream
                    .last_resolved
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if last.elapsed() < upstream.spec.resolve_interval {
                    continue;
                }
                *last = Instant::now();
            }
            let snap = Arc::clone(&snapshot);
            let reg = registry.clone();
            let _ = tokio::task::spawn_blocking(move || snap.upstreams[i].refresh_dns(&reg)).await;
        }
    }
}

/// One check: true when the target is healthy.
async fn probe(addr: SocketAddr, host: &str, hc: &HealthCheckSpec) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        if hc.kind == HealthCheckKind::Tcp {
            return Some(true);
        }
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: aistack-health-check\r\nConnection: close\r\n\r\n",
            hc.path
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
    };
    matches!(
        tokio::time::timeout(hc.timeout, attempt).await,
        Ok(Some(true))
    )
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

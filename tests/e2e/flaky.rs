//! A controllable HTTP/1.1 upstream for the reload, health and retry tests:
//! it answers `200` with a JSON body naming itself and what it received, or
//! behaves badly on demand (slow, 503, connection reset, refuses connections).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Ok = 0,
    /// Every answer, health checks included, is a 503.
    Unhealthy = 1,
    /// Reads the request, then closes the connection without answering.
    Reset = 2,
}

/// A running upstream; stops (and closes its port) when dropped.
pub struct Flaky {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    delay_ms: Arc<AtomicU64>,
    /// Requests received other than health checks.
    pub proxied: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Flaky {
    pub async fn start(name: &'static str) -> Flaky {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(name, listener)
    }

    /// Listens on `addr` (e.g. `[::1]` on the port of another one); an error if it
    /// cannot.
    pub async fn start_on(name: &'static str, addr: SocketAddr) -> std::io::Result<Flaky> {
        Ok(Self::serve(name, TcpListener::bind(addr).await?))
    }

    /// Listens on `addr` again (after [`Flaky::stop`]): the port comes back.
    pub async fn restart_on(name: &'static str, addr: SocketAddr) -> Flaky {
        let mut tries = 0;
        loop {
            match TcpListener::bind(addr).await {
                Ok(l) => return Self::serve(name, l),
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebind {addr}: {e}"),
            }
        }
    }

    fn serve(name: &'static str, listener: TcpListener) -> Flaky {
        let addr = listener.local_addr().expect("addr");
        let mode = Arc::new(AtomicU8::new(Mode::Ok as u8));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let hits = Arc::new(AtomicUsize::new(0));
        let proxied = Arc::new(AtomicUsize::new(0));
        let state = (
            Arc::clone(&mode),
            Arc::clone(&delay_ms),
            Arc::clone(&hits),
            Arc::clone(&proxied),
        );
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let st = (
                    Arc::clone(&state.0),
                    Arc::clone(&state.1),
                    Arc::clone(&state.2),
                    Arc::clone(&state.3),
                );
                conns.spawn(async move {
                    let _ = handle(stream, name, st).await;
                });
            }
        });
        Flaky {
            addr,
            mode,
            delay_ms,
            proxied,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Delay before each answer.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn proxied(&self) -> usize {
        self.proxied.load(Ordering::SeqCst)
    }

    /// Closes the port: connections are refused until [`Flaky::restart_on`].
    pub fn stop(self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        // Aborting the accept task drops the listener and the JoinSet, which
        // aborts every open connection too.
        self.task.abort();
    }
}

type State = (
    Arc<AtomicU8>,
    Arc<AtomicU64>,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
);

async fn handle(stream: TcpStream, name: &str, st: State) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = serde_json::Map::new();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).await? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                if k == "content-length" {
                    len = v.trim().parse().unwrap_or(0);
                }
                let entry = headers
                    .entry(k)
                    .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                if let Some(list) = entry.as_array_mut() {
                    list.push(v.trim().into());
                }
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).await?;
        st.2.fetch_add(1, Ordering::SeqCst);
        let is_check = headers
            .get("user-agent")
            .is_some_and(|v| v.to_string().contains("aistack-health-check"));
        if !is_check {
            st.3.fetch_add(1, Ordering::SeqCst);
        }
        let delay = st.1.load(Ordering::SeqCst);
        if delay > 0 && !is_check {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let (status, text) = match st.0.load(Ordering::SeqCst) {
            1 => (503, "Service Unavailable"),
            2 => return Ok(()),
            _ => (200, "OK"),
        };
        let json = serde_json::json!({
            "upstream": name,
            "method": method,
            "path": path,
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        })
        .to_string();
        let resp = format!(
            "HTTP/1.1 {status} {text}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
            json.len()
        );
        write.write_all(resp.as_bytes()).await?;
    }
}

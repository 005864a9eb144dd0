//! What happens on a new client connection before the proxy phases: the protocol is
//! chosen (HTTP/2 through ALPN on TLS, h2c by its preface on plaintext, else HTTP/1.x),
//! as Pingora does it, plus a deadline for clients that are slow to send their request
//! head (`server.client_header_timeout`).
//!
//! Pingora 0.9.1 has no setting for that deadline: it waits for the h2c preface without
//! any limit, and reads the first request head of a connection with a fixed 60 s per
//! read (its keep-alive wait, which also bounds each read of a head). This app takes
//! over the connection's start to bound the preface and the first head's reads by the
//! configured timeout, and hands HTTP/2 connections and every request to Pingora's proxy
//! unchanged. Every HTTP/1 request head must also arrive whole within the timeout
//! ([`head_deadline`]): the first from the connection's start, a later one on a kept-alive
//! connection from its first byte (the idle wait before it is
//! `server.keepalive_timeout`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{ALPN, Stream};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;

use crate::proxy::Gateway;
use crate::snapshot::SnapshotHandle;

mod head_deadline;

use head_deadline::HeadDeadline;

/// Bytes a request head may have beyond its header names and values before it is refused
/// as it arrives (the request line, mostly): see [`head_deadline`].
const HEAD_FRAMING_ALLOWANCE: usize = 16 * 1024;

/// The HTTP/2 connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The proxy's connection handler (see the module docs).
pub struct Connections {
    proxy: Arc<HttpProxy<Gateway>>,
    header_timeout: Duration,
    snapshots: SnapshotHandle,
}

impl Connections {
    /// `header_timeout` bounds a new connection's wait for its first bytes (Pingora counts
    /// that wait in whole seconds, at least 1) and the time each HTTP/1 request head takes
    /// to arrive whole.
    pub fn new(
        proxy: HttpProxy<Gateway>,
        header_timeout: Duration,
        snapshots: SnapshotHandle,
    ) -> Self {
        Self {
            proxy: Arc::new(proxy),
            header_timeout,
            snapshots,
        }
    }

    fn header_timeout_secs(&self) -> u64 {
        self.header_timeout.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// Whether the client's first bytes are the HTTP/2 preface (h2c with prior knowledge),
/// peeking only as far as it takes to tell: an HTTP/1 request differs from the preface
/// within its first three bytes, and one shorter than the preface (`GET / HTTP/1.0`
/// and a blank line is 18 bytes) must not wait for bytes that never come, as a single
/// peek of the preface's 24 bytes (Pingora's way) would.
async fn h2_preface(stream: &mut Stream) -> std::io::Result<bool> {
    let mut seen = [0u8; H2_PREFACE.len()];
    for n in 1..=H2_PREFACE.len() {
        // Reads `n` bytes and puts them back (`false`: this stream cannot peek).
        if !stream.try_peek(&mut seen[..n]).await? || seen[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
    }
    Ok(true)
}

#[async_trait]
impl ServerApp for Connections {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let options = self.proxy.server_options.as_ref();
        if let Some(digest) = stream.get_ssl_digest() {
            let local = stream
                .get_socket_digest()
                .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).copied());
            if !crate::tls::version_allowed(&self.snapshots, local, &digest.version) {
                return None;
            }
            if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
                return self.proxy.process_new(stream, shutdown).await;
            }
        } else if options.is_some_and(|o| o.h2c) {
            match tokio::time::timeout(self.header_timeout, h2_preface(&mut stream)).await {
                // Pingora peeks again and finds the same bytes.
                Ok(Ok(true)) => return self.proxy.process_new(stream, shutdown).await,
                Ok(Ok(false)) => {}
                // Closed, or silent for the whole timeout.
                Ok(Err(_)) | Err(_) => return None,
            }
        }
        let snapshot = self.snapshots.load();
        let server = &snapshot.config.server;
        // The request line and the framing of each field (`: ` and CRLF) on top of the
        // names and values `max_request_header_bytes` counts.
        let max_head = usize::try_from(server.max_request_header_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(server.max_request_headers.saturating_mul(4))
            .saturating_add(HEAD_FRAMING_ALLOWANCE);
        let stream: Stream = Box::new(HeadDeadline::new(stream, self.header_timeout, max_head));
        let mut session = ServerSession::new_http1(stream);
        if *shutdown.borrow() {
            session.set_keepalive(None);
        } else {
            session.set_keepalive(Some(self.header_timeout_secs()));
        }
        session.set_keepalive_reuses_remaining(options.and_then(|o| o.keepalive_request_limit));
        let mut reused = self.proxy.process_new_http(session, shutdown).await;
        while let Some((stream, settings)) = reused.map(|r| r.consume()) {
            // Pingora hands back the stream it was given.
            let Ok(mut timed) = stream.into_any().downcast::<HeadDeadline>() else {
                tracing::debug!("a kept-alive client stream came back unwrapped: closed");
                return None;
            };
            timed.next_head();
            let mut session = ServerSession::new_http1(timed);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            reused = self.proxy.process_new_http(session, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

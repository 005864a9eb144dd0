//! A client stream on which every HTTP/1 request head must arrive whole within
//! `server.client_header_timeout`: a total for the head, not a wait per read, so a client
//! that dribbles a byte now and then (slowloris) is cut off like one that sends nothing.
//!
//! The clock of the connection's first head starts when the connection is handed to the
//! proxy; the clock of a later head on a kept-alive connection starts with its first byte
//! (the idle wait before it is `server.keepalive_timeout`, Pingora's). A head ends at its
//! blank line (`\r\n\r\n`, or the bare `\n\n` that parsers also accept); from there on,
//! reads pass straight through until [`HeadDeadline::next_head`] is called for the next
//! request. Past the deadline a read fails with `TimedOut` and the connection is closed
//! without an answer, as with Pingora's own per-read wait.
//!
//! Only bytes read from the socket are seen: a head that Pingora already holds because the
//! client pipelined it behind the previous request is not timed (it has arrived).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType, raw_connect::ProxyDigest,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Where the stream is in its current request head.
#[derive(Debug)]
enum Head {
    /// Between requests: no byte of the next head yet, no deadline.
    Awaiting,
    /// Inside a head: the deadline, and the newlines seen in a row at its end so far
    /// (carriage returns skipped).
    Reading {
        deadline: Pin<Box<Sleep>>,
        newlines: u8,
    },
    /// The head is complete: reads pass through.
    Done,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct HeadDeadline {
    inner: Stream,
    timeout: Duration,
    head: Head,
}

impl HeadDeadline {
    /// Wraps a new connection's stream; its first head must be complete `timeout` from now.
    pub(crate) fn new(inner: Stream, timeout: Duration) -> Self {
        let deadline = Box::pin(tokio::time::sleep_until(Instant::now() + timeout));
        HeadDeadline {
            inner,
            timeout,
            head: Head::Reading {
                deadline,
                newlines: 0,
            },
        }
    }

    /// Starts timing the next request head from its first byte (on a kept-alive
    /// connection, after the previous response).
    pub(crate) fn next_head(&mut self) {
        self.head = Head::Awaiting;
    }

    /// Moves the head's state over bytes just read.
    fn scan(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if matches!(self.head, Head::Awaiting) {
            self.head = Head::Reading {
                deadline: Box::pin(tokio::time::sleep_until(Instant::now() + self.timeout)),
                newlines: 0,
            };
        }
        let Head::Reading { newlines, .. } = &mut self.head else {
            return;
        };
        for &b in bytes {
            match b {
                b'\n' => {
                    *newlines += 1;
                    if *newlines == 2 {
                        self.head = Head::Done;
                        return;
                    }
                }
                b'\r' => {}
                _ => *newlines = 0,
            }
        }
    }
}

impl AsyncRead for HeadDeadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if !matches!(this.head, Head::Done) {
                    this.scan(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let expired = match &mut this.head {
                    Head::Reading { deadline, .. } => deadline.as_mut().poll(cx).is_ready(),
                    Head::Awaiting | Head::Done => false,
                };
                if expired {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request head not complete within client_header_timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for HeadDeadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for HeadDeadline {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeadDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadDeadline {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeadDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeadDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream over a real socket that is never read here: `scan` alone is tested.
    fn stream() -> HeadDeadline {
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("pair");
        a.set_nonblocking(true).expect("nonblocking");
        let socket = tokio::net::UnixStream::from_std(a).expect("tokio");
        let inner: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(socket));
        HeadDeadline::new(inner, Duration::from_secs(1))
    }

    fn done(s: &HeadDeadline) -> bool {
        matches!(s.head, Head::Done)
    }

    #[tokio::test]
    async fn a_head_ends_at_its_blank_line_across_reads() {
        let mut s = stream();
        s.scan(b"GET / HTTP/1.1\r\nhost: a\r");
        assert!(!done(&s));
        s.scan(b"\n\r");
        assert!(!done(&s));
        s.scan(b"\nbody");
        assert!(done(&s));
        // Bytes after the head (a body) do not matter; the next head starts timing at
        // its first byte.
        s.next_head();
        assert!(matches!(s.head, Head::Awaiting));
        s.scan(b"");
        assert!(matches!(s.head, Head::Awaiting));
        s.scan(b"GET /2 HTTP/1.1\n");
        assert!(matches!(s.head, Head::Reading { .. }));
        s.scan(b"\n");
        assert!(done(&s));
    }

    #[tokio::test]
    async fn newlines_apart_do_not_end_a_head() {
        let mut s = stream();
        s.scan(b"GET / HTTP/1.1\r\nx: 1\r\ny: 2\r\n");
        assert!(!done(&s));
        s.scan(b"\r\n");
        assert!(done(&s));
    }
}

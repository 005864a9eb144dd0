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
//!
//! The same scan bounds a head's size as it arrives: past `max_head` bytes without its
//! blank line, the connection gets a `431` JSON error, its write side is shut, what the
//! client still sends is read and dropped (at most 1 MiB, for at most 1 s: a close with
//! unread bytes would be a reset, which can discard the 431 before the client reads it),
//! and it is closed. Without this Pingora would buffer up to its own 1 MiB of the head
//! before the proxy's exact check (`server.max_request_header_bytes`, on the parsed head)
//! could refuse it.

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
        /// Bytes of the head so far.
        bytes: usize,
    },
    /// The head is complete: reads pass through.
    Done,
    /// The head outgrew `max_head`: `reply` (a 431) is being written from `written` on;
    /// then the write side is shut and what the client still sends is read and dropped.
    Refusing { reply: Vec<u8>, written: usize },
    /// After the 431 and the shutdown of the write side: the client's bytes are read and
    /// dropped until its end, `left` runs out or `until` passes, so that the close is not a
    /// reset that could discard the 431 before the client reads it.
    Lingering { until: Pin<Box<Sleep>>, left: usize },
    /// Done refusing: every read fails.
    Refused,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct HeadDeadline {
    inner: Stream,
    timeout: Duration,
    max_head: usize,
    head: Head,
}

impl HeadDeadline {
    /// Wraps a new connection's stream; its first head must be complete `timeout` from now,
    /// and every head within `max_head` bytes.
    pub(crate) fn new(inner: Stream, timeout: Duration, max_head: usize) -> Self {
        let deadline = Box::pin(tokio::time::sleep_until(Instant::now() + timeout));
        HeadDeadline {
            inner,
            timeout,
            max_head,
            head: Head::Reading {
                deadline,
                newlines: 0,
                bytes: 0,
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
                bytes: 0,
            };
        }
        let Head::Reading {
            newlines,
            bytes: seen,
            ..
        } = &mut self.head
        else {
            return;
        };
        for (i, &b) in bytes.iter().enumerate() {
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
            if *seen + i + 1 > self.max_head {
                self.head = Head::Refusing {
                    reply: too_large_reply(),
                    written: 0,
                };
                return;
            }
        }
        *seen += bytes.len();
    }

    /// Writes what is left of the 431, shuts the write side, lingers; `Ready` once done
    /// (or once anything of it fails).
    fn poll_refuse(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.head {
                Head::Refusing { reply, written } if *written < reply.len() => {
                    match Pin::new(&mut self.inner).poll_write(cx, &reply[*written..]) {
                        Poll::Ready(Ok(n)) if n > 0 => *written += n,
                        Poll::Ready(_) => self.head = Head::Refused,
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Head::Refusing { .. } => match Pin::new(&mut self.inner).poll_flush(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(_)) => self.head = Head::Refused,
                    Poll::Ready(Ok(())) => match Pin::new(&mut self.inner).poll_shutdown(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(_)) => self.head = Head::Refused,
                        Poll::Ready(Ok(())) => {
                            self.head = Head::Lingering {
                                until: Box::pin(tokio::time::sleep(LINGER)),
                                left: LINGER_BYTES,
                            };
                        }
                    },
                },
                Head::Lingering { until, left } => {
                    let mut scratch = [0u8; 4096];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                            *left = left.saturating_sub(buf.filled().len());
                            if *left == 0 {
                                self.head = Head::Refused;
                            }
                        }
                        // The client's end, or an error.
                        Poll::Ready(_) => self.head = Head::Refused,
                        Poll::Pending => {
                            if until.as_mut().poll(cx).is_pending() {
                                return Poll::Pending;
                            }
                            self.head = Head::Refused;
                        }
                    }
                }
                Head::Awaiting | Head::Reading { .. } | Head::Done | Head::Refused => {
                    return Poll::Ready(());
                }
            }
        }
    }
}

/// Longest the client's bytes are read and dropped after a 431 for a head's size.
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes read and dropped then (Pingora's own limit of a head).
const LINGER_BYTES: usize = 1 << 20;

/// The raw `431` for a head over the size limit: the proxy's JSON error, with a request
/// id of its own (the request was never parsed), and `Connection: close`.
fn too_large_reply() -> Vec<u8> {
    use crate::proxy::{request_id, respond};
    let id = request_id::generate();
    let body = respond::error_body(&respond::HEADERS_TOO_LARGE, &id);
    let mut reply = format!(
        "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nx-request-id: {id}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    reply.extend_from_slice(&body);
    reply
}

/// The error every read gets once a head was refused for its size.
fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "request head over the size limit (server.max_request_header_bytes)",
    )
}

impl AsyncRead for HeadDeadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.head {
            Head::Refusing { .. } | Head::Lingering { .. } => {
                return this.poll_refuse(cx).map(|()| Err(too_large()));
            }
            Head::Refused => return Poll::Ready(Err(too_large())),
            Head::Awaiting | Head::Reading { .. } | Head::Done => {}
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if !matches!(this.head, Head::Done) {
                    this.scan(&buf.filled()[before..]);
                    if matches!(this.head, Head::Refusing { .. }) {
                        // Nothing of this head reaches the parser.
                        buf.set_filled(before);
                        return this.poll_refuse(cx).map(|()| Err(too_large()));
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let expired = match &mut this.head {
                    Head::Reading { deadline, .. } => deadline.as_mut().poll(cx).is_ready(),
                    Head::Awaiting
                    | Head::Done
                    | Head::Refusing { .. }
                    | Head::Lingering { .. }
                    | Head::Refused => false,
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
        HeadDeadline::new(inner, Duration::from_secs(1), 64)
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
    async fn a_head_past_its_size_is_refused_and_a_body_is_not_counted() {
        let mut s = stream();
        s.scan(&[b'x'; 40]);
        s.scan(b"\r\n\r\n");
        assert!(done(&s), "44 bytes, within 64");
        s.scan(&[b'y'; 1000]);
        assert!(done(&s), "a body after the head is not a head");
        s.next_head();
        s.scan(&[b'x'; 60]);
        assert!(matches!(s.head, Head::Reading { .. }));
        s.scan(&[b'x'; 5]);
        assert!(
            matches!(s.head, Head::Refusing { .. }),
            "65 bytes without an end"
        );
        let Head::Refusing { reply, .. } = &s.head else {
            unreachable!()
        };
        let text = String::from_utf8_lossy(reply);
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        assert!(text.contains("request_header_fields_too_large"), "{text}");
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

//! The bench upstream: answers every HTTP/1.1 request on `127.0.0.1:PORT` with
//! `200`, `content-length: 2`, body `ok`, over keep-alive connections.
//!
//! Usage: `upstream PORT`. A current-thread runtime, so the whole server stays on the
//! core it is pinned to. Plain tokio rather than hyper: the server is ~one loop, and the
//! fewer cycles it spends, the more of the shared client core is left to wrk.
//! Requests are framed by `aistack_benches::http1`: the head ends at `\r\n\r\n`, a
//! `Content-Length` body is read and discarded; several requests arriving in one read
//! are all answered, in order, with one write.

use std::process::ExitCode;

use aistack_benches::http1::{Head, parse_head};
use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
const OK_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
const BAD: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upstream: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .context("usage: upstream PORT")?
        .parse()
        .context("PORT must be a number 0–65535")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                // A client going away mid-request is normal at the end of a wrk run.
                let _ = serve(stream).await;
            });
        }
    })
}

/// Serves one connection until the client closes it or asks to.
async fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut out = Vec::with_capacity(1024);
    // Body bytes of the current request not received yet.
    let mut skip: u64 = 0;
    loop {
        // read_buf fills spare capacity: no zeroing of the buffer per read.
        buf.reserve(4096);
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        let mut start = 0;
        let mut close = false;
        loop {
            if skip > 0 {
                let take = skip.min((buf.len() - start) as u64);
                skip -= take;
                start += take as usize;
                if skip > 0 {
                    break;
                }
            }
            match parse_head(&buf[start..]) {
                Head::Incomplete => break,
                Head::Complete {
                    len,
                    body,
                    close: c,
                } => {
                    out.extend_from_slice(if c { OK_CLOSE } else { OK });
                    start += len;
                    skip = body;
                    if c {
                        close = true;
                        break;
                    }
                }
                Head::Invalid(_) => {
                    out.extend_from_slice(BAD);
                    close = true;
                    break;
                }
            }
        }
        buf.drain(..start);
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if close {
            return stream.shutdown().await;
        }
    }
}

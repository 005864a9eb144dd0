//! One simulated request through a route's filter chain, calling [`HttpFilters`] the way
//! the proxy's phases do (`gateway/src/proxy/filters.rs`, `proxy/mod.rs`): request
//! headers, response headers, each response-body chunk, the log phase, drop. What is
//! skipped for an empty chain is skipped here too, so "no filter" is the proxy's own
//! cost of a route without filters plus building the messages.

use std::sync::Arc;

use aistack_gateway::wasm::{Decision, FilterInstance, HttpFilters, PluginFault, RequestInfo};
use anyhow::{Result, bail, ensure};
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};

/// The path of every simulated request.
pub const PATH: &str = "/v1/chat/completions";
/// The request id the core would have assigned.
pub const REQUEST_ID: &str = "0195e6c2-7c1a-7d3e-9b4f-3f1d2a6c8e01";

/// What every simulated request carries: the same request headers a client sends, and
/// the same upstream response, its body split into chunks.
#[derive(Debug)]
pub struct Fixture {
    route: Arc<str>,
    /// The whole response body.
    pub body: Bytes,
    chunks: Vec<Bytes>,
}

impl Fixture {
    /// A `body_bytes`-byte lower-case ASCII body in `chunks` near-equal chunks.
    ///
    /// # Errors
    /// When `chunks` is 0 or exceeds the body's size (an empty body is one empty chunk).
    pub fn new(body_bytes: usize, chunks: usize) -> Result<Self> {
        ensure!(
            (1..=body_bytes.max(1)).contains(&chunks),
            "--body-chunks must be 1–{}",
            body_bytes.max(1)
        );
        let text = b"the quick brown fox jumps over the lazy dog. ";
        let body = Bytes::from(
            text.iter()
                .copied()
                .cycle()
                .take(body_bytes)
                .collect::<Vec<_>>(),
        );
        let chunks = (0..chunks)
            .map(|i| body.slice(i * body_bytes / chunks..(i + 1) * body_bytes / chunks))
            .collect();
        Ok(Fixture {
            route: Arc::from("bench"),
            body,
            chunks,
        })
    }

    /// How many chunks the body arrives in.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    fn request(&self) -> Result<RequestHeader> {
        let mut req = RequestHeader::build("GET", PATH.as_bytes(), Some(6))?;
        req.insert_header("host", "api.example.com")?;
        req.insert_header("user-agent", "bench-client/1.0")?;
        req.insert_header("accept", "application/json")?;
        req.insert_header("accept-encoding", "gzip, br")?;
        req.insert_header("authorization", "Bearer 3q2+7w==")?;
        req.insert_header("x-request-id", REQUEST_ID)?;
        Ok(req)
    }

    fn response(&self) -> Result<ResponseHeader> {
        let mut resp = ResponseHeader::build(200, Some(3))?;
        resp.insert_header("content-type", "text/plain")?;
        resp.insert_header("content-length", self.body.len())?;
        resp.insert_header("server", "bench-upstream")?;
        Ok(resp)
    }
}

/// What one simulated request left: the request as it went upstream, the response and
/// body as they went to the client.
#[derive(Debug)]
pub struct Exchange {
    pub request: RequestHeader,
    pub response: ResponseHeader,
    pub body: Vec<u8>,
}

/// Runs one request through `chain`. Every phase must answer `Continue` (a body filter may
/// pause until the end of the stream): the benchmark filters never answer locally, so
/// anything else is an error.
pub async fn exchange(chain: &[Arc<FilterInstance>], fixture: &Fixture) -> Result<Exchange> {
    let mut info = RequestInfo::new(REQUEST_ID, Arc::clone(&fixture.route));
    let mut filters = HttpFilters::new(chain);
    let mut request = fixture.request()?;
    if !filters.is_empty() {
        let decision = filters.request_headers(&mut request, &info, true).await;
        continued("request headers", decision)?;
    }
    let mut response = fixture.response()?;
    if !filters.is_empty() {
        info.response_code = Some(response.status.as_u16());
        if filters.wants_response_body() {
            response.remove_header("content-length");
        }
        let decision = filters.response_headers(&mut response, &info, false).await;
        continued("response headers", decision)?;
    }
    let mut body = Vec::with_capacity(fixture.body.len());
    let last = fixture.chunks.len() - 1;
    for (i, chunk) in fixture.chunks.iter().enumerate() {
        let mut chunk = Some(chunk.clone());
        if filters.wants_response_body() {
            match filters.response_body(&mut chunk, i == last, &info) {
                Ok(Decision::Pause) if i < last => {}
                decision => continued("response body", decision)?,
            }
        }
        body.extend_from_slice(chunk.as_deref().unwrap_or_default());
    }
    if !filters.is_empty() {
        filters.on_log(&info);
    }
    drop(filters);
    Ok(Exchange {
        request,
        response,
        body,
    })
}

fn continued(phase: &str, decision: Result<Decision, PluginFault>) -> Result<()> {
    match decision {
        Ok(Decision::Continue) => Ok(()),
        Ok(other) => bail!("{phase}: expected Continue, got {other:?}"),
        Err(fault) => bail!("{phase}: {fault}"),
    }
}

/// A header's value as text, `None` when absent or not UTF-8.
pub fn header<'a>(map: &'a pingora::http::HMap, name: &str) -> Option<&'a str> {
    map.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_splits_into_the_chunks_asked_for() {
        let f = Fixture::new(1024, 2).expect("fixture");
        assert_eq!(f.chunk_count(), 2);
        assert_eq!(f.chunks.concat(), f.body.to_vec());
        assert_eq!(Fixture::new(1000, 3).expect("fixture").chunk_count(), 3);
        let odd = Fixture::new(5, 4).expect("fixture");
        assert!(odd.chunk_count() == 4 && odd.chunks.iter().all(|c| !c.is_empty()));
        assert_eq!(Fixture::new(0, 1).expect("fixture").chunk_count(), 1);
        assert!(Fixture::new(4, 5).is_err() && Fixture::new(4, 0).is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_empty_chain_passes_everything_through() {
        let f = Fixture::new(100, 3).expect("fixture");
        let x = exchange(&[], &f).await.expect("exchange");
        assert_eq!(x.body, f.body.to_vec());
        assert_eq!(header(&x.response.headers, "content-length"), Some("100"));
        assert_eq!(x.request.uri.path(), PATH);
    }
}

//! HTTP callouts (`proxy_http_call`): the upstreams a filter may call ([`CalloutUpstreams`],
//! named as in the config), a dispatched call ([`CalloutRequest`]) and how it is performed
//! ([`perform`]: HTTP/1.1 through Pingora's connector, one pool per worker thread, the
//! call's timeout covering connect to last body byte).
//!
//! A call never fails the guest: a refused connection, a timeout or an oversized answer is
//! delivered as Envoy delivers a failure — `proxy_on_http_call_response` with no headers,
//! no body and no trailers.
//!
//! The calls of asynchronous foreign functions ([`super::foreign`]) travel the same way: a
//! [`CalloutRequest`] whose [`Work`] is the function's future, performed beside the HTTP
//! calls (same queue, same limits, same delivery to the context that called), answered
//! with `proxy_on_foreign_function`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;

use super::foreign::{
    ANSWER_FAILED, ANSWER_OK, ANSWER_TIMED_OUT, ForeignError, ForeignFunctions, ForeignFuture,
    MAX_ASYNC_CALL,
};

/// Largest callout response body accepted (a larger one is a failed call).
pub const MAX_CALLOUT_BODY_BYTES: usize = 4 * 1024 * 1024;

/// One upstream a filter may call: its targets, taken round robin.
#[derive(Debug)]
struct CalloutUpstream {
    targets: Vec<SocketAddr>,
    connect_timeout: Duration,
    next: AtomicUsize,
    /// Spoken to over TLS by the proxy; callouts (plaintext) refuse it.
    tls: bool,
}

/// The upstreams of the config, by name, as HTTP callouts see them. Built with the
/// snapshot; a filter keeps the one it was configured with.
#[derive(Debug, Default)]
pub struct CalloutUpstreams {
    by_name: HashMap<String, CalloutUpstream>,
}

impl CalloutUpstreams {
    /// A directory of `(name, targets, connect timeout)`.
    pub fn new(upstreams: impl IntoIterator<Item = (String, Vec<SocketAddr>, Duration)>) -> Self {
        let by_name = upstreams
            .into_iter()
            .map(|(name, targets, connect_timeout)| {
                let upstream = CalloutUpstream {
                    targets,
                    connect_timeout,
                    next: AtomicUsize::new(0),
                    tls: false,
                };
                (name, upstream)
            })
            .collect();
        CalloutUpstreams { by_name }
    }

    /// The config's upstreams (every resolved address of every target). Callouts speak
    /// plaintext HTTP: an upstream spoken to over TLS is listed (a filter may choose it
    /// with `aistack.upstream`) but [`pick`](Self::pick) refuses it, so a filter's
    /// request (credentials included) never goes in clear to a TLS port.
    pub fn from_config(config: &crate::config::GatewayConfig) -> Arc<Self> {
        let mut directory = Self::new(config.upstreams.iter().map(|u| {
            let targets = u.targets.iter().flat_map(|t| t.resolved.clone()).collect();
            (u.name.clone(), targets, u.connect_timeout)
        }));
        for upstream in config.upstreams.iter().filter(|u| u.tls.is_some()) {
            if let Some(entry) = directory.by_name.get_mut(&upstream.name) {
                entry.tls = true;
            }
        }
        Arc::new(directory)
    }

    /// Whether `name` is an upstream spoken to over TLS (callouts cannot reach it yet).
    pub(crate) fn is_tls(&self, name: &str) -> bool {
        self.by_name.get(name).is_some_and(|u| u.tls)
    }

    /// Whether a callout may name `name`: an upstream of that name with a target.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name
            .get(name)
            .is_some_and(|u| !u.targets.is_empty())
    }

    /// The next target of `name` and its connect timeout; `None` for an unknown name or
    /// an upstream without targets.
    pub(crate) fn pick(&self, name: &str) -> Option<(SocketAddr, Duration)> {
        let upstream = self.by_name.get(name)?;
        if upstream.targets.is_empty() || upstream.tls {
            return None;
        }
        let i = upstream.next.fetch_add(1, Ordering::Relaxed) % upstream.targets.len();
        Some((upstream.targets[i], upstream.connect_timeout))
    }
}

/// A call a guest dispatched, waiting to be performed.
#[derive(Debug)]
pub(crate) struct CalloutRequest {
    /// The context that dispatched it (receives `proxy_on_http_call_response` or
    /// `proxy_on_foreign_function`).
    pub(crate) context_id: u32,
    /// The HTTP call's token, or the foreign call's id (unique per VM, one sequence).
    pub(crate) token: u32,
    pub(crate) work: Work,
}

/// What a dispatched call does.
#[derive(Debug)]
pub(crate) enum Work {
    Http(HttpCall),
    Foreign(ForeignCall),
}

/// An HTTP callout. Pseudo-headers have been checked (`:method`, `:path`, `:authority`
/// present) and taken out of `headers`.
#[derive(Debug)]
pub(crate) struct HttpCall {
    pub(crate) target: SocketAddr,
    pub(crate) connect_timeout: Duration,
    pub(crate) method: http::Method,
    pub(crate) path: Vec<u8>,
    pub(crate) authority: Vec<u8>,
    pub(crate) headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub(crate) body: Bytes,
    pub(crate) timeout: Duration,
}

/// An asynchronous foreign function's work.
pub(crate) struct ForeignCall {
    /// The function's name (metrics, logs).
    pub(crate) function: Arc<str>,
    /// In a mutex only so that a request's state stays `Sync` (Pingora's contexts must
    /// be); it is taken once, unlocked, by whoever performs the call.
    pub(crate) work: std::sync::Mutex<ForeignFuture>,
    /// Where the call is counted.
    pub(crate) registry: Arc<ForeignFunctions>,
}

impl std::fmt::Debug for ForeignCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForeignCall")
            .field("function", &self.function)
            .finish_non_exhaustive()
    }
}

/// What a performed call brought back.
#[derive(Debug)]
pub(crate) enum CallAnswer {
    Http(CalloutResponse),
    /// A foreign call's `CallData`: status byte, then payload (see [`super::foreign`]).
    Foreign {
        function: Arc<str>,
        data: Vec<u8>,
    },
}

/// What an HTTP call brought back: `headers` (`:status` first) empty when it failed.
#[derive(Debug, Default, Clone)]
pub(crate) struct CalloutResponse {
    pub(crate) headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) body: Bytes,
    pub(crate) trailers: Vec<(Vec<u8>, Vec<u8>)>,
}

thread_local! {
    /// One connection pool per worker thread: a pooled connection belongs to the runtime
    /// (the thread) whose reactor registered it.
    static CONNECTOR: Arc<Connector> = Arc::new(Connector::new(None));
}

/// Performs the call: an HTTP call (see [`perform_http`]) or a foreign function's work
/// (see [`perform_foreign`]).
pub(crate) async fn perform(request: CalloutRequest) -> CallAnswer {
    match request.work {
        Work::Http(call) => CallAnswer::Http(perform_http(call).await),
        Work::Foreign(call) => perform_foreign(call).await,
    }
}

/// Aborts the task when dropped: a foreign call's work stops with the request that waits
/// for it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a foreign function's work as its own task (a panic in it fails the call, not the
/// request), bounded by [`MAX_ASYNC_CALL`], and counts the outcome.
async fn perform_foreign(call: ForeignCall) -> CallAnswer {
    let ForeignCall {
        function,
        work,
        registry,
    } = call;
    let work = work
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut task = AbortOnDrop(tokio::spawn(work));
    let (outcome, data) = match tokio::time::timeout(MAX_ASYNC_CALL, &mut task.0).await {
        Ok(Ok(Ok(result))) => ("ok", framed(ANSWER_OK, &result)),
        Ok(Ok(Err(ForeignError::BadArgument(why) | ForeignError::Failed(why)))) => {
            ("failed", framed(ANSWER_FAILED, why.as_bytes()))
        }
        Ok(Err(_)) => {
            tracing::warn!(function = &*function, "foreign function panicked");
            ("failed", framed(ANSWER_FAILED, b"the function panicked"))
        }
        Err(_) => ("timed_out", vec![ANSWER_TIMED_OUT]),
    };
    registry.count(&function, outcome);
    CallAnswer::Foreign { function, data }
}

fn framed(status: u8, payload: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(payload.len() + 1);
    data.push(status);
    data.extend_from_slice(payload);
    data
}

/// Performs an HTTP call; a failure (connect, timeout, protocol, oversized body) is logged
/// and returned as the empty response.
async fn perform_http(request: HttpCall) -> CalloutResponse {
    let target = request.target;
    let timeout = request.timeout;
    match tokio::time::timeout(timeout, exchange(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            tracing::warn!(%target, "HTTP callout failed: {error}");
            CalloutResponse::default()
        }
        Err(_) => {
            tracing::warn!(%target, "HTTP callout timed out after {} ms", timeout.as_millis());
            CalloutResponse::default()
        }
    }
}

async fn exchange(request: HttpCall) -> Result<CalloutResponse, String> {
    let connector = CONNECTOR.with(Arc::clone);
    let mut peer = HttpPeer::new(request.target, false, String::new());
    peer.options.connection_timeout = Some(request.connect_timeout.min(request.timeout));
    peer.options.read_timeout = Some(request.timeout);
    peer.options.write_timeout = Some(request.timeout);
    let (mut session, _) = connector
        .get_http_session(&peer)
        .await
        .map_err(|e| e.to_string())?;
    let mut header =
        RequestHeader::build(request.method, &request.path, None).map_err(|e| e.to_string())?;
    header
        .insert_header(http::header::HOST, request.authority.as_slice())
        .map_err(|e| e.to_string())?;
    for (name, value) in request.headers {
        header
            .append_header(name, value)
            .map_err(|e| e.to_string())?;
    }
    header
        .insert_header(http::header::CONTENT_LENGTH, request.body.len())
        .map_err(|e| e.to_string())?;
    session
        .write_request_header(Box::new(header))
        .await
        .map_err(|e| e.to_string())?;
    if !request.body.is_empty() {
        session
            .write_request_body(request.body, true)
            .await
            .map_err(|e| e.to_string())?;
    }
    session
        .finish_request_body()
        .await
        .map_err(|e| e.to_string())?;
    session
        .read_response_header()
        .await
        .map_err(|e| e.to_string())?;
    let mut headers = Vec::new();
    if let Some(resp) = session.response_header() {
        headers.push((
            b":status".to_vec(),
            resp.status.as_str().as_bytes().to_vec(),
        ));
        for (name, value) in &resp.headers {
            headers.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = session
        .read_response_body()
        .await
        .map_err(|e| e.to_string())?
    {
        if body.len() + chunk.len() > MAX_CALLOUT_BODY_BYTES {
            return Err(format!(
                "the response body exceeds {MAX_CALLOUT_BODY_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    connector
        .release_http_session(session, &peer, Some(Duration::from_secs(60)))
        .await;
    Ok(CalloutResponse {
        headers,
        body: body.freeze(),
        trailers: Vec::new(),
    })
}

//! `tracing`: a Proxy-Wasm HTTP filter for W3C Trace Context and OTLP span export.
//!
//! On request headers it reads the client's `traceparent` (version 00, or a later version
//! read as 00; invalid or absent: a new trace, and any `tracestate` is dropped with it),
//! gives the gateway's SERVER span a new span id from the host's randomness, decides
//! sampling (`sample_ratio` for new traces, the parent's `sampled` flag otherwise) and
//! sends the upstream `traceparent: 00-<trace>-<gateway span>-<flags>`; `tracestate`
//! passes through untouched. In `on_log` a sampled request's span is queued in the VM
//! (bounded: past `max_queue_size` it is dropped and counted). The root context exports
//! the queue from `on_tick`, `max_batch_size` spans per `POST` (or what is there once the
//! oldest waited `flush_interval`), as OTLP/HTTP protobuf (or JSON, `encoding: json`)
//! through an HTTP callout to the collector upstream. A failing collector costs spans (counted), never requests.
//!
//! Start at [`TracingRoot::on_configure`] (config: `config.rs`), then
//! [`Tracing::on_http_request_headers`] and [`Exporter`].

mod config;
mod context;
mod otlp;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};

use crate::config::Config;
use crate::context::{Parent, SpanId, TraceId};
use crate::otlp::{AttrValue, Span};

/// The root context checks the queue at least this often.
const CHECK_TICK: Duration = Duration::from_millis(100);
/// Export calls one VM may have in flight; more waits (and the queue bounds the wait).
const MAX_IN_FLIGHT: usize = 4;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(TracingRoot { config: None, exporter: None }));
}}

/// Counters exported as `aistack_plugin_tracing_*` (absent on a host without metrics).
#[derive(Default, Clone, Copy)]
struct Metrics {
    exported: Option<u32>,
    dropped_queue_full: Option<u32>,
    dropped_export_failed: Option<u32>,
}

impl Metrics {
    fn define() -> Self {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        Metrics {
            exported: counter("tracing_spans_exported"),
            dropped_queue_full: counter("tracing_spans_dropped;reason=queue_full"),
            dropped_export_failed: counter("tracing_spans_dropped;reason=export_failed"),
        }
    }
}

fn count(metric: Option<u32>, n: usize) {
    if let (Some(id), Ok(n)) = (metric, i64::try_from(n)) {
        if n > 0 {
            let _ = hostcalls::increment_metric(id, n);
        }
    }
}

/// The VM's span queue, shared by the root context (which exports) and the HTTP
/// contexts (which finish spans).
struct Exporter {
    config: Rc<Config>,
    queue: VecDeque<Span>,
    /// When the oldest span now queued was queued.
    oldest: Option<SystemTime>,
    /// Export calls in flight: token → spans in the batch.
    in_flight: Vec<(u32, usize)>,
    metrics: Metrics,
    /// The last export failed (logged once per run of failures).
    failing: bool,
}

impl Exporter {
    fn push(&mut self, span: Span, now: SystemTime) {
        if self.queue.len() >= self.config.max_queue_size {
            count(self.metrics.dropped_queue_full, 1);
            return;
        }
        if self.queue.is_empty() {
            self.oldest = Some(now);
        }
        self.queue.push_back(span);
    }

    /// The next batch due for export: a full one, or whatever is queued once the oldest
    /// span waited `flush_interval`.
    fn take_due(&mut self, now: SystemTime) -> Option<Vec<Span>> {
        if self.queue.is_empty() || self.in_flight.len() >= MAX_IN_FLIGHT {
            return None;
        }
        let full = self.queue.len() >= self.config.max_batch_size;
        let waited = self
            .oldest
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|d| d >= self.config.flush_interval);
        if !full && !waited {
            return None;
        }
        let n = self.queue.len().min(self.config.max_batch_size);
        let batch: Vec<Span> = self.queue.drain(..n).collect();
        self.oldest = (!self.queue.is_empty()).then_some(now);
        Some(batch)
    }

    fn failed(&mut self, spans: usize, why: &str) {
        count(self.metrics.dropped_export_failed, spans);
        if !self.failing {
            log(
                LogLevel::Warn,
                &format!(
                    "tracing: exporting {spans} spans to upstream {:?} failed: {why} (further failures are counted, not logged)",
                    self.config.collector.upstream
                ),
            );
        }
        self.failing = true;
    }
}

type Shared = Rc<RefCell<Exporter>>;

struct TracingRoot {
    config: Option<Rc<Config>>,
    exporter: Option<Shared>,
}

impl Context for TracingRoot {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _: usize) {
        let Some(exporter) = &self.exporter else {
            return;
        };
        let status = self.get_http_call_response_header(":status");
        let content_type = self.get_http_call_response_header("content-type");
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let mut e = exporter.borrow_mut();
        let Some(i) = e.in_flight.iter().position(|(t, _)| *t == token) else {
            return;
        };
        let (_, spans) = e.in_flight.swap_remove(i);
        match status.as_deref() {
            Some(s) if s.starts_with('2') => {
                let rejected =
                    usize::try_from(otlp::rejected_spans(content_type.as_deref(), &body))
                        .unwrap_or(spans);
                let rejected = rejected.min(spans);
                count(e.metrics.exported, spans - rejected);
                count(e.metrics.dropped_export_failed, rejected);
                e.failing = false;
            }
            Some(other) => e.failed(spans, &format!("the collector answered {other}")),
            None => e.failed(spans, "no answer (connection failed or timed out)"),
        }
    }
}

impl RootContext for TracingRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let config = match config::parse(&bytes).and_then(check_upstream) {
            Ok(config) => Rc::new(config),
            Err(message) => {
                log(LogLevel::Error, &format!("tracing: {message}"));
                return false;
            }
        };
        self.set_tick_period(config.flush_interval.min(CHECK_TICK));
        self.exporter = Some(Rc::new(RefCell::new(Exporter {
            config: Rc::clone(&config),
            queue: VecDeque::new(),
            oldest: None,
            in_flight: Vec::new(),
            metrics: Metrics::define(),
            failing: false,
        })));
        self.config = Some(config);
        true
    }

    fn on_tick(&mut self) {
        let Some(exporter) = &self.exporter else {
            return;
        };
        let now = self.get_current_time();
        loop {
            let mut e = exporter.borrow_mut();
            let Some(batch) = e.take_due(now) else { return };
            let config = Rc::clone(&e.config);
            let c = &config.collector;
            let body = config.encoding.export_request(&config.service_name, &batch);
            let headers = vec![
                (":method", "POST"),
                (":path", c.path.as_str()),
                (":authority", c.authority.as_str()),
                ("content-type", config.encoding.content_type()),
            ];
            match self.dispatch_http_call(&c.upstream, headers, Some(&body), vec![], c.timeout) {
                Ok(token) => e.in_flight.push((token, batch.len())),
                Err(status) => {
                    e.failed(
                        batch.len(),
                        &format!("the callout was refused ({status:?})"),
                    );
                    return;
                }
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Tracing {
            config: Rc::clone(self.config.as_ref()?),
            exporter: Rc::clone(self.exporter.as_ref()?),
            span: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Refuses a collector upstream the gateway does not have, when the host can tell
/// (the `aistack.upstream_exists` foreign function; another host cannot, and the first
/// export would fail instead).
fn check_upstream(config: Config) -> Result<Config, String> {
    let name = config.collector.upstream.as_bytes();
    match hostcalls::call_foreign_function("aistack.upstream_exists", Some(name)) {
        Ok(Some(answer)) if answer.as_slice() == [0] => Err(format!(
            "invalid configuration: collector.upstream: no upstream named {:?} in the gateway's config",
            config.collector.upstream
        )),
        _ => Ok(config),
    }
}

/// The request's span while it is open.
struct OpenSpan {
    trace_id: TraceId,
    span_id: SpanId,
    parent: Option<SpanId>,
    trace_state: String,
    start: SystemTime,
    method: String,
    path: String,
    scheme: String,
}

struct Tracing {
    config: Rc<Config>,
    exporter: Shared,
    /// `Some` for a sampled request once its headers were seen.
    span: Option<OpenSpan>,
}

impl Context for Tracing {}

impl HttpContext for Tracing {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        // One lookup in the common case (no `traceparent`); all headers only when there
        // is one to check (a second makes it invalid) and `tracestate`s to join.
        let incoming = self
            .get_http_request_header("traceparent")
            .and_then(|_| incoming_context());
        let (trace_id, sampled, parent_span, trace_state) = match incoming {
            Some((
                Parent {
                    trace_id,
                    span_id,
                    sampled,
                },
                state,
            )) => (trace_id, sampled, Some(span_id), state),
            None => {
                // A new trace: a `tracestate` without its `traceparent` means nothing.
                self.set_http_request_header("tracestate", None);
                let trace_id = random_nonzero::<16>();
                let sampled = context::sample_new(&trace_id, self.config.sample_ratio);
                (trace_id, sampled, None, String::new())
            }
        };
        let span_id = random_nonzero::<8>();
        let value = context::format_traceparent(&trace_id, &span_id, sampled);
        self.set_http_request_header("traceparent", Some(&value));
        if sampled {
            let header = |name: &str| self.get_http_request_header(name).unwrap_or_default();
            let mut path = header(":path");
            if let Some(query) = path.find('?') {
                path.truncate(query);
            }
            self.span = Some(OpenSpan {
                trace_id,
                span_id,
                parent: parent_span,
                trace_state,
                start: self.get_current_time(),
                method: header(":method"),
                path,
                scheme: header(":scheme"),
            });
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let Some(open) = self.span.take() else { return };
        let now = self.get_current_time();
        let status = self
            .get_property(vec!["response", "code"])
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(i64::from_le_bytes);
        let text = |path: Vec<&str>| {
            self.get_property(path)
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default()
        };
        let route = text(vec!["route_name"]);
        let request_id = text(vec!["request", "id"]);
        let mut attributes = vec![
            ("http.request.method", AttrValue::Str(open.method.clone())),
            ("url.path", AttrValue::Str(open.path)),
            ("url.scheme", AttrValue::Str(open.scheme)),
            ("aistack.route", AttrValue::Str(route.clone())),
            ("aistack.request_id", AttrValue::Str(request_id)),
        ];
        if let Some(code) = status {
            attributes.push(("http.response.status_code", AttrValue::Int(code)));
        }
        let span = Span {
            trace_id: open.trace_id,
            span_id: open.span_id,
            parent_span_id: open.parent,
            trace_state: open.trace_state,
            name: if route.is_empty() {
                open.method
            } else {
                [open.method.as_str(), " ", &route].concat()
            },
            start_unix_nanos: unix_nanos(open.start),
            end_unix_nanos: unix_nanos(now),
            attributes,
            error: status.is_some_and(|s| s >= 500),
        };
        self.exporter.borrow_mut().push(span, now);
    }
}

/// The client's trace context: its only `traceparent`, if valid, and its `tracestate`
/// headers joined with `,`. Values are read as bytes: a header that is not UTF-8 makes the
/// context invalid, never the filter fail.
fn incoming_context() -> Option<(Parent, String)> {
    let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).ok()?;
    let mut parents = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("traceparent"));
    // More than one `traceparent` is as good as none.
    let value = match (parents.next(), parents.next()) {
        (Some((_, value)), None) => std::str::from_utf8(value).ok()?,
        _ => return None,
    };
    let parent = context::parse_traceparent(value)?;
    let states: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("tracestate"))
        .map(|(_, v)| std::str::from_utf8(v).ok())
        .collect::<Option<_>>()?;
    Some((parent, states.join(",")))
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Random bytes from the host (WASI `random_get`), never all zero (an all-zero id is
/// invalid). Without randomness, the clock and a counter stand in, so ids still differ.
fn random_nonzero<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if getrandom::fill(&mut bytes).is_err() || bytes == [0; N] {
        thread_local! { static COUNTER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) }; }
        let n = COUNTER.with(|c| {
            c.set(c.get().wrapping_add(1));
            c.get()
        });
        let nanos = hostcalls::get_current_time().map_or(0, unix_nanos);
        let mut x = nanos ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for chunk in bytes.chunks_mut(8) {
            // splitmix64
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let z = z.max(1).to_be_bytes();
            chunk.copy_from_slice(&z[..chunk.len()]);
        }
    }
    bytes
}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

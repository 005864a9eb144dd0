//! The data a VM's `Store` carries: everything a host function may read or write while a
//! guest call runs.
//!
//! The Store's data must be `'static`, yet host functions need the session's Pingora
//! headers and the request's info during the call. Rather than copying them, the VM
//! *swaps* them in for the duration of one guest call (`std::mem::swap` with placeholder
//! values allocated once per VM) and swaps them back afterwards; see [`HttpIo`].

use rustc_hash::{FxHashMap, FxHashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderValue, Method, Uri};
use pingora::http::{RequestHeader, ResponseHeader};
use wasmtime::{Memory, ResourceLimiter, TypedFunc};

use super::callout::{CalloutRequest, CalloutResponse, CalloutUpstreams};
use super::types::{LocalResponse, RequestInfo};

/// Who a VM runs for: fixed for the VM's life. Shared by the [`FilterInstance`] and its
/// VMs, which must not hold the instance itself (a VM outliving its filter is swept).
///
/// [`FilterInstance`]: super::FilterInstance
#[derive(Debug)]
pub(crate) struct PluginIdentity {
    /// The module's name (`plugin_name`), used in errors, logs and metrics.
    pub(crate) name: Arc<str>,
    /// The filter's root id (`plugin_root_id`).
    pub(crate) root_id: Arc<str>,
    /// The plugin configuration (`PLUGIN_CONFIGURATION` buffer, read in `on_configure`).
    pub(crate) configuration: Arc<[u8]>,
    /// The VM configuration (`VM_CONFIGURATION` buffer): empty for now.
    pub(crate) vm_configuration: Arc<[u8]>,
    /// The upstreams `proxy_http_call` may name.
    pub(crate) upstreams: Arc<CalloutUpstreams>,
    /// The filter instance's id (keys the per-thread VM map; names a queue's owner).
    pub(crate) filter_id: u64,
    /// The runtime's plugin metrics (`proxy_define_metric` and friends).
    pub(crate) metrics: Arc<super::metrics::PluginMetrics>,
    /// The named host functions (`proxy_call_foreign_function`).
    pub(crate) foreign: Arc<super::foreign::ForeignFunctions>,
}

/// Which guest callback is running: decides what the host functions may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Phase {
    #[default]
    Idle,
    Initialize,
    VmStart,
    Configure,
    ContextCreate,
    RequestHeaders,
    ResponseHeaders,
    ResponseTrailers,
    Log,
    Done,
    Delete,
    Tick,
    HttpCallResponse,
    ForeignFunction,
    QueueReady,
    RequestBody,
    ResponseBody,
}

/// What the guest asked for during the call, applied by the host once the call returns
/// (as Envoy does: acting inside the call would re-enter the guest).
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    pub(crate) local_response: Option<LocalResponse>,
    pub(crate) continue_request: bool,
    pub(crate) continue_response: bool,
    pub(crate) close_request: bool,
    pub(crate) close_response: bool,
}

/// Per-guest-call bookkeeping, reset at the start of every call.
#[derive(Debug, Default)]
pub(crate) struct CallState {
    pub(crate) phase: Phase,
    /// The context the callback runs for.
    pub(crate) context_id: u32,
    /// `proxy_set_effective_context`'s target (defaults to `context_id`).
    pub(crate) effective_context_id: u32,
    pub(crate) deferred: Deferred,
    /// Set while the host runs the guest's allocator (it must not call back in).
    pub(crate) in_allocator: bool,
    /// The last host function answered `Unimplemented` (explains the trap that follows).
    pub(crate) unimplemented: Option<&'static str>,
    /// The guest's last error/critical log line (the SDK logs its panic message there).
    pub(crate) last_error_log: Option<String>,
    /// Why the host refused the guest's last request (the SDK traps on most refusals).
    pub(crate) host_note: Option<String>,
    /// `proxy_done` was called while the root context was finishing.
    pub(crate) done_called: bool,
}

impl CallState {
    pub(crate) fn begin(&mut self, phase: Phase, context_id: u32) {
        self.phase = phase;
        self.context_id = context_id;
        self.effective_context_id = context_id;
        self.deferred = Deferred::default();
        self.in_allocator = false;
        self.unimplemented = None;
        self.last_error_log = None;
        self.host_note = None;
        self.done_called = false;
    }
}

/// The request's method, URI and authority as they stood after the request-headers phase,
/// so that `request.path` and friends answer in the response and log phases. Cloning
/// these is reference counting, not copying.
#[derive(Debug, Clone)]
pub(crate) struct RequestSnapshot {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) host: Option<HeaderValue>,
}

impl RequestSnapshot {
    pub(crate) fn of(req: &RequestHeader) -> Self {
        RequestSnapshot {
            method: req.method.clone(),
            uri: req.uri.clone(),
            host: req.headers.get(http::header::HOST).cloned(),
        }
    }

    /// The `:authority`: the `host` header, else the URI's authority.
    pub(crate) fn authority(&self) -> Option<&[u8]> {
        authority(self.host.as_ref(), &self.uri)
    }
}

/// The `:authority` of a request: its `host` header, else the URI's authority (HTTP/2).
pub(crate) fn authority<'a>(host: Option<&'a HeaderValue>, uri: &'a Uri) -> Option<&'a [u8]> {
    host.map(HeaderValue::as_bytes)
        .or_else(|| uri.authority().map(|a| a.as_str().as_bytes()))
}

/// A `proxy_set_property` value: serialized path, value.
pub(crate) type Property = (Box<[u8]>, Box<[u8]>);

/// State shared by all filters of one request (owned by `HttpFilters`, swapped into the
/// VM during each call).
#[derive(Debug, Default)]
pub(crate) struct RequestState {
    /// `proxy_set_property` values, by serialized path; read back by later filters.
    pub(crate) properties: Vec<Property>,
    /// Set once the request-headers phase is over.
    pub(crate) snapshot: Option<RequestSnapshot>,
}

/// [`RequestInfo`] copied into reusable storage (the id's `String` keeps its capacity, so
/// filling it allocates only on the first call or for a longer id).
#[derive(Debug)]
pub(crate) struct InfoSlot {
    pub(crate) present: bool,
    pub(crate) request_id: String,
    pub(crate) route_name: Option<Arc<str>>,
    pub(crate) upstream_name: Option<Arc<str>>,
    pub(crate) client_addr: Option<SocketAddr>,
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) server_addr: Option<SocketAddr>,
    pub(crate) start: SystemTime,
    pub(crate) scheme: &'static str,
    pub(crate) protocol: &'static str,
    pub(crate) response_code: Option<u16>,
    pub(crate) request_size: Option<u64>,
    pub(crate) code_details: &'static str,
}

impl Default for InfoSlot {
    fn default() -> Self {
        InfoSlot {
            present: false,
            request_id: String::new(),
            route_name: None,
            upstream_name: None,
            client_addr: None,
            client_ip: None,
            server_addr: None,
            start: SystemTime::UNIX_EPOCH,
            scheme: "http",
            protocol: "HTTP/1.1",
            response_code: None,
            request_size: None,
            code_details: "",
        }
    }
}

impl InfoSlot {
    pub(crate) fn fill(&mut self, info: &RequestInfo) {
        self.present = true;
        self.request_id.clear();
        self.request_id.push_str(&info.request_id);
        if !matches!(&self.route_name, Some(r) if Arc::ptr_eq(r, &info.route_name)) {
            self.route_name = Some(Arc::clone(&info.route_name));
        }
        if !matches!((&self.upstream_name, &info.upstream_name), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
        {
            self.upstream_name.clone_from(&info.upstream_name);
        }
        self.client_addr = info.client_addr;
        self.client_ip = info.client_ip.or(info.client_addr.map(|a| a.ip()));
        self.server_addr = info.server_addr;
        self.start = info.start;
        self.scheme = info.scheme;
        self.protocol = info.protocol;
        self.response_code = info.response_code;
        self.request_size = info.request_size;
        self.code_details = info.code_details;
    }
}

/// The request's data during a guest call. `request`/`response` hold placeholders except
/// while the proxy's headers are swapped in (`*_live`).
pub(crate) struct HttpIo {
    pub(crate) request: RequestHeader,
    pub(crate) request_live: bool,
    pub(crate) response: ResponseHeader,
    pub(crate) response_live: bool,
    pub(crate) info: InfoSlot,
    pub(crate) state: RequestState,
    /// The body buffer of a body callback (`REQUEST_BODY` or `RESPONSE_BODY`), swapped in
    /// like the headers; `body_live` says which one it is.
    pub(crate) body: Vec<u8>,
    pub(crate) body_live: Option<BodyKind>,
}

/// Which body a body callback sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Request,
    Response,
}

impl HttpIo {
    pub(crate) fn new() -> Self {
        HttpIo {
            request: placeholder_request(),
            request_live: false,
            response: placeholder_response(),
            response_live: false,
            info: InfoSlot::default(),
            state: RequestState::default(),
            body: Vec::new(),
            body_live: None,
        }
    }
}

fn placeholder_request() -> RequestHeader {
    // A constant, valid request line: building it cannot fail.
    RequestHeader::build_no_case(Method::GET, b"/", Some(0))
        .unwrap_or_else(|_| RequestHeader::from(http::Request::new(()).into_parts().0))
}

fn placeholder_response() -> ResponseHeader {
    ResponseHeader::build_no_case(http::StatusCode::OK, Some(0))
        .unwrap_or_else(|_| ResponseHeader::from(http::Response::new(()).into_parts().0))
}

/// Enforces the per-VM memory limit and remembers when it refused growth, so that the
/// trap that follows (the guest's allocator aborts) is reported as out-of-memory.
#[derive(Debug)]
pub(crate) struct MemoryLimits {
    pub(crate) max_bytes: usize,
    pub(crate) exceeded: bool,
}

impl ResourceLimiter for MemoryLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_bytes && maximum.is_none_or(|max| desired <= max);
        if !allowed {
            self.exceeded = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}

/// The Store data of one VM.
pub(crate) struct HostState {
    pub(crate) plugin: Arc<PluginIdentity>,
    pub(crate) limits: MemoryLimits,
    /// The guest's exported `memory`, set right after instantiation.
    pub(crate) memory: Option<Memory>,
    /// `proxy_on_memory_allocate` (or `malloc`), set right after instantiation. In an
    /// `Arc`: every host call that returns data clones it out of the Store to call it,
    /// and cloning a `TypedFunc` itself clones its registered type.
    pub(crate) allocator: Option<Arc<TypedFunc<u32, u32>>>,
    pub(crate) root_context_id: u32,
    /// HTTP contexts alive in this VM (targets for `proxy_set_effective_context`).
    pub(crate) http_contexts: FxHashSet<u32>,
    pub(crate) call: CallState,
    pub(crate) http: HttpIo,
    /// Reused buffer for values on their way into guest memory.
    pub(crate) scratch: Vec<u8>,
    /// `proxy_set_tick_period_milliseconds` (`None`: no ticks).
    pub(crate) tick_period: Option<std::time::Duration>,
    /// Calls dispatched and not yet taken by whoever drives them (the request's chain
    /// for HTTP contexts, the thread's tick pump for the root context).
    pub(crate) callouts: Vec<CalloutRequest>,
    /// The last callout token handed out (tokens are unique per VM).
    pub(crate) last_token: u32,
    /// The response being delivered (`proxy_on_http_call_response`).
    pub(crate) call_response: Option<CalloutResponse>,
    /// The answer of an asynchronous foreign call being delivered
    /// (`proxy_on_foreign_function`): the `CALL_DATA` buffer.
    pub(crate) call_data: Option<Vec<u8>>,
    /// Shared queues this VM's root context registered (rebound when a thread adopts it).
    pub(crate) registered_queues: Vec<u32>,
    /// Requests paused with nothing of their own to wait for, by context (see `park`).
    pub(crate) parked: FxHashMap<u32, super::park::Parked>,
    /// The parked request whose data is lent to the running call, if any.
    pub(crate) swapped_in: Option<u32>,
    /// Parked requests the running call switched to (woken when it returns).
    pub(crate) touched: Vec<u32>,
}

impl HostState {
    pub(crate) fn new(plugin: Arc<PluginIdentity>, memory_limit: usize) -> Self {
        HostState {
            plugin,
            limits: MemoryLimits {
                max_bytes: memory_limit,
                exceeded: false,
            },
            memory: None,
            allocator: None,
            root_context_id: 0,
            http_contexts: FxHashSet::default(),
            call: CallState::default(),
            http: HttpIo::new(),
            scratch: Vec::with_capacity(256),
            tick_period: None,
            callouts: Vec::new(),
            last_token: 0,
            call_response: None,
            call_data: None,
            registered_queues: Vec::new(),
            parked: FxHashMap::default(),
            swapped_in: None,
            touched: Vec::new(),
        }
    }

    /// The request of the running call, if it is an HTTP-context call on its own context.
    pub(crate) fn request_info(&self) -> Option<&InfoSlot> {
        self.http.info.present.then_some(&self.http.info)
    }

    /// Whether host calls act on the context the callback runs for (the headers swapped
    /// in belong to that context only).
    pub(crate) fn on_own_context(&self) -> bool {
        let effective = self.call.effective_context_id;
        effective == self.call.context_id || self.swapped_in == Some(effective)
    }
}

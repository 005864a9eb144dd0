//! One VM: a Store, an instance of a filter's module, its root context and its HTTP
//! contexts. Used by one thread at a time (see `registry`); every guest call runs under the
//! per-call epoch deadline, and a trap, deadline or out-of-memory marks the VM failed so
//! that it is replaced.
//!
//! Faults of request phases are returned to the caller (the request answers for them and
//! the proxy counts them); faults no request answers for (the root context's callbacks,
//! `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`) are also counted here, in the
//! runtime's fault counter, before they are returned to be logged.
//!
//! Start: instantiate → `_initialize` (or `_start`) → `proxy_on_context_create(root, 0)`
//! → `proxy_on_vm_start` → `proxy_on_configure`.

use std::mem;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use pingora::http::{RequestHeader, ResponseHeader};
use tokio::sync::oneshot;
use wasmtime::{Instance, Store, TypedFunc, WasmParams, WasmResults};

use super::abi::wasi::ProcExit;
use super::callout::{CallAnswer, CalloutRequest, CalloutResponse};
use super::error::{FaultCounter, FaultKind, PluginFault};
use super::host::{BodyKind, Deferred, HostState, Phase, RequestState};
use super::outcome::{Stream, classify, decide};
use super::park::Parked;
use super::plugin::FilterInstance;
use super::types::{Decision, RequestInfo};

/// The request's data lent to a VM for one guest call.
pub(crate) struct Io<'a> {
    pub(crate) request: Option<&'a mut RequestHeader>,
    pub(crate) response: Option<&'a mut ResponseHeader>,
    pub(crate) info: Option<&'a RequestInfo>,
    pub(crate) state: &'a mut RequestState,
    /// The body a body callback sees and may rewrite (`proxy_set_buffer_bytes`).
    pub(crate) body: Option<(BodyKind, &'a mut Vec<u8>)>,
}

/// The part of a VM other threads may touch: contexts whose request was dropped on
/// another thread, which the VM's own thread finishes on its next call.
#[derive(Debug, Default)]
pub(crate) struct VmShared {
    orphans: Mutex<Vec<u32>>,
    has_orphans: AtomicBool,
}

impl VmShared {
    pub(crate) fn push_orphan(&self, context_id: u32) {
        if let Ok(mut orphans) = self.orphans.lock() {
            orphans.push(context_id);
            self.has_orphans.store(true, Ordering::Release);
        }
    }
}

/// `proxy_on_http_call_response(context, token, headers, body size, trailers)`.
type CallResponseFn = TypedFunc<(u32, u32, u32, u32, u32), ()>;

/// The guest's entry points (all optional but the allocator, checked at load).
struct Exports {
    initialize: Option<TypedFunc<(), ()>>,
    start: Option<TypedFunc<(), ()>>,
    main: Option<TypedFunc<(u32, u32), u32>>,
    context_create: Option<TypedFunc<(u32, u32), ()>>,
    vm_start: Option<TypedFunc<(u32, u32), u32>>,
    configure: Option<TypedFunc<(u32, u32), u32>>,
    request_headers: Option<TypedFunc<(u32, u32, u32), u32>>,
    response_headers: Option<TypedFunc<(u32, u32, u32), u32>>,
    response_trailers: Option<TypedFunc<(u32, u32), u32>>,
    log: Option<TypedFunc<u32, ()>>,
    done: Option<TypedFunc<u32, u32>>,
    delete: Option<TypedFunc<u32, ()>>,
    tick: Option<TypedFunc<u32, ()>>,
    request_body: Option<TypedFunc<(u32, u32, u32), u32>>,
    response_body: Option<TypedFunc<(u32, u32, u32), u32>>,
    http_call_response: Option<CallResponseFn>,
    foreign_function: Option<TypedFunc<(u32, u32, u32), ()>>,
    queue_ready: Option<TypedFunc<(u32, u32), ()>>,
}

impl Exports {
    fn of(instance: &Instance, store: &mut Store<HostState>) -> Self {
        fn get<P: WasmParams, R: WasmResults>(
            instance: &Instance,
            store: &mut Store<HostState>,
            name: &str,
        ) -> Option<TypedFunc<P, R>> {
            instance.get_typed_func(&mut *store, name).ok()
        }
        Exports {
            initialize: get(instance, store, "_initialize"),
            start: get(instance, store, "_start"),
            main: get(instance, store, "main"),
            context_create: get(instance, store, "proxy_on_context_create"),
            vm_start: get(instance, store, "proxy_on_vm_start"),
            configure: get(instance, store, "proxy_on_configure"),
            request_headers: get(instance, store, "proxy_on_request_headers"),
            response_headers: get(instance, store, "proxy_on_response_headers"),
            response_trailers: get(instance, store, "proxy_on_response_trailers"),
            log: get(instance, store, "proxy_on_log"),
            done: get(instance, store, "proxy_on_done"),
            delete: get(instance, store, "proxy_on_delete"),
            tick: get(instance, store, "proxy_on_tick"),
            request_body: get(instance, store, "proxy_on_request_body"),
            response_body: get(instance, store, "proxy_on_response_body"),
            http_call_response: get(instance, store, "proxy_on_http_call_response"),
            foreign_function: get(instance, store, "proxy_on_foreign_function"),
            queue_ready: get(instance, store, "proxy_on_queue_ready"),
        }
    }
}

/// Why a VM did not start, and at which step (a configuration refusal is a config error).
#[derive(Debug)]
pub(crate) struct StartError {
    pub(crate) configuring: bool,
    pub(crate) fault: PluginFault,
}

/// A running VM of one filter, used by one thread at a time.
pub(crate) struct Vm {
    store: Store<HostState>,
    /// Shared so a call can borrow a function while the Store is borrowed mutably
    /// (cloning a `TypedFunc` clones its registered type: measurable per call).
    exports: Arc<Exports>,
    shared: Arc<VmShared>,
    deadline: Duration,
    call_ticks: u64,
    failed: bool,
    faults: FaultCounter,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// Context ids are unique per process; 0 means "no parent" and is never handed out.
fn next_context_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    loop {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        if id != 0 {
            return id;
        }
    }
}

impl Vm {
    /// Instantiates `filter`'s module and runs it up to `proxy_on_configure`.
    pub(crate) fn start(filter: &FilterInstance) -> Result<Vm, StartError> {
        let runtime = &filter.module.runtime;
        filter.stats.vm_starts.fetch_add(1, Ordering::Relaxed);
        let host = HostState::new(
            Arc::clone(&filter.identity),
            runtime.options.memory_limit_bytes,
        );
        let mut store = Store::new(&runtime.engine, host);
        store.limiter(|host| &mut host.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(runtime.start_ticks);
        let instance = match filter.module.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(error) => {
                let plugin = &filter.identity.name;
                let (kind, message) = classify(&error, store.data(), runtime.options.call_deadline);
                let message = format!("instantiation failed: {message}");
                return Err(StartError {
                    configuring: false,
                    fault: PluginFault::new(plugin, kind, message),
                });
            }
        };
        let memory = instance.get_memory(&mut store, "memory");
        store.data_mut().memory = memory;
        let allocator = instance
            .get_typed_func(&mut store, "proxy_on_memory_allocate")
            .or_else(|_| instance.get_typed_func(&mut store, "malloc"))
            .ok()
            .map(Arc::new);
        store.data_mut().allocator = allocator;
        let exports = Arc::new(Exports::of(&instance, &mut store));
        let mut vm = Vm {
            store,
            exports,
            shared: Arc::new(VmShared::default()),
            deadline: runtime.options.call_deadline,
            call_ticks: runtime.call_ticks,
            failed: false,
            faults: runtime.faults.clone(),
        };
        vm.boot(runtime.start_ticks)?;
        Ok(vm)
    }

    fn boot(&mut self, ticks: u64) -> Result<(), StartError> {
        let fail = |fault| StartError {
            configuring: false,
            fault,
        };
        self.initialize(ticks).map_err(fail)?;
        let root = next_context_id();
        self.store.data_mut().root_context_id = root;
        if let Some(create) = self.exports.context_create.clone() {
            self.call(Phase::ContextCreate, root, &create, (root, 0), ticks)
                .map_err(fail)?;
        }
        let vm_config = len32(self.store.data().plugin.vm_configuration.len());
        if let Some(vm_start) = self.exports.vm_start.clone() {
            let ok = self.call(Phase::VmStart, root, &vm_start, (root, vm_config), ticks);
            self.refused_if_false(ok, "proxy_on_vm_start")
                .map_err(fail)?;
        }
        let config = len32(self.store.data().plugin.configuration.len());
        if let Some(configure) = self.exports.configure.clone() {
            let ok = self.call(Phase::Configure, root, &configure, (root, config), ticks);
            self.refused_if_false(ok, "proxy_on_configure")
                .map_err(|fault| StartError {
                    configuring: true,
                    fault,
                })?;
        }
        Ok(())
    }

    /// `_initialize` (then `main`, if exported too), else `_start`; a `proc_exit(0)` at the
    /// end of either is a normal return.
    fn initialize(&mut self, ticks: u64) -> Result<(), PluginFault> {
        let entry = self
            .exports
            .initialize
            .clone()
            .or_else(|| self.exports.start.clone());
        if let Some(entry) = entry {
            match self.call_raw(Phase::Initialize, 0, &entry, (), ticks) {
                Ok(()) => {}
                Err(e) if matches!(e.downcast_ref::<ProcExit>(), Some(ProcExit(0))) => {}
                Err(e) => return Err(self.fault(e)),
            }
        }
        if let (Some(_), Some(main)) = (&self.exports.initialize, self.exports.main.clone()) {
            self.call(Phase::Initialize, 0, &main, (0, 0), ticks)?;
        }
        Ok(())
    }

    /// A lifecycle callback answered false: the plugin refused to start.
    fn refused_if_false(
        &mut self,
        ok: Result<u32, PluginFault>,
        callback: &str,
    ) -> Result<(), PluginFault> {
        if ok? != 0 {
            return Ok(());
        }
        self.failed = true;
        let logged = self.store.data_mut().call.last_error_log.take();
        let message = logged.unwrap_or_else(|| format!("{callback} returned false"));
        Err(PluginFault::new(
            &self.store.data().plugin.name,
            FaultKind::Abi,
            message,
        ))
    }

    #[cfg(test)]
    pub(crate) fn live_contexts(&self) -> usize {
        self.store.data().http_contexts.len()
    }

    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    pub(crate) fn shared(&self) -> &Arc<VmShared> {
        &self.shared
    }

    /// Whether `vm` (a handle kept by a request) designates this VM.
    pub(crate) fn is(&self, vm: &Weak<VmShared>) -> bool {
        std::ptr::eq(Weak::as_ptr(vm), Arc::as_ptr(&self.shared))
    }

    /// Calls a guest function under the deadline; a failure marks the VM failed.
    fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        phase: Phase,
        context: u32,
        func: &TypedFunc<P, R>,
        params: P,
        ticks: u64,
    ) -> Result<R, PluginFault> {
        self.call_raw(phase, context, func, params, ticks)
            .map_err(|error| self.fault(error))
    }

    fn call_raw<P: WasmParams, R: WasmResults>(
        &mut self,
        phase: Phase,
        context: u32,
        func: &TypedFunc<P, R>,
        params: P,
        ticks: u64,
    ) -> wasmtime::Result<R> {
        let host = self.store.data_mut();
        host.call.begin(phase, context);
        host.limits.exceeded = false;
        self.store.set_epoch_deadline(ticks);
        let result = func.call(&mut self.store, params);
        let host = self.store.data_mut();
        host.settle_parked();
        host.call.phase = Phase::Idle;
        result
    }

    /// Counts the fault of a callback no request answers for; returns `result` as it is.
    fn unanswered<T>(&self, result: Result<T, PluginFault>) -> Result<T, PluginFault> {
        if let Err(fault) = &result {
            self.faults.count(fault);
        }
        result
    }

    fn fault(&mut self, error: wasmtime::Error) -> PluginFault {
        self.failed = true;
        let host = self.store.data();
        let (kind, message) = classify(&error, host, self.deadline);
        PluginFault::new(&host.plugin.name, kind, message)
    }

    /// Runs `func` with the request's data swapped into the Store (and back).
    fn http_call<P: WasmParams, R: WasmResults>(
        &mut self,
        phase: Phase,
        context: u32,
        func: Option<&TypedFunc<P, R>>,
        params: P,
        io: &mut Io<'_>,
    ) -> Result<Option<R>, PluginFault> {
        let Some(func) = func else {
            return Ok(None);
        };
        self.lend(io);
        let result = self.call_raw(phase, context, func, params, self.call_ticks);
        self.lend(io);
        result.map(Some).map_err(|error| self.fault(error))
    }

    /// Swaps the request's headers and state with the Store's slots. Called twice per
    /// guest call: before (the Store gets the request's) and after (they go back).
    fn lend(&mut self, io: &mut Io<'_>) {
        let http = &mut self.store.data_mut().http;
        if let Some(request) = io.request.as_deref_mut() {
            mem::swap(request, &mut http.request);
            http.request_live = !http.request_live;
        }
        if let Some(response) = io.response.as_deref_mut() {
            mem::swap(response, &mut http.response);
            http.response_live = !http.response_live;
        }
        match io.info {
            Some(info) if !http.info.present => http.info.fill(info),
            _ => http.info.present = false,
        }
        if let Some((kind, body)) = io.body.as_mut() {
            mem::swap(*body, &mut http.body);
            http.body_live = match http.body_live {
                None => Some(*kind),
                Some(_) => None,
            };
        }
        mem::swap(io.state, &mut http.state);
    }

    /// Runs a callback that decides (`proxy_on_request_headers` and the like) with the
    /// request's data lent, and maps its action and deferred host calls to a decision.
    fn deciding_call<P: WasmParams>(
        &mut self,
        phase: Phase,
        context: u32,
        func: Option<&TypedFunc<P, u32>>,
        params: P,
        io: &mut Io<'_>,
        stream: Stream,
    ) -> Result<Decision, PluginFault> {
        let action = self.http_call(phase, context, func, params, io)?;
        let deferred = mem::take(&mut self.store.data_mut().call.deferred);
        Ok(decide(action, deferred, stream))
    }

    /// Creates an HTTP context for a request (`proxy_on_context_create(id, root)`).
    pub(crate) fn create_context(&mut self, io: &mut Io<'_>) -> Result<u32, PluginFault> {
        let host = self.store.data_mut();
        let root = host.root_context_id;
        let id = loop {
            let id = next_context_id();
            if id != root && !host.http_contexts.contains(&id) {
                break id;
            }
        };
        host.http_contexts.insert(id);
        let exports = Arc::clone(&self.exports);
        let create = exports.context_create.as_ref();
        self.http_call(Phase::ContextCreate, id, create, (id, root), io)?;
        Ok(id)
    }

    pub(crate) fn request_headers(
        &mut self,
        context: u32,
        io: &mut Io<'_>,
        end_of_stream: bool,
    ) -> Result<Decision, PluginFault> {
        let count = io.request.as_deref().map_or(0, request_header_count);
        let exports = Arc::clone(&self.exports);
        let func = exports.request_headers.as_ref();
        let params = (context, count, u32::from(end_of_stream));
        self.deciding_call(
            Phase::RequestHeaders,
            context,
            func,
            params,
            io,
            Stream::Request,
        )
    }

    pub(crate) fn response_headers(
        &mut self,
        context: u32,
        io: &mut Io<'_>,
        end_of_stream: bool,
    ) -> Result<Decision, PluginFault> {
        let count = io
            .response
            .as_deref()
            .map_or(0, |r| len32(r.headers.len() + 1));
        let exports = Arc::clone(&self.exports);
        let func = exports.response_headers.as_ref();
        let params = (context, count, u32::from(end_of_stream));
        self.deciding_call(
            Phase::ResponseHeaders,
            context,
            func,
            params,
            io,
            Stream::Response,
        )
    }

    /// `proxy_on_response_trailers(context, count)`, with the trailers lent as
    /// `io.response`'s headers (see `HttpFilters::response_trailers`).
    pub(crate) fn response_trailers(
        &mut self,
        context: u32,
        io: &mut Io<'_>,
    ) -> Result<Decision, PluginFault> {
        let count = io.response.as_deref().map_or(0, |r| len32(r.headers.len()));
        let exports = Arc::clone(&self.exports);
        let func = exports.response_trailers.as_ref();
        let params = (context, count);
        self.deciding_call(
            Phase::ResponseTrailers,
            context,
            func,
            params,
            io,
            Stream::Response,
        )
    }

    /// `proxy_on_request_body` / `proxy_on_response_body` with `io.body` as the buffer.
    pub(crate) fn body(
        &mut self,
        context: u32,
        io: &mut Io<'_>,
        end_of_stream: bool,
    ) -> Result<Decision, PluginFault> {
        let Some((kind, body)) = io.body.as_ref() else {
            return Ok(Decision::Continue);
        };
        let (kind, size) = (*kind, len32(body.len()));
        let exports = Arc::clone(&self.exports);
        let (phase, func, stream) = match kind {
            BodyKind::Request => (
                Phase::RequestBody,
                exports.request_body.as_ref(),
                Stream::Request,
            ),
            BodyKind::Response => (
                Phase::ResponseBody,
                exports.response_body.as_ref(),
                Stream::Response,
            ),
        };
        let params = (context, size, u32::from(end_of_stream));
        self.deciding_call(phase, context, func, params, io, stream)
    }

    /// `proxy_on_log`. A fault is counted (no request answers for it).
    pub(crate) fn log(&mut self, context: u32, io: &mut Io<'_>) -> Result<(), PluginFault> {
        let exports = Arc::clone(&self.exports);
        let func = exports.log.as_ref();
        let result = self.http_call(Phase::Log, context, func, context, io);
        self.unanswered(result).map(drop)
    }

    /// `proxy_on_done` then `proxy_on_delete` (Envoy ignores on_done's answer for HTTP
    /// contexts too); the context is gone afterwards, whatever happens. A fault is counted.
    pub(crate) fn finish(&mut self, context: u32, io: &mut Io<'_>) -> Result<(), PluginFault> {
        self.store.data_mut().parked.remove(&context);
        if !self.store.data_mut().http_contexts.remove(&context) {
            return Ok(());
        }
        let exports = Arc::clone(&self.exports);
        let done = exports.done.as_ref();
        let result = self.http_call(Phase::Done, context, done, context, io);
        self.unanswered(result)?;
        let delete = exports.delete.as_ref();
        let result = self.http_call(Phase::Delete, context, delete, context, io);
        self.unanswered(result).map(drop)
    }

    /// Parks `context`'s request: its data (lent from `io`) stays in the VM until
    /// [`unpark`](Self::unpark); `waker` fires when a guest call touches it.
    pub(crate) fn park(&mut self, context: u32, io: &mut Io<'_>, waker: oneshot::Sender<()>) {
        self.lend(io);
        let host = self.store.data_mut();
        let mut parked = Parked::new(waker);
        mem::swap(&mut host.http, &mut parked.io);
        host.parked.insert(context, parked);
    }

    /// Gives a parked request its data back into `io` (shaped as it was for
    /// [`park`](Self::park)) with what was asked for it; `None` if it was not parked here.
    pub(crate) fn unpark(&mut self, context: u32, io: &mut Io<'_>) -> Option<Deferred> {
        let host = self.store.data_mut();
        let mut parked = host.parked.remove(&context)?;
        mem::swap(&mut host.http, &mut parked.io);
        self.lend(io);
        Some(parked.deferred)
    }

    /// The root context's tick period, once it asked for ticks.
    pub(crate) fn tick_period(&self) -> Option<Duration> {
        self.store.data().tick_period
    }

    /// `proxy_on_tick` on the root context. A fault is counted.
    pub(crate) fn tick(&mut self) -> Result<(), PluginFault> {
        let root = self.store.data().root_context_id;
        let Some(tick) = self.exports.tick.clone() else {
            return Ok(());
        };
        let result = self.call(Phase::Tick, root, &tick, root, self.call_ticks);
        self.unanswered(result)
    }

    /// `proxy_on_queue_ready(root, token)`, if `root` is still this VM's root context. A
    /// fault is counted.
    pub(crate) fn queue_ready(&mut self, root: u32, token: u32) -> Result<(), PluginFault> {
        let ready = match self.exports.queue_ready.clone() {
            Some(ready) if root == self.store.data().root_context_id => ready,
            _ => return Ok(()),
        };
        let result = self.call(
            Phase::QueueReady,
            root,
            &ready,
            (root, token),
            self.call_ticks,
        );
        self.unanswered(result)
    }

    /// The VM's root context and the shared queues it registered.
    pub(crate) fn registered_queues(&self) -> (u32, &[u32]) {
        let host = self.store.data();
        (host.root_context_id, &host.registered_queues)
    }

    /// Takes the calls `context` dispatched (they are performed by its request's chain).
    pub(crate) fn take_callouts(&mut self, context: u32) -> Vec<CalloutRequest> {
        let queued = &mut self.store.data_mut().callouts;
        if queued.is_empty() {
            return Vec::new();
        }
        let (mine, others) = mem::take(queued)
            .into_iter()
            .partition(|call| call.context_id == context);
        *queued = others;
        mine
    }

    /// Takes the calls no live HTTP context owns (the root context's), for the tick pump.
    pub(crate) fn take_root_callouts(&mut self) -> Vec<CalloutRequest> {
        let host = self.store.data_mut();
        if host.callouts.is_empty() {
            return Vec::new();
        }
        let (http, root) = mem::take(&mut host.callouts)
            .into_iter()
            .partition(|call| host.http_contexts.contains(&call.context_id));
        host.callouts = http;
        root
    }

    /// Delivers a call's answer to the HTTP context that dispatched it
    /// (`proxy_on_http_call_response`, or `proxy_on_foreign_function` with the answer as
    /// `CALL_DATA`, with the request's data lent as for any callback). The decision is
    /// `Pause` unless the callback resumed `stream` or answered.
    pub(crate) fn http_call_response(
        &mut self,
        context: u32,
        token: u32,
        answer: CallAnswer,
        io: &mut Io<'_>,
        stream: Stream,
    ) -> Result<Decision, PluginFault> {
        match answer {
            CallAnswer::Http(response) => {
                let (headers, body, trailers) = call_sizes(&response);
                self.store.data_mut().call_response = Some(response);
                let exports = Arc::clone(&self.exports);
                let func = exports.http_call_response.as_ref();
                let params = (context, token, headers, body, trailers);
                let result = self.http_call(Phase::HttpCallResponse, context, func, params, io);
                self.store.data_mut().call_response = None;
                result?;
            }
            CallAnswer::Foreign { data, .. } => {
                let size = len32(data.len());
                self.store.data_mut().call_data = Some(data);
                let exports = Arc::clone(&self.exports);
                let func = exports.foreign_function.as_ref();
                let params = (context, token, size);
                let result = self.http_call(Phase::ForeignFunction, context, func, params, io);
                self.store.data_mut().call_data = None;
                result?;
            }
        }
        let deferred = mem::take(&mut self.store.data_mut().call.deferred);
        Ok(decide(Some(1), deferred, stream))
    }

    /// Counts a foreign call whose context was gone when its answer arrived.
    pub(crate) fn abandoned(&self, function: &str) {
        self.store
            .data()
            .plugin
            .foreign
            .count(function, "abandoned");
    }

    /// Whether `context` is a live HTTP context of this VM.
    pub(crate) fn has_context(&self, context: u32) -> bool {
        self.store.data().http_contexts.contains(&context)
    }

    /// Delivers a call's answer to an HTTP context that did not wait for it: no request
    /// data is lent (its stream went on), and what the callback asks for is dropped.
    pub(crate) fn detached_call_response(
        &mut self,
        context: u32,
        token: u32,
        response: CallAnswer,
    ) -> Result<(), PluginFault> {
        let mut state = RequestState::default();
        let mut io = Io {
            request: None,
            response: None,
            info: None,
            state: &mut state,
            body: None,
        };
        self.http_call_response(context, token, response, &mut io, Stream::Request)
            .map(drop)
    }

    /// Delivers a call's answer to the root context, if `context` is still this VM's root
    /// (a replaced VM never sees its predecessor's tokens). A fault is counted. A foreign
    /// call here lost its HTTP context before it was performed: it is counted abandoned.
    pub(crate) fn root_call_response(
        &mut self,
        context: u32,
        token: u32,
        response: CallAnswer,
    ) -> Result<(), PluginFault> {
        let response = match response {
            CallAnswer::Http(response) => response,
            CallAnswer::Foreign { function, .. } => {
                self.abandoned(&function);
                return Ok(());
            }
        };
        let root = self.store.data().root_context_id;
        let Some(func) = self.exports.http_call_response.clone() else {
            return Ok(());
        };
        if context != root {
            return Ok(());
        }
        let (headers, body, trailers) = call_sizes(&response);
        self.store.data_mut().call_response = Some(response);
        let params = (root, token, headers, body, trailers);
        let result = self.call(
            Phase::HttpCallResponse,
            root,
            &func,
            params,
            self.call_ticks,
        );
        self.store.data_mut().call_response = None;
        self.unanswered(result)
    }

    /// Finishes the contexts other threads dropped for this VM; stops at the first fault
    /// (counted, and returned to be logged: the VM has failed).
    pub(crate) fn reap_orphans(&mut self) -> Result<(), PluginFault> {
        if !self.shared.has_orphans.swap(false, Ordering::Acquire) {
            return Ok(());
        }
        let orphans = self
            .shared
            .orphans
            .lock()
            .map(|mut o| mem::take(&mut *o))
            .unwrap_or_default();
        let mut state = RequestState::default();
        for context in orphans {
            let mut io = Io {
                request: None,
                response: None,
                info: None,
                state: &mut state,
                body: None,
            };
            self.finish(context, &mut io)?;
        }
        Ok(())
    }

    /// Lets the root context finish before the VM is dropped (its filter is gone). A fault
    /// is counted and returned (to be logged); `proxy_on_delete` is then skipped.
    pub(crate) fn shutdown(&mut self) -> Result<(), PluginFault> {
        if self.failed {
            return Ok(());
        }
        let root = self.store.data().root_context_id;
        if let Some(done) = self.exports.done.clone() {
            let result = self.call(Phase::Done, root, &done, root, self.call_ticks);
            self.unanswered(result)?;
        }
        if let Some(delete) = self.exports.delete.clone() {
            let result = self.call(Phase::Delete, root, &delete, root, self.call_ticks);
            self.unanswered(result)?;
        }
        Ok(())
    }
}

/// Envoy passes the number of header entries, pseudo-headers included.
fn request_header_count(req: &RequestHeader) -> u32 {
    let hosts = req.headers.get_all(http::header::HOST).iter().count();
    len32(req.headers.len() - hosts + 4)
}

/// `proxy_on_http_call_response`'s counts: headers, body bytes, trailers.
fn call_sizes(response: &CalloutResponse) -> (u32, u32, u32) {
    (
        len32(response.headers.len()),
        len32(response.body.len()),
        len32(response.trailers.len()),
    )
}

fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

//! [`HttpFilters`]: the per-request state of one route's filter chain.

use std::sync::{Arc, Weak};

use bytes::Bytes;

use pingora::http::{RequestHeader, ResponseHeader};

use super::callout::{self, CalloutRequest};
use super::error::{FaultKind, PluginFault};
use super::host::{BodyKind, RequestSnapshot, RequestState};
use super::outcome::{self, Stream};
use super::park;
use super::plugin::FilterInstance;
use super::registry;
use super::types::{Decision, RequestInfo};
use super::vm::{Io, Vm, VmShared};

/// The per-request state of one route's filter chain: which HTTP context each filter has
/// (created lazily, in this thread's VM of the filter), plus the properties filters set
/// for each other. Holds ids and `Arc`s only, so it is `Send` and cheap; an empty chain
/// allocates nothing.
///
/// Call the phases from the thread the request runs on (Pingora with
/// `work_stealing: false`): a context lives in one thread's VM.
#[derive(Debug)]
pub struct HttpFilters {
    slots: Vec<Slot>,
    state: RequestState,
    /// Faults of fail-open filters (`on_error: continue`), skipped, not yet counted.
    skipped: Vec<PluginFault>,
    /// How many filters, from the first, have run their request-headers callback.
    headers_seen: usize,
}

#[derive(Debug)]
struct Slot {
    filter: Arc<FilterInstance>,
    context: Option<ContextRef>,
    finished: bool,
    /// Calls the filter dispatched and the request has not waited for yet.
    callouts: Vec<CalloutRequest>,
    /// The response body the filter holds while it buffers (it paused).
    response_buffer: Option<Vec<u8>>,
    /// The same for a streamed request body.
    request_buffer: Option<Vec<u8>>,
}

/// The headers a paused phase lends to the callbacks that may resume it.
enum Lent<'a> {
    Request(&'a mut RequestHeader),
    Response(&'a mut ResponseHeader),
}

impl Lent<'_> {
    fn stream(&self) -> Stream {
        match self {
            Lent::Request(_) => Stream::Request,
            Lent::Response(_) => Stream::Response,
        }
    }

    /// The lent headers as a callback's `Io` (the same shape every time).
    fn io<'a>(&'a mut self, info: &'a RequestInfo, state: &'a mut RequestState) -> Io<'a> {
        let (request, response) = match self {
            Lent::Request(req) => (Some(&mut **req), None),
            Lent::Response(resp) => (None, Some(&mut **resp)),
        };
        Io {
            request,
            response,
            info: Some(info),
            state,
            body: None,
        }
    }
}

/// An HTTP context: its id and the VM it lives in.
#[derive(Debug)]
struct ContextRef {
    id: u32,
    vm: Weak<VmShared>,
}

impl HttpFilters {
    /// The chain's state for a new request. No guest code runs yet.
    pub fn new(chain: &[Arc<FilterInstance>]) -> Self {
        HttpFilters {
            slots: chain
                .iter()
                .map(|filter| Slot {
                    filter: Arc::clone(filter),
                    context: None,
                    finished: false,
                    callouts: Vec::new(),
                    response_buffer: None,
                    request_buffer: None,
                })
                .collect(),
            state: RequestState::default(),
            skipped: Vec::new(),
            headers_seen: 0,
        }
    }

    /// The faults of fail-open filters since the last call: each such filter was skipped
    /// for the rest of the request and the chain went on. The proxy counts them.
    pub fn take_skipped_faults(&mut self) -> Vec<PluginFault> {
        std::mem::take(&mut self.skipped)
    }

    /// Whether the chain has no filters (every phase is then a no-op `Continue`).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Runs each filter's `proxy_on_request_headers`, in chain order, on `req` (which
    /// filters may edit, pseudo-headers included). Stops at the first decision that is
    /// not `Continue`, and at the first fault (the faulting filter's VM is replaced; the
    /// proxy answers fail-closed unless configured otherwise).
    ///
    /// This does not wait: a filter that paused for an HTTP callout stays paused (see
    /// [`request_headers`](Self::request_headers), which waits).
    pub fn on_request_headers(
        &mut self,
        req: &mut RequestHeader,
        info: &RequestInfo,
        end_of_stream: bool,
    ) -> Result<Decision, PluginFault> {
        self.request_headers_from(0, req, info, end_of_stream).0
    }

    /// Runs the request-headers phase and waits while a filter is paused for HTTP
    /// callouts or asynchronous foreign calls: each call is performed (on this thread),
    /// its answer delivered with `proxy_on_http_call_response` (or
    /// `proxy_on_foreign_function`), and when the filter resumes the request
    /// (`proxy_continue_stream`) the chain goes on with the next filter. A filter paused
    /// with no call to wait for parks the request until another context of its VM resumes
    /// or answers it (see `park`). Returns `Respond` when a filter answers, `Pause` when a
    /// filter with a request-body callback paused for the body that follows, `Continue`
    /// at the chain's end.
    ///
    /// A filter that resumes while other calls of its are still pending does not get
    /// their answers (they are not performed).
    pub async fn request_headers(
        &mut self,
        req: &mut RequestHeader,
        info: &RequestInfo,
        end_of_stream: bool,
    ) -> Result<Decision, PluginFault> {
        self.request_headers_at(0, req, info, end_of_stream).await
    }

    /// [`request_headers`](Self::request_headers) from the filter at `from`. Records how
    /// far the headers got (`headers_seen`): a filter that paused for the body stops
    /// them there, and [`request_body`](Self::request_body) takes them on once that
    /// filter's body callback continues.
    async fn request_headers_at(
        &mut self,
        mut from: usize,
        req: &mut RequestHeader,
        info: &RequestInfo,
        end_of_stream: bool,
    ) -> Result<Decision, PluginFault> {
        loop {
            let (decision, at) = self.request_headers_from(from, req, info, end_of_stream);
            self.headers_seen = at.map_or(self.slots.len(), |at| at + 1);
            let decision = decision?;
            let (Decision::Pause, Some(at)) = (&decision, at) else {
                return Ok(decision);
            };
            // A filter with a request-body callback may pause its headers for the body.
            let may_park = end_of_stream || !self.slots[at].filter.module.body_callbacks.0;
            match self.wait(at, Lent::Request(req), info, may_park).await? {
                Decision::Continue => from = at + 1,
                other => return Ok(other),
            }
        }
    }

    /// [`request_headers`](Self::request_headers) for the response: the filters run in
    /// reverse order, a paused one resumes with `proxy_continue_stream(response)`.
    pub async fn response_headers(
        &mut self,
        resp: &mut ResponseHeader,
        info: &RequestInfo,
        end_of_stream: bool,
    ) -> Result<Decision, PluginFault> {
        let mut skip = 0;
        loop {
            let (decision, at) = self.response_headers_from(skip, resp, info, end_of_stream);
            let decision = decision?;
            let (Decision::Pause, Some(at)) = (&decision, at) else {
                return Ok(decision);
            };
            let may_park = end_of_stream || !self.slots[at].filter.module.body_callbacks.1;
            match self.wait(at, Lent::Response(resp), info, may_park).await? {
                // A pause for the body (not parked): the response header cannot wait for
                // it (Pingora sends it before the body phase), so the chain goes on and
                // the filter sees the body next; the filters after it still get their
                // headers callback.
                Decision::Continue | Decision::Pause => skip = self.slots.len() - at,
                other => return Ok(other),
            }
        }
    }

    /// Whether some filter of the chain has a request-body callback: the proxy then reads
    /// the whole request body before it goes upstream (see
    /// [`request_body`](Self::request_body)).
    pub fn wants_request_body(&self) -> bool {
        self.slots.iter().any(|s| s.filter.module.body_callbacks.0)
    }

    /// Whether some filter of the chain has a response-body callback.
    pub fn wants_response_body(&self) -> bool {
        self.slots.iter().any(|s| s.filter.module.body_callbacks.1)
    }

    /// Runs each filter's `proxy_on_request_body` on the whole request body (buffered
    /// mode: a filter paused the headers for it; `end_of_stream` is true, so a filter that
    /// pauses until the end of the stream sees everything at once), in chain order;
    /// filters may rewrite `body` and edit `req`. Filters the paused headers had not
    /// reached get `proxy_on_request_headers` first.
    /// A filter that pauses for HTTP callouts is waited for, as in
    /// [`request_headers`](Self::request_headers); one that pauses with nothing to wait
    /// for parks the request until another context resumes it (see `park`).
    pub async fn request_body(
        &mut self,
        req: &mut RequestHeader,
        body: &mut Vec<u8>,
        info: &RequestInfo,
    ) -> Result<Decision, PluginFault> {
        for at in 0..self.slots.len() {
            // The headers stopped before this filter (an earlier one paused them for the
            // body and has since continued): they go on first, as in Envoy, so that no
            // filter sees a body without having seen the headers.
            if self.headers_seen <= at {
                let decision = self.request_headers_at(at, req, info, false).await?;
                if let Decision::Respond(_) = decision {
                    return Ok(decision);
                }
            }
            if !self.slots[at].filter.module.body_callbacks.0 {
                continue;
            }
            let HttpFilters {
                slots,
                state,
                skipped,
                ..
            } = self;
            // The request headers have not gone upstream yet (the body is read first):
            // body callbacks may read and edit them, as in Envoy while headers wait.
            let mut io = Io {
                request: Some(&mut *req),
                response: None,
                info: Some(info),
                state: &mut *state,
                body: Some((BodyKind::Request, &mut *body)),
            };
            let decision = decide(&mut slots[at], skipped, &mut io, |vm, id, io| {
                vm.body(id, io, true)
            })?;
            let decision = match decision {
                Decision::Pause => self.wait(at, Lent::Request(&mut *req), info, true).await?,
                other => other,
            };
            if let Decision::Respond(_) = decision {
                return Ok(decision);
            }
        }
        Ok(Decision::Continue)
    }

    /// Runs each filter's `proxy_on_response_trailers`, in reverse chain order, on the
    /// response trailers (lent as `trailers`' headers; `:status` means nothing there).
    /// The trailers cannot wait: a `Pause` goes on, and a local response comes too late
    /// (returned for the proxy to log). Only filters that saw the response take part.
    pub fn response_trailers(
        &mut self,
        trailers: &mut ResponseHeader,
        info: &RequestInfo,
    ) -> Result<Decision, PluginFault> {
        let HttpFilters {
            slots,
            state,
            skipped,
            ..
        } = self;
        let mut late = Decision::Continue;
        for slot in slots.iter_mut().rev() {
            if slot.context.is_none() {
                continue;
            }
            let mut io = Io {
                request: None,
                response: Some(&mut *trailers),
                info: Some(info),
                state: &mut *state,
                body: None,
            };
            if let Decision::Respond(local) = decide(slot, skipped, &mut io, |vm, id, io| {
                vm.response_trailers(id, io)
            })? {
                late = Decision::Respond(local);
            }
        }
        Ok(late)
    }

    /// Runs each filter's `proxy_on_request_body` on a chunk of a request body that
    /// streams (the headers went upstream already: every filter continued them), in
    /// chain order, rewriting `chunk` in place. A filter that returns `Pause` before the
    /// end of the stream buffers, as on the response side (`chunk` becomes `None`); at the
    /// end of the stream a `Pause` waits for its calls or parks, as in the header phase.
    /// The request headers are lent read-only in effect: edits no longer reach the
    /// upstream. Returns `Respond` when a filter answered (the proxy abandons the upstream
    /// request and sends the answer).
    pub async fn request_body_chunk(
        &mut self,
        req: &mut RequestHeader,
        chunk: &mut Option<Bytes>,
        end_of_stream: bool,
        info: &RequestInfo,
    ) -> Result<Decision, PluginFault> {
        let mut data: Option<Vec<u8>> = None;
        for at in 0..self.slots.len() {
            let slot = &mut self.slots[at];
            if !slot.filter.module.body_callbacks.0 || slot.finished {
                continue;
            }
            let mut buffer = slot.request_buffer.take().unwrap_or_default();
            match data.take() {
                Some(d) => buffer.extend_from_slice(&d),
                None => buffer.extend_from_slice(chunk.as_deref().unwrap_or_default()),
            }
            let HttpFilters {
                slots,
                state,
                skipped,
                ..
            } = self;
            let mut io = Io {
                request: Some(&mut *req),
                response: None,
                info: Some(info),
                state: &mut *state,
                body: Some((BodyKind::Request, &mut buffer)),
            };
            let decision = decide(&mut slots[at], skipped, &mut io, |vm, id, io| {
                vm.body(id, io, end_of_stream)
            })?;
            match decision {
                Decision::Pause if !end_of_stream => {
                    self.slots[at].request_buffer = Some(buffer);
                    *chunk = None;
                    return Ok(Decision::Pause);
                }
                Decision::Pause => {
                    let waited = self.wait(at, Lent::Request(&mut *req), info, true).await?;
                    if let Decision::Respond(_) = waited {
                        return Ok(waited);
                    }
                }
                Decision::Respond(local) => return Ok(Decision::Respond(local)),
                Decision::Continue => {}
            }
            data = Some(buffer);
        }
        if let Some(data) = data {
            *chunk = (!data.is_empty() || end_of_stream).then(|| Bytes::from(data));
        }
        Ok(Decision::Continue)
    }

    /// Runs each filter's `proxy_on_response_body` on a chunk of the response body, in
    /// reverse chain order, rewriting `chunk` in place. A filter that returns `Pause`
    /// before the end of the stream buffers: the chunk is held (`chunk` becomes `None`)
    /// and its next call sees everything buffered so far, until it continues (the
    /// buffer, possibly rewritten, is then passed on) or the stream ends (the buffer is
    /// flushed whatever the filter answers: the response side cannot wait). A local
    /// response here comes too late (the response header is sent): it is returned for
    /// the proxy to log, and the body goes on.
    pub fn response_body(
        &mut self,
        chunk: &mut Option<Bytes>,
        end_of_stream: bool,
        info: &RequestInfo,
    ) -> Result<Decision, PluginFault> {
        let HttpFilters {
            slots,
            state,
            skipped,
            ..
        } = self;
        let mut data: Option<Vec<u8>> = None;
        let mut late = Decision::Continue;
        for slot in slots.iter_mut().rev() {
            if !slot.filter.module.body_callbacks.1 || slot.finished {
                continue;
            }
            let mut buffer = slot.response_buffer.take().unwrap_or_default();
            match data.take() {
                Some(d) => buffer.extend_from_slice(&d),
                None => buffer.extend_from_slice(chunk.as_deref().unwrap_or_default()),
            }
            let mut io = Io {
                request: None,
                response: None,
                info: Some(info),
                state: &mut *state,
                body: Some((BodyKind::Response, &mut buffer)),
            };
            match decide(slot, skipped, &mut io, |vm, id, io| {
                vm.body(id, io, end_of_stream)
            })? {
                Decision::Pause if !end_of_stream => {
                    slot.response_buffer = Some(buffer);
                    *chunk = None;
                    return Ok(Decision::Pause);
                }
                Decision::Respond(local) => late = Decision::Respond(local),
                _ => {}
            }
            data = Some(buffer);
        }
        if let Some(data) = data {
            *chunk = (!data.is_empty() || end_of_stream).then(|| Bytes::from(data));
        }
        Ok(late)
    }

    /// Performs the calls the filter at `at` dispatched, delivering each answer, until it
    /// resumes or answers; `Pause` when it has no call left to wait for.
    async fn wait(
        &mut self,
        at: usize,
        mut lent: Lent<'_>,
        info: &RequestInfo,
        may_park: bool,
    ) -> Result<Decision, PluginFault> {
        let deadline = tokio::time::Instant::now() + park::MAX_PARK;
        loop {
            let calls = std::mem::take(&mut self.slots[at].callouts);
            if calls.is_empty() {
                if !may_park {
                    return Ok(Decision::Pause);
                }
                match self.park(at, &mut lent, info, deadline).await {
                    Ok(Decision::Pause) => continue,
                    Err(fault) if self.slots[at].filter.fail_open => {
                        let slot = &mut self.slots[at];
                        slot.finished = true;
                        slot.context = None;
                        slot.callouts.clear();
                        self.skipped.push(fault);
                        return Ok(Decision::Continue);
                    }
                    other => return other,
                }
            }
            // The calls run at once; answers are delivered as they arrive.
            let mut pending = tokio::task::JoinSet::new();
            for call in calls {
                let token = call.token;
                pending.spawn(async move { (token, callout::perform(call).await) });
            }
            while let Some(joined) = pending.join_next().await {
                let Ok((token, response)) = joined else {
                    continue; // a call task panicked: its answer is lost, not the request
                };
                let HttpFilters {
                    slots,
                    state,
                    skipped,
                    ..
                } = self;
                let (request, response_header, stream) = match &mut lent {
                    Lent::Request(req) => (Some(&mut **req), None, Stream::Request),
                    Lent::Response(resp) => (None, Some(&mut **resp), Stream::Response),
                };
                let mut io = Io {
                    request,
                    response: response_header,
                    info: Some(info),
                    state: &mut *state,
                    body: None,
                };
                let decision = decide(&mut slots[at], skipped, &mut io, |vm, id, io| {
                    vm.http_call_response(id, token, response, io, stream)
                })?;
                if decision != Decision::Pause {
                    // It resumed with calls still pending: they go on without it waiting.
                    release_calls(&mut slots[at]);
                    if let Some(context) = &slots[at].context {
                        let filter = Arc::downgrade(&slots[at].filter);
                        super::ticker::deliver_later(filter, context.id, pending);
                    }
                    return Ok(decision);
                }
            }
        }
    }

    /// Parks the request the filter at `at` paused with no call to wait for, until a guest
    /// call of its VM (the root context's, typically) switches to its context, or
    /// `deadline`. Returns what that call did for it: resumed (`Continue`), answered, or
    /// nothing decisive (`Pause`: the caller waits again, performing any call dispatched
    /// on its behalf). A VM replaced meanwhile, or the deadline, is a fault of the filter.
    async fn park(
        &mut self,
        at: usize,
        lent: &mut Lent<'_>,
        info: &RequestInfo,
        deadline: tokio::time::Instant,
    ) -> Result<Decision, PluginFault> {
        let HttpFilters { slots, state, .. } = self;
        let slot = &mut slots[at];
        let Some(context) = &slot.context else {
            return Ok(Decision::Pause);
        };
        let (id, stream) = (context.id, lent.stream());
        let (waker, woken) = tokio::sync::oneshot::channel();
        let parked = registry::with_existing_vm(&slot.filter, |vm| {
            let mut io = lent.io(info, state);
            vm.is(&context.vm).then(|| vm.park(id, &mut io, waker))
        });
        if parked.flatten().is_none() {
            return Err(lost_context(&slot.filter));
        }
        let timed_out = tokio::time::timeout_at(deadline, woken).await.is_err();
        let back = registry::with_existing_vm(&slot.filter, |vm| {
            let mut io = lent.io(info, state);
            let deferred = vm.is(&context.vm).then(|| vm.unpark(id, &mut io));
            (deferred.flatten(), vm.take_callouts(id))
        });
        let Some((Some(deferred), calls)) = back else {
            return Err(lost_context(&slot.filter));
        };
        slot.callouts.extend(calls);
        let decision = outcome::decide(Some(1), deferred, stream);
        if timed_out && decision == Decision::Pause && slot.callouts.is_empty() {
            return Err(PluginFault::new(
                &slot.filter.identity.name,
                FaultKind::Deadline,
                format!(
                    "paused the request and nothing resumed it within {} s",
                    park::MAX_PARK.as_secs()
                ),
            ));
        }
        Ok(decision)
    }

    /// The request-headers phase from the filter at `from`; also returns where the chain
    /// stopped (the filter that paused or answered).
    fn request_headers_from(
        &mut self,
        from: usize,
        req: &mut RequestHeader,
        info: &RequestInfo,
        end_of_stream: bool,
    ) -> (Result<Decision, PluginFault>, Option<usize>) {
        let HttpFilters {
            slots,
            state,
            skipped,
            ..
        } = self;
        let mut outcome = Ok(Decision::Continue);
        let mut stopped = None;
        for (at, slot) in slots.iter_mut().enumerate().skip(from) {
            let mut io = Io {
                request: Some(&mut *req),
                response: None,
                info: Some(info),
                state: &mut *state,
                body: None,
            };
            outcome = decide(slot, skipped, &mut io, |vm, id, io| {
                vm.request_headers(id, io, end_of_stream)
            });
            if !matches!(outcome, Ok(Decision::Continue)) {
                stopped = Some(at);
                break;
            }
            release_calls(slot);
        }
        if !slots.is_empty() {
            state.snapshot = Some(RequestSnapshot::of(req));
        }
        (outcome, stopped)
    }

    /// Runs each filter's `proxy_on_response_headers` on `resp`, in reverse chain order
    /// (as Envoy encodes: the filter nearest the upstream sees the response first). Stops
    /// like [`on_request_headers`](Self::on_request_headers). A filter that never saw the
    /// request (an earlier one answered) gets its context created here.
    pub fn on_response_headers(
        &mut self,
        resp: &mut ResponseHeader,
        info: &RequestInfo,
        end_of_stream: bool,
    ) -> Result<Decision, PluginFault> {
        self.response_headers_from(0, resp, info, end_of_stream).0
    }

    /// The response-headers phase, skipping the last `skip` filters of the chain (they
    /// ran already); also returns where the chain stopped.
    fn response_headers_from(
        &mut self,
        skip: usize,
        resp: &mut ResponseHeader,
        info: &RequestInfo,
        end_of_stream: bool,
    ) -> (Result<Decision, PluginFault>, Option<usize>) {
        let HttpFilters {
            slots,
            state,
            skipped,
            ..
        } = self;
        for (at, slot) in slots.iter_mut().enumerate().rev().skip(skip) {
            let mut io = Io {
                request: None,
                response: Some(&mut *resp),
                info: Some(info),
                state: &mut *state,
                body: None,
            };
            let decision = decide(slot, skipped, &mut io, |vm, id, io| {
                vm.response_headers(id, io, end_of_stream)
            });
            match decision {
                Ok(Decision::Continue) => release_calls(slot),
                other => return (other, Some(at)),
            }
        }
        (Ok(Decision::Continue), None)
    }

    /// The request is over: runs every filter's `proxy_on_log` (in chain order, creating
    /// the context of a filter the request never reached, as Envoy does for access
    /// logging), then `proxy_on_done` and `proxy_on_delete` for each context. Faults are
    /// logged and counted, not returned. Call once, from Pingora's logging phase.
    pub fn on_log(&mut self, info: &RequestInfo) {
        let HttpFilters { slots, state, .. } = self;
        for slot in slots.iter_mut().filter(|slot| !slot.finished) {
            let mut io = Io {
                request: None,
                response: None,
                info: Some(info),
                state: &mut *state,
                body: None,
            };
            if let Err(fault) = run(slot, &mut io, |vm, id, io| vm.log(id, io)) {
                log_fault("proxy_on_log", &fault);
            }
            // Calls from on_log (or left pending) are performed; the context is finished
            // next, so their answers find it gone and are dropped.
            release_calls(slot);
        }
        for slot in slots.iter_mut().filter(|slot| !slot.finished) {
            let mut io = Io {
                request: None,
                response: None,
                info: Some(info),
                state: &mut *state,
                body: None,
            };
            if let Err(fault) = finish(slot, &mut io) {
                log_fault("proxy_on_done/proxy_on_delete", &fault);
            }
        }
    }
}

impl Drop for HttpFilters {
    /// Deletes the contexts `on_log` did not finish (a request abandoned midway), so no
    /// context outlives its request. On another thread than the VM's, the context is
    /// handed to that VM, which finishes it on its next call.
    fn drop(&mut self) {
        let HttpFilters { slots, state, .. } = self;
        for slot in slots.iter_mut().filter(|slot| !slot.finished) {
            let mut io = Io {
                request: None,
                response: None,
                info: None,
                state: &mut *state,
                body: None,
            };
            if let Err(fault) = finish(slot, &mut io) {
                log_fault("proxy_on_done/proxy_on_delete", &fault);
            }
        }
    }
}

/// Runs `op` on the slot's context, creating the context first if needed.
fn run<T>(
    slot: &mut Slot,
    io: &mut Io<'_>,
    op: impl FnOnce(&mut Vm, u32, &mut Io<'_>) -> Result<T, PluginFault>,
) -> Result<T, PluginFault> {
    let Slot {
        filter,
        context,
        callouts,
        ..
    } = slot;
    registry::with_vm(filter, |vm| {
        let id = match context {
            Some(existing) if vm.is(&existing.vm) => existing.id,
            Some(_) => return Err(lost_context(filter)),
            None => {
                let id = vm.create_context(io)?;
                *context = Some(ContextRef {
                    id,
                    vm: Arc::downgrade(vm.shared()),
                });
                id
            }
        };
        let result = op(vm, id, io);
        callouts.extend(vm.take_callouts(id));
        result
    })
}

/// [`run`] for a phase that decides. A filter already finished (skipped) answers
/// `Continue`. A fault of a fail-open filter (`on_error: continue`) is kept for the proxy
/// to count, the filter is skipped for the rest of the request (its VM is replaced, its
/// context gone), and the chain goes on as if it had answered `Continue`; a body it was
/// buffering is passed on as it stands.
fn decide(
    slot: &mut Slot,
    skipped: &mut Vec<PluginFault>,
    io: &mut Io<'_>,
    op: impl FnOnce(&mut Vm, u32, &mut Io<'_>) -> Result<Decision, PluginFault>,
) -> Result<Decision, PluginFault> {
    if slot.finished {
        return Ok(Decision::Continue);
    }
    match run(slot, io, op) {
        Err(fault) => {
            // The VM is being replaced: the context is gone either way.
            slot.finished = true;
            slot.context = None;
            slot.callouts.clear();
            if slot.filter.fail_open {
                skipped.push(fault);
                Ok(Decision::Continue)
            } else {
                Err(fault)
            }
        }
        other => other,
    }
}

/// The calls a filter dispatched and will not be waited for (it continued): performed
/// in the background, their answers delivered to the context if it still lives.
fn release_calls(slot: &mut Slot) {
    if slot.callouts.is_empty() {
        return;
    }
    let calls = std::mem::take(&mut slot.callouts);
    super::ticker::spawn_context_calls(Arc::downgrade(&slot.filter), calls);
}

/// `proxy_on_done` + `proxy_on_delete` for the slot's context, if it has one.
fn finish(slot: &mut Slot, io: &mut Io<'_>) -> Result<(), PluginFault> {
    slot.finished = true;
    let Some(context) = slot.context.take() else {
        return Ok(());
    };
    let here = registry::with_existing_vm(&slot.filter, |vm| {
        vm.is(&context.vm).then(|| vm.finish(context.id, io))
    });
    match here.flatten() {
        Some(result) => result,
        None => {
            // Not this thread's VM: hand the context over (if that VM still exists).
            if let Some(vm) = context.vm.upgrade() {
                vm.push_orphan(context.id);
            }
            Ok(())
        }
    }
}

fn lost_context(filter: &FilterInstance) -> PluginFault {
    PluginFault::new(
        &filter.identity.name,
        FaultKind::Abi,
        "the request's context is gone: its VM was replaced after a fault, or the request \
         moved to another thread (Proxy-Wasm VMs are per thread: run Pingora with \
         work_stealing: false)",
    )
}

fn log_fault(phase: &str, fault: &PluginFault) {
    tracing::warn!(
        plugin = &*fault.plugin,
        kind = fault.kind.as_str(),
        phase,
        "{}",
        fault.message
    );
}

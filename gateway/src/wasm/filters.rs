//! [`HttpFilters`]: the per-request state of one route's filter chain.

use std::sync::{Arc, Weak};

use pingora::http::{RequestHeader, ResponseHeader};

use super::error::{FaultKind, PluginFault};
use super::host::{RequestSnapshot, RequestState};
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
}

#[derive(Debug)]
struct Slot {
    filter: Arc<FilterInstance>,
    context: Option<ContextRef>,
    finished: bool,
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
                })
                .collect(),
            state: RequestState::default(),
        }
    }

    /// Whether the chain has no filters (every phase is then a no-op `Continue`).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Runs each filter's `proxy_on_request_headers`, in chain order, on `req` (which
    /// filters may edit, pseudo-headers included). Stops at the first decision that is
    /// not `Continue`, and at the first fault (the faulting filter's VM is replaced; the
    /// proxy answers fail-closed unless configured otherwise).
    pub fn on_request_headers(
        &mut self,
        req: &mut RequestHeader,
        info: &RequestInfo,
        end_of_stream: bool,
    ) -> Result<Decision, PluginFault> {
        let HttpFilters { slots, state } = self;
        let mut outcome = Ok(Decision::Continue);
        for slot in slots.iter_mut() {
            let mut io = Io {
                request: Some(&mut *req),
                response: None,
                info: Some(info),
                state: &mut *state,
            };
            outcome = run(slot, &mut io, |vm, id, io| {
                vm.request_headers(id, io, end_of_stream)
            });
            if !matches!(outcome, Ok(Decision::Continue)) {
                break;
            }
        }
        if !slots.is_empty() {
            state.snapshot = Some(RequestSnapshot::of(req));
        }
        outcome
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
        let HttpFilters { slots, state } = self;
        for slot in slots.iter_mut().rev() {
            let mut io = Io {
                request: None,
                response: Some(&mut *resp),
                info: Some(info),
                state: &mut *state,
            };
            let decision = run(slot, &mut io, |vm, id, io| {
                vm.response_headers(id, io, end_of_stream)
            })?;
            if decision != Decision::Continue {
                return Ok(decision);
            }
        }
        Ok(Decision::Continue)
    }

    /// The request is over: runs every filter's `proxy_on_log` (in chain order, creating
    /// the context of a filter the request never reached, as Envoy does for access
    /// logging), then `proxy_on_done` and `proxy_on_delete` for each context. Faults are
    /// logged and counted, not returned. Call once, from Pingora's logging phase.
    pub fn on_log(&mut self, info: &RequestInfo) {
        let HttpFilters { slots, state } = self;
        for slot in slots.iter_mut().filter(|slot| !slot.finished) {
            let mut io = Io {
                request: None,
                response: None,
                info: Some(info),
                state: &mut *state,
            };
            if let Err(fault) = run(slot, &mut io, |vm, id, io| vm.log(id, io)) {
                log_fault("proxy_on_log", &fault);
            }
        }
        for slot in slots.iter_mut().filter(|slot| !slot.finished) {
            let mut io = Io {
                request: None,
                response: None,
                info: Some(info),
                state: &mut *state,
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
        let HttpFilters { slots, state } = self;
        for slot in slots.iter_mut().filter(|slot| !slot.finished) {
            let mut io = Io {
                request: None,
                response: None,
                info: None,
                state: &mut *state,
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
        filter, context, ..
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
        op(vm, id, io)
    })
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

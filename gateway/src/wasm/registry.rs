//! The per-thread VM map: one VM per (worker thread, filter instance), with many HTTP
//! contexts inside it (Envoy's model). Pingora runs with `work_stealing: false`, so a
//! request stays on its thread and always finds its contexts here.
//!
//! A thread's first VM of a filter is the one `WasmRuntime::filter` started (the
//! filter's spare) if no other thread took it yet; otherwise it starts one.
//!
//! Entries are keyed by the filter's unique id and hold it weakly: when a filter is
//! replaced (config reload) and its last `Arc` dropped, the thread frees the VM the next
//! time it starts a VM or every [`SWEEP_EVERY`] calls. A VM that faulted is dropped
//! right away; the next request starts a fresh one.

use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::callout::{CallAnswer, CalloutRequest};
use super::error::{FaultKind, PluginFault};
use super::plugin::FilterInstance;
use super::shared::{self, QueueOwner};
use super::ticker;
use super::vm::{StartError, Vm};

/// How often (in VM lookups) a thread looks for VMs of dropped filters.
const SWEEP_EVERY: u32 = 1024;

struct Slot {
    owner: Weak<FilterInstance>,
    vm: Vm,
    /// When the root context's next `proxy_on_tick` is due.
    next_tick: Option<Instant>,
}

#[derive(Default)]
struct Registry {
    slots: FxHashMap<u64, Slot>,
    lookups: u32,
}

impl Registry {
    /// Frees the VMs whose filter is gone, letting their root contexts finish first.
    fn sweep(&mut self) {
        self.slots.retain(|_, slot| {
            let alive = slot.owner.strong_count() > 0;
            if !alive && let Err(fault) = slot.vm.shutdown() {
                log_root_fault("proxy_on_done/proxy_on_delete", &fault);
            }
            alive
        });
    }

    /// Adopts the filter's spare VM, or starts one.
    fn start(&mut self, filter: &Arc<FilterInstance>) -> Result<(), StartError> {
        self.sweep();
        let spare = filter.spare.lock().ok().and_then(|mut spare| spare.take());
        let vm = match spare {
            Some(vm) => vm,
            None => Vm::start(filter).inspect_err(|_| {
                filter.stats.faults.fetch_add(1, Ordering::Relaxed);
            })?,
        };
        // Queues its root context registered while starting elsewhere wake it here now.
        let (root, queues) = vm.registered_queues();
        if !queues.is_empty() {
            shared::QUEUES.rebind(queues, filter.id, root);
        }
        let slot = Slot {
            owner: Arc::downgrade(filter),
            vm,
            next_tick: None,
        };
        self.slots.insert(filter.id, slot);
        // Ticks and the root context's calls run on this thread from now on.
        ticker::ensure_running();
        Ok(())
    }
}

thread_local! {
    static VMS: RefCell<Registry> = RefCell::new(Registry::default());
}

fn unavailable(filter: &FilterInstance, why: &str) -> PluginFault {
    PluginFault::new(&filter.identity.name, FaultKind::Abi, why)
}

/// Starts a VM of `filter` now, as its spare: the first thread that runs the filter
/// adopts it. Nothing stays behind on the calling thread (a config-loading thread).
pub(crate) fn start_spare(filter: &Arc<FilterInstance>) -> Result<(), StartError> {
    let vm = Vm::start(filter)?;
    if let Ok(mut spare) = filter.spare.lock() {
        *spare = Some(vm);
    }
    Ok(())
}

/// Runs `f` with this thread's VM of `filter`, starting it first if needed. A VM that
/// fails during `f` is discarded (and counted) before this returns.
pub(crate) fn with_vm<R>(
    filter: &Arc<FilterInstance>,
    f: impl FnOnce(&mut Vm) -> Result<R, PluginFault>,
) -> Result<R, PluginFault> {
    let outcome = VMS.try_with(|cell| {
        let Ok(mut registry) = cell.try_borrow_mut() else {
            return Err(unavailable(
                filter,
                "a VM was requested from inside a guest call",
            ));
        };
        registry.lookups = registry.lookups.wrapping_add(1);
        if registry.lookups % SWEEP_EVERY == 0 {
            registry.sweep();
        }
        if !registry.slots.contains_key(&filter.id) {
            registry.start(filter).map_err(|e| e.fault)?;
        }
        let Some(slot) = registry.slots.get_mut(&filter.id) else {
            return Err(unavailable(filter, "the VM vanished while starting"));
        };
        if let Err(fault) = slot.vm.reap_orphans() {
            tracing::warn!(
                plugin = &*fault.plugin,
                kind = fault.kind.as_str(),
                phase = "proxy_on_done/proxy_on_delete",
                "plugin fault finishing a request dropped on another thread (the VM is \
                 replaced): {}",
                fault.message
            );
        }
        let result = f(&mut slot.vm);
        if slot.vm.failed() {
            filter.stats.faults.fetch_add(1, Ordering::Relaxed);
            registry.slots.remove(&filter.id);
        }
        result
    });
    outcome.unwrap_or_else(|_| Err(unavailable(filter, "the thread is shutting down")))
}

/// Runs `f` with this thread's VM of `filter` if there is one; never starts a VM.
pub(crate) fn with_existing_vm<R>(
    filter: &Arc<FilterInstance>,
    f: impl FnOnce(&mut Vm) -> R,
) -> Option<R> {
    VMS.try_with(|cell| {
        let mut registry = cell.try_borrow_mut().ok()?;
        let slot = registry.slots.get_mut(&filter.id)?;
        let result = f(&mut slot.vm);
        if slot.vm.failed() {
            filter.stats.faults.fetch_add(1, Ordering::Relaxed);
            registry.slots.remove(&filter.id);
        }
        Some(result)
    })
    .ok()
    .flatten()
}

/// The root-context work of one filter: calls to perform, then deliver to its VM.
pub(crate) type RootCalls = (Weak<FilterInstance>, Vec<CalloutRequest>);

/// Runs `proxy_on_tick` on this thread's VMs whose tick is due (the first one period after
/// the VM came to the thread), and collects the calls their root contexts dispatched.
/// Returns those and when the next tick is due (`None`: no VM here wants ticks).
pub(crate) fn tick_due(now: Instant) -> (Vec<RootCalls>, Option<Instant>) {
    let mut calls = Vec::new();
    let mut next: Option<Instant> = None;
    let _ = VMS.try_with(|cell| {
        let Ok(mut registry) = cell.try_borrow_mut() else {
            return;
        };
        let mut failed = Vec::new();
        for (id, slot) in &mut registry.slots {
            let Some(filter) = slot.owner.upgrade() else {
                continue;
            };
            match slot.vm.tick_period() {
                Some(period) => {
                    let due = *slot.next_tick.get_or_insert(now + period);
                    let mut at = due;
                    if due <= now {
                        if let Err(fault) = slot.vm.tick() {
                            log_root_fault("proxy_on_tick", &fault);
                        }
                        at = now + period;
                        slot.next_tick = Some(at);
                    }
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
                None => slot.next_tick = None,
            }
            let dispatched = slot.vm.take_root_callouts();
            if !dispatched.is_empty() {
                calls.push((Arc::downgrade(&filter), dispatched));
            }
            if slot.vm.failed() {
                filter.stats.faults.fetch_add(1, Ordering::Relaxed);
                failed.push(*id);
            }
        }
        for id in failed {
            registry.slots.remove(&id);
        }
    });
    (calls, next)
}

/// Delivers a root context's call answer to this thread's VM of `filter` (if it is still
/// the VM that dispatched it) and returns the calls dispatched meanwhile.
pub(crate) fn deliver_root_call(
    filter: &Arc<FilterInstance>,
    context: u32,
    token: u32,
    response: CallAnswer,
) -> Vec<CalloutRequest> {
    with_existing_vm(filter, |vm| {
        if let Err(fault) = vm.root_call_response(context, token, response) {
            log_root_fault("proxy_on_http_call_response", &fault);
        }
        vm.take_root_callouts()
    })
    .unwrap_or_default()
}

/// Delivers the answer of a call an HTTP context did not wait for, if the context still
/// lives in this thread's VM of `filter`; returns the calls it dispatched meanwhile.
pub(crate) fn deliver_context_call(
    filter: &Arc<FilterInstance>,
    context: u32,
    token: u32,
    response: CallAnswer,
) -> Vec<CalloutRequest> {
    let abandoned = |vm: &Vm, response: &CallAnswer| {
        if let CallAnswer::Foreign { function, .. } = response {
            vm.abandoned(function);
        }
    };
    let delivered = with_existing_vm(filter, |vm| {
        if !vm.has_context(context) {
            abandoned(vm, &response);
            return Vec::new();
        }
        if let Err(fault) = vm.detached_call_response(context, token, response) {
            log_root_fault("proxy_on_http_call_response", &fault);
        }
        vm.take_callouts(context)
    });
    delivered.unwrap_or_default()
}

/// Hands a queue-ready notification to the thread that owns the queue's VM (a task on its
/// single-threaded runtime); without a runtime (unit tests, a VM never adopted) it is
/// dropped: the owner sees the items at its next dequeue.
pub(crate) fn notify_queue_ready(owner: QueueOwner, token: u32) {
    let Some(handle) = owner.handle else {
        return;
    };
    handle.spawn(async move {
        queue_ready(owner.filter_id, owner.root_context_id, token);
    });
}

/// `proxy_on_queue_ready` on this thread's VM of filter `filter_id`, if it is still the
/// VM whose root context registered the queue.
fn queue_ready(filter_id: u64, root: u32, token: u32) {
    let _ = VMS.try_with(|cell| {
        let Ok(mut registry) = cell.try_borrow_mut() else {
            return;
        };
        let Some(slot) = registry.slots.get_mut(&filter_id) else {
            return;
        };
        let Some(filter) = slot.owner.upgrade() else {
            return;
        };
        if let Err(fault) = slot.vm.queue_ready(root, token) {
            log_root_fault("proxy_on_queue_ready", &fault);
        }
        let dispatched = slot.vm.take_root_callouts();
        if slot.vm.failed() {
            filter.stats.faults.fetch_add(1, Ordering::Relaxed);
            registry.slots.remove(&filter_id);
        }
        if !dispatched.is_empty() {
            ticker::spawn_root_calls(Arc::downgrade(&filter), dispatched);
        }
    });
}

/// Logs a fault of the root context (the VM counted it: no request answers for it).
fn log_root_fault(phase: &str, fault: &PluginFault) {
    tracing::warn!(
        plugin = &*fault.plugin,
        kind = fault.kind.as_str(),
        phase,
        "plugin fault in its root context (the VM is replaced): {}",
        fault.message
    );
}

/// How many VMs this thread holds (tests).
#[cfg(test)]
pub(crate) fn vms_on_this_thread() -> usize {
    VMS.with(|cell| cell.borrow().slots.len())
}

/// Frees VMs of dropped filters on this thread now (tests).
#[cfg(test)]
pub(crate) fn sweep_this_thread() {
    VMS.with(|cell| cell.borrow_mut().sweep());
}

/// How many HTTP contexts this thread's VM of `filter` holds, if it has one (tests).
#[cfg(test)]
pub(crate) fn live_contexts(filter: &Arc<FilterInstance>) -> Option<usize> {
    with_existing_vm(filter, |vm| vm.live_contexts())
}

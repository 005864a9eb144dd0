//! Parked requests: a stream a filter paused with no HTTP call of its own to wait for.
//!
//! Proxy-Wasm lets another context resume such a stream: typically the root context,
//! which fetched something in `on_tick` or `on_http_call_response` (a JWKS, a policy) and
//! then, for each request that waited, calls `proxy_set_effective_context(id)`, reads or
//! edits that request's headers, and resumes it (`proxy_continue_stream`) or answers it
//! (`proxy_send_local_response`).
//!
//! While parked, the request's data (headers, info, per-request state) lives in the VM,
//! beside the context ([`HostState::parked`]). When a guest call switches the effective
//! context to a parked one, its data is swapped into the Store's live slots and the
//! actions the guest takes are recorded as that request's own ([`Deferred`]); when the
//! call switches away or returns, they are swapped back and the request is woken. It
//! then takes its data back and decides as after any callback (`outcome::decide`): a
//! resumed stream goes on, an answer is sent, anything else parks it again.

use std::mem;

use tokio::sync::oneshot;

use super::host::{Deferred, HostState, HttpIo};

/// How long a request may stay parked before the gateway gives up on the filter that
/// paused it (a fault: 500, or skipped under `on_error: continue`).
pub const MAX_PARK: std::time::Duration = std::time::Duration::from_secs(30);

/// A parked request's data, held by its VM.
pub(crate) struct Parked {
    /// The request's headers, info and state, as lent for a callback.
    pub(crate) io: HttpIo,
    /// What guest calls asked for this request while it was parked.
    pub(crate) deferred: Deferred,
    /// Wakes the parked request (taken once).
    pub(crate) waker: Option<oneshot::Sender<()>>,
}

impl Parked {
    pub(crate) fn new(waker: oneshot::Sender<()>) -> Self {
        Parked {
            io: HttpIo::new(),
            deferred: Deferred::default(),
            waker: Some(waker),
        }
    }
}

impl HostState {
    /// `proxy_set_effective_context(id)`: swaps back the parked request lent so far, if
    /// any, and lends `id`'s if it is parked (and not the running callback's own).
    pub(crate) fn switch_effective(&mut self, id: u32) {
        self.swap_out_parked();
        if let Some(parked) = self.parked.get_mut(&id)
            && id != self.call.context_id
        {
            mem::swap(&mut self.http, &mut parked.io);
            mem::swap(&mut self.call.deferred, &mut parked.deferred);
            self.swapped_in = Some(id);
            if !self.touched.contains(&id) {
                self.touched.push(id);
            }
        }
        self.call.effective_context_id = id;
    }

    fn swap_out_parked(&mut self) {
        if let Some(id) = self.swapped_in.take()
            && let Some(parked) = self.parked.get_mut(&id)
        {
            mem::swap(&mut self.http, &mut parked.io);
            mem::swap(&mut self.call.deferred, &mut parked.deferred);
        }
    }

    /// After every guest call: the lent parked request goes back, and every request the
    /// call touched is woken to look at what was done for it.
    pub(crate) fn settle_parked(&mut self) {
        self.swap_out_parked();
        for id in self.touched.drain(..) {
            if let Some(waker) = self.parked.get_mut(&id).and_then(|p| p.waker.take()) {
                let _ = waker.send(());
            }
        }
    }
}

//! The tick pump: one task per worker thread that has a VM wanting ticks or a root
//! context with calls to perform. It runs `proxy_on_tick` when due (see
//! `registry::tick_due`), performs the root contexts' HTTP calls and delivers their
//! answers, all on the thread that owns the VMs (Pingora's worker runtimes are
//! single-threaded with `work_stealing: false`, so a task spawned here stays here).
//!
//! The pump starts when a VM comes to a thread (its first request there) and stops when
//! no VM of the thread wants ticks; outside a Tokio runtime (the thread loading the
//! config, unit tests) nothing is spawned.

use std::cell::Cell;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::callout::{self, CallAnswer, CalloutRequest};
use super::plugin::FilterInstance;
use super::registry;

/// Longest the pump sleeps, so that a VM arriving later with a shorter period is ticked
/// on time.
const MAX_NAP: Duration = Duration::from_millis(100);

thread_local! {
    static RUNNING: Cell<bool> = const { Cell::new(false) };
}

/// Starts this thread's pump if it is not running (and the thread runs a Tokio runtime).
pub(crate) fn ensure_running() {
    if RUNNING.with(Cell::get) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    RUNNING.with(|r| r.set(true));
    runtime.spawn(pump());
}

async fn pump() {
    loop {
        let now = Instant::now();
        let (calls, next) = registry::tick_due(now);
        for (filter, dispatched) in calls {
            spawn_calls(filter, dispatched);
        }
        let Some(next) = next else {
            RUNNING.with(|r| r.set(false));
            return;
        };
        let wake = next.min(now + MAX_NAP);
        tokio::time::sleep_until(wake.into()).await;
    }
}

/// Performs calls a root context dispatched outside a tick (e.g. in `on_queue_ready`).
pub(crate) fn spawn_root_calls(filter: Weak<FilterInstance>, calls: Vec<CalloutRequest>) {
    spawn_calls(filter, calls);
}

fn spawn_calls(filter: Weak<FilterInstance>, calls: Vec<CalloutRequest>) {
    for call in calls {
        tokio::spawn(root_call(Weak::clone(&filter), call));
    }
}

/// Performs one root-context call and delivers its answer (if the filter still exists).
async fn root_call(filter: Weak<FilterInstance>, call: CalloutRequest) {
    let (context, token) = (call.context_id, call.token);
    let response = callout::perform(call).await;
    let Some(alive) = filter.upgrade() else {
        return;
    };
    let more = registry::deliver_root_call(&alive, context, token, response);
    if !more.is_empty() {
        spawn_calls(Arc::downgrade(&alive), more);
    }
}

/// Performs calls an HTTP context dispatched but did not wait for (it continued, or the
/// call came from `on_log`): each answer is delivered to the context if it still lives
/// (`proxy_on_http_call_response`, without the request's headers), else dropped.
pub(crate) fn spawn_context_calls(filter: Weak<FilterInstance>, calls: Vec<CalloutRequest>) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    for call in calls {
        tokio::spawn(context_call(Weak::clone(&filter), call));
    }
}

async fn context_call(filter: Weak<FilterInstance>, call: CalloutRequest) {
    let (context, token) = (call.context_id, call.token);
    let response = callout::perform(call).await;
    let Some(alive) = filter.upgrade() else {
        return;
    };
    let more = registry::deliver_context_call(&alive, context, token, response);
    if !more.is_empty() {
        spawn_context_calls(Arc::downgrade(&alive), more);
    }
}

/// Answers of calls still in flight when their HTTP context stopped waiting: each is
/// delivered to the context, if it still lives, as it arrives.
pub(crate) fn deliver_later(
    filter: Weak<FilterInstance>,
    context: u32,
    mut pending: tokio::task::JoinSet<(u32, CallAnswer)>,
) {
    if pending.is_empty() {
        return;
    }
    tokio::spawn(async move {
        while let Some(joined) = pending.join_next().await {
            let (Ok((token, response)), Some(alive)) = (joined, filter.upgrade()) else {
                continue;
            };
            let more = registry::deliver_context_call(&alive, context, token, response);
            if !more.is_empty() {
                spawn_context_calls(Arc::downgrade(&alive), more);
            }
        }
    });
}

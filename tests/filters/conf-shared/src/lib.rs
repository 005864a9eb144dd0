//! Conformance filter: shared data with compare-and-swap, and shared queues, across every
//! VM of the plugin (one per worker thread).
//!
//! Every answer is local (the upstream is never reached):
//!
//! - `/count`: increments the shared counter `hits` with a get/set-with-cas retry loop and
//!   answers `total=<n> vm=<id>` (`id`: this VM's root context id, so a test can tell the
//!   VMs apart) and `retries=<r>` in `x-cas-retries`.
//! - `/cas`: sets `probe`, then writes it once with its current cas (must succeed) and
//!   once more with that now stale cas (must answer `CasMismatch`); answers `cas-ok` or
//!   what went wrong.
//! - `/enqueue/<item>`: resolves the queue `events` of vm_id `conf-shared` and enqueues
//!   `<item>`; 202, or 404 `no queue`.
//! - `/queue-log`: the shared value `queue-log`, which only the root context's
//!   `on_queue_ready` writes (it drains the queue and appends each item and `@<its vm>`).
//! - `/resolve-missing`: resolving an unregistered queue answers `none`.
//!
//! Each VM's root context registers `events` in `on_configure`; the last one registered
//! receives `on_queue_ready` (Envoy's rule).

use std::cell::Cell;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, Status};

thread_local! {
    static VM_ID: Cell<u32> = const { Cell::new(0) };
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        VM_ID.with(|v| v.set(context_id));
        Box::new(Root { queue: 0 })
    });
}}

struct Root {
    queue: u32,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.queue = self.register_shared_queue("events");
        true
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        while let Ok(Some(item)) = self.dequeue_shared_queue(queue_id) {
            let entry = format!("{}@{}", String::from_utf8_lossy(&item), vm_id());
            update(self, "queue-log", |old| {
                if old.is_empty() {
                    entry.clone()
                } else {
                    format!("{old},{entry}")
                }
            });
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

fn vm_id() -> u32 {
    VM_ID.with(Cell::get)
}

/// Rewrites the shared value `key` with `f`, retrying on a cas mismatch; returns the new
/// value and the number of retries.
fn update(ctx: &dyn Context, key: &str, f: impl Fn(&str) -> String) -> (String, u32) {
    let mut retries = 0;
    loop {
        let (value, cas) = ctx.get_shared_data(key);
        let old = value
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        let new = f(&old);
        match ctx.set_shared_data(key, Some(new.as_bytes()), cas) {
            Ok(()) => return (new, retries),
            Err(Status::CasMismatch) => retries += 1,
            Err(status) => return (format!("error {status:?}"), retries),
        }
    }
}

struct Filter;

impl Filter {
    fn answer(&self, status: u32, body: &str, headers: Vec<(&str, &str)>) -> Action {
        self.send_http_response(status, headers, Some(body.as_bytes()));
        Action::Pause
    }

    fn cas(&self) -> String {
        if let Err(status) = self.set_shared_data("probe", Some(b"a"), None) {
            return format!("unconditional set failed: {status:?}");
        }
        let (_, Some(cas)) = self.get_shared_data("probe") else {
            return "no cas".into();
        };
        if let Err(status) = self.set_shared_data("probe", Some(b"b"), Some(cas)) {
            return format!("fresh cas refused: {status:?}");
        }
        match self.set_shared_data("probe", Some(b"c"), Some(cas)) {
            Err(Status::CasMismatch) => {}
            other => return format!("stale cas gave {other:?}"),
        }
        match self.get_shared_data("probe") {
            (Some(v), Some(new_cas)) if v == b"b" && new_cas != cas => "cas-ok".into(),
            other => format!("value after mismatch: {other:?}"),
        }
    }
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        if path == "/count" {
            let (total, retries) = update(self, "hits", |old| {
                (old.parse::<u64>().unwrap_or(0) + 1).to_string()
            });
            let body = format!("total={total} vm={}", vm_id());
            let retries = retries.to_string();
            return self.answer(200, &body, vec![("x-cas-retries", &retries)]);
        }
        if path == "/cas" {
            let body = self.cas();
            return self.answer(200, &body, vec![]);
        }
        if let Some(item) = path.strip_prefix("/enqueue/") {
            return match self.resolve_shared_queue("conf-shared", "events") {
                Some(queue) => match self.enqueue_shared_queue(queue, Some(item.as_bytes())) {
                    Ok(()) => self.answer(202, "queued", vec![]),
                    Err(status) => self.answer(500, &format!("{status:?}"), vec![]),
                },
                None => self.answer(404, "no queue", vec![]),
            };
        }
        if path == "/queue-log" {
            let log = self
                .get_shared_data("queue-log")
                .0
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default();
            return self.answer(200, &log, vec![]);
        }
        if path == "/resolve-missing" {
            let body = match self.resolve_shared_queue("conf-shared", "nope") {
                None => "none".to_string(),
                Some(token) => format!("resolved {token}"),
            };
            return self.answer(200, &body, vec![]);
        }
        Action::Continue
    }
}

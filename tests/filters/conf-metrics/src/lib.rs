//! Conformance filter: plugin metrics (define, increment, record, get for counters, gauges
//! and histograms) and the gateway's foreign functions (`proxy_call_foreign_function`).
//!
//! The root context defines, in `on_configure`: the counter `requests;filter=conf`, the
//! gauge `in_flight`, the histogram `path_bytes`. Every request increments the counter,
//! raises the gauge until its log phase, records its path length, and goes upstream with
//! `x-requests` (the counter's value read back with `get_metric`).
//!
//! Local answers:
//! - `/define-many/<n>`: defines `<n>` counters `many;i=<k>` (past the host's cap they
//!   are dropped, yet defining still succeeds) and answers `defined`.
//! - `/foreign/sha256/<text>`: `aistack.sha256` of `<text>`, in hex.
//! - `/foreign/hmac/<key>/<message>`: `aistack.hmac_sha256`, in hex.
//! - `/foreign/eq/<a>/<b>`: `aistack.constant_time_eq`: `equal` or `different`.
//! - `/foreign/bad`: `aistack.hmac_sha256` with malformed arguments: the status.
//! - `/foreign/missing`: an unknown function: the status.

use std::cell::Cell;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

thread_local! {
    static IDS: Cell<(u32, u32, u32)> = const { Cell::new((0, 0, 0)) };
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let define = |kind, name| hostcalls::define_metric(kind, name);
        match (
            define(MetricType::Counter, "requests;filter=conf"),
            define(MetricType::Gauge, "in_flight"),
            define(MetricType::Histogram, "path_bytes"),
        ) {
            (Ok(c), Ok(g), Ok(h)) => {
                IDS.with(|ids| ids.set((c, g, h)));
                true
            }
            _ => false,
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn prefixed(a: &str, b: &str) -> Vec<u8> {
    let mut args = (a.len() as u32).to_le_bytes().to_vec();
    args.extend_from_slice(a.as_bytes());
    args.extend_from_slice(b.as_bytes());
    args
}

impl Filter {
    fn answer(&self, body: &str) -> Action {
        self.send_http_response(200, vec![], Some(body.as_bytes()));
        Action::Pause
    }

    fn foreign(&self, name: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        match self.call_foreign_function(name, Some(args)) {
            Ok(result) => Ok(result.unwrap_or_default()),
            Err(status) => Err(format!("{status:?}")),
        }
    }

    fn foreign_answer(&self, call: &str) -> Action {
        let parts: Vec<&str> = call.split('/').collect();
        let body = match parts.as_slice() {
            ["sha256", text] => self
                .foreign("aistack.sha256", text.as_bytes())
                .map(|r| hex(&r)),
            ["hmac", key, message] => self
                .foreign("aistack.hmac_sha256", &prefixed(key, message))
                .map(|r| hex(&r)),
            ["eq", a, b] => self
                .foreign("aistack.constant_time_eq", &prefixed(a, b))
                .map(|r| {
                    if r == [1] {
                        "equal".into()
                    } else {
                        "different".into()
                    }
                }),
            ["bad"] => self
                .foreign("aistack.hmac_sha256", b"\xff\xff")
                .map(|r| hex(&r)),
            ["missing"] => self
                .foreign("aistack.no_such_function", b"")
                .map(|_| String::new()),
            _ => Ok("unknown".into()),
        };
        self.answer(&body.unwrap_or_else(|status| status))
    }
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let (counter, gauge, histogram) = IDS.with(Cell::get);
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let _ = hostcalls::increment_metric(counter, 1);
        let _ = hostcalls::increment_metric(gauge, 1);
        let _ = hostcalls::record_metric(histogram, path.len() as u64);
        if let Some(n) = path.strip_prefix("/define-many/") {
            let n: u32 = n.parse().unwrap_or(0);
            for k in 0..n {
                if hostcalls::define_metric(MetricType::Counter, &format!("many;i={k}")).is_err() {
                    return self.answer("define failed");
                }
            }
            return self.answer("defined");
        }
        if let Some(call) = path.strip_prefix("/foreign/") {
            return self.foreign_answer(call);
        }
        let count = hostcalls::get_metric(counter).unwrap_or(0).to_string();
        self.set_http_request_header("x-requests", Some(&count));
        Action::Continue
    }

    fn on_log(&mut self) {
        let (_, gauge, _) = IDS.with(Cell::get);
        let _ = hostcalls::increment_metric(gauge, -1);
    }
}

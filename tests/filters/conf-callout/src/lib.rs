//! Conformance filter: HTTP callouts (`dispatch_http_call`) from an HTTP context and from
//! the root context's `on_tick`, the tick period, pausing a request and resuming it, and
//! the call-response header, body and trailer accessors.
//!
//! Plugin configuration: the name of the upstream `on_tick` calls (empty: no tick calls).
//! Every 50 ms the root context counts a tick and, with no call in flight, calls
//! `GET /tick` on that upstream; every request gets `x-ticks` and `x-tick-callout` (the
//! last tick call's status) added on its way upstream.
//!
//! `/callout/<upstream>[?timeout=<ms>]` pauses the request, calls `POST /from-callout`
//! (body `ping`) on that upstream, and when the answer comes adds `x-callout-status`,
//! `x-callout-pairs`, `x-callout-body-bytes`, `x-callout-echoed` (the callee saw the
//! path, body and header) and `x-callout-trailers`, then resumes the request. A failed
//! call (timeout, refused) is answered 504 by the filter; a refused dispatch (unknown
//! upstream) 400 with the status in the body. `…&answer=local` answers the request
//! with the callee's body instead of resuming it.
//!
//! `/callout-two/<upstream>` dispatches two calls at once and resumes the request (with
//! `x-callouts-answered: 2`) when both answered.
//!
//! `/detached/<upstream>` calls `GET /from-headers` on that upstream and continues at
//! once without waiting, and calls `GET /from-on-log` from `on_log`.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

thread_local! {
    static TICKS: Cell<u64> = const { Cell::new(0) };
    static TICK_STATUS: RefCell<String> = const { RefCell::new(String::new()) };
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { upstream: String::new(), in_flight: false })
    });
}}

struct Root {
    upstream: String,
    in_flight: bool,
}

impl Context for Root {
    fn on_http_call_response(&mut self, _token: u32, num_headers: usize, _: usize, _: usize) {
        self.in_flight = false;
        let status = if num_headers == 0 {
            "failed".to_string()
        } else {
            self.get_http_call_response_header(":status")
                .unwrap_or_default()
        };
        TICK_STATUS.with(|s| *s.borrow_mut() = status);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.upstream = String::from_utf8_lossy(&config)
            .trim()
            .trim_matches('"')
            .to_string();
        self.set_tick_period(Duration::from_millis(50));
        true
    }

    fn on_tick(&mut self) {
        TICKS.with(|t| t.set(t.get() + 1));
        if self.upstream.is_empty() || self.in_flight {
            return;
        }
        let headers = vec![
            (":method", "GET"),
            (":path", "/tick"),
            (":authority", "tick.test"),
        ];
        match self.dispatch_http_call(
            &self.upstream,
            headers,
            None,
            vec![],
            Duration::from_secs(2),
        ) {
            Ok(_) => self.in_flight = true,
            Err(status) => TICK_STATUS.with(|s| *s.borrow_mut() = format!("{status:?}")),
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            awaiting: None,
            detached: None,
            answer_locally: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    answer_locally: bool,
    /// `/callout-two/<upstream>`: answers still awaited of the two concurrent calls.
    awaiting: Option<u32>,
    /// `/detached/<upstream>`: the upstream the filter calls without waiting.
    detached: Option<String>,
}

impl Filter {
    fn call(&mut self, path: &str) -> Action {
        let (route, query) = path.split_once('?').unwrap_or((path, ""));
        let upstream = route.trim_start_matches("/callout/");
        let timeout = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("timeout="))
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(2000);
        self.answer_locally = query.contains("answer=local");
        let headers = vec![
            (":method", "POST"),
            (":path", "/from-callout"),
            (":authority", "callout.test"),
            ("x-from-filter", "yes"),
        ];
        let dispatched = self.dispatch_http_call(
            upstream,
            headers,
            Some(b"ping"),
            vec![],
            Duration::from_millis(timeout),
        );
        match dispatched {
            Ok(_) => Action::Pause,
            Err(status) => {
                let body = format!("dispatch refused: {status:?}");
                self.send_http_response(400, vec![], Some(body.as_bytes()));
                Action::Pause
            }
        }
    }
}

impl Context for Filter {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        if let Some(left) = self.awaiting {
            // Two calls in flight at once: resume once both answered.
            let left = if num_headers == 0 { left } else { left - 1 };
            self.awaiting = Some(left);
            if num_headers == 0 {
                self.send_http_response(504, vec![], Some(b"a concurrent call failed"));
            } else if left == 0 {
                self.set_http_request_header("x-callouts-answered", Some("2"));
                self.resume_http_request();
            }
            return;
        }
        if num_headers == 0 {
            self.send_http_response(
                504,
                vec![("x-callout-failed", "yes")],
                Some(b"callout failed"),
            );
            return;
        }
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_default();
        let pairs = self.get_http_call_response_headers();
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let trailers = self.get_http_call_response_trailers();
        if self.answer_locally {
            self.send_http_response(200, vec![("x-callout-answered", "yes")], Some(&body));
            return;
        }
        let text = String::from_utf8_lossy(&body);
        let echoed = text.contains("/from-callout")
            && text.contains("\"body\":\"ping\"")
            && text.contains("x-from-filter");
        self.set_http_request_header("x-callout-status", Some(&status));
        self.set_http_request_header("x-callout-pairs", Some(&pairs.len().to_string()));
        self.set_http_request_header("x-callout-body-bytes", Some(&body.len().to_string()));
        self.set_http_request_header("x-callout-echoed", Some(&echoed.to_string()));
        self.set_http_request_header("x-callout-trailers", Some(&trailers.len().to_string()));
        self.resume_http_request();
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let ticks = TICKS.with(Cell::get);
        let tick_status = TICK_STATUS.with(|s| s.borrow().clone());
        self.set_http_request_header("x-ticks", Some(&ticks.to_string()));
        self.set_http_request_header("x-tick-callout", Some(&tick_status));
        let path = self.get_http_request_header(":path").unwrap_or_default();
        if path.starts_with("/callout/") {
            return self.call(&path);
        }
        if let Some(upstream) = path.strip_prefix("/callout-two/") {
            let headers = vec![
                (":method", "GET"),
                (":path", "/two"),
                (":authority", "two.test"),
            ];
            for _ in 0..2 {
                let timeout = Duration::from_secs(5);
                let _ = self.dispatch_http_call(upstream, headers.clone(), None, vec![], timeout);
            }
            self.awaiting = Some(2);
            return Action::Pause;
        }
        if let Some(upstream) = path.strip_prefix("/detached/") {
            // Fire and forget: the request goes on at once; so does a call from on_log.
            self.detached = Some(upstream.to_string());
            self.fire(upstream, "/from-headers");
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(upstream) = self.detached.take() {
            self.fire(&upstream, "/from-on-log");
        }
    }
}

impl Filter {
    fn fire(&self, upstream: &str, path: &str) {
        let headers = vec![
            (":method", "GET"),
            (":path", path),
            (":authority", "side.test"),
        ];
        let _ = self.dispatch_http_call(upstream, headers, None, vec![], Duration::from_secs(2));
    }
}

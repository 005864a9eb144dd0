//! `bench-headers`: reads 5 request headers and sets 5 on request headers, the common
//! shape of a routing or auth filter; on response headers it reads `:status` and sets
//! `x-bench-headers` (which `loadbench` checks to prove the filter ran).

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

/// The request headers read, and for each the header its value (or `-`) is copied into.
const COPIED: [(&str, &str); 5] = [
    (":method", "x-bench-method"),
    (":path", "x-bench-path"),
    (":authority", "x-bench-authority"),
    ("user-agent", "x-bench-user-agent"),
    ("accept", "x-bench-accept"),
];

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter;

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // All reads first, then all writes: a write never changes what a later read sees.
        let values = COPIED.map(|(from, _)| self.get_http_request_header(from));
        for ((_, to), value) in COPIED.iter().zip(values) {
            self.set_http_request_header(to, Some(value.as_deref().unwrap_or("-")));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let status = self.get_http_response_header(":status");
        self.set_http_response_header("x-bench-headers", Some(status.as_deref().unwrap_or("-")));
        Action::Continue
    }
}

//! `bench-body`: buffers the whole response body and replaces it with an upper-cased
//! (ASCII) copy, the shape of any filter that rewrites bodies. It pauses on every chunk
//! until the end of the stream, so it sees the body at once however the upstream split
//! it: one short chunk, many, or an empty end-of-stream call after the last one.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

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
    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        // An empty body comes back as `None`: nothing to rewrite.
        if let Some(mut body) = self.get_http_response_body(0, body_size) {
            body.make_ascii_uppercase();
            self.set_http_response_body(0, body_size, &body);
        }
        Action::Continue
    }
}

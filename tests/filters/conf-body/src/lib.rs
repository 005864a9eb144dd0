//! Conformance filter: request and response bodies (`HTTP_REQUEST_BODY`,
//! `HTTP_RESPONSE_BODY` buffers, get and set), pausing until the end of the stream
//! (buffering), streaming, and local responses from a body callback.
//!
//! Request: the headers wait for the body; a body containing `forbidden` is answered 403
//! `body refused`; any other body is replaced by its upper-case text followed by
//! `|<original size>`. With `stream` in the path the headers go on and each body chunk is
//! upper-cased as it streams.
//! Response: by default the filter pauses until the end of the stream and then wraps the
//! whole body as `wrapped:<body>`; with `?stream` in the path it continues on every
//! chunk and upper-cases each one as it passes.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter { streaming: false }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    streaming: bool,
}

impl Context for Filter {}

/// Host functions the Rust SDK declares but never calls.
#[allow(unsafe_code)]
mod raw {
    extern "C" {
        fn proxy_get_buffer_status(
            buffer_type: u32,
            return_length: *mut usize,
            return_flags: *mut u32,
        ) -> u32;
    }

    /// `proxy_get_buffer_status`'s length; `None` on a non-Ok status.
    pub fn buffer_status(buffer_type: u32) -> Option<usize> {
        let (mut length, mut flags) = (0usize, 0u32);
        // SAFETY: the host writes one u32 at each pointer we pass; both point at live
        // locals (usize is 32 bits on wasm32).
        let status = unsafe { proxy_get_buffer_status(buffer_type, &mut length, &mut flags) };
        (status == 0).then_some(length)
    }
}

impl HttpContext for Filter {
    /// Buffered mode holds the headers until the body was seen (so a refused body never
    /// reaches the upstream); streaming mode lets them go and the body follows chunk by
    /// chunk.
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        self.streaming = path.contains("stream");
        if self.streaming || end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.streaming {
            // Same length: the client's content-length stays right.
            let chunk = self.get_http_request_body(0, body_size).unwrap_or_default();
            let upper = String::from_utf8_lossy(&chunk).to_uppercase();
            self.set_http_request_body(0, body_size, upper.as_bytes());
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        // proxy_get_buffer_status agrees with the size the callback was given.
        if raw::buffer_status(0) != Some(body_size) {
            self.send_http_response(500, vec![], Some(b"buffer status disagrees"));
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        if text.contains("forbidden") {
            self.send_http_response(403, vec![], Some(b"body refused"));
            return Action::Pause;
        }
        let rewritten = format!("{}|{}", text.to_uppercase(), body_size);
        self.set_http_request_body(0, body_size, rewritten.as_bytes());
        Action::Continue
    }

    /// The buffered mode changes the body's length: as in Envoy, a filter that does so
    /// removes `content-length` (the gateway then sends the body chunked).
    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if !self.streaming {
            self.set_http_response_header("content-length", None);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.streaming {
            let chunk = self
                .get_http_response_body(0, body_size)
                .unwrap_or_default();
            let upper = String::from_utf8_lossy(&chunk).to_uppercase();
            self.set_http_response_body(0, body_size, upper.as_bytes());
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.set_http_response_body(0, 0, b"wrapped:");
        Action::Continue
    }
}

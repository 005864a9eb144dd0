//! Conformance filter: header maps (get, pairs, add, replace, remove, size,
//! pseudo-headers), properties (well-known and filter-set), logging, the clock and local
//! responses. It reports what it saw in request headers the echo upstream sends back
//! (`x-seen-*`), and in response headers.
//!
//! - `GET /local…` is answered by the filter: 418, `x-local: yes`, body `local answer`.
//! - Response trailers (gRPC): `x-seen-grpc-status` added, `grpc-message` replaced.
//! - `GET /reset…` closes the stream (`proxy_close_stream`): no response at all.
//! - `…?status=201` makes the filter rewrite the upstream's `:status` to 201.

use std::time::{Duration, UNIX_EPOCH};

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
        Some(Box::new(Filter {
            path: String::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    path: String,
}

impl Context for Filter {}

/// String properties copied into `x-seen-<name with dots as dashes>` request headers.
const STRING_PROPERTIES: &[&[&str]] = &[
    &["request", "path"],
    &["request", "url_path"],
    &["request", "host"],
    &["request", "method"],
    &["request", "scheme"],
    &["request", "id"],
    &["request", "protocol"],
    &["request", "headers", "user-agent"],
    &["source", "address"],
    &["destination", "address"],
    &["plugin_name"],
    &["plugin_root_id"],
    &["route_name"],
];

/// Integer properties (8-byte little-endian), copied the same way in decimal.
const INT_PROPERTIES: &[&[&str]] = &[
    &["source", "port"],
    &["destination", "port"],
    &["request", "size"],
];

fn header_name(path: &[&str]) -> String {
    format!("x-seen-{}", path.join("-").replace('_', "-"))
}

fn int(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(bytes.try_into().ok()?))
}

/// Host functions the Rust SDK declares but never calls.
#[allow(unsafe_code)]
mod raw {
    extern "C" {
        fn proxy_get_header_map_size(map_type: u32, return_size: *mut usize) -> u32;
    }

    /// `proxy_get_header_map_size`; `None` on a non-Ok status.
    pub fn header_map_size(map_type: u32) -> Option<usize> {
        let mut size = 0usize;
        // SAFETY: the host writes one u32 (usize on wasm32) at the pointer we pass,
        // which points at a live local.
        let status = unsafe { proxy_get_header_map_size(map_type, &mut size) };
        (status == 0).then_some(size)
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, num_headers: usize, _end_of_stream: bool) -> Action {
        self.path = self.get_http_request_header(":path").unwrap_or_default();
        if self.path.starts_with("/reset") {
            // proxy_close_stream(HttpRequest): the client gets no response at all.
            let _ = proxy_wasm::hostcalls::reset_http_request();
            return Action::Pause;
        }
        if self.path.starts_with("/local") {
            self.send_http_response(418, vec![("x-local", "yes")], Some(b"local answer"));
            return Action::Pause;
        }
        let pairs = self.get_http_request_headers();
        let mut seen = vec![
            ("x-seen-count".to_string(), num_headers.to_string()),
            ("x-seen-pairs".to_string(), pairs.len().to_string()),
        ];
        // proxy_get_header_map_size: the map's bytes (names and values), as in Envoy.
        let bytes: usize = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
        let size = raw::header_map_size(0);
        seen.push((
            "x-seen-map-size-agrees".to_string(),
            (size == Some(bytes)).to_string(),
        ));
        let level = proxy_wasm::hostcalls::get_log_level()
            .map(|l| format!("{l:?}"))
            .unwrap_or_default();
        seen.push(("x-seen-log-level".to_string(), level));
        for pseudo in [":method", ":path", ":authority", ":scheme"] {
            let value = self.get_http_request_header(pseudo).unwrap_or_default();
            seen.push((format!("x-seen-pseudo-{}", &pseudo[1..]), value));
        }
        for path in STRING_PROPERTIES {
            let value = self.get_property(path.to_vec()).unwrap_or_default();
            seen.push((
                header_name(path),
                String::from_utf8_lossy(&value).into_owned(),
            ));
        }
        for path in INT_PROPERTIES {
            let value = self.get_property(path.to_vec()).and_then(|v| int(&v));
            seen.push((
                header_name(path),
                value.map(|v| v.to_string()).unwrap_or_default(),
            ));
        }
        // request.time is the request's start; the clock must agree within a minute.
        let start = self
            .get_property(vec!["request", "time"])
            .and_then(|v| int(&v));
        let now = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let agree = start.is_some_and(|s| {
            now.abs_diff(Duration::from_nanos(s as u64)) < Duration::from_secs(60)
        });
        seen.push(("x-seen-clock".to_string(), agree.to_string()));
        // set_property: visible to this and later filters of the request.
        self.set_property(vec!["conf", "note"], Some(b"from-headers"));
        let note = self.get_property(vec!["conf", "note"]).unwrap_or_default();
        seen.push((
            "x-seen-set-property".to_string(),
            String::from_utf8_lossy(&note).into_owned(),
        ));

        self.set_http_request_header("x-replaced", Some("by-filter"));
        self.add_http_request_header("x-added", "one");
        self.add_http_request_header("x-added", "two");
        self.set_http_request_header("x-remove-me", None);
        for (name, value) in &seen {
            self.set_http_request_header(name, Some(value));
        }
        log::info!("conf-headers saw {} headers on {}", num_headers, self.path);
        Action::Continue
    }

    /// Response trailers (gRPC's): reads `grpc-status`, adds `x-seen-grpc-status`,
    /// replaces `grpc-message`, and reports the count and the map's size agreeing.
    fn on_http_response_trailers(&mut self, num_trailers: usize) -> Action {
        let status = self
            .get_http_response_trailer("grpc-status")
            .unwrap_or_default();
        self.add_http_response_trailer("x-seen-grpc-status", &status);
        self.set_http_response_trailer("grpc-message", Some("via-filter"));
        let pairs = self.get_http_response_trailers();
        let count_agrees = pairs.len() == num_trailers + 1;
        self.add_http_response_trailer("x-seen-trailer-count", &count_agrees.to_string());
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let status = self.get_http_response_header(":status").unwrap_or_default();
        let code = self
            .get_property(vec!["response", "code"])
            .and_then(|v| int(&v));
        self.set_http_response_header("x-seen-status", Some(&status));
        let details = self
            .get_property(vec!["response", "code_details"])
            .unwrap_or_default();
        self.set_http_response_header(
            "x-seen-code-details",
            Some(&String::from_utf8_lossy(&details)),
        );
        self.set_http_response_header(
            "x-seen-response-code",
            Some(&code.map(|c| c.to_string()).unwrap_or_default()),
        );
        let count = self.get_http_response_headers().len();
        self.set_http_response_header("x-seen-response-pairs", Some(&count.to_string()));
        if self.path.contains("status=201") {
            self.set_http_response_header(":status", Some("201"));
        }
        Action::Continue
    }
}

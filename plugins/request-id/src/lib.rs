//! `request-id`: a Proxy-Wasm HTTP filter that makes the request id visible on both legs.
//!
//! The gateway core accepts the client's `x-request-id` (or assigns one) before routing and
//! exposes it as the `request.id` property. On request headers this filter copies that value
//! into the request header (so the upstream sees it); on response headers it sets the same
//! header on the response (so the client sees it). A host without the property (any other
//! Proxy-Wasm host) gets a random UUIDv4-formatted id from WASI `random_get` instead.
//!
//! Configuration (JSON, optional; unknown keys are refused at load):
//!
//! ```json
//! {"header": "x-request-id"}
//! ```

use std::fmt::Write as _;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

/// The header used when the configuration names none.
const DEFAULT_HEADER: &str = "x-request-id";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(RequestIdRoot { header: Rc::from(DEFAULT_HEADER) }));
}}

/// The plugin configuration as written by the operator.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Header carrying the id, request and response side. Default `x-request-id`.
    #[serde(default)]
    header: Option<String>,
}

/// Parses and validates the configuration; the error is logged by the caller.
fn parse_config(bytes: &[u8]) -> Result<Rc<str>, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Rc::from(DEFAULT_HEADER));
    }
    let config: Config =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid configuration: {e}"))?;
    let header = config
        .header
        .unwrap_or_else(|| DEFAULT_HEADER.to_owned())
        .to_ascii_lowercase();
    if !is_header_name(&header) {
        return Err(format!(
            "invalid configuration: `header` must be an HTTP header name, got {header:?}"
        ));
    }
    Ok(Rc::from(header))
}

/// RFC 9110 token characters, and not a pseudo-header.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

struct RequestIdRoot {
    header: Rc<str>,
}

impl Context for RequestIdRoot {}

impl RootContext for RequestIdRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match parse_config(&bytes) {
            Ok(header) => {
                self.header = header;
                true
            }
            Err(message) => {
                log_error(&message);
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RequestId {
            header: Rc::clone(&self.header),
            id: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct RequestId {
    header: Rc<str>,
    /// The id used on the request side, reused on the response side.
    id: Option<String>,
}

impl RequestId {
    /// The id for this request: the host's `request.id`, else a fresh random one.
    fn id(&mut self) -> String {
        if let Some(id) = &self.id {
            return id.clone();
        }
        let id = self
            .get_property(vec!["request", "id"])
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|id| !id.is_empty())
            .unwrap_or_else(random_id);
        self.id = Some(id.clone());
        id
    }
}

impl Context for RequestId {}

impl HttpContext for RequestId {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let id = self.id();
        self.set_http_request_header(&self.header, Some(&id));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let id = self.id();
        self.set_http_response_header(&self.header, Some(&id));
        Action::Continue
    }
}

/// A UUIDv4-formatted id from the host's randomness (WASI `random_get`).
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: fall back to the clock so that the header is still set.
        let nanos = proxy_wasm::hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn log_error(message: &str) {
    let _ = proxy_wasm::hostcalls::log(LogLevel::Error, message);
}

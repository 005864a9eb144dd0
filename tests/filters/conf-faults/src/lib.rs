//! Conformance filter: misbehaviour the host must contain. By the request path's last
//! segment, in `on_http_request_headers`:
//!
//! - `…/loop`: never returns (the per-call deadline interrupts it);
//! - `…/alloc`: allocates without bound (the VM's memory limit stops it);
//! - `…/panic`: panics (a trap);
//! - anything else: adds `x-faults: passed` and continues.
//!
//! The plugin configuration, if it is the JSON string `"v2"`, makes the last case add
//! `x-faults: passed-v2` instead (the hot-reload test swaps modules and configs). If it is
//! `"panic-on-tick"`, the root context asks for a tick every 10 ms and panics in `on_tick`
//! (a fault no request answers for).

use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { marker: "passed".into() })
    });
}}

struct Root {
    marker: String,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match config.as_slice() {
            b"\"v2\"" => self.marker = "passed-v2".into(),
            b"\"panic-on-tick\"" => self.set_tick_period(Duration::from_millis(10)),
            _ => {}
        }
        true
    }

    fn on_tick(&mut self) {
        panic!("conf-faults was asked to panic on tick");
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            marker: self.marker.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    marker: String,
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        match path.rsplit('/').next().unwrap_or_default() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("conf-faults was asked to panic"),
            _ => {
                self.add_http_request_header("x-faults", &self.marker);
                Action::Continue
            }
        }
    }
}

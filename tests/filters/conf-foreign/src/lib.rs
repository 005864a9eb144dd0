//! Conformance filter: asynchronous foreign functions — `proxy_call_foreign_function` on
//! an asynchronous function (its id as the result), `proxy_on_foreign_function` on the
//! HTTP context that called, the answer as the `CallData` buffer, and a context that is
//! gone before its answer arrives. It calls the gateway's `aistack.rate_limit` (so the
//! gateway needs a Redis URL), each call with a key of its own and a limit never reached.
//!
//! Headers of the request decide:
//!
//! - `x-calls: N` (1 to 8): makes N calls at once, pauses, and when all N answered adds
//!   `x-foreign-ids` (the ids the calls returned, in call order), `x-foreign-answers`
//!   (each answer's status byte and admitted flag, `0:1` for "ok, admitted", in id order)
//!   and `x-calldata-outside` (what reading `CallData` in the request-headers callback
//!   gave: `none`), then resumes the request.
//! - `x-detach: 1`: makes one call and continues at once without waiting; the request
//!   ends before the answer, which then finds no context.
//! - `x-trap: 1`: makes one call, pauses, and panics when the answer comes (a fault).
//!
//! Every request also gets `x-root-probe`: what calling `aistack.rate_limit` with valid
//! arguments from the root context (`on_configure`) gave — asynchronous functions are for
//! HTTP contexts, so `BadArgument` — and calling a function that does not exist: `NotFound`.

use std::cell::RefCell;
use std::collections::BTreeMap;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel};

const FUNCTION: &str = "aistack.rate_limit";

thread_local! {
    static ROOT_PROBE: RefCell<String> = const { RefCell::new(String::new()) };
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let valid = hostcalls::call_foreign_function(FUNCTION, Some(&args("root")));
        let unknown = hostcalls::call_foreign_function("aistack.no_such_function", Some(b"x"));
        let probe = format!("{},{}", outcome(&valid), outcome(&unknown));
        ROOT_PROBE.with(|p| *p.borrow_mut() = probe);
        true
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Foreign {
            context_id,
            waiting: 0,
            ids: Vec::new(),
            answers: BTreeMap::new(),
            outside: String::new(),
            trap: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

fn outcome(result: &Result<Option<Vec<u8>>, proxy_wasm::types::Status>) -> String {
    match result {
        Ok(_) => "Ok".to_owned(),
        Err(status) => format!("{status:?}"),
    }
}

/// A valid `aistack.rate_limit` argument: a token bucket of 10⁹ per day under `key`.
fn args(key: &str) -> Vec<u8> {
    let mut out = vec![0u8];
    for word in [1_000_000_000u64, 86_400_000, 1_000_000_000] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(key.as_bytes());
    out
}

struct Foreign {
    context_id: u32,
    waiting: usize,
    ids: Vec<u32>,
    answers: BTreeMap<u32, String>,
    outside: String,
    trap: bool,
}

impl Foreign {
    /// Calls the function; its id, or the refusal's status.
    fn call(&mut self, n: usize) -> Result<u32, String> {
        let key = format!("conf-foreign/{}/{n}", self.context_id);
        match hostcalls::call_foreign_function(FUNCTION, Some(&args(&key))) {
            Ok(Some(id)) if id.len() == 4 => Ok(u32::from_le_bytes([id[0], id[1], id[2], id[3]])),
            Ok(other) => Err(format!("an id of {:?} bytes", other.map(|b| b.len()))),
            Err(status) => Err(format!("{status:?}")),
        }
    }
}

impl Context for Foreign {
    fn on_foreign_function(&mut self, call_id: u32, size: usize) {
        if self.trap {
            panic!("conf-foreign: trapping in on_foreign_function as asked");
        }
        let data = hostcalls::get_buffer(BufferType::CallData, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let status = data.first().map_or("-".to_owned(), u8::to_string);
        let admitted = data.get(1).map_or("-".to_owned(), u8::to_string);
        self.answers.insert(call_id, format!("{status}:{admitted}"));
        self.waiting = self.waiting.saturating_sub(1);
        if self.waiting > 0 {
            return;
        }
        let ids: Vec<String> = self.ids.iter().map(u32::to_string).collect();
        let answers: Vec<&str> = self.answers.values().map(String::as_str).collect();
        self.set_http_request_header("x-foreign-ids", Some(&ids.join(",")));
        self.set_http_request_header("x-foreign-answers", Some(&answers.join(",")));
        self.set_http_request_header("x-calldata-outside", Some(&self.outside.clone()));
        self.resume_http_request();
    }
}

impl HttpContext for Foreign {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let probe = ROOT_PROBE.with(|p| p.borrow().clone());
        self.set_http_request_header("x-root-probe", Some(&probe));
        if self.get_http_request_header("x-detach").is_some() {
            let _ = self.call(0);
            return Action::Continue;
        }
        self.trap = self.get_http_request_header("x-trap").is_some();
        let calls = match (self.trap, self.get_http_request_header("x-calls")) {
            (true, _) => 1,
            (false, Some(n)) => n.parse::<usize>().unwrap_or(1).clamp(1, 8),
            (false, None) => return Action::Continue,
        };
        self.outside = match hostcalls::get_buffer(BufferType::CallData, 0, usize::MAX) {
            Ok(None) => "none".to_owned(),
            Ok(Some(bytes)) => format!("{} bytes", bytes.len()),
            Err(status) => format!("{status:?}"),
        };
        for n in 0..calls {
            match self.call(n) {
                Ok(id) => self.ids.push(id),
                Err(why) => {
                    self.send_http_response(500, vec![], Some(why.as_bytes()));
                    return Action::Pause;
                }
            }
        }
        self.waiting = calls;
        Action::Pause
    }
}

//! Tests of the WASM host, driven with the real built-in `request-id` filter (built with
//! the public `proxy-wasm` SDK) and with hand-assembled modules (`asm`). No Pingora server:
//! headers are built directly.

mod asm;
mod conformance;
mod faults;
mod host_functions;
mod unanswered;

use std::sync::{Arc, OnceLock};

use pingora::http::{RequestHeader, ResponseHeader};

use super::*;

/// One runtime for the whole test binary, as in the gateway.
pub(crate) fn runtime() -> &'static WasmRuntime {
    static RUNTIME: OnceLock<WasmRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let options = RuntimeOptions {
            worker_threads: 4,
            max_plugins: 16,
            ..RuntimeOptions::default()
        };
        WasmRuntime::new(options).expect("the WASM runtime starts")
    })
}

/// The built-in request-id module, compiled once.
pub(crate) fn request_id_module() -> &'static Arc<PluginModule> {
    static MODULE: OnceLock<Arc<PluginModule>> = OnceLock::new();
    MODULE.get_or_init(|| {
        let wasm = builtin_module_bytes("request-id").expect("request-id is built in");
        runtime()
            .load_module("request-id", wasm)
            .expect("request-id loads")
    })
}

pub(crate) fn request(path: &str) -> RequestHeader {
    let mut req = RequestHeader::build("GET", path.as_bytes(), None).expect("a valid request line");
    req.insert_header("host", "example.test")
        .expect("a valid header");
    req.insert_header("user-agent", "tests/1.0")
        .expect("a valid header");
    req
}

pub(crate) fn response(status: u16) -> ResponseHeader {
    ResponseHeader::build(status, None).expect("a valid status")
}

pub(crate) fn info(request_id: &str) -> RequestInfo {
    RequestInfo::new(request_id, Arc::from("test-route"))
}

fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[test]
fn handles_fit_pingora_contexts() {
    // Pingora's per-request context must be Send + Sync.
    fn send_sync<T: Send + Sync>() {}
    send_sync::<HttpFilters>();
    send_sync::<RequestInfo>();
    send_sync::<WasmRuntime>();
    send_sync::<Arc<FilterInstance>>();
    send_sync::<Arc<PluginModule>>();
}

#[test]
fn request_id_is_built_in() {
    assert!(builtin_names().any(|name| name == "request-id"));
    assert!(builtin_module_bytes("no-such-plugin").is_none());
    assert_eq!(request_id_module().abi_version(), "0.2.1");
}

#[test]
fn request_header_carries_the_request_id() {
    let filter = runtime()
        .filter(request_id_module(), Vec::new(), "")
        .expect("the default configuration is accepted");
    let mut filters = HttpFilters::new(&[filter]);
    let mut req = request("/orders?page=2");
    let info = info("req-1234");
    let decision = filters.on_request_headers(&mut req, &info, true);
    assert_eq!(decision.expect("no fault"), Decision::Continue);
    assert_eq!(header(&req.headers, "x-request-id"), Some("req-1234"));
    assert_eq!(req.uri.path(), "/orders", "other request data is untouched");
    assert_eq!(header(&req.headers, "user-agent"), Some("tests/1.0"));
}

#[test]
fn a_client_id_accepted_by_the_core_is_propagated_unchanged() {
    let filter = runtime()
        .filter(request_id_module(), Vec::new(), "")
        .expect("accepted");
    let mut filters = HttpFilters::new(&[filter]);
    let mut req = request("/");
    req.insert_header("x-request-id", "client-chosen-id")
        .expect("valid");
    let info = info("client-chosen-id");
    filters
        .on_request_headers(&mut req, &info, true)
        .expect("no fault");
    let values: Vec<_> = req.headers.get_all("x-request-id").iter().collect();
    assert_eq!(values, ["client-chosen-id"], "replaced, not appended");
}

#[test]
fn response_header_carries_the_request_id() {
    let filter = runtime()
        .filter(request_id_module(), Vec::new(), "")
        .expect("accepted");
    let mut filters = HttpFilters::new(&[filter]);
    let info = info("req-5678");
    let mut req = request("/");
    filters
        .on_request_headers(&mut req, &info, true)
        .expect("no fault");
    let mut resp = response(200);
    let decision = filters.on_response_headers(&mut resp, &info, false);
    assert_eq!(decision.expect("no fault"), Decision::Continue);
    assert_eq!(header(&resp.headers, "x-request-id"), Some("req-5678"));
    filters.on_log(&info);
}

#[test]
fn response_side_alone_still_gets_the_id() {
    // An earlier filter answered locally: this one never saw the request headers.
    let filter = runtime()
        .filter(request_id_module(), Vec::new(), "")
        .expect("accepted");
    let mut filters = HttpFilters::new(&[filter]);
    let mut resp = response(403);
    filters
        .on_response_headers(&mut resp, &info("only-response"), true)
        .expect("no fault");
    assert_eq!(header(&resp.headers, "x-request-id"), Some("only-response"));
}

#[test]
fn the_header_name_is_configurable() {
    let config = br#"{"header": "X-Trace-Id"}"#.to_vec();
    let filter = runtime()
        .filter(request_id_module(), config, "")
        .expect("accepted");
    assert_eq!(filter.configuration(), br#"{"header": "X-Trace-Id"}"#);
    let mut filters = HttpFilters::new(&[filter]);
    let info = info("trace-1");
    let mut req = request("/");
    filters
        .on_request_headers(&mut req, &info, true)
        .expect("no fault");
    let mut resp = response(200);
    filters
        .on_response_headers(&mut resp, &info, true)
        .expect("no fault");
    assert_eq!(header(&req.headers, "x-trace-id"), Some("trace-1"));
    assert_eq!(header(&resp.headers, "x-trace-id"), Some("trace-1"));
    assert_eq!(header(&req.headers, "x-request-id"), None);
}

#[test]
fn a_bad_configuration_is_refused_when_the_filter_is_built() {
    for config in [
        &br#"{"header": "not a header"}"#[..],
        br#"{"heder": "x-request-id"}"#,
        b"{not json",
    ] {
        let error = runtime()
            .filter(request_id_module(), config.to_vec(), "")
            .expect_err("refused");
        let message = error.to_string();
        assert!(matches!(error, WasmError::Configure { .. }), "{message}");
        assert!(
            message.starts_with(
                "plugin `request-id` rejected its configuration: invalid configuration"
            ),
            "{message}"
        );
    }
}

#[test]
fn without_an_id_the_filter_generates_one_from_wasi_randomness() {
    let filter = runtime()
        .filter(request_id_module(), Vec::new(), "")
        .expect("accepted");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut filters = HttpFilters::new(&[Arc::clone(&filter)]);
        let mut req = request("/");
        filters
            .on_request_headers(&mut req, &info(""), true)
            .expect("no fault");
        let id = header(&req.headers, "x-request-id")
            .expect("set")
            .to_owned();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.as_bytes()[14], b'4', "UUIDv4 format: {id}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn a_thousand_requests_reuse_one_vm_and_leave_no_context_behind() {
    let filter = runtime()
        .filter(request_id_module(), Vec::new(), "")
        .expect("accepted");
    for i in 0..1000 {
        let mut filters = HttpFilters::new(&[Arc::clone(&filter)]);
        let info = info(&format!("req-{i}"));
        let mut req = request("/");
        assert_eq!(
            filters.on_request_headers(&mut req, &info, true).ok(),
            Some(Decision::Continue)
        );
        let mut resp = response(200);
        assert_eq!(
            filters.on_response_headers(&mut resp, &info, true).ok(),
            Some(Decision::Continue)
        );
        assert_eq!(
            header(&resp.headers, "x-request-id"),
            Some(info.request_id.as_str())
        );
        if i % 2 == 0 {
            filters.on_log(&info);
        } // else: dropped without logging (a client gone midway)
    }
    assert_eq!(filter.vm_starts(), 1, "one VM served every request");
    assert_eq!(filter.faults(), 0);
    assert_eq!(
        registry::live_contexts(&filter),
        Some(0),
        "every context was deleted"
    );
}

#[test]
fn an_empty_chain_does_nothing() {
    let mut filters = HttpFilters::new(&[]);
    assert!(filters.is_empty());
    let mut req = request("/");
    let before = req.headers.len();
    assert_eq!(
        filters.on_request_headers(&mut req, &info("x"), true).ok(),
        Some(Decision::Continue)
    );
    assert_eq!(req.headers.len(), before);
    filters.on_log(&info("x"));
}

#[test]
fn vms_follow_threads_and_are_freed_with_their_filter() {
    std::thread::spawn(|| {
        let filter = runtime()
            .filter(request_id_module(), Vec::new(), "")
            .expect("accepted");
        assert_eq!(
            registry::vms_on_this_thread(),
            0,
            "the loading thread keeps nothing"
        );
        let mut filters = HttpFilters::new(&[Arc::clone(&filter)]);
        filters
            .on_request_headers(&mut request("/"), &info("a"), true)
            .expect("no fault");
        drop(filters);
        assert_eq!(
            registry::vms_on_this_thread(),
            1,
            "this thread adopted the spare VM"
        );
        assert_eq!(filter.vm_starts(), 1);
        let elsewhere = Arc::clone(&filter);
        std::thread::spawn(move || {
            let mut filters = HttpFilters::new(&[elsewhere]);
            filters
                .on_request_headers(&mut request("/"), &info("b"), true)
                .expect("no fault");
        })
        .join()
        .expect("the other thread ran");
        assert_eq!(filter.vm_starts(), 2, "another thread starts its own VM");
        drop(filter);
        registry::sweep_this_thread();
        assert_eq!(registry::vms_on_this_thread(), 0);
    })
    .join()
    .expect("the thread ran");
}

#[test]
fn a_request_dropped_on_another_thread_is_finished_by_its_vm() {
    let filter = runtime()
        .filter(request_id_module(), Vec::new(), "")
        .expect("accepted");
    let mut filters = HttpFilters::new(&[Arc::clone(&filter)]);
    filters
        .on_request_headers(&mut request("/"), &info("moved"), true)
        .expect("no fault");
    assert_eq!(registry::live_contexts(&filter), Some(1));
    std::thread::spawn(move || drop(filters))
        .join()
        .expect("dropped elsewhere");
    assert_eq!(registry::live_contexts(&filter), Some(1), "not reaped yet");
    let mut next = HttpFilters::new(&[Arc::clone(&filter)]);
    next.on_request_headers(&mut request("/"), &info("next"), true)
        .expect("no fault");
    drop(next);
    assert_eq!(
        registry::live_contexts(&filter),
        Some(0),
        "the orphan was finished here"
    );
    assert_eq!(filter.vm_starts(), 1);
}

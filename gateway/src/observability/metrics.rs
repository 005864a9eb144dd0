//! The gateway's Prometheus metrics. Names are prefixed `aistack_`; labels are
//! bounded (route names from the config, a fixed set of methods, status codes).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

/// Every metric the gateway exports, registered once per process.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub plugin_errors: IntCounterVec,
    pub config_reloads: IntCounterVec,
}

/// Label for requests that matched no route.
pub const NO_ROUTE: &str = "none";

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "aistack_http_requests_total",
                "HTTP requests answered by the proxy",
            ),
            &["route", "method", "status"],
        )
        .expect("static metric definition");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "aistack_http_request_duration_seconds",
                "Time from request received to response finished",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["route"],
        )
        .expect("static metric definition");
        let plugin_errors = IntCounterVec::new(
            Opts::new(
                "aistack_plugin_errors_total",
                "Plugin faults (trap, deadline, out of memory, ABI misuse)",
            ),
            &["plugin", "kind"],
        )
        .expect("static metric definition");
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "aistack_config_reloads_total",
                "Config reload attempts by result",
            ),
            &["result"],
        )
        .expect("static metric definition");
        for m in [&requests, &plugin_errors, &config_reloads] {
            registry
                .register(Box::new(m.clone()))
                .expect("unique metric name");
        }
        registry
            .register(Box::new(request_duration.clone()))
            .expect("unique metric name");
        Self {
            registry,
            requests,
            request_duration,
            plugin_errors,
            config_reloads,
        }
    }

    /// The registry, for other parts (the WASM host) to add their metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition of everything registered.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding error: {e}\n"))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A bounded label for a request method.
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

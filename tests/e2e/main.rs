//! End-to-end tests: the real `aistack` binary over real HTTP. One test binary
//! with modules (one build, one link). Each test starts its own processes on
//! free ports with a temporary data directory.

mod admin;
mod bad_input;
mod collab_crash;
mod flaky;
mod grpc;
mod headers;
mod keepalive;
mod limits;
mod notifications;
mod oauth_server;
mod otlp_proto;
mod plugin_circuit_breaker;
mod plugin_jwt;
mod plugin_key_auth;
mod plugin_oauth2;
mod plugin_rate_limit;
mod plugin_rate_limit_cluster;
mod plugin_tracing;
mod reload;
mod skeleton;
mod timeouts;
mod tls;
mod tls_support;
mod upgrade;
mod upstream_checks;
mod upstream_hashing;
mod upstream_timeouts;
mod upstreams;
mod walkthrough;
mod wasm_bodies;
mod wasm_callouts;
mod wasm_common;
mod wasm_faults;
mod wasm_foreign;
mod wasm_guide;
mod wasm_headers;
mod wasm_imports;
mod wasm_metrics;
mod wasm_reload;
mod wasm_shared;
mod websocket;

//! Load benchmarks for AI Stack, and the in-process cost of its Proxy-Wasm filters.
//!
//! Binaries: `upstream` (a fast keep-alive HTTP/1.1 server answering `ok`), `loadbench`
//! (AI Stack, with and without filters, vs nginx as reverse proxies in front of it,
//! pinned to cores, interleaved wrk rounds, medians and ratios) and `wasm-cost` (a
//! route's filter chain driven in process, against an empty chain). Start at
//! [`loadbench::run`] and [`wasm_cost::run`]; the method and the figures are in
//! `benches/README.md`.

#![forbid(unsafe_code)]

pub mod children;
pub mod contenders;
pub mod cpu;
pub mod filters;
pub mod http1;
pub mod lineup;
pub mod loadbench;
pub mod priority;
pub mod probe;
pub mod report;
pub mod wasm_cost;
pub mod wrk;
pub mod ws_fanout;

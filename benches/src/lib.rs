//! Load benchmarks for AI Stack.
//!
//! Two binaries: `upstream` (a fast keep-alive HTTP/1.1 server answering `ok`) and
//! `loadbench` (AI Stack vs nginx as reverse proxies in front of it, pinned to cores,
//! interleaved wrk rounds, medians and ratios). Start at [`loadbench::run`]; the method
//! and the figures are in `benches/README.md`.

#![forbid(unsafe_code)]

pub mod children;
pub mod contenders;
pub mod cpu;
pub mod http1;
pub mod loadbench;
pub mod probe;
pub mod report;
pub mod wrk;

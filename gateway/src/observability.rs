//! Metrics ([`metrics`]) and structured logs ([`logging`]).

pub mod logging;
pub mod metrics;

pub use metrics::Metrics;

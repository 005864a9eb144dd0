//! Structured logs with `tracing`: one subscriber for the process, one access
//! log line per request (target `aistack::access`).

use tracing_subscriber::EnvFilter;

const QUIET: &str = "pingora_core::connectors=off";

/// Installs the global subscriber. `AISTACK_LOG` (a tracing filter) overrides
/// `level`. Safe to call more than once (later calls do nothing).
pub fn init(level: &str) {
    let directives = std::env::var("AISTACK_LOG").unwrap_or_else(|_| level.to_owned());
    // Pingora logs a benign race in its upstream connection pool at error
    // level ("failed to acquire reusable stream"); connect failures reach the
    // access log as 502s anyway.
    let filter = EnvFilter::try_new(format!("{directives},{QUIET}"))
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
}

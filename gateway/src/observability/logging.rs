//! Structured logs with `tracing`: one subscriber for the process, one access
//! log line per request (target `aistack::access`).

use tracing_subscriber::EnvFilter;

/// Pingora's connection pool race (below), and its fd-transfer retries: the new process
/// of an upgrade always logs "No incoming socket transfer" at error level once, as it
/// listens before the old one is signalled; a real failure is reported by `--upgrade`.
const QUIET: &str = "pingora_core::connectors=off,pingora_core::server::transfer_fd=off";

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

/// The trace id of a W3C `traceparent` value (the 32 lowercase hex digits after the
/// version), for the access log's `trace_id`; `None` unless the value is well formed
/// (any version but `ff`, non-zero ids).
pub fn trace_id(traceparent: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(traceparent)
        .ok()?
        .trim_matches([' ', '\t']);
    let b = value.as_bytes();
    let lower_hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let zero = |s: &[u8]| s.iter().all(|c| *c == b'0');
    let well_formed = b.len() >= 55
        && (b.len() == 55 || (&b[..2] != b"00" && b[55] == b'-'))
        && lower_hex(&b[..2])
        && &b[..2] != b"ff"
        && b[2] == b'-'
        && b[35] == b'-'
        && b[52] == b'-'
        && lower_hex(&b[3..35])
        && lower_hex(&b[36..52])
        && lower_hex(&b[53..55])
        && !zero(&b[3..35])
        && !zero(&b[36..52]);
    well_formed.then(|| &value[3..35])
}

#[cfg(test)]
mod tests {
    use super::trace_id;

    #[test]
    fn trace_ids_come_from_well_formed_traceparents_only() {
        let good = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id(good), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let future = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert_eq!(trace_id(future), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in [
            &b""[..],
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(trace_id(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}

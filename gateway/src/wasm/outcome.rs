//! How a guest call ends up: its `Action` and deferred host calls become a [`Decision`]
//! ([`decide`], the one place that mapping lives), a failed call becomes a fault kind and
//! message ([`classify`]).

use std::time::Duration;

use wasmtime::Trap;

use super::abi::AbiViolation;
use super::abi::wasi::ProcExit;
use super::error::FaultKind;
use super::host::{Deferred, HostState};
use super::types::{Decision, LocalResponse};

/// `LocalResponse::details` when a filter closed the stream (`proxy_close_stream`): the
/// proxy should drop the connection rather than send the placeholder response.
pub const CLOSE_STREAM_DETAILS: &str = "wasm_close_stream";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Request,
    Response,
}

/// The one place where a callback's `Action` and the host calls it deferred become a
/// [`Decision`]: a local response wins, then a closed stream, then the `Action` (0
/// continue, anything else pause), where a pause the callback already resumed itself
/// (`proxy_continue_stream`) is a continue.
pub(crate) fn decide(action: Option<u32>, deferred: Deferred, stream: Stream) -> Decision {
    if let Some(response) = deferred.local_response {
        return Decision::Respond(response);
    }
    if deferred.close_request || deferred.close_response {
        return Decision::Respond(LocalResponse {
            status: 500,
            headers: vec![("connection".to_owned(), "close".to_owned())],
            body: bytes::Bytes::new(),
            details: CLOSE_STREAM_DETAILS.to_owned(),
        });
    }
    let resumed = match stream {
        Stream::Request => deferred.continue_request,
        Stream::Response => deferred.continue_response,
    };
    match action {
        None | Some(0) => Decision::Continue,
        Some(_) if resumed => Decision::Continue,
        Some(_) => Decision::Pause,
    }
}

/// Turns a failed guest call into a fault kind and a message.
pub(crate) fn classify(
    error: &wasmtime::Error,
    host: &HostState,
    deadline: Duration,
) -> (FaultKind, String) {
    if let Some(violation) = error.downcast_ref::<AbiViolation>() {
        return (FaultKind::Abi, violation.to_string());
    }
    if error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        // The pool has room for `(threads + 2) × max_plugins × 2` VMs and the routes use
        // `plugin entries × threads`: more threads raise both, so only max_plugins helps.
        let message = format!(
            "the instance pool is full ({error}): more plugin entries run than it is sized \
             for; raise `server.plugins.max_plugins` in the config"
        );
        return (FaultKind::OutOfMemory, message);
    }
    if let Some(exit) = error.downcast_ref::<ProcExit>() {
        return (FaultKind::Trap, exit.to_string());
    }
    let trap = error.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::Interrupt) {
        let message = format!("exceeded the {} ms call deadline", deadline.as_millis());
        return (FaultKind::Deadline, message);
    }
    if host.limits.exceeded {
        let limit = size(host.limits.max_bytes);
        return (
            FaultKind::OutOfMemory,
            format!("exceeded its memory limit of {limit}"),
        );
    }
    if let Some(function) = host.call.unimplemented {
        let message = format!("called {function}, which this gateway does not implement yet");
        return (FaultKind::Abi, message);
    }
    let mut message = match trap {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    if let Some(note) = &host.call.host_note {
        message.push_str(&format!("; the host had refused a call: {note}"));
    }
    if let Some(logged) = &host.call.last_error_log {
        message.push_str(&format!("; the plugin logged: {logged}"));
    }
    (FaultKind::Trap, message)
}

/// `64 MiB`, `512 KiB`, `1000 B`: a memory limit as a user wrote it.
pub(crate) fn size(bytes: usize) -> String {
    const KIB: usize = 1024;
    match bytes {
        b if b >= KIB * KIB && b % (KIB * KIB) == 0 => format!("{} MiB", b / (KIB * KIB)),
        b if b >= KIB && b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_read_as_written() {
        assert_eq!(size(64 * 1024 * 1024), "64 MiB");
        assert_eq!(size(4 << 30), "4096 MiB");
        assert_eq!(size(1536 * 1024), "1536 KiB");
        assert_eq!(size(100_000), "100000 B");
    }

    fn local(status: u16) -> LocalResponse {
        LocalResponse {
            status,
            headers: Vec::new(),
            body: bytes::Bytes::new(),
            details: String::new(),
        }
    }

    #[test]
    fn actions_map_to_decisions_in_one_place() {
        let none = Deferred::default;
        assert_eq!(decide(None, none(), Stream::Request), Decision::Continue);
        assert_eq!(decide(Some(0), none(), Stream::Request), Decision::Continue);
        assert_eq!(decide(Some(1), none(), Stream::Request), Decision::Pause);
        assert_eq!(decide(Some(7), none(), Stream::Response), Decision::Pause);
        let resumed = Deferred {
            continue_request: true,
            ..Deferred::default()
        };
        assert_eq!(
            decide(Some(1), resumed, Stream::Request),
            Decision::Continue
        );
        let resumed_other = Deferred {
            continue_response: true,
            ..Deferred::default()
        };
        assert_eq!(
            decide(Some(1), resumed_other, Stream::Request),
            Decision::Pause
        );
        let answered = Deferred {
            local_response: Some(local(403)),
            close_request: true,
            ..Deferred::default()
        };
        assert_eq!(
            decide(Some(0), answered, Stream::Request),
            Decision::Respond(local(403))
        );
        let closed = Deferred {
            close_response: true,
            ..Deferred::default()
        };
        match decide(Some(0), closed, Stream::Response) {
            Decision::Respond(response) => assert_eq!(response.details, CLOSE_STREAM_DETAILS),
            other => panic!("expected a response, got {other:?}"),
        }
    }
}

//! The state machine, as pure functions over the [`Circuit`] record that lives in shared
//! data (JSON): [`admit`] decides a request, [`record`] takes an outcome. The caller reads
//! the record with its cas, applies one of them, and writes it back with that cas (retrying
//! on a mismatch), so every worker thread sees one circuit per route.
//!
//! ```text
//!            failures trip          cooldown over: first request
//!   Closed ───────────────▶ Open ─────────────────────────────▶ HalfOpen (K probes)
//!     ▲                      ▲                                    │   │
//!     │                      └──────── a probe fails ─────────────┘   │
//!     └────────────────────────────── a probe succeeds ───────────────┘
//! ```
//!
//! Every transition bumps `generation`: an outcome of a request admitted under another
//! generation is stale and ignored (so a late answer of the closed circuit cannot reopen a
//! circuit that just closed again).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// Number of buckets the `failure_ratio` window is split into.
const BUCKETS: u64 = 10;
/// A half-open circuit whose probes all went quiet this long (a VM lost with its
/// contexts never reports) admits a new round of probes.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

impl Phase {
    /// The gauge value: closed 0, open 1, half-open 2.
    pub fn gauge(self) -> u64 {
        match self {
            Phase::Closed => 0,
            Phase::Open => 1,
            Phase::HalfOpen => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Closed => "closed",
            Phase::Open => "open",
            Phase::HalfOpen => "half-open",
        }
    }
}

/// Requests and failures that ended in one slice of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// `now / (window / BUCKETS)`.
    pub slot: u64,
    pub total: u32,
    pub failed: u32,
}

/// One route's circuit, as stored in shared data.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Circuit {
    pub phase: Phase,
    pub generation: u64,
    /// When the phase began (Unix milliseconds).
    pub since_ms: u64,
    /// Consecutive failures while closed.
    pub consecutive: u32,
    /// The `failure_ratio` window while closed.
    pub buckets: Vec<Bucket>,
    /// Probes admitted in this half-open phase and not given back.
    pub probes: u32,
}

/// How the request the filter let through ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// Not the upstream's doing (another filter answered, the client went away): a probe
    /// slot is given back, nothing is counted.
    Neutral,
}

/// A request the circuit let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub generation: u64,
    pub probe: bool,
}

/// What [`admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Pass(Ticket),
    /// Answer the fallback.
    Refuse,
}

/// A change of phase, to log and export.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: Phase,
    pub to: Phase,
    pub reason: String,
}

/// Decides a request at `now_ms`. Returns whether `circuit` changed (and must be written
/// back) and the transition, if any.
pub fn admit(
    circuit: &mut Circuit,
    config: &Config,
    now_ms: u64,
) -> (Admission, bool, Option<Transition>) {
    let mut transition = None;
    match circuit.phase {
        Phase::Closed => {
            return (Admission::Pass(ticket(circuit, false)), false, None);
        }
        Phase::Open => {
            if now_ms < circuit.since_ms.saturating_add(millis(config.cooldown)) {
                return (Admission::Refuse, false, None);
            }
            transition = Some(enter(
                circuit,
                Phase::HalfOpen,
                now_ms,
                "cooldown over".to_owned(),
            ));
        }
        Phase::HalfOpen => {
            let quiet = now_ms.saturating_sub(circuit.since_ms) > millis(PROBE_TIMEOUT);
            if circuit.probes >= config.probes && quiet {
                // Probes that never reported: start a new round.
                circuit.since_ms = now_ms;
                circuit.probes = 0;
            }
        }
    }
    if circuit.probes >= config.probes {
        return (Admission::Refuse, transition.is_some(), transition);
    }
    circuit.probes += 1;
    (Admission::Pass(ticket(circuit, true)), true, transition)
}

/// Takes the outcome of a request admitted with `ticket`. Returns whether `circuit`
/// changed and the transition, if any.
pub fn record(
    circuit: &mut Circuit,
    config: &Config,
    ticket: Ticket,
    outcome: Outcome,
    now_ms: u64,
) -> (bool, Option<Transition>) {
    if ticket.generation != circuit.generation {
        return (false, None);
    }
    match (circuit.phase, ticket.probe, outcome) {
        (Phase::HalfOpen, true, Outcome::Neutral) => {
            circuit.probes = circuit.probes.saturating_sub(1);
            (true, None)
        }
        (Phase::HalfOpen, true, Outcome::Success) => {
            let t = enter(
                circuit,
                Phase::Closed,
                now_ms,
                "a probe succeeded".to_owned(),
            );
            (true, Some(t))
        }
        (Phase::HalfOpen, true, Outcome::Failure) => {
            let t = enter(circuit, Phase::Open, now_ms, "a probe failed".to_owned());
            (true, Some(t))
        }
        (Phase::Closed, false, Outcome::Success | Outcome::Failure) => {
            count(circuit, config, outcome == Outcome::Failure, now_ms)
        }
        _ => (false, None),
    }
}

/// Counts a closed circuit's outcome and trips it when a threshold is reached.
fn count(
    circuit: &mut Circuit,
    config: &Config,
    failed: bool,
    now_ms: u64,
) -> (bool, Option<Transition>) {
    let mut changed = false;
    if config.consecutive.is_some() {
        let before = circuit.consecutive;
        circuit.consecutive = if failed { before.saturating_add(1) } else { 0 };
        changed |= before != circuit.consecutive;
    }
    if let Some(limit) = config.consecutive {
        if circuit.consecutive >= limit {
            let reason = format!("{} consecutive failures", circuit.consecutive);
            return (true, Some(enter(circuit, Phase::Open, now_ms, reason)));
        }
    }
    let Some(ratio) = &config.ratio else {
        return (changed, None);
    };
    let width = (millis(ratio.window) / BUCKETS).max(1);
    let slot = now_ms / width;
    circuit
        .buckets
        .retain(|b| b.slot + BUCKETS > slot && b.slot <= slot);
    match circuit.buckets.iter_mut().find(|b| b.slot == slot) {
        Some(b) => {
            b.total = b.total.saturating_add(1);
            b.failed = b.failed.saturating_add(u32::from(failed));
        }
        None => circuit.buckets.push(Bucket {
            slot,
            total: 1,
            failed: u32::from(failed),
        }),
    }
    let total: u64 = circuit.buckets.iter().map(|b| u64::from(b.total)).sum();
    let failures: u64 = circuit.buckets.iter().map(|b| u64::from(b.failed)).sum();
    if failed && total >= u64::from(ratio.min_requests) {
        let share = failures as f64 / total as f64;
        if share >= ratio.ratio {
            let reason = format!("{failures} of the last {total} requests failed");
            return (true, Some(enter(circuit, Phase::Open, now_ms, reason)));
        }
    }
    (true, None)
}

/// Moves to `phase`, starting its counters afresh.
fn enter(circuit: &mut Circuit, phase: Phase, now_ms: u64, reason: String) -> Transition {
    let from = circuit.phase;
    *circuit = Circuit {
        phase,
        generation: circuit.generation.wrapping_add(1),
        since_ms: now_ms,
        ..Circuit::default()
    };
    Transition {
        from,
        to: phase,
        reason,
    }
}

fn ticket(circuit: &Circuit, probe: bool) -> Ticket {
    Ticket {
        generation: circuit.generation,
        probe,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Classifies a finished request from `response.code` and `response.code_details`: the
/// gateway's own upstream errors (connect failures, timeouts, no target) always fail; an
/// upstream status fails when listed in `failure_statuses`; anything else the gateway or a
/// filter answered is neutral.
pub fn classify(config: &Config, status: Option<u16>, details: Option<&str>) -> Outcome {
    match details {
        Some("bad_gateway" | "gateway_timeout" | "no_upstream") => Outcome::Failure,
        Some("via_upstream") | None => match status {
            // Nothing was sent (the client went away first): no verdict on the upstream.
            None | Some(0..=99) => Outcome::Neutral,
            Some(s) if config.is_failure_status(s) => Outcome::Failure,
            Some(_) => Outcome::Success,
        },
        Some(_) => Outcome::Neutral,
    }
}

#[cfg(test)]
mod tests;

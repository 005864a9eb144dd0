//! The state machine without a host: `cargo test --manifest-path plugins/Cargo.toml -p
//! circuit-breaker` (native target).

use super::*;
use crate::config;

fn config(json: &str) -> Config {
    config::parse(json.as_bytes()).expect("valid config")
}

fn pass(circuit: &mut Circuit, config: &Config, now: u64) -> Ticket {
    match admit(circuit, config, now).0 {
        Admission::Pass(ticket) => ticket,
        Admission::Refuse => panic!("refused at {now}: {circuit:?}"),
    }
}

fn refused(circuit: &mut Circuit, config: &Config, now: u64) -> bool {
    admit(circuit, config, now).0 == Admission::Refuse
}

#[test]
fn consecutive_failures_open_and_a_success_resets_the_count() {
    let c = config(r#"{"consecutive_failures": 3, "cooldown": "1s"}"#);
    let mut s = Circuit::default();
    for outcome in [Outcome::Failure, Outcome::Failure, Outcome::Success] {
        let t = pass(&mut s, &c, 0);
        assert_eq!(record(&mut s, &c, t, outcome, 0).1, None);
    }
    for i in 0..2 {
        let t = pass(&mut s, &c, 0);
        assert_eq!(record(&mut s, &c, t, Outcome::Failure, 0).1, None, "{i}");
    }
    let t = pass(&mut s, &c, 0);
    let (_, transition) = record(&mut s, &c, t, Outcome::Failure, 5);
    assert_eq!(transition.map(|t| t.to), Some(Phase::Open));
    assert!(refused(&mut s, &c, 1004));
}

#[test]
fn half_open_admits_exactly_k_probes_and_gives_back_neutral_ones() {
    let c = config(r#"{"consecutive_failures": 1, "cooldown": "1s", "half_open_probes": 2}"#);
    let mut s = Circuit::default();
    let t = pass(&mut s, &c, 0);
    record(&mut s, &c, t, Outcome::Failure, 0);
    let (admission, changed, transition) = admit(&mut s, &c, 1000);
    assert!(matches!(
        admission,
        Admission::Pass(Ticket { probe: true, .. })
    ));
    assert!(changed);
    assert_eq!(transition.map(|t| t.to), Some(Phase::HalfOpen));
    let second = pass(&mut s, &c, 1000);
    assert!(refused(&mut s, &c, 1001));
    // A probe answered by someone else frees its slot.
    record(&mut s, &c, second, Outcome::Neutral, 1002);
    let third = pass(&mut s, &c, 1003);
    assert!(refused(&mut s, &c, 1004));
    let (_, t) = record(&mut s, &c, third, Outcome::Success, 1005);
    assert_eq!(
        t.map(|t| (t.from, t.to)),
        Some((Phase::HalfOpen, Phase::Closed))
    );
    // The other probe's late answer belongs to an old generation: ignored.
    assert!(!pass(&mut s, &c, 1006).probe);
    let stale = Ticket {
        generation: s.generation - 1,
        probe: true,
    };
    assert_eq!(
        record(&mut s, &c, stale, Outcome::Failure, 1007),
        (false, None)
    );
    assert_eq!(s.phase, Phase::Closed);
}

#[test]
fn a_failing_probe_reopens_for_another_cooldown() {
    let c = config(r#"{"consecutive_failures": 1, "cooldown": "1s"}"#);
    let mut s = Circuit::default();
    let t = pass(&mut s, &c, 0);
    record(&mut s, &c, t, Outcome::Failure, 0);
    let probe = pass(&mut s, &c, 1000);
    let (_, t) = record(&mut s, &c, probe, Outcome::Failure, 1500);
    assert_eq!(t.map(|t| t.to), Some(Phase::Open));
    assert!(refused(&mut s, &c, 2499));
    assert!(pass(&mut s, &c, 2500).probe);
}

#[test]
fn probes_that_never_report_are_replaced_after_the_probe_timeout() {
    let c = config(r#"{"consecutive_failures": 1, "cooldown": "1s"}"#);
    let mut s = Circuit::default();
    let t = pass(&mut s, &c, 0);
    record(&mut s, &c, t, Outcome::Failure, 0);
    pass(&mut s, &c, 1000);
    let timeout = u64::try_from(PROBE_TIMEOUT.as_millis()).expect("ms");
    assert!(refused(&mut s, &c, 1000 + timeout));
    assert!(pass(&mut s, &c, 1001 + timeout).probe);
}

#[test]
fn the_failure_ratio_needs_min_requests_within_the_window() {
    let c = config(r#"{"failure_ratio": 0.5, "min_requests": 4, "window": "10s"}"#);
    let mut s = Circuit::default();
    // Old failures fall out of the window.
    for _ in 0..3 {
        let t = pass(&mut s, &c, 0);
        record(&mut s, &c, t, Outcome::Failure, 0);
    }
    for now in [20_000, 20_001, 20_002] {
        let t = pass(&mut s, &c, now);
        assert_eq!(record(&mut s, &c, t, Outcome::Success, now).1, None);
    }
    let t = pass(&mut s, &c, 20_003);
    assert_eq!(
        record(&mut s, &c, t, Outcome::Failure, 20_003).1,
        None,
        "1 of 4"
    );
    let t = pass(&mut s, &c, 20_004);
    assert_eq!(
        record(&mut s, &c, t, Outcome::Failure, 20_004).1,
        None,
        "2 of 5"
    );
    let t = pass(&mut s, &c, 20_005);
    let (_, t) = record(&mut s, &c, t, Outcome::Failure, 20_005);
    assert_eq!(
        t.map(|t| t.reason),
        Some("3 of the last 6 requests failed".to_owned())
    );
}

#[test]
fn outcomes_are_classified_from_status_and_details() {
    let c = config(r#"{"consecutive_failures": 1, "failure_statuses": [500, "502-503"]}"#);
    let cases = [
        (Some(500), Some("via_upstream"), Outcome::Failure),
        (Some(503), Some("via_upstream"), Outcome::Failure),
        (Some(504), Some("via_upstream"), Outcome::Success),
        (Some(200), Some("via_upstream"), Outcome::Success),
        (Some(502), Some("bad_gateway"), Outcome::Failure),
        (Some(504), Some("gateway_timeout"), Outcome::Failure),
        (Some(503), Some("no_upstream"), Outcome::Failure),
        (Some(401), Some("wasm_local_reply"), Outcome::Neutral),
        (Some(500), Some("plugin_error"), Outcome::Neutral),
        (Some(500), None, Outcome::Failure),
        (Some(0), Some("via_upstream"), Outcome::Neutral),
        (None, None, Outcome::Neutral),
    ];
    for (status, details, want) in cases {
        assert_eq!(
            classify(&c, status, details),
            want,
            "{status:?} {details:?}"
        );
    }
}

#[test]
fn the_record_round_trips_through_json() {
    let s = Circuit {
        phase: Phase::HalfOpen,
        probes: 2,
        buckets: vec![Bucket {
            slot: 7,
            total: 3,
            failed: 1,
        }],
        ..Circuit::default()
    };
    let bytes = serde_json::to_vec(&s).expect("json");
    assert_eq!(serde_json::from_slice::<Circuit>(&bytes).expect("parse"), s);
}

#[test]
fn scope_is_the_route_unless_the_upstream_is_asked_for() {
    use crate::config::Scope;
    assert_eq!(config(r#"{"consecutive_failures": 1}"#).scope, Scope::Route);
    let by_route = config(r#"{"consecutive_failures": 1, "scope": "route"}"#);
    assert_eq!(by_route.scope, Scope::Route);
    let by_upstream = config(r#"{"consecutive_failures": 1, "scope": "upstream"}"#);
    assert_eq!(by_upstream.scope, Scope::Upstream);
    let wrong = config::parse(br#"{"consecutive_failures": 1, "scope": "host"}"#);
    let message = wrong.expect_err("refused");
    assert!(
        message.contains("scope must be `route` or `upstream`"),
        "{message}"
    );
}

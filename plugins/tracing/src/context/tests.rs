use super::*;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn version_00_is_parsed() {
    let p = parse_traceparent(VALID).expect("valid");
    assert_eq!(hex(&p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&p.span_id), "00f067aa0ba902b7");
    assert!(p.sampled);
    let unsampled = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    assert!(!unsampled.expect("valid").sampled);
    // Other flag bits are allowed; only `sampled` counts.
    let other = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02");
    assert!(!other.expect("valid").sampled);
    assert_eq!(
        parse_traceparent(&format!(" {VALID}\t")),
        parse_traceparent(VALID)
    );
}

#[test]
fn invalid_values_are_refused() {
    let cases = [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // 00 is exactly 55
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", // future, no dash
    ];
    for case in cases {
        assert_eq!(parse_traceparent(case), None, "{case:?}");
    }
}

#[test]
fn future_versions_are_read_as_version_00() {
    let base = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let p = parse_traceparent(base).expect("future version, 55 chars");
    assert!(p.sampled);
    let longer = parse_traceparent(&format!("{base}-what-the-future-will-be-like"));
    assert_eq!(longer, Some(p));
}

#[test]
fn the_outgoing_value_round_trips() {
    let p = parse_traceparent(VALID).expect("valid");
    let out = format_traceparent(&p.trace_id, &[1, 2, 3, 4, 5, 6, 7, 8], true);
    assert_eq!(
        out,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
    );
    let out = format_traceparent(&p.trace_id, &p.span_id, false);
    assert_eq!(
        out,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    );
}

#[test]
fn ratio_sampling_follows_the_trace_id() {
    let low = [0u8; 16];
    let mut high = [0u8; 16];
    high[8..].copy_from_slice(&[0xff; 8]);
    assert!(sample_new(&high, 1.0));
    assert!(!sample_new(&low, 0.0));
    assert!(sample_new(&low, 0.5));
    assert!(!sample_new(&high, 0.5));
    // Roughly the ratio over many ids.
    let mut kept = 0;
    for i in 0u64..10_000 {
        let mut id = [0u8; 16];
        id[8..].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        kept += usize::from(sample_new(&id, 0.25));
    }
    assert!((2_000..3_000).contains(&kept), "{kept}");
}

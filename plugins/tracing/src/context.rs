//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): parsing an incoming
//! `traceparent`, minting ids, and the `traceparent` the gateway sends on.

/// A trace id: 16 bytes, never all zero.
pub type TraceId = [u8; 16];
/// A span (parent) id: 8 bytes, never all zero.
pub type SpanId = [u8; 8];

/// The `sampled` bit of `trace-flags`.
pub const SAMPLED: u8 = 0x01;

/// What a valid incoming `traceparent` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

/// Parses one `traceparent` value; `None` when it is invalid (the caller then starts a
/// new trace). Version `00` must be exactly `00-<32 hex>-<16 hex>-<2 hex>`, lowercase. A
/// higher version (not `ff`) is parsed as the spec says: the first 55 characters as
/// version 00, and anything after them must start with `-`.
pub fn parse_traceparent(value: &str) -> Option<Parent> {
    let value = value.trim_matches([' ', '\t']);
    let bytes = value.as_bytes();
    if bytes.len() < 55 {
        return None;
    }
    let version = hex_byte(&bytes[0..2])?;
    match version {
        0xff => return None,
        0x00 if bytes.len() != 55 => return None,
        0x00 => {}
        _ if bytes.len() > 55 && bytes[55] != b'-' => return None,
        _ => {}
    }
    if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let trace_id: TraceId = hex_array(&bytes[3..35])?;
    let span_id: SpanId = hex_array(&bytes[36..52])?;
    let flags = hex_byte(&bytes[53..55])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags & SAMPLED != 0,
    })
}

/// The `traceparent` the gateway sends upstream (always version 00; of the flags only
/// `sampled`, the one it knows).
pub fn format_traceparent(trace_id: &TraceId, span_id: &SpanId, sampled: bool) -> String {
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    push_hex(&mut out, trace_id);
    out.push('-');
    push_hex(&mut out, span_id);
    out.push('-');
    push_hex(&mut out, &[if sampled { SAMPLED } else { 0 }]);
    out
}

/// Lowercase hex, as `traceparent` and OTLP JSON write ids.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Appends `bytes` as lowercase hex. A table, not `format!`: the formatting machinery
/// was a measurable share of the filter's per-request cost.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// The sampling decision for a new trace: the trace id's last 8 bytes, read as a number,
/// below `ratio` of the range (as OpenTelemetry's ratio sampler does), so that every
/// service applying the same ratio to the same trace agrees.
pub fn sample_new(trace_id: &TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    let x = u64::from_be_bytes(low) >> 11; // 53 bits
    (x as f64) < ratio * (1u64 << 53) as f64
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None, // uppercase is invalid in traceparent
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    Some((hex_value(pair[0])? << 4) | hex_value(pair[1])?)
}

fn hex_array<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = hex_byte(pair)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests;

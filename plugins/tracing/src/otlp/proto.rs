//! The OTLP/HTTP protobuf encoding (`encoding: protobuf`, the default): an
//! `ExportTraceServiceRequest` in the protobuf wire format, written by hand for the few
//! messages a gateway span needs (field numbers from opentelemetry-proto's
//! `trace/v1/trace.proto`, `common/v1/common.proto`, `resource/v1/resource.proto` and
//! `collector/trace/v1/trace_service.proto`).
//!
//! Every message's length is computed before it is written (`*_len`), so the body is
//! written once, front to back, into a buffer of its exact size: no intermediate buffers,
//! no escaping, ids as raw bytes.

use super::{AttrValue, Span, KIND_SERVER, SCOPE_NAME, SCOPE_VERSION, STATUS_ERROR};

/// Wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

// ExportTraceServiceRequest / ResourceSpans / ScopeSpans / Resource / InstrumentationScope.
const REQUEST_RESOURCE_SPANS: u32 = 1;
const RESOURCE_SPANS_RESOURCE: u32 = 1;
const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
const RESOURCE_ATTRIBUTES: u32 = 1;
const SCOPE_SPANS_SCOPE: u32 = 1;
const SCOPE_SPANS_SPANS: u32 = 2;
const SCOPE_NAME_FIELD: u32 = 1;
const SCOPE_VERSION_FIELD: u32 = 2;
// Span.
const SPAN_TRACE_ID: u32 = 1;
const SPAN_SPAN_ID: u32 = 2;
const SPAN_TRACE_STATE: u32 = 3;
const SPAN_PARENT_SPAN_ID: u32 = 4;
const SPAN_NAME: u32 = 5;
const SPAN_KIND: u32 = 6;
const SPAN_START: u32 = 7;
const SPAN_END: u32 = 8;
const SPAN_ATTRIBUTES: u32 = 9;
const SPAN_STATUS: u32 = 15;
const SPAN_FLAGS: u32 = 16;
const STATUS_CODE: u32 = 3;
// KeyValue / AnyValue.
const KV_KEY: u32 = 1;
const KV_VALUE: u32 = 2;
const ANY_STRING: u32 = 1;
const ANY_INT: u32 = 3;
// ExportTraceServiceResponse / ExportTracePartialSuccess.
const RESPONSE_PARTIAL_SUCCESS: u32 = 1;
const PARTIAL_REJECTED_SPANS: u32 = 1;

/// The body of one `POST /v1/traces`.
pub fn export_request(service_name: &str, spans: &[Span]) -> Vec<u8> {
    let resource = field_len(
        RESOURCE_ATTRIBUTES,
        kv_len("service.name", service_name.len()),
    );
    let scope = string_field_len(SCOPE_NAME_FIELD, SCOPE_NAME)
        + string_field_len(SCOPE_VERSION_FIELD, SCOPE_VERSION);
    let span_lens: Vec<usize> = spans.iter().map(span_len).collect();
    let scope_spans = field_len(SCOPE_SPANS_SCOPE, scope)
        + span_lens
            .iter()
            .map(|&len| field_len(SCOPE_SPANS_SPANS, len))
            .sum::<usize>();
    let resource_spans = field_len(RESOURCE_SPANS_RESOURCE, resource)
        + field_len(RESOURCE_SPANS_SCOPE_SPANS, scope_spans);
    let total = field_len(REQUEST_RESOURCE_SPANS, resource_spans);

    let mut out = Vec::with_capacity(total);
    header(&mut out, REQUEST_RESOURCE_SPANS, resource_spans);
    header(&mut out, RESOURCE_SPANS_RESOURCE, resource);
    write_kv_str(&mut out, RESOURCE_ATTRIBUTES, "service.name", service_name);
    header(&mut out, RESOURCE_SPANS_SCOPE_SPANS, scope_spans);
    header(&mut out, SCOPE_SPANS_SCOPE, scope);
    string_field(&mut out, SCOPE_NAME_FIELD, SCOPE_NAME);
    string_field(&mut out, SCOPE_VERSION_FIELD, SCOPE_VERSION);
    for (span, len) in spans.iter().zip(span_lens) {
        header(&mut out, SCOPE_SPANS_SPANS, len);
        write_span(&mut out, span);
    }
    debug_assert_eq!(out.len(), total);
    out
}

/// The encoded length of a `Span` message (without its own tag and length).
fn span_len(span: &Span) -> usize {
    let mut len = bytes_field_len(SPAN_TRACE_ID, span.trace_id.len())
        + bytes_field_len(SPAN_SPAN_ID, span.span_id.len())
        + optional_string_len(SPAN_TRACE_STATE, &span.trace_state)
        + span
            .parent_span_id
            .map_or(0, |p| bytes_field_len(SPAN_PARENT_SPAN_ID, p.len()))
        + optional_string_len(SPAN_NAME, &span.name)
        + tag_len(SPAN_KIND)
        + varint_len(u64::from(KIND_SERVER))
        + 2 * (tag_len(SPAN_START) + 8)
        + tag_len(SPAN_FLAGS)
        + 4;
    for (key, value) in &span.attributes {
        len += field_len(SPAN_ATTRIBUTES, attribute_len(key, value));
    }
    if span.error {
        len += field_len(SPAN_STATUS, status_len());
    }
    len
}

fn write_span(out: &mut Vec<u8>, span: &Span) {
    bytes_field(out, SPAN_TRACE_ID, &span.trace_id);
    bytes_field(out, SPAN_SPAN_ID, &span.span_id);
    optional_string(out, SPAN_TRACE_STATE, &span.trace_state);
    if let Some(parent) = &span.parent_span_id {
        bytes_field(out, SPAN_PARENT_SPAN_ID, parent);
    }
    optional_string(out, SPAN_NAME, &span.name);
    tag(out, SPAN_KIND, VARINT);
    varint(out, u64::from(KIND_SERVER));
    tag(out, SPAN_START, FIXED64);
    out.extend_from_slice(&span.start_unix_nanos.to_le_bytes());
    tag(out, SPAN_END, FIXED64);
    out.extend_from_slice(&span.end_unix_nanos.to_le_bytes());
    for (key, value) in &span.attributes {
        match value {
            AttrValue::Str(s) => write_kv_str(out, SPAN_ATTRIBUTES, key, s),
            AttrValue::Int(i) => {
                header(out, SPAN_ATTRIBUTES, attribute_len(key, value));
                string_field(out, KV_KEY, key);
                header(out, KV_VALUE, int_value_len(*i));
                tag(out, ANY_INT, VARINT);
                varint(out, int64(*i));
            }
        }
    }
    if span.error {
        header(out, SPAN_STATUS, status_len());
        tag(out, STATUS_CODE, VARINT);
        varint(out, u64::from(STATUS_ERROR));
    }
    tag(out, SPAN_FLAGS, FIXED32);
    out.extend_from_slice(&span.flags().to_le_bytes());
}

/// `Status { code: STATUS_CODE_ERROR }`.
fn status_len() -> usize {
    tag_len(STATUS_CODE) + varint_len(u64::from(STATUS_ERROR))
}

fn attribute_len(key: &str, value: &AttrValue) -> usize {
    match value {
        AttrValue::Str(s) => kv_len(key, s.len()),
        AttrValue::Int(i) => string_field_len(KV_KEY, key) + field_len(KV_VALUE, int_value_len(*i)),
    }
}

/// `KeyValue { key, value: AnyValue { string_value } }` with a value of `value_len` bytes.
fn kv_len(key: &str, value_len: usize) -> usize {
    string_field_len(KV_KEY, key) + field_len(KV_VALUE, bytes_field_len(ANY_STRING, value_len))
}

/// A `KeyValue` with a string value, as field `field` of the enclosing message.
fn write_kv_str(out: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    header(out, field, kv_len(key, value.len()));
    string_field(out, KV_KEY, key);
    header(out, KV_VALUE, bytes_field_len(ANY_STRING, value.len()));
    string_field(out, ANY_STRING, value);
}

fn int_value_len(i: i64) -> usize {
    tag_len(ANY_INT) + varint_len(int64(i))
}

/// An `int64` on the wire: its two's complement as a varint.
fn int64(i: i64) -> u64 {
    // The bit pattern is the point.
    i as u64
}

/// A proto3 string field: absent when empty (its default).
fn optional_string_len(field: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        string_field_len(field, s)
    }
}

fn optional_string(out: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        string_field(out, field, s);
    }
}

fn string_field_len(field: u32, s: &str) -> usize {
    bytes_field_len(field, s.len())
}

fn string_field(out: &mut Vec<u8>, field: u32, s: &str) {
    bytes_field(out, field, s.as_bytes());
}

fn bytes_field_len(field: u32, len: usize) -> usize {
    field_len(field, len)
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    header(out, field, bytes.len());
    out.extend_from_slice(bytes);
}

/// A length-delimited field of `len` bytes of content: tag, length, content.
fn field_len(field: u32, len: usize) -> usize {
    tag_len(field) + varint_len(len as u64) + len
}

/// The tag and length of a length-delimited field whose content follows.
fn header(out: &mut Vec<u8>, field: u32, len: usize) {
    tag(out, field, LEN);
    varint(out, len as u64);
}

fn tag_len(field: u32) -> usize {
    varint_len(u64::from(field) << 3)
}

fn tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn varint_len(mut v: u64) -> usize {
    let mut len = 1;
    while v >= 0x80 {
        v >>= 7;
        len += 1;
    }
    len
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        // The low 7 bits, with the continuation bit.
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `partial_success.rejected_spans` of an `ExportTraceServiceResponse`; 0 when absent or
/// when the body is not a well-formed message (a collector answering something else).
pub fn rejected_spans(body: &[u8]) -> u64 {
    let mut rejected = 0;
    for field in Fields(body) {
        match field {
            Ok((RESPONSE_PARTIAL_SUCCESS, Value::Len(partial))) => {
                for field in Fields(partial) {
                    match field {
                        Ok((PARTIAL_REJECTED_SPANS, Value::Varint(n))) => rejected = n,
                        Ok(_) => {}
                        Err(()) => return 0,
                    }
                }
            }
            Ok(_) => {}
            Err(()) => return 0,
        }
    }
    rejected
}

/// A field's value on the wire (what reading a response needs).
enum Value<'a> {
    Varint(u64),
    Len(&'a [u8]),
    /// A fixed64 or fixed32, little-endian (skipped by the reader; the tests read it).
    Fixed(#[cfg_attr(not(test), allow(dead_code))] &'a [u8]),
}

/// The fields of a message, in order; `Err` once it is malformed.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, ()> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.0.split_first().ok_or(())?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ()> {
        if self.0.len() < n {
            return Err(());
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn field(&mut self) -> Result<(u32, Value<'a>), ()> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(drop)?;
        let value = match (key & 7) as u8 {
            VARINT => Value::Varint(self.varint()?),
            FIXED64 => Value::Fixed(self.take(8)?),
            LEN => {
                let len = usize::try_from(self.varint()?).map_err(drop)?;
                Value::Len(self.take(len)?)
            }
            FIXED32 => Value::Fixed(self.take(4)?),
            _ => return Err(()),
        };
        Ok((number, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_err() {
            self.0 = &[];
        }
        Some(field)
    }
}

#[cfg(test)]
mod tests;

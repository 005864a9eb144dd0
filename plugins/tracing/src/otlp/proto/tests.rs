//! The encoder read back with the module's own wire reader, field by field, against the
//! field numbers of opentelemetry-proto.

use super::super::test_span as span;
use super::*;

/// The fields numbered `n` of `message`.
fn all(message: &[u8], n: u32) -> Vec<Value<'_>> {
    Fields(message)
        .map(|f| f.expect("well-formed"))
        .filter(|(number, _)| *number == n)
        .map(|(_, v)| v)
        .collect()
}

fn one(message: &[u8], n: u32) -> Value<'_> {
    let mut found = all(message, n);
    assert_eq!(found.len(), 1, "field {n}");
    found.remove(0)
}

fn len(message: &[u8], n: u32) -> &[u8] {
    match one(message, n) {
        Value::Len(bytes) => bytes,
        _ => panic!("field {n} is not length-delimited"),
    }
}

fn varint_of(message: &[u8], n: u32) -> u64 {
    match one(message, n) {
        Value::Varint(v) => v,
        _ => panic!("field {n} is not a varint"),
    }
}

fn fixed(message: &[u8], n: u32) -> u64 {
    match one(message, n) {
        Value::Fixed(bytes) => {
            let mut b = [0u8; 8];
            b[..bytes.len()].copy_from_slice(bytes);
            u64::from_le_bytes(b)
        }
        _ => panic!("field {n} is not fixed"),
    }
}

/// A `KeyValue`'s key and its `AnyValue`.
fn attribute(kv: &[u8]) -> (&str, &[u8]) {
    let key = std::str::from_utf8(len(kv, KV_KEY)).expect("utf-8");
    (key, len(kv, KV_VALUE))
}

#[test]
fn the_export_request_follows_the_otlp_messages() {
    let body = export_request("svc", &[span(Some([0x02; 8]), true), span(None, false)]);
    let resource_spans = len(&body, 1);
    let resource = len(resource_spans, 1);
    let (key, value) = attribute(len(resource, 1));
    assert_eq!((key, len(value, 1)), ("service.name", &b"svc"[..]));
    let scope_spans = len(resource_spans, 2);
    let scope = len(scope_spans, 1);
    assert_eq!(len(scope, 1), b"aistack.tracing");
    assert_eq!(len(scope, 2), SCOPE_VERSION.as_bytes());
    let spans: Vec<&[u8]> = all(scope_spans, 2)
        .into_iter()
        .map(|v| match v {
            Value::Len(bytes) => bytes,
            _ => panic!("a span is a message"),
        })
        .collect();
    assert_eq!(spans.len(), 2);

    let first = spans[0];
    assert_eq!(len(first, 1), [0xab; 16]);
    assert_eq!(len(first, 2), [0x01; 8]);
    assert_eq!(len(first, 3), b"k=v");
    assert_eq!(len(first, 4), [0x02; 8]);
    assert_eq!(len(first, 5), b"GET api");
    assert_eq!(varint_of(first, 6), 2, "SPAN_KIND_SERVER");
    assert_eq!(fixed(first, 7), 1_700_000_000_000_000_001);
    assert_eq!(fixed(first, 8), 1_700_000_000_500_000_000);
    let attributes: Vec<_> = all(first, 9)
        .into_iter()
        .map(|v| match v {
            Value::Len(kv) => attribute(kv),
            _ => panic!("an attribute is a message"),
        })
        .collect();
    assert_eq!(attributes[0].0, "http.request.method");
    assert_eq!(len(attributes[0].1, 1), b"GET");
    assert_eq!(attributes[1].0, "http.response.status_code");
    assert_eq!(varint_of(attributes[1].1, 3), 503);
    assert_eq!(varint_of(len(first, 15), 3), 2, "STATUS_CODE_ERROR");
    assert_eq!(fixed(first, 16), 0x301);

    let second = spans[1];
    assert!(all(second, 3).is_empty(), "no trace_state");
    assert!(all(second, 4).is_empty(), "no parent");
    assert!(all(second, 15).is_empty(), "status unset");
    assert_eq!(fixed(second, 16), 0x101);
}

#[test]
fn negative_integers_and_long_fields_encode() {
    let mut s = span(None, false);
    s.attributes = vec![
        ("n", AttrValue::Int(-1)),
        ("s", AttrValue::Str("x".repeat(300))),
    ];
    s.name = "n".repeat(200);
    let body = export_request(&"a".repeat(130), &[s]);
    let resource_spans = len(&body, 1);
    let scope_spans = len(resource_spans, 2);
    let span = len(scope_spans, 2);
    assert_eq!(len(span, 5).len(), 200);
    let kvs = all(span, 9);
    let Value::Len(n) = &kvs[0] else { panic!() };
    assert_eq!(
        varint_of(attribute(n).1, 3),
        u64::MAX,
        "-1 as a 10-byte varint"
    );
    let Value::Len(text) = &kvs[1] else { panic!() };
    assert_eq!(len(attribute(text).1, 1).len(), 300);
    let (_, service) = attribute(len(len(resource_spans, 1), 1));
    assert_eq!(len(service, 1).len(), 130);
}

#[test]
fn partial_success_is_read() {
    // partial_success { rejected_spans: 3, error_message: "x" }
    assert_eq!(
        rejected_spans(&[0x0a, 0x05, 0x08, 0x03, 0x12, 0x01, b'x']),
        3
    );
    assert_eq!(rejected_spans(&[]), 0, "full success");
    assert_eq!(rejected_spans(b"ok"), 0, "not protobuf");
    assert_eq!(rejected_spans(&[0x0a, 0x09, 0x08]), 0, "truncated");
}

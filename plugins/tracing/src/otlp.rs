//! Finished spans and their OTLP/HTTP JSON encoding: an `ExportTraceServiceRequest`
//! (`resourceSpans` → `scopeSpans` → `spans`) as the OTLP specification maps protobuf to
//! JSON: ids as lowercase hex strings, 64-bit integers (times, `intValue`) as decimal
//! strings, enums as integers, camelCase field names.

use serde_json::{json, Value};

use crate::context::{hex, SpanId, TraceId};

/// `SPAN_KIND_SERVER`.
const KIND_SERVER: u32 = 2;
/// `STATUS_CODE_ERROR`.
const STATUS_ERROR: u32 = 2;
/// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK` and `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
}

/// A finished SERVER span of the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The client's span, when the request came with a valid `traceparent`.
    pub parent_span_id: Option<SpanId>,
    pub trace_state: String,
    pub name: String,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// The response was a 5xx.
    pub error: bool,
}

impl Span {
    fn to_json(&self) -> Value {
        // Sampled (only sampled spans are exported), and whether the parent is remote.
        let remote = if self.parent_span_id.is_some() {
            IS_REMOTE
        } else {
            0
        };
        let flags = 0x01 | HAS_IS_REMOTE | remote;
        let status = if self.error {
            json!({"code": STATUS_ERROR})
        } else {
            json!({})
        };
        let attributes: Vec<Value> = self
            .attributes
            .iter()
            .map(|(k, v)| attribute(k, v))
            .collect();
        let mut span = json!({
            "traceId": hex(&self.trace_id),
            "spanId": hex(&self.span_id),
            "name": self.name,
            "kind": KIND_SERVER,
            "startTimeUnixNano": self.start_unix_nanos.to_string(),
            "endTimeUnixNano": self.end_unix_nanos.to_string(),
            "attributes": attributes,
            "flags": flags,
            "status": status,
        });
        if let Some(parent) = &self.parent_span_id {
            span["parentSpanId"] = Value::String(hex(parent));
        }
        if !self.trace_state.is_empty() {
            span["traceState"] = Value::String(self.trace_state.clone());
        }
        span
    }
}

fn attribute(key: &str, value: &AttrValue) -> Value {
    let value = match value {
        AttrValue::Str(s) => json!({"stringValue": s}),
        AttrValue::Int(i) => json!({"intValue": i.to_string()}),
    };
    json!({"key": key, "value": value})
}

/// The body of one `POST /v1/traces`.
pub fn export_request(service_name: &str, spans: &[Span]) -> Vec<u8> {
    json!({
        "resourceSpans": [{
            "resource": {
                "attributes": [attribute("service.name", &AttrValue::Str(service_name.to_owned()))]
            },
            "scopeSpans": [{
                "scope": {"name": "aistack.tracing", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans.iter().map(Span::to_json).collect::<Vec<Value>>(),
            }]
        }]
    })
    .to_string()
    .into_bytes()
}

/// Spans the collector says it rejected (`partialSuccess.rejectedSpans` of an
/// `ExportTraceServiceResponse`); 0 when the body says nothing of it.
pub fn rejected_spans(response_body: &[u8]) -> u64 {
    let Ok(body) = serde_json::from_slice::<Value>(response_body) else {
        return 0;
    };
    match &body["partialSuccess"]["rejectedSpans"] {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(parent: Option<SpanId>, error: bool) -> Span {
        Span {
            trace_id: [0xab; 16],
            span_id: [0x01; 8],
            parent_span_id: parent,
            trace_state: if parent.is_some() {
                "k=v".into()
            } else {
                String::new()
            },
            name: "GET api".into(),
            start_unix_nanos: 1_700_000_000_000_000_001,
            end_unix_nanos: 1_700_000_000_500_000_000,
            attributes: vec![
                ("http.request.method", AttrValue::Str("GET".into())),
                ("http.response.status_code", AttrValue::Int(503)),
            ],
            error,
        }
    }

    #[test]
    fn the_export_request_follows_the_otlp_json_mapping() {
        let body = export_request("svc", &[span(Some([0x02; 8]), true), span(None, false)]);
        let v: Value = serde_json::from_slice(&body).expect("json");
        let rs = &v["resourceSpans"][0];
        assert_eq!(rs["resource"]["attributes"][0]["key"], "service.name");
        assert_eq!(
            rs["resource"]["attributes"][0]["value"]["stringValue"],
            "svc"
        );
        let spans = &rs["scopeSpans"][0]["spans"];
        let first = &spans[0];
        assert_eq!(first["traceId"], "abababababababababababababababab");
        assert_eq!(first["spanId"], "0101010101010101");
        assert_eq!(first["parentSpanId"], "0202020202020202");
        assert_eq!(first["traceState"], "k=v");
        assert_eq!(first["kind"], 2);
        assert_eq!(first["startTimeUnixNano"], "1700000000000000001");
        assert_eq!(first["endTimeUnixNano"], "1700000000500000000");
        assert_eq!(first["status"]["code"], 2);
        assert_eq!(first["flags"], 0x301);
        assert_eq!(first["attributes"][1]["value"]["intValue"], "503");
        let second = &spans[1];
        assert!(second.get("parentSpanId").is_none());
        assert!(second.get("traceState").is_none());
        assert_eq!(second["status"], json!({}));
        assert_eq!(second["flags"], 0x101);
    }

    #[test]
    fn partial_success_is_read() {
        assert_eq!(
            rejected_spans(br#"{"partialSuccess":{"rejectedSpans":"3"}}"#),
            3
        );
        assert_eq!(
            rejected_spans(br#"{"partialSuccess":{"rejectedSpans":2}}"#),
            2
        );
        assert_eq!(rejected_spans(b"{}"), 0);
        assert_eq!(rejected_spans(b""), 0);
    }
}

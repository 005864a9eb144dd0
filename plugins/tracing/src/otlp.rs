//! Finished spans and their OTLP/HTTP JSON encoding: an `ExportTraceServiceRequest`
//! (`resourceSpans` → `scopeSpans` → `spans`) as the OTLP specification maps protobuf to
//! JSON: ids as lowercase hex strings, 64-bit integers (times, `intValue`) as decimal
//! strings, enums as integers, camelCase field names.

use serde::Serialize;
use serde_json::Value;

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

// The JSON is written straight from borrowed views of the spans (serde derive), never
// through `serde_json::Value` trees: a batch of 512 spans used to cost tens of thousands
// of small allocations inside the VM, the largest per-request cost of the filter.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan<'a> {
    trace_id: String,
    span_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_span_id: Option<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    trace_state: &'a str,
    name: &'a str,
    kind: u32,
    start_time_unix_nano: String,
    end_time_unix_nano: String,
    attributes: Vec<JsonAttribute<'a>>,
    flags: u32,
    status: JsonStatus,
}

#[derive(Serialize)]
struct JsonStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u32>,
}

#[derive(Serialize)]
struct JsonAttribute<'a> {
    key: &'a str,
    value: JsonValue<'a>,
}

#[derive(Serialize)]
enum JsonValue<'a> {
    #[serde(rename = "stringValue")]
    Str(&'a str),
    /// 64-bit integers are decimal strings in OTLP JSON.
    #[serde(rename = "intValue")]
    Int(String),
}

impl<'a> JsonAttribute<'a> {
    fn of(key: &'a str, value: &'a AttrValue) -> Self {
        let value = match value {
            AttrValue::Str(s) => JsonValue::Str(s),
            AttrValue::Int(i) => JsonValue::Int(i.to_string()),
        };
        JsonAttribute { key, value }
    }
}

impl Span {
    fn json(&self) -> JsonSpan<'_> {
        // Sampled (only sampled spans are exported), and whether the parent is remote.
        let remote = if self.parent_span_id.is_some() {
            IS_REMOTE
        } else {
            0
        };
        JsonSpan {
            trace_id: hex(&self.trace_id),
            span_id: hex(&self.span_id),
            parent_span_id: self.parent_span_id.as_ref().map(|p| hex(p)),
            trace_state: &self.trace_state,
            name: &self.name,
            kind: KIND_SERVER,
            start_time_unix_nano: self.start_unix_nanos.to_string(),
            end_time_unix_nano: self.end_unix_nanos.to_string(),
            attributes: self
                .attributes
                .iter()
                .map(|(k, v)| JsonAttribute::of(k, v))
                .collect(),
            flags: 0x01 | HAS_IS_REMOTE | remote,
            status: JsonStatus {
                code: self.error.then_some(STATUS_ERROR),
            },
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportRequest<'a> {
    resource_spans: [ResourceSpans<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans<'a> {
    resource: Resource<'a>,
    scope_spans: [ScopeSpans<'a>; 1],
}

#[derive(Serialize)]
struct Resource<'a> {
    attributes: [JsonAttribute<'a>; 1],
}

#[derive(Serialize)]
struct ScopeSpans<'a> {
    scope: Scope,
    spans: Vec<JsonSpan<'a>>,
}

#[derive(Serialize)]
struct Scope {
    name: &'static str,
    version: &'static str,
}

/// The body of one `POST /v1/traces`.
pub fn export_request(service_name: &str, spans: &[Span]) -> Vec<u8> {
    let service = AttrValue::Str(service_name.to_owned());
    let request = ExportRequest {
        resource_spans: [ResourceSpans {
            resource: Resource {
                attributes: [JsonAttribute::of("service.name", &service)],
            },
            scope_spans: [ScopeSpans {
                scope: Scope {
                    name: "aistack.tracing",
                    version: env!("CARGO_PKG_VERSION"),
                },
                spans: spans.iter().map(Span::json).collect(),
            }],
        }],
    };
    // Serializing plain structs of strings and numbers cannot fail.
    serde_json::to_vec(&request).unwrap_or_default()
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
    use serde_json::json;

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

//! The OTLP/HTTP JSON encoding (`encoding: json`): an `ExportTraceServiceRequest`
//! (`resourceSpans` → `scopeSpans` → `spans`) as the OTLP specification maps protobuf to
//! JSON: ids as lowercase hex strings, 64-bit integers (times, `intValue`) as decimal
//! strings, enums as integers, camelCase field names.

use serde::Serialize;
use serde_json::Value;

use super::{AttrValue, Span, KIND_SERVER, SCOPE_NAME, SCOPE_VERSION, STATUS_ERROR};
use crate::context::hex;

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
            flags: self.flags(),
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
                    name: SCOPE_NAME,
                    version: SCOPE_VERSION,
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
    use super::super::test_span as span;
    use super::*;
    use serde_json::json;

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

//! Finished spans and their OTLP/HTTP export encodings: protobuf (`proto.rs`,
//! `application/x-protobuf`, the OTLP/HTTP default and the one every collector must
//! accept) and JSON (`json.rs`, `application/json`), chosen by the `encoding` key.

mod json;
mod proto;

use crate::context::{SpanId, TraceId};

/// `SPAN_KIND_SERVER`.
const KIND_SERVER: u32 = 2;
/// `STATUS_CODE_ERROR`.
const STATUS_ERROR: u32 = 2;
/// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK` and `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;
/// The instrumentation scope of every span.
const SCOPE_NAME: &str = "aistack.tracing";
const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

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
    /// The span's `flags`: sampled (only sampled spans are exported), and whether the
    /// parent is remote.
    fn flags(&self) -> u32 {
        let remote = if self.parent_span_id.is_some() {
            IS_REMOTE
        } else {
            0
        };
        0x01 | HAS_IS_REMOTE | remote
    }
}

/// How export requests are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The export request's `content-type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }

    /// The body of one `POST /v1/traces`: an `ExportTraceServiceRequest` of `spans`.
    pub fn export_request(self, service_name: &str, spans: &[Span]) -> Vec<u8> {
        match self {
            Encoding::Protobuf => proto::export_request(service_name, spans),
            Encoding::Json => json::export_request(service_name, spans),
        }
    }
}

/// Spans the collector says it rejected (`partial_success.rejected_spans` of its
/// `ExportTraceServiceResponse`, read as its `content-type` says: JSON, else protobuf); 0
/// when the body says nothing of it.
pub fn rejected_spans(content_type: Option<&str>, response_body: &[u8]) -> u64 {
    let json = content_type.is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if json {
        json::rejected_spans(response_body)
    } else {
        proto::rejected_spans(response_body)
    }
}

/// A span for the encoders' tests.
#[cfg(test)]
fn test_span(parent: Option<SpanId>, error: bool) -> Span {
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

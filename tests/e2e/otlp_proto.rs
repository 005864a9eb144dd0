//! The test collector's reader of OTLP/HTTP protobuf export requests: the protobuf wire
//! format of an `ExportTraceServiceRequest` decoded into the OTLP JSON mapping (camelCase
//! names, ids as lowercase hex, 64-bit integers as decimal strings), so that the tracing
//! tests read either encoding the same way. Written from opentelemetry-proto's field
//! numbers for the fields a gateway span has; any other field, a wrong wire type or a
//! truncated message is an error, so a wrong field number fails the tests.

use serde_json::{Map, Value};

#[derive(Clone, Copy)]
enum Kind {
    Message(&'static [Field]),
    String,
    /// `bytes` ids, shown as lowercase hex.
    Hex,
    Varint,
    /// An `int64` varint, shown as a decimal string.
    Int64,
    /// A `fixed64`, shown as a decimal string.
    Fixed64,
    Fixed32,
}

struct Field {
    number: u64,
    name: &'static str,
    kind: Kind,
    repeated: bool,
}

const fn f(number: u64, name: &'static str, kind: Kind, repeated: bool) -> Field {
    Field {
        number,
        name,
        kind,
        repeated,
    }
}

const ANY_VALUE: &[Field] = &[
    f(1, "stringValue", Kind::String, false),
    f(3, "intValue", Kind::Int64, false),
];
const KEY_VALUE: &[Field] = &[
    f(1, "key", Kind::String, false),
    f(2, "value", Kind::Message(ANY_VALUE), false),
];
const STATUS: &[Field] = &[
    f(2, "message", Kind::String, false),
    f(3, "code", Kind::Varint, false),
];
const SPAN: &[Field] = &[
    f(1, "traceId", Kind::Hex, false),
    f(2, "spanId", Kind::Hex, false),
    f(3, "traceState", Kind::String, false),
    f(4, "parentSpanId", Kind::Hex, false),
    f(5, "name", Kind::String, false),
    f(6, "kind", Kind::Varint, false),
    f(7, "startTimeUnixNano", Kind::Fixed64, false),
    f(8, "endTimeUnixNano", Kind::Fixed64, false),
    f(9, "attributes", Kind::Message(KEY_VALUE), true),
    f(15, "status", Kind::Message(STATUS), false),
    f(16, "flags", Kind::Fixed32, false),
];
const SCOPE: &[Field] = &[
    f(1, "name", Kind::String, false),
    f(2, "version", Kind::String, false),
];
const SCOPE_SPANS: &[Field] = &[
    f(1, "scope", Kind::Message(SCOPE), false),
    f(2, "spans", Kind::Message(SPAN), true),
];
const RESOURCE: &[Field] = &[f(1, "attributes", Kind::Message(KEY_VALUE), true)];
const RESOURCE_SPANS: &[Field] = &[
    f(1, "resource", Kind::Message(RESOURCE), false),
    f(2, "scopeSpans", Kind::Message(SCOPE_SPANS), true),
];
const EXPORT_REQUEST: &[Field] = &[f(1, "resourceSpans", Kind::Message(RESOURCE_SPANS), true)];

/// An `ExportTraceServiceRequest` as its OTLP JSON form; `Err` says what is wrong.
pub fn export_request(bytes: &[u8]) -> Result<Value, String> {
    message(bytes, EXPORT_REQUEST)
}

fn message(mut bytes: &[u8], fields: &[Field]) -> Result<Value, String> {
    let mut out = Map::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let (number, wire) = (key >> 3, key & 7);
        let field = fields
            .iter()
            .find(|f| f.number == number)
            .ok_or_else(|| format!("unexpected field {number} (wire type {wire})"))?;
        let expected = match field.kind {
            Kind::Varint | Kind::Int64 => 0,
            Kind::Fixed64 => 1,
            Kind::Fixed32 => 5,
            Kind::Message(_) | Kind::String | Kind::Hex => 2,
        };
        if wire != expected {
            return Err(format!(
                "{}: wire type {wire}, expected {expected}",
                field.name
            ));
        }
        let value = match field.kind {
            Kind::Varint => Value::from(varint(&mut bytes)?),
            Kind::Int64 => Value::from((varint(&mut bytes)? as i64).to_string()),
            Kind::Fixed64 => {
                let b = take(&mut bytes, 8)?;
                Value::from(u64::from_le_bytes(b.try_into().expect("8 bytes")).to_string())
            }
            Kind::Fixed32 => {
                let b = take(&mut bytes, 4)?;
                Value::from(u32::from_le_bytes(b.try_into().expect("4 bytes")))
            }
            Kind::Message(inner) => message(length_delimited(&mut bytes)?, inner)?,
            Kind::String => {
                let content = length_delimited(&mut bytes)?;
                let text = std::str::from_utf8(content)
                    .map_err(|_| format!("{}: not UTF-8", field.name))?;
                Value::from(text)
            }
            Kind::Hex => {
                let content = length_delimited(&mut bytes)?;
                Value::from(
                    content
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>(),
                )
            }
        };
        if field.repeated {
            let list = out
                .entry(field.name)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = list {
                items.push(value);
            }
        } else if out.insert(field.name.to_owned(), value).is_some() {
            return Err(format!("{} appears twice", field.name));
        }
    }
    Ok(Value::Object(out))
}

fn length_delimited<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = usize::try_from(varint(bytes)?).map_err(|e| e.to_string())?;
    take(bytes, len)
}

fn varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first().ok_or("truncated varint")?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".to_owned())
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if bytes.len() < n {
        return Err(format!("truncated: {n} bytes wanted, {} left", bytes.len()));
    }
    let (taken, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(taken)
}

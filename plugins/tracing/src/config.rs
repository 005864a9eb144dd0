//! The plugin configuration: the operator's JSON ([`RawConfig`], unknown keys refused) and
//! the validated form ([`Config`]). Every error names the key at fault.

use std::time::Duration;

use serde::Deserialize;

use crate::otlp::Encoding;

/// Defaults (those of the OpenTelemetry SDKs' batch span processor and OTLP exporter
/// where they have one).
const DEFAULT_PATH: &str = "/v1/traces";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_SERVICE_NAME: &str = "aistack";
const DEFAULT_MAX_BATCH_SIZE: usize = 512;
const DEFAULT_MAX_QUEUE_SIZE: usize = 2048;
const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Largest `max_queue_size`: a queue is per worker thread, in the VM's memory.
const MAX_QUEUE_SIZE: usize = 65_536;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    collector: RawCollector,
    service_name: Option<String>,
    sample_ratio: Option<f64>,
    max_batch_size: Option<usize>,
    max_queue_size: Option<usize>,
    flush_interval: Option<String>,
    encoding: Option<RawEncoding>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawEncoding {
    Protobuf,
    Json,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    upstream: String,
    path: Option<String>,
    timeout: Option<String>,
    authority: Option<String>,
}

/// Where spans go: an upstream of the gateway's config.
#[derive(Debug, PartialEq)]
pub struct Collector {
    pub upstream: String,
    pub path: String,
    pub authority: String,
    pub timeout: Duration,
}

/// The validated configuration.
#[derive(Debug, PartialEq)]
pub struct Config {
    pub collector: Collector,
    pub service_name: String,
    pub sample_ratio: f64,
    pub max_batch_size: usize,
    pub max_queue_size: usize,
    pub flush_interval: Duration,
    /// How export requests are encoded (`protobuf`, OTLP/HTTP's default, or `json`).
    pub encoding: Encoding,
}

/// Parses and validates the configuration; the error says which key is wrong and why.
pub fn parse(bytes: &[u8]) -> Result<Config, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(
            "invalid configuration: `collector` is required (`{\"collector\": {\"upstream\": NAME}}`)"
                .to_owned(),
        );
    }
    let raw: RawConfig =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid configuration: {e}"))?;
    let bad = |key: &str, why: String| format!("invalid configuration: {key}: {why}");
    let c = raw.collector;
    if c.upstream.is_empty() {
        return Err(bad("collector.upstream", "must name an upstream".into()));
    }
    let path = c.path.unwrap_or_else(|| DEFAULT_PATH.to_owned());
    if !path.starts_with('/') {
        return Err(bad(
            "collector.path",
            format!("must start with `/`, got {path:?}"),
        ));
    }
    let timeout = optional_duration(c.timeout.as_deref(), DEFAULT_TIMEOUT)
        .map_err(|e| bad("collector.timeout", e))?;
    if timeout.is_zero() || timeout > Duration::from_secs(60) {
        return Err(bad("collector.timeout", "must be from 1ms to 60s".into()));
    }
    let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(bad(
            "sample_ratio",
            format!("must be from 0 to 1, got {sample_ratio}"),
        ));
    }
    let max_queue_size = raw.max_queue_size.unwrap_or(DEFAULT_MAX_QUEUE_SIZE);
    if !(1..=MAX_QUEUE_SIZE).contains(&max_queue_size) {
        return Err(bad(
            "max_queue_size",
            format!("must be from 1 to {MAX_QUEUE_SIZE}"),
        ));
    }
    let max_batch_size = raw
        .max_batch_size
        .unwrap_or(DEFAULT_MAX_BATCH_SIZE.min(max_queue_size));
    if max_batch_size == 0 || max_batch_size > max_queue_size {
        return Err(bad(
            "max_batch_size",
            format!("must be from 1 to max_queue_size ({max_queue_size})"),
        ));
    }
    let flush_interval = optional_duration(raw.flush_interval.as_deref(), DEFAULT_FLUSH_INTERVAL)
        .map_err(|e| bad("flush_interval", e))?;
    if flush_interval < Duration::from_millis(10) {
        return Err(bad("flush_interval", "must be at least 10ms".into()));
    }
    let service_name = raw
        .service_name
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    if service_name.is_empty() {
        return Err(bad("service_name", "must not be empty".into()));
    }
    Ok(Config {
        collector: Collector {
            authority: c.authority.unwrap_or_else(|| c.upstream.clone()),
            upstream: c.upstream,
            path,
            timeout,
        },
        service_name,
        sample_ratio,
        max_batch_size,
        max_queue_size,
        flush_interval,
        encoding: match raw.encoding {
            None | Some(RawEncoding::Protobuf) => Encoding::Protobuf,
            Some(RawEncoding::Json) => Encoding::Json,
        },
    })
}

fn optional_duration(text: Option<&str>, default: Duration) -> Result<Duration, String> {
    text.map_or(Ok(default), duration)
}

/// `250ms`, `30s`, `5m`, `1h`.
fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let wrong = || format!("{text:?} is not a duration like 500ms, 5s, 1m or 1h");
    let n: u64 = number.parse().map_err(|_| wrong())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(wrong()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_a_minimal_config() {
        let config = parse(br#"{"collector": {"upstream": "otel"}}"#).expect("valid");
        assert_eq!(
            config,
            Config {
                collector: Collector {
                    upstream: "otel".into(),
                    path: "/v1/traces".into(),
                    authority: "otel".into(),
                    timeout: Duration::from_secs(10),
                },
                service_name: "aistack".into(),
                sample_ratio: 1.0,
                max_batch_size: 512,
                max_queue_size: 2048,
                flush_interval: Duration::from_secs(5),
                encoding: Encoding::Protobuf,
            }
        );
        let json = parse(br#"{"collector": {"upstream": "o"}, "encoding": "json"}"#);
        assert_eq!(json.expect("valid").encoding, Encoding::Json);
        let small = parse(br#"{"collector": {"upstream": "o"}, "max_queue_size": 10}"#);
        assert_eq!(small.expect("valid").max_batch_size, 10);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: [(&[u8], &str); 12] = [
            (b"", "`collector` is required"),
            (b"{}", "missing field `collector`"),
            (br#"{"collector": {}}"#, "missing field `upstream`"),
            (br#"{"collector": {"upstream": ""}}"#, "collector.upstream"),
            (
                br#"{"collector": {"upstream": "o", "path": "v1"}}"#,
                "collector.path",
            ),
            (
                br#"{"collector": {"upstream": "o", "timeout": "soon"}}"#,
                "collector.timeout",
            ),
            (
                br#"{"collector": {"upstream": "o"}, "sample_ratio": 1.5}"#,
                "sample_ratio: must be from 0 to 1",
            ),
            (
                br#"{"collector": {"upstream": "o"}, "sample_ratio": -0.1}"#,
                "sample_ratio",
            ),
            (
                br#"{"collector": {"upstream": "o"}, "max_batch_size": 0}"#,
                "max_batch_size",
            ),
            (
                br#"{"collector": {"upstream": "o"}, "flush_interval": "1ms"}"#,
                "flush_interval",
            ),
            (
                br#"{"collector": {"upstream": "o"}, "encoding": "xml"}"#,
                "unknown variant `xml`, expected `protobuf` or `json`",
            ),
            (
                br#"{"collector": {"upstream": "o"}, "ratio": 1}"#,
                "unknown field `ratio`",
            ),
        ];
        for (bytes, want) in cases {
            let err = parse(bytes).expect_err(&String::from_utf8_lossy(bytes));
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }
}

//! The built-in `tracing` filter through the real gateway: W3C `traceparent` in from the
//! client, a new span id out to the upstream (the echo upstream reports what it got), and
//! the gateway's span exported over OTLP/HTTP to a test collector that speaks the
//! OTLP/HTTP contract (`POST /v1/traces`, an `ExportTraceServiceRequest` in protobuf, the
//! default, or JSON; 200 with an `ExportTraceServiceResponse` in the same encoding). The
//! collector decodes protobuf into the OTLP JSON mapping (`otlp_proto`), so every test
//! reads spans one way. Also sampling, batching, a dead collector, the access log's
//! `trace_id`, and configurations the filter refuses at load.

use std::time::{Duration, Instant};

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::{Aistack, Ports, free_port, render, run_cli};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::otlp_proto;
use crate::wasm_common::{seen, seen_all, start};

const PROTOBUF: &str = "application/x-protobuf";

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// One request the collector received.
struct Post {
    method: String,
    path: String,
    content_type: String,
    body: Value,
}

impl Post {
    /// Every span of the request, across resource and scope spans.
    fn spans(&self) -> Vec<Value> {
        let mut spans = Vec::new();
        for rs in self.body["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                spans.extend(ss["spans"].as_array().into_iter().flatten().cloned());
            }
        }
        spans
    }
}

/// A loopback OTLP/HTTP collector (keep-alive HTTP/1.1); every request it received is
/// sent on the channel.
struct Collector {
    port: u16,
    posts: mpsc::UnboundedReceiver<Post>,
}

impl Collector {
    async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind collector");
        let port = listener.local_addr().expect("addr").port();
        let (tx, posts) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_collector(stream, tx.clone()));
            }
        });
        Collector { port, posts }
    }

    /// The next request (10 s at most).
    async fn next(&mut self) -> Post {
        tokio::time::timeout(Duration::from_secs(10), self.posts.recv())
            .await
            .expect("the collector got nothing within 10 s")
            .expect("collector running")
    }

    /// Spans until one of trace `trace_id` arrives; every span before it too.
    async fn until_trace(&mut self, trace_id: &str) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            all.extend(self.next().await.spans());
            if all.iter().any(|s| s["traceId"] == trace_id) {
                return all;
            }
        }
    }
}

async fn serve_collector(stream: tokio::net::TcpStream, tx: mpsc::UnboundedSender<Post>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let (mut length, mut content_type) = (0usize, String::new());
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    "content-type" => content_type = v.trim().to_owned(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        // A full success (`ExportTraceServiceResponse` without `partial_success`) in the
        // request's encoding.
        let (body, answer) = if content_type == PROTOBUF {
            // Undecodable: the tests see why in the body they check.
            let decoded = otlp_proto::export_request(&body)
                .unwrap_or_else(|e| Value::from(format!("not an OTLP export request: {e}")));
            (decoded, "")
        } else {
            (serde_json::from_slice(&body).unwrap_or(Value::Null), "{}")
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        if write.write_all(head.as_bytes()).await.is_err()
            || write.write_all(answer.as_bytes()).await.is_err()
        {
            return;
        }
        let _ = tx.send(Post {
            method,
            path,
            content_type,
            body,
        });
    }
}

/// Routes `traced` (the filter with `config`) and `plain` (no filter) to the echo
/// upstream, and the upstream `otel` at `collector_port`.
fn routes(config: &Value, collector_port: u16) -> String {
    format!(
        "upstreams:\n  echo:\n    targets: [127.0.0.1:{{echo}}]\n\
         \x20 otel:\n    targets: [127.0.0.1:{collector_port}]\n\
         \x20 dead:\n    targets: [127.0.0.1:{dead}]\n\
         routes:\n  - name: traced\n    path: /traced\n    upstream: echo\n    plugins:\n\
         \x20     - name: tracing\n        config: {config}\n\
         \x20 - name: broken\n    path: /broken\n    upstream: dead\n    plugins:\n\
         \x20     - name: tracing\n        config: {config}\n\
         \x20 - name: plain\n    path: /plain\n    upstream: echo\n",
        dead = free_port(),
    )
}

async fn get(url: String, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

/// The `traceparent` the echo upstream got, split: version, trace id, parent id, flags.
async fn upstream_traceparent(r: reqwest::Response) -> Vec<String> {
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.expect("echo json");
    let value = seen(&echoed, "traceparent");
    let parts: Vec<String> = value.split('-').map(str::to_owned).collect();
    assert_eq!(parts.len(), 4, "upstream traceparent {value:?}");
    parts
}

fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == key))
        .map_or(&Value::Null, |kv| &kv["value"])
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test]
async fn client_gateway_and_upstream_spans_link_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let mut collector = Collector::start().await;
    let config = json!({"collector": {"upstream": "otel"}, "service_name": "edge-gw",
                        "flush_interval": "50ms"});
    let gw = start(&echo, dir.path(), 1, &routes(&config, collector.port)).await;

    let incoming = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let r = get(
        gw.url("/traced/items?q=1"),
        &[
            ("traceparent", &incoming),
            ("tracestate", "vendor=abc,other=1"),
        ],
    )
    .await;
    let request_id = r
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let echoed: Value = r.json().await.expect("echo json");
    let upstream = seen(&echoed, "traceparent");
    let parts: Vec<&str> = upstream.split('-').collect();
    assert_eq!(parts.len(), 4, "{upstream:?}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE, "01"),
        "{upstream}"
    );
    let gateway_span = parts[2];
    assert!(is_hex(gateway_span, 16) && gateway_span != "0000000000000000");
    assert_ne!(
        gateway_span, CLIENT_SPAN,
        "the upstream's parent is the gateway's span"
    );
    assert_eq!(seen(&echoed, "tracestate"), "vendor=abc,other=1");

    let post = collector.next().await;
    assert_eq!(
        (post.method.as_str(), post.path.as_str()),
        ("POST", "/v1/traces")
    );
    assert_eq!(post.content_type, PROTOBUF, "OTLP/HTTP's default encoding");
    let resource = &post.body["resourceSpans"][0]["resource"]["attributes"][0];
    assert_eq!(resource["key"], "service.name");
    assert_eq!(resource["value"]["stringValue"], "edge-gw");
    let spans = post.spans();
    assert_eq!(spans.len(), 1, "{}", post.body);
    let span = &spans[0];
    // client (CLIENT_SPAN) → gateway (gateway_span) → upstream (its parent: gateway_span)
    assert_eq!(span["traceId"], TRACE);
    assert_eq!(span["spanId"], gateway_span);
    assert_eq!(span["parentSpanId"], CLIENT_SPAN);
    assert_eq!(span["traceState"], "vendor=abc,other=1");
    assert_eq!(span["kind"], 2, "SPAN_KIND_SERVER");
    assert_eq!(span["name"], "GET traced");
    let start: u128 = span["startTimeUnixNano"]
        .as_str()
        .expect("string")
        .parse()
        .expect("ns");
    let end: u128 = span["endTimeUnixNano"]
        .as_str()
        .expect("string")
        .parse()
        .expect("ns");
    assert!(
        start > 1_600_000_000_000_000_000 && start <= end,
        "{start} {end}"
    );
    assert_eq!(attribute(span, "http.request.method")["stringValue"], "GET");
    assert_eq!(attribute(span, "url.path")["stringValue"], "/traced/items");
    assert_eq!(
        attribute(span, "http.response.status_code")["intValue"],
        "200"
    );
    assert_eq!(attribute(span, "aistack.route")["stringValue"], "traced");
    let logged_id = attribute(span, "aistack.request_id")["stringValue"].clone();
    assert!(
        logged_id.as_str().is_some_and(|id| !id.is_empty()),
        "{span}"
    );
    if let Some(id) = request_id {
        assert_eq!(logged_id, id.as_str());
    }
    assert!(span["status"].get("code").is_none(), "not an error: {span}");

    // Without the filter the client's traceparent reaches the upstream as it came.
    let plain =
        upstream_traceparent(get(gw.url("/plain"), &[("traceparent", &incoming)]).await).await;
    assert_eq!(plain[2], CLIENT_SPAN);
}

#[tokio::test]
async fn a_missing_or_invalid_traceparent_starts_a_new_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let mut collector = Collector::start().await;
    let config = json!({"collector": {"upstream": "otel"}, "flush_interval": "50ms"});
    let gw = start(&echo, dir.path(), 1, &routes(&config, collector.port)).await;

    let fresh = upstream_traceparent(get(gw.url("/traced/a"), &[]).await).await;
    assert_eq!(fresh[0], "00");
    assert!(
        is_hex(&fresh[1], 32) && fresh[1] != "0".repeat(32),
        "{fresh:?}"
    );
    assert_eq!(fresh[3], "01", "sample_ratio 1 samples every new trace");
    let spans = collector.until_trace(&fresh[1]).await;
    let span = spans
        .iter()
        .find(|s| s["traceId"] == fresh[1])
        .expect("span");
    assert_eq!(
        span["spanId"],
        fresh[2].as_str(),
        "upstream and collector agree"
    );
    assert!(span.get("parentSpanId").is_none(), "a root span: {span}");

    let invalid = [
        format!("00-{}-{CLIENT_SPAN}-01", TRACE.to_uppercase()),
        format!("00-{}-{CLIENT_SPAN}-01", "0".repeat(32)),
        format!("ff-{TRACE}-{CLIENT_SPAN}-01"),
        format!("00-{TRACE}-{CLIENT_SPAN}-01-extra"),
    ];
    for value in &invalid {
        let r = get(
            gw.url("/traced/b"),
            &[("traceparent", value), ("tracestate", "vendor=abc")],
        )
        .await;
        let echoed: Value = r.json().await.expect("echo json");
        let parts: Vec<String> = seen(&echoed, "traceparent")
            .split('-')
            .map(str::to_owned)
            .collect();
        assert_eq!(parts.len(), 4, "{value}: {parts:?}");
        assert!(
            parts[1] != TRACE && is_hex(&parts[1], 32),
            "{value}: {parts:?}"
        );
        assert_eq!(
            seen(&echoed, "tracestate"),
            "",
            "tracestate goes with an invalid parent"
        );
        let spans = collector.until_trace(&parts[1]).await;
        let span = spans
            .iter()
            .find(|s| s["traceId"] == parts[1])
            .expect("span");
        assert!(span.get("parentSpanId").is_none(), "{value}: {span}");
    }

    // A later version is read as version 00 (and sent on as 00).
    let future = format!("cc-{TRACE}-{CLIENT_SPAN}-01-more-fields");
    let parts =
        upstream_traceparent(get(gw.url("/traced/c"), &[("traceparent", &future)]).await).await;
    assert_eq!((parts[0].as_str(), parts[1].as_str()), ("00", TRACE));

    // A 5xx is an error span.
    let r = get(gw.url("/broken"), &[]).await;
    assert_eq!(r.status(), 502);
    let spans = loop {
        let spans = collector.next().await.spans();
        if spans.iter().any(|s| s["name"] == "GET broken") {
            break spans;
        }
    };
    let span = spans
        .iter()
        .find(|s| s["name"] == "GET broken")
        .expect("span");
    assert_eq!(span["status"]["code"], 2, "STATUS_CODE_ERROR: {span}");
    assert_eq!(
        attribute(span, "http.response.status_code")["intValue"],
        "502"
    );
}

#[tokio::test]
async fn json_export_is_selectable_and_two_traceparents_start_a_new_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let mut collector = Collector::start().await;
    let config = json!({"collector": {"upstream": "otel"}, "encoding": "json",
                        "flush_interval": "50ms"});
    let gw = start(&echo, dir.path(), 1, &routes(&config, collector.port)).await;

    let incoming = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let parts = upstream_traceparent(
        get(
            gw.url("/traced/json"),
            &[("traceparent", &incoming), ("tracestate", "a=1")],
        )
        .await,
    )
    .await;
    assert_eq!(parts[1], TRACE);
    let post = collector.next().await;
    assert_eq!(post.content_type, "application/json");
    let spans = post.spans();
    assert_eq!(spans.len(), 1, "{}", post.body);
    assert_eq!(spans[0]["traceId"], TRACE);
    assert_eq!(spans[0]["parentSpanId"], CLIENT_SPAN);
    assert_eq!(spans[0]["traceState"], "a=1");
    assert_eq!(
        spans[0]["startTimeUnixNano"].as_str().map(str::len),
        Some(19)
    );

    // Two `traceparent` headers are as good as none: a new trace, tracestate dropped.
    let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let client = reqwest::Client::new();
    let r = client
        .get(gw.url("/traced/two"))
        .header("traceparent", &incoming)
        .header("traceparent", other)
        .header("tracestate", "a=1")
        .send()
        .await
        .expect("request");
    let echoed: Value = r.json().await.expect("echo json");
    let sent = seen_all(&echoed, "traceparent");
    assert_eq!(sent.len(), 1, "one traceparent goes on: {sent:?}");
    assert!(
        !sent[0].contains(TRACE) && !sent[0].contains("0af7651916cd43dd8448eb211c80319c"),
        "{sent:?}"
    );
    assert_eq!(seen(&echoed, "tracestate"), "");
}

#[tokio::test]
async fn sample_ratio_0_exports_only_what_a_sampled_parent_asks_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let mut collector = Collector::start().await;
    let config = json!({"collector": {"upstream": "otel"}, "sample_ratio": 0,
                        "max_batch_size": 1, "flush_interval": "10ms"});
    let gw = start(&echo, dir.path(), 1, &routes(&config, collector.port)).await;

    let new = upstream_traceparent(get(gw.url("/traced/new"), &[]).await).await;
    assert_eq!(new[3], "00", "a new trace is not sampled at ratio 0");
    let other_trace = "0af7651916cd43dd8448eb211c80319c";
    let unsampled = format!("00-{other_trace}-b7ad6b7169203331-00");
    let parts =
        upstream_traceparent(get(gw.url("/traced/p"), &[("traceparent", &unsampled)]).await).await;
    assert_eq!((parts[1].as_str(), parts[3].as_str()), (other_trace, "00"));
    assert_ne!(parts[2], "b7ad6b7169203331");
    // Parent-based: a sampled parent is honoured whatever the ratio.
    let sampled = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let parts =
        upstream_traceparent(get(gw.url("/traced/s"), &[("traceparent", &sampled)]).await).await;
    assert_eq!(parts[3], "01");

    // Spans leave one VM in order: the unsampled ones would have come first.
    let spans = collector.until_trace(TRACE).await;
    assert!(
        spans.iter().all(|s| s["traceId"] == TRACE),
        "only the sampled request is exported: {spans:?}"
    );
}

#[tokio::test]
async fn spans_are_exported_in_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let mut collector = Collector::start().await;
    // A batch leaves when full: the hour-long interval never elapses in the test.
    let config = json!({"collector": {"upstream": "otel"}, "max_batch_size": 3,
                        "flush_interval": "1h"});
    let gw = start(&echo, dir.path(), 1, &routes(&config, collector.port)).await;
    let mut traces = Vec::new();
    for i in 0..6 {
        let parts = upstream_traceparent(get(gw.url(&format!("/traced/{i}")), &[]).await).await;
        traces.push(parts[1].clone());
    }
    let first = collector.next().await.spans();
    let second = collector.next().await.spans();
    assert_eq!((first.len(), second.len()), (3, 3), "6 requests, 2 POSTs");
    let exported: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|s| s["traceId"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(exported, traces, "in request order");
    assert!(collector.posts.try_recv().is_err(), "no third POST");
}

#[tokio::test]
async fn a_dead_collector_costs_spans_not_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let config = json!({"collector": {"upstream": "otel", "timeout": "500ms"},
                        "max_batch_size": 1, "flush_interval": "10ms"});
    let gw = start(&echo, dir.path(), 1, &routes(&config, free_port())).await;
    for i in 0..10 {
        let parts = upstream_traceparent(get(gw.url(&format!("/traced/{i}")), &[]).await).await;
        assert_eq!(parts[3], "01");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let dropped = loop {
        let text = reqwest::get(gw.admin_url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let dropped: f64 = text
            .lines()
            .filter(|l| {
                l.starts_with("aistack_plugin_tracing_spans_dropped_total{")
                    && l.contains("reason=\"export_failed\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if dropped >= 1.0 || Instant::now() > deadline {
            break dropped;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        dropped >= 1.0,
        "failed exports are counted:\n{}",
        gw.output()
    );
    let output = gw.wait_for_output("tracing: exporting").await;
    assert!(output.contains("failed"), "{output}");
    // Still serving.
    assert_eq!(get(gw.url("/traced/after"), &[]).await.status(), 200);
}

#[tokio::test]
async fn the_access_log_carries_the_trace_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let collector = Collector::start().await;
    let config = json!({"collector": {"upstream": "otel"}});
    let ports = Ports::free();
    let yaml = format!(
        "listeners:\n  - address: 127.0.0.1:{{proxy}}\nadmin:\n  address: 127.0.0.1:{{admin}}\n\
         backend:\n  enabled: false\n  address: 127.0.0.1:{{backend}}\n\
         server:\n  threads: 1\n  grace_period: 1s\n  access_log: true\n{}",
        routes(&config, collector.port)
    );
    let yaml = render(&yaml, ports).replace("{echo}", &echo.port().to_string());
    let gw = Aistack::start("gateway", &yaml, ports, dir.path()).await;

    let incoming = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    get(gw.url("/traced/x"), &[("traceparent", &incoming)]).await;
    let output = gw.wait_for_output(&format!("trace_id={TRACE}")).await;
    assert!(output.contains(&format!("trace_id={TRACE}")), "{output}");

    // A new trace: the id the upstream got is the one logged.
    let fresh = upstream_traceparent(get(gw.url("/traced/y"), &[]).await).await;
    let output = gw.wait_for_output(&format!("trace_id={}", fresh[1])).await;
    assert!(
        output.contains(&format!("trace_id={}", fresh[1])),
        "{output}"
    );
}

#[test]
fn bad_configurations_are_refused_at_load_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            json!({"collector": {"upstream": "otel"}, "sample_ratio": 1.5}),
            "sample_ratio",
        ),
        (json!({"sample_ratio": 0.5}), "missing field `collector`"),
        (json!({"collector": {}}), "missing field `upstream`"),
        (
            json!({"collector": {"upstream": "nowhere"}}),
            "no upstream named \"nowhere\"",
        ),
        (
            json!({"collector": {"upstream": "otel", "path": "v1/traces"}}),
            "collector.path",
        ),
        (
            json!({"collector": {"upstream": "otel"}, "batch": 5}),
            "unknown field `batch`",
        ),
        (
            json!({"collector": {"upstream": "otel"}, "encoding": "thrift"}),
            "unknown variant `thrift`",
        ),
    ];
    for (config, reason) in cases {
        let yaml = format!(
            "backend:\n  enabled: false\nupstreams:\n  app:\n    targets: [127.0.0.1:9]\n\
             \x20 otel:\n    targets: [127.0.0.1:9]\n\
             routes:\n  - name: app\n    upstream: app\n    plugins:\n\
             \x20     - name: tracing\n        config: {config}\n"
        );
        std::fs::write(dir.path().join("aistack.yaml"), yaml).expect("write");
        let (status, _, stderr) = run_cli(&["validate", "aistack.yaml"], dir.path());
        assert!(!status.success(), "accepted {config}");
        assert!(stderr.contains("aistack.yaml:"), "{stderr}");
        assert!(
            stderr.contains("tracing") && stderr.contains("refused its configuration"),
            "{stderr}"
        );
        assert!(
            stderr.contains(reason),
            "{config}: want {reason:?} in\n{stderr}"
        );
    }
    // No config at all: the collector is required.
    let yaml = "backend:\n  enabled: false\nupstreams:\n  app:\n    targets: [127.0.0.1:9]\n\
                routes:\n  - name: app\n    upstream: app\n    plugins:\n      - name: tracing\n";
    std::fs::write(dir.path().join("aistack.yaml"), yaml).expect("write");
    let (status, _, stderr) = run_cli(&["validate", "aistack.yaml"], dir.path());
    assert!(
        !status.success() && stderr.contains("`collector` is required"),
        "{stderr}"
    );
}

#[test]
fn the_example_config_validates() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let (status, _, stderr) = run_cli(&["validate", "tracing.yaml"], &examples);
    assert!(status.success(), "{stderr}");
}

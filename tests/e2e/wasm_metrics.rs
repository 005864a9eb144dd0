//! Conformance, metrics and foreign functions: the `conf-metrics` filter
//! (tests/filters/conf-metrics) defines a counter, a gauge and a histogram, updates them
//! per request, and calls the gateway's named foreign functions; `/metrics` on the admin
//! API exports the plugin's series under the documented mapping.

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::filters;
use serde_json::Value;

use crate::wasm_common::{seen, start};

const CONFIG: &str = "upstreams:\n  echo:\n    targets: [127.0.0.1:{echo}]\n\
plugins:\n  conf-metrics:\n    path: {wasm}\n\
routes:\n  - name: metered\n    path: /\n    upstream: echo\n    plugins:\n      - name: conf-metrics\n";

async fn metrics(gw: &aistack_e2e::Aistack) -> String {
    reqwest::get(gw.admin_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of the sample line starting with `series ` ("" when absent).
fn sample(text: &str, series: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn plugin_metrics_are_exported_and_foreign_functions_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = filters::install("conf-metrics", dir.path());
    let gw = start(&echo, dir.path(), 2, &CONFIG.replace("{wasm}", &wasm)).await;
    let client = reqwest::Client::new();

    for i in 1..=5 {
        let r = client.get(gw.url("/abc")).send().await.expect("request");
        assert_eq!(r.status(), 200);
        let e: Value = r.json().await.expect("echo");
        // Read back with get_metric: one series for every VM of the plugin.
        assert_eq!(seen(&e, "x-requests"), i.to_string());
    }
    // The filter lowers its in-flight gauge in `on_log`, which runs after the response
    // was sent: wait (bounded) until the last request's log phase has run.
    let in_flight = "aistack_plugin_in_flight{plugin=\"conf-metrics\"}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut text = metrics(&gw).await;
    while sample(&text, in_flight) != "0" && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        text = metrics(&gw).await;
    }
    assert_eq!(sample(&text, in_flight), "0", "{text}");
    let counter = "aistack_plugin_requests_total{filter=\"conf\",plugin=\"conf-metrics\"}";
    assert_eq!(sample(&text, counter), "5", "{text}");
    assert_eq!(
        sample(
            &text,
            "aistack_plugin_path_bytes_sum{plugin=\"conf-metrics\"}"
        ),
        "20"
    );
    assert_eq!(
        sample(
            &text,
            "aistack_plugin_path_bytes_bucket{plugin=\"conf-metrics\",le=\"4\"}"
        ),
        "5"
    );

    // Foreign functions.
    let get = |path: &str| {
        let (client, url) = (client.clone(), gw.url(path));
        async move {
            let r = client.get(url).send().await.expect("request");
            r.text().await.expect("body")
        }
    };
    assert_eq!(
        get("/foreign/sha256/abc").await,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        get("/foreign/hmac/key/The%20quick").await.len(),
        64,
        "a 32-byte MAC in hex"
    );
    assert_eq!(get("/foreign/eq/secret/secret").await, "equal");
    assert_eq!(get("/foreign/eq/secret/secreT").await, "different");
    assert_eq!(get("/foreign/bad").await, "BadArgument");
    assert_eq!(get("/foreign/missing").await, "NotFound");

    // The cardinality cap: defining past it still succeeds for the plugin, the excess
    // is not exported and is counted.
    assert_eq!(get("/define-many/1200").await, "defined");
    let text = metrics(&gw).await;
    let exported = text
        .lines()
        .filter(|l| l.starts_with("aistack_plugin_many_total{"))
        .count();
    // requests, in_flight and path_bytes are 3 of the plugin's 1,000 series.
    assert_eq!(exported, 997, "capped");
    assert_eq!(
        sample(
            &text,
            "aistack_plugin_metrics_dropped_total{plugin=\"conf-metrics\"}"
        ),
        "203"
    );
    assert_eq!(echo.hits(), 5);
}

//! The plugin author's path of `examples/hello-filter/README.md`, followed to the letter:
//! the example crate built for wasm32-wasip1 (by tests/build.rs, as the README's
//! `cargo build`), its `.wasm` copied next to the config, declared under `plugins:` with
//! `path:`, configured on a route, and observed through HTTP.

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::filters;
use serde_json::Value;

use crate::wasm_common::{header, seen, start};

#[tokio::test]
async fn the_hello_filter_of_the_guide_runs_unmodified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = filters::install("hello-filter", dir.path());
    assert_eq!(wasm, "hello_filter.wasm", "the name the README copies");
    let body = format!(
        "upstreams:\n  app:\n    targets: [127.0.0.1:{{echo}}]\n\
         plugins:\n  hello:\n    path: {wasm}\n\
         routes:\n  - name: app\n    path: /\n    upstream: app\n    plugins:\n\
         \x20     - name: hello\n        config: {{greeting: bonjour}}\n"
    );
    let gw = start(&echo, dir.path(), 2, &body).await;
    let client = reqwest::Client::new();

    let r = client.get(gw.url("/hello")).send().await.expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "bonjour, world\n");
    assert_eq!(echo.hits(), 0, "/hello was answered by the filter");

    let r = client
        .get(gw.url("/anything"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-hello-route"), "app");
    let echoed: Value = r.json().await.expect("json");
    assert_eq!(seen(&echoed, "x-hello"), "bonjour");
    assert_eq!(echo.hits(), 1);
}

#[tokio::test]
async fn a_configuration_the_filter_refuses_stops_the_gateway_from_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = filters::install("hello-filter", dir.path());
    let config = format!(
        "backend:\n  enabled: false\nupstreams:\n  app:\n    targets: [127.0.0.1:9]\n\
         plugins:\n  hello:\n    path: {wasm}\n\
         routes:\n  - name: app\n    upstream: app\n    plugins:\n\
         \x20     - name: hello\n        config: {{greeting: 42}}\n"
    );
    std::fs::write(dir.path().join("aistack.yaml"), config).expect("write");
    let (status, _, stderr) = aistack_e2e::run_cli(&["validate", "aistack.yaml"], dir.path());
    assert!(
        !status.success(),
        "validate accepted a refused configuration"
    );
    assert!(
        stderr.contains("hello") && stderr.contains("refused its configuration"),
        "{stderr}"
    );
}

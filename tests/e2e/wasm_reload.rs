//! Hot reload of a plugin's `.wasm`: the file is replaced and the gateway told to reload
//! (`POST /config/reload` on the admin API, or SIGHUP); new requests run the new module.
//! A bad new module is refused (logged, 422 on the admin API) and the old one keeps
//! serving.

use std::path::Path;
use std::time::{Duration, Instant};

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::{Aistack, filters};
use serde_json::Value;

use crate::wasm_common::{seen, start};

/// `watch: false` (it continues the `server:` block): only the reloads the test asks for.
const CONFIG: &str = concat!(
    "  watch: false\n",
    "upstreams:\n  echo:\n    targets: [127.0.0.1:{echo}]\n",
    "plugins:\n  swapped:\n    path: swapped.wasm\n",
    "routes:\n  - name: r\n    path: /\n    upstream: echo\n",
    "    plugins:\n      - name: swapped\n",
);

/// Which conformance filter answered: `conf-faults` adds `x-faults`, `conf-metrics`
/// adds `x-requests`.
async fn which(client: &reqwest::Client, gw: &Aistack) -> &'static str {
    let r = client.get(gw.url("/x")).send().await.expect("request");
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.expect("echo");
    match (
        seen(&e, "x-faults").as_str(),
        seen(&e, "x-requests").is_empty(),
    ) {
        ("passed", true) => "conf-faults",
        ("", false) => "conf-metrics",
        _ => "neither",
    }
}

fn put(dir: &Path, filter: &str) {
    let bytes = std::fs::read(filters::path(filter)).expect("read wasm");
    std::fs::write(dir.join("swapped.wasm"), bytes).expect("replace the module");
}

#[tokio::test]
async fn a_replaced_module_is_picked_up_and_a_bad_one_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    put(dir.path(), "conf-faults");
    let gw = start(&echo, dir.path(), 2, CONFIG).await;
    let client = reqwest::Client::new();
    assert_eq!(which(&client, &gw).await, "conf-faults");

    // Replace the module, reload through the admin API.
    put(dir.path(), "conf-metrics");
    let r = client
        .post(gw.admin_url("/config/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 200);
    for _ in 0..4 {
        assert_eq!(which(&client, &gw).await, "conf-metrics");
    }

    // A bad module (not WebAssembly) is refused; the old module keeps serving.
    std::fs::write(dir.path().join("swapped.wasm"), b"not wasm at all").expect("write");
    let r = client
        .post(gw.admin_url("/config/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.expect("json");
    assert!(
        e["error"]["details"][0]
            .as_str()
            .unwrap_or_default()
            .contains("swapped"),
        "names the plugin: {e}"
    );
    for _ in 0..4 {
        assert_eq!(which(&client, &gw).await, "conf-metrics");
    }
    let output = gw.wait_for_output("config reload refused").await;
    assert!(output.contains("config reload refused"), "logged");

    // Back to the first module, by SIGHUP this time.
    put(dir.path(), "conf-faults");
    gw.signal("HUP");
    // A reload compiles the module: on a loaded machine, a debug build takes seconds.
    let deadline = Instant::now() + Duration::from_secs(60);
    while which(&client, &gw).await != "conf-faults" {
        assert!(
            Instant::now() < deadline,
            "SIGHUP reload not seen:\n{}",
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(which(&client, &gw).await, "conf-faults");
}

//! Shared by the `wasm_*` end-to-end modules: a gateway-only config around the routes and
//! plugins a test gives, with an echo upstream named `echo`.

use std::path::Path;

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::{Aistack, Ports, render};

/// Starts `aistack gateway` with `body` (the `upstreams:` entries beyond `echo`, then
/// `routes:` and `plugins:` sections, as YAML at the top level) appended to a base config
/// on free ports, with `worker_threads` proxy threads.
pub async fn start(echo: &EchoUpstream, dir: &Path, threads: usize, body: &str) -> Aistack {
    start_with_server(echo, dir, threads, "", body).await
}

/// [`start`] with more `server:` keys (`server_keys`: YAML lines indented by two spaces).
pub async fn start_with_server(
    echo: &EchoUpstream,
    dir: &Path,
    threads: usize,
    server_keys: &str,
    body: &str,
) -> Aistack {
    let ports = Ports::free();
    // A generous plugin call deadline (the default is 100 ms of wall time): on a loaded
    // machine a worker thread can wait that long for a core in the middle of a guest call.
    // The tests of the deadline itself set their own.
    let deadline = if server_keys.contains("  plugins:") {
        ""
    } else {
        "  plugins:\n    call_deadline: 2s\n"
    };
    let config = format!(
        "listeners:\n  - address: 127.0.0.1:{{proxy}}\nadmin:\n  address: 127.0.0.1:{{admin}}\n\
         backend:\n  enabled: false\n  address: 127.0.0.1:{{backend}}\n\
         server:\n  threads: {threads}\n  grace_period: 1s\n  access_log: false\n{deadline}{server_keys}{body}"
    );
    let config = render(&config, ports).replace("{echo}", &echo.port().to_string());
    Aistack::start("gateway", &config, ports, dir).await
}

/// A response header as text ("" when absent).
pub fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A header the echo upstream reports having received (its first value; "" when absent).
pub fn seen(echoed: &serde_json::Value, name: &str) -> String {
    echoed["headers"][name][0]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Every value of a header the echo upstream received.
pub fn seen_all(echoed: &serde_json::Value, name: &str) -> Vec<String> {
    echoed["headers"][name]
        .as_array()
        .map(|values| {
            values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

//! Faults through the gateway: the `conf-faults` filter (tests/filters/conf-faults) loops
//! forever, allocates without bound and panics on demand. A fail-closed route answers
//! 500 JSON, a fail-open one (`on_error: continue`) skips the filter, other routes keep
//! answering meanwhile, every fault is counted in `aistack_plugin_errors_total` (a panic in
//! the root context's `on_tick` too), the limits come from `server.plugins`, and a module
//! declaring another ABI version is refused by `aistack validate` in one line.

use std::time::{Duration, Instant};

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::{filters, run_cli};
use serde_json::Value;

use crate::wasm_common::{seen, start, start_with_server};

const CONFIG: &str = concat!(
    "upstreams:\n  echo:\n    targets: [127.0.0.1:{echo}]\n",
    "plugins:\n  conf-faults:\n    path: {wasm}\n",
    "routes:\n",
    "  - name: closed\n    path: /closed\n    upstream: echo\n",
    "    plugins:\n      - name: conf-faults\n",
    "  - name: open\n    path: /open\n    upstream: echo\n",
    "    plugins:\n      - name: conf-faults\n        on_error: continue\n",
    "  - name: healthy\n    path: /healthy\n    upstream: echo\n",
);

fn errors(text: &str, kind: &str) -> u64 {
    let series = format!("aistack_plugin_errors_total{{kind=\"{kind}\",plugin=\"conf-faults\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn faulting_filters_fail_closed_or_open_and_other_routes_keep_answering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = filters::install("conf-faults", dir.path());
    let gw = start(&echo, dir.path(), 2, &CONFIG.replace("{wasm}", &wasm)).await;
    let client = reqwest::Client::new();

    // Healthy traffic runs alongside every fault.
    let healthy = {
        let (client, url) = (client.clone(), gw.url("/healthy/x"));
        tokio::spawn(async move {
            let (mut answered, mut failed) = (0u32, 0u32);
            for _ in 0..60 {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => answered += 1,
                    _ => failed += 1,
                }
            }
            (answered, failed)
        })
    };

    let (mut closed_500, mut open_200) = (0, 0);
    for kind in ["loop", "alloc", "panic"] {
        for _ in 0..2 {
            let r = client
                .get(gw.url(&format!("/closed/{kind}")))
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 500, "{kind}: fail-closed");
            let e: Value = r.json().await.expect("json error");
            assert_eq!(e["error"]["code"], "plugin_error", "{kind}");
            assert!(e["error"]["request_id"].is_string());
            closed_500 += 1;

            let r = client
                .get(gw.url(&format!("/open/{kind}")))
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 200, "{kind}: fail-open reaches the upstream");
            let e: Value = r.json().await.expect("echo");
            assert_eq!(seen(&e, "x-faults"), "", "{kind}: the filter was skipped");
            open_200 += 1;
        }
    }
    let (answered, failed) = healthy.await.expect("healthy task");
    assert_eq!(
        (answered, failed),
        (60, 0),
        "the healthy route never failed"
    );
    assert_eq!((closed_500, open_200), (6, 6));

    // The VMs were replaced: the filter works again on both routes.
    for route in ["/closed/ok", "/open/ok"] {
        let r = client.get(gw.url(route)).send().await.expect("request");
        assert_eq!(r.status(), 200, "{route}");
        let e: Value = r.json().await.expect("echo");
        assert_eq!(seen(&e, "x-faults"), "passed", "{route}");
    }

    let text = reqwest::get(gw.admin_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    // The loops hit the deadline; the allocations hit the memory limit, or, on a loaded
    // machine where growing 64 MiB takes longer than a call may, the deadline first.
    let (deadline, oom) = (errors(&text, "deadline"), errors(&text, "out_of_memory"));
    assert!(deadline >= 4, "{text}");
    assert_eq!(deadline + oom, 8, "{text}");
    assert_eq!(errors(&text, "trap"), 4, "{text}");
    // healthy + 6 fail-open + 2 recovered requests reached the upstream.
    assert_eq!(echo.hits(), 60 + 6 + 2);
}

async fn metrics(gw: &aistack_e2e::Aistack) -> String {
    reqwest::get(gw.admin_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

const LIMITS: &str = "  plugins:\n    memory_limit: 8MiB\n    call_deadline: 250ms\n";

const TICKS: &str = concat!(
    "upstreams:\n  echo:\n    targets: [127.0.0.1:{echo}]\n",
    "plugins:\n  conf-faults:\n    path: {wasm}\n",
    "routes:\n",
    "  - name: closed\n    path: /closed\n    upstream: echo\n",
    "    plugins:\n      - name: conf-faults\n",
    "  - name: tick\n    path: /tick\n    upstream: echo\n",
    "    plugins:\n      - name: conf-faults\n        config: panic-on-tick\n",
);

#[tokio::test]
async fn plugin_limits_come_from_the_yaml_and_root_context_faults_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = filters::install("conf-faults", dir.path());
    let body = TICKS.replace("{wasm}", &wasm);
    let gw = start_with_server(&echo, dir.path(), 1, LIMITS, &body).await;
    let client = reqwest::Client::new();

    // The limits of `server.plugins` are the ones the VMs run under.
    for (kind, limit) in [
        ("loop", "exceeded the 250 ms call deadline"),
        ("alloc", "exceeded its memory limit of 8 MiB"),
    ] {
        let r = client
            .get(gw.url(&format!("/closed/{kind}")))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 500, "{kind}");
        let output = gw.wait_for_output(limit).await;
        assert!(output.contains(limit), "{kind}: {output}");
    }

    // The request brings the VM to the worker thread, whose tick pump then runs `on_tick`:
    // it panics, in the root context, with no request to answer for it.
    let r = client.get(gw.url("/tick/x")).send().await.expect("request");
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = metrics(&gw).await;
        if errors(&text, "trap") >= 1 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        errors(&text, "trap") >= 1,
        "the tick's panic is counted: {text}"
    );
    assert_eq!(errors(&text, "deadline"), 1, "{text}");
    assert_eq!(errors(&text, "out_of_memory"), 1, "{text}");
    let output = gw.wait_for_output("plugin fault in its root context").await;
    assert!(output.contains("phase=\"proxy_on_tick\""), "{output}");

    // They size the runtime at start: a reload says so.
    let changed = std::fs::read_to_string(&gw.config_path)
        .expect("read config")
        .replace("memory_limit: 8MiB", "memory_limit: 16MiB");
    std::fs::write(&gw.config_path, changed).expect("write config");
    let r = client
        .post(gw.admin_url("/config/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 200);
    let warning = "plugin limit changes (server.plugins) take effect after a restart";
    let output = gw.wait_for_output(warning).await;
    assert!(output.contains(warning), "{output}");
}

#[test]
fn a_module_declaring_another_abi_version_is_refused_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A real SDK-built module whose ABI marker export is renamed to 0.1.0 (same length).
    let wasm = std::fs::read(filters::path("conf-faults")).expect("read wasm");
    let (from, to) = (b"proxy_abi_version_0_2_1", b"proxy_abi_version_0_1_0");
    let at = wasm
        .windows(from.len())
        .position(|w| w == from)
        .expect("the module exports its ABI version");
    let mut old = wasm.clone();
    old[at..at + from.len()].copy_from_slice(to);
    std::fs::write(dir.path().join("old-abi.wasm"), &old).expect("write");
    let config = dir.path().join("aistack.yaml");
    std::fs::write(
        &config,
        "upstreams:\n  echo:\n    targets: [127.0.0.1:9]\n\
         plugins:\n  old:\n    path: old-abi.wasm\n\
         routes:\n  - name: r\n    path: /\n    upstream: echo\n    plugins:\n      - name: old\n",
    )
    .expect("write config");
    let (status, _, stderr) = run_cli(&["validate", config.to_str().expect("utf8")], dir.path());
    assert!(!status.success(), "refused");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("0.1"), "names the ABI: {stderr}");
}

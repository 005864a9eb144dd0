//! Asynchronous foreign functions through the real gateway, with the `conf-foreign`
//! filter (tests/filters/conf-foreign) calling the gateway's `aistack.rate_limit`:
//! several calls of one context at once, each answered on that context with its id and
//! the answer as `CallData`; refusals from the root context and for unknown names; a
//! guest trapping in `proxy_on_foreign_function` (a counted fault); and a context that
//! is gone before its answer arrives (the answer is counted abandoned, nothing breaks).

use std::net::TcpListener;

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::{Aistack, filters};
use serde_json::Value;

use crate::plugin_rate_limit_cluster::{RedisPrefix, redis_url, start};
use crate::wasm_common::seen;

const BODY: &str = "plugins:\n  conf-foreign:\n    path: {wasm}\n\
routes:\n  - name: foreign\n    path: /\n    upstream: echo\n    plugins:\n      - name: conf-foreign\n";

/// The gateway with conf-foreign; Redis commands time out after `timeout`.
async fn gateway(
    echo: &EchoUpstream,
    dir: &std::path::Path,
    redis: &str,
    prefix: &str,
    timeout: &str,
) -> Aistack {
    let wasm = filters::install("conf-foreign", dir);
    start(
        echo,
        dir,
        redis,
        prefix,
        timeout,
        &BODY.replace("{wasm}", &wasm),
    )
    .await
}

/// The value of the `/metrics` series `name{…}` with all of `labels` (0 when absent).
async fn series(gw: &Aistack, name: &str, labels: &[&str]) -> f64 {
    let text = reqwest::get(gw.admin_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn send(gw: &Aistack, header: (&str, &str)) -> reqwest::Response {
    reqwest::Client::new()
        .get(gw.url("/x"))
        .header(header.0, header.1)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn async_calls_are_answered_on_their_context_with_redis() {
    let prefix = RedisPrefix::new();
    let echo = EchoUpstream::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let gw = gateway(&echo, dir.path(), &redis_url(), &prefix.0, "10s").await;

    let r = send(&gw, ("x-calls", "3")).await;
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.expect("echo json");
    // Three calls in flight at once, each with its own id, each answered "ok, admitted".
    let ids: Vec<u32> = seen(&echoed, "x-foreign-ids")
        .split(',')
        .map(|id| id.parse().expect("an id"))
        .collect();
    assert_eq!(ids.len(), 3, "{echoed}");
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
    assert_eq!(seen(&echoed, "x-foreign-answers"), "0:1,0:1,0:1");
    // CallData exists only during proxy_on_foreign_function.
    assert_eq!(seen(&echoed, "x-calldata-outside"), "none");
    // From the root context: refused (HTTP contexts only); an unknown name: NotFound.
    assert_eq!(seen(&echoed, "x-root-probe"), "BadArgument,NotFound");
    let ok = ["function=\"aistack.rate_limit\"", "outcome=\"ok\""];
    assert_eq!(series(&gw, "aistack_foreign_calls_total", &ok).await, 3.0);
    assert_eq!(prefix.keys().len(), 3, "one Redis record per call's key");

    // A guest that traps in the callback: the request fails closed, the fault is counted,
    // and the next request gets a fresh VM.
    let r = send(&gw, ("x-trap", "1")).await;
    assert_eq!(r.status(), 500);
    let trap = ["plugin=\"conf-foreign\"", "kind=\"trap\""];
    assert_eq!(series(&gw, "aistack_plugin_errors_total", &trap).await, 1.0);
    let r = send(&gw, ("x-calls", "1")).await;
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.expect("echo json");
    assert_eq!(seen(&echoed, "x-foreign-answers"), "0:1");
}

#[tokio::test]
async fn a_context_gone_before_its_answer_never_sees_it() {
    // A "Redis" that accepts connections and never answers: each call ends at the
    // gateway's redis.timeout (1 s), long after the request that made it.
    let black_hole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = black_hole.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in black_hole.incoming().flatten() {
            held.push(stream);
        }
    });
    let echo = EchoUpstream::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("redis://127.0.0.1:{port}");
    let gw = gateway(&echo, dir.path(), &url, "unused:", "1s").await;

    // The filter calls and goes on at once: the request is over before the answer.
    for _ in 0..2 {
        assert_eq!(send(&gw, ("x-detach", "1")).await.status(), 200);
    }
    let abandoned = ["function=\"aistack.rate_limit\"", "outcome=\"abandoned\""];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while series(&gw, "aistack_foreign_calls_total", &abandoned).await < 2.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the answers never came back:\n{}",
            gw.output()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let failed = ["function=\"aistack.rate_limit\"", "outcome=\"failed\""];
    assert_eq!(
        series(&gw, "aistack_foreign_calls_total", &failed).await,
        2.0
    );
    // Nothing faulted, and the gateway serves on.
    let faults = ["plugin=\"conf-foreign\""];
    assert_eq!(
        series(&gw, "aistack_plugin_errors_total", &faults).await,
        0.0
    );
    assert_eq!(send(&gw, ("x-other", "1")).await.status(), 200);
    assert_eq!(echo.hits(), 3);
}

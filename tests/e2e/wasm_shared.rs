//! Conformance, shared state: the `conf-shared` filter (tests/filters/conf-shared) counts
//! requests in shared data with compare-and-swap from two worker threads (so two VMs) and
//! round-trips items through a shared queue to the registering root context's
//! `on_queue_ready`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::filters;

use crate::wasm_common::start;

const CONFIG: &str = "upstreams:\n  echo:\n    targets: [127.0.0.1:{echo}]\n\
plugins:\n  conf-shared:\n    path: {wasm}\n\
routes:\n  - name: shared\n    path: /\n    upstream: echo\n    plugins:\n      - name: conf-shared\n";

/// Requests sent at once, each on its own connection.
const REQUESTS: u64 = 60;

#[tokio::test]
async fn shared_data_is_one_store_across_workers_and_queues_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let wasm = filters::install("conf-shared", dir.path());
    let gw = start(&echo, dir.path(), 2, &CONFIG.replace("{wasm}", &wasm)).await;
    // No connection reuse: every request is a new connection, which either worker takes.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");

    let tasks: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let (client, url) = (client.clone(), gw.url("/count"));
            tokio::spawn(async move {
                let r = client.get(url).send().await.expect("request");
                assert_eq!(r.status(), 200);
                r.text().await.expect("body")
            })
        })
        .collect();
    let mut totals = BTreeSet::new();
    let mut vms = BTreeSet::new();
    for task in tasks {
        let body = task.await.expect("task");
        let (total, vm) = body
            .strip_prefix("total=")
            .and_then(|rest| rest.split_once(" vm="))
            .unwrap_or_else(|| panic!("unexpected answer: {body}"));
        totals.insert(total.parse::<u64>().expect("a count"));
        vms.insert(vm.to_owned());
    }
    // Every increment landed exactly once: the counts seen are 1..=N, with no repeats.
    assert_eq!(totals, (1..=REQUESTS).collect::<BTreeSet<_>>());
    assert!(
        vms.len() >= 2,
        "both workers' VMs counted into one store, saw VMs {vms:?}"
    );

    let r = client.get(gw.url("/cas")).send().await.expect("request");
    assert_eq!(r.text().await.expect("body"), "cas-ok");
    let r = client
        .get(gw.url("/resolve-missing"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.text().await.expect("body"), "none");

    // Queue: enqueued from HTTP contexts on either worker, drained by the registering
    // root context's on_queue_ready on its own thread.
    for item in ["a", "b", "c"] {
        let r = client
            .get(gw.url(&format!("/enqueue/{item}")))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 202);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let r = client
            .get(gw.url("/queue-log"))
            .send()
            .await
            .expect("request");
        let log = r.text().await.expect("body");
        if log.split(',').count() == 3 || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let items: Vec<&str> = log
        .split(',')
        .map(|e| e.split('@').next().unwrap_or(""))
        .collect();
    assert_eq!(items, ["a", "b", "c"], "in order, each once: {log}");
    let consumers: BTreeSet<&str> = log.split(',').filter_map(|e| e.split('@').nth(1)).collect();
    assert_eq!(consumers.len(), 1, "one registered consumer: {log}");
    assert_eq!(echo.hits(), 0, "every answer was local");
}

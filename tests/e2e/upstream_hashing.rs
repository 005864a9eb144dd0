//! Consistent hashing through the real binary, on a cookie and on the client's
//! IP address: one key always reaches the same target, different keys spread
//! over the targets, and no key falls back to round robin.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::Value;

use crate::flaky::Flaky;
use crate::upstreams::{get, start, start_with_server};

async fn three_targets() -> [Flaky; 3] {
    [
        Flaky::start("t1").await,
        Flaky::start("t2").await,
        Flaky::start("t3").await,
    ]
}

/// An upstream `sticky` over the three targets hashing on `hash_on`, routed at `/`.
fn sticky(targets: &[Flaky; 3], hash_on: &str) -> String {
    format!(
        r#"
upstreams:
  sticky:
    targets: [127.0.0.1:{}, 127.0.0.1:{}, 127.0.0.1:{}]
    balance: consistent_hash
    hash_on: {hash_on}
routes:
  - {{ name: sticky, path: /, upstream: sticky }}
"#,
        targets[0].port(),
        targets[1].port(),
        targets[2].port()
    )
}

/// The target that answered.
fn upstream_of(status: u16, body: &Value) -> String {
    assert_eq!(status, 200, "{body}");
    body["upstream"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn consistent_hash_on_a_cookie_sticks_per_value_and_spreads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let targets = three_targets().await;
    let gw = start(&sticky(&targets, "cookie:sid"), dir.path()).await;
    let client = reqwest::Client::new();

    let mut spread = BTreeSet::new();
    for user in 0..24 {
        let mut seen = BTreeSet::new();
        for i in 0..4 {
            // Other cookies change from request to request; only `sid` counts.
            let r = client
                .get(gw.url("/x"))
                .header("cookie", format!("theme=t{i}; sid=user-{user};lang=l{i}"))
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            seen.insert(upstream_of(status, &body));
        }
        assert_eq!(seen.len(), 1, "user-{user} sticks to one target: {seen:?}");
        spread.extend(seen);
    }
    assert!(spread.len() >= 2, "24 values spread: {spread:?}");

    // Without the cookie there is no key: round robin over all three.
    let mut counts = BTreeMap::<String, usize>::new();
    for _ in 0..6 {
        let r = client
            .get(gw.url("/x"))
            .header("cookie", "theme=dark; xsid=1")
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        *counts.entry(upstream_of(status, &body)).or_default() += 1;
    }
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "round robin without the cookie: {counts:?}"
    );
}

/// A client whose connections come from `ip` (any 127/8 address is loopback on Linux).
fn client_from(ip: &str) -> reqwest::Client {
    let ip: IpAddr = ip.parse().expect("ip");
    reqwest::Client::builder()
        .local_address(ip)
        .build()
        .expect("client")
}

#[tokio::test]
async fn consistent_hash_on_the_client_ip_sticks_per_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let targets = three_targets().await;
    let gw = start(&sticky(&targets, "ip"), dir.path()).await;

    let mut spread = BTreeSet::new();
    for host in 2..=25 {
        let client = client_from(&format!("127.0.0.{host}"));
        let mut seen = BTreeSet::new();
        for _ in 0..3 {
            let (status, body) = get(&client, &gw.url("/x")).await;
            seen.insert(upstream_of(status, &body));
            assert_eq!(
                body["headers"]["x-forwarded-for"][0],
                format!("127.0.0.{host}"),
                "the connection came from the bound address"
            );
        }
        assert_eq!(
            seen.len(),
            1,
            "127.0.0.{host} sticks to one target: {seen:?}"
        );
        spread.extend(seen);
    }
    assert!(spread.len() >= 2, "24 addresses spread: {spread:?}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_ip_is_hashed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let targets = three_targets().await;
    let gw = start_with_server(
        "  trusted_proxies: [127.0.0.100]\n",
        &sticky(&targets, "ip"),
        dir.path(),
    )
    .await;
    let send = |client: reqwest::Client, forwarded: String| {
        let url = gw.url("/x");
        async move {
            let r = client
                .get(url)
                .header("x-forwarded-for", forwarded)
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            upstream_of(status, &r.json().await.unwrap_or(Value::Null))
        }
    };

    // Through the trusted proxy each forwarded client has its own key.
    let proxy = client_from("127.0.0.100");
    let mut spread = BTreeSet::new();
    for host in 1..=24 {
        let mut seen = BTreeSet::new();
        for _ in 0..3 {
            seen.insert(send(proxy.clone(), format!("198.51.100.{host}")).await);
        }
        assert_eq!(seen.len(), 1, "198.51.100.{host} sticks: {seen:?}");
        spread.extend(seen);
    }
    assert!(spread.len() >= 2, "forwarded clients spread: {spread:?}");

    // From anyone else the header is not believed: one address, one target.
    let direct = client_from("127.0.0.7");
    let mut seen = BTreeSet::new();
    for host in 1..=12 {
        seen.insert(send(direct.clone(), format!("198.51.100.{host}")).await);
    }
    assert_eq!(seen.len(), 1, "a spoofed header does not move it: {seen:?}");
}

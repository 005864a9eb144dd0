//! Keeping upstream targets fresh, through the real binary: the TCP health
//! check ejects a target whose port closed and takes it back when it reopens.

use crate::flaky::Flaky;
use crate::upstreams::{get, start, target, wait_upstream};

#[tokio::test]
async fn tcp_health_checks_eject_a_closed_port_and_recover_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (t1, t2) = (Flaky::start("t1").await, Flaky::start("t2").await);
    let (p1, p2) = (t1.port(), t2.port());
    let gw = start(
        &format!(
            r#"
upstreams:
  pool:
    targets: [127.0.0.1:{p1}, 127.0.0.1:{p2}]
    health_check:
      type: tcp
      interval: 100ms
      timeout: 500ms
      healthy_threshold: 2
      unhealthy_threshold: 2
routes:
  - {{ name: r, path: /, upstream: pool }}
"#
        ),
        dir.path(),
    )
    .await;
    let client = reqwest::Client::new();
    wait_upstream(&gw, "pool", "both targets up", |u| u["available"] == 2).await;

    let t1_addr = t1.stop();
    wait_upstream(&gw, "pool", "t1 marked unhealthy", |u| {
        target(u, p1)["health_check"] == "unhealthy" && u["available"] == 1
    })
    .await;
    for _ in 0..20 {
        let (status, body) = get(&client, &gw.url("/x")).await;
        assert_eq!((status, body["upstream"].as_str()), (200, Some("t2")));
    }

    let t1 = Flaky::restart_on("t1", t1_addr).await;
    wait_upstream(&gw, "pool", "t1 healthy again", |u| {
        target(u, p1)["health_check"] == "healthy" && u["available"] == 2
    })
    .await;
    for _ in 0..20 {
        let (status, _) = get(&client, &gw.url("/x")).await;
        assert_eq!(status, 200);
    }
    assert_eq!(t1.proxied(), 10, "round robin over both again");
}

//! The walking skeleton: gateway → backend, the request-id filter, metrics,
//! 404, 502, data surviving a restart.

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::{Aistack, Ports, free_port, render};
use serde_json::Value;

const UP_CONFIG: &str = r#"
listeners:
  - address: 127.0.0.1:{proxy}
admin:
  address: 127.0.0.1:{admin}
backend:
  address: 127.0.0.1:{backend}
server:
  threads: 2
  grace_period: 1s
upstreams:
  backend:
    targets: [127.0.0.1:{backend}]
  echo:
    targets: [127.0.0.1:{echo}]
  dead:
    targets: [127.0.0.1:{dead}]
    connect_timeout: 1s
routes:
  - name: api
    path: /api/v1
    upstream: backend
    plugins:
      - name: request-id
  - name: echo
    path: /echo
    upstream: echo
    strip_prefix: true
    plugins:
      - name: request-id
  - name: echo-bare
    path: /bare
    upstream: echo
  - name: dead
    path: /dead
    upstream: dead
"#;

async fn start_up(echo: &EchoUpstream, dir: &std::path::Path) -> Aistack {
    let ports = Ports::free();
    let config = render(UP_CONFIG, ports)
        .replace("{echo}", &echo.port().to_string())
        .replace("{dead}", &free_port().to_string());
    Aistack::start("up", &config, ports, dir).await
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn proxies_to_backend_with_request_id_added_and_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let gw = start_up(&echo, dir.path()).await;
    let client = reqwest::Client::new();

    let r = client
        .get(gw.url("/api/v1/healthz"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-request-id")
        .expect("x-request-id added")
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["status"], "ok");

    let r = client
        .get(gw.url("/api/v1/healthz"))
        .header("x-request-id", "client-id-42")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-request-id"), Some("client-id-42"));

    // The upstream sees the id too (set by the filter), and the path with the prefix stripped.
    let r = client
        .get(gw.url("/echo/hello?x=1"))
        .send()
        .await
        .expect("request");
    let id = header(&r, "x-request-id")
        .expect("id on response")
        .to_owned();
    let seen: Value = r.json().await.expect("json");
    assert_eq!(seen["path"], "/hello?x=1");
    assert_eq!(seen["headers"]["x-request-id"][0], id.as_str());
}

#[tokio::test]
async fn without_the_filter_no_request_id_header_is_added() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let gw = start_up(&echo, dir.path()).await;
    let r = reqwest::get(gw.url("/bare/x")).await.expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-request-id"),
        None,
        "only the request-id filter sets it"
    );
    let seen: Value = r.json().await.expect("json");
    assert!(seen["headers"].get("x-request-id").is_none());
}

#[tokio::test]
async fn client_identity_headers_never_reach_the_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let gw = start_up(&echo, dir.path()).await;
    let r = reqwest::Client::new()
        .get(gw.url("/bare/x"))
        .header("x-consumer-id", "admin")
        .header("X-Consumer-Name", "root")
        .header("x-other", "kept")
        .send()
        .await
        .expect("request");
    let seen: Value = r.json().await.expect("json");
    assert!(seen["headers"].get("x-consumer-id").is_none(), "{seen}");
    assert!(seen["headers"].get("x-consumer-name").is_none(), "{seen}");
    assert_eq!(seen["headers"]["x-other"][0], "kept");
}

#[tokio::test]
async fn unknown_route_is_a_json_404_and_dead_upstream_a_json_502() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let gw = start_up(&echo, dir.path()).await;
    let client = reqwest::Client::new();

    let r = client
        .get(gw.url("/nowhere"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    let id = header(&r, "x-request-id").expect("id on 404").to_owned();
    let body: Value = r.json().await.expect("json 404");
    assert_eq!(body["error"]["code"], "route_not_found");
    assert_eq!(body["error"]["request_id"], id.as_str());

    // `/apix` is not under `/api/v1`'s segments, nor `/echox` under `/echo`.
    let r = client.get(gw.url("/echox")).send().await.expect("request");
    assert_eq!(r.status(), 404);

    for _ in 0..3 {
        let r = client.get(gw.url("/dead/x")).send().await.expect("request");
        assert_eq!(r.status(), 502);
        let body: Value = r.json().await.expect("json 502");
        assert_eq!(body["error"]["code"], "bad_gateway");
        assert!(body["error"]["request_id"].is_string());
    }
    // The gateway keeps serving.
    let r = client
        .get(gw.url("/api/v1/healthz"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn metrics_count_requests_by_route_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let gw = start_up(&echo, dir.path()).await;
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let r = client
            .get(gw.url("/bare/some/raw/path"))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
    }
    let r = client
        .get(gw.url("/nowhere"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    // Metrics are recorded in the log phase, just after the response is sent:
    // poll until the last request is counted.
    let want = r#"aistack_http_requests_total{method="GET",route="echo-bare",status="200"} 5"#;
    let mut text = String::new();
    for _ in 0..100 {
        text = client
            .get(gw.admin_url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if text.contains(want) && text.contains(r#"route="none",status="404"} 1"#) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(text.contains(want), "{text}");
    assert!(
        text.contains(r#"aistack_http_requests_total{method="GET",route="none",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"aistack_http_request_duration_seconds_count{route="echo-bare"} 5"#),
        "{text}"
    );
    assert!(
        text.contains("aistack_http_request_duration_seconds_bucket{route=\"echo-bare\",le="),
        "{text}"
    );
    assert!(
        !text.contains("/bare/some/raw/path"),
        "raw paths never become labels"
    );
}

#[tokio::test]
async fn organization_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let gw = start_up(&echo, dir.path()).await;
    let client = reqwest::Client::new();
    let r = client
        .post(gw.url("/api/v1/organizations"))
        .json(&serde_json::json!({ "name": "Acme Corp" }))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    let status = gw.stop().await;
    assert!(status.success(), "clean stop: {status}");

    let gw = start_up(&echo, dir.path()).await;
    let r = client
        .get(gw.url(&format!("/api/v1/organizations/{id}")))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    let got: Value = r.json().await.expect("json");
    assert_eq!(got["name"], "Acme Corp");
    assert_eq!(got["id"], id.as_str());
}

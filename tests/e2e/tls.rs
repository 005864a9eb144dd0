//! TLS through the real binary, with certificates made in the test: SNI chooses among
//! a listener's certificates, `min_version` refuses older clients, client certificates
//! (mTLS, required and optional), HTTP/2 through ALPN, TLS to upstreams (verified by
//! default, a CA bundle, the explicit opt-out), certificate reload without dropping
//! connections, and bad TLS settings refused at load with their place in the file.

use std::path::Path;
use std::time::{Duration, Instant};

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::{Aistack, Ports, free_port, render, run_cli, wait_for_port};
use serde_json::Value;

use crate::tls_support::{Ca, Client, peer_cert, request, tls_upstream};

static TLS12_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The config's head: a plaintext listener (the harness waits for it) plus `extra`
/// listener entries, an admin API, no backend, no file watching (reloads are asked for).
fn config(extra_listeners: &str, rest: &str) -> String {
    format!(
        "listeners:\n  - address: 127.0.0.1:{{proxy}}\n{extra_listeners}\
         admin:\n  address: 127.0.0.1:{{admin}}\n\
         backend:\n  enabled: false\n  address: 127.0.0.1:{{backend}}\n\
         server:\n  threads: 1\n  grace_period: 1s\n  access_log: false\n  watch: false\n{rest}"
    )
}

async fn start(dir: &Path, config: &str) -> Aistack {
    let ports = Ports::free();
    Aistack::start("gateway", &render(config, ports), ports, dir).await
}

fn tls_listener(port: u16, certs: &[&str], more: &str) -> String {
    let certs: String = certs
        .iter()
        .map(|c| format!("        - cert: {c}.pem\n          key: {c}.key\n"))
        .collect();
    format!("  - address: 127.0.0.1:{port}\n    tls:\n      certificates:\n{certs}{more}")
}

#[tokio::test]
async fn sni_min_version_client_certificates_and_h2_over_alpn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("server CA");
    let (a, b) = (ca.server(&["a.test"]), ca.server(&["b.test", "*.b.test"]));
    a.write(dir.path(), "a");
    b.write(dir.path(), "b");
    let client_ca = Ca::new("client CA");
    std::fs::write(dir.path().join("client-ca.pem"), client_ca.pem()).expect("write");
    let stranger_ca = Ca::new("some other CA");

    let (sni, v13, mtls, optional) = (free_port(), free_port(), free_port(), free_port());
    let listeners = [
        tls_listener(sni, &["a", "b"], ""),
        tls_listener(v13, &["a"], "      min_version: \"1.3\"\n"),
        tls_listener(
            mtls,
            &["a"],
            "      client_auth:\n        ca: client-ca.pem\n",
        ),
        tls_listener(
            optional,
            &["a"],
            "      client_auth:\n        ca: client-ca.pem\n        required: false\n",
        ),
    ]
    .concat();
    let echo = EchoUpstream::start().await;
    let routes = format!(
        "upstreams:\n  echo:\n    targets: [127.0.0.1:{}]\n\
         routes:\n  - name: all\n    path: /\n    upstream: echo\n",
        echo.port()
    );
    let _gw = start(dir.path(), &config(&listeners, &routes)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    for port in [sni, v13, mtls, optional] {
        wait_for_port(port, deadline).await;
    }
    let client = Client::trusting(&ca);

    // SNI: each name gets its own certificate (wildcards too); each one proxies.
    for (name, want) in [("a.test", &a.der), ("b.test", &b.der), ("x.b.test", &b.der)] {
        let mut stream = client.connect(sni, name).await.expect(name);
        assert_eq!(&peer_cert(&stream), want, "certificate for {name}");
        let (head, body) = request(&mut stream, name, "/hello").await.expect(name);
        assert!(head.starts_with("http/1.1 200"), "{name}: {head}");
        let echoed: Value = serde_json::from_str(&body).expect("echo json");
        assert_eq!(echoed["path"], "/hello");
    }

    // min_version 1.3: a TLS 1.2-only client is refused there, not on the 1.2 listener.
    let tls12 = Client::trusting(&ca).versions(TLS12_ONLY);
    let tls13 = Client::trusting(&ca).versions(TLS13_ONLY);
    assert!(
        tls12.get(v13, "a.test", "/").await.is_err(),
        "TLS 1.2 below min_version 1.3"
    );
    assert_eq!(
        tls13.get(v13, "a.test", "/").await.as_deref(),
        Ok("http/1.1 200 ok")
    );
    assert_eq!(
        tls12.get(sni, "a.test", "/").await.as_deref(),
        Ok("http/1.1 200 ok")
    );

    // mTLS required: no certificate and a stranger's certificate are refused.
    let ok = Ok("http/1.1 200 ok".to_owned());
    let signed = Client::trusting(&ca).with_cert(&client_ca.client("alice"));
    let stranger = Client::trusting(&ca).with_cert(&stranger_ca.client("mallory"));
    assert!(
        client.get(mtls, "a.test", "/").await.is_err(),
        "no certificate"
    );
    assert_eq!(
        signed.get(mtls, "a.test", "/").await,
        ok,
        "signed by the CA"
    );
    assert!(
        stranger.get(mtls, "a.test", "/").await.is_err(),
        "another CA"
    );
    // Optional: none is fine, but a certificate sent must verify.
    assert_eq!(
        client.get(optional, "a.test", "/").await,
        ok,
        "no certificate"
    );
    assert_eq!(signed.get(optional, "a.test", "/").await, ok);
    assert!(
        stranger.get(optional, "a.test", "/").await.is_err(),
        "another CA"
    );

    // HTTP/2 through ALPN; an HTTP/1.1-only client still gets HTTP/1.1.
    let h1 = client.connect(sni, "a.test").await.expect("connect");
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let h2_client = Client::trusting(&ca).alpn(&[b"h2", b"http/1.1"]);
    let stream = h2_client.connect(sni, "a.test").await.expect("connect");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, connection) = h2::client::handshake(stream).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut send = send.ready().await.expect("ready");
    let request = http::Request::get("https://a.test/over-h2")
        .body(())
        .expect("request");
    let (response, _) = send.send_request(request, true).expect("send");
    let response = response.await.expect("response");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        data.extend_from_slice(&chunk.expect("data"));
    }
    let echoed: Value = serde_json::from_slice(&data).expect("echo json");
    assert_eq!(echoed["path"], "/over-h2");
}

#[tokio::test]
async fn tls_to_upstreams_is_verified_unless_turned_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream_ca = Ca::new("upstream CA");
    std::fs::write(dir.path().join("upstream-ca.pem"), upstream_ca.pem()).expect("write");
    std::fs::write(dir.path().join("other-ca.pem"), Ca::new("other").pem()).expect("write");
    let (port, _task) = tls_upstream(&upstream_ca.server(&["upstream.test"])).await;
    let target = format!("targets: [127.0.0.1:{port}]");
    let rest = format!(
        "upstreams:\n\
         \x20 bundle:\n    {target}\n    tls:\n      sni: upstream.test\n      ca: upstream-ca.pem\n\
         \x20 wrong_ca:\n    {target}\n    tls:\n      sni: upstream.test\n      ca: other-ca.pem\n\
         \x20 system:\n    {target}\n    tls: true\n\
         \x20 unverified:\n    {target}\n    tls:\n      verify: false\n\
         routes:\n\
         \x20 - name: bundle\n    path: /bundle\n    upstream: bundle\n\
         \x20 - name: wrong_ca\n    path: /wrong-ca\n    upstream: wrong_ca\n\
         \x20 - name: system\n    path: /system\n    upstream: system\n\
         \x20 - name: unverified\n    path: /unverified\n    upstream: unverified\n"
    );
    let gw = start(dir.path(), &config("", &rest)).await;
    let client = reqwest::Client::new();

    let r = client
        .get(gw.url("/bundle/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.expect("json");
    assert_eq!(seen["sni"], "upstream.test", "{seen}");
    assert_eq!(seen["path"], "/bundle/x");

    // Verification is on: a CA that did not sign the upstream's certificate, or the
    // system's roots (which know nothing of the test CA), give the JSON 502.
    for path in ["/wrong-ca", "/system"] {
        let r = client.get(gw.url(path)).send().await.expect("request");
        assert_eq!(r.status(), 502, "{path}");
        let e: Value = r.json().await.expect("json");
        assert_eq!(e["error"]["code"], "bad_gateway", "{path}: {e}");
    }

    // The explicit opt-out works, and says so in the log.
    let r = client
        .get(gw.url("/unverified"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let out = gw
        .wait_for_output("upstreams.unverified.tls.verify is false")
        .await;
    assert!(
        out.contains("upstreams.unverified.tls.verify is false"),
        "{out}"
    );
}

#[tokio::test]
async fn certificates_reload_for_new_handshakes_and_kept_connections_live_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("server CA");
    let first = ca.server(&["a.test"]);
    first.write(dir.path(), "a");
    let port = free_port();
    let echo = EchoUpstream::start().await;
    let routes = format!(
        "upstreams:\n  echo:\n    targets: [127.0.0.1:{}]\n\
         routes:\n  - name: all\n    path: /\n    upstream: echo\n",
        echo.port()
    );
    let gw = start(
        dir.path(),
        &config(&tls_listener(port, &["a"], ""), &routes),
    )
    .await;
    wait_for_port(port, Instant::now() + Duration::from_secs(30)).await;
    let client = Client::trusting(&ca);

    let mut kept = client.connect(port, "a.test").await.expect("connect");
    assert_eq!(peer_cert(&kept), first.der);
    let (head, _) = request(&mut kept, "a.test", "/before")
        .await
        .expect("request");
    assert!(head.starts_with("http/1.1 200"), "{head}");

    // New files in place, then a reload.
    let second = ca.server(&["a.test"]);
    second.write(dir.path(), "a");
    let r = reqwest::Client::new()
        .post(gw.admin_url("/config/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());

    let fresh = client.connect(port, "a.test").await.expect("connect");
    assert_eq!(
        peer_cert(&fresh),
        second.der,
        "a new handshake sees the new certificate"
    );
    let (head, _) = request(&mut kept, "a.test", "/after")
        .await
        .expect("kept connection");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(echo.hits(), 2);

    // A key that does not match is refused; the certificate in force stays.
    std::fs::write(dir.path().join("a.key"), ca.server(&["a.test"]).key_pem).expect("write");
    let r = reqwest::Client::new()
        .post(gw.admin_url("/config/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 422);
    let again = client.connect(port, "a.test").await.expect("connect");
    assert_eq!(peer_cert(&again), second.der);
}

#[test]
fn bad_tls_settings_are_refused_with_file_line_column_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("CA");
    ca.server(&["a.test"]).write(dir.path(), "a");
    ca.server(&["b.test"]).write(dir.path(), "b");
    let cases = [
        (
            "      certificates:\n        - cert: missing.pem\n          key: a.key\n",
            "aistack.yaml:5:17: `listeners[0].tls.certificates[0].cert`: cannot read PEM certificates",
        ),
        (
            "      certificates:\n        - cert: a.pem\n          key: b.key\n",
            "aistack.yaml:6:16: `listeners[0].tls.certificates[0].key`: the key in",
        ),
        (
            "      certificates:\n        - cert: a.pem\n          key: a.key\n      min_version: \"1.1\"\n",
            "aistack.yaml:7:20: `listeners[0].tls.min_version`: TLS 1.1 is not supported",
        ),
        (
            "      certificates:\n        - cert: a.pem\n          key: a.key\n      min_version: tls9\n",
            "aistack.yaml:7:20: `listeners[0].tls.min_version`: unknown TLS version `tls9`",
        ),
        (
            "      certificates:\n        - cert: a.pem\n          key: a.key\n      client_auth:\n        ca: nowhere.pem\n",
            "aistack.yaml:8:13: `listeners[0].tls.client_auth.ca`: cannot read PEM certificates",
        ),
    ];
    for (tls, want) in cases {
        let text = format!(
            "listeners:\n  - address: 127.0.0.1:8443\n    tls:\n{tls}\
             upstreams:\n  u:\n    targets: [127.0.0.1:9]\n"
        );
        std::fs::write(dir.path().join("aistack.yaml"), &text).expect("write");
        let (status, _, stderr) = run_cli(&["validate", "aistack.yaml"], dir.path());
        assert!(!status.success(), "{text}");
        assert!(
            stderr.contains(want),
            "want `{want}` in:\n{stderr}\nfor:\n{text}"
        );
    }
    let text = "listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n\
                \x20       - cert: a.pem\n          key: a.key\n      min_version: 1.3\n\
                upstreams:\n  u:\n    targets: [127.0.0.1:9]\n    tls:\n      verify: false\n";
    std::fs::write(dir.path().join("aistack.yaml"), text).expect("write");
    let (status, _, stderr) = run_cli(&["validate", "aistack.yaml"], dir.path());
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: upstreams.u.tls.verify is false"),
        "{stderr}"
    );
}

#[test]
fn the_example_config_validates_with_its_certificates_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tls.yaml");
    std::fs::copy(&example, dir.path().join("tls.yaml")).expect("copy the example");
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).expect("mkdir");
    let ca = Ca::new("example CA");
    ca.server(&["api.example.test"]).write(&certs, "api");
    ca.server(&["admin.example.test"]).write(&certs, "admin");
    for name in ["partners-ca.pem", "internal-ca.pem"] {
        std::fs::write(certs.join(name), Ca::new(name).pem()).expect("write");
    }
    let (status, stdout, stderr) = run_cli(&["validate", "tls.yaml"], dir.path());
    assert!(status.success(), "{stdout}{stderr}");
}

#[tokio::test]
async fn certificate_files_changed_on_disk_are_picked_up_by_the_watcher() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("server CA");
    ca.server(&["a.test"]).write(dir.path(), "a");
    let port = free_port();
    let text = config(&tls_listener(port, &["a"], ""), "")
        .replace("  watch: false\n", "  watch_interval: 100ms\n");
    let _gw = start(dir.path(), &text).await;
    wait_for_port(port, Instant::now() + Duration::from_secs(30)).await;
    let client = Client::trusting(&ca);

    let renewed = ca.server(&["a.test"]);
    renewed.write(dir.path(), "a");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stream = client.connect(port, "a.test").await.expect("connect");
        if peer_cert(&stream) == renewed.der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! The built-in `oauth2-introspection` filter through the real gateway, against the fake
//! authorization server of `oauth_server.rs` (RFC 7662, client credentials checked):
//! active tokens admitted with the consumer and claims forwarded, inactive/expired ones
//! 401, a missing scope 403, answers cached across requests until the token's `exp` or
//! `max_ttl`, an authorization server that is down, answers garbage or refuses the
//! gateway's client credentials failing closed (503), and configurations refused at load.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::{Aistack, Ports, aistack_bin, free_port, render, run_cli};
use serde_json::{Value, json};

use crate::oauth_server::{AuthServer, PATH};
use crate::wasm_common::{header, seen};

const CLIENT_ID: &str = "gate:way";
/// Characters that RFC 6749 §2.3.1's form-encoding must protect.
const CLIENT_SECRET: &str = "p@ss:w rd+1%";

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    i64::try_from(secs).expect("seconds")
}

/// The filter's config against upstream `upstream`, the secret taken from `${IDP_SECRET}`.
fn filter_config(upstream: &str, extra: Value) -> Value {
    let mut config = json!({
        "introspection": {"upstream": upstream, "path": PATH, "timeout": "2s"},
        "client_id": CLIENT_ID,
        "client_secret": "${IDP_SECRET}",
    });
    if let (Some(c), Value::Object(extra)) = (config.as_object_mut(), extra) {
        c.extend(extra);
    }
    config
}

/// Starts the gateway (2 worker threads) with routes `/secured` (the filter, `config`) and
/// `/open` (no filter) on the echo upstream, `idp` pointing at `idp_port`, and
/// `IDP_SECRET` set to `secret`.
async fn start(
    echo: &EchoUpstream,
    dir: &Path,
    idp_port: u16,
    secret: &str,
    config: &Value,
) -> Aistack {
    let ports = Ports::free();
    let yaml = format!(
        "listeners:\n  - address: 127.0.0.1:{{proxy}}\nadmin:\n  address: 127.0.0.1:{{admin}}\n\
         backend:\n  enabled: false\n  address: 127.0.0.1:{{backend}}\n\
         server:\n  threads: 2\n  grace_period: 1s\n  access_log: true\n\
         upstreams:\n  echo:\n    targets: [127.0.0.1:{}]\n  idp:\n    targets: [127.0.0.1:{idp_port}]\n\
         routes:\n  - name: secured\n    path: /secured\n    upstream: echo\n    plugins:\n\
         \x20     - name: oauth2-introspection\n        config: {config}\n\
         \x20 - name: open\n    path: /open\n    upstream: echo\n",
        echo.port()
    );
    let yaml = render(&yaml, ports);
    Aistack::start_with_env("gateway", &yaml, ports, dir, &[("IDP_SECRET", secret)]).await
}

/// A GET with `token` as bearer (from a fresh client: a fresh connection, so requests
/// spread over the worker threads) and forged identity headers.
async fn get(gw: &Aistack, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(gw.url(path))
        .header("x-consumer-id", "forged")
        .header("x-client-id", "forged");
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("request")
}

/// Asserts a JSON refusal and returns its message.
async fn refusal(r: reqwest::Response, status: u16, code: &str, challenge: &str) -> String {
    assert_eq!(r.status(), status);
    assert_eq!(header(&r, "www-authenticate"), challenge);
    assert_eq!(header(&r, "content-type"), "application/json");
    let id = header(&r, "x-request-id");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], code, "{body}");
    if !id.is_empty() {
        assert_eq!(body["error"]["request_id"], id.as_str(), "{body}");
    }
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

const INVALID: &str = "Bearer error=\"invalid_token\"";

#[tokio::test]
async fn active_tokens_pass_with_the_consumer_and_the_rest_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let idp = AuthServer::start(CLIENT_ID, CLIENT_SECRET).await;
    let exp = now() + 600;
    idp.issue(
        "tok-good",
        json!({"scope": "write read", "sub": "user-1", "username": "alice",
               "client_id": "app-7", "exp": exp, "token_type": "Bearer"}),
    );
    idp.issue(
        "tok-write-only",
        json!({"scope": "write", "sub": "user-2", "exp": exp}),
    );
    idp.issue(
        "tok-expired",
        json!({"scope": "read", "sub": "user-3", "exp": now() - 30}),
    );
    idp.issue(
        "tok-no-sub",
        json!({"scope": "read", "client_id": "machine"}),
    );
    let config = filter_config(
        "idp",
        json!({"required_scopes": ["read"], "consumer_name_claim": "username",
               "forward_claims": {"client_id": "x-client-id"}, "hide_credentials": true}),
    );
    let gw = start(&echo, dir.path(), idp.port, CLIENT_SECRET, &config).await;

    // Active, with the scope: through, with the consumer and the forwarded claim, and
    // without the token (hide_credentials). Asked once, then answered from the cache.
    for _ in 0..4 {
        let r = get(&gw, "/secured/x", Some("tok-good")).await;
        assert_eq!(r.status(), 200);
        let e: Value = r.json().await.expect("json");
        assert_eq!(seen(&e, "x-consumer-id"), "user-1", "{e}");
        assert_eq!(seen(&e, "x-consumer-name"), "alice");
        assert_eq!(seen(&e, "x-client-id"), "app-7");
        assert_eq!(
            e["headers"]["x-client-id"].as_array().map(Vec::len),
            Some(1)
        );
        assert_eq!(seen(&e, "authorization"), "", "the token was hidden");
    }
    assert_eq!(idp.calls("tok-good"), 1, "the answer was cached");
    assert_eq!(idp.refused(), 0, "the client credentials were accepted");

    // Unknown to the server (inactive): 401, and remembered (negative cache).
    for _ in 0..3 {
        let r = get(&gw, "/secured/x", Some("tok-unknown")).await;
        let message = refusal(r, 401, "unauthorized", INVALID).await;
        assert_eq!(message, "token is not active");
    }
    assert_eq!(idp.calls("tok-unknown"), 1);
    let r = get(&gw, "/secured/x", Some("tok-write-only")).await;
    let challenge = "Bearer error=\"insufficient_scope\", scope=\"read\"";
    let message = refusal(r, 403, "forbidden", challenge).await;
    assert_eq!(message, "the token lacks a required scope");
    let r = get(&gw, "/secured/x", Some("tok-expired")).await;
    assert_eq!(
        refusal(r, 401, "unauthorized", INVALID).await,
        "token expired"
    );
    let r = get(&gw, "/secured/x", Some("tok-no-sub")).await;
    let message = refusal(r, 401, "unauthorized", INVALID).await;
    assert_eq!(message, "token names no consumer");
    let r = get(&gw, "/secured/x", None).await;
    assert_eq!(
        refusal(r, 401, "unauthorized", "Bearer").await,
        "missing bearer token"
    );
    // A body waits for the verdict too: a refused request's body never reaches anyone.
    let r = reqwest::Client::new()
        .post(gw.url("/secured/x"))
        .bearer_auth("tok-other-unknown")
        .body("payload")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    assert_eq!(
        echo.hits(),
        4,
        "only the good token's requests were proxied"
    );

    // The filter is what refuses: the route without it lets anything through, and the
    // forged identity headers are gone.
    let r = get(&gw, "/open/x", None).await;
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.expect("json");
    assert_eq!(seen(&e, "x-consumer-id"), "");
    let output = gw.output();
    assert!(
        !output.contains("tok-good"),
        "a token was logged:\n{output}"
    );
    assert!(!output.contains(CLIENT_SECRET), "the secret was logged");
}

/// Sends `token` until the server has been asked `calls` times (10 s at most); returns
/// the last answer's status.
async fn until_asked(gw: &Aistack, idp: &AuthServer, token: &str, calls: usize) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = get(gw, "/secured/x", Some(token)).await.status().as_u16();
        if idp.calls(token) >= calls {
            return status;
        }
        assert!(Instant::now() < deadline, "{token} not asked again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn answers_are_cached_until_the_token_expires_or_max_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let idp = AuthServer::start(CLIENT_ID, CLIENT_SECRET).await;
    let config = filter_config("idp", json!({"cache": {"max_ttl": "2s"}}));
    let gw = start(&echo, dir.path(), idp.port, CLIENT_SECRET, &config).await;

    // Expires in 2 s: cached until then, asked again after, and refused (the server
    // still says active — its clock says exp passed).
    let exp = now() + 2;
    idp.issue("tok-short", json!({"sub": "u", "exp": exp}));
    // Lives long: cached for max_ttl only.
    idp.issue("tok-long", json!({"sub": "u", "exp": now() + 3600}));
    for _ in 0..3 {
        assert_eq!(
            get(&gw, "/secured/x", Some("tok-short")).await.status(),
            200
        );
        assert_eq!(get(&gw, "/secured/x", Some("tok-long")).await.status(), 200);
    }
    assert_eq!(idp.calls("tok-short"), 1);
    assert_eq!(idp.calls("tok-long"), 1);
    assert_eq!(until_asked(&gw, &idp, "tok-short", 2).await, 401);
    assert!(now() >= exp, "asked again before the token expired");
    assert_eq!(until_asked(&gw, &idp, "tok-long", 2).await, 200);
}

#[tokio::test]
async fn an_authorization_server_down_garbled_or_refusing_us_fails_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let idp = AuthServer::start(CLIENT_ID, CLIENT_SECRET).await;
    idp.issue("tok-good", json!({"sub": "u"}));

    // Down: nothing listens.
    let config = filter_config("idp", json!({}));
    let gw = start(&echo, dir.path(), free_port(), CLIENT_SECRET, &config).await;
    let r = get(&gw, "/secured/x", Some("tok-good")).await;
    let message = refusal(r, 503, "unavailable", "").await;
    assert_eq!(message, "the authorization server is unavailable");
    let output = gw.wait_for_output("the introspection call failed").await;
    assert!(output.contains("the introspection call failed"), "{output}");
    drop(gw);

    // The gateway's client credentials are wrong: the server refuses them (401
    // invalid_client), the client gets 503, and nothing is cached.
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(&echo, dir.path(), idp.port, "wrong-secret", &config).await;
    for _ in 0..2 {
        let r = get(&gw, "/secured/x", Some("tok-good")).await;
        refusal(r, 503, "unavailable", "").await;
    }
    assert_eq!(idp.refused(), 2);
    let output = gw
        .wait_for_output("the authorization server answered 401")
        .await;
    assert!(
        output.contains("the authorization server answered 401"),
        "{output}"
    );
    drop(gw);

    // Garbage: 200 but not RFC 7662 JSON.
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(&echo, dir.path(), idp.port, CLIENT_SECRET, &config).await;
    idp.answer_garbage();
    let r = get(&gw, "/secured/x", Some("tok-good")).await;
    refusal(r, 503, "unavailable", "").await;
    assert_eq!(idp.calls("tok-good"), 1);
    let output = gw
        .wait_for_output("the introspection answer is not JSON")
        .await;
    assert!(
        output.contains("the introspection answer is not JSON"),
        "{output}"
    );
    assert_eq!(echo.hits(), 0);
}

#[test]
fn bad_configurations_are_refused_at_load_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = || {
        json!({"introspection": {"upstream": "idp", "path": PATH},
               "client_id": "gw", "client_secret": "s"})
    };
    let without = |key: &str| {
        let mut c = good();
        c.as_object_mut().map(|o| o.remove(key));
        c
    };
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good();
        f(&mut c);
        c
    };
    let cases = [
        (without("client_id"), "missing field `client_id`"),
        (without("client_secret"), "missing field `client_secret`"),
        (without("introspection"), "missing field `introspection`"),
        (
            with(&|c| {
                c["introspection"]
                    .as_object_mut()
                    .map(|o| o.remove("upstream"));
            }),
            "missing field `upstream`",
        ),
        (
            with(&|c| c["introspection"]["upstream"] = json!("nowhere")),
            "introspection.upstream: the config has no upstream \"nowhere\"",
        ),
        (
            with(&|c| c["introspection"]["path"] = json!("introspect")),
            "introspection.path must start with `/`",
        ),
        (
            with(&|c| c["client_id"] = json!("")),
            "client_id must not be empty",
        ),
        (
            with(&|c| c["cache"] = json!({"max_ttl": "forever"})),
            "cache.max_ttl",
        ),
        (
            with(&|c| c["scopes"] = json!(["read"])),
            "unknown field `scopes`",
        ),
    ];
    for (config, reason) in cases {
        let yaml = format!(
            "backend:\n  enabled: false\nupstreams:\n  app:\n    targets: [127.0.0.1:9]\n\
             \x20 idp:\n    targets: [127.0.0.1:9]\n\
             routes:\n  - name: app\n    upstream: app\n    plugins:\n\
             \x20     - name: oauth2-introspection\n        config: {config}\n"
        );
        std::fs::write(dir.path().join("aistack.yaml"), yaml).expect("write");
        let (status, _, stderr) = run_cli(&["validate", "aistack.yaml"], dir.path());
        assert!(!status.success(), "accepted {config}");
        assert!(stderr.contains("aistack.yaml:"), "{stderr}");
        assert!(
            stderr.contains("oauth2-introspection") && stderr.contains("refused its configuration"),
            "{stderr}"
        );
        assert!(
            stderr.contains(reason),
            "{config}: want {reason:?} in\n{stderr}"
        );
    }
}

#[test]
fn the_example_config_validates() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let out = std::process::Command::new(aistack_bin())
        .args(["validate", "oauth2-introspection.yaml"])
        .current_dir(&example)
        .env("IDP_CLIENT_SECRET", "example-secret")
        .output()
        .expect("run aistack");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

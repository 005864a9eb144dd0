//! The built-in `jwt-auth` filter through the real gateway: tokens signed here with the
//! test keys of `tests/fixtures/jwt/` (HS256, RS256, ES256, EdDSA), the claim checks, the
//! refusals (401 JSON + `WWW-Authenticate`), JWKS fetched by callout from a tiny server,
//! and configurations the filter refuses at load.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aistack_e2e::echo::EchoUpstream;
use aistack_e2e::{free_port, run_cli};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::wasm_common::{header, seen, start};

const SECRET: &str = "a-test-secret-of-decent-length!!";

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/jwt")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Claims that pass the configured checks, for `sub`.
fn good_claims(sub: &str) -> Value {
    json!({"sub": sub, "name": format!("{sub} name"), "email": format!("{sub}@example.test"),
           "iss": "https://issuer.test", "aud": ["other", "aistack"],
           "exp": now() + 600, "nbf": now() - 10})
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).expect("sign")
}

fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(SECRET.as_bytes()).expect("hmac key"),
        claims,
    )
}

fn rs(claims: &Value, kid: Option<&str>) -> String {
    let key = EncodingKey::from_rsa_pem(fixture("rsa_private.pem").as_bytes()).expect("rsa key");
    sign(Algorithm::RS256, kid, &key, claims)
}

/// YAML for the plugin config: the JSON, indented under `config:`.
fn jwt_config(config: &Value) -> String {
    // JSON is YAML: one flow mapping on one line.
    config.to_string()
}

fn static_keys_config() -> Value {
    json!({
        "keys": [
            {"alg": "HS256", "secret": SECRET},
            {"kid": "rsa-1", "alg": "RS256", "public_key_pem": fixture("rsa_public.pem")},
            {"alg": "ES256", "public_key_pem": fixture("ec_public.pem")},
            {"alg": "EdDSA", "public_key_pem": fixture("ed_public.pem")}
        ],
        "issuer": "https://issuer.test",
        "audiences": ["aistack"],
        "leeway_seconds": 30,
        "forward_claims": {"email": "x-user-email"},
        "consumer_claim": "sub",
        "consumer_name_claim": "name"
    })
}

fn routes(config: &Value, extra_upstreams: &str) -> String {
    format!(
        "upstreams:\n  echo:\n    targets: [127.0.0.1:{{echo}}]\n{extra_upstreams}\
         routes:\n  - name: secured\n    path: /secured\n    upstream: echo\n    plugins:\n\
         \x20     - name: jwt-auth\n        config: {}\n\
         \x20 - name: open\n    path: /open\n    upstream: echo\n",
        jwt_config(config)
    )
}

async fn get(url: String, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(url)
        .header("x-consumer-id", "forged")
        .header("x-user-email", "forged@example.test");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    req.send().await.expect("request")
}

#[tokio::test]
async fn valid_tokens_of_every_key_type_reach_the_upstream_with_the_consumer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let gw = start(&echo, dir.path(), 2, &routes(&static_keys_config(), "")).await;

    let es = EncodingKey::from_ec_pem(fixture("ec_private.pem").as_bytes()).expect("ec key");
    let ed = EncodingKey::from_ed_pem(fixture("ed_private.pem").as_bytes()).expect("ed key");
    let tokens = [
        ("hs", hs(&good_claims("hs-user"))),
        ("rs", rs(&good_claims("rs-user"), Some("rsa-1"))),
        ("rs-no-kid", rs(&good_claims("rs-no-kid-user"), None)),
        (
            "es",
            sign(Algorithm::ES256, None, &es, &good_claims("es-user")),
        ),
        (
            "ed",
            sign(Algorithm::EdDSA, None, &ed, &good_claims("ed-user")),
        ),
    ];
    for (kind, token) in &tokens {
        let r = get(gw.url("/secured/x"), Some(token)).await;
        assert_eq!(
            r.status(),
            200,
            "{kind}: {}",
            r.text().await.unwrap_or_default()
        );
        let e: Value = r.json().await.expect("json");
        let user = format!("{kind}-user");
        assert_eq!(seen(&e, "x-consumer-id"), user, "{kind}: {e}");
        assert_eq!(seen(&e, "x-consumer-name"), format!("{user} name"));
        assert_eq!(seen(&e, "x-user-email"), format!("{user}@example.test"));
        assert_eq!(
            e["headers"]["x-consumer-id"].as_array().map(Vec::len),
            Some(1)
        );
        assert_eq!(
            e["headers"]["x-user-email"].as_array().map(Vec::len),
            Some(1)
        );
    }
    // Expired 20 s ago: inside the 30 s leeway.
    let mut claims = good_claims("late-user");
    claims["exp"] = json!(now() - 20);
    assert_eq!(
        get(gw.url("/secured/x"), Some(&hs(&claims))).await.status(),
        200
    );
    assert_eq!(echo.hits(), tokens.len() + 1);
}

#[tokio::test]
async fn bad_tokens_get_401_json_and_never_reach_the_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let gw = start(&echo, dir.path(), 2, &routes(&static_keys_config(), "")).await;

    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good_claims("u");
        f(&mut c);
        hs(&c)
    };
    let b64 = |v: &Value| {
        let s = v.to_string();
        let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = s.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(table[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    let none_token = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good_claims("u"))
    );
    // Algorithm confusion: HS256 with the RSA *public* key as the HMAC secret.
    let confused = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &EncodingKey::from_secret(fixture("rsa_public.pem").as_bytes()).expect("hmac key"),
        &good_claims("u"),
    );
    let mut tampered = hs(&good_claims("u")).into_bytes();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("missing", None, "missing bearer token"),
        ("garbage", Some("not.a.jwt".into()), "malformed token"),
        ("alg none", Some(none_token), "malformed token"),
        (
            "confusion",
            Some(confused),
            "no key accepts this token's algorithm and key id",
        ),
        ("tampered", Some(tampered), "invalid signature"),
        (
            "wrong kid",
            Some(rs(&good_claims("u"), Some("rsa-2"))),
            "no key accepts this token's algorithm and key id",
        ),
        (
            "expired",
            Some(with(&|c| c["exp"] = json!(now() - 120))),
            "token expired",
        ),
        (
            "not yet",
            Some(with(&|c| c["nbf"] = json!(now() + 120))),
            "token not yet valid",
        ),
        (
            "wrong iss",
            Some(with(&|c| c["iss"] = json!("https://evil.test"))),
            "wrong issuer",
        ),
        (
            "wrong aud",
            Some(with(&|c| c["aud"] = json!("someone-else"))),
            "wrong audience",
        ),
        (
            "no aud",
            Some(with(&|c| {
                c.as_object_mut().map(|o| o.remove("aud"));
            })),
            "wrong audience",
        ),
        (
            "no sub",
            Some(with(&|c| {
                c.as_object_mut().map(|o| o.remove("sub"));
            })),
            "token names no consumer",
        ),
    ];
    for (case, token, message) in &cases {
        let r = get(gw.url("/secured/x"), token.as_deref()).await;
        assert_eq!(r.status(), 401, "{case}");
        let challenge = header(&r, "www-authenticate");
        if token.is_some() {
            assert_eq!(challenge, "Bearer error=\"invalid_token\"", "{case}");
        } else {
            assert_eq!(challenge, "Bearer", "{case}");
        }
        assert_eq!(header(&r, "content-type"), "application/json", "{case}");
        let id = header(&r, "x-request-id");
        let body: Value = r.json().await.expect("json body");
        assert_eq!(body["error"]["code"], "unauthorized", "{case}: {body}");
        assert_eq!(body["error"]["message"], *message, "{case}: {body}");
        let rid = body["error"]["request_id"].as_str().unwrap_or_default();
        assert!(!rid.is_empty(), "{case}: {body}");
        if !id.is_empty() {
            assert_eq!(rid, id);
        }
    }
    assert_eq!(echo.hits(), 0, "no refused request was proxied");
    // The filter is what refuses: the same route without it lets anything through.
    let r = get(gw.url("/open/x"), None).await;
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.expect("json");
    assert_eq!(
        seen(&e, "x-consumer-id"),
        "",
        "the gateway strips client X-Consumer-*"
    );
    assert!(
        !gw.output().contains(&hs(&good_claims("u"))[..40]),
        "a token was logged"
    );
}

/// A one-response-per-connection HTTP server answering every request with `body`.
async fn json_server(body: String) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.clone();
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
            });
        }
    });
    (port, hits)
}

#[tokio::test]
async fn jwks_keys_are_fetched_by_callout_and_the_first_requests_wait_for_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let (jwks_port, jwks_hits) = json_server(fixture("jwks.json")).await;
    let config = json!({
        "jwks": {"upstream": "idp", "path": "/.well-known/jwks.json", "refresh": "300s"},
        "issuer": "https://issuer.test"
    });
    let upstreams = format!("  idp:\n    targets: [127.0.0.1:{jwks_port}]\n");
    let gw = start(&echo, dir.path(), 1, &routes(&config, &upstreams)).await;

    // The very first request on the worker waits for the first fetch, then passes; it has
    // a body, which must wait too (the token is checked before anything goes on).
    let r = reqwest::Client::new()
        .post(gw.url("/secured/a"))
        .header("x-consumer-id", "forged")
        .bearer_auth(rs(&good_claims("jwks-user"), Some("jwks-rsa")))
        .body("payload")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let e: Value = r.json().await.expect("json");
    assert_eq!(seen(&e, "x-consumer-id"), "jwks-user");
    assert!(jwks_hits.load(Ordering::SeqCst) >= 1);

    // The JWKS `oct` key is ignored: an HS256 token signed with it is refused.
    let sym = sign(
        Algorithm::HS256,
        Some("sym"),
        &EncodingKey::from_secret(b"ignored-secret").expect("hmac key"),
        &good_claims("u"),
    );
    assert_eq!(get(gw.url("/secured/b"), Some(&sym)).await.status(), 401);
    // A key id the JWKS does not hold.
    let other = rs(&good_claims("u"), Some("rotated-away"));
    assert_eq!(get(gw.url("/secured/c"), Some(&other)).await.status(), 401);
    assert_eq!(echo.hits(), 1);
}

#[tokio::test]
async fn a_jwks_that_cannot_be_fetched_answers_503_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start().await;
    let config = json!({"jwks": {"upstream": "idp", "path": "/jwks.json", "timeout": "500ms"}});
    let upstreams = format!("  idp:\n    targets: [127.0.0.1:{}]\n", free_port());
    let gw = start(&echo, dir.path(), 1, &routes(&config, &upstreams)).await;
    let r = get(
        gw.url("/secured/a"),
        Some(&rs(&good_claims("u"), Some("jwks-rsa"))),
    )
    .await;
    assert_eq!(r.status(), 503);
    // A request with a body does not slip through while no keys are loaded.
    let r2 = reqwest::Client::new()
        .post(gw.url("/secured/b"))
        .bearer_auth(rs(&good_claims("u"), Some("jwks-rsa")))
        .body("payload")
        .send()
        .await
        .expect("request");
    assert_eq!(r2.status(), 503);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert_eq!(echo.hits(), 0);
    let output = gw.wait_for_output("JWKS fetch failed").await;
    assert!(output.contains("JWKS fetch failed"), "{output}");
}

#[test]
fn bad_configurations_are_refused_at_load_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            json!({"keys": [{"alg": "HS999", "secret": "s"}]}),
            "unknown algorithm \"HS999\"",
        ),
        (
            json!({"keys": [{"alg": "none", "secret": "s"}]}),
            "unknown algorithm \"none\"",
        ),
        (
            json!({"keys": [{"alg": "RS256"}]}),
            "RS256 needs `public_key_pem`",
        ),
        (
            json!({"keys": [{"alg": "HS256", "public_key_pem": "x"}]}),
            "HS256 needs `secret`",
        ),
        (
            json!({"keys": [{"alg": "ES256", "public_key_pem": "not a pem"}]}),
            "`public_key_pem` is not a ES256 public key",
        ),
        (json!({"issuer": "x"}), "give `keys`, `jwks`, or both"),
        (
            json!({"jwks": {"path": "/jwks.json"}}),
            "missing field `upstream`",
        ),
        (
            json!({"jwks": {"upstream": "idp", "path": "/j", "refresh": "soon"}}),
            "jwks.refresh",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret": "s"}], "leeway": 5}),
            "unknown field `leeway`",
        ),
    ];
    for (config, reason) in cases {
        let yaml = format!(
            "backend:\n  enabled: false\nupstreams:\n  app:\n    targets: [127.0.0.1:9]\n\
             \x20 idp:\n    targets: [127.0.0.1:9]\n\
             routes:\n  - name: app\n    upstream: app\n    plugins:\n\
             \x20     - name: jwt-auth\n        config: {config}\n"
        );
        std::fs::write(dir.path().join("aistack.yaml"), yaml).expect("write");
        let (status, _, stderr) = run_cli(&["validate", "aistack.yaml"], dir.path());
        assert!(!status.success(), "accepted {config}");
        assert!(stderr.contains("aistack.yaml:"), "{stderr}");
        assert!(
            stderr.contains("jwt-auth") && stderr.contains("refused its configuration"),
            "{stderr}"
        );
        assert!(
            stderr.contains(reason),
            "{config}: want {reason:?} in\n{stderr}"
        );
    }
}

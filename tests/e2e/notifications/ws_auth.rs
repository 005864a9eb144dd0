//! The notification WebSocket behind the gateway's auth filter. In the `aistack up`
//! config the route carrying `/api/v1/ws` has `jwt-auth` (HS256; the `sub` claim is the
//! backend user id; `hide_credentials`, so the JWT does not reach the backend), and the
//! backend trusts the gateway's identity (`AISTACK_COLLAB_TRUST_GATEWAY=1`: the
//! `X-Consumer-Id` the filter sets; the gateway strips client-sent ones on every route).
//!
//! Without a valid JWT the upgrade gets the filter's 401 JSON, never a 101; with bob's
//! JWT the socket opens on the gateway's identity alone (the backend's trusted-header
//! path, no token of the backend's own) and a mention of bob arrives on it.

use std::time::{SystemTime, UNIX_EPOCH};

use aistack_e2e::{Aistack, Ports, UP_CONFIG, render};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{Acme, Client, DEADLINE, acme, next_json, pushed};

const SECRET: &str = "the gateway's JWT secret, 32 bytes+";
/// A user id no backend user has.
const NOBODY: &str = "00000000-0000-7000-8000-000000000000";

/// An HS256 JWT for `sub`, valid ten minutes, signed with `secret`.
fn jwt(sub: &str, secret: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({ "sub": sub, "exp": now + 600 });
    let key = EncodingKey::from_secret(secret.as_bytes()).expect("HMAC key");
    encode(&Header::new(Algorithm::HS256), &claims, &key).expect("sign")
}

/// `UP_CONFIG` with a plugin call deadline for a loaded machine and the socket's route,
/// guarded by `jwt-auth`, beside the open `/api/v1` one.
fn config(ports: Ports) -> String {
    let server = "  grace_period: 1s\n";
    assert!(UP_CONFIG.contains(server) && UP_CONFIG.ends_with("- name: request-id\n"));
    let filter = json!({
        "keys": [{ "alg": "HS256", "secret": SECRET }],
        "hide_credentials": true,
    });
    let route = format!(
        "  - name: notification-socket\n    path: /api/v1/ws\n    upstream: backend\n    \
         plugins:\n      - name: jwt-auth\n        config: {filter}\n"
    );
    let up = UP_CONFIG.replace(
        server,
        &format!("{server}  plugins:\n    call_deadline: 2s\n"),
    );
    render(&format!("{up}{route}"), ports)
}

/// Request headers: `(name, value)`.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// A WebSocket upgrade request for `/api/v1/ws` through the gateway, with `headers`;
/// the answer's status and JSON body.
async fn upgrade(api: &Client, headers: Headers<'_>) -> (u16, String, Value) {
    let mut request = api
        .http
        .get(format!("{}/api/v1/ws", api.base))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the upgrade request");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, challenge, body)
}

#[tokio::test]
async fn the_socket_opens_only_past_its_routes_auth_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = Ports::free();
    let env = [("AISTACK_COLLAB_TRUST_GATEWAY", "1")];
    let gw = Aistack::start_with_env("up", &config(ports), ports, dir.path(), &env).await;
    let api = Client {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{}", ports.proxy),
    };
    let Acme {
        ann,
        bob,
        bob_id,
        comments,
    } = acme(&api).await;

    // Refused by the filter, with its 401 (`unauthorized`; the backend's code is
    // `unauthenticated`): no credential, bob's id forged in the identity header, the
    // backend's own token for bob (not a JWT), a JWT signed with another secret.
    let bob_session = format!("Bearer {bob}");
    let forged = format!(
        "Bearer {}",
        jwt(&bob_id, "not the gateway's secret, at all")
    );
    let refused: [(&str, Headers, &str); 4] = [
        ("no credential", &[], "Bearer"),
        (
            "forged identity",
            &[("x-consumer-id", bob_id.as_str())],
            "Bearer",
        ),
        (
            "backend token",
            &[("authorization", bob_session.as_str())],
            "Bearer error=\"invalid_token\"",
        ),
        (
            "foreign signature",
            &[("authorization", forged.as_str())],
            "Bearer error=\"invalid_token\"",
        ),
    ];
    for (case, headers, expected_challenge) in refused {
        let (status, challenge, body) = upgrade(&api, headers).await;
        assert_eq!(status, 401, "{case}: {body}");
        assert_eq!(challenge, expected_challenge, "{case}");
        assert_eq!(body["error"]["code"], "unauthorized", "{case}: {body}");
    }

    // Past the filter the backend decides: a JWT for no user of the backend is its 401.
    let nobody = format!("Bearer {}", jwt(NOBODY, SECRET));
    let (status, _, body) = upgrade(&api, &[("authorization", nobody.as_str())]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
    // The open route carries no identity from the client: a forged header is dropped
    // there, and the backend's trust gives nobody away.
    let response = api
        .http
        .get(format!("{}/api/v1/notifications", api.base))
        .header("x-consumer-id", &bob_id)
        .send()
        .await
        .expect("GET notifications");
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "unauthenticated", "{body}");

    // bob's JWT: the socket opens on the gateway's identity, and bob's mention arrives.
    let mut request = format!("ws://127.0.0.1:{}/api/v1/ws", ports.proxy)
        .into_client_request()
        .expect("request");
    let bearer = format!("Bearer {}", jwt(&bob_id, SECRET));
    request
        .headers_mut()
        .insert("authorization", bearer.parse().expect("header value"));
    let (mut socket, response) =
        tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request))
            .await
            .expect("upgrade in time")
            .expect("upgrade through the gateway");
    assert_eq!(response.status(), 101);
    assert_eq!(
        next_json(&mut socket).await,
        json!({ "type": "unread_count", "count": 0 })
    );
    let comment = api
        .post(
            Some(&ann),
            &comments,
            json!({ "body": "@bob through the filter" }),
            201,
        )
        .await;
    let notification = pushed(&mut socket, 1).await;
    assert_eq!(notification["kind"], "mention", "{notification}");
    assert_eq!(notification["resource_id"], comment["id"]);

    drop(socket);
    let status = gw.stop().await;
    assert!(status.success(), "clean stop: {status}");
}

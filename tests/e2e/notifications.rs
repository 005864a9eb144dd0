//! Notifications through the gateway, end to end: the real `aistack up` (gateway and
//! backend, SQLite), SMTP pointed at a real SMTP server on loopback, over STARTTLS with
//! a certificate of a CA made in the test and given as `AISTACK_SMTP_TLS_CA`. User A mentions
//! user B in a comment through the proxy port → B's WebSocket (through the gateway)
//! gets the notification and the unread count → B's email reaches the SMTP server →
//! B POSTs the email's unsubscribe link through the gateway, signed in as nobody →
//! the next mention reaches B's socket but sends B no email.
//!
//! `ws_auth`: the socket's route behind the gateway's auth filter.

use std::time::Duration;

use aistack_e2e::{Aistack, Ports, UP_CONFIG, render};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[path = "../../collab-backend/tests/api/smtp_sink.rs"]
mod smtp_sink;

use smtp_sink::{Received, SinkTls, SmtpSink};

use crate::tls_support::Ca;

mod ws_auth;

const DEADLINE: Duration = Duration::from_secs(15);

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request through the gateway");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POSTs and asserts `status`; returns the body.
    async fn post(&self, token: Option<&str>, path: &str, body: Value, status: u16) -> Value {
        let (got, body) = self.call(token, "POST", path, Some(body)).await;
        assert_eq!(got, status, "POST {path}: {body}");
        body
    }

    async fn sign_in(&self, username: &str, password: &str) -> String {
        let body = json!({ "username": username, "password": password });
        let session = self.post(None, "/api/v1/auth/sign-in", body, 200).await;
        session["token"].as_str().expect("token").to_owned()
    }
}

fn text_of(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_owned()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a WebSocket message within the deadline")
            .expect("the socket stays open")
            .expect("a frame");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// Waits for a pushed notification and then the unread count it leads to.
async fn pushed(ws: &mut Ws, count: i64) -> Value {
    let message = next_json(ws).await;
    assert_eq!(message["type"], "notification", "{message}");
    assert_eq!(
        next_json(ws).await,
        json!({ "type": "unread_count", "count": count })
    );
    message["notification"].clone()
}

/// The decoded subject.
fn subject(mail: &Received) -> String {
    mail_parser::MessageParser::default()
        .parse(&mail.data)
        .and_then(|m| m.subject().map(str::to_owned))
        .unwrap_or_default()
}

/// The raw header `name` of a received message (unfolded).
fn header(mail: &Received, name: &str) -> String {
    let text = String::from_utf8_lossy(&mail.data);
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .replace("\r\n ", " ");
    head.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
        .unwrap_or_default()
}

/// What [`acme`] sets up.
struct Acme {
    /// ann's session token: user A, the organization's owner.
    ann: String,
    /// bob's session token: user B, a guest of the workspace.
    bob: String,
    bob_id: String,
    /// Where comments on the task "Quarterly report" are posted.
    comments: String,
}

/// Through the gateway: an org, its owner ann, bob a guest of its workspace, a task.
async fn acme(api: &Client) -> Acme {
    let org = api
        .post(
            None,
            "/api/v1/organizations",
            json!({ "name": "Acme" }),
            201,
        )
        .await;
    let org = text_of(&org, "id");
    let body = json!({ "organization_id": org, "username": "ann", "password": "password-1" });
    api.post(None, "/api/v1/auth/register", body, 201).await;
    let ann = api.sign_in("ann", "password-1").await;
    let body = json!({ "username": "bob", "password": "password-2" });
    let bob_id = api
        .post(
            Some(&ann),
            &format!("/api/v1/organizations/{org}/users"),
            body,
            201,
        )
        .await;
    let bob_id = text_of(&bob_id, "id");
    let bob = api.sign_in("bob", "password-2").await;
    let team = api
        .post(
            Some(&ann),
            &format!("/api/v1/organizations/{org}/teams"),
            json!({ "name": "Ops" }),
            201,
        )
        .await;
    let ws_id = text_of(
        &api.post(
            Some(&ann),
            &format!("/api/v1/teams/{}/workspaces", text_of(&team, "id")),
            json!({ "name": "W" }),
            201,
        )
        .await,
        "id",
    );
    let grant =
        json!({ "user_id": bob_id, "role": "guest", "scope_kind": "workspace", "scope_id": ws_id });
    api.post(Some(&ann), "/api/v1/grants", grant, 201).await;
    let task = api
        .post(
            Some(&ann),
            &format!("/api/v1/workspaces/{ws_id}/tasks"),
            json!({ "title": "Quarterly report" }),
            201,
        )
        .await;
    let comments = format!("/api/v1/tasks/{}/comments", text_of(&task, "id"));
    Acme {
        ann,
        bob,
        bob_id,
        comments,
    }
}

#[tokio::test]
async fn mention_reaches_socket_and_mailbox_until_unsubscribed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("SMTP e2e CA");
    let sink =
        SmtpSink::start_with(SinkTls::StartTls(ca.server(&["127.0.0.1"]).server_config())).await;
    let ca_path = dir.path().join("smtp-ca.pem");
    std::fs::write(&ca_path, ca.pem()).expect("write the CA");
    let ca_path = ca_path.display().to_string();
    let ports = Ports::free();
    let public = format!("http://127.0.0.1:{}", ports.proxy);
    let smtp_port = sink.address.port().to_string();
    // Email settings in the config file (the secret through `${…}`), except the port
    // and the CA: the environment's AISTACK_SMTP_PORT overrides the file's (a port
    // nothing listens on), as every AISTACK_SMTP_* / AISTACK_EMAIL_* variable overrides
    // its key, and AISTACK_SMTP_TLS_CA adds the test CA to the trusted roots.
    let backend = "backend:\n  address: 127.0.0.1:{backend}\n";
    let email = format!(
        "{backend}  email:
    smtp_host: 127.0.0.1
    smtp_port: 1
    smtp_tls: starttls
    from: AI Stack <notify@aistack.test>
    public_url: {public}
    unsubscribe_secret: ${{E2E_UNSUBSCRIBE_SECRET}}
    poll_interval: 50ms
    # One at a time, in queue order: when a later email arrives, every earlier one has.
    concurrency: 1
"
    );
    assert!(UP_CONFIG.contains(backend));
    let config = render(&UP_CONFIG.replace(backend, &email), ports);
    let env = [
        (
            "E2E_UNSUBSCRIBE_SECRET",
            "an e2e secret that is long enough",
        ),
        ("AISTACK_SMTP_PORT", smtp_port.as_str()),
        ("AISTACK_SMTP_TLS_CA", ca_path.as_str()),
    ];
    let gw = Aistack::start_with_env("up", &config, ports, dir.path(), &env).await;
    let api = Client {
        http: reqwest::Client::new(),
        base: public.clone(),
    };

    let Acme {
        ann, bob, comments, ..
    } = acme(&api).await;
    for (token, address) in [(&bob, "bob@example.test"), (&ann, "ann@example.test")] {
        let (status, body) = api
            .call(
                Some(token),
                "PATCH",
                "/api/v1/me/notification-preferences",
                Some(json!({ "email": address })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    // B's WebSocket through the gateway, with a ticket (the browser way).
    let ticket = api
        .post(Some(&bob), "/api/v1/ws/tickets", json!({}), 201)
        .await;
    let url = format!(
        "ws://127.0.0.1:{}/api/v1/ws?ticket={}",
        ports.proxy,
        text_of(&ticket, "ticket")
    );
    let (mut socket, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
        .await
        .expect("upgrade in time")
        .expect("upgrade through the gateway");
    assert_eq!(
        next_json(&mut socket).await,
        json!({ "type": "unread_count", "count": 0 })
    );

    // A mentions B: socket, then mailbox.
    let c1 = api
        .post(
            Some(&ann),
            &comments,
            json!({ "body": "@bob please review" }),
            201,
        )
        .await;
    let n1 = pushed(&mut socket, 1).await;
    assert_eq!(
        (&n1["kind"], &n1["resource_id"]),
        (&json!("mention"), &c1["id"])
    );
    let got = sink.wait_for(1, DEADLINE).await;
    assert!(got[0].encrypted, "the email came in plain text");
    assert_eq!(got[0].recipients, ["bob@example.test"]);
    assert_eq!(subject(&got[0]), "ann mentioned you in “Quarterly report”");
    assert_eq!(
        header(&got[0], "List-Unsubscribe-Post"),
        "List-Unsubscribe=One-Click"
    );
    let link = header(&got[0], "List-Unsubscribe");
    let link = link.trim_start_matches('<').trim_end_matches('>');
    assert!(
        link.starts_with(&format!("{public}/api/v1/email/unsubscribe?")),
        "{link}"
    );

    // B unsubscribes by the link through the gateway: GET only shows the page; the
    // one-click POST (no sign-in) unsubscribes.
    let page = api.http.get(link).send().await.expect("GET the link");
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .expect("page")
            .contains("<form method=\"post\"")
    );
    let done = api
        .http
        .post(link)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("POST the link");
    assert_eq!(done.status(), 200);
    let (_, prefs) = api
        .call(
            Some(&bob),
            "GET",
            "/api/v1/me/notification-preferences",
            None,
        )
        .await;
    assert_eq!(prefs["kinds"]["mention"]["email"], false, "{prefs}");

    // The next mention reaches B's socket, and no email: B then mentions A, whose
    // email arrives second (queue order), so none for B came before it.
    api.post(
        Some(&ann),
        &comments,
        json!({ "body": "@bob one more thing" }),
        201,
    )
    .await;
    pushed(&mut socket, 2).await;
    api.post(Some(&bob), &comments, json!({ "body": "@ann done" }), 201)
        .await;
    let got = sink.wait_for(2, DEADLINE).await;
    assert_eq!(
        got[1].recipients,
        ["ann@example.test"],
        "B got no second email"
    );
    assert_eq!(subject(&got[1]), "bob mentioned you in “Quarterly report”");
    assert!(got[1].encrypted, "the email came in plain text");
    assert_eq!(sink.accepted().len(), 2);

    drop(socket);
    let status = gw.stop().await;
    assert!(status.success(), "clean stop: {status}");
}

//! Email notifications against a real SMTP server on loopback (`smtp_sink`): what
//! arrives (recipients, subject per locale, both MIME parts, the RFC 8058 headers, the
//! Message-ID of the idempotency key), digests, retries on 4xx, failures on 5xx, a node
//! dying mid-send, and the signed unsubscribe link (GET changes nothing, POST
//! unsubscribes, forged links are refused).

use std::time::Duration;

use aistack_collab::email::{self, EmailOptions, OutboxEmail, SmtpTls};
use axum::http::{Method, StatusCode};
use mail_parser::{HeaderValue, MessageParser};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::served::{DEADLINE, Served, comment, pushed};
use crate::smtp_sink::{Received, SmtpSink};
use crate::support::TestApp;
use crate::tasks::{id, new_task, world};
use crate::users::Person;

on_both_dialects!(
    mention_emails_arrive_per_locale,
    temporary_failures_retry_and_permanent_ones_are_recorded,
    digests_merge_a_window,
    unsubscribe_links_confirm_on_post_only,
    a_claimed_email_is_sent_after_a_crash,
    admins_preview_templates,
    a_file_share_emails_its_recipient,
);

pub const PUBLIC: &str = "http://gateway.test";

/// Email options for `sink`: plain SMTP on loopback, quick polls and retries.
pub fn options_for(sink: &SmtpSink) -> EmailOptions {
    let mut options = EmailOptions::new(
        "127.0.0.1",
        "AI Stack <notify@aistack.test>",
        PUBLIC,
        b"a test secret of 32 bytes.......".to_vec(),
    );
    options.smtp_port = sink.address.port();
    options.smtp_tls = SmtpTls::None;
    options.smtp_timeout = Duration::from_secs(5);
    options.poll_interval = Duration::from_millis(50);
    options.retry_base = Duration::from_millis(50);
    options
}

/// Sets `who`'s address and other preferences.
pub(super) async fn prefer(served: &Served, who: &Person, body: serde_json::Value) {
    let r = served
        .call(
            Some(who),
            Method::PATCH,
            "/api/v1/me/notification-preferences",
            Some(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// Every email queued for `who`, oldest first.
pub(super) async fn outbox(app: &TestApp, who: &Person) -> Vec<OutboxEmail> {
    let user = uuid::Uuid::parse_str(&who.id).expect("user id");
    email::emails_of(&app.db, user).await.expect("outbox")
}

/// Waits until `who`'s outbox satisfies `predicate`.
pub(super) async fn outbox_until(
    app: &TestApp,
    who: &Person,
    what: &str,
    predicate: impl Fn(&[OutboxEmail]) -> bool,
) -> Vec<OutboxEmail> {
    let wait = async {
        loop {
            let rows = outbox(app, who).await;
            if predicate(&rows) {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("outbox: {what} did not happen"))
}

/// A parsed message with what the tests look at.
pub struct Mail {
    pub recipients: Vec<String>,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub list_unsubscribe: String,
    pub list_unsubscribe_post: String,
    pub message_id: String,
}

pub fn parse(received: &Received) -> Mail {
    let message = MessageParser::default()
        .parse(&received.data)
        .expect("a parseable message");
    let raw = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let to = match message.header("To") {
        Some(HeaderValue::Address(a)) => a
            .first()
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_owned(),
        other => panic!("To: {other:?}"),
    };
    Mail {
        recipients: received.recipients.clone(),
        to,
        subject: message.subject().unwrap_or_default().to_owned(),
        text: message.body_text(0).expect("a text part").into_owned(),
        html: message.body_html(0).expect("an HTML part").into_owned(),
        list_unsubscribe: raw("List-Unsubscribe"),
        list_unsubscribe_post: raw("List-Unsubscribe-Post"),
        message_id: message.message_id().unwrap_or_default().to_owned(),
    }
}

/// The Message-ID the backend derives from an idempotency key.
fn message_id_of(key: &str) -> String {
    format!(
        "{}@aistack.test",
        hex::encode(&Sha256::digest(key.as_bytes())[..16])
    )
}

/// The path and query of an absolute URL under [`PUBLIC`].
pub fn path_of(url: &str) -> String {
    url.strip_prefix(PUBLIC)
        .expect("a link under the public URL")
        .to_owned()
}

async fn mention_emails_arrive_per_locale(mut app: TestApp) {
    let sink = SmtpSink::start().await;
    app.options.email = Some(options_for(&sink));
    let w = world(&app).await;
    let task = id(&new_task(&app, &w.mia, &w.ws, json!({ "title": "Ship <it>" })).await);
    let served = Served::start(&app).await;
    prefer(
        &served,
        &w.gus,
        json!({ "email": "gus@example.test", "locale": "zh-CN" }),
    )
    .await;
    prefer(&served, &w.owner, json!({ "email": "owner@example.test" })).await;
    let bad = served
        .call(
            Some(&w.gus),
            Method::PATCH,
            "/api/v1/me/notification-preferences",
            Some(json!({ "email": "not an address" })),
        )
        .await;
    bad.assert_error(StatusCode::BAD_REQUEST, "validation_failed");

    comment(&served, &w.mia, &task, "@gus please look at the numbers").await;
    let got = sink.wait_for(1, DEADLINE).await;
    let mail = parse(&got[0]);
    assert_eq!(mail.recipients, ["gus@example.test"]);
    assert_eq!(mail.to, "gus@example.test");
    assert_eq!(got[0].from, "notify@aistack.test");
    assert_eq!(mail.subject, "mia 在「Ship <it>」中提到了你");
    assert!(
        mail.text.contains("mia 在「Ship <it>」中提到了你"),
        "{}",
        mail.text
    );
    assert!(
        mail.text.contains("> @gus please look at the numbers"),
        "{}",
        mail.text
    );
    assert!(
        mail.html.contains("「Ship &lt;it&gt;」"),
        "escaped: {}",
        mail.html
    );
    let rows = outbox_until(&app, &w.gus, "sent", |r| {
        r.first().is_some_and(|e| e.status == "sent")
    })
    .await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!((row.status.as_str(), row.attempts), ("sent", 1));
    assert!(
        row.idempotency_key.starts_with("event:"),
        "{}",
        row.idempotency_key
    );
    assert_eq!(mail.message_id, message_id_of(&row.idempotency_key));
    let link = format!("{PUBLIC}/api/v1/comments/");
    assert!(mail.text.contains(&link) && mail.html.contains(&link));
    let unsubscribe = &row.unsubscribe_url;
    assert!(unsubscribe.starts_with(&format!(
        "{PUBLIC}/api/v1/email/unsubscribe?u={}&c=mention&v=1&s=",
        w.gus.id
    )));
    assert_eq!(mail.list_unsubscribe, format!("<{unsubscribe}>"));
    assert_eq!(mail.list_unsubscribe_post, "List-Unsubscribe=One-Click");
    assert!(mail.text.contains(unsubscribe.as_str()), "{}", mail.text);
    assert!(
        mail.html.contains(&unsubscribe.replace('&', "&amp;")),
        "{}",
        mail.html
    );

    // English for the owner; mia (no address) gets no email.
    comment(&served, &w.mia, &task, "@acme-owner fyi").await;
    let got = sink.wait_for(2, DEADLINE).await;
    let mail = parse(&got[1]);
    assert_eq!(mail.recipients, ["owner@example.test"]);
    assert_eq!(mail.subject, "mia mentioned you in “Ship <it>”");
    assert!(
        mail.text.contains("Don't want these emails? Unsubscribe:"),
        "{}",
        mail.text
    );
    assert!(outbox(&app, &w.mia).await.is_empty());

    // A muted workspace and a kind turned off for email send nothing; in-app goes on.
    let mute = format!("/api/v1/me/muted-workspaces/{}", w.ws);
    let r = served.call(Some(&w.owner), Method::PUT, &mute, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    prefer(
        &served,
        &w.gus,
        json!({ "kinds": { "mention": { "email": false } } }),
    )
    .await;
    let mut gus_ws = served.ws_with_ticket(&w.gus, 1).await;
    comment(&served, &w.mia, &task, "@gus @acme-owner again").await;
    pushed(&mut gus_ws, 2).await;
    assert_eq!(outbox(&app, &w.gus).await.len(), 1);
    assert_eq!(outbox(&app, &w.owner).await.len(), 1);
    assert_eq!(sink.accepted().len(), 2);
    served.stop().await;
}

async fn temporary_failures_retry_and_permanent_ones_are_recorded(mut app: TestApp) {
    let sink = SmtpSink::start().await;
    let mut options = options_for(&sink);
    options.max_attempts = 5;
    app.options.email = Some(options);
    let w = world(&app).await;
    let task = id(&new_task(&app, &w.mia, &w.ws, json!({ "title": "t" })).await);
    let served = Served::start(&app).await;
    prefer(&served, &w.gus, json!({ "email": "gus@example.test" })).await;

    sink.reply_to_data(&["451 4.3.0 try again later", "421 4.7.0 busy"]);
    comment(&served, &w.mia, &task, "@gus one").await;
    let got = sink.wait_for(1, DEADLINE).await;
    assert_eq!(sink.data_attempts(), 3);
    assert_eq!(parse(&got[0]).recipients, ["gus@example.test"]);
    let rows = outbox_until(&app, &w.gus, "sent", |r| {
        r.first().is_some_and(|e| e.status == "sent")
    })
    .await;
    assert_eq!(rows[0].attempts, 3);
    assert!(
        rows[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("421")),
        "{:?}",
        rows[0].last_error
    );

    sink.reply_to_data(&["550 5.1.1 no such mailbox"]);
    comment(&served, &w.mia, &task, "@gus two").await;
    let rows = outbox_until(&app, &w.gus, "a failure", |r| {
        r.get(1).is_some_and(|e| e.status == "failed")
    })
    .await;
    assert_eq!(rows[1].attempts, 1, "a 5xx is not retried");
    assert!(
        rows[1]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("550")),
        "{:?}",
        rows[1].last_error
    );
    assert_eq!(sink.data_attempts(), 4);
    assert_eq!(sink.accepted().len(), 1);

    // Attempts run out: recorded as failed, not retried forever.
    sink.reply_to_data(&["451 4.3.0 later"; 5]);
    comment(&served, &w.mia, &task, "@gus three").await;
    let rows = outbox_until(&app, &w.gus, "exhausted attempts", |r| {
        r.get(2).is_some_and(|e| e.status == "failed")
    })
    .await;
    assert_eq!(rows[2].attempts, 5);
    assert_eq!(sink.data_attempts(), 9);
    assert_eq!(sink.accepted().len(), 1);
    served.stop().await;
}

async fn digests_merge_a_window(mut app: TestApp) {
    let sink = SmtpSink::start().await;
    let mut options = options_for(&sink);
    options.hourly_window = Duration::from_secs(2);
    app.options.email = Some(options);
    let w = world(&app).await;
    let task = id(&new_task(&app, &w.mia, &w.ws, json!({ "title": "Report" })).await);
    let served = Served::start(&app).await;
    prefer(
        &served,
        &w.gus,
        json!({ "email": "gus@example.test", "email_mode": "hourly" }),
    )
    .await;
    let mut gus_ws = served.ws_with_ticket(&w.gus, 0).await;
    comment(&served, &w.mia, &task, "@gus first").await;
    pushed(&mut gus_ws, 1).await;
    comment(&served, &w.mia, &task, "@gus second").await;
    pushed(&mut gus_ws, 2).await;
    let body = json!({ "title": "Other", "assignees": [w.gus.id] });
    let r = served
        .post(&w.mia, &format!("/api/v1/workspaces/{}/tasks", w.ws), body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    pushed(&mut gus_ws, 3).await;

    // The window closes (two seconds at most; the three may straddle two windows):
    // every notification is in exactly one digest.
    let lines = |mails: &[Received]| -> usize {
        mails
            .iter()
            .map(|m| parse(m).text.matches("\n- ").count())
            .sum()
    };
    let got = sink
        .wait_until(DEADLINE, "three digested notifications", |a, _| {
            lines(a) >= 3
        })
        .await;
    assert_eq!(lines(&got), 3, "{} digests", got.len());
    let rows = outbox(&app, &w.gus).await;
    assert_eq!(rows.len(), got.len(), "{rows:?}");
    let mail = parse(&got[0]);
    assert_eq!(mail.recipients, ["gus@example.test"]);
    assert!(
        mail.subject.starts_with("Your hourly digest: "),
        "{}",
        mail.subject
    );
    let all = got.iter().map(|m| parse(m).text).collect::<String>();
    for line in ["mia mentioned you in “Report”", "mia assigned you “Other”"] {
        assert!(all.contains(line), "{line} in {all}");
    }
    assert_eq!(all.matches("mia mentioned you in “Report”").count(), 2);
    assert!(
        rows.iter()
            .all(|r| r.idempotency_key.starts_with("digest:") && r.category == "digest")
    );
    assert!(
        mail.list_unsubscribe.contains("&c=digest&"),
        "{}",
        mail.list_unsubscribe
    );
    assert!(
        mail.html
            .contains("<li><a href=\"http://gateway.test/api/v1/"),
        "{}",
        mail.html
    );

    // Unsubscribing from the digest turns email off altogether.
    let path = path_of(&rows[0].unsubscribe_url);
    let r = served.call(None, Method::POST, &path, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let prefs = served
        .get(&w.gus, "/api/v1/me/notification-preferences")
        .await;
    assert_eq!(prefs.body["email_mode"], "off");
    served.stop().await;
}

async fn unsubscribe_links_confirm_on_post_only(mut app: TestApp) {
    let sink = SmtpSink::start().await;
    app.options.email = Some(options_for(&sink));
    let w = world(&app).await;
    let task = id(&new_task(&app, &w.mia, &w.ws, json!({ "title": "t" })).await);
    let served = Served::start(&app).await;
    prefer(&served, &w.gus, json!({ "email": "gus@example.test" })).await;
    prefer(&served, &w.mia, json!({ "email": "mia@example.test" })).await;
    comment(&served, &w.mia, &task, "@gus hello").await;
    let mail = parse(&sink.wait_for(1, DEADLINE).await[0]);
    let url = mail
        .list_unsubscribe
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned();
    let path = path_of(&url);
    let mention_email = |p: &serde_json::Value| p["kinds"]["mention"]["email"].clone();

    // GET shows the page and changes nothing (no sign-in needed).
    let page = served.call(None, Method::GET, &path, None).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.body.as_str().expect("an HTML page");
    assert!(html.contains("<form method=\"post\""), "{html}");
    assert!(
        html.contains("name=\"List-Unsubscribe\" value=\"One-Click\""),
        "{html}"
    );
    let prefs = served
        .get(&w.gus, "/api/v1/me/notification-preferences")
        .await;
    assert_eq!(mention_email(&prefs.body), true);

    // Forged: gus's signature on mia's id, another category, a tampered signature, an
    // unknown key version. None changes anything.
    let forged = [
        path.replace(&w.gus.id, &w.mia.id),
        path.replace("c=mention", "c=task.assigned"),
        path.replace("&s=", "&s=00"),
        path.replace("&v=1", "&v=2"),
        path.split("&s=").next().unwrap_or_default().to_owned(),
    ];
    for link in &forged {
        for method in [Method::GET, Method::POST] {
            let r = served.call(None, method.clone(), link, None).await;
            r.assert_error(StatusCode::BAD_REQUEST, "invalid_link");
        }
    }
    for who in [&w.gus, &w.mia] {
        let prefs = served.get(who, "/api/v1/me/notification-preferences").await;
        assert_eq!(mention_email(&prefs.body), true);
    }

    // The RFC 8058 one-click POST unsubscribes gus from mention emails, once or twice.
    for _ in 0..2 {
        let head = [
            (
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("content-length", "26".to_owned()),
            ("connection", "close".to_owned()),
        ];
        let r = served
            .raw(Method::POST, &path, &head, "List-Unsubscribe=One-Click")
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert!(
            r.body.as_str().is_some_and(|b| b.contains("no longer")),
            "{:?}",
            r.body
        );
    }
    let prefs = served
        .get(&w.gus, "/api/v1/me/notification-preferences")
        .await;
    assert_eq!(mention_email(&prefs.body), false);
    assert_eq!(prefs.body["kinds"]["mention"]["in_app"], true);
    let prefs = served
        .get(&w.mia, "/api/v1/me/notification-preferences")
        .await;
    assert_eq!(mention_email(&prefs.body), true);

    // The next mention reaches gus in the app, not by email; mia still gets hers.
    let mut gus_ws = served.ws_with_ticket(&w.gus, 1).await;
    comment(&served, &w.owner, &task, "@gus @mia next").await;
    pushed(&mut gus_ws, 2).await;
    let got = sink.wait_for(2, DEADLINE).await;
    assert_eq!(parse(&got[1]).recipients, ["mia@example.test"]);
    assert_eq!(outbox(&app, &w.gus).await.len(), 1);
    served.stop().await;
}

async fn a_claimed_email_is_sent_after_a_crash(mut app: TestApp) {
    let sink = SmtpSink::start().await;
    let mut options = options_for(&sink);
    options.lease = Duration::from_secs(1);
    options.smtp_timeout = Duration::from_secs(60);
    app.options.email = Some(options);
    let w = world(&app).await;
    let task = id(&new_task(&app, &w.mia, &w.ws, json!({ "title": "t" })).await);

    // Node one claims the email, and dies while the server has not answered.
    sink.stall(true);
    let one = Served::start(&app).await;
    prefer(&one, &w.gus, json!({ "email": "gus@example.test" })).await;
    comment(&one, &w.mia, &task, "@gus crash").await;
    outbox_until(&app, &w.gus, "a claim", |r| {
        r.first().is_some_and(|e| e.status == "sending")
    })
    .await;
    one.stop().await;
    assert_eq!(sink.data_attempts(), 0);

    // Node two finds the lapsed lease and sends it, once.
    sink.stall(false);
    let two = Served::start(&app).await;
    let got = sink.wait_for(1, DEADLINE).await;
    let rows = outbox_until(&app, &w.gus, "sent", |r| {
        r.first().is_some_and(|e| e.status == "sent")
    })
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].attempts, 2);
    assert_eq!(
        parse(&got[0]).message_id,
        message_id_of(&rows[0].idempotency_key)
    );
    // Dispatching the same events again queues nothing new.
    assert_eq!(
        aistack_collab::notifications::dispatch_pending(&app.db)
            .await
            .ok(),
        Some(0)
    );
    assert_eq!(outbox(&app, &w.gus).await.len(), 1);
    assert_eq!(sink.accepted().len(), 1);
    two.stop().await;
}

async fn admins_preview_templates(app: TestApp) {
    let w = world(&app).await;
    let served = Served::start(&app).await;
    let uri = "/api/v1/admin/email-templates/mention/preview?locale=zh-CN";
    let r = served.get(&w.owner, uri).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["subject"],
        "Mia Chen 在「Ship the Q3 report」中提到了你"
    );
    assert!(r.body["text"].as_str().is_some_and(|t| t.contains("退订")));
    assert!(
        r.body["html"]
            .as_str()
            .is_some_and(|t| t.contains("&lt;before&gt;"))
    );
    let digest = served
        .get(&w.owner, "/api/v1/admin/email-templates/digest/preview")
        .await;
    assert_eq!(digest.status, StatusCode::OK, "{}", digest.body);
    assert_eq!(digest.body["subject"], "Your daily digest: 3 notifications");
    served
        .get(&w.mia, uri)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    served
        .call(None, Method::GET, uri, None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    served
        .get(&w.owner, "/api/v1/admin/email-templates/nope/preview")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    served
        .get(
            &w.owner,
            "/api/v1/admin/email-templates/mention/preview?locale=fr",
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    served.stop().await;
}

/// olga reads no workspace; the file shared with her is named in the email, which links
/// to the file.
async fn a_file_share_emails_its_recipient(mut app: TestApp) {
    let sink = SmtpSink::start().await;
    app.options.email = Some(options_for(&sink));
    let w = world(&app).await;
    let file = crate::file_comments::uploaded(&app, &w.mia, &w.ws, "q3 <plan>.txt").await;
    let served = Served::start(&app).await;
    prefer(&served, &w.olga, json!({ "email": "olga@example.test" })).await;
    let shares = format!("/api/v1/files/{file}/shares");
    let shared = served
        .post(
            &w.mia,
            &shares,
            json!({ "user_id": w.olga.id, "access": "read" }),
        )
        .await;
    assert_eq!(shared.status, StatusCode::CREATED, "{}", shared.body);
    let got = sink.wait_for(1, DEADLINE).await;
    let mail = parse(&got[0]);
    assert_eq!(mail.recipients, ["olga@example.test"]);
    assert_eq!(mail.subject, "mia shared “q3 <plan>.txt” with you");
    assert!(
        mail.text.contains("mia shared \"q3 <plan>.txt\" with you."),
        "{}",
        mail.text
    );
    let link = format!("{PUBLIC}/api/v1/files/{file}");
    assert!(
        mail.text.contains(&link) && mail.html.contains(&link),
        "{}",
        mail.text
    );
    served.stop().await;
}

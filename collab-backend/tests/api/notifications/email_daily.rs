//! A daily digest delivered, not only previewed: the daily window is two seconds here
//! ([`EmailOptions::daily_window`](aistack_collab::email::EmailOptions), the setting
//! production reads as 24 h), the hourly one stays an hour, so the digest that arrives
//! was composed for the daily mode, in the recipient's locale, once its window closed.

use std::time::Duration;

use aistack_collab::email::OutboxEmail;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::email::{Mail, options_for, outbox, parse, prefer};
use super::served::{DEADLINE, Served, comment, pushed};
use crate::smtp_sink::{Received, SmtpSink};
use crate::support::TestApp;
use crate::tasks::{id, new_task, world};

on_both_dialects!(a_daily_digest_is_sent_when_its_window_closes);

const DAY: Duration = Duration::from_secs(2);

/// The mode and the window end an outbox digest's idempotency key names.
fn window_of(row: &OutboxEmail) -> (String, DateTime<Utc>) {
    // digest:<user>:<mode>:<RFC 3339 end>; the end holds colons itself.
    let mut parts = row.idempotency_key.splitn(4, ':');
    let (kind, _user) = (parts.next(), parts.next());
    assert_eq!(kind, Some("digest"), "{}", row.idempotency_key);
    let mode = parts.next().unwrap_or_default().to_owned();
    let end = DateTime::parse_from_rfc3339(parts.next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{}: {e}", row.idempotency_key));
    (mode, end.with_timezone(&Utc))
}

/// gus (zh-CN) takes a daily digest, the owner an hourly one. Three notifications for gus
/// (two mentions, an assignment), one for the owner, then gus's daily window closes:
/// every one of gus's is in exactly one daily digest (they may straddle two windows),
/// each queued after its window ended, and the owner's hourly digest is not sent with it.
async fn a_daily_digest_is_sent_when_its_window_closes(mut app: TestApp) {
    let sink = SmtpSink::start().await;
    let mut options = options_for(&sink);
    options.daily_window = DAY;
    let hourly = options.hourly_window;
    app.options.email = Some(options);
    let w = world(&app).await;
    let task = id(&new_task(&app, &w.mia, &w.ws, json!({ "title": "Report" })).await);
    let served = Served::start(&app).await;
    let gus_prefs =
        json!({ "email": "gus@example.test", "email_mode": "daily", "locale": "zh-CN" });
    prefer(&served, &w.gus, gus_prefs).await;
    let owner_prefs = json!({ "email": "owner@example.test", "email_mode": "hourly" });
    prefer(&served, &w.owner, owner_prefs).await;
    let mut gus_ws = served.ws_with_ticket(&w.gus, 0).await;
    comment(&served, &w.mia, &task, "@gus @acme-owner first").await;
    pushed(&mut gus_ws, 1).await;
    comment(&served, &w.mia, &task, "@gus second").await;
    pushed(&mut gus_ws, 2).await;
    let body = json!({ "title": "Other", "assignees": [w.gus.id] });
    let r = served
        .post(&w.mia, &format!("/api/v1/workspaces/{}/tasks", w.ws), body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    pushed(&mut gus_ws, 3).await;

    // gus's only: the owner's hourly digest is sent too if the hour turns meanwhile.
    let of_gus = |mails: &[Received]| -> Vec<Mail> {
        mails
            .iter()
            .map(parse)
            .filter(|m| m.recipients == ["gus@example.test"])
            .collect()
    };
    let lines =
        |mails: &[Mail]| -> usize { mails.iter().map(|m| m.text.matches("\n- ").count()).sum() };
    let got = sink
        .wait_until(DEADLINE, "three notifications in daily digests", |a, _| {
            lines(&of_gus(a)) >= 3
        })
        .await;
    let got = of_gus(&got);
    assert_eq!(lines(&got), 3, "{} digests", got.len());
    let mut all = String::new();
    for mail in &got {
        assert_eq!(mail.to, "gus@example.test");
        let count = mail.text.matches("\n- ").count();
        assert_eq!(mail.subject, format!("每日摘要：{count} 条新通知"));
        assert!(
            mail.text
                .starts_with(&format!("过去一天你有 {count} 条新通知：")),
            "{}",
            mail.text
        );
        all.push_str(&mail.text);
    }
    assert_eq!(
        all.matches("mia 在「Report」中提到了你").count(),
        2,
        "{all}"
    );
    assert_eq!(
        all.matches("mia 给你分配了任务「Other」").count(),
        1,
        "{all}"
    );

    let rows = outbox(&app, &w.gus).await;
    assert_eq!(rows.len(), got.len(), "{rows:?}");
    let day = i64::try_from(DAY.as_micros()).expect("micros");
    for row in &rows {
        let (mode, end) = window_of(row);
        assert_eq!(mode, "daily", "{}", row.idempotency_key);
        assert_eq!(end.timestamp_micros() % day, 0, "aligned on the day");
        let queued = DateTime::parse_from_rfc3339(&row.created_at)
            .expect("created_at")
            .with_timezone(&Utc);
        assert!(queued >= end, "queued {queued} before its window ended");
    }
    // The owner's item was dispatched with gus's first: had it been given the daily
    // window, it would have been due, and queued, by the time gus's last digest was.
    // An hourly digest of it is queued only when the hour turns during the test.
    for row in outbox(&app, &w.owner).await {
        let (mode, end) = window_of(&row);
        assert_eq!(mode, "hourly", "{}", row.idempotency_key);
        let hour = i64::try_from(hourly.as_micros()).expect("micros");
        let on_the_hour = end.timestamp_micros() % hour == 0;
        assert!(on_the_hour, "not an hourly window: {}", row.idempotency_key);
    }
    served.stop().await;
}

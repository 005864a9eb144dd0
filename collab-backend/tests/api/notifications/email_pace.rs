//! The email sender's pace against the SMTP sink: at most `concurrency` emails in flight
//! (the sink, a slow server here, holds each end of DATA so that transfers in flight
//! together overlap), at most `rate_per_second` started a second, and retries of
//! temporary failures that wait the doubling backoff.
//!
//! The emails are queued before the backend serves: the mentions are written through the
//! router without the dispatcher, whose first pass, when [`Served`] starts, queues them
//! all at once. Times are asserted as lower bounds only (the sink's clock against what
//! the configured pace allows at the soonest), so a loaded machine makes them later,
//! never wrong.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::email::{options_for, parse};
use super::served::{DEADLINE, Served};
use crate::smtp_sink::{Hold, SmtpSink};
use crate::support::TestApp;
use crate::tasks::{id, new_task, world};

on_both_dialects!(
    emails_in_flight_stay_within_the_concurrency,
    emails_start_no_faster_than_the_rate,
    temporary_failures_wait_the_doubling_backoff,
);

/// gus (with an address) is mentioned `count` times by mia, each mention its own
/// immediate email; nothing is dispatched yet.
async fn mentions_waiting(app: &TestApp, count: usize) {
    let w = world(app).await;
    let task = id(&new_task(app, &w.mia, &w.ws, json!({ "title": "t" })).await);
    let body = json!({ "email": "gus@example.test" });
    let r = app
        .call(
            &w.gus.token,
            Method::PATCH,
            "/api/v1/me/notification-preferences",
            Some(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let uri = format!("/api/v1/tasks/{task}/comments");
    for n in 0..count {
        let body = json!({ "body": format!("@gus number {n}") });
        let r = app.call(&w.mia.token, Method::POST, &uri, Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
}

/// Six emails, two in flight at most, started as fast as they like. The sink holds each
/// end of DATA until a second one waits beside it (10 s at most) and for 300 ms at
/// least: both slots fill, and a third email in flight would overlap them. The SMTP
/// timeout outlasts the hold, so no held email is given up (and retried) while the sink
/// still counts it open.
async fn emails_in_flight_stay_within_the_concurrency(mut app: TestApp) {
    const EMAILS: usize = 6;
    let sink = SmtpSink::start().await;
    sink.hold_data(Hold {
        together: 2,
        at_most: Duration::from_secs(10),
        at_least: Duration::from_millis(300),
    });
    let mut options = options_for(&sink);
    options.concurrency = 2;
    options.rate_per_second = 1000;
    options.smtp_timeout = Duration::from_secs(30);
    app.options.email = Some(options);
    mentions_waiting(&app, EMAILS).await;
    let served = Served::start(&app).await;

    let got = sink.wait_for(EMAILS, DEADLINE * 3).await;
    assert_eq!(sink.max_open(), 2, "DATA transfers open at once");
    let mut ids: Vec<String> = got.iter().map(|m| parse(m).message_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), EMAILS, "each email once");
    assert_eq!(sink.data_attempts(), EMAILS);
    served.stop().await;
}

/// Six emails at four a second, all allowed in flight at once. The k-th email (from 0)
/// cannot start sooner than k/4 s after the sender was made, after `before`; it is
/// accepted after it started, so the k-th acceptance is at least that long after
/// `before`. Without the rate the six arrive within a few milliseconds of each other.
async fn emails_start_no_faster_than_the_rate(mut app: TestApp) {
    const EMAILS: usize = 6;
    const RATE: u32 = 4;
    let sink = SmtpSink::start().await;
    let mut options = options_for(&sink);
    options.concurrency = EMAILS;
    options.rate_per_second = RATE;
    app.options.email = Some(options);
    mentions_waiting(&app, EMAILS).await;
    let before = Instant::now();
    let served = Served::start(&app).await;

    let got = sink.wait_for(EMAILS, DEADLINE).await;
    let period = Duration::from_secs(1) / RATE;
    let mut after: Vec<Duration> = got.iter().map(|m| m.accepted_at - before).collect();
    after.sort();
    for (k, at) in after.iter().enumerate() {
        let soonest = period * u32::try_from(k).expect("a few emails");
        assert!(
            *at >= soonest,
            "email {k} accepted {at:?} after the start, sooner than the rate allows \
             ({soonest:?}); all: {after:?}"
        );
    }
    assert_eq!(sink.data_attempts(), EMAILS);
    served.stop().await;
}

/// Two temporary failures, then success, with a 200 ms base: the retry after the first
/// failure waits 200 ms at least, the one after the second 400 ms (measured from the end
/// of the failed DATA, before its reply, so never more than the backend waited).
async fn temporary_failures_wait_the_doubling_backoff(mut app: TestApp) {
    let base = Duration::from_millis(200);
    let sink = SmtpSink::start().await;
    let mut options = options_for(&sink);
    options.retry_base = base;
    app.options.email = Some(options);
    mentions_waiting(&app, 1).await;
    sink.reply_to_data(&["451 4.3.0 try again later", "421 4.7.0 busy"]);
    let served = Served::start(&app).await;

    sink.wait_for(1, DEADLINE).await;
    let ends = sink.data_ends();
    assert_eq!(ends.len(), 3, "two failures and the success");
    let waits = [ends[1] - ends[0], ends[2] - ends[1]];
    assert!(
        waits[0] >= base && waits[1] >= base * 2,
        "waits between attempts {waits:?}, expected at least {base:?} then {:?}",
        base * 2
    );
    served.stop().await;
}

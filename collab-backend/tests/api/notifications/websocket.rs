//! The notification WebSocket: ticket and header authentication, pushes with the
//! unread count, replay after reconnecting, heartbeats, shutdown, and (PostgreSQL)
//! pushes across nodes.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::served::{
    DEADLINE, Served, assert_closed_away, comment, count_message, ids, items, next,
    next_notification, pushed, upgrade_head,
};
use crate::support::TestApp;
use crate::tasks::{id, new_task, world};

on_both_dialects!(
    websocket_pushes_and_replays,
    websocket_needs_authentication,
    websocket_closes_when_its_token_is_revoked
);

async fn websocket_pushes_and_replays(app: TestApp) {
    let w = world(&app).await;
    let task = id(&new_task(&app, &w.mia, &w.ws, json!({ "title": "t" })).await);
    let served = Served::start(&app).await;
    // One socket through a ticket, one with the Authorization header.
    let mut first = served.ws_with_ticket(&w.gus, 0).await;
    let mut second = served.ws(Some(&w.gus), "").await;
    assert_eq!(next(&mut second).await, count_message(0));

    comment(&served, &w.mia, &task, "@gus one").await;
    let n1 = pushed(&mut first, 1).await;
    assert_eq!(pushed(&mut second, 1).await, n1);
    assert_eq!(n1["kind"], "mention");

    // `first` goes away; what comes meanwhile reaches `second`, and `first` gets it back
    // by reconnecting after the last id it saw.
    drop(first);
    comment(&served, &w.mia, &task, "@gus two").await;
    let n2 = pushed(&mut second, 2).await;
    let mut again = served
        .ws(Some(&w.gus), &format!("?after={}", id(&n1)))
        .await;
    assert_eq!(next_notification(&mut again).await, n2);
    assert_eq!(next(&mut again).await, count_message(2));
    // Without `after` nothing is replayed: only the count.
    let mut fresh = served.ws(Some(&w.gus), "").await;
    assert_eq!(next(&mut fresh).await, count_message(2));
    // Live pushes go on to every socket, each notification once.
    comment(&served, &w.mia, &task, "@gus three").await;
    let n3 = pushed(&mut again, 3).await;
    assert_eq!(pushed(&mut fresh, 3).await, n3);
    assert_eq!(pushed(&mut second, 3).await, n3);
    // Reading is pushed as a count.
    let uri = format!("/api/v1/notifications/{}/read", id(&n3));
    let marked = served.post(&w.gus, &uri, json!({})).await;
    assert_eq!(marked.status, StatusCode::OK, "{}", marked.body);
    for ws in [&mut again, &mut fresh, &mut second] {
        assert_eq!(next(ws).await, count_message(2));
    }
    // mia's own socket heard nothing of gus's notifications.
    let mut mia_ws = served.ws(Some(&w.mia), "").await;
    assert_eq!(next(&mut mia_ws).await, count_message(0));
    // A bad `after` is a 400 before any upgrade.
    let bad = served
        .raw(
            Method::GET,
            "/api/v1/ws?after=nope",
            &upgrade_head(Some(&w.gus)),
            "",
        )
        .await;
    bad.assert_error(StatusCode::BAD_REQUEST, "invalid_query");

    // Stopping the server closes every socket with 1001 (going away).
    served.stop().await;
    for ws in [&mut again, &mut fresh, &mut second, &mut mia_ws] {
        assert_closed_away(ws).await;
    }
}

async fn websocket_needs_authentication(app: TestApp) {
    let w = world(&app).await;
    let served = Served::start(&app).await;
    let upgrade = |uri: String, head: Vec<(&'static str, String)>| {
        let served = &served;
        async move { served.raw(Method::GET, &uri, &head, "").await }
    };
    // No credentials, a bad token, a made-up ticket: 401 with the JSON error.
    upgrade("/api/v1/ws".to_owned(), upgrade_head(None))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    let mut bad_token = upgrade_head(None);
    bad_token.push(("authorization", "Bearer aist_s_nope".to_owned()));
    upgrade("/api/v1/ws".to_owned(), bad_token)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    upgrade(
        "/api/v1/ws?ticket=aist_w_made-up".to_owned(),
        upgrade_head(None),
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    // tungstenite sees the refusal too.
    let url = format!("ws://{}/api/v1/ws", served.address);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
        other => panic!("expected a refused upgrade, got {:?}", other.map(|r| r.1)),
    }
    // A ticket survives requests that could not upgrade, then works once.
    let minted = served.post(&w.gus, "/api/v1/ws/tickets", json!({})).await;
    let ticket = minted.body["ticket"].as_str().expect("ticket").to_owned();
    served
        .call(
            None,
            Method::GET,
            &format!("/api/v1/ws?ticket={ticket}"),
            None,
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "websocket_required");
    upgrade(
        format!("/api/v1/ws?ticket={ticket}&after=nope"),
        upgrade_head(None),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    let mut ws = served.ws(None, &format!("?ticket={ticket}")).await;
    assert_eq!(next(&mut ws).await, count_message(0));
    upgrade(format!("/api/v1/ws?ticket={ticket}"), upgrade_head(None))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    // Minting needs a caller; an authenticated non-upgrade is a 400.
    served
        .call(None, Method::POST, "/api/v1/ws/tickets", Some(json!({})))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    served
        .get(&w.gus, "/api/v1/ws")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "websocket_required");
}

/// Re-authorization: signing out closes every socket opened with that token (by header or
/// through a ticket minted with it) at the next heartbeat, with 1008, and a ticket minted
/// before the sign-out no longer opens one; another user's socket stays open.
async fn websocket_closes_when_its_token_is_revoked(mut app: TestApp) {
    app.options.ws_heartbeat = Duration::from_millis(100);
    let w = world(&app).await;
    let served = Served::start(&app).await;
    // Every socket is read all along: reading answers the pings, and an unread socket
    // would be closed for silence (a slow machine can take longer than three heartbeats
    // between two steps), which is not what this test is about.
    let signing_out = Arc::new(OnceLock::new());
    let mut by_header = served.ws(Some(&w.gus), "").await;
    assert_eq!(next(&mut by_header).await, count_message(0));
    let by_header = tokio::spawn(policy_close(by_header, Arc::clone(&signing_out)));
    let by_ticket = served.ws_with_ticket(&w.gus, 0).await;
    let by_ticket = tokio::spawn(policy_close(by_ticket, Arc::clone(&signing_out)));
    let minted = served.post(&w.gus, "/api/v1/ws/tickets", json!({})).await;
    assert_eq!(minted.status, StatusCode::CREATED, "{}", minted.body);
    let unused = minted.body["ticket"].as_str().expect("ticket").to_owned();
    let mut mia_ws = served.ws(Some(&w.mia), "").await;
    assert_eq!(next(&mut mia_ws).await, count_message(0));
    // mia's socket is read all along (reading answers the pings, so silence never closes
    // it): it must see ten pings, well past gus's sign-out, and never a close.
    let mia_reader = tokio::spawn(async move {
        let mut pings = 0;
        while pings < 10 {
            let message = tokio::time::timeout(DEADLINE, mia_ws.next())
                .await
                .expect("a ping within the deadline")
                .expect("open")
                .expect("frame");
            assert!(matches!(message, Message::Ping(_)), "{message:?}");
            pings += 1;
        }
    });

    signing_out.set(()).expect("set once");
    let signed_out = served
        .post(&w.gus, "/api/v1/auth/sign-out", json!({}))
        .await;
    assert_eq!(
        signed_out.status,
        StatusCode::NO_CONTENT,
        "{}",
        signed_out.body
    );
    for reader in [by_header, by_ticket] {
        reader.await.expect("gus's socket was closed with 1008");
    }
    served
        .raw(
            Method::GET,
            &format!("/api/v1/ws?ticket={unused}"),
            &upgrade_head(None),
            "",
        )
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    // mia's token is live: her socket kept getting pings past several heartbeats.
    mia_reader.await.expect("mia's socket stayed open");
}

/// Reads (answering pings) until the server's close frame, which must be 1008 (policy
/// violation) and must come after `signing_out` was set.
async fn policy_close(mut ws: super::served::Ws, signing_out: Arc<OnceLock<()>>) {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    loop {
        let message = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a close within the deadline");
        match message {
            Some(Ok(Message::Ping(_))) => {}
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(frame.code, CloseCode::Policy, "{frame:?}");
                assert!(signing_out.get().is_some(), "closed before the sign-out");
                return;
            }
            other => panic!("expected a policy close, got {other:?}"),
        }
    }
}

/// Heartbeats: a client that answers pings stays past three intervals; a silent one is
/// closed with 1008. The silence is what is tested, so here the test sleeps.
#[tokio::test]
async fn websocket_heartbeat_drops_silent_clients() {
    use std::io::ErrorKind;
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let mut app = TestApp::sqlite().await;
    let w = world(&app).await;
    app.options.ws_heartbeat = Duration::from_millis(100);
    let served = Served::start(&app).await;
    let mut ws = served.ws(Some(&w.gus), "").await;
    assert_eq!(next(&mut ws).await, count_message(0));
    // Reading answers pings: five of them span more than three intervals.
    let mut pings = 0;
    while pings < 5 {
        let message = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a ping within the deadline")
            .expect("open")
            .expect("frame");
        assert!(matches!(message, Message::Ping(_)), "{message:?}");
        pings += 1;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    loop {
        let message = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a close within the deadline");
        match message {
            Some(Ok(Message::Ping(_))) => {}
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(frame.code, CloseCode::Policy, "{frame:?}");
                break;
            }
            // The client answers the queued pings first and may find the socket
            // already closed by the server.
            Some(Err(Error::Io(e)))
                if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) =>
            {
                break;
            }
            other => panic!("expected a policy close, got {other:?}"),
        }
    }
}

/// Two nodes on one PostgreSQL database: a write through one reaches a socket on the
/// other through `LISTEN`/`NOTIFY`, and so does a mark-read.
#[tokio::test]
async fn websocket_push_crosses_nodes_postgres() {
    let app = TestApp::postgres().await;
    let w = world(&app).await;
    let task = id(&new_task(&app, &w.mia, &w.ws, json!({ "title": "t" })).await);
    let (one, two) = (Served::start(&app).await, Served::start(&app).await);
    let mut gus_ws = two.ws_with_ticket(&w.gus, 0).await;
    // `two`'s LISTEN may connect after this write's NOTIFY; then the resync it
    // broadcasts on connecting finds the notification. Either way it is pushed, and
    // from then on `two` is listening: the next push can only come by NOTIFY.
    comment(&one, &w.mia, &task, "@gus one").await;
    let n1 = pushed(&mut gus_ws, 1).await;
    comment(&one, &w.mia, &task, "@gus two").await;
    let n2 = pushed(&mut gus_ws, 2).await;
    let all = items(&two.get(&w.gus, "/api/v1/notifications").await);
    assert_eq!(ids(&all), [id(&n2), id(&n1)]);
    // A mark-read on `one` is pushed by `two`.
    let read = one
        .post(&w.gus, "/api/v1/notifications/read", json!({ "all": true }))
        .await;
    assert_eq!(read.body["unread_count"], 0, "{}", read.body);
    assert_eq!(next(&mut gus_ws).await, count_message(0));
}

//! The notification center and its WebSocket, over a served backend (real TCP on port
//! 0, the dispatcher and hub running as in production): mentions become notifications
//! only for readers, the center lists, filters, pages, marks and deletes them, the
//! socket pushes them with the unread count and replays what a client missed, and
//! nobody reaches another user's notifications.
//!
//! People and structure are set up in memory (the helpers of `tasks` and `users`, on
//! the same database); what is under test goes over HTTP to the served backend, except
//! in `dispatch_rechecks_access_and_preferences`, which drives the dispatcher in
//! memory. The center and its access rules are here; the socket's tests are in
//! `websocket`, the harness in `served`.

mod due;
mod email;
mod email_daily;
mod email_pace;
mod email_tls;
mod fanout;
mod served;
mod websocket;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::TestApp;
use crate::tasks::{events_of, id, new_task, world};
use crate::users::Person;
use served::{Served, comment, count_message, ids, items, next, pushed, unread};

on_both_dialects!(
    mentions_fill_the_center,
    unreadable_mentions_notify_nobody,
    others_notifications_are_not_found,
    dispatch_rechecks_access_and_preferences,
    file_events_reach_a_share_holder,
    a_team_mention_reaches_each_member_once,
);

use fanout::a_team_mention_reaches_each_member_once;

async fn mentions_fill_the_center(app: TestApp) {
    let w = world(&app).await;
    let task = id(&new_task(&app, &w.mia, &w.ws, json!({ "title": "t" })).await);
    let served = Served::start(&app).await;
    let mut gus_ws = served.ws_with_ticket(&w.gus, 0).await;

    // mia mentions gus: one mention, linking to the comment; mia gets nothing.
    let c1 = comment(&served, &w.mia, &task, "@gus please look").await;
    let pushed_one = pushed(&mut gus_ws, 1).await;
    let list = items(&served.get(&w.gus, "/api/v1/notifications").await);
    assert_eq!(list, std::slice::from_ref(&pushed_one));
    let n1 = &list[0];
    assert_eq!(n1["kind"], "mention");
    assert_eq!(n1["resource_type"], "comment");
    assert_eq!(n1["resource_id"], c1["id"]);
    assert_eq!(n1["link"], format!("/api/v1/comments/{}", id(&c1)));
    assert_eq!(n1["actor_id"], w.mia.id);
    assert_eq!(n1["workspace_id"], w.ws);
    assert_eq!(n1["read_at"], Value::Null);
    assert_eq!(
        n1["payload"],
        json!({ "task_id": task, "source_kind": "comment", "via": "user" })
    );
    let linked = served.get(&w.gus, n1["link"].as_str().expect("link")).await;
    assert_eq!(linked.status, StatusCode::OK, "{}", linked.body);
    assert_eq!(linked.body["id"], c1["id"]);
    assert_eq!(unread(&served, &w.gus).await, 1);
    assert!(items(&served.get(&w.mia, "/api/v1/notifications").await).is_empty());
    assert_eq!(unread(&served, &w.mia).await, 0);

    // An assignment and a second mention: three, newest first, two per page.
    let body = json!({ "title": "t2", "assignees": [w.gus.id] });
    let uri = format!("/api/v1/workspaces/{}/tasks", w.ws);
    let t2 = served.post(&w.mia, &uri, body).await;
    assert_eq!(t2.status, StatusCode::CREATED, "{}", t2.body);
    let n2 = pushed(&mut gus_ws, 2).await;
    assert_eq!(
        (&n2["kind"], &n2["resource_id"]),
        (&json!("task.assigned"), &t2.body["id"])
    );
    assert_eq!(n2["link"], format!("/api/v1/tasks/{}", id(&t2.body)));
    comment(&served, &w.mia, &task, "@gus and again").await;
    let n3 = pushed(&mut gus_ws, 3).await;
    let first = served.get(&w.gus, "/api/v1/notifications?limit=2").await;
    assert_eq!(ids(&items(&first)), [id(&n3), id(&n2)]);
    let cursor = first.body["next_cursor"].as_str().expect("next_cursor");
    let rest = served
        .get(
            &w.gus,
            &format!("/api/v1/notifications?limit=2&cursor={cursor}"),
        )
        .await;
    assert_eq!(ids(&items(&rest)), [id(n1)]);
    assert_eq!(rest.body["next_cursor"], Value::Null);
    let mentions = served
        .get(&w.gus, "/api/v1/notifications?type=mention")
        .await;
    assert_eq!(ids(&items(&mentions)), [id(&n3), id(n1)]);

    // Marking one read: the count drops, on the socket too; marking it again is a no-op.
    let uri = format!("/api/v1/notifications/{}/read", id(n1));
    let marked = served.post(&w.gus, &uri, json!({})).await;
    assert_eq!(marked.status, StatusCode::OK, "{}", marked.body);
    assert_eq!(marked.body["id"], n1["id"]);
    assert!(marked.body["read_at"].is_string(), "{}", marked.body);
    assert_eq!(next(&mut gus_ws).await, count_message(2));
    assert_eq!(unread(&served, &w.gus).await, 2);
    let again = served.post(&w.gus, &uri, json!({})).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["read_at"], marked.body["read_at"]);
    let unread_list = served
        .get(&w.gus, "/api/v1/notifications?unread=true")
        .await;
    assert_eq!(ids(&items(&unread_list)), [id(&n3), id(&n2)]);
    let unread_mentions = "/api/v1/notifications?unread=true&type=mention";
    let unread_mentions = served.get(&w.gus, unread_mentions).await;
    assert_eq!(ids(&items(&unread_mentions)), [id(&n3)]);

    // Several by id, then all; neither ids-and-all nor nothing.
    let read = "/api/v1/notifications/read";
    for bad in [json!({}), json!({ "ids": [id(&n2)], "all": true })] {
        served
            .post(&w.gus, read, bad)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    }
    let some = served.post(&w.gus, read, json!({ "ids": [id(&n2)] })).await;
    assert_eq!(some.body, json!({ "marked": 1, "unread_count": 1 }));
    assert_eq!(next(&mut gus_ws).await, count_message(1));
    let all = served.post(&w.gus, read, json!({ "all": true })).await;
    assert_eq!(all.body, json!({ "marked": 1, "unread_count": 0 }));
    assert_eq!(next(&mut gus_ws).await, count_message(0));
    let none_left = served.post(&w.gus, read, json!({ "all": true })).await;
    assert_eq!(none_left.body, json!({ "marked": 0, "unread_count": 0 }));

    // Deleting: gone from the list; a second delete or a mark is 404.
    let uri = format!("/api/v1/notifications/{}", id(&n2));
    let deleted = served.call(Some(&w.gus), Method::DELETE, &uri, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let list = items(&served.get(&w.gus, "/api/v1/notifications").await);
    assert_eq!(ids(&list), [id(&n3), id(n1)]);
    served
        .call(Some(&w.gus), Method::DELETE, &uri, None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    served
        .post(&w.gus, &format!("{uri}/read"), json!({}))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

/// olga reads no workspace: a file shared with her, and a mention in a comment on it,
/// still reach her center and socket, linking to what she can open.
async fn file_events_reach_a_share_holder(app: TestApp) {
    let w = world(&app).await;
    let file = crate::file_comments::uploaded(&app, &w.mia, &w.ws, "plan.txt").await;
    let served = Served::start(&app).await;
    let mut olga_ws = served.ws_with_ticket(&w.olga, 0).await;
    let shares = format!("/api/v1/files/{file}/shares");
    let shared = served
        .post(
            &w.mia,
            &shares,
            json!({ "user_id": w.olga.id, "access": "read" }),
        )
        .await;
    assert_eq!(shared.status, StatusCode::CREATED, "{}", shared.body);
    let n1 = pushed(&mut olga_ws, 1).await;
    assert_eq!(n1["kind"], "file.shared");
    assert_eq!(n1["resource_type"], "file");
    assert_eq!(n1["link"], format!("/api/v1/files/{file}"));
    assert_eq!(
        n1["payload"],
        json!({ "file_id": file, "name": "plan.txt", "access": "read" })
    );
    let linked = served
        .get(&w.olga, n1["link"].as_str().expect("link"))
        .await;
    assert_eq!(linked.status, StatusCode::OK, "{}", linked.body);

    let uri = format!("/api/v1/files/{file}/comments");
    let c = served
        .post(&w.mia, &uri, json!({ "body": "@olga have a look" }))
        .await;
    assert_eq!(c.status, StatusCode::CREATED, "{}", c.body);
    let n2 = pushed(&mut olga_ws, 2).await;
    assert_eq!(
        (&n2["kind"], &n2["resource_id"]),
        (&json!("mention"), &c.body["id"])
    );
    let linked = served
        .get(&w.olga, n2["link"].as_str().expect("link"))
        .await;
    assert_eq!(linked.status, StatusCode::OK, "{}", linked.body);
    assert_eq!(linked.body["body"], "@olga have a look");
    let list = items(&served.get(&w.olga, "/api/v1/notifications").await);
    assert_eq!(ids(&list), [id(&n2), id(&n1)]);
    served.stop().await;
}

async fn unreadable_mentions_notify_nobody(app: TestApp) {
    let w = world(&app).await;
    let rival = app.owner("rival").await;
    let task = id(&new_task(&app, &w.mia, &w.ws, json!({ "title": "t" })).await);
    let served = Served::start(&app).await;
    let mut gus_ws = served.ws_with_ticket(&w.gus, 0).await;

    // olga (same org, no access) and rival-owner (another org) are mentioned beside
    // gus; once gus's notification is pushed the comment's events were dispatched.
    let plain = comment(&served, &w.mia, &task, "nobody here").await;
    let c = comment(&served, &w.mia, &task, "@olga @rival-owner @gus see").await;
    let n = pushed(&mut gus_ws, 1).await;
    assert_eq!(n["resource_id"], c["id"]);
    for nobody in [&w.olga, &rival] {
        assert!(events_of(&app, nobody).await.is_empty(), "{}", nobody.id);
        let list = items(&served.get(nobody, "/api/v1/notifications").await);
        assert!(list.is_empty(), "{list:?}");
        assert_eq!(unread(&served, nobody).await, 0);
    }
    // The response is a plain comment: same fields, nobody's id.
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(&c), keys(&plain));
    let text = c.to_string();
    for nobody in [&w.olga, &rival, &w.gus] {
        assert!(!text.contains(&nobody.id), "{text}");
    }
    // olga cannot follow the link either.
    let link = n["link"].as_str().expect("link");
    served
        .get(&w.olga, link)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

async fn others_notifications_are_not_found(app: TestApp) {
    let w = world(&app).await;
    let task = id(&new_task(&app, &w.owner, &w.ws, json!({ "title": "t" })).await);
    let served = Served::start(&app).await;
    let mut mia_ws = served.ws_with_ticket(&w.mia, 0).await;
    comment(&served, &w.gus, &task, "@mia yours").await;
    let theirs = pushed(&mut mia_ws, 1).await;
    let uri = format!("/api/v1/notifications/{}", id(&theirs));

    // gus (who caused it) and an owner of another org see nothing of it.
    let rival = app.owner("rival").await;
    for other in [&w.gus, &rival] {
        let read = served.post(other, &format!("{uri}/read"), json!({})).await;
        read.assert_error(StatusCode::NOT_FOUND, "not_found");
        assert!(
            !read.body.to_string().contains(&id(&theirs)),
            "{}",
            read.body
        );
        served
            .call(Some(other), Method::DELETE, &uri, None)
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
        let by_id = served
            .post(
                other,
                "/api/v1/notifications/read",
                json!({ "ids": [id(&theirs)] }),
            )
            .await;
        assert_eq!(by_id.body, json!({ "marked": 0, "unread_count": 0 }));
        let all = served
            .post(other, "/api/v1/notifications/read", json!({ "all": true }))
            .await;
        assert_eq!(all.body, json!({ "marked": 0, "unread_count": 0 }));
        assert!(items(&served.get(other, "/api/v1/notifications").await).is_empty());
        // Reconnecting "after" nothing replays only one's own.
        let nil = uuid::Uuid::nil();
        let mut ws = served.ws(Some(other), &format!("?after={nil}")).await;
        assert_eq!(next(&mut ws).await, count_message(0));
    }
    // mia's is untouched and unread; an unknown id is the same 404.
    let list = items(&served.get(&w.mia, "/api/v1/notifications").await);
    assert_eq!(list, [theirs]);
    assert_eq!(unread(&served, &w.mia).await, 1);
    let unknown = format!("/api/v1/notifications/{}/read", uuid::Uuid::now_v7());
    served
        .post(&w.mia, &unknown, json!({}))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

/// In memory (no dispatcher runs there): the dispatcher re-checks access and
/// preferences when it turns an event into a notification.
async fn dispatch_rechecks_access_and_preferences(app: TestApp) {
    let w = world(&app).await;
    let task = id(&new_task(&app, &w.mia, &w.ws, json!({ "title": "t" })).await);
    let say = |text: &'static str| {
        let (app, mia, uri) = (&app, &w.mia, format!("/api/v1/tasks/{task}/comments"));
        async move {
            let r = app
                .call(
                    &mia.token,
                    Method::POST,
                    &uri,
                    Some(json!({ "body": text })),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        }
    };
    let dispatch = || aistack_collab::notifications::dispatch_pending(&app.db);
    let count = |who: &Person| {
        let token = who.token.clone();
        let app = &app;
        async move {
            let r = app
                .call(&token, Method::GET, "/api/v1/notifications", None)
                .await;
            items(&r).len()
        }
    };

    // Mention turned off in-app: delivered, no notification; back on: one.
    let prefs = "/api/v1/me/notification-preferences";
    let off = json!({ "kinds": { "mention": { "in_app": false } } });
    let r = app
        .call(&w.gus.token, Method::PATCH, prefs, Some(off))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["kinds"]["mention"],
        json!({ "in_app": false, "email": true })
    );
    say("@gus muted kind").await;
    assert_eq!(dispatch().await.expect("dispatch"), 0);
    assert_eq!(count(&w.gus).await, 0);
    let on = json!({ "kinds": { "mention": { "in_app": true } } });
    let r = app.call(&w.gus.token, Method::PATCH, prefs, Some(on)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    say("@gus on again").await;
    assert_eq!(dispatch().await.expect("dispatch"), 1);
    assert_eq!(count(&w.gus).await, 1);

    // A muted workspace notifies nothing.
    let mute = format!("/api/v1/me/muted-workspaces/{}", w.ws);
    let r = app.call(&w.mia.token, Method::PUT, &mute, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = app
        .call(
            &w.gus.token,
            Method::POST,
            &format!("/api/v1/tasks/{task}/comments"),
            Some(json!({ "body": "@mia muted" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(dispatch().await.expect("dispatch"), 0);
    assert_eq!(count(&w.mia).await, 0);

    // Access lost between the mention and its dispatch: no notification; dispatching
    // again makes nothing more (each event once).
    let rex = app.user(&w.owner, "rex").await;
    let grant = app.grant(&w.owner, &rex, "guest", "workspace", &w.ws).await;
    say("@rex soon gone").await;
    assert_eq!(events_of(&app, &rex).await.len(), 1);
    let r = app
        .call(
            &w.owner.token,
            Method::DELETE,
            &format!("/api/v1/grants/{grant}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(dispatch().await.expect("dispatch"), 0);
    assert_eq!(count(&rex).await, 0);
    assert_eq!(dispatch().await.expect("dispatch"), 0);
    assert_eq!(count(&w.gus).await, 1);
}

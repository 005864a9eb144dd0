//! Comments: threads one level deep, edit history, soft delete, reactions (unique under
//! concurrency), pagination; mentions and the events comments queue.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, TestResponse};
use crate::tasks::{events_of, id, new_task, world};
use crate::users::Person;

on_both_dialects!(
    threads_edits_and_soft_delete,
    concurrent_duplicate_reactions_land_once,
    comment_pages_follow_the_cursor,
    mentions_reach_readers_once,
    at_all_needs_permission,
    comments_on_my_task_notify_me,
);

async fn comment(app: &TestApp, who: &Person, task: &str, body: Value) -> TestResponse {
    app.call(
        &who.token,
        Method::POST,
        &format!("/api/v1/tasks/{task}/comments"),
        Some(body),
    )
    .await
}

async fn posted(app: &TestApp, who: &Person, task: &str, body: Value) -> Value {
    let response = comment(app, who, task, body).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body
}

async fn threads_edits_and_soft_delete(app: TestApp) {
    let w = world(&app).await;
    let task = id(&new_task(&app, &w.mia, &w.ws, json!({ "title": "t" })).await);
    let root = posted(&app, &w.mia, &task, json!({ "body": "first" })).await;
    let reply = posted(
        &app,
        &w.gus,
        &task,
        json!({ "body": "re", "parent_id": root["id"] }),
    )
    .await;
    assert_eq!(reply["parent_id"], root["id"]);
    comment(
        &app,
        &w.gus,
        &task,
        json!({ "body": "deeper", "parent_id": reply["id"] }),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    comment(&app, &w.gus, &task, json!({ "body": "  " }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "validation_failed");

    let uri = format!("/api/v1/comments/{}", id(&root));
    let edit = json!({ "body": "first, edited" });
    app.call(&w.mia.token, Method::PATCH, &uri, Some(edit.clone()))
        .await
        .assert_error(StatusCode::PRECONDITION_REQUIRED, "precondition_required");
    app.call_with(
        &w.gus.token,
        Method::PATCH,
        &uri,
        Some(edit.clone()),
        &[("if-match", "*")],
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let edited = app
        .call_with(
            &w.mia.token,
            Method::PATCH,
            &uri,
            Some(edit.clone()),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    assert_eq!(edited.body["edit_count"], 1);
    app.call_with(
        &w.mia.token,
        Method::PATCH,
        &uri,
        Some(edit),
        &[("if-match", "\"1\"")],
    )
    .await
    .assert_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let history = app
        .call(&w.gus.token, Method::GET, &format!("{uri}/edits"), None)
        .await;
    assert_eq!(
        history.body,
        json!([{ "body": "first", "edited_at": history.body[0]["edited_at"] }])
    );

    // Another member may not delete it; the author may; the tombstone keeps the thread.
    app.call(&w.gus.token, Method::DELETE, &uri, None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(
        app.call(&w.mia.token, Method::DELETE, &uri, None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call(&w.mia.token, Method::DELETE, &uri, None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let list = app
        .call(
            &w.gus.token,
            Method::GET,
            &format!("/api/v1/tasks/{task}/comments"),
            None,
        )
        .await;
    let items = list.body["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["deleted"], true);
    assert_eq!(items[0]["body"], "");
    assert_eq!(items[1]["body"], "re");
    let history = app
        .call(&w.gus.token, Method::GET, &format!("{uri}/edits"), None)
        .await;
    assert_eq!(history.body, json!([]));
    app.call_with(
        &w.mia.token,
        Method::PATCH,
        &uri,
        Some(json!({ "body": "x" })),
        &[("if-match", "*")],
    )
    .await
    .assert_error(StatusCode::CONFLICT, "conflict");
    // A moderator (admin) may delete someone else's comment.
    let reply_uri = format!("/api/v1/comments/{}", id(&reply));
    assert_eq!(
        app.call(&w.owner.token, Method::DELETE, &reply_uri, None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let thread = app
        .call(
            &w.gus.token,
            Method::GET,
            &format!("/api/v1/tasks/{task}/comments?thread={}", id(&root)),
            None,
        )
        .await;
    assert_eq!(thread.body["items"].as_array().map(Vec::len), Some(1));
}

async fn concurrent_duplicate_reactions_land_once(app: TestApp) {
    let w = world(&app).await;
    let task = id(&new_task(&app, &w.mia, &w.ws, json!({ "title": "t" })).await);
    let c = posted(&app, &w.mia, &task, json!({ "body": "react to me" })).await;
    let uri = format!("/api/v1/comments/{}/reactions", id(&c));
    let attempts = (0..8).map(|_| {
        app.call(
            &w.gus.token,
            Method::POST,
            &uri,
            Some(json!({ "emoji": "👍" })),
        )
    });
    let results = futures_util::future::join_all(attempts).await;
    let statuses: Vec<StatusCode> = results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        7,
        "{statuses:?}"
    );
    let again = app
        .call(
            &w.mia.token,
            Method::POST,
            &uri,
            Some(json!({ "emoji": "👍" })),
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    app.call(
        &w.mia.token,
        Method::POST,
        &uri,
        Some(json!({ "emoji": "🎉" })),
    )
    .await;
    let read = app
        .call(
            &w.gus.token,
            Method::GET,
            &format!("/api/v1/comments/{}", id(&c)),
            None,
        )
        .await;
    let reactions = &read.body["reactions"];
    assert_eq!(reactions.as_array().map(Vec::len), Some(2), "{reactions}");
    let thumbs = reactions
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["emoji"] == "👍")
        .cloned()
        .unwrap_or_default();
    assert_eq!(thumbs["count"], 2);
    let mut who: Vec<String> = vec![w.gus.id.clone(), w.mia.id.clone()];
    who.sort();
    assert_eq!(thumbs["users"], json!(who));
    app.call(
        &w.gus.token,
        Method::POST,
        &uri,
        Some(json!({ "emoji": "a b" })),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    let gone = app
        .call(
            &w.gus.token,
            Method::DELETE,
            &format!("{uri}/%F0%9F%91%8D"),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.body);
    app.call(
        &w.gus.token,
        Method::DELETE,
        &format!("{uri}/%F0%9F%91%8D"),
        None,
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
}

async fn comment_pages_follow_the_cursor(app: TestApp) {
    let w = world(&app).await;
    let task = id(&new_task(&app, &w.mia, &w.ws, json!({ "title": "t" })).await);
    for i in 0..5 {
        posted(&app, &w.mia, &task, json!({ "body": format!("c{i}") })).await;
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let uri = format!("/api/v1/tasks/{task}/comments?limit=2&cursor={cursor}");
        let page = app.call(&w.gus.token, Method::GET, &uri, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        seen.extend(
            page.body["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| c["body"].clone()),
        );
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ["c0", "c1", "c2", "c3", "c4"]);
}

fn mentions(events: &[(String, String)]) -> usize {
    events.iter().filter(|(kind, _)| kind == "mention").count()
}

async fn mentions_reach_readers_once(app: TestApp) {
    let w = world(&app).await;
    let rival = app.owner("rival").await;
    let task = id(&new_task(&app, &w.owner, &w.ws, json!({ "title": "t" })).await);
    // gus reads the workspace; olga (same org, no access) and rival-owner do not;
    // @ops is the team (mia is a member); @nobody names nobody.
    let body = json!({ "body": "hi @gus @olga @rival-owner @ops @nobody `@gus` @mia" });
    let c = posted(&app, &w.owner, &task, body).await;
    assert_eq!(
        c["body"],
        "hi @gus @olga @rival-owner @ops @nobody `@gus` @mia"
    );
    assert_eq!(mentions(&events_of(&app, &w.gus).await), 1);
    assert_eq!(mentions(&events_of(&app, &w.mia).await), 1);
    assert!(events_of(&app, &w.olga).await.is_empty());
    assert!(events_of(&app, &rival).await.is_empty());
    assert!(events_of(&app, &w.owner).await.is_empty());
    // An edit notifies only the handles it adds: @rex is new; @olga was already in the
    // text (unreadable then), so granting her access later does not make the edit
    // notify her.
    let rex = app.user(&w.owner, "rex").await;
    app.grant(&w.owner, &rex, "guest", "workspace", &w.ws).await;
    app.grant(&w.owner, &w.olga, "guest", "workspace", &w.ws)
        .await;
    let uri = format!("/api/v1/comments/{}", id(&c));
    let edited = app
        .call_with(
            &w.owner.token,
            Method::PATCH,
            &uri,
            Some(json!({ "body": "@gus @olga @rex again" })),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    assert_eq!(mentions(&events_of(&app, &rex).await), 1);
    assert_eq!(mentions(&events_of(&app, &w.olga).await), 0);
    assert_eq!(mentions(&events_of(&app, &w.gus).await), 1);
    // Removing and re-adding a mention does not notify again.
    for (tag, text) in [("\"2\"", "nobody"), ("\"3\"", "@gus back")] {
        let r = app
            .call_with(
                &w.owner.token,
                Method::PATCH,
                &uri,
                Some(json!({ "body": text })),
                &[("if-match", tag)],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(mentions(&events_of(&app, &w.gus).await), 1);
    // Task descriptions mention too; the event names the task as its resource.
    let t2 = new_task(
        &app,
        &w.owner,
        &w.ws,
        json!({ "title": "t2", "description": "for @gus" }),
    )
    .await;
    let gus_events = events_of(&app, &w.gus).await;
    assert_eq!(
        gus_events.last(),
        Some(&("mention".to_owned(), "task".to_owned()))
    );
    let uri = format!("/api/v1/tasks/{}", id(&t2));
    let r = app
        .call_with(
            &w.owner.token,
            Method::PATCH,
            &uri,
            Some(json!({ "description": "for @gus and @mia" })),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(mentions(&events_of(&app, &w.gus).await), 2);
    assert_eq!(mentions(&events_of(&app, &w.mia).await), 2);
}

async fn at_all_needs_permission(app: TestApp) {
    let w = world(&app).await;
    let task = id(&new_task(&app, &w.mia, &w.ws, json!({ "title": "t" })).await);
    comment(&app, &w.mia, &task, json!({ "body": "@all look" }))
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    // Quoted in code, it is no mention.
    posted(
        &app,
        &w.mia,
        &task,
        json!({ "body": "type `@all` to ping" }),
    )
    .await;
    posted(&app, &w.owner, &task, json!({ "body": "@all look" })).await;
    for who in [&w.mia, &w.gus] {
        assert_eq!(mentions(&events_of(&app, who).await), 1, "{}", who.id);
    }
    assert!(events_of(&app, &w.olga).await.is_empty());
}

async fn comments_on_my_task_notify_me(app: TestApp) {
    let w = world(&app).await;
    let task = id(&new_task(
        &app,
        &w.mia,
        &w.ws,
        json!({ "title": "t", "assignees": [w.gus.id] }),
    )
    .await);
    posted(&app, &w.owner, &task, json!({ "body": "nice" })).await;
    let kinds = |e: Vec<(String, String)>| {
        e.into_iter()
            .map(|(k, r)| format!("{k}/{r}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kinds(events_of(&app, &w.mia).await),
        ["task.commented/comment"]
    );
    assert_eq!(
        kinds(events_of(&app, &w.gus).await),
        ["task.assigned/task", "task.commented/comment"]
    );
    // Mentioned watchers get the mention only; the author nothing.
    posted(&app, &w.gus, &task, json!({ "body": "@mia see" })).await;
    assert_eq!(
        kinds(events_of(&app, &w.mia).await),
        ["task.commented/comment", "mention/comment"]
    );
    assert_eq!(events_of(&app, &w.gus).await.len(), 2);
}

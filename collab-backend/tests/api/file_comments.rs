//! Comments on files (the task comments' behaviour on the file's permissions), mentions
//! in them reaching readers of the file only, and the `file.shared` event of a share
//! with a user.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::files::serve;
use crate::support::{TestApp, TestResponse};
use crate::tasks::{id, new_task, world};
use crate::users::Person;

on_both_dialects!(
    file_comments_thread_edit_react_delete_and_page,
    file_comment_mentions_reach_file_readers_only,
    a_user_share_notifies_its_recipient_once,
);

/// `who` uploads `name` to workspace `ws` (over HTTP: uploads are raw bodies); its id.
pub async fn uploaded(app: &TestApp, who: &Person, ws: &str, name: &str) -> String {
    let http = serve(app).await;
    let got = http.upload(who, ws, name, b"the plan").await;
    assert_eq!(got.status, StatusCode::CREATED);
    id(&got.json())
}

async fn comment(app: &TestApp, who: &Person, file: &str, body: Value) -> TestResponse {
    let uri = format!("/api/v1/files/{file}/comments");
    app.call(&who.token, Method::POST, &uri, Some(body)).await
}

async fn posted(app: &TestApp, who: &Person, file: &str, body: Value) -> Value {
    let response = comment(app, who, file, body).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body
}

async fn share(app: &TestApp, who: &Person, file: &str, body: Value) -> TestResponse {
    let uri = format!("/api/v1/files/{file}/shares");
    app.call(&who.token, Method::POST, &uri, Some(body)).await
}

/// The events queued for `who`: kind, resource type, payload.
async fn events(app: &TestApp, who: &Person) -> Vec<(String, String, Value)> {
    let user = uuid::Uuid::parse_str(&who.id).expect("uuid");
    aistack_collab::outbox::for_recipient(&app.db, user)
        .await
        .expect("events")
        .into_iter()
        .map(|e| (e.kind, e.resource_type, e.payload))
        .collect()
}

async fn file_comments_thread_edit_react_delete_and_page(app: TestApp) {
    let w = world(&app).await;
    let file = uploaded(&app, &w.mia, &w.ws, "plan.txt").await;
    let root = posted(&app, &w.mia, &file, json!({ "body": "first" })).await;
    assert_eq!(
        (&root["resource_kind"], &root["resource_id"]),
        (&json!("file"), &json!(file))
    );
    let reply = posted(
        &app,
        &w.gus,
        &file,
        json!({ "body": "re", "parent_id": root["id"] }),
    )
    .await;
    assert_eq!(reply["parent_id"], root["id"]);
    comment(
        &app,
        &w.gus,
        &file,
        json!({ "body": "deeper", "parent_id": reply["id"] }),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    // A comment of a task is no parent for a file's comment (same ids, other kind).
    let task = id(&new_task(&app, &w.mia, &w.ws, json!({ "title": "t" })).await);
    let uri = format!("/api/v1/tasks/{task}/comments");
    let on_task = app
        .call(
            &w.mia.token,
            Method::POST,
            &uri,
            Some(json!({ "body": "x" })),
        )
        .await;
    assert_eq!(on_task.status, StatusCode::CREATED, "{}", on_task.body);
    comment(
        &app,
        &w.gus,
        &file,
        json!({ "body": "re", "parent_id": on_task.body["id"] }),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "validation_failed");

    // Edits: If-Match required, author only, history kept.
    let uri = format!("/api/v1/comments/{}", id(&root));
    let edit = json!({ "body": "first, edited" });
    app.call(&w.mia.token, Method::PATCH, &uri, Some(edit.clone()))
        .await
        .assert_error(StatusCode::PRECONDITION_REQUIRED, "precondition_required");
    let headers = [("if-match", "\"1\"")];
    app.call_with(
        &w.gus.token,
        Method::PATCH,
        &uri,
        Some(edit.clone()),
        &headers,
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let edited = app
        .call_with(
            &w.mia.token,
            Method::PATCH,
            &uri,
            Some(edit.clone()),
            &headers,
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    assert_eq!(
        edited.headers.get("etag").map(|v| v.as_bytes()),
        Some(&b"\"2\""[..])
    );
    assert_eq!(edited.body["edit_count"], 1);
    app.call_with(&w.mia.token, Method::PATCH, &uri, Some(edit), &headers)
        .await
        .assert_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let history = app
        .call(&w.gus.token, Method::GET, &format!("{uri}/edits"), None)
        .await;
    assert_eq!(history.body[0]["body"], "first");

    // Reactions: once per user per emoji.
    let reactions = format!("/api/v1/comments/{}/reactions", id(&reply));
    let thumbs = Some(json!({ "emoji": "👍" }));
    let added = app
        .call(&w.mia.token, Method::POST, &reactions, thumbs.clone())
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    let again = app
        .call(&w.mia.token, Method::POST, &reactions, thumbs)
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["reactions"][0]["count"], 1);
    let gone = app
        .call(
            &w.mia.token,
            Method::DELETE,
            &format!("{reactions}/%F0%9F%91%8D"),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.body);

    // Soft delete keeps the thread.
    let deleted = app.call(&w.mia.token, Method::DELETE, &uri, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let list_uri = format!("/api/v1/files/{file}/comments");
    let list = app.call(&w.gus.token, Method::GET, &list_uri, None).await;
    let items = list.body["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2, "{}", list.body);
    assert_eq!(
        (&items[0]["deleted"], &items[0]["body"]),
        (&json!(true), &json!(""))
    );
    assert_eq!(items[1]["body"], "re");

    // Pages follow the cursor; the task's comment is not among them.
    for i in 0..3 {
        posted(&app, &w.mia, &file, json!({ "body": format!("c{i}") })).await;
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let uri = format!("{list_uri}?limit=2&cursor={cursor}");
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
    assert_eq!(seen, ["", "re", "c0", "c1", "c2"]);

    // A read share lets olga read the comments, not write or react.
    let shared = share(
        &app,
        &w.mia,
        &file,
        json!({ "user_id": w.olga.id, "access": "read" }),
    )
    .await;
    assert_eq!(shared.status, StatusCode::CREATED, "{}", shared.body);
    let list = app.call(&w.olga.token, Method::GET, &list_uri, None).await;
    assert_eq!(
        list.body["items"].as_array().map(Vec::len),
        Some(5),
        "{}",
        list.body
    );
    let one = format!("/api/v1/comments/{}", id(&reply));
    let read = app.call(&w.olga.token, Method::GET, &one, None).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    comment(&app, &w.olga, &file, json!({ "body": "hi" }))
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.call(
        &w.olga.token,
        Method::POST,
        &reactions,
        Some(json!({ "emoji": "👍" })),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");

    // Deleting the file deletes its comments; the task's comment stays.
    let http = serve(&app).await;
    let removed = http
        .call(
            &w.owner,
            "DELETE",
            &format!("/api/v1/files/{file}"),
            None,
            &[],
        )
        .await;
    assert_eq!(
        removed.status,
        StatusCode::NO_CONTENT,
        "{:?}",
        removed.json()
    );
    app.call(&w.mia.token, Method::GET, &one, None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let kept = format!("/api/v1/comments/{}", id(&on_task.body));
    let kept = app.call(&w.mia.token, Method::GET, &kept, None).await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.body);
}

fn mentions(events: &[(String, String, Value)]) -> Vec<&Value> {
    events
        .iter()
        .filter(|(kind, _, _)| kind == "mention")
        .map(|(_, _, payload)| payload)
        .collect()
}

async fn file_comment_mentions_reach_file_readers_only(app: TestApp) {
    let w = world(&app).await;
    let rival = app.owner("rival").await;
    let rex = app.user(&w.owner, "rex").await;
    let file = uploaded(&app, &w.mia, &w.ws, "plan.txt").await;
    // olga reads the file through a share only; rex reads nothing here.
    let shared = share(
        &app,
        &w.mia,
        &file,
        json!({ "user_id": w.olga.id, "access": "read" }),
    )
    .await;
    assert_eq!(shared.status, StatusCode::CREATED, "{}", shared.body);
    let c = posted(
        &app,
        &w.mia,
        &file,
        json!({ "body": "@gus @olga @rex @rival-owner @mia see" }),
    )
    .await;
    let expected = json!({ "file_id": file, "source_kind": "comment", "via": "user" });
    for reader in [&w.gus, &w.olga] {
        let got = events(&app, reader).await;
        assert_eq!(mentions(&got), [&expected], "{}", reader.id);
        let (_, resource, _) = got
            .iter()
            .find(|e| e.0 == "mention")
            .cloned()
            .unwrap_or_default();
        assert_eq!(resource, "comment");
    }
    for nobody in [&rex, &rival, &w.mia] {
        assert!(
            mentions(&events(&app, nobody).await).is_empty(),
            "{}",
            nobody.id
        );
    }
    // Once rex can read the file, an edit adding him... he was already in the text, so
    // it does not; a new handle does (as for task comments).
    let share_rex = share(
        &app,
        &w.mia,
        &file,
        json!({ "user_id": rex.id, "access": "read" }),
    )
    .await;
    assert_eq!(share_rex.status, StatusCode::CREATED, "{}", share_rex.body);
    let uri = format!("/api/v1/comments/{}", id(&c));
    let edited = app
        .call_with(
            &w.mia.token,
            Method::PATCH,
            &uri,
            Some(json!({ "body": "@rex @acme-owner now" })),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    assert!(mentions(&events(&app, &rex).await).is_empty());
    assert_eq!(mentions(&events(&app, &w.owner).await), [&expected]);
    // A comment on a task mentioning olga (no workspace access) still reaches nobody.
    let task = id(&new_task(&app, &w.mia, &w.ws, json!({ "title": "t" })).await);
    let r = app
        .call(
            &w.mia.token,
            Method::POST,
            &format!("/api/v1/tasks/{task}/comments"),
            Some(json!({ "body": "@olga" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(mentions(&events(&app, &w.olga).await).len(), 1);
}

async fn a_user_share_notifies_its_recipient_once(app: TestApp) {
    let w = world(&app).await;
    let file = uploaded(&app, &w.mia, &w.ws, "plan.txt").await;
    let body = json!({ "user_id": w.olga.id, "access": "read" });
    let shared = share(&app, &w.mia, &file, body.clone()).await;
    assert_eq!(shared.status, StatusCode::CREATED, "{}", shared.body);
    let expected = (
        "file.shared".to_owned(),
        "file".to_owned(),
        json!({ "file_id": file, "name": "plan.txt", "access": "read" }),
    );
    assert_eq!(events(&app, &w.olga).await, std::slice::from_ref(&expected));
    // A refused duplicate queues nothing (the event is in the share's transaction).
    share(&app, &w.mia, &file, body)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(events(&app, &w.olga).await, [expected]);
    // A share with a workspace notifies none of its readers; the sharer hears nothing.
    let to_ws = share(
        &app,
        &w.mia,
        &file,
        json!({ "workspace_id": w.other_ws, "access": "read" }),
    )
    .await;
    assert_eq!(to_ws.status, StatusCode::CREATED, "{}", to_ws.body);
    for who in [&w.owner, &w.mia, &w.gus] {
        assert!(events(&app, who).await.is_empty(), "{}", who.id);
    }
    assert_eq!(events(&app, &w.olga).await.len(), 1);
}

//! Tasks: fields and their validation, ETag / If-Match, subtasks, assignees, list
//! filters and pagination, the workload view, and the events task writes queue.

use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::support::{TestApp, TestResponse};
use crate::users::Person;

on_both_dialects!(
    task_fields_etags_and_delete,
    assignees_must_read_the_workspace,
    list_filters_and_cursor_pagination,
    concurrent_updates_with_one_tag_let_one_win,
    workload_per_person_across_a_team,
    task_writes_queue_events,
);

/// An org with team `ops` (workspace `ws`), owner, a team member `mia` and a guest `gus`
/// of the workspace, and `olga`, a user of the org without access.
pub struct World {
    pub owner: Person,
    pub team: String,
    pub ws: String,
    pub other_ws: String,
    pub mia: Person,
    pub gus: Person,
    pub olga: Person,
}

pub async fn world(app: &TestApp) -> World {
    let owner = app.owner("acme").await;
    let org = owner.org_id.clone();
    let team = app
        .create(
            &owner,
            &format!("/api/v1/organizations/{org}/teams"),
            json!({ "name": "Ops" }),
        )
        .await;
    let ws = app
        .create(
            &owner,
            &format!("/api/v1/teams/{team}/workspaces"),
            json!({ "name": "W" }),
        )
        .await;
    let other_team = app
        .create(
            &owner,
            &format!("/api/v1/organizations/{org}/teams"),
            json!({ "name": "Web" }),
        )
        .await;
    let other_ws = app
        .create(
            &owner,
            &format!("/api/v1/teams/{other_team}/workspaces"),
            json!({ "name": "X" }),
        )
        .await;
    let mia = app.user(&owner, "mia").await;
    app.grant(&owner, &mia, "member", "team", &team).await;
    let gus = app.user(&owner, "gus").await;
    app.grant(&owner, &gus, "guest", "workspace", &ws).await;
    let olga = app.user(&owner, "olga").await;
    World {
        owner,
        team,
        ws,
        other_ws,
        mia,
        gus,
        olga,
    }
}

pub async fn new_task(app: &TestApp, who: &Person, ws: &str, body: Value) -> Value {
    let uri = format!("/api/v1/workspaces/{ws}/tasks");
    let response = app.call(&who.token, Method::POST, &uri, Some(body)).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body
}

fn etag_of(response: &TestResponse) -> String {
    response
        .headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .expect("ETag")
        .to_owned()
}

pub fn id(value: &Value) -> String {
    value["id"].as_str().expect("id").to_owned()
}

async fn patch(
    app: &TestApp,
    who: &Person,
    task: &str,
    tag: Option<&str>,
    body: Value,
) -> TestResponse {
    let headers: Vec<(&str, &str)> = tag.map(|t| ("if-match", t)).into_iter().collect();
    app.call_with(
        &who.token,
        Method::PATCH,
        &format!("/api/v1/tasks/{task}"),
        Some(body),
        &headers,
    )
    .await
}

async fn task_fields_etags_and_delete(app: TestApp) {
    let w = world(&app).await;
    let body = json!({
        "title": "  Ship it ", "priority": "high", "due_date": "2030-01-31",
        "progress": 10, "estimate_minutes": 90, "assignees": [w.mia.id],
    });
    let task = new_task(&app, &w.mia, &w.ws, body).await;
    assert_eq!(task["title"], "Ship it");
    assert_eq!(task["status"], "todo");
    assert_eq!(task["revision"], 1);
    let uri = format!("/api/v1/tasks/{}", id(&task));
    let read = app.call(&w.gus.token, Method::GET, &uri, None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(etag_of(&read), "\"1\"");
    assert_eq!(read.body, task);

    let change = json!({ "status": "in_progress", "progress": 50 });
    patch(&app, &w.mia, &id(&task), None, change.clone())
        .await
        .assert_error(StatusCode::PRECONDITION_REQUIRED, "precondition_required");
    patch(&app, &w.mia, &id(&task), Some("\"0\""), change.clone())
        .await
        .assert_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let updated = patch(&app, &w.mia, &id(&task), Some("\"1\""), change).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(etag_of(&updated), "\"2\"");
    assert_eq!(updated.body["progress"], 50);
    let stale = patch(
        &app,
        &w.mia,
        &id(&task),
        Some("\"1\""),
        json!({ "progress": 60 }),
    )
    .await;
    stale.assert_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let cleared = patch(
        &app,
        &w.mia,
        &id(&task),
        Some("*"),
        json!({ "due_date": null }),
    )
    .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.body);
    assert!(cleared.body["due_date"].is_null());

    for (field, bad) in [
        ("progress", json!({ "progress": 150 })),
        ("progress", json!({ "progress": -1 })),
        ("status", json!({ "status": "shipped" })),
        ("priority", json!({ "priority": "whenever" })),
        ("due_date", json!({ "due_date": "31.01.2030" })),
        ("estimate_minutes", json!({ "estimate_minutes": -5 })),
        ("title", json!({ "title": " " })),
    ] {
        let response = patch(&app, &w.mia, &id(&task), Some("*"), bad).await;
        response.assert_error(StatusCode::BAD_REQUEST, "validation_failed");
        let message = response.body["error"]["message"].as_str().unwrap_or("");
        assert!(message.starts_with(field), "{field}: {message}");
    }
    let create_bad = app
        .call(
            &w.mia.token,
            Method::POST,
            &format!("/api/v1/workspaces/{}/tasks", w.ws),
            Some(json!({ "title": "x", "progress": 101 })),
        )
        .await;
    create_bad.assert_error(StatusCode::BAD_REQUEST, "validation_failed");

    // Subtasks: same workspace only; a parent with subtasks cannot be deleted.
    let sub = new_task(
        &app,
        &w.mia,
        &w.ws,
        json!({ "title": "sub", "parent_id": id(&task) }),
    )
    .await;
    assert_eq!(sub["parent_id"], task["id"]);
    let elsewhere = app
        .call(
            &w.owner.token,
            Method::POST,
            &format!("/api/v1/workspaces/{}/tasks", w.other_ws),
            Some(json!({ "title": "x", "parent_id": id(&task) })),
        )
        .await;
    elsewhere.assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    let listed = app
        .call(
            &w.mia.token,
            Method::GET,
            &format!("/api/v1/workspaces/{}/tasks?parent_id={}", w.ws, id(&task)),
            None,
        )
        .await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));

    // Deleting needs task.delete (admin): a member gets 403.
    app.call(&w.mia.token, Method::DELETE, &uri, None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.call(&w.owner.token, Method::DELETE, &uri, None)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    let sub_uri = format!("/api/v1/tasks/{}", id(&sub));
    app.call_with(
        &w.owner.token,
        Method::DELETE,
        &sub_uri,
        None,
        &[("if-match", "\"7\"")],
    )
    .await
    .assert_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let deleted = app
        .call_with(
            &w.owner.token,
            Method::DELETE,
            &sub_uri,
            None,
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let deleted = app.call(&w.owner.token, Method::DELETE, &uri, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    app.call(&w.owner.token, Method::GET, &uri, None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

async fn assignees_must_read_the_workspace(app: TestApp) {
    let w = world(&app).await;
    let rival = app.owner("rival").await;
    for outsider in [
        &w.olga.id,
        &rival.id,
        &"0190c0de-0000-7000-8000-000000000000".to_owned(),
    ] {
        let response = app
            .call(
                &w.mia.token,
                Method::POST,
                &format!("/api/v1/workspaces/{}/tasks", w.ws),
                Some(json!({ "title": "x", "assignees": [outsider] })),
            )
            .await;
        response.assert_error(StatusCode::BAD_REQUEST, "validation_failed");
        assert!(
            response.body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("assignees")
        );
    }
    let task = new_task(
        &app,
        &w.mia,
        &w.ws,
        json!({ "title": "x", "assignees": [w.gus.id, w.gus.id, w.mia.id] }),
    )
    .await;
    assert_eq!(task["assignees"].as_array().map(Vec::len), Some(2));
}

async fn list_filters_and_cursor_pagination(app: TestApp) {
    let w = world(&app).await;
    for (i, (status, due, assignee)) in [
        ("todo", "2030-01-01", &w.mia.id),
        ("done", "2030-02-01", &w.mia.id),
        ("todo", "2030-03-01", &w.gus.id),
        ("review", "2030-04-01", &w.mia.id),
        ("todo", "2030-05-01", &w.owner.id),
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({ "title": format!("t{i}"), "status": status, "due_date": due, "assignees": [assignee] });
        new_task(&app, &w.owner, &w.ws, body).await;
    }
    new_task(
        &app,
        &w.owner,
        &w.other_ws,
        json!({ "title": "hidden", "assignees": [w.owner.id] }),
    )
    .await;
    let titles = |r: &TestResponse| -> Vec<String> {
        r.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["title"].as_str().map(str::to_owned))
            .collect()
    };
    let base = format!("/api/v1/workspaces/{}/tasks", w.ws);
    let mine = app
        .call(
            &w.mia.token,
            Method::GET,
            &format!("{base}?assignee=me"),
            None,
        )
        .await;
    assert_eq!(titles(&mine), ["t0", "t1", "t3"]);
    let todo = app
        .call(
            &w.mia.token,
            Method::GET,
            &format!("{base}?status=todo&due_before=2030-03-01"),
            None,
        )
        .await;
    assert_eq!(titles(&todo), ["t0", "t2"]);
    let later = app
        .call(
            &w.mia.token,
            Method::GET,
            &format!("{base}?due_after=2030-04-01"),
            None,
        )
        .await;
    assert_eq!(titles(&later), ["t3", "t4"]);
    app.call(
        &w.mia.token,
        Method::GET,
        &format!("{base}?due_before=soon"),
        None,
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    // Cursor pagination walks every task once, in creation order.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app
            .call(
                &w.gus.token,
                Method::GET,
                &format!("{base}?limit=2&cursor={cursor}"),
                None,
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        seen.extend(titles(&page));
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ["t0", "t1", "t2", "t3", "t4"]);
    // Across workspaces: only what the caller can read.
    let gus_all = app
        .call(&w.gus.token, Method::GET, "/api/v1/tasks", None)
        .await;
    assert_eq!(titles(&gus_all).len(), 5);
    let owner_all = app
        .call(
            &w.owner.token,
            Method::GET,
            "/api/v1/tasks?assignee=me",
            None,
        )
        .await;
    assert_eq!(titles(&owner_all), ["t4", "hidden"]);
}

async fn concurrent_updates_with_one_tag_let_one_win(app: TestApp) {
    let w = world(&app).await;
    let task = new_task(&app, &w.mia, &w.ws, json!({ "title": "race" })).await;
    let attempts = (0..6).map(|i| {
        patch(
            &app,
            &w.mia,
            task["id"].as_str().unwrap_or(""),
            Some("\"1\""),
            json!({ "progress": i * 10 }),
        )
    });
    let results = futures_util::future::join_all(attempts).await;
    let won = results
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let lost = results
        .iter()
        .filter(|r| r.status == StatusCode::PRECONDITION_FAILED)
        .count();
    assert_eq!(
        (won, lost),
        (1, 5),
        "{:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
}

async fn workload_per_person_across_a_team(app: TestApp) {
    let w = world(&app).await;
    for (due, estimate, status, assignees) in [
        ("2000-01-01", 60, "todo", vec![&w.mia.id]),
        ("2999-01-01", 30, "in_progress", vec![&w.mia.id, &w.gus.id]),
        ("2000-01-01", 500, "done", vec![&w.mia.id]),
    ] {
        let body = json!({ "title": "t", "due_date": due, "estimate_minutes": estimate, "status": status, "assignees": assignees });
        new_task(&app, &w.owner, &w.ws, body).await;
    }
    let uri = format!("/api/v1/teams/{}/workload", w.team);
    let response = app.call(&w.mia.token, Method::GET, &uri, None).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let rows = response.body.as_array().cloned().unwrap_or_default();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["username"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(row("mia")["open_tasks"], 2);
    assert_eq!(row("mia")["estimate_minutes"], 90);
    assert_eq!(row("mia")["overdue"], 1);
    assert_eq!(row("gus")["open_tasks"], 1);
    assert_eq!(row("gus")["overdue"], 0);
    let rival = app.owner("rival").await;
    app.call(&rival.token, Method::GET, &uri, None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

/// Events for `who`, as `(kind, resource_type)`.
pub async fn events_of(app: &TestApp, who: &Person) -> Vec<(String, String)> {
    let user = uuid::Uuid::parse_str(&who.id).expect("uuid");
    aistack_collab::outbox::for_recipient(&app.db, user)
        .await
        .expect("events")
        .into_iter()
        .map(|e| (e.kind, e.resource_type))
        .collect()
}

fn kinds(events: &[(String, String)]) -> Vec<&str> {
    events.iter().map(|(k, _)| k.as_str()).collect()
}

async fn task_writes_queue_events(app: TestApp) {
    let w = world(&app).await;
    let task = new_task(
        &app,
        &w.mia,
        &w.ws,
        json!({ "title": "x", "assignees": [w.gus.id, w.mia.id] }),
    )
    .await;
    // The actor is never notified of their own action.
    assert!(events_of(&app, &w.mia).await.is_empty());
    assert_eq!(kinds(&events_of(&app, &w.gus).await), ["task.assigned"]);
    let moved = patch(
        &app,
        &w.owner,
        &id(&task),
        Some("\"1\""),
        json!({ "status": "review" }),
    )
    .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    assert_eq!(
        kinds(&events_of(&app, &w.gus).await),
        ["task.assigned", "task.status_changed"]
    );
    assert_eq!(
        kinds(&events_of(&app, &w.mia).await),
        ["task.status_changed"]
    );
    // Re-saving the same assignees notifies nobody again.
    let same = patch(
        &app,
        &w.owner,
        &id(&task),
        Some("*"),
        json!({ "assignees": [w.gus.id, w.mia.id] }),
    )
    .await;
    assert_eq!(same.status, StatusCode::OK);
    assert_eq!(events_of(&app, &w.gus).await.len(), 2);
    let event = aistack_collab::outbox::for_recipient(
        &app.db,
        uuid::Uuid::parse_str(&w.gus.id).expect("uuid"),
    )
    .await
    .expect("events")
    .pop()
    .expect("one");
    assert_eq!(event.payload["from"], "todo");
    assert_eq!(event.payload["to"], "review");
    assert_eq!(
        event.actor_id.map(|a| a.to_string()),
        Some(w.owner.id.clone())
    );
    assert_eq!(event.workspace_id.to_string(), w.ws);
    assert_eq!(event.resource_id.to_string(), id(&task));
    assert!(event.delivered_at.is_none());
    let pending = aistack_collab::outbox::pending(&app.db, None, 100)
        .await
        .expect("pending");
    assert_eq!(pending.len(), 3);
    assert!(
        aistack_collab::outbox::mark_delivered(&app.db, event.id)
            .await
            .expect("mark")
    );
    assert_eq!(
        aistack_collab::outbox::pending(&app.db, None, 100)
            .await
            .expect("pending")
            .len(),
        2
    );
}

//! Permission inheritance paths, the narrower-grant rule, custom roles, isolation
//! (404 across organizations and workspaces) and the audit log.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::TestApp;
use crate::users::Person;

on_both_dialects!(
    org_grant_reaches_every_workspace,
    department_grant_reaches_sub_departments_their_teams_and_workspaces,
    team_membership_reaches_the_teams_workspaces_only,
    workspace_grant_reaches_only_that_workspace,
    narrower_grant_never_lowers_an_inherited_one,
    custom_role_extends_a_builtin_role,
    other_organizations_and_unreadable_workspaces_are_404,
    visible_but_forbidden_is_403,
    department_moves_and_deletes_follow_the_rules,
    membership_changes_are_audited,
    task_comment_and_workload_routes_are_404_across_workspaces,
);

/// Org → dept (→ sub-dept → team B → workspace B), team A → workspace A.
struct Tree {
    owner: Person,
    dept: String,
    sub: String,
    team_a: String,
    team_b: String,
    ws_a: String,
    ws_b: String,
}

async fn tree(app: &TestApp) -> Tree {
    let owner = app.owner("acme").await;
    let org = owner.org_id.clone();
    let dept = app
        .create(
            &owner,
            &format!("/api/v1/organizations/{org}/departments"),
            json!({ "name": "Eng" }),
        )
        .await;
    let sub = app
        .create(
            &owner,
            &format!("/api/v1/organizations/{org}/departments"),
            json!({ "name": "Web", "parent_id": dept }),
        )
        .await;
    let team_a = app
        .create(
            &owner,
            &format!("/api/v1/organizations/{org}/teams"),
            json!({ "name": "Ops" }),
        )
        .await;
    let team_b = app
        .create(
            &owner,
            &format!("/api/v1/organizations/{org}/teams"),
            json!({ "name": "Front", "department_id": sub }),
        )
        .await;
    let ws_a = app
        .create(
            &owner,
            &format!("/api/v1/teams/{team_a}/workspaces"),
            json!({ "name": "A" }),
        )
        .await;
    let ws_b = app
        .create(
            &owner,
            &format!("/api/v1/teams/{team_b}/workspaces"),
            json!({ "name": "B" }),
        )
        .await;
    Tree {
        owner,
        dept,
        sub,
        team_a,
        team_b,
        ws_a,
        ws_b,
    }
}

async fn visible_workspaces(app: &TestApp, who: &Person) -> Vec<String> {
    let response = app
        .call(&who.token, Method::GET, "/api/v1/workspaces", None)
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let mut ids: Vec<String> = response
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

async fn can_read(app: &TestApp, who: &Person, ws: &str) -> StatusCode {
    app.call(
        &who.token,
        Method::GET,
        &format!("/api/v1/workspaces/{ws}"),
        None,
    )
    .await
    .status
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

async fn org_grant_reaches_every_workspace(app: TestApp) {
    let t = tree(&app).await;
    let guest = app.user(&t.owner, "gina").await;
    assert!(visible_workspaces(&app, &guest).await.is_empty());
    app.grant(&t.owner, &guest, "guest", "org", &t.owner.org_id)
        .await;
    assert_eq!(
        visible_workspaces(&app, &guest).await,
        sorted(vec![t.ws_a.clone(), t.ws_b.clone()])
    );
    assert_eq!(
        visible_workspaces(&app, &t.owner).await,
        sorted(vec![t.ws_a, t.ws_b])
    );
}

async fn department_grant_reaches_sub_departments_their_teams_and_workspaces(app: TestApp) {
    let t = tree(&app).await;
    let dana = app.user(&t.owner, "dana").await;
    app.grant(&t.owner, &dana, "admin", "department", &t.dept)
        .await;
    assert_eq!(visible_workspaces(&app, &dana).await, vec![t.ws_b.clone()]);
    assert_eq!(can_read(&app, &dana, &t.ws_b).await, StatusCode::OK);
    assert_eq!(can_read(&app, &dana, &t.ws_a).await, StatusCode::NOT_FOUND);
    // Admin on the department: may create workspaces in its teams, not elsewhere.
    let in_sub = app
        .call(
            &dana.token,
            Method::POST,
            &format!("/api/v1/teams/{}/workspaces", t.team_b),
            Some(json!({ "name": "B2" })),
        )
        .await;
    assert_eq!(in_sub.status, StatusCode::CREATED, "{}", in_sub.body);
    let outside = app
        .call(
            &dana.token,
            Method::POST,
            &format!("/api/v1/teams/{}/workspaces", t.team_a),
            Some(json!({ "name": "A2" })),
        )
        .await;
    outside.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let _ = t.sub;
}

async fn team_membership_reaches_the_teams_workspaces_only(app: TestApp) {
    let t = tree(&app).await;
    let tom = app.user(&t.owner, "tom").await;
    let response = app
        .call(
            &t.owner.token,
            Method::POST,
            &format!("/api/v1/teams/{}/members", t.team_a),
            Some(json!({ "user_id": tom.id })),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    assert_eq!(response.body["role"], "member");
    assert_eq!(visible_workspaces(&app, &tom).await, vec![t.ws_a.clone()]);
    let members = app
        .call(
            &tom.token,
            Method::GET,
            &format!("/api/v1/teams/{}/members", t.team_a),
            None,
        )
        .await;
    assert_eq!(members.body.as_array().map(Vec::len), Some(1));
    let removed = app
        .call(
            &t.owner.token,
            Method::DELETE,
            &format!("/api/v1/teams/{}/members/{}", t.team_a, tom.id),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert!(visible_workspaces(&app, &tom).await.is_empty());
    assert_eq!(can_read(&app, &tom, &t.ws_a).await, StatusCode::NOT_FOUND);
}

async fn workspace_grant_reaches_only_that_workspace(app: TestApp) {
    let t = tree(&app).await;
    let wes = app.user(&t.owner, "wes").await;
    app.grant(&t.owner, &wes, "guest", "workspace", &t.ws_b)
        .await;
    assert_eq!(visible_workspaces(&app, &wes).await, vec![t.ws_b.clone()]);
    assert_eq!(can_read(&app, &wes, &t.ws_a).await, StatusCode::NOT_FOUND);
    let patch = app
        .call(
            &wes.token,
            Method::PATCH,
            &format!("/api/v1/workspaces/{}", t.ws_b),
            Some(json!({ "name": "x" })),
        )
        .await;
    patch.assert_error(StatusCode::FORBIDDEN, "forbidden");
}

async fn narrower_grant_never_lowers_an_inherited_one(app: TestApp) {
    let t = tree(&app).await;
    let ada = app.user(&t.owner, "ada").await;
    app.grant(&t.owner, &ada, "admin", "org", &t.owner.org_id)
        .await;
    app.grant(&t.owner, &ada, "guest", "workspace", &t.ws_a)
        .await;
    let patch = app
        .call(
            &ada.token,
            Method::PATCH,
            &format!("/api/v1/workspaces/{}", t.ws_a),
            Some(json!({ "name": "Renamed" })),
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK, "{}", patch.body);
    assert_eq!(patch.body["name"], "Renamed");
}

async fn custom_role_extends_a_builtin_role(app: TestApp) {
    let t = tree(&app).await;
    let uri = format!("/api/v1/organizations/{}/roles", t.owner.org_id);
    let body =
        json!({ "name": "curator", "extends": "guest", "permissions": ["workspace.manage"] });
    let role = app
        .call(&t.owner.token, Method::POST, &uri, Some(body))
        .await;
    assert_eq!(role.status, StatusCode::CREATED, "{}", role.body);
    let permissions = role.body["permissions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for p in ["workspace.read", "comment.create", "workspace.manage"] {
        assert!(permissions.contains(&json!(p)), "{p}: {}", role.body);
    }
    let bad = json!({ "name": "x", "permissions": ["launch.missiles"] });
    app.call(&t.owner.token, Method::POST, &uri, Some(bad))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    let cora = app.user(&t.owner, "cora").await;
    let role_id = role.body["id"].as_str().expect("id");
    app.grant(&t.owner, &cora, role_id, "team", &t.team_b).await;
    let patch = app
        .call(
            &cora.token,
            Method::PATCH,
            &format!("/api/v1/workspaces/{}", t.ws_b),
            Some(json!({ "task_statuses": ["open", "closed"] })),
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK, "{}", patch.body);
    assert_eq!(patch.body["task_statuses"], json!(["open", "closed"]));
    let roles = app.call(&cora.token, Method::GET, &uri, None).await;
    assert_eq!(roles.body.as_array().map(Vec::len), Some(5));
}

async fn other_organizations_and_unreadable_workspaces_are_404(app: TestApp) {
    let t = tree(&app).await;
    let rival = app.owner("rival").await;
    let org = &t.owner.org_id;
    for uri in [
        format!("/api/v1/workspaces/{}", t.ws_a),
        format!("/api/v1/teams/{}", t.team_a),
        format!("/api/v1/teams/{}/members", t.team_a),
        format!("/api/v1/departments/{}", t.dept),
        format!("/api/v1/organizations/{org}/users"),
        format!("/api/v1/organizations/{org}/teams"),
        format!("/api/v1/organizations/{org}/departments"),
        format!("/api/v1/organizations/{org}/roles"),
        format!("/api/v1/organizations/{org}/audit"),
    ] {
        let response = app.call(&rival.token, Method::GET, &uri, None).await;
        response.assert_error(StatusCode::NOT_FOUND, "not_found");
        let text = response.body.to_string();
        assert!(
            !text.contains(&t.ws_a) && !text.contains("acme"),
            "{uri}: {text}"
        );
    }
    for (method, uri, body) in [
        (
            Method::PATCH,
            format!("/api/v1/workspaces/{}", t.ws_b),
            json!({ "name": "x" }),
        ),
        (
            Method::POST,
            format!("/api/v1/teams/{}/workspaces", t.team_b),
            json!({ "name": "x" }),
        ),
        (
            Method::POST,
            format!("/api/v1/teams/{}/members", t.team_b),
            json!({ "user_id": rival.id }),
        ),
        (
            Method::PATCH,
            format!("/api/v1/teams/{}", t.team_b),
            json!({ "name": "x" }),
        ),
        (
            Method::PATCH,
            format!("/api/v1/departments/{}", t.dept),
            json!({ "name": "x" }),
        ),
    ] {
        let response = app.call(&rival.token, method, &uri, Some(body)).await;
        response.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    let grant =
        json!({ "user_id": rival.id, "role": "owner", "scope_kind": "org", "scope_id": org });
    app.call(&rival.token, Method::POST, "/api/v1/grants", Some(grant))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

async fn visible_but_forbidden_is_403(app: TestApp) {
    let t = tree(&app).await;
    let mia = app.user(&t.owner, "mia").await;
    app.grant(&t.owner, &mia, "member", "team", &t.team_a).await;
    let org = &t.owner.org_id;
    let dept = app
        .call(
            &mia.token,
            Method::POST,
            &format!("/api/v1/organizations/{org}/departments"),
            Some(json!({ "name": "x" })),
        )
        .await;
    dept.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let grant = json!({ "user_id": mia.id, "role": "owner", "scope_kind": "org", "scope_id": org });
    app.call(&mia.token, Method::POST, "/api/v1/grants", Some(grant))
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
}

async fn department_moves_and_deletes_follow_the_rules(app: TestApp) {
    let t = tree(&app).await;
    let uri = format!("/api/v1/departments/{}", t.dept);
    let cycle = app
        .call(
            &t.owner.token,
            Method::PATCH,
            &uri,
            Some(json!({ "parent_id": t.sub })),
        )
        .await;
    cycle.assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    assert!(
        cycle.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("parent_id")
    );
    app.call(&t.owner.token, Method::DELETE, &uri, None)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    // Move the sub-department to the top: a grant on Eng no longer reaches team B.
    let dana = app.user(&t.owner, "dana").await;
    app.grant(&t.owner, &dana, "guest", "department", &t.dept)
        .await;
    assert_eq!(visible_workspaces(&app, &dana).await, vec![t.ws_b.clone()]);
    let moved = app
        .call(
            &t.owner.token,
            Method::PATCH,
            &format!("/api/v1/departments/{}", t.sub),
            Some(json!({ "parent_id": null })),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    assert!(moved.body["parent_id"].is_null());
    assert!(visible_workspaces(&app, &dana).await.is_empty());
    let deleted = app.call(&t.owner.token, Method::DELETE, &uri, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let team = app
        .call(
            &t.owner.token,
            Method::DELETE,
            &format!("/api/v1/teams/{}", t.team_b),
            None,
        )
        .await;
    team.assert_error(StatusCode::CONFLICT, "conflict");
}

async fn membership_changes_are_audited(app: TestApp) {
    let t = tree(&app).await;
    let eve = app.user(&t.owner, "eve").await;
    let grant = app.grant(&t.owner, &eve, "member", "team", &t.team_a).await;
    let revoke = app
        .call(
            &t.owner.token,
            Method::DELETE,
            &format!("/api/v1/grants/{grant}"),
            None,
        )
        .await;
    assert_eq!(revoke.status, StatusCode::NO_CONTENT);
    let log = app
        .call(
            &t.owner.token,
            Method::GET,
            &format!("/api/v1/organizations/{}/audit", t.owner.org_id),
            None,
        )
        .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let actions: Vec<&str> = log.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in [
        "user.register",
        "user.create",
        "grant.create",
        "grant.delete",
    ] {
        assert!(actions.contains(&action), "{action}: {actions:?}");
    }
    app.call(
        &eve.token,
        Method::GET,
        &format!("/api/v1/organizations/{}/audit", t.owner.org_id),
        None,
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
}

/// Every route about tasks, comments and workloads, as `(method, template)`; the test
/// below fails when a documented route of that family is missing here.
const TASK_FAMILY: &[(&str, &str)] = &[
    ("GET", "/api/v1/workspaces/{id}/tasks"),
    ("POST", "/api/v1/workspaces/{id}/tasks"),
    ("GET", "/api/v1/tasks/{id}"),
    ("PATCH", "/api/v1/tasks/{id}"),
    ("DELETE", "/api/v1/tasks/{id}"),
    ("GET", "/api/v1/tasks/{id}/comments"),
    ("POST", "/api/v1/tasks/{id}/comments"),
    ("GET", "/api/v1/comments/{id}"),
    ("PATCH", "/api/v1/comments/{id}"),
    ("DELETE", "/api/v1/comments/{id}"),
    ("GET", "/api/v1/comments/{id}/edits"),
    ("POST", "/api/v1/comments/{id}/reactions"),
    ("DELETE", "/api/v1/comments/{id}/reactions/{emoji}"),
    ("GET", "/api/v1/teams/{id}/workload"),
];

async fn task_comment_and_workload_routes_are_404_across_workspaces(app: TestApp) {
    for (path, methods) in aistack_collab::documented_routes() {
        // A file's routes (its comments included) have their matrix in `files`.
        let family = ["/tasks", "/comments", "/workload"]
            .iter()
            .any(|p| path.contains(p))
            && !path.starts_with("/api/v1/files/");
        for method in methods.iter().filter(|_| family && path != "/api/v1/tasks") {
            assert!(
                TASK_FAMILY.contains(&(method.as_str(), path.as_str())),
                "{method} {path} is missing from the isolation matrix"
            );
        }
    }
    let w = crate::tasks::world(&app).await;
    let task = crate::tasks::new_task(&app, &w.owner, &w.ws, json!({ "title": "secret" })).await;
    let task = task["id"].as_str().unwrap_or_default().to_owned();
    let uri = format!("/api/v1/tasks/{task}/comments");
    let comment = app.create(&w.owner, &uri, json!({ "body": "hush" })).await;
    let rival = app.owner("rival").await;
    let body = |method: &str, path: &str| match (method, path) {
        ("POST", p) if p.ends_with("/reactions") => Some(json!({ "emoji": "x" })),
        ("POST", p) if p.ends_with("/comments") => Some(json!({ "body": "x" })),
        ("POST", _) => Some(json!({ "title": "x" })),
        ("PATCH", p) if p.contains("/comments/") => Some(json!({ "body": "x" })),
        ("PATCH", _) => Some(json!({ "title": "x" })),
        _ => None,
    };
    // An outsider of the organization, and a user of it who cannot read the workspace.
    for stranger in [&rival, &w.olga] {
        for (method, template) in TASK_FAMILY {
            let id = if template.starts_with("/api/v1/workspaces") {
                &w.ws
            } else if template.starts_with("/api/v1/teams") {
                if stranger.id == w.olga.id {
                    continue; // teams are visible org-wide; the workload test covers scoping
                }
                &w.team
            } else if template.starts_with("/api/v1/tasks") {
                &task
            } else {
                &comment
            };
            let uri = template.replace("{id}", id).replace("{emoji}", "x");
            let method = Method::from_bytes(method.as_bytes()).expect("method");
            let response = app
                .call_with(
                    &stranger.token,
                    method.clone(),
                    &uri,
                    body(method.as_str(), template),
                    &[("if-match", "*")],
                )
                .await;
            response.assert_error(StatusCode::NOT_FOUND, "not_found");
            let text = response.body.to_string();
            assert!(
                !text.contains(&task) && !text.contains("secret"),
                "{method} {uri}: {text}"
            );
        }
        let all = app
            .call(&stranger.token, Method::GET, "/api/v1/tasks", None)
            .await;
        assert_eq!(all.body["items"], json!([]), "{}", all.body);
    }
    // Visible but not allowed: a guest may read and comment, not change tasks.
    let uri = format!("/api/v1/tasks/{task}");
    for (method, body) in [
        (Method::PATCH, Some(json!({ "title": "x" }))),
        (Method::DELETE, None),
    ] {
        app.call_with(&w.gus.token, method, &uri, body, &[("if-match", "*")])
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
    }
    app.call(
        &w.gus.token,
        Method::POST,
        &format!("/api/v1/workspaces/{}/tasks", w.ws),
        Some(json!({ "title": "x" })),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let read = app.call(&w.gus.token, Method::GET, &uri, None).await;
    assert_eq!(read.status, StatusCode::OK);
}

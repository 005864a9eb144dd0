//! One event, many recipients: a team mention reaching more people than the
//! dispatcher's page ([`MEMBERS`] is above it) and than one multi-row insert of the
//! outbox holds, with access and preferences still decided per person.

use axum::http::{Method, StatusCode};
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use uuid::Uuid;

use crate::support::TestApp;
use crate::tasks::{id, new_task, world};
use crate::users::Person;

use super::items;

/// Team members mentioned at once.
const MEMBERS: usize = 130;

/// Creates user `name` as `owner` (not signed in) and makes them a member of `team`;
/// returns the user's id and the grant's.
async fn member(app: &TestApp, owner: &Person, team: &str, name: String) -> (String, String) {
    let uri = format!("/api/v1/organizations/{}/users", owner.org_id);
    let body = json!({ "username": name, "password": "password-2" });
    let user = app.create(owner, &uri, body).await;
    let body = json!({ "user_id": user, "role": "member", "scope_kind": "team", "scope_id": team });
    let grant = app.create(owner, "/api/v1/grants", body).await;
    (user, grant)
}

pub(super) async fn a_team_mention_reaches_each_member_once(app: TestApp) {
    let w = world(&app).await;
    let org = w.owner.org_id.clone();
    let teams = format!("/api/v1/organizations/{org}/teams");
    let team = app
        .create(
            &w.owner,
            &teams,
            json!({ "name": "Crowd", "slug": "crowd" }),
        )
        .await;
    let uri = format!("/api/v1/teams/{team}/workspaces");
    let ws = app.create(&w.owner, &uri, json!({ "name": "C" })).await;
    let task = id(&new_task(&app, &w.owner, &ws, json!({ "title": "t" })).await);
    let members: Vec<(String, String)> = stream::iter(0..MEMBERS)
        .map(|i| member(&app, &w.owner, &team, format!("crowd-{i}")))
        .buffered(8)
        .collect()
        .await;

    // Three of them: one muted the workspace, one turned mentions off in-app, one reads.
    let token = |i: usize| {
        let app = &app;
        async move { app.sign_in(&format!("crowd-{i}"), "password-2").await }
    };
    let (muted, off, reader) = (token(0).await, token(1).await, token(2).await);
    let mute = format!("/api/v1/me/muted-workspaces/{ws}");
    let r = app.call(&muted, Method::PUT, &mute, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let prefs = "/api/v1/me/notification-preferences";
    let body = json!({ "kinds": { "mention": { "in_app": false } } });
    let r = app.call(&off, Method::PATCH, prefs, Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let uri = format!("/api/v1/tasks/{task}/comments");
    let body = json!({ "body": "@crowd please look" });
    let r = app
        .call(&w.owner.token, Method::POST, &uri, Some(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let comment = id(&r.body);
    // One more loses access between the mention and its dispatch.
    let revoked = &members[MEMBERS - 1];
    let grant = format!("/api/v1/grants/{}", revoked.1);
    let r = app.call(&w.owner.token, Method::DELETE, &grant, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

    // Every member has exactly one mention event: the author none.
    for (user, _) in &members {
        let events = events(&app, user).await;
        assert_eq!(events.len(), 1, "{user}");
        assert_eq!(events[0].kind, "mention");
        assert_eq!(events[0].payload["via"], "team");
        assert_eq!(events[0].resource_id.to_string(), comment);
    }
    assert!(events(&app, &w.owner.id).await.is_empty());

    // All but the three left out get one notification; a second pass makes none.
    let dispatch = || aistack_collab::notifications::dispatch_pending(&app.db);
    assert_eq!(dispatch().await.expect("dispatch"), MEMBERS - 3);
    assert_eq!(dispatch().await.expect("dispatch"), 0);
    for (user, _) in &members {
        let events = events(&app, user).await;
        assert!(events[0].delivered_at.is_some(), "{user}: {:?}", events[0]);
    }
    let list = |token: String| {
        let app = &app;
        async move {
            let r = app
                .call(&token, Method::GET, "/api/v1/notifications", None)
                .await;
            items(&r)
        }
    };
    let got = list(reader).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["kind"], "mention");
    assert_eq!(got[0]["resource_id"], comment);
    assert_eq!(
        got[0]["payload"],
        json!({ "task_id": task, "source_kind": "comment", "via": "team" })
    );
    assert!(list(muted).await.is_empty());
    assert!(list(off).await.is_empty());
}

async fn events(app: &TestApp, user: &str) -> Vec<aistack_collab::outbox::Event> {
    let user = Uuid::parse_str(user).expect("uuid");
    aistack_collab::outbox::for_recipient(&app.db, user)
        .await
        .expect("events")
}

//! `GET /api/v1/organizations?limit=N&cursor=C`.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::TestApp;

on_both_dialects!(
    empty_list_has_no_cursor,
    pages_follow_the_cursor_in_creation_order,
    default_limit_is_50,
    limit_200_is_accepted,
    bad_limit_is_400,
    bad_cursor_is_400,
);

async fn empty_list_has_no_cursor(app: TestApp) {
    let response = app.get("/api/v1/organizations").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body, json!({ "items": [], "next_cursor": null }));
}

async fn pages_follow_the_cursor_in_creation_order(app: TestApp) {
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(app.create_org(&format!("Org {i}"), None).await);
    }
    let mut seen: Vec<Value> = Vec::new();
    let mut uri = "/api/v1/organizations?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let response = app.get(&uri).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        let items = response.body["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(items.len() <= 2);
        seen.extend(items);
        pages += 1;
        match response.body["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/api/v1/organizations?limit=2&cursor={cursor}"),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created, "every org once, in creation order");

    // Exactly one full page: no cursor pointing at an empty page.
    let response = app.get("/api/v1/organizations?limit=5").await;
    assert_eq!(response.body["items"].as_array().map(Vec::len), Some(5));
    assert_eq!(response.body["next_cursor"], Value::Null);
}

async fn default_limit_is_50(app: TestApp) {
    for i in 0..51 {
        app.create_org(&format!("Bulk {i}"), None).await;
    }
    let response = app.get("/api/v1/organizations").await;
    assert_eq!(response.body["items"].as_array().map(Vec::len), Some(50));
    let cursor = response.body["next_cursor"]
        .as_str()
        .expect("a second page");
    let rest = app
        .get(&format!("/api/v1/organizations?cursor={cursor}"))
        .await;
    assert_eq!(rest.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(rest.body["items"][0]["slug"], "bulk-50");
    assert_eq!(rest.body["next_cursor"], Value::Null);
}

async fn limit_200_is_accepted(app: TestApp) {
    let response = app.get("/api/v1/organizations?limit=200").await;
    assert_eq!(response.status, StatusCode::OK);
    let response = app.get("/api/v1/organizations?limit=1").await;
    assert_eq!(response.status, StatusCode::OK);
}

async fn bad_limit_is_400(app: TestApp) {
    for limit in ["0", "201", "-1", "abc", "", "1.5", "99999999999"] {
        let response = app
            .get(&format!("/api/v1/organizations?limit={limit}"))
            .await;
        response.assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
}

async fn bad_cursor_is_400(app: TestApp) {
    for cursor in ["nope", "123", "%27%3B%20DROP%20TABLE%20organizations%3B--"] {
        let response = app
            .get(&format!("/api/v1/organizations?cursor={cursor}"))
            .await;
        response.assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
}

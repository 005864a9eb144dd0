//! `POST /api/v1/organizations` and `GET /api/v1/organizations/{id}`.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use serde_json::json;

use crate::support::{TestApp, request};

on_both_dialects!(
    create_returns_201_with_location_and_body,
    create_derives_the_slug_from_the_name,
    created_organization_can_be_fetched,
    fetch_unknown_id_is_404,
    fetch_malformed_id_is_404,
    duplicate_slug_is_409,
    derived_duplicate_slug_is_409,
    blank_or_long_name_is_400,
    invalid_slug_is_400,
    underivable_slug_is_400,
    missing_or_mistyped_fields_are_400,
    organization_survives_reconnect,
    concurrent_creates_all_succeed,
);

async fn create_returns_201_with_location_and_body(app: TestApp) {
    let response = app
        .post_json(
            "/api/v1/organizations",
            &json!({ "name": "Acme Corp", "slug": "acme" }),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    let body = &response.body;
    let id = body["id"].as_str().expect("id is a string");
    let uuid = uuid::Uuid::parse_str(id).expect("id is a UUID");
    assert_eq!(uuid.get_version_num(), 7);
    assert_eq!(body["name"], "Acme Corp");
    assert_eq!(body["slug"], "acme");
    let created_at = body["created_at"].as_str().expect("created_at is a string");
    chrono::DateTime::parse_from_rfc3339(created_at).expect("created_at is RFC 3339");
    assert!(created_at.ends_with('Z'), "{created_at}");
    let keys: Vec<_> = body
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(keys.len(), 4, "{body}");
    let location = response
        .headers
        .get(header::LOCATION)
        .expect("Location header");
    assert_eq!(location, format!("/api/v1/organizations/{id}").as_str());
}

async fn create_derives_the_slug_from_the_name(app: TestApp) {
    let org = app.create_org("  Hello, World! 2025 ", None).await;
    assert_eq!(org["slug"], "hello-world-2025");
    assert_eq!(org["name"], "Hello, World! 2025", "name is trimmed");
    let explicit_null = app
        .post_json(
            "/api/v1/organizations",
            &json!({ "name": "Beta", "slug": null }),
        )
        .await;
    assert_eq!(explicit_null.status, StatusCode::CREATED);
    assert_eq!(explicit_null.body["slug"], "beta");
}

async fn created_organization_can_be_fetched(app: TestApp) {
    let created = app.create_org("Fetch Me", Some("fetch-me")).await;
    let id = created["id"].as_str().expect("id");
    let response = app.get(&format!("/api/v1/organizations/{id}")).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.body, created,
        "GET returns exactly what POST returned"
    );
}

async fn fetch_unknown_id_is_404(app: TestApp) {
    let id = uuid::Uuid::now_v7();
    let response = app.get(&format!("/api/v1/organizations/{id}")).await;
    response.assert_error(StatusCode::NOT_FOUND, "not_found");
}

async fn fetch_malformed_id_is_404(app: TestApp) {
    for id in ["not-a-uuid", "1", "%27%20OR%201=1"] {
        let response = app.get(&format!("/api/v1/organizations/{id}")).await;
        response.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
}

async fn duplicate_slug_is_409(app: TestApp) {
    app.create_org("First", Some("taken")).await;
    let response = app
        .post_json(
            "/api/v1/organizations",
            &json!({ "name": "Second", "slug": "taken" }),
        )
        .await;
    response.assert_error(StatusCode::CONFLICT, "conflict");
    let message = response.body["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("taken"), "{message}");
    assert!(
        !message.to_lowercase().contains("constraint"),
        "driver text leaked: {message}"
    );
    let list = app.get("/api/v1/organizations").await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
}

async fn derived_duplicate_slug_is_409(app: TestApp) {
    app.create_org("Same Name", None).await;
    let response = app
        .post_json("/api/v1/organizations", &json!({ "name": "same name" }))
        .await;
    response.assert_error(StatusCode::CONFLICT, "conflict");
}

async fn blank_or_long_name_is_400(app: TestApp) {
    let long = "n".repeat(201);
    for name in ["", "   ", "\t\n", long.as_str()] {
        let response = app
            .post_json(
                "/api/v1/organizations",
                &json!({ "name": name, "slug": "ok" }),
            )
            .await;
        response.assert_error(StatusCode::BAD_REQUEST, "validation_failed");
        let message = response.body["error"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(message.starts_with("name"), "{message}");
    }
    // The limit counts characters, not bytes: 200 two-byte characters are fine.
    let org = app.create_org(&"é".repeat(200), Some("accents")).await;
    assert_eq!(org["name"].as_str().map(|n| n.chars().count()), Some(200));
}

async fn invalid_slug_is_400(app: TestApp) {
    let long = "s".repeat(64);
    for slug in [
        "",
        "-acme",
        "Acme",
        "acme corp",
        "acme_corp",
        "ünï",
        long.as_str(),
    ] {
        let response = app
            .post_json(
                "/api/v1/organizations",
                &json!({ "name": "Acme", "slug": slug }),
            )
            .await;
        response.assert_error(StatusCode::BAD_REQUEST, "validation_failed");
        let message = response.body["error"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(message.starts_with("slug"), "{slug:?}: {message}");
    }
    let longest = "s".repeat(63);
    assert_eq!(
        app.create_org("Acme", Some(&longest)).await["slug"],
        longest
    );
}

async fn underivable_slug_is_400(app: TestApp) {
    for name in ["!!!", "团队"] {
        let response = app
            .post_json("/api/v1/organizations", &json!({ "name": name }))
            .await;
        response.assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    }
}

async fn missing_or_mistyped_fields_are_400(app: TestApp) {
    for body in [
        json!({}),
        json!({ "slug": "no-name" }),
        json!({ "name": 42 }),
        json!({ "name": "Acme", "slug": 7 }),
        json!({ "name": "Acme", "unexpected": true }),
        json!(["Acme"]),
    ] {
        let response = app.post_json("/api/v1/organizations", &body).await;
        response.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    }
}

async fn organization_survives_reconnect(mut app: TestApp) {
    let created = app.create_org("Durable", Some("durable")).await;
    app.reconnect().await;
    let id = created["id"].as_str().expect("id");
    let response = app.get(&format!("/api/v1/organizations/{id}")).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body, created);
    // The reconnect re-ran the migrations without touching data or failing.
    let list = app.get("/api/v1/organizations").await;
    assert_eq!(list.body["items"], json!([created]));
}

/// Writers contend (SQLite: one writer at a time, waiting on the busy timeout): 16
/// concurrent requests over as many connections.
async fn concurrent_creates_all_succeed(app: TestApp) {
    let creates = (0..16).map(|i| {
        let body = json!({ "name": format!("Parallel {i}") }).to_string();
        let post = request(Method::POST, "/api/v1/organizations")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("request");
        app.send(post)
    });
    for response in futures_util::future::join_all(creates).await {
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    }
    let list = app.get("/api/v1/organizations?limit=200").await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(16));
}

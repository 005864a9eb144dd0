//! The error contract shared by every endpoint: JSON bodies, the request id, routing
//! failures, and body/content-type rejections.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::support::{TestApp, request};

on_both_dialects!(
    unknown_routes_are_404_json,
    wrong_method_is_405_json,
    request_id_is_echoed_in_errors,
    malformed_json_is_400,
    wrong_or_missing_content_type_is_400,
    oversized_body_is_413,
);

async fn unknown_routes_are_404_json(app: TestApp) {
    for uri in [
        "/api/v1/nope",
        "/api/v1/organizations/a/b",
        "/",
        "/api/v2/healthz",
    ] {
        let response = app.get(uri).await;
        response.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
}

async fn wrong_method_is_405_json(app: TestApp) {
    let delete = request(Method::DELETE, "/api/v1/organizations").body(Body::empty());
    let response = app.send(delete.expect("request")).await;
    response.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let allow = response
        .headers
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok());
    let allow = allow.expect("Allow header kept").to_ascii_uppercase();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");

    let post = request(Method::POST, "/api/v1/healthz").body(Body::empty());
    let response = app.send(post.expect("request")).await;
    response.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

async fn request_id_is_echoed_in_errors(app: TestApp) {
    let with_id = request(Method::GET, "/api/v1/organizations/unknown")
        .header("x-request-id", "req-123")
        .body(Body::empty());
    let response = app.send(with_id.expect("request")).await;
    response.assert_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(response.body["error"]["request_id"], "req-123");

    let bad_json = request(Method::POST, "/api/v1/organizations")
        .header("X-Request-Id", "req-456")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{"));
    let response = app.send(bad_json.expect("request")).await;
    response.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    assert_eq!(response.body["error"]["request_id"], "req-456");

    let without_id = app.get("/api/v1/nowhere").await;
    assert_eq!(without_id.body["error"]["request_id"], Value::Null);

    let too_long = request(Method::GET, "/api/v1/nowhere")
        .header("x-request-id", "x".repeat(300))
        .body(Body::empty());
    let response = app.send(too_long.expect("request")).await;
    assert_eq!(response.body["error"]["request_id"], Value::Null);
}

async fn malformed_json_is_400(app: TestApp) {
    for body in [
        "",
        "{",
        "{\"name\": }",
        "not json",
        "{\"name\":\"a\"} trailing",
    ] {
        let post = request(Method::POST, "/api/v1/organizations")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body));
        let response = app.send(post.expect("request")).await;
        response.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    }
}

async fn wrong_or_missing_content_type_is_400(app: TestApp) {
    let body = json!({ "name": "Acme" }).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut post = request(Method::POST, "/api/v1/organizations");
        if let Some(content_type) = content_type {
            post = post.header(header::CONTENT_TYPE, content_type);
        }
        let response = app
            .send(post.body(Body::from(body.clone())).expect("request"))
            .await;
        response.assert_error(StatusCode::BAD_REQUEST, "invalid_content_type");
    }
    let list = app.get("/api/v1/organizations").await;
    assert_eq!(list.body["items"], json!([]), "nothing was created");
}

async fn oversized_body_is_413(app: TestApp) {
    let name = "x".repeat(3 * 1024 * 1024);
    let response = app
        .post_json("/api/v1/organizations", &json!({ "name": name }))
        .await;
    response.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

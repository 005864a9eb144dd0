//! `GET /api/v1/healthz`.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{Storage, TestApp};

on_both_dialects!(
    healthz_reports_ok_and_dialect,
    healthz_is_503_once_the_pool_is_closed
);

async fn healthz_reports_ok_and_dialect(app: TestApp) {
    let response = app.get("/api/v1/healthz").await;
    assert_eq!(response.status, StatusCode::OK);
    let dialect = app.db.dialect().as_str();
    assert_eq!(
        response.body,
        json!({ "status": "ok", "database": dialect })
    );
}

async fn healthz_is_503_once_the_pool_is_closed(app: TestApp) {
    app.db.close().await;
    let response = app.get("/api/v1/healthz").await;
    response.assert_error(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable");
}

/// A real outage: the database disappears under an open pool.
#[tokio::test]
async fn healthz_is_503_when_the_postgres_database_is_gone() {
    let mut app = TestApp::postgres().await;
    assert_eq!(app.get("/api/v1/healthz").await.status, StatusCode::OK);
    let Storage::Postgres(database) = &mut app.storage else {
        unreachable!("a PostgreSQL app has PostgreSQL storage")
    };
    database.drop_now().await;
    let response = app.get("/api/v1/healthz").await;
    response.assert_error(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable");
    let message = response.body["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        !message.contains("does not exist"),
        "driver text leaked: {message}"
    );
}

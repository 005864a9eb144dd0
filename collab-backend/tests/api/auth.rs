//! Registration, sign-in, session and personal tokens, gateway identity.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use serde_json::json;

use crate::support::{TestApp, request};

on_both_dialects!(
    first_user_becomes_owner_and_later_registration_is_closed,
    sign_in_rejects_wrong_passwords_and_unknown_users,
    session_tokens_authenticate_until_sign_out,
    personal_tokens_can_be_created_listed_and_revoked,
    endpoints_need_a_caller,
    bad_usernames_and_passwords_name_the_field,
);

async fn first_user_becomes_owner_and_later_registration_is_closed(app: TestApp) {
    let owner = app.owner("acme").await;
    let me = app
        .call(&owner.token, Method::GET, "/api/v1/me", None)
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["user"]["username"], "acme-owner");
    assert_eq!(me.body["grants"][0]["role"], "owner");
    assert_eq!(me.body["grants"][0]["scope_kind"], "org");
    assert!(me.body["user"].get("password_hash").is_none());
    let again = json!({ "organization_id": owner.org_id, "username": "intruder", "password": "password-x" });
    app.post_json("/api/v1/auth/register", &again)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let taken = json!({ "username": "acme-owner", "password": "password-3" });
    let uri = format!("/api/v1/organizations/{}/users", owner.org_id);
    app.call(&owner.token, Method::POST, &uri, Some(taken))
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
}

async fn sign_in_rejects_wrong_passwords_and_unknown_users(app: TestApp) {
    app.owner("acme").await;
    for (username, password) in [("acme-owner", "wrong-password"), ("nobody", "password-1")] {
        let body = json!({ "username": username, "password": password });
        app.post_json("/api/v1/auth/sign-in", &body)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
}

async fn session_tokens_authenticate_until_sign_out(app: TestApp) {
    let owner = app.owner("acme").await;
    assert!(owner.token.starts_with("aist_s_"));
    assert_eq!(
        app.call(&owner.token, Method::GET, "/api/v1/me", None)
            .await
            .status,
        StatusCode::OK
    );
    let out = app
        .call(&owner.token, Method::POST, "/api/v1/auth/sign-out", None)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    app.call(&owner.token, Method::GET, "/api/v1/me", None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    // The hash, not the token, is stored.
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM tokens")
        .fetch_all(&sqlx::AnyPool::connect(&app.url).await.expect("pool"))
        .await
        .expect("select");
    assert!(
        stored
            .iter()
            .all(|h| h.len() == 64 && !owner.token.contains(h.as_str()))
    );
}

async fn personal_tokens_can_be_created_listed_and_revoked(app: TestApp) {
    let owner = app.owner("acme").await;
    let created = app
        .call(
            &owner.token,
            Method::POST,
            "/api/v1/me/tokens",
            Some(json!({ "name": "ci", "expires_in_days": 30 })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let personal = created.body["token"].as_str().expect("token").to_owned();
    assert!(personal.starts_with("aist_p_"));
    let me = app.call(&personal, Method::GET, "/api/v1/me", None).await;
    assert_eq!(me.status, StatusCode::OK);
    let list = app
        .call(&owner.token, Method::GET, "/api/v1/me/tokens", None)
        .await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(1));
    assert!(
        list.body[0].get("token").is_none(),
        "secrets are shown once"
    );
    let id = created.body["id"].as_str().expect("id");
    let revoke = app
        .call(
            &owner.token,
            Method::DELETE,
            &format!("/api/v1/me/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(revoke.status, StatusCode::NO_CONTENT);
    app.call(&personal, Method::GET, "/api/v1/me", None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    let zero = json!({ "name": "x", "expires_in_days": 0 });
    let bad = app
        .call(&owner.token, Method::POST, "/api/v1/me/tokens", Some(zero))
        .await;
    bad.assert_error(StatusCode::BAD_REQUEST, "validation_failed");
    assert!(
        bad.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("expires_in_days")
    );
}

async fn endpoints_need_a_caller(mut app: TestApp) {
    let owner = app.owner("acme").await;
    for uri in ["/api/v1/me", "/api/v1/workspaces"] {
        app.get(uri)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        app.call("aist_s_bogus", Method::GET, uri, None)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    // X-Consumer-Id is ignored unless the backend is configured to trust the gateway.
    let with_header = || {
        request(Method::GET, "/api/v1/me")
            .header("x-consumer-id", owner.id.as_str())
            .body(Body::empty())
            .expect("request")
    };
    app.send(with_header())
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    app.options.trust_gateway_headers = true;
    let trusted = app.send(with_header()).await;
    assert_eq!(trusted.status, StatusCode::OK, "{}", trusted.body);
    assert_eq!(trusted.body["user"]["id"], owner.id.as_str());
    let forged = request(Method::GET, "/api/v1/me")
        .header("x-consumer-id", uuid::Uuid::now_v7().to_string())
        .header(header::ACCEPT, "application/json")
        .body(Body::empty())
        .expect("request");
    app.send(forged)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
}

async fn bad_usernames_and_passwords_name_the_field(app: TestApp) {
    let owner = app.owner("acme").await;
    let uri = format!("/api/v1/organizations/{}/users", owner.org_id);
    for (body, field) in [
        (
            json!({ "username": "Bad Name", "password": "password-9" }),
            "username",
        ),
        (
            json!({ "username": "all", "password": "password-9" }),
            "username",
        ),
        (
            json!({ "username": "okname", "password": "short" }),
            "password",
        ),
    ] {
        let response = app.call(&owner.token, Method::POST, &uri, Some(body)).await;
        response.assert_error(StatusCode::BAD_REQUEST, "validation_failed");
        assert!(
            response.body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .starts_with(field),
            "{}",
            response.body
        );
    }
}

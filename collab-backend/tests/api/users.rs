//! Helpers to set up people and structure through the API, used by the auth, authz and
//! isolation tests.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::support::{TestApp, TestResponse, request};

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: String,
    pub org_id: String,
    pub token: String,
}

impl TestApp {
    /// `method uri` with `token` and an optional JSON body.
    pub async fn call(
        &self,
        token: &str,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> TestResponse {
        let builder = request(method, uri).header(header::AUTHORIZATION, format!("Bearer {token}"));
        let request = match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        };
        self.send(request.expect("request")).await
    }

    /// [`Self::call`] with extra request headers (e.g. `If-Match`).
    pub async fn call_with(
        &self,
        token: &str,
        method: Method,
        uri: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        let mut builder =
            request(method, uri).header(header::AUTHORIZATION, format!("Bearer {token}"));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        };
        self.send(request.expect("request")).await
    }

    /// Signs `username` in and returns the session token.
    pub async fn sign_in(&self, username: &str, password: &str) -> String {
        let response = self
            .post_json(
                "/api/v1/auth/sign-in",
                &json!({ "username": username, "password": password }),
            )
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        response.body["token"].as_str().expect("token").to_owned()
    }

    /// A new organization and its owner, signed in.
    pub async fn owner(&self, slug: &str) -> Person {
        let org = self.create_org(slug, Some(slug)).await;
        let org_id = org["id"].as_str().expect("org id").to_owned();
        let username = format!("{slug}-owner");
        let body =
            json!({ "organization_id": org_id, "username": username, "password": "password-1" });
        let response = self.post_json("/api/v1/auth/register", &body).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        let id = response.body["id"].as_str().expect("id").to_owned();
        let token = self.sign_in(&username, "password-1").await;
        Person { id, org_id, token }
    }

    /// A user created by `admin` in their organization, signed in.
    pub async fn user(&self, admin: &Person, username: &str) -> Person {
        let uri = format!("/api/v1/organizations/{}/users", admin.org_id);
        let body = json!({ "username": username, "password": "password-2" });
        let response = self
            .call(&admin.token, Method::POST, &uri, Some(body))
            .await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        let id = response.body["id"].as_str().expect("id").to_owned();
        let token = self.sign_in(username, "password-2").await;
        Person {
            id,
            org_id: admin.org_id.clone(),
            token,
        }
    }

    /// POSTs as `who` and asserts 201; returns the body's id.
    pub async fn create(&self, who: &Person, uri: &str, body: Value) -> String {
        let response = self.call(&who.token, Method::POST, uri, Some(body)).await;
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "POST {uri}: {}",
            response.body
        );
        response.body["id"].as_str().expect("id").to_owned()
    }

    /// Grants `role` on a scope to `user`, as `admin`.
    pub async fn grant(
        &self,
        admin: &Person,
        user: &Person,
        role: &str,
        kind: &str,
        scope: &str,
    ) -> String {
        let body =
            json!({ "user_id": user.id, "role": role, "scope_kind": kind, "scope_id": scope });
        self.create(admin, "/api/v1/grants", body).await
    }
}

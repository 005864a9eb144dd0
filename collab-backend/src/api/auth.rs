//! Sign-up, sign-in, tokens, and an organization's users.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::common::{Api, op, parse_id};
use super::extract::{ApiJson, ApiPath};
use crate::auth::{Caller, password, secret};
use crate::authz::{self, Resource};
use crate::domain::ValidationError;
use crate::error::ApiError;
use crate::store::grants::Grant;
use crate::store::tokens::TokenInfo;
use crate::store::users::User;
use crate::store::{self, StoreError};
use crate::timestamp;

pub(super) fn routes() -> Api {
    Api::new()
        .route(
            "/auth/register",
            post(register),
            vec![
                op(
                    Method::POST,
                    "Register the first user (owner) of an organization",
                )
                .req("Register")
                .res(201, "User"),
            ],
        )
        .route(
            "/auth/sign-in",
            post(sign_in),
            vec![
                op(
                    Method::POST,
                    "Sign in with a password; returns a session token",
                )
                .req("SignIn")
                .res(200, "Session"),
            ],
        )
        .route(
            "/auth/sign-out",
            post(sign_out),
            vec![op(Method::POST, "Revoke the session token used").empty(204)],
        )
        .route(
            "/me",
            get(me),
            vec![op(Method::GET, "The caller and their grants").res(200, "Me")],
        )
        .route(
            "/me/tokens",
            get(list_tokens).post(create_token),
            vec![
                op(Method::GET, "List the caller's personal API tokens").list("TokenInfo"),
                op(
                    Method::POST,
                    "Create a personal API token (the secret is shown once)",
                )
                .req("NewToken")
                .res(201, "CreatedToken"),
            ],
        )
        .route(
            "/me/tokens/{id}",
            delete(revoke_token),
            vec![op(Method::DELETE, "Revoke a personal API token").empty(204)],
        )
        .route(
            "/organizations/{id}/users",
            get(list_users).post(create_user),
            vec![
                op(Method::GET, "List the users of an organization").list("User"),
                op(
                    Method::POST,
                    "Create a user (needs member.manage on the organization)",
                )
                .req("NewUser")
                .res(201, "User"),
            ],
        )
}

/// `POST /auth/register`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Register {
    organization_id: Uuid,
    username: String,
    password: String,
    display_name: Option<String>,
}

/// `POST /organizations/{id}/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    username: String,
    password: String,
    display_name: Option<String>,
}

/// `POST /auth/sign-in`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignIn {
    username: String,
    password: String,
}

/// A new session.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Session {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    token_type: &'static str,
    expires_at: String,
    user: User,
}

/// `GET /me`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Me {
    user: User,
    grants: Vec<Grant>,
}

/// `POST /me/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    name: String,
    /// Days until it expires; absent: never.
    expires_in_days: Option<u32>,
}

/// A personal token just created: the only time its secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedToken {
    token: String,
    #[serde(flatten)]
    info: TokenInfo,
}

fn validate_username(username: &str) -> Result<(), ValidationError> {
    let ok = (2..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
        && username.as_bytes()[0].is_ascii_alphanumeric()
        && username != "all";
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "username",
            "must be 2..=64 of a-z 0-9 _ . - starting with a letter or digit, and not \"all\"",
        ))
    }
}

fn validate_password(password: &str) -> Result<(), ValidationError> {
    if password.chars().count() < password::MIN_LEN || password.len() > password::MAX_LEN {
        let message = format!(
            "must be {} to {} bytes long",
            password::MIN_LEN,
            password::MAX_LEN
        );
        return Err(ValidationError::new("password", message));
    }
    Ok(())
}

async fn insert_user(
    state: &AppState,
    org_id: Uuid,
    username: &str,
    password: String,
    display_name: Option<String>,
    owner: bool,
) -> Result<User, ApiError> {
    validate_username(username)?;
    validate_password(&password)?;
    let display_name = display_name.unwrap_or_else(|| username.to_owned());
    let hash = password::hash(password).await?;
    let mut tx = state.db.pool().begin().await.map_err(StoreError::from)?;
    if owner && store::users::org_has_users(&mut tx, org_id).await? {
        return Err(ApiError::Forbidden(
            "this organization already has users; ask an admin for an account".to_owned(),
        ));
    }
    let user = match store::users::create(&mut tx, org_id, username, &display_name, &hash).await {
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::Conflict(format!(
                "username {username:?} is taken"
            )));
        }
        other => other?,
    };
    if owner {
        store::grants::create(&mut tx, org_id, user.id, "owner", "org", org_id).await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(user)
}

/// The first user of an organization registers and becomes its owner; later users are
/// created by an admin (`POST /organizations/{id}/users`), so registration is 403 then.
async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Register>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    if store::organizations::get(&state.db, body.organization_id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("organization"));
    }
    let user = insert_user(
        &state,
        body.organization_id,
        &body.username,
        body.password,
        body.display_name,
        true,
    )
    .await?;
    let detail = serde_json::json!({ "user_id": user.id, "role": "owner", "scope_kind": "org" });
    store::audit::record(
        &state.db,
        user.org_id,
        Some(user.id),
        "user.register",
        "user",
        &user.id.to_string(),
        detail,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

async fn sign_in(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Json<Session>, ApiError> {
    let found = store::users::by_username_with_hash(&state.db, &body.username).await?;
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let ok = password::verify(body.password, hash).await?;
    let user = user
        .filter(|_| ok)
        .ok_or(ApiError::Unauthenticated("wrong username or password"))?;
    let token = secret::generate(secret::SESSION_PREFIX);
    let ttl = chrono::Duration::from_std(state.options.session_ttl)
        .unwrap_or(chrono::Duration::hours(12));
    let expires_at = timestamp::format(timestamp::now() + ttl);
    store::tokens::insert(
        &state.db,
        user.id,
        "session",
        "session",
        &secret::hash(&token),
        Some(expires_at.clone()),
    )
    .await?;
    Ok(Json(Session {
        token,
        token_type: "Bearer",
        expires_at,
        user,
    }))
}

async fn sign_out(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    if let Some(token_id) = caller.token_id {
        store::tokens::revoke(&state.db, caller.user_id, token_id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Me>, ApiError> {
    let user = store::users::get(&state.db, caller.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated("unknown user"))?;
    let grants = store::grants::of_user(&state.db, caller.user_id).await?;
    Ok(Json(Me { user, grants }))
}

async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    Ok(Json(
        store::tokens::list_personal(&state.db, caller.user_id).await?,
    ))
}

async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ValidationError::new("name", "must be 1..=100 characters").into());
    }
    let expires_at = match body.expires_in_days {
        Some(0) | Some(3651..) => {
            return Err(ValidationError::new("expires_in_days", "must be 1..=3650").into());
        }
        Some(days) => Some(timestamp::format(
            timestamp::now() + chrono::Duration::days(i64::from(days)),
        )),
        None => None,
    };
    let token = secret::generate(secret::PERSONAL_PREFIX);
    let info = store::tokens::insert(
        &state.db,
        caller.user_id,
        "personal",
        name,
        &secret::hash(&token),
        expires_at,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, info })))
}

async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "token")?;
    if store::tokens::revoke(&state.db, caller.user_id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("token"))
    }
}

async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<User>>, ApiError> {
    let org = parse_id(&id, "organization")?;
    authz::authorize(&state.db, &caller, authz::VISIBLE, Resource::Org(org)).await?;
    Ok(Json(store::users::list(&state.db, org).await?))
}

async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let org = parse_id(&id, "organization")?;
    authz::authorize(&state.db, &caller, "member.manage", Resource::Org(org)).await?;
    let user = insert_user(
        &state,
        org,
        &body.username,
        body.password,
        body.display_name,
        false,
    )
    .await?;
    let detail = serde_json::json!({ "username": user.username });
    store::audit::record(
        &state.db,
        org,
        Some(caller.user_id),
        "user.create",
        "user",
        &user.id.to_string(),
        detail,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

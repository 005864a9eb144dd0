//! Who is calling: the [`Caller`] extractor and the credentials behind it.
//!
//! Identity comes from exactly two places:
//! 1. `Authorization: Bearer <token>` with one of this backend's own opaque tokens —
//!    a session token from `POST /auth/sign-in` or a personal API token — looked up by
//!    its SHA-256 (see [`secret`]);
//! 2. `X-Consumer-Id: <user id>`, only when
//!    [`BackendOptions::trust_gateway_headers`](crate::BackendOptions) is set (the backend
//!    sits behind the gateway, which strips client-sent `X-Consumer-*` headers on every
//!    route, so only its auth filters can set it).
//!
//! Anything else is anonymous, and endpoints that need a caller answer 401.

pub mod password;
pub mod secret;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use uuid::Uuid;

use crate::api::AppState;
use crate::error::ApiError;
use crate::store;

/// The header the gateway sets to the authenticated user's id.
pub const CONSUMER_ID_HEADER: &str = "x-consumer-id";

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user's id.
    pub user_id: Uuid,
    /// The user's organization.
    pub org_id: Uuid,
    /// The user's username.
    pub username: String,
    /// The token the request came with (`None` through gateway headers).
    pub token_id: Option<Uuid>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(value) = parts.headers.get(AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or(ApiError::Unauthenticated(
                    "expected Authorization: Bearer <token>",
                ))?;
            let found = store::tokens::lookup(&state.db, &secret::hash(token)).await?;
            let (user_id, token_id) =
                found.ok_or(ApiError::Unauthenticated("invalid or expired token"))?;
            return caller_for(state, user_id, Some(token_id)).await;
        }
        if state.options.trust_gateway_headers
            && let Some(value) = parts.headers.get(CONSUMER_ID_HEADER)
        {
            let user_id = value
                .to_str()
                .ok()
                .and_then(|v| Uuid::parse_str(v.trim()).ok())
                .ok_or(ApiError::Unauthenticated("unknown consumer"))?;
            return caller_for(state, user_id, None).await;
        }
        Err(ApiError::Unauthenticated("authentication required"))
    }
}

/// The [`Caller`] for `user_id` (401 when there is no such user).
pub(crate) async fn caller_for(
    state: &AppState,
    user_id: Uuid,
    token_id: Option<Uuid>,
) -> Result<Caller, ApiError> {
    let user = store::users::get(&state.db, user_id)
        .await?
        .ok_or(ApiError::Unauthenticated("unknown user"))?;
    Ok(Caller {
        user_id,
        org_id: user.org_id,
        username: user.username,
        token_id,
    })
}

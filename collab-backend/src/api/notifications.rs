//! The notification center and notification preferences, always the caller's own.
//!
//! - Lists are **newest first**; `?cursor=` is the `next_cursor` of the previous page,
//!   `?unread=true` keeps unread ones, `?type=<kind>` one kind. Each notification has a
//!   `link` to its resource (`/api/v1/tasks/{id}` or `/api/v1/comments/{id}`).
//! - Marking read: one (`POST /notifications/{id}/read`), several
//!   (`POST /notifications/read` with `{"ids":[…]}`) or all (`{"all":true}`). Ids that
//!   are not the caller's are ignored, never revealed. Deleting is per notification.
//! - Every change of the unread count is pushed to the caller's WebSockets.
//! - Preferences: each kind on each channel (`in_app`, `email`) is on unless turned
//!   off; a muted workspace notifies nothing; email mode, locale and the address
//!   emails go to are per user.
//!   Changes apply to events dispatched afterwards.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::{delete, get, post, put};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::common::{Api, Paged, op, page, parse_id};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::auth::Caller;
use crate::authz::{self, Resource};
use crate::domain::ValidationError;
use crate::error::ApiError;
use crate::notifications::{CHANNELS, EMAIL_MODES, KINDS, LOCALES};
use crate::store;
use crate::store::notifications::{Filter, Notification};

pub(super) fn routes() -> Api {
    Api::new()
        .route(
            "/notifications",
            get(list),
            vec![
                op(Method::GET, "Your notifications, newest first")
                    .query(&["unread", "type", "limit", "cursor"])
                    .page("Notification"),
            ],
        )
        .route(
            "/notifications/unread-count",
            get(unread_count),
            vec![
                op(Method::GET, "How many of your notifications are unread")
                    .res(200, "UnreadCount"),
            ],
        )
        .route(
            "/notifications/read",
            post(mark_many),
            vec![
                op(
                    Method::POST,
                    "Mark several (ids) or all of your notifications read",
                )
                .req("MarkRead")
                .res(200, "MarkedRead"),
            ],
        )
        .route(
            "/notifications/{id}/read",
            post(mark_one),
            vec![op(Method::POST, "Mark one notification read").res(200, "Notification")],
        )
        .route(
            "/notifications/{id}",
            delete(remove),
            vec![op(Method::DELETE, "Delete one of your notifications").empty(204)],
        )
        .route(
            "/me/notification-preferences",
            get(preferences).patch(update_preferences),
            vec![
                op(Method::GET, "Your notification preferences").res(200, "Preferences"),
                op(
                    Method::PATCH,
                    "Change some of your notification preferences",
                )
                .req("PreferencesPatch")
                .res(200, "Preferences"),
            ],
        )
        .route(
            "/me/muted-workspaces/{id}",
            put(mute).delete(unmute),
            vec![
                op(Method::PUT, "Mute a workspace: no notifications from it").empty(204),
                op(Method::DELETE, "Unmute a workspace").empty(204),
            ],
        )
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    unread: Option<bool>,
    #[serde(rename = "type")]
    kind: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /notifications/unread-count`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UnreadCount {
    count: i64,
}

/// Which notifications to mark read: `ids` (at most 500), or `all: true`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MarkRead {
    #[serde(default)]
    ids: Vec<Uuid>,
    #[serde(default)]
    all: bool,
}

/// How many were marked, and the unread count after.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MarkedRead {
    marked: u64,
    unread_count: i64,
}

/// One kind's channels.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub(crate) struct Channels {
    in_app: bool,
    email: bool,
}

/// A user's notification preferences.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Preferences {
    /// `immediate`, `hourly`, `daily` (digests) or `off`.
    email_mode: String,
    /// `en` or `zh-CN`: the language of emails.
    locale: String,
    /// Where notification emails go; null: no email.
    email: Option<String>,
    /// Every kind and whether each channel is on.
    kinds: BTreeMap<String, Channels>,
    /// Workspaces that notify nothing.
    muted_workspaces: Vec<Uuid>,
}

/// Only the fields given change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreferencesPatch {
    email_mode: Option<String>,
    locale: Option<String>,
    /// The address notification emails go to; `""` removes it.
    email: Option<String>,
    #[serde(default)]
    kinds: BTreeMap<String, ChannelsPatch>,
}

/// Channels to turn on (`true`) or off.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelsPatch {
    in_app: Option<bool>,
    email: Option<bool>,
}

async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Paged<Notification>>, ApiError> {
    let (limit, before) = page(q.limit, q.cursor.as_deref())?;
    let filter = Filter {
        unread_only: q.unread.unwrap_or(false),
        kind: q.kind.filter(|k| !k.is_empty()),
    };
    let found = store::notifications::list(&s.db, caller.user_id, &filter, limit, before).await?;
    Ok(Json(found.into()))
}

async fn unread_count(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<UnreadCount>, ApiError> {
    let count = store::notifications::unread_count(&s.db, caller.user_id).await?;
    Ok(Json(UnreadCount { count }))
}

async fn mark_many(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<MarkRead>,
) -> Result<Json<MarkedRead>, ApiError> {
    if body.all != body.ids.is_empty() {
        return Err(ValidationError::new("ids", "give either ids or all: true").into());
    }
    if body.ids.len() > 500 {
        return Err(ValidationError::new("ids", "at most 500 ids").into());
    }
    let ids = (!body.all).then_some(body.ids.as_slice());
    let marked = store::notifications::mark_read(&s.db, caller.user_id, ids).await?;
    if marked > 0 {
        s.hub.publish(&s.db, caller.user_id).await?;
    }
    let unread_count = store::notifications::unread_count(&s.db, caller.user_id).await?;
    Ok(Json(MarkedRead {
        marked,
        unread_count,
    }))
}

async fn mark_one(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Notification>, ApiError> {
    let id = parse_id(&id, "notification")?;
    let marked = store::notifications::mark_read(&s.db, caller.user_id, Some(&[id])).await?;
    if marked > 0 {
        s.hub.publish(&s.db, caller.user_id).await?;
    }
    store::notifications::get(&s.db, caller.user_id, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("notification"))
}

async fn remove(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "notification")?;
    if !store::notifications::delete(&s.db, caller.user_id, id).await? {
        return Err(ApiError::not_found("notification"));
    }
    s.hub.publish(&s.db, caller.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn preferences(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Preferences>, ApiError> {
    load(&s, caller.user_id).await.map(Json)
}

async fn load(s: &AppState, user_id: Uuid) -> Result<Preferences, ApiError> {
    let settings = store::preferences::settings(&s.db, user_id).await?;
    let mut kinds: BTreeMap<String, Channels> = KINDS
        .iter()
        .map(|k| {
            let on = Channels {
                in_app: true,
                email: true,
            };
            ((*k).to_owned(), on)
        })
        .collect();
    for (kind, channel, enabled) in store::preferences::choices(&s.db, user_id).await? {
        if let Some(channels) = kinds.get_mut(&kind) {
            match channel.as_str() {
                "in_app" => channels.in_app = enabled,
                "email" => channels.email = enabled,
                _ => {}
            }
        }
    }
    Ok(Preferences {
        email_mode: settings.email_mode,
        locale: settings.locale,
        email: settings.email,
        kinds,
        muted_workspaces: store::preferences::mutes(&s.db, user_id).await?,
    })
}

async fn update_preferences(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(patch): ApiJson<PreferencesPatch>,
) -> Result<Json<Preferences>, ApiError> {
    let one_of = |field: &'static str, value: &Option<String>, allowed: &[&str]| match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ValidationError::new(
            field,
            format!("must be one of {}", allowed.join(", ")),
        )),
        _ => Ok(()),
    };
    one_of("email_mode", &patch.email_mode, &EMAIL_MODES)?;
    one_of("locale", &patch.locale, &LOCALES)?;
    if let Some(kind) = patch.kinds.keys().find(|k| !KINDS.contains(&k.as_str())) {
        let message = format!("unknown kind {kind:?}; kinds are {}", KINDS.join(", "));
        return Err(ValidationError::new("kinds", message).into());
    }
    if let Some(email) = patch.email.as_deref().filter(|e| !e.is_empty())
        && (email.len() > 254 || email.parse::<lettre::Address>().is_err())
    {
        return Err(ValidationError::new("email", "must be an email address").into());
    }
    let user = caller.user_id;
    if patch.email_mode.is_some() || patch.locale.is_some() || patch.email.is_some() {
        let mut settings = store::preferences::settings(&s.db, user).await?;
        settings.email_mode = patch.email_mode.unwrap_or(settings.email_mode);
        settings.locale = patch.locale.unwrap_or(settings.locale);
        if let Some(email) = patch.email {
            settings.email = (!email.is_empty()).then_some(email);
        }
        store::preferences::set_settings(&s.db, user, &settings).await?;
    }
    for (kind, channels) in &patch.kinds {
        for (channel, enabled) in CHANNELS.iter().zip([channels.in_app, channels.email]) {
            if let Some(enabled) = enabled {
                store::preferences::set_choice(&s.db, user, kind, channel, enabled).await?;
            }
        }
    }
    load(&s, user).await.map(Json)
}

async fn mute(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let ws = parse_id(&id, "workspace")?;
    authz::authorize(&s.db, &caller, "workspace.read", Resource::Workspace(ws)).await?;
    store::preferences::set_mute(&s.db, caller.user_id, ws, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unmute(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let ws = parse_id(&id, "workspace")?;
    store::preferences::set_mute(&s.db, caller.user_id, ws, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

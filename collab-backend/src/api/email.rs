//! Email endpoints: the signed unsubscribe link (no sign-in) and the admins' template
//! preview.
//!
//! - `GET /email/unsubscribe?u&c&v&s` shows a small confirmation page and changes
//!   nothing (mail scanners follow links); its button POSTs to the same URL.
//! - `POST /email/unsubscribe?u&c&v&s` unsubscribes: the kind's `email` channel off,
//!   or email mode `off` for the `digest` category. The RFC 8058 one-click body
//!   (`List-Unsubscribe=One-Click`) is what mail clients send; any body is accepted.
//!   Repeating it is harmless. A link whose signature does not verify is 400
//!   `invalid_link` (no user is named).
//! - `GET /admin/email-templates/{kind}/preview?locale=en|zh-CN`: the rendered subject,
//!   text and HTML of `kind` (a notification kind or `digest`) with sample data, for
//!   organization admins (`org.manage`).

use axum::Json;
use axum::extract::State;
use axum::http::{Method, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::common::{Api, op};
use super::extract::{ApiPath, ApiQuery};
use crate::auth::Caller;
use crate::authz::{self, Resource};
use crate::email::templates::{self, Rendered};
use crate::email::unsubscribe::{self, DIGEST, LinkParams, Unsubscribe};
use crate::error::ApiError;
use crate::notifications::{KINDS, LOCALES};
use crate::store;

pub(super) fn routes() -> Api {
    Api::new()
        .route(
            "/email/unsubscribe",
            get(confirm_page).post(unsubscribe),
            vec![
                op(
                    Method::GET,
                    "Unsubscribe confirmation page (HTML; changes nothing)",
                )
                .query(&["u", "c", "v", "s"]),
                op(
                    Method::POST,
                    "Unsubscribe by signed link, no sign-in (RFC 8058 one-click; HTML)",
                )
                .query(&["u", "c", "v", "s"]),
            ],
        )
        .route(
            "/admin/email-templates/{kind}/preview",
            get(preview),
            vec![
                op(
                    Method::GET,
                    "Render an email template with sample data (organization admins)",
                )
                .query(&["locale"])
                .res(200, "EmailPreview"),
            ],
        )
}

fn verified(s: &AppState, params: &LinkParams) -> Result<Unsubscribe, ApiError> {
    let keys = s
        .options
        .email
        .as_ref()
        .map(|e| e.unsubscribe_keys.as_slice())
        .unwrap_or_default();
    unsubscribe::verify(keys, params, &KINDS)
        .ok_or_else(|| ApiError::bad_request("invalid_link", "this unsubscribe link is not valid"))
}

fn what(category: &str) -> &str {
    if category == DIGEST {
        "all notification emails"
    } else {
        category
    }
}

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title></head>\
         <body style=\"font-family: sans-serif; max-width: 32em; margin: 2em auto;\">\
         <h1>{title}</h1>{body}</body></html>\n"
    );
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

async fn confirm_page(
    State(s): State<AppState>,
    ApiQuery(params): ApiQuery<LinkParams>,
) -> Result<Response, ApiError> {
    let found = verified(&s, &params)?;
    // Every part was checked (UUID, known category, number, hex): safe in HTML as is.
    let query = format!(
        "u={}&amp;c={}&amp;v={}&amp;s={}",
        found.user_id,
        found.category,
        params.v.as_deref().unwrap_or_default(),
        params.s.as_deref().unwrap_or_default()
    );
    let body = format!(
        "<p>Stop emails about <strong>{}</strong>?</p>\
         <form method=\"post\" action=\"?{query}\">\
         <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <button type=\"submit\">Unsubscribe</button></form>",
        what(&found.category)
    );
    Ok(page("Unsubscribe", &body))
}

async fn unsubscribe(
    State(s): State<AppState>,
    ApiQuery(params): ApiQuery<LinkParams>,
) -> Result<Response, ApiError> {
    let found = verified(&s, &params)?;
    let user = found.user_id;
    if store::users::get(&s.db, user).await?.is_none() {
        return Err(ApiError::bad_request(
            "invalid_link",
            "this unsubscribe link is not valid",
        ));
    }
    if found.category == DIGEST {
        let mut settings = store::preferences::settings(&s.db, user).await?;
        settings.email_mode = "off".to_owned();
        store::preferences::set_settings(&s.db, user, &settings).await?;
    } else {
        store::preferences::set_choice(&s.db, user, &found.category, "email", false).await?;
    }
    let body = format!(
        "<p>You will no longer get emails about <strong>{}</strong>. \
         You can turn them back on in your notification preferences.</p>",
        what(&found.category)
    );
    Ok(page("Unsubscribed", &body))
}

#[derive(Debug, Deserialize)]
struct PreviewQuery {
    locale: Option<String>,
}

/// A rendered template.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EmailPreview {
    /// The notification kind, or `digest`.
    kind: String,
    /// `en` or `zh-CN`.
    locale: String,
    subject: String,
    /// The `text/plain` part.
    text: String,
    /// The `text/html` part.
    html: String,
}

async fn preview(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(kind): ApiPath<String>,
    ApiQuery(q): ApiQuery<PreviewQuery>,
) -> Result<Json<EmailPreview>, ApiError> {
    authz::authorize(&s.db, &caller, "org.manage", Resource::Org(caller.org_id)).await?;
    let locale = q.locale.unwrap_or_else(|| "en".to_owned());
    if !LOCALES.contains(&locale.as_str()) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("locale must be one of {}", LOCALES.join(", ")),
        ));
    }
    let base = s
        .options
        .email
        .as_ref()
        .map_or("http://localhost:8080", |e| e.public_url.as_str());
    let items = templates::sample(&kind, base).ok_or_else(|| ApiError::not_found("template"))?;
    let unsubscribe = format!("{base}/api/v1/email/unsubscribe?u=…");
    let rendered: Rendered = if kind == DIGEST {
        templates::render_digest(&locale, "daily", &items, &unsubscribe)
    } else {
        templates::render_one(&locale, &items[0], &unsubscribe)
    }
    .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(Json(EmailPreview {
        kind,
        locale,
        subject: rendered.subject,
        text: rendered.text,
        html: rendered.html,
    }))
}

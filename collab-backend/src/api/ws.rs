//! `GET /ws`: the notification WebSocket, and `POST /ws/tickets`, which mints the
//! single-use tickets browsers authenticate it with.
//!
//! Browsers cannot set `Authorization` on a WebSocket, so the upgrade accepts either
//! that header (or the gateway's trusted identity, like every route) or `?ticket=`: a
//! ticket minted by an authenticated `POST /ws/tickets`, valid [`TICKET_TTL`], stored as
//! its SHA-256 and deleted by its first use. The backend logs paths, never query
//! strings, so tickets stay out of its logs.
//!
//! `?after=<notification id>` replays every notification created after that one (the
//! last a client saw before reconnecting), then pushes live ones; without it only new
//! ones are pushed. The session protocol is in `notifications::session`.

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, Request, State, WebSocketUpgrade};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::common::{Api, op};
use super::extract::ApiQuery;
use crate::auth::{self, Caller, secret};
use crate::error::ApiError;
use crate::notifications::session;
use crate::{store, timestamp};

/// How long a ticket stays usable.
pub const TICKET_TTL: Duration = Duration::from_secs(30);

/// Prefix of WebSocket tickets.
const TICKET_PREFIX: &str = "aist_w_";

pub(super) fn routes() -> Api {
    Api::new()
        .route(
            "/ws",
            get(connect),
            vec![
                op(
                    Method::GET,
                    "Notification WebSocket (Authorization or ?ticket=; ?after= replays)",
                )
                .query(&["ticket", "after"])
                .empty(101),
            ],
        )
        .route(
            "/ws/tickets",
            post(mint),
            vec![
                op(Method::POST, "A single-use WebSocket ticket, valid 30 s").res(201, "WsTicket"),
            ],
        )
}

/// A WebSocket ticket: pass it as `?ticket=` within `expires_in` seconds, once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WsTicket {
    ticket: String,
    /// RFC 3339.
    expires_at: String,
    /// Seconds.
    expires_in: u64,
}

#[derive(Debug, Deserialize)]
struct ConnectQuery {
    ticket: Option<String>,
    after: Option<String>,
}

async fn mint(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<WsTicket>), ApiError> {
    let ticket = secret::generate(TICKET_PREFIX);
    let expires = timestamp::now()
        + chrono::Duration::from_std(TICKET_TTL).unwrap_or(chrono::Duration::seconds(30));
    let expires_at = timestamp::format(expires);
    store::preferences::insert_ticket(
        &s.db,
        caller.user_id,
        caller.token_id,
        &secret::hash(&ticket),
        &expires_at,
    )
    .await?;
    let body = WsTicket {
        ticket,
        expires_at,
        expires_in: TICKET_TTL.as_secs(),
    };
    Ok((StatusCode::CREATED, Json(body)))
}

async fn connect(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<ConnectQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let (mut parts, _body) = request.into_parts();
    // Everything that can refuse the request comes before the ticket is consumed, so a
    // request that could never upgrade does not burn it.
    let after = match q.after.as_deref() {
        None | Some("") => None,
        Some(text) => Some(Uuid::parse_str(text).map_err(|_| {
            ApiError::bad_request("invalid_query", "after must be a notification id")
        })?),
    };
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &s)
        .await
        .map_err(|rejection| ApiError::bad_request("websocket_required", rejection.body_text()))?;
    let caller = match q.ticket.as_deref() {
        Some(ticket) => {
            let found = store::preferences::consume_ticket(&s.db, &secret::hash(ticket)).await?;
            let (user_id, token_id) =
                found.ok_or(ApiError::Unauthenticated("invalid or used ticket"))?;
            if let Some(token_id) = token_id
                && !store::tokens::is_live(&s.db, token_id).await?
            {
                return Err(ApiError::Unauthenticated("invalid or expired token"));
            }
            auth::caller_for(&s, user_id, token_id).await?
        }
        None => Caller::from_request_parts(&mut parts, &s).await?,
    };
    let session = session::Params {
        user_id: caller.user_id,
        token_id: caller.token_id,
        after,
        heartbeat: s.options.ws_heartbeat,
    };
    let (db, hub) = (s.db.clone(), s.hub.clone());
    Ok(upgrade
        // Otherwise a failed upgrade drops the connection after the 101 without a word.
        .on_failed_upgrade(|error| tracing::warn!(%error, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| session::run(socket, db, hub, session))
        .into_response())
}

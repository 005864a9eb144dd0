//! `GET /api/v1/healthz`: is the backend up and its database answering?

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::common::{Api, op};
use crate::error::ApiError;

/// A health check that takes longer than this reports the database unavailable, rather
/// than hanging until the pool's acquire timeout.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) fn routes() -> Api {
    Api::new().route(
        "/healthz",
        get(healthz),
        vec![op(Method::GET, "Is the backend up and its database answering?").res(200, "Health")],
    )
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    status: &'static str,
    database: &'static str,
}

/// 200 `{"status":"ok","database":"sqlite"|"postgres"}` after a real `SELECT 1`;
/// 503 `database_unavailable` when that fails or takes over 3 s.
pub(super) async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    match tokio::time::timeout(HEALTH_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => Ok(Json(Health {
            status: "ok",
            database: state.db.dialect().as_str(),
        })),
        Ok(Err(error)) => Err(ApiError::Unavailable(Box::new(error))),
        Err(_elapsed) => Err(ApiError::Unavailable(
            format!("health check took over {HEALTH_TIMEOUT:?}").into(),
        )),
    }
}

//! `/api/v1/organizations`: create, fetch and list organizations.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::common::{Api, op};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::domain::organization::{NewOrganization, Organization};
use crate::error::ApiError;
use crate::store::{self, StoreError};
use crate::timestamp;

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest accepted `limit`; larger values are rejected (400), not clamped.
pub const MAX_LIMIT: u32 = 200;

pub(super) fn routes() -> Api {
    Api::new()
        .route(
            "/organizations",
            get(list).post(create),
            vec![
                op(Method::GET, "List organizations").page("Organization"),
                op(
                    Method::POST,
                    "Create an organization (then register its first user)",
                )
                .req("CreateOrganization")
                .res(201, "Organization"),
            ],
        )
        .route(
            "/organizations/{id}",
            get(fetch),
            vec![op(Method::GET, "Fetch an organization").res(200, "Organization")],
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateOrganization {
    name: String,
    #[serde(default)]
    slug: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// The wire form of an organization.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Organization)]
pub(crate) struct OrganizationBody {
    id: Uuid,
    name: String,
    slug: String,
    created_at: String,
}

impl From<Organization> for OrganizationBody {
    fn from(organization: Organization) -> Self {
        Self {
            id: organization.id,
            name: organization.name,
            slug: organization.slug,
            created_at: timestamp::format(organization.created_at),
        }
    }
}

#[derive(Debug, Serialize)]
struct OrganizationPage {
    items: Vec<OrganizationBody>,
    next_cursor: Option<String>,
}

/// `POST /organizations` → 201 with the organization and its `Location`;
/// 400 on bad input, 409 when the slug is taken.
async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateOrganization>,
) -> Result<
    (
        StatusCode,
        [(header::HeaderName, String); 1],
        Json<OrganizationBody>,
    ),
    ApiError,
> {
    let new = NewOrganization::parse(&body.name, body.slug.as_deref())?;
    let organization = match store::organizations::create(&state.db, &new).await {
        Ok(organization) => organization,
        Err(StoreError::Conflict(_)) => {
            let message = format!("an organization with slug {:?} already exists", new.slug());
            return Err(ApiError::Conflict(message));
        }
        Err(error) => return Err(error.into()),
    };
    let location = format!("/api/v1/organizations/{}", organization.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(organization.into()),
    ))
}

/// `GET /organizations/{id}` → 200, or 404 (also for ids that are not UUIDs).
async fn fetch(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OrganizationBody>, ApiError> {
    // The id is not echoed: it is client input of any length.
    let not_found = || ApiError::NotFound("organization not found".to_owned());
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    match store::organizations::get(&state.db, uuid).await? {
        Some(organization) => Ok(Json(organization.into())),
        None => Err(not_found()),
    }
}

/// `GET /organizations?limit=N&cursor=C` → a page in creation order.
async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<OrganizationPage>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        let message = format!("limit must be between 1 and {MAX_LIMIT}");
        return Err(ApiError::bad_request("invalid_query", message));
    }
    let after = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(cursor) => Some(Uuid::parse_str(cursor).map_err(|_| {
            ApiError::bad_request("invalid_query", "cursor is not one this API returned")
        })?),
    };
    let page = store::organizations::list(&state.db, limit, after).await?;
    Ok(Json(OrganizationPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

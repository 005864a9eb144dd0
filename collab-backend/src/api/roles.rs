//! Roles (built-in and custom), grants, and the audit log.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::common::{Api, PageParams, Paged, op, page, parse_id};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::auth::Caller;
use crate::authz::{self, Resource, permission};
use crate::domain::ValidationError;
use crate::error::ApiError;
use crate::store::audit::AuditEntry;
use crate::store::grants::Grant;
use crate::store::roles::Role;
use crate::store::{self, StoreError};

pub(super) fn routes() -> Api {
    Api::new()
        .route("/organizations/{id}/roles", get(list_roles).post(create_role), vec![
            op(Method::GET, "List built-in and custom roles with their effective permissions").list("Role"),
            op(Method::POST, "Create a custom role (role.manage)").req("NewRole").res(201, "Role"),
        ])
        .route("/grants", post(create_grant), vec![
            op(Method::POST, "Grant a role on an org, department, team or workspace (member.manage there)").req("NewGrant").res(201, "Grant"),
        ])
        .route("/grants/{id}", delete(delete_grant), vec![op(Method::DELETE, "Revoke a grant (member.manage on its scope)").empty(204)])
        .route("/organizations/{id}/audit", get(audit), vec![
            op(Method::GET, "The organization's audit log of permission and membership changes (audit.read)").page("AuditEntry"),
        ])
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRole {
    name: String,
    /// A role id to inherit from (built-in name or custom role id).
    extends: Option<String>,
    permissions: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewGrant {
    user_id: Uuid,
    role: String,
    /// `org`, `department`, `team` or `workspace`.
    scope_kind: String,
    scope_id: Uuid,
}

async fn list_roles(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<Role>>, ApiError> {
    let org = parse_id(&id, "organization")?;
    authz::authorize(&s.db, &caller, authz::VISIBLE, Resource::Org(org)).await?;
    Ok(Json(store::roles::list(&s.db, org).await?))
}

/// A role `id` usable in `org`: built-in or one of its custom roles.
async fn role_in(s: &AppState, org: Uuid, id: &str, field: &'static str) -> Result<Role, ApiError> {
    let role = store::roles::get(&s.db, id).await?;
    match role {
        Some(role) if role.org_id.is_none() || role.org_id == Some(org) => Ok(role),
        _ => Err(ValidationError::new(field, "no such role").into()),
    }
}

async fn create_role(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NewRole>,
) -> Result<(StatusCode, Json<Role>), ApiError> {
    let org = parse_id(&id, "organization")?;
    authz::authorize(&s.db, &caller, "role.manage", Resource::Org(org)).await?;
    let name = super::orgtree::name("name", &body.name)?;
    if permission::BUILTIN_ROLES.contains(&name.as_str()) {
        return Err(ValidationError::new("name", "is a built-in role's name").into());
    }
    if let Some(unknown) = body.permissions.iter().find(|p| !permission::is_known(p)) {
        return Err(
            ValidationError::new("permissions", format!("unknown permission {unknown:?}")).into(),
        );
    }
    if let Some(extends) = body.extends.as_deref() {
        role_in(&s, org, extends, "extends").await?;
    }
    let role = match store::roles::create(
        &s.db,
        org,
        &name,
        body.extends.as_deref(),
        &body.permissions,
    )
    .await
    {
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::Conflict(format!(
                "a role named {name:?} already exists"
            )));
        }
        other => other?,
    };
    let detail = serde_json::json!({ "name": role.name, "extends": role.extends, "permissions": body.permissions });
    store::audit::record(
        &s.db,
        org,
        Some(caller.user_id),
        "role.create",
        "role",
        &role.id,
        detail,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(role)))
}

fn scope_resource(kind: &str, id: Uuid) -> Result<Resource, ApiError> {
    Ok(match kind {
        "org" => Resource::Org(id),
        "department" => Resource::Department(id),
        "team" => Resource::Team(id),
        "workspace" => Resource::Workspace(id),
        _ => {
            return Err(ValidationError::new(
                "scope_kind",
                "must be org, department, team or workspace",
            )
            .into());
        }
    })
}

/// Grants `role` on a scope to `user_id` (same organization), with `member.manage` on the
/// scope, and records it in the audit log.
pub(super) async fn grant(
    s: &AppState,
    caller: &Caller,
    user_id: Uuid,
    role: &str,
    kind: &str,
    scope: Uuid,
) -> Result<Grant, ApiError> {
    let access =
        authz::authorize(&s.db, caller, "member.manage", scope_resource(kind, scope)?).await?;
    let user = store::users::get(&s.db, user_id).await?;
    if user.is_none_or(|u| u.org_id != access.org_id) {
        return Err(ValidationError::new("user_id", "no such user in this organization").into());
    }
    role_in(s, access.org_id, role, "role").await?;
    let kind_static = match kind {
        "org" => "org",
        "department" => "department",
        "team" => "team",
        _ => "workspace",
    };
    let mut conn = s.db.pool().acquire().await.map_err(StoreError::from)?;
    let grant =
        match store::grants::create(&mut conn, access.org_id, user_id, role, kind_static, scope)
            .await
        {
            Err(StoreError::Conflict(_)) => {
                return Err(ApiError::Conflict(
                    "the user already holds this role there".to_owned(),
                ));
            }
            other => other?,
        };
    let detail = serde_json::json!({ "user_id": user_id, "role": role, "scope_kind": kind, "scope_id": scope });
    store::audit::record(
        &s.db,
        access.org_id,
        Some(caller.user_id),
        "grant.create",
        "grant",
        &grant.id.to_string(),
        detail,
    )
    .await?;
    Ok(grant)
}

async fn create_grant(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewGrant>,
) -> Result<(StatusCode, Json<Grant>), ApiError> {
    let grant = grant(
        &s,
        &caller,
        body.user_id,
        &body.role,
        &body.scope_kind,
        body.scope_id,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(grant)))
}

async fn delete_grant(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "grant")?;
    let grant = store::grants::get(&s.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("grant"))?;
    let resource = scope_resource(&grant.scope_kind, grant.scope_id)?;
    let access = authz::visible(&s.db, &caller, resource)
        .await?
        .ok_or_else(|| ApiError::not_found("grant"))?;
    if !access.allows("member.manage") {
        return Err(ApiError::Forbidden(
            "missing permission member.manage".to_owned(),
        ));
    }
    store::grants::delete(&s.db, id).await?;
    let detail = serde_json::json!({ "user_id": grant.user_id, "role": grant.role, "scope_kind": grant.scope_kind, "scope_id": grant.scope_id });
    store::audit::record(
        &s.db,
        access.org_id,
        Some(caller.user_id),
        "grant.delete",
        "grant",
        &id.to_string(),
        detail,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn audit(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Paged<AuditEntry>>, ApiError> {
    let org = parse_id(&id, "organization")?;
    authz::authorize(&s.db, &caller, "audit.read", Resource::Org(org)).await?;
    let (limit, after) = page(params.limit, params.cursor.as_deref())?;
    Ok(Json(
        store::audit::list(&s.db, org, limit, after).await?.into(),
    ))
}

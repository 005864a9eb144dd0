//! Departments (a tree), teams and their members, workspaces.
//!
//! Rules for moves and deletes: a department can move under another department of the
//! same organization (never under itself or its own descendants: 400 `parent_id`), or to
//! the top (`parent_id: null`); a team can move to any department or to the top. Grants
//! move with the node, so inherited permissions follow the new place. Deleting a
//! department or team is refused (409) while it still has sub-departments, teams or
//! workspaces: move or delete those first. Deleting removes the grants (memberships) on
//! it, which the audit log records.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::common::{Api, op, parse_id};
use super::extract::{ApiJson, ApiPath};
use crate::auth::Caller;
use crate::authz::{self, Resource};
use crate::domain::ValidationError;
use crate::domain::organization::derive_slug;
use crate::error::ApiError;
use crate::store::orgtree::{Department, Team, Workspace};
use crate::store::{self, StoreError};

pub(super) fn routes() -> Api {
    Api::new()
        .route(
            "/organizations/{id}/departments",
            get(list_departments).post(create_department),
            vec![
                op(Method::GET, "List an organization's departments").list("Department"),
                op(Method::POST, "Create a department (org.manage)")
                    .req("NewDepartment")
                    .res(201, "Department"),
            ],
        )
        .route(
            "/departments/{id}",
            get(fetch_department)
                .patch(update_department)
                .delete(delete_department),
            vec![
                op(Method::GET, "Fetch a department").res(200, "Department"),
                op(Method::PATCH, "Rename or move a department (org.manage)")
                    .req("DepartmentPatch")
                    .res(200, "Department"),
                op(Method::DELETE, "Delete an empty department (org.manage)").empty(204),
            ],
        )
        .route(
            "/organizations/{id}/teams",
            get(list_teams).post(create_team),
            vec![
                op(Method::GET, "List an organization's teams").list("Team"),
                op(Method::POST, "Create a team (org.manage)")
                    .req("NewTeam")
                    .res(201, "Team"),
            ],
        )
        .route(
            "/teams/{id}",
            get(fetch_team).patch(update_team).delete(delete_team),
            vec![
                op(Method::GET, "Fetch a team").res(200, "Team"),
                op(Method::PATCH, "Rename or move a team (org.manage)")
                    .req("TeamPatch")
                    .res(200, "Team"),
                op(
                    Method::DELETE,
                    "Delete a team without workspaces (org.manage)",
                )
                .empty(204),
            ],
        )
        .route(
            "/teams/{id}/members",
            get(list_members).post(add_member),
            vec![
                op(Method::GET, "List a team's members (grants on the team)").list("Grant"),
                op(Method::POST, "Add a member with a role (member.manage)")
                    .req("NewMember")
                    .res(201, "Grant"),
            ],
        )
        .route(
            "/teams/{id}/members/{user_id}",
            delete(remove_member),
            vec![op(Method::DELETE, "Remove a member (member.manage)").empty(204)],
        )
        .route(
            "/teams/{id}/workspaces",
            post(create_workspace),
            vec![
                op(
                    Method::POST,
                    "Create a workspace (workspace.manage on the team)",
                )
                .req("NewWorkspace")
                .res(201, "Workspace"),
            ],
        )
        .route(
            "/workspaces",
            get(list_workspaces),
            vec![op(Method::GET, "List the workspaces the caller can read").list("Workspace")],
        )
        .route(
            "/workspaces/{id}",
            get(fetch_workspace).patch(update_workspace),
            vec![
                op(Method::GET, "Fetch a workspace").res(200, "Workspace"),
                op(
                    Method::PATCH,
                    "Rename a workspace or set its task workflow (workspace.manage)",
                )
                .req("WorkspacePatch")
                .res(200, "Workspace"),
            ],
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDepartment {
    name: String,
    parent_id: Option<Uuid>,
}

/// Absent fields stay; `parent_id: null` moves to the top level.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DepartmentPatch {
    name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Uuid>)]
    parent_id: Option<Option<Uuid>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTeam {
    name: String,
    slug: Option<String>,
    department_id: Option<Uuid>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TeamPatch {
    name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Uuid>)]
    department_id: Option<Option<Uuid>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewMember {
    user_id: Uuid,
    /// Default `member`.
    role: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewWorkspace {
    name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkspacePatch {
    name: Option<String>,
    task_statuses: Option<Vec<String>>,
}

/// Distinguishes an absent field (`None`) from an explicit null (`Some(None)`).
fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Uuid>>, D::Error> {
    Option::<Uuid>::deserialize(d).map(Some)
}

pub(super) fn name(field: &'static str, value: &str) -> Result<String, ValidationError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > 200 {
        return Err(ValidationError::new(field, "must be 1..=200 characters"));
    }
    Ok(value.to_owned())
}

async fn list_departments(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<Department>>, ApiError> {
    let org = parse_id(&id, "organization")?;
    authz::authorize(&s.db, &caller, authz::VISIBLE, Resource::Org(org)).await?;
    Ok(Json(store::orgtree::departments(&s.db, org).await?))
}

/// The department `id` as a parent in `org`, checked for `org.manage`.
async fn parent_in(s: &AppState, caller: &Caller, org: Uuid, id: Uuid) -> Result<(), ApiError> {
    let access = authz::authorize(&s.db, caller, "org.manage", Resource::Department(id)).await?;
    if access.org_id != org {
        return Err(ApiError::not_found("department"));
    }
    Ok(())
}

async fn create_department(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NewDepartment>,
) -> Result<(StatusCode, Json<Department>), ApiError> {
    let org = parse_id(&id, "organization")?;
    let name = name("name", &body.name)?;
    match body.parent_id {
        Some(parent) => parent_in(&s, &caller, org, parent).await?,
        None => drop(authz::authorize(&s.db, &caller, "org.manage", Resource::Org(org)).await?),
    }
    let department = store::orgtree::create_department(&s.db, org, body.parent_id, &name).await?;
    Ok((StatusCode::CREATED, Json(department)))
}

async fn fetch_department(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Department>, ApiError> {
    let id = parse_id(&id, "department")?;
    authz::authorize(&s.db, &caller, authz::VISIBLE, Resource::Department(id)).await?;
    let department = store::orgtree::department(&s.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("department"))?;
    Ok(Json(department))
}

async fn update_department(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DepartmentPatch>,
) -> Result<Json<Department>, ApiError> {
    let id = parse_id(&id, "department")?;
    let access = authz::authorize(&s.db, &caller, "org.manage", Resource::Department(id)).await?;
    let current = store::orgtree::department(&s.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("department"))?;
    let new_name = match body.name.as_deref() {
        Some(n) => name("name", n)?,
        None => current.name.clone(),
    };
    let parent = body.parent_id.unwrap_or(current.parent_id);
    if let Some(parent) = parent {
        parent_in(&s, &caller, access.org_id, parent).await?;
        if store::orgtree::department_subtree(&s.db, id)
            .await?
            .contains(&parent)
        {
            return Err(ValidationError::new(
                "parent_id",
                "cannot move a department under itself or its descendants",
            )
            .into());
        }
    } else if body.parent_id.is_some() {
        authz::authorize(&s.db, &caller, "org.manage", Resource::Org(access.org_id)).await?;
    }
    store::orgtree::update_department(&s.db, id, &new_name, parent).await?;
    if parent != current.parent_id {
        let detail = serde_json::json!({ "from": current.parent_id, "to": parent });
        store::audit::record(
            &s.db,
            access.org_id,
            Some(caller.user_id),
            "department.move",
            "department",
            &id.to_string(),
            detail,
        )
        .await?;
    }
    let department = store::orgtree::department(&s.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("department"))?;
    Ok(Json(department))
}

async fn delete_department(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "department")?;
    let access = authz::authorize(&s.db, &caller, "org.manage", Resource::Department(id)).await?;
    if store::orgtree::department_has_children(&s.db, id).await? {
        return Err(ApiError::Conflict(
            "the department still has sub-departments or teams; move or delete them first"
                .to_owned(),
        ));
    }
    store::orgtree::delete_department(&s.db, id).await?;
    store::audit::record(
        &s.db,
        access.org_id,
        Some(caller.user_id),
        "department.delete",
        "department",
        &id.to_string(),
        serde_json::json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_teams(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<Team>>, ApiError> {
    let org = parse_id(&id, "organization")?;
    authz::authorize(&s.db, &caller, authz::VISIBLE, Resource::Org(org)).await?;
    Ok(Json(store::orgtree::teams(&s.db, org, None).await?))
}

async fn create_team(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NewTeam>,
) -> Result<(StatusCode, Json<Team>), ApiError> {
    let org = parse_id(&id, "organization")?;
    let name = name("name", &body.name)?;
    let slug = match body.slug {
        Some(slug) if crate::domain::organization::is_valid_slug(&slug) && slug != "all" => slug,
        Some(_) => {
            return Err(ValidationError::new(
                "slug",
                "must match ^[a-z0-9][a-z0-9-]{0,62}$ and not be \"all\"",
            )
            .into());
        }
        None => derive_slug(&name).ok_or_else(|| {
            ValidationError::new("slug", "cannot be derived from the name; provide one")
        })?,
    };
    match body.department_id {
        Some(department) => parent_in(&s, &caller, org, department).await?,
        None => drop(authz::authorize(&s.db, &caller, "org.manage", Resource::Org(org)).await?),
    }
    match store::orgtree::create_team(&s.db, org, body.department_id, &name, &slug).await {
        Ok(team) => Ok((StatusCode::CREATED, Json(team))),
        Err(StoreError::Conflict(_)) => Err(ApiError::Conflict(format!(
            "a team with slug {slug:?} already exists"
        ))),
        Err(e) => Err(e.into()),
    }
}

async fn fetch_team(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Team>, ApiError> {
    let id = parse_id(&id, "team")?;
    authz::authorize(&s.db, &caller, authz::VISIBLE, Resource::Team(id)).await?;
    Ok(Json(
        store::orgtree::team(&s.db, id)
            .await?
            .ok_or_else(|| ApiError::not_found("team"))?,
    ))
}

async fn update_team(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TeamPatch>,
) -> Result<Json<Team>, ApiError> {
    let id = parse_id(&id, "team")?;
    let access = authz::authorize(&s.db, &caller, "org.manage", Resource::Team(id)).await?;
    let current = store::orgtree::team(&s.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("team"))?;
    let new_name = match body.name.as_deref() {
        Some(n) => name("name", n)?,
        None => current.name.clone(),
    };
    let department = body.department_id.unwrap_or(current.department_id);
    match department {
        Some(d) => parent_in(&s, &caller, access.org_id, d).await?,
        None => drop(
            authz::authorize(&s.db, &caller, "org.manage", Resource::Org(access.org_id)).await?,
        ),
    }
    store::orgtree::update_team(&s.db, id, &new_name, department).await?;
    if department != current.department_id {
        let detail = serde_json::json!({ "from": current.department_id, "to": department });
        store::audit::record(
            &s.db,
            access.org_id,
            Some(caller.user_id),
            "team.move",
            "team",
            &id.to_string(),
            detail,
        )
        .await?;
    }
    Ok(Json(
        store::orgtree::team(&s.db, id)
            .await?
            .ok_or_else(|| ApiError::not_found("team"))?,
    ))
}

async fn delete_team(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "team")?;
    let access = authz::authorize(&s.db, &caller, "org.manage", Resource::Team(id)).await?;
    if store::orgtree::team_has_workspaces(&s.db, id).await? {
        return Err(ApiError::Conflict(
            "the team still has workspaces".to_owned(),
        ));
    }
    store::orgtree::delete_team(&s.db, id).await?;
    store::audit::record(
        &s.db,
        access.org_id,
        Some(caller.user_id),
        "team.delete",
        "team",
        &id.to_string(),
        serde_json::json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_members(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<crate::store::grants::Grant>>, ApiError> {
    let id = parse_id(&id, "team")?;
    authz::authorize(&s.db, &caller, authz::VISIBLE, Resource::Team(id)).await?;
    Ok(Json(store::grants::on_scope(&s.db, "team", id).await?))
}

async fn add_member(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NewMember>,
) -> Result<(StatusCode, Json<crate::store::grants::Grant>), ApiError> {
    let id = parse_id(&id, "team")?;
    let role = body.role.unwrap_or_else(|| "member".to_owned());
    let grant = super::roles::grant(&s, &caller, body.user_id, &role, "team", id).await?;
    Ok((StatusCode::CREATED, Json(grant)))
}

async fn remove_member(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((id, user)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "team")?;
    let user = parse_id(&user, "member")?;
    let access = authz::authorize(&s.db, &caller, "member.manage", Resource::Team(id)).await?;
    if store::grants::delete_on_scope(&s.db, user, "team", id).await? == 0 {
        return Err(ApiError::not_found("member"));
    }
    let detail = serde_json::json!({ "user_id": user, "team_id": id });
    store::audit::record(
        &s.db,
        access.org_id,
        Some(caller.user_id),
        "team.member.remove",
        "team",
        &id.to_string(),
        detail,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_workspace(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NewWorkspace>,
) -> Result<(StatusCode, Json<Workspace>), ApiError> {
    let id = parse_id(&id, "team")?;
    let name = name("name", &body.name)?;
    authz::authorize(&s.db, &caller, "workspace.manage", Resource::Team(id)).await?;
    let team = store::orgtree::team(&s.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("team"))?;
    Ok((
        StatusCode::CREATED,
        Json(store::orgtree::create_workspace(&s.db, &team, &name).await?),
    ))
}

async fn list_workspaces(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Workspace>>, ApiError> {
    let mut found = Vec::new();
    for id in authz::visible_workspace_ids(&s.db, &caller, "workspace.read").await? {
        if let Some(workspace) = store::orgtree::workspace(&s.db, id).await? {
            found.push(workspace);
        }
    }
    Ok(Json(found))
}

async fn fetch_workspace(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Workspace>, ApiError> {
    let id = parse_id(&id, "workspace")?;
    authz::authorize(&s.db, &caller, "workspace.read", Resource::Workspace(id)).await?;
    Ok(Json(
        store::orgtree::workspace(&s.db, id)
            .await?
            .ok_or_else(|| ApiError::not_found("workspace"))?,
    ))
}

async fn update_workspace(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<WorkspacePatch>,
) -> Result<Json<Workspace>, ApiError> {
    let id = parse_id(&id, "workspace")?;
    authz::authorize(&s.db, &caller, "workspace.manage", Resource::Workspace(id)).await?;
    let current = store::orgtree::workspace(&s.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("workspace"))?;
    let new_name = match body.name.as_deref() {
        Some(n) => name("name", n)?,
        None => current.name,
    };
    let statuses = body.task_statuses.unwrap_or(current.task_statuses);
    let valid = |st: &String| {
        !st.is_empty()
            && st.len() <= 40
            && st
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let mut unique = statuses.clone();
    unique.sort();
    unique.dedup();
    if !(2..=20).contains(&statuses.len())
        || !statuses.iter().all(valid)
        || unique.len() != statuses.len()
    {
        return Err(ValidationError::new(
            "task_statuses",
            "2..=20 distinct statuses of a-z 0-9 _; the last one means done",
        )
        .into());
    }
    store::orgtree::update_workspace(&s.db, id, &new_name, &statuses).await?;
    Ok(Json(
        store::orgtree::workspace(&s.db, id)
            .await?
            .ok_or_else(|| ApiError::not_found("workspace"))?,
    ))
}

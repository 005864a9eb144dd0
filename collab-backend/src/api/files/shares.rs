//! Shares of one file with a user or another workspace (see [`crate::authz`]'s
//! `shares` module for what they grant), audited, and the caller's shared files. A
//! share with a user queues a `file.shared` event for them in the same transaction.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::{delete, get};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::AppState;
use crate::api::common::{Api, op, parse_id};
use crate::api::extract::{ApiJson, ApiPath};
use crate::auth::Caller;
use crate::authz::{self, Resource};
use crate::domain::ValidationError;
use crate::error::ApiError;
use crate::notify::{self, Origin, Subject};
use crate::outbox::kind;
use crate::store::{self, StoreError, files::File, files::FileShare};
use crate::timestamp;

pub(super) fn routes() -> Api {
    Api::new()
        .route(
            "/files/{id}/shares",
            get(list).post(create),
            vec![
                op(Method::GET, "List a file's shares (file.share)").list("FileShare"),
                op(
                    Method::POST,
                    "FileShare a file with a user or a workspace (file.share; never more than you hold)",
                )
                .req("NewFileShare")
                .res(201, "FileShare"),
            ],
        )
        .route(
            "/files/{id}/shares/{share_id}",
            delete(remove),
            vec![op(Method::DELETE, "Remove a share (file.share)").empty(204)],
        )
        .route(
            "/shared-files",
            get(shared_with_me),
            vec![
                op(
                    Method::GET,
                    "Files shared with the caller or a workspace they read",
                )
                .list("File"),
            ],
        )
}

/// A share: exactly one of `user_id` and `workspace_id`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewFileShare {
    /// A user of the organization.
    user_id: Option<Uuid>,
    /// A workspace of the organization: every reader of it.
    workspace_id: Option<Uuid>,
    /// `read` or `write`.
    access: String,
    /// May the holder share it on (default false).
    #[serde(default)]
    reshare: bool,
}

async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<FileShare>>, ApiError> {
    let id = parse_id(&id, "file")?;
    authz::authorize(&s.db, &caller, "file.share", Resource::File(id)).await?;
    Ok(Json(store::files::shares(&s.db, id).await?))
}

/// The target of a new share, checked to be in the organization.
async fn target(
    s: &AppState,
    org_id: Uuid,
    body: &NewFileShare,
) -> Result<(&'static str, Uuid), ApiError> {
    match (body.user_id, body.workspace_id) {
        (Some(user), None) => {
            let found = store::users::get(&s.db, user).await?;
            if found.is_none_or(|u| u.org_id != org_id) {
                let message = "must be a user of this organization";
                return Err(ValidationError::new("user_id", message).into());
            }
            Ok(("user", user))
        }
        (None, Some(ws)) => {
            let found = store::orgtree::workspace(&s.db, ws).await?;
            if found.is_none_or(|w| w.org_id != org_id) {
                let message = "must be a workspace of this organization";
                return Err(ValidationError::new("workspace_id", message).into());
            }
            Ok(("workspace", ws))
        }
        _ => Err(
            ValidationError::new("user_id", "give exactly one of user_id and workspace_id").into(),
        ),
    }
}

async fn create(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NewFileShare>,
) -> Result<(StatusCode, Json<FileShare>), ApiError> {
    let id = parse_id(&id, "file")?;
    let access = authz::authorize(&s.db, &caller, "file.share", Resource::File(id)).await?;
    if !matches!(body.access.as_str(), "read" | "write") {
        return Err(ValidationError::new("access", "must be read or write").into());
    }
    if body.access == "write" && !access.allows("file.update") {
        return Err(ApiError::Forbidden(
            "a share cannot grant more than you hold: write needs file.update".to_owned(),
        ));
    }
    let (kind, target_id) = target(&s, access.org_id, &body).await?;
    let file = super::load(&s, id).await?;
    let share = FileShare {
        id: Uuid::now_v7(),
        file_id: id,
        target_kind: kind.to_owned(),
        target_id,
        access: body.access.clone(),
        reshare: body.reshare,
        granted_by: caller.user_id,
        created_at: timestamp::format(timestamp::now()),
    };
    let mut tx = s.db.pool().begin().await.map_err(StoreError::from)?;
    store::files::insert_share(&mut tx, &share)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::Conflict("the file is already shared with that target".to_owned())
            }
            other => other.into(),
        })?;
    // A user share tells its recipient (in the share's transaction); a workspace share
    // tells nobody: its readers find it under /shared-files.
    if kind == "user" && target_id != caller.user_id {
        let origin = Origin {
            org_id: access.org_id,
            workspace_id: file.workspace_id,
            actor_id: caller.user_id,
            subject: Subject::File(id),
        };
        let payload = serde_json::json!({
            "file_id": id, "name": file.name, "access": share.access,
        });
        notify::enqueue(
            &mut tx,
            &origin,
            kind::FILE_SHARED,
            &[target_id],
            ("file", id),
            payload,
        )
        .await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    let detail = serde_json::json!({
        "file_id": id, "target_kind": kind, "target_id": target_id,
        "access": share.access, "reshare": share.reshare,
    });
    store::audit::record(
        &s.db,
        access.org_id,
        Some(caller.user_id),
        "file.share.create",
        "file_share",
        &share.id.to_string(),
        detail,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(share)))
}

async fn remove(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((id, share_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "file")?;
    let access = authz::authorize(&s.db, &caller, "file.share", Resource::File(id)).await?;
    let share_id = parse_id(&share_id, "share")?;
    let share = store::files::shares(&s.db, id)
        .await?
        .into_iter()
        .find(|sh| sh.id == share_id)
        .ok_or_else(|| ApiError::not_found("share"))?;
    // Holding file.share only through a share (reshare) lets one remove one's own shares.
    let workspace = access.workspace_id.unwrap_or_default();
    let on_workspace = authz::visible(&s.db, &caller, Resource::Workspace(workspace))
        .await?
        .is_some_and(|a| a.allows("file.share"));
    if !on_workspace && share.granted_by != caller.user_id {
        return Err(ApiError::Forbidden(
            "only the workspace's file.share holders remove shares others made".to_owned(),
        ));
    }
    if !store::files::delete_share(&s.db, id, share_id).await? {
        return Err(ApiError::not_found("share"));
    }
    let detail = serde_json::json!({
        "file_id": id, "target_kind": share.target_kind, "target_id": share.target_id,
        "access": share.access,
    });
    store::audit::record(
        &s.db,
        access.org_id,
        Some(caller.user_id),
        "file.share.delete",
        "file_share",
        &share_id.to_string(),
        detail,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn shared_with_me(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<File>>, ApiError> {
    let workspaces = authz::visible_workspace_ids(&s.db, &caller, "workspace.read").await?;
    let files = store::files::shared_with(&s.db, caller.user_id, &workspaces).await?;
    let mut readable = Vec::with_capacity(files.len());
    for file in files {
        // The one check decides (the org, and that the share still applies).
        if authz::visible(&s.db, &caller, Resource::File(file.id))
            .await?
            .is_some()
        {
            readable.push(file);
        }
    }
    Ok(Json(readable))
}

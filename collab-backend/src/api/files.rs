//! Files of a workspace: streamed uploads, versions, ranged and verified downloads,
//! shares.
//!
//! **Uploads** are the raw request body (any `Content-Type`; the stored type is sniffed
//! from the bytes), streamed to storage while hashed, never buffered whole; the name
//! comes in `?name=` and is cleaned ([`crate::domain::file::name`]). Past
//! [`BackendOptions::max_upload_bytes`](crate::BackendOptions) the answer is 413 (at once
//! when `Content-Length` says so). The metadata row is written only after the object is
//! durable, so a 201 means the bytes survive a crash.
//!
//! **Versions.** Each upload to an existing file (`POST /files/{id}/versions`) makes
//! version n+1; a restore makes a new version with an old one's content. The file's
//! `ETag` is `"<version>"`; uploads, restores and deletes check `If-Match` when sent
//! (412 when stale) and are unconditional without it.
//!
//! **Downloads** (`content` routes) verify the object's size and SHA-256 before sending
//! anything: a corrupt object is a logged 500, never served. They honour one `Range`
//! (206; 416 with `Content-Range: bytes */len` when it selects nothing) and `If-Range`
//! (the content `ETag`, `"<sha256>"`).
//!
//! **Comments** on a file (`/files/{id}/comments`) behave as on a task (see
//! [`super::comments`]): reading the file lets one read them, `comment.create` on the
//! file (from the workspace's role) lets one write them, and mentions reach readers
//! of the file only.
//!
//! **Permissions**: the workspace's (`workspace.read` to read, `file.create`,
//! `file.update`, `file.delete`, `file.share`) plus the file's shares
//! ([`crate::authz::share_permissions`]), through [`authz::authorize`]. What a caller
//! cannot read is 404.

mod content;
mod shares;

pub(crate) use shares::NewFileShare;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use super::common::{Api, PageParams, Paged, etag, if_match, op, page, parse_id};
use super::extract::{ApiPath, ApiQuery};
use crate::auth::Caller;
use crate::authz::{self, FILE_READ, Resource};
use crate::domain::{ValidationError, file as rules};
use crate::error::ApiError;
use crate::storage::{Storage, Stored, WriteError};
use crate::store::files::{File, FileVersion};
use crate::store::{self, StoreError};
use crate::timestamp;

const RANGE_HEADERS: &[&str] = &["Range", "If-Range"];

pub(super) fn routes() -> Api {
    Api::new()
        .route(
            "/workspaces/{id}/files",
            get(list).post(upload),
            vec![
                op(Method::GET, "List a workspace's files (cursor pagination)")
                    .query(&["limit", "cursor"])
                    .page("File"),
                op(
                    Method::POST,
                    "Upload a new file (file.create): the raw body, ?name=; ETag in the response",
                )
                .query(&["name"])
                .raw_req()
                .res(201, "File"),
            ],
        )
        .route(
            "/files/{id}",
            get(fetch).delete(remove),
            vec![
                op(Method::GET, "Fetch a file's metadata; ETag in the response").res(200, "File"),
                op(
                    Method::DELETE,
                    "Delete a file, its versions, shares and comments (file.delete)",
                )
                .if_match(false)
                .empty(204),
            ],
        )
        .route(
            "/files/{id}/content",
            get(content::current),
            vec![
                op(
                    Method::GET,
                    "Download the current version (checksum verified; Range, If-Range)",
                )
                .headers(RANGE_HEADERS)
                .binary(200),
            ],
        )
        .route(
            "/files/{id}/versions",
            get(versions).post(upload_version),
            vec![
                op(Method::GET, "List a file's versions, oldest first").list("FileVersion"),
                op(
                    Method::POST,
                    "Upload a new version (file.update): the raw body",
                )
                .raw_req()
                .if_match(false)
                .res(201, "File"),
            ],
        )
        .route(
            "/files/{id}/versions/{version}/content",
            get(content::of_version),
            vec![
                op(
                    Method::GET,
                    "Download one version (checksum verified; Range, If-Range)",
                )
                .headers(RANGE_HEADERS)
                .binary(200),
            ],
        )
        .route(
            "/files/{id}/versions/{version}/restore",
            post(restore),
            vec![
                op(
                    Method::POST,
                    "Restore a version: a new version with its content (file.update)",
                )
                .if_match(false)
                .res(201, "File"),
            ],
        )
        .merge(shares::routes())
}

/// `?name=` of an upload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadQuery {
    name: Option<String>,
}

fn storage(s: &AppState) -> Storage {
    Storage::new(&s.options.storage_root)
}

async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Json<Paged<File>>, ApiError> {
    let ws = parse_id(&id, "workspace")?;
    authz::authorize(&s.db, &caller, "workspace.read", Resource::Workspace(ws)).await?;
    let (limit, after) = page(q.limit, q.cursor.as_deref())?;
    Ok(Json(
        store::files::list(&s.db, ws, limit, after).await?.into(),
    ))
}

pub(super) async fn load(s: &AppState, id: Uuid) -> Result<File, ApiError> {
    store::files::get(&s.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("file"))
}

async fn fetch(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id, "file")?;
    authz::authorize(&s.db, &caller, FILE_READ, Resource::File(id)).await?;
    let file = load(&s, id).await?;
    Ok((etag(file.version), Json(file)))
}

/// Streams `body` into storage within the size limit.
async fn store_body(s: &AppState, headers: &HeaderMap, body: Body) -> Result<Stored, ApiError> {
    let max = s.options.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(ApiError::PayloadTooLarge);
    }
    storage(s).write(body, max).await.map_err(|e| match e {
        WriteError::TooLarge(_) => ApiError::PayloadTooLarge,
        WriteError::Body(_) => ApiError::bad_request(
            "invalid_body",
            "the upload body could not be read to its end",
        ),
        WriteError::Io(e) => ApiError::Internal(Box::new(e)),
    })
}

fn version_of(stored: &Stored, by: Uuid, restored_from: Option<i64>) -> FileVersion {
    FileVersion {
        version: 1,
        size: i64::try_from(stored.size).unwrap_or(i64::MAX),
        content_type: stored.content_type.clone(),
        sha256: stored.sha256.clone(),
        restored_from,
        uploaded_by: by,
        created_at: timestamp::format(timestamp::now()),
        object_id: stored.object_id,
    }
}

/// Removes an object whose metadata row was never written.
async fn discard(s: &AppState, object: Uuid) {
    if let Err(e) = storage(s).remove(object).await {
        tracing::warn!(error = %e, "cannot remove an unreferenced upload");
    }
}

async fn upload(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let ws = parse_id(&id, "workspace")?;
    authz::authorize(&s.db, &caller, "file.create", Resource::Workspace(ws)).await?;
    let raw = q
        .name
        .ok_or_else(|| ValidationError::new("name", "required (?name=)"))?;
    let name = rules::name(&raw)?;
    let stored = store_body(&s, &headers, body).await?;
    let version = version_of(&stored, caller.user_id, None);
    let file = File {
        id: Uuid::now_v7(),
        workspace_id: ws,
        name,
        version: 1,
        size: version.size,
        content_type: version.content_type.clone(),
        sha256: version.sha256.clone(),
        created_by: caller.user_id,
        created_at: version.created_at.clone(),
        updated_at: version.created_at.clone(),
    };
    let written = async {
        let mut tx = s.db.pool().begin().await?;
        store::files::insert(&mut tx, &file, &version).await?;
        tx.commit().await?;
        Ok::<_, StoreError>(())
    }
    .await;
    if let Err(e) = written {
        discard(&s, stored.object_id).await;
        return Err(e.into());
    }
    Ok((StatusCode::CREATED, etag(file.version), Json(file)))
}

/// Adds `version` to file `id` under `If-Match`; the file as it now is.
async fn add_version(
    s: &AppState,
    id: Uuid,
    headers: &HeaderMap,
    current: i64,
    version: FileVersion,
) -> Result<File, ApiError> {
    let expected = if_match(headers, current, false)?;
    match store::files::add_version(&s.db, id, expected, version).await? {
        Some(_) => load(s, id).await,
        None => Err(ApiError::PreconditionFailed),
    }
}

async fn upload_version(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id, "file")?;
    authz::authorize(&s.db, &caller, "file.update", Resource::File(id)).await?;
    let current = load(&s, id).await?;
    // Fail early on a stale tag, before taking the upload.
    if_match(&headers, current.version, false)?;
    let stored = store_body(&s, &headers, body).await?;
    let version = version_of(&stored, caller.user_id, None);
    match add_version(&s, id, &headers, current.version, version).await {
        Ok(file) => Ok((StatusCode::CREATED, etag(file.version), Json(file))),
        Err(e) => {
            discard(&s, stored.object_id).await;
            Err(e)
        }
    }
}

pub(super) fn parse_version(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::not_found("version"))
}

async fn versions(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<FileVersion>>, ApiError> {
    let id = parse_id(&id, "file")?;
    authz::authorize(&s.db, &caller, FILE_READ, Resource::File(id)).await?;
    Ok(Json(store::files::versions(&s.db, id).await?))
}

async fn restore(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath((id, version)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id, "file")?;
    authz::authorize(&s.db, &caller, "file.update", Resource::File(id)).await?;
    let number = parse_version(&version)?;
    let current = load(&s, id).await?;
    let old = store::files::version(&s.db, id, number)
        .await?
        .ok_or_else(|| ApiError::not_found("version"))?;
    let restored = FileVersion {
        restored_from: Some(old.version),
        uploaded_by: caller.user_id,
        created_at: timestamp::format(timestamp::now()),
        ..old
    };
    let file = add_version(&s, id, &headers, current.version, restored).await?;
    Ok((StatusCode::CREATED, etag(file.version), Json(file)))
}

async fn remove(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "file")?;
    let access = authz::authorize(&s.db, &caller, "file.delete", Resource::File(id)).await?;
    let current = load(&s, id).await?;
    let expected = if_match(&headers, current.version, false)?;
    let objects = store::files::delete(&s.db, id, expected)
        .await?
        .ok_or(ApiError::PreconditionFailed)?;
    let detail = serde_json::json!({
        "workspace_id": current.workspace_id, "name": current.name, "versions": current.version,
    });
    store::audit::record(
        &s.db,
        access.org_id,
        Some(caller.user_id),
        "file.delete",
        "file",
        &id.to_string(),
        detail,
    )
    .await?;
    for object in objects {
        discard(&s, object).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

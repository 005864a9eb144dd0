//! Comments on tasks and files, one level of replies, edit history, soft delete,
//! reactions.
//!
//! - **Where.** `/tasks/{id}/comments` and `/files/{id}/comments` behave alike. Reading
//!   the task or file lets one read its comments (for a file: through its workspace or
//!   a share); writing and reacting need `comment.create` there (for a file, held
//!   through its workspace's role: a share alone lets one read, not comment). Mentions
//!   reach people who can read the task's workspace, or the file. A comment on a task
//!   also tells the task's creator and assignees (`task.commented`).
//! - **Threads are one level deep.** A reply names a top-level comment of the same task
//!   or file as `parent_id`; replying to a reply is 400 `parent_id` (reply to its parent
//!   instead). Lists are in creation order with `parent_id`, so a client groups
//!   replies under their parent; `?thread=<comment id>` lists one thread's replies.
//! - **Edits** are the author's alone (403 for anyone else), need `If-Match`
//!   (428 without, 412 when stale, as for tasks) and keep the earlier text, listed oldest
//!   first at `/comments/{id}/edits`.
//! - **Deleting** (the author, or `comment.moderate`) is soft: the row stays as a
//!   tombstone (`deleted: true`, empty body, no reactions, history erased) so replies
//!   keep their thread. Deleting a deleted comment is 204 again. Deleted comments
//!   cannot be edited or reacted to (409).
//! - **Reactions**: one per user per emoji per comment, guaranteed by a UNIQUE
//!   constraint (201 when added, 200 when it was already there; concurrent duplicates
//!   cannot both land).
//!
//! Comments live on a `resource_kind` + `resource_id` pair (`task` or `file`), one table
//! for both.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::common::{Api, Paged, etag, if_match, op, page, parse_id};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::auth::Caller;
use crate::authz::{self, Resource};
use crate::domain::ValidationError;
use crate::error::ApiError;
use crate::notify::{self, Origin, Subject};
use crate::outbox::kind;
use crate::store::comments::{Comment, CommentEdit, NewComment as Row};
use crate::store::{self, StoreError};

pub(super) fn routes() -> Api {
    Api::new()
        .route(
            "/tasks/{id}/comments",
            get(list_on_task).post(create_on_task),
            vec![
                op(
                    Method::GET,
                    "List a task's comments and replies, oldest first",
                )
                .query(&["thread", "limit", "cursor"])
                .page("Comment"),
                op(
                    Method::POST,
                    "Comment on a task, or reply to a top-level comment",
                )
                .req("NewComment")
                .res(201, "Comment"),
            ],
        )
        .route(
            "/files/{id}/comments",
            get(list_on_file).post(create_on_file),
            vec![
                op(
                    Method::GET,
                    "List a file's comments and replies, oldest first",
                )
                .query(&["thread", "limit", "cursor"])
                .page("Comment"),
                op(
                    Method::POST,
                    "Comment on a file, or reply to a top-level comment",
                )
                .req("NewComment")
                .res(201, "Comment"),
            ],
        )
        .route(
            "/comments/{id}",
            get(fetch).patch(edit).delete(remove),
            vec![
                op(Method::GET, "Fetch a comment; ETag in the response").res(200, "Comment"),
                op(Method::PATCH, "Edit your comment; If-Match required")
                    .req("CommentPatch")
                    .if_match(true)
                    .res(200, "Comment"),
                op(
                    Method::DELETE,
                    "Soft-delete a comment (author or comment.moderate)",
                )
                .if_match(false)
                .empty(204),
            ],
        )
        .route(
            "/comments/{id}/edits",
            get(history),
            vec![op(Method::GET, "A comment's earlier texts, oldest first").list("CommentEdit")],
        )
        .route(
            "/comments/{id}/reactions",
            post(react),
            vec![
                op(
                    Method::POST,
                    "React with an emoji (201 added, 200 already there)",
                )
                .req("NewReaction")
                .res(201, "Comment"),
            ],
        )
        .route(
            "/comments/{id}/reactions/{emoji}",
            delete(unreact),
            vec![op(Method::DELETE, "Remove your reaction").empty(204)],
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewComment {
    /// 1..=10000 characters; `@mentions` notify.
    body: String,
    /// A top-level comment of the same task or file, to reply to it.
    parent_id: Option<Uuid>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommentPatch {
    body: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewReaction {
    /// 1..=16 characters, no spaces (an emoji or a `:shortcode:`).
    emoji: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    thread: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

fn body(text: &str) -> Result<String, ValidationError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > 10_000 {
        return Err(ValidationError::new("body", "must be 1..=10000 characters"));
    }
    Ok(text.to_owned())
}

fn emoji(text: &str) -> Result<&str, ValidationError> {
    let ok = !text.is_empty()
        && text.chars().count() <= 16
        && !text.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(text)
    } else {
        Err(ValidationError::new(
            "emoji",
            "must be 1..=16 characters without spaces",
        ))
    }
}

async fn load(s: &AppState, id: Uuid) -> Result<Comment, ApiError> {
    store::comments::get(&s.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("comment"))
}

/// `id` of the path as the subject `kind` names, with the [`Resource`] to authorize on.
fn subject(kind: &'static str, id: &str) -> Result<(Subject, Resource), ApiError> {
    let id = parse_id(id, kind)?;
    Ok(match kind {
        "file" => (Subject::File(id), Resource::File(id)),
        _ => (Subject::Task(id), Resource::Task(id)),
    })
}

async fn list_on_task(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Paged<Comment>>, ApiError> {
    list(&s, &caller, subject("task", &id)?, q).await
}

async fn list_on_file(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Paged<Comment>>, ApiError> {
    list(&s, &caller, subject("file", &id)?, q).await
}

async fn list(
    s: &AppState,
    caller: &Caller,
    (on, resource): (Subject, Resource),
    q: ListQuery,
) -> Result<Json<Paged<Comment>>, ApiError> {
    authz::authorize(&s.db, caller, authz::VISIBLE, resource).await?;
    let (limit, after) = page(q.limit, q.cursor.as_deref())?;
    let thread =
        match q.thread.as_deref() {
            None | Some("") => None,
            Some(t) => Some(Uuid::parse_str(t).map_err(|_| {
                ApiError::bad_request("invalid_query", "thread is not a comment id")
            })?),
        };
    let found = store::comments::list(&s.db, on.kind(), on.id(), thread, limit, after).await?;
    Ok(Json(found.into()))
}

async fn create_on_task(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(new): ApiJson<NewComment>,
) -> Result<impl IntoResponse, ApiError> {
    create(&s, &caller, subject("task", &id)?, new).await
}

async fn create_on_file(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(new): ApiJson<NewComment>,
) -> Result<impl IntoResponse, ApiError> {
    create(&s, &caller, subject("file", &id)?, new).await
}

async fn create(
    s: &AppState,
    caller: &Caller,
    (on, resource): (Subject, Resource),
    new: NewComment,
) -> Result<Response, ApiError> {
    let access = authz::authorize(&s.db, caller, "comment.create", resource).await?;
    let text = body(&new.body)?;
    // The workspace, and who follows the subject (a task's creator and assignees).
    let (workspace_id, watchers) = match on {
        Subject::Task(id) => {
            let task = super::tasks::load(s, id).await?;
            let watchers = [task.assignees.as_slice(), &[task.created_by]].concat();
            (task.workspace_id, watchers)
        }
        Subject::File(id) => (super::files::load(s, id).await?.workspace_id, Vec::new()),
    };
    if let Some(parent) = new.parent_id {
        let top_level_here = store::comments::get(&s.db, parent).await?.is_some_and(|p| {
            p.resource_kind == on.kind() && p.resource_id == on.id() && p.parent_id.is_none()
        });
        if !top_level_here {
            let message = format!(
                "must be a top-level comment of the same {} (replies are one level)",
                on.kind()
            );
            return Err(ValidationError::new("parent_id", message).into());
        }
    }
    let id = Uuid::now_v7();
    let origin = Origin {
        org_id: access.org_id,
        workspace_id,
        actor_id: caller.user_id,
        subject: on,
    };
    let mentioned = notify::mentioned(&s.db, caller, &access, &origin, "body", &text, "").await?;
    let watchers: Vec<Uuid> = notify::readers_among(&s.db, &origin, watchers)
        .await?
        .into_iter()
        .filter(|u| !mentioned.contains_key(u))
        .collect();
    let row = Row {
        id,
        workspace_id,
        resource_kind: on.kind(),
        resource_id: on.id(),
        parent_id: new.parent_id,
        author_id: caller.user_id,
        body: &text,
    };
    let mut tx = s.db.pool().begin().await.map_err(StoreError::from)?;
    store::comments::insert(&mut tx, &row).await?;
    notify::record_mentions(&mut tx, &origin, "comment", id, &mentioned).await?;
    if let Subject::Task(task_id) = on {
        let payload = serde_json::json!({ "task_id": task_id, "comment_id": id });
        notify::enqueue(
            &mut tx,
            &origin,
            kind::TASK_COMMENTED,
            &watchers,
            ("comment", id),
            payload,
        )
        .await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    let comment = load(s, id).await?;
    Ok((StatusCode::CREATED, etag(comment.revision), Json(comment)).into_response())
}

async fn fetch(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id, "comment")?;
    authz::authorize(&s.db, &caller, authz::VISIBLE, Resource::Comment(id)).await?;
    let comment = load(&s, id).await?;
    Ok((etag(comment.revision), Json(comment)))
}

async fn edit(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<CommentPatch>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id, "comment")?;
    let access = authz::authorize(&s.db, &caller, authz::VISIBLE, Resource::Comment(id)).await?;
    let current = load(&s, id).await?;
    if current.author_id != caller.user_id {
        return Err(ApiError::Forbidden(
            "only the author edits a comment".to_owned(),
        ));
    }
    if current.deleted {
        return Err(ApiError::Conflict("the comment was deleted".to_owned()));
    }
    let expected = if_match(&headers, current.revision, true)?.unwrap_or(current.revision);
    let text = body(&patch.body)?;
    let origin = Origin {
        org_id: access.org_id,
        workspace_id: current.workspace_id,
        actor_id: caller.user_id,
        subject: Subject::of(&current.resource_kind, current.resource_id),
    };
    let mentioned = notify::mentioned(
        &s.db,
        &caller,
        &access,
        &origin,
        "body",
        &text,
        &current.body,
    )
    .await?;
    let mut tx = s.db.pool().begin().await.map_err(StoreError::from)?;
    if !store::comments::edit(&mut tx, id, &current.body, &text, expected).await? {
        return Err(ApiError::PreconditionFailed);
    }
    notify::record_mentions(&mut tx, &origin, "comment", id, &mentioned).await?;
    tx.commit().await.map_err(StoreError::from)?;
    let comment = load(&s, id).await?;
    Ok((etag(comment.revision), Json(comment)))
}

async fn remove(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "comment")?;
    let access = authz::authorize(&s.db, &caller, authz::VISIBLE, Resource::Comment(id)).await?;
    let current = load(&s, id).await?;
    if current.author_id != caller.user_id && !access.allows("comment.moderate") {
        return Err(ApiError::Forbidden(
            "missing permission comment.moderate".to_owned(),
        ));
    }
    if current.deleted {
        return Ok(StatusCode::NO_CONTENT);
    }
    let expected = if_match(&headers, current.revision, false)?;
    if !store::comments::soft_delete(&s.db, id, expected).await? {
        return Err(ApiError::PreconditionFailed);
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn history(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<CommentEdit>>, ApiError> {
    let id = parse_id(&id, "comment")?;
    authz::authorize(&s.db, &caller, authz::VISIBLE, Resource::Comment(id)).await?;
    Ok(Json(store::comments::edits(&s.db, id).await?))
}

async fn react(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(new): ApiJson<NewReaction>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id, "comment")?;
    authz::authorize(&s.db, &caller, "comment.create", Resource::Comment(id)).await?;
    let emoji = emoji(&new.emoji)?;
    if load(&s, id).await?.deleted {
        return Err(ApiError::Conflict("the comment was deleted".to_owned()));
    }
    let added = store::comments::react(&s.db, id, caller.user_id, emoji).await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(load(&s, id).await?)))
}

async fn unreact(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((id, emoji)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "comment")?;
    authz::authorize(&s.db, &caller, "comment.create", Resource::Comment(id)).await?;
    if store::comments::unreact(&s.db, id, caller.user_id, &emoji).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("reaction"))
    }
}

//! Tasks: created in a workspace, assigned, moved through the workspace's workflow.
//!
//! **Concurrency.** Every task carries a `revision`, served as a strong `ETag`
//! (`"<revision>"`). `PATCH` requires `If-Match`: without it the answer is
//! 428 `precondition_required` (a client that never read the task cannot silently
//! overwrite someone else's change; send `If-Match: *` to mean "whatever is current"),
//! with a stale tag 412 `precondition_failed`. `DELETE` checks `If-Match` when present
//! and is unconditional without it (deleting needs `task.delete`, an admin permission).
//! The write itself is conditional on the revision, so of two concurrent writers with
//! the same tag exactly one wins.
//!
//! **Subtasks** name their parent (a task of the same workspace) at creation; the
//! parent cannot change later, so no cycle can form. A task with subtasks cannot be
//! deleted (409): delete the subtasks first. Deleting a task deletes its comments.
//!
//! **Assignees** must be users of the organization who can read the workspace
//! (400 `assignees` otherwise, the same message whether the user does not exist or
//! cannot read it).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::common::{Api, Paged, etag, if_match, op, page, parse_id};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::auth::Caller;
use crate::authz::{self, Resource};
use crate::domain::{ValidationError, task as rules};
use crate::error::ApiError;
use crate::notify::{self, Origin, Subject};
use crate::outbox::kind;
use crate::store::{self, tasks::Filter, tasks::Task};
use crate::timestamp;

const LIST_QUERY: &[&str] = &[
    "assignee",
    "status",
    "due_before",
    "due_after",
    "parent_id",
    "limit",
    "cursor",
];

pub(super) fn routes() -> Api {
    Api::new()
        .route(
            "/workspaces/{id}/tasks",
            get(list_in_workspace).post(create),
            vec![
                op(
                    Method::GET,
                    "List a workspace's tasks (filters, cursor pagination)",
                )
                .query(LIST_QUERY)
                .page("Task"),
                op(
                    Method::POST,
                    "Create a task (task.create); ETag in the response",
                )
                .req("NewTask")
                .res(201, "Task"),
            ],
        )
        .route(
            "/tasks",
            get(list_visible),
            vec![
                op(
                    Method::GET,
                    "List tasks across every workspace the caller can read",
                )
                .query(LIST_QUERY)
                .page("Task"),
            ],
        )
        .route(
            "/tasks/{id}",
            get(fetch).patch(update).delete(remove),
            vec![
                op(Method::GET, "Fetch a task; ETag in the response").res(200, "Task"),
                op(
                    Method::PATCH,
                    "Update a task (task.update); If-Match required",
                )
                .req("TaskPatch")
                .if_match(true)
                .res(200, "Task"),
                op(
                    Method::DELETE,
                    "Delete a task without subtasks (task.delete)",
                )
                .if_match(false)
                .empty(204),
            ],
        )
}

/// A new task; absent fields take their defaults.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTask {
    title: String,
    #[serde(default)]
    description: String,
    /// Default: the workspace's first status.
    status: Option<String>,
    /// Default `medium`.
    priority: Option<String>,
    /// `YYYY-MM-DD`.
    due_date: Option<String>,
    /// 0..=100, default 0.
    progress: Option<i64>,
    estimate_minutes: Option<i64>,
    /// A task of the same workspace.
    parent_id: Option<Uuid>,
    #[serde(default)]
    assignees: Vec<Uuid>,
}

/// Absent fields stay; `null` clears `due_date` and `estimate_minutes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskPatch {
    title: Option<String>,
    description: Option<String>,
    status: Option<String>,
    priority: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    due_date: Option<Option<String>>,
    progress: Option<i64>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    estimate_minutes: Option<Option<i64>>,
    /// Replaces the assignees.
    assignees: Option<Vec<Uuid>>,
}

fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `?assignee=` (a user id or `me`), `status`, `due_before`, `due_after`, `parent_id`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    assignee: Option<String>,
    status: Option<String>,
    due_before: Option<String>,
    due_after: Option<String>,
    parent_id: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

fn filter(caller: &Caller, q: &ListQuery) -> Result<Filter, ApiError> {
    let invalid = |what: &str| ApiError::bad_request("invalid_query", format!("{what} is invalid"));
    let assignee = match q.assignee.as_deref() {
        None | Some("") => None,
        Some("me") => Some(caller.user_id),
        Some(id) => Some(Uuid::parse_str(id).map_err(|_| invalid("assignee"))?),
    };
    let date = |value: &Option<String>, name: &'static str| {
        value
            .as_deref()
            .map(|v| rules::due_date(name, v).map_err(|_| invalid(name)))
            .transpose()
    };
    Ok(Filter {
        assignee,
        status: q.status.clone().filter(|s| !s.is_empty()),
        due_before: date(&q.due_before, "due_before")?,
        due_after: date(&q.due_after, "due_after")?,
        parent: q
            .parent_id
            .as_deref()
            .map(|p| Uuid::parse_str(p).map_err(|_| invalid("parent_id")))
            .transpose()?,
    })
}

async fn list_in_workspace(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Paged<Task>>, ApiError> {
    let ws = parse_id(&id, "workspace")?;
    authz::authorize(&s.db, &caller, "workspace.read", Resource::Workspace(ws)).await?;
    let (limit, after) = page(q.limit, q.cursor.as_deref())?;
    let found = store::tasks::list(&s.db, &[ws], &filter(&caller, &q)?, limit, after).await?;
    Ok(Json(found.into()))
}

async fn list_visible(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Paged<Task>>, ApiError> {
    let (limit, after) = page(q.limit, q.cursor.as_deref())?;
    let workspaces = authz::visible_workspace_ids(&s.db, &caller, "workspace.read").await?;
    let found = store::tasks::list(&s.db, &workspaces, &filter(&caller, &q)?, limit, after).await?;
    Ok(Json(found.into()))
}

async fn fetch(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id, "task")?;
    authz::authorize(&s.db, &caller, "workspace.read", Resource::Task(id)).await?;
    let task = load(&s, id).await?;
    Ok((etag(task.revision), Json(task)))
}

pub(super) async fn load(s: &AppState, id: Uuid) -> Result<Task, ApiError> {
    store::tasks::get(&s.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("task"))
}

/// The workspace's workflow.
async fn statuses(s: &AppState, ws: Uuid) -> Result<Vec<String>, ApiError> {
    Ok(store::orgtree::workspace(&s.db, ws)
        .await?
        .ok_or_else(|| ApiError::not_found("workspace"))?
        .task_statuses)
}

/// Deduplicated assignees, each a user of the caller's organization who can read `ws`.
async fn assignees(
    s: &AppState,
    caller: &Caller,
    ws: Uuid,
    mut users: Vec<Uuid>,
) -> Result<Vec<Uuid>, ApiError> {
    users.sort();
    users.dedup();
    if users.len() > rules::MAX_ASSIGNEES {
        let message = format!("at most {} assignees", rules::MAX_ASSIGNEES);
        return Err(ValidationError::new("assignees", message).into());
    }
    for user in &users {
        if !authz::can_read_workspace(&s.db, *user, caller.org_id, ws).await? {
            return Err(ValidationError::new(
                "assignees",
                "every assignee must be a user who can read this workspace",
            )
            .into());
        }
    }
    Ok(users)
}

async fn create(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NewTask>,
) -> Result<impl IntoResponse, ApiError> {
    let ws = parse_id(&id, "workspace")?;
    let access = authz::authorize(&s.db, &caller, "task.create", Resource::Workspace(ws)).await?;
    let workflow = statuses(&s, ws).await?;
    if let Some(parent) = body.parent_id
        && store::tasks::workspace_of(&s.db, parent).await? != Some(ws)
    {
        let message = "must be a task of the same workspace";
        return Err(ValidationError::new("parent_id", message).into());
    }
    let now = timestamp::format(timestamp::now());
    let task = Task {
        id: Uuid::now_v7(),
        workspace_id: ws,
        parent_id: body.parent_id,
        title: rules::title(&body.title)?,
        description: rules::description(&body.description)?,
        status: match body.status.as_deref() {
            Some(status) => rules::status(status, &workflow)?,
            None => workflow.first().cloned().unwrap_or_default(),
        },
        priority: rules::priority(body.priority.as_deref().unwrap_or(rules::DEFAULT_PRIORITY))?,
        due_date: body
            .due_date
            .as_deref()
            .map(|d| rules::due_date("due_date", d))
            .transpose()?,
        progress: rules::progress(body.progress.unwrap_or(0))?,
        estimate_minutes: body.estimate_minutes.map(rules::estimate).transpose()?,
        assignees: assignees(&s, &caller, ws, body.assignees).await?,
        created_by: caller.user_id,
        created_at: now.clone(),
        updated_at: now,
        revision: 1,
    };
    let origin = origin(&access, &caller, &task);
    let text = mention_text(&task);
    let mentioned =
        notify::mentioned(&s.db, &caller, &access, &origin, "description", &text, "").await?;
    let assigned = notify::readers_among(&s.db, &origin, task.assignees.clone()).await?;
    let mut tx = s.db.pool().begin().await.map_err(store::StoreError::from)?;
    store::tasks::insert(&mut tx, &task).await?;
    notify::record_mentions(&mut tx, &origin, "task", task.id, &mentioned).await?;
    let payload = serde_json::json!({ "task_id": task.id, "title": task.title });
    notify::enqueue(
        &mut tx,
        &origin,
        kind::TASK_ASSIGNED,
        &assigned,
        ("task", task.id),
        payload,
    )
    .await?;
    tx.commit().await.map_err(store::StoreError::from)?;
    Ok((StatusCode::CREATED, etag(task.revision), Json(task)))
}

fn origin(access: &authz::Access, caller: &Caller, task: &Task) -> Origin {
    Origin {
        org_id: access.org_id,
        workspace_id: task.workspace_id,
        actor_id: caller.user_id,
        subject: Subject::Task(task.id),
    }
}

/// The text of a task whose `@mentions` count.
fn mention_text(task: &Task) -> String {
    format!("{}\n{}", task.title, task.description)
}

/// `current` with `patch` applied and validated (revision and time not yet bumped).
fn patched(current: &Task, patch: TaskPatch, workflow: &[String]) -> Result<Task, ApiError> {
    let mut task = current.clone();
    if let Some(title) = patch.title {
        task.title = rules::title(&title)?;
    }
    if let Some(description) = patch.description {
        task.description = rules::description(&description)?;
    }
    if let Some(status) = patch.status {
        task.status = rules::status(&status, workflow)?;
    }
    if let Some(priority) = patch.priority {
        task.priority = rules::priority(&priority)?;
    }
    if let Some(due) = patch.due_date {
        task.due_date = due
            .as_deref()
            .map(|d| rules::due_date("due_date", d))
            .transpose()?;
    }
    if let Some(progress) = patch.progress {
        task.progress = rules::progress(progress)?;
    }
    if let Some(estimate) = patch.estimate_minutes {
        task.estimate_minutes = estimate.map(rules::estimate).transpose()?;
    }
    Ok(task)
}

async fn update(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TaskPatch>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id, "task")?;
    let access = authz::authorize(&s.db, &caller, "task.update", Resource::Task(id)).await?;
    let current = load(&s, id).await?;
    if_match(&headers, current.revision, true)?;
    let workflow = statuses(&s, current.workspace_id).await?;
    let new_assignees = body.assignees.clone();
    let mut task = patched(&current, body, &workflow)?;
    if let Some(users) = new_assignees {
        task.assignees = assignees(&s, &caller, task.workspace_id, users).await?;
    }
    task.revision = current.revision + 1;
    task.updated_at = timestamp::format(timestamp::now());
    let origin = origin(&access, &caller, &task);
    let mentioned = notify::mentioned(
        &s.db,
        &caller,
        &access,
        &origin,
        "description",
        &mention_text(&task),
        &mention_text(&current),
    )
    .await?;
    let added = task
        .assignees
        .iter()
        .filter(|u| !current.assignees.contains(u));
    let assigned = notify::readers_among(&s.db, &origin, added.copied()).await?;
    let watchers = task.assignees.iter().copied().chain([task.created_by]);
    let watchers = if task.status == current.status {
        Vec::new()
    } else {
        notify::readers_among(&s.db, &origin, watchers).await?
    };
    let mut tx = s.db.pool().begin().await.map_err(store::StoreError::from)?;
    if !store::tasks::update(&mut tx, &task).await? {
        return Err(ApiError::PreconditionFailed);
    }
    notify::record_mentions(&mut tx, &origin, "task", task.id, &mentioned).await?;
    let payload = serde_json::json!({ "task_id": task.id, "title": task.title });
    notify::enqueue(
        &mut tx,
        &origin,
        kind::TASK_ASSIGNED,
        &assigned,
        ("task", id),
        payload,
    )
    .await?;
    let payload = serde_json::json!({
        "task_id": task.id, "title": task.title, "from": current.status, "to": task.status,
    });
    notify::enqueue(
        &mut tx,
        &origin,
        kind::TASK_STATUS_CHANGED,
        &watchers,
        ("task", id),
        payload,
    )
    .await?;
    tx.commit().await.map_err(store::StoreError::from)?;
    Ok((etag(task.revision), Json(task)))
}

async fn remove(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "task")?;
    let access = authz::authorize(&s.db, &caller, "task.delete", Resource::Task(id)).await?;
    let current = load(&s, id).await?;
    let expected = if_match(&headers, current.revision, false)?;
    if store::tasks::has_subtasks(&s.db, id).await? {
        return Err(ApiError::Conflict(
            "the task has subtasks; delete them first".to_owned(),
        ));
    }
    if !store::tasks::delete(&s.db, id, expected).await? {
        return Err(ApiError::PreconditionFailed);
    }
    let detail =
        serde_json::json!({ "workspace_id": current.workspace_id, "title": current.title });
    store::audit::record(
        &s.db,
        access.org_id,
        Some(caller.user_id),
        "task.delete",
        "task",
        &id.to_string(),
        detail,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

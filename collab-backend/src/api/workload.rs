//! `GET /teams/{id}/workload`: open work per person across a team's workspaces.
//!
//! Counts only tasks in the team's workspaces that the caller can read (a guest of one
//! workspace sees that workspace's share). A task is open while its status is not its
//! workspace's last ("done") status, and overdue when open with a due date before today
//! (UTC). Every team member is listed (zeros included), plus anyone else assigned open
//! work there; sorted by username.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::common::{Api, op, parse_id};
use super::extract::ApiPath;
use crate::auth::Caller;
use crate::authz::{self, Resource};
use crate::domain::task::is_done;
use crate::error::ApiError;
use crate::store;

pub(super) fn routes() -> Api {
    Api::new().route(
        "/teams/{id}/workload",
        get(workload),
        vec![
            op(
                Method::GET,
                "Open tasks, estimate sum and overdue count per person across a team",
            )
            .list("Workload"),
        ],
    )
}

/// One person's open work.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct Workload {
    user_id: Uuid,
    username: String,
    /// Open tasks assigned to them.
    open_tasks: i64,
    /// Sum of the open tasks' estimates (tasks without one count 0).
    estimate_minutes: i64,
    /// Open tasks due before today (UTC).
    overdue: i64,
}

async fn workload(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<Workload>>, ApiError> {
    let team = parse_id(&id, "team")?;
    authz::authorize(&s.db, &caller, authz::VISIBLE, Resource::Team(team)).await?;
    let readable: BTreeSet<Uuid> = authz::visible_workspace_ids(&s.db, &caller, "workspace.read")
        .await?
        .into_iter()
        .collect();
    let mut per_user: BTreeMap<Uuid, Workload> = BTreeMap::new();
    for member in store::grants::on_scope(&s.db, "team", team).await? {
        per_user.entry(member.user_id).or_default();
    }
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    for ws in store::orgtree::workspace_ids(&s.db, None, Some(team)).await? {
        if !readable.contains(&ws) {
            continue;
        }
        let Some(workspace) = store::orgtree::workspace(&s.db, ws).await? else {
            continue;
        };
        for a in store::tasks::assignments(&s.db, ws).await? {
            if is_done(&a.status, &workspace.task_statuses) {
                continue;
            }
            let entry = per_user.entry(a.user_id).or_default();
            entry.open_tasks += 1;
            entry.estimate_minutes += a.estimate_minutes.unwrap_or(0);
            if a.due_date.is_some_and(|due| due < today) {
                entry.overdue += 1;
            }
        }
    }
    let mut rows = Vec::with_capacity(per_user.len());
    for (user_id, mut entry) in per_user {
        let Some(user) = store::users::get(&s.db, user_id).await? else {
            continue;
        };
        entry.user_id = user_id;
        entry.username = user.username;
        rows.push(entry);
    }
    rows.sort_by(|a, b| a.username.cmp(&b.username));
    Ok(Json(rows))
}

//! Authorization: the one place that answers "may user U do P on resource R"
//! ([`authorize`]) and "which workspaces may U see" ([`visible_workspace_ids`]).
//! Handlers never check grants or filter rows by hand.
//!
//! ## The model
//! - A **role** is a set of [`permission`]s; a role may extend another and holds every
//!   permission of the roles below it. Built-in: `guest` ⊂ `member` ⊂ `admin` ⊂ `owner`.
//! - A **grant** gives a user a role on a scope: the organization, a department, a team or
//!   a workspace. Team membership *is* a grant on the team.
//! - **Inheritance** runs down the tree: a grant on the organization applies everywhere
//!   in it; on a department, to its sub-departments, their teams and the teams'
//!   workspaces; on a team, to its workspaces; on a workspace, to everything in it (tasks,
//!   comments).
//! - **Grants only add.** The permissions on a resource are the union of every grant on
//!   it or above it. A narrower direct grant can never lower an inherited one: giving an
//!   org admin `guest` on one workspace leaves them admin there. To restrict someone,
//!   remove (or narrow) the broader grant and grant the narrower scopes instead. This
//!   keeps a check a pure union (no ordering of conflicting grants) and makes "why can U
//!   do P" answerable by listing grants.
//! - **Visibility.** A workspace and everything in it is visible only with
//!   `workspace.read` there. Invisible resources are reported as 404, exactly like ones
//!   that do not exist, so ids from another workspace leak nothing; a visible resource
//!   the caller may not change answers 403. Departments, teams and roles are visible to
//!   every user of their organization, never to another organization's users (404).

pub mod permission;
mod shares;

pub use shares::{FILE_READ, share_permissions};

use std::collections::BTreeSet;

use uuid::Uuid;

use crate::Db;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::store::{self, StoreError};

/// Something permissions can be asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// An organization.
    Org(Uuid),
    /// A department.
    Department(Uuid),
    /// A team.
    Team(Uuid),
    /// A workspace.
    Workspace(Uuid),
    /// A task: the grants of its workspace apply.
    Task(Uuid),
    /// A comment: what applies to its task (its workspace's grants) or its file (the
    /// workspace's grants and the file's shares; see [`visible`]).
    Comment(Uuid),
    /// A file: the grants of its workspace apply, plus its shares (see [`share_permissions`]).
    File(Uuid),
}

impl Resource {
    fn noun(self) -> &'static str {
        match self {
            Resource::Org(_) => "organization",
            Resource::Department(_) => "department",
            Resource::Team(_) => "team",
            Resource::Workspace(_) => "workspace",
            Resource::Task(_) => "task",
            Resource::Comment(_) => "comment",
            Resource::File(_) => "file",
        }
    }
}

/// A resource the caller can see, where it lives, and what the caller may do there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The organization it belongs to.
    pub org_id: Uuid,
    /// Its workspace (none for organizations, departments and teams). Tasks, comments
    /// and files resolve to their workspace here, inheriting its grants.
    pub workspace_id: Option<Uuid>,
    /// Every permission the caller holds on it.
    pub permissions: BTreeSet<String>,
}

impl Access {
    /// Whether the caller holds `permission` here.
    pub fn allows(&self, permission: &str) -> bool {
        self.permissions.contains(permission)
    }
}

/// May `caller` do `permission` on `resource`? `Ok` with the [`Access`] when yes;
/// 404 when the caller cannot see the resource (or it does not exist); 403 when they can
/// see it but lack `permission`. Pass `"workspace.read"` (or any permission the caller
/// surely has on visible org-level resources, see [`visible`]) to only ask for
/// visibility.
pub async fn authorize(
    db: &Db,
    caller: &Caller,
    permission: &str,
    resource: Resource,
) -> Result<Access, ApiError> {
    let access = visible(db, caller, resource)
        .await?
        .ok_or_else(|| ApiError::not_found(resource.noun()))?;
    if permission == VISIBLE || access.allows(permission) {
        Ok(access)
    } else {
        Err(ApiError::Forbidden(format!(
            "missing permission {permission}"
        )))
    }
}

/// The pseudo-permission "may see it", for [`authorize`].
pub const VISIBLE: &str = "visible";

/// The caller's [`Access`] to `resource`, or `None` when it is invisible to them.
pub async fn visible(
    db: &Db,
    caller: &Caller,
    resource: Resource,
) -> Result<Option<Access>, StoreError> {
    // A comment on a file is seen by whoever sees the file, holding what they hold there.
    if let Resource::Comment(id) = resource
        && let Some((kind, file)) = store::comments::resource_of(db, id).await?
        && kind == "file"
    {
        return Box::pin(visible(db, caller, Resource::File(file))).await;
    }
    let Some((org_id, workspace_id, chain)) = locate(db, resource).await? else {
        return Ok(None);
    };
    if org_id != caller.org_id {
        return Ok(None);
    }
    let mut permissions = permissions_on(db, caller.user_id, &chain).await?;
    if let Resource::File(file) = resource {
        permissions.extend(share_permissions(db, caller, file, &permissions).await?);
        if !permissions.contains(FILE_READ) {
            return Ok(None);
        }
    } else if workspace_id.is_some() && !permissions.contains("workspace.read") {
        return Ok(None);
    }
    Ok(Some(Access {
        org_id,
        workspace_id,
        permissions,
    }))
}

/// The ids of every workspace where `caller` holds `permission` (with `workspace.read`),
/// for list endpoints.
pub async fn visible_workspace_ids(
    db: &Db,
    caller: &Caller,
    permission: &str,
) -> Result<Vec<Uuid>, StoreError> {
    let mut ids = BTreeSet::new();
    for grant in store::grants::of_user(db, caller.user_id).await? {
        let held = store::roles::effective_permissions(db, &grant.role).await?;
        if !held.contains("workspace.read") || !held.contains(permission) {
            continue;
        }
        let scope = grant.scope_id;
        let under: Vec<Uuid> = match grant.scope_kind.as_str() {
            "org" => store::orgtree::workspace_ids(db, Some(scope), None).await?,
            "team" => store::orgtree::workspace_ids(db, None, Some(scope)).await?,
            "workspace" => vec![scope],
            "department" => {
                let departments = store::orgtree::department_subtree(db, scope).await?;
                let mut found = Vec::new();
                for team in store::orgtree::teams_in(db, &departments).await? {
                    found.extend(store::orgtree::workspace_ids(db, None, Some(team)).await?);
                }
                found
            }
            _ => Vec::new(),
        };
        ids.extend(under);
    }
    Ok(ids.into_iter().collect())
}

/// Whether user `user_id` of `org_id` can read workspace `workspace_id` (the check
/// behind assignees and mention recipients: people are only pointed at what they can
/// see).
pub async fn can_read_workspace(
    db: &Db,
    user_id: Uuid,
    org_id: Uuid,
    workspace_id: Uuid,
) -> Result<bool, StoreError> {
    can_read(db, user_id, org_id, Resource::Workspace(workspace_id)).await
}

/// Whether user `user_id` of `org_id` can see `resource` (for a file: read it, through
/// its workspace or a share).
pub async fn can_read(
    db: &Db,
    user_id: Uuid,
    org_id: Uuid,
    resource: Resource,
) -> Result<bool, StoreError> {
    let reader = Caller {
        user_id,
        org_id,
        username: String::new(),
        token_id: None,
    };
    Ok(visible(db, &reader, resource).await?.is_some())
}

/// Every user holding `workspace.read` on workspace `workspace_id` (through any grant
/// on it or above it), in id order: the audience of `@all`.
pub async fn workspace_readers(db: &Db, workspace_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
    let Some((_, _, chain)) = locate(db, Resource::Workspace(workspace_id)).await? else {
        return Ok(Vec::new());
    };
    let mut readers = BTreeSet::new();
    let mut role_reads = std::collections::BTreeMap::new();
    for (kind, id) in chain {
        for grant in store::grants::on_scope(db, kind, id).await? {
            if role_reads_workspace(db, &mut role_reads, &grant.role).await? {
                readers.insert(grant.user_id);
            }
        }
    }
    Ok(readers.into_iter().collect())
}

/// Those of `users` who can read workspace `workspace_id` of `org_id`: the batch form of
/// [`can_read_workspace`] (one walk up the workspace's tree, one read of the users'
/// grants, one of each role's permissions), for fan-out to many recipients.
pub async fn workspace_readers_among(
    db: &Db,
    org_id: Uuid,
    workspace_id: Uuid,
    users: &[Uuid],
) -> Result<BTreeSet<Uuid>, StoreError> {
    let mut readers = BTreeSet::new();
    if users.is_empty() {
        return Ok(readers);
    }
    let Some((found_org, _, chain)) = locate(db, Resource::Workspace(workspace_id)).await? else {
        return Ok(readers);
    };
    if found_org != org_id {
        return Ok(readers);
    }
    let mut role_reads = std::collections::BTreeMap::new();
    for grant in store::grants::of_users(db, users).await? {
        let applies = chain
            .iter()
            .any(|(kind, id)| grant.scope_kind == *kind && grant.scope_id == *id);
        if !applies || readers.contains(&grant.user_id) {
            continue;
        }
        if role_reads_workspace(db, &mut role_reads, &grant.role).await? {
            readers.insert(grant.user_id);
        }
    }
    Ok(readers)
}

/// Whether `role` holds `workspace.read`, read once per role and kept in `known`.
async fn role_reads_workspace(
    db: &Db,
    known: &mut std::collections::BTreeMap<String, bool>,
    role: &str,
) -> Result<bool, StoreError> {
    if let Some(reads) = known.get(role) {
        return Ok(*reads);
    }
    let reads = store::roles::effective_permissions(db, role)
        .await?
        .contains("workspace.read");
    known.insert(role.to_owned(), reads);
    Ok(reads)
}

/// A scope a grant can name: `(kind, id)`.
type Scope = (&'static str, Uuid);

/// The resource's organization, workspace, and the scopes whose grants apply to it
/// (itself first, the organization last). `None` when it does not exist.
async fn locate(
    db: &Db,
    resource: Resource,
) -> Result<Option<(Uuid, Option<Uuid>, Vec<Scope>)>, StoreError> {
    let workspace_id = match resource {
        Resource::Org(id) => {
            let found = store::organizations::get(db, id).await?;
            return Ok(found.map(|org| (org.id, None, vec![("org", org.id)])));
        }
        Resource::Department(id) => {
            let Some(department) = store::orgtree::department(db, id).await? else {
                return Ok(None);
            };
            let chain = department_chain(db, department.org_id, Some(id)).await?;
            return Ok(Some((department.org_id, None, chain)));
        }
        Resource::Team(id) => {
            let Some(team) = store::orgtree::team(db, id).await? else {
                return Ok(None);
            };
            let mut chain = vec![("team", id)];
            chain.extend(department_chain(db, team.org_id, team.department_id).await?);
            return Ok(Some((team.org_id, None, chain)));
        }
        Resource::Workspace(id) => id,
        Resource::Task(id) => match store::tasks::workspace_of(db, id).await? {
            Some(workspace) => workspace,
            None => return Ok(None),
        },
        Resource::Comment(id) => match store::comments::workspace_of(db, id).await? {
            Some(workspace) => workspace,
            None => return Ok(None),
        },
        Resource::File(id) => match store::files::workspace_of(db, id).await? {
            Some(workspace) => workspace,
            None => return Ok(None),
        },
    };
    let Some(workspace) = store::orgtree::workspace(db, workspace_id).await? else {
        return Ok(None);
    };
    let Some((org_id, _, team_chain)) =
        Box::pin(locate(db, Resource::Team(workspace.team_id))).await?
    else {
        return Ok(None);
    };
    let mut chain = vec![("workspace", workspace_id)];
    chain.extend(team_chain);
    Ok(Some((org_id, Some(workspace_id), chain)))
}

/// Department `start` and its ancestors, then the organization.
async fn department_chain(
    db: &Db,
    org_id: Uuid,
    start: Option<Uuid>,
) -> Result<Vec<Scope>, StoreError> {
    let mut chain = Vec::new();
    if let Some(start) = start {
        for id in store::orgtree::department_ancestry(db, start).await? {
            chain.push(("department", id));
        }
    }
    chain.push(("org", org_id));
    Ok(chain)
}

/// The union of the permissions of every grant `user_id` holds on any scope of `chain`.
async fn permissions_on(
    db: &Db,
    user_id: Uuid,
    chain: &[Scope],
) -> Result<BTreeSet<String>, StoreError> {
    let mut permissions = BTreeSet::new();
    for grant in store::grants::of_user(db, user_id).await? {
        let applies = chain
            .iter()
            .any(|(kind, id)| grant.scope_kind == *kind && grant.scope_id == *id);
        if applies {
            permissions.extend(store::roles::effective_permissions(db, &grant.role).await?);
        }
    }
    Ok(permissions)
}

//! Who hears about a change: `@mention` resolution and the events a task or comment
//! write queues in the [`outbox`](crate::outbox).
//!
//! **Mentions.** Handles come from [`domain::mention::parse`]. A handle names a user
//! (by username) of the author's organization, else a team (by slug, meaning its
//! members). Only people who can read what the text is on are notified (the workspace
//! of a task; the file, shares included, for a comment on a file); a handle naming
//! nobody, someone in another organization, or someone who cannot read the workspace
//! is dropped without a trace: the write succeeds and its response says nothing about
//! who was notified. The author is never notified.
//!
//! **`@all`** means every reader of the workspace. It needs the `mention.all`
//! permission there (admins and owners have it; 403 otherwise) and reaches at most
//! [`ALL_MENTION_LIMIT`] people (400 `validation_failed` on the text field otherwise:
//! mention a team instead). Both are refusals, not silent drops, because the writer
//! asked for a broadcast and must learn it did not happen; neither reveals anything to
//! someone who could not already see the workspace's members.
//!
//! **Once per person per source.** The `mentions` table remembers who was notified of
//! each task or comment, so an edit notifies only the people it adds (removing and
//! re-adding a mention does not notify again).
//!
//! Resolution reads through the pool *before* the write's transaction; recording and
//! queueing happen *inside* it ([`record_mentions`], [`enqueue`]).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use uuid::Uuid;

use crate::Db;
use crate::auth::Caller;
use crate::authz::{self, Access, Resource};
use crate::domain::{ValidationError, mention};
use crate::error::ApiError;
use crate::outbox::{NewEvent, kind};
use crate::store::{self, StoreError};

/// Largest audience `@all` may reach.
pub const ALL_MENTION_LIMIT: usize = 50;

/// Mentioned readers and how each was reached (`user`, `team` or `all`).
pub(crate) type Mentioned = BTreeMap<Uuid, &'static str>;

/// Where events of one write come from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    pub org_id: Uuid,
    pub workspace_id: Uuid,
    pub actor_id: Uuid,
    pub subject: Subject,
}

/// What a write is about, and so who may hear of it: a task (the readers of its
/// workspace) or a file (the readers of the file, its share holders included). Event
/// payloads name it as `task_id` or `file_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject {
    Task(Uuid),
    File(Uuid),
}

impl Subject {
    /// `task` or `file` (a comment's `resource_kind`).
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Subject::Task(_) => "task",
            Subject::File(_) => "file",
        }
    }

    /// The task's or file's id.
    pub(crate) fn id(self) -> Uuid {
        match self {
            Subject::Task(id) | Subject::File(id) => id,
        }
    }

    /// The payload key naming it: `task_id` or `file_id`.
    pub(crate) fn payload_key(self) -> &'static str {
        match self {
            Subject::Task(_) => "task_id",
            Subject::File(_) => "file_id",
        }
    }

    /// The subject of a comment's `resource_kind` and `resource_id`.
    pub(crate) fn of(kind: &str, id: Uuid) -> Subject {
        if kind == "file" {
            Subject::File(id)
        } else {
            Subject::Task(id)
        }
    }

    /// Whether user `user_id` of `org_id` may read it (`workspace_id` being its
    /// workspace).
    pub(crate) async fn readable_by(
        self,
        db: &Db,
        user_id: Uuid,
        org_id: Uuid,
        workspace_id: Uuid,
    ) -> Result<bool, StoreError> {
        match self {
            Subject::Task(_) => authz::can_read_workspace(db, user_id, org_id, workspace_id).await,
            Subject::File(id) => authz::can_read(db, user_id, org_id, Resource::File(id)).await,
        }
    }

    /// Those of `users` who may read it: [`Self::readable_by`] for many users at once
    /// (a task's in a few queries whatever their number).
    pub(crate) async fn readers_of(
        self,
        db: &Db,
        users: &[Uuid],
        org_id: Uuid,
        workspace_id: Uuid,
    ) -> Result<BTreeSet<Uuid>, StoreError> {
        match self {
            Subject::Task(_) => {
                authz::workspace_readers_among(db, org_id, workspace_id, users).await
            }
            Subject::File(_) => {
                let mut readers = BTreeSet::new();
                for &user in users {
                    if self.readable_by(db, user, org_id, workspace_id).await? {
                        readers.insert(user);
                    }
                }
                Ok(readers)
            }
        }
    }
}

/// The readers of `origin`'s subject that `text` mentions with handles `previous` (the
/// text before an edit; empty for a new one) did not, except the author. `field` names
/// the text in a 400 about `@all`.
pub(crate) async fn mentioned(
    db: &Db,
    author: &Caller,
    access: &Access,
    origin: &Origin,
    field: &'static str,
    text: &str,
    previous: &str,
) -> Result<Mentioned, ApiError> {
    let workspace_id = origin.workspace_id;
    let readable = |user: Uuid| {
        origin
            .subject
            .readable_by(db, user, author.org_id, workspace_id)
    };
    let before = mention::parse(previous);
    let mut found = Mentioned::new();
    for handle in mention::parse(text) {
        if before.contains(&handle) {
            continue;
        }
        if handle == "all" {
            for reader in everyone(db, access, workspace_id, field).await? {
                found.entry(reader).or_insert("all");
            }
            continue;
        }
        if let Some(user) = store::users::by_username(db, &handle).await? {
            if user.org_id == author.org_id && readable(user.id).await? {
                found.entry(user.id).or_insert("user");
            }
            continue;
        }
        for team in store::orgtree::teams(db, author.org_id, Some(&handle)).await? {
            let members: Vec<Uuid> = store::grants::on_scope(db, "team", team.id)
                .await?
                .into_iter()
                .map(|grant| grant.user_id)
                .collect();
            let readers = origin
                .subject
                .readers_of(db, &members, author.org_id, workspace_id)
                .await?;
            for member in readers {
                found.entry(member).or_insert("team");
            }
        }
    }
    found.remove(&author.user_id);
    Ok(found)
}

async fn everyone(
    db: &Db,
    access: &Access,
    workspace_id: Uuid,
    field: &'static str,
) -> Result<Vec<Uuid>, ApiError> {
    if !access.allows("mention.all") {
        return Err(ApiError::Forbidden(
            "@all needs the mention.all permission".to_owned(),
        ));
    }
    let readers = authz::workspace_readers(db, workspace_id).await?;
    if readers.len() > ALL_MENTION_LIMIT {
        return Err(ValidationError::new(
            field,
            format!(
                "@all would notify more than {ALL_MENTION_LIMIT} people; mention a team instead"
            ),
        )
        .into());
    }
    Ok(readers)
}

/// Those of `candidates` (deduplicated, in id order) who can read the subject, except
/// the actor.
pub(crate) async fn readers_among(
    db: &Db,
    origin: &Origin,
    candidates: impl IntoIterator<Item = Uuid>,
) -> Result<Vec<Uuid>, StoreError> {
    let unique: BTreeSet<Uuid> = candidates
        .into_iter()
        .filter(|&user| user != origin.actor_id)
        .collect();
    let unique: Vec<Uuid> = unique.into_iter().collect();
    let readers = origin
        .subject
        .readers_of(db, &unique, origin.org_id, origin.workspace_id)
        .await?;
    Ok(unique
        .into_iter()
        .filter(|user| readers.contains(user))
        .collect())
}

/// Remembers the mentions of `source` (`task` or `comment`) and queues a `mention`
/// event for each person not notified of this source before. Returns who was.
pub(crate) async fn record_mentions(
    tx: &mut sqlx::AnyConnection,
    origin: &Origin,
    source_kind: &'static str,
    source_id: Uuid,
    mentioned: &Mentioned,
) -> Result<Vec<Uuid>, StoreError> {
    let users: Vec<Uuid> = mentioned.keys().copied().collect();
    let new = store::events::record_mentions(tx, source_kind, source_id, &users).await?;
    let notified: Vec<Uuid> = users.into_iter().filter(|u| new.contains(u)).collect();
    let events: Vec<NewEvent> = notified
        .iter()
        .map(|&user_id| {
            let payload = json!({
                origin.subject.payload_key(): origin.subject.id(),
                "source_kind": source_kind,
                "via": mentioned[&user_id],
            });
            new_event(
                origin,
                kind::MENTION,
                user_id,
                (source_kind, source_id),
                payload,
            )
        })
        .collect();
    store::events::enqueue(tx, &events).await?;
    Ok(notified)
}

/// Queues one `kind` event per recipient about `resource` (`(type, id)`).
pub(crate) async fn enqueue(
    tx: &mut sqlx::AnyConnection,
    origin: &Origin,
    kind: &'static str,
    recipients: &[Uuid],
    resource: (&'static str, Uuid),
    payload: serde_json::Value,
) -> Result<(), StoreError> {
    let events: Vec<NewEvent> = recipients
        .iter()
        .map(|&recipient| new_event(origin, kind, recipient, resource, payload.clone()))
        .collect();
    store::events::enqueue(tx, &events).await
}

fn new_event(
    origin: &Origin,
    kind: &'static str,
    recipient_id: Uuid,
    resource: (&'static str, Uuid),
    payload: serde_json::Value,
) -> NewEvent {
    NewEvent {
        org_id: origin.org_id,
        workspace_id: origin.workspace_id,
        kind,
        recipient_id,
        actor_id: Some(origin.actor_id),
        resource_type: resource.0,
        resource_id: resource.1,
        payload,
    }
}

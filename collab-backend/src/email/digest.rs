//! Digest windows, and what a notification says in an email.
//!
//! Windows are aligned on multiples of their length since the Unix epoch (UTC): an
//! hourly digest closes on the hour, a daily one at midnight UTC. A notification joins
//! the window it was dispatched in; when the window closes, the worker merges its items
//! into one email.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::EmailOptions;
use super::templates::{self, Item};
use crate::Db;
use crate::outbox::Event;
use crate::store::email::{DueDigest, NewEmail};
use crate::store::{self, StoreError};
use crate::timestamp;

/// Digest windows handled per pass.
const BATCH: u32 = 100;
/// Longest excerpt of a comment or task text, in characters.
const EXCERPT: usize = 200;

/// The end of the window of length `window` that contains now.
pub(super) fn window_end(window: Duration) -> String {
    let length = i64::try_from(window.as_micros()).unwrap_or(i64::MAX).max(1);
    let now = timestamp::now().timestamp_micros();
    let end = (now / length + 1).saturating_mul(length);
    let at = DateTime::<Utc>::from_timestamp_micros(end).unwrap_or_else(timestamp::now);
    timestamp::format(at)
}

fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(EXCERPT).collect();
    if text.chars().count() > EXCERPT {
        out.push('…');
    }
    out
}

/// What notification-producing `event` says: its actor's name, its task's title, an
/// excerpt of the mentioning text, and the absolute link. Read as of now, so a later
/// edit or deletion is honoured.
pub(super) async fn describe(
    db: &Db,
    options: &EmailOptions,
    event: &Event,
) -> Result<Item, StoreError> {
    let actor = match event.actor_id {
        Some(id) => store::users::get(db, id).await?.map(|u| {
            if u.display_name.is_empty() {
                u.username
            } else {
                u.display_name
            }
        }),
        None => None,
    };
    let field = |name: &str| {
        event.payload[name]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let task_id = Uuid::parse_str(&field("task_id")).ok();
    let task = match task_id {
        Some(id) => store::tasks::get(db, id).await?,
        None => None,
    };
    let file = match Uuid::parse_str(&field("file_id")).ok() {
        Some(id) => store::files::get(db, id).await?,
        None => None,
    };
    let mut text = String::new();
    if event.resource_type == "comment" {
        if let Some(comment) = store::comments::get(db, event.resource_id).await?
            && !comment.deleted
        {
            text = comment.body;
        }
    } else if event.kind == crate::outbox::kind::MENTION
        && let Some(task) = &task
    {
        text.clone_from(&task.description);
    }
    Ok(Item {
        kind: event.kind.clone(),
        actor: actor.unwrap_or_else(|| "AI Stack".to_owned()),
        // A mention in a comment on a file names the file where a task's title goes.
        task: task
            .map(|t| t.title)
            .or_else(|| file.as_ref().map(|f| f.name.clone()))
            .unwrap_or_else(|| field("title")),
        excerpt: excerpt(&text),
        from: field("from"),
        to: field("to"),
        file: file.map(|f| f.name).unwrap_or_else(|| field("name")),
        due: field("due_at"),
        link: format!(
            "{}{}",
            options.public_url,
            store::notifications::link(&event.resource_type, event.resource_id)
        ),
    })
}

/// Queues one email per closed digest window. Idempotent: the email's key is the
/// window, so two nodes (or a pass retried after a crash) queue it once.
pub(super) async fn queue_due(db: &Db, options: &EmailOptions) -> Result<(), StoreError> {
    let now = timestamp::format(timestamp::now());
    for digest in store::email::due_digests(db, &now, BATCH).await? {
        let email = compose(db, options, &digest).await?;
        let mut tx = db.pool().begin().await?;
        if let Some(email) = &email {
            store::email::enqueue(&mut tx, email).await?;
        }
        store::email::mark_digest_queued(&mut tx, &digest).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// The digest email of `digest`; `None` when nothing is left to say (the user removed
/// the address, turned email off or deleted every notification since).
async fn compose(
    db: &Db,
    options: &EmailOptions,
    digest: &DueDigest,
) -> Result<Option<NewEmail>, StoreError> {
    let user = digest.user_id;
    let settings = store::preferences::settings(db, user).await?;
    let Some(address) = settings.email.clone() else {
        return Ok(None);
    };
    if settings.email_mode == "off" {
        return Ok(None);
    }
    let mut items = Vec::new();
    for id in &digest.notification_ids {
        let Some(n) = store::notifications::get(db, user, *id).await? else {
            continue;
        };
        let event = Event {
            id: n.id,
            org_id: Uuid::nil(),
            workspace_id: n.workspace_id,
            kind: n.kind,
            recipient_id: user,
            actor_id: n.actor_id,
            resource_type: n.resource_type,
            resource_id: n.resource_id,
            payload: n.payload,
            created_at: n.created_at,
            attempts: 0,
            delivered_at: None,
        };
        items.push(describe(db, options, &event).await?);
    }
    if items.is_empty() {
        return Ok(None);
    }
    let url = super::unsubscribe_url(options, user, super::unsubscribe::DIGEST);
    match templates::render_digest(&settings.locale, &digest.mode, &items, &url) {
        Ok(rendered) => Ok(Some(NewEmail {
            idempotency_key: format!("digest:{user}:{}:{}", digest.mode, digest.window_end),
            user_id: user,
            category: super::unsubscribe::DIGEST.to_owned(),
            recipient: address,
            subject: rendered.subject,
            text_body: rendered.text,
            html_body: rendered.html,
            unsubscribe_url: url,
        })),
        Err(e) => {
            tracing::warn!(error = %e, "cannot render a digest; none sent");
            Ok(None)
        }
    }
}

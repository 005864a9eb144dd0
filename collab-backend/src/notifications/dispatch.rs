//! The dispatcher: pending `events` become `notifications` rows.
//!
//! Each event is handled in its own transaction that creates the notification (unless
//! the recipient turned the kind off in-app, muted the workspace, or can no longer read
//! it) and marks the event delivered. `notifications.event_id` is UNIQUE and the insert
//! is `ON CONFLICT DO NOTHING`, so an event handled twice — a pass retried after a crash
//! between commit and anything else, two nodes sweeping the same database — still makes
//! one notification, and only the pass that made it signals the sessions. The email it
//! makes (an outbox row, or a digest item; see [`crate::email`]) is written in the same
//! transaction, only when the notification is.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::hub::Hub;
use crate::Db;
use crate::authz;
use crate::email::{self, Mailer};
use crate::outbox::Event;
use crate::store::{self, StoreError};
use crate::timestamp;

/// Events read per query.
const BATCH: u32 = 100;

/// Runs passes until the task is aborted: at start, whenever `hub` is woken (after a
/// write) and every `sweep` (events written by another node, or a failed pass).
pub(crate) async fn run(db: Db, hub: Hub, sweep: Duration, mailer: Option<Arc<Mailer>>) {
    loop {
        if let Err(e) = pass(&db, Some(&hub), mailer.as_deref()).await {
            tracing::warn!(error = %e, "notification dispatch pass failed; will retry");
        }
        tokio::select! {
            () = hub.woken() => {}
            () = tokio::time::sleep(sweep) => {}
        }
    }
}

/// Handles every pending event once, oldest first; returns how many notifications it
/// created. An event that fails is counted as a failed attempt and left pending for the
/// next pass.
pub(crate) async fn pass(
    db: &Db,
    hub: Option<&Hub>,
    mailer: Option<&Mailer>,
) -> Result<usize, StoreError> {
    let mut created = 0;
    let mut after: Option<Uuid> = None;
    loop {
        let events = store::events::pending(db, after, BATCH).await?;
        for event in &events {
            match handle(db, hub, mailer, event).await {
                Ok(made) => created += usize::from(made),
                Err(e) => {
                    tracing::warn!(event = %event.id, error = %e, "cannot dispatch event");
                    store::events::record_attempt(db, event.id).await?;
                }
            }
        }
        match events.last() {
            Some(last) if events.len() == BATCH as usize => after = Some(last.id),
            _ => return Ok(created),
        }
    }
}

/// One event: true when it made a notification.
async fn handle(
    db: &Db,
    hub: Option<&Hub>,
    mailer: Option<&Mailer>,
    event: &Event,
) -> Result<bool, StoreError> {
    let user = event.recipient_id;
    // Read before the transaction, which then only writes (a SQLite read transaction
    // upgraded to a write can fail at once under concurrent writers).
    // File events (`file_id` in the payload) reach readers of the file, who may hold it
    // through a share without reading its workspace.
    let file = event.payload["file_id"]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok());
    let readable = match file {
        Some(file) => authz::can_read(db, user, event.org_id, authz::Resource::File(file)).await?,
        None => authz::can_read_workspace(db, user, event.org_id, event.workspace_id).await?,
    };
    let wanted = readable
        && store::preferences::wants(db, user, event.workspace_id, &event.kind, "in_app").await?;
    let mail = match mailer {
        Some(mailer) if wanted => email::plan(db, &mailer.options, event).await?,
        _ => None,
    };
    let mut tx = db.pool().begin().await?;
    let made = if wanted {
        store::notifications::insert_for_event(&mut tx, db.dialect(), event).await?
    } else {
        None
    };
    if let (Some(notification), Some(mail)) = (&made, &mail) {
        email::record(&mut tx, mail, notification.id, user).await?;
    }
    sqlx::query(
        "UPDATE events SET delivered_at = COALESCE(delivered_at, $1), attempts = attempts + 1 \
         WHERE id = $2",
    )
    .bind(timestamp::format(timestamp::now()))
    .bind(event.id.to_string())
    .execute(&mut *tx)
    .await?;
    if let (Some(notification), Some(hub)) = (&made, hub) {
        hub.notify_created_in(&mut tx, db.dialect(), user, notification)
            .await?;
    }
    tx.commit().await?;
    let created = made.is_some();
    if let (Some(notification), Some(hub)) = (made, hub) {
        hub.created(db.dialect(), user, notification);
    }
    if created && let (Some(mailer), Some(email::Planned::Now(_))) = (mailer, &mail) {
        mailer.wake();
    }
    Ok(created)
}

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
//!
//! Events are handled a page ([`BATCH`]) at a time: the reads (access, preferences, the
//! email plan) run concurrently before any transaction, then one transaction writes the
//! page's notifications, emails and delivery marks, and the sessions are signalled right
//! after its commit. On PostgreSQL that transaction first takes the per-user locks of
//! every recipient in the page, in key order, so two nodes' dispatchers cannot deadlock on
//! them. A page whose transaction fails is retried one event per transaction, so one bad
//! event only costs its own attempt.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use uuid::Uuid;

use super::hub::Hub;
use crate::authz;
use crate::email::{self, Mailer};
use crate::outbox::Event;
use crate::store::{self, StoreError};
use crate::timestamp;
use crate::{Db, Dialect};

/// Events read per query, and written per transaction.
const BATCH: u32 = 100;

/// Events whose reads run at once (each holds a pool connection while it reads).
const READS: usize = 8;

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
        created += handle_page(db, hub, mailer, &events).await?;
        match events.last() {
            Some(last) if events.len() == BATCH as usize => after = Some(last.id),
            _ => return Ok(created),
        }
    }
}

/// What the reads decided for one event.
struct Plan<'e> {
    event: &'e Event,
    /// The recipient can read the resource and wants the kind in-app.
    wanted: bool,
    mail: Option<email::Planned>,
}

/// One page of events: how many notifications it made.
async fn handle_page(
    db: &Db,
    hub: Option<&Hub>,
    mailer: Option<&Mailer>,
    events: &[Event],
) -> Result<usize, StoreError> {
    // Built into a Vec first: a closure inside the stream would make the spawned
    // dispatcher's future not provably `Send`.
    let reads: Vec<_> = events.iter().map(|event| read(db, mailer, event)).collect();
    let reads: Vec<_> = stream::iter(reads).buffered(READS).collect().await;
    let mut plans = Vec::with_capacity(reads.len());
    for (event, result) in events.iter().zip(reads) {
        match result {
            Ok(plan) => plans.push(plan),
            Err(e) => failed(db, event, &e).await?,
        }
    }
    match write(db, hub, mailer, &plans).await {
        Ok(created) => Ok(created),
        Err(e) => {
            tracing::warn!(error = %e, "cannot dispatch a page of events; one at a time");
            let mut created = 0;
            for plan in &plans {
                match write(db, hub, mailer, std::slice::from_ref(plan)).await {
                    Ok(made) => created += made,
                    Err(e) => failed(db, plan.event, &e).await?,
                }
            }
            Ok(created)
        }
    }
}

/// Logs a failed event and counts the attempt; it stays pending for the next pass.
async fn failed(db: &Db, event: &Event, error: &StoreError) -> Result<(), StoreError> {
    tracing::warn!(event = %event.id, error = %error, "cannot dispatch event");
    store::events::record_attempt(db, event.id).await
}

/// The reads of one event, before any transaction (a SQLite read transaction upgraded
/// to a write can fail at once under concurrent writers).
async fn read<'e>(
    db: &Db,
    mailer: Option<&Mailer>,
    event: &'e Event,
) -> Result<Plan<'e>, StoreError> {
    let user = event.recipient_id;
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
    Ok(Plan {
        event,
        wanted,
        mail,
    })
}

/// Writes `plans` in one transaction, then signals the sessions: how many notifications
/// it made.
async fn write(
    db: &Db,
    hub: Option<&Hub>,
    mailer: Option<&Mailer>,
    plans: &[Plan<'_>],
) -> Result<usize, StoreError> {
    if plans.is_empty() {
        return Ok(0);
    }
    let delivered_at = timestamp::format(timestamp::now());
    let mut tx = db.pool().begin().await?;
    if db.dialect() == Dialect::Postgres {
        let users = plans
            .iter()
            .filter(|p| p.wanted)
            .map(|p| p.event.recipient_id);
        store::notifications::lock_users(&mut tx, users).await?;
    }
    let mut made = Vec::new();
    let mut wake = false;
    for plan in plans {
        let event = plan.event;
        let notification = if plan.wanted {
            store::notifications::insert_for_event(&mut tx, db.dialect(), event).await?
        } else {
            None
        };
        if let (Some(notification), Some(mail)) = (&notification, &plan.mail) {
            email::record(&mut tx, mail, notification.id, event.recipient_id).await?;
            wake |= matches!(mail, email::Planned::Now(_));
        }
        sqlx::query(
            "UPDATE events SET delivered_at = COALESCE(delivered_at, $1), \
             attempts = attempts + 1 WHERE id = $2",
        )
        .bind(&delivered_at)
        .bind(event.id.to_string())
        .execute(&mut *tx)
        .await?;
        if let Some(notification) = notification {
            if let Some(hub) = hub {
                hub.notify_created_in(&mut tx, db.dialect(), event.recipient_id, &notification)
                    .await?;
            }
            made.push((event.recipient_id, notification));
        }
    }
    tx.commit().await?;
    let created = made.len();
    if let Some(hub) = hub {
        for (user, notification) in made {
            hub.created(db.dialect(), user, notification);
        }
    }
    if wake && let Some(mailer) = mailer {
        mailer.wake();
    }
    Ok(created)
}

//! The dispatcher: pending `events` become `notifications` rows.
//!
//! A notification is created for an event unless the recipient turned the kind off
//! in-app, muted the workspace, or can no longer read it, and the event is marked
//! delivered in the same transaction. `notifications.event_id` is UNIQUE and the insert
//! is `ON CONFLICT DO NOTHING`, so an event handled twice — a pass retried after a crash
//! between commit and anything else, two nodes sweeping the same database — still makes
//! one notification, and only the pass that made it signals the sessions. The email it
//! makes (an outbox row, or a digest item; see [`crate::email`]) is written in the same
//! transaction, only when the notification is.
//!
//! Events are handled a page ([`BATCH`]) at a time, so that one event reaching a
//! thousand people costs a few dozen statements rather than thousands: the reads run
//! before any transaction, per page (the recipients' access per workspace, their
//! preferences and settings, each in a few queries; emails per recipient with an
//! address, a few at once), then one transaction writes the page's notifications and
//! delivery marks in multi-row statements (and its emails), and the sessions are
//! signalled right after its commit. On PostgreSQL that transaction first takes the
//! per-user locks of every recipient in the page, in key order, so two nodes'
//! dispatchers cannot deadlock on them. A page whose reads or transaction fail is
//! retried one event at a time, so one bad event only costs its own attempt.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use uuid::Uuid;

use super::hub::Hub;
use crate::Db;
use crate::authz;
use crate::email::{self, Mailer};
use crate::outbox::Event;
use crate::store::{self, StoreError};

/// Events read per query, and written per transaction. Each page costs a dozen
/// statements and a commit whatever its size: with 250 (rather than 100) one event for
/// a thousand people reaches the last of them ~20% sooner (ws-fanout, benches/README.md),
/// while a page's write transaction stays in the tens of milliseconds.
const BATCH: u32 = 250;

/// Emails planned at once (each holds a pool connection while it reads).
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
    let plans = match read(db, mailer, events).await {
        Ok(plans) => plans,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a page of events; one at a time");
            let mut plans = Vec::with_capacity(events.len());
            for event in events {
                match read(db, mailer, std::slice::from_ref(event)).await {
                    Ok(plan) => plans.extend(plan),
                    Err(e) => failed(db, event, &e).await?,
                }
            }
            plans
        }
    };
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

/// The reads of a page of events, before any transaction (a SQLite read transaction
/// upgraded to a write can fail at once under concurrent writers): access per
/// workspace, preferences and settings of all the recipients at once, then the email
/// of each recipient who has an address.
async fn read<'e>(
    db: &Db,
    mailer: Option<&Mailer>,
    events: &'e [Event],
) -> Result<Vec<Plan<'e>>, StoreError> {
    let readable = readable(db, events).await?;
    let mut users: Vec<Uuid> = events.iter().map(|event| event.recipient_id).collect();
    users.sort_unstable();
    users.dedup();
    let choices = store::preferences::choices_of(db, &users).await?;
    let wanted: Vec<bool> = events
        .iter()
        .zip(readable)
        .map(|(event, readable)| {
            let (user, workspace) = (event.recipient_id, event.workspace_id);
            readable && choices.wants(user, workspace, &event.kind, "in_app")
        })
        .collect();
    let mut mails: Vec<Option<email::Planned>> = Vec::with_capacity(events.len());
    if let Some(mailer) = mailer {
        let settings = store::preferences::settings_of(db, &users).await?;
        // Built into a Vec first: a closure inside the stream would make the spawned
        // dispatcher's future not provably `Send`.
        let mut plans = Vec::new();
        for (event, &wanted) in events.iter().zip(&wanted) {
            let settings = settings.get(&event.recipient_id).cloned();
            let (choices, options) = (&choices, &mailer.options);
            plans.push(async move {
                match settings {
                    Some(settings) if wanted => {
                        email::plan(db, options, event, settings, choices).await
                    }
                    // No settings: no address, so no email.
                    _ => Ok(None),
                }
            });
        }
        let planned: Vec<_> = stream::iter(plans).buffered(READS).collect().await;
        for mail in planned {
            mails.push(mail?);
        }
    } else {
        mails.resize_with(events.len(), || None);
    }
    Ok(events
        .iter()
        .zip(wanted)
        .zip(mails)
        .map(|((event, wanted), mail)| Plan {
            event,
            wanted,
            mail,
        })
        .collect())
}

/// Whether each event's recipient can still read its resource: the readers of each
/// workspace among its recipients in a few queries; a file event (`file_id` in the
/// payload) per event, since its recipient may hold the file through a share without
/// reading its workspace.
async fn readable(db: &Db, events: &[Event]) -> Result<Vec<bool>, StoreError> {
    let file_of = |event: &Event| {
        event.payload["file_id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
    };
    let mut by_workspace: HashMap<(Uuid, Uuid), Vec<Uuid>> = HashMap::new();
    for event in events.iter().filter(|event| file_of(event).is_none()) {
        by_workspace
            .entry((event.org_id, event.workspace_id))
            .or_default()
            .push(event.recipient_id);
    }
    let mut readers = HashMap::new();
    for ((org, workspace), users) in by_workspace {
        let found = authz::workspace_readers_among(db, org, workspace, &users).await?;
        readers.insert((org, workspace), found);
    }
    let mut readable = Vec::with_capacity(events.len());
    for event in events {
        let user = event.recipient_id;
        readable.push(match file_of(event) {
            Some(file) => {
                authz::can_read(db, user, event.org_id, authz::Resource::File(file)).await?
            }
            None => readers
                .get(&(event.org_id, event.workspace_id))
                .is_some_and(|found| found.contains(&user)),
        });
    }
    Ok(readable)
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
    let mut tx = db.pool().begin().await?;
    let wanted: Vec<&Plan<'_>> = plans.iter().filter(|plan| plan.wanted).collect();
    let events: Vec<&Event> = wanted.iter().map(|plan| plan.event).collect();
    let notifications =
        store::notifications::insert_for_events(&mut tx, db.dialect(), &events).await?;
    let mut made = Vec::new();
    let mut wake = false;
    for (plan, notification) in wanted.into_iter().zip(notifications) {
        // `None`: the event was handled before; its email was recorded with it.
        let Some(notification) = notification else {
            continue;
        };
        if let Some(mail) = &plan.mail {
            email::record(&mut tx, mail, notification.id, plan.event.recipient_id).await?;
            wake |= matches!(mail, email::Planned::Now(_));
        }
        made.push((plan.event.recipient_id, notification));
    }
    let ids: Vec<Uuid> = plans.iter().map(|plan| plan.event.id).collect();
    store::events::mark_all_delivered(&mut tx, &ids).await?;
    if let Some(hub) = hub {
        hub.notify_created_in(&mut tx, db.dialect(), &made).await?;
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

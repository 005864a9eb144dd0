//! The [`Hub`]: how a new notification or an unread-count change reaches the WebSocket
//! sessions of every node.
//!
//! Each user with at least one open session has a channel of [`Signal`]s; a signal
//! reaches only that user's sessions. A new notification travels inside its signal
//! ([`Signal::Created`]), so a session pushes it and counts it unread without touching
//! the database. Anything else (a mark-read, a delete, a notification too large for a
//! `NOTIFY`, signals that may have been lost) is [`Signal::Changed`]: the session reads
//! what it has not pushed yet (ids after the last one it sent) and the unread count.
//! So a signal lost to a lagging receiver or a dropped `LISTEN` connection costs nothing
//! but latency: the resynchronisation that follows finds the same rows.
//!
//! Ordering: a session pushes a notification only when its id is above the last one it
//! pushed, so every id-ordered source must also be commit-ordered per user. The
//! dispatcher makes that true (on PostgreSQL, under a per-user lock; see
//! [`crate::store::notifications::insert_for_events`]), and created signals are delivered
//! in commit order: on SQLite (one node, one dispatcher) it publishes them after each
//! commit; on PostgreSQL every node, the sender included, hears them through `NOTIFY` on
//! [`CHANNEL`] (sent inside the dispatcher's transaction, so at commit, and delivered in
//! commit order) from its one [`listen`] task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{Notify, broadcast, watch};
use uuid::Uuid;

use crate::store::StoreError;
use crate::store::notifications::Notification;
use crate::{Db, Dialect};

/// The PostgreSQL `NOTIFY` channel of notification signals. Payload:
/// `<node id> <user id>` (re-read), or `<node id> <user id> <notification JSON>` (a new
/// notification).
pub const CHANNEL: &str = "aistack_collab_notifications";

/// PostgreSQL refuses `NOTIFY` payloads of 8000 bytes or more: a notification that would
/// not fit is signalled as a change to re-read.
const MAX_PAYLOAD: usize = 7999;

/// How many signals a slow session may fall behind before it resynchronises.
const CAPACITY: usize = 256;

/// What changed for the user whose channel carries it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Signal {
    /// A new, unread notification, committed after every one signalled before it.
    Created(Arc<Notification>),
    /// Something else changed (or signals may have been lost): re-read.
    Changed,
}

/// Shared by the router, the dispatcher and the `LISTEN` task of one node.
#[derive(Debug, Clone)]
pub(crate) struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Tells other nodes' re-read signals from ours on the shared `NOTIFY` channel.
    node: Uuid,
    /// Wakes the dispatcher after a write that may have queued events.
    wake: Notify,
    /// The channel of each user with open sessions.
    users: Mutex<HashMap<Uuid, broadcast::Sender<Signal>>>,
    /// Becomes true when the server stops: sessions close.
    closing: watch::Sender<bool>,
}

/// One session's end of its user's channel; leaving drops the channel with the last one.
pub(crate) struct Subscription {
    hub: Hub,
    user_id: Uuid,
    receiver: Option<broadcast::Receiver<Signal>>,
}

impl Subscription {
    /// The next signal; see [`broadcast::Receiver::recv`].
    pub async fn recv(&mut self) -> Result<Signal, broadcast::error::RecvError> {
        match self.receiver.as_mut() {
            Some(receiver) => receiver.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.receiver.take());
        let mut users = self.hub.users();
        if users
            .get(&self.user_id)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            users.remove(&self.user_id);
        }
    }
}

impl Hub {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                node: Uuid::new_v4(),
                wake: Notify::new(),
                users: Mutex::new(HashMap::new()),
                closing: watch::channel(false).0,
            }),
        }
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, broadcast::Sender<Signal>>> {
        // The map stays consistent whatever panicked while holding it.
        self.inner
            .users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the dispatcher (a permit is stored if it is busy, so no wake is lost).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Resolves at the next [`Self::wake`].
    pub async fn woken(&self) {
        self.inner.wake.notified().await;
    }

    /// Listens to `user_id`'s signals from now on.
    pub fn subscribe(&self, user_id: Uuid) -> Subscription {
        let receiver = self
            .users()
            .entry(user_id)
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe();
        Subscription {
            hub: self.clone(),
            user_id,
            receiver: Some(receiver),
        }
    }

    /// Tells this node's sessions of `user_id` (nothing when it has none).
    pub fn publish_local(&self, user_id: Uuid, signal: Signal) {
        if let Some(sender) = self.users().get(&user_id) {
            // An error only means the last session is leaving.
            let _ = sender.send(signal);
        }
    }

    /// Every session of this node re-reads (signals may have been lost).
    pub fn resync_local(&self) {
        for sender in self.users().values() {
            let _ = sender.send(Signal::Changed);
        }
    }

    /// Tells every node's sessions that `user_id`'s notifications changed, outside any
    /// transaction (after a mark-read or a delete).
    pub async fn publish(&self, db: &Db, user_id: Uuid) -> Result<(), StoreError> {
        self.publish_local(user_id, Signal::Changed);
        if db.dialect() == Dialect::Postgres {
            notify(db.pool(), &format!("{} {user_id}", self.inner.node)).await?;
        }
        Ok(())
    }

    /// Signals the notifications the dispatcher is creating inside `tx` (`(user,
    /// notification)`, in id order per user). On PostgreSQL `NOTIFY`s (sent at commit in
    /// this order, heard by every node, this one included; a few hundred per statement);
    /// elsewhere nothing: the dispatcher calls [`Self::created`] after the commit.
    pub async fn notify_created_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        dialect: Dialect,
        created: &[(Uuid, Notification)],
    ) -> Result<(), StoreError> {
        if dialect != Dialect::Postgres {
            return Ok(());
        }
        let node = self.inner.node;
        let mut payloads = Vec::with_capacity(created.len());
        for (user, notification) in created {
            let json = serde_json::to_string(notification)
                .map_err(|e| StoreError::corrupt("notification", e))?;
            let mut payload = format!("{node} {user} {json}");
            if payload.len() > MAX_PAYLOAD {
                // Other nodes re-read; this node hears its own `Changed` like theirs.
                payload = format!("{} {user}", Uuid::nil());
            }
            payloads.push(payload);
        }
        for chunk in payloads.chunks(NOTIFY_CHUNK) {
            notify_all(&mut *tx, chunk).await?;
        }
        Ok(())
    }

    /// After the commit of `user`'s `notification`: tells this node's sessions, unless
    /// `NOTIFY` does (PostgreSQL).
    pub fn created(&self, dialect: Dialect, user: Uuid, notification: Notification) {
        if dialect != Dialect::Postgres {
            self.publish_local(user, Signal::Created(Arc::new(notification)));
        }
    }

    pub fn closing(&self) -> watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// Closes every WebSocket session of this node.
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }
}

/// `NOTIFY`s per statement (each payload is below 8000 bytes).
const NOTIFY_CHUNK: usize = 100;

/// One `NOTIFY` per payload, in order: a `VALUES` list is scanned in order.
async fn notify_all(tx: &mut sqlx::AnyConnection, payloads: &[String]) -> Result<(), StoreError> {
    let values: Vec<String> = (0..payloads.len())
        .map(|i| format!("(${})", i + 2))
        .collect();
    let sql = format!(
        "SELECT pg_notify($1, p) FROM (VALUES {}) AS t(p)",
        values.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(CHANNEL);
    for payload in payloads {
        query = query.bind(payload.as_str());
    }
    query.execute(tx).await?;
    Ok(())
}

async fn notify<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    payload: &str,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(executor)
        .await?;
    Ok(())
}

/// Feeds the signals of every node (this one's created ones included) into `hub` until
/// the task is aborted: one dedicated PostgreSQL connection listening on [`CHANNEL`].
/// When that connection drops, it reconnects (after a pause if connecting fails) and
/// has every session re-read, since signals sent meanwhile are gone.
pub(crate) async fn listen(db: Db, hub: Hub) {
    loop {
        match PgListener::connect(db.url()).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %e, "cannot LISTEN for notification signals");
                } else {
                    hub.resync_local();
                    relay(&mut listener, &hub).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect to LISTEN for notifications"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Relays until the connection drops.
async fn relay(listener: &mut PgListener, hub: &Hub) {
    loop {
        match listener.try_recv().await {
            Ok(Some(message)) => {
                if let Some((user, signal)) = parse(message.payload(), hub.inner.node) {
                    hub.publish_local(user, signal);
                }
            }
            Ok(None) => {
                tracing::warn!("notification LISTEN connection lost; reconnecting");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "notification LISTEN failed; reconnecting");
                return;
            }
        }
    }
}

/// A `NOTIFY` payload as a signal for this node (`node`); `None` for this node's own
/// re-read signals (already published locally) and for garbage.
fn parse(payload: &str, node: Uuid) -> Option<(Uuid, Signal)> {
    let mut parts = payload.splitn(3, ' ');
    let sender = Uuid::parse_str(parts.next()?).ok()?;
    let user = Uuid::parse_str(parts.next()?).ok()?;
    match parts.next() {
        Some(json) => match serde_json::from_str::<Notification>(json) {
            Ok(notification) => Some((user, Signal::Created(Arc::new(notification)))),
            // Unreadable (another version's format?): re-reading is always right.
            _ => Some((user, Signal::Changed)),
        },
        None if sender == node => None,
        None => Some((user, Signal::Changed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification() -> Notification {
        Notification {
            id: Uuid::now_v7(),
            kind: "mention".to_owned(),
            workspace_id: Uuid::new_v4(),
            actor_id: None,
            resource_type: "task".to_owned(),
            resource_id: Uuid::new_v4(),
            link: "/api/v1/tasks/x".to_owned(),
            payload: serde_json::json!({ "task_id": "x" }),
            created_at: "2026-12-04T00:00:00.000000Z".to_owned(),
            read_at: None,
        }
    }

    #[test]
    fn payloads_round_trip() {
        let (me, other, user) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let n = notification();
        let json = serde_json::to_string(&n).expect("json");
        // A created notification is relayed whoever sent it, this node included.
        for sender in [me, other] {
            let parsed = parse(&format!("{sender} {user} {json}"), me);
            assert_eq!(parsed, Some((user, Signal::Created(Arc::new(n.clone())))));
        }
        // Re-read signals: other nodes' only (ours were published locally).
        assert_eq!(
            parse(&format!("{other} {user}"), me),
            Some((user, Signal::Changed))
        );
        assert_eq!(parse(&format!("{me} {user}"), me), None);
        // The too-large fallback is sent as the nil node: every node re-reads.
        assert_eq!(
            parse(&format!("{} {user}", Uuid::nil()), me),
            Some((user, Signal::Changed))
        );
        // Unreadable JSON re-reads.
        assert_eq!(
            parse(&format!("{other} {user} {{"), me),
            Some((user, Signal::Changed))
        );
        assert_eq!(parse("nonsense", me), None);
    }

    #[tokio::test]
    async fn signals_reach_only_their_users_sessions_and_channels_go_with_them() {
        let hub = Hub::new();
        let (gus, mia) = (Uuid::new_v4(), Uuid::new_v4());
        let mut first = hub.subscribe(gus);
        let mut second = hub.subscribe(gus);
        let mut other = hub.subscribe(mia);
        let n = Arc::new(notification());
        hub.publish_local(gus, Signal::Created(n.clone()));
        hub.resync_local();
        for session in [&mut first, &mut second] {
            assert_eq!(session.recv().await.ok(), Some(Signal::Created(n.clone())));
            assert_eq!(session.recv().await.ok(), Some(Signal::Changed));
        }
        assert_eq!(other.recv().await.ok(), Some(Signal::Changed));
        drop(first);
        assert!(hub.users().contains_key(&gus));
        drop(second);
        assert!(!hub.users().contains_key(&gus));
        // Nobody listens: publishing is a no-op.
        hub.publish_local(gus, Signal::Changed);
        assert!(!hub.users().contains_key(&gus));
    }
}

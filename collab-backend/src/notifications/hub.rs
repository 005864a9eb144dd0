//! The [`Hub`]: how a new notification or an unread-count change reaches the WebSocket
//! sessions of every node.
//!
//! A signal only says *whose* notifications changed; a session then reads what it has
//! not pushed yet from the database (ids after the last one it sent) and the unread
//! count. So a signal lost to a lagging receiver or a dropped `LISTEN` connection costs
//! nothing but latency: the next signal, or the resynchronisation the hub broadcasts
//! after such a loss, finds the same rows.
//!
//! On one node signals travel through a `tokio::sync::broadcast` channel. With
//! PostgreSQL they also travel through `NOTIFY` on [`CHANNEL`] (sent inside the
//! dispatcher's transaction, so at commit), and every node's [`listen`] task feeds what
//! other nodes sent into its own channel.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{Notify, broadcast, watch};
use uuid::Uuid;

use crate::store::StoreError;
use crate::{Db, Dialect};

/// The PostgreSQL `NOTIFY` channel of notification signals. Payload:
/// `<node id> <user id>`.
pub const CHANNEL: &str = "aistack_collab_notifications";

/// How many signals a slow session may fall behind before it resynchronises.
const CAPACITY: usize = 4096;

/// Whose notifications changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// This user's notifications or unread count changed.
    User(Uuid),
    /// Signals may have been lost: every session re-reads.
    Everyone,
}

impl Signal {
    pub fn concerns(self, user_id: Uuid) -> bool {
        match self {
            Signal::User(user) => user == user_id,
            Signal::Everyone => true,
        }
    }
}

/// Shared by the router, the dispatcher and the `LISTEN` task of one node.
#[derive(Debug, Clone)]
pub(crate) struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Tells other nodes' signals from ours on the shared `NOTIFY` channel.
    node: Uuid,
    /// Wakes the dispatcher after a write that may have queued events.
    wake: Notify,
    signals: broadcast::Sender<Signal>,
    /// Becomes true when the server stops: sessions close.
    closing: watch::Sender<bool>,
}

impl Hub {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                node: Uuid::new_v4(),
                wake: Notify::new(),
                signals: broadcast::channel(CAPACITY).0,
                closing: watch::channel(false).0,
            }),
        }
    }

    /// Wakes the dispatcher (a permit is stored if it is busy, so no wake is lost).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Resolves at the next [`Self::wake`].
    pub async fn woken(&self) {
        self.inner.wake.notified().await;
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Signal> {
        self.inner.signals.subscribe()
    }

    /// Tells this node's sessions (a send error only means nobody listens).
    pub fn publish_local(&self, signal: Signal) {
        let _ = self.inner.signals.send(signal);
    }

    /// Tells every node's sessions that `user_id`'s notifications changed, outside any
    /// transaction (after a mark-read or a delete).
    pub async fn publish(&self, db: &Db, user_id: Uuid) -> Result<(), StoreError> {
        self.publish_local(Signal::User(user_id));
        if db.dialect() == Dialect::Postgres {
            notify(db.pool(), self.inner.node, user_id).await?;
        }
        Ok(())
    }

    /// The `NOTIFY` of a change to `user_id`'s notifications, inside `tx` (sent when it
    /// commits). Nothing on SQLite, which has one node.
    pub async fn notify_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        dialect: Dialect,
        user_id: Uuid,
    ) -> Result<(), StoreError> {
        if dialect == Dialect::Postgres {
            notify(tx, self.inner.node, user_id).await?;
        }
        Ok(())
    }

    pub fn closing(&self) -> watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// Closes every WebSocket session of this node.
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }
}

async fn notify<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    node: Uuid,
    user_id: Uuid,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(format!("{node} {user_id}"))
        .execute(executor)
        .await?;
    Ok(())
}

/// Feeds other nodes' signals into `hub` until the task is aborted: one dedicated
/// PostgreSQL connection listening on [`CHANNEL`]. When that connection drops, it
/// reconnects (after a pause if connecting fails) and broadcasts [`Signal::Everyone`],
/// since signals sent meanwhile are gone.
pub(crate) async fn listen(db: Db, hub: Hub) {
    loop {
        match PgListener::connect(db.url()).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %e, "cannot LISTEN for notification signals");
                } else {
                    hub.publish_local(Signal::Everyone);
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
                let mut parts = message.payload().split(' ');
                let node = parts.next().and_then(|n| Uuid::parse_str(n).ok());
                let user = parts.next().and_then(|u| Uuid::parse_str(u).ok());
                if let (Some(node), Some(user)) = (node, user)
                    && node != hub.inner.node
                {
                    hub.publish_local(Signal::User(user));
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

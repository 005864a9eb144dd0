//! One notification WebSocket session.
//!
//! Server to client, JSON text messages:
//! - `{"type":"notification","notification":{…}}`: a notification, in id order, each
//!   once per session;
//! - `{"type":"unread_count","count":n}`: on connect and whenever the count changes.
//!
//! Heartbeats: a WebSocket ping every `heartbeat`; a client silent (no pong, no message)
//! for three heartbeats is disconnected. Client messages other than close are ignored.
//!
//! Re-authorization: a socket opened with a token (in `Authorization`, or through a
//! ticket minted with one) stays open only while that token is live. At every heartbeat
//! the session checks it; once it is revoked (sign-out, token revocation) or expired, the
//! socket is closed with 1008 (policy violation) and nothing more is pushed. Sockets
//! opened through the gateway's identity headers carry no token of ours: the gateway's
//! auth filter vouched for the upgrade, and they stay open until either side closes.
//! The session closes (code 1001) when the server stops.
//!
//! Nothing is lost: the session remembers the last id it pushed. A new notification
//! arrives in its signal and is pushed as is (its id is above the last, since per user
//! id order is commit order; see [`super::hub`]) with the count one higher; any other
//! signal, or signals lost to lagging, make it read what came after that id and the
//! unread count. A client reconnecting with `?after=<last id it saw>` gets the rest.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures_util::SinkExt;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

use super::hub::{Hub, Signal, Subscription};
use crate::Db;
use crate::store::notifications::Notification;
use crate::store::{self, StoreError};

/// Notifications read per query when catching up.
const BATCH: u32 = 100;

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("the client went away")]
    Gone,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who a session serves and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    /// The user whose notifications are pushed.
    pub user_id: Uuid,
    /// The token the socket was opened with, checked at every heartbeat.
    pub token_id: Option<Uuid>,
    /// Replay what came after this notification id first.
    pub after: Option<Uuid>,
    /// Ping period.
    pub heartbeat: Duration,
}

/// A server-to-client message, serialized straight to its text (no JSON tree built).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Push<'a> {
    Notification { notification: &'a Notification },
    UnreadCount { count: i64 },
}

impl Push<'_> {
    fn text(&self) -> Result<Message, End> {
        let text =
            serde_json::to_string(self).map_err(|e| StoreError::corrupt("notification", e))?;
        Ok(Message::Text(text.into()))
    }
}

struct Session {
    socket: WebSocket,
    db: Db,
    user_id: Uuid,
    token_id: Option<Uuid>,
    /// The last notification id pushed (or known at connect).
    last: Uuid,
    /// The unread count last pushed.
    count: Option<i64>,
}

/// Serves one upgraded socket for `params.user_id` until either side closes or its
/// token stops being live.
pub(crate) async fn run(mut socket: WebSocket, db: Db, hub: Hub, params: Params) {
    let Params {
        user_id,
        token_id,
        after,
        heartbeat,
    } = params;
    // Subscribe before reading the starting point, so nothing slips between the two.
    let mut signals = hub.subscribe(user_id);
    let mut closing = hub.closing();
    let start = match after {
        Some(after) => Ok(after),
        None => store::notifications::latest_id(&db, user_id)
            .await
            .map(|latest| latest.unwrap_or(Uuid::nil())),
    };
    let last = match start {
        Ok(last) => last,
        Err(e) => {
            tracing::warn!(error = %e, "notification WebSocket failed before its first push");
            close(&mut socket, close_code::ERROR, "internal error").await;
            return;
        }
    };
    let mut session = Session {
        socket,
        db,
        user_id,
        token_id,
        last,
        count: None,
    };
    let result = session.serve(&mut signals, &mut closing, heartbeat).await;
    if let Err(End::Store(e)) = result {
        tracing::warn!(error = %e, "notification WebSocket failed");
        session.close(close_code::ERROR, "internal error").await;
    }
}

impl Session {
    async fn serve(
        &mut self,
        signals: &mut Subscription,
        closing: &mut tokio::sync::watch::Receiver<bool>,
        heartbeat: Duration,
    ) -> Result<(), End> {
        self.catch_up().await?;
        self.flush().await?;
        let mut ping = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                signal = signals.recv() => {
                    match signal {
                        Ok(Signal::Created(notification)) => self.created(&notification).await?,
                        Ok(Signal::Changed) | Err(RecvError::Lagged(_)) => self.catch_up().await?,
                        Err(RecvError::Closed) => return Ok(()),
                    }
                    // The notification and its count leave in one write.
                    self.flush().await?;
                }
                message = self.socket.recv() => match message {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ok(()),
                    Some(Ok(_)) => heard = Instant::now(),
                },
                _ = ping.tick() => {
                    if heard.elapsed() > heartbeat * 3 {
                        self.close(close_code::POLICY, "heartbeat timeout").await;
                        return Ok(());
                    }
                    if let Some(token_id) = self.token_id
                        && !store::tokens::is_live(&self.db, token_id).await?
                    {
                        self.close(close_code::POLICY, "token revoked or expired").await;
                        return Ok(());
                    }
                    self.send(Message::Ping(Vec::new().into())).await?;
                }
                // The value only ever turns true; a dropped hub counts as stopping too.
                _ = closing.changed() => {
                    self.close(close_code::AWAY, "server stopping").await;
                    return Ok(());
                }
            }
        }
    }

    /// Pushes a new notification (unread) unless it was pushed already, then the count.
    async fn created(&mut self, notification: &Notification) -> Result<(), End> {
        if notification.id <= self.last {
            // Read by a catch-up before its signal came.
            return Ok(());
        }
        self.push(notification).await?;
        match self.count {
            Some(count) => self.push_count(count + 1).await,
            // Never counted (a failed read would have ended the session): count now.
            None => self.catch_up().await,
        }
    }

    /// Queues a notification (sent at the next flush).
    async fn push(&mut self, notification: &Notification) -> Result<(), End> {
        let message = Push::Notification { notification };
        self.feed(message.text()?).await?;
        self.last = notification.id;
        Ok(())
    }

    /// Queues the unread count if it changed (sent at the next flush).
    async fn push_count(&mut self, count: i64) -> Result<(), End> {
        if self.count != Some(count) {
            self.feed(Push::UnreadCount { count }.text()?).await?;
            self.count = Some(count);
        }
        Ok(())
    }

    /// Pushes every notification after the last one pushed, then the unread count among
    /// those up to the last pushed if it changed (newer ones come with their signals,
    /// which count them).
    async fn catch_up(&mut self) -> Result<(), End> {
        loop {
            let found =
                store::notifications::after(&self.db, self.user_id, self.last, BATCH).await?;
            for notification in &found {
                self.push(notification).await?;
            }
            if found.len() < BATCH as usize {
                break;
            }
        }
        let count =
            store::notifications::unread_count_upto(&self.db, self.user_id, self.last).await?;
        self.push_count(count).await
    }

    async fn send(&mut self, message: Message) -> Result<(), End> {
        self.socket.send(message).await.map_err(|_| End::Gone)
    }

    /// Queues `message` without writing it yet (see [`flush`](Self::flush)).
    async fn feed(&mut self, message: Message) -> Result<(), End> {
        self.socket.feed(message).await.map_err(|_| End::Gone)
    }

    async fn flush(&mut self) -> Result<(), End> {
        self.socket.flush().await.map_err(|_| End::Gone)
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        close(&mut self.socket, code, reason).await;
    }
}

/// Sends a close frame (the client may be gone already: nothing to do then).
async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

//! One notification WebSocket session.
//!
//! Server to client, JSON text messages:
//! - `{"type":"notification","notification":{…}}`: a notification, in id order, each
//!   once per session;
//! - `{"type":"unread_count","count":n}`: on connect and whenever the count changes.
//!
//! Heartbeats: a WebSocket ping every `heartbeat`; a client silent (no pong, no message)
//! for three heartbeats is disconnected. Client messages other than close are ignored.
//! The session closes (code 1001) when the server stops.
//!
//! Nothing is lost: the session remembers the last id it pushed and, on every signal,
//! reads what came after it; a client reconnecting with `?after=<last id it saw>` gets
//! the rest.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

use super::hub::Hub;
use crate::Db;
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

struct Session {
    socket: WebSocket,
    db: Db,
    user_id: Uuid,
    /// The last notification id pushed (or known at connect).
    last: Uuid,
    /// The unread count last pushed.
    count: Option<i64>,
}

/// Serves one upgraded socket for `user_id` until either side closes.
pub(crate) async fn run(
    socket: WebSocket,
    db: Db,
    hub: Hub,
    user_id: Uuid,
    after: Option<Uuid>,
    heartbeat: Duration,
) {
    // Subscribe before reading the starting point, so nothing slips between the two.
    let mut signals = hub.subscribe();
    let mut closing = hub.closing();
    let start = match after {
        Some(after) => Ok(after),
        None => store::notifications::latest_id(&db, user_id)
            .await
            .map(|latest| latest.unwrap_or(Uuid::nil())),
    };
    let Ok(last) = start else {
        return;
    };
    let mut session = Session {
        socket,
        db,
        user_id,
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
        signals: &mut tokio::sync::broadcast::Receiver<super::hub::Signal>,
        closing: &mut tokio::sync::watch::Receiver<bool>,
        heartbeat: Duration,
    ) -> Result<(), End> {
        self.catch_up().await?;
        let mut ping = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                signal = signals.recv() => match signal {
                    Ok(signal) if signal.concerns(self.user_id) => self.catch_up().await?,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => self.catch_up().await?,
                    Err(RecvError::Closed) => return Ok(()),
                },
                message = self.socket.recv() => match message {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ok(()),
                    Some(Ok(_)) => heard = Instant::now(),
                },
                _ = ping.tick() => {
                    if heard.elapsed() > heartbeat * 3 {
                        self.close(close_code::POLICY, "heartbeat timeout").await;
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

    /// Pushes every notification after the last one pushed, then the unread count if it
    /// changed.
    async fn catch_up(&mut self) -> Result<(), End> {
        loop {
            let found =
                store::notifications::after(&self.db, self.user_id, self.last, BATCH).await?;
            for notification in &found {
                let message = json!({ "type": "notification", "notification": notification });
                self.send(Message::Text(message.to_string().into())).await?;
                self.last = notification.id;
            }
            if found.len() < BATCH as usize {
                break;
            }
        }
        let count = store::notifications::unread_count(&self.db, self.user_id).await?;
        if self.count != Some(count) {
            let message = json!({ "type": "unread_count", "count": count });
            self.send(Message::Text(message.to_string().into())).await?;
            self.count = Some(count);
        }
        Ok(())
    }

    async fn send(&mut self, message: Message) -> Result<(), End> {
        self.socket.send(message).await.map_err(|_| End::Gone)
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = self.socket.send(Message::Close(Some(frame))).await;
    }
}

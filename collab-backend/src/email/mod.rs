//! Email notifications: what the dispatcher queues, how it is sent, digests and
//! unsubscribe links.
//!
//! - **Queueing** ([`plan`], called by the notification dispatcher): for a new
//!   notification whose recipient has an address, email mode not `off`, the kind's
//!   `email` channel on and the workspace not muted, an `immediate` user gets one
//!   rendered email in the `email_outbox` table, an `hourly`/`daily` user a row in
//!   `email_digest_items` — both **in the same transaction** as the notification, with
//!   the event id as idempotency key, so a crash neither loses nor duplicates one.
//! - **Digests** (`worker`): when a window closes, its items become one email
//!   (idempotency key `digest:<user>:<mode>:<window end>`), queued in the transaction
//!   that marks the items done.
//! - **Sending** (`sender`): claims due rows with a lease (`FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL), sends them through SMTP (STARTTLS or implicit TLS, the certificate
//!   always verified against the Mozilla roots plus [`EmailOptions::smtp_tls_ca`]; no
//!   plain-text fallback) with bounded concurrency and rate, retries 4xx replies and
//!   connection failures (a refused certificate among them) with exponential backoff,
//!   records 5xx replies (and exhausted attempts) as `failed`. A node dying mid-send
//!   leaves the row to be claimed again when its lease lapses: at-least-once, and the
//!   `Message-ID` derives from the idempotency key so a resend is recognisable.
//! - **Unsubscribe** ([`unsubscribe`]): every email carries a signed link and the
//!   RFC 8058 `List-Unsubscribe` / `List-Unsubscribe-Post` headers.

mod digest;
mod options;
mod sender;
pub mod templates;
pub mod unsubscribe;

use std::sync::Arc;

use tokio::sync::Notify;
use uuid::Uuid;

pub use crate::store::email::OutboxEmail;
pub use options::{EmailOptions, SmtpTls, TrustedCa, UnsubscribeKey, Unusable};

use crate::Db;
use crate::outbox::Event;
use crate::store::email::NewEmail;
use crate::store::preferences::{Choices, Settings};
use crate::store::{self, StoreError};

/// The email side of one node: options, SMTP transport and the worker's wake-up.
#[derive(Debug)]
pub(crate) struct Mailer {
    pub options: Arc<EmailOptions>,
    sender: sender::Sender,
    wake: Notify,
}

impl Mailer {
    /// # Errors
    /// The SMTP settings cannot make a transport (an invalid host for TLS, a bad `from`,
    /// an unusable CA certificate).
    pub fn new(options: EmailOptions) -> Result<Self, String> {
        let options = Arc::new(options);
        Ok(Self {
            sender: sender::Sender::new(Arc::clone(&options)).map_err(|e| e.message)?,
            options,
            wake: Notify::new(),
        })
    }

    /// Wakes the worker (an email was queued).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Runs the email worker until the task is aborted: every poll interval, or when woken,
/// queues the digests of closed windows, then sends what is due.
pub(crate) async fn run(db: Db, mailer: Arc<Mailer>) {
    loop {
        if let Err(e) = digest::queue_due(&db, &mailer.options).await {
            tracing::warn!(error = %e, "email digest pass failed; will retry");
        }
        match mailer.sender.send_due(&db).await {
            // A full batch: more may be due right away.
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "email send pass failed; will retry"),
        }
        tokio::select! {
            () = mailer.wake.notified() => {}
            () = tokio::time::sleep(mailer.options.poll_interval) => {}
        }
    }
}

/// What a new notification means for email.
#[derive(Debug)]
pub(crate) enum Planned {
    /// Send this now.
    Now(NewEmail),
    /// Add it to the `mode` digest closing at `window_end`.
    Digest { mode: String, window_end: String },
}

/// Decides (before the dispatcher's transaction, which then only writes) what email
/// `event` makes for its recipient, whose `settings` and `choices` the dispatcher read
/// for its whole page; `None` for no email.
pub(crate) async fn plan(
    db: &Db,
    options: &EmailOptions,
    event: &Event,
    settings: Settings,
    choices: &Choices,
) -> Result<Option<Planned>, StoreError> {
    let user = event.recipient_id;
    let Some(address) = settings.email.clone() else {
        return Ok(None);
    };
    if settings.email_mode == "off"
        || !choices.wants(user, event.workspace_id, &event.kind, "email")
    {
        return Ok(None);
    }
    if settings.email_mode != "immediate" {
        let window = if settings.email_mode == "daily" {
            options.daily_window
        } else {
            options.hourly_window
        };
        return Ok(Some(Planned::Digest {
            window_end: digest::window_end(window),
            mode: settings.email_mode,
        }));
    }
    let item = digest::describe(db, options, event).await?;
    let url = unsubscribe_url(options, user, &event.kind);
    match templates::render_one(&settings.locale, &item, &url) {
        Ok(rendered) => Ok(Some(Planned::Now(NewEmail {
            idempotency_key: format!("event:{}", event.id),
            user_id: user,
            category: event.kind.clone(),
            recipient: address,
            subject: rendered.subject,
            text_body: rendered.text,
            html_body: rendered.html,
            unsubscribe_url: url,
        }))),
        Err(e) => {
            tracing::warn!(event = %event.id, error = %e, "cannot render email; none sent");
            Ok(None)
        }
    }
}

/// Writes `planned` for notification `notification_id` inside the dispatcher's
/// transaction.
pub(crate) async fn record(
    tx: &mut sqlx::AnyConnection,
    planned: &Planned,
    notification_id: Uuid,
    user_id: Uuid,
) -> Result<(), StoreError> {
    match planned {
        Planned::Now(email) => store::email::enqueue(tx, email).await.map(drop),
        Planned::Digest { mode, window_end } => {
            store::email::add_digest_item(tx, notification_id, user_id, mode, window_end).await
        }
    }
}

/// The signed unsubscribe URL for `user_id` and `category`.
pub fn unsubscribe_url(options: &EmailOptions, user_id: Uuid, category: &str) -> String {
    format!(
        "{}/api/v1/email/unsubscribe?{}",
        options.public_url,
        unsubscribe::query(&options.unsubscribe_keys, user_id, category)
    )
}

/// Every email queued for `user_id`, oldest first, with its delivery state: for tools
/// and tests.
///
/// # Errors
/// A database failure.
pub async fn emails_of(db: &Db, user_id: Uuid) -> Result<Vec<OutboxEmail>, StoreError> {
    store::email::of_user(db, user_id).await
}

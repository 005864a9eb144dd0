//! Sending the outbox: claim, send through SMTP at a bounded pace, record the outcome.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{EmailOptions, SmtpTls, Unusable};
use crate::Db;
use crate::store::email::OutboxEmail;
use crate::store::{self, StoreError};
use crate::timestamp;

/// What one attempt came to.
enum Outcome {
    Sent,
    /// A 4xx reply or a connection failure: try again later.
    Temporary(String),
    /// A 5xx reply or an unsendable message: never again.
    Permanent(String),
}

pub(super) struct Sender {
    options: Arc<EmailOptions>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The domain of Message-IDs (the `from` address's).
    domain: String,
    /// The earliest time the next email may start (the rate limit).
    next_start: Mutex<Instant>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl Sender {
    pub fn new(options: Arc<EmailOptions>) -> Result<Self, Unusable> {
        let from: Mailbox = options.from.parse().map_err(|e| Unusable {
            setting: "from",
            message: format!("email from {:?}: {e}", options.from),
        })?;
        let tls = || tls_parameters(&options);
        let tls = match options.smtp_tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls => Tls::Required(tls()?),
            SmtpTls::Implicit => Tls::Wrapper(tls()?),
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(options.smtp_host.as_str())
                .port(options.smtp_port)
                .tls(tls)
                .timeout(Some(options.smtp_timeout));
        if let Some((user, password)) = &options.smtp_credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            domain: from.email.domain().to_owned(),
            from,
            next_start: Mutex::new(Instant::now()),
            options,
        })
    }

    /// Claims and sends one batch; true when the batch was full (more may be due).
    pub async fn send_due(&self, db: &Db) -> Result<bool, StoreError> {
        let batch = u32::try_from(self.options.concurrency.saturating_mul(4))
            .unwrap_or(u32::MAX)
            .max(1);
        let lease =
            chrono::Duration::from_std(self.options.lease).unwrap_or(chrono::Duration::minutes(5));
        let until = timestamp::format(timestamp::now() + lease);
        let claimed = store::email::claim(db, &until, batch).await?;
        let full = claimed.len() == batch as usize;
        let results: Vec<Result<(), StoreError>> = futures_util::stream::iter(claimed)
            .map(move |email| async move {
                self.pace().await;
                let outcome = self.send(&email).await;
                self.record(db, &email, outcome).await
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(full)
    }

    /// Waits for this email's start slot: at most `rate_per_second` starts a second.
    async fn pace(&self) {
        let period = Duration::from_secs(1) / self.options.rate_per_second.max(1);
        let start = {
            let mut next = self.next_start.lock().await;
            let start = (*next).max(Instant::now());
            *next = start + period;
            start
        };
        tokio::time::sleep_until(start).await;
    }

    async fn send(&self, email: &OutboxEmail) -> Outcome {
        let message = match self.message(email) {
            Ok(message) => message,
            Err(e) => return Outcome::Permanent(e),
        };
        match self.transport.send(message).await {
            Ok(_) => Outcome::Sent,
            Err(e) if e.is_permanent() => Outcome::Permanent(e.to_string()),
            Err(e) => Outcome::Temporary(e.to_string()),
        }
    }

    fn message(&self, email: &OutboxEmail) -> Result<Message, String> {
        let to: Mailbox = email
            .recipient
            .parse()
            .map_err(|e| format!("recipient address: {e}"))?;
        let digest = Sha256::digest(email.idempotency_key.as_bytes());
        let message_id = format!("<{}@{}>", hex::encode(&digest[..16]), self.domain);
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .message_id(Some(message_id))
            .header(ListUnsubscribe(format!("<{}>", email.unsubscribe_url)))
            .header(ListUnsubscribePost)
            .multipart(MultiPart::alternative_plain_html(
                email.text_body.clone(),
                email.html_body.clone(),
            ))
            .map_err(|e| format!("cannot build the message: {e}"))
    }

    async fn record(
        &self,
        db: &Db,
        email: &OutboxEmail,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        let attempts = u32::try_from(email.attempts).unwrap_or(u32::MAX);
        match outcome {
            Outcome::Sent => store::email::mark_sent(db, email.id).await,
            Outcome::Temporary(error) if attempts < self.options.max_attempts => {
                tracing::info!(email = %email.id, attempts, error, "email deferred; will retry");
                let delay = chrono::Duration::from_std(self.options.backoff(attempts))
                    .unwrap_or(chrono::Duration::hours(1));
                let at = timestamp::format(timestamp::now() + delay);
                store::email::mark_retry(db, email.id, &at, &error).await
            }
            Outcome::Temporary(error) | Outcome::Permanent(error) => {
                tracing::warn!(email = %email.id, attempts, error, "email failed for good");
                store::email::mark_failed(db, email.id, &error).await
            }
        }
    }
}

/// Certificates checked against the Mozilla roots plus `smtp_tls_ca`'s, for the name
/// `smtp_host`. Verification is never turned off.
fn tls_parameters(options: &EmailOptions) -> Result<TlsParameters, Unusable> {
    let mut builder = TlsParameters::builder(options.smtp_host.clone());
    if let Some(ca) = &options.smtp_tls_ca {
        for (n, der) in ca.certificates.iter().enumerate() {
            let unusable = |e: String| Unusable {
                setting: "smtp_tls_ca",
                message: format!(
                    "certificate {} in {} is not usable as a CA: {e}",
                    n + 1,
                    ca.path.display()
                ),
            };
            // What lettre's root store would refuse, checked here so that the
            // certificate is named.
            rustls::RootCertStore::empty()
                .add(der.clone().into())
                .map_err(|e| unusable(e.to_string()))?;
            let cert = Certificate::from_der(der.clone()).map_err(|e| unusable(e.to_string()))?;
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| Unusable {
        setting: "smtp_host",
        message: format!("TLS for SMTP host {:?}: {e}", options.smtp_host),
    })
}

/// `List-Unsubscribe: <https://…>` (RFC 2369).
#[derive(Debug, Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
#[derive(Debug, Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".to_owned())
    }
}

//! [`EmailOptions`]: the SMTP server, the sender's pace and the unsubscribe keys.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (a relay on loopback or a private network only).
    None,
    /// `STARTTLS` after connecting; refused when the server does not offer it.
    StartTls,
    /// TLS from the first byte ("implicit TLS", usually port 465).
    Implicit,
}

impl SmtpTls {
    /// `none`, `starttls` or `tls`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "none" => Some(Self::None),
            "starttls" => Some(Self::StartTls),
            "tls" | "implicit" => Some(Self::Implicit),
            _ => None,
        }
    }
}

/// Certificate authorities trusted for the SMTP server's certificate in addition to
/// the built-in Mozilla roots: a private CA, or a relay with its own certificate.
/// Verification stays on; only the set of trusted roots grows.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedCa {
    /// The PEM file they were read from (shown in the admin API and in errors).
    pub path: PathBuf,
    /// The certificates, DER-encoded, at least one.
    pub certificates: Vec<Vec<u8>>,
}

impl std::fmt::Debug for TrustedCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedCa")
            .field("path", &self.path)
            .field("certificates", &self.certificates.len())
            .finish()
    }
}

impl TrustedCa {
    /// Reads every `BEGIN CERTIFICATE` section of the PEM file at `path`. Whether each
    /// is a usable trust anchor is checked when the transport is built
    /// ([`EmailOptions::check`]).
    ///
    /// # Errors
    /// The file cannot be read, is not PEM, or holds no certificate.
    pub fn from_pem_file(path: &Path) -> Result<Self, String> {
        let certificates = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| match e {
                rustls::pki_types::pem::Error::Io(io) => {
                    format!("cannot read {}: {io}", path.display())
                }
                other => format!("{} is not valid PEM: {other:?}", path.display()),
            })?;
        if certificates.is_empty() {
            return Err(format!(
                "no PEM certificate (`BEGIN CERTIFICATE`) in {}",
                path.display()
            ));
        }
        Ok(Self {
            path: path.to_owned(),
            certificates: certificates.into_iter().map(|c| c.to_vec()).collect(),
        })
    }
}

/// Why [`EmailOptions::check`] refused the options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    /// The setting at fault, named as under `backend.email`: `from`, `smtp_host` or
    /// `smtp_tls_ca`.
    pub setting: &'static str,
    pub message: String,
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// One unsubscribe signing key. Links name the version they were signed with, so a
/// rotated secret keeps old links working while its key is still listed.
#[derive(Clone, PartialEq, Eq)]
pub struct UnsubscribeKey {
    /// Written into every link signed with it.
    pub version: u32,
    /// The HMAC-SHA256 key.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for UnsubscribeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsubscribeKey")
            .field("version", &self.version)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Email delivery settings. Without them ([`crate::BackendOptions::email`] `None`) no
/// email is queued or sent; in-app notifications are unaffected.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailOptions {
    /// SMTP server host name (also the name checked against its TLS certificate).
    pub smtp_host: String,
    /// SMTP port. Default 587.
    pub smtp_port: u16,
    /// Default [`SmtpTls::StartTls`].
    pub smtp_tls: SmtpTls,
    /// Extra roots for the server's certificate (none: the Mozilla roots only).
    pub smtp_tls_ca: Option<TrustedCa>,
    /// `(user, password)` for SMTP AUTH, if the server wants it.
    pub smtp_credentials: Option<(String, String)>,
    /// Per SMTP command. Default 30 s.
    pub smtp_timeout: Duration,
    /// The `From:` address, e.g. `AI Stack <notifications@example.com>`.
    pub from: String,
    /// Where users reach the gateway, e.g. `https://aistack.example.com`: the base of
    /// every link in an email (resources, unsubscribe).
    pub public_url: String,
    /// Signing keys of unsubscribe links; the first signs, all verify.
    pub unsubscribe_keys: Vec<UnsubscribeKey>,
    /// Emails in flight at once. Default 4.
    pub concurrency: usize,
    /// Most emails started per second. Default 10.
    pub rate_per_second: u32,
    /// Attempts before a temporarily failing email is recorded as failed. Default 8.
    pub max_attempts: u32,
    /// First retry delay, doubled per attempt up to one hour. Default 30 s.
    pub retry_base: Duration,
    /// How long a claimed email stays claimed: a node that dies while sending leaves
    /// it to be sent again after this. Default 5 min (above the SMTP timeouts).
    pub lease: Duration,
    /// How often the outbox and the digest windows are polled. Default 5 s.
    pub poll_interval: Duration,
    /// Length of an `hourly` digest window (UTC, aligned on multiples). Default 1 h.
    pub hourly_window: Duration,
    /// Length of a `daily` digest window (UTC days). Default 24 h.
    pub daily_window: Duration,
}

impl std::fmt::Debug for EmailOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailOptions")
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_tls", &self.smtp_tls)
            .field("smtp_tls_ca", &self.smtp_tls_ca)
            .field(
                "smtp_user",
                &self.smtp_credentials.as_ref().map(|(user, _)| user),
            )
            .field("from", &self.from)
            .field("public_url", &self.public_url)
            .field("unsubscribe_keys", &self.unsubscribe_keys)
            .finish_non_exhaustive()
    }
}

impl EmailOptions {
    /// Defaults for `smtp_host`, mail `from`, links under `public_url`, unsubscribe links
    /// signed with `secret` as key version 1.
    pub fn new(
        smtp_host: impl Into<String>,
        from: impl Into<String>,
        public_url: impl Into<String>,
        secret: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            smtp_host: smtp_host.into(),
            smtp_port: 587,
            smtp_tls: SmtpTls::StartTls,
            smtp_tls_ca: None,
            smtp_credentials: None,
            smtp_timeout: Duration::from_secs(30),
            from: from.into(),
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            unsubscribe_keys: vec![UnsubscribeKey {
                version: 1,
                secret: secret.into(),
            }],
            concurrency: 4,
            rate_per_second: 10,
            max_attempts: 8,
            retry_base: Duration::from_secs(30),
            lease: Duration::from_secs(300),
            poll_interval: Duration::from_secs(5),
            hourly_window: Duration::from_secs(3600),
            daily_window: Duration::from_secs(24 * 3600),
        }
    }

    /// Options from the environment; `None` unless `AISTACK_SMTP_HOST` is set. Same as
    /// [`Self::from_env_over`] with no base.
    ///
    /// # Errors
    /// A message naming the variable that is missing or malformed.
    pub fn from_env() -> Result<Option<Self>, String> {
        Self::from_env_over(None)
    }

    /// `base` (the config file's settings, if any) with every variable set in the
    /// environment overriding its setting; `None` when there is no base and
    /// `AISTACK_SMTP_HOST` is not set. Without a base, the variables alone must be
    /// complete.
    ///
    /// - `AISTACK_SMTP_HOST`, `AISTACK_SMTP_PORT` (587), `AISTACK_SMTP_TLS`
    ///   (`none` | `starttls` | `tls`; default `starttls`), `AISTACK_SMTP_TLS_CA` (a PEM
    ///   file of extra trusted CAs), `AISTACK_SMTP_USER`, `AISTACK_SMTP_PASSWORD`;
    /// - `AISTACK_EMAIL_FROM` (required), `AISTACK_PUBLIC_URL` (default
    ///   `http://localhost:8080`);
    /// - `AISTACK_EMAIL_UNSUBSCRIBE_SECRET` (required, at least 16 bytes),
    ///   `AISTACK_EMAIL_UNSUBSCRIBE_KEY_VERSION` (default 1),
    ///   `AISTACK_EMAIL_UNSUBSCRIBE_OLD_KEYS` (`version:secret,…`, still accepted);
    /// - `AISTACK_EMAIL_CONCURRENCY`, `AISTACK_EMAIL_RATE` (per second),
    ///   `AISTACK_EMAIL_MAX_ATTEMPTS`, `AISTACK_EMAIL_POLL_MS`.
    ///
    /// # Errors
    /// A message naming the variable that is missing or malformed.
    pub fn from_env_over(base: Option<Self>) -> Result<Option<Self>, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut options = match base {
            Some(mut base) => {
                if let Some(host) = var("AISTACK_SMTP_HOST") {
                    base.smtp_host = host;
                }
                if let Some(from) = var("AISTACK_EMAIL_FROM") {
                    base.from = from;
                }
                if let Some(secret) = var("AISTACK_EMAIL_UNSUBSCRIBE_SECRET") {
                    base.unsubscribe_keys[0].secret = secret.into_bytes();
                }
                if let Some(public) = var("AISTACK_PUBLIC_URL") {
                    base.public_url = public.trim_end_matches('/').to_owned();
                }
                base
            }
            None => {
                let Some(host) = var("AISTACK_SMTP_HOST") else {
                    return Ok(None);
                };
                let from = var("AISTACK_EMAIL_FROM").ok_or("AISTACK_EMAIL_FROM is required")?;
                let secret = var("AISTACK_EMAIL_UNSUBSCRIBE_SECRET")
                    .ok_or("AISTACK_EMAIL_UNSUBSCRIBE_SECRET is required")?;
                let public =
                    var("AISTACK_PUBLIC_URL").unwrap_or_else(|| "http://localhost:8080".into());
                Self::new(host, from, public, secret.into_bytes())
            }
        };
        if options.unsubscribe_keys[0].secret.len() < 16 {
            return Err("AISTACK_EMAIL_UNSUBSCRIBE_SECRET must be at least 16 bytes".into());
        }
        fn number<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String> {
            match std::env::var(name).ok().filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name} must be a positive number")),
            }
        }
        if let Some(port) = number("AISTACK_SMTP_PORT")? {
            options.smtp_port = port;
        }
        if let Some(tls) = var("AISTACK_SMTP_TLS") {
            options.smtp_tls =
                SmtpTls::parse(&tls).ok_or("AISTACK_SMTP_TLS must be none, starttls or tls")?;
        }
        if let Some(ca) = var("AISTACK_SMTP_TLS_CA") {
            let ca = TrustedCa::from_pem_file(Path::new(&ca))
                .map_err(|e| format!("AISTACK_SMTP_TLS_CA: {e}"))?;
            options.smtp_tls_ca = Some(ca);
        }
        if let Some(user) = var("AISTACK_SMTP_USER") {
            options.smtp_credentials =
                Some((user, var("AISTACK_SMTP_PASSWORD").unwrap_or_default()));
        }
        if let Some(version) = number("AISTACK_EMAIL_UNSUBSCRIBE_KEY_VERSION")? {
            options.unsubscribe_keys[0].version = version;
        }
        for old in var("AISTACK_EMAIL_UNSUBSCRIBE_OLD_KEYS")
            .unwrap_or_default()
            .split(',')
        {
            if old.trim().is_empty() {
                continue;
            }
            let (version, secret) = old
                .trim()
                .split_once(':')
                .and_then(|(v, s)| Some((v.parse().ok()?, s)))
                .ok_or("AISTACK_EMAIL_UNSUBSCRIBE_OLD_KEYS must be version:secret,…")?;
            options.unsubscribe_keys.push(UnsubscribeKey {
                version,
                secret: secret.as_bytes().to_vec(),
            });
        }
        if let Some(n) = number::<usize>("AISTACK_EMAIL_CONCURRENCY")? {
            options.concurrency = n.max(1);
        }
        if let Some(n) = number::<u32>("AISTACK_EMAIL_RATE")? {
            options.rate_per_second = n.max(1);
        }
        if let Some(n) = number::<u32>("AISTACK_EMAIL_MAX_ATTEMPTS")? {
            options.max_attempts = n.max(1);
        }
        if let Some(ms) = number::<u64>("AISTACK_EMAIL_POLL_MS")? {
            options.poll_interval = Duration::from_millis(ms.max(10));
        }
        Ok(Some(options))
    }

    /// Checks what [`crate::serve_with`] would refuse: a `from` that is not an address, a
    /// host name TLS cannot use, a CA certificate that is no usable trust anchor.
    ///
    /// # Errors
    /// What is wrong, and which setting.
    pub fn check(&self) -> Result<(), Unusable> {
        super::sender::Sender::new(std::sync::Arc::new(self.clone())).map(drop)
    }

    /// The backoff before attempt `attempts + 1`: `retry_base × 2^(attempts-1)`, at most
    /// one hour.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        self.retry_base
            .saturating_mul(factor)
            .min(Duration::from_secs(3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_base(base: Duration) -> EmailOptions {
        let mut options = EmailOptions::new(
            "smtp.example.test",
            "notify@example.test",
            "https://example.test",
            vec![7; 32],
        );
        options.retry_base = base;
        options
    }

    #[test]
    fn backoff_doubles_per_attempt_from_the_base_up_to_an_hour() {
        let options = with_base(Duration::from_secs(30));
        let waits: Vec<u64> = (1..=10).map(|a| options.backoff(a).as_secs()).collect();
        assert_eq!(
            waits,
            [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600],
            "after attempts 1 to 10"
        );
        assert_eq!(
            options.backoff(0),
            Duration::from_secs(30),
            "no attempt yet"
        );
        assert_eq!(options.backoff(u32::MAX), Duration::from_secs(3600));

        let quick = with_base(Duration::from_millis(50));
        assert_eq!(quick.backoff(1), Duration::from_millis(50));
        assert_eq!(quick.backoff(4), Duration::from_millis(400));
        assert_eq!(quick.backoff(u32::MAX), Duration::from_secs(3600));

        // A base above the cap is capped from the first retry, without overflow.
        let huge = with_base(Duration::MAX);
        assert_eq!(huge.backoff(1), Duration::from_secs(3600));
        assert_eq!(huge.backoff(30), Duration::from_secs(3600));
    }
}

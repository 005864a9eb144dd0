//! `backend.email` and `backend.due_soon`: the collaboration backend's email delivery
//! and due-date reminders, validated into its own option types.

use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use aistack_collab::email::{EmailOptions, SmtpTls, TrustedCa, UnsubscribeKey};
use serde_saphyr::Spanned;

use super::error::Diagnostics;
use super::surface::{DueSoonConf, EmailConf, SmtpTlsConf};
use super::units::HumanDuration;

/// Shortest unsubscribe secret, in bytes.
const MIN_SECRET: usize = 16;

/// `value` when within `range`, else an error at it and `None`.
fn within<T: PartialOrd + Copy + std::fmt::Debug>(
    d: &mut Diagnostics,
    value: Option<&Spanned<T>>,
    key: &str,
    range: RangeInclusive<T>,
    shown: &str,
) -> Option<T> {
    let value = value?;
    if range.contains(&value.value) {
        Some(value.value)
    } else {
        d.error(&value.referenced, key, format!("must be {shown}"));
        None
    }
}

fn duration(
    d: &mut Diagnostics,
    value: Option<&Spanned<HumanDuration>>,
    key: &str,
    range: RangeInclusive<Duration>,
    shown: &str,
) -> Option<Duration> {
    let value = value?;
    if range.contains(&value.value.0) {
        Some(value.value.0)
    } else {
        d.error(&value.referenced, key, format!("must be {shown}"));
        None
    }
}

/// The email options of `backend.email` (files relative to `base_dir`), or `None` with
/// errors recorded in `d`.
pub(super) fn email(
    d: &mut Diagnostics,
    conf: &EmailConf,
    base_dir: &Path,
) -> Option<EmailOptions> {
    let errors = d.error_count();
    let secret = &conf.unsubscribe_secret;
    if secret.value.len() < MIN_SECRET {
        d.error(
            &secret.referenced,
            "backend.email.unsubscribe_secret",
            format!("must be at least {MIN_SECRET} bytes"),
        );
    }
    let public_url = conf.public_url.as_ref().map_or_else(
        || "http://localhost:8080".to_owned(),
        |url| {
            if !(url.value.starts_with("http://") || url.value.starts_with("https://")) {
                d.error(
                    &url.referenced,
                    "backend.email.public_url",
                    "must be an http:// or https:// URL",
                );
            }
            url.value.clone()
        },
    );
    let mut options = EmailOptions::new(
        conf.smtp_host.value.clone(),
        conf.from.value.clone(),
        public_url,
        secret.value.clone().into_bytes(),
    );
    let key = "backend.email";
    if let Some(port) = within(
        d,
        conf.smtp_port.as_ref(),
        &format!("{key}.smtp_port"),
        1..=u16::MAX,
        "from 1 to 65535",
    ) {
        options.smtp_port = port;
    }
    options.smtp_tls = match conf.smtp_tls.unwrap_or(SmtpTlsConf::Starttls) {
        SmtpTlsConf::None => SmtpTls::None,
        SmtpTlsConf::Starttls => SmtpTls::StartTls,
        SmtpTlsConf::Tls => SmtpTls::Implicit,
    };
    if let Some(ca) = &conf.smtp_tls_ca {
        let ca_key = format!("{key}.smtp_tls_ca");
        if options.smtp_tls == SmtpTls::None {
            d.error(
                &ca.referenced,
                &ca_key,
                "has no effect with `smtp_tls: none`: use `starttls` or `tls`",
            );
        } else if let Some(certs) = super::tls::read_ca(d, ca, &ca_key, base_dir) {
            options.smtp_tls_ca = Some(TrustedCa {
                path: base_dir.join(&ca.value),
                certificates: certs.into_iter().map(|c| c.to_vec()).collect(),
            });
        }
    }
    match (&conf.smtp_user, &conf.smtp_password) {
        (Some(user), password) => {
            let password = password
                .as_ref()
                .map(|p| p.value.clone())
                .unwrap_or_default();
            options.smtp_credentials = Some((user.value.clone(), password));
        }
        (None, Some(password)) => d.error(
            &password.referenced,
            format!("{key}.smtp_password"),
            "needs `smtp_user` too",
        ),
        (None, None) => {}
    }
    let timeout = duration(
        d,
        conf.smtp_timeout.as_ref(),
        &format!("{key}.smtp_timeout"),
        Duration::from_secs(1)..=Duration::from_secs(600),
        "between 1s and 10m",
    );
    if let Some(timeout) = timeout {
        options.smtp_timeout = timeout;
    }
    let version = conf.unsubscribe_key_version.as_ref();
    if let Some(version) = within(
        d,
        version,
        &format!("{key}.unsubscribe_key_version"),
        1..=u32::MAX,
        "at least 1",
    ) {
        options.unsubscribe_keys[0].version = version;
    }
    for (&version, old) in &conf.unsubscribe_old_keys {
        let old_key = format!("{key}.unsubscribe_old_keys.{version}");
        if version == options.unsubscribe_keys[0].version {
            d.error(
                &old.referenced,
                &old_key,
                "is the current `unsubscribe_key_version`",
            );
        } else if old.value.len() < MIN_SECRET {
            d.error(
                &old.referenced,
                &old_key,
                format!("must be at least {MIN_SECRET} bytes"),
            );
        }
        options.unsubscribe_keys.push(UnsubscribeKey {
            version,
            secret: old.value.clone().into_bytes(),
        });
    }
    if let Some(n) = within(
        d,
        conf.concurrency.as_ref(),
        &format!("{key}.concurrency"),
        1..=256,
        "from 1 to 256",
    ) {
        options.concurrency = n;
    }
    if let Some(n) = within(
        d,
        conf.rate.as_ref(),
        &format!("{key}.rate"),
        1..=10_000,
        "from 1 to 10000",
    ) {
        options.rate_per_second = n;
    }
    if let Some(n) = within(
        d,
        conf.max_attempts.as_ref(),
        &format!("{key}.max_attempts"),
        1..=100,
        "from 1 to 100",
    ) {
        options.max_attempts = n;
    }
    let poll = duration(
        d,
        conf.poll_interval.as_ref(),
        &format!("{key}.poll_interval"),
        Duration::from_millis(10)..=Duration::from_secs(3600),
        "between 10ms and 1h",
    );
    if let Some(poll) = poll {
        options.poll_interval = poll;
    }
    if d.error_count() > errors {
        return None;
    }
    // What the SMTP transport itself refuses: an address it cannot parse, a host name
    // TLS cannot check, a CA certificate that is no trust anchor.
    if let Err(e) = options.check() {
        let at = match e.setting {
            "from" => &conf.from.referenced,
            "smtp_tls_ca" => conf
                .smtp_tls_ca
                .as_ref()
                .map_or(&conf.smtp_host.referenced, |ca| &ca.referenced),
            _ => &conf.smtp_host.referenced,
        };
        d.error(at, format!("{key}.{}", e.setting), e.message);
        return None;
    }
    Some(options)
}

/// `backend.due_soon`: (window, scan interval).
pub(super) fn due_soon(d: &mut Diagnostics, conf: &DueSoonConf) -> (Duration, Duration) {
    let day = Duration::from_secs(24 * 3600);
    let window = duration(
        d,
        conf.window.as_ref(),
        "backend.due_soon.window",
        Duration::from_secs(60)..=30 * day,
        "between 1m and 30 days",
    );
    let scan = duration(
        d,
        conf.scan_interval.as_ref(),
        "backend.due_soon.scan_interval",
        Duration::from_secs(1)..=Duration::from_secs(3600),
        "between 1s and 1h",
    );
    (
        window.unwrap_or(aistack_collab::DEFAULT_DUE_SOON_WINDOW),
        scan.unwrap_or(aistack_collab::DEFAULT_DUE_SOON_SCAN),
    )
}

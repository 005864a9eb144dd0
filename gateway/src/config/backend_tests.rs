//! `backend.email` and `backend.due_soon`: read with `${ENV}` secrets, defaults, and
//! every bad value named by file, line, column and key.

use std::path::Path;
use std::time::Duration;

use aistack_collab::email::SmtpTls;

use super::{ConfigErrors, GatewayConfig, load_str};

fn load_with(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<GatewayConfig, ConfigErrors> {
    load_str(
        text,
        "test.yaml",
        Path::new("."),
        Path::new("/tmp/data"),
        env,
    )
}

fn env(name: &str) -> Option<String> {
    match name {
        "SMTP_PASSWORD" => Some("hunter2".to_owned()),
        "UNSUB" => Some("a-secret-of-twenty-bytes".to_owned()),
        _ => None,
    }
}

const EMAIL: &str = "backend:
  email:
    smtp_host: smtp.example.com
    smtp_port: 465
    smtp_tls: tls
    smtp_user: aistack
    smtp_password: ${SMTP_PASSWORD}
    from: AI Stack <notify@example.com>
    public_url: https://aistack.example.com/
    unsubscribe_secret: ${UNSUB}
    unsubscribe_key_version: 2
    unsubscribe_old_keys:
      1: an-older-secret-of-20b
    concurrency: 2
    rate: 5
    max_attempts: 3
    poll_interval: 250ms
  due_soon:
    window: 48h
    scan_interval: 30s
";

#[test]
fn email_and_due_soon_are_read_with_env_secrets() {
    let cfg = load_with(EMAIL, &env).expect("valid");
    let email = cfg.backend.email.expect("email settings");
    assert_eq!(email.smtp_host, "smtp.example.com");
    assert_eq!(email.smtp_port, 465);
    assert_eq!(email.smtp_tls, SmtpTls::Implicit);
    assert_eq!(
        email.smtp_credentials,
        Some(("aistack".to_owned(), "hunter2".to_owned()))
    );
    assert_eq!(email.from, "AI Stack <notify@example.com>");
    assert_eq!(email.public_url, "https://aistack.example.com");
    let keys: Vec<(u32, &[u8])> = email
        .unsubscribe_keys
        .iter()
        .map(|k| (k.version, k.secret.as_slice()))
        .collect();
    assert_eq!(
        keys,
        [
            (2, b"a-secret-of-twenty-bytes".as_slice()),
            (1, b"an-older-secret-of-20b".as_slice())
        ]
    );
    assert_eq!(
        (email.concurrency, email.rate_per_second, email.max_attempts),
        (2, 5, 3)
    );
    assert_eq!(email.poll_interval, Duration::from_millis(250));
    assert_eq!(cfg.backend.due_soon_window, Duration::from_secs(48 * 3600));
    assert_eq!(cfg.backend.due_soon_scan, Duration::from_secs(30));
    // The admin API's view shows neither secret.
    let shown = super::redact::redacted(&load_with(EMAIL, &env).expect("valid")).to_string();
    assert!(
        !shown.contains("hunter2") && !shown.contains("twenty-bytes"),
        "{shown}"
    );
    assert!(!shown.contains("an-older-secret"), "{shown}");
}

#[test]
fn without_email_there_is_none_and_due_soon_has_defaults() {
    let cfg = load_with("backend:\n  enabled: true\n", &env).expect("valid");
    assert!(cfg.backend.email.is_none());
    assert_eq!(cfg.backend.due_soon_window, Duration::from_secs(24 * 3600));
    assert_eq!(cfg.backend.due_soon_scan, Duration::from_secs(60));
    // Only the required keys: the documented defaults.
    let minimal = "backend:\n  email:\n    smtp_host: mail.local\n    from: n@example.com\n    unsubscribe_secret: ${UNSUB}\n";
    let email = load_with(minimal, &env)
        .expect("valid")
        .backend
        .email
        .expect("email");
    assert_eq!((email.smtp_port, email.smtp_tls), (587, SmtpTls::StartTls));
    assert_eq!(email.public_url, "http://localhost:8080");
    assert_eq!(email.smtp_credentials, None);
}

#[test]
fn bad_email_settings_are_all_named_by_place_and_key() {
    let text = "backend:
  email:
    smtp_host: smtp.example.com
    smtp_port: 0
    smtp_password: lonely
    from: not an address
    public_url: ftp://x
    unsubscribe_secret: short
    concurrency: 0
    poll_interval: 2h
  due_soon:
    window: 10s
";
    let e = load_with(text, &env).expect_err("refused");
    let places: Vec<(&str, u64, u64)> =
        e.0.iter()
            .map(|e| (e.key.as_str(), e.line, e.column))
            .collect();
    assert_eq!(
        places,
        [
            ("backend.email.unsubscribe_secret", 8, 25),
            ("backend.email.public_url", 7, 17),
            ("backend.email.smtp_port", 4, 16),
            ("backend.email.smtp_password", 5, 20),
            ("backend.email.concurrency", 9, 18),
            ("backend.email.poll_interval", 10, 20),
            ("backend.due_soon.window", 12, 13),
        ],
        "{e}"
    );
    assert!(e.0[0].message.contains("at least 16 bytes"), "{e}");
    assert!(
        e.to_string()
            .starts_with("test.yaml:8:25: `backend.email.unsubscribe_secret`: must be"),
        "{e}"
    );
    // Once the rest is right, the address is checked as the mailer would.
    let text = "backend:\n  email:\n    smtp_host: smtp.example.com\n    from: not an address\n    unsubscribe_secret: ${UNSUB}\n";
    let e = load_with(text, &env).expect_err("refused");
    assert_eq!(
        (e.0[0].key.as_str(), e.0[0].line),
        ("backend.email.from", 4),
        "{e}"
    );
    // Unknown keys and TLS modes are refused by name.
    let e = load_with(
        "backend:\n  email:\n    smtp_host: h\n    smtp_tls: ssl\n    from: a@b.c\n    unsubscribe_secret: ${UNSUB}\n",
        &env,
    )
    .expect_err("refused");
    assert_eq!((e.0[0].line, e.0[0].column), (4, 15), "{e}");
    assert!(e.0[0].message.contains("starttls"), "{e}");
    let e = load_with(
        "backend:\n  email:\n    smtp_host: h\n    smtp_pass: x\n    from: a@b.c\n    unsubscribe_secret: ${UNSUB}\n",
        &env,
    )
    .expect_err("refused");
    assert_eq!(e.0[0].key, "backend.email.smtp_pass", "{e}");
    assert!(e.0[0].message.contains("unknown field"), "{e}");
}

/// A self-signed CA certificate, PEM.
fn ca_pem() -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().expect("key");
    params.self_signed(&key).expect("CA").pem()
}

fn with_ca(tls: &str, ca: &str) -> String {
    format!(
        "backend:\n  email:\n    smtp_host: mail.internal\n    smtp_tls: {tls}\n    smtp_tls_ca: {ca}\n    from: n@example.com\n    unsubscribe_secret: ${{UNSUB}}\n"
    )
}

fn load_in(dir: &Path, text: &str) -> Result<GatewayConfig, ConfigErrors> {
    load_str(text, "test.yaml", dir, Path::new("/tmp/data"), &env)
}

#[test]
fn an_smtp_ca_file_is_read_relative_to_the_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pem = ca_pem();
    std::fs::write(dir.path().join("smtp-ca.pem"), format!("{pem}{pem}")).expect("write");
    let cfg = load_in(dir.path(), &with_ca("starttls", "smtp-ca.pem")).expect("valid");
    let shown = super::redact::redacted(&cfg).to_string();
    let email = cfg.backend.email.expect("email");
    let ca = email.smtp_tls_ca.expect("the CA");
    assert_eq!(ca.path, dir.path().join("smtp-ca.pem"));
    assert_eq!(ca.certificates.len(), 2);
    // The admin API names the file.
    assert!(shown.contains("smtp-ca.pem"), "{shown}");
    // Without the key: none, the Mozilla roots only.
    let minimal = "backend:\n  email:\n    smtp_host: h.example\n    from: n@example.com\n    unsubscribe_secret: ${UNSUB}\n";
    let email = load_in(dir.path(), minimal).expect("valid").backend.email;
    assert!(email.expect("email").smtp_tls_ca.is_none());
}

#[test]
fn a_bad_smtp_ca_file_is_named_by_place_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("text.pem"), "no certificate here\n").expect("write");
    std::fs::write(
        dir.path().join("broken.pem"),
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("junk.pem"),
        "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("ca.pem"), ca_pem()).expect("write");
    for (tls, file, message) in [
        ("tls", "missing.pem", "cannot read PEM certificates from"),
        (
            "starttls",
            "text.pem",
            "no PEM certificate (`BEGIN CERTIFICATE`)",
        ),
        (
            "starttls",
            "broken.pem",
            "cannot read PEM certificates from",
        ),
        ("tls", "junk.pem", "certificate 1 in"),
        ("none", "ca.pem", "has no effect with `smtp_tls: none`"),
    ] {
        let e = load_in(dir.path(), &with_ca(tls, file)).expect_err(file);
        assert_eq!(e.0.len(), 1, "{e}");
        let error = &e.0[0];
        assert_eq!(
            (error.key.as_str(), error.line, error.column),
            ("backend.email.smtp_tls_ca", 5, 18),
            "{e}"
        );
        assert!(error.message.contains(message), "{file}: {e}");
        assert!(
            e.to_string()
                .starts_with("test.yaml:5:18: `backend.email.smtp_tls_ca`: "),
            "{e}"
        );
    }
}

//! SMTP over TLS against the sink on loopback, with a certificate made here and signed
//! by a CA made here: with that CA in `smtp_tls_ca`, an email arrives over STARTTLS and
//! over implicit TLS, whole (envelope, both parts, the unsubscribe headers) and with
//! nothing but `EHLO`/`STARTTLS` in plain text; without it (or with another CA) the
//! certificate is refused, the email is retried and then recorded as failed, and
//! nothing reaches the server, and so it is for a certificate of the trusted CA made
//! out to another name; a server that offers no STARTTLS gets no plain-text
//! fallback.

use std::path::Path;
use std::sync::Arc;

use aistack_collab::email::{EmailOptions, OutboxEmail, SmtpTls, TrustedCa};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;

use super::email::{options_for, outbox_until, parse, prefer};
use super::served::{DEADLINE, Served, comment};
use crate::smtp_sink::{Command, SinkTls, SmtpSink};
use crate::support::TestApp;
use crate::tasks::{World, id, new_task, world};

on_both_dialects!(
    starttls_delivers_with_the_configured_ca,
    implicit_tls_delivers_with_the_configured_ca,
    starttls_without_the_ca_sends_nothing,
    implicit_tls_with_another_ca_sends_nothing,
    a_certificate_for_another_name_sends_nothing,
    a_server_without_starttls_gets_no_plain_text,
);

/// A certificate authority made for one test.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA"),
        }
    }

    /// A server config presenting a certificate for `name` signed by this CA.
    fn server(&self, name: &str) -> Arc<rustls::ServerConfig> {
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .expect("server config");
        Arc::new(config)
    }

    /// This CA as `smtp_tls_ca`, through a PEM file in `dir` as an operator gives it.
    fn trusted(&self, dir: &Path) -> TrustedCa {
        let path = dir.join("smtp-ca.pem");
        std::fs::write(&path, self.issuer.pem()).expect("write the CA");
        TrustedCa::from_pem_file(&path).expect("the CA file")
    }
}

const UNKNOWN_ISSUER: &str = "invalid peer certificate: UnknownIssuer";

/// `options_for(sink)` with `tls`, `ca` trusted and two quick attempts.
fn tls_options(sink: &SmtpSink, tls: SmtpTls, ca: Option<TrustedCa>) -> EmailOptions {
    let mut options = options_for(sink);
    options.smtp_tls = tls;
    options.smtp_tls_ca = ca;
    options.max_attempts = 2;
    options
}

/// Serves `app`, gives gus an address and has mia mention him: one email queued.
async fn mention_gus(app: &TestApp) -> (Served, World) {
    let w = world(app).await;
    let task = id(&new_task(app, &w.mia, &w.ws, json!({ "title": "Rotate <keys>" })).await);
    let served = Served::start(app).await;
    prefer(&served, &w.gus, json!({ "email": "gus@example.test" })).await;
    comment(&served, &w.mia, &task, "@gus the certificate expires").await;
    (served, w)
}

fn verbs(commands: &[Command], encrypted: bool) -> Vec<&str> {
    commands
        .iter()
        .filter(|c| c.encrypted == encrypted)
        .map(|c| c.verb.as_str())
        .collect()
}

/// The email arrived over TLS, whole, and the outbox says sent.
async fn assert_delivered(app: &TestApp, served: Served, w: &World, sink: &SmtpSink) {
    let got = sink.wait_for(1, DEADLINE).await;
    assert!(got[0].encrypted, "the message came in plain text");
    assert_eq!(got[0].from, "notify@aistack.test");
    let mail = parse(&got[0]);
    assert_eq!(mail.recipients, ["gus@example.test"]);
    assert_eq!(mail.to, "gus@example.test");
    assert_eq!(mail.subject, "mia mentioned you in “Rotate <keys>”");
    assert!(
        mail.text.contains("> @gus the certificate expires"),
        "{}",
        mail.text
    );
    assert!(mail.html.contains("Rotate &lt;keys&gt;"), "{}", mail.html);
    assert!(
        mail.list_unsubscribe
            .starts_with("<http://gateway.test/api/v1/email/unsubscribe?"),
        "{}",
        mail.list_unsubscribe
    );
    assert_eq!(mail.list_unsubscribe_post, "List-Unsubscribe=One-Click");
    let rows = outbox_until(app, &w.gus, "sent", |r| {
        r.first().is_some_and(|e| e.status == "sent")
    })
    .await;
    assert_eq!(rows[0].attempts, 1);
    served.stop().await;
}

async fn starttls_delivers_with_the_configured_ca(mut app: TestApp) {
    let ca = TestCa::new("SMTP test CA");
    let sink = SmtpSink::start_with(SinkTls::StartTls(ca.server("127.0.0.1"))).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let options = tls_options(&sink, SmtpTls::StartTls, Some(ca.trusted(dir.path())));
    app.options.email = Some(options);
    let (served, w) = mention_gus(&app).await;
    assert_delivered(&app, served, &w, &sink).await;
    // Only the greeting's EHLO and the STARTTLS itself went in plain text; the client
    // said EHLO again inside TLS, then the envelope and the message.
    let commands = sink.commands();
    assert_eq!(verbs(&commands, false), ["EHLO", "STARTTLS"]);
    let encrypted = verbs(&commands, true);
    assert_eq!(
        encrypted[..4],
        ["EHLO", "MAIL", "RCPT", "DATA"],
        "{encrypted:?}"
    );
}

async fn implicit_tls_delivers_with_the_configured_ca(mut app: TestApp) {
    let ca = TestCa::new("SMTP test CA");
    let sink = SmtpSink::start_with(SinkTls::Implicit(ca.server("127.0.0.1"))).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let options = tls_options(&sink, SmtpTls::Implicit, Some(ca.trusted(dir.path())));
    app.options.email = Some(options);
    let (served, w) = mention_gus(&app).await;
    assert_delivered(&app, served, &w, &sink).await;
    let commands = sink.commands();
    assert_eq!(verbs(&commands, false), Vec::<&str>::new());
    let encrypted = verbs(&commands, true);
    assert_eq!(
        encrypted[..4],
        ["EHLO", "MAIL", "RCPT", "DATA"],
        "{encrypted:?}"
    );
}

/// Two attempts (a certificate error is a connection failure, which the outbox retries
/// like any other), each refused at the handshake; then recorded as failed with the
/// certificate error (`expected` in it); no envelope, no message ever reached the
/// server.
async fn assert_refused_certificate(
    app: &TestApp,
    served: Served,
    w: &World,
    sink: &SmtpSink,
    expected: &str,
) {
    let rows: Vec<OutboxEmail> = outbox_until(app, &w.gus, "a failure", |r| {
        r.first().is_some_and(|e| e.status == "failed")
    })
    .await;
    assert_eq!(rows[0].attempts, 2, "retried once, then failed");
    let error = rows[0].last_error.as_deref().unwrap_or_default();
    assert!(error.contains(expected), "{expected} in {error}");
    sink.wait_failed_handshakes(2, DEADLINE).await;
    assert!(sink.accepted().is_empty());
    assert_eq!(sink.data_attempts(), 0);
    let commands = sink.commands();
    assert!(verbs(&commands, true).is_empty(), "{commands:?}");
    assert!(
        verbs(&commands, false)
            .iter()
            .all(|v| ["EHLO", "STARTTLS"].contains(v)),
        "{commands:?}"
    );
    served.stop().await;
}

async fn starttls_without_the_ca_sends_nothing(mut app: TestApp) {
    let ca = TestCa::new("SMTP test CA");
    let sink = SmtpSink::start_with(SinkTls::StartTls(ca.server("127.0.0.1"))).await;
    app.options.email = Some(tls_options(&sink, SmtpTls::StartTls, None));
    let (served, w) = mention_gus(&app).await;
    assert_refused_certificate(&app, served, &w, &sink, UNKNOWN_ISSUER).await;
    assert_eq!(
        verbs(&sink.commands(), false),
        ["EHLO", "STARTTLS", "EHLO", "STARTTLS"]
    );
}

async fn implicit_tls_with_another_ca_sends_nothing(mut app: TestApp) {
    let ca = TestCa::new("SMTP test CA");
    let sink = SmtpSink::start_with(SinkTls::Implicit(ca.server("127.0.0.1"))).await;
    let dir = tempfile::tempdir().expect("temp dir");
    // A CA of its own is trusted, not the one that signed the server's certificate.
    let other = TestCa::new("another CA").trusted(dir.path());
    app.options.email = Some(tls_options(&sink, SmtpTls::Implicit, Some(other)));
    let (served, w) = mention_gus(&app).await;
    assert_refused_certificate(&app, served, &w, &sink, UNKNOWN_ISSUER).await;
    assert!(sink.commands().is_empty());
}

async fn a_certificate_for_another_name_sends_nothing(mut app: TestApp) {
    let ca = TestCa::new("SMTP test CA");
    // Signed by the trusted CA, but for a name other than `smtp_host` (127.0.0.1).
    let sink = SmtpSink::start_with(SinkTls::Implicit(ca.server("mail.other.test"))).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let options = tls_options(&sink, SmtpTls::Implicit, Some(ca.trusted(dir.path())));
    app.options.email = Some(options);
    let (served, w) = mention_gus(&app).await;
    let expected = "invalid peer certificate: certificate not valid for name";
    assert_refused_certificate(&app, served, &w, &sink, expected).await;
    assert!(sink.commands().is_empty());
}

async fn a_server_without_starttls_gets_no_plain_text(mut app: TestApp) {
    let ca = TestCa::new("SMTP test CA");
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let options = tls_options(&sink, SmtpTls::StartTls, Some(ca.trusted(dir.path())));
    app.options.email = Some(options);
    let (served, w) = mention_gus(&app).await;
    let rows = outbox_until(&app, &w.gus, "a failure", |r| {
        r.first().is_some_and(|e| e.status == "failed")
    })
    .await;
    // Retried like a connection failure (the server may be mid-upgrade), then failed.
    assert_eq!(rows[0].attempts, 2);
    let error = rows[0].last_error.as_deref().unwrap_or_default();
    assert!(error.contains("STARTTLS is not supported"), "{error}");
    assert!(sink.accepted().is_empty());
    assert_eq!(sink.data_attempts(), 0);
    // Each attempt said EHLO, saw no STARTTLS offered and gave up: no envelope.
    let commands = sink.commands();
    assert!(
        verbs(&commands, false)
            .iter()
            .all(|v| ["EHLO", "QUIT"].contains(v)),
        "{commands:?}"
    );
    assert_eq!(
        verbs(&commands, false)
            .iter()
            .filter(|v| **v == "EHLO")
            .count(),
        2
    );
    served.stop().await;
}

#[test]
fn a_ca_file_must_hold_pem_certificates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.pem");
    let e = TrustedCa::from_pem_file(&missing).expect_err("missing");
    assert!(
        e.starts_with("cannot read ") && e.contains("missing.pem"),
        "{e}"
    );
    let text = dir.path().join("text.pem");
    std::fs::write(&text, "not a certificate\n").expect("write");
    let e = TrustedCa::from_pem_file(&text).expect_err("no PEM");
    assert!(e.contains("no PEM certificate"), "{e}");
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let e = TrustedCa::from_pem_file(&broken).expect_err("bad base64");
    assert!(e.contains("is not valid PEM"), "{e}");
    let ca = TestCa::new("SMTP test CA").trusted(dir.path());
    assert_eq!(ca.certificates.len(), 1);
}

#[test]
fn a_ca_that_is_no_certificate_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("junk.pem");
    // Well-formed PEM around bytes that are no X.509 certificate.
    std::fs::write(
        &path,
        "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let mut options = EmailOptions::new(
        "smtp.example.com",
        "n@example.com",
        "http://x",
        b"0123456789abcdef".to_vec(),
    );
    options.smtp_tls_ca = Some(TrustedCa::from_pem_file(&path).expect("PEM"));
    let e = options.check().expect_err("refused");
    assert_eq!(e.setting, "smtp_tls_ca");
    assert!(e.message.contains("certificate 1 in"), "{}", e.message);
}

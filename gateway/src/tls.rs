//! TLS termination on the proxy listeners, on Pingora's rustls backend.
//!
//! Pingora builds one rustls `ServerConfig` per listener at start and never rebuilds
//! it. So that certificates (and the client CA) can change without a restart, the
//! listener is given two objects that look the material up *per handshake* in the
//! config snapshot in force:
//! - [`CertResolver`] picks the certificate for the client's SNI name (exact name, then
//!   a wildcard, else the listener's first certificate) and enforces `min_version`;
//! - [`ClientVerifier`] asks for and verifies client certificates (mTLS) as the
//!   listener's `client_auth` says.
//!
//! A reload swaps the snapshot, so the next handshake uses the new files; connections
//! already established keep their session. What the `ServerConfig` itself holds — the
//! ALPN protocols (`http2`) and whether the listener speaks TLS at all — needs a new
//! process (`--upgrade`: [`crate::server::handover`]), like the listener's address.

use std::net::SocketAddr;
use std::sync::Arc;

use pingora::listeners::TlsAccept;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::ALPN;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::config::model::{ListenerTls, TlsVersion};
use crate::snapshot::SnapshotHandle;

/// The TLS settings Pingora's listener at `address` is built with. `initial` is the
/// listener's TLS config at start; it serves whenever the snapshot in force has no TLS
/// for this address (a reload that removed it takes effect only after a restart).
pub fn listener_settings(
    address: SocketAddr,
    initial: Arc<ListenerTls>,
    snapshots: SnapshotHandle,
) -> pingora::Result<TlsSettings> {
    // The rustls TlsSettings is built by Pingora from paths or from a resolver; with a
    // resolver the paths are never read.
    let mut settings = TlsSettings::with_callbacks(Box::new(NoCallbacks))?;
    if initial.http2 {
        settings.enable_h2();
    } else {
        settings.set_alpn(ALPN::H1);
    }
    let live = Live {
        address,
        initial,
        snapshots,
    };
    settings.set_cert_resolver(Arc::new(CertResolver { live: live.clone() }));
    settings.set_client_cert_verifier(Arc::new(ClientVerifier {
        live,
        provider: Arc::new(rustls::crypto::ring::default_provider()),
    }));
    Ok(settings)
}

/// Pingora's rustls `TlsSettings` has no public constructor without callbacks that does
/// not also take certificate paths; these callbacks do nothing.
struct NoCallbacks;

#[async_trait::async_trait]
impl TlsAccept for NoCallbacks {}

/// The listener's TLS material in the snapshot in force.
#[derive(Clone)]
struct Live {
    address: SocketAddr,
    initial: Arc<ListenerTls>,
    snapshots: SnapshotHandle,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("address", &self.address)
            .finish()
    }
}

impl Live {
    fn current(&self) -> Arc<ListenerTls> {
        let snapshot = self.snapshots.load();
        snapshot
            .config
            .listeners
            .iter()
            .find(|l| l.address == self.address)
            .and_then(|l| l.tls.clone())
            .unwrap_or_else(|| Arc::clone(&self.initial))
    }
}

/// Chooses the certificate by SNI, per handshake (see the module docs).
#[derive(Debug)]
struct CertResolver {
    live: Live,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let tls = self.live.current();
        // Pingora's rustls backend enables TLS 1.2 and 1.3 and offers no way to narrow
        // that; a client that offers no TLS 1.3 cipher suite cannot negotiate 1.3, so
        // refusing it here (no certificate: the handshake fails with an alert) is
        // `min_version: 1.3`.
        if tls.min_version == TlsVersion::Tls13 && !offers_tls13(hello.cipher_suites()) {
            tracing::debug!(listener = %self.live.address, "TLS handshake refused: client offers no TLS 1.3");
            return None;
        }
        Some(Arc::clone(&tls.select(hello.server_name()).key))
    }
}

/// Whether a connection that negotiated `negotiated` (Pingora's digest: `TLSv1_2`,
/// `TLSv1_3`) on the listener with local address `local` meets its `min_version`.
///
/// The resolver refuses, during the handshake, clients that offer no TLS 1.3 cipher
/// suite; a client that offers some but still negotiates TLS 1.2 is caught here, right
/// after the handshake and before any request is read.
pub fn version_allowed(
    snapshots: &SnapshotHandle,
    local: Option<SocketAddr>,
    negotiated: &str,
) -> bool {
    let Some(local) = local else {
        return true;
    };
    let snapshot = snapshots.load();
    let listener = snapshot.config.listeners.iter().find(|l| {
        l.address == local || (l.address.ip().is_unspecified() && l.address.port() == local.port())
    });
    let Some(tls) = listener.and_then(|l| l.tls.as_ref()) else {
        return true;
    };
    let version = match negotiated.replace('_', ".").as_str() {
        v if v.ends_with("1.3") => TlsVersion::Tls13,
        _ => TlsVersion::Tls12,
    };
    if version < tls.min_version {
        tracing::debug!(listener = %local, negotiated, "TLS connection closed: below min_version");
        return false;
    }
    true
}

/// TLS 1.3 cipher suites are the 0x13XX range (RFC 8446, appendix B.4).
fn offers_tls13(suites: &[CipherSuite]) -> bool {
    suites.iter().any(|s| u16::from(*s) >> 8 == 0x13)
}

/// Client certificates as the listener's `client_auth` says, per handshake.
#[derive(Debug)]
struct ClientVerifier {
    live: Live,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.live.current().client_auth.is_some()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.live
            .current()
            .client_auth
            .as_ref()
            .is_some_and(|c| c.required)
    }

    /// No hints (the CA names can change under a running listener): clients send the
    /// certificate they have, which is what the common ones do anyway.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match &self.live.current().client_auth {
            Some(c) => c
                .verifier
                .verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::General(
                "this listener does not accept client certificates".to_owned(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls13_suites_are_recognised() {
        assert!(offers_tls13(&[
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            CipherSuite::TLS13_AES_128_GCM_SHA256,
        ]));
        assert!(!offers_tls13(&[
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ]));
    }
}

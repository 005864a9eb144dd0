//! TLS in the config: listener termination (`listeners[].tls`) and TLS to upstreams
//! (`upstreams.NAME.tls`), as written ([`surface`]) and as validated. Certificate, key
//! and CA files are read and checked here, at load ([`pem`]): a missing file, a key that
//! does not belong to its certificate or an unknown TLS version is a config error at its
//! key, so `aistack validate` and a reload refuse exactly what the listener could not use.

mod pem;
pub mod surface;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pingora::protocols::tls::CaType;
use pingora::utils::tls::{WrappedX509, parse_x509};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use serde_saphyr::{Location, Spanned};

use super::error::Diagnostics;
/// `backend.email.smtp_tls_ca` is read like the CA files here.
pub(super) use pem::read_ca;
use surface::VersionText;
pub use surface::{ListenerTlsConf, UpstreamTlsConf};

/// The lowest TLS version a listener accepts. The backend (rustls) speaks 1.2 and 1.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }
}

/// A validated listener TLS setup, with its key material loaded.
#[derive(Debug)]
pub struct ListenerTls {
    /// The first is the default.
    pub certificates: Vec<ServerCert>,
    pub min_version: TlsVersion,
    pub http2: bool,
    pub client_auth: Option<ClientAuth>,
}

/// One certificate chain and its key, with the DNS names it answers for.
#[derive(Debug)]
pub struct ServerCert {
    /// Lower-case DNS names from the certificate (`*.example.com` for wildcards).
    pub names: Vec<String>,
    pub key: Arc<CertifiedKey>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

#[derive(Debug)]
pub struct ClientAuth {
    pub required: bool,
    pub verifier: Arc<dyn ClientCertVerifier>,
    pub ca_path: PathBuf,
}

impl ListenerTls {
    /// The certificate for an SNI name: an exact name, else a wildcard one label deep,
    /// else the default.
    pub fn select(&self, sni: Option<&str>) -> &ServerCert {
        let default = &self.certificates[0];
        let Some(sni) = sni.map(str::to_ascii_lowercase) else {
            return default;
        };
        let exact = self.certificates.iter().find(|c| c.names.contains(&sni));
        let wildcard = || {
            let (_, parent) = sni.split_once('.')?;
            let pattern = format!("*.{parent}");
            self.certificates
                .iter()
                .find(|c| c.names.contains(&pattern))
        };
        exact.or_else(wildcard).unwrap_or(default)
    }
}

/// A validated upstream TLS setup.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub sni: Option<String>,
    pub verify: bool,
    /// CA bundle to trust instead of the system's, with the file it came from.
    pub ca: Option<(PathBuf, Arc<CaType>)>,
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        let path = |t: &Self| t.ca.as_ref().map(|(p, _)| p.clone());
        (&self.sni, self.verify, path(self)) == (&other.sni, other.verify, path(other))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Validates `listeners[i].tls`, reading its files relative to `base_dir`.
pub(super) fn listener_tls(
    d: &mut Diagnostics,
    i: usize,
    conf: &ListenerTlsConf,
    base_dir: &Path,
) -> Option<Arc<ListenerTls>> {
    let key = |field: &str| format!("listeners[{i}].tls.{field}");
    if conf.certificates.is_empty() {
        d.error(
            &Location::UNKNOWN,
            key("certificates"),
            "at least one certificate is required",
        );
    }
    let errors_before = d.error_count();
    let mut certificates = Vec::with_capacity(conf.certificates.len());
    for (j, c) in conf.certificates.iter().enumerate() {
        if let Some(cert) = pem::server_cert(d, &key(&format!("certificates[{j}]")), c, base_dir) {
            if j > 0 && cert.names.is_empty() {
                d.error(
                    &c.cert.referenced,
                    key(&format!("certificates[{j}].cert")),
                    "the certificate names no DNS name (subjectAltName), so SNI can never \
                     choose it; only the first certificate (the default) may lack one",
                );
            }
            certificates.push(cert);
        }
    }
    let min_version = match &conf.min_version {
        None => TlsVersion::Tls12,
        Some(v) => parse_version(d, v, &key("min_version")),
    };
    let client_auth = conf.client_auth.as_ref().and_then(|c| {
        let roots = pem::read_ca(d, &c.ca, &key("client_auth.ca"), base_dir)?;
        let mut store = rustls::RootCertStore::empty();
        for cert in roots {
            if let Err(e) = store.add(cert) {
                d.error(
                    &c.ca.referenced,
                    key("client_auth.ca"),
                    format!("not a usable CA certificate: {e}"),
                );
                return None;
            }
        }
        let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider());
        let builder = if c.required {
            builder
        } else {
            builder.allow_unauthenticated()
        };
        match builder.build() {
            Ok(verifier) => Some(ClientAuth {
                required: c.required,
                verifier,
                ca_path: base_dir.join(&c.ca.value),
            }),
            Err(e) => {
                d.error(&c.ca.referenced, key("client_auth.ca"), e.to_string());
                None
            }
        }
    });
    if d.error_count() > errors_before || certificates.is_empty() {
        return None;
    }
    Some(Arc::new(ListenerTls {
        certificates,
        min_version,
        http2: conf.http2,
        client_auth,
    }))
}

fn parse_version(d: &mut Diagnostics, v: &Spanned<VersionText>, key: &str) -> TlsVersion {
    let text = v.value.0.trim().to_ascii_lowercase();
    let bare = text
        .strip_prefix("tlsv")
        .or_else(|| text.strip_prefix("tls"))
        .unwrap_or(&text);
    match bare {
        "1.2" => TlsVersion::Tls12,
        "1.3" => TlsVersion::Tls13,
        "1.0" | "1" | "1.1" => {
            d.error(
                &v.referenced,
                key,
                format!(
                    "TLS {bare} is not supported (the TLS backend speaks 1.2 and 1.3); \
                     expected \"1.2\" or \"1.3\""
                ),
            );
            TlsVersion::Tls12
        }
        _ => {
            d.error(
                &v.referenced,
                key,
                format!(
                    "unknown TLS version `{}`; expected \"1.2\" or \"1.3\"",
                    v.value.0
                ),
            );
            TlsVersion::Tls12
        }
    }
}

/// Validates `upstreams.NAME.tls`; `None` for plaintext.
pub(super) fn upstream_tls(
    d: &mut Diagnostics,
    name: &str,
    conf: &Spanned<UpstreamTlsConf>,
    base_dir: &Path,
) -> Option<UpstreamTls> {
    let t = &conf.value;
    let key = format!("upstreams.{name}.tls");
    if !t.enabled {
        return None;
    }
    if let Some(sni) = &t.sni
        && rustls::pki_types::ServerName::try_from(sni.as_str()).is_err()
    {
        d.error(
            &conf.referenced,
            format!("{key}.sni"),
            format!("`{sni}` is not a valid DNS name or IP address"),
        );
    }
    let ca = t.ca.as_ref().and_then(|file| {
        let path = base_dir.join(file);
        let at = Spanned {
            value: file.clone(),
            referenced: conf.referenced,
            defined: conf.defined,
        };
        let certs = pem::read_certs(d, &at, &format!("{key}.ca"), &path)?;
        let wrapped: Vec<WrappedX509> = certs
            .into_iter()
            .map(|c| WrappedX509::new(c.to_vec(), parse_x509))
            .collect();
        Some((path, Arc::from(wrapped.into_boxed_slice())))
    });
    Some(UpstreamTls {
        sni: t.sni.clone(),
        verify: t.verify,
        ca,
    })
}

impl super::GatewayConfig {
    /// The certificate, key and CA files the config names: a change to one of them is a
    /// change to the config (the file watcher reloads on it).
    pub fn tls_files(&self) -> Vec<PathBuf> {
        let listeners = self.listeners.iter().filter_map(|l| l.tls.as_deref());
        let mut files: Vec<PathBuf> = listeners
            .flat_map(|t| {
                let certs = t
                    .certificates
                    .iter()
                    .flat_map(|c| [c.cert_path.clone(), c.key_path.clone()]);
                certs.chain(t.client_auth.iter().map(|c| c.ca_path.clone()))
            })
            .collect();
        let upstream_cas = self
            .upstreams
            .iter()
            .filter_map(|u| u.tls.as_ref()?.ca.as_ref());
        files.extend(upstream_cas.map(|(path, _)| path.clone()));
        files.sort();
        files.dedup();
        files
    }
}

/// What an operator should hear about at every load (and `aistack validate` prints):
/// upstreams whose certificates are not verified.
pub fn warnings(cfg: &super::GatewayConfig) -> Vec<String> {
    cfg.upstreams
        .iter()
        .filter(|u| u.tls.as_ref().is_some_and(|t| !t.verify))
        .map(|u| {
            format!(
                "upstreams.{}.tls.verify is false: the upstream's certificate is not verified \
                 (anyone on the path can impersonate it)",
                u.name
            )
        })
        .collect()
}

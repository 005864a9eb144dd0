//! Reading certificate, key and CA files (PEM) into what rustls and Pingora use, each
//! failure recorded at the key that named the file.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde_saphyr::Spanned;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::super::error::Diagnostics;
use super::surface::CertificateConf;
use super::{ServerCert, provider};

pub(super) fn server_cert(
    d: &mut Diagnostics,
    key: &str,
    c: &CertificateConf,
    base_dir: &Path,
) -> Option<ServerCert> {
    let cert_key = format!("{key}.cert");
    let key_key = format!("{key}.key");
    let cert_path = base_dir.join(&c.cert.value);
    let key_path = base_dir.join(&c.key.value);
    let chain = read_certs(d, &c.cert, &cert_key, &cert_path);
    let private = match PrivateKeyDer::from_pem_file(&key_path) {
        Ok(k) => Some(k),
        Err(e) => {
            d.error(
                &c.key.referenced,
                &key_key,
                format!(
                    "cannot read a PEM private key from {}: {}",
                    key_path.display(),
                    pem_error(&e)
                ),
            );
            None
        }
    };
    let (chain, private) = (chain?, private?);
    let names = match dns_names(&chain[0]) {
        Ok(names) => names,
        Err(e) => {
            d.error(&c.cert.referenced, &cert_key, e);
            return None;
        }
    };
    let signing = match provider().key_provider.load_private_key(private) {
        Ok(k) => k,
        Err(e) => {
            d.error(
                &c.key.referenced,
                &key_key,
                format!("unusable private key in {}: {e}", key_path.display()),
            );
            return None;
        }
    };
    let certified = CertifiedKey::new(chain, signing);
    if let Err(rustls::Error::InconsistentKeys(_)) = certified.keys_match() {
        d.error(
            &c.key.referenced,
            &key_key,
            format!(
                "the key in {} does not belong to the certificate in {}",
                key_path.display(),
                cert_path.display()
            ),
        );
        return None;
    }
    Some(ServerCert {
        names,
        key: Arc::new(certified),
        cert_path,
        key_path,
    })
}

/// Reads a PEM certificate chain; at least one certificate, each one parseable.
pub(super) fn read_certs(
    d: &mut Diagnostics,
    at: &Spanned<String>,
    key: &str,
    path: &Path,
) -> Option<Vec<CertificateDer<'static>>> {
    let certs: Result<Vec<_>, _> = match CertificateDer::pem_file_iter(path) {
        Ok(it) => it.collect(),
        Err(e) => Err(e),
    };
    let message = match certs {
        Ok(certs) if certs.is_empty() => {
            format!(
                "no PEM certificate (`BEGIN CERTIFICATE`) in {}",
                path.display()
            )
        }
        Ok(certs) => match certs
            .iter()
            .position(|c| X509Certificate::from_der(c).is_err())
        {
            Some(n) => format!(
                "certificate {} in {} is not valid X.509",
                n + 1,
                path.display()
            ),
            None => return Some(certs),
        },
        Err(e) => format!(
            "cannot read PEM certificates from {}: {}",
            path.display(),
            pem_error(&e)
        ),
    };
    d.error(&at.referenced, key, message);
    None
}

/// Reads the CA bundle named by `at` (relative to `base_dir`).
pub(in crate::config) fn read_ca(
    d: &mut Diagnostics,
    at: &Spanned<String>,
    key: &str,
    base_dir: &Path,
) -> Option<Vec<CertificateDer<'static>>> {
    read_certs(d, at, key, &base_dir.join(&at.value))
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no such PEM section".to_owned(),
        other => format!("{other:?}"),
    }
}

/// The DNS names of a certificate's subjectAltName, lower-cased.
fn dns_names(cert: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, parsed) = X509Certificate::from_der(cert)
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| format!("invalid subjectAltName: {e}"))?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

//! `listeners[].tls` and `upstreams.NAME.tls` as written.

use std::fmt;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// `listeners[].tls` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConf {
    /// Certificate chains with their keys. The first one is the default (for clients
    /// that send no SNI name or one no certificate covers); the others are chosen by
    /// the SNI name, among the DNS names of each certificate.
    pub certificates: Vec<CertificateConf>,
    /// Lowest TLS version accepted: `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: Option<Spanned<VersionText>>,
    /// Offer HTTP/2 through ALPN (`h2`, then `http/1.1`). Default true; restart to change.
    #[serde(default = "yes")]
    pub http2: bool,
    /// Client certificates (mTLS): `{ca: FILE, required: true}`. Default: none asked.
    #[serde(default)]
    pub client_auth: Option<ClientAuthConf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConf {
    /// PEM file: the certificate, then its intermediates. Relative to the config file.
    pub cert: Spanned<String>,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1). Relative to the config file.
    pub key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConf {
    /// PEM file of the CA certificates that sign acceptable client certificates.
    pub ca: Spanned<String>,
    /// Refuse clients without a certificate (default true); false asks for one but
    /// also lets clients without one in (a certificate sent is still verified).
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// A TLS version as written: a string (`"1.3"`, `TLSv1.3`) or a bare YAML number (`1.3`).
#[derive(Debug)]
pub struct VersionText(pub String);

impl<'de> Deserialize<'de> for VersionText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = VersionText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TLS version: \"1.2\" or \"1.3\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<VersionText, E> {
                Ok(VersionText(v.to_owned()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<VersionText, E> {
                Ok(VersionText(format!("{v:?}")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<VersionText, E> {
                Ok(VersionText(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `upstreams.NAME.tls` as written: `true`/`false`, or a map.
#[derive(Debug)]
pub struct UpstreamTlsConf {
    pub enabled: bool,
    /// Name sent as SNI and checked against the certificate. Default: the target's host.
    pub sni: Option<String>,
    /// Verify the certificate chain and name. Default true; `false` is logged as a
    /// warning at every load.
    pub verify: bool,
    /// PEM file of the CA certificates to trust instead of the system's.
    pub ca: Option<String>,
}

impl<'de> Deserialize<'de> for UpstreamTlsConf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UpstreamTlsConf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`true`, `false` or `{sni: NAME, verify: BOOL, ca: FILE}`")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<UpstreamTlsConf, E> {
                Ok(UpstreamTlsConf {
                    enabled: v,
                    sni: None,
                    verify: true,
                    ca: None,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<UpstreamTlsConf, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Full {
                    #[serde(default)]
                    sni: Option<String>,
                    #[serde(default = "yes")]
                    verify: bool,
                    #[serde(default)]
                    ca: Option<String>,
                }
                let f = Full::deserialize(serde::de::value::MapAccessDeserializer::new(m))?;
                Ok(UpstreamTlsConf {
                    enabled: true,
                    sni: f.sni,
                    verify: f.verify,
                    ca: f.ca,
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

//! What the TLS tests share: certificates made on the spot (a CA, leaves signed by it),
//! a TLS client that reports what it saw (certificate, version, ALPN), and a TLS
//! upstream that reports the SNI name it was reached with.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate authority made for one test.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA");
        Ca { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (for mTLS).
    pub fn client(&self, name: &str) -> Leaf {
        self.leaf(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

impl Leaf {
    /// Writes `NAME.pem` (certificate) and `NAME.key` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) {
        std::fs::write(dir.join(format!("{name}.pem")), &self.cert_pem).expect("write cert");
        std::fs::write(dir.join(format!("{name}.key")), &self.key_pem).expect("write key");
    }

    /// A server config presenting this certificate (TLS 1.2 and 1.3).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let (chain, key) = self.chain_and_key();
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        Arc::new(config)
    }

    fn chain_and_key(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        use rustls::pki_types::pem::PemObject;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key pem");
        (vec![self.der.clone()], key)
    }
}

/// How a test client connects.
pub struct Client {
    pub trust: Vec<CertificateDer<'static>>,
    pub versions: &'static [&'static SupportedProtocolVersion],
    pub cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    pub alpn: Vec<Vec<u8>>,
}

impl Client {
    /// Trusts `ca`, TLS 1.2 and 1.3, no client certificate, HTTP/1.1 only.
    pub fn trusting(ca: &Ca) -> Client {
        Client {
            trust: vec![ca.der()],
            versions: rustls::ALL_VERSIONS,
            cert: None,
            alpn: vec![b"http/1.1".to_vec()],
        }
    }

    pub fn versions(mut self, versions: &'static [&'static SupportedProtocolVersion]) -> Client {
        self.versions = versions;
        self
    }

    pub fn with_cert(mut self, leaf: &Leaf) -> Client {
        self.cert = Some(leaf.chain_and_key());
        self
    }

    pub fn alpn(mut self, protocols: &[&[u8]]) -> Client {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    fn config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for c in &self.trust {
            roots.add(c.clone()).expect("root");
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(self.versions)
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match &self.cert {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .expect("client cert"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        Arc::new(config)
    }

    /// A TLS connection to 127.0.0.1:`port` with `sni` (also the name verified).
    pub async fn connect(&self, port: u16, sni: &str) -> std::io::Result<TlsStream<TcpStream>> {
        let connector = tokio_rustls::TlsConnector::from(self.config());
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let name = ServerName::try_from(sni.to_owned()).expect("server name");
        tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
            .await
            .map_err(|_| std::io::Error::other("handshake timed out"))?
    }

    /// Connects and GETs `path`: the status line, or the error that stopped it. With TLS
    /// 1.3 a refused client certificate shows only after the handshake, when reading.
    pub async fn get(&self, port: u16, sni: &str, path: &str) -> Result<String, String> {
        let mut stream = self.connect(port, sni).await.map_err(|e| e.to_string())?;
        let (head, _) = request(&mut stream, sni, path).await?;
        Ok(head.lines().next().unwrap_or_default().to_owned())
    }
}

/// The leaf certificate the server presented.
pub fn peer_cert(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a server certificate")
        .clone()
        .into_owned()
}

/// One HTTP/1.1 GET on a kept-alive connection: the head (lower-cased) and the body.
pub async fn request<S>(stream: &mut S, host: &str, path: &str) -> Result<(String, String), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let text = String::from_utf8_lossy(&seen).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let head = text[..end].to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if seen.len() >= end + 4 + length {
                    let body = String::from_utf8_lossy(&seen[end + 4..end + 4 + length]);
                    return Ok((head, body.into_owned()));
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) => return Err("connection closed".to_owned()),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| "no response within 10 s".to_owned())?
}

/// A TLS upstream on 127.0.0.1 answering every request with 200 and
/// `{"sni": …, "path": …}`; keep-alive.
pub async fn tls_upstream(leaf: &Leaf) -> (u16, tokio::task::JoinHandle<()>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(leaf.server_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("").to_owned();
                let _ = serve_http(&mut tls, &sni).await;
            });
        }
    });
    (port, task)
}

async fn serve_http<S>(stream: &mut S, sni: &str) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        let Some(end) = text.find("\r\n\r\n") else {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            seen.extend_from_slice(&buf[..n]);
            continue;
        };
        let path = text
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        seen.drain(..end + 4);
        let body = serde_json::json!({ "sni": sni, "path": path }).to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await?;
    }
}

//! Optional TLS on the channel: the listening end's certificate, the dialing end's trusted CA,
//! and client certificates when the listener asks for them (mutual TLS: the channel carries
//! requests that make the migrator write to target, so an operator may want both ends proven).
//!
//! Files are read and checked once, by [`ServerTls::load`] and [`ClientTls::load`]; every
//! problem names the file. rustls with the `ring` provider, TLS 1.2 and 1.3.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

/// Files for the listening end.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerTlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert_path: PathBuf,
    /// PEM private key of the leaf (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// When set, dialers must present a certificate signed by one of these CAs.
    pub client_ca_path: Option<PathBuf>,
}

impl ServerTlsFiles {
    pub fn new(cert_path: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> Self {
        Self {
            cert_path: cert_path.into(),
            key_path: key_path.into(),
            client_ca_path: None,
        }
    }
}

/// Files for the dialing end.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientTlsFiles {
    /// PEM CA certificates the listener's certificate must chain to.
    pub ca_path: PathBuf,
    /// This end's certificate and key, for a listener that requires them.
    pub cert_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
    /// The name checked against the listener's certificate; by default the host of the
    /// address dialed.
    pub server_name: Option<String>,
}

impl ClientTlsFiles {
    pub fn new(ca_path: impl Into<PathBuf>) -> Self {
        Self {
            ca_path: ca_path.into(),
            cert_path: None,
            key_path: None,
            server_name: None,
        }
    }
}

/// A TLS file or setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read the {what} file {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the {what} file {} is not valid PEM: {reason}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the {what} file {} holds no PEM certificate", path.display())]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("the key file {} holds no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)", path.display())]
    NoKey { path: PathBuf },
    #[error(
        "certificate {index} of {count} in the CA file {} is not a usable CA: {reason}",
        path.display()
    )]
    BadCa {
        path: PathBuf,
        index: usize,
        count: usize,
        reason: String,
    },
    #[error("{what}: {reason}")]
    Setup { what: &'static str, reason: String },
    #[error("a client certificate needs both cert_path and key_path; only {given} is set")]
    HalfClientCert { given: &'static str },
    #[error("{name:?} is not a DNS name or IP address a certificate can carry")]
    ServerName { name: String },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The listening end's TLS.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    pub fn load(files: &ServerTlsFiles) -> Result<Self, TlsError> {
        let certs = certificates("certificate", &files.cert_path)?;
        let key = private_key(&files.key_path)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| setup("TLS versions", e))?;
        let builder = match &files.client_ca_path {
            Some(ca) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                        .build()
                        .map_err(|e| setup("client CA", e))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| setup("certificate and key", e))?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub(crate) async fn accept(
        &self,
        socket: TcpStream,
    ) -> io::Result<server::TlsStream<TcpStream>> {
        self.acceptor.accept(socket).await
    }
}

/// The dialing end's TLS.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    pub fn load(files: &ClientTlsFiles) -> Result<Self, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| setup("TLS versions", e))?
            .with_root_certificates(roots(&files.ca_path)?);
        let config = match (&files.cert_path, &files.key_path) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(certificates("certificate", cert)?, private_key(key)?)
                .map_err(|e| setup("client certificate and key", e))?,
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err(TlsError::HalfClientCert { given: "cert_path" }),
            (None, Some(_)) => return Err(TlsError::HalfClientCert { given: "key_path" }),
        };
        let server_name = files
            .server_name
            .as_ref()
            .map(|name| server_name(name))
            .transpose()?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// The handshake on a socket connected to `host`.
    pub(crate) async fn connect(
        &self,
        socket: TcpStream,
        host: &str,
    ) -> io::Result<client::TlsStream<TcpStream>> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => server_name(host)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?,
        };
        self.connector.connect(name, socket).await
    }
}

fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    // `[::1]` as written in an address.
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).map_err(|_| TlsError::ServerName {
        name: name.to_owned(),
    })
}

fn setup(what: &'static str, e: impl fmt::Display) -> TlsError {
    TlsError::Setup {
        what,
        reason: e.to_string(),
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        other => TlsError::Pem {
            what: "key",
            path: path.to_owned(),
            reason: other.to_string(),
        },
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let certs = certificates("CA", path)?;
    let count = certs.len();
    let mut store = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        store.add(cert).map_err(|e| TlsError::BadCa {
            path: path.to_owned(),
            index: i + 1,
            count,
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}

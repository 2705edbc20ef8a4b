//! TLS on both sides of the proxy: certificates and keys named in the config, loaded and checked
//! once at start; the handshake with each client; the handshake with each cluster node.
//!
//! # Layout
//! - [`TlsError`]: a TLS file or setting that cannot be used, naming its config key and path.
//! - `ServerTls`: the client listener's side (config section `tls`): certificate chain, key,
//!   optional client-certificate verification, and the handshake with its timeout. Failures are
//!   classified (`HandshakeFailure`) for the metric's bounded `reason` label.
//! - `ClusterTls`: one cluster's side (`origin.tls` / `target.tls`): trusted roots (the file or
//!   the system's), optional client certificate, and the name checked against the node's
//!   certificate (`server_name`, else the contact point's host).
//! - **PEM loading**: `certificates`, `private_key`, `roots`: every problem names the file.
//!
//! ```text
//!  start ─► ServerTls::load(tls), ClusterTls::load(origin.tls / target.tls) ─► TlsError = no start
//!  accept ─► task per client: ServerTls::accept (timeout) ─► Stream::Tls ─► session
//!                                         └─ failure: debug log + counter, only that socket closes
//!  backend / probe ─► TCP connect ─► ClusterTls::connect(host) ─► Stream::Tls ─► STARTUP/OPTIONS
//! ```
//!
//! rustls with the `ring` provider; TLS 1.2 and 1.3.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::{ClientTlsConfig, ServerTlsConfig};
use crate::frame::Stream;
use crate::settings::ClusterId;

/// How long a client may take to finish the TLS handshake. It holds a connection slot until
/// then, so a silent client must not keep it; 10 s is far above a handshake's few round trips
/// on any real network.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS file or setting the proxy cannot use. `key` is the config key that names the file
/// (`tls.cert_path`, `origin.tls.ca_path`, …).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{key}: cannot read {}: {source}", path.display())]
    Read {
        key: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{key}: {} is not valid PEM: {reason}", path.display())]
    Pem {
        key: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{key}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { key: String, path: PathBuf },
    #[error(
        "{key}: {} holds no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)",
        path.display()
    )]
    NoKey { key: String, path: PathBuf },
    #[error(
        "{key}: certificate {index} of {count} in {} is not a usable CA certificate: {reason}",
        path.display()
    )]
    BadCa {
        key: String,
        path: PathBuf,
        index: usize,
        count: usize,
        reason: String,
    },
    #[error(
        "{key}: the private key {} does not belong to the certificate {}: {reason}",
        key_path.display(),
        cert_path.display()
    )]
    KeyMismatch {
        key: String,
        cert_path: PathBuf,
        key_path: PathBuf,
        reason: String,
    },
    #[error(
        "{cluster}.tls.ca_path is unset and no system CA certificates were found ({reason}); \
         set {cluster}.tls.ca_path"
    )]
    NoSystemRoots { cluster: ClusterId, reason: String },
    #[error("{cluster}.tls.server_name: {name:?} is not a DNS name or IP address")]
    ServerName { cluster: ClusterId, name: String },
    #[error("{key}: {reason}")]
    Setup { key: String, reason: String },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

// ---------------------------------------------------------------------------------------------
// Client listener
// ---------------------------------------------------------------------------------------------

/// The client listener's TLS.
#[derive(Clone)]
pub(crate) struct ServerTls {
    acceptor: TlsAcceptor,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

/// Why a client's handshake failed: the metric's `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeFailure {
    /// Nothing (or not enough) arrived within [`HANDSHAKE_TIMEOUT`].
    Timeout,
    /// The bytes were not TLS: a plain CQL client, a port scanner.
    NotTls,
    /// A client certificate was missing or refused (mutual TLS).
    Certificate,
    /// Anything else: no common version or cipher, a closed connection, a socket error.
    Other,
}

impl HandshakeFailure {
    pub(crate) const ALL: [Self; 4] = [Self::Timeout, Self::NotTls, Self::Certificate, Self::Other];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::NotTls => "not_tls",
            Self::Certificate => "certificate",
            Self::Other => "other",
        }
    }

    fn of(e: &io::Error) -> Self {
        match rustls_error(e) {
            Some(rustls::Error::InvalidMessage(_)) => Self::NotTls,
            Some(rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_)) => {
                Self::Certificate
            }
            _ => Self::Other,
        }
    }
}

impl ServerTls {
    /// Reads and checks every file of the `tls` section.
    pub(crate) fn load(config: &ServerTlsConfig) -> Result<Self, TlsError> {
        let certs = certificates("tls.cert_path", &config.cert_path)?;
        let key = private_key("tls.key_path", &config.key_path)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| setup("tls", e))?;
        let builder = match &config.ca_path {
            Some(ca) => {
                let roots = Arc::new(roots("tls.ca_path", ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
                // Without require_client_auth a certificate is checked when a client sends one.
                let verifier = if config.require_client_auth {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier = verifier.build().map_err(|e| setup("tls.ca_path", e))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let server = builder
            .with_single_cert(certs, key)
            .map_err(|e| key_error("tls", &config.cert_path, &config.key_path, e))?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
        })
    }

    /// The server side of the handshake, bounded by [`HANDSHAKE_TIMEOUT`].
    pub(crate) async fn accept(
        &self,
        socket: TcpStream,
    ) -> Result<Stream, (HandshakeFailure, String)> {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(socket)).await {
            Ok(Ok(tls)) => Ok(Stream::Tls(Box::new(tls.into()))),
            Ok(Err(e)) => Err((HandshakeFailure::of(&e), e.to_string())),
            Err(_) => Err((
                HandshakeFailure::Timeout,
                format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cluster connections
// ---------------------------------------------------------------------------------------------

/// TLS towards one cluster.
#[derive(Clone)]
pub(crate) struct ClusterTls {
    connector: TlsConnector,
    /// `server_name` from the config; `None` checks each contact point's own host.
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClusterTls {
    /// Reads and checks every file of `<cluster>.tls`.
    pub(crate) fn load(cluster: ClusterId, config: &ClientTlsConfig) -> Result<Self, TlsError> {
        let key = |leaf: &str| format!("{cluster}.tls.{leaf}");
        let roots = match &config.ca_path {
            Some(ca) => roots(&key("ca_path"), ca)?,
            None => system_roots(cluster)?,
        };
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| setup(&key("ca_path"), e))?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(&format!("{cluster}.tls"), e))?;
        let builder = if config.verify_hostname {
            builder.with_webpki_verifier(verifier)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
        };
        let client = match (&config.cert_path, &config.key_path) {
            (Some(cert_path), Some(key_path)) => {
                let certs = certificates(&key("cert_path"), cert_path)?;
                let private = private_key(&key("key_path"), key_path)?;
                builder
                    .with_client_auth_cert(certs, private)
                    .map_err(|e| key_error(&format!("{cluster}.tls"), cert_path, key_path, e))?
            }
            // Validation requires both or neither.
            _ => builder.with_no_client_auth(),
        };
        let server_name = match &config.server_name {
            Some(name) => {
                Some(
                    ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName {
                        cluster,
                        name: name.clone(),
                    })?,
                )
            }
            None => None,
        };
        Ok(Self {
            connector: TlsConnector::from(Arc::new(client)),
            server_name,
        })
    }

    /// The client side of the handshake on a connected socket to a node reached as `host`.
    /// The caller bounds it with the cluster's connect timeout.
    pub(crate) async fn connect(&self, socket: TcpStream, host: &str) -> io::Result<Stream> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_owned()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "contact point {host:?} is not a name a certificate can carry; set \
                         tls.server_name"
                    ),
                )
            })?,
        };
        let tls = self.connector.connect(name, socket).await?;
        Ok(Stream::Tls(Box::new(tls.into())))
    }
}

/// Whether `e` is the TLS layer refusing the peer (a certificate, a handshake that is not TLS,
/// an alert): a configuration problem that retrying does not fix, unlike a refused connection.
pub(crate) fn is_tls_error(e: &io::Error) -> bool {
    rustls_error(e).is_some()
}

fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref())
}

/// Checks the chain against the roots, but not the name (`verify_hostname: false`): for clusters
/// whose certificates name no host the proxy can use. webpki checks the name last, after the
/// chain, so a name error means the chain itself was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

// ---------------------------------------------------------------------------------------------
// PEM loading
// ---------------------------------------------------------------------------------------------

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key: key.to_owned(),
        path: path.to_owned(),
        source,
    })
}

fn pem_error(key: &str, path: &Path, e: rustls_pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        key: key.to_owned(),
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Every certificate in a PEM file, in order (leaf first for a chain); at least one.
fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(key, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            key: key.to_owned(),
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
fn private_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            key: key.to_owned(),
            path: path.to_owned(),
        },
        other => pem_error(key, path, other),
    })
}

/// A CA bundle: every certificate must be a usable trust anchor, so a damaged bundle is found at
/// start rather than as a failed handshake later.
fn roots(key: &str, path: &Path) -> Result<RootCertStore, TlsError> {
    let certs = certificates(key, path)?;
    let mut store = RootCertStore::empty();
    let count = certs.len();
    for (i, cert) in certs.into_iter().enumerate() {
        store.add(cert).map_err(|e| TlsError::BadCa {
            key: key.to_owned(),
            path: path.to_owned(),
            index: i + 1,
            count,
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}

/// The operating system's CA bundle; unusable entries are skipped, as browsers do.
fn system_roots(cluster: ClusterId) -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let reason = if found.errors.is_empty() {
            "the system bundle is empty".to_owned()
        } else {
            found
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(TlsError::NoSystemRoots { cluster, reason });
    }
    Ok(store)
}

fn setup(key: &str, e: impl fmt::Display) -> TlsError {
    TlsError::Setup {
        key: key.to_owned(),
        reason: e.to_string(),
    }
}

fn key_error(section: &str, cert_path: &Path, key_path: &Path, e: rustls::Error) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            key: format!("{section}.key_path"),
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            reason: e.to_string(),
        },
        other => setup(&format!("{section}.key_path"), other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of test files, removed on drop.
    struct Files(PathBuf);

    impl Files {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("ferry-tls-unit-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            path
        }

        /// A self-signed certificate and its key: (cert path, key path).
        fn pair(&self, name: &str) -> (PathBuf, PathBuf) {
            let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
            (
                self.write(&format!("{name}.pem"), &c.cert.pem()),
                self.write(&format!("{name}.key"), &c.key_pair.serialize_pem()),
            )
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn server(cert: &Path, key: &Path, ca: Option<&Path>) -> Result<ServerTls, TlsError> {
        ServerTls::load(&ServerTlsConfig {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            ca_path: ca.map(Path::to_owned),
            require_client_auth: ca.is_some(),
        })
    }

    #[test]
    fn good_files_load_on_both_sides() {
        let f = Files::new("good");
        let (cert, key) = f.pair("a");
        server(&cert, &key, None).unwrap();
        server(&cert, &key, Some(&cert)).unwrap();
        let mut client = ClientTlsConfig {
            ca_path: Some(cert.clone()),
            cert_path: Some(cert),
            key_path: Some(key),
            server_name: Some("db.example".to_owned()),
            ..ClientTlsConfig::default()
        };
        let tls = ClusterTls::load(ClusterId::Target, &client).unwrap();
        assert!(tls.server_name.is_some());
        client.verify_hostname = false;
        ClusterTls::load(ClusterId::Target, &client).unwrap();
    }

    #[test]
    fn every_pem_problem_names_the_key_and_the_file() {
        let f = Files::new("bad");
        let (cert, key) = f.pair("a");
        let (_, other_key) = f.pair("b");
        let missing = f.0.join("missing.pem");
        let empty = f.write("empty.pem", "# no certificates here\n");
        let truncated = f.write("truncated.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");

        let e = server(&missing, &key, None).unwrap_err();
        assert!(matches!(e, TlsError::Read { .. }), "{e}");
        assert!(
            e.to_string().starts_with("tls.cert_path: cannot read "),
            "{e}"
        );
        assert!(e.to_string().contains("missing.pem"), "{e}");

        let e = server(&key, &key, None).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
        assert!(
            e.to_string().contains("a.key holds no PEM certificate"),
            "{e}"
        );

        let e = server(&cert, &cert, None).unwrap_err();
        assert!(matches!(e, TlsError::NoKey { .. }), "{e}");
        assert!(e.to_string().starts_with("tls.key_path: "), "{e}");

        let e = server(&cert, &other_key, None).unwrap_err();
        assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("b.key does not belong to the certificate"),
            "{e}"
        );

        let e = server(&cert, &key, Some(&empty)).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
        assert!(e.to_string().starts_with("tls.ca_path: "), "{e}");

        let e = server(&truncated, &key, None).unwrap_err();
        assert!(matches!(e, TlsError::Pem { .. }), "{e}");
        assert!(
            e.to_string().contains("truncated.pem is not valid PEM"),
            "{e}"
        );

        let mut client = ClientTlsConfig {
            ca_path: Some(empty),
            ..ClientTlsConfig::default()
        };
        let e = ClusterTls::load(ClusterId::Origin, &client).unwrap_err();
        assert!(e.to_string().starts_with("origin.tls.ca_path: "), "{e}");
        client.ca_path = Some(cert.clone());
        client.cert_path = Some(cert);
        client.key_path = Some(other_key);
        let e = ClusterTls::load(ClusterId::Origin, &client).unwrap_err();
        assert!(e.to_string().starts_with("origin.tls.key_path: "), "{e}");
        client.key_path = Some(key);
        client.server_name = Some("not a name".to_owned());
        let e = ClusterTls::load(ClusterId::Origin, &client).unwrap_err();
        assert_eq!(
            e.to_string(),
            "origin.tls.server_name: \"not a name\" is not a DNS name or IP address"
        );
    }

    #[test]
    fn failures_are_classified_for_the_metric() {
        let not_tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert_eq!(HandshakeFailure::of(&not_tls), HandshakeFailure::NotTls);
        let no_cert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::NoCertificatesPresented,
        );
        assert_eq!(
            HandshakeFailure::of(&no_cert),
            HandshakeFailure::Certificate
        );
        let closed = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(HandshakeFailure::of(&closed), HandshakeFailure::Other);
        assert!(is_tls_error(&no_cert) && !is_tls_error(&closed));
    }
}

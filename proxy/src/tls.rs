//! TLS on both sides of the proxy: certificates and keys named in the config, loaded and checked
//! once at start; the handshake with each client; the handshake with each cluster node.
//!
//! # Layout
//! - [`TlsError`] (ferry-service's): a TLS file or setting that cannot be used, naming its config
//!   key and path.
//! - `ServerTls`: the client listener's side (config section `tls`): certificate chain, key,
//!   optional client-certificate verification, and the handshake with its timeout. Failures are
//!   classified (`HandshakeFailure`) for the metric's bounded `reason` label.
//! - `ClusterTls`: one cluster's side (`origin.tls` / `target.tls`): the rustls config from
//!   [`ferry_service::tls::cluster_client_config`] (shared with the migrator: trusted roots, the
//!   client certificate, the name rule) and the name sent to the node (`server_name`, else the
//!   contact point's host). PEM loading is ferry-service's too.
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
use std::sync::Arc;
use std::time::Duration;

use ferry_service::tls::{
    TlsProblem, certificates, cluster_client_config, key_error, private_key, provider, roots,
};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub use ferry_service::tls::TlsError;

use crate::config::{ClientTlsConfig, ServerTlsConfig};
use crate::frame::Stream;
use crate::settings::ClusterId;

/// How long a client may take to finish the TLS handshake. It holds a connection slot until
/// then, so a silent client must not keep it; 10 s is far above a handshake's few round trips
/// on any real network.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
            .map_err(|e| key_error("tls.key_path", &config.cert_path, &config.key_path, e))?;
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
        let client = cluster_client_config(&format!("{cluster}.tls"), config)?;
        // Parsed by cluster_client_config already; kept for the name sent to the node.
        let server_name = config
            .server_name
            .as_ref()
            .and_then(|name| ServerName::try_from(name.clone()).ok());
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

fn setup(key: &str, e: impl fmt::Display) -> TlsError {
    TlsError::new(
        key,
        TlsProblem::Setup {
            reason: e.to_string(),
        },
    )
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

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
        let mut client = ClientTlsConfig::default();
        client.ca_path = Some(cert.clone());
        client.cert_path = Some(cert);
        client.key_path = Some(key);
        client.server_name = Some("db.example".to_owned());
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
        assert!(matches!(e.problem, TlsProblem::Read { .. }), "{e}");
        assert!(
            e.to_string().starts_with("tls.cert_path: cannot read "),
            "{e}"
        );
        assert!(e.to_string().contains("missing.pem"), "{e}");

        let e = server(&key, &key, None).unwrap_err();
        assert!(matches!(e.problem, TlsProblem::NoCertificate { .. }), "{e}");
        assert!(
            e.to_string().contains("a.key holds no PEM certificate"),
            "{e}"
        );

        let e = server(&cert, &cert, None).unwrap_err();
        assert!(matches!(e.problem, TlsProblem::NoKey { .. }), "{e}");
        assert!(e.to_string().starts_with("tls.key_path: "), "{e}");

        let e = server(&cert, &other_key, None).unwrap_err();
        assert!(matches!(e.problem, TlsProblem::KeyMismatch { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("b.key does not belong to the certificate"),
            "{e}"
        );

        let e = server(&cert, &key, Some(&empty)).unwrap_err();
        assert!(matches!(e.problem, TlsProblem::NoCertificate { .. }), "{e}");
        assert!(e.to_string().starts_with("tls.ca_path: "), "{e}");

        let e = server(&truncated, &key, None).unwrap_err();
        assert!(matches!(e.problem, TlsProblem::Pem { .. }), "{e}");
        assert!(
            e.to_string().contains("truncated.pem is not valid PEM"),
            "{e}"
        );

        let mut client = ClientTlsConfig::default();
        client.ca_path = Some(empty);
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

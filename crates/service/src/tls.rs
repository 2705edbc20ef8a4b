//! TLS towards a Cassandra cluster, as the proxy and the migrator both configure it
//! (`<cluster>.tls.{ca_path, cert_path, key_path, server_name, verify_hostname}`), and the PEM
//! loading behind it: every file is read and checked once, at start, and every problem names
//! its config key and file.
//!
//! # Layout
//! - [`ClusterTlsConfig`]: one cluster's `tls` section.
//! - [`TlsError`] = the config key + a [`TlsProblem`].
//! - [`cluster_client_config`]: the section → a rustls [`ClientConfig`] (trusted roots from the
//!   file or the system, optional client certificate, the name check as configured).
//! - **PEM loading**: [`certificates`], [`private_key`], [`roots`], [`system_roots`].
//!
//! rustls with the `ring` provider ([`provider`]); TLS 1.2 and 1.3.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// One cluster's TLS section. zdm-proxy's rule holds: CA only is one-way TLS; CA, cert and key
/// is mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterTlsConfig {
    /// PEM file of CAs that sign the cluster's certificates; unset uses the system's roots.
    /// Key `tls.ca_path`.
    pub ca_path: Option<PathBuf>,
    /// PEM client certificate for mutual TLS; needs `key_path`. Key `tls.cert_path`.
    pub cert_path: Option<PathBuf>,
    /// PEM private key of `cert_path`. Key `tls.key_path`.
    pub key_path: Option<PathBuf>,
    /// Name checked against the cluster's certificates; unset checks the address the client
    /// dialed. Key `tls.server_name`.
    pub server_name: Option<String>,
    /// Check that the certificate names the host. Default `true`; turn off only for clusters
    /// whose certificates name no usable host (the CA check stays). Key `tls.verify_hostname`.
    pub verify_hostname: bool,
}

impl Default for ClusterTlsConfig {
    fn default() -> Self {
        Self {
            ca_path: None,
            cert_path: None,
            key_path: None,
            server_name: None,
            verify_hostname: true,
        }
    }
}

/// A TLS file or setting that cannot be used: `key` is the config key naming it
/// (`origin.tls.ca_path`, `tls.cert_path`, …).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
#[non_exhaustive]
pub struct TlsError {
    pub key: String,
    pub problem: TlsProblem,
}

/// What is wrong with a TLS file or setting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsProblem {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} is not valid PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)", path.display())]
    NoKey { path: PathBuf },
    #[error(
        "certificate {index} of {count} in {} is not a usable CA certificate: {reason}",
        path.display()
    )]
    BadCa {
        path: PathBuf,
        index: usize,
        count: usize,
        reason: String,
    },
    #[error(
        "the private key {} does not belong to the certificate {}: {reason}",
        key_path.display(),
        cert_path.display()
    )]
    KeyMismatch {
        cert_path: PathBuf,
        key_path: PathBuf,
        reason: String,
    },
    #[error("is unset and no system CA certificates were found ({reason}); set it")]
    NoSystemRoots { reason: String },
    #[error("{name:?} is not a DNS name or IP address")]
    ServerName { name: String },
    #[error("is required: {other} is set (a client certificate needs both)")]
    HalfClientCert { other: String },
    #[error("{reason}")]
    Setup { reason: String },
}

impl TlsError {
    /// `problem` with the key `key` (a service's own checks, e.g. a listener's setup).
    pub fn new(key: &str, problem: TlsProblem) -> Self {
        Self {
            key: key.to_owned(),
            problem,
        }
    }
}

/// The crypto provider every Ferry TLS config uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The client side of TLS to a cluster whose section is `section` (`origin.tls`): trusted roots
/// (`ca_path` or the system's), the client certificate when both `cert_path` and `key_path` are
/// set, and the name check:
/// - `server_name` set: every node's certificate must name it, whatever address was dialed;
/// - unset: the certificate must name the host the client passes to the handshake;
/// - `verify_hostname: false`: the chain is checked, the name is not.
pub fn cluster_client_config(
    section: &str,
    config: &ClusterTlsConfig,
) -> Result<ClientConfig, TlsError> {
    let key = |leaf: &str| format!("{section}.{leaf}");
    let half = |missing: &str, set: &str| {
        Err(TlsError::new(
            &key(missing),
            TlsProblem::HalfClientCert { other: key(set) },
        ))
    };
    match (&config.cert_path, &config.key_path) {
        (Some(_), None) => return half("key_path", "cert_path"),
        (None, Some(_)) => return half("cert_path", "key_path"),
        _ => {}
    }
    let roots = match &config.ca_path {
        Some(ca) => roots(&key("ca_path"), ca)?,
        None => system_roots(&key("ca_path"))?,
    };
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| setup(&key("ca_path"), e))?;
    let name = match &config.server_name {
        Some(name) => Some(ServerName::try_from(name.clone()).map_err(|_| {
            TlsError::new(
                &key("server_name"),
                TlsProblem::ServerName { name: name.clone() },
            )
        })?),
        None => None,
    };
    let verifier = NodeVerifier {
        webpki,
        name,
        check_name: config.verify_hostname,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(section, e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let client = match (&config.cert_path, &config.key_path) {
        (Some(cert_path), Some(key_path)) => {
            let certs = certificates(&key("cert_path"), cert_path)?;
            let private = private_key(&key("key_path"), key_path)?;
            builder
                .with_client_auth_cert(certs, private)
                .map_err(|e| key_error(&key("key_path"), cert_path, key_path, e))?
        }
        // Checked above: both or neither.
        _ => builder.with_no_client_auth(),
    };
    Ok(client)
}

/// webpki's checks with the name rule of [`cluster_client_config`]. webpki checks the name
/// last, after the chain, so a name error means the chain itself was good.
#[derive(Debug)]
struct NodeVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// `server_name`: replaces the name the client passed (a driver passes the node's IP).
    name: Option<ServerName<'static>>,
    check_name: bool,
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = self.name.as_ref().unwrap_or(server_name);
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

// ---------------------------------------------------------------------------------------------
// PEM loading
// ---------------------------------------------------------------------------------------------

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| {
        TlsError::new(
            key,
            TlsProblem::Read {
                path: path.to_owned(),
                source,
            },
        )
    })
}

fn pem_error(key: &str, path: &Path, e: rustls_pki_types::pem::Error) -> TlsError {
    TlsError::new(
        key,
        TlsProblem::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    )
}

/// Every certificate in the PEM file `path` (named by config key `key`), in order (leaf first
/// for a chain); at least one.
pub fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(key, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::new(
            key,
            TlsProblem::NoCertificate {
                path: path.to_owned(),
            },
        ));
    }
    Ok(certs)
}

/// The first private key in the PEM file `path`.
pub fn private_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::new(
            key,
            TlsProblem::NoKey {
                path: path.to_owned(),
            },
        ),
        other => pem_error(key, path, other),
    })
}

/// A CA bundle: every certificate must be a usable trust anchor, so a damaged bundle is found at
/// start rather than as a failed handshake later.
pub fn roots(key: &str, path: &Path) -> Result<RootCertStore, TlsError> {
    let certs = certificates(key, path)?;
    let mut store = RootCertStore::empty();
    let count = certs.len();
    for (i, cert) in certs.into_iter().enumerate() {
        store.add(cert).map_err(|e| {
            TlsError::new(
                key,
                TlsProblem::BadCa {
                    path: path.to_owned(),
                    index: i + 1,
                    count,
                    reason: e.to_string(),
                },
            )
        })?;
    }
    Ok(store)
}

/// The operating system's CA bundle, used when the CA key `key` is unset; unusable entries are
/// skipped, as browsers do.
pub fn system_roots(key: &str) -> Result<RootCertStore, TlsError> {
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
        return Err(TlsError::new(key, TlsProblem::NoSystemRoots { reason }));
    }
    Ok(store)
}

fn setup(key: &str, e: impl fmt::Display) -> TlsError {
    TlsError::new(
        key,
        TlsProblem::Setup {
            reason: e.to_string(),
        },
    )
}

/// A rustls refusal of a certificate + key pair, as the problem of the key file `key`.
pub fn key_error(key: &str, cert_path: &Path, key_path: &Path, e: rustls::Error) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(_) => TlsError::new(
            key,
            TlsProblem::KeyMismatch {
                cert_path: cert_path.to_owned(),
                key_path: key_path.to_owned(),
                reason: e.to_string(),
            },
        ),
        other => setup(key, other),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// A directory of test files, removed on drop.
    struct Files(PathBuf);

    impl Files {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("ferry-service-tls-{name}-{}", std::process::id()));
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

    #[test]
    fn good_files_load() {
        let f = Files::new("good");
        let (cert, key) = f.pair("a");
        let mut tls = ClusterTlsConfig {
            ca_path: Some(cert.clone()),
            cert_path: Some(cert),
            key_path: Some(key),
            server_name: Some("db.example".to_owned()),
            ..ClusterTlsConfig::default()
        };
        cluster_client_config("target.tls", &tls).unwrap();
        tls.verify_hostname = false;
        tls.server_name = None;
        cluster_client_config("target.tls", &tls).unwrap();
    }

    #[test]
    fn every_problem_names_the_key_and_the_file() {
        let f = Files::new("bad");
        let (cert, key) = f.pair("a");
        let (_, other_key) = f.pair("b");
        let missing = f.0.join("missing.pem");
        let empty = f.write("empty.pem", "# no certificates here\n");
        let truncated = f.write("truncated.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
        let load = |ca: &Path, client: Option<(&Path, &Path)>| {
            let tls = ClusterTlsConfig {
                ca_path: Some(ca.to_owned()),
                cert_path: client.map(|c| c.0.to_owned()),
                key_path: client.map(|c| c.1.to_owned()),
                ..ClusterTlsConfig::default()
            };
            cluster_client_config("origin.tls", &tls).unwrap_err()
        };

        let e = load(&missing, None);
        assert!(matches!(e.problem, TlsProblem::Read { .. }), "{e}");
        assert_eq!(e.key, "origin.tls.ca_path");
        assert!(e.to_string().contains("missing.pem"), "{e}");

        let e = load(&empty, None);
        assert!(matches!(e.problem, TlsProblem::NoCertificate { .. }), "{e}");
        let e = load(&truncated, None);
        assert!(matches!(e.problem, TlsProblem::Pem { .. }), "{e}");
        assert!(
            e.to_string().contains("truncated.pem is not valid PEM"),
            "{e}"
        );

        let e = load(&cert, Some((&key, &key)));
        assert!(matches!(e.problem, TlsProblem::NoCertificate { .. }), "{e}");
        assert_eq!(e.key, "origin.tls.cert_path");
        let e = load(&cert, Some((&cert, &cert)));
        assert!(matches!(e.problem, TlsProblem::NoKey { .. }), "{e}");
        assert_eq!(e.key, "origin.tls.key_path");
        let e = load(&cert, Some((&cert, &other_key)));
        assert!(matches!(e.problem, TlsProblem::KeyMismatch { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("b.key does not belong to the certificate"),
            "{e}"
        );

        let half = ClusterTlsConfig {
            cert_path: Some(cert.clone()),
            ..ClusterTlsConfig::default()
        };
        let e = cluster_client_config("origin.tls", &half).unwrap_err();
        assert_eq!(
            e.to_string(),
            "origin.tls.key_path: is required: origin.tls.cert_path is set (a client \
             certificate needs both)"
        );

        let named = ClusterTlsConfig {
            ca_path: Some(cert),
            server_name: Some("not a name".to_owned()),
            ..ClusterTlsConfig::default()
        };
        let e = cluster_client_config("origin.tls", &named).unwrap_err();
        assert_eq!(
            e.to_string(),
            "origin.tls.server_name: \"not a name\" is not a DNS name or IP address"
        );
    }
}

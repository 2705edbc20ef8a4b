//! TLS on both sides of the proxy, against real clients and TLS sims: the Python driver with a
//! hostname-checking `ssl.SSLContext`, `cqlsh --ssl`, mutual TLS, one-way and mutual TLS to the
//! clusters, start-up refusals for a wrong CA or name, and clients that do not speak TLS.
//! Certificates are made at test time (rcgen) in a temporary directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_cql::envelope::Envelope;
use ferry_cql::protocol::{Direction, Opcode, ProtocolVersion};
use ferry_proxy::config::{ClientTlsConfig, ProxyConfig, ServerTlsConfig};
use ferry_proxy::settings::ClusterId;
use ferry_proxy::{Proxy, StartError};
use ferry_sim::exec::Executor;
use ferry_sim::server::{Cluster, ClusterConfig as SimConfig, TlsFiles};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

use crate::harness::{Env, proxy_config, scylla};

/// A throw-away certificate authority and the files it issues, removed on drop.
struct Pki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ferry-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("ferry test CA {name}"));
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Self { dir, ca, ca_key }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `names` (DNS names or IP literals) signed by this CA, usable by a
    /// server and a client: (certificate path, key path).
    fn issue(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, file.to_owned());
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (cert_path, key_path) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn sim(ip: &str, tls: Option<TlsFiles>) -> Cluster<Executor> {
    let config = SimConfig {
        nodes: 1,
        listen: format!("{ip}:0").parse().unwrap(),
        tls,
        ..SimConfig::default()
    };
    Cluster::start(config, Arc::new(Executor::default()))
        .await
        .unwrap()
}

fn server_tls(cert: &Path, key: &Path, client_ca: Option<&Path>) -> ServerTlsConfig {
    let mut tls = ServerTlsConfig::default();
    tls.cert_path = cert.to_owned();
    tls.key_path = key.to_owned();
    tls.ca_path = client_ca.map(Path::to_owned);
    tls.require_client_auth = client_ca.is_some();
    tls
}

fn client_tls(ca: &Path, cert: Option<(&Path, &Path)>) -> ClientTlsConfig {
    let mut tls = ClientTlsConfig::default();
    tls.ca_path = Some(ca.to_owned());
    if let Some((cert, key)) = cert {
        tls.cert_path = Some(cert.to_owned());
        tls.key_path = Some(key.to_owned());
    }
    tls
}

/// Plain sims on 127.0.`net`.1/.2 and a proxy on .3 whose listener has `tls`.
async fn tls_proxy_env(net: u8, tls: ServerTlsConfig) -> Env {
    let origin = sim(&format!("127.0.{net}.1"), None).await;
    let target = sim(&format!("127.0.{net}.2"), None).await;
    let mut config = proxy_config(net, origin.addresses()[0], target.addresses()[0]);
    config.tls = Some(tls);
    let proxy = Proxy::start(config).await.unwrap();
    Env {
        origin,
        target,
        proxy,
    }
}

async fn python(env: &Env, args: &[&str]) -> Result<String, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/tls_client.py");
    let mut all = vec![
        script.to_owned(),
        env.proxy.local_addr().to_string(),
        env.origin.addresses()[0].to_string(),
        env.target.addresses()[0].to_string(),
    ];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let out = tokio::process::Command::new("python3")
        .args(&all)
        .output()
        .await
        .expect("python3 runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

fn text(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_driver_and_cqlsh_through_a_tls_proxy() {
    let pki = Pki::new("one-way");
    let (cert, key) = pki.issue("proxy", &["127.0.60.3", "localhost"]);
    let env = tls_proxy_env(60, server_tls(&cert, &key, None)).await;

    let out = python(&env, &["--ca", text(&pki.ca_path())]).await;
    assert!(
        out.as_ref().is_ok_and(|o| o.contains("all checks passed")),
        "{out:?}"
    );

    // cqlsh --ssl with validation against the test CA.
    let proxy = env.proxy.local_addr();
    let out = tokio::process::Command::new("cqlsh")
        .arg("--ssl")
        .arg(proxy.ip().to_string())
        .arg(proxy.port().to_string())
        .args(["-e", "SELECT k, v FROM tls_py.t WHERE k = 7"])
        .env("SSL_CERTFILE", pki.ca_path())
        .env("SSL_VALIDATE", "true")
        .output()
        .await
        .expect("cqlsh is installed (pip install cqlsh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(" 7 | v7") && stdout.contains("(1 rows)"),
        "cqlsh --ssl:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A CA that did not sign the proxy's certificate: the driver refuses the proxy.
    let other = Pki::new("one-way-other");
    let out = python(&env, &["--ca", text(&other.ca_path()), "--expect-refused"]).await;
    assert!(out.is_ok(), "{out:?}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate() {
    let pki = Pki::new("mutual");
    let (cert, key) = pki.issue("proxy", &["127.0.61.3"]);
    let (client_cert, client_key) = pki.issue("client", &["client.test"]);
    let env = tls_proxy_env(61, server_tls(&cert, &key, Some(&pki.ca_path()))).await;
    let ca = pki.ca_path();

    let refused = python(&env, &["--ca", text(&ca), "--expect-refused"]).await;
    assert!(refused.is_ok(), "{refused:?}");
    // A certificate from another CA is refused too.
    let stranger = Pki::new("mutual-stranger");
    let (bad_cert, bad_key) = stranger.issue("client", &["client.test"]);
    let args = [
        "--ca",
        text(&ca),
        "--cert",
        text(&bad_cert),
        "--key",
        text(&bad_key),
        "--expect-refused",
    ];
    let refused = python(&env, &args).await;
    assert!(refused.is_ok(), "{refused:?}");

    let args = [
        "--ca",
        text(&ca),
        "--cert",
        text(&client_cert),
        "--key",
        text(&client_key),
    ];
    let out = python(&env, &args).await;
    assert!(
        out.as_ref().is_ok_and(|o| o.contains("all checks passed")),
        "{out:?}"
    );

    let metrics = metrics_until(&env.proxy, |m| {
        metric(
            m,
            "ferry_proxy_client_tls_handshake_failures_total{reason=\"certificate\"}",
        ) >= 1.0
    })
    .await;
    assert!(
        metric(
            &metrics,
            "ferry_proxy_client_tls_handshake_failures_total{reason=\"certificate\"}"
        ) >= 1.0,
        "{metrics}"
    );
    env.stop().await;
}

/// Origin speaks one-way TLS, target mutual TLS; the proxy's listener is plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reach_tls_clusters() {
    let pki = Pki::new("clusters");
    let (origin_cert, origin_key) = pki.issue("origin", &["127.0.62.1"]);
    // Target's certificate names a host, not its address: the proxy checks server_name.
    let (target_cert, target_key) = pki.issue("target", &["target.cluster.test"]);
    let (proxy_cert, proxy_key) = pki.issue("proxy-client", &["proxy.test"]);
    let origin = sim(
        "127.0.62.1",
        Some(TlsFiles {
            cert_path: origin_cert,
            key_path: origin_key,
            client_ca_path: None,
        }),
    )
    .await;
    let target = sim(
        "127.0.62.2",
        Some(TlsFiles {
            cert_path: target_cert,
            key_path: target_key,
            client_ca_path: Some(pki.ca_path()),
        }),
    )
    .await;
    let mut config = proxy_config(62, origin.addresses()[0], target.addresses()[0]);
    config.origin.tls = Some(client_tls(&pki.ca_path(), None));
    let mut target_tls = client_tls(&pki.ca_path(), Some((&proxy_cert, &proxy_key)));
    target_tls.server_name = Some("target.cluster.test".to_owned());
    config.target.tls = Some(target_tls);
    let proxy = Proxy::start(config).await.unwrap();

    let session = scylla(proxy.local_addr()).await;
    for q in [
        "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE ks.t (k int PRIMARY KEY, v text)",
        "INSERT INTO ks.t (k, v) VALUES (1, 'one')",
        "INSERT INTO ks.t (k, v) VALUES (2, 'two')",
    ] {
        session.query_unpaged(q, &[]).await.unwrap();
    }
    // Read from each cluster in turn by switching the primary.
    for primary in [ClusterId::Origin, ClusterId::Target] {
        proxy.live().set_primary(primary);
        let rows = session
            .query_unpaged("SELECT k, v FROM ks.t", &[])
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        let mut got: Vec<(i32, String)> = rows.rows().unwrap().map(|r| r.unwrap()).collect();
        got.sort_unstable();
        assert_eq!(
            got,
            [(1, "one".to_owned()), (2, "two".to_owned())],
            "{primary}"
        );
    }
    drop(session);
    proxy.shutdown().await;
    origin.shutdown().await;
    target.shutdown().await;
}

/// Start-up refusals: each names the cluster, none waits for a cluster that will never pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_name_or_missing_client_cert_stops_the_start() {
    let pki = Pki::new("refusals");
    let other = Pki::new("refusals-other");
    let (origin_cert, origin_key) = pki.issue("origin", &["origin.cluster.test"]);
    let (target_cert, target_key) = pki.issue("target", &["127.0.63.2"]);
    let origin = sim(
        "127.0.63.1",
        Some(TlsFiles {
            cert_path: origin_cert,
            key_path: origin_key,
            client_ca_path: None,
        }),
    )
    .await;
    let target = sim(
        "127.0.63.2",
        Some(TlsFiles {
            cert_path: target_cert,
            key_path: target_key,
            client_ca_path: Some(pki.ca_path()),
        }),
    )
    .await;
    let (proxy_cert, proxy_key) = pki.issue("proxy-client", &["proxy.test"]);
    let base = || {
        let mut c = proxy_config(63, origin.addresses()[0], target.addresses()[0]);
        c.origin.tls = Some(client_tls(&pki.ca_path(), None));
        c.origin.tls.as_mut().unwrap().server_name = Some("origin.cluster.test".to_owned());
        c.target.tls = Some(client_tls(&pki.ca_path(), Some((&proxy_cert, &proxy_key))));
        c
    };
    let refused = |config: ProxyConfig| async move {
        let started = tokio::time::timeout(Duration::from_secs(60), Proxy::start(config))
            .await
            .expect("the start gives up rather than waiting");
        match started {
            Err(e @ StartError::ClusterTls { .. }) => e.to_string(),
            Err(e) => panic!("expected a TLS refusal, got {e}"),
            Ok(_) => panic!("the proxy started"),
        }
    };

    let mut wrong_ca = base();
    wrong_ca.origin.tls.as_mut().unwrap().ca_path = Some(other.ca_path());
    let e = refused(wrong_ca).await;
    assert!(
        e.starts_with("origin: TLS handshake with 127.0.63.1:"),
        "{e}"
    );
    assert!(e.contains("UnknownIssuer"), "{e}");

    // Without server_name the contact point's address is checked; the certificate names a host.
    let mut wrong_name = base();
    wrong_name.origin.tls.as_mut().unwrap().server_name = None;
    let e = refused(wrong_name.clone()).await;
    assert!(e.starts_with("origin: TLS handshake"), "{e}");
    assert!(e.contains("not valid for name"), "{e}");
    // verify_hostname: false skips only the name: the wrong-name setup now starts...
    wrong_name.origin.tls.as_mut().unwrap().verify_hostname = false;
    let proxy = Proxy::start(wrong_name).await.unwrap();
    proxy.shutdown().await;
    // ...but never the chain.
    let mut no_name_wrong_ca = base();
    let tls = no_name_wrong_ca.origin.tls.as_mut().unwrap();
    tls.verify_hostname = false;
    tls.ca_path = Some(other.ca_path());
    let e = refused(no_name_wrong_ca).await;
    assert!(e.contains("UnknownIssuer"), "{e}");

    // Target wants a client certificate.
    let mut no_client_cert = base();
    no_client_cert.target.tls = Some(client_tls(&pki.ca_path(), None));
    let e = refused(no_client_cert).await;
    assert!(
        e.starts_with("target: TLS handshake with 127.0.63.2:"),
        "{e}"
    );

    // A file problem is found before any connection, naming the key and the file.
    let mut missing = base();
    missing.target.tls.as_mut().unwrap().key_path = Some(pki.dir.join("nonexistent.key"));
    match Proxy::start(missing).await {
        Err(e @ StartError::Tls(_)) => {
            let text = e.to_string();
            assert!(text.contains("target.tls.key_path"), "{text}");
            assert!(text.contains("nonexistent.key"), "{text}");
        }
        Err(e) => panic!("expected a TLS file error, got {e}"),
        Ok(_) => panic!("the proxy started"),
    }
    origin.shutdown().await;
    target.shutdown().await;
}

/// A plain CQL client, garbage bytes and a silent client on the TLS listener are closed (and
/// counted) without disturbing a TLS client in the middle of its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_speak_tls_do_not_hurt_others() {
    let pki = Pki::new("strangers");
    let (cert, key) = pki.issue("proxy", &["127.0.64.3"]);
    let env = tls_proxy_env(64, server_tls(&cert, &key, None)).await;
    let addr = env.proxy.local_addr();

    let mut good = TlsClient::connect(addr, &pki.ca_path()).await;
    assert_eq!(good.options().await, Opcode::Supported);
    // A silent client holds its own slot only; it is not waited for.
    let silent = TcpStream::connect(addr).await.unwrap();

    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(&options_bytes()).await.unwrap();
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\x16\x03")
        .await
        .unwrap();
    for (what, socket) in [("plain CQL", &mut plain), ("garbage", &mut garbage)] {
        // The proxy closes the connection (after a TLS alert, if any).
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut buf))
            .await
            .expect("closed");
        assert!(
            read.is_err() || !buf.starts_with(&[0x84]),
            "{what}: answered in CQL: {buf:?}"
        );
    }
    assert_eq!(good.options().await, Opcode::Supported);
    let mut second = TlsClient::connect(addr, &pki.ca_path()).await;
    assert_eq!(second.options().await, Opcode::Supported);

    let not_tls = "ferry_proxy_client_tls_handshake_failures_total{reason=\"not_tls\"}";
    let metrics = metrics_until(&env.proxy, |m| metric(m, not_tls) >= 2.0).await;
    assert_eq!(metric(&metrics, not_tls), 2.0, "{metrics}");
    drop(silent);
    env.stop().await;
}

/// A TLS client speaking raw CQL.
struct TlsClient {
    stream: tokio_rustls::client::TlsStream<TcpStream>,
}

impl TlsClient {
    async fn connect(addr: SocketAddr, ca: &Path) -> Self {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let socket = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::from(addr.ip());
        let stream = TlsConnector::from(Arc::new(config))
            .connect(name, socket)
            .await
            .unwrap();
        Self { stream }
    }

    /// Sends OPTIONS and returns the answer's opcode.
    async fn options(&mut self) -> Opcode {
        self.stream.write_all(&options_bytes()).await.unwrap();
        let mut header = [0u8; 9];
        self.stream.read_exact(&mut header).await.unwrap();
        let len = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) as usize;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).await.unwrap();
        Opcode::try_from(header[4]).unwrap()
    }
}

fn options_bytes() -> BytesMut {
    let env = Envelope::new(
        ProtocolVersion::V4,
        Direction::Request,
        0,
        1,
        Opcode::Options,
        Bytes::new(),
    );
    let mut out = BytesMut::new();
    env.write_to(&mut out);
    out
}

async fn metrics(proxy: &Proxy) -> String {
    let mut socket = TcpStream::connect(proxy.admin_addr()).await.unwrap();
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    socket.read_to_string(&mut out).await.unwrap();
    out
}

/// `/metrics` once `done` holds, or after 30 s the last text read: the proxy counts a failed
/// handshake just after it drops the socket, so a client can see the close first.
async fn metrics_until(proxy: &Proxy, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics(proxy).await;
        if done(&text) || tokio::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

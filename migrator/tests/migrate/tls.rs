//! TLS to origin and target: one-way and mutual, the name checks, and the errors when the
//! certificate or the client certificate is wrong. Certificates are made at test time (rcgen).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_migrator::{JobError, LogObserver, Phase};
use ferry_service::tls::{ClusterTlsConfig, cluster_client_config};
use ferry_sim::exec::Executor;
use ferry_sim::server::{Cluster, ClusterConfig, TlsFiles};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::harness::{Env, assert_same_cells};

/// A throw-away certificate authority and the files it issues, removed on drop.
struct Pki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ferry-migrator-tls-{name}-{}", std::process::id()));
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

    /// A server and client certificate for `names` (DNS names or IP literals): (cert, key).
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
        let paths = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&paths.0, cert.pem()).unwrap();
        std::fs::write(&paths.1, key.serialize_pem()).unwrap();
        paths
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TLS sim of `nodes` nodes from `ip` on; `client_ca` set requires client certificates.
async fn sim(
    ip: &str,
    nodes: usize,
    cert: (PathBuf, PathBuf),
    client_ca: Option<PathBuf>,
) -> Cluster<Executor> {
    let config = ClusterConfig {
        nodes,
        listen: format!("{ip}:0").parse().unwrap(),
        tls: Some(TlsFiles {
            cert_path: cert.0,
            key_path: cert.1,
            client_ca_path: client_ca,
        }),
        ..ClusterConfig::default()
    };
    Cluster::start(config, Arc::new(Executor::default()))
        .await
        .unwrap()
}

fn client_tls(ca: PathBuf, client: Option<(PathBuf, PathBuf)>) -> ClusterTlsConfig {
    let mut tls = ClusterTlsConfig::default();
    tls.ca_path = Some(ca);
    if let Some((cert, key)) = client {
        tls.cert_path = Some(cert);
        tls.key_path = Some(key);
    }
    tls
}

async fn session(c: &Cluster<Executor>, tls: &ClusterTlsConfig) -> Session {
    SessionBuilder::new()
        .known_node_addr(c.addresses()[0])
        .connection_timeout(Duration::from_secs(5))
        .tls_context(Some(Arc::new(
            cluster_client_config("test.tls", tls).unwrap(),
        )))
        .build()
        .await
        .unwrap()
}

/// Origin: two TLS nodes (one-way TLS, so the second is found through `system.peers` and
/// reached over TLS too). Target: one node requiring client certificates.
async fn tls_env(net: u8, pki: &Pki) -> (Env, ClusterTlsConfig, ClusterTlsConfig) {
    let (o1, o2, t1) = (
        format!("127.0.{net}.1"),
        format!("127.0.{net}.2"),
        format!("127.0.{net}.3"),
    );
    let origin = sim(&o1, 2, pki.issue("origin", &[&o1, &o2]), None).await;
    let target = sim(&t1, 1, pki.issue("target", &[&t1]), Some(pki.ca_path())).await;
    let origin_tls = client_tls(pki.ca_path(), None);
    let target_tls = client_tls(pki.ca_path(), Some(pki.issue("migrator", &["migrator"])));
    let o = session(&origin, &origin_tls).await;
    let t = session(&target, &target_tls).await;
    let job_dir =
        std::env::temp_dir().join(format!("ferry-migrator-test-{}-{net}", std::process::id()));
    let _ = std::fs::remove_dir_all(&job_dir);
    let env = Env {
        origin,
        target,
        o,
        t,
        job_dir,
    };
    env.origin_cql(&[
        "CREATE KEYSPACE sec WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE sec.t (k int, c int, v text, PRIMARY KEY (k, c))",
    ])
    .await;
    for k in 0..40 {
        env.origin_cql(&[&format!(
            "INSERT INTO sec.t (k, c, v) VALUES ({k}, {}, 'v{k}') USING TIMESTAMP {}",
            k % 3,
            1000 + k
        )])
        .await;
    }
    (env, origin_tls, target_tls)
}

#[tokio::test]
async fn a_migration_between_tls_clusters_copies_the_rows_with_mutual_tls_to_target() {
    let pki = Pki::new("copy");
    let (env, origin_tls, target_tls) = tls_env(180, &pki).await;
    assert_eq!(env.origin.addresses().len(), 2);
    let mut spec = env.spec(&["sec.t"]);
    spec.origin.tls = Some(origin_tls);
    spec.target.tls = Some(target_tls);
    let (report, _) = env.run(spec).await;
    assert_eq!(report.tables[0].phase, Phase::Done, "{report:?}");
    assert_eq!(report.tables[0].rows, 40);
    assert_same_cells(&env, "sec", "t");
    env.stop().await;
}

#[tokio::test]
async fn a_wrong_ca_or_a_missing_client_certificate_fails_naming_the_cluster() {
    let pki = Pki::new("wrong");
    let other = Pki::new("other");
    let (env, origin_tls, target_tls) = tls_env(181, &pki).await;

    // Origin's certificate is not signed by the CA the migrator trusts.
    let mut spec = env.spec(&["sec.t"]);
    spec.origin.tls = Some(client_tls(other.ca_path(), None));
    spec.target.tls = Some(target_tls.clone());
    let e = ferry_migrator::run(spec, Arc::new(LogObserver))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            JobError::Connect {
                cluster: "origin",
                ..
            }
        ),
        "{e}"
    );
    let text = e.to_string();
    assert!(text.starts_with("cannot connect to origin ("), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");

    // Target requires a client certificate; the migrator has none.
    let mut spec = env.spec(&["sec.t"]);
    spec.origin.tls = Some(origin_tls.clone());
    spec.target.tls = Some(client_tls(pki.ca_path(), None));
    let e = ferry_migrator::run(spec, Arc::new(LogObserver))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            JobError::Connect {
                cluster: "target",
                ..
            }
        ),
        "{e}"
    );

    // Plain TCP to a TLS node: refused too, not hung.
    let mut spec = env.spec(&["sec.t"]);
    spec.origin.tls = Some(origin_tls);
    let e = ferry_migrator::run(spec, Arc::new(LogObserver))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            JobError::Connect {
                cluster: "target",
                ..
            }
        ),
        "{e}"
    );
    env.stop().await;
}

#[tokio::test]
async fn node_names_are_checked_against_server_name_or_the_address() {
    let pki = Pki::new("names");
    let ip = "127.0.182.1";
    // The node's certificate names a host, not its address.
    let origin = sim(ip, 1, pki.issue("named", &["db.example"]), None).await;
    let spec_for = |tls: ClusterTlsConfig| {
        let mut c = ferry_migrator::ClusterSpec::new(vec![origin.addresses()[0].to_string()]);
        c.tls = Some(tls);
        c
    };
    let base = client_tls(pki.ca_path(), None);

    let e = ferry_migrator::connect("origin", &spec_for(base.clone()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not valid for name"), "{e}");

    let mut named = base.clone();
    named.server_name = Some("db.example".to_owned());
    let s = ferry_migrator::connect("origin", &spec_for(named))
        .await
        .unwrap();
    s.query_unpaged("SELECT release_version FROM system.local", ())
        .await
        .unwrap();

    let mut wrong = base.clone();
    wrong.server_name = Some("other.example".to_owned());
    assert!(
        ferry_migrator::connect("origin", &spec_for(wrong))
            .await
            .is_err()
    );

    let mut unchecked = base;
    unchecked.verify_hostname = false;
    ferry_migrator::connect("origin", &spec_for(unchecked))
        .await
        .unwrap();
    origin.shutdown().await;
}

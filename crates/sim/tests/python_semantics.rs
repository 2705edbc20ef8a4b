//! Cassandra semantics through a real third-party client: the Python `cassandra-driver` runs
//! `tests/python/semantics.py` against a simulated cluster (installed by `.ci/run`).

use std::net::SocketAddr;
use std::sync::Arc;

use ferry_sim::exec::Executor;
use ferry_sim::server::{Cluster, ClusterConfig};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/semantics.py");

async fn start(nodes: usize, first_ip: &str, users: Vec<(String, String)>) -> Cluster<Executor> {
    let config = ClusterConfig {
        nodes,
        listen: format!("{first_ip}:0").parse().expect("address"),
        users,
        ..ClusterConfig::default()
    };
    Cluster::start(config, Arc::new(Executor::default()))
        .await
        .expect("cluster starts")
}

async fn run_suite(addr: SocketAddr, version: u8, extra: &[&str]) {
    let mut args = vec![
        SCRIPT.to_owned(),
        addr.ip().to_string(),
        addr.port().to_string(),
        version.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = tokio::process::Command::new("python3")
        .args(&args)
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "semantic suite failed on v{version} {extra:?}:\n{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_driver_semantics_on_protocol_v4() {
    let cluster = start(1, "127.0.0.1", Vec::new()).await;
    run_suite(cluster.addresses()[0], 4, &[]).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_driver_semantics_on_protocol_v3() {
    let cluster = start(1, "127.0.0.1", Vec::new()).await;
    run_suite(cluster.addresses()[0], 3, &[]).await;
    cluster.shutdown().await;
}

/// Three nodes (127.0.1.1–3), v5 segments with LZ4: discovery, token-aware routing and every
/// semantic check through the compressed v5 framing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_driver_semantics_on_v5_lz4_three_nodes() {
    let cluster = start(3, "127.0.1.1", Vec::new()).await;
    run_suite(cluster.addresses()[0], 5, &["--compression", "lz4"]).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_driver_semantics_with_password_auth() {
    let cluster = start(1, "127.0.0.1", vec![("cassandra".into(), "s3cret".into())]).await;
    run_suite(
        cluster.addresses()[0],
        4,
        &[
            "--auth",
            "cassandra:s3cret",
            "--only",
            "ddl_and_driver_metadata,every_type_roundtrips,lightweight_transactions",
        ],
    )
    .await;
    cluster.shutdown().await;
}

/// v5 EXECUTE after `ALTER TABLE … ADD`: the prepared `SELECT *` gets METADATA_CHANGED and the
/// new columns (127.0.7.10, outside the other tests' addresses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_driver_sees_metadata_changed_on_v5() {
    let cluster = start(1, "127.0.7.10", Vec::new()).await;
    let addr = cluster.addresses()[0];
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/metadata_changed.py"
    );
    let out = tokio::process::Command::new("python3")
        .args([script, &addr.ip().to_string(), &addr.port().to_string()])
        .output()
        .await
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.shutdown().await;
}

//! `cqlsh` (PyPI, installed by `.ci/run`) against a simulated cluster: statements through cqlsh,
//! and `DESCRIBE KEYSPACE` output that recreates the same schema when replayed.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use std::net::SocketAddr;
use std::sync::Arc;

use ferry_sim::exec::Executor;
use ferry_sim::server::{Cluster, ClusterConfig};

async fn cqlsh(addr: SocketAddr, args: &[&str]) -> String {
    let out = tokio::process::Command::new("cqlsh")
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        // The defaults (5 s to connect, 10 s per request) are short on a loaded machine.
        .args(["--connect-timeout", "30", "--request-timeout", "30"])
        .args(args)
        .output()
        .await
        .expect("cqlsh is installed (pip install cqlsh, as .ci/run does)");
    // cqlsh prints its version-mismatch banner on stdout (as it does against a real 5.0.4
    // server); it is not part of the output.
    let stdout: String = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("WARNING: cqlsh was built against"))
        .map(|l| format!("{l}\n"))
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // cqlsh reports statement errors on stderr; the version banner warning is not one.
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("cqlsh was built against"))
        .collect();
    assert!(
        out.status.success() && errors.is_empty(),
        "cqlsh {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_keyspace_output_recreates_the_schema() {
    let config = ClusterConfig {
        listen: "127.0.5.1:0".parse().unwrap(),
        ..ClusterConfig::default()
    };
    let cluster = Cluster::start(config, Arc::new(Executor::default()))
        .await
        .unwrap();
    let addr = cluster.addresses()[0];
    cqlsh(
        addr,
        &[
            "-e",
            "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};
             CREATE TYPE shop.address (street text, zip int, tags set<text>);
             CREATE TABLE shop.orders (customer int, region text, placed timestamp, total decimal,
               items map<text, int>, addr frozen<address>, vip boolean static,
               PRIMARY KEY ((customer, region), placed))
               WITH CLUSTERING ORDER BY (placed DESC) AND comment = 'it''s orders' AND default_time_to_live = 3600;
             CREATE TABLE shop.\"Counters\" (k text PRIMARY KEY, n counter);",
        ],
    )
    .await;
    let before = cqlsh(addr, &["-e", "DESCRIBE KEYSPACE shop"]).await;
    assert!(before.contains("CREATE TABLE shop.orders ("), "{before}");
    assert!(
        before.contains("PRIMARY KEY ((customer, region), placed)"),
        "{before}"
    );
    assert!(
        before.contains("CREATE TABLE shop.\"Counters\""),
        "{before}"
    );
    assert!(before.contains("CREATE TYPE shop.address"), "{before}");

    cqlsh(addr, &["-e", "DROP KEYSPACE shop"]).await;
    let file = std::env::temp_dir().join(format!("ferry-describe-{}.cql", std::process::id()));
    std::fs::write(&file, &before).unwrap();
    cqlsh(addr, &["-f", file.to_str().unwrap()]).await;
    let after = cqlsh(addr, &["-e", "DESCRIBE KEYSPACE shop"]).await;
    let _ = std::fs::remove_file(&file);
    assert_eq!(
        after, before,
        "replaying DESCRIBE output recreates the same schema"
    );

    // Data through cqlsh, displayed as cqlsh formats it.
    cqlsh(addr, &["-e", "INSERT INTO shop.orders (customer, region, placed, total, items, vip) VALUES (1, 'eu', '2026-11-21 10:00:00+0000', 12.50, {'apple': 3}, true)"]).await;
    let rows = cqlsh(addr, &["-e", "SELECT customer, total, items, vip FROM shop.orders WHERE customer = 1 AND region = 'eu'"]).await;
    assert!(
        rows.contains("12.50") && rows.contains("{'apple': 3}") && rows.contains("True"),
        "{rows}"
    );
    cluster.shutdown().await;
}

//! The Python cassandra-driver (PyPI, with `lz4`) against the simulator: discovery, every
//! protocol version, compression, auth, version downgrade, out-of-order completion, injected
//! errors and node DOWN/UP.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use ferry_cql::Consistency;
use ferry_sim::server::{ClusterConfig, FaultAction, RequestMatcher, faults};

use super::{config, start};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/server/python/driver.py");

fn args(mode: &str, addr: SocketAddr, opts: &[&str]) -> Vec<String> {
    let mut a = vec![
        SCRIPT.to_owned(),
        mode.to_owned(),
        addr.ip().to_string(),
        addr.port().to_string(),
    ];
    a.extend(opts.iter().map(|s| (*s).to_owned()));
    a
}

/// Runs the script to completion (off the runtime's threads) and parses its output.
async fn python(mode: &str, addr: SocketAddr, opts: &[&str]) -> BTreeMap<String, String> {
    let args = args(mode, addr, opts);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(&args)
            .output()
            .expect("python3 with cassandra-driver must be installed (see .ci/run)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "driver script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&stdout)
}

fn parse(s: &str) -> BTreeMap<String, String> {
    s.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_are_discovered_with_the_default_negotiation() {
    let cluster = start(config(3)).await;
    // No protocol_version: the driver starts at DSE_V2 (0x42) and downgrades until v5.
    let r = python("connect", cluster.addresses()[0], &[]).await;
    assert_eq!(r.get("error"), None, "{r:?}");
    assert_eq!(r["protocol"], "5");
    assert_eq!(r["hosts"], "3");
    assert_eq!(r["release_version"], "5.0.4");
    assert_eq!(r["token_owners"], "48");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_and_compression_connects() {
    let cluster = start(config(1)).await;
    let addr = cluster.addresses()[0];
    for opts in [
        &["protocol=3"][..],
        &["protocol=3", "compression=lz4"],
        &["protocol=4"],
        &["protocol=4", "compression=lz4"],
        &["protocol=5", "compression=none"],
        &["protocol=5", "compression=lz4"],
    ] {
        let r = python("connect", addr, opts).await;
        assert_eq!(r.get("error"), None, "{opts:?}: {r:?}");
        assert_eq!(
            r["protocol"],
            opts[0].trim_start_matches("protocol="),
            "{opts:?}"
        );
        assert_eq!(r["hosts"], "1");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_authentication() {
    let cluster = start(ClusterConfig {
        users: vec![("alice".to_owned(), "secret".to_owned())],
        ..config(1)
    })
    .await;
    let addr = cluster.addresses()[0];
    let r = python("connect", addr, &["user=alice", "password=secret"]).await;
    assert_eq!(r.get("error"), None, "{r:?}");
    assert_eq!(r["protocol"], "5");
    let r = python(
        "connect",
        addr,
        &["protocol=4", "user=alice", "password=wrong"],
    )
    .await;
    let err = &r["error"];
    assert!(err.starts_with("AuthenticationFailed"), "{err}");
    assert!(
        err.contains("Provided username alice and/or password are incorrect"),
        "{err}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_one_connection_complete_out_of_order() {
    let cluster = start(config(1)).await;
    let r = python("connect", cluster.addresses()[0], &["order=1"]).await;
    assert_eq!(r["connections"], "1", "{r:?}");
    assert_eq!(r["order"], "fast,slow");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_errors_reach_the_driver() {
    let cluster = start(config(1)).await;
    let addr = cluster.addresses()[0];
    cluster.node(0).faults().add(
        RequestMatcher::any().table("ks", "t"),
        FaultAction::Error(faults::write_timeout(
            Consistency::LocalQuorum,
            2,
            ferry_cql::response::WriteType::Simple,
        )),
    );
    let r = python(
        "connect",
        addr,
        &["fault=INSERT INTO ks.t (a) VALUES ('x')"],
    )
    .await;
    assert!(r["fault"].starts_with("WriteTimeout"), "{r:?}");
    assert!(r["fault"].contains("LOCAL_QUORUM"), "{r:?}");
    cluster.node(0).faults().clear();
    cluster.node(0).faults().add(
        RequestMatcher::any()
            .kind(ferry_cql::statement::classify::StatementKind::Select)
            .table("ks", "t"),
        FaultAction::Error(faults::read_timeout(Consistency::One, 1)),
    );
    let r = python("connect", addr, &["fault=SELECT * FROM ks.t"]).await;
    assert!(r["fault"].starts_with("ReadTimeout"), "{r:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_node_is_down_and_restarted_node_is_up() {
    let cluster = start(config(3)).await;
    let watched = cluster.addresses()[2];
    let args = args(
        "updown",
        cluster.addresses()[0],
        &[&format!("watch={}", watched.ip())],
    );
    let mut child = Command::new("python3")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = move || tokio::task::block_in_place(|| lines.next().unwrap().unwrap());
    assert_eq!(next_line(), "ready\tTrue");
    cluster.node(2).stop().await;
    assert!(!cluster.node(2).is_up());
    writeln!(stdin, "stopped").unwrap();
    assert_eq!(next_line(), "down\tTrue");
    cluster.node(2).start().await.unwrap();
    writeln!(stdin, "started").unwrap();
    assert_eq!(next_line(), "up\tTrue");
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert!(status.success());
    cluster.shutdown().await;
}

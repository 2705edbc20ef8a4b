//! Helpers shared by the `ferry` CLI test binaries. Each file of `tests/` is a test binary of
//! its own; those that need these include them with `mod common;`.

#![allow(dead_code, reason = "each test binary uses some of these helpers")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_sim::exec::Executor;
use ferry_sim::server::{Cluster, ClusterConfig};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

/// A one-node sim cluster on `ip`, any port.
pub(crate) async fn sim(ip: &str) -> Cluster<Executor> {
    let config = ClusterConfig {
        nodes: 1,
        listen: format!("{ip}:0").parse().unwrap(),
        ..ClusterConfig::default()
    };
    Cluster::start(config, Arc::new(Executor::default()))
        .await
        .unwrap()
}

/// A driver session to the node (or proxy) at `addr`.
pub(crate) async fn session(addr: SocketAddr) -> Session {
    SessionBuilder::new()
        .known_node_addr(addr)
        .connection_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap()
}

/// Runs each statement, failing the test with the one that failed.
pub(crate) async fn cql(s: &Session, stmts: &[&str]) {
    for q in stmts {
        s.query_unpaged(*q, ())
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
}

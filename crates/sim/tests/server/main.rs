//! Integration tests of the network layer against real drivers (Python `cassandra-driver`, Rust
//! `scylla`) and a raw TCP client, each test on its own 127.0.x.y addresses and port 0.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

mod handler;
mod python;
mod raw;
mod rust_driver;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use ferry_sim::server::{Cluster, ClusterConfig};
use handler::TestHandler;

/// Gives each test its own third octet, so clusters never collide while tests run in parallel.
fn next_base() -> SocketAddr {
    static NEXT: AtomicU8 = AtomicU8::new(10);
    let octet = NEXT.fetch_add(1, Ordering::Relaxed);
    SocketAddr::from(([127, 0, octet, 1], 0))
}

fn config(nodes: usize) -> ClusterConfig {
    ClusterConfig {
        nodes,
        listen: next_base(),
        ..ClusterConfig::default()
    }
}

async fn start(config: ClusterConfig) -> Cluster<TestHandler> {
    Cluster::start(config, Arc::new(TestHandler::default()))
        .await
        .unwrap()
}

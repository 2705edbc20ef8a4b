//! Cassandra semantics through the Rust `scylla` 1.x driver (protocol v4) against a three-node
//! [`Cluster<Executor>`] on 127.0.7.1–3.
//!
//! # Layout
//! - [`schema`]: DDL and the driver's schema metadata.
//! - [`types`]: every CQL type through prepared statements with typed Rust values.
//! - [`writes`]: timestamps, TTLs, last-write-wins, tombstones, collections, counters, LWT, batches.
//! - [`reads`]: token-range scans, paging with writes between pages, filtering, size estimates.
//! - [`routing`]: token-aware prepared statements landing on the owning node; LZ4.
//!
//! Every test shares one cluster (started once on its own runtime, so it outlives each test's
//! runtime) and works in its own keyspace, so tests run in parallel.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

mod reads;
mod routing;
mod schema;
mod types;
mod writes;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ferry_sim::exec::Executor;
use ferry_sim::server::{Cluster, ClusterConfig};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::frame::Compression;

/// The cluster every test uses, and the runtime its nodes run on.
struct Shared {
    cluster: Cluster<Executor>,
    /// Kept alive for the whole test binary: the nodes' tasks run on it.
    _runtime: tokio::runtime::Runtime,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        // A runtime of its own, started from a plain thread: a test's runtime ends with the
        // test, and `block_on` cannot run inside another runtime.
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let config = ClusterConfig {
                nodes: 3,
                listen: "127.0.7.1:0".parse().unwrap(),
                ..ClusterConfig::default()
            };
            let cluster = runtime
                .block_on(Cluster::start(config, Arc::new(Executor::default())))
                .unwrap();
            Shared {
                cluster,
                _runtime: runtime,
            }
        })
        .join()
        .unwrap()
    })
}

fn addresses() -> Vec<SocketAddr> {
    shared().cluster.addresses()
}

async fn connect(compression: Option<Compression>) -> Session {
    SessionBuilder::new()
        .known_node_addr(addresses()[0])
        .compression(compression)
        .connection_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap()
}

/// A session whose current keyspace is a fresh `name` (replication factor 1, so each token has
/// exactly one owner).
async fn session_in(name: &str) -> Session {
    let s = connect(None).await;
    create_keyspace(&s, name).await;
    s
}

async fn create_keyspace(s: &Session, name: &str) {
    s.query_unpaged(
        format!(
            "CREATE KEYSPACE {name} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        ),
        &[],
    )
    .await
    .unwrap();
    s.use_keyspace(name, false).await.unwrap();
}

/// Runs one statement without values and ignores its result.
async fn run(s: &Session, cql: &str) {
    s.query_unpaged(cql, &[])
        .await
        .unwrap_or_else(|e| panic!("{cql}: {e}"));
}

/// The rows of a query with values, typed.
async fn rows<R>(
    s: &Session,
    cql: &str,
    values: impl scylla::serialize::row::SerializeRow,
) -> Vec<R>
where
    R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
{
    let result = s
        .query_unpaged(cql, values)
        .await
        .unwrap_or_else(|e| panic!("{cql}: {e}"))
        .into_rows_result()
        .unwrap();
    result
        .rows::<R>()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

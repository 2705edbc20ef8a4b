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
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// One HTTP/1.0 request (no chunked answers); (status, body).
pub(crate) async fn http(
    method: &str,
    addr: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

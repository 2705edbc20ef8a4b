//! Two simulated clusters and a proxy in front of them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_proxy::Proxy;
use ferry_proxy::config::{ContactPoint, ProxyConfig};
use ferry_sim::exec::Executor;
use ferry_sim::server::{Cluster, ClusterConfig as SimConfig};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

pub(crate) struct Env {
    pub origin: Cluster<Executor>,
    pub target: Cluster<Executor>,
    pub proxy: Proxy,
}

pub(crate) async fn sim(ip: &str, users: Vec<(String, String)>) -> Cluster<Executor> {
    let config = SimConfig {
        nodes: 1,
        listen: format!("{ip}:0").parse().unwrap(),
        users,
        ..SimConfig::default()
    };
    Cluster::start(config, Arc::new(Executor::default()))
        .await
        .unwrap()
}

pub(crate) fn proxy_config(net: u8, origin: SocketAddr, target: SocketAddr) -> ProxyConfig {
    let listen: SocketAddr = format!("127.0.{net}.3:0").parse().unwrap();
    let mut config = ProxyConfig::default();
    config.listen = listen;
    config.origin.contact_points = vec![ContactPoint::from(origin)];
    config.target.contact_points = vec![ContactPoint::from(target)];
    // Far above any answer on a loaded machine: tests that need the proxy's own timeout set a
    // short one themselves, with a backend delay far beyond it.
    config.request_timeout = Duration::from_secs(30);
    // Every test runs with shared backend connections: the drivers' several connections share
    // one pair, so each behaviour below is checked through them too.
    config.share_backend_connections = true;
    // Each test's own admin port, beside its proxy (the default 14001 would be shared).
    config.admin.listen = format!("127.0.{net}.3:0").parse().unwrap();
    config
}

/// Origin on 127.0.`net`.1, target on .2, the proxy on .3.
pub(crate) async fn env(net: u8) -> Env {
    env_with(net, |_| {}).await
}

pub(crate) async fn env_with(net: u8, adjust: impl FnOnce(&mut ProxyConfig)) -> Env {
    let origin = sim(&format!("127.0.{net}.1"), Vec::new()).await;
    let target = sim(&format!("127.0.{net}.2"), Vec::new()).await;
    let mut config = proxy_config(net, origin.addresses()[0], target.addresses()[0]);
    adjust(&mut config);
    let proxy = Proxy::start(config).await.unwrap();
    Env {
        origin,
        target,
        proxy,
    }
}

pub(crate) async fn scylla(addr: SocketAddr) -> Session {
    SessionBuilder::new()
        .known_node_addr(addr)
        .connection_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap()
}

impl Env {
    pub(crate) async fn stop(self) {
        self.proxy.shutdown().await;
        self.origin.shutdown().await;
        self.target.shutdown().await;
    }
}

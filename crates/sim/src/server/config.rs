//! The cluster's configuration, its documented defaults and its validation.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ferry_cql::envelope::DEFAULT_MAX_BODY_LEN;

use super::tls::TlsFiles;

/// Everything [`crate::server::Cluster::start`] needs. `Default` gives one node on
/// `127.0.0.1:9042` without auth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Number of nodes (default 1).
    pub nodes: usize,
    /// Node 0's address; node `i` listens on the IPv4 address `i` above it, same port (default
    /// `127.0.0.1:9042`, so nodes are 127.0.0.1, 127.0.0.2 …, which Linux loopback answers
    /// without setup). Port 0 picks a free port for node 0 and reuses it for the others, because
    /// drivers reach peers at the control connection's port.
    pub listen: SocketAddr,
    /// Explicit per-node addresses; when non-empty it overrides `listen` and must hold `nodes`
    /// entries (default empty).
    pub addresses: Vec<SocketAddr>,
    /// Vnode tokens per node (default 16, Cassandra 5.0's `num_tokens`).
    pub vnodes: usize,
    /// `cluster_name` in `system.local` (default "Test Cluster", Cassandra's default).
    pub cluster_name: String,
    /// Data center of every node (default "datacenter1", as Cassandra's SimpleSnitch).
    pub data_center: String,
    /// Rack of every node (default "rack1").
    pub rack: String,
    /// `release_version` (default "5.0.4").
    pub release_version: String,
    /// PasswordAuthenticator users `(name, password)`; empty means no authentication (default).
    pub users: Vec<(String, String)>,
    /// Largest request body accepted (default 256 MiB, Cassandra's
    /// `native_transport_max_frame_size`).
    pub max_body_len: usize,
    /// Open connections per node; more are closed right after accept, as Cassandra's
    /// `native_transport_max_concurrent_connections` does (default 1024).
    pub max_connections: usize,
    /// Requests handled at once per connection; reading pauses beyond it (default 1024).
    pub max_in_flight: usize,
    /// Responses queued per connection for its writer (default 1024).
    pub write_queue: usize,
    /// How long [`crate::server::Cluster::shutdown`] lets in-flight requests finish (default 5 s).
    pub shutdown_grace: Duration,
    /// Seeds tokens and host ids, so runs are reproducible (default 0).
    pub seed: u64,
    /// TLS on every node's listener; `None` (default) is plain TCP. Files are read at start.
    pub tls: Option<TlsFiles>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nodes: 1,
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9042),
            addresses: Vec::new(),
            vnodes: 16,
            cluster_name: "Test Cluster".to_owned(),
            data_center: "datacenter1".to_owned(),
            rack: "rack1".to_owned(),
            release_version: "5.0.4".to_owned(),
            users: Vec::new(),
            max_body_len: DEFAULT_MAX_BODY_LEN,
            max_connections: 1024,
            max_in_flight: 1024,
            write_queue: 1024,
            shutdown_grace: Duration::from_secs(5),
            seed: 0,
            tls: None,
        }
    }
}

/// Every problem found in a [`ClusterConfig`], listed at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cluster config: {}", .problems.join("; "))]
#[non_exhaustive]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// Upper bound on nodes: the 127.0.0.x scheme and per-node tasks stay small (256 would wrap an
/// address octet on 127.0.0.1).
pub const MAX_NODES: usize = 64;

impl ClusterConfig {
    /// Checks the config, returning every problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.nodes == 0 || self.nodes > MAX_NODES {
            problems.push(format!(
                "nodes must be between 1 and {MAX_NODES}, got {}",
                self.nodes
            ));
        }
        if !self.addresses.is_empty() && self.addresses.len() != self.nodes {
            problems.push(format!(
                "addresses lists {} entries for {} nodes",
                self.addresses.len(),
                self.nodes
            ));
        }
        if self.addresses.is_empty() {
            match self.listen.ip() {
                IpAddr::V4(ip) => {
                    let last = u32::from(ip) & 0xff;
                    if last as usize + self.nodes > 256 {
                        problems.push(format!(
                            "listen address {ip} leaves no room for {} consecutive node addresses",
                            self.nodes
                        ));
                    }
                }
                IpAddr::V6(ip) if self.nodes > 1 => problems.push(format!(
                    "listen address {ip} is IPv6: give per-node addresses for {} nodes",
                    self.nodes
                )),
                IpAddr::V6(_) => {}
            }
        }
        if self.vnodes == 0 || self.vnodes > 1024 {
            problems.push(format!(
                "vnodes must be between 1 and 1024, got {}",
                self.vnodes
            ));
        }
        for (what, n) in [
            ("max_body_len", self.max_body_len),
            ("max_connections", self.max_connections),
            ("max_in_flight", self.max_in_flight),
            ("write_queue", self.write_queue),
        ] {
            if n == 0 {
                problems.push(format!("{what} must be at least 1"));
            }
        }
        if self.max_body_len > i32::MAX as usize {
            problems.push(format!(
                "max_body_len {} exceeds the protocol's limit {}",
                self.max_body_len,
                i32::MAX
            ));
        }
        for (user, _) in &self.users {
            if user.is_empty() {
                problems.push("a user has an empty name".to_owned());
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The address each node listens on; with port 0 in `listen`, node 0's port is filled in
    /// after binding (see [`ClusterConfig::listen`]).
    pub(crate) fn node_addresses(&self, port: u16) -> Vec<SocketAddr> {
        if !self.addresses.is_empty() {
            return self.addresses.clone();
        }
        match self.listen.ip() {
            IpAddr::V4(ip) => (0..self.nodes)
                .map(|i| {
                    let ip = Ipv4Addr::from(u32::from(ip).wrapping_add(i as u32));
                    SocketAddr::new(IpAddr::V4(ip), port)
                })
                .collect(),
            IpAddr::V6(ip) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        }
    }

    /// Whether PasswordAuthenticator is on.
    pub fn auth_enabled(&self) -> bool {
        !self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_lists_consecutive_addresses() {
        let c = ClusterConfig {
            nodes: 3,
            ..ClusterConfig::default()
        };
        c.validate().unwrap();
        let a = c.node_addresses(9042);
        assert_eq!(a[2], "127.0.0.3:9042".parse().unwrap());
    }

    #[test]
    fn every_problem_is_listed() {
        let c = ClusterConfig {
            nodes: 0,
            vnodes: 0,
            max_in_flight: 0,
            addresses: vec!["127.0.0.1:1".parse().unwrap()],
            ..ClusterConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.problems.len(), 4, "{e}");
        assert!(e.to_string().contains("got 0"));
    }

    #[test]
    fn octet_overflow_is_refused() {
        let c = ClusterConfig {
            nodes: 3,
            listen: "127.0.0.254:9042".parse().unwrap(),
            ..ClusterConfig::default()
        };
        assert!(c.validate().is_err());
    }
}

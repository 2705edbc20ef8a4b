//! TEMPORARY (proxy-core branch only): the fields of the config the request path reads; replaced by
//! the real module at merge.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use ferry_cql::{Consistency, ProtocolVersion};

use crate::settings::{ClusterId, ReadMode, TargetFailurePolicy};

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub origin: ClusterConfig,
    pub target: ClusterConfig,
    pub primary: ClusterId,
    pub read_mode: ReadMode,
    pub system_queries: ClusterId,
    pub replace_cql_functions: bool,
    pub inject_timestamps: bool,
    pub target_failure_policy: TargetFailurePolicy,
    pub secondary_consistency: Option<Consistency>,
    pub forward_client_credentials_to_origin: bool,
    pub blocked_protocol_versions: Vec<ProtocolVersion>,
    pub topology: TopologyConfig,
    pub request_timeout: Duration,
    pub max_client_connections: usize,
    pub max_in_flight_per_connection: usize,
    pub prepared_cache_capacity: usize,
    pub heartbeat_interval: Duration,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct TopologyConfig {
    pub addresses: Vec<SocketAddr>,
    pub index: usize,
    pub num_tokens: u16,
}

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub contact_points: Vec<String>,
    pub port: u16,
    pub local_datacenter: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub connect_timeout: Duration,
}

#[derive(Clone)]
pub struct Secret(String);
impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl ClusterConfig {
    pub fn new(contact_points: Vec<String>) -> Self {
        Self {
            contact_points,
            port: 9042,
            local_datacenter: None,
            username: None,
            password: None,
            connect_timeout: Duration::from_secs(30),
        }
    }
}

impl ProxyConfig {
    pub fn new(listen: SocketAddr, origin: ClusterConfig, target: ClusterConfig) -> Self {
        Self {
            listen,
            origin,
            target,
            primary: ClusterId::Origin,
            read_mode: ReadMode::PrimaryOnly,
            system_queries: ClusterId::Origin,
            replace_cql_functions: true,
            inject_timestamps: true,
            target_failure_policy: TargetFailurePolicy::Strict,
            secondary_consistency: None,
            forward_client_credentials_to_origin: false,
            blocked_protocol_versions: Vec::new(),
            topology: TopologyConfig {
                addresses: vec![listen],
                index: 0,
                num_tokens: 8,
            },
            request_timeout: Duration::from_secs(10),
            max_client_connections: 1000,
            max_in_flight_per_connection: 2048,
            prepared_cache_capacity: 10_000,
            heartbeat_interval: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }

    pub fn cluster(&self, id: ClusterId) -> &ClusterConfig {
        match id {
            ClusterId::Origin => &self.origin,
            ClusterId::Target => &self.target,
        }
    }
}

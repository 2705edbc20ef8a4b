//! The network layer of the simulator: nodes that speak the CQL native protocol (v3, v4, v5) to
//! real drivers and hand every statement-carrying request to a [`Handler`].
//!
//! # Layout
//! - `connection`: buffered socket I/O in whole envelopes — plain, v3/v4-compressed, or in v5
//!   segments — and the per-connection writer task.
//! - `session`: one connection's protocol state: handshake, authentication, version checks,
//!   REGISTER, and the concurrent dispatch of QUERY/PREPARE/EXECUTE/BATCH (the life of one
//!   request is drawn there).
//! - [`node`]: a node's listener, accept loop, connection limit and stop/restart.
//! - [`cluster`]: starting all nodes from a [`ClusterConfig`], and graceful shutdown.
//! - [`topology`]: node identities (address, host id, DC, rack, vnode tokens).
//! - [`events`]: the cluster-wide event bus behind REGISTER/EVENT.
//! - [`faults`]: per-node fault rules (delay, injected errors, close/reset).
//! - [`config`]: [`ClusterConfig`], defaults and validation.
//! - [`tls`]: optional TLS on the listener ([`TlsFiles`]), loaded once at cluster start.
//!
//! Protocol behaviour follows Cassandra 5.0 where a client can observe it: error wording and
//! header version for unsupported versions (so drivers downgrade), handshake order, SASL PLAIN
//! messages, and which malformed inputs close the connection (only those after which the byte
//! stream cannot be resynchronised).

pub mod cluster;
pub mod config;
pub(crate) mod connection;
pub mod events;
pub mod faults;
pub mod node;
mod session;
pub mod tls;
pub mod topology;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use ferry_cql::envelope::BodyExtensions;
use ferry_cql::message::{Request, Response};
use ferry_cql::protocol::ProtocolVersion;

pub use cluster::Cluster;
pub use config::{ClusterConfig, ConfigError};
pub use events::EventSender;
pub use faults::{FaultAction, Faults, RequestMatcher, RuleId, RuleInfo};
pub use node::Node;
pub use session::{CQL_VERSION, PROTOCOL_VERSIONS};
pub use tls::TlsFiles;
pub use topology::{NodeInfo, Topology};

/// Executes statements. Implemented by the simulator's executor; tests use small ones.
pub trait Handler: Send + Sync + 'static {
    /// QUERY, PREPARE, EXECUTE and BATCH (already decompressed and decoded). The returned
    /// response is sent on the request's stream. Never called for STARTUP, OPTIONS,
    /// AUTH_RESPONSE or REGISTER.
    ///
    /// Answering `Result(SetKeyspace(ks))` makes `ks` the connection's keyspace (USE). A panic
    /// is answered with SERVER_ERROR and does not affect the connection.
    fn handle(
        &self,
        ctx: &RequestContext,
        request: Request,
    ) -> impl Future<Output = Response> + Send;
}

/// What the handler knows about the request besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The node the client is connected to (the coordinator).
    pub node: Arc<NodeInfo>,
    /// All nodes, for `system.peers` and token ownership.
    pub cluster: Arc<Topology>,
    /// The connection's protocol version; the response is encoded in it.
    pub version: ProtocolVersion,
    /// The request's stream id.
    pub stream: i16,
    /// The connection's keyspace from USE, when the request was read.
    pub keyspace: Option<String>,
    /// The authenticated user, when auth is on.
    pub user: Option<String>,
    /// The request's custom payload (tracing and warnings exist only on responses).
    pub extensions: BodyExtensions,
    /// Whether the client asked for tracing (header flag).
    pub tracing: bool,
    /// Publishes SCHEMA_CHANGE (and other) events to registered connections cluster-wide.
    pub events: EventSender,
    /// Unique per node and connection, for per-connection state in the handler.
    pub connection_id: u64,
    /// The client's address (`system.clients`-style introspection, logging).
    pub client: SocketAddr,
}

/// Why [`Cluster::start`] or [`Node::start`] failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: Arc<io::Error>,
    },
    /// A TLS file that is missing or unusable; the message names it.
    #[error("TLS: {0}")]
    Tls(String),
}

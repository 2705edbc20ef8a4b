//! ferry-sim: an in-memory cluster with Cassandra 5.0 semantics that real CQL drivers accept.
//!
//! # Layout
//! - [`server`]: the network layer. Nodes that listen on their own addresses, speak the native
//!   protocol v3/v4/v5 (handshake, compression, v5 segments, auth, events), inject faults, and
//!   hand every statement-carrying request to a [`server::Handler`].

pub mod server;

//! An in-memory cluster with Cassandra 5.0 semantics that real drivers accept. For development,
//! tests, demos and benchmarks — not for production data.
//!
//! # Layout
//! - [`cql`]: CQL text → statement AST ([`cql::parse`]), and literals / bound values →
//!   typed values ([`cql::term_to_value`]).
//! - [`murmur3`]: Cassandra's `Murmur3Partitioner` token and partition key serialization.
//! - [`schema`]: keyspaces, tables, columns, user types and the [`schema::Catalog`] that
//!   changes them with Cassandra's rules.
//! - [`store`]: the data: cells with timestamps and TTLs, tombstones, collections, counters,
//!   LWT, reads with paging ([`store::Store`]).
//! - [`server`]: the network layer. Nodes that listen on their own addresses, speak the native
//!   protocol v3/v4/v5 (handshake, compression, v5 segments, auth, events), inject faults, and
//!   hand every statement-carrying request to a [`server::Handler`].
//! - [`exec`]: the executor (system tables, schema tables, DESCRIBE, prepared statements).
//! - [`admin`]: the admin HTTP API (`ferry sim --admin`): fault injection, node stop/start,
//!   prepared-cache clearing and table dumps over JSON.

pub mod admin;
pub mod cql;
pub mod exec;
pub mod murmur3;
pub mod schema;
pub mod server;
pub mod store;

//! ferry-sim: an in-memory cluster with Cassandra 5.0 semantics, for development, tests,
//! demos and benchmarks (not for production data).
//!
//! # Layout
//! - [`murmur3`]: Cassandra's `Murmur3Partitioner` token and partition key serialization.
//! - [`schema`]: keyspaces, tables, columns, user types and the [`schema::Catalog`] that
//!   changes them with Cassandra's rules.
//! - [`store`]: the data: cells with timestamps and TTLs, tombstones, collections, counters,
//!   LWT, reads with paging ([`store::Store`]).

pub mod murmur3;
pub mod schema;
pub mod store;

//! ferry-sim: an in-memory cluster with Cassandra 5.0 semantics.
//!
//! # Layout
//! - [`murmur3`]: Cassandra's `Murmur3Partitioner` token and partition key serialization.
pub mod murmur3;

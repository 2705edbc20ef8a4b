//! An in-memory cluster with Cassandra 5.0 semantics that real drivers accept. For development,
//! tests, demos and benchmarks — not for production data.
//!
//! # Layout
//! - [`exec`]: the executor (system tables, schema tables, statement execution).

pub mod exec;

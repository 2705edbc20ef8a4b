//! An in-memory cluster with Cassandra 5.0 semantics that real drivers accept. For development,
//! tests, demos and benchmarks — not for production data.
//!
//! # Layout
//! - [`cql`]: CQL text → statement AST ([`cql::parse`]), and literals / bound values →
//!   typed values ([`cql::term_to_value`]).
//! - [`exec`]: the executor (system tables, schema tables, DESCRIBE, prepared statements).

pub mod cql;
pub mod exec;

//! An in-memory cluster with Cassandra 5.0 semantics that real drivers accept.
//!
//! # Layout
//! - [`cql`]: CQL text → statement AST ([`cql::parse`]), and literals / bound values →
//!   typed values ([`cql::term_to_value`]).

pub mod cql;

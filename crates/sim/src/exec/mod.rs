//! The executor: runs parsed statements against the store and answers from cluster state.
//!
//! # Layout
//! - [`virtual_table`]: tables computed at query time, filtered and projected like a SELECT.
//! - [`describe`]: server-side `DESCRIBE` rows and CREATE statements in Cassandra's format.
//! - [`error`]: execution errors and the CQL ERROR each becomes.
//! - [`prepared`]: prepared statement ids (as Cassandra computes them) and the per-node cache.
//! - [`schema_tables`]: `system_schema.*` in Cassandra 5.0's layout, and CQL type text.
//! - [`select_virtual`]: a parsed SELECT on a virtual table.
//! - [`system_tables`]: `system.local`, `system.peers`, `system.peers_v2`.

pub mod describe;
pub mod error;
pub mod prepared;
pub mod schema_tables;
pub mod select_virtual;
pub mod system_tables;
pub mod virtual_table;

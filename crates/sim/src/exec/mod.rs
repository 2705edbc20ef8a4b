//! The executor: runs parsed statements against the store and answers from cluster state.
//!
//! # Layout
//! - [`executor`]: the [`Executor`] (the nodes' [`crate::server::Handler`]): QUERY, PREPARE,
//!   EXECUTE and BATCH dispatch, prepared caches.
//! - `ddl`: schema statements and DESCRIBE; `write`: INSERT/UPDATE/DELETE, LWT and batches;
//!   `read`: SELECT; `restrict`: WHERE analysis; `bind`: PREPARE's variable metadata.
//! - [`catalog_view`]: the catalog as schema-table and DESCRIBE rows.
//! - [`virtual_table`]: tables computed at query time, filtered and projected like a SELECT.
//! - [`select_virtual`]: a parsed SELECT on a virtual table.
//! - [`system_tables`]: `system.local`, `system.peers`, `system.peers_v2`.
//! - [`size_estimates`]: `system.size_estimates` / `system.table_estimates` per node's ranges.
//! - [`schema_tables`]: `system_schema.*` in Cassandra 5.0's layout, and CQL type text.
//! - [`describe`]: server-side `DESCRIBE` rows and CREATE statements in Cassandra's format.
//! - [`prepared`]: prepared statement ids (as Cassandra computes them) and the per-node cache.
//! - [`error`]: execution errors and the CQL ERROR each becomes.

mod bind;
pub mod catalog_view;
mod ddl;
pub mod describe;
pub mod error;
pub mod executor;
pub mod prepared;
mod read;
mod restrict;
pub mod schema_tables;
pub mod select_virtual;
pub mod size_estimates;
pub mod system_tables;
pub mod virtual_table;
mod write;

pub use executor::Executor;

//! The executor: runs parsed statements against the store and answers from cluster state.
//!
//! # Layout
//! - [`virtual_table`]: tables computed at query time, filtered and projected like a SELECT.
//! - [`system_tables`]: `system.local`, `system.peers`, `system.peers_v2`.

pub mod system_tables;
pub mod virtual_table;

//! `ferry proxy`: the zero-downtime dual-write CQL proxy. Clients connect to it as to a Cassandra
//! node; every write goes to origin and target, reads go to the primary, and the primary is
//! switched live at cutover.
//!
//! # Layout
//! - [`rewrite`]: body rewrites that keep dual writes identical: default timestamps, prepared-id
//!   splicing, and non-deterministic functions (`now()`, `uuid()` …) evaluated once.
//! - [`settings`]: cluster identities, read mode, target-failure policy and the live (atomically
//!   switchable) routing settings.

pub mod rewrite;
pub mod settings;

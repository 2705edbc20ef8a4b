//! `ferry proxy`: the zero-downtime dual-write CQL proxy. Clients connect to it as to a Cassandra
//! node; every write goes to origin and target, reads go to the primary, and the primary is
//! switched live at cutover.
//!
//! # Layout
//! - [`settings`]: cluster identities, read mode, target-failure policy and the live (atomically
//!   switchable) routing settings.
//! - [`config`]: the typed [`config::ProxyConfig`]: YAML file plus `FERRY_PROXY_…`/`ZDM_…`
//!   environment overlay, validation that lists every problem.

pub mod config;
pub mod settings;

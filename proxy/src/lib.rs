//! `ferry proxy`: the zero-downtime dual-write CQL proxy. Clients connect to it as to a Cassandra
//! node; every write goes to origin and target, reads go to the primary, and the primary is
//! switched live at cutover.
//!
//! # Layout
//! - [`settings`]: cluster identities, read mode, target-failure policy and the live (atomically
//!   switchable) routing settings.
//! - [`config`]: the typed configuration.
//! - [`proxy`]: the service — cluster probing, the accept loop, connection limits, shutdown.
//! - `session`: one client connection — handshake (versions, compression, authentication
//!   modes) and the request loop.
//! - `route`: where each request goes, from the statement classifier and the prepared cache.
//! - `backend`: one multiplexed connection to a cluster node (stream ids, timeouts,
//!   heartbeats).
//! - `completion`: where answers go — forwarded reads, joined dual writes, mirrored reads
//!   compared.
//! - `pool`: backend connections shared by sessions whose handshakes are identical.
//! - `prepared`: the bounded prepared-statement cache (origin id → target id).
//! - `topology`: `system.local`/`system.peers` answered with the proxy instances.
//! - `frame`: buffered socket I/O in whole envelopes, v5 segments, coalesced writes, over plain
//!   TCP or TLS.
//! - [`error`]: backend failures and the CQL error each becomes.
//! - `metrics`: every Prometheus metric, defined once, and the pre-resolved handles the
//!   request path updates.
//! - `health`: each cluster's readiness from consecutive failures; re-probes a DOWN cluster.
//! - [`repairs`]: best-effort writes the target failed, counted per table, with their partition
//!   keys where known, kept until the migrator acknowledged a repair request.
//! - `journal`: the optional on-disk repair journal (`repair_journal`) — the repair log's
//!   failures, waiting re-migrations and settlements, replayed and compacted at start.
//! - `migration`: what the migrator reported per table — `/status`, metrics, which tables
//!   dual reads cover, whether a cutover to target is safe.
//! - `update`: the proxy's end of the Update channel — listens for the migrator, applies its
//!   reports, sends repair and re-migrate requests.
//! - [`admin`]: the admin HTTP server — `/metrics`, health, live primary/read-mode, `/status`.
//! - [`tls`]: TLS towards clients and clusters — certificates loaded and checked at start, the
//!   handshakes (client ones with a timeout).
//! - [`rewrite`]: body rewrites that make dual writes identical on both clusters — injected
//!   client timestamps, `now()`/`uuid()` evaluated once, prepared ids spliced for target.

pub mod admin;
mod backend;
mod completion;
pub mod config;
pub mod error;
mod frame;
mod health;
mod journal;
mod metrics;
mod migration;
mod pool;
mod prepared;
pub mod proxy;
pub mod repairs;
pub mod rewrite;
mod route;
mod session;
pub mod settings;
mod signal;
pub mod tls;
mod topology;
mod update;

pub use journal::JournalError;
pub use migration::cutover_refusal;
pub use proxy::{Proxy, StartError, run};
pub use update::UpdateStartError;

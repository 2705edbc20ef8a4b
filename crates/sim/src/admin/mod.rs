//! The admin HTTP API of `ferry sim`: fault injection and inspection of a running cluster,
//! JSON in and out.
//!
//! | method and path | what it does |
//! |---|---|
//! | `GET /health` | 200 with the node count and how many are up |
//! | `GET /nodes` | each node's id, address, up/down, open connections, fault rules, prepared statements |
//! | `POST /nodes/{id}/stop`, `POST /nodes/{id}/start` | stop a node as if killed; start it again |
//! | `POST /nodes/{id}/faults` | add a rule (see [`rules`]) → `201 {"id": N}` |
//! | `GET /nodes/{id}/faults` | list the rules in the order they are checked |
//! | `DELETE /nodes/{id}/faults/{rule}`, `DELETE /nodes/{id}/faults` | remove one rule, or all |
//! | `POST /nodes/{id}/connections/drop`, `…/reset` | close (FIN) or reset (RST) every open connection |
//! | `POST /nodes/{id}/prepared/clear` | forget the node's prepared statements (next EXECUTE gets UNPREPARED) |
//! | `GET /tables/{keyspace}/{table}?limit=N` | the stored cells with value, writetime and TTL (see [`cells`]) |
//!
//! Mistakes (unknown node, rule or table, bad JSON, unknown error kind) get a 4xx with
//! `{"error": "...", "status": N}`; see [`ApiError`].
//!
//! # Layout
//! - this file: [`serve`], ferry-service's accept loop (connection limit, timeouts, graceful
//!   shutdown) over the API.
//! - `api`: routing, the endpoints, and [`ApiError`].
//! - [`rules`]: fault rules as JSON, both ways.
//! - [`cells`]: a table's stored cells as JSON.

mod api;
pub mod cells;
pub mod rules;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use api::ApiError;
pub use rules::RuleError;

use crate::exec::Executor;
use crate::server::Cluster;

/// Admin connections served at once; more wait in the listen backlog (ferry-service's limit).
pub const MAX_CONNECTIONS: usize = ferry_service::http::MAX_CONNECTIONS;

/// Serves the admin API for `cluster` on `listener` until `shutdown` completes; then stops
/// accepting, lets requests in progress finish within a grace period, and returns.
pub async fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster<Executor>>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let api = Arc::new(api::Api::new(cluster));
    ferry_service::http::serve(listener, api, shutdown).await;
}

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
//! - this file: [`serve`], the accept loop with its connection limit, timeouts and graceful
//!   shutdown.
//! - `api`: routing, the endpoints, and [`ApiError`].
//! - [`rules`]: fault rules as JSON, both ways.
//! - [`cells`]: a table's stored cells as JSON.

mod api;
pub mod cells;
pub mod rules;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub use api::ApiError;
pub use rules::RuleError;

use crate::exec::Executor;
use crate::server::Cluster;

/// Admin connections served at once; more wait in the listen backlog. An operator's curl and a
/// test harness need a handful.
pub const MAX_CONNECTIONS: usize = 64;
/// A client must send its request head within this (slow or idle clients cannot hold a slot).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, how long requests in progress (e.g. a node stop) may take to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Longest pause after repeated accept errors (e.g. out of file descriptors).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves the admin API for `cluster` on `listener` until `shutdown` completes; then stops
/// accepting, lets requests in progress finish within a grace period, and returns.
pub async fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster<Executor>>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let api = Arc::new(api::Api::new(cluster));
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut backoff = Duration::from_millis(1);
    tokio::pin!(shutdown);
    loop {
        let accept = async {
            // A permit first, so over the limit connections wait in the backlog, unread.
            let permit = limit.clone().acquire_owned().await;
            (permit, listener.accept().await)
        };
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            (permit, accepted) = accept => {
                // The semaphore is never closed.
                let Ok(permit) = permit else { break };
                match accepted {
                    Ok((stream, peer)) => {
                        backoff = Duration::from_millis(1);
                        let api = api.clone();
                        let mut stop = stop_rx.clone();
                        connections.spawn(async move {
                            let service = service_fn(move |req| {
                                let api = api.clone();
                                async move { Ok::<_, Infallible>(api.handle(req).await) }
                            });
                            let conn = http1::Builder::new()
                                .timer(TokioTimer::new())
                                .header_read_timeout(HEADER_READ_TIMEOUT)
                                .serve_connection(TokioIo::new(stream), service);
                            tokio::pin!(conn);
                            let result = tokio::select! {
                                r = conn.as_mut() => r,
                                _ = stop.changed() => {
                                    conn.as_mut().graceful_shutdown();
                                    tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut())
                                        .await
                                        .unwrap_or(Ok(()))
                                }
                            };
                            if let Err(e) = result {
                                tracing::debug!(%peer, error = %e, "admin connection ended with an error");
                            }
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, ?backoff, "admin accept failed, backing off");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                    }
                }
            }
        }
    }
    drop(listener);
    stop_tx.send_replace(true);
    while connections.join_next().await.is_some() {}
}

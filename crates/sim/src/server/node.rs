//! One node: its listener and accept loop, the connection limit, the registry of open
//! connections (so faults and shutdown can reach them), and stop/restart.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use ferry_cql::response::Event;
use ferry_cql::response::event::StatusChangeType;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use super::config::ClusterConfig;
use super::events::EventSender;
use super::faults::Faults;
use super::session::Session;
use super::topology::{NodeInfo, Topology};
use super::{Handler, StartError};

/// Listen backlog: connections waiting for accept.
const BACKLOG: u32 = 1024;
/// Longest pause after repeated accept errors (e.g. out of file descriptors).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// Prepared statement texts remembered per node for fault matching on EXECUTE; past this the
/// map starts afresh (an EXECUTE of a forgotten id then only matches rules without a statement
/// condition).
const MAX_PREPARED_TEXTS: usize = 100_000;

/// What a connection is told to do; sessions watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnCommand {
    Run,
    Close,
    Reset,
    Drain(Instant),
}

/// State shared by a node's accept loop, its sessions and their request tasks.
pub(crate) struct NodeShared<H: Handler> {
    pub(crate) info: Arc<NodeInfo>,
    pub(crate) topology: Arc<Topology>,
    pub(crate) config: Arc<ClusterConfig>,
    pub(crate) handler: Arc<H>,
    pub(crate) faults: Arc<Faults>,
    pub(crate) events: EventSender,
    /// Prepared id → statement text, learnt from PREPARE answers, for fault matching.
    prepared: Mutex<HashMap<Bytes, Arc<str>>>,
    /// Open connections' command channels, by connection id.
    connections: Mutex<HashMap<u64, Arc<watch::Sender<ConnCommand>>>>,
    next_conn: AtomicU64,
    /// Bounds open connections (`max_connections`).
    conn_limit: Arc<Semaphore>,
    /// The TLS handshake every connection starts with, when the cluster has TLS.
    pub(crate) tls: Option<TlsAcceptor>,
}

impl<H: Handler> NodeShared<H> {
    fn connections(&self) -> MutexGuard<'_, HashMap<u64, Arc<watch::Sender<ConnCommand>>>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn remember_prepared(&self, id: Bytes, text: Arc<str>) {
        let mut map = self.prepared.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_PREPARED_TEXTS && !map.contains_key(&id) {
            map.clear();
        }
        map.insert(id, text);
    }

    pub(crate) fn prepared_text(&self, id: &[u8]) -> Option<Arc<str>> {
        self.prepared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    fn command_all(&self, command: ConnCommand) {
        for tx in self.connections().values() {
            tx.send_replace(command);
        }
    }
}

/// A running accept loop and the way to stop it.
struct Running {
    stop: watch::Sender<ConnCommand>,
    task: JoinHandle<()>,
}

/// A node of the cluster: its identity, fault rules, and lifecycle controls.
pub struct Node<H: Handler> {
    shared: Arc<NodeShared<H>>,
    running: tokio::sync::Mutex<Option<Running>>,
}

impl<H: Handler> std::fmt::Debug for Node<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.shared.info.id)
            .field("address", &self.shared.info.address)
            .field("up", &self.shared.info.is_up())
            .finish()
    }
}

impl<H: Handler> Node<H> {
    pub(crate) fn new(
        info: Arc<NodeInfo>,
        topology: Arc<Topology>,
        config: Arc<ClusterConfig>,
        handler: Arc<H>,
        events: EventSender,
        tls: Option<TlsAcceptor>,
    ) -> Self {
        let conn_limit = Arc::new(Semaphore::new(config.max_connections));
        Self {
            shared: Arc::new(NodeShared {
                info,
                topology,
                config,
                handler,
                faults: Arc::default(),
                events,
                prepared: Mutex::default(),
                connections: Mutex::default(),
                next_conn: AtomicU64::new(1),
                conn_limit,
                tls,
            }),
            running: tokio::sync::Mutex::new(None),
        }
    }

    /// The node's index: the key for per-node state in the executor.
    pub fn id(&self) -> usize {
        self.shared.info.id
    }

    pub fn info(&self) -> &Arc<NodeInfo> {
        &self.shared.info
    }

    pub fn address(&self) -> SocketAddr {
        self.shared.info.address
    }

    pub fn is_up(&self) -> bool {
        self.shared.info.is_up()
    }

    /// This node's fault rules.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Open client connections.
    pub fn connection_count(&self) -> usize {
        self.shared.connections().len()
    }

    /// Closes every open connection (FIN); the node keeps accepting new ones.
    pub fn drop_connections(&self) {
        self.shared.command_all(ConnCommand::Close);
    }

    /// Resets every open connection (RST); the node keeps accepting new ones.
    pub fn reset_connections(&self) {
        self.shared.command_all(ConnCommand::Reset);
    }

    /// Starts listening with an already bound listener.
    pub(crate) async fn start_with(&self, listener: TcpListener) {
        let mut running = self.running.lock().await;
        let (stop, stop_rx) = watch::channel(ConnCommand::Run);
        let span = tracing::info_span!("node", id = self.shared.info.id, address = %self.shared.info.address);
        let task =
            tokio::spawn(accept_loop(self.shared.clone(), listener, stop_rx).instrument(span));
        *running = Some(Running { stop, task });
        self.shared.info.set_up(true);
    }

    /// Restarts a stopped node on its address and tells registered clients it is UP. No-op if
    /// it is running.
    pub async fn start(&self) -> Result<(), StartError> {
        if self.running.lock().await.is_some() {
            return Ok(());
        }
        let listener = bind(self.shared.info.address)?;
        self.start_with(listener).await;
        tracing::info!(id = self.id(), "node started");
        self.shared.events.publish(Event::StatusChange {
            change: StatusChangeType::Up,
            node: self.shared.info.address,
        });
        Ok(())
    }

    /// Stops the node as if killed: closes the listener and every connection (in-flight
    /// requests are abandoned), marks it down and tells the other nodes' registered clients.
    pub async fn stop(&self) {
        if self.halt(ConnCommand::Close).await {
            tracing::info!(id = self.id(), "node stopped");
            self.shared.events.publish(Event::StatusChange {
                change: StatusChangeType::Down,
                node: self.shared.info.address,
            });
        }
    }

    /// Stops accepting, lets connections end as `how` says, and waits for every task; false if
    /// the node was not running.
    pub(crate) async fn halt(&self, how: ConnCommand) -> bool {
        let Some(running) = self.running.lock().await.take() else {
            return false;
        };
        self.shared.info.set_up(false);
        running.stop.send_replace(how);
        if let Err(e) = running.task.await {
            tracing::error!(error = %e, "accept loop failed");
        }
        true
    }

    /// Tells the accept loop to stop without waiting (used when the cluster is dropped).
    pub(crate) fn signal(&self, how: ConnCommand) {
        if let Ok(running) = self.running.try_lock()
            && let Some(r) = running.as_ref()
        {
            r.stop.send_replace(how);
        }
    }
}

/// Binds a listener with SO_REUSEADDR, so a restarted node gets its address back while old
/// connections sit in TIME_WAIT.
pub(crate) fn bind(address: SocketAddr) -> Result<TcpListener, StartError> {
    let err = |e: io::Error| StartError::Bind {
        address,
        source: Arc::new(e),
    };
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(address).map_err(err)?;
    socket.listen(BACKLOG).map_err(err)
}

async fn accept_loop<H: Handler>(
    shared: Arc<NodeShared<H>>,
    listener: TcpListener,
    mut stop: watch::Receiver<ConnCommand>,
) {
    let mut sessions = JoinSet::new();
    let mut backoff = Duration::from_millis(1);
    loop {
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() != ConnCommand::Run {
                    break;
                }
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    backoff = Duration::from_millis(1);
                    let Ok(permit) = shared.conn_limit.clone().try_acquire_owned() else {
                        // As Cassandra: over the limit, the connection is closed at once.
                        tracing::warn!(%peer, limit = shared.config.max_connections,
                            "connection limit reached, closing the new connection");
                        drop(socket);
                        continue;
                    };
                    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                    let (tx, rx) = watch::channel(ConnCommand::Run);
                    let tx = Arc::new(tx);
                    shared.connections().insert(id, tx.clone());
                    let node = shared.clone();
                    let span = tracing::debug_span!("connection", id, %peer);
                    sessions.spawn(async move {
                        Session::serve(node.clone(), id, socket, peer, rx, tx).await;
                        node.connections().remove(&id);
                        drop(permit);
                    }.instrument(span));
                }
                Err(e) => {
                    tracing::warn!(error = %e, ?backoff, "accept failed, backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                }
            }
        }
    }
    drop(listener);
    let how = *stop.borrow();
    let how = if how == ConnCommand::Run {
        ConnCommand::Close
    } else {
        how
    };
    shared.command_all(how);
    while sessions.join_next().await.is_some() {}
}

//! The proxy service: probes both clusters, listens for clients, bounds connections, and shuts
//! down gracefully.
//!
//! ```text
//!  start(config) ─► load TLS files (a bad one stops the start) ─► metrics; bind the admin
//!                   server (readiness: STARTUP)
//!               ─► probe origin and target (OPTIONS per version, retried with backoff while a
//!                   cluster is down) ─► common versions and compressions, or a clear refusal
//!               ─► bind ─► accept loop ─► task per client (semaphore-bounded): TLS handshake
//!                   if `tls` is set (timeout) ─► session::serve
//!               ─► with `update` set: bind the Update listener, start its link task
//!               ─► admin endpoints that need the clusters start answering; readiness UP;
//!                  health::recover re-probes a cluster that goes DOWN
//!  shutdown()    ─► stop accepting; sessions answer new requests OVERLOADED and drain what is in
//!                   flight within the grace period; then the admin server stops
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_cql::Compression;
use ferry_cql::envelope::Envelope;
use ferry_cql::message::Response;
use ferry_cql::protocol::{Direction, Opcode, ProtocolVersion};
use ferry_cql::response::Supported;
use ferry_cql::response::supported::PROTOCOL_VERSIONS;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::admin::{Admin, AdminServer};
use crate::backend::BackendOptions;
use crate::completion::MirrorStats;
use crate::config::{ClusterConfig, ProxyConfig};
use crate::error::BackendError;
use crate::frame::{FrameReader, Inbound, Stream};
use crate::health::{self, Health, Probe};
use crate::journal::JournalError;
use crate::metrics::{Metrics, MetricsError};
use crate::migration::Migration;
use crate::pool::Pool;
use crate::prepared::PreparedCache;
use crate::repairs::{JournaledRemigration, RepairLog};
use crate::session;
use crate::settings::{ClusterId, LiveSettings};
use crate::signal::{Signal, SignalWait};
use crate::tls::{ClusterTls, ServerTls, TlsError};
use crate::topology::ProxyTopology;
use crate::update::{UpdateLink, UpdateStartError};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "origin and target share no usable protocol version: origin speaks {origin}, target speaks \
         {target}{blocked}"
    )]
    NoCommonVersion {
        origin: String,
        target: String,
        blocked: String,
    },
    #[error("{cluster}: none of the contact points {contact_points:?} resolved: {reason}")]
    Resolve {
        cluster: ClusterId,
        contact_points: Vec<String>,
        reason: String,
    },
    #[error("stopped before both clusters answered")]
    Stopped,
    #[error("cannot listen for the admin HTTP server on {addr}: {source}")]
    AdminBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up metric {name}: {reason}")]
    Metrics { name: &'static str, reason: String },
    /// A TLS file that is missing, unreadable or unusable.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// A cluster node refused the proxy's TLS handshake (or the proxy refused its certificate):
    /// a configuration problem that retrying would not fix.
    #[error("{cluster}: TLS handshake with {addr} failed: {reason}")]
    ClusterTls {
        cluster: ClusterId,
        addr: SocketAddr,
        reason: String,
    },
    /// The Update listener (`update.listen`) could not start: a taken port, a TLS file.
    #[error("Update channel: {0}")]
    Update(#[from] UpdateStartError),
    /// `repair_journal` cannot be read or written: a configuration problem (exit 64).
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl From<MetricsError> for StartError {
    fn from(e: MetricsError) -> Self {
        Self::Metrics {
            name: e.name,
            reason: e.source.to_string(),
        }
    }
}

/// Shared by every session.
#[derive(Debug)]
pub(crate) struct Context {
    pub config: ProxyConfig,
    pub live: Arc<LiveSettings>,
    pub prepared: PreparedCache,
    pub mirror_stats: Arc<MirrorStats>,
    /// Best-effort writes the target failed, kept for repair.
    pub repairs: Arc<RepairLog>,
    /// What the migrator reported: per-table state, the dual-read set, cutover readiness.
    pub migration: Arc<Migration>,
    /// The Update channel, when `update` is configured.
    pub update: Option<Arc<UpdateLink>>,
    /// Backend connections shared by sessions (`share_backend_connections`).
    pub pool: Arc<Pool>,
    pub metrics: Arc<Metrics>,
    /// Each cluster's readiness, fed by every backend connection.
    pub health: Arc<Health>,
    /// What OPTIONS answers: the clusters' common options.
    pub supported: Supported,
    /// Versions clients may use: spoken by both clusters and not blocked.
    pub versions: Vec<ProtocolVersion>,
    pub compressions: Vec<Compression>,
    pub topology: ProxyTopology,
    /// The client listener's TLS, when `tls` is set.
    pub tls: Option<ServerTls>,
    /// Resolved contact points per cluster, used round-robin.
    contacts: [Vec<Contact>; 2],
    /// Each cluster's TLS, when its `tls` is set.
    cluster_tls: [Option<Arc<ClusterTls>>; 2],
    next_contact: [AtomicUsize; 2],
    shutdown: watch::Receiver<bool>,
    /// Raised when `shutdown` flips (or its sender is gone): what sessions poll per wake-up.
    stopping: Signal,
}

impl Context {
    /// Where a session's dual writes are counted and their target failures recorded.
    pub(crate) fn outcomes(&self) -> crate::completion::Outcomes {
        crate::completion::Outcomes {
            failures: self.repairs.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// Cassandra's wording, listing what this proxy accepts.
    pub(crate) fn unsupported_version_message(&self, version: u8) -> String {
        let list = self
            .versions
            .iter()
            .map(|v| format!("{0}/v{0}", v.as_u8()))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "Invalid or unsupported protocol version ({version}); supported versions are ({list})"
        )
    }

    pub(crate) fn backend_options(
        &self,
        cluster: ClusterId,
        version: ProtocolVersion,
        compression: Option<Compression>,
    ) -> Result<BackendOptions, BackendError> {
        let contacts = &self.contacts[cluster.index()];
        if contacts.is_empty() {
            return Err(BackendError::NoContactPoint {
                cluster,
                reason: "no address".into(),
            });
        }
        let i = self.next_contact[cluster.index()].fetch_add(1, Ordering::Relaxed);
        let config = self.config.cluster(cluster);
        let contact = &contacts[i % contacts.len()];
        Ok(BackendOptions {
            cluster,
            addr: contact.addr,
            host: contact.host.clone(),
            tls: self.cluster_tls[cluster.index()].clone(),
            version,
            compression,
            connect_timeout: config.connect_timeout,
            request_timeout: self.config.request_timeout,
            max_in_flight: self.config.max_in_flight_per_connection,
            heartbeat_interval: self.config.heartbeat_interval,
            shared: false,
            metrics: self.metrics.clone(),
            health: self.health.clone(),
        })
    }

    /// Resolves when shutdown begins; cheap to poll again and again from one task.
    pub(crate) fn shutting_down(&self) -> SignalWait<'_> {
        self.stopping.wait()
    }
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    local_addr: SocketAddr,
    ctx: Arc<Context>,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<()>,
    connections: Arc<Semaphore>,
    admin: AdminServer,
    recover: JoinHandle<()>,
    /// The Update link's task, when `update` is configured.
    update_task: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Probes both clusters (waiting, with backoff, while one is down), then listens.
    pub async fn start(config: ProxyConfig) -> Result<Self, StartError> {
        let tls = Tls::load(&config)?;
        let metrics = Arc::new(Metrics::new()?);
        // Before the clusters are probed: a bad path stops the start at once.
        let repairs = match &config.repair_journal {
            Some(path) => {
                let (log, remigrations) = RepairLog::with_journal(metrics.clone(), path)?;
                (Arc::new(log), remigrations)
            }
            None => (Arc::new(RepairLog::new(metrics.clone())), Vec::new()),
        };
        let health = Arc::new(Health::new(config.reconnect.failure_threshold));
        // Bound first: a taken port fails at once, and readiness says STARTUP while a cluster
        // is still down.
        let admin = Arc::new(Admin::new(&config, metrics.clone(), health.clone()));
        let admin_server = AdminServer::start(config.admin.listen, admin.clone())
            .await
            .map_err(|source| StartError::AdminBind {
                addr: config.admin.listen,
                source,
            })?;
        match Self::start_serving(config, tls, metrics, health, admin, repairs).await {
            Ok(start) => Ok(start.with_admin(admin_server)),
            Err(e) => {
                admin_server.stop().await;
                Err(e)
            }
        }
    }

    async fn start_serving(
        config: ProxyConfig,
        tls: Tls,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        admin: Arc<Admin>,
        (repairs, remigrations): (Arc<RepairLog>, Vec<JournaledRemigration>),
    ) -> Result<Started, StartError> {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let [origin_tls, target_tls] = &tls.clusters;
        let origin = probe_cluster(
            ClusterId::Origin,
            &config.origin,
            origin_tls.as_deref(),
            &shutdown_rx,
        )
        .await?;
        let target = probe_cluster(
            ClusterId::Target,
            &config.target,
            target_tls.as_deref(),
            &shutdown_rx,
        )
        .await?;
        let versions: Vec<ProtocolVersion> = ProtocolVersion::ALL
            .into_iter()
            .filter(|v| origin.versions.contains(v) && target.versions.contains(v))
            .filter(|v| !config.blocked_protocol_versions.contains(v))
            .collect();
        if versions.is_empty() {
            return Err(StartError::NoCommonVersion {
                origin: version_list(&origin.versions),
                target: version_list(&target.versions),
                blocked: if config.blocked_protocol_versions.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (blocked by configuration: {})",
                        version_list(&config.blocked_protocol_versions)
                    )
                },
            });
        }
        let compressions: Vec<Compression> = origin
            .compressions
            .iter()
            .filter(|c| target.compressions.contains(c))
            .copied()
            .collect();
        let names: Vec<&str> = compressions.iter().map(|c| c.name()).collect();
        let cql_versions: Vec<&str> = origin.cql_versions.iter().map(String::as_str).collect();
        let protocol_versions: Vec<String> = versions
            .iter()
            .map(|v| format!("{0}/v{0}", v.as_u8()))
            .collect();
        let mut supported = Supported::new(&cql_versions, &names, &[]);
        supported.set(PROTOCOL_VERSIONS, protocol_versions);

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let mut topology_addresses = config.topology.addresses.clone();
        if topology_addresses.is_empty() {
            // The bound address, so a port-0 listener advertises its real port.
            topology_addresses.push(local_addr);
        }
        // The newest common version: both clusters answer OPTIONS in it.
        let probe_version = versions.last().copied().unwrap_or(ProtocolVersion::V4);
        let probes =
            [(ClusterId::Origin, &origin), (ClusterId::Target, &target)].map(|(cluster, facts)| {
                Probe {
                    contacts: facts.addresses.clone(),
                    tls: tls.clusters[cluster.index()].clone(),
                    version: probe_version,
                    timeout: config.cluster(cluster).connect_timeout,
                }
            });
        let expected = config
            .update
            .as_ref()
            .map(|u| u.expect_migrators.clone())
            .unwrap_or_default();
        let migration = Arc::new(Migration::new(metrics.migration(), expected));
        let (update, update_task) = match &config.update {
            Some(update) => {
                let name = format!("proxy-{}", config.topology.index);
                let (link, task) = UpdateLink::start(
                    update,
                    name,
                    migration.clone(),
                    repairs.clone(),
                    remigrations,
                    metrics.migration(),
                    shutdown_rx.clone(),
                )
                .await?;
                (Some(link), Some(task))
            }
            None => {
                if !remigrations.is_empty() {
                    // Kept in the journal (nothing settles them) for a start with `update`.
                    tracing::warn!(
                        count = remigrations.len(),
                        "the repair journal holds re-migrations, but no update channel is configured to send them"
                    );
                }
                (None, None)
            }
        };
        let ctx = Arc::new(Context {
            live: Arc::new(LiveSettings::new(config.primary, config.read_mode)),
            prepared: PreparedCache::new(config.prepared_cache_capacity),
            mirror_stats: Arc::new(MirrorStats::new(metrics.dual_reads())),
            repairs,
            migration,
            update,
            pool: Arc::default(),
            metrics,
            health: health.clone(),
            supported,
            versions,
            compressions,
            topology: ProxyTopology::new(
                topology_addresses,
                config.topology.index,
                config.topology.num_tokens,
            ),
            tls: tls.server,
            contacts: [origin.addresses, target.addresses],
            cluster_tls: tls.clusters,
            next_contact: [AtomicUsize::new(0), AtomicUsize::new(0)],
            shutdown: shutdown_rx,
            stopping: Signal::default(),
            config,
        });
        // The watch also resolves when its sender is dropped with the proxy.
        tokio::spawn({
            let ctx = ctx.clone();
            async move {
                let mut rx = ctx.shutdown.clone();
                let _ = rx.wait_for(|stopping| *stopping).await;
                ctx.stopping.raise();
            }
        });
        let connections = Arc::new(Semaphore::new(ctx.config.max_client_connections));
        let accept = tokio::spawn(accept_loop(listener, ctx.clone(), connections.clone()));
        let recover = tokio::spawn(health::recover(
            health.clone(),
            probes,
            ctx.config.reconnect.clone(),
            ctx.shutdown.clone(),
        ));
        admin.started(ctx.clone());
        health.mark_started();
        tracing::info!(
            %local_addr,
            tls = ctx.tls.is_some(),
            versions = %version_list(&ctx.versions),
            primary = %ctx.live.primary(),
            "ferry proxy listening"
        );
        Ok(Started {
            local_addr,
            ctx,
            shutdown,
            accept,
            connections,
            recover,
            update_task,
        })
    }

    /// Address of the admin HTTP server (metrics, health, live switches).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.addr()
    }

    /// Target write failures recorded for repair (policy `best-effort`).
    pub fn repairs(&self) -> &RepairLog {
        &self.ctx.repairs
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The Update channel's bound address, when `update` is configured.
    pub fn update_addr(&self) -> Option<SocketAddr> {
        self.ctx.update.as_ref().map(|u| u.listen_addr())
    }

    /// The live routing settings (primary, read mode), switchable while clients are connected.
    pub fn live(&self) -> &Arc<LiveSettings> {
        &self.ctx.live
    }

    /// Dual-read comparisons so far: (compared, mismatches) for `keyspace.table`.
    pub fn dual_read_counts(&self, table: &str) -> (u64, u64) {
        let c = self.ctx.mirror_stats.counts(table);
        (c.compared, c.mismatches)
    }

    /// Stops accepting, lets sessions drain within the grace period, then returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.accept.abort();
        let max = self.ctx.config.max_client_connections as u32;
        let grace = self.ctx.config.shutdown_grace + Duration::from_secs(1);
        // Every session holds a permit until it ends.
        let _ = tokio::time::timeout(grace, self.connections.acquire_many(max)).await;
        // Metrics stay scrapeable while sessions drain.
        self.admin.stop().await;
        let _ = self.recover.await;
        if let Some(task) = self.update_task {
            let _ = task.await;
        }
        // Sessions and the link are done: nothing records any more; the rest reaches the disk.
        let repairs = self.ctx.repairs.clone();
        let _ = tokio::task::spawn_blocking(move || repairs.close_journal()).await;
    }
}

/// A proxy serving clients, before the admin server is attached.
struct Started {
    local_addr: SocketAddr,
    ctx: Arc<Context>,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<()>,
    connections: Arc<Semaphore>,
    recover: JoinHandle<()>,
    update_task: Option<JoinHandle<()>>,
}

impl Started {
    fn with_admin(self, admin: AdminServer) -> Proxy {
        Proxy {
            local_addr: self.local_addr,
            ctx: self.ctx,
            shutdown: self.shutdown,
            accept: self.accept,
            connections: self.connections,
            admin,
            recover: self.recover,
            update_task: self.update_task,
        }
    }
}

/// Runs the proxy until `stop` resolves.
pub async fn run(config: ProxyConfig, stop: impl Future<Output = ()>) -> Result<(), StartError> {
    let proxy = Proxy::start(config).await?;
    stop.await;
    proxy.shutdown().await;
    Ok(())
}

async fn accept_loop(listener: TcpListener, ctx: Arc<Context>, connections: Arc<Semaphore>) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(x) => {
                backoff = Duration::from_millis(5);
                x
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        match connections.clone().try_acquire_owned() {
            Ok(permit) => {
                let ctx = ctx.clone();
                let span = tracing::info_span!("client", %peer);
                tokio::spawn(tracing::Instrument::instrument(
                    async move {
                        // The handshake runs in the connection's own task and holds its slot,
                        // so a slow or silent client delays nobody else.
                        let Some(stream) = handshake(&ctx, socket).await else {
                            return;
                        };
                        tracing::debug!("connected");
                        ctx.metrics.client_connected();
                        session::serve(ctx.clone(), stream).await;
                        ctx.metrics.client_disconnected();
                        tracing::debug!("disconnected");
                        drop(permit);
                    },
                    span,
                ));
            }
            Err(_) => {
                ctx.metrics.client_refused();
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    if let Some(stream) = handshake(&ctx, socket).await {
                        refuse(stream, ctx.config.max_client_connections).await;
                    }
                });
            }
        }
    }
}

/// The TLS handshake when the listener has TLS; `None` (logged, counted) when it fails.
async fn handshake(ctx: &Context, socket: TcpStream) -> Option<Stream> {
    let Some(tls) = &ctx.tls else {
        return Some(Stream::Plain(socket));
    };
    match tls.accept(socket).await {
        Ok(stream) => Some(stream),
        Err((failure, reason)) => {
            // A client's problem, not the proxy's: debug, and a counter for operators.
            tracing::debug!(reason = failure.label(), error = %reason, "TLS handshake failed");
            ctx.metrics.client_tls_failed(failure);
            None
        }
    }
}

/// Answers a connection over the limit: its first request gets OVERLOADED, then it closes.
async fn refuse(stream: Stream, limit: usize) {
    let (read, mut io) = stream.split();
    let mut reader = FrameReader::new(read, Direction::Request, 64 * 1024);
    let first = tokio::time::timeout(Duration::from_secs(5), reader.next()).await;
    let Ok(Ok(Some(Inbound::Envelope(env)))) = first else {
        return;
    };
    let error = Response::Error(ferry_cql::response::ErrorResponse::overloaded(format!(
        "ferry proxy: too many client connections (limit {limit})"
    )));
    if let Ok(answer) = error.to_envelope(env.header.version, env.stream(), &Default::default()) {
        let mut out = BytesMut::new();
        answer.write_to(&mut out);
        let _ = io.write_all(&out).await;
    }
}

/// Every TLS setting, loaded before anything else starts.
struct Tls {
    server: Option<ServerTls>,
    clusters: [Option<Arc<ClusterTls>>; 2],
}

impl Tls {
    fn load(config: &ProxyConfig) -> Result<Self, TlsError> {
        let server = config.tls.as_ref().map(ServerTls::load).transpose()?;
        let cluster = |id: ClusterId| -> Result<Option<Arc<ClusterTls>>, TlsError> {
            let Some(tls) = &config.cluster(id).tls else {
                return Ok(None);
            };
            Ok(Some(Arc::new(ClusterTls::load(id, tls)?)))
        };
        Ok(Self {
            server,
            clusters: [cluster(ClusterId::Origin)?, cluster(ClusterId::Target)?],
        })
    }
}

/// A resolved contact point, with the host it was written as: the name TLS checks.
#[derive(Debug, Clone)]
pub(crate) struct Contact {
    pub addr: SocketAddr,
    pub host: Arc<str>,
}

/// Opens a connection to a cluster node: TCP, then TLS when the cluster has it.
pub(crate) async fn connect_node(
    contact: &Contact,
    tls: Option<&ClusterTls>,
    socket: impl Future<Output = std::io::Result<TcpStream>>,
) -> std::io::Result<Stream> {
    let socket = socket.await?;
    match tls {
        Some(tls) => tls.connect(socket, &contact.host).await,
        None => Ok(Stream::Plain(socket)),
    }
}

/// What one cluster speaks, learned at start.
#[derive(Debug)]
struct ClusterFacts {
    addresses: Vec<Contact>,
    versions: Vec<ProtocolVersion>,
    compressions: Vec<Compression>,
    cql_versions: Vec<String>,
}

/// Resolves the contact points and asks the first one that answers which versions it speaks,
/// retrying with backoff while none answers.
async fn probe_cluster(
    cluster: ClusterId,
    config: &ClusterConfig,
    tls: Option<&ClusterTls>,
    shutdown: &watch::Receiver<bool>,
) -> Result<ClusterFacts, StartError> {
    let mut backoff = Duration::from_millis(250);
    loop {
        let addresses = resolve(cluster, config).await?;
        for contact in &addresses {
            let addr = contact.addr;
            match probe_node(contact, tls, config.connect_timeout).await {
                Ok(facts) if !facts.0.is_empty() => {
                    tracing::info!(%cluster, %addr, versions = %version_list(&facts.0), "cluster reachable");
                    return Ok(ClusterFacts {
                        addresses,
                        versions: facts.0,
                        compressions: facts.1,
                        cql_versions: facts.2,
                    });
                }
                Ok(_) => {
                    tracing::warn!(%cluster, %addr, "node speaks no protocol version the proxy knows")
                }
                // A certificate or handshake refused will be refused again: say so and stop,
                // rather than wait forever.
                Err(e) if crate::tls::is_tls_error(&e) => {
                    return Err(StartError::ClusterTls {
                        cluster,
                        addr,
                        reason: e.to_string(),
                    });
                }
                Err(e) => {
                    tracing::warn!(%cluster, %addr, error = %e, retry_in = ?backoff, "cluster not reachable")
                }
            }
        }
        let mut rx = shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = rx.wait_for(|s| *s) => return Err(StartError::Stopped),
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn resolve(cluster: ClusterId, config: &ClusterConfig) -> Result<Vec<Contact>, StartError> {
    let mut addresses: Vec<Contact> = Vec::new();
    let mut last_error = String::from("no contact points configured");
    for (host, port) in config.endpoints() {
        match tokio::net::lookup_host((host, port)).await {
            Ok(found) => {
                let host: Arc<str> = Arc::from(host);
                addresses.extend(found.map(|addr| Contact {
                    addr,
                    host: host.clone(),
                }));
            }
            Err(e) => last_error = format!("{host}:{port}: {e}"),
        }
    }
    addresses.dedup_by_key(|c| c.addr);
    if addresses.is_empty() {
        return Err(StartError::Resolve {
            cluster,
            contact_points: config
                .contact_points
                .iter()
                .map(ToString::to_string)
                .collect(),
            reason: last_error,
        });
    }
    Ok(addresses)
}

/// OPTIONS in each version, newest first, on a fresh connection each (a node closes the
/// connection after refusing a version).
async fn probe_node(
    contact: &Contact,
    tls: Option<&ClusterTls>,
    timeout: Duration,
) -> std::io::Result<(Vec<ProtocolVersion>, Vec<Compression>, Vec<String>)> {
    let mut versions = Vec::new();
    let mut compressions = Vec::new();
    let mut cql_versions = Vec::new();
    for version in [
        ProtocolVersion::V5,
        ProtocolVersion::V4,
        ProtocolVersion::V3,
    ] {
        let answer = tokio::time::timeout(timeout, options(contact, tls, version))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {timeout:?}"),
                )
            })??;
        let Some(env) = answer else { continue };
        if env.header.opcode != Opcode::Supported || env.header.version != version {
            continue;
        }
        versions.push(version);
        if let Ok((_, Response::Supported(s))) = Response::from_envelope(&env) {
            compressions = s
                .compression()
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect();
            cql_versions = s.cql_versions().to_vec();
        }
    }
    Ok((versions, compressions, cql_versions))
}

/// One OPTIONS exchange on a fresh connection (also the health probe of a DOWN cluster).
pub(crate) async fn options(
    contact: &Contact,
    tls: Option<&ClusterTls>,
    version: ProtocolVersion,
) -> std::io::Result<Option<Envelope>> {
    let stream = connect_node(contact, tls, TcpStream::connect(contact.addr)).await?;
    let (read, mut io) = stream.split();
    let request = Envelope::new(
        version,
        Direction::Request,
        0,
        0,
        Opcode::Options,
        Bytes::new(),
    );
    let mut out = BytesMut::new();
    request.write_to(&mut out);
    io.write_all(&out).await?;
    let mut reader = FrameReader::new(read, Direction::Response, 1024 * 1024);
    Ok(match reader.next().await? {
        Some(Inbound::Envelope(env)) => Some(env),
        _ => None,
    })
}

fn version_list(versions: &[ProtocolVersion]) -> String {
    if versions.is_empty() {
        return "nothing".to_owned();
    }
    versions
        .iter()
        .map(|v| format!("v{}", v.as_u8()))
        .collect::<Vec<_>>()
        .join(", ")
}

//! The handle the services hold: [`Channel`] (send, status, flush, close) and [`Events`] (what
//! arrives), started as the dialing end ([`Channel::dial`]) or the listening end
//! ([`Channel::listen`]).
//!
//! ```text
//!  dial:   loop { TCP connect ─► TLS? ─► session ─► ended ─► backoff with jitter }
//!            refused (version, role, busy) ─► wait the longest backoff, not a tight loop
//!  listen: accept ─► task per connection (at most MAX_HANDSHAKING) ─► TLS? ─► session
//!            one peer per purpose (migrate, validate) at a time: the same peer name
//!            reconnecting replaces its old session, another name is refused while one is
//!            connected
//! ```
//!
//! The queues and the duplicate filter belong to the channel, not to a connection, so they
//! survive reconnects. Each purpose has its own lane (queue, lease, peer): a session holds its
//! lane's lease while it runs so that an old session's answers can never mix with a new
//! one's, and sessions of different purposes run side by side.

use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::message::{Message, Purpose, Refusal, Role};
use crate::queue::{Dedupe, Outbox, SendError};
use crate::session::{self, Ended, Gate};
use crate::tls::{ClientTls, ServerTls};
use crate::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

/// Connections accepted and not yet past the handshake. A real deployment has one peer; this
/// only bounds what a port scanner or a misconfigured fleet can hold open.
const MAX_HANDSHAKING: usize = 8;

/// Settings shared by both ends. Defaults in [`ChannelConfig::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChannelConfig {
    /// Which service this end is; the peer must be the other one.
    pub role: Role,
    /// A migrator's purpose, sent in its Hello (default `migrate`). A listener keeps one
    /// connection per purpose; [`Channel::send`] queues for the peer of this purpose (a
    /// proxy's is `migrate`: its requests are work for `ferry migrate`).
    pub purpose: Purpose,
    /// This instance's name, shown to the peer (`proxy-1`, `migrator`). A listener refuses a
    /// second peer under another name while one is connected; a peer under the same name
    /// replaces the old connection (the same peer reconnecting).
    pub name: String,
    /// Messages queued and not yet acknowledged. Default 10,000: a job's state changes and
    /// repair batches for hours of disconnection, a few MiB at most.
    pub max_queued: usize,
    /// Messages written and not yet acknowledged on one connection. Default 64.
    pub max_in_flight: usize,
    /// The largest frame sent or accepted, in bytes. Default 1 MiB.
    pub max_frame: usize,
    /// A heartbeat is sent after this long without writing. Default 5 s.
    pub heartbeat: Duration,
    /// A connection is closed after this long without reading anything. Default 15 s (three
    /// heartbeats): how long a peer that vanished without closing (power loss, cable) holds
    /// the channel.
    pub idle_timeout: Duration,
    /// The Hello/Accept exchange (and TLS before it) must finish within this. Default 10 s.
    pub handshake_timeout: Duration,
    /// First reconnect delay of a dialing end; doubles per failure up to `backoff_max`, each
    /// delay jittered into its upper half. Defaults 100 ms and 10 s.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Events buffered for the application. Default 256. A full buffer pauses reading from
    /// the peer (backpressure), it never drops.
    pub events_capacity: usize,
    /// The protocol versions this end speaks; only tests of version skew change it.
    pub(crate) versions: RangeInclusive<u16>,
}

impl ChannelConfig {
    pub fn new(role: Role, name: impl Into<String>) -> Self {
        Self {
            role,
            purpose: Purpose::Migrate,
            name: name.into(),
            max_queued: 10_000,
            max_in_flight: 64,
            max_frame: 1 << 20,
            heartbeat: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            events_capacity: 256,
            versions: MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION,
        }
    }
}

/// The other end of an established connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Peer {
    pub name: String,
    pub role: Role,
    /// The connection's purpose: the migrator end's (see [`ChannelConfig::purpose`]).
    pub purpose: Purpose,
    /// Random per process start of the peer.
    pub instance: u64,
    /// The version both ends use on this connection.
    pub protocol_version: u16,
    pub addr: SocketAddr,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.role, self.purpose) {
            (Role::Migrator, Purpose::Validate) => {
                write!(
                    f,
                    "{} {} ({}) at {}",
                    self.role, self.name, self.purpose, self.addr
                )
            }
            _ => write!(f, "{} {} at {}", self.role, self.name, self.addr),
        }
    }
}

/// Something the application should know.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A connection passed the handshake.
    Connected(Peer),
    /// An established connection ended; unacknowledged messages go again on the next one.
    Disconnected { peer: Peer, reason: String },
    /// A handshake was refused, by this end or by the peer (`by_peer`): a protocol version the
    /// other does not speak, two ends of the same role, or a listener already taken. A dialing
    /// end waits its longest backoff before trying again.
    Refused { reason: String, by_peer: bool },
    /// A message from the peer. Answer it with [`Delivery::ack`] or [`Delivery::nack`];
    /// dropping it acknowledges it. The next message arrives after the answer.
    Message(Delivery),
    /// The peer refused a message this end sent; the channel does not send it again. With
    /// [`Refusal::NotNow`] the application may queue it again for the next peer.
    Nacked {
        id: u64,
        message: Message,
        reason: String,
        refusal: Refusal,
    },
}

/// The application's answer to a delivery: `None` acknowledges.
pub(crate) type Answer = Option<(String, Refusal)>;

/// A message awaiting this end's answer.
#[derive(Debug)]
pub struct Delivery {
    peer: Peer,
    id: u64,
    message: Message,
    /// `None` = acknowledge, `Some(reason, refusal)` = refuse.
    reply: Option<oneshot::Sender<Answer>>,
}

impl Delivery {
    pub(crate) fn new(peer: Peer, id: u64, message: Message) -> (Self, oneshot::Receiver<Answer>) {
        let (tx, rx) = oneshot::channel();
        let delivery = Self {
            peer,
            id,
            message,
            reply: Some(tx),
        };
        (delivery, rx)
    }

    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The sender's id (ids grow per sender instance).
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Handled: the sender forgets it.
    pub fn ack(mut self) {
        if let Some(tx) = self.reply.take() {
            let _ = tx.send(None);
        }
    }

    /// Refused for good (an unknown table, a request no peer of this role can carry out):
    /// the sender forgets it and reports the reason. [`Refusal::Never`].
    pub fn nack(self, reason: impl Into<String>) {
        self.refuse(reason, Refusal::Never);
    }

    /// Refused, saying whether another peer (or this one later) could carry it out.
    pub fn refuse(mut self, reason: impl Into<String>, refusal: Refusal) {
        if let Some(tx) = self.reply.take() {
            let _ = tx.send(Some((reason.into(), refusal)));
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        // Receivers match the messages they care about and drop the rest: an acknowledgement.
        if let Some(tx) = self.reply.take() {
            let _ = tx.send(None);
        }
    }
}

/// What arrives from the peer, plus connection changes. The application must keep reading:
/// a full buffer pauses the channel's reading, and heartbeats keep flowing meanwhile only up
/// to the peer's idle timeout.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the channel is closed.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

/// Counters since the channel started.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) queued: AtomicU64,
    pub(crate) written: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) nacked: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) refusals: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A snapshot for `/status` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The connected peer of this end's purpose (the one [`Channel::send`] queues for), if
    /// any.
    pub peer: Option<Peer>,
    /// Peers connected for another purpose (a proxy's `ferry validate` beside its `ferry
    /// migrate`); nothing is sent to them.
    pub other_peers: Vec<Peer>,
    /// Messages not yet acknowledged, sent or not (this end's purpose).
    pub queued: usize,
    /// Of those, written on the current connection.
    pub in_flight: usize,
    /// The id of the oldest message not yet acknowledged; every id [`Channel::send`] returned
    /// below it is answered. `None` when nothing is queued. How a sender learns that a given
    /// message was answered without an event per acknowledgement.
    pub oldest_queued: Option<u64>,
    /// Messages accepted by [`Channel::send`].
    pub queued_total: u64,
    /// Data frames written, redeliveries included.
    pub written_total: u64,
    pub acked_total: u64,
    /// Messages the peer refused. Read together with `oldest_queued`: a refused message that
    /// `oldest_queued` has passed is counted here, and its [`Event::Nacked`] is on its way
    /// (even if the connection ends), so an application that counts the `Nacked` events it
    /// handled knows whether every answer below `oldest_queued` it has not seen was an `Ack`.
    pub nacked_total: u64,
    /// Progress messages replaced by a newer one of the same table before being sent.
    pub coalesced_total: u64,
    /// Progress messages dropped to make room in a full queue.
    pub dropped_total: u64,
    /// New messages received from the peer.
    pub received_total: u64,
    /// Redeliveries of messages already received, answered and not delivered again.
    pub duplicates_total: u64,
    /// Connections that passed the handshake.
    pub connects_total: u64,
    /// Handshakes refused, by either end.
    pub refusals_total: u64,
}

/// One purpose's connection state: its queue and its one peer.
#[derive(Debug)]
pub(crate) struct Lane {
    pub(crate) outbox: Mutex<Outbox>,
    /// Signalled when a message is queued (a stored permit if no session waits).
    pub(crate) queued: Notify,
    /// Signalled when the outbox becomes empty.
    pub(crate) emptied: Notify,
    /// Held by the running session: an ending session resets the outbox's in-flight mark
    /// before the next one starts writing.
    pub(crate) lease: tokio::sync::Mutex<()>,
    pub(crate) peer: Mutex<Option<Peer>>,
}

impl Lane {
    fn new(config: &ChannelConfig) -> Self {
        Self {
            outbox: Mutex::new(Outbox::new(config.max_queued, config.max_frame)),
            queued: Notify::new(),
            emptied: Notify::new(),
            lease: tokio::sync::Mutex::new(()),
            peer: Mutex::new(None),
        }
    }

    pub(crate) fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_peer(&self, peer: Option<Peer>) {
        *self.peer.lock().unwrap_or_else(|p| p.into_inner()) = peer;
    }

    fn peer(&self) -> Option<Peer> {
        self.peer.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// State shared by the handle and the connection tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ChannelConfig,
    /// Random per process start, sent in Hello: the peer's duplicate filter is per instance.
    pub(crate) instance: u64,
    /// One per [`Purpose`], in [`Purpose::ALL`] order. A dialing end uses its own only.
    lanes: [Lane; Purpose::ALL.len()],
    /// Keyed by sender instance, so one filter serves every lane.
    pub(crate) dedupe: Mutex<Dedupe>,
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) counters: Counters,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Shared {
    pub(crate) fn lane(&self, purpose: Purpose) -> &Lane {
        &self.lanes[purpose.index()]
    }

    /// The lane [`Channel::send`] queues on.
    fn own(&self) -> &Lane {
        self.lane(self.config.purpose)
    }

    pub(crate) fn dedupe(&self) -> MutexGuard<'_, Dedupe> {
        self.dedupe.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves when the channel is closing.
    pub(crate) async fn closing(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|closing| *closing).await;
    }

    /// Hands an event to the application, unless the channel closes first.
    pub(crate) async fn emit(&self, event: Event) {
        tokio::select! {
            _ = self.events.send(event) => {}
            () = self.closing() => {}
        }
    }
}

/// Why a channel could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("cannot listen for the Update channel on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid Update channel setting: {0}")]
    Config(String),
}

/// One end of the Update channel.
#[derive(Debug)]
pub struct Channel {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    local_addr: Option<SocketAddr>,
}

impl Channel {
    fn start(
        config: ChannelConfig,
    ) -> Result<(Arc<Shared>, watch::Sender<bool>, Events), StartError> {
        validate(&config)?;
        let (events_tx, rx) = mpsc::channel(config.events_capacity);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            lanes: Purpose::ALL.map(|_| Lane::new(&config)),
            instance: rand::random(),
            config,
            dedupe: Mutex::default(),
            events: events_tx,
            counters: Counters::default(),
            shutdown: shutdown_rx,
        });
        Ok((shared, shutdown, Events { rx }))
    }

    /// The dialing end: connects to `addr` (`host:port`), and again after every disconnect,
    /// until closed. The peer need not be up yet.
    pub fn dial(
        config: ChannelConfig,
        addr: impl Into<String>,
        tls: Option<ClientTls>,
    ) -> Result<(Self, Events), StartError> {
        let (shared, shutdown, events) = Self::start(config)?;
        let task = tokio::spawn(dial_loop(shared.clone(), addr.into(), tls));
        Ok((
            Self {
                shared,
                shutdown,
                task: Some(task),
                local_addr: None,
            },
            events,
        ))
    }

    /// The listening end: binds `addr` now (so a taken port is an error here), then accepts
    /// until closed.
    pub async fn listen(
        config: ChannelConfig,
        addr: SocketAddr,
        tls: Option<ServerTls>,
    ) -> Result<(Self, Events), StartError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let (shared, shutdown, events) = Self::start(config)?;
        let task = tokio::spawn(accept_loop(shared.clone(), listener, tls));
        Ok((
            Self {
                shared,
                shutdown,
                task: Some(task),
                local_addr: Some(local_addr),
            },
            events,
        ))
    }

    /// Queues a message for delivery (now, or after the next connect) and returns its id.
    /// Never waits: a full queue makes room by dropping its oldest progress message, and
    /// refuses anything else ([`SendError::QueueFull`]) so the caller keeps what it could
    /// not hand over.
    pub fn send(&self, message: Message) -> Result<u64, SendError> {
        let kind = message.kind();
        let role = self.shared.config.role;
        if message.sender() != role {
            return Err(SendError::WrongRole {
                kind,
                sender: message.sender(),
                role,
            });
        }
        if *self.shared.shutdown.borrow() {
            return Err(SendError::Closed { kind });
        }
        let lane = self.shared.own();
        let pushed = lane.outbox().push(message)?;
        let c = &self.shared.counters;
        Counters::add(&c.queued, 1);
        Counters::add(&c.coalesced, u64::from(pushed.coalesced));
        Counters::add(&c.dropped, u64::from(pushed.dropped));
        lane.queued.notify_one();
        Ok(pushed.id)
    }

    pub fn status(&self) -> Status {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // Together: a refusal is counted under the same lock (see `Status::nacked_total`).
        let (queued, in_flight, oldest_queued, nacked_total) = {
            let outbox = self.shared.own().outbox();
            let nacked = get(&c.nacked);
            (outbox.len(), outbox.in_flight(), outbox.oldest(), nacked)
        };
        Status {
            peer: self.shared.own().peer(),
            other_peers: Purpose::ALL
                .into_iter()
                .filter(|p| *p != self.shared.config.purpose)
                .filter_map(|p| self.shared.lane(p).peer())
                .collect(),
            queued,
            in_flight,
            oldest_queued,
            queued_total: get(&c.queued),
            written_total: get(&c.written),
            acked_total: get(&c.acked),
            nacked_total,
            coalesced_total: get(&c.coalesced),
            dropped_total: get(&c.dropped),
            received_total: get(&c.received),
            duplicates_total: get(&c.duplicates),
            connects_total: get(&c.connects),
            refusals_total: get(&c.refusals),
        }
    }

    /// The listening end's bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// This end's instance id (random per start), as the peer sees it.
    pub fn instance(&self) -> u64 {
        self.shared.instance
    }

    /// Resolves once every queued message is answered: for a migrator about to exit after
    /// `JobFinished`. Bound it with a timeout: with no peer it waits for one.
    pub async fn flushed(&self) {
        loop {
            let lane = self.shared.own();
            let emptied = lane.emptied.notified();
            if lane.outbox().len() == 0 {
                return;
            }
            emptied.await;
        }
    }

    /// Stops the channel: the connection is closed and the tasks end. Messages still queued
    /// are lost (their count is logged); call [`Channel::flushed`] first to deliver them.
    pub async fn close(mut self) {
        self.stop();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn stop(&self) {
        self.shutdown.send_replace(true);
        let left: usize = self.shared.lanes.iter().map(|l| l.outbox().len()).sum();
        if left > 0 {
            tracing::warn!(
                queued = left,
                "Update channel closed with {left} messages not acknowledged by the peer"
            );
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.stop();
        }
    }
}

fn validate(config: &ChannelConfig) -> Result<(), StartError> {
    let mut problems = Vec::new();
    if config.name.is_empty() {
        problems.push("name is empty".to_owned());
    }
    for (what, n) in [
        ("max_queued", config.max_queued),
        ("max_in_flight", config.max_in_flight),
        ("events_capacity", config.events_capacity),
    ] {
        if n == 0 {
            problems.push(format!("{what} is 0"));
        }
    }
    if config.max_frame < 1024 || config.max_frame > u32::MAX as usize {
        problems.push(format!(
            "max_frame is {} bytes, outside 1024..={}",
            config.max_frame,
            u32::MAX
        ));
    }
    if config.idle_timeout <= config.heartbeat {
        problems.push(format!(
            "idle_timeout ({:?}) must exceed heartbeat ({:?})",
            config.idle_timeout, config.heartbeat
        ));
    }
    if config.heartbeat.is_zero() || config.handshake_timeout.is_zero() {
        problems.push("heartbeat and handshake_timeout must be above 0".to_owned());
    }
    if config.backoff_initial.is_zero() || config.backoff_initial > config.backoff_max {
        problems.push(format!(
            "backoff_initial ({:?}) must be above 0 and at most backoff_max ({:?})",
            config.backoff_initial, config.backoff_max
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StartError::Config(problems.join("; ")))
    }
}

/// Reconnect delays: doubling from `initial` to `max`, each one drawn from its upper half so
/// that many migrators restarting together do not dial in step.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }

    pub(crate) fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        jitter(d)
    }

    /// The longest delay: after a refusal, which only an operator's change can fix.
    pub(crate) fn longest(&mut self) -> Duration {
        self.next = self.max;
        jitter(self.max)
    }
}

fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// The host part of `host:port` (the TLS name to check).
fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(host, _)| host)
}

async fn dial_loop(shared: Arc<Shared>, addr: String, tls: Option<ClientTls>) {
    let config = &shared.config;
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max);
    let mut failures = 0u64;
    loop {
        let attempt = async {
            let socket = TcpStream::connect(&addr)
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            let _ = socket.set_nodelay(true);
            let peer_addr = socket
                .peer_addr()
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            Ok::<_, String>((socket, peer_addr))
        };
        let ended = tokio::select! {
            r = tokio::time::timeout(config.handshake_timeout, attempt) => match r {
                Ok(Ok((socket, peer_addr))) => match &tls {
                    Some(tls) => {
                        let handshake = tokio::time::timeout(
                            config.handshake_timeout,
                            tls.connect(socket, host_of(&addr)),
                        );
                        match handshake.await {
                            Ok(Ok(stream)) => session::run(&shared, stream, peer_addr, None).await,
                            Ok(Err(e)) => Ended::Failed(format!("TLS handshake with {addr} failed: {e}")),
                            Err(_) => Ended::Failed(format!(
                                "TLS handshake with {addr} took over {:?}",
                                config.handshake_timeout
                            )),
                        }
                    }
                    None => session::run(&shared, socket, peer_addr, None).await,
                },
                Ok(Err(e)) => Ended::Failed(e),
                Err(_) => Ended::Failed(format!(
                    "cannot connect to {addr}: no answer within {:?}",
                    config.handshake_timeout
                )),
            },
            () = shared.closing() => Ended::Shutdown,
        };
        let delay = match ended {
            Ended::Shutdown => return,
            Ended::Closed => {
                failures = 0;
                backoff.reset();
                backoff.delay()
            }
            Ended::Refused => backoff.longest(),
            Ended::Failed(reason) => {
                failures += 1;
                // The peer may simply not be up yet: say so once, then quietly retry.
                if failures == 1 {
                    tracing::info!(%reason, "Update channel: {reason}; retrying with backoff");
                } else {
                    tracing::debug!(%reason, failures, "Update channel: still failing");
                }
                backoff.delay()
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shared.closing() => return,
        }
    }
}

/// The listener's one peer per purpose at a time.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// At most one per purpose.
    active: Vec<Claim>,
    next_generation: u64,
}

#[derive(Debug)]
struct Claim {
    generation: u64,
    purpose: Purpose,
    name: String,
    /// Ends the session holding the slot, when its peer reconnects.
    cancel: Arc<Notify>,
}

impl Gate for Mutex<Slot> {
    fn claim(&self, shared: &Shared, peer: &Peer) -> Result<(u64, Arc<Notify>), String> {
        let mut slot = self.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = slot.active.iter().position(|c| c.purpose == peer.purpose) {
            let active = &slot.active[i];
            if active.name != peer.name {
                return Err(format!(
                    "{} {} already has {} {} connected for {} (one {} per {} and purpose; \
                     give each instance its own name and listener)",
                    shared.config.role,
                    shared.config.name,
                    peer.role,
                    active.name,
                    peer.purpose,
                    peer.role,
                    shared.config.role
                ));
            }
            // The same peer again: its old connection is dead or dying.
            active.cancel.notify_one();
            slot.active.remove(i);
        }
        slot.next_generation += 1;
        let claim = Claim {
            generation: slot.next_generation,
            purpose: peer.purpose,
            name: peer.name.clone(),
            cancel: Arc::new(Notify::new()),
        };
        let result = (claim.generation, claim.cancel.clone());
        slot.active.push(claim);
        Ok(result)
    }

    fn release(&self, generation: u64) {
        let mut slot = self.lock().unwrap_or_else(|p| p.into_inner());
        slot.active.retain(|c| c.generation != generation);
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, tls: Option<ServerTls>) {
    let slot = Arc::new(Mutex::new(Slot::default()));
    let handshaking = Arc::new(Semaphore::new(MAX_HANDSHAKING));
    let mut tasks = JoinSet::new();
    let mut accept_errors = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            () = shared.closing() => break,
        };
        let (socket, peer_addr) = match accepted {
            Ok(a) => {
                accept_errors.reset();
                a
            }
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(error = %e, "Update channel: accept failed");
                tokio::select! {
                    () = tokio::time::sleep(accept_errors.delay()) => {}
                    () = shared.closing() => break,
                }
                continue;
            }
        };
        let Ok(permit) = handshaking.clone().try_acquire_owned() else {
            tracing::debug!(%peer_addr, "Update channel: too many handshakes at once, closing");
            continue;
        };
        let _ = socket.set_nodelay(true);
        let (shared, tls, slot) = (shared.clone(), tls.clone(), slot.clone());
        tasks.spawn(async move {
            let gate: &Mutex<Slot> = &slot;
            match tls {
                Some(tls) => {
                    let handshake = tokio::time::timeout(
                        shared.config.handshake_timeout,
                        tls.accept(socket),
                    );
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            session::run(&shared, stream, peer_addr, Some((gate, permit))).await
                        }
                        Ok(Err(e)) => {
                            tracing::info!(%peer_addr, error = %e, "Update channel: TLS handshake failed");
                            Ended::Failed(e.to_string())
                        }
                        Err(_) => Ended::Failed("TLS handshake timed out".to_owned()),
                    }
                }
                None => session::run(&shared, socket, peer_addr, Some((gate, permit))).await,
            }
        });
    }
    // Sessions watch the same shutdown signal; wait for them to close their sockets.
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_in_the_upper_half() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_millis(1000));
        let mut b = Backoff::new(initial, max);
        let mut nominal = initial;
        for _ in 0..8 {
            let d = b.delay();
            assert!(d >= nominal / 2 && d <= nominal, "{d:?} vs {nominal:?}");
            nominal = (nominal * 2).min(max);
        }
        b.reset();
        assert!(b.delay() <= initial);
        assert!(b.longest() >= max / 2);
        assert!(b.delay() >= max / 2, "stays at the cap after a refusal");
    }

    #[test]
    fn every_bad_setting_is_listed() {
        let mut c = ChannelConfig::new(Role::Proxy, "");
        c.max_queued = 0;
        c.max_frame = 10;
        c.idle_timeout = c.heartbeat;
        let e = validate(&c).unwrap_err().to_string();
        for part in [
            "name is empty",
            "max_queued is 0",
            "max_frame is 10 bytes",
            "idle_timeout",
        ] {
            assert!(e.contains(part), "{part} in {e}");
        }
        assert!(validate(&ChannelConfig::new(Role::Proxy, "p")).is_ok());
    }

    async fn refusal(events: &mut Events) -> String {
        loop {
            match events.recv().await {
                Some(Event::Refused { reason, .. }) => return reason,
                Some(_) => {}
                None => panic!("closed"),
            }
        }
    }

    #[tokio::test]
    async fn two_real_ends_without_a_common_version_both_refuse() {
        let mut p = ChannelConfig::new(Role::Proxy, "p");
        p.versions = 2..=2;
        let addr: SocketAddr = "127.0.120.1:14100".parse().unwrap();
        let (_proxy, mut pev) = Channel::listen(p, addr, None).await.unwrap();
        let mut m = ChannelConfig::new(Role::Migrator, "m");
        m.backoff_max = Duration::from_secs(3600);
        let (migrator, mut mev) = Channel::dial(m, addr.to_string(), None).unwrap();
        assert_eq!(
            refusal(&mut pev).await,
            "no common Update protocol version: migrator m speaks 1..=1, this end speaks 2..=2; \
             run proxy and migrator builds whose versions overlap"
        );
        assert_eq!(
            refusal(&mut mev).await,
            "no common Update protocol version: proxy p speaks 2..=2, this end speaks 1..=1; \
             run proxy and migrator builds whose versions overlap"
        );
        assert_eq!(migrator.status().refusals_total, 1);
        assert_eq!(migrator.status().connects_total, 0);
    }

    #[tokio::test]
    async fn two_proxies_refuse_each_other() {
        let addr: SocketAddr = "127.0.120.2:14100".parse().unwrap();
        let (_a, mut aev) = Channel::listen(ChannelConfig::new(Role::Proxy, "a"), addr, None)
            .await
            .unwrap();
        let (_b, mut bev) =
            Channel::dial(ChannelConfig::new(Role::Proxy, "b"), addr.to_string(), None).unwrap();
        let a = refusal(&mut aev).await;
        assert!(a.starts_with("proxy b at 127.0.0.1:"), "{a}");
        assert!(a.ends_with("is a proxy too; an Update channel joins a proxy and a migrator"));
        assert_eq!(
            refusal(&mut bev).await,
            "proxy a at 127.0.120.2:14100 is a proxy too; an Update channel joins a proxy and a migrator"
        );
    }

    #[test]
    fn host_of_addresses() {
        assert_eq!(host_of("proxy-1.ferry:14100"), "proxy-1.ferry");
        assert_eq!(host_of("[::1]:14100"), "[::1]");
        assert_eq!(host_of("localhost"), "localhost");
    }
}

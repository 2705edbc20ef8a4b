//! The handle the services hold: [`Channel`] (send, status, flush, close) and [`Events`] (what
//! arrives), started as the dialing end ([`Channel::dial`]) or the listening end
//! ([`Channel::listen`]).
//!
//! ```text
//!  dial:   loop { TCP connect ─► TLS? ─► session ─► ended ─► backoff with jitter }
//!            refused (version, role, busy) ─► wait the longest backoff, not a tight loop
//!  listen: accept ─► task per connection (at most MAX_HANDSHAKING) ─► TLS? ─► session
//!            a lane per migrate peer name (at most max_peers), one validate lane: the same
//!            name reconnecting gets its lane back and replaces its old session; a second
//!            validate name, or a migrate peer past the bound, is refused
//!          reaper: a lane whose peer stayed away peer_linger ─► dropped, its messages
//!            handed back (Event::Nacked, not_now)
//! ```
//!
//! The queues and the duplicate filter belong to the channel, not to a connection, so they
//! survive reconnects. Each lane (queue, lease, peer) serves one peer: a session holds its
//! lane's lease while it runs so that an old session's answers can never mix with a new
//! one's, and sessions of different lanes run side by side. A dialing end has one lane, for
//! its own purpose.

use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::message::{Message, Purpose, Refusal, Role};
use crate::queue::{Dedupe, Entry, Outbox, SendError};
use crate::session::{self, Claimed, Ended, Gate};
use crate::tls::{ClientTls, ServerTls};
use crate::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

/// Connections accepted and not yet past the handshake. A deployment has a few peers (a job's
/// workers) connecting now and then; this only bounds what a port scanner or a misconfigured
/// fleet can hold open. Established connections are bounded by the lanes.
const MAX_HANDSHAKING: usize = 8;

/// Settings shared by both ends. Defaults in [`ChannelConfig::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChannelConfig {
    /// Which service this end is; the peer must be the other one.
    pub role: Role,
    /// A migrator's purpose, sent in its Hello (default `migrate`). A listener keeps a lane
    /// per `migrate` peer and one `validate` lane; [`Channel::send`] queues for a peer of this
    /// purpose (a proxy's is `migrate`: its requests are work for `ferry migrate`).
    pub purpose: Purpose,
    /// This instance's name, shown to the peer (`proxy-1`, `migrator-0`). A listener files
    /// `migrate` peers by name: each name its own lane, the same name reconnecting replaces
    /// its old connection and finds its queue. Several workers reporting to one proxy need
    /// distinct names. The `validate` lane takes one name at a time.
    pub name: String,
    /// A listener's bound on `migrate` lanes (peers connected, or away with messages waiting
    /// for them). Default 16: a job's workers. One more name is refused at the handshake,
    /// with the reason, unless a lane is idle and empty (then that one is reused).
    pub max_peers: usize,
    /// How long a listener keeps the lane of a peer that disconnected: it reconnecting
    /// within this gets its unanswered messages again; after it, the lane is dropped and its
    /// messages handed back ([`Event::Nacked`] with [`Refusal::NotNow`]) for another peer.
    /// Default 60 s: a restart or a reconnect after a network blip, not a worker that ended.
    pub peer_linger: Duration,
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
            max_peers: 16,
            peer_linger: Duration::from_secs(60),
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
    /// The peer refused a message this end sent, or the peer it was queued for stayed away
    /// longer than [`ChannelConfig::peer_linger`] (then [`Refusal::NotNow`]); the channel
    /// does not send it again. With [`Refusal::NotNow`] the application may queue it again
    /// for another peer.
    Nacked {
        id: u64,
        message: Message,
        reason: String,
        refusal: Refusal,
        /// The name of the peer it was queued for: the one that refused it, or whose lane was
        /// dropped. A peer still connected that said "not now" would say it again; another,
        /// or the next to connect, may take it.
        peer: String,
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

    /// An event already waiting, without waiting for one.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
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

/// One lane of a channel: a peer's queue, for `/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LaneStatus {
    /// The peer name it serves; `None` for a dialing end's lane, and for a listener's
    /// messages queued before any peer of their purpose connected (the first new one takes
    /// them).
    pub name: Option<String>,
    pub purpose: Purpose,
    /// The connected peer, `None` while it is away.
    pub peer: Option<Peer>,
    /// Messages not yet acknowledged, sent or not.
    pub queued: usize,
    /// Of those, written on the current connection.
    pub in_flight: usize,
    /// The id of its oldest message not yet acknowledged: every id queued for this lane below
    /// it is answered. Per lane, so a peer that went away with messages unanswered does not
    /// hide the answers of the others (see [`Status::oldest_queued`], every lane's).
    pub oldest: Option<u64>,
}

/// A snapshot for `/status` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// A connected peer of this end's purpose (the one [`Channel::send`] queues for; the
    /// first by name when a listener has several), if any.
    pub peer: Option<Peer>,
    /// Every connected peer of this end's purpose, by name: a proxy's `ferry migrate`
    /// workers.
    pub peers: Vec<Peer>,
    /// Peers connected for another purpose (a proxy's `ferry validate` beside its `ferry
    /// migrate`); nothing is sent to them.
    pub other_peers: Vec<Peer>,
    /// Every lane, by purpose and name.
    pub lanes: Vec<LaneStatus>,
    /// Messages not yet acknowledged, sent or not (this end's purpose, every lane).
    pub queued: usize,
    /// Of those, written on the current connections.
    pub in_flight: usize,
    /// The id of the oldest message not yet acknowledged in any lane; every id
    /// [`Channel::send`] returned below it is answered. `None` when nothing is queued. How a
    /// sender learns that a given message was answered without an event per acknowledgement.
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

/// One peer's connection state: its queue and its peer.
#[derive(Debug)]
pub(crate) struct Lane {
    pub(crate) outbox: Mutex<Outbox>,
    /// Signalled when a message is queued (a stored permit if no session waits).
    pub(crate) queued: Notify,
    /// Held by the running session: an ending session resets the outbox's in-flight mark
    /// before the next one starts writing.
    pub(crate) lease: tokio::sync::Mutex<()>,
    pub(crate) peer: Mutex<Option<Peer>>,
}

impl Lane {
    fn new(config: &ChannelConfig, ids: Arc<AtomicU64>) -> Self {
        Self {
            outbox: Mutex::new(Outbox::new(config.max_queued, config.max_frame, ids)),
            queued: Notify::new(),
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
    /// A dialing end's one lane; a listener's, one per peer (see [`Lanes`]).
    lanes: Mutex<Lanes>,
    /// The last message id taken, shared by the lanes so that an id names one message of
    /// this instance (a lane dropped and made again never reuses one the peer has seen).
    ids: Arc<AtomicU64>,
    /// Signalled when a lane's outbox becomes empty.
    pub(crate) emptied: Notify,
    /// Keyed by sender instance, so one filter serves every lane.
    pub(crate) dedupe: Mutex<Dedupe>,
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) counters: Counters,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn lanes(&self) -> MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A dialing end's lane (made at start, never dropped).
    pub(crate) fn dial_lane(&self) -> Arc<Lane> {
        let mut lanes = self.lanes();
        match lanes.list.first() {
            Some(e) => e.lane.clone(),
            None => self.add_lane(&mut lanes, self.config.purpose, None),
        }
    }

    fn add_lane(&self, lanes: &mut Lanes, purpose: Purpose, name: Option<String>) -> Arc<Lane> {
        let lane = Arc::new(Lane::new(&self.config, self.ids.clone()));
        lanes.list.push(LaneEntry {
            purpose,
            name,
            lane: lane.clone(),
            active: None,
            idle_since: None,
        });
        // By purpose, then name (the unnamed lane first): the order `/status` lists.
        lanes
            .list
            .sort_by(|a, b| (a.purpose.index(), &a.name).cmp(&(b.purpose.index(), &b.name)));
        lane
    }

    /// The lane [`Channel::send`] queues on: of this end's purpose, a connected peer's with
    /// the fewest messages waiting (by name on a tie), else one whose peer is away, else the
    /// unnamed lane (made if needed) that the first new peer takes.
    fn pick(&self, lanes: &mut Lanes) -> Arc<Lane> {
        let purpose = self.config.purpose;
        let best = lanes
            .list
            .iter()
            .filter(|e| e.purpose == purpose)
            .min_by_key(|e| {
                (
                    e.active.is_none(),
                    e.name.is_none(),
                    e.lane.outbox().len(),
                    e.name.clone(),
                )
            });
        match best {
            Some(e) => e.lane.clone(),
            None => self.add_lane(lanes, purpose, None),
        }
    }

    /// Drops the lanes whose peer stayed away `peer_linger`; returns their messages, already
    /// counted as refused (see [`Status::nacked_total`]).
    fn reap(&self) -> Vec<(String, Vec<Entry>)> {
        let linger = self.config.peer_linger;
        let now = Instant::now();
        let mut handed_back = Vec::new();
        self.lanes().list.retain(|e| {
            let gone = e.active.is_none()
                && e.idle_since
                    .is_some_and(|t| now.duration_since(t) >= linger);
            let Some(name) = e.name.as_ref().filter(|_| gone) else {
                return true;
            };
            let mut outbox = e.lane.outbox();
            let entries = outbox.drain();
            Counters::add(&self.counters.nacked, entries.len() as u64);
            drop(outbox);
            if !entries.is_empty() {
                handed_back.push((name.clone(), entries));
            }
            false
        });
        if !handed_back.is_empty() {
            self.emptied.notify_waiters();
        }
        handed_back
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
            lanes: Mutex::default(),
            ids: Arc::default(),
            emptied: Notify::new(),
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
        shared.dial_lane();
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
    /// not hand over. A listener with several peers of its purpose queues for the connected
    /// one with the fewest messages waiting (by name on a tie); to pick the peer, use
    /// [`Channel::send_to`].
    pub fn send(&self, message: Message) -> Result<u64, SendError> {
        self.check(&message)?;
        let mut lanes = self.shared.lanes();
        let lane = self.shared.pick(&mut lanes);
        self.push(&lane, message)
    }

    /// Queues a message for the peer of this end's purpose named `name` (a listener's: one
    /// of its `migrate` workers), whether it is connected or away within its
    /// [`ChannelConfig::peer_linger`]; [`SendError::NoPeer`] when no lane has that name.
    pub fn send_to(&self, name: &str, message: Message) -> Result<u64, SendError> {
        self.check(&message)?;
        let purpose = self.shared.config.purpose;
        let lanes = self.shared.lanes();
        let Some(entry) = lanes
            .list
            .iter()
            .find(|e| e.purpose == purpose && e.name.as_deref() == Some(name))
        else {
            return Err(SendError::NoPeer {
                kind: message.kind(),
                purpose,
                name: name.to_owned(),
            });
        };
        // Under the lanes' lock: the reaper cannot drop the lane between the choice and
        // the push (a message in a dropped lane would be lost unnoticed).
        self.push(&entry.lane, message)
    }

    fn check(&self, message: &Message) -> Result<(), SendError> {
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
        Ok(())
    }

    /// Called with the lanes' lock held: it serializes pushes, which share one id counter.
    fn push(&self, lane: &Lane, message: Message) -> Result<u64, SendError> {
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
        let purpose = self.shared.config.purpose;
        let lanes = self.shared.lanes();
        let mut status = Status::default();
        {
            // Every outbox at once, then the count: a refusal is counted under its outbox's
            // lock (see `Status::nacked_total`), so the two agree.
            let outboxes: Vec<_> = lanes.list.iter().map(|e| e.lane.outbox()).collect();
            status.nacked_total = get(&c.nacked);
            for (e, outbox) in lanes.list.iter().zip(&outboxes) {
                status.lanes.push(LaneStatus {
                    name: e.name.clone(),
                    purpose: e.purpose,
                    peer: None,
                    queued: outbox.len(),
                    in_flight: outbox.in_flight(),
                    oldest: outbox.oldest(),
                });
                if e.purpose == purpose {
                    status.queued += outbox.len();
                    status.in_flight += outbox.in_flight();
                    status.oldest_queued = match (status.oldest_queued, outbox.oldest()) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
        }
        for (e, l) in lanes.list.iter().zip(&mut status.lanes) {
            l.peer = e.lane.peer();
            match &l.peer {
                Some(p) if e.purpose == purpose => status.peers.push(p.clone()),
                Some(p) => status.other_peers.push(p.clone()),
                None => {}
            }
        }
        drop(lanes);
        Status {
            peer: status.peers.first().cloned(),
            queued_total: get(&c.queued),
            written_total: get(&c.written),
            acked_total: get(&c.acked),
            coalesced_total: get(&c.coalesced),
            dropped_total: get(&c.dropped),
            received_total: get(&c.received),
            duplicates_total: get(&c.duplicates),
            connects_total: get(&c.connects),
            refusals_total: get(&c.refusals),
            ..status
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
            let emptied = self.shared.emptied.notified();
            if self.queued(Some(self.shared.config.purpose)) == 0 {
                return;
            }
            emptied.await;
        }
    }

    /// Messages not yet answered in the lanes of `purpose` (all lanes for `None`).
    fn queued(&self, purpose: Option<Purpose>) -> usize {
        self.shared
            .lanes()
            .list
            .iter()
            .filter(|e| purpose.is_none_or(|p| p == e.purpose))
            .map(|e| e.lane.outbox().len())
            .sum()
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
        let left = self.queued(None);
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
        ("max_peers", config.max_peers),
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
    if config.heartbeat.is_zero()
        || config.handshake_timeout.is_zero()
        || config.peer_linger.is_zero()
    {
        problems.push("heartbeat, handshake_timeout and peer_linger must be above 0".to_owned());
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

/// The lanes of one end: a dialing end's one, a listener's per peer.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    /// By purpose, then name.
    list: Vec<LaneEntry>,
    next_generation: u64,
}

#[derive(Debug)]
struct LaneEntry {
    purpose: Purpose,
    /// The peer name it serves: a listener files `migrate` peers by name. `None` for a
    /// dialing end's lane and for a listener's messages queued before any peer connected
    /// (the first new peer of the purpose takes that lane).
    name: Option<String>,
    lane: Arc<Lane>,
    /// The session holding it.
    active: Option<Active>,
    /// When its last session ended: after `peer_linger` the reaper drops it.
    idle_since: Option<Instant>,
}

#[derive(Debug)]
struct Active {
    generation: u64,
    instance: u64,
    /// Ends the session when its peer reconnects.
    cancel: Arc<Notify>,
}

/// A listener's admission: a lane per `migrate` peer name (bounded), one lane for any
/// other purpose, held by one connection at a time.
#[derive(Debug)]
pub(crate) struct Admission;

impl Gate for Admission {
    fn claim(&self, shared: &Shared, peer: &Peer) -> Result<Claimed, String> {
        let config = &shared.config;
        let mut guard = shared.lanes();
        let lanes = &mut *guard;
        let by_name = peer.purpose.is_migrate();
        let own = lanes.list.iter().position(|e| {
            e.purpose == peer.purpose && (!by_name || e.name.as_deref() == Some(&peer.name))
        });
        let lane = match own {
            Some(i) => {
                let e = &mut lanes.list[i];
                if let Some(active) = &e.active {
                    let holder = e.name.as_deref().unwrap_or_default();
                    if holder != peer.name {
                        return Err(format!(
                            "{} {} already has {} {holder} connected for {} (one {} per {} \
                             for {}; give each instance its own name and listener)",
                            config.role,
                            config.name,
                            peer.role,
                            peer.purpose,
                            peer.role,
                            config.role,
                            peer.purpose,
                        ));
                    }
                    if active.instance != peer.instance {
                        // A restart whose old connection is not noticed dead yet, or a
                        // second process under the same name (they then take turns).
                        tracing::info!(
                            %peer,
                            "Update channel: {peer} (another process start) replaces the \
                             connection of the same name; give each worker its own name"
                        );
                    }
                    // The same peer again: its old connection is dead or dying.
                    active.cancel.notify_one();
                }
                e.name = Some(peer.name.clone());
                e.lane.clone()
            }
            None => {
                let unnamed = lanes
                    .list
                    .iter()
                    .position(|e| e.purpose == peer.purpose && e.name.is_none());
                match unnamed {
                    Some(i) => {
                        // Messages queued before any peer: the first one takes them.
                        let e = lanes.list.remove(i);
                        let lane = e.lane.clone();
                        lanes.list.push(LaneEntry {
                            name: Some(peer.name.clone()),
                            ..e
                        });
                        lane
                    }
                    None => {
                        let taken: Vec<usize> = (0..lanes.list.len())
                            .filter(|&i| lanes.list[i].purpose == peer.purpose)
                            .collect();
                        if taken.len() >= config.max_peers {
                            // A lane nobody holds and nothing waits in is free to reuse.
                            let free = taken.iter().copied().find(|&i| {
                                let e = &lanes.list[i];
                                e.active.is_none() && e.lane.outbox().len() == 0
                            });
                            let Some(free) = free else {
                                return Err(format!(
                                    "{} {} already serves {} {} peers, its limit, each \
                                     connected or holding messages for its return; {} {} is \
                                     not taken (raise the limit, a proxy's \
                                     update.max_migrators, or run fewer workers)",
                                    config.role,
                                    config.name,
                                    taken.len(),
                                    peer.purpose,
                                    peer.role,
                                    peer.name
                                ));
                            };
                            lanes.list.remove(free);
                        }
                        let lane = Arc::new(Lane::new(config, shared.ids.clone()));
                        lanes.list.push(LaneEntry {
                            purpose: peer.purpose,
                            name: Some(peer.name.clone()),
                            lane: lane.clone(),
                            active: None,
                            idle_since: None,
                        });
                        lane
                    }
                }
            }
        };
        lanes.next_generation += 1;
        let generation = lanes.next_generation;
        let cancel = Arc::new(Notify::new());
        for e in &mut lanes.list {
            if Arc::ptr_eq(&e.lane, &lane) {
                e.active = Some(Active {
                    generation,
                    instance: peer.instance,
                    cancel: cancel.clone(),
                });
                e.idle_since = None;
            }
        }
        lanes
            .list
            .sort_by(|a, b| (a.purpose.index(), &a.name).cmp(&(b.purpose.index(), &b.name)));
        Ok(Claimed {
            generation,
            cancel,
            lane,
        })
    }

    fn release(&self, shared: &Shared, generation: u64) {
        let mut lanes = shared.lanes();
        if let Some(e) = lanes.list.iter_mut().find(|e| {
            e.active
                .as_ref()
                .is_some_and(|a| a.generation == generation)
        }) {
            e.active = None;
            e.idle_since = Some(Instant::now());
        }
    }
}

/// Hands back what a dropped lane held: its peer stayed away too long.
async fn hand_back(shared: Arc<Shared>, name: String, entries: Vec<Entry>) {
    let linger = shared.config.peer_linger;
    tracing::warn!(
        peer = %name,
        messages = entries.len(),
        "Update channel: {name} did not come back within {linger:?}; its {} unanswered \
         messages are handed back",
        entries.len()
    );
    for entry in entries {
        shared
            .emit(Event::Nacked {
                id: entry.id,
                message: entry.message,
                reason: format!(
                    "{} {name} did not come back within {linger:?} (peer_linger)",
                    shared.config.role.peer()
                ),
                refusal: Refusal::NotNow,
                peer: name.clone(),
            })
            .await;
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, tls: Option<ServerTls>) {
    let handshaking = Arc::new(Semaphore::new(MAX_HANDSHAKING));
    let mut tasks = JoinSet::new();
    let mut accept_errors = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
    // A lane is dropped between peer_linger and a quarter of it (at most a second) later.
    let period =
        (shared.config.peer_linger / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut reaper = tokio::time::interval(period);
    reaper.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            _ = reaper.tick() => {
                for (name, entries) in shared.reap() {
                    tasks.spawn(hand_back(shared.clone(), name, entries));
                }
                continue;
            }
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
        let (shared, tls) = (shared.clone(), tls.clone());
        tasks.spawn(async move {
            let gate = &Admission;
            // How it ended matters to a dialer's backoff only.
            let _ = match tls {
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
            };
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

//! Backend connections shared by client sessions whose handshakes are identical
//! (`share_backend_connections`).
//!
//! A client connection's own pair of backend connections carries one client's requests, so
//! every batch of requests costs a write per cluster per client. Sessions with the same
//! [`Shape`] — protocol version, STARTUP body (options, compression), what each cluster was
//! logged in with, and the two nodes — can send their requests over one shared pair instead:
//! batches of several sessions that run in one scheduler pass leave in one write, and their
//! answers arrive in one read.
//!
//! What stays on a session's own pair (opened by its handshake, kept for its lifetime):
//! - the handshake itself, PREPARE and re-prepares (prepared ids are per node, and the shape
//!   pins both pairs to the same nodes);
//! - `USE`, and every request after it: the keyspace is connection state. A session that
//!   sends `USE` leaves the shared pair for good (its [`Member`] lets go of the entry);
//! - `REGISTER`: events reach the session that asked, on the connection it asked on.
//!
//! A shared connection that dies fails what was in flight on it (each client gets an error,
//! as with its own connection) and is not used again. Its members go on over their own pairs
//! and, at their next batch boundary, join the shape's current entry — opening a fresh pair
//! when there is none — so after a backend blip the proxy shares again without clients
//! reconnecting. A member that is idle moves at its next batch; meanwhile the dead pair's
//! connection that outlived its partner closes by itself once it has answered what was in
//! flight on it (`retire`). A member keeps the entry it left until its pair owes it no answer
//! (dropping an entry drops what is in flight on it). The last member leaving closes a pair.
//!
//! A failed open (the cluster refuses the replayed login, a node is down) starts a backoff for
//! the shape: 1 s, doubling to 30 s, reset by an open that succeeds. Meanwhile sessions of the
//! shape, new ones and members of the failed entry alike, stay on their own pairs without
//! trying. The first failure is logged at WARN, repeats at DEBUG with their count. A shape's
//! record (and with it the login it holds) outlives its last session only until its backoff
//! has passed and as long again (at most 60 s), so sessions that come and go one at a time
//! still back off.
//!
//! ```text
//!  a member's batch boundary ─► its entry's pair open? ── yes ─► the batch goes over it
//!  (`Member::via`, no pool lock)            │ no, or entries left behind
//!                                           ▼
//!  `Member::refresh`: pinned by USE?  ─► leave the entry for good
//!                     left entries    ─► let go of those that owe nothing
//!                     entry opening?  ─► own pair for now
//!                     entry dead: shape backing off? ─► own pair until it passes
//!                                                       (no pool lock until then)
//!                                 else ─► join the shape's current entry, or open one
//! ```
//!
//! **Layout**: [`Shape`] and [`Login`] (the key), [`Pool`] (shape → [`Entry`], weakly held,
//! and the shape's backoff), [`Entry`] (what members hold: the pair once open), [`Member`] (a
//! session's entry and the ones it left), `open` (replays the handshake).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use ferry_cql::Compression;
use ferry_cql::envelope::{BodyExtensions, Envelope};
use ferry_cql::message::Request;
use ferry_cql::protocol::{Direction, Opcode, ProtocolVersion};
use ferry_cql::request::{AuthResponse, Startup};
use tokio::time::Instant;

use crate::backend::{Backend, BackendOptions, MAX_STREAMS};
use crate::completion::EventRoute;
use crate::proxy::Context;

/// How a cluster took a session's login.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum Login {
    /// It asked for none.
    None,
    /// The proxy's own credentials (`origin`/`target` `username`/`password`).
    Proxy,
    /// The client's one AUTH_RESPONSE (its body, uncompressed), answered by AUTH_SUCCESS.
    /// Kept only while sessions of the shape live; never logged.
    Client(Bytes),
}

/// What makes two sessions' backend connections interchangeable.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Shape {
    pub version: ProtocolVersion,
    /// The connection's compression (v3/v4 bodies, v5 segments).
    pub compression: Option<Compression>,
    /// The client's STARTUP options that change what a cluster does ([`shape_options`]).
    pub options: Vec<(String, String)>,
    /// The nodes of the session's own pair, by [`ClusterId::index`].
    pub addrs: [SocketAddr; 2],
    pub logins: [Login; 2],
}

impl std::fmt::Debug for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No credentials in logs.
        f.debug_struct("Shape")
            .field("version", &self.version)
            .field("compression", &self.compression)
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

/// STARTUP options that only describe the client (shown in Cassandra's
/// `system_views.clients`): a shared connection carries its first member's. Drivers make them
/// differ per session (`SESSION_ID`, `CLIENT_ID`) and per connection (the Rust driver's
/// `DRIVER_CONFIG` on its control connection), which would keep every session apart.
const DESCRIPTIVE_OPTIONS: [&str; 7] = [
    "DRIVER_NAME",
    "DRIVER_VERSION",
    "DRIVER_CONFIG",
    "CLIENT_ID",
    "SESSION_ID",
    "APPLICATION_NAME",
    "APPLICATION_VERSION",
];

/// The options of `startup` that decide how a cluster treats the connection (`CQL_VERSION`,
/// `COMPRESSION`, `NO_COMPACT`, `THROW_ON_OVERLOAD`, extensions, anything unknown), sorted:
/// drivers send them from hash maps, in an order that differs between connections.
pub(crate) fn shape_options(startup: &Startup) -> Vec<(String, String)> {
    let mut options: Vec<_> = startup
        .options
        .iter()
        .filter(|(k, _)| !DESCRIPTIVE_OPTIONS.contains(&k.to_ascii_uppercase().as_str()))
        .cloned()
        .collect();
    options.sort_unstable();
    options
}

/// The first backoff after a failed open; each failure in a row doubles it.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest backoff: a cluster that comes back is shared again within this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The open shared pairs, by shape.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    entries: Mutex<HashMap<Shape, Record>>,
}

/// What the pool knows of one shape.
#[derive(Debug)]
struct Record {
    /// The shape's newest entry.
    entry: Weak<Entry>,
    /// Set by a failed open, cleared by one that succeeds.
    backoff: Option<Backoff>,
}

/// A shape's wait after opens that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// Opens that failed in a row.
    pub failures: u32,
    /// No open is tried before this.
    pub until: Instant,
    /// How long this backoff lasts; the next failure doubles it.
    pub delay: Duration,
}

impl Backoff {
    fn after(previous: Option<Backoff>, now: Instant) -> Self {
        let (failures, delay) = match previous {
            Some(b) => (b.failures + 1, (b.delay * 2).min(MAX_BACKOFF)),
            None => (1, FIRST_BACKOFF),
        };
        Self {
            failures,
            until: now + delay,
            delay,
        }
    }

    /// When a shape without sessions forgets its failures (and its login): as long after the
    /// backoff as it lasted, so a session that comes just after it still counts as a repeat.
    fn forget_at(&self) -> Instant {
        self.until + self.delay
    }
}

/// One shape's shared pair, held by its member sessions: dropped (closing the pair) with the
/// last of them.
#[derive(Debug)]
pub(crate) struct Entry {
    shape: Shape,
    /// The first member's STARTUP body, replayed to open the pair.
    startup: Bytes,
    pool: Weak<Pool>,
    /// Set once, when the pair is open.
    pair: OnceLock<[Backend; 2]>,
    /// Opening failed, or was not tried (the shape's backoff): members stay on their own
    /// pairs until they can join a newer entry.
    failed: AtomicBool,
}

/// What [`Pool::join`] and [`Pool::rejoin`] hand a session.
#[derive(Debug)]
pub(crate) struct Joined {
    pub entry: Arc<Entry>,
    /// A new entry: the caller opens it with [`open`].
    pub opens: bool,
}

impl Pool {
    /// The entry a new session joins for `shape`: the live one, a new one to open, or, during
    /// the shape's backoff, a failed one (the session rejoins once the backoff has passed).
    pub(crate) fn join(self: &Arc<Self>, shape: Shape, startup: &Bytes) -> Joined {
        // Dropped after the guard: when its last member left meanwhile, this is the last
        // reference to the replaced entry, whose drop takes the lock.
        let stale: Option<Arc<Entry>>;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (current, waiting) = match entries.get(&shape) {
            Some(r) => (r.entry.upgrade(), r.waiting(Instant::now()).is_some()),
            None => (None, false),
        };
        match current {
            Some(entry) if entry.usable() || waiting => {
                return Joined {
                    entry,
                    opens: false,
                };
            }
            other => stale = other,
        }
        let entry = self.insert(&mut entries, shape, startup, waiting);
        drop(entries);
        drop(stale);
        Joined {
            entry,
            opens: !waiting,
        }
    }

    /// The entry a member of `dead` (its pair closed, or never opened) moves to: the shape's
    /// current one, or a new one to open. `Err` with the end of the shape's backoff while it
    /// lasts.
    pub(crate) fn rejoin(self: &Arc<Self>, dead: &Arc<Entry>) -> Result<Joined, Instant> {
        let stale: Option<Arc<Entry>>;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        // Absent when a newer entry of the shape came and went while `dead` lived on.
        let (current, waiting) = match entries.get(&dead.shape) {
            Some(r) => (r.entry.upgrade(), r.waiting(Instant::now())),
            None => (None, None),
        };
        match current {
            Some(entry) if entry.usable() && !Arc::ptr_eq(&entry, dead) => {
                return Ok(Joined {
                    entry,
                    opens: false,
                });
            }
            other => stale = other,
        }
        let joined = match waiting {
            Some(until) => Err(until),
            None => Ok(Joined {
                entry: self.insert(&mut entries, dead.shape.clone(), &dead.startup, false),
                opens: true,
            }),
        };
        drop(entries);
        drop(stale);
        joined
    }

    /// A new entry for `shape`, now its record's; `failed` when it is not to be opened.
    fn insert(
        self: &Arc<Self>,
        entries: &mut HashMap<Shape, Record>,
        shape: Shape,
        startup: &Bytes,
        failed: bool,
    ) -> Arc<Entry> {
        let entry = Arc::new(Entry {
            shape: shape.clone(),
            startup: startup.clone(),
            pool: Arc::downgrade(self),
            pair: OnceLock::new(),
            failed: AtomicBool::new(failed),
        });
        entries
            .entry(shape)
            .or_insert_with(|| Record {
                entry: Weak::new(),
                backoff: None,
            })
            .entry = Arc::downgrade(&entry);
        entry
    }

    /// Records that opening `entry`'s pair failed: the shape's backoff starts or grows.
    pub(crate) fn failed(&self, entry: &Entry) -> Backoff {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        // Under the lock, with the backoff: a session that sees the entry failed also sees it.
        entry.failed.store(true, Ordering::Release);
        let record = entries
            .entry(entry.shape.clone())
            .or_insert_with(|| Record {
                entry: Weak::new(),
                backoff: None,
            });
        let backoff = Backoff::after(record.backoff, Instant::now());
        record.backoff = Some(backoff);
        backoff
    }

    /// Records that `shape`'s pair opened: its backoff ends. Returns the failures before it.
    pub(crate) fn opened(&self, shape: &Shape) -> u32 {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get_mut(shape)
            .and_then(|r| r.backoff.take())
            .map_or(0, |b| b.failures)
    }

    /// Drops `shape`'s record when no entry of it lives and its failures are old enough to
    /// forget (see [`Backoff::forget_at`]).
    fn forget(&self, shape: &Shape) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries
            .get(shape)
            .is_some_and(|r| r.entry.strong_count() == 0 && r.forgettable(Instant::now()))
        {
            entries.remove(shape);
        }
    }

    /// Shapes with a live entry.
    #[cfg(test)]
    fn len(&self) -> usize {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .values()
            .filter(|r| r.entry.strong_count() > 0)
            .count()
    }

    /// Shapes the pool keeps a record of (a live entry, or failures not yet forgotten).
    #[cfg(test)]
    fn records(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

impl Record {
    /// The end of the shape's backoff, while it lasts.
    fn waiting(&self, now: Instant) -> Option<Instant> {
        self.backoff.map(|b| b.until).filter(|&until| now < until)
    }

    fn forgettable(&self, now: Instant) -> bool {
        self.backoff.is_none_or(|b| b.forget_at() <= now)
    }
}

impl Entry {
    /// The pair, while it is open.
    pub(crate) fn pair(&self) -> Option<&[Backend; 2]> {
        self.pair
            .get()
            .filter(|pair| pair.iter().all(Backend::is_open))
    }

    /// Open, or still opening: worth joining.
    fn usable(&self) -> bool {
        match self.pair.get() {
            Some(pair) => pair.iter().all(Backend::is_open),
            None => !self.failed.load(Ordering::Acquire),
        }
    }

    /// Answers taken off the pair (open or not) and not yet queued for their clients.
    fn delivering(&self) -> usize {
        self.pair
            .get()
            .map_or(0, |pair| pair.iter().map(Backend::delivering).sum())
    }

    /// Whether requests may still wait for an answer on the pair. An open pair's in-flight
    /// count is all its members', so it counts as owing; a dead one owes what the connection
    /// that survived its partner still answers (or times out).
    fn may_owe(&self) -> bool {
        match self.pair.get() {
            None => false,
            Some(pair) if pair.iter().all(Backend::is_open) => true,
            Some(pair) => pair.iter().any(|b| b.in_flight() > 0),
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let mut entries = pool.entries.lock().unwrap_or_else(|p| p.into_inner());
        // Only this entry's own record: a newer entry of the shape may have replaced it. A
        // shape in backoff keeps its record for a while (`open` forgets it later).
        if entries
            .get(&self.shape)
            .is_some_and(|r| r.entry.strong_count() == 0 && r.forgettable(Instant::now()))
        {
            entries.remove(&self.shape);
        }
    }
}

/// A session's part in the pool, owned by its request loop: the entry whose pair its batches
/// go over, and the entries it left whose pairs may still owe it answers.
#[derive(Debug)]
pub(crate) struct Member {
    /// `None` once the session left for good (`USE`).
    pub entry: Option<Arc<Entry>>,
    /// Entries this member left. Dropping the last reference to one closes its pair and drops
    /// whatever is still in flight on it unanswered, so each is kept until its pair owes this
    /// session nothing.
    pub left: Vec<Arc<Entry>>,
    /// No rejoin is tried before this: the shape's backoff, as the pool last said.
    retry_at: Option<Instant>,
}

impl Member {
    pub(crate) fn new(entry: Arc<Entry>) -> Self {
        Self {
            entry: Some(entry),
            left: Vec::new(),
            retry_at: None,
        }
    }

    /// The pair a batch goes over, when the entry's is open: the hot path, run once per read
    /// batch, as before rejoining existed: the pair's `OnceLock` and the two connections'
    /// closed flags (uncontended read locks of their `watch`), never the pool's mutex.
    pub(crate) fn via(&self) -> Option<&[Backend; 2]> {
        self.entry.as_ref()?.pair()
    }

    /// At a batch boundary where [`Member::via`] found no pair or entries are left: leaves the
    /// entry for good when the session is `pinned`; lets go of left entries that owe nothing
    /// (all of them when the session has nothing in flight, `idle`); moves from a dead entry to
    /// the shape's current one unless the shape is in backoff. Returns a new entry the caller
    /// opens.
    pub(crate) fn refresh(
        &mut self,
        pool: &Arc<Pool>,
        pinned: bool,
        idle: bool,
    ) -> Option<Weak<Entry>> {
        if pinned && let Some(entry) = self.entry.take() {
            self.left.push(entry);
        }
        self.left.retain(|e| !idle && e.may_owe());
        let entry = self.entry.as_ref()?;
        if entry.usable() {
            return None;
        }
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        match pool.rejoin(entry) {
            Err(until) => {
                self.retry_at = Some(until);
                None
            }
            Ok(Joined { entry, opens }) => {
                self.retry_at = None;
                let open = opens.then(|| Arc::downgrade(&entry));
                if let Some(dead) = self.entry.replace(entry)
                    && dead.may_owe()
                {
                    self.left.push(dead);
                }
                open
            }
        }
    }

    /// Answers of this member's pairs, current and left, taken off a connection and not yet
    /// queued for their clients: a draining session waits for them.
    pub(crate) fn delivering(&self) -> usize {
        self.entry
            .iter()
            .chain(&self.left)
            .map(|e| e.delivering())
            .sum()
    }
}

/// Opens `entry`'s pair by replaying its shape's handshake on `own`'s nodes with `own`'s
/// settings (one stream id table per connection, as large as the protocol allows). Members
/// use their own pairs until it is open; a failure starts the shape's backoff and leaves them
/// there.
pub(crate) async fn open(ctx: Arc<Context>, entry: Weak<Entry>, own: [BackendOptions; 2]) {
    let Some((shape, startup)) = entry
        .upgrade()
        .map(|e| (e.shape.clone(), e.startup.clone()))
    else {
        return;
    };
    let opened = tokio::join!(
        connect(&ctx, &shape, &startup, own[0].clone()),
        connect(&ctx, &shape, &startup, own[1].clone()),
    );
    let Some(entry) = entry.upgrade() else {
        // Every member left meanwhile: the pair closes with this scope.
        return;
    };
    match opened {
        (Ok(origin), Ok(target)) => {
            let gone = [origin.gone(), target.gone()];
            if entry.pair.set([origin, target]).is_ok() {
                ctx.metrics.shared_pair_opened();
                let failures = ctx.pool.opened(&shape);
                if failures > 0 {
                    tracing::info!(failures, "shared backend connections open again");
                }
                let metrics = ctx.metrics.clone();
                let entry = Arc::downgrade(&entry);
                let timeout = ctx.config.request_timeout;
                tokio::spawn(async move {
                    // Counted while both connections live: the last member leaving closes
                    // them, as does a failure.
                    let [origin, target] = gone;
                    tokio::select! {
                        () = origin => {}
                        () = target => {}
                    }
                    metrics.shared_pair_closed();
                    retire(&entry, timeout).await;
                });
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            let backoff = ctx.pool.failed(&entry);
            let retry_in = backoff.delay;
            if backoff.failures == 1 {
                tracing::warn!(error = %e, ?retry_in, "cannot open shared backend connections; clients keep their own");
            } else {
                tracing::debug!(error = %e, failures = backoff.failures, ?retry_in, "cannot open shared backend connections, again");
            }
            // Not under the pool's lock: this may be the entry's last reference.
            drop(entry);
            let pool = Arc::downgrade(&ctx.pool);
            drop(ctx);
            // The record holds the shape's login: drop it once no session needs it.
            tokio::time::sleep_until(backoff.forget_at()).await;
            if let Some(pool) = pool.upgrade() {
                pool.forget(&shape);
            }
        }
    }
}

/// Closes the connection of `entry`'s pair that outlived its partner, once it has answered
/// what was in flight on it (by `timeout`, every such request has had its answer or its
/// timeout): members that are idle, and so have not rejoined yet, must not keep it open.
async fn retire(entry: &Weak<Entry>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    // The first tick is at once; a member's batch that began before the loss may still be
    // sending on the survivor: give it one tick.
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(entry) = entry.upgrade() else {
            return;
        };
        let Some(pair) = entry.pair.get() else {
            return;
        };
        if Instant::now() >= deadline || pair.iter().all(|b| b.in_flight() == 0) {
            pair.iter().for_each(Backend::retire);
            return;
        }
    }
}

/// One shared connection: STARTUP as the client sent it, then the shape's login.
async fn connect(
    ctx: &Context,
    shape: &Shape,
    startup: &Bytes,
    mut opts: BackendOptions,
) -> Result<Backend, String> {
    let cluster = opts.cluster;
    opts.max_in_flight = MAX_STREAMS;
    opts.shared = true;
    let (backend, answer) = Backend::connect(opts, startup.clone(), EventRoute::Drop, None)
        .await
        .map_err(|e| e.to_string())?;
    let login = &shape.logins[cluster.index()];
    let request = match (answer.header.opcode, login) {
        (Opcode::Ready, Login::None) => return Ok(backend),
        (Opcode::Authenticate, Login::Proxy) => {
            let config = ctx.config.cluster(cluster);
            let (Some(user), Some(password)) = (&config.username, &config.password) else {
                return Err(format!(
                    "{cluster} asks for credentials the proxy does not have"
                ));
            };
            Request::AuthResponse(AuthResponse::plain(user, password.expose()))
                .to_envelope(shape.version, 0, 0, &BodyExtensions::default())
                .map_err(|e| e.to_string())?
        }
        (Opcode::Authenticate, Login::Client(body)) => Envelope::new(
            shape.version,
            Direction::Request,
            0,
            0,
            Opcode::AuthResponse,
            body.clone(),
        ),
        (opcode, _) => {
            return Err(format!(
                "{cluster} answered STARTUP with {opcode:?}, not as it did for the client"
            ));
        }
    };
    let answer: Envelope = backend.request(request).await.map_err(|e| e.to_string())?;
    match answer.header.opcode {
        Opcode::AuthSuccess => Ok(backend),
        opcode => Err(format!("{cluster} answered the login with {opcode:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(token: &'static [u8]) -> Shape {
        Shape {
            version: ProtocolVersion::V4,
            compression: None,
            options: vec![("CQL_VERSION".into(), "3.0.0".into())],
            addrs: [
                "127.0.0.1:9042".parse().unwrap(),
                "127.0.0.2:9042".parse().unwrap(),
            ],
            logins: [Login::Proxy, Login::Client(Bytes::from_static(token))],
        }
    }

    fn join(pool: &Arc<Pool>, token: &'static [u8]) -> (Arc<Entry>, bool) {
        let Joined { entry, opens } = pool.join(shape(token), &Bytes::new());
        (entry, opens)
    }

    fn rejoin(pool: &Arc<Pool>, dead: &Arc<Entry>) -> Result<(Arc<Entry>, bool), Instant> {
        pool.rejoin(dead).map(|j| (j.entry, j.opens))
    }

    #[test]
    fn sessions_of_one_shape_join_one_entry_until_the_last_leaves() {
        let pool = Arc::new(Pool::default());
        let (a, first) = join(&pool, b"alice");
        let (b, second) = join(&pool, b"alice");
        assert!(
            first && !second,
            "the first joiner opens, the second waits for it"
        );
        assert!(Arc::ptr_eq(&a, &b));
        let (c, third) = join(&pool, b"bob");
        assert!(
            third && !Arc::ptr_eq(&a, &c),
            "other credentials, other entry"
        );
        assert_eq!(pool.len(), 2);
        drop((a, b));
        assert_eq!(pool.len(), 1);
        drop(c);
        assert_eq!(pool.records(), 0, "no record outlives its entry");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_open_holds_the_shape_back_until_its_backoff_passes() {
        let pool = Arc::new(Pool::default());
        let start = Instant::now();
        let (a, opens) = join(&pool, b"alice");
        assert!(opens);
        let backoff = pool.failed(&a);
        assert_eq!((backoff.failures, backoff.delay), (1, FIRST_BACKOFF));
        let (b, opens) = join(&pool, b"alice");
        assert!(
            !opens && Arc::ptr_eq(&a, &b) && b.pair().is_none(),
            "a new session waits out the backoff on its own pair"
        );
        assert_eq!(rejoin(&pool, &a).err(), Some(start + FIRST_BACKOFF));
        tokio::time::advance(FIRST_BACKOFF - Duration::from_millis(1)).await;
        assert!(rejoin(&pool, &a).is_err(), "not a moment early");
        tokio::time::advance(Duration::from_millis(1)).await;
        let (c, opens) = rejoin(&pool, &a).unwrap();
        assert!(opens && !Arc::ptr_eq(&a, &c), "the first to rejoin opens");
        let (d, opens) = rejoin(&pool, &b).unwrap();
        assert!(!opens && Arc::ptr_eq(&c, &d), "the others join it");
        let (e, opens) = join(&pool, b"alice");
        assert!(!opens && Arc::ptr_eq(&c, &e), "so does a new session");

        let backoff = pool.failed(&c);
        assert_eq!((backoff.failures, backoff.delay), (2, 2 * FIRST_BACKOFF));
        tokio::time::advance(FIRST_BACKOFF).await;
        assert!(rejoin(&pool, &c).is_err() && !join(&pool, b"alice").1);
        tokio::time::advance(FIRST_BACKOFF).await;
        assert!(rejoin(&pool, &c).unwrap().1);
        let (_, other) = join(&pool, b"bob");
        assert!(other, "another shape never waits for this one's backoff");
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_doubles_up_to_its_limit_and_an_open_resets_it() {
        let pool = Arc::new(Pool::default());
        let mut delays = Vec::new();
        for _ in 0..7 {
            let (entry, opens) = join(&pool, b"alice");
            assert!(opens, "each try comes after the backoff");
            let backoff = pool.failed(&entry);
            delays.push(backoff.delay.as_secs());
            assert!(!join(&pool, b"alice").1);
            tokio::time::advance(backoff.delay).await;
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        let (entry, _) = join(&pool, b"alice");
        assert_eq!(pool.opened(&shape(b"alice")), 7, "failures before it");
        assert_eq!(pool.failed(&entry).delay, FIRST_BACKOFF, "counted anew");
    }

    #[tokio::test(start_paused = true)]
    async fn a_shape_without_sessions_forgets_its_failures_after_a_while() {
        let pool = Arc::new(Pool::default());
        let (a, _) = join(&pool, b"alice");
        let backoff = pool.failed(&a);
        drop(a);
        assert_eq!(pool.records(), 1, "the backoff outlives the last session");
        let (b, opens) = join(&pool, b"alice");
        assert!(
            !opens && b.pair().is_none(),
            "a session just after it waits"
        );
        drop(b);
        tokio::time::advance(backoff.delay).await;
        let (c, opens) = join(&pool, b"alice");
        assert!(opens);
        assert_eq!(pool.failed(&c).failures, 2, "a repeat, not a first failure");
        drop(c);
        pool.forget(&shape(b"alice"));
        assert_eq!(pool.records(), 1, "not before its time");
        tokio::time::advance(4 * FIRST_BACKOFF).await;
        pool.forget(&shape(b"alice"));
        assert_eq!(pool.records(), 0, "nor a moment after: it holds a login");

        // A member that stays past that time lets go of the record itself.
        let (d, _) = join(&pool, b"alice");
        pool.failed(&d);
        tokio::time::advance(2 * FIRST_BACKOFF).await;
        pool.forget(&shape(b"alice"));
        assert_eq!(pool.records(), 1, "a session still holds the entry");
        drop(d);
        assert_eq!(pool.records(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn members_of_a_failed_entry_rejoin_once_the_backoff_passes_unless_pinned() {
        let pool = Arc::new(Pool::default());
        let (a, _) = join(&pool, b"alice");
        pool.failed(&a);
        let mut members = [0; 3].map(|_| Member::new(a.clone()));
        for m in &mut members {
            assert!(m.refresh(&pool, false, false).is_none());
            assert!(m.via().is_none() && Arc::ptr_eq(m.entry.as_ref().unwrap(), &a));
        }
        tokio::time::advance(FIRST_BACKOFF).await;
        let [first, second, pinned] = &mut members;
        let open = first.refresh(&pool, false, false).expect("the first opens");
        let fresh = first.entry.clone().unwrap();
        assert!(Arc::ptr_eq(&open.upgrade().unwrap(), &fresh) && !Arc::ptr_eq(&fresh, &a));
        assert!(second.refresh(&pool, false, false).is_none());
        assert!(Arc::ptr_eq(second.entry.as_ref().unwrap(), &fresh));
        assert!(first.left.is_empty(), "a failed entry owes nothing");
        assert!(pinned.refresh(&pool, true, false).is_none());
        assert!(pinned.entry.is_none() && pinned.left.is_empty());
        assert!(pinned.refresh(&pool, false, false).is_none() && pinned.entry.is_none());
        drop(a);
        assert_eq!(Arc::strong_count(&fresh), 3, "two members and this test");
    }

    #[test]
    fn options_that_only_describe_the_client_do_not_keep_sessions_apart() {
        let startup = |options: &[(&str, &str)]| Startup {
            options: options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let control = startup(&[
            ("DRIVER_NAME", "d"),
            ("CQL_VERSION", "3.0.0"),
            ("SESSION_ID", "1"),
            ("DRIVER_CONFIG", "{}"),
        ]);
        let pool = startup(&[("SESSION_ID", "2"), ("CQL_VERSION", "3.0.0")]);
        assert_eq!(shape_options(&control), shape_options(&pool));
        let compressed = startup(&[("CQL_VERSION", "3.0.0"), ("COMPRESSION", "lz4")]);
        let reordered = startup(&[("COMPRESSION", "lz4"), ("CQL_VERSION", "3.0.0")]);
        assert_eq!(shape_options(&compressed), shape_options(&reordered));
        assert_ne!(shape_options(&compressed), shape_options(&pool));
        let unknown = startup(&[("CQL_VERSION", "3.0.0"), ("THROW_ON_OVERLOAD", "true")]);
        assert_ne!(shape_options(&unknown), shape_options(&pool));
    }

    #[test]
    fn shapes_never_show_credentials() {
        let shown = format!("{:?}", shape(b"s3cret"));
        assert!(
            !shown.contains("s3cret") && !shown.contains("115"),
            "{shown}"
        );
    }
}

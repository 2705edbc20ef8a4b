//! The demo's live application: workers writing and reading through the proxy with the `scylla`
//! driver, at a steady total rate, until stopped.
//!
//! Operations (per 20 draws): 6 reads (a user, an `events` partition slice, a playlist), 5
//! inserts (new users, events, sessions with a TTL), 6 updates (a user's email, a tag added to
//! its set, a map entry), 3 deletes (a user row, an event row). Keys cover the historical rows
//! (so updates and deletes race the backfill, as in a real migration) and new ones. The
//! counter table is left to the backfill: increments sent to both clusters while the migrator
//! adds `origin − target` would be counted twice whenever one lands between its two reads.
//! Lists get reads only: the backfill appends origin's list elements target lacks, after any
//! element a dual write put there first (migrator/src/writer.rs: Cassandra cannot insert at a
//! position), so a list a workload appended to mid-backfill may differ in order on target.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use scylla::client::session::Session;
use scylla::errors::PrepareError;
use scylla::statement::prepared::PreparedStatement;
use tokio::task::JoinSet;

use super::sample::{EVENT_DAYS, EVENT_TENANTS, PLAYLIST_LEN, SESSION_TTL, Sizes, user_row};

/// Workers; each runs one operation at a time.
pub(super) const WORKERS: u32 = 16;
/// The share of reads among the operations (6 draws in 20, see `Worker::one`).
pub(super) const READ_SHARE: f64 = 6.0 / 20.0;
/// Error messages kept for the report; the count goes on.
const MAX_ERRORS: usize = 5;

/// What the workload did so far.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) reads: AtomicU64,
    pub(crate) inserts: AtomicU64,
    pub(crate) updates: AtomicU64,
    pub(crate) deletes: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// The first few errors, for the report.
    pub(crate) first_errors: Mutex<Vec<String>>,
}

/// A copy of the counts at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Snapshot {
    pub(crate) reads: u64,
    pub(crate) inserts: u64,
    pub(crate) updates: u64,
    pub(crate) deletes: u64,
    pub(crate) errors: u64,
}

impl Snapshot {
    pub(crate) fn writes(&self) -> u64 {
        self.inserts + self.updates + self.deletes
    }

    pub(crate) fn ops(&self) -> u64 {
        self.writes() + self.reads
    }
}

impl Counts {
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            reads: self.reads.load(Ordering::Relaxed),
            inserts: self.inserts.load(Ordering::Relaxed),
            updates: self.updates.load(Ordering::Relaxed),
            deletes: self.deletes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().unwrap_or_else(|p| p.into_inner());
        if first.len() < MAX_ERRORS {
            first.push(format!("{what}: {e}"));
        }
    }
}

struct Statements {
    read_user: PreparedStatement,
    read_events: PreparedStatement,
    read_playlist: PreparedStatement,
    insert_user: PreparedStatement,
    insert_event: PreparedStatement,
    insert_session: PreparedStatement,
    update_email: PreparedStatement,
    add_tag: PreparedStatement,
    set_pref: PreparedStatement,
    delete_user: PreparedStatement,
    delete_event: PreparedStatement,
}

impl Statements {
    async fn prepare(session: &Session) -> Result<Self, PrepareError> {
        let p = |q: &'static str| session.prepare(q);
        Ok(Self {
            read_user: p("SELECT * FROM ferry_demo.users WHERE id = ?").await?,
            read_events: p(
                "SELECT * FROM ferry_demo.events WHERE tenant = ? AND day = ? LIMIT 20",
            )
            .await?,
            read_playlist: p("SELECT * FROM ferry_demo.playlists WHERE user_id = ?").await?,
            insert_user: p(
                "INSERT INTO ferry_demo.users (id, name, email, tags, prefs) VALUES (?, ?, ?, ?, ?)",
            )
            .await?,
            insert_event: p(
                "INSERT INTO ferry_demo.events (tenant, day, seq, kind, payload) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .await?,
            insert_session: p(
                "INSERT INTO ferry_demo.sessions (sid, user_id, data) VALUES (?, ?, ?) \
                 USING TTL ?",
            )
            .await?,
            update_email: p("UPDATE ferry_demo.users SET email = ? WHERE id = ?").await?,
            add_tag: p("UPDATE ferry_demo.users SET tags = tags + ? WHERE id = ?").await?,
            set_pref: p("UPDATE ferry_demo.users SET prefs[?] = ? WHERE id = ?").await?,
            delete_user: p("DELETE FROM ferry_demo.users WHERE id = ?").await?,
            delete_event: p(
                "DELETE FROM ferry_demo.events WHERE tenant = ? AND day = ? AND seq = ?",
            )
            .await?,
        })
    }
}

/// splitmix64: a few random bits per operation without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// The running workload; dropping it aborts the workers.
pub(crate) struct Workload {
    pub(crate) counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    workers: JoinSet<()>,
}

impl Workload {
    /// Starts `WORKERS` workers sharing `rate` operations per second through `session`.
    pub(crate) async fn start(
        session: Arc<Session>,
        sizes: Sizes,
        rate: u32,
    ) -> Result<Self, PrepareError> {
        let statements = Arc::new(Statements::prepare(&session).await?);
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        // New keys start above every historical one; shared so workers never collide.
        let next_key = Arc::new(AtomicU64::new(sizes.total()));
        let per_worker = f64::from(rate.max(1)) / f64::from(WORKERS);
        let period = Duration::from_secs_f64(1.0 / per_worker);
        let mut workers = JoinSet::new();
        for w in 0..WORKERS {
            let ctx = Worker {
                session: session.clone(),
                st: statements.clone(),
                counts: counts.clone(),
                next_key: next_key.clone(),
                sizes,
                rng: Rng(u64::from(w) * 7919 + 1),
            };
            let stop = stop.clone();
            workers.spawn(async move {
                let mut ctx = ctx;
                let mut tick = tokio::time::interval(period);
                // Behind schedule (a slow moment), the rate is not made up in a burst.
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    ctx.one().await;
                }
            });
        }
        Ok(Self {
            counts,
            stop,
            workers,
        })
    }

    /// Stops after each worker's current operation.
    pub(crate) async fn stop(mut self) -> Snapshot {
        self.stop.store(true, Ordering::Relaxed);
        while self.workers.join_next().await.is_some() {}
        self.counts.snapshot()
    }
}

struct Worker {
    session: Arc<Session>,
    st: Arc<Statements>,
    counts: Arc<Counts>,
    next_key: Arc<AtomicU64>,
    sizes: Sizes,
    rng: Rng,
}

impl Worker {
    fn user(&mut self) -> i64 {
        let known = self.next_key.load(Ordering::Relaxed);
        // Mostly historical users, some new ones (their ids start at the historical total).
        let id = if self.rng.below(4) == 0 && known > self.sizes.total() {
            self.sizes.total() + self.rng.below(known - self.sizes.total())
        } else {
            self.rng.below(self.sizes.users)
        };
        i64::try_from(id).unwrap_or(0)
    }

    fn partition(&mut self) -> (i32, i32) {
        let tenant = i32::try_from(self.rng.below(EVENT_TENANTS as u64)).unwrap_or(0);
        let day = i32::try_from(self.rng.below(EVENT_DAYS as u64)).unwrap_or(0);
        (tenant, day)
    }

    async fn one(&mut self) {
        let draw = self.rng.below(20);
        let s = self.session.clone();
        let st = self.st.clone();
        let (kind, result) = match draw {
            0..=2 => {
                let id = self.user();
                ("read", s.execute_unpaged(&st.read_user, (id,)).await)
            }
            3..=4 => {
                let p = self.partition();
                ("read", s.execute_unpaged(&st.read_events, p).await)
            }
            5 => {
                let playlists = (self.sizes.playlists / PLAYLIST_LEN).max(1);
                let user = i64::try_from(self.rng.below(playlists)).unwrap_or(0);
                ("read", s.execute_unpaged(&st.read_playlist, (user,)).await)
            }
            6..=7 => {
                let id = self.next_key.fetch_add(1, Ordering::Relaxed);
                let (name, email, tags, prefs) = user_row(id);
                let id = i64::try_from(id).unwrap_or(0);
                let values = (id, name, email, tags, prefs);
                ("insert", s.execute_unpaged(&st.insert_user, values).await)
            }
            8..=9 => {
                let (tenant, day) = self.partition();
                let seq = self.next_key.fetch_add(1, Ordering::Relaxed);
                let values = (
                    tenant,
                    day,
                    i64::try_from(seq).unwrap_or(0),
                    "live",
                    format!("{{\"live\": {seq}}}"),
                );
                ("insert", s.execute_unpaged(&st.insert_event, values).await)
            }
            10 => {
                let n = self.next_key.fetch_add(1, Ordering::Relaxed);
                let user = self.user();
                let values = (
                    format!("live{n:08}"),
                    user,
                    n.to_be_bytes().to_vec(),
                    SESSION_TTL,
                );
                (
                    "insert",
                    s.execute_unpaged(&st.insert_session, values).await,
                )
            }
            11..=12 => {
                let id = self.user();
                let email = format!("new{}@example.org", self.rng.below(1_000_000));
                (
                    "update",
                    s.execute_unpaged(&st.update_email, (email, id)).await,
                )
            }
            13..=14 => {
                let id = self.user();
                let tag = vec![format!("live{}", self.rng.below(10))];
                ("update", s.execute_unpaged(&st.add_tag, (tag, id)).await)
            }
            15..=16 => {
                let id = self.user();
                let value = format!("v{}", self.rng.below(100));
                let values = ("lang".to_owned(), value, id);
                ("update", s.execute_unpaged(&st.set_pref, values).await)
            }
            17 => {
                let id = self.user();
                ("delete", s.execute_unpaged(&st.delete_user, (id,)).await)
            }
            _ => {
                let (tenant, day) = self.partition();
                let seq = i64::try_from(self.rng.below(self.sizes.events)).unwrap_or(0);
                let values = (tenant, day, seq);
                ("delete", s.execute_unpaged(&st.delete_event, values).await)
            }
        };
        let counter = match kind {
            "read" => &self.counts.reads,
            "insert" => &self.counts.inserts,
            "update" => &self.counts.updates,
            _ => &self.counts.deletes,
        };
        match result {
            Ok(_) => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.counts.error(kind, e),
        }
    }
}

//! The proxy's end of the Update channel (`ferry_update`): it listens for the migrator, applies
//! its reports to the migration state (`crate::migration`), and sends it repair and re-migrate requests.
//!
//! ```text
//!  Channel::listen(update.listen) ─► Events ─► link task:
//!     Message(JobStarted, TableProgress, …) ─► Migration::apply ─► ack (or nack with the reason)
//!     Message(TableValidated) from a validate peer ─► Migration::apply; anything else from it
//!        ─► nack (job state is the migrate peers' to report)
//!     Message from a migrate peer naming a table ─► owners: table ─► that worker
//!     Connected / Disconnected of migrate peers ─► ferry_proxy_migrator_connected (0/1),
//!        ferry_proxy_migrators_connected (how many)
//!     every second, while a migrator is connected and its earlier requests are answered:
//!        RepairLog::take ─► per table, routed (see Routing):
//!                                      RepairPartitions (keys, split to fit frames)
//!                                      + Remigrate when some failures have no key
//!                        ─► acknowledged (their worker's LaneStatus::oldest passed their
//!                           ids, and every Nacked event the channel counted is handled)
//!                           ─► RepairLog::settle: they leave the pending count
//!  session: ALTER TABLE succeeded ─► UpdateLink::remigrate ─► Remigrate{table}, routed;
//!                                     no migrator at all ─► waiting
//!  Nacked(repair request, not_now) ─► RepairLog::restore (still pending) ─► that worker is
//!                                     held until it connects again or not_now_retry ─► sent
//!                                     again (to another worker meanwhile)
//!  Nacked(Remigrate, not_now) ─► from a worker no longer connected (its lane dropped after
//!                                 peer_linger): to a connected worker at once; else (or
//!                                 none connected) waiting (one per table) ─► Connected: sent
//!                                 again
//!  Nacked(Remigrate, never)   ─► dropped, logged
//!  with `repair_journal` (crate::journal): Remigrate asked ─► journaled Remigrate{seq};
//!     acknowledged or refused for good ─► Remigrated{upto: seq}; repairs settled ─►
//!     Repaired{seqs} / TableRepaired{upto}; at start the journal's waiting re-migrations
//!     come back as waiting here, its failures as pending in the repair log
//! ```
//!
//! **Routing.** Several `ferry migrate` workers may report at once (a job split over an
//! indexed Job's pods, each with its own name): the channel keeps a lane per worker. A
//! table's request goes to the worker whose reports named the table (`JobStarted`, a table's
//! phase or progress): a re-migration even while that worker is away (its lane keeps it for
//! its return, and hands it back after the channel's `peer_linger`, when it goes to a
//! connected worker at once),
//! a repair only while it is connected and not held. Otherwise to the connected worker with
//! the fewest messages waiting (by name on a tie). With none connected, a re-migration
//! waits here and a repair in the repair log. Progress from every worker merges into one
//! per-table state ([`Migration`]), whose cutover gate covers every table any worker
//! reported; `/status` lists each worker and its job.
//!
//! Repairs are handed to the channel only while a migrator is connected and every request
//! sent to a connected worker is answered: while none is, failures wait in the repair log
//! (bounded there, with the count of what it had to drop), not in the channel's queue, so a
//! long absence costs no more memory than the log's bound. Requests to a worker that went
//! away hold no round: they wait in its lane (one round's worth at most: a round goes to
//! connected workers only) for its return, or come back after `peer_linger` as "not now" and
//! go out again, once, in a later round. A `Nack` for good ([`Refusal::Never`]: the migrator can never repair
//! that table) settles the request too: it is counted in `/status` as refused and logged.
//!
//! A repair refused as "not now" ([`Refusal::NotNow`]: the migrator is exiting, or cannot
//! reach origin) is not lost: its failures go back to the repair log, still pending (`/status`
//! `repairs.pending`, `ferry_proxy_repairs_pending`, counted in `refused_not_now`), and repairs
//! go to that worker (`held`) only once it connects again or `update.not_now_retry` (30 s)
//! passes;
//! another worker may take them meanwhile. The log's bound applies: its list keeps the newest 10,000 failures with their keys,
//! and failures pushed out of it are repaired by re-migrating their table.
//!
//! **Migrate and validate peers.** `ferry migrate` and `ferry validate` both dial in as
//! migrators; their Hello names the purpose (`migrate`, or absent from older builds;
//! `validate`). The channel keeps the validate run apart, so it never displaces a worker: it
//! only reports `TableValidated`, while re-migrations and repairs go to `migrate` peers alone.
//! `/status` shows them (`migrators`, `validator`).
//!
//! **Across a restart.** Without `repair_journal`, what waits here and in the repair log is
//! in memory only: a stopping proxy warns, naming it (run `ferry validate --repair`). With
//! it, every re-migration asked is journaled until acknowledged (a re-migration sent to a
//! worker is tracked by message id until its lane passes it, as a repair is), so a restarted
//! proxy sends it again, as it does the unsettled repairs.
//!
//! A re-migration is never lost to a peer that cannot take it: `ferry validate`, or a one-shot
//! `ferry migrate` whose job has ended, refuses it as "not now" ([`Refusal::NotNow`]); the
//! request then waits here (listed in `/status`, one per table, a newer reason replacing the
//! older) and goes to the next migrator that connects, until one takes it. Only a "never"
//! (origin has no such table) drops it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_update::{
    Channel, ChannelConfig, Event, Events, Message, PartitionKey, Purpose, Refusal, Role,
    ServerTls, ServerTlsFiles, Status, TableName,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::UpdateConfig;
use crate::journal::Record;
use crate::metrics::MigrationFamilies;
use crate::migration::{self, Migration};
use crate::repairs::{JournaledRemigration, RepairLog, TargetWriteFailure, UNKNOWN_TABLE};

/// How often taken repairs are sent and answered ones settled.
const REPAIR_INTERVAL: Duration = Duration::from_secs(1);
/// The largest frame of the channel (its default), which repair batches must fit.
const MAX_FRAME: usize = 1 << 20;
/// Re-migrations waiting for a migrator that can take them: one per table, so the proxy's
/// table bound.
const MAX_WAITING: usize = migration::MAX_TRACKED_TABLES;

/// Which workers a request may go to (see the module docs, Routing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Take {
    /// A re-migration: its table's worker even while away (its lane keeps it), else a
    /// connected one.
    Remigrate,
    /// A re-migration the worker it was queued for did not take and cannot take now (gone
    /// past the linger, or disconnected): a connected worker only, so it does not wait for
    /// the next to connect.
    RemigrateNow,
    /// A repair: a connected worker that is not held.
    Repair,
}

/// Why the Update listener could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateStartError {
    #[error(transparent)]
    Tls(#[from] ferry_update::TlsError),
    #[error(transparent)]
    Channel(#[from] ferry_update::StartError),
}

/// A repair request sent and not yet answered.
#[derive(Debug)]
struct Awaiting {
    id: u64,
    /// The worker it went to: held if it says "not now".
    peer: String,
    table: Arc<str>,
    /// Failures it settles once acknowledged: those whose key it names (a `Remigrate`: those
    /// without a key).
    failures: u64,
    /// Of those, the ones still listed, given back to the repair log if the migrator says
    /// "not now".
    listed: Vec<TargetWriteFailure>,
    /// A `Remigrate`: the last seq it covers, journaled once acknowledged.
    upto: Option<u64>,
}

/// A re-migration (ALTER TABLE) waiting for a migrator, or sent and not yet answered.
#[derive(Debug)]
struct Wanted {
    table: TableName,
    reason: String,
    /// Its journal seq: acknowledged, it settles the table's re-migrations up to it.
    seq: u64,
}

/// Counts for `/status`.
#[derive(Debug, Default)]
struct Counts {
    /// Partitions sent in `RepairPartitions`.
    partitions_requested: AtomicU64,
    /// Tables sent for re-migration: failures without a key, and ALTER TABLE.
    remigrations_requested: AtomicU64,
    /// Repair requests the migrator refused for good.
    refused: AtomicU64,
    /// Repair requests the migrator refused as "not now": their failures went back to the
    /// repair log, still pending.
    refused_not_now: AtomicU64,
    /// Failures no request can name: a write over several tables.
    unrepairable: AtomicU64,
}

/// What `/status` shows of the link.
#[derive(Debug, Clone)]
pub(crate) struct LinkStatus {
    pub listen: SocketAddr,
    pub channel: Status,
    pub partitions_requested: u64,
    pub remigrations_requested: u64,
    pub refused: u64,
    pub refused_not_now: u64,
    /// Workers that refused a repair as "not now": none goes to them until they connect
    /// again or the retry delay passes.
    pub repairs_held: Vec<String>,
    pub unrepairable: u64,
    /// Failures sent and not yet acknowledged.
    pub awaiting_ack: u64,
    /// Re-migrations refused as "not now", waiting for the next migrator, by table.
    pub remigrations_waiting: Vec<String>,
    /// Tables per worker name, as their reports named them.
    pub tables_by_migrator: HashMap<String, usize>,
}

/// The running link, shared by the link task and the sessions.
#[derive(Debug)]
pub(crate) struct UpdateLink {
    channel: Mutex<Option<Channel>>,
    listen: SocketAddr,
    awaiting: Mutex<VecDeque<Awaiting>>,
    /// Re-migrations a peer refused as "not now", or sent with no migrator connected,
    /// oldest first.
    waiting: Mutex<VecDeque<Wanted>>,
    /// Re-migrations sent and not yet answered, by message id and worker: journaled as done
    /// once their worker's lane has passed them.
    remigrations_sent: Mutex<Vec<(u64, String, Wanted)>>,
    /// Where failures are taken from and settled, and the journal behind it.
    repairs: Arc<RepairLog>,
    /// Repairs are not sent to these workers before the time (they refused one as "not
    /// now"). At most one per worker that ever refused; expired ones are pruned.
    held_until: Mutex<HashMap<String, Instant>>,
    /// How long a worker is held (`update.not_now_retry`): one that cannot reach origin, or
    /// is exiting, would refuse again at once.
    not_now_retry: Duration,
    /// Which worker reported each table (`keyspace.table`): where its requests go. Bounded
    /// like the migration state ([`migration::MAX_TRACKED_TABLES`]).
    owners: Mutex<HashMap<Arc<str>, String>>,
    /// `Nacked` events handled, to compare with the channel's `nacked_total`: an answer the
    /// link has not seen yet must not be settled as an acknowledgement.
    nacks_handled: AtomicU64,
    counts: Counts,
}

impl UpdateLink {
    /// Binds the listener and starts the task that serves it until `shutdown`. `replayed`:
    /// re-migrations the repair journal held, waiting for a migrator again.
    pub(crate) async fn start(
        config: &UpdateConfig,
        name: String,
        migration: Arc<Migration>,
        repairs: Arc<RepairLog>,
        replayed: Vec<JournaledRemigration>,
        gauges: MigrationFamilies,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<Self>, JoinHandle<()>), UpdateStartError> {
        let tls = match &config.tls {
            Some(t) => {
                let mut files = ServerTlsFiles::new(&t.cert_path, &t.key_path);
                files.client_ca_path.clone_from(&t.client_ca_path);
                Some(ServerTls::load(&files)?)
            }
            None => None,
        };
        let mut channel_config = ChannelConfig::new(Role::Proxy, name);
        channel_config.max_frame = MAX_FRAME;
        channel_config.max_peers = config.max_migrators;
        channel_config.peer_linger = config.peer_linger;
        let (channel, events) = Channel::listen(channel_config, config.listen, tls).await?;
        let listen = channel.local_addr().unwrap_or(config.listen);
        tracing::info!(%listen, tls = config.tls.is_some(), "Update channel listening for migrators");
        let link = Arc::new(Self {
            channel: Mutex::new(Some(channel)),
            listen,
            awaiting: Mutex::default(),
            waiting: Mutex::default(),
            remigrations_sent: Mutex::default(),
            repairs: repairs.clone(),
            held_until: Mutex::default(),
            not_now_retry: config.not_now_retry,
            owners: Mutex::default(),
            nacks_handled: AtomicU64::new(0),
            counts: Counts::default(),
        });
        for (table, seq, reason) in replayed {
            match migration::table_name(&table) {
                Some(table) => link.wait_for_migrator(Wanted { table, reason, seq }),
                None => {
                    tracing::warn!(%table, "repair journal: a re-migration of an unnamed table; dropped")
                }
            }
        }
        let task = tokio::spawn(run(
            link.clone(),
            events,
            migration,
            repairs,
            gauges,
            shutdown,
        ));
        Ok((link, task))
    }

    pub(crate) fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    fn send_to(&self, peer: &str, message: Message) -> Result<u64, String> {
        let channel = self.channel.lock().unwrap_or_else(|p| p.into_inner());
        match channel.as_ref() {
            Some(c) => c.send_to(peer, message).map_err(|e| e.to_string()),
            None => Err("the Update channel is closed".to_owned()),
        }
    }

    /// Notes which worker reports `message`'s tables (replayed ones too).
    fn own(&self, peer: &str, message: &Message) {
        let message = match message {
            Message::Replayed { message } => message.as_ref(),
            live => live,
        };
        let tables: Vec<&TableName> = match message {
            Message::JobStarted { tables, .. } => tables.iter().collect(),
            Message::TableStarted { table }
            | Message::TableProgress { table, .. }
            | Message::TableBackfilled { table, .. }
            | Message::TableValidated { table, .. }
            | Message::TableFailed { table, .. } => vec![table],
            _ => return,
        };
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        for t in tables {
            let key = migration::table_key(t);
            if owners.get(&key).is_some_and(|o| o == peer) {
                continue;
            }
            if owners.len() >= MAX_WAITING && !owners.contains_key(&key) {
                // Past the bound the table is routed to any worker, as an unknown one is.
                continue;
            }
            owners.insert(key, peer.to_owned());
        }
    }

    /// The worker for `table`'s request (see the module docs, Routing); `None` when none
    /// can take it now.
    fn route(&self, table: &TableName, take: Take) -> Option<String> {
        let status = self.channel_status()?;
        let held = self.held_peers();
        let owner = self
            .owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&migration::table_key(table))
            .cloned();
        let lanes = status
            .lanes
            .iter()
            .filter(|l| l.purpose == Purpose::Migrate && l.name.is_some());
        let usable = |l: &&ferry_update::LaneStatus| match take {
            Take::Remigrate => true,
            Take::RemigrateNow => l.peer.is_some(),
            Take::Repair => l.peer.is_some() && !l.name.as_ref().is_some_and(|n| held.contains(n)),
        };
        if let Some(owner) = owner
            && lanes
                .clone()
                .filter(usable)
                .any(|l| l.name.as_ref() == Some(&owner))
        {
            return Some(owner);
        }
        lanes
            .filter(|l| l.peer.is_some())
            .filter(usable)
            .min_by_key(|l| (l.queued, l.name.clone()))
            .and_then(|l| l.name.clone())
    }

    /// Workers held after refusing a repair as "not now" (expired holds are pruned).
    fn held_peers(&self) -> Vec<String> {
        let now = Instant::now();
        let mut held = self.held_until.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|_, until| now < *until);
        let mut names: Vec<String> = held.keys().cloned().collect();
        names.sort();
        names
    }

    /// `ferry migrate` workers connected now.
    fn migrators_connected(&self) -> usize {
        self.channel_status().map_or(0, |s| s.peers.len())
    }

    fn channel_status(&self) -> Option<Status> {
        let channel = self.channel.lock().unwrap_or_else(|p| p.into_inner());
        channel.as_ref().map(Channel::status)
    }

    /// Asks the table's worker (or any) to copy `table` again; kept waiting if no migrator
    /// is connected.
    pub(crate) fn remigrate(&self, table: TableName, reason: String) {
        let name = table.to_string();
        self.counts
            .remigrations_requested
            .fetch_add(1, Ordering::Relaxed);
        let seq = self.repairs.next_seq();
        self.repairs.journal_write(|| Record::Remigrate {
            seq,
            table: name.clone(),
            reason: reason.clone(),
        });
        let wanted = Wanted { table, reason, seq };
        let Some(peer) = self.route(&wanted.table, Take::Remigrate) else {
            tracing::info!(table = %name, "no migrator connected; the re-migration waits for one");
            self.wait_for_migrator(wanted);
            return;
        };
        if self.send_remigrate(&peer, wanted) {
            tracing::info!(table = %name, migrator = %peer, "asked the migrator to re-migrate the table");
        }
    }

    /// Sends `table`'s re-migration to `to`; `false`, and kept for the next migrator, when it
    /// cannot go (a request is never dropped on the way).
    fn send_remigrate(&self, to: &str, wanted: Wanted) -> bool {
        let message = Message::Remigrate {
            table: wanted.table.clone(),
            reason: wanted.reason.clone(),
        };
        match self.send_to(to, message) {
            Ok(id) => {
                self.remigrations_sent
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((id, to.to_owned(), wanted));
                true
            }
            Err(e) => {
                tracing::warn!(table = %wanted.table, migrator = %to, error = %e, "cannot send the re-migration; it waits for the next migrator");
                self.wait_for_migrator(wanted);
                false
            }
        }
    }

    /// A re-migration `peer` refused as "not now", or handed back when its lane was dropped:
    /// to another connected worker at once if `peer` is not connected (a connected one
    /// that refused would refuse again, and two such would pass it back and forth), else
    /// waiting for the next migrator that connects.
    fn remigration_refused(&self, id: u64, peer: &str, table: TableName, reason: String) {
        let name = table.to_string();
        let sent = {
            let mut sent = self
                .remigrations_sent
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            sent.iter()
                .position(|(i, _, _)| *i == id)
                .map(|i| sent.remove(i).2)
        };
        // Sent before the journal knew it (never, as every send is recorded): a new seq.
        let wanted = sent.unwrap_or_else(|| Wanted {
            table,
            reason,
            seq: self.repairs.next_seq(),
        });
        let peer_connected = self.channel_status().is_some_and(|s| {
            s.lanes
                .iter()
                .any(|l| l.peer.is_some() && l.name.as_deref() == Some(peer))
        });
        let to = (!peer_connected)
            .then(|| self.route(&wanted.table, Take::RemigrateNow))
            .flatten()
            .filter(|to| to != peer);
        let Some(to) = to else {
            tracing::info!(table = %name, migrator = %peer, "the re-migration waits for the next migrator");
            self.wait_for_migrator(wanted);
            return;
        };
        if self.send_remigrate(&to, wanted) {
            tracing::info!(table = %name, from = %peer, migrator = %to, "re-migration handed to another connected migrator");
        }
    }

    /// Keeps a re-migration a peer could not take, for the next migrator.
    fn wait_for_migrator(&self, wanted: Wanted) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        // The newer replaces the older; its larger seq covers both once acknowledged.
        let mut seq = wanted.seq;
        waiting.retain(|w| {
            let same = w.table == wanted.table;
            if same {
                seq = seq.max(w.seq);
            }
            !same
        });
        if waiting.len() >= MAX_WAITING
            && let Some(dropped) = waiting.pop_front()
        {
            tracing::warn!(table = %dropped.table, "{MAX_WAITING} re-migrations waiting; the oldest is dropped");
        }
        waiting.push_back(Wanted { seq, ..wanted });
    }

    /// Offers the waiting re-migrations to a peer that just connected.
    fn send_waiting(&self) {
        let waiting: Vec<Wanted> = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for wanted in waiting {
            let name = wanted.table.to_string();
            let Some(peer) = self.route(&wanted.table, Take::Remigrate) else {
                self.wait_for_migrator(wanted);
                continue;
            };
            if self.send_remigrate(&peer, wanted) {
                tracing::info!(table = %name, migrator = %peer, "waiting re-migration sent to the migrator");
            }
        }
    }

    pub(crate) fn status(&self) -> LinkStatus {
        let awaiting_ack = self
            .awaiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|a| a.failures)
            .sum();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LinkStatus {
            listen: self.listen,
            channel: self.channel_status().unwrap_or_default(),
            partitions_requested: get(&self.counts.partitions_requested),
            remigrations_requested: get(&self.counts.remigrations_requested),
            refused: get(&self.counts.refused),
            refused_not_now: get(&self.counts.refused_not_now),
            repairs_held: self.held_peers(),
            unrepairable: get(&self.counts.unrepairable),
            awaiting_ack,
            remigrations_waiting: self
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|w| w.table.to_string())
                .collect(),
            tables_by_migrator: self
                .owners
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .fold(HashMap::new(), |mut m, peer| {
                    *m.entry(peer.clone()).or_default() += 1;
                    m
                }),
        }
    }

    /// Settles the repair requests the workers have answered: each by its own worker's lane,
    /// so one that went away with requests unanswered does not hold the others' answers.
    fn settle(&self, repairs: &RepairLog) {
        let Some(status) = self.channel_status() else {
            return;
        };
        if status.nacked_total > self.nacks_handled.load(Ordering::Relaxed) {
            // A refusal is on its way as an event: settle once it is handled (next tick), or
            // a "not now" would be taken for an acknowledgement.
            return;
        }
        // Its lane still holds it (ids grow, and a lane's oldest is its smallest); a lane
        // dropped since handed its messages back as refusals, handled above.
        let open = |peer: &str, id: u64| {
            status.lanes.iter().any(|l| {
                l.purpose == Purpose::Migrate
                    && l.name.as_deref() == Some(peer)
                    && l.oldest.is_some_and(|oldest| id >= oldest)
            })
        };
        let mut awaiting = self.awaiting.lock().unwrap_or_else(|p| p.into_inner());
        awaiting.retain(|a| {
            let open = open(&a.peer, a.id);
            if !open {
                repairs.settle(&a.table, a.failures);
                match a.upto {
                    Some(upto) => repairs.settled_table(&a.table, upto),
                    None => repairs.settled_failures(&a.listed),
                }
            }
            open
        });
        drop(awaiting);
        // Re-migrations answered: acknowledged, or refused for good (dropped, logged).
        self.remigrations_sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(id, peer, w)| {
                let open = open(peer, *id);
                if !open {
                    repairs.journal_write(|| Record::Remigrated {
                        table: w.table.to_string(),
                        upto: w.seq,
                    });
                }
                open
            });
    }

    /// A repair request a worker refused as "not now": its failures go back to the repair
    /// log (still pending; bounded by the log, whose list keeps the newest failures and
    /// sends a table with more for re-migration), and that worker gets no repairs until it
    /// connects again or `update.not_now_retry` passes. Returns false when `id` is not a repair
    /// request.
    fn not_now(&self, repairs: &RepairLog, id: u64) -> bool {
        let mut awaiting = self.awaiting.lock().unwrap_or_else(|p| p.into_inner());
        let Some(i) = awaiting.iter().position(|a| a.id == id) else {
            return false;
        };
        let Some(a) = awaiting.remove(i) else {
            return false;
        };
        drop(awaiting);
        repairs.restore(&a.table, a.failures, a.listed);
        self.counts.refused_not_now.fetch_add(1, Ordering::Relaxed);
        self.held_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(a.peer, Instant::now() + self.not_now_retry);
        true
    }

    /// A worker connected: it may take repairs again, and waiting re-migrations go out.
    fn migrator_connected(&self, peer: &str) {
        self.held_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(peer);
        self.send_waiting();
    }

    /// Sends what the repair log holds, once a migrator is connected and every request to a
    /// connected worker is answered; each table to its worker, or another one (see the
    /// module docs, Routing).
    fn send_repairs(&self, repairs: &RepairLog) {
        let Some(status) = self.channel_status() else {
            return;
        };
        let connected: Vec<&str> = status
            .peers
            .iter()
            .filter(|p| p.purpose.is_migrate())
            .map(|p| p.name.as_str())
            .collect();
        // Requests to a worker that went away wait in its lane for its return, or come back
        // as "not now" after peer_linger and go out again in a later round: they hold no
        // round of the connected workers.
        let busy = self
            .awaiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|a| connected.contains(&a.peer.as_str()));
        if connected.is_empty() || busy {
            return;
        }
        let batch = repairs.take();
        let mut failures = batch.failures;
        for (table, count) in batch.tables {
            let (mine, rest): (Vec<_>, Vec<_>) = failures
                .into_iter()
                .partition(|f| f.table.as_ref() == Some(&table));
            failures = rest;
            self.request(repairs, table, count, mine, batch.upto);
        }
    }

    /// The messages for `count` failures of `table`, of which `failures` are still listed;
    /// `upto`: the last seq given out when they were taken.
    fn request(
        &self,
        repairs: &RepairLog,
        table: Arc<str>,
        count: u64,
        failures: Vec<TargetWriteFailure>,
        upto: u64,
    ) {
        let Some(name) = migration::table_name(&table).filter(|_| &*table != UNKNOWN_TABLE) else {
            // A write over several tables (or past the per-table bound): nothing to name.
            self.counts.unrepairable.fetch_add(count, Ordering::Relaxed);
            repairs.settle(&table, count);
            repairs.settled_table(&table, upto);
            return;
        };
        let Some(peer) = self.route(&name, Take::Repair) else {
            // Every connected worker is held: the next round tries again.
            repairs.restore(&table, count, failures);
            return;
        };
        let (keyed, mut keyless_listed): (Vec<_>, Vec<_>) =
            failures.into_iter().partition(|f| f.key.is_some());
        let mut keys = Vec::new();
        for f in &keyed {
            if let Some(k) = &f.key
                && !keys.contains(k)
            {
                keys.push(k.clone());
            }
        }
        let keyless = count - (keyed.len() as u64).min(count);
        let n_keys = keys.len() as u64;
        // Each message with the failures it settles.
        let mut keyed = keyed;
        let mut messages: Vec<(Message, Vec<TargetWriteFailure>)> =
            Message::repair_batches(&name, keys, MAX_FRAME)
                .into_iter()
                .map(|m| {
                    let listed = match &m {
                        Message::RepairPartitions { partitions, .. } => {
                            let named: HashSet<&PartitionKey> = partitions.iter().collect();
                            let (mine, rest) = std::mem::take(&mut keyed)
                                .into_iter()
                                .partition(|f| f.key.as_ref().is_some_and(|k| named.contains(k)));
                            keyed = rest;
                            mine
                        }
                        _ => Vec::new(),
                    };
                    (m, listed)
                })
                .collect();
        if keyless > 0 {
            messages.push((
                Message::Remigrate {
                    table: name,
                    reason: format!(
                        "{keyless} target write failures whose partition keys the proxy could \
                         not record (QUERY text, BATCH, protocol v3, or more than the 10,000 kept)"
                    ),
                },
                std::mem::take(&mut keyless_listed),
            ));
        }
        let mut sent = Vec::with_capacity(messages.len());
        let mut left = count;
        let mut messages = messages.into_iter();
        while let Some((message, listed)) = messages.next() {
            let remigrate = matches!(message, Message::Remigrate { .. });
            let failures = if remigrate {
                keyless
            } else {
                listed.len() as u64
            };
            match self.send_to(&peer, message) {
                Ok(id) => {
                    let failures = failures.min(left);
                    left -= failures;
                    sent.push(Awaiting {
                        id,
                        peer: peer.clone(),
                        table: table.clone(),
                        failures,
                        listed,
                        upto: remigrate.then_some(upto),
                    });
                }
                Err(e) => {
                    tracing::warn!(%table, error = %e, "cannot send a repair request; kept for later");
                    // Sent parts are repeated next time: a repair is safe to run twice.
                    let listed = sent
                        .into_iter()
                        .flat_map(|a| a.listed)
                        .chain(listed)
                        .chain(messages.flat_map(|(_, l)| l));
                    repairs.restore(&table, count, listed.collect());
                    return;
                }
            }
        }
        self.counts
            .partitions_requested
            .fetch_add(n_keys, Ordering::Relaxed);
        if keyless > 0 {
            self.counts
                .remigrations_requested
                .fetch_add(1, Ordering::Relaxed);
        }
        if let Some(last) = sent.last_mut() {
            // Whatever is not attributed (never, when the counts agree) goes with the last.
            last.failures += left;
        }
        self.awaiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(sent);
    }

    async fn close(&self) {
        let channel = self
            .channel
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(c) = channel {
            c.close().await;
        }
    }
}

async fn run(
    link: Arc<UpdateLink>,
    mut events: Events,
    migration: Arc<Migration>,
    repairs: Arc<RepairLog>,
    gauges: MigrationFamilies,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(REPAIR_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => handle(&link, event, &migration, &repairs, &gauges),
                None => break,
            },
            _ = tick.tick() => {
                link.settle(&repairs);
                link.send_repairs(&repairs);
            }
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    gauges.set_connected(0);
    let waiting = link.status().remigrations_waiting;
    let pending: Vec<(String, u64)> = repairs
        .tables()
        .into_iter()
        .filter(|(_, c)| c.pending > 0)
        .map(|(t, c)| (t.to_string(), c.pending))
        .collect();
    match repairs.journal() {
        Some(journal) if !waiting.is_empty() || !pending.is_empty() => tracing::info!(
            journal = %journal.path().display(),
            remigrations_waiting = waiting.len(),
            repairs_pending = pending.iter().map(|(_, n)| n).sum::<u64>(),
            "stopping; the repair journal keeps what the migrator has not acknowledged for the \
             next start"
        ),
        Some(_) => {}
        None => {
            if let Some(lost) = unfinished(&waiting, &pending) {
                tracing::warn!("{lost}");
            }
        }
    }
    link.close().await;
}

/// Tables named in a shutdown warning, at most.
const MAX_NAMED: usize = 20;

/// What a stopping proxy without a repair journal has not handed to a migrator, which it
/// keeps only in memory (see docs/architecture.md, "What a proxy restart forgets"); `None`
/// when nothing.
fn unfinished(waiting: &[String], pending: &[(String, u64)]) -> Option<String> {
    if waiting.is_empty() && pending.is_empty() {
        return None;
    }
    let names = |all: Vec<String>| {
        let more = all.len().saturating_sub(MAX_NAMED);
        let mut text = all
            .into_iter()
            .take(MAX_NAMED)
            .collect::<Vec<_>>()
            .join(", ");
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
        text
    };
    let mut parts = Vec::new();
    if !waiting.is_empty() {
        parts.push(format!(
            "re-migrations waiting for a migrator: {}",
            names(waiting.to_vec())
        ));
    }
    if !pending.is_empty() {
        let failures: u64 = pending.iter().map(|(_, n)| n).sum();
        parts.push(format!(
            "{failures} target write failures not repaired: {}",
            names(pending.iter().map(|(t, n)| format!("{t} ({n})")).collect())
        ));
    }
    Some(format!(
        "stopping with work for the migrator that only this process knew of ({}); run `ferry \
         validate --repair` on these tables before the cutover",
        parts.join("; ")
    ))
}

fn handle(
    link: &UpdateLink,
    event: Event,
    migration: &Migration,
    repairs: &RepairLog,
    gauges: &MigrationFamilies,
) {
    match event {
        Event::Message(delivery)
            if !delivery.peer().purpose.is_migrate()
                && !matches!(delivery.message(), Message::TableValidated { .. }) =>
        {
            // A validate run reporting a job would overwrite the serving migrator's.
            let reason = format!(
                "{} is reported by the migrate peer; a {} peer reports only table_validated",
                delivery.message().kind(),
                delivery.peer().purpose
            );
            tracing::info!(peer = %delivery.peer(), %reason, "Update: refused");
            delivery.nack(reason);
        }
        Event::Message(delivery) => {
            let peer = delivery.peer().clone();
            if peer.purpose.is_migrate() {
                link.own(&peer.name, delivery.message());
            }
            match migration.apply(&peer.name, delivery.message()) {
                Ok(()) => {
                    tracing::debug!(kind = delivery.message().kind(), "Update: applied");
                    delivery.ack();
                }
                Err(reason) => {
                    tracing::info!(kind = delivery.message().kind(), %reason, "Update: refused");
                    delivery.nack(reason);
                }
            }
        }
        Event::Connected(peer) if peer.purpose == Purpose::Migrate => {
            // The lane has its peer before the event: it is counted (at least 1).
            gauges.set_connected(link.migrators_connected().max(1));
            migration.connected(&peer.name);
            tracing::info!(%peer, "migrator connected over the Update channel");
            link.migrator_connected(&peer.name);
        }
        Event::Connected(peer) => {
            tracing::info!(%peer, "{} peer connected over the Update channel", peer.purpose);
        }
        Event::Disconnected { peer, reason } => {
            if peer.purpose == Purpose::Migrate {
                // Another worker may still be connected.
                gauges.set_connected(link.migrators_connected());
            }
            tracing::info!(%peer, %reason, "{} peer disconnected from the Update channel", peer.purpose);
        }
        Event::Refused { reason, by_peer } => {
            // A migrator of an incompatible build, or a second one: the operator must act.
            tracing::warn!(%reason, by_peer, "Update channel handshake refused");
        }
        Event::Nacked {
            id,
            message,
            reason,
            refusal,
            peer,
        } => {
            match (message, refusal) {
                // A repair's (its keys, or its table when keys are missing): back to the log.
                (message, Refusal::NotNow) if link.not_now(repairs, id) => {
                    tracing::info!(id, kind = message.kind(), %reason, "the migrator cannot repair now; kept pending for another migrator or a retry");
                }
                (Message::Remigrate { table, reason: why }, Refusal::NotNow) => {
                    tracing::info!(id, %table, migrator = %peer, %reason, "the migrator cannot re-migrate the table now");
                    link.remigration_refused(id, &peer, table, why);
                }
                (message, refusal) => {
                    if matches!(message, Message::RepairPartitions { .. }) {
                        link.counts.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::warn!(id, kind = message.kind(), %reason, %refusal, "the migrator refused a request; dropped");
                }
            }
            link.nacks_handled.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopping_proxy_names_what_it_forgets() {
        assert_eq!(unfinished(&[], &[]), None);
        assert_eq!(
            unfinished(&["ks.t".into()], &[("ks.u".into(), 3), ("ks.v".into(), 1)]).as_deref(),
            Some(
                "stopping with work for the migrator that only this process knew of \
                 (re-migrations waiting for a migrator: ks.t; 4 target write failures not \
                 repaired: ks.u (3), ks.v (1)); run `ferry validate --repair` on these tables \
                 before the cutover"
            )
        );
        let many: Vec<String> = (0..MAX_NAMED + 2).map(|i| format!("ks.t{i}")).collect();
        let text = unfinished(&many, &[]).unwrap();
        assert!(text.contains("ks.t19 and 2 more);"), "{text}");
        assert!(!text.contains("ks.t20"), "{text}");
    }
}

//! The migrator's end of the Update channel (`ferry_update`): one channel per configured
//! proxy, the job's events reported to every proxy, and the proxies' requests carried out.
//!
//! ```text
//!  Link::start(update.proxies) ─► Channel::dial per proxy (reconnects, queues while away)
//!  job events ─► Reporter ─► JobStarted, TableStarted, TableProgress (≤ 4/s per table),
//!                            TableBackfilled, TableFailed, JobFinished ─► every proxy
//!                            └─► Reports: the job's and each table's latest, kept
//!  Connected to a proxy instance other than the one last reported to (a restarted proxy)
//!     ─► Reports::replay ─► Replayed{report} each ─► that proxy
//!  ferry validate ─► Link::validated ─► TableValidated per compared table ─► every proxy
//!  each proxy's Events ─► requests (bounded) ─► Responder:
//!     Remigrate{t}        ─► running job: JobControl::remigrate (appended, fresh checkpoint)
//!                            no job, --serve: a new job for t, fresh ─► ack
//!                            no job otherwise, t not in the job ─► nack(not_now, reason)
//!                            t not on origin ─► nack(never, reason)
//!     ReorderTables{ts}   ─► running job: JobControl::reorder ─► ack (no job: ack, logged)
//!     RepairPartitions    ─► (≤ MAX_REPAIRS_IN_FLIGHT at once) Repairer: each key's
//!                            literals parsed for its columns' types (`key`), bound to a
//!                            prepared SELECT, origin's rows rewritten on target ─► ack, or
//!                            nack(reason naming the key and the column)
//! ```
//!
//! # Layout
//! - [`Link`]: the channels, [`Link::reporter`], [`Link::answer`], [`Link::validated`],
//!   [`Link::finish`].
//! - `Reporter`: the [`Observer`] turning the job's events into messages.
//! - `Reports` and `Replay`: the latest reports, replayed to a proxy process that did not
//!   get them.
//! - `Responder`: the requests, answered with `Ack` / `Nack{reason}`.
//! - [`Repairer`] and [`RepairError`]: partitions read from origin and written on target.
//!
//! # Decisions
//! - **Re-migration** copies the table again from a fresh checkpoint (its plan kept), after
//!   its current run if it is running: safe, because every backfilled cell keeps its origin
//!   writetime and TTL, so nothing newer on target is overwritten. Only a table the running
//!   job selected is accepted; with `--serve` and no job running, a job for that one table
//!   starts. A one-shot `ferry migrate` (or `ferry validate`) with no job to add it to
//!   refuses it as "not now" ([`Refusal::NotNow`]): the proxy keeps it for the next
//!   migrator. A table origin does not have is refused for good ([`Refusal::Never`]).
//! - **Repair** reuses the backfill's pieces: the scan's outputs (`writetime`, `ttl` of each
//!   cell) for one partition, the same split into (writetime, TTL) groups and the same
//!   writer (lists by their rule). Keys are bound, never spliced into the statement
//!   ([`crate::key`]): a literal that is not a value of its column's type is refused. It
//!   needs no running job (its own sessions, opened on the
//!   first request). What it cannot do: a write that failed on target was a *delete* leaves
//!   target's old cells, since origin returns no tombstones to copy — `ferry validate
//!   --repair --delete-extra` finds those. Counter tables are refused (a counter cell cannot
//!   be written again; `ferry validate --repair --counters` applies differences).
//! - **Answers**: a request is acknowledged once carried out (a repair: every partition
//!   rewritten), refused with the reason otherwise. The channel delivers a proxy's next
//!   message after the answer, so at most [`MAX_REPAIRS_IN_FLIGHT`] repairs (one per proxy
//!   at most) run at once, each partition in turn.
//! - **Replays.** A proxy keeps the migration state in memory; a worker reports each change
//!   once. So the worker keeps its latest reports (`Reports`, at most
//!   [`MAX_REPLAYED_TABLES`] tables) and remembers, per proxy, the instance id of the process
//!   it last reported to; connected to another process, it replays them wrapped in
//!   [`Message::Replayed`], which the proxy applies only where they move a table forward (a
//!   plain `TableBackfilled` would undo a validation the new process got meanwhile). The
//!   same process after a blip gets nothing again: the channel resends what it did not
//!   acknowledge, and it has applied the rest. The replay is queued under the lock that
//!   sends reports, so no newer report of this worker lands before it. The first process a
//!   worker meets gets none: the channel's queue holds every report since the start.
//! - **Never blocking the job**: reports are queued without waiting; a full queue
//!   ([`ferry_update::SendError::QueueFull`]) is logged and the message dropped (progress
//!   is superseded by later progress anyway).
//! - **Exit** ([`Link::finish`]): repairs in progress get [`REPAIR_GRACE`], queued reports
//!   [`FLUSH_GRACE`] to be answered; requests arriving later wait in the proxy's queue for
//!   the next migrator. A request that reaches a migrator already exiting is refused with
//!   that reason.
//! - **Peer name and purpose.** A migrator process is `update.name`, [`CHANNEL_NAME`] by
//!   default; its Hello names its [`Purpose`]: `ferry migrate` is `migrate`, `ferry
//!   validate` is `validate`. A proxy keeps a lane per `migrate` name and one for
//!   `validate`, so a validate run connects beside `ferry migrate --serve` without
//!   displacing it, and the workers of one job (each its own `update.name`) report side by
//!   side; a table's requests go to the worker that reported it. Two workers under one name
//!   take turns on the proxy (the newer connection replaces the older). An older proxy
//!   keeps one `migrate` connection: there a second name is refused until the first exits.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// What a migrator process tells the proxies it is, for [`Link::start`].
pub use ferry_update::Purpose;
use ferry_update::{
    Channel, ChannelConfig, ClientTls, Delivery, Event as ChannelEvent, Events, Message,
    PartitionKey, Refusal, Role, SendError,
};
use scylla::client::session::Session;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::prepared::PreparedStatement;
use tokio::sync::{OnceCell, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::api::Jobs;
use crate::config::MigratorConfig;
use crate::control::{ControlError, JobControl};
use crate::job::{JobSpec, TableSelector};
use crate::key::{Encoded, KeyColumns};
use crate::progress::{Event, Observer, TableName};
use crate::validate::ValidationReport;
use crate::writer::TableWriter;

/// How this migrator names itself to the proxies.
pub const CHANNEL_NAME: &str = "ferry-migrator";
/// At most this often a table's progress is reported (the channel also coalesces).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// Repair requests carried out at once.
pub const MAX_REPAIRS_IN_FLIGHT: usize = 4;
/// How long an exiting migrator waits for repairs in progress.
pub const REPAIR_GRACE: Duration = Duration::from_secs(5);
/// How long an exiting migrator waits for its reports to be answered.
pub const FLUSH_GRACE: Duration = Duration::from_secs(5);
/// Requests received and not yet taken by the responder; a full buffer pauses reading.
const REQUESTS_CAPACITY: usize = 64;
/// Rows per page when reading a partition to repair.
const REPAIR_PAGE_SIZE: i32 = 1000;
/// Tables whose latest reports are kept for a replay: a proxy tracks no more (its
/// `MAX_TRACKED_TABLES`), and a `--serve` worker's tables accumulate over its jobs.
pub const MAX_REPLAYED_TABLES: usize = 10_000;

/// Why the channels could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    #[error("update.tls: {0}")]
    Tls(#[from] ferry_update::TlsError),
    #[error("cannot start the Update channel to {proxy}: {source}")]
    Start {
        proxy: String,
        source: ferry_update::StartError,
    },
}

fn wire(t: &TableName) -> ferry_update::TableName {
    ferry_update::TableName::new(&t.keyspace, &t.table)
}

fn local(t: &ferry_update::TableName) -> TableName {
    TableName::new(&t.keyspace, &t.table)
}

/// A request from one proxy.
type Request = (Arc<str>, Delivery);

/// The channels to the configured proxies, and what answers their requests.
pub struct Link {
    /// Shared so [`Link::flushed`] can wait without holding the lock.
    channels: Mutex<Vec<(Arc<str>, Arc<Channel>)>>,
    /// What the job reported, replayed to a proxy process that did not get it. Its lock is
    /// held while a report goes out and while a replay is queued, so a replay never lands
    /// behind a newer report of the same worker.
    reports: Arc<Mutex<Reports>>,
    /// The proxies' requests until [`Link::answer`] starts answering them.
    requests: Mutex<Option<mpsc::Receiver<Request>>>,
    responder: Arc<Responder>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.channels.lock().map_or(0, |c| c.len());
        write!(f, "Link({n} proxies)")
    }
}

impl Link {
    /// One channel per `config.update.proxies` (none configured: `None`), dialing until
    /// [`Link::finish`]; requests wait for [`Link::answer`]. `purpose`: what this process
    /// tells the proxies it is (`ferry validate`: [`Purpose::Validate`], which a proxy keeps
    /// beside its migrator and sends no requests). `serve`: a re-migration with no job
    /// running starts one. `observer` hears of repairs (metrics, logs). Needs a Tokio runtime.
    pub fn start(
        config: &MigratorConfig,
        purpose: Purpose,
        serve: bool,
        observer: Arc<dyn Observer>,
    ) -> Result<Option<Arc<Self>>, UpdateError> {
        let settings = &config.update;
        if settings.proxies.is_empty() {
            return Ok(None);
        }
        let tls = settings.tls.as_ref().map(ClientTls::load).transpose()?;
        let (tx, rx) = mpsc::channel(REQUESTS_CAPACITY);
        let reports = Arc::new(Mutex::new(Reports::default()));
        let mut channels = Vec::new();
        for addr in &settings.proxies {
            let name = settings.name.as_deref().unwrap_or(CHANNEL_NAME);
            let mut config = ChannelConfig::new(Role::Migrator, name);
            config.purpose = purpose;
            let (channel, events) =
                Channel::dial(config, addr.clone(), tls.clone()).map_err(|source| {
                    UpdateError::Start {
                        proxy: addr.clone(),
                        source,
                    }
                })?;
            let addr: Arc<str> = Arc::from(addr.as_str());
            let channel = Arc::new(channel);
            let replay = Replay {
                channel: Arc::downgrade(&channel),
                reports: reports.clone(),
            };
            tokio::spawn(forward(addr.clone(), events, tx.clone(), replay));
            channels.push((addr, channel));
        }
        tracing::info!(proxies = %settings.proxies.join(","), "Update channel dialing");
        let responder = Arc::new(Responder {
            jobs: OnceLock::new(),
            base: config.clone(),
            serve,
            repairer: Arc::new(Repairer::new(config.job_spec(), observer)),
            repairs: Arc::new(Semaphore::new(MAX_REPAIRS_IN_FLIGHT)),
        });
        Ok(Some(Arc::new(Self {
            channels: Mutex::new(channels),
            reports,
            requests: Mutex::new(Some(rx)),
            responder,
            task: Mutex::new(None),
        })))
    }

    /// Sends to every proxy; never waits (a full queue is logged).
    pub fn send(&self, message: &Message) {
        let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        for (addr, channel) in channels.iter() {
            match channel.send(message.clone()) {
                Ok(_) => {}
                Err(e @ SendError::QueueFull { .. }) => {
                    tracing::warn!(proxy = %addr, error = %e, "Update queue full; message dropped");
                }
                Err(e) => tracing::warn!(proxy = %addr, error = %e, "Update message not sent"),
            }
        }
    }

    /// A job's report, sent to every proxy and kept for a replay (see [`Reports`]).
    fn report(&self, message: Message) {
        let mut reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        reports.record(&message);
        self.send(&message);
    }

    /// The observer that reports a job's events to the proxies; `job` names the job.
    pub fn reporter(self: &Arc<Self>, job: impl Into<String>) -> Arc<dyn Observer> {
        Arc::new(Reporter {
            link: self.clone(),
            job: job.into(),
            tables: Mutex::new(HashMap::new()),
        })
    }

    /// Starts answering the proxies' requests; re-migrations go to `jobs` (the running one,
    /// or a new one with `serve`), and are refused without. Once; later calls do nothing.
    pub fn answer(&self, jobs: Option<Arc<Jobs>>) {
        let Some(rx) = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        if let Some(jobs) = jobs {
            let _ = self.responder.jobs.set(jobs);
        }
        let task = tokio::spawn(self.responder.clone().run(rx));
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    /// `ferry validate`'s results: `TableValidated` for every table compared completely
    /// (mismatches: the keys still different at the end).
    pub fn validated(&self, report: &ValidationReport) {
        for t in &report.tables {
            if let Some(e) = &t.error {
                tracing::info!(table = %t.table, error = %e, "not reported as validated: incomplete");
                continue;
            }
            self.send(&Message::TableValidated {
                table: wire(&t.table),
                rows_checked: t.rows,
                mismatches: t.remaining,
            });
        }
    }

    /// Returns once every proxy has answered every message sent so far (a cutover check that
    /// follows [`Link::validated`] waits for this; an unreachable proxy makes it wait).
    pub async fn flushed(&self) {
        let channels: Vec<Arc<Channel>> = self
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        for c in &channels {
            c.flushed().await;
        }
    }

    /// Before exiting: repairs in progress get `repair_grace`, queued messages
    /// `flush_grace` to be answered; then the channels close (requests not received yet
    /// stay queued on the proxies for the next migrator).
    pub async fn finish(&self, repair_grace: Duration, flush_grace: Duration) {
        let all = u32::try_from(MAX_REPAIRS_IN_FLIGHT).unwrap_or(u32::MAX);
        match tokio::time::timeout(repair_grace, self.responder.repairs.acquire_many(all)).await {
            Ok(_) => {}
            Err(_) => tracing::warn!(
                waited = ?repair_grace,
                "repairs still in progress at exit; the proxies send them again to the next migrator"
            ),
        }
        let channels: Vec<(Arc<str>, Arc<Channel>)> =
            std::mem::take(&mut *self.channels.lock().unwrap_or_else(|p| p.into_inner()));
        let flushed = tokio::time::timeout(flush_grace, async {
            for (_, c) in &channels {
                c.flushed().await;
            }
        })
        .await;
        if flushed.is_err() {
            tracing::warn!(waited = ?flush_grace, "Update messages not answered at exit (a proxy is unreachable)");
        }
        for (_, c) in channels {
            // Shared only while a `flushed` runs; dropping closes the channel too.
            if let Ok(c) = Arc::try_unwrap(c) {
                c.close().await;
            }
        }
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }
}

/// What a worker reported, for a proxy process that did not get it: the latest job's
/// `JobStarted` and `JobFinished`, and per table its latest phase (`TableStarted`,
/// `TableBackfilled` or `TableFailed`) and its latest progress since it started.
///
/// Why a replay is needed: a proxy keeps the migration state in memory only, and a worker
/// reports each change once. When a worker connects to a proxy instance other than the one
/// it last reported to (a restarted proxy, a rolling update), [`Reports::replay`] goes to that
/// proxy, each report wrapped in [`Message::Replayed`] so the proxy moves no table backwards
/// with it. The same instance after a network blip gets nothing again: the channel already
/// sends it every report it did not acknowledge.
#[derive(Debug, Default)]
struct Reports {
    job: Option<Message>,
    finished: Option<Message>,
    /// By table, at most [`MAX_REPLAYED_TABLES`].
    tables: BTreeMap<ferry_update::TableName, TableReports>,
    /// Reports of tables past the bound, not kept (logged once).
    untracked: u64,
}

#[derive(Debug, Default)]
struct TableReports {
    phase: Option<Message>,
    progress: Option<Message>,
}

impl Reports {
    fn record(&mut self, message: &Message) {
        let table = match message {
            Message::JobStarted { .. } => {
                self.job = Some(message.clone());
                self.finished = None;
                return;
            }
            Message::JobFinished { .. } => {
                self.finished = Some(message.clone());
                return;
            }
            Message::TableStarted { table }
            | Message::TableProgress { table, .. }
            | Message::TableBackfilled { table, .. }
            | Message::TableFailed { table, .. } => table,
            _ => return,
        };
        if !self.tables.contains_key(table) && self.tables.len() >= MAX_REPLAYED_TABLES {
            if self.untracked == 0 {
                tracing::warn!(%table, "more than {MAX_REPLAYED_TABLES} tables reported; a restarted proxy learns of the first ones only");
            }
            self.untracked += 1;
            return;
        }
        let entry = self.tables.entry(table.clone()).or_default();
        match message {
            Message::TableProgress { .. } => entry.progress = Some(message.clone()),
            Message::TableStarted { .. } => {
                // A new run: the progress of the one before means nothing now.
                entry.progress = None;
                entry.phase = Some(message.clone());
            }
            _ => entry.phase = Some(message.clone()),
        }
    }

    /// Everything to tell a proxy that knows nothing, each wrapped in [`Message::Replayed`]:
    /// the job, then per table its progress before the phase that ended it (a backfilled
    /// table's ranges, then its end) or, while it runs, its progress alone (the started
    /// message when there is none yet), then the job's end.
    fn replay(&self) -> Vec<Message> {
        let mut out: Vec<Message> = self.job.iter().cloned().collect();
        for t in self.tables.values() {
            match (&t.phase, &t.progress) {
                (Some(Message::TableStarted { .. }), Some(progress)) => {
                    out.push(progress.clone());
                }
                (phase, progress) => out.extend(progress.iter().chain(phase).cloned()),
            }
        }
        out.extend(self.finished.iter().cloned());
        out.into_iter().map(Message::replay).collect()
    }
}

/// How one proxy's forwarder reaches the reports and the channel for a replay. Weak: the
/// channel closes when [`Link::finish`] drops it, which ends the forwarder.
struct Replay {
    channel: Weak<Channel>,
    reports: Arc<Mutex<Reports>>,
}

impl Replay {
    /// Queues the replay for the proxy; the number of reports sent again.
    fn send(&self, addr: &str) -> usize {
        let Some(channel) = self.channel.upgrade() else {
            return 0;
        };
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        let messages = reports.replay();
        let n = messages.len();
        for m in messages {
            if let Err(e) = channel.send(m) {
                tracing::warn!(proxy = %addr, error = %e, "report not sent again");
            }
        }
        n
    }
}

/// Logs one proxy's connection changes, replays the reports to a proxy process that did not
/// get them, and hands its requests to the responder.
async fn forward(addr: Arc<str>, mut events: Events, tx: mpsc::Sender<Request>, replay: Replay) {
    // The proxy process this worker last reported to.
    let mut reported_to: Option<u64> = None;
    while let Some(event) = events.recv().await {
        match event {
            ChannelEvent::Connected(peer) => {
                tracing::info!(proxy = %addr, %peer, "Update channel connected");
                let new_process = reported_to.is_some_and(|i| i != peer.instance);
                reported_to = Some(peer.instance);
                if new_process {
                    let n = replay.send(&addr);
                    tracing::info!(proxy = %addr, %peer, reports = n, "the proxy is another process than the one last reported to (restarted); its job and tables reported again");
                }
            }
            ChannelEvent::Disconnected { reason, .. } => {
                tracing::info!(proxy = %addr, %reason, "Update channel disconnected");
            }
            ChannelEvent::Refused { reason, by_peer } => {
                tracing::warn!(proxy = %addr, %reason, by_peer, "Update channel refused");
            }
            ChannelEvent::Nacked {
                message, reason, ..
            } => {
                tracing::warn!(proxy = %addr, kind = message.kind(), %reason, "a proxy refused a report")
            }
            ChannelEvent::Message(d) => {
                if let Err(mpsc::error::SendError((_, d))) = tx.send((addr.clone(), d)).await {
                    d.refuse("the migrator is exiting", Refusal::NotNow);
                }
            }
            _ => {}
        }
    }
}

/// Progress of one table as last counted.
#[derive(Debug, Default)]
struct Tally {
    done: u32,
    total: u32,
    rows: u64,
    sent: Option<Instant>,
}

/// Turns the job's events into reports to every proxy.
struct Reporter {
    link: Arc<Link>,
    job: String,
    tables: Mutex<HashMap<TableName, Tally>>,
}

impl Reporter {
    /// Progress, unless the table's last was sent less than [`PROGRESS_INTERVAL`] ago
    /// (`force`: a planned table's first).
    fn progress(&self, table: &TableName, force: bool, f: impl FnOnce(&mut Tally)) {
        let message = {
            let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
            let tally = tables.entry(table.clone()).or_default();
            f(tally);
            let now = Instant::now();
            if !force && tally.sent.is_some_and(|s| now - s < PROGRESS_INTERVAL) {
                return;
            }
            tally.sent = Some(now);
            Message::TableProgress {
                table: wire(table),
                ranges_done: tally.done,
                ranges_total: tally.total,
                rows: tally.rows,
            }
        };
        self.link.report(message);
    }
}

impl Observer for Reporter {
    fn event(&self, event: &Event) {
        use crate::job::Phase;
        let message = match event {
            Event::JobPlanned { tables } => Message::JobStarted {
                job: self.job.clone(),
                tables: tables.iter().map(wire).collect(),
            },
            Event::Phase { table, phase } => match phase {
                Phase::Schema => {
                    self.tables
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(table.clone(), Tally::default());
                    Message::TableStarted { table: wire(table) }
                }
                Phase::Done => {
                    let rows = self
                        .tables
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(table)
                        .map_or(0, |t| t.rows);
                    self.progress(table, true, |_| {});
                    Message::TableBackfilled {
                        table: wire(table),
                        rows,
                    }
                }
                Phase::Failed(reason) => Message::TableFailed {
                    table: wire(table),
                    reason: reason.clone(),
                },
                Phase::Cancelled => Message::TableFailed {
                    table: wire(table),
                    reason: "cancelled; a rerun of the job resumes it".to_owned(),
                },
                _ => return,
            },
            Event::RangesPlanned {
                table,
                total,
                already_done,
            } => {
                self.progress(table, true, |t| {
                    t.total = *total;
                    t.done = *already_done;
                });
                return;
            }
            Event::Written { table, rows, .. } => {
                self.progress(table, false, |t| t.rows += rows);
                return;
            }
            Event::RangeDone { table, .. } => {
                self.progress(table, false, |t| t.done += 1);
                return;
            }
            Event::JobFinished {
                tables_done,
                tables_failed,
            } => Message::JobFinished {
                job: self.job.clone(),
                tables_done: *tables_done,
                tables_failed: *tables_failed,
            },
            _ => return,
        };
        self.link.report(message);
    }
}

/// Answers the proxies' requests.
struct Responder {
    jobs: OnceLock<Arc<Jobs>>,
    /// The process's configuration: a job started for a re-migration is this with one table.
    base: MigratorConfig,
    serve: bool,
    repairer: Arc<Repairer>,
    repairs: Arc<Semaphore>,
}

impl Responder {
    async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Request>) {
        while let Some((proxy, delivery)) = rx.recv().await {
            self.handle(&proxy, delivery).await;
        }
    }

    async fn handle(&self, proxy: &str, d: Delivery) {
        match d.message().clone() {
            Message::Remigrate { table, reason } => {
                let table = local(&table);
                let outcome = match self.repairer.origin_has(&table).await {
                    Ok(true) => self.remigrate(&table),
                    Ok(false) => Err((format!("{table} does not exist on origin"), Refusal::Never)),
                    // Origin unreachable from here: maybe not from the next migrator.
                    Err(e) => Err((e.to_string(), Refusal::NotNow)),
                };
                match outcome {
                    Ok(how) => {
                        tracing::info!(%proxy, %table, %reason, "re-migration {how}");
                        d.ack();
                    }
                    Err((why, refusal)) => {
                        tracing::warn!(%proxy, %table, %reason, %why, %refusal, "re-migration refused");
                        d.refuse(why, refusal);
                    }
                }
            }
            Message::ReorderTables { remaining } => {
                let remaining: Vec<TableName> = remaining.iter().map(local).collect();
                match self.jobs.get().and_then(|j| j.running_control()) {
                    Some(c) => {
                        let named = c.reorder(&remaining);
                        tracing::info!(%proxy, named, order = ?c.pending(), "tables reordered");
                    }
                    None => {
                        tracing::info!(%proxy, "reorder asked with no job running; nothing to do")
                    }
                }
                d.ack();
            }
            Message::RepairPartitions { table, partitions } => {
                let Ok(permit) = self.repairs.clone().acquire_owned().await else {
                    d.refuse("the migrator is exiting", Refusal::NotNow);
                    return;
                };
                let repairer = self.repairer.clone();
                let proxy = proxy.to_owned();
                tokio::spawn(async move {
                    let table = local(&table);
                    match repairer.repair(&table, &partitions).await {
                        Ok(n) => {
                            tracing::info!(%proxy, %table, partitions = n, "repair done");
                            d.ack();
                        }
                        Err(e) => {
                            tracing::warn!(%proxy, %table, error = %e, "repair failed");
                            let refusal = e.refusal();
                            d.refuse(e.to_string(), refusal);
                        }
                    }
                    drop(permit);
                });
            }
            other => d.nack(format!(
                "{} is not a request a migrator takes",
                other.kind()
            )),
        }
    }

    /// Queues a re-migration of `table` (which origin has); how, or why not. Every refusal
    /// here is [`Refusal::NotNow`]: a `ferry migrate --serve` with no job running takes it.
    fn remigrate(&self, table: &TableName) -> Result<&'static str, (String, Refusal)> {
        let not_now = |why: String| (why, Refusal::NotNow);
        let Some(jobs) = self.jobs.get() else {
            return Err(not_now(
                "this process runs no migration jobs (ferry validate)".to_owned(),
            ));
        };
        if let Some(control) = jobs.running_control() {
            match control.remigrate(table) {
                Ok(()) => return Ok("queued in the running job"),
                // The job is ending: a new one takes it, as if none ran.
                Err(ControlError::Finished { .. }) => {}
                // Another job's table: the next job can take it.
                Err(e) => return Err(not_now(e.to_string())),
            }
        }
        if !self.serve {
            return Err(not_now(format!(
                "no job running in this one-shot ferry migrate; run `ferry migrate --tables \
                 {table}` (or keep `ferry migrate --serve` running)"
            )));
        }
        let mut config = self.base.clone();
        config.tables = vec![TableSelector::Table {
            keyspace: table.keyspace.clone(),
            table: table.table.clone(),
        }];
        config.exclude.clear();
        let control = Arc::new(JobControl::fresh(vec![table.clone()]));
        jobs.start_controlled(config.job_spec(), control)
            .map(|id| {
                tracing::info!(job = %id, %table, "job started for a re-migration");
                "started as a new job"
            })
            .map_err(|e| not_now(e.to_string()))
    }
}

/// Why a repair request failed; the proxy gets this as the `Nack` reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepairError {
    #[error("cannot connect for repairs: {0}")]
    Connect(String),
    #[error("cannot repair {table}: {error}")]
    Schema { table: TableName, error: String },
    #[error(
        "{table} is a counter table: its cells cannot be written again; run `ferry validate \
         --repair --counters`"
    )]
    Counters { table: TableName },
    #[error("{failed} of {total} partitions of {table} not repaired; first: {first}")]
    Partitions {
        table: TableName,
        /// Not repaired, `refused` included.
        failed: u64,
        /// Of those, keys that are no key of the table (they never will be).
        refused: u64,
        total: u64,
        first: String,
    },
}

impl RepairError {
    /// What the proxy should do with the request: offer it again to a migrator that can
    /// reach the clusters, or drop it (a counter table, a table target cannot take, keys
    /// that do not parse for their columns).
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::Connect(_) => Refusal::NotNow,
            Self::Partitions {
                failed, refused, ..
            } if failed > refused => Refusal::NotNow,
            Self::Schema { .. } | Self::Counters { .. } | Self::Partitions { .. } => Refusal::Never,
        }
    }
}

/// Rewrites partitions of origin on target with their writetime and TTL.
pub struct Repairer {
    spec: JobSpec,
    sessions: OnceCell<(Arc<Session>, Arc<Session>)>,
    observer: Arc<dyn Observer>,
}

impl std::fmt::Debug for Repairer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Repairer")
    }
}

impl Repairer {
    /// Connects on the first repair, to the clusters `spec` names; reports each request to
    /// `observer` ([`Event::PartitionsRepaired`]).
    pub fn new(spec: JobSpec, observer: Arc<dyn Observer>) -> Self {
        Self {
            spec,
            sessions: OnceCell::new(),
            observer,
        }
    }

    /// Sessions to origin and target, opened on first use.
    async fn sessions(&self) -> Result<(Arc<Session>, Arc<Session>), RepairError> {
        self.sessions
            .get_or_try_init(|| async {
                let o = crate::connect("origin", &self.spec.origin).await?;
                let t = crate::connect("target", &self.spec.target).await?;
                Ok::<_, crate::JobError>((Arc::new(o), Arc::new(t)))
            })
            .await
            .cloned()
            .map_err(|e| RepairError::Connect(e.to_string()))
    }

    /// Whether origin has `table`: a re-migration of a table it lacks can never succeed.
    pub async fn origin_has(&self, table: &TableName) -> Result<bool, RepairError> {
        let (origin, _) = self.sessions().await?;
        crate::schema::list_tables(&origin)
            .await
            .map(|tables| tables.contains(table))
            .map_err(|e| RepairError::Connect(e.to_string()))
    }

    /// Repairs `keys` of `table`, each partition in turn; how many were repaired (all of
    /// them, or an error naming the first failure).
    pub async fn repair(
        &self,
        table: &TableName,
        keys: &[PartitionKey],
    ) -> Result<u64, RepairError> {
        let total = keys.len() as u64;
        let report = |repaired, failed, refused| {
            self.observer.event(&Event::PartitionsRepaired {
                table: table.clone(),
                repaired,
                failed,
                refused,
            });
        };
        let (origin, target) = match self.sessions().await {
            Ok(s) => s,
            Err(e) => {
                report(0, total, 0);
                return Err(e);
            }
        };
        let def = match crate::schema::compatible_tables(&origin, &target, table).await {
            Ok(d) => d,
            Err(e) => {
                report(0, 0, total);
                return Err(RepairError::Schema {
                    table: table.clone(),
                    error: e.to_string(),
                });
            }
        };
        if def.is_counter() {
            report(0, 0, total);
            return Err(RepairError::Counters {
                table: table.clone(),
            });
        }
        let value_ids: Vec<usize> = def
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                matches!(
                    c.kind,
                    crate::schema::ColumnKind::Static | crate::schema::ColumnKind::Regular
                )
            })
            .map(|(i, _)| i)
            .collect();
        let layout = crate::scan::RowLayout {
            pk_len: def.partition_key().count(),
            ck_len: def.clustering().count(),
            values: value_ids.len(),
            counters: false,
        };
        let cql = crate::scan::partition_cql(&def);
        let mut statement = match origin.prepare(cql.as_str()).await {
            Ok(p) => p,
            Err(e) => {
                report(0, total, 0);
                return Err(RepairError::Schema {
                    table: table.clone(),
                    error: format!("{cql}: {e}"),
                });
            }
        };
        statement.set_page_size(REPAIR_PAGE_SIZE);
        let key_columns = KeyColumns::of(&statement);
        let writer = TableWriter::new(target, def, &self.spec);
        let part = Partition {
            origin: &origin,
            statement: &statement,
            writer: &writer,
            layout,
            value_ids: &value_ids,
            floor: self.spec.floor_timestamp,
        };
        let (mut repaired, mut failed, mut refused) = (0u64, 0u64, 0u64);
        let mut first = None;
        for key in keys {
            let outcome = match key_columns.bind(&key.components) {
                Err(e) => {
                    refused += 1;
                    Err(e.to_string())
                }
                Ok(values) => part.copy(values).await.inspect_err(|_| failed += 1),
            };
            match outcome {
                Ok(()) => repaired += 1,
                Err(e) => {
                    tracing::warn!(%table, %key, error = %e, "partition not repaired");
                    first.get_or_insert_with(|| format!("{key}: {e}"));
                }
            }
        }
        report(repaired, failed, refused);
        match first {
            None => Ok(repaired),
            Some(first) => Err(RepairError::Partitions {
                refused,
                table: table.clone(),
                failed: failed + refused,
                total,
                first,
            }),
        }
    }
}

/// One table's pieces for copying partitions.
struct Partition<'a> {
    origin: &'a Session,
    /// [`crate::scan::partition_cql`], prepared on origin.
    statement: &'a PreparedStatement,
    writer: &'a TableWriter,
    layout: crate::scan::RowLayout,
    value_ids: &'a [usize],
    floor: i64,
}

impl Partition<'_> {
    /// Every row of the partition keyed by `key` (bound values) on origin, written on
    /// target as the backfill writes it. A partition origin no longer has writes nothing.
    async fn copy(&self, key: Vec<Encoded>) -> Result<(), String> {
        let def = self.writer.table();
        let columns: Vec<&crate::schema::ColumnDef> =
            self.value_ids.iter().map(|&i| &def.columns[i]).collect();
        let mut paging = PagingState::start();
        let mut first_row = true;
        loop {
            let (result, next) = self
                .origin
                .execute_single_page(self.statement, &key, paging)
                .await
                .map_err(|e| format!("{}: {e}", self.statement.get_statement()))?;
            let read_at = Instant::now();
            for row in crate::writer::rows_of(result)? {
                let scanned = self.layout.split(row)?;
                let writes = crate::cells::row_writes(
                    &columns,
                    self.value_ids,
                    &scanned.cells,
                    scanned.has_row,
                    read_at.elapsed(),
                    self.floor,
                );
                self.writer
                    .write_row(&scanned.pk, &scanned.ck, &writes, first_row)
                    .await
                    .map_err(|e| e.to_string())?;
                first_row = false;
            }
            match next {
                PagingStateResponse::HasMorePages { state } => paging = state,
                PagingStateResponse::NoMorePages => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use ferry_update::Peer;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinSet;

    use super::*;
    use crate::job::Phase;
    use crate::progress::LogObserver;

    /// Long enough for anything on loopback; only a hang reaches it.
    const PATIENCE: Duration = Duration::from_secs(30);

    /// A TCP relay between the worker and a proxy: [`Relay::cut`] ends its connections (a
    /// network blip: the worker reconnects to the same proxy process), [`Relay::to`] points
    /// new ones at another proxy (a restarted one).
    struct Relay {
        addr: SocketAddr,
        target: Arc<Mutex<SocketAddr>>,
        links: Arc<tokio::sync::Mutex<JoinSet<()>>>,
        accept: JoinHandle<()>,
    }

    impl Relay {
        async fn start(ip: &str, target: SocketAddr) -> Self {
            let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let target = Arc::new(Mutex::new(target));
            let links = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
            let (t, l) = (target.clone(), links.clone());
            let accept = tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    let to = *t.lock().unwrap();
                    l.lock().await.spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(to).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            });
            Self {
                addr,
                target,
                links,
                accept,
            }
        }

        async fn cut(&self) {
            self.links.lock().await.abort_all();
        }

        async fn to(&self, target: SocketAddr) {
            *self.target.lock().unwrap() = target;
            self.cut().await;
        }
    }

    /// A proxy end of the channel.
    async fn proxy(ip: &str) -> (Channel, Events) {
        let config = ChannelConfig::new(Role::Proxy, "proxy");
        Channel::listen(config, format!("{ip}:0").parse().unwrap(), None)
            .await
            .unwrap()
    }

    async fn next(events: &mut Events) -> ChannelEvent {
        tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("an event in time")
            .expect("the channel is open")
    }

    async fn connected(events: &mut Events) -> Peer {
        loop {
            if let ChannelEvent::Connected(peer) = next(events).await {
                return peer;
            }
        }
    }

    /// The reports a proxy receives (acknowledged) until `last` is among them.
    async fn reports_until(events: &mut Events, last: &Message) -> Vec<Message> {
        let mut got = Vec::new();
        while got.last() != Some(last) {
            if let ChannelEvent::Message(d) = next(events).await {
                got.push(d.message().clone());
                d.ack();
            }
        }
        got
    }

    fn t(name: &str) -> TableName {
        TableName::new("ks", name)
    }

    /// A worker reports to a proxy behind a relay; after a network blip it reconnects to the
    /// same proxy process and reports nothing again (the channel redelivers what was not
    /// acknowledged); connected to another process (a restarted proxy), it reports its job
    /// and each table's latest progress and phase again, as replays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reports_are_replayed_to_a_new_proxy_process_only() {
        let (first, mut fev) = proxy("127.0.221.1").await;
        let relay = Relay::start("127.0.221.2", first.local_addr().unwrap()).await;
        let mut config = MigratorConfig::default();
        config.update.proxies = vec![relay.addr.to_string()];
        config.update.name = Some("worker-0".into());
        let link = Link::start(&config, Purpose::Migrate, false, Arc::new(LogObserver))
            .unwrap()
            .unwrap();
        link.answer(None);
        let reporter = link.reporter("shop");
        let phase = |table: &str, phase: Phase| Event::Phase {
            table: t(table),
            phase,
        };
        for e in [
            Event::JobPlanned {
                tables: vec![t("a"), t("b")],
            },
            phase("a", Phase::Schema),
            Event::RangesPlanned {
                table: t("a"),
                total: 2,
                already_done: 0,
            },
            Event::Written {
                table: t("a"),
                rows: 7,
                bytes: 70,
            },
            Event::RangeDone {
                table: t("a"),
                range: 0,
            },
            Event::RangeDone {
                table: t("a"),
                range: 1,
            },
            phase("a", Phase::Done),
            phase("b", Phase::Schema),
            Event::RangesPlanned {
                table: t("b"),
                total: 3,
                already_done: 1,
            },
        ] {
            reporter.event(&e);
        }
        let b_progress = Message::TableProgress {
            table: wire(&t("b")),
            ranges_done: 1,
            ranges_total: 3,
            rows: 0,
        };
        connected(&mut fev).await;
        let live = reports_until(&mut fev, &b_progress).await;
        assert_eq!(live[0].kind(), "job_started", "{live:?}");
        assert!(
            live.iter().all(|m| m.kind() != "replayed"),
            "the first process gets live reports: {live:?}"
        );

        // A blip: the same process again. A request it sends after the reconnect is
        // answered after the worker handled the reconnect, so a replay would come before
        // the next report.
        relay.cut().await;
        connected(&mut fev).await;
        first
            .send(Message::ReorderTables {
                remaining: vec![wire(&t("b"))],
            })
            .unwrap();
        tokio::time::timeout(PATIENCE, first.flushed())
            .await
            .unwrap();
        reporter.event(&phase("b", Phase::Failed("origin unreachable".into())));
        let b_failed = Message::TableFailed {
            table: wire(&t("b")),
            reason: "origin unreachable".into(),
        };
        let after_blip = reports_until(&mut fev, &b_failed).await;
        assert_eq!(
            after_blip,
            std::slice::from_ref(&b_failed),
            "nothing replayed"
        );
        reporter.event(&Event::JobFinished {
            tables_done: 1,
            tables_failed: 1,
        });
        let finished = Message::JobFinished {
            job: "shop".into(),
            tables_done: 1,
            tables_failed: 1,
        };
        reports_until(&mut fev, &finished).await;
        // Every report answered, so the next process gets the replay alone.
        tokio::time::timeout(PATIENCE, link.flushed())
            .await
            .unwrap();

        // Another proxy process (a restart): everything again, as replays.
        let (second, mut sev) = proxy("127.0.221.3").await;
        relay.to(second.local_addr().unwrap()).await;
        let peer = connected(&mut sev).await;
        assert_eq!(peer.name, "worker-0");
        let replayed = reports_until(&mut sev, &Message::replay(finished.clone())).await;
        let expected: Vec<Message> = [
            Message::JobStarted {
                job: "shop".into(),
                tables: vec![wire(&t("a")), wire(&t("b"))],
            },
            Message::TableProgress {
                table: wire(&t("a")),
                ranges_done: 2,
                ranges_total: 2,
                rows: 7,
            },
            Message::TableBackfilled {
                table: wire(&t("a")),
                rows: 7,
            },
            b_progress,
            b_failed,
            finished,
        ]
        .into_iter()
        .map(Message::replay)
        .collect();
        assert_eq!(replayed, expected);
        link.finish(Duration::ZERO, PATIENCE).await;
        relay.accept.abort();
        first.close().await;
        second.close().await;
    }
}

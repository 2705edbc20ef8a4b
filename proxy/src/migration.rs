//! What the migrator reported over the Update channel, per table: the state `/status` shows,
//! the gauges `/metrics` exports, which tables async dual reads may cover, and whether a cutover
//! to target is safe.
//!
//! ```text
//!  JobStarted{tables} ─► the sending worker's job; each unknown table: pending
//!  TableStarted ──────► backfilling (backfilled = false: a re-migration starts over)
//!  TableProgress ─────► ranges done/total, rows
//!  TableBackfilled ───► backfilled ──► the table joins the dual-read set
//!  TableValidated ────► validated (rows checked, mismatches)
//!  TableFailed ───────► failed (reason); a backfilled table stays in the dual-read set
//!  JobFinished ───────► the sending worker's job: its totals
//!  Replayed{report} ──► the report, only where it moves the table forward (below)
//! ```
//!
//! **Replays.** This state lives in memory only. A worker that connects to a proxy process
//! other than the one it last reported to (this one, restarted) reports its job and each
//! table's latest phase and progress again, each wrapped in `Replayed`. A replayed report
//! never moves a table back: it starts a table only if pending, counts progress only while
//! the table is pending or backfilling (and not below what is known), ends a pending or
//! backfilling table as backfilled or failed, and on a table already validated (`ferry
//! validate` ran before the worker came back) only marks the backfill done. Validations are
//! not replayed (`ferry validate` is one-shot): a restarted proxy shows the worker's tables
//! backfilled again, and the cutover waits for `ferry validate` to run again, the safe side;
//! the table's `replayed` says so in `/status` and in its cutover blocker.
//!
//! **Several workers.** A job split over several `ferry migrate` workers reports through
//! several peers at once: tables are one map whatever worker reports them (so the cutover
//! gate below covers every table of every worker that reported), and jobs are kept per
//! worker name (at most [`MAX_JOBS`], the oldest dropped).
//!
//! **Dual reads.** Until a migrator first reports, every read is mirrored as before the channel
//! existed (a proxy without a migrator, or with one that has not connected yet). From the first
//! report on, a read is mirrored only when its table is backfilled: earlier comparisons would
//! count rows not copied yet as mismatches, and a table the job does not cover is not expected
//! on target at all. The check is one relaxed atomic load while nothing was reported, then one
//! read lock on a small set, per read that would be mirrored.
//!
//! **Cutover.** [`Migration::cutover_blockers`] lists the tables not validated with 0
//! mismatches, of every worker's job; nothing when no migrator has reported (nothing is known
//! to wait for). A worker that never connected is unknown to the tables: with
//! `update.expect_migrators` set, [`Migration::missing_migrators`] lists each named worker
//! that has not reported its job yet (never connected, or connected and silent so far), and
//! the gate waits for those too. An expected worker's job is never the one dropped at the
//! bound, so it cannot be forgotten.
//!
//! Bounded: at most [`MAX_TRACKED_TABLES`] tables; a message naming another table is refused
//! (the migrator logs the `Nack`). Gauges exist for the first `MAX_TABLES` tables only.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use ferry_update::{Message, TableName};

use crate::metrics::{MAX_TABLES, MigrationFamilies, MigrationGauges};

/// Tables whose state is kept. A job of more tables than this is refused table by table.
pub(crate) const MAX_TRACKED_TABLES: usize = 10_000;
/// Longest failure reason kept.
const MAX_REASON: usize = 512;
/// Jobs kept, one per worker name: the channel admits at most 256 workers at once, and a
/// worker restarted under a new name leaves its old job behind.
pub(crate) const MAX_JOBS: usize = 256;

/// Where a table is in its migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// In the job, not started.
    Pending,
    Backfilling,
    Backfilled,
    Validated,
    Failed,
}

impl Phase {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Backfilling => "backfilling",
            Self::Backfilled => "backfilled",
            Self::Validated => "validated",
            Self::Failed => "failed",
        }
    }

    /// The value of `ferry_proxy_migration_table_phase`.
    fn gauge(self) -> i64 {
        match self {
            Self::Pending => 0,
            Self::Backfilling => 1,
            Self::Backfilled => 2,
            Self::Validated => 3,
            Self::Failed => 4,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One table's migration as last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableMigration {
    pub phase: Phase,
    pub ranges_done: u32,
    pub ranges_total: u32,
    /// Rows written to target so far (backfill).
    pub rows: u64,
    pub rows_checked: u64,
    pub mismatches: u64,
    /// Every range copied since the table last started: reads on it are compared. Outlives a
    /// later failure (of validation, say), not a restart of the table.
    pub backfilled: bool,
    /// Why it failed, for `failed`.
    pub reason: Option<String>,
    /// Its state came from a replay (a worker reporting again to this restarted proxy) and no
    /// live report or validation since: a validation from before the restart is not known.
    pub replayed: bool,
    pub updated: SystemTime,
}

impl TableMigration {
    fn new() -> Self {
        Self {
            phase: Phase::Pending,
            ranges_done: 0,
            ranges_total: 0,
            rows: 0,
            rows_checked: 0,
            mismatches: 0,
            backfilled: false,
            reason: None,
            replayed: false,
            updated: SystemTime::now(),
        }
    }
}

/// A worker's job as last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobState {
    /// The worker (its channel name) that reports it.
    pub migrator: String,
    pub name: String,
    pub tables: usize,
    /// `(tables done, tables failed)` once finished.
    pub finished: Option<(u32, u32)>,
    pub updated: SystemTime,
}

struct Entry {
    state: TableMigration,
    gauges: Option<MigrationGauges>,
}

#[derive(Default)]
struct State {
    tables: BTreeMap<Arc<str>, Entry>,
    /// By worker name.
    jobs: BTreeMap<String, JobState>,
    /// The expected workers (`update.expect_migrators`) that have connected: the cutover
    /// refusal tells "never connected" from "has not reported its job yet". At most the
    /// expected list.
    connected: HashSet<String>,
    /// `update.expect_migrators`: the workers the cutover waits for even before they report.
    expected: Vec<String>,
}

impl State {
    /// `migrator`'s job entry, made (dropping the least recently updated past [`MAX_JOBS`],
    /// never an expected worker's: there are at most `MAX_JOBS` of them, the new one included).
    fn job(&mut self, migrator: &str, job: &str, now: SystemTime) -> &mut JobState {
        if !self.jobs.contains_key(migrator) && self.jobs.len() >= MAX_JOBS {
            let oldest = self
                .jobs
                .iter()
                .filter(|(name, _)| !self.expected.contains(name))
                .min_by_key(|(_, j)| j.updated)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.jobs.remove(&oldest);
            }
        }
        self.jobs
            .entry(migrator.to_owned())
            .or_insert_with(|| JobState {
                migrator: migrator.to_owned(),
                name: job.to_owned(),
                tables: 0,
                finished: None,
                updated: now,
            })
    }
}

/// The proxy's view of the migration.
pub(crate) struct Migration {
    /// Set by the first message from a migrator; until then every read is mirrored.
    reported: AtomicBool,
    /// Backfilled tables, read on the request path.
    backfilled: RwLock<HashSet<Arc<str>>>,
    state: Mutex<State>,
    families: MigrationFamilies,
}

impl fmt::Debug for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migration")
            .field("reported", &self.reported.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// `keyspace.table`, as the request path names tables.
pub(crate) fn table_key(table: &TableName) -> Arc<str> {
    format!("{}.{}", table.keyspace, table.table).into()
}

/// The reverse of [`table_key`]: keyspace names cannot contain a dot.
pub(crate) fn table_name(key: &str) -> Option<TableName> {
    let (keyspace, table) = key.split_once('.')?;
    Some(TableName::new(keyspace, table))
}

impl Migration {
    /// `expected`: `update.expect_migrators` (validated: unique, at most [`MAX_JOBS`]).
    pub(crate) fn new(families: MigrationFamilies, expected: Vec<String>) -> Self {
        Self {
            reported: AtomicBool::new(false),
            backfilled: RwLock::default(),
            state: Mutex::new(State {
                expected,
                ..State::default()
            }),
            families,
        }
    }

    /// A `migrate` worker connected: remembered if it is expected.
    pub(crate) fn connected(&self, migrator: &str) {
        let mut state = self.lock();
        if state.expected.iter().any(|e| e == migrator) {
            state.connected.insert(migrator.to_owned());
        }
    }

    /// The expected workers, each with whether it ever connected.
    pub(crate) fn expected(&self) -> Vec<(String, bool)> {
        let state = self.lock();
        state
            .expected
            .iter()
            .map(|e| (e.clone(), state.connected.contains(e)))
            .collect()
    }

    /// Why the cutover waits for workers (see the module docs): one line per expected worker
    /// that has not reported its job, in the configured order. Empty without
    /// `update.expect_migrators`.
    pub(crate) fn missing_migrators(&self) -> Vec<String> {
        let state = self.lock();
        state
            .expected
            .iter()
            .filter(|e| !state.jobs.contains_key(*e))
            .map(|e| {
                if state.connected.contains(e) {
                    format!("{e} connected, no job reported yet")
                } else {
                    format!("{e} never connected")
                }
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a read of `table` is mirrored in dual-async mode (see the module docs).
    pub(crate) fn mirrors(&self, table: &str) -> bool {
        if !self.reported.load(Ordering::Relaxed) {
            return true;
        }
        self.backfilled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(table)
    }

    /// Whether a migrator has reported anything since the proxy started.
    pub(crate) fn reported(&self) -> bool {
        self.reported.load(Ordering::Relaxed)
    }

    /// Applies a message from the worker named `migrator`; `Err` is the reason to refuse it
    /// with. Messages the proxy sends itself are refused by the channel before they get here.
    pub(crate) fn apply(&self, migrator: &str, message: &Message) -> Result<(), String> {
        let now = SystemTime::now();
        let mut state = self.lock();
        let result = match message {
            Message::JobStarted { job, tables } => {
                self.job_started(&mut state, migrator, job, tables, false, now)
            }
            Message::TableStarted { table } => self.update(&mut state, table, now, |t| {
                t.phase = Phase::Backfilling;
                t.replayed = false;
                t.backfilled = false;
                t.ranges_done = 0;
                t.rows = 0;
                t.rows_checked = 0;
                t.mismatches = 0;
                t.reason = None;
            }),
            Message::TableProgress {
                table,
                ranges_done,
                ranges_total,
                rows,
            } => self.update(&mut state, table, now, |t| {
                if matches!(t.phase, Phase::Pending | Phase::Failed) {
                    t.phase = Phase::Backfilling;
                }
                t.ranges_done = *ranges_done;
                t.ranges_total = *ranges_total;
                t.rows = *rows;
            }),
            Message::TableBackfilled { table, rows } => self.update(&mut state, table, now, |t| {
                t.phase = Phase::Backfilled;
                t.backfilled = true;
                t.ranges_done = t.ranges_total;
                t.rows = *rows;
            }),
            Message::TableValidated {
                table,
                rows_checked,
                mismatches,
            } => self.update(&mut state, table, now, |t| {
                t.phase = Phase::Validated;
                t.replayed = false;
                t.rows_checked = *rows_checked;
                t.mismatches = *mismatches;
                t.reason = None;
            }),
            Message::TableFailed { table, reason } => self.update(&mut state, table, now, |t| {
                t.phase = Phase::Failed;
                t.reason = Some(shorten(reason));
            }),
            Message::JobFinished { .. } => self.apply_job_end(&mut state, migrator, message, now),
            Message::Replayed { message } => self.replayed(&mut state, migrator, message, now),
            other => Err(format!("{} is not a message a proxy takes", other.kind())),
        };
        let message = match message {
            Message::Replayed { message } => message.as_ref(),
            live => live,
        };
        // Only these change `backfilled`; progress (a few a second) leaves the read path's lock
        // alone. Rebuilt whole from the state: at most MAX_TRACKED_TABLES names, rarely.
        if matches!(
            message,
            Message::TableStarted { .. } | Message::TableBackfilled { .. }
        ) {
            let backfilled: HashSet<Arc<str>> = state
                .tables
                .iter()
                .filter(|(_, e)| e.state.backfilled)
                .map(|(k, _)| k.clone())
                .collect();
            *self.backfilled.write().unwrap_or_else(|p| p.into_inner()) = backfilled;
        }
        self.reported.store(true, Ordering::Relaxed);
        result
    }

    /// A report replayed to this process (see the module docs, Replays): applied only where
    /// it moves its table forward; a job is applied as reported, its end kept if it is the
    /// same job.
    fn replayed(
        &self,
        state: &mut State,
        migrator: &str,
        report: &Message,
        now: SystemTime,
    ) -> Result<(), String> {
        let forward = |t: &mut TableMigration, change: &dyn Fn(&mut TableMigration)| {
            change(t);
            t.replayed = true;
        };
        match report {
            Message::JobStarted { job, tables } => {
                self.job_started(state, migrator, job, tables, true, now)
            }
            Message::JobFinished { .. } => self.apply_job_end(state, migrator, report, now),
            Message::TableStarted { table } => self.update(state, table, now, |t| {
                if t.phase == Phase::Pending {
                    forward(t, &|t| t.phase = Phase::Backfilling);
                }
            }),
            Message::TableProgress {
                table,
                ranges_done,
                ranges_total,
                rows,
            } => self.update(state, table, now, |t| {
                let counts = match t.phase {
                    Phase::Pending => true,
                    Phase::Backfilling => *ranges_done >= t.ranges_done,
                    _ => false,
                };
                if counts {
                    forward(t, &|t| {
                        t.phase = Phase::Backfilling;
                        t.ranges_done = *ranges_done;
                        t.ranges_total = *ranges_total;
                        t.rows = *rows;
                    });
                }
            }),
            Message::TableBackfilled { table, rows } => self.update(state, table, now, |t| {
                match t.phase {
                    Phase::Pending | Phase::Backfilling => forward(t, &|t| {
                        t.phase = Phase::Backfilled;
                        t.backfilled = true;
                        t.ranges_done = t.ranges_total;
                        t.rows = *rows;
                    }),
                    // Validated before the worker came back: the backfill is done too.
                    Phase::Validated if !t.backfilled => {
                        t.backfilled = true;
                        t.ranges_done = t.ranges_total;
                        t.rows = *rows;
                    }
                    _ => {}
                }
            }),
            Message::TableFailed { table, reason } => self.update(state, table, now, |t| {
                if matches!(t.phase, Phase::Pending | Phase::Backfilling) {
                    forward(t, &|t| {
                        t.phase = Phase::Failed;
                        t.reason = Some(shorten(reason));
                    });
                }
            }),
            other => Err(format!(
                "{} is not replayed; a replay carries a migrate worker's job and table reports",
                other.kind()
            )),
        }
    }

    /// `JobStarted`, live or replayed (`replayed`: the job keeps its end if it is the same
    /// job, since a replay repeats what the worker reported before).
    fn job_started(
        &self,
        state: &mut State,
        migrator: &str,
        job: &str,
        tables: &[TableName],
        replayed: bool,
        now: SystemTime,
    ) -> Result<(), String> {
        let entry = state.job(migrator, job, now);
        let finished = entry.finished.filter(|_| replayed && entry.name == job);
        *entry = JobState {
            migrator: migrator.to_owned(),
            name: job.to_owned(),
            tables: tables.len(),
            finished,
            updated: now,
        };
        // A rerun keeps what earlier runs reported; a table the job restarts sends
        // TableStarted.
        let refused = tables
            .iter()
            .filter(|t| self.table(state, t, now).is_err())
            .count();
        if refused > 0 {
            return Err(format!(
                "the proxy tracks at most {MAX_TRACKED_TABLES} tables; {refused} of the \
                 job's {} were not taken",
                tables.len()
            ));
        }
        Ok(())
    }

    /// `JobFinished`, live or replayed: the worker's job's totals.
    fn apply_job_end(
        &self,
        state: &mut State,
        migrator: &str,
        report: &Message,
        now: SystemTime,
    ) -> Result<(), String> {
        if let Message::JobFinished {
            job,
            tables_done,
            tables_failed,
        } = report
        {
            let entry = state.job(migrator, job, now);
            entry.name.clone_from(job);
            entry.finished = Some((*tables_done, *tables_failed));
            entry.updated = now;
        }
        Ok(())
    }

    /// `table`'s entry, made on first mention.
    fn table<'a>(
        &self,
        state: &'a mut State,
        table: &TableName,
        now: SystemTime,
    ) -> Result<&'a mut Entry, String> {
        let key = table_key(table);
        let count = state.tables.len();
        if count >= MAX_TRACKED_TABLES && !state.tables.contains_key(&key) {
            return Err(format!(
                "the proxy tracks at most {MAX_TRACKED_TABLES} tables; {table} is not taken"
            ));
        }
        Ok(state.tables.entry(key).or_insert_with_key(|key| {
            let gauges = (count < MAX_TABLES)
                .then(|| self.families.for_table(key))
                .flatten();
            let mut state = TableMigration::new();
            state.updated = now;
            let entry = Entry { state, gauges };
            entry.export();
            entry
        }))
    }

    fn update(
        &self,
        state: &mut State,
        table: &TableName,
        now: SystemTime,
        change: impl FnOnce(&mut TableMigration),
    ) -> Result<(), String> {
        let entry = self.table(state, table, now)?;
        change(&mut entry.state);
        entry.state.updated = now;
        entry.export();
        Ok(())
    }

    /// Every known table's state, by name.
    pub(crate) fn tables(&self) -> Vec<(Arc<str>, TableMigration)> {
        self.lock()
            .tables
            .iter()
            .map(|(k, e)| (k.clone(), e.state.clone()))
            .collect()
    }

    /// Every worker's job, by worker name.
    pub(crate) fn jobs(&self) -> Vec<JobState> {
        self.lock().jobs.values().cloned().collect()
    }

    /// Why switching the primary to target is not safe yet: one line per table not validated
    /// with 0 mismatches. Empty when every known table is, or nothing was reported.
    pub(crate) fn cutover_blockers(&self) -> Vec<String> {
        let state = self.lock();
        state
            .tables
            .iter()
            .filter_map(|(name, e)| {
                let t = &e.state;
                let why = match t.phase {
                    Phase::Validated if t.mismatches == 0 => return None,
                    Phase::Validated => format!("validated with {} mismatches", t.mismatches),
                    Phase::Backfilled if t.replayed => "backfilled (reported again after this \
                        proxy restarted, which forgot validations; run ferry validate)"
                        .to_owned(),
                    Phase::Backfilling => {
                        format!("backfilling ({}/{} ranges)", t.ranges_done, t.ranges_total)
                    }
                    Phase::Failed => format!(
                        "failed: {}",
                        t.reason.as_deref().unwrap_or("no reason given")
                    ),
                    other => other.name().to_owned(),
                };
                Some(format!("{name} {why}"))
            })
            .collect()
    }
}

/// Why `PUT /primary target` is refused: the missing expected workers, then the tables not
/// validated with 0 mismatches (either may be empty, not both). `ferry cutover` words its
/// refusal with it too, from `/status`'s `migration.missing_migrators` and
/// `migration.cutover_blockers`.
pub fn cutover_refusal(workers: &[String], tables: &[String]) -> String {
    let mut parts = Vec::new();
    if !workers.is_empty() {
        parts.push(format!(
            "{} expected migrate worker(s) have not reported: {}",
            workers.len(),
            workers.join(", ")
        ));
    }
    if !tables.is_empty() {
        parts.push(format!(
            "{} table(s) not validated with 0 mismatches: {}",
            tables.len(),
            tables.join(", ")
        ));
    }
    parts.join("; ")
}

impl Entry {
    fn export(&self) {
        if let Some(g) = &self.gauges {
            g.phase.set(self.state.phase.gauge());
            g.ranges_done.set(i64::from(self.state.ranges_done));
            g.ranges_total.set(i64::from(self.state.ranges_total));
        }
    }
}

fn shorten(reason: &str) -> String {
    if reason.len() <= MAX_REASON {
        return reason.to_owned();
    }
    let mut cut = MAX_REASON;
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &reason[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn migration() -> Migration {
        Migration::new(Metrics::new().unwrap().migration(), Vec::new())
    }

    fn t(name: &str) -> TableName {
        TableName::new("ks", name)
    }

    /// Finished jobs from more workers than the jobs list keeps.
    fn more_jobs_than_kept(m: &Migration) {
        for i in 0..MAX_JOBS + 2 {
            let done = Message::JobFinished {
                job: "j".into(),
                tables_done: 0,
                tables_failed: 0,
            };
            m.apply(&format!("w{i}"), &done).unwrap();
        }
    }

    #[test]
    fn everything_is_mirrored_until_a_migrator_reports() {
        let m = migration();
        assert!(m.mirrors("ks.a") && m.mirrors("other.x"));
        assert!(m.cutover_blockers().is_empty());
        m.apply(
            "w",
            &Message::JobStarted {
                job: "j".into(),
                tables: vec![t("a"), t("b")],
            },
        )
        .unwrap();
        assert!(!m.mirrors("ks.a") && !m.mirrors("other.x"));
        m.apply("w", &Message::TableStarted { table: t("a") })
            .unwrap();
        m.apply(
            "w",
            &Message::TableProgress {
                table: t("a"),
                ranges_done: 3,
                ranges_total: 8,
                rows: 30,
            },
        )
        .unwrap();
        assert!(!m.mirrors("ks.a"));
        assert_eq!(
            m.cutover_blockers(),
            ["ks.a backfilling (3/8 ranges)", "ks.b pending"]
        );
        m.apply(
            "w",
            &Message::TableBackfilled {
                table: t("a"),
                rows: 80,
            },
        )
        .unwrap();
        assert!(m.mirrors("ks.a") && !m.mirrors("ks.b"));
        let a = &m.tables()[0].1;
        assert_eq!((a.phase, a.ranges_done, a.rows), (Phase::Backfilled, 8, 80));
        m.apply(
            "w",
            &Message::TableFailed {
                table: t("a"),
                reason: "x".repeat(2000),
            },
        )
        .unwrap();
        assert!(
            m.mirrors("ks.a"),
            "a failure after backfill keeps comparisons"
        );
        m.apply("w", &Message::TableStarted { table: t("a") })
            .unwrap();
        assert!(!m.mirrors("ks.a"), "a restarted table is not compared");
    }

    #[test]
    fn cutover_waits_for_clean_validation() {
        let m = migration();
        for (table, mismatches) in [("a", 0), ("b", 2)] {
            m.apply(
                "w",
                &Message::TableBackfilled {
                    table: t(table),
                    rows: 1,
                },
            )
            .unwrap();
            m.apply(
                "w",
                &Message::TableValidated {
                    table: t(table),
                    rows_checked: 1,
                    mismatches,
                },
            )
            .unwrap();
        }
        assert_eq!(m.cutover_blockers(), ["ks.b validated with 2 mismatches"]);
        m.apply(
            "w",
            &Message::TableValidated {
                table: t("b"),
                rows_checked: 1,
                mismatches: 0,
            },
        )
        .unwrap();
        assert!(m.cutover_blockers().is_empty());
        m.apply(
            "w",
            &Message::JobFinished {
                job: "j".into(),
                tables_done: 2,
                tables_failed: 0,
            },
        )
        .unwrap();
        assert_eq!(m.jobs()[0].finished, Some((2, 0)));
        let proxy_message = Message::Remigrate {
            table: t("a"),
            reason: "r".into(),
        };
        assert!(m.apply("w", &proxy_message).is_err());
    }

    /// Two workers, each with its own tables: one job each, and the cutover waits for every
    /// table of both, whichever finishes first.
    #[test]
    fn the_cutover_waits_for_every_worker() {
        let m = migration();
        let started = |tables: &[&str]| Message::JobStarted {
            job: "shop".into(),
            tables: tables.iter().map(|n| t(n)).collect(),
        };
        m.apply("worker-0", &started(&["a", "b"])).unwrap();
        m.apply("worker-1", &started(&["c"])).unwrap();
        let clean = |table: &str| Message::TableValidated {
            table: t(table),
            rows_checked: 1,
            mismatches: 0,
        };
        for table in ["a", "b"] {
            m.apply("worker-0", &clean(table)).unwrap();
        }
        m.apply(
            "worker-0",
            &Message::JobFinished {
                job: "shop".into(),
                tables_done: 2,
                tables_failed: 0,
            },
        )
        .unwrap();
        assert_eq!(m.cutover_blockers(), ["ks.c pending"]);
        let jobs = m.jobs();
        let of = |i: usize| (jobs[i].migrator.as_str(), jobs[i].tables, jobs[i].finished);
        assert_eq!(jobs.len(), 2);
        assert_eq!(of(0), ("worker-0", 2, Some((2, 0))));
        assert_eq!(of(1), ("worker-1", 1, None));
        m.apply("worker-1", &clean("c")).unwrap();
        assert!(m.cutover_blockers().is_empty());
    }

    /// Expected workers hold the cutover until each reported its job, whether or not it
    /// ever connected, and their jobs outlast the bound.
    #[test]
    fn the_cutover_waits_for_every_expected_worker() {
        let expected = vec!["migrator-0".to_owned(), "migrator-1".to_owned()];
        let m = Migration::new(Metrics::new().unwrap().migration(), expected);
        assert_eq!(
            m.missing_migrators(),
            ["migrator-0 never connected", "migrator-1 never connected"]
        );
        m.connected("migrator-0");
        m.connected("stranger");
        assert_eq!(
            m.expected(),
            [
                ("migrator-0".to_owned(), true),
                ("migrator-1".to_owned(), false)
            ]
        );
        assert_eq!(
            m.missing_migrators(),
            [
                "migrator-0 connected, no job reported yet",
                "migrator-1 never connected"
            ]
        );
        let started = Message::JobStarted {
            job: "shop".into(),
            tables: vec![t("a")],
        };
        m.apply("migrator-0", &started).unwrap();
        assert_eq!(m.missing_migrators(), ["migrator-1 never connected"]);
        assert_eq!(m.cutover_blockers(), ["ks.a pending"]);
        assert_eq!(
            cutover_refusal(&m.missing_migrators(), &m.cutover_blockers()),
            "1 expected migrate worker(s) have not reported: migrator-1 never connected; 1 \
             table(s) not validated with 0 mismatches: ks.a pending"
        );
        // Many strangers' jobs later, migrator-0's is still known.
        more_jobs_than_kept(&m);
        assert!(m.jobs().iter().any(|j| j.migrator == "migrator-0"));
        m.apply(
            "migrator-0",
            &Message::TableValidated {
                table: t("a"),
                rows_checked: 1,
                mismatches: 0,
            },
        )
        .unwrap();
        assert!(m.cutover_blockers().is_empty());
        assert_eq!(
            cutover_refusal(&m.missing_migrators(), &[]),
            "1 expected migrate worker(s) have not reported: migrator-1 never connected"
        );
        m.apply("migrator-1", &started).unwrap();
        assert!(m.missing_migrators().is_empty());
    }

    /// A restarted proxy learns a worker's state from its replay, and a replay never moves a
    /// table back: not a validation `ferry validate` reported before the worker came back,
    /// not a newer live report.
    #[test]
    fn replays_move_tables_forward_only() {
        let m = Migration::new(Metrics::new().unwrap().migration(), vec!["w".to_owned()]);
        let replay = |report: Message| m.apply("w", &Message::replay(report));
        // `ferry validate` ran before the worker came back.
        m.apply(
            "v",
            &Message::TableValidated {
                table: t("a"),
                rows_checked: 5,
                mismatches: 0,
            },
        )
        .unwrap();
        replay(Message::JobStarted {
            job: "shop".into(),
            tables: vec![t("a"), t("b"), t("c"), t("d")],
        })
        .unwrap();
        assert!(m.missing_migrators().is_empty());
        for table in ["a", "b"] {
            replay(Message::TableProgress {
                table: t(table),
                ranges_done: 4,
                ranges_total: 4,
                rows: 9,
            })
            .unwrap();
            replay(Message::TableBackfilled {
                table: t(table),
                rows: 9,
            })
            .unwrap();
        }
        replay(Message::TableProgress {
            table: t("c"),
            ranges_done: 2,
            ranges_total: 8,
            rows: 3,
        })
        .unwrap();
        replay(Message::TableStarted { table: t("d") }).unwrap();
        replay(Message::JobFinished {
            job: "shop".into(),
            tables_done: 2,
            tables_failed: 0,
        })
        .unwrap();
        let state: Vec<(String, Phase, u32, u32, u64, bool, bool)> = m
            .tables()
            .into_iter()
            .map(|(k, t)| {
                let row = (t.phase, t.ranges_done, t.ranges_total, t.rows);
                (
                    k.to_string(),
                    row.0,
                    row.1,
                    row.2,
                    row.3,
                    t.backfilled,
                    t.replayed,
                )
            })
            .collect();
        assert_eq!(
            state,
            [
                ("ks.a".into(), Phase::Validated, 0, 0, 9, true, false),
                ("ks.b".into(), Phase::Backfilled, 4, 4, 9, true, true),
                ("ks.c".into(), Phase::Backfilling, 2, 8, 3, false, true),
                ("ks.d".into(), Phase::Backfilling, 0, 0, 0, false, true),
            ]
        );
        assert!(m.mirrors("ks.a") && m.mirrors("ks.b") && !m.mirrors("ks.c"));
        assert_eq!(m.jobs()[0].finished, Some((2, 0)));
        assert_eq!(
            m.cutover_blockers(),
            [
                "ks.b backfilled (reported again after this proxy restarted, which forgot \
                 validations; run ferry validate)",
                "ks.c backfilling (2/8 ranges)",
                "ks.d backfilling (0/0 ranges)"
            ]
        );

        // Replayed twice (a second restart, or a second replay queued meanwhile): nothing
        // moves back, and the job keeps its end.
        replay(Message::JobStarted {
            job: "shop".into(),
            tables: vec![t("a"), t("b"), t("c"), t("d")],
        })
        .unwrap();
        replay(Message::TableStarted { table: t("b") }).unwrap();
        replay(Message::TableProgress {
            table: t("c"),
            ranges_done: 1,
            ranges_total: 8,
            rows: 1,
        })
        .unwrap();
        replay(Message::TableFailed {
            table: t("a"),
            reason: "old".into(),
        })
        .unwrap();
        assert_eq!(m.jobs()[0].finished, Some((2, 0)));
        let phases: Vec<(Phase, u32)> = m
            .tables()
            .into_iter()
            .map(|(_, t)| (t.phase, t.ranges_done))
            .collect();
        assert_eq!(
            phases,
            [
                (Phase::Validated, 0),
                (Phase::Backfilled, 4),
                (Phase::Backfilling, 2),
                (Phase::Backfilling, 0)
            ]
        );
        // A live report after the replay is applied as ever, and ends the replayed mark.
        m.apply("w", &Message::TableStarted { table: t("b") })
            .unwrap();
        let b = &m.tables()[1].1;
        assert_eq!(
            (b.phase, b.backfilled, b.replayed),
            (Phase::Backfilling, false, false)
        );
        assert!(!m.mirrors("ks.b"));
        let e = m
            .apply(
                "w",
                &Message::replay(Message::TableValidated {
                    table: t("a"),
                    rows_checked: 1,
                    mismatches: 0,
                }),
            )
            .unwrap_err();
        assert!(e.starts_with("table_validated is not replayed"), "{e}");
    }

    #[test]
    fn jobs_are_bounded() {
        let m = migration();
        more_jobs_than_kept(&m);
        assert_eq!(m.jobs().len(), MAX_JOBS);
    }

    #[test]
    fn tracked_tables_are_bounded() {
        let m = migration();
        let tables: Vec<TableName> = (0..MAX_TRACKED_TABLES + 3)
            .map(|i| t(&format!("t{i}")))
            .collect();
        let e = m
            .apply(
                "w",
                &Message::JobStarted {
                    job: "j".into(),
                    tables,
                },
            )
            .unwrap_err();
        assert!(e.contains("3 of the job's 10003"), "{e}");
        assert_eq!(m.tables().len(), MAX_TRACKED_TABLES);
        assert_eq!(table_name("ks.t"), Some(t("t")));
        assert_eq!(table_key(&t("t")).as_ref(), "ks.t");
    }
}

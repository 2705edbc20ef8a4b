//! A running job's table queue, which requests from outside the job (the proxies' Update
//! channel) may change: [`JobControl`].
//!
//! ```text
//!  run ─► plan(tables) ─► pending: t1 t2 t3 ─► next() ─► t1 running … finished(t1)
//!  reorder([t3, t2]) ─► pending: t3 t2            (tables not started yet only)
//!  remigrate(t1) ─► pending: t3 t2 t1(fresh)      (a table the job selected; started again
//!                                                  from a fresh checkpoint, after its
//!                                                  current run if it is running)
//!  nothing pending, nothing running ─► closed: remigrate refused from then on
//! ```
//!
//! Why "fresh" is safe: every backfilled cell keeps its origin writetime and TTL, so copying
//! a table again never overwrites a newer write; it only costs the time of the copy.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use crate::progress::TableName;

/// Why a request to change the job was refused (the proxy is told with a `Nack`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error("{table} is not one of this job's {count} tables")]
    NotInJob { table: TableName, count: usize },
    #[error("the job has finished; start a new one to migrate {table} again")]
    Finished { table: TableName },
}

/// A table the job will run next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Queued {
    pub table: TableName,
    /// Start over: forget the table's checkpoints (a re-migration).
    pub fresh: bool,
}

/// What the job's dispatcher should do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Run(Queued),
    /// Tables are running and nothing else can start now: wait for one to finish.
    Wait,
    /// Nothing pending, nothing running: the job ends (the control is closed).
    Done,
}

#[derive(Debug, Default)]
struct State {
    /// The job's selected tables; `None` until planned.
    tables: Option<Vec<TableName>>,
    pending: VecDeque<Queued>,
    running: HashSet<TableName>,
    /// Re-migrations asked for before the job was planned.
    early: Vec<TableName>,
    closed: bool,
}

/// The handle: shared by the job's dispatcher and whoever takes requests.
#[derive(Debug, Default)]
pub struct JobControl {
    state: Mutex<State>,
}

impl JobControl {
    pub fn new() -> Self {
        Self::default()
    }

    /// A control whose job starts `fresh` from fresh checkpoints (a job started for a
    /// re-migration).
    pub fn fresh(tables: Vec<TableName>) -> Self {
        let c = Self::default();
        c.lock().early = tables;
        c
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job's tables, in order, all pending.
    pub(crate) fn plan(&self, tables: &[TableName]) {
        let mut s = self.lock();
        let early = std::mem::take(&mut s.early);
        for t in &early {
            if !tables.contains(t) {
                tracing::warn!(table = %t, "re-migration asked for a table this job does not select; ignored");
            }
        }
        s.pending = tables
            .iter()
            .map(|t| Queued {
                table: t.clone(),
                fresh: early.contains(t),
            })
            .collect();
        s.tables = Some(tables.to_vec());
    }

    /// The next table to run, if one may start.
    pub(crate) fn next(&self) -> Next {
        let mut s = self.lock();
        // A table runs once at a time: a re-migration waits for the run in progress.
        let startable = s.pending.iter().position(|q| !s.running.contains(&q.table));
        match startable.and_then(|i| s.pending.remove(i)) {
            Some(q) => {
                s.running.insert(q.table.clone());
                Next::Run(q)
            }
            None if s.running.is_empty() && s.pending.is_empty() => {
                s.closed = true;
                Next::Done
            }
            None => Next::Wait,
        }
    }

    /// A run of `table` ended.
    pub(crate) fn finished(&self, table: &TableName) {
        self.lock().running.remove(table);
    }

    /// No more tables start (cancel): what was pending is returned, to be reported cancelled.
    pub(crate) fn drain(&self) -> Vec<TableName> {
        let mut s = self.lock();
        s.closed = true;
        s.pending.drain(..).map(|q| q.table).collect()
    }

    /// Runs `table` again from a fresh checkpoint: appended to the tables not started yet (or,
    /// when it is already waiting, only marked fresh). Refused for a table the job did not
    /// select, and once the job has finished.
    pub fn remigrate(&self, table: &TableName) -> Result<(), ControlError> {
        let mut s = self.lock();
        if s.closed {
            return Err(ControlError::Finished {
                table: table.clone(),
            });
        }
        let Some(tables) = &s.tables else {
            if !s.early.contains(table) {
                s.early.push(table.clone());
            }
            return Ok(());
        };
        if !tables.contains(table) {
            return Err(ControlError::NotInJob {
                table: table.clone(),
                count: tables.len(),
            });
        }
        match s.pending.iter_mut().find(|q| &q.table == table) {
            Some(q) => q.fresh = true,
            None => s.pending.push_back(Queued {
                table: table.clone(),
                fresh: true,
            }),
        }
        Ok(())
    }

    /// Puts the pending tables named in `remaining` first, in that order; the other pending
    /// tables follow in their previous order. Names not pending (unknown, running, done) are
    /// ignored. Returns how many pending tables `remaining` named.
    pub fn reorder(&self, remaining: &[TableName]) -> usize {
        let mut s = self.lock();
        let mut rest: VecDeque<Queued> = std::mem::take(&mut s.pending);
        let mut ordered = VecDeque::with_capacity(rest.len());
        for t in remaining {
            while let Some(i) = rest.iter().position(|q| &q.table == t) {
                if let Some(q) = rest.remove(i) {
                    ordered.push_back(q);
                }
            }
        }
        let named = ordered.len();
        ordered.extend(rest);
        s.pending = ordered;
        named
    }

    /// The tables not started yet, in the order they will start.
    pub fn pending(&self) -> Vec<TableName> {
        self.lock()
            .pending
            .iter()
            .map(|q| q.table.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: &str) -> TableName {
        TableName::new("ks", n)
    }

    fn run(c: &JobControl) -> Queued {
        match c.next() {
            Next::Run(q) => q,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tables_run_in_order_and_reorder_moves_only_pending_ones() {
        let c = JobControl::new();
        c.plan(&[t("a"), t("b"), t("c"), t("d")]);
        assert_eq!(run(&c).table, t("a"));
        assert_eq!(c.reorder(&[t("d"), t("a"), t("x"), t("c")]), 2);
        assert_eq!(c.pending(), [t("d"), t("c"), t("b")]);
        assert_eq!(run(&c).table, t("d"));
        assert_eq!(c.pending(), [t("c"), t("b")]);
    }

    #[test]
    fn remigrate_appends_a_fresh_run_after_the_current_one() {
        let c = JobControl::new();
        c.plan(&[t("a"), t("b")]);
        let a = run(&c);
        assert!(!a.fresh);
        c.remigrate(&t("a")).unwrap();
        c.remigrate(&t("b")).unwrap();
        // b was pending: marked fresh, not duplicated; a waits for its running copy.
        assert_eq!(c.pending(), [t("b"), t("a")]);
        let b = run(&c);
        assert_eq!((b.table.clone(), b.fresh), (t("b"), true));
        assert_eq!(c.next(), Next::Wait);
        c.finished(&t("a"));
        let again = run(&c);
        assert_eq!((again.table, again.fresh), (t("a"), true));
        assert_eq!(
            c.remigrate(&t("zz")),
            Err(ControlError::NotInJob {
                table: t("zz"),
                count: 2
            })
        );
        c.finished(&t("a"));
        c.finished(&t("b"));
        assert_eq!(c.next(), Next::Done);
        assert!(matches!(
            c.remigrate(&t("a")),
            Err(ControlError::Finished { .. })
        ));
    }

    #[test]
    fn early_requests_and_fresh_jobs_mark_planned_tables() {
        let c = JobControl::fresh(vec![t("b")]);
        c.remigrate(&t("a")).unwrap();
        c.remigrate(&t("other")).unwrap();
        c.plan(&[t("a"), t("b"), t("c")]);
        let fresh: Vec<bool> = (0..3).map(|_| run(&c).fresh).collect();
        assert_eq!(fresh, [true, true, false]);
        assert_eq!(c.drain(), Vec::<TableName>::new());
    }
}

//! Writes the target failed while the client was told they succeeded (target failure policy
//! `best-effort`), kept until the migrator takes them for repair.
//!
//! ```text
//!  Join (best-effort, target failed) ─► RepairLog::record ─► per-table pending counts
//!                                                          ─► recent failures (newest 10,000)
//!                                                          ─► ferry_proxy_target_write_failures_total
//!  Update channel (a later issue) ─► RepairLog::drain ─► what to repair; counts start again
//! ```
//!
//! Bounded twice: the list keeps the newest [`MAX_RECENT`] failures (older ones are counted in
//! [`RepairBatch::dropped`], so the migrator knows to repair those tables whole), and per-table
//! counts cover at most `crate::metrics::MAX_TABLES` tables, then `other`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use prometheus::IntCounter;

use crate::completion::TargetFailureSink;
use crate::metrics::{Metrics, TableMap};

/// Failures kept in full; a failing target can fail thousands of writes a second, and the
/// per-table counts still say where repairs are needed once this overflows.
pub const MAX_RECENT: usize = 10_000;
/// Longest reason kept (error messages can quote whole statements).
const MAX_REASON: usize = 512;
/// The table key of a write whose table the proxy does not know (a batch over several tables).
pub const UNKNOWN_TABLE: &str = "unknown";

/// One write the target failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TargetWriteFailure {
    /// `keyspace.table`, when the write named one table.
    pub table: Option<Arc<str>>,
    /// The target's error or the proxy's reason (no answer, lost connection), shortened.
    pub reason: String,
    pub at: SystemTime,
}

/// What [`RepairLog::drain`] hands over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairBatch {
    /// The newest failures, oldest first.
    pub failures: Vec<TargetWriteFailure>,
    /// Failures per table since the last drain, including ones no longer in `failures`.
    pub tables: Vec<(Arc<str>, u64)>,
    /// Failures recorded but pushed out of the list by newer ones.
    pub dropped: u64,
}

/// Per-table counts, as `/status` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableRepairs {
    /// Recorded and not yet drained.
    pub pending: u64,
    /// Recorded since the proxy started.
    pub total: u64,
}

#[derive(Debug, Default)]
struct TableEntry {
    counts: TableRepairs,
    counter: Option<IntCounter>,
}

#[derive(Debug, Default)]
struct State {
    recent: VecDeque<TargetWriteFailure>,
    tables: TableMap<TableEntry>,
    pending: u64,
}

/// The record of target write failures awaiting repair.
#[derive(Debug)]
pub struct RepairLog {
    state: Mutex<State>,
    metrics: Arc<Metrics>,
    unknown: Arc<str>,
}

impl RepairLog {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            state: Mutex::default(),
            metrics,
            unknown: UNKNOWN_TABLE.into(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Failures recorded and not yet drained.
    pub fn pending(&self) -> u64 {
        self.lock().pending
    }

    /// Per-table counts, largest pending first.
    pub fn tables(&self) -> Vec<(Arc<str>, TableRepairs)> {
        let state = self.lock();
        let mut all: Vec<_> = state
            .tables
            .iter()
            .map(|(t, e)| (t.clone(), e.counts))
            .collect();
        all.sort_by(|a, b| b.1.pending.cmp(&a.1.pending).then(a.0.cmp(&b.0)));
        all
    }

    /// Takes everything pending; the per-table totals stay.
    pub fn drain(&self) -> RepairBatch {
        let mut state = self.lock();
        let failures: Vec<_> = state.recent.drain(..).collect();
        let dropped = state.pending - failures.len() as u64;
        state.pending = 0;
        let mut tables = Vec::new();
        for (t, e) in state.tables.iter_mut() {
            if e.counts.pending > 0 {
                tables.push((t.clone(), e.counts.pending));
                e.counts.pending = 0;
            }
        }
        tables.sort();
        RepairBatch {
            failures,
            tables,
            dropped,
        }
    }
}

impl TargetFailureSink for RepairLog {
    fn target_write_failed(&self, table: Option<&Arc<str>>, reason: &str) {
        let mut reason = reason.to_owned();
        if reason.len() > MAX_REASON {
            let mut cut = MAX_REASON;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
            reason.push('…');
        }
        let failure = TargetWriteFailure {
            table: table.cloned(),
            reason,
            at: SystemTime::now(),
        };
        let key = table.unwrap_or(&self.unknown);
        let mut state = self.lock();
        let entry = state.tables.entry(key, |name| TableEntry {
            counts: TableRepairs::default(),
            counter: self.metrics.target_write_failures(name),
        });
        entry.counts.pending += 1;
        entry.counts.total += 1;
        if let Some(c) = &entry.counter {
            c.inc();
        }
        state.pending += 1;
        if state.recent.len() == MAX_RECENT {
            state.recent.pop_front();
        }
        state.recent.push_back(failure);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_per_table_and_drained_once() {
        let log = RepairLog::new(Arc::new(Metrics::new().unwrap()));
        let t: Arc<str> = "ks.t".into();
        log.target_write_failed(Some(&t), "write timeout");
        log.target_write_failed(Some(&t), "write timeout");
        log.target_write_failed(None, &"x".repeat(2000));
        assert_eq!(log.pending(), 3);
        let tables = log.tables();
        assert_eq!(tables[0].0.as_ref(), "ks.t");
        assert_eq!(
            tables[0].1,
            TableRepairs {
                pending: 2,
                total: 2
            }
        );
        let batch = log.drain();
        assert_eq!(batch.failures.len(), 3);
        assert!(batch.failures[2].reason.len() <= MAX_REASON + '…'.len_utf8());
        assert_eq!(
            batch.tables,
            vec![("ks.t".into(), 2), (UNKNOWN_TABLE.into(), 1)]
        );
        assert_eq!(batch.dropped, 0);
        assert_eq!(log.pending(), 0);
        assert_eq!(log.drain(), RepairBatch::default());
        assert_eq!(
            log.tables()[0].1,
            TableRepairs {
                pending: 0,
                total: 2
            }
        );
    }

    #[test]
    fn the_list_keeps_the_newest_and_counts_the_rest() {
        let log = RepairLog::new(Arc::new(Metrics::new().unwrap()));
        let t: Arc<str> = "ks.t".into();
        for i in 0..MAX_RECENT + 5 {
            log.target_write_failed(Some(&t), &format!("failure {i}"));
        }
        let batch = log.drain();
        assert_eq!(batch.failures.len(), MAX_RECENT);
        assert_eq!(batch.dropped, 5);
        assert_eq!(batch.failures[0].reason, "failure 5");
        assert_eq!(batch.tables, vec![(t, MAX_RECENT as u64 + 5)]);
    }
}

//! Writes the target failed while the client was told they succeeded (target failure policy
//! `best-effort`), kept until the migrator has acknowledged a request to repair them.
//!
//! ```text
//!  Join (best-effort, target failed) ─► KeySource::key (only now: the EXECUTE's values at the
//!                                       │                prepared statement's pk indexes)
//!                                       ▼
//!                       RepairLog::record ─► per-table pending counts
//!                                         ─► recent failures with their keys (newest 10,000)
//!                                         ─► ferry_proxy_target_write_failures_total
//!  Update link (crate::update) ─► RepairLog::take ─► RepairPartitions / Remigrate messages
//!                        migrator acknowledges ─► RepairLog::settle: pending goes down
//! ```
//!
//! Bounded twice: the list keeps the newest [`MAX_RECENT`] failures (older ones are counted in
//! [`RepairBatch::dropped`], so the migrator knows to repair those tables whole), and per-table
//! counts cover at most `crate::metrics::MAX_TABLES` tables, then `other`.
//!
//! **Partition keys** are known for EXECUTEs of statements prepared in protocol v4 or later
//! (the PREPARED answer names the bound variables that form the partition key). Writes sent as
//! QUERY text, BATCHes and v3 statements are recorded without a key: their tables are sent for
//! re-migration instead, since the proxy does not know those tables' key columns.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use ferry_cql::protocol::ProtocolVersion;
use ferry_cql::request::{Execute, Value, Values};
use ferry_cql::response::result::PreparedMetadata;
use ferry_cql::types::{ColumnType, decode_value};
use ferry_update::PartitionKey;
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
    /// The partition written, when the proxy could tell (see the module docs).
    pub key: Option<PartitionKey>,
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
    /// Recorded and not yet settled (drained, or acknowledged by the migrator).
    pub pending: u64,
    /// Recorded since the proxy started.
    pub total: u64,
}

#[derive(Debug, Default)]
struct TableEntry {
    counts: TableRepairs,
    /// Of `pending`, not yet taken for a repair request.
    untaken: u64,
    counter: Option<IntCounter>,
}

#[derive(Debug, Default)]
struct State {
    recent: VecDeque<TargetWriteFailure>,
    tables: TableMap<TableEntry>,
    pending: u64,
    untaken: u64,
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

    /// Failures recorded and not yet settled: not drained, or requested from the migrator and
    /// not yet acknowledged.
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

    /// Takes everything pending and settles it at once; the per-table totals stay.
    pub fn drain(&self) -> RepairBatch {
        let batch = self.take();
        for (table, n) in &batch.tables {
            self.settle(table, *n);
        }
        batch
    }

    /// Takes what is not yet taken, for a repair request; it stays pending until
    /// [`RepairLog::settle`] (the migrator acknowledged) or [`RepairLog::restore`] (the request
    /// could not be sent).
    pub(crate) fn take(&self) -> RepairBatch {
        let mut state = self.lock();
        let failures: Vec<_> = state.recent.drain(..).collect();
        let dropped = state.untaken.saturating_sub(failures.len() as u64);
        state.untaken = 0;
        let mut tables = Vec::new();
        for (t, e) in state.tables.iter_mut() {
            if e.untaken > 0 {
                tables.push((t.clone(), e.untaken));
                e.untaken = 0;
            }
        }
        tables.sort();
        RepairBatch {
            failures,
            tables,
            dropped,
        }
    }

    /// `n` taken failures of `table` are dealt with: they leave the pending counts.
    pub(crate) fn settle(&self, table: &Arc<str>, n: u64) {
        let mut state = self.lock();
        state.pending = state.pending.saturating_sub(n);
        let entry = state.tables.entry(table, |_| TableEntry::default());
        entry.counts.pending = entry.counts.pending.saturating_sub(n);
    }

    /// Taken failures that could not be handed over: taken again next time.
    pub(crate) fn restore(&self, table: &Arc<str>, n: u64, failures: Vec<TargetWriteFailure>) {
        let mut state = self.lock();
        state.untaken += n;
        state.tables.entry(table, |_| TableEntry::default()).untaken += n;
        for f in failures.into_iter().rev() {
            if state.recent.len() == MAX_RECENT {
                break;
            }
            state.recent.push_front(f);
        }
    }
}

impl TargetFailureSink for RepairLog {
    fn target_write_failed(
        &self,
        table: Option<&Arc<str>>,
        key: Option<PartitionKey>,
        reason: &str,
    ) {
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
            key,
            reason,
            at: SystemTime::now(),
        };
        let key = table.unwrap_or(&self.unknown);
        let mut state = self.lock();
        let entry = state.tables.entry(key, |name| TableEntry {
            counter: self.metrics.target_write_failures(name),
            ..TableEntry::default()
        });
        entry.counts.pending += 1;
        entry.counts.total += 1;
        entry.untaken += 1;
        if let Some(c) = &entry.counter {
            c.inc();
        }
        state.pending += 1;
        state.untaken += 1;
        if state.recent.len() == MAX_RECENT {
            state.recent.pop_front();
        }
        state.recent.push_back(failure);
    }
}

/// Where a prepared statement's partition key sits among its bound values: (marker index, column
/// name, type) per key column, in key order.
#[derive(Debug)]
pub(crate) struct KeyColumns(Vec<(usize, String, ColumnType)>);

impl KeyColumns {
    /// From a PREPARED answer's metadata; `None` when it names no key (protocol v3, or a
    /// statement that does not bind the whole partition key).
    pub(crate) fn from_metadata(metadata: &PreparedMetadata) -> Option<Arc<Self>> {
        if metadata.pk_indexes.is_empty() {
            return None;
        }
        let columns = metadata
            .pk_indexes
            .iter()
            .map(|&i| {
                let c = metadata.columns.get(usize::from(i))?;
                Some((usize::from(i), c.name.clone(), c.ty.clone()))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Arc::new(Self(columns)))
    }

    /// The key as CQL literals; `None` when a key value is missing, null, unset or unreadable.
    fn key(&self, values: &Values) -> Option<PartitionKey> {
        let mut components = Vec::with_capacity(self.0.len());
        for (index, name, ty) in &self.0 {
            let value = match values {
                Values::Positional(v) => v.get(*index),
                Values::Named(v) => v.iter().find(|(n, _)| n == name).map(|(_, v)| v),
                _ => None,
            };
            let Some(Value::Set(bytes)) = value else {
                return None;
            };
            components.push(decode_value(ty, bytes).ok()?.to_cql_literal());
        }
        Some(PartitionKey { components })
    }
}

/// What a dual write's partition key is read from if the target fails it: the EXECUTE body as
/// sent, decoded only then (the request path pays for two reference-count increments).
#[derive(Debug, Clone)]
pub(crate) struct KeySource {
    pub columns: Arc<KeyColumns>,
    /// The EXECUTE body, uncompressed and without extensions.
    pub body: Bytes,
    pub version: ProtocolVersion,
}

impl KeySource {
    pub(crate) fn key(&self) -> Option<PartitionKey> {
        let execute = Execute::decode(&mut &self.body[..], &self.body, self.version).ok()?;
        self.columns.key(&execute.params.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_per_table_and_drained_once() {
        let log = RepairLog::new(Arc::new(Metrics::new().unwrap()));
        let t: Arc<str> = "ks.t".into();
        log.target_write_failed(Some(&t), None, "write timeout");
        log.target_write_failed(Some(&t), None, "write timeout");
        log.target_write_failed(None, None, &"x".repeat(2000));
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
            log.target_write_failed(Some(&t), None, &format!("failure {i}"));
        }
        let batch = log.drain();
        assert_eq!(batch.failures.len(), MAX_RECENT);
        assert_eq!(batch.dropped, 5);
        assert_eq!(batch.failures[0].reason, "failure 5");
        assert_eq!(batch.tables, vec![(t, MAX_RECENT as u64 + 5)]);
    }
}

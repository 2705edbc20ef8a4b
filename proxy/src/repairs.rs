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
//! **Across restarts** (`repair_journal` set): every failure, re-migration request and
//! settlement is also queued for the journal (`crate::journal`), written by a background thread
//! so the client's answer never waits for the disk. At start `RepairLog::with_journal` replays
//! it: unsettled failures come back pending (with their keys), waiting re-migrations go back to
//! the Update link. Without a journal all of this lives in memory only.
//!
//! ```text
//!  record ─► Journal: Failure{seq, table, key, reason}
//!  settle: RepairPartitions acknowledged ─► Repaired{seqs}; Remigrate acknowledged (or nothing
//!          can name the table) ─► TableRepaired{table, upto: the last seq it covers}
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
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferry_cql::protocol::ProtocolVersion;
use ferry_cql::request::{Execute, Value, Values};
use ferry_cql::response::result::PreparedMetadata;
use ferry_cql::types::{ColumnType, decode_value};
use ferry_update::PartitionKey;
use prometheus::IntCounter;

use crate::completion::TargetFailureSink;
use crate::journal::{Journal, JournalError, Pending, Record};
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
    /// Its number in this log (and the journal), counting from 1: how a settlement names it.
    pub seq: u64,
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
    /// The last seq given out when taken: a re-migration of a table settles its failures up
    /// to it.
    pub upto: u64,
}

/// Per-table counts, as `/status` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableRepairs {
    /// Recorded and not yet settled (drained, or acknowledged by the migrator).
    pub pending: u64,
    /// Recorded since the proxy started, with those replayed from the journal.
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
    /// The last seq given out (failures and, through [`RepairLog::next_seq`], re-migrations).
    seq: u64,
}

/// The record of target write failures awaiting repair.
#[derive(Debug)]
pub struct RepairLog {
    state: Mutex<State>,
    metrics: Arc<Metrics>,
    unknown: Arc<str>,
    /// `repair_journal`, when set.
    journal: Option<Journal>,
}

/// A re-migration the journal held as waiting or unacknowledged: `keyspace.table`, its seq
/// and reason.
pub(crate) type JournaledRemigration = (String, u64, String);

impl RepairLog {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            state: Mutex::default(),
            metrics,
            unknown: UNKNOWN_TABLE.into(),
            journal: None,
        }
    }

    /// A log backed by the journal at `path`: what it held unsettled is pending again, and the
    /// re-migrations it held are returned for the Update link.
    pub(crate) fn with_journal(
        metrics: Arc<Metrics>,
        path: &Path,
    ) -> Result<(Self, Vec<JournaledRemigration>), JournalError> {
        let (journal, pending) = Journal::open(path)?;
        let mut log = Self::new(metrics);
        let remigrations = log.replay(pending);
        log.journal = Some(journal);
        Ok((log, remigrations))
    }

    fn replay(&mut self, pending: Pending) -> Vec<JournaledRemigration> {
        let failures = pending.failures.len();
        let dirty: u64 = pending.dirty.values().map(|(_, n)| n).sum();
        let mut state = self.lock();
        state.seq = pending.last_seq;
        // Entries made here count this process's later failures too.
        let make = |name: &str| TableEntry {
            counter: self.metrics.target_write_failures(name),
            ..TableEntry::default()
        };
        for (table, (_, n)) in pending.dirty {
            let entry = state.tables.entry(&table.into(), make);
            entry.counts.pending += n;
            entry.counts.total += n;
            entry.untaken += n;
            state.pending += n;
            state.untaken += n;
        }
        for f in pending.failures {
            let table: Option<Arc<str>> = f.table.map(Into::into);
            let entry = state
                .tables
                .entry(table.as_ref().unwrap_or(&self.unknown), make);
            entry.counts.pending += 1;
            entry.counts.total += 1;
            entry.untaken += 1;
            state.pending += 1;
            state.untaken += 1;
            if state.recent.len() == MAX_RECENT {
                state.recent.pop_front();
            }
            state.recent.push_back(TargetWriteFailure {
                table,
                key: f.key.map(|components| PartitionKey { components }),
                reason: f.reason,
                at: UNIX_EPOCH + Duration::from_millis(f.at_ms),
                seq: f.seq,
            });
        }
        drop(state);
        if failures > 0 || dirty > 0 || !pending.remigrations.is_empty() {
            tracing::info!(
                failures,
                without_key = dirty,
                remigrations = pending.remigrations.len(),
                "repair journal replayed: pending again until the migrator acknowledges them"
            );
        }
        pending.remigrations
    }

    /// The journal, when `repair_journal` is set.
    pub(crate) fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// A new seq, for a re-migration request the Update link journals.
    pub(crate) fn next_seq(&self) -> u64 {
        let mut state = self.lock();
        state.seq += 1;
        state.seq
    }

    /// Queues `record` for the journal, if there is one.
    pub(crate) fn journal_write(&self, record: impl FnOnce() -> Record) {
        if let Some(j) = &self.journal {
            j.write(record());
        }
    }

    /// Journals that these listed failures are settled (their repair was acknowledged).
    pub(crate) fn settled_failures(&self, failures: &[TargetWriteFailure]) {
        if !failures.is_empty() {
            self.journal_write(|| Record::Repaired {
                seqs: failures.iter().map(|f| f.seq).collect(),
            });
        }
    }

    /// Journals that `table`'s failures up to seq `upto` are settled (a re-migration).
    pub(crate) fn settled_table(&self, table: &str, upto: u64) {
        self.journal_write(|| Record::TableRepaired {
            table: table.to_owned(),
            upto,
        });
    }

    /// Writes out what the journal has queued and stops its writer (graceful shutdown).
    pub(crate) fn close_journal(&self) {
        if let Some(j) = &self.journal {
            j.close();
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
            self.settled_table(table, batch.upto);
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
            upto: state.seq,
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
        let at = SystemTime::now();
        let mut state = self.lock();
        state.seq += 1;
        let seq = state.seq;
        let failure = TargetWriteFailure {
            table: table.cloned(),
            key,
            reason,
            at,
            seq,
        };
        // Built under the lock so seqs reach the queue in order; the queue never blocks.
        self.journal_write(|| Record::Failure {
            seq,
            table: table.map(|t| t.to_string()),
            key: failure.key.as_ref().map(|k| k.components.clone()),
            reason: failure.reason.clone(),
            at_ms: at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        });
        let key = table.unwrap_or(&self.unknown);
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
        assert_eq!(
            log.drain(),
            RepairBatch {
                upto: 3,
                ..RepairBatch::default()
            }
        );
        assert_eq!(
            log.tables()[0].1,
            TableRepairs {
                pending: 0,
                total: 2
            }
        );
    }

    fn journaled(path: &Path) -> (RepairLog, Vec<JournaledRemigration>) {
        RepairLog::with_journal(Arc::new(Metrics::new().unwrap()), path).unwrap()
    }

    fn keys(batch: &RepairBatch) -> Vec<(Option<String>, Option<PartitionKey>)> {
        batch
            .failures
            .iter()
            .map(|f| (f.table.as_deref().map(str::to_owned), f.key.clone()))
            .collect()
    }

    #[test]
    fn pending_failures_survive_a_restart_with_their_keys() {
        let path = crate::journal::tests::test_dir("restart").join("journal");
        let t: Arc<str> = "ks.t".into();
        let u: Arc<str> = "ks.u".into();
        {
            let (log, remigrations) = journaled(&path);
            assert!(remigrations.is_empty());
            log.target_write_failed(Some(&t), Some(PartitionKey::new(["1"])), "overloaded");
            log.target_write_failed(Some(&t), Some(PartitionKey::new(["2"])), "overloaded");
            log.target_write_failed(Some(&u), None, "QUERY text");
            log.close_journal();
        }
        let (log, _) = journaled(&path);
        assert_eq!(log.pending(), 3);
        let pending: Vec<_> = log
            .tables()
            .into_iter()
            .map(|(t, c)| (t, c.pending))
            .collect();
        assert_eq!(pending, [(t.clone(), 2), (u.clone(), 1)]);
        let batch = log.take();
        assert_eq!(
            keys(&batch),
            [
                (Some("ks.t".into()), Some(PartitionKey::new(["1"]))),
                (Some("ks.t".into()), Some(PartitionKey::new(["2"]))),
                (Some("ks.u".into()), None),
            ]
        );
        assert_eq!(batch.failures[0].reason, "overloaded");
        // Seqs continue after the replayed ones.
        assert_eq!(batch.upto, 3);
        assert_eq!(log.next_seq(), 4);

        // Taken but not acknowledged: still pending after another restart. Then settled: the
        // keyed ones by seq, ks.u by its table's re-migration.
        log.close_journal();
        drop(log);
        let (log, _) = journaled(&path);
        let batch = log.take();
        assert_eq!(batch.failures.len(), 3);
        log.settle(&t, 2);
        log.settled_failures(&batch.failures[..2]);
        log.settle(&u, 1);
        log.settled_table(&u, batch.upto);
        log.target_write_failed(Some(&u), Some(PartitionKey::new(["later"])), "timeout");
        assert_eq!(log.pending(), 1);
        log.close_journal();
        drop(log);
        let (log, _) = journaled(&path);
        assert_eq!(log.pending(), 1);
        // drain settles everything, also on disk.
        assert_eq!(
            keys(&log.drain()),
            [(Some("ks.u".into()), Some(PartitionKey::new(["later"])))]
        );
        log.close_journal();
        drop(log);
        let (log, _) = journaled(&path);
        assert_eq!(log.pending(), 0);
        assert!(log.take().tables.is_empty());
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_the_rest_replayed() {
        let path = crate::journal::tests::test_dir("torn").join("journal");
        let t: Arc<str> = "ks.t".into();
        {
            let (log, _) = journaled(&path);
            log.target_write_failed(Some(&t), Some(PartitionKey::new(["1"])), "overloaded");
            log.target_write_failed(Some(&t), Some(PartitionKey::new(["2"])), "overloaded");
            log.close_journal();
        }
        // A crash in the middle of the third record.
        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(br#"{"r":"failure","seq":3,"table":"ks.t","ke"#);
        std::fs::write(&path, &text).unwrap();
        let (log, _) = journaled(&path);
        assert_eq!(log.pending(), 2);
        // Compacted at start: the torn line is gone, and what follows starts on its own line.
        log.target_write_failed(Some(&t), Some(PartitionKey::new(["3"])), "overloaded");
        log.close_journal();
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.lines().all(|l| l.ends_with('}')), "{text}");
        let (log, _) = journaled(&path);
        let batch = log.take();
        assert_eq!(
            batch
                .failures
                .iter()
                .map(|f| f.key.clone())
                .collect::<Vec<_>>(),
            ["1", "2", "3"].map(|k| Some(PartitionKey::new([k])))
        );
        assert_eq!(
            batch.failures.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [1, 2, 3]
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

//! Progress as events: the core reports what happens through an [`Observer`], so progress bars,
//! metrics, the HTTP API and the Update channel plug in without touching the core.

use std::fmt;
use std::time::Duration;

use crate::compare::DiffKind;
use crate::job::Phase;

/// `keyspace.table`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub keyspace: String,
    pub table: String,
}

impl TableName {
    pub fn new(keyspace: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            keyspace: keyspace.into(),
            table: table.into(),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.keyspace, self.table)
    }
}

/// One thing that happened. Counts are deltas unless named `total`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The tables the job will migrate, in order.
    JobPlanned { tables: Vec<TableName> },
    /// A table entered a phase.
    Phase { table: TableName, phase: Phase },
    /// The job ended: runs of tables that ended DONE and those that did not.
    JobFinished {
        tables_done: u32,
        tables_failed: u32,
    },
    /// A table's ranges: how many exist and how many a previous run already finished.
    RangesPlanned {
        table: TableName,
        total: u32,
        already_done: u32,
    },
    /// Rows and bytes written to target (one scan page).
    Written {
        table: TableName,
        rows: u64,
        bytes: u64,
    },
    /// A scan page was read and all its rows acknowledged by target: `read` is the page's
    /// fetch from origin, `write` from then until the last write's answer (throttle waits
    /// included).
    Page {
        table: TableName,
        rows: u64,
        bytes: u64,
        read: Duration,
        write: Duration,
    },
    /// A range finished.
    RangeDone { table: TableName, range: u32 },
    /// A scan page or write failed and is retried (after `attempt` failures in a row).
    Retry {
        table: TableName,
        range: u32,
        attempt: u32,
        error: String,
    },
    /// Writers waited this long for the rows/s or bytes/s limit.
    Throttled { micros: u64 },
    /// Something the operator must know that does not stop the table.
    Warning { table: TableName, message: String },
    /// Validation: keys compared (origin's and target's scans merged, a key counted once).
    Compared { table: TableName, rows: u64 },
    /// Validation: a key that still differs after its re-check, with the kinds found.
    Difference {
        table: TableName,
        key: String,
        kinds: Vec<DiffKind>,
    },
    /// Validation with repair: a differing key was rewritten from origin (`deleted`: removed
    /// from target) and now matches.
    Repaired {
        table: TableName,
        key: String,
        deleted: bool,
    },
    /// A proxy's repair request for partitions of a table was carried out: partitions
    /// rewritten from origin, failed, or refused (a table the migrator cannot repair).
    PartitionsRepaired {
        table: TableName,
        repaired: u64,
        failed: u64,
        refused: u64,
    },
}

/// Receives events. Called from the migration tasks: it must be quick and must not block
/// (hand work to a bounded channel or update atomics).
pub trait Observer: Send + Sync {
    fn event(&self, event: &Event);
}

/// Reports events as structured `tracing` logs (the default when nothing else listens).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogObserver;

impl Observer for LogObserver {
    fn event(&self, event: &Event) {
        match event {
            Event::JobPlanned { tables } => {
                let names: Vec<String> = tables.iter().map(ToString::to_string).collect();
                tracing::info!(tables = %names.join(","), count = tables.len(), "job planned");
            }
            Event::JobFinished {
                tables_done,
                tables_failed,
            } => tracing::info!(tables_done, tables_failed, "job finished"),
            Event::Phase { table, phase } => {
                if let Phase::Failed(reason) = phase {
                    tracing::error!(%table, %reason, "table failed");
                } else {
                    tracing::info!(%table, %phase, "phase");
                }
            }
            Event::RangesPlanned {
                table,
                total,
                already_done,
            } => tracing::info!(%table, total, already_done, "ranges planned"),
            Event::Written { .. }
            | Event::Throttled { .. }
            | Event::Compared { .. }
            | Event::Page { .. } => {}
            Event::RangeDone { table, range } => tracing::debug!(%table, range, "range done"),
            Event::Retry {
                table,
                range,
                attempt,
                error,
            } => tracing::warn!(%table, range, attempt, %error, "retrying"),
            Event::Warning { table, message } => tracing::warn!(%table, "{message}"),
            Event::Difference { table, key, kinds } => {
                let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                tracing::info!(%table, %key, kinds = %kinds.join(","), "difference");
            }
            Event::Repaired {
                table,
                key,
                deleted,
            } => tracing::info!(%table, %key, deleted, "repaired"),
            Event::PartitionsRepaired {
                table,
                repaired,
                failed,
                refused,
            } => {
                if *failed > 0 || *refused > 0 {
                    tracing::warn!(%table, repaired, failed, refused, "partition repair requested by a proxy");
                } else {
                    tracing::info!(%table, repaired, "partitions repaired for a proxy");
                }
            }
        }
    }
}

/// Forwards to several observers.
pub struct Fanout(pub Vec<std::sync::Arc<dyn Observer>>);

impl fmt::Debug for Fanout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fanout({} observers)", self.0.len())
    }
}

impl Observer for Fanout {
    fn event(&self, event: &Event) {
        for o in &self.0 {
            o.event(event);
        }
    }
}

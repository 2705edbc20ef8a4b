//! Every metric the migrator exports, defined once with its help text ([`DEFINITIONS`]), and
//! [`Metrics`], the [`Observer`] that updates them from the core's events.
//!
//! Labels are bounded: `table` takes at most [`MAX_TABLES`] values (later tables share
//! `other`); histograms have no labels. Naming: `ferry_migrator_…`, counters end in `_total`,
//! durations are `_seconds`.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::core::Collector;
use prometheus::{
    Counter, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounterVec, Opts, Registry,
    TextEncoder,
};

use crate::job::Phase;
use crate::progress::{Event, Observer, TableName};

/// Distinct `table` label values; more tables share `other`.
pub const MAX_TABLES: usize = 1000;

/// One metric: name, help, labels.
#[derive(Debug)]
pub struct Def {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

const fn def(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Def {
    Def { name, help, labels }
}

const ROWS_READ: Def = def(
    "ferry_migrator_rows_read_total",
    &["table"],
    "Rows read from origin in scan pages whose writes all succeeded.",
);
const ROWS_WRITTEN: Def = def(
    "ferry_migrator_rows_written_total",
    &["table"],
    "Rows written to target (each as one or more timestamped statements).",
);
const BYTES_READ: Def = def(
    "ferry_migrator_bytes_read_total",
    &["table"],
    "Bytes of keys and cell values read from origin (serialized CQL values).",
);
const BYTES_WRITTEN: Def = def(
    "ferry_migrator_bytes_written_total",
    &["table"],
    "Bytes of keys and cell values written to target (serialized CQL values).",
);
const RANGES_DONE: Def = def(
    "ferry_migrator_ranges_done_total",
    &["table"],
    "Token ranges copied completely and checkpointed.",
);
const RANGES_FAILED: Def = def(
    "ferry_migrator_ranges_failed_total",
    &["table"],
    "Tables that ended FAILED (each stops at its first failing range).",
);
const RETRIES: Def = def(
    "ferry_migrator_retries_total",
    &["table"],
    "Scan pages or writes that failed with a retryable error and were retried.",
);
const THROTTLED: Def = def(
    "ferry_migrator_throttled_seconds_total",
    &[],
    "Time writers waited for the rows/s or bytes/s limit.",
);
const READ_LATENCY: Def = def(
    "ferry_migrator_read_latency_seconds",
    &[],
    "Time to fetch one scan page from origin.",
);
const WRITE_LATENCY: Def = def(
    "ferry_migrator_write_latency_seconds",
    &[],
    "Time from a page's arrival until target acknowledged all its rows (throttle waits \
     included).",
);
const REPAIRS: Def = def(
    "ferry_migrator_repairs_total",
    &["result"],
    "Partitions the proxies asked to repair (writes that failed on target under best-effort), \
     by result: repaired (origin's cells rewritten on target), failed (an error; the proxy is \
     told), refused (a table the migrator cannot repair, e.g. a counter table).",
);
const TABLE_PHASE: Def = def(
    "ferry_migrator_table_phase",
    &["table"],
    "A table's phase: 0 pending, 1 SCHEMA, 2 BACKFILL, 3 VALIDATING, 4 DONE, 5 FAILED, \
     6 CANCELLED.",
);
const PROGRESS: Def = def(
    "ferry_migrator_job_progress_ratio",
    &[],
    "Share of the current job's planned token ranges that are done (0 to 1; tables not \
     planned yet count as nothing done).",
);

const TABLE_RANGES: Def = def(
    "ferry_migrator_table_ranges",
    &["table"],
    "Token ranges the current job planned for the table.",
);
const TABLE_RANGES_DONE: Def = def(
    "ferry_migrator_table_ranges_done",
    &["table"],
    "Token ranges of the table done in the current job, checkpointed ones of a resumed job \
     included.",
);

/// Every metric, in exposition order.
pub const DEFINITIONS: &[&Def] = &[
    &ROWS_READ,
    &ROWS_WRITTEN,
    &BYTES_READ,
    &BYTES_WRITTEN,
    &RANGES_DONE,
    &RANGES_FAILED,
    &RETRIES,
    &REPAIRS,
    &THROTTLED,
    &READ_LATENCY,
    &WRITE_LATENCY,
    &TABLE_PHASE,
    &PROGRESS,
    &TABLE_RANGES,
    &TABLE_RANGES_DONE,
];

/// Latency buckets: a page takes milliseconds to seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The registry and its handles; an [`Observer`] of every job the process runs.
pub struct Metrics {
    registry: Registry,
    rows_read: IntCounterVec,
    rows_written: IntCounterVec,
    bytes_read: IntCounterVec,
    bytes_written: IntCounterVec,
    ranges_done: IntCounterVec,
    ranges_failed: IntCounterVec,
    retries: IntCounterVec,
    repairs: IntCounterVec,
    throttled: Counter,
    read_latency: Histogram,
    write_latency: Histogram,
    phase: GaugeVec,
    progress: Gauge,
    /// Per-table progress, so a dashboard shows each table's share done.
    table_ranges: GaugeVec,
    table_ranges_done: GaugeVec,
    /// Label per table (bounded) and the current job's (done, total) ranges per table.
    tables: Mutex<Tables>,
}

#[derive(Default)]
struct Tables {
    labels: HashMap<TableName, String>,
    ranges: HashMap<TableName, (u64, u64)>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn register<C: Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    // Names are unique constants (a test renders them all), so registering cannot collide.
    if let Err(e) = r.register(Box::new(c.clone())) {
        tracing::error!(error = %e, "metric registration failed");
    }
    c
}

fn counter_vec(r: &Registry, d: &Def) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(d.name, d.help), d.labels)
        .unwrap_or_else(|e| unreachable!("metric {} is well-formed: {e}", d.name));
    register(r, c)
}

fn gauge_vec(r: &Registry, d: &Def) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(d.name, d.help), d.labels)
        .unwrap_or_else(|e| unreachable!("metric {} is well-formed: {e}", d.name));
    register(r, g)
}

fn histogram(r: &Registry, d: &Def) -> Histogram {
    let opts = HistogramOpts::new(d.name, d.help).buckets(LATENCY_BUCKETS.to_vec());
    let h = Histogram::with_opts(opts)
        .unwrap_or_else(|e| unreachable!("metric {} is well-formed: {e}", d.name));
    register(r, h)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let well_formed = |name: &str, e: prometheus::Error| -> ! {
            unreachable!("metric {name} is well-formed: {e}")
        };
        let throttled = Counter::with_opts(Opts::new(THROTTLED.name, THROTTLED.help))
            .unwrap_or_else(|e| well_formed(THROTTLED.name, e));
        let phase = GaugeVec::new(
            Opts::new(TABLE_PHASE.name, TABLE_PHASE.help),
            TABLE_PHASE.labels,
        )
        .unwrap_or_else(|e| well_formed(TABLE_PHASE.name, e));
        let progress = Gauge::with_opts(Opts::new(PROGRESS.name, PROGRESS.help))
            .unwrap_or_else(|e| well_formed(PROGRESS.name, e));
        Self {
            rows_read: counter_vec(&r, &ROWS_READ),
            rows_written: counter_vec(&r, &ROWS_WRITTEN),
            bytes_read: counter_vec(&r, &BYTES_READ),
            bytes_written: counter_vec(&r, &BYTES_WRITTEN),
            ranges_done: counter_vec(&r, &RANGES_DONE),
            ranges_failed: counter_vec(&r, &RANGES_FAILED),
            retries: counter_vec(&r, &RETRIES),
            repairs: counter_vec(&r, &REPAIRS),
            throttled: register(&r, throttled),
            read_latency: histogram(&r, &READ_LATENCY),
            write_latency: histogram(&r, &WRITE_LATENCY),
            phase: register(&r, phase),
            progress: register(&r, progress),
            table_ranges: gauge_vec(&r, &TABLE_RANGES),
            table_ranges_done: gauge_vec(&r, &TABLE_RANGES_DONE),
            registry: r,
            tables: Mutex::new(Tables::default()),
        }
    }

    /// Prometheus text.
    pub fn render(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock leaves plain numbers behind: still usable.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn label(&self, t: &TableName) -> String {
        let mut tables = self.tables();
        let n = tables.labels.len();
        tables
            .labels
            .entry(t.clone())
            .or_insert_with(|| {
                if n < MAX_TABLES {
                    t.to_string()
                } else {
                    "other".to_owned()
                }
            })
            .clone()
    }

    fn update_progress(&self, tables: &Tables) {
        let (done, total) = tables
            .ranges
            .values()
            .fold((0u64, 0u64), |(d, t), (dd, tt)| (d + dd, t + tt));
        self.progress.set(if total == 0 {
            0.0
        } else {
            done as f64 / total as f64
        });
    }
}

fn phase_value(p: &Phase) -> f64 {
    match p {
        Phase::Schema => 1.0,
        Phase::Backfill => 2.0,
        Phase::Validating => 3.0,
        Phase::Done => 4.0,
        Phase::Failed(_) => 5.0,
        Phase::Cancelled => 6.0,
    }
}

impl Observer for Metrics {
    fn event(&self, event: &Event) {
        match event {
            Event::JobPlanned { tables } => {
                let mut t = self.tables();
                t.ranges.clear();
                drop(t);
                for table in tables {
                    let label = self.label(table);
                    self.phase.with_label_values(&[label.as_str()]).set(0.0);
                }
                self.progress.set(0.0);
            }
            Event::Phase { table, phase } => {
                let label = self.label(table);
                self.phase
                    .with_label_values(&[label.as_str()])
                    .set(phase_value(phase));
                if matches!(phase, Phase::Failed(_)) {
                    self.ranges_failed
                        .with_label_values(&[label.as_str()])
                        .inc();
                }
            }
            Event::RangesPlanned {
                table,
                total,
                already_done,
            } => {
                let label = self.label(table);
                self.table_ranges
                    .with_label_values(&[label.as_str()])
                    .set(f64::from(*total));
                self.table_ranges_done
                    .with_label_values(&[label.as_str()])
                    .set(f64::from(*already_done));
                let mut t = self.tables();
                t.ranges
                    .insert(table.clone(), (u64::from(*already_done), u64::from(*total)));
                self.update_progress(&t);
            }
            Event::Written { table, rows, bytes } => {
                let label = self.label(table);
                self.rows_written
                    .with_label_values(&[label.as_str()])
                    .inc_by(*rows);
                self.bytes_written
                    .with_label_values(&[label.as_str()])
                    .inc_by(*bytes);
            }
            Event::Page {
                table,
                rows,
                bytes,
                read,
                write,
            } => {
                let label = self.label(table);
                self.rows_read
                    .with_label_values(&[label.as_str()])
                    .inc_by(*rows);
                self.bytes_read
                    .with_label_values(&[label.as_str()])
                    .inc_by(*bytes);
                self.read_latency.observe(read.as_secs_f64());
                self.write_latency.observe(write.as_secs_f64());
            }
            Event::RangeDone { table, .. } => {
                let label = self.label(table);
                self.ranges_done.with_label_values(&[label.as_str()]).inc();
                self.table_ranges_done
                    .with_label_values(&[label.as_str()])
                    .inc();
                let mut t = self.tables();
                if let Some((done, _)) = t.ranges.get_mut(table) {
                    *done += 1;
                }
                self.update_progress(&t);
            }
            Event::Retry { table, .. } => {
                let label = self.label(table);
                self.retries.with_label_values(&[label.as_str()]).inc();
            }
            Event::Throttled { micros } => self.throttled.inc_by(*micros as f64 / 1e6),
            Event::PartitionsRepaired {
                repaired,
                failed,
                refused,
                ..
            } => {
                for (result, n) in [
                    ("repaired", repaired),
                    ("failed", failed),
                    ("refused", refused),
                ] {
                    if *n > 0 {
                        self.repairs.with_label_values(&[result]).inc_by(*n);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_definition_is_rendered_with_its_help() {
        let m = Metrics::new();
        let t = TableName::new("ks", "t");
        m.event(&Event::JobPlanned {
            tables: vec![t.clone()],
        });
        m.event(&Event::RangesPlanned {
            table: t.clone(),
            total: 4,
            already_done: 1,
        });
        m.event(&Event::Written {
            table: t.clone(),
            rows: 3,
            bytes: 30,
        });
        m.event(&Event::Page {
            table: t.clone(),
            rows: 3,
            bytes: 30,
            read: Duration::from_millis(2),
            write: Duration::from_millis(3),
        });
        m.event(&Event::RangeDone {
            table: t.clone(),
            range: 0,
        });
        m.event(&Event::Retry {
            table: t.clone(),
            range: 1,
            attempt: 1,
            error: "x".into(),
        });
        m.event(&Event::Throttled { micros: 1_500_000 });
        m.event(&Event::PartitionsRepaired {
            table: t.clone(),
            repaired: 2,
            failed: 0,
            refused: 1,
        });
        m.event(&Event::Phase {
            table: t,
            phase: Phase::Failed("x".into()),
        });
        let text = String::from_utf8(m.render().unwrap_or_default()).unwrap_or_default();
        for d in DEFINITIONS {
            assert!(
                text.contains(&format!("# HELP {} {}", d.name, d.help)),
                "{}",
                d.name
            );
        }
        assert!(
            text.contains("ferry_migrator_rows_written_total{table=\"ks.t\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("ferry_migrator_job_progress_ratio 0.5"),
            "{text}"
        );
        for line in [
            "ferry_migrator_table_ranges{table=\"ks.t\"} 4",
            "ferry_migrator_table_ranges_done{table=\"ks.t\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        assert!(
            text.contains("ferry_migrator_table_phase{table=\"ks.t\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("ferry_migrator_throttled_seconds_total 1.5"),
            "{text}"
        );
    }

    #[test]
    fn table_labels_are_bounded() {
        let m = Metrics::new();
        for i in 0..=MAX_TABLES {
            let t = TableName::new("ks", format!("t{i}"));
            m.event(&Event::Written {
                table: t,
                rows: 1,
                bytes: 1,
            });
        }
        let text = String::from_utf8(m.render().unwrap_or_default()).unwrap_or_default();
        assert!(text.contains("ferry_migrator_rows_written_total{table=\"other\"} 1"));
        assert!(!text.contains(&format!("t{MAX_TABLES}\"")));
    }
}

//! Every metric the proxy exports, defined once with its help text, and the handles the request
//! path updates.
//!
//! # Layout
//! - **Definitions**: one [`Def`] per metric (name, help, kind) in [`DEFINITIONS`]; nothing is
//!   registered except through them, and a test checks the names and help texts.
//! - [`Metrics`]: the registry and pre-resolved handles. Per-cluster handles ([`ClusterMetrics`])
//!   sit in arrays indexed by [`ClusterId::index`] and [`RequestClass`], so the hot path does an
//!   array index and an atomic add: no label hashing, no allocation.
//! - [`FailureLabel`]: the bounded `error` label — the proxy's own failures
//!   ([`BackendError::label`]) and the CQL ERROR codes clusters answer.
//! - [`TableMap`]: per-`keyspace.table` state, bounded to [`MAX_TABLES`] tables; later tables
//!   share the [`OTHER_TABLE`] bucket, so a schema with many tables cannot grow the label set.
//! - [`MigrationFamilies`]: the per-table migration gauges the Update link sets.
//! - **Scrape-time values**: gauges whose truth lives elsewhere (prepared cache size, pending
//!   repairs, cluster health, the primary) are set by [`Metrics::render`] from a [`Snapshot`].
//!
//! Naming: `ferry_proxy_…`, counters end in `_total`, durations are `_seconds` histograms.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use ferry_cql::Compression;
use ferry_cql::envelope::{BodyExtensions, Envelope};
use ferry_cql::protocol::flags;
use ferry_cql::response::error::ErrorCode;
use prometheus::core::Collector;
use prometheus::local::LocalHistogram;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::completion::plain_body;
use crate::error::{BackendError, RequestKind};
use crate::settings::{ClusterId, ReadMode};
use crate::tls::HandshakeFailure;

/// Distinct `table` label values per metric; more tables share [`OTHER_TABLE`]. Prometheus
/// handles a few thousand series per metric comfortably; 1000 tables covers real schemas.
pub(crate) const MAX_TABLES: usize = 1000;
/// The bucket for tables past [`MAX_TABLES`]. Real names are `keyspace.table`, so it cannot
/// collide with one.
pub(crate) const OTHER_TABLE: &str = "other";

/// What kind of metric a definition registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefKind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric: its name, help text, kind and labels.
#[derive(Debug)]
pub(crate) struct Def {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: DefKind,
    pub labels: &'static [&'static str],
}

const fn def(
    name: &'static str,
    kind: DefKind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Def {
    Def {
        name,
        help,
        kind,
        labels,
    }
}

use DefKind::{Counter, Gauge, Histogram as Hist};

const REQUESTS: Def = def(
    "ferry_proxy_requests_total",
    Counter,
    &["cluster", "kind"],
    "Requests sent to a cluster that completed (answered, failed or timed out), by kind: read, \
     write or other (handshake, PREPARE, DDL, USE, heartbeats excluded).",
);
const FAILURES: Def = def(
    "ferry_proxy_request_failures_total",
    Counter,
    &["cluster", "kind", "error"],
    "Requests to a cluster that failed: an ERROR answer (error = the CQL code's name) or no \
     answer (timeout, connection_lost, streams_exhausted, connect).",
);
const FAILED_WRITES: Def = def(
    "ferry_proxy_failed_writes_total",
    Counter,
    &["failed_on"],
    "Dual writes that did not succeed on one or both clusters, as the proxy decided the \
     client's answer: failed_on = origin, target or both (zdm-proxy's \
     proxy_failed_writes_total). Counted whatever the target failure policy answered.",
);
const DURATION: Def = def(
    "ferry_proxy_request_duration_seconds",
    Hist,
    &["cluster", "kind"],
    "Time from sending a request to a cluster to its answer, for answered requests.",
);
const INFLIGHT: Def = def(
    "ferry_proxy_inflight_requests",
    Gauge,
    &["cluster"],
    "Requests sent to a cluster and waiting for its answer (heartbeats included).",
);
const STREAM_IDS: Def = def(
    "ferry_proxy_stream_ids_in_use",
    Gauge,
    &["cluster"],
    "Stream ids held on the backend connections to a cluster: waiting requests plus timed-out \
     ones whose late answer has not arrived yet.",
);
const CLIENT_CONNECTIONS: Def = def(
    "ferry_proxy_client_connections",
    Gauge,
    &[],
    "Client connections open now.",
);
const SHARED_PAIRS: Def = def(
    "ferry_proxy_shared_backend_pairs",
    Gauge,
    &[],
    "Pairs of backend connections (one per cluster) shared by client connections with \
     identical handshakes (share_backend_connections).",
);
const CLIENT_REFUSED: Def = def(
    "ferry_proxy_client_connections_refused_total",
    Counter,
    &[],
    "Client connections refused because max_client_connections were open.",
);
const CLIENT_TLS_FAILURES: Def = def(
    "ferry_proxy_client_tls_handshake_failures_total",
    Counter,
    &["reason"],
    "Client connections closed because their TLS handshake failed, by reason: timeout, not_tls \
     (plain CQL or other bytes), certificate (client certificate missing or refused) or other.",
);
const BACKEND_CONNECTIONS: Def = def(
    "ferry_proxy_backend_connections",
    Gauge,
    &["cluster"],
    "Connections from the proxy to a cluster open now (one per cluster per client connection).",
);
const CONNECT_FAILURES: Def = def(
    "ferry_proxy_backend_connect_failures_total",
    Counter,
    &["cluster"],
    "Failed attempts to open a connection to a cluster.",
);
const PREPARED_ENTRIES: Def = def(
    "ferry_proxy_prepared_cache_entries",
    Gauge,
    &[],
    "Prepared statements in the proxy's cache (origin id to target id).",
);
const PREPARED_MISSES: Def = def(
    "ferry_proxy_prepared_cache_misses_total",
    Counter,
    &[],
    "EXECUTE or BATCH children naming a prepared id the cache does not hold (answered \
     UNPREPARED so the driver prepares again).",
);
const DUAL_COMPARED: Def = def(
    "ferry_proxy_dual_reads_compared_total",
    Counter,
    &["table"],
    "Reads mirrored to the secondary (read mode dual-async) whose two results were compared, \
     per keyspace.table (at most 1000 tables, then table=\"other\").",
);
const DUAL_MISMATCHES: Def = def(
    "ferry_proxy_dual_read_mismatches_total",
    Counter,
    &["table"],
    "Compared dual reads whose rows differed between primary and secondary, per keyspace.table.",
);
const DUAL_SECONDARY_FAILURES: Def = def(
    "ferry_proxy_dual_read_secondary_failures_total",
    Counter,
    &["table"],
    "Dual reads the secondary failed or answered with an error while the primary answered, per \
     keyspace.table.",
);
const TARGET_WRITE_FAILURES: Def = def(
    "ferry_proxy_target_write_failures_total",
    Counter,
    &["table"],
    "Writes that failed on the target only and were acknowledged anyway (target failure policy \
     best-effort), recorded for repair, per keyspace.table (\"unknown\" when not known).",
);
const REPAIRS_PENDING: Def = def(
    "ferry_proxy_repairs_pending",
    Gauge,
    &[],
    "Recorded target write failures not yet taken for repair.",
);
const JOURNAL_OVERFLOWS: Def = def(
    "ferry_proxy_repair_journal_overflows_total",
    Counter,
    &[],
    "Records the repair journal's full queue turned away; their tables are journaled as needing \
     re-migration instead.",
);
const JOURNAL_WRITE_ERRORS: Def = def(
    "ferry_proxy_repair_journal_write_errors_total",
    Counter,
    &[],
    "Writes, syncs or compactions of the repair journal that failed (a full or failing disk): \
     what they held may not survive a restart.",
);
const CLUSTER_READY: Def = def(
    "ferry_proxy_cluster_ready",
    Gauge,
    &["cluster"],
    "1 while a cluster counts as UP in /health/readiness, else 0.",
);
const PRIMARY: Def = def(
    "ferry_proxy_primary",
    Gauge,
    &["cluster"],
    "1 for the cluster that is primary now (serves reads), 0 for the other.",
);

const MIGRATION_PHASE: Def = def(
    "ferry_proxy_migration_table_phase",
    Gauge,
    &["table"],
    "A table's migration phase as the migrator reported it over the Update channel: 0 pending, \
     1 backfilling, 2 backfilled, 3 validated, 4 failed; per keyspace.table (at most 1000 \
     tables; later ones only in /status).",
);
const MIGRATION_RANGES_DONE: Def = def(
    "ferry_proxy_migration_ranges_done",
    Gauge,
    &["table"],
    "Token ranges of a table the migrator has copied, as last reported, per keyspace.table.",
);
const MIGRATION_RANGES_TOTAL: Def = def(
    "ferry_proxy_migration_ranges",
    Gauge,
    &["table"],
    "Token ranges the migrator splits a table into, as last reported, per keyspace.table.",
);
const MIGRATOR_CONNECTED: Def = def(
    "ferry_proxy_migrator_connected",
    Gauge,
    &[],
    "1 while a migrator is connected over the Update channel, else 0.",
);
// Beside the 0/1 above (dashboards and alerts use it): how many of a split job's workers
// report right now, so a missing one shows.
const MIGRATORS_CONNECTED: Def = def(
    "ferry_proxy_migrators_connected",
    Gauge,
    &[],
    "ferry migrate workers connected over the Update channel now.",
);

// Dashboards show the read mode next to the primary; it changes live through PUT /read-mode.
const READ_MODE: Def = def(
    "ferry_proxy_read_mode",
    Gauge,
    &["mode"],
    "1 for the current read mode (primary-only or dual-async), else 0.",
);

/// Every metric the proxy exports.
pub(crate) const DEFINITIONS: [&Def; 29] = [
    &REQUESTS,
    &FAILURES,
    &FAILED_WRITES,
    &DURATION,
    &INFLIGHT,
    &STREAM_IDS,
    &CLIENT_CONNECTIONS,
    &CLIENT_REFUSED,
    &SHARED_PAIRS,
    &CLIENT_TLS_FAILURES,
    &BACKEND_CONNECTIONS,
    &CONNECT_FAILURES,
    &PREPARED_ENTRIES,
    &PREPARED_MISSES,
    &DUAL_COMPARED,
    &DUAL_MISMATCHES,
    &DUAL_SECONDARY_FAILURES,
    &TARGET_WRITE_FAILURES,
    &REPAIRS_PENDING,
    &JOURNAL_OVERFLOWS,
    &JOURNAL_WRITE_ERRORS,
    &CLUSTER_READY,
    &PRIMARY,
    &MIGRATION_PHASE,
    &MIGRATION_RANGES_DONE,
    &MIGRATION_RANGES_TOTAL,
    &MIGRATOR_CONNECTED,
    &MIGRATORS_CONNECTED,
    &READ_MODE,
];

/// Latency buckets (seconds): from 100 µs (a proxied read on a local network) to 10 s (the
/// default request timeout).
const DURATION_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The `kind` label: what a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestClass {
    Read = 0,
    Write = 1,
    /// Handshake, PREPARE, DDL, USE, REGISTER, system-table lookups.
    Other = 2,
}

impl RequestClass {
    const ALL: [RequestClass; 3] = [Self::Read, Self::Write, Self::Other];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Other => "other",
        }
    }
}

impl From<RequestKind> for RequestClass {
    fn from(kind: RequestKind) -> Self {
        match kind {
            RequestKind::Read { .. } => Self::Read,
            RequestKind::Write { .. } => Self::Write,
            RequestKind::Other => Self::Other,
        }
    }
}

/// The proxy's own failure labels, as [`BackendError::label`] spells them.
const BACKEND_LABELS: [&str; 4] = ["timeout", "connection_lost", "streams_exhausted", "connect"];
/// An ERROR whose code the spec does not define, or whose body cannot be read.
const UNKNOWN_ERROR: &str = "unknown_error";
const FAILURE_LABELS: usize = BACKEND_LABELS.len() + ErrorCode::ALL.len() + 1;

/// One value of the `error` label: an index into a fixed list, so per-label handles live in an
/// array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FailureLabel(usize);

impl FailureLabel {
    const UNKNOWN: Self = Self(FAILURE_LABELS - 1);

    pub(crate) fn of_backend(e: &BackendError) -> Self {
        BACKEND_LABELS
            .iter()
            .position(|l| *l == e.label())
            .map_or(Self::UNKNOWN, Self)
    }

    pub(crate) fn of_code(code: Option<i32>) -> Self {
        code.and_then(|c| ErrorCode::try_from(c).ok())
            .and_then(|c| ErrorCode::ALL.iter().position(|x| *x == c))
            .map_or(Self::UNKNOWN, |i| Self(BACKEND_LABELS.len() + i))
    }

    pub(crate) fn name(self) -> &'static str {
        let codes = BACKEND_LABELS.len();
        match self.0 {
            i if i < codes => BACKEND_LABELS[i],
            i if i - codes < ErrorCode::ALL.len() => ErrorCode::ALL[i - codes].name(),
            _ => UNKNOWN_ERROR,
        }
    }
}

/// The code of an ERROR envelope (after any tracing id, warnings and custom payload); `None`
/// when the body cannot be read. Only failures pay for this.
pub(crate) fn error_code(env: &Envelope, compression: Option<Compression>) -> Option<i32> {
    let body: Bytes = plain_body(env, compression).ok()?;
    let mut header = env.header;
    header.flags &= !flags::COMPRESSION;
    let (_, rest) = BodyExtensions::decode(&header, &body).ok()?;
    let code: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    Some(i32::from_be_bytes(code))
}

/// Why the metrics could not be set up (a definition the client library refuses).
#[derive(Debug, thiserror::Error)]
#[error("metric {name}: {source}")]
pub(crate) struct MetricsError {
    pub name: &'static str,
    pub source: prometheus::Error,
}

fn opts(d: &Def) -> Opts {
    Opts::new(d.name, d.help)
}

/// Handles for one cluster, resolved once.
#[derive(Debug)]
pub(crate) struct ClusterMetrics {
    cluster: ClusterId,
    requests: [IntCounter; 3],
    duration: [Histogram; 3],
    /// Resolved on first use: most (kind, error) pairs never happen, and unresolved ones stay
    /// out of /metrics instead of exporting a hundred zeros.
    failures: [[OnceLock<Option<IntCounter>>; FAILURE_LABELS]; 3],
    failure_family: IntCounterVec,
    inflight: IntGauge,
    /// Timed-out requests still holding a stream id; exported as part of `stream_ids`.
    orphaned: AtomicI64,
    stream_ids: IntGauge,
    backend_connections: IntGauge,
    connect_failures: IntCounter,
    ready: IntGauge,
    primary: IntGauge,
}

impl ClusterMetrics {
    /// A meter for one backend reader's read batches (see [`BatchMeter`]).
    pub(crate) fn batch_meter(&self) -> BatchMeter {
        BatchMeter {
            requests: self.requests.clone(),
            counts: [0; 3],
            inflight: self.inflight.clone(),
            released: 0,
            duration: self.duration.clone(),
            local: None,
        }
    }

    /// [`ClusterMetrics::completed`] for an answer read in a batch: a success is counted in
    /// `batch` until [`BatchMeter::flush`] and timed at once; an ERROR answer goes to the
    /// shared metrics at once (rare, and labelled).
    pub(crate) fn completed_in(
        &self,
        batch: &mut BatchMeter,
        class: RequestClass,
        result: &Result<Envelope, BackendError>,
        elapsed: Duration,
        compression: Option<Compression>,
    ) {
        match result {
            Ok(env) if env.header.opcode != ferry_cql::protocol::Opcode::Error => {
                let k = class as usize;
                batch.counts[k] += 1;
                match &batch.local {
                    Some(local) => local[k].observe(elapsed.as_secs_f64()),
                    None => self.duration[k].observe(elapsed.as_secs_f64()),
                }
            }
            _ => self.completed(class, result, elapsed, compression),
        }
    }

    /// A request to this cluster finished: count it, time it if answered, label a failure.
    pub(crate) fn completed(
        &self,
        class: RequestClass,
        result: &Result<Envelope, BackendError>,
        elapsed: Duration,
        compression: Option<Compression>,
    ) {
        let k = class as usize;
        self.requests[k].inc();
        match result {
            Ok(env) => {
                self.duration[k].observe(elapsed.as_secs_f64());
                if env.header.opcode == ferry_cql::protocol::Opcode::Error {
                    self.failed(class, FailureLabel::of_code(error_code(env, compression)));
                }
            }
            Err(e) => self.failed(class, FailureLabel::of_backend(e)),
        }
    }

    fn failed(&self, class: RequestClass, label: FailureLabel) {
        let counter = self.failures[class as usize][label.0].get_or_init(|| {
            self.failure_family
                .get_metric_with_label_values(&[self.cluster.name(), class.name(), label.name()])
                .ok()
        });
        if let Some(c) = counter {
            c.inc();
        }
    }

    /// A stream id was taken for a request.
    pub(crate) fn sent(&self) {
        self.inflight.inc();
    }

    /// An answer arrived and its stream id is free: taken off the in-flight gauge at
    /// [`BatchMeter::flush`].
    pub(crate) fn released_in(&self, batch: &mut BatchMeter) {
        batch.released += 1;
    }

    /// A request timed out; its stream id stays taken until the late answer arrives.
    pub(crate) fn orphaned(&self) {
        self.inflight.dec();
        self.orphaned.fetch_add(1, Ordering::Relaxed);
    }

    /// A timed-out request's late answer arrived (or its connection closed).
    pub(crate) fn orphan_released(&self, n: usize) {
        self.orphaned.fetch_sub(n as i64, Ordering::Relaxed);
    }

    /// Many requests' stream ids freed at once (a connection closed or dropped).
    pub(crate) fn released_many(&self, busy: usize, orphaned: usize) {
        self.inflight.sub(busy as i64);
        self.orphan_released(orphaned);
    }

    pub(crate) fn connected(&self) {
        self.backend_connections.inc();
    }

    pub(crate) fn disconnected(&self) {
        self.backend_connections.dec();
    }

    pub(crate) fn connect_failed(&self) {
        self.connect_failures.inc();
    }
}

/// One backend reader's counts for the read batch at hand, added to its cluster's shared
/// metrics when the batch ends ([`BatchMeter::flush`], before the reader waits again; and when
/// dropped): each shared update is an atomic operation, and under load a batch holds tens of
/// answers. Between flushes `/metrics` lags by at most the batch being worked through.
/// Latencies are batched only while the connection is busy ([`BatchMeter::batch`]): the
/// library's local histograms keep a bucket array per kind on the heap, about 1 KiB per client
/// connection, which idle connections must not pay.
#[derive(Debug)]
pub(crate) struct BatchMeter {
    requests: [IntCounter; 3],
    /// Successful answers not yet added to `requests`, by [`RequestClass`].
    counts: [u64; 3],
    inflight: IntGauge,
    /// Stream ids freed and not yet taken off `inflight`.
    released: i64,
    duration: [Histogram; 3],
    /// Latencies not yet added to `duration` (four atomics per observation there), while busy.
    local: Option<Box<[LocalHistogram; 3]>>,
}

/// Answers in one read batch from which its latencies are batched too: a handshake's single
/// answer keeps the connection's memory as it was.
const LOCAL_LATENCIES_FROM: usize = 8;

impl BatchMeter {
    /// A read batch of `answers` starts: a large one keeps its latencies locally until
    /// [`BatchMeter::flush`].
    pub(crate) fn batch(&mut self, answers: usize) {
        if answers >= LOCAL_LATENCIES_FROM && self.local.is_none() {
            self.local = Some(Box::new(self.duration.clone().map(|h| h.local())));
        }
    }

    /// The connection went idle: no memory kept for batches (what was counted is flushed).
    pub(crate) fn idle(&mut self) {
        self.flush();
        self.local = None;
    }

    /// Adds what was counted to the shared metrics.
    pub(crate) fn flush(&mut self) {
        for (counter, n) in self.requests.iter().zip(&mut self.counts) {
            if *n > 0 {
                counter.inc_by(std::mem::take(n));
            }
        }
        if self.released > 0 {
            self.inflight.sub(std::mem::take(&mut self.released));
        }
        if let Some(local) = &self.local {
            for h in local.iter() {
                h.flush();
            }
        }
    }
}

impl Drop for BatchMeter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The counters behind dual-read comparisons, cloned into the comparison statistics.
#[derive(Debug, Clone)]
pub(crate) struct DualReadFamilies {
    compared: IntCounterVec,
    mismatches: IntCounterVec,
    secondary_failures: IntCounterVec,
}

/// One table's dual-read counters.
#[derive(Debug)]
pub(crate) struct DualReadCounters {
    pub compared: IntCounter,
    pub mismatches: IntCounter,
    pub secondary_failures: IntCounter,
}

impl DualReadFamilies {
    /// Resolves `table`'s counters (once per table: the caller keeps them).
    pub(crate) fn for_table(&self, table: &str) -> Option<DualReadCounters> {
        Some(DualReadCounters {
            compared: self.compared.get_metric_with_label_values(&[table]).ok()?,
            mismatches: self
                .mismatches
                .get_metric_with_label_values(&[table])
                .ok()?,
            secondary_failures: self
                .secondary_failures
                .get_metric_with_label_values(&[table])
                .ok()?,
        })
    }
}

/// The per-table migration gauges, cloned into the migration state.
#[derive(Debug, Clone)]
pub(crate) struct MigrationFamilies {
    phase: IntGaugeVec,
    ranges_done: IntGaugeVec,
    ranges_total: IntGaugeVec,
    connected: IntGauge,
    /// The number behind `connected`.
    workers: IntGauge,
}

/// One table's migration gauges.
#[derive(Debug)]
pub(crate) struct MigrationGauges {
    pub phase: IntGauge,
    pub ranges_done: IntGauge,
    pub ranges_total: IntGauge,
}

impl MigrationFamilies {
    /// Resolves `table`'s gauges (once per table: the caller keeps them).
    pub(crate) fn for_table(&self, table: &str) -> Option<MigrationGauges> {
        Some(MigrationGauges {
            phase: self.phase.get_metric_with_label_values(&[table]).ok()?,
            ranges_done: self
                .ranges_done
                .get_metric_with_label_values(&[table])
                .ok()?,
            ranges_total: self
                .ranges_total
                .get_metric_with_label_values(&[table])
                .ok()?,
        })
    }

    /// `workers` `ferry migrate` workers are connected now.
    pub(crate) fn set_connected(&self, workers: usize) {
        self.connected.set(i64::from(workers > 0));
        self.workers.set(i64::try_from(workers).unwrap_or(i64::MAX));
    }
}

/// Values read from elsewhere when /metrics is scraped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot {
    pub prepared_entries: usize,
    pub prepared_misses: u64,
    pub repairs_pending: u64,
    /// The repair journal's overflows and write errors so far (zero without a journal).
    pub journal_overflows: u64,
    pub journal_write_errors: u64,
    pub ready: [bool; 2],
    pub primary: ClusterId,
    pub read_mode: ReadMode,
}

/// The proxy's registry and every handle into it.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    clusters: [ClusterMetrics; 2],
    client_connections: IntGauge,
    client_refused: IntCounter,
    shared_pairs: IntGauge,
    /// `failed_on` = origin, target, both.
    failed_writes: [IntCounter; 3],
    /// By [`HandshakeFailure::ALL`] order.
    client_tls_failures: [IntCounter; 4],
    prepared_entries: IntGauge,
    prepared_misses: IntCounter,
    dual_reads: DualReadFamilies,
    target_write_failures: IntCounterVec,
    repairs_pending: IntGauge,
    journal_overflows: IntCounter,
    journal_write_errors: IntCounter,
    migration: MigrationFamilies,
    /// By [`ReadMode::ALL`] order; set at scrape time.
    read_mode: [IntGauge; 2],
    /// Scrapes set gauges and catch counters up from their sources: one at a time, so two
    /// concurrent scrapes cannot add the same delta twice.
    scrape: Mutex<()>,
}

/// Registers metrics in one registry, naming the definition in any error.
struct Builder {
    registry: Registry,
}

impl Builder {
    /// Registers `made` under `d`, which must be listed in [`DEFINITIONS`] with `kind`: the
    /// list is what the naming test checks, so nothing may bypass it.
    fn register<C: Collector + Clone + 'static>(
        &self,
        d: &'static Def,
        kind: DefKind,
        made: Result<C, prometheus::Error>,
    ) -> Result<C, MetricsError> {
        let wrap = |source| MetricsError {
            name: d.name,
            source,
        };
        let listed = DEFINITIONS
            .iter()
            .any(|l| l.name == d.name && l.kind == kind);
        if !listed || d.kind != kind {
            let problem = format!("not listed in DEFINITIONS as a {kind:?}");
            return Err(wrap(prometheus::Error::Msg(problem)));
        }
        let c = made.map_err(wrap)?;
        self.registry.register(Box::new(c.clone())).map_err(wrap)?;
        Ok(c)
    }

    fn counter(&self, d: &'static Def) -> Result<IntCounter, MetricsError> {
        self.register(d, Counter, IntCounter::with_opts(opts(d)))
    }

    fn gauge(&self, d: &'static Def) -> Result<IntGauge, MetricsError> {
        self.register(d, Gauge, IntGauge::with_opts(opts(d)))
    }

    fn counters(&self, d: &'static Def) -> Result<IntCounterVec, MetricsError> {
        self.register(d, Counter, IntCounterVec::new(opts(d), d.labels))
    }

    fn gauges(&self, d: &'static Def) -> Result<IntGaugeVec, MetricsError> {
        self.register(d, Gauge, IntGaugeVec::new(opts(d), d.labels))
    }

    fn histograms(&self, d: &'static Def) -> Result<HistogramVec, MetricsError> {
        let o = HistogramOpts::new(d.name, d.help).buckets(DURATION_BUCKETS.to_vec());
        self.register(d, Hist, HistogramVec::new(o, d.labels))
    }
}

fn child<T>(d: &'static Def, r: Result<T, prometheus::Error>) -> Result<T, MetricsError> {
    r.map_err(|source| MetricsError {
        name: d.name,
        source,
    })
}

impl Metrics {
    pub(crate) fn new() -> Result<Self, MetricsError> {
        let b = Builder {
            registry: Registry::new(),
        };
        let requests = b.counters(&REQUESTS)?;
        let failures = b.counters(&FAILURES)?;
        let duration = b.histograms(&DURATION)?;
        let inflight = b.gauges(&INFLIGHT)?;
        let stream_ids = b.gauges(&STREAM_IDS)?;
        let backend_connections = b.gauges(&BACKEND_CONNECTIONS)?;
        let connect_failures = b.counters(&CONNECT_FAILURES)?;
        let ready = b.gauges(&CLUSTER_READY)?;
        let primary = b.gauges(&PRIMARY)?;
        let cluster = |id: ClusterId| -> Result<ClusterMetrics, MetricsError> {
            let c = id.name();
            let req = RequestClass::ALL.map(|k| {
                child(
                    &REQUESTS,
                    requests.get_metric_with_label_values(&[c, k.name()]),
                )
            });
            let dur = RequestClass::ALL.map(|k| {
                child(
                    &DURATION,
                    duration.get_metric_with_label_values(&[c, k.name()]),
                )
            });
            let [r0, r1, r2] = req;
            let [d0, d1, d2] = dur;
            Ok(ClusterMetrics {
                cluster: id,
                requests: [r0?, r1?, r2?],
                duration: [d0?, d1?, d2?],
                failures: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
                failure_family: failures.clone(),
                inflight: child(&INFLIGHT, inflight.get_metric_with_label_values(&[c]))?,
                orphaned: AtomicI64::new(0),
                stream_ids: child(&STREAM_IDS, stream_ids.get_metric_with_label_values(&[c]))?,
                backend_connections: child(
                    &BACKEND_CONNECTIONS,
                    backend_connections.get_metric_with_label_values(&[c]),
                )?,
                connect_failures: child(
                    &CONNECT_FAILURES,
                    connect_failures.get_metric_with_label_values(&[c]),
                )?,
                ready: child(&CLUSTER_READY, ready.get_metric_with_label_values(&[c]))?,
                primary: child(&PRIMARY, primary.get_metric_with_label_values(&[c]))?,
            })
        };
        let clusters = [cluster(ClusterId::Origin)?, cluster(ClusterId::Target)?];
        let failed_writes = b.counters(&FAILED_WRITES)?;
        let failed_on = |side: &str| {
            child(
                &FAILED_WRITES,
                failed_writes.get_metric_with_label_values(&[side]),
            )
        };
        let tls_failures = b.counters(&CLIENT_TLS_FAILURES)?;
        let [t0, t1, t2, t3] = HandshakeFailure::ALL.map(|f| {
            child(
                &CLIENT_TLS_FAILURES,
                tls_failures.get_metric_with_label_values(&[f.label()]),
            )
        });
        let read_modes = b.gauges(&READ_MODE)?;
        let [m0, m1] = ReadMode::ALL.map(|m| {
            child(
                &READ_MODE,
                read_modes.get_metric_with_label_values(&[m.name()]),
            )
        });
        Ok(Self {
            clusters,
            read_mode: [m0?, m1?],
            failed_writes: [
                failed_on("origin")?,
                failed_on("target")?,
                failed_on("both")?,
            ],
            client_connections: b.gauge(&CLIENT_CONNECTIONS)?,
            client_refused: b.counter(&CLIENT_REFUSED)?,
            shared_pairs: b.gauge(&SHARED_PAIRS)?,
            client_tls_failures: [t0?, t1?, t2?, t3?],
            prepared_entries: b.gauge(&PREPARED_ENTRIES)?,
            prepared_misses: b.counter(&PREPARED_MISSES)?,
            dual_reads: DualReadFamilies {
                compared: b.counters(&DUAL_COMPARED)?,
                mismatches: b.counters(&DUAL_MISMATCHES)?,
                secondary_failures: b.counters(&DUAL_SECONDARY_FAILURES)?,
            },
            target_write_failures: b.counters(&TARGET_WRITE_FAILURES)?,
            repairs_pending: b.gauge(&REPAIRS_PENDING)?,
            journal_overflows: b.counter(&JOURNAL_OVERFLOWS)?,
            journal_write_errors: b.counter(&JOURNAL_WRITE_ERRORS)?,
            migration: MigrationFamilies {
                phase: b.gauges(&MIGRATION_PHASE)?,
                ranges_done: b.gauges(&MIGRATION_RANGES_DONE)?,
                ranges_total: b.gauges(&MIGRATION_RANGES_TOTAL)?,
                connected: b.gauge(&MIGRATOR_CONNECTED)?,
                workers: b.gauge(&MIGRATORS_CONNECTED)?,
            },
            scrape: Mutex::new(()),
            registry: b.registry,
        })
    }

    pub(crate) fn cluster(&self, id: ClusterId) -> &ClusterMetrics {
        &self.clusters[id.index()]
    }

    pub(crate) fn client_connected(&self) {
        self.client_connections.inc();
    }

    pub(crate) fn client_disconnected(&self) {
        self.client_connections.dec();
    }

    pub(crate) fn shared_pair_opened(&self) {
        self.shared_pairs.inc();
    }

    pub(crate) fn shared_pair_closed(&self) {
        self.shared_pairs.dec();
    }

    pub(crate) fn client_refused(&self) {
        self.client_refused.inc();
    }

    pub(crate) fn client_tls_failed(&self, failure: HandshakeFailure) {
        if let Some(i) = HandshakeFailure::ALL.iter().position(|f| *f == failure) {
            self.client_tls_failures[i].inc();
        }
    }

    pub(crate) fn client_connections(&self) -> i64 {
        self.client_connections.get()
    }

    /// A dual write was decided; counts it when it failed on either side.
    pub(crate) fn failed_write(&self, origin_failed: bool, target_failed: bool) {
        let side = match (origin_failed, target_failed) {
            (true, false) => 0,
            (false, true) => 1,
            (true, true) => 2,
            (false, false) => return,
        };
        self.failed_writes[side].inc();
    }

    pub(crate) fn dual_reads(&self) -> DualReadFamilies {
        self.dual_reads.clone()
    }

    pub(crate) fn migration(&self) -> MigrationFamilies {
        self.migration.clone()
    }

    /// `table`'s counter of target write failures recorded for repair.
    pub(crate) fn target_write_failures(&self, table: &str) -> Option<IntCounter> {
        self.target_write_failures
            .get_metric_with_label_values(&[table])
            .ok()
    }

    /// The Prometheus text format, after setting what is read at scrape time.
    pub(crate) fn render(&self, snapshot: &Snapshot) -> Result<Vec<u8>, prometheus::Error> {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.prepared_entries
            .set(i64::try_from(snapshot.prepared_entries).unwrap_or(i64::MAX));
        let seen = self.prepared_misses.get();
        self.prepared_misses
            .inc_by(snapshot.prepared_misses.saturating_sub(seen));
        self.repairs_pending
            .set(i64::try_from(snapshot.repairs_pending).unwrap_or(i64::MAX));
        for (counter, total) in [
            (&self.journal_overflows, snapshot.journal_overflows),
            (&self.journal_write_errors, snapshot.journal_write_errors),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        for id in ClusterId::BOTH {
            let c = self.cluster(id);
            c.stream_ids
                .set(c.inflight.get() + c.orphaned.load(Ordering::Relaxed));
            c.ready.set(i64::from(snapshot.ready[id.index()]));
            c.primary.set(i64::from(snapshot.primary == id));
        }
        for (mode, gauge) in ReadMode::ALL.iter().zip(&self.read_mode) {
            gauge.set(i64::from(snapshot.read_mode == *mode));
        }
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}

/// Per-`keyspace.table` values with a bounded number of tables: past [`MAX_TABLES`], new tables
/// share the [`OTHER_TABLE`] entry.
#[derive(Debug)]
pub(crate) struct TableMap<V> {
    entries: std::collections::HashMap<Arc<str>, V>,
    other: Arc<str>,
}

impl<V> Default for TableMap<V> {
    fn default() -> Self {
        Self {
            entries: std::collections::HashMap::new(),
            other: OTHER_TABLE.into(),
        }
    }
}

impl<V> TableMap<V> {
    /// `table`'s entry (or the shared one, when the map is full), made by `make` on first use.
    pub(crate) fn entry(&mut self, table: &Arc<str>, make: impl FnOnce(&str) -> V) -> &mut V {
        let key = if self.entries.len() < MAX_TABLES || self.entries.contains_key(table) {
            table.clone()
        } else {
            self.other.clone()
        };
        self.entries.entry(key).or_insert_with_key(|k| make(k))
    }

    pub(crate) fn get(&self, table: &str) -> Option<&V> {
        self.entries.get(table)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &V)> {
        self.entries.iter()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&Arc<str>, &mut V)> {
        self.entries.iter_mut()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use ferry_cql::message::Response;
    use ferry_cql::protocol::ProtocolVersion;
    use ferry_cql::response::ErrorResponse;

    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            prepared_entries: 3,
            prepared_misses: 2,
            repairs_pending: 1,
            journal_overflows: 4,
            journal_write_errors: 5,
            ready: [true, false],
            primary: ClusterId::Target,
            read_mode: ReadMode::DualAsync,
        }
    }

    #[test]
    fn every_metric_is_a_ferry_proxy_metric_with_help() {
        let mut names = std::collections::HashSet::new();
        for d in DEFINITIONS {
            assert!(d.name.starts_with("ferry_proxy_"), "{}", d.name);
            assert!(d.help.len() > 20, "{} needs help text", d.name);
            assert!(names.insert(d.name), "{} defined twice", d.name);
            match d.kind {
                DefKind::Counter => assert!(d.name.ends_with("_total"), "{}", d.name),
                DefKind::Gauge => assert!(!d.name.ends_with("_total"), "{}", d.name),
                DefKind::Histogram => assert!(d.name.ends_with("_seconds"), "{}", d.name),
            }
        }
        // Everything registered comes from a definition, with the definition's help and type.
        let m = Metrics::new().unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], 9042));
        let timeout = BackendError::Timeout {
            cluster: ClusterId::Origin,
            addr,
            timeout: Duration::from_secs(1),
        };
        m.cluster(ClusterId::Origin).completed(
            RequestClass::Write,
            &Err(timeout),
            Duration::ZERO,
            None,
        );
        m.dual_reads().for_table("ks.t").unwrap();
        m.target_write_failures("ks.t").unwrap();
        m.migration().for_table("ks.t").unwrap();
        m.render(&snapshot()).unwrap();
        let families = m.registry.gather();
        assert_eq!(
            families.len(),
            DEFINITIONS.len(),
            "every definition is registered"
        );
        for f in &families {
            let d = DEFINITIONS
                .iter()
                .find(|d| d.name == f.name())
                .unwrap_or_else(|| panic!("{} has no definition", f.name()));
            assert_eq!(f.help(), d.help);
        }
    }

    #[test]
    fn the_journal_counters_follow_the_totals_of_each_scrape() {
        let m = Metrics::new().unwrap();
        let scrape = |overflows, errors| {
            let snapshot = Snapshot {
                journal_overflows: overflows,
                journal_write_errors: errors,
                ..snapshot()
            };
            String::from_utf8(m.render(&snapshot).unwrap()).unwrap()
        };
        let text = scrape(4, 5);
        assert!(
            text.contains("ferry_proxy_repair_journal_overflows_total 4\n"),
            "{text}"
        );
        assert!(
            text.contains("ferry_proxy_repair_journal_write_errors_total 5\n"),
            "{text}"
        );
        // Totals, not increments: the same totals again leave the counters as they were.
        let text = scrape(4, 7);
        assert!(
            text.contains("ferry_proxy_repair_journal_overflows_total 4\n"),
            "{text}"
        );
        assert!(
            text.contains("ferry_proxy_repair_journal_write_errors_total 7\n"),
            "{text}"
        );
    }

    #[test]
    fn the_architecture_page_lists_every_metric() {
        let page = include_str!("../../docs/architecture.md");
        for d in DEFINITIONS {
            let row = format!("| `{}` |", d.name);
            assert!(
                page.contains(&row),
                "docs/architecture.md lacks a row for {}",
                d.name
            );
        }
    }

    #[test]
    fn a_large_batch_times_its_answers_when_flushed_and_keeps_nothing_once_idle() {
        let m = Metrics::new().unwrap();
        let c = m.cluster(ClusterId::Origin);
        let answer = Response::Ready(ferry_cql::response::Ready)
            .to_envelope(ProtocolVersion::V4, 1, &Default::default())
            .unwrap();
        let render = || String::from_utf8(m.render(&snapshot()).unwrap()).unwrap();
        let timed = |n: usize| {
            format!(
                "ferry_proxy_request_duration_seconds_count{{cluster=\"origin\",kind=\"read\"}} {n}\n"
            )
        };
        let mut batch = c.batch_meter();
        let answers = LOCAL_LATENCIES_FROM;
        batch.batch(answers);
        for _ in 0..answers {
            c.completed_in(
                &mut batch,
                RequestClass::Read,
                &Ok(answer.clone()),
                Duration::from_millis(1),
                None,
            );
        }
        assert!(render().contains(&timed(0)), "batched until the flush");
        batch.flush();
        assert!(render().contains(&timed(answers)), "{}", render());
        batch.idle();
        assert!(batch.local.is_none());
        // A small batch is timed at once again.
        batch.batch(1);
        c.completed_in(
            &mut batch,
            RequestClass::Read,
            &Ok(answer),
            Duration::from_millis(1),
            None,
        );
        assert!(render().contains(&timed(answers + 1)));
    }

    #[test]
    fn a_batch_meter_adds_its_answers_when_flushed() {
        let m = Metrics::new().unwrap();
        let c = m.cluster(ClusterId::Origin);
        let answer = Response::Ready(ferry_cql::response::Ready)
            .to_envelope(ProtocolVersion::V4, 1, &Default::default())
            .unwrap();
        let error = Response::Error(ErrorResponse::overloaded("busy"))
            .to_envelope(ProtocolVersion::V4, 2, &Default::default())
            .unwrap();
        for _ in 0..3 {
            c.sent();
        }
        let mut batch = c.batch_meter();
        for (result, class) in [
            (answer.clone(), RequestClass::Read),
            (answer, RequestClass::Write),
            (error, RequestClass::Read),
        ] {
            c.released_in(&mut batch);
            c.completed_in(
                &mut batch,
                class,
                &Ok(result),
                Duration::from_millis(1),
                None,
            );
        }
        let render = || String::from_utf8(m.render(&snapshot()).unwrap()).unwrap();
        let text = render();
        let reads = "ferry_proxy_requests_total{cluster=\"origin\",kind=\"read\"}";
        assert!(
            text.contains(&format!("{reads} 1\n")),
            "the ERROR at once: {text}"
        );
        assert!(
            text.contains(
                "ferry_proxy_request_duration_seconds_count{cluster=\"origin\",kind=\"read\"} 2"
            ),
            "answers are timed at once"
        );
        assert!(text.contains("ferry_proxy_inflight_requests{cluster=\"origin\"} 3"));
        batch.flush();
        let text = render();
        assert!(text.contains(&format!("{reads} 2\n")), "{text}");
        assert!(text.contains("ferry_proxy_requests_total{cluster=\"origin\",kind=\"write\"} 1"));
        assert!(text.contains(
            "ferry_proxy_request_duration_seconds_count{cluster=\"origin\",kind=\"read\"} 2"
        ));
        assert!(text.contains("ferry_proxy_inflight_requests{cluster=\"origin\"} 0"));
        // Flushing again adds nothing.
        batch.flush();
        assert!(render().contains(&format!("{reads} 2\n")));
    }

    #[test]
    fn failures_are_labelled_by_cause_and_error_code() {
        let m = Metrics::new().unwrap();
        let c = m.cluster(ClusterId::Target);
        let error = Response::Error(ErrorResponse::overloaded("busy"))
            .to_envelope(ProtocolVersion::V4, 3, &Default::default())
            .unwrap();
        c.completed(
            RequestClass::Read,
            &Ok(error.clone()),
            Duration::from_millis(2),
            None,
        );
        c.completed(
            RequestClass::Read,
            &Ok(error),
            Duration::from_millis(2),
            None,
        );
        let lost = BackendError::ConnectionLost {
            cluster: ClusterId::Target,
            addr: SocketAddr::from(([127, 0, 0, 1], 9042)),
            reason: "reset".into(),
        };
        c.completed(RequestClass::Write, &Err(lost), Duration::ZERO, None);
        let text = String::from_utf8(m.render(&snapshot()).unwrap()).unwrap();
        assert!(
            text.contains(
                "ferry_proxy_request_failures_total{cluster=\"target\",error=\"overloaded\",kind=\"read\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains(
            "ferry_proxy_request_failures_total{cluster=\"target\",error=\"connection_lost\",kind=\"write\"} 1"
        ));
        assert!(text.contains("ferry_proxy_requests_total{cluster=\"target\",kind=\"read\"} 2"));
        assert!(text.contains(
            "ferry_proxy_request_duration_seconds_count{cluster=\"target\",kind=\"read\"} 2"
        ));
        assert!(
            text.contains(
                "ferry_proxy_request_duration_seconds_count{cluster=\"target\",kind=\"write\"} 0"
            ),
            "unanswered requests are not timed"
        );
        assert!(text.contains("ferry_proxy_primary{cluster=\"target\"} 1"));
        m.failed_write(false, false);
        m.failed_write(false, true);
        m.failed_write(false, true);
        m.failed_write(true, true);
        let text = String::from_utf8(m.render(&snapshot()).unwrap()).unwrap();
        for (side, n) in [("origin", 0), ("target", 2), ("both", 1)] {
            let line = format!("ferry_proxy_failed_writes_total{{failed_on=\"{side}\"}} {n}\n");
            assert!(text.contains(&line), "{line}{text}");
        }
        assert!(text.contains("ferry_proxy_cluster_ready{cluster=\"target\"} 0"));
        assert!(text.contains("ferry_proxy_prepared_cache_misses_total 2"));
        // A second scrape does not add the misses again.
        let text = String::from_utf8(m.render(&snapshot()).unwrap()).unwrap();
        assert!(text.contains("ferry_proxy_prepared_cache_misses_total 2"));
    }

    #[test]
    fn every_failure_label_has_a_name_and_backend_labels_are_known() {
        let names: Vec<&str> = (0..FAILURE_LABELS)
            .map(|i| FailureLabel(i).name())
            .collect();
        assert_eq!(names.last(), Some(&UNKNOWN_ERROR));
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        let addr = SocketAddr::from(([127, 0, 0, 1], 9042));
        let c = ClusterId::Origin;
        for e in [
            BackendError::Timeout {
                cluster: c,
                addr,
                timeout: Duration::from_secs(1),
            },
            BackendError::ConnectionLost {
                cluster: c,
                addr,
                reason: "x".into(),
            },
            BackendError::StreamsExhausted {
                cluster: c,
                addr,
                limit: 1,
            },
            BackendError::Connect {
                cluster: c,
                addr,
                reason: "x".into(),
            },
            BackendError::NoContactPoint {
                cluster: c,
                reason: "x".into(),
            },
        ] {
            assert_eq!(FailureLabel::of_backend(&e).name(), e.label());
        }
        assert_eq!(FailureLabel::of_code(Some(0x2200)).name(), "invalid");
        assert_eq!(FailureLabel::of_code(Some(0x7777)).name(), UNKNOWN_ERROR);
        assert_eq!(FailureLabel::of_code(None).name(), UNKNOWN_ERROR);
    }

    #[test]
    fn table_labels_are_bounded() {
        let mut map: TableMap<u32> = TableMap::default();
        for i in 0..MAX_TABLES + 10 {
            *map.entry(&Arc::from(format!("ks.t{i}")), |_| 0) += 1;
        }
        assert_eq!(map.iter().count(), MAX_TABLES + 1);
        assert_eq!(map.get(OTHER_TABLE), Some(&10));
        assert_eq!(map.get("ks.t0"), Some(&1));
        // A table seen before the map filled keeps its own entry.
        *map.entry(&Arc::from("ks.t0"), |_| 0) += 1;
        assert_eq!(map.get("ks.t0"), Some(&2));
    }
}

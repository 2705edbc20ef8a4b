//! Ferry's migrator: copies historical data from origin to target, table by table, so that
//! **a backfilled cell never overwrites a newer write**. Every cell is written with its origin
//! writetime and remaining TTL, so Cassandra's last-write-wins keeps newer dual writes and
//! deletes whatever order they arrive in.
//!
//! ```text
//!  JobSpec ─► run ─► select tables ─► per table (table_parallelism at once):
//!     SCHEMA      read system_schema on origin, create keyspace / UDTs / table on target
//!                 or list every difference; DDL appended to <job dir>/schema.cql
//!     BACKFILL    plan ranges (size estimates or fixed, stored) ─► scan_parallelism range
//!                 workers ─► pages (each sent first to a replica of its first token; the
//!                 next read while earlier ones are written) ─► rows split into (writetime,
//!                 TTL) groups (tables of single-cell columns: straight from the scanned
//!                 bytes, bound as they are) ─► writes, rows without lists in
//!                 unlogged batches (bounded in flight, rows/s and bytes/s limits,
//!                 retries) ─► checkpoint once a page and all before it are acknowledged
//!     VALIDATING  the checkpoint log on disk covers every range
//!     DONE / FAILED(reason) / CANCELLED (Cancel: stops after the current page's checkpoint)
//!
//!  JobSpec + ValidateOptions ─► validate ─► per table: origin and target scans merged per
//!     range ─► differences re-checked ─► counts, JSONL keys ─► (repair ─► re-read)
//! ```
//!
//! # Layout
//! - [`job`]: [`JobSpec`] (clusters, table selection, limits, floor timestamp, counters mode,
//!   job directory) and [`Phase`].
//! - [`config`]: [`config::MigratorConfig`], YAML + `FERRY_MIGRATOR_…` env + flags → a
//!   [`JobSpec`].
//! - [`api`]: the service: [`api::Jobs`] (one job at a time, status, cancel) and the admin
//!   HTTP endpoints ([`api::Api`]).
//! - [`metrics`]: every `ferry_migrator_…` metric, updated as an [`Observer`].
//! - [`Cancel`] (`cancel`): the stop flag range workers look at after each checkpoint.
//! - [`control`]: [`JobControl`], the running job's table queue (reorder, re-migrate from a
//!   fresh checkpoint), which [`run_controlled`] takes tables from.
//! - [`update`]: the Update channel to the proxies: reports, and their re-migrate, reorder
//!   and repair requests carried out.
//! - [`key`]: partition keys sent as CQL literal text (repair requests) parsed for their
//!   columns' types and bound, never spliced into a statement.
//! - [`progress`]: the [`Observer`] trait and its [`Event`]s (what progress bars, metrics and
//!   the HTTP API listen to), and [`LogObserver`].
//! - [`schema`]: origin's schema from `system_schema`, DDL for target, compatibility check.
//! - [`plan`]: token ranges from size estimates or a count, stored in the job directory.
//! - [`checkpoint`]: the append-only, fsynced resume log.
//! - [`cells`]: the timestamp-fidelity rules: a scanned row → groups of cells by (writetime,
//!   TTL), list elements, row marker.
//! - [`writer`]: statements on target (prepared once and cached by shape, unlogged batches,
//!   retries), the list read-compare-append rule, counters.
//! - `route`: scan pages sent first to a replica of their first token.
//! - `scan`: one range's pipelined, paged scan, batching, split-and-retry, checkpoints; the
//!   scan row layout and statements the validator shares.
//! - [`compare`]: validation's pure part: scan order of rows, the difference rules per cell.
//! - [`validate`](mod@validate): `ferry validate`: both clusters' scans merged per range, re-check, report
//!   (counts, JSONL keys), repair with the backfill's writer.
//! - `table`: one table's phases.
//! - [`throttle`]: token buckets, the in-flight bound, retryable errors.
//! - [`error`]: one error enum per operation.
//!
//! # Decisions
//! - **Floor timestamp** (default 0 µs): the writetime of what has none, i.e. primary-key-only
//!   rows. Any value not after the start of dual writes gives the same result against target
//!   (every dual write is newer); set it to that start for a truthful value.
//! - **Row marker**: rows with cells get a marker at their oldest cell's writetime (see
//!   [`cells`]); CQL cannot read origin's marker.
//! - **Validation is its own command** (`ferry validate`), not part of the migrate job's
//!   VALIDATING phase, which only checks that every range was copied: a full comparison
//!   reads both clusters again, so the operator runs it when it tells something (after the
//!   backfill, again before cutover) and with `repair` when it finds differences.
//! - **TLS to clusters** is the driver's rustls support with ferry-service's client config (the
//!   proxy's keys and rules, the ring provider): the driver dials the addresses nodes advertise
//!   and passes the IP to the handshake, so a node's certificate must name its IP unless
//!   `server_name` (checked instead) or `verify_hostname: false` is set. No SNI is sent.
//! - **Resume** restarts a partially written range at the token of its last checkpointed
//!   partition (inclusive): writes are idempotent (lists by their rule), so redoing that
//!   partition changes nothing.

pub mod api;
mod cancel;
pub mod cells;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod control;
pub mod error;
pub mod job;
pub mod key;
pub mod metrics;
pub mod plan;
pub mod progress;
mod route;
mod scan;
pub mod schema;
mod table;
pub mod throttle;
pub mod update;
pub mod validate;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use tokio::task::JoinSet;

pub use cancel::Cancel;
pub use compare::DiffKind;
pub use control::{ControlError, JobControl};
pub use error::{JobError, TableError};
pub use job::{ClusterSpec, CountersMode, JobSpec, Phase, RangeCount, TableSelector};
pub use progress::{Event, LogObserver, Observer, TableName};
pub use table::TableReport;
pub use validate::{Counts, TableValidation, ValidateOptions, ValidationReport, validate};

/// How long connecting to a node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of a job: one report per table run, in the order they started (a table
/// re-migrated while the job ran appears once per run; tables cancelled before starting last).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobReport {
    pub tables: Vec<TableReport>,
}

impl JobReport {
    /// Whether every table ended DONE.
    pub fn succeeded(&self) -> bool {
        self.tables.iter().all(|t| t.phase == Phase::Done)
    }
}

/// Runs a job to the end: every selected table ends DONE or FAILED. Errors only when the job
/// cannot start (invalid spec, unreachable cluster, unusable job directory, nothing selected).
pub async fn run(spec: JobSpec, observer: Arc<dyn Observer>) -> Result<JobReport, JobError> {
    run_until(spec, observer, Cancel::new()).await
}

/// [`run`], stopping cleanly when `cancel` fires: range workers stop after their current
/// page's checkpoint, tables not started yet end CANCELLED without touching either cluster,
/// and a rerun with the same job directory resumes.
pub async fn run_until(
    spec: JobSpec,
    observer: Arc<dyn Observer>,
    cancel: Cancel,
) -> Result<JobReport, JobError> {
    run_controlled(spec, observer, cancel, Arc::new(JobControl::new())).await
}

/// [`run_until`], with the table queue open to `control` while the job runs: tables not
/// started yet can be reordered, and a selected table re-migrated from a fresh checkpoint
/// (the report then has one entry per run of it, in start order).
pub async fn run_controlled(
    spec: JobSpec,
    observer: Arc<dyn Observer>,
    cancel: Cancel,
    control: Arc<JobControl>,
) -> Result<JobReport, JobError> {
    spec.validate()?;
    std::fs::create_dir_all(&spec.job_dir)
        .map_err(|e| error::JobFileError::new("cannot create job directory", &spec.job_dir, e))?;
    let origin = Arc::new(connect("origin", &spec.origin).await?);
    let target = Arc::new(connect("target", &spec.target).await?);
    let tables = select_tables(&origin, &spec).await?;
    control.plan(&tables);
    observer.event(&Event::JobPlanned {
        tables: tables.clone(),
    });
    let job = Arc::new(table::JobContext {
        limits: throttle::Limits::new(
            spec.max_rows_per_second,
            spec.max_bytes_per_second,
            spec.concurrency,
        ),
        spec,
        origin,
        target,
        observer,
        cancel,
        schema_file: tokio::sync::Mutex::new(()),
    });
    let mut running = JoinSet::new();
    let mut reports: Vec<Option<TableReport>> = Vec::new();
    let mut names: Vec<TableName> = Vec::new();
    loop {
        // Tables start in queue order, at most table_parallelism at once.
        let mut last = control::Next::Wait;
        while running.len() < job.spec.table_parallelism && !job.cancel.is_cancelled() {
            match control.next() {
                control::Next::Run(q) => {
                    let i = reports.len();
                    reports.push(None);
                    names.push(q.table.clone());
                    let job = job.clone();
                    running.spawn(async move { (i, table::migrate(job, q.table, q.fresh).await) });
                }
                other => {
                    last = other;
                    break;
                }
            }
        }
        if job.cancel.is_cancelled() {
            for t in control.drain() {
                job.observer.event(&Event::Phase {
                    table: t.clone(),
                    phase: Phase::Cancelled,
                });
                reports.push(Some(TableReport::cancelled(t.clone())));
                names.push(t);
            }
        }
        if last == control::Next::Done {
            break;
        }
        match running.join_next().await {
            Some(Ok((i, r))) => {
                control.finished(&r.table);
                reports[i] = Some(r);
            }
            // The table stays "running" in the control, so it does not start again.
            Some(Err(e)) => tracing::error!(error = %e, "table task ended abnormally"),
            // Nothing runs and nothing may start (cancelled).
            None => break,
        }
    }
    let tables: Vec<TableReport> = reports
        .into_iter()
        .zip(names)
        .map(|(r, t)| {
            r.unwrap_or_else(|| TableReport {
                table: t,
                phase: Phase::Failed("the table's task ended abnormally".to_owned()),
                ranges_total: 0,
                ranges_done: 0,
                rows: 0,
                bytes: 0,
                ddl: Vec::new(),
            })
        })
        .collect();
    let done = tables.iter().filter(|t| t.phase == Phase::Done).count();
    job.observer.event(&Event::JobFinished {
        tables_done: u32::try_from(done).unwrap_or(u32::MAX),
        tables_failed: u32::try_from(tables.len() - done).unwrap_or(u32::MAX),
    });
    Ok(JobReport { tables })
}

/// A session to one cluster, as `spec` describes it.
pub async fn connect(name: &'static str, spec: &ClusterSpec) -> Result<Session, JobError> {
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &spec.local_dc {
        policy = policy
            .prefer_datacenter(dc.clone())
            .permit_dc_failover(false);
    }
    let profile = ExecutionProfile::builder()
        .request_timeout(Some(spec.request_timeout))
        .load_balancing_policy(policy.build())
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&spec.contact_points)
        .connection_timeout(CONNECT_TIMEOUT)
        .default_execution_profile_handle(profile.into_handle());
    if let Some((user, password)) = &spec.credentials {
        builder = builder.user(user, password);
    }
    if let Some(tls) = &spec.tls {
        let config = ferry_service::tls::cluster_client_config(&format!("{name}.tls"), tls)
            .map_err(|e| JobError::Tls {
                cluster: name,
                error: e.to_string(),
            })?;
        builder = builder.tls_context(Some(Arc::new(config)));
    }
    builder.build().await.map_err(|e| JobError::Connect {
        cluster: name,
        contact_points: spec.contact_points.join(","),
        error: e.to_string(),
    })
}

/// The tables to migrate, in order: each allow-list entry in turn (a keyspace or pattern
/// expands to its tables in name order), without repeats and without deny-listed tables. An
/// exact `ks.table` missing on origin stays in, so it fails with a clear reason.
pub(crate) async fn select_tables(
    origin: &Session,
    spec: &JobSpec,
) -> Result<Vec<TableName>, JobError> {
    let all = schema::list_tables(origin)
        .await
        .map_err(JobError::Select)?;
    let mut out: Vec<TableName> = Vec::new();
    let excluded = |t: &TableName| {
        spec.exclude
            .iter()
            .any(|x| x.matches(&t.keyspace, &t.table))
    };
    for sel in &spec.tables {
        let found: Vec<TableName> = match sel {
            TableSelector::Table { keyspace, table } => vec![TableName::new(keyspace, table)],
            _ => all
                .iter()
                .filter(|t| sel.matches(&t.keyspace, &t.table))
                .cloned()
                .collect(),
        };
        for t in found {
            if !excluded(&t) && !out.contains(&t) {
                out.push(t);
            }
        }
    }
    if out.is_empty() {
        let names: Vec<String> = spec.tables.iter().map(ToString::to_string).collect();
        return Err(JobError::NothingSelected(names.join(",")));
    }
    Ok(out)
}

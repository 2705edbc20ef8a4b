//! One table's migration: SCHEMA → BACKFILL → VALIDATING → DONE, or FAILED with the reason.
//!
//! Job directory files per table: `<ks>.<table>.plan` (the ranges, written once),
//! `<ks>.<table>.progress` (the checkpoint log); and for the job, `schema.cql` (every DDL
//! statement applied to target, appended and fsynced).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use scylla::client::session::Session;
use tokio::task::JoinSet;

use crate::checkpoint::CheckpointLog;
use crate::error::{JobFileError, TableError};
use crate::job::{CountersMode, JobSpec, Phase};
use crate::plan::{self, TokenRange};
use crate::progress::{Event, Observer, TableName};
use crate::scan::{TableScan, select_cql};
use crate::schema::prepare_target;
use crate::throttle::Limits;
use crate::writer::TableWriter;

/// How a table ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TableReport {
    pub table: TableName,
    /// `Done` or `Failed`.
    pub phase: Phase,
    pub ranges_total: u32,
    /// Done, this run and before.
    pub ranges_done: u32,
    /// Rows and bytes written by this run.
    pub rows: u64,
    pub bytes: u64,
    /// DDL this run applied to target.
    pub ddl: Vec<String>,
}

impl TableReport {
    /// A table the job was cancelled before it started.
    pub(crate) fn cancelled(table: TableName) -> Self {
        Self {
            table,
            phase: Phase::Cancelled,
            ranges_total: 0,
            ranges_done: 0,
            rows: 0,
            bytes: 0,
            ddl: Vec::new(),
        }
    }
}

/// What every table of a job shares.
pub(crate) struct JobContext {
    pub spec: JobSpec,
    pub origin: Arc<Session>,
    pub target: Arc<Session>,
    pub limits: Limits,
    pub observer: Arc<dyn Observer>,
    pub cancel: crate::Cancel,
    /// Serializes appends to `schema.cql` from parallel tables.
    pub schema_file: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobContext({})", self.spec.job_dir.display())
    }
}

/// Migrates `table`; never panics on cluster errors, they end as `Phase::Failed`. `fresh`:
/// a re-migration, which forgets the table's checkpoints and copies every range again.
pub(crate) async fn migrate(job: Arc<JobContext>, table: TableName, fresh: bool) -> TableReport {
    let mut report = TableReport {
        table: table.clone(),
        phase: Phase::Schema,
        ranges_total: 0,
        ranges_done: 0,
        rows: 0,
        bytes: 0,
        ddl: Vec::new(),
    };
    let result = run(&job, &table, fresh, &mut report).await;
    report.phase = match result {
        Ok(()) => Phase::Done,
        Err(TableError::Range(crate::error::RangeError::Cancelled { .. })) => Phase::Cancelled,
        Err(e) => Phase::Failed(e.to_string()),
    };
    job.observer.event(&Event::Phase {
        table,
        phase: report.phase.clone(),
    });
    report
}

async fn run(
    job: &Arc<JobContext>,
    table: &TableName,
    fresh: bool,
    report: &mut TableReport,
) -> Result<(), TableError> {
    let phase = |p: Phase| {
        job.observer.event(&Event::Phase {
            table: table.clone(),
            phase: p,
        });
    };
    phase(Phase::Schema);
    let replication = job
        .spec
        .replication
        .get(&table.keyspace)
        .map(String::as_str);
    let (def, ddl) = prepare_target(&job.origin, &job.target, table, replication).await?;
    if !ddl.is_empty() {
        append_schema(job, table, &ddl).await?;
    }
    report.ddl = ddl;
    let counters = def.is_counter();
    if counters {
        if job.spec.counters != CountersMode::ApplyDifference {
            return Err(TableError::CountersRefused(table.to_string()));
        }
        job.observer.event(&Event::Warning {
            table: table.clone(),
            message: "counter table: adding origin − target to each counter. Increments made \
                      while the copy runs must reach both clusters through the proxy's dual \
                      writes, or they are counted on one side only"
                .to_owned(),
        });
    }

    phase(Phase::Backfill);
    let dir = &job.spec.job_dir;
    let base = format!("{}.{}", table.keyspace, table.table);
    let plan_path = dir.join(format!("{base}.plan"));
    let ranges: Vec<TokenRange> = if plan_path.exists() {
        plan::load_or_store(&plan_path, Vec::new)?
    } else {
        let estimate = match job.spec.ranges {
            crate::job::RangeCount::Fixed(_) => None,
            crate::job::RangeCount::Auto { .. } => {
                plan::estimate_partitions(&job.origin, table).await?
            }
        };
        let n = plan::range_count(job.spec.ranges, estimate, job.spec.scan_parallelism);
        tracing::info!(%table, ?estimate, ranges = n, "planned");
        plan::load_or_store(&plan_path, || plan::split_ring(n))?
    };
    let log_path = dir.join(format!("{base}.progress"));
    if fresh {
        // The plan stays (the same ranges); only which of them are copied is forgotten.
        match std::fs::remove_file(&log_path) {
            Ok(()) => tracing::info!(%table, "re-migration: checkpoints cleared"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(JobFileError::new("cannot remove", &log_path, e).into()),
        }
    }
    let (log, progress) = CheckpointLog::open(&log_path)?;
    let total = u32::try_from(ranges.len()).unwrap_or(u32::MAX);
    report.ranges_total = total;
    let already = u32::try_from(progress.done.len()).unwrap_or(u32::MAX);
    job.observer.event(&Event::RangesPlanned {
        table: table.clone(),
        total,
        already_done: already,
    });
    let mut select = job
        .origin
        .prepare(select_cql(&def, counters))
        .await
        .map_err(|e| crate::error::SchemaError::Query {
            cql: select_cql(&def, counters),
            error: e.to_string(),
        })?;
    select.set_page_size(job.spec.page_size);
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
    let raw = crate::scan::raw_path(&def, &value_ids, counters);
    let scan = Arc::new(TableScan {
        name: table.clone(),
        origin: job.origin.clone(),
        layout: crate::scan::RowLayout {
            pk_len: def.partition_key().count(),
            ck_len: def.clustering().count(),
            values: value_ids.len(),
            counters,
        },
        writer: Arc::new(TableWriter::new(job.target.clone(), def, &job.spec)),
        router: crate::route::Router::new(
            job.origin.clone(),
            &table.keyspace,
            &table.table,
            job.spec.origin.local_dc.clone(),
        ),
        select,
        raw,
        value_ids,
        counters,
        spec: job.spec.clone(),
        limits: job.limits.clone(),
        observer: job.observer.clone(),
        log,
        cancel: job.cancel.clone(),
        rows: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    let mut todo = ranges
        .iter()
        .enumerate()
        .filter(|(i, _)| !progress.done.contains(&(*i as u32)))
        .map(|(i, r)| (i as u32, *r, progress.resume_from.get(&(i as u32)).copied()));
    let mut workers = JoinSet::new();
    let mut outcome = Ok(());
    let mut done_now = 0u32;
    loop {
        while workers.len() < job.spec.scan_parallelism && !job.cancel.is_cancelled() {
            let Some((i, r, from)) = todo.next() else {
                break;
            };
            workers.spawn(scan.clone().copy_range(i, r, from));
        }
        let Some(finished) = workers.join_next().await else {
            if job.cancel.is_cancelled() {
                outcome = Err(TableError::Range(crate::error::RangeError::Cancelled {
                    range: u32::MAX,
                }));
            }
            break;
        };
        match finished {
            Ok(Ok(())) => done_now += 1,
            Ok(Err(e)) => {
                outcome = Err(TableError::Range(e));
                break;
            }
            Err(e) => {
                outcome = Err(TableError::Range(crate::error::RangeError::Fatal {
                    range: u32::MAX,
                    start: 0,
                    end: 0,
                    error: format!("range worker ended abnormally: {e}"),
                }));
                break;
            }
        }
    }
    // On failure the other ranges stop here; their checkpoints let a rerun continue them.
    workers.shutdown().await;
    report.rows = scan.rows.load(Ordering::Relaxed);
    report.bytes = scan.bytes.load(Ordering::Relaxed);
    report.ranges_done = already + done_now;
    outcome?;

    phase(Phase::Validating);
    // What counts is what the log on disk says, as a rerun would read it.
    drop(scan);
    let (_, progress) = CheckpointLog::open(&log_path)?;
    let done = u32::try_from(progress.done.len()).unwrap_or(u32::MAX);
    if done != total {
        return Err(TableError::Incomplete { done, total });
    }
    report.ranges_done = done;
    Ok(())
}

async fn append_schema(
    job: &JobContext,
    table: &TableName,
    ddl: &[String],
) -> Result<(), JobFileError> {
    let _serial = job.schema_file.lock().await;
    let path = job.spec.job_dir.join("schema.cql");
    let mut text = format!("-- {table}\n");
    for stmt in ddl {
        text.push_str(stmt);
        text.push_str(";\n");
    }
    let append = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        f.write_all(text.as_bytes())?;
        f.sync_data()
    };
    append().map_err(|e| JobFileError::new("cannot append to", &path, e))
}

//! Validation and repair (`ferry validate`): origin and target compared by token range in
//! both directions, cell by cell (value, writetime, TTL; the rules are in [`crate::compare`]);
//! every difference re-checked once before it is reported; counts per table and kind, and a
//! JSONL file of the differing keys; with `repair`, origin's cells rewritten on target with
//! their writetime and TTL by the backfill's own writer.
//!
//! ```text
//!  per table: schemas compatible? ─► ranges (as the backfill plans them) ─► scan_parallelism
//!  range workers:
//!    origin scan (paged) ─┐ merge in scan order: token, partition key, clustering order
//!    target scan (paged) ─┘  ├ origin only ─► candidate (missing)
//!                            ├ target only ─► candidate (extra)
//!                            └ both ─► compare cells (statics once per partition) ─► candidate
//!    candidate ─► re-read both sides for that key ─► still different? ─► counts, JSONL line
//!      └ repair: rewrite origin's row (backfill writer: groups, list rule, counters)
//!                extra: kept, or with delete_extra a tombstone at floor − 1 µs
//!                ─► re-read ─► matches (repaired) or not (remaining)
//!    page fails ─► backoff ─► the rest of the sub-range split in two, rescanned on both
//!                 sides; keys up to the last compared one are skipped (no double report)
//! ```
//!
//! Each scan page goes first to a replica of its first token, on either cluster, as the
//! backfill's do (see `route`).
//!
//! **Why a merge of two scans** and not "fetch target's partition for each origin
//! partition": both clusters return a range's rows in the same order, so merging needs one
//! page per side in memory whatever the partition sizes, finds target-only partitions in the
//! same pass, and costs one scan per cluster instead of one query per partition. The order
//! is Cassandra's (token, then clustering order per column type and direction), recomputed
//! on decoded values by [`crate::compare::compare_values`]; were it ever to disagree with a
//! server's, a row would show up as missing and extra at once and the re-check (point reads
//! of both sides) would clear it, so a wrong order costs reads, not false reports.
//!
//! **Deleting extra rows** (`delete_extra`): a target-only row may hold newer dual writes,
//! so by default it is only reported. With `delete_extra` it gets a row (or partition)
//! tombstone at the job's floor timestamp − 1 µs, the floor being the time dual writes
//! started: the tombstone shadows only what target held before dual writes began (which
//! origin lacks, so it is stale) and never a dual write. Its cells written since the floor
//! stay, and the row is reported again by the next run. A tombstone at "now" would also
//! delete dual writes and could shadow later backfilled cells.
//!
//! What repair cannot fix, reported as remaining: a duplicated list element on target (CQL
//! cannot delete one of two equal elements safely), and a cell whose target copy wins over
//! origin's at the same writetime (a longer TTL, or a greater value: Cassandra's tie rules).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scylla::client::session::Session;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cells::{ScannedColumn, row_writes};
use crate::compare::{DiffKind, Findings, compare_keys, compare_row, newest_writetime};
use crate::error::{JobError, JobFileError, RangeError, TableError};
use crate::job::{CountersMode, InvalidJob, JobSpec, Phase, RangeCount};
use crate::plan::{self, TokenRange};
use crate::progress::{Event, Observer, TableName};
use crate::route::Router;
use crate::scan::{RowLayout, ScannedRow, point_cql, select_cql};
use crate::schema::{ColumnDef, ColumnKind, TableDef};
use crate::throttle::{Limits, is_retryable};
use crate::writer::{TableWriter, WriteError, rows_of};

/// How to validate, beyond the [`JobSpec`] (clusters, tables, parallelism, limits, floor).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ValidateOptions {
    /// Rewrite origin's cells on target for every difference found.
    pub repair: bool,
    /// With `repair`: delete extra rows on target with a tombstone at the floor timestamp
    /// − 1 µs (module docs). Needs the floor set to the start of dual writes.
    pub delete_extra: bool,
    /// Remaining TTLs this close count as equal (both sides are read at different instants).
    pub ttl_tolerance: Duration,
    /// Differing keys listed per table in the JSONL file; the counts are always complete.
    pub max_keys: usize,
    /// One JSONL file for every table instead of `<job dir>/validate/<ks>.<table>.jsonl`.
    pub report: Option<PathBuf>,
}

impl Default for ValidateOptions {
    /// Report only, 5 s TTL tolerance, 10 000 keys listed per table.
    fn default() -> Self {
        Self {
            repair: false,
            delete_extra: false,
            ttl_tolerance: Duration::from_secs(5),
            max_keys: 10_000,
            report: None,
        }
    }
}

/// Largest `max_keys`: a file an operator can still open.
pub const MAX_LISTED_KEYS: usize = 10_000_000;

impl ValidateOptions {
    /// Every problem with these options, given the job's floor timestamp.
    pub fn problems(&self, floor_timestamp: i64) -> Vec<String> {
        let mut problems = Vec::new();
        if self.delete_extra && !self.repair {
            problems.push(
                "deleting extra rows is part of repair (--delete-extra needs --repair)".to_owned(),
            );
        }
        if self.delete_extra && floor_timestamp <= 0 {
            problems.push(
                "--delete-extra needs --floor-timestamp set to when dual writes started (µs): \
                 the tombstone goes just below it"
                    .to_owned(),
            );
        }
        if self.max_keys > MAX_LISTED_KEYS {
            problems.push(format!(
                "keys listed per table must be 0..={MAX_LISTED_KEYS} (got {})",
                self.max_keys
            ));
        }
        if self.ttl_tolerance > Duration::from_secs(86_400) {
            problems.push(format!(
                "TTL tolerance must be at most 86400 s (got {} s)",
                self.ttl_tolerance.as_secs()
            ));
        }
        problems
    }
}

/// Differing keys per kind (a key with several kinds counts in each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    pub missing: u64,
    pub extra: u64,
    pub value: u64,
    pub writetime: u64,
    pub ttl: u64,
}

impl Counts {
    pub fn get(&self, kind: DiffKind) -> u64 {
        match kind {
            DiffKind::Missing => self.missing,
            DiffKind::Extra => self.extra,
            DiffKind::Value => self.value,
            DiffKind::Writetime => self.writetime,
            DiffKind::Ttl => self.ttl,
        }
    }

    fn add(&mut self, kind: DiffKind) {
        let n = match kind {
            DiffKind::Missing => &mut self.missing,
            DiffKind::Extra => &mut self.extra,
            DiffKind::Value => &mut self.value,
            DiffKind::Writetime => &mut self.writetime,
            DiffKind::Ttl => &mut self.ttl,
        };
        *n += 1;
    }
}

/// How one table's validation ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TableValidation {
    pub table: TableName,
    /// Keys compared (rows and static-only partitions; a key on both sides counts once).
    pub rows: u64,
    /// Differing keys per kind, after the re-check.
    pub differences: Counts,
    /// Differing keys (each once, whatever its kinds).
    pub keys: u64,
    /// Keys the scans saw differ that the re-check found equal (a write landing between
    /// the two scans, a cell expiring meanwhile): not reported.
    pub cleared: u64,
    /// Keys repair fixed (rewritten or deleted, then re-read equal).
    pub repaired: u64,
    /// Keys still different at the end (all of them without repair).
    pub remaining: u64,
    /// JSONL lines written for this table (at most `max_keys` keys).
    pub listed: u64,
    pub keys_file: PathBuf,
    /// Why the table could not be compared completely (its counts cover what was compared).
    pub error: Option<String>,
}

impl TableValidation {
    /// Compared completely, nothing left different.
    pub fn is_clean(&self) -> bool {
        self.error.is_none() && self.remaining == 0
    }
}

/// The outcome of a validation: one entry per selected table, in job order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ValidationReport {
    pub tables: Vec<TableValidation>,
}

impl ValidationReport {
    pub fn is_clean(&self) -> bool {
        self.tables.iter().all(TableValidation::is_clean)
    }
}

/// Validates (and with `options.repair`, repairs) every table `spec` selects. Errors only
/// when it cannot start (invalid spec or options, unreachable cluster, no table selected,
/// unusable report file).
pub async fn validate(
    spec: JobSpec,
    options: ValidateOptions,
    observer: Arc<dyn Observer>,
) -> Result<ValidationReport, JobError> {
    let mut problems = spec
        .validate()
        .err()
        .map(|e| e.problems)
        .unwrap_or_default();
    problems.extend(options.problems(spec.floor_timestamp));
    if !problems.is_empty() {
        return Err(InvalidJob { problems }.into());
    }
    let origin = Arc::new(crate::connect("origin", &spec.origin).await?);
    let target = Arc::new(crate::connect("target", &spec.target).await?);
    let tables = crate::select_tables(&origin, &spec).await?;
    observer.event(&Event::JobPlanned {
        tables: tables.clone(),
    });
    let shared = match &options.report {
        Some(path) => Some(Arc::new(Sink::create(path.clone())?)),
        None => {
            let dir = spec.job_dir.join("validate");
            std::fs::create_dir_all(&dir)
                .map_err(|e| JobFileError::new("cannot create directory", &dir, e))?;
            None
        }
    };
    let ctx = Arc::new(Context {
        limits: Limits::new(spec.max_rows_per_second, None, spec.concurrency),
        spec,
        options,
        origin,
        target,
        observer,
    });
    let slots = Arc::new(Semaphore::new(ctx.spec.table_parallelism));
    let mut running = JoinSet::new();
    for (i, t) in tables.iter().enumerate() {
        let (ctx, slots, t) = (ctx.clone(), slots.clone(), t.clone());
        let sink = shared.clone();
        running.spawn(async move {
            let _slot = slots.acquire_owned().await;
            (i, validate_table(ctx, t, sink).await)
        });
    }
    let mut out: Vec<Option<TableValidation>> = vec![None; tables.len()];
    while let Some(done) = running.join_next().await {
        match done {
            Ok((i, r)) => out[i] = Some(r),
            Err(e) => tracing::error!(error = %e, "validation task ended abnormally"),
        }
    }
    let tables = out
        .into_iter()
        .zip(tables)
        .map(|(r, t)| {
            r.unwrap_or_else(|| TableValidation {
                table: t,
                rows: 0,
                differences: Counts::default(),
                keys: 0,
                cleared: 0,
                repaired: 0,
                remaining: 0,
                listed: 0,
                keys_file: PathBuf::new(),
                error: Some("the table's task ended abnormally".to_owned()),
            })
        })
        .collect();
    Ok(ValidationReport { tables })
}

/// What every table of a validation shares.
struct Context {
    spec: JobSpec,
    options: ValidateOptions,
    origin: Arc<Session>,
    target: Arc<Session>,
    limits: Limits,
    observer: Arc<dyn Observer>,
}

/// The JSONL file of differing keys (one per table, or one shared).
#[derive(Debug)]
struct Sink {
    path: PathBuf,
    file: Mutex<BufWriter<File>>,
}

impl Sink {
    fn create(path: PathBuf) -> Result<Self, JobFileError> {
        let file = File::create(&path).map_err(|e| JobFileError::new("cannot create", &path, e))?;
        Ok(Self {
            path,
            file: Mutex::new(BufWriter::new(file)),
        })
    }

    fn line(&self, line: &str) -> Result<(), JobFileError> {
        let mut f = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        writeln!(f, "{line}").map_err(|e| JobFileError::new("cannot write to", &self.path, e))
    }

    fn flush(&self) -> Result<(), JobFileError> {
        let mut f = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f.flush()
            .map_err(|e| JobFileError::new("cannot write to", &self.path, e))
    }
}

async fn validate_table(
    ctx: Arc<Context>,
    table: TableName,
    shared: Option<Arc<Sink>>,
) -> TableValidation {
    ctx.observer.event(&Event::Phase {
        table: table.clone(),
        phase: Phase::Validating,
    });
    let keys_file = match &shared {
        Some(s) => s.path.clone(),
        None => ctx
            .spec
            .job_dir
            .join("validate")
            .join(format!("{}.{}.jsonl", table.keyspace, table.table)),
    };
    let mut out = TableValidation {
        table: table.clone(),
        rows: 0,
        differences: Counts::default(),
        keys: 0,
        cleared: 0,
        repaired: 0,
        remaining: 0,
        listed: 0,
        keys_file: keys_file.clone(),
        error: None,
    };
    let result = async {
        let sink = match shared {
            Some(s) => s,
            None => Arc::new(Sink::create(keys_file)?),
        };
        run_table(&ctx, &table, sink, &mut out).await
    }
    .await;
    if let Err(e) = result {
        out.error = Some(e.to_string());
    }
    ctx.observer.event(&Event::Phase {
        table,
        phase: match &out.error {
            None => Phase::Done,
            Some(e) => Phase::Failed(e.clone()),
        },
    });
    out
}

async fn run_table(
    ctx: &Arc<Context>,
    table: &TableName,
    sink: Arc<Sink>,
    out: &mut TableValidation,
) -> Result<(), TableError> {
    let def = crate::schema::compatible_tables(&ctx.origin, &ctx.target, table).await?;
    let counters = def.is_counter();
    let estimate = match ctx.spec.ranges {
        RangeCount::Fixed(_) => None,
        RangeCount::Auto { .. } => plan::estimate_partitions(&ctx.origin, table).await?,
    };
    let ranges = plan::split_ring(plan::range_count(
        ctx.spec.ranges,
        estimate,
        ctx.spec.scan_parallelism,
    ));
    let total = u32::try_from(ranges.len()).unwrap_or(u32::MAX);
    ctx.observer.event(&Event::RangesPlanned {
        table: table.clone(),
        total,
        already_done: 0,
    });
    let scan_cql = select_cql(&def, counters);
    let prepare = |s: Arc<Session>| {
        let cql = scan_cql.clone();
        async move {
            let mut p =
                s.prepare(cql.clone())
                    .await
                    .map_err(|e| crate::error::SchemaError::Query {
                        cql,
                        error: e.to_string(),
                    })?;
            p.set_page_size(ctx.spec.page_size);
            Ok::<PreparedStatement, crate::error::SchemaError>(p)
        }
    };
    let scan_origin = prepare(ctx.origin.clone()).await?;
    let scan_target = prepare(ctx.target.clone()).await?;
    let value_ids: Vec<usize> = def
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c.kind, ColumnKind::Static | ColumnKind::Regular))
        .map(|(i, _)| i)
        .collect();
    let positions = |kind: ColumnKind| -> Vec<usize> {
        value_ids
            .iter()
            .enumerate()
            .filter(|(_, id)| def.columns[**id].kind == kind)
            .map(|(p, _)| p)
            .collect()
    };
    let check = Arc::new(Check {
        name: table.clone(),
        layout: RowLayout {
            pk_len: def.partition_key().count(),
            ck_len: def.clustering().count(),
            values: value_ids.len(),
            counters,
        },
        descending: def
            .clustering()
            .map(|c| matches!(c.kind, ColumnKind::Clustering(_, true)))
            .collect(),
        regular: positions(ColumnKind::Regular),
        statics: positions(ColumnKind::Static),
        point_row: point_cql(&def, counters, true),
        point_partition: point_cql(&def, counters, false),
        origin_io: TableWriter::new(ctx.origin.clone(), def.clone(), &ctx.spec),
        target_io: TableWriter::new(ctx.target.clone(), def, &ctx.spec),
        value_ids,
        counters,
        scan_origin,
        scan_target,
        route_origin: Router::new(
            ctx.origin.clone(),
            &table.keyspace,
            &table.table,
            ctx.spec.origin.local_dc.clone(),
        ),
        route_target: Router::new(
            ctx.target.clone(),
            &table.keyspace,
            &table.table,
            ctx.spec.target.local_dc.clone(),
        ),
        ctx: ctx.clone(),
        sink: sink.clone(),
        stats: Mutex::new(Stats::default()),
    });
    if counters && ctx.options.repair && ctx.spec.counters != CountersMode::ApplyDifference {
        ctx.observer.event(&Event::Warning {
            table: table.clone(),
            message: "counter table: differences are reported, not repaired, unless the \
                      counters mode (--counters) allows adding origin − target"
                .to_owned(),
        });
    }
    let mut todo = ranges.into_iter().enumerate();
    let mut workers = JoinSet::new();
    let mut outcome = Ok(());
    loop {
        while workers.len() < ctx.spec.scan_parallelism {
            let Some((i, r)) = todo.next() else { break };
            workers.spawn(check.clone().check_range(i as u32, r));
        }
        let Some(finished) = workers.join_next().await else {
            break;
        };
        let failed = match finished {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(e) => RangeError::Fatal {
                range: u32::MAX,
                start: 0,
                end: 0,
                error: format!("range worker ended abnormally: {e}"),
            },
        };
        outcome = Err(TableError::Range(failed));
        break;
    }
    workers.shutdown().await;
    let flushed = sink.flush();
    let stats = check
        .stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    out.rows = stats.rows;
    out.differences = stats.counts;
    out.keys = stats.keys;
    out.cleared = stats.cleared;
    out.repaired = stats.repaired;
    out.remaining = stats.remaining;
    out.listed = stats.listed;
    outcome?;
    flushed?;
    Ok(())
}

#[derive(Debug, Clone, Default)]
struct Stats {
    rows: u64,
    counts: Counts,
    keys: u64,
    cleared: u64,
    repaired: u64,
    remaining: u64,
    listed: u64,
}

/// One table's validation, shared by its range workers.
struct Check {
    name: TableName,
    ctx: Arc<Context>,
    layout: RowLayout,
    /// Indexes (into the table's columns) of the value columns, in scan order.
    value_ids: Vec<usize>,
    /// Positions (into `value_ids`) of the regular and of the static columns.
    regular: Vec<usize>,
    statics: Vec<usize>,
    /// Per clustering column: descending order.
    descending: Vec<bool>,
    counters: bool,
    scan_origin: PreparedStatement,
    scan_target: PreparedStatement,
    /// Send each page of either scan to a replica of its first token, as the backfill does.
    route_origin: Router,
    route_target: Router,
    point_row: String,
    point_partition: String,
    /// Point reads on origin (statement cache and retries of the backfill's writer).
    origin_io: TableWriter,
    /// Point reads and repairs on target.
    target_io: TableWriter,
    sink: Arc<Sink>,
    stats: Mutex<Stats>,
}

/// A key to re-check: a row, or (`ck: None`) a partition's static cells.
#[derive(Debug, Clone)]
struct Candidate {
    pk: Vec<CqlValue>,
    ck: Option<Vec<CqlValue>>,
}

/// What repair did to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repair {
    /// Rewritten or deleted, then re-read equal.
    Fixed { deleted: bool },
    /// Extra row left in place (no `delete_extra`), or a counter table without counters mode.
    Kept,
    /// Written, yet the re-read still differs (module docs: what repair cannot fix).
    Unfixed,
}

/// The key of a scan row: (token, partition key, clustering or `None` for static-only).
type Key = (i64, Vec<CqlValue>, Option<Vec<CqlValue>>);

fn key_of(r: &ScannedRow) -> Key {
    (r.token, r.pk.clone(), r.has_row.then(|| r.ck.clone()))
}

fn same_partition(a: &ScannedRow, b: &ScannedRow) -> bool {
    a.token == b.token && a.pk == b.pk
}

/// A failed scan page.
struct PageFailure {
    retryable: bool,
    error: String,
}

impl From<WriteError> for PageFailure {
    fn from(e: WriteError) -> Self {
        Self {
            retryable: !e.is_fatal(),
            error: e.to_string(),
        }
    }
}

/// One side's paged scan of a sub-range: at most one page buffered.
struct Cursor {
    range: TokenRange,
    /// `None` once the last page was read.
    paging: Option<PagingState>,
    /// The first token of the next page (the previous page's last row's): where it is routed.
    from: i64,
    buf: std::collections::VecDeque<ScannedRow>,
}

impl Cursor {
    fn new(range: TokenRange) -> Self {
        Self {
            range,
            paging: Some(PagingState::start()),
            from: range.start.saturating_add(1),
            buf: std::collections::VecDeque::new(),
        }
    }
}

/// Where a range's merge stands; kept across the retries of its sub-ranges.
#[derive(Default)]
struct Position {
    /// Every key up to this one is compared.
    last: Option<Key>,
    /// The partition whose static cells were compared last.
    statics_of: Option<(i64, Vec<CqlValue>)>,
    /// Keys compared and not yet reported to the observer.
    unreported: u64,
}

enum Step {
    Origin,
    Target,
    Both,
}

impl Check {
    fn columns(&self) -> Vec<&ColumnDef> {
        let cols = &self.target_io.table().columns;
        self.value_ids.iter().map(|&i| &cols[i]).collect()
    }

    fn tolerance(&self) -> i32 {
        i32::try_from(self.ctx.options.ttl_tolerance.as_secs()).unwrap_or(i32::MAX)
    }

    /// Splits a result row; counters become value-only cells so the comparison treats them
    /// like any cell (equal writetimes, so only values count).
    fn split(&self, row: Vec<Option<CqlValue>>) -> Result<ScannedRow, String> {
        let mut r = self.layout.split(row)?;
        if self.counters {
            r.cells = r
                .counters
                .iter()
                .map(|c| {
                    c.map(|n| ScannedColumn {
                        value: CqlValue::BigInt(n),
                        writetimes: vec![0],
                        ttls: vec![0],
                    })
                })
                .collect();
        }
        Ok(r)
    }

    fn compare_keys(&self, a: &ScannedRow, b: &ScannedRow) -> std::cmp::Ordering {
        compare_keys(
            &self.descending,
            (a.token, &a.pk, a.has_row.then_some(a.ck.as_slice())),
            (b.token, &b.pk, b.has_row.then_some(b.ck.as_slice())),
        )
    }

    fn after(&self, r: &ScannedRow, last: Option<&Key>) -> bool {
        last.is_none_or(|(t, pk, ck)| {
            compare_keys(
                &self.descending,
                (r.token, &r.pk, r.has_row.then_some(r.ck.as_slice())),
                (*t, pk, ck.as_deref()),
            )
            .is_gt()
        })
    }

    /// Compares range number `index`, split and retried like the backfill's scans.
    async fn check_range(self: Arc<Self>, index: u32, range: TokenRange) -> Result<(), RangeError> {
        let mut pending = vec![range];
        let mut failures = 0u32;
        let mut pos = Position::default();
        while let Some(cur) = pending.pop() {
            let mut o = Cursor::new(cur);
            let mut t = Cursor::new(cur);
            match self.merge(&mut o, &mut t, &mut pos, &mut failures).await {
                Ok(()) => {}
                Err(f) if !f.retryable => {
                    return Err(RangeError::Fatal {
                        range: index,
                        start: range.start,
                        end: range.end,
                        error: f.error,
                    });
                }
                Err(f) => {
                    failures += 1;
                    let restart = pos
                        .last
                        .as_ref()
                        .map_or(cur.start, |k| k.0.saturating_sub(1))
                        .max(cur.start);
                    if failures > self.ctx.spec.retries {
                        return Err(RangeError::Exhausted {
                            range: index,
                            start: range.start,
                            end: range.end,
                            position: restart,
                            attempts: failures,
                            last_error: f.error,
                        });
                    }
                    self.ctx.observer.event(&Event::Retry {
                        table: self.name.clone(),
                        range: index,
                        attempt: failures,
                        error: f.error,
                    });
                    tokio::time::sleep(self.ctx.spec.backoff(failures)).await;
                    // A smaller span is a shorter scan: split what is left. Keys up to
                    // `pos.last` are skipped when the rest is read again.
                    let rest = TokenRange {
                        start: restart,
                        end: cur.end,
                    };
                    match rest.halves() {
                        Some((a, b)) => {
                            pending.push(b);
                            pending.push(a);
                        }
                        None => pending.push(rest),
                    }
                }
            }
        }
        if pos.unreported > 0 {
            self.ctx.observer.event(&Event::Compared {
                table: self.name.clone(),
                rows: pos.unreported,
            });
        }
        self.ctx.observer.event(&Event::RangeDone {
            table: self.name.clone(),
            range: index,
        });
        Ok(())
    }

    /// Reads the next page into `c` when its buffer is empty and pages remain.
    async fn fill(
        &self,
        c: &mut Cursor,
        origin: bool,
        last: Option<&Key>,
        failures: &mut u32,
    ) -> Result<(), PageFailure> {
        while c.buf.is_empty() {
            let Some(paging) = c.paging.clone() else {
                return Ok(());
            };
            let (session, select) = if origin {
                (
                    &self.ctx.origin,
                    self.route_origin.statement(&self.scan_origin, c.from),
                )
            } else {
                (
                    &self.ctx.target,
                    self.route_target.statement(&self.scan_target, c.from),
                )
            };
            let (result, next) = session
                .execute_single_page(&select, (c.range.start, c.range.end), paging)
                .await
                .map_err(|e| PageFailure {
                    retryable: is_retryable(&e),
                    error: format!(
                        "{} scan of ({}, {}]: {e}",
                        if origin { "origin" } else { "target" },
                        c.range.start,
                        c.range.end
                    ),
                })?;
            *failures = 0;
            let rows = rows_of(result).map_err(|e| PageFailure {
                retryable: false,
                error: format!("scan result: {e}"),
            })?;
            if let Some(bucket) = &self.ctx.limits.rows {
                bucket.take(rows.len() as u64).await;
            }
            for row in rows {
                let r = self.split(row).map_err(|e| PageFailure {
                    retryable: false,
                    error: e,
                })?;
                c.from = r.token;
                if self.after(&r, last) {
                    c.buf.push_back(r);
                }
            }
            c.paging = match next {
                PagingStateResponse::HasMorePages { state } => Some(state),
                PagingStateResponse::NoMorePages => None,
            };
        }
        Ok(())
    }

    /// Merges both sides' scans of one sub-range to its end.
    async fn merge(
        &self,
        o: &mut Cursor,
        t: &mut Cursor,
        pos: &mut Position,
        failures: &mut u32,
    ) -> Result<(), PageFailure> {
        let columns = self.columns();
        let tol = self.tolerance();
        loop {
            self.fill(o, true, pos.last.as_ref(), failures).await?;
            self.fill(t, false, pos.last.as_ref(), failures).await?;
            let step = match (o.buf.front(), t.buf.front()) {
                (None, None) => return Ok(()),
                (Some(_), None) => Step::Origin,
                (None, Some(_)) => Step::Target,
                (Some(a), Some(b)) => {
                    // Both sides inside one partition for the first time: its statics.
                    let partition = (a.token, a.pk.clone());
                    if same_partition(a, b) && pos.statics_of.as_ref() != Some(&partition) {
                        pos.statics_of = Some(partition);
                        let differ = !self.statics.is_empty()
                            && !compare_row(
                                &columns,
                                &self.statics,
                                Some(&a.cells),
                                Some(&b.cells),
                                tol,
                            )
                            .is_empty();
                        if differ {
                            let c = Candidate {
                                pk: a.pk.clone(),
                                ck: None,
                            };
                            self.recheck(&c).await?;
                        }
                    }
                    match self.compare_keys(a, b) {
                        std::cmp::Ordering::Less => Step::Origin,
                        std::cmp::Ordering::Greater => Step::Target,
                        std::cmp::Ordering::Equal => Step::Both,
                    }
                }
            };
            let candidate = match step {
                Step::Origin | Step::Target => {
                    let (this, other) = match step {
                        Step::Origin => (&mut *o, &*t),
                        _ => (&mut *t, &*o),
                    };
                    let Some(r) = this.buf.pop_front() else {
                        continue;
                    };
                    pos.last = Some(key_of(&r));
                    let other_has_partition =
                        other.buf.front().is_some_and(|b| same_partition(&r, b));
                    // A static-only row is a partition's statics, not a row: only a
                    // partition the other side lacks is a difference.
                    if r.has_row {
                        Some(Candidate {
                            pk: r.pk,
                            ck: Some(r.ck),
                        })
                    } else if !other_has_partition {
                        Some(Candidate { pk: r.pk, ck: None })
                    } else {
                        None
                    }
                }
                Step::Both => {
                    let (Some(a), Some(b)) = (o.buf.pop_front(), t.buf.pop_front()) else {
                        continue;
                    };
                    pos.last = Some(key_of(&a));
                    let differ = a.has_row
                        && !compare_row(
                            &columns,
                            &self.regular,
                            Some(&a.cells),
                            Some(&b.cells),
                            tol,
                        )
                        .is_empty();
                    differ.then_some(Candidate {
                        pk: a.pk,
                        ck: Some(a.ck),
                    })
                }
            };
            pos.unreported += 1;
            if pos.unreported >= 1_000 {
                self.ctx.observer.event(&Event::Compared {
                    table: self.name.clone(),
                    rows: pos.unreported,
                });
                pos.unreported = 0;
            }
            self.stats_mut().rows += 1;
            if let Some(c) = candidate {
                self.recheck(&c).await?;
            }
        }
    }

    fn stats_mut(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads `c` on one side: the row, or the partition's first row (for its statics).
    async fn read(&self, c: &Candidate, origin: bool) -> Result<Option<ScannedRow>, WriteError> {
        let io = if origin {
            &self.origin_io
        } else {
            &self.target_io
        };
        let mut key = c.pk.clone();
        let cql = match &c.ck {
            Some(ck) => {
                key.extend(ck.iter().cloned());
                &self.point_row
            }
            None => &self.point_partition,
        };
        let rows = io.read(cql, key).await?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        let r = self.split(row).map_err(|e| WriteError::Fatal {
            cql: cql.clone(),
            error: e,
        })?;
        // A row read by its full key never comes back static-only; be sure anyway.
        Ok((c.ck.is_none() || r.has_row).then_some(r))
    }

    async fn read_both(
        &self,
        c: &Candidate,
    ) -> Result<(Option<ScannedRow>, Option<ScannedRow>, Instant), WriteError> {
        let (o, t) = tokio::join!(self.read(c, true), self.read(c, false));
        Ok((o?, t?, Instant::now()))
    }

    fn findings(&self, c: &Candidate, o: Option<&ScannedRow>, t: Option<&ScannedRow>) -> Findings {
        let which = if c.ck.is_some() {
            &self.regular
        } else {
            &self.statics
        };
        compare_row(
            &self.columns(),
            which,
            o.map(|r| r.cells.as_slice()),
            t.map(|r| r.cells.as_slice()),
            self.tolerance(),
        )
    }

    /// Re-reads both sides for `c`; reports (and repairs) what still differs.
    async fn recheck(&self, c: &Candidate) -> Result<(), WriteError> {
        let (o, t, read_at) = self.read_both(c).await?;
        let findings = self.findings(c, o.as_ref(), t.as_ref());
        if findings.is_empty() {
            self.stats_mut().cleared += 1;
            return Ok(());
        }
        let key = self.key_literal(c);
        self.ctx.observer.event(&Event::Difference {
            table: self.name.clone(),
            key: key.clone(),
            kinds: findings.keys().copied().collect(),
        });
        let repair = if self.ctx.options.repair {
            let r = self.repair(c, o.as_ref(), read_at).await?;
            if let Repair::Fixed { deleted } = r {
                self.ctx.observer.event(&Event::Repaired {
                    table: self.name.clone(),
                    key,
                    deleted,
                });
            }
            Some(r)
        } else {
            None
        };
        self.record(c, o.as_ref(), t.as_ref(), &findings, repair)
            .map_err(|e| WriteError::Fatal {
                cql: String::new(),
                error: e.to_string(),
            })
    }

    /// Rewrites origin's row (or deletes target's extra row), then re-reads both sides.
    async fn repair(
        &self,
        c: &Candidate,
        origin: Option<&ScannedRow>,
        read_at: Instant,
    ) -> Result<Repair, WriteError> {
        let spec = &self.ctx.spec;
        let ck = c.ck.as_deref().unwrap_or_default();
        let deleted = match origin {
            Some(_) if self.counters && spec.counters != CountersMode::ApplyDifference => {
                return Ok(Repair::Kept);
            }
            Some(o) if self.counters => {
                let counters: Vec<(usize, Option<i64>)> = self
                    .value_ids
                    .iter()
                    .zip(&o.counters)
                    .map(|(&id, v)| (id, *v))
                    .collect();
                self.target_io
                    .write_counters(&c.pk, ck, &counters, true, c.ck.is_some())
                    .await?;
                false
            }
            Some(o) => {
                let columns = self.columns();
                let writes = row_writes(
                    &columns,
                    &self.value_ids,
                    &o.cells,
                    c.ck.is_some(),
                    read_at.elapsed(),
                    spec.floor_timestamp,
                );
                self.target_io.write_row(&c.pk, ck, &writes, true).await?;
                false
            }
            // Counter rows cannot be deleted and written again (Cassandra forbids it).
            None if self.ctx.options.delete_extra && !self.counters => {
                self.target_io
                    .delete(&c.pk, c.ck.as_deref(), spec.floor_timestamp - 1)
                    .await?;
                true
            }
            None => return Ok(Repair::Kept),
        };
        let (o, t, _) = self.read_both(c).await?;
        Ok(if self.findings(c, o.as_ref(), t.as_ref()).is_empty() {
            Repair::Fixed { deleted }
        } else {
            Repair::Unfixed
        })
    }

    /// `{"k": "1", "c": "'x'"}`-style text of the key, for logs.
    fn key_literal(&self, c: &Candidate) -> String {
        self.key_columns(c)
            .into_iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// (column name, CQL literal) of the key's columns.
    fn key_columns(&self, c: &Candidate) -> Vec<(String, String)> {
        let def: &TableDef = self.target_io.table();
        let ck = c.ck.as_deref().unwrap_or_default();
        def.partition_key()
            .zip(&c.pk)
            .chain(def.clustering().zip(ck))
            .map(|(col, v)| (col.name.clone(), v.to_string()))
            .collect()
    }

    /// Counts the key and lists it (while under `max_keys`).
    fn record(
        &self,
        c: &Candidate,
        o: Option<&ScannedRow>,
        t: Option<&ScannedRow>,
        findings: &Findings,
        repair: Option<Repair>,
    ) -> Result<(), JobFileError> {
        let list = {
            let mut s = self.stats_mut();
            s.keys += 1;
            for &k in findings.keys() {
                s.counts.add(k);
            }
            match repair {
                Some(Repair::Fixed { .. }) => s.repaired += 1,
                _ => s.remaining += 1,
            }
            let list = (s.keys as usize) <= self.ctx.options.max_keys;
            if list {
                s.listed += findings.len() as u64;
            }
            list
        };
        if !list {
            return Ok(());
        }
        let columns = self.columns();
        let key: serde_json::Map<String, serde_json::Value> = self
            .key_columns(c)
            .into_iter()
            .map(|(n, v)| (n, serde_json::Value::String(v)))
            .collect();
        let writetimes = |side: Option<&ScannedRow>, ids: &[usize]| -> serde_json::Value {
            let m: BTreeMap<&str, Option<i64>> = ids
                .iter()
                .map(|&i| {
                    let wt = side
                        .and_then(|r| r.cells.get(i))
                        .and_then(Option::as_ref)
                        .and_then(newest_writetime);
                    (columns[i].name.as_str(), wt.filter(|_| !self.counters))
                })
                .collect();
            serde_json::json!(m)
        };
        for (kind, ids) in findings {
            let mut line = serde_json::json!({
                "table": self.name.to_string(),
                "scope": if c.ck.is_some() { "row" } else { "partition" },
                "key": key,
                "kind": kind.as_str(),
                "columns": ids.iter().map(|&i| columns[i].name.as_str()).collect::<Vec<_>>(),
                "origin_writetime": writetimes(o, ids),
                "target_writetime": writetimes(t, ids),
            });
            if let Some(r) = repair {
                line["repair"] = serde_json::Value::from(match r {
                    Repair::Fixed { deleted: true } => "deleted",
                    Repair::Fixed { deleted: false } => "rewritten",
                    Repair::Kept => "kept",
                    Repair::Unfixed => "unfixed",
                });
            }
            self.sink.line(&line.to_string())?;
        }
        Ok(())
    }
}

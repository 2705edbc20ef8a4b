//! Scanning: one token range of origin, page by page, with
//! `SELECT key, c, writetime(c), ttl(c) …, token(pk) FROM t WHERE token(pk) > ? AND token(pk) <= ?`
//! (never `ALLOW FILTERING`), pipelined: the next page is read while the rows of up to
//! [`PIPELINE_PAGES`] pages are written, and a page is checkpointed once it and every page
//! before it are acknowledged.
//!
//! ```text
//!  range (start, end] ──► sub-ranges (a stack, in token order)
//!      fetch page n+1 (a task) ─┐
//!      page n ─► rows ─► admit (rows/s, bytes/s, write slot) ─► write tasks of page n
//!      oldest pages whose writes are all acked ─► checkpoint "at R <last token>" (fsync)
//!      (more than PIPELINE_PAGES pages in flight: wait for the oldest first)
//!      page or write fails (retryable) ─► every write in flight ends ─► backoff ─► rest of
//!           the sub-range split in two, rescanned from the last checkpoint ─► after
//!           `retries` failures in a row: the range fails, named, with the token it stopped at
//!  all sub-ranges ─► checkpoint "done R"
//! ```
//!
//! Routing: token-range scans carry no partition key, so the driver cannot route them by
//! itself; each page goes first to a replica of its first token (see `route`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use scylla::client::session::Session;
use scylla::deserialize::row::ColumnIterator;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cancel::Cancel;
use crate::cells::{ScannedColumn, row_writes, value_size};
use crate::checkpoint::CheckpointLog;
use crate::error::RangeError;
use crate::job::JobSpec;
use crate::plan::TokenRange;
use crate::progress::{Event, Observer, TableName};
use crate::route::Router;
use crate::schema::{ColumnDef, ColumnKind, Shape, TableDef, qualified, quote};
use crate::throttle::{Limits, is_retryable};
use crate::writer::{
    BatchRow, MAX_BATCH_BYTES, MAX_BATCH_PARTITIONS, RawStatement, RawValue, TableWriter,
    WriteError, rows_of,
};

/// Pages of one range whose writes may be in flight at once, besides the page being read.
/// Without overlap, target idled during every scan round trip and every page's last writes;
/// the bound keeps memory at `PIPELINE_PAGES + 1` pages per range worker.
pub(crate) const PIPELINE_PAGES: usize = 3;

/// Everything the range workers of one table share.
pub(crate) struct TableScan {
    pub name: TableName,
    pub origin: Arc<Session>,
    pub writer: Arc<TableWriter>,
    /// The prepared scan, with the job's page size.
    pub select: PreparedStatement,
    /// Sends each page to a replica of its first token.
    pub router: Router,
    /// Indexes (into the table's columns) of the value columns, in scan order.
    pub value_ids: Vec<usize>,
    pub layout: RowLayout,
    /// Counter mode: value columns are scanned without writetime/TTL.
    pub counters: bool,
    /// Pages are read as raw bytes and written without decoding (see [`raw_path`]).
    pub raw: bool,
    pub spec: JobSpec,
    pub limits: Limits,
    pub observer: Arc<dyn Observer>,
    pub log: CheckpointLog,
    /// Looked at after each page's checkpoint.
    pub cancel: Cancel,
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
}

impl std::fmt::Debug for TableScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TableScan({})", self.name)
    }
}

/// What the scan and the validator's point reads select: key columns, each value column
/// with `writetime()` and `ttl()` (counters without), and the partition's token.
fn outputs(table: &TableDef, counters: bool) -> String {
    let mut outputs: Vec<String> = table
        .partition_key()
        .chain(table.clustering())
        .map(|c| quote(&c.name))
        .collect();
    for c in table.values() {
        let q = quote(&c.name);
        if counters || c.shape == Shape::Counter {
            outputs.push(q);
        } else {
            outputs.push(format!("{q}, writetime({q}), ttl({q})"));
        }
    }
    outputs.push(format!("token({})", table.partition_key_list()));
    outputs.join(", ")
}

/// The scan statement of `table`.
pub(crate) fn select_cql(table: &TableDef, counters: bool) -> String {
    let pk = table.partition_key_list();
    format!(
        "SELECT {} FROM {} WHERE token({pk}) > ? AND token({pk}) <= ?",
        outputs(table, counters),
        qualified(&table.name)
    )
}

/// The same outputs as [`select_cql`] for one row (`row`: bound by the full primary key) or
/// for a partition's first row (bound by the partition key, `LIMIT 1`).
pub(crate) fn point_cql(table: &TableDef, counters: bool, row: bool) -> String {
    let ck = row.then(|| table.clustering());
    let conds: Vec<String> = table
        .partition_key()
        .chain(ck.into_iter().flatten())
        .map(|c| format!("{} = ?", quote(&c.name)))
        .collect();
    format!(
        "SELECT {} FROM {} WHERE {}{}",
        outputs(table, counters),
        qualified(&table.name),
        conds.join(" AND "),
        if row { "" } else { " LIMIT 1" }
    )
}

/// The same outputs as [`select_cql`] for every row of one partition, its key bound to one
/// marker per partition-key column in key order: a proxy's repair request.
pub(crate) fn partition_cql(table: &TableDef) -> String {
    let conds: Vec<String> = table
        .partition_key()
        .map(|c| format!("{} = ?", quote(&c.name)))
        .collect();
    format!(
        "SELECT {} FROM {} WHERE {}",
        outputs(table, false),
        qualified(&table.name),
        conds.join(" AND ")
    )
}

/// Whether `table`'s rows take the raw path: pages kept as the bytes origin sent, each row's
/// cells grouped by (writetime, TTL) straight from them and bound as they are (no `CqlValue`
/// per cell, no re-encoding). That is the whole per-row work of a table whose value columns
/// are all regular single-cell columns (the fidelity rules of [`crate::cells`] then reduce to
/// grouping by writetime and TTL, the oldest group carrying the marker); statics,
/// collections, user types and counters take the general path. At most 64 columns, so a
/// group's columns fit a `u64`.
pub(crate) fn raw_path(table: &TableDef, value_ids: &[usize], counters: bool) -> bool {
    !counters
        && table.columns.len() <= 64
        && value_ids.iter().all(|&i| {
            let c = &table.columns[i];
            c.kind == ColumnKind::Regular && c.shape == Shape::Simple
        })
}

/// A failed page: whether to retry, and why.
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

/// A page's rows.
enum PageRows {
    Values(Vec<Vec<Option<CqlValue>>>),
    /// The raw path ([`raw_path`]): every column of every row, row after row, `width` columns
    /// each, as slices of the response frame.
    Raw {
        width: usize,
        columns: Vec<Option<Bytes>>,
    },
}

/// A page read from origin, its rows not yet dispatched.
struct Fetched {
    rows: PageRows,
    /// Token of the page's last row: where the next page starts.
    last_token: Option<i64>,
    /// When origin answered: remaining TTLs count from here.
    read_at: Instant,
    /// How long origin took to answer.
    read: Duration,
    next: Option<PagingState>,
}

/// A page whose rows are being written.
struct InFlight {
    writes: JoinSet<Result<(), WriteError>>,
    rows: u64,
    bytes: u64,
    /// Token of the page's last row (`None`: no rows).
    last_token: Option<i64>,
    /// Whether pages follow in the sub-range (the last one needs no checkpoint of its own).
    more: bool,
    /// The page's read from origin, and when it ended (its write time counts from there).
    read: Duration,
    read_at: Instant,
}

/// Consecutive rows of a page collected into one batch, bounded by
/// [`MAX_BATCH_PARTITIONS`] and [`MAX_BATCH_BYTES`]: [`BatchRow`]s, or on the raw path the
/// rows' [`RawStatement`]s.
#[derive(Debug)]
struct Batching<T> {
    rows: Vec<T>,
    partitions: usize,
    bytes: u64,
}

impl<T> Default for Batching<T> {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            partitions: 0,
            bytes: 0,
        }
    }
}

impl<T> Batching<T> {
    /// Whether a row of `bytes` (of a partition not yet in the batch when `new_partition`)
    /// must go in the next batch instead.
    fn full(&self, new_partition: bool, bytes: u64) -> bool {
        !self.rows.is_empty()
            && ((new_partition && self.partitions >= MAX_BATCH_PARTITIONS)
                || self.bytes + bytes > MAX_BATCH_BYTES)
    }

    fn push(&mut self, row: T, new_partition: bool, bytes: u64) {
        if new_partition || self.rows.is_empty() {
            self.partitions += 1;
        }
        self.bytes += bytes;
        self.rows.push(row);
    }
}

/// What a [`Batching`] collects, written as one request: rows of the general path, or
/// statements of the raw path.
trait Batched: Sized + Send + 'static {
    fn write(
        writer: Arc<TableWriter>,
        rows: Vec<Self>,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;
}

impl Batched for BatchRow {
    async fn write(writer: Arc<TableWriter>, rows: Vec<Self>) -> Result<(), WriteError> {
        writer.write_batch(&rows).await
    }
}

impl Batched for RawStatement {
    async fn write(writer: Arc<TableWriter>, rows: Vec<Self>) -> Result<(), WriteError> {
        writer.write_raw(rows).await
    }
}

/// Reads one page of `range` (a task of its own, so it overlaps the writes of earlier pages).
async fn fetch(
    origin: Arc<Session>,
    select: PreparedStatement,
    range: TokenRange,
    paging: PagingState,
    raw: bool,
) -> Result<Fetched, PageFailure> {
    let started = Instant::now();
    let (result, paging) = origin
        .execute_single_page(&select, (range.start, range.end), paging)
        .await
        .map_err(|e| PageFailure {
            retryable: is_retryable(&e),
            error: format!("scan of ({}, {}]: {e}", range.start, range.end),
        })?;
    let read_at = Instant::now();
    let rows = if raw {
        raw_rows(result)
    } else {
        rows_of(result).map(PageRows::Values)
    }
    .map_err(|e| PageFailure {
        retryable: false,
        error: format!("scan result: {e}"),
    })?;
    let last_token = match &rows {
        PageRows::Values(rows) => match rows.last().and_then(|r| r.last()) {
            Some(Some(CqlValue::BigInt(t))) => Some(*t),
            _ => None,
        },
        PageRows::Raw { columns, .. } => columns.last().and_then(|c| be_i64(c.as_deref()?)),
    };
    Ok(Fetched {
        rows,
        last_token,
        read_at,
        read: read_at.duration_since(started),
        next: match paging {
            PagingStateResponse::HasMorePages { state } => Some(state),
            PagingStateResponse::NoMorePages => None,
        },
    })
}

/// A result's rows as [`PageRows::Raw`]: no value is decoded, each column is a slice of the
/// response frame.
fn raw_rows(r: scylla::response::query_result::QueryResult) -> Result<PageRows, String> {
    let rows = r.into_rows_result().map_err(|e| e.to_string())?;
    let width = rows.column_specs().len();
    let mut columns = Vec::with_capacity(rows.rows_num() * width);
    for row in rows.rows::<ColumnIterator>().map_err(|e| e.to_string())? {
        for column in row.map_err(|e| e.to_string())? {
            columns.push(
                column
                    .map_err(|e| e.to_string())?
                    .slice
                    .map(|s| s.to_bytes()),
            );
        }
    }
    Ok(PageRows::Raw { width, columns })
}

impl TableScan {
    /// Copies range number `index`, starting at token `resume_from` (inclusive) when a
    /// previous run got that far.
    pub(crate) async fn copy_range(
        self: Arc<Self>,
        index: u32,
        range: TokenRange,
        resume_from: Option<i64>,
    ) -> Result<(), RangeError> {
        let start = resume_from.map_or(range.start, |t| t.saturating_sub(1).max(range.start));
        let mut pending = vec![TokenRange {
            start,
            end: range.end,
        }];
        let mut failures = 0u32;
        while let Some(cur) = pending.pop() {
            // Where to rescan from after a failure: everything up to here is checkpointed.
            let mut restart = cur.start;
            let attempt = self
                .copy_subrange(index, cur, &mut restart, &mut failures)
                .await?;
            match attempt {
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
                    if failures > self.spec.retries {
                        return Err(RangeError::Exhausted {
                            range: index,
                            start: range.start,
                            end: range.end,
                            position: restart,
                            attempts: failures,
                            last_error: f.error,
                        });
                    }
                    self.observer.event(&Event::Retry {
                        table: self.name.clone(),
                        range: index,
                        attempt: failures,
                        error: f.error,
                    });
                    tokio::time::sleep(self.spec.backoff(failures)).await;
                    // A smaller span is a shorter scan: split what is left.
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
                    continue;
                }
            }
            if !pending.is_empty() {
                // Everything up to this sub-range's end is written.
                self.log
                    .resume_point(index, cur.end.saturating_add(1))
                    .await?;
            }
        }
        self.log.range_done(index).await?;
        self.observer.event(&Event::RangeDone {
            table: self.name.clone(),
            range: index,
        });
        Ok(())
    }

    /// Copies one sub-range, pipelined (module docs). The outer error is a checkpoint that
    /// could not be written; the inner one a page that failed, after every write in flight
    /// ended, with `restart` at the last checkpoint.
    async fn copy_subrange(
        &self,
        index: u32,
        cur: TokenRange,
        restart: &mut i64,
        failures: &mut u32,
    ) -> Result<Result<(), PageFailure>, RangeError> {
        let mut last_pk: Option<Vec<CqlValue>> = None;
        let mut window: VecDeque<InFlight> = VecDeque::with_capacity(PIPELINE_PAGES + 1);
        // At most one read in flight; the set aborts it when the attempt ends early.
        let mut reading: JoinSet<Result<Fetched, PageFailure>> = JoinSet::new();
        reading.spawn(fetch(
            self.origin.clone(),
            self.router
                .statement(&self.select, cur.start.saturating_add(1)),
            cur,
            PagingState::start(),
            self.raw,
        ));
        let mut failure = None;
        while let Some(read) = reading.join_next().await {
            let page = match read {
                Ok(Ok(page)) => page,
                Ok(Err(f)) => {
                    failure = Some(f);
                    break;
                }
                Err(e) => {
                    failure = Some(PageFailure {
                        retryable: false,
                        error: format!("scan task ended abnormally: {e}"),
                    });
                    break;
                }
            };
            if let Some(next) = &page.next {
                let from = page.last_token.unwrap_or(cur.start.saturating_add(1));
                reading.spawn(fetch(
                    self.origin.clone(),
                    self.router.statement(&self.select, from),
                    cur,
                    next.clone(),
                    self.raw,
                ));
            }
            if let Err(f) = self.dispatch(page, &mut window, &mut last_pk).await {
                failure = Some(f);
                break;
            }
            if let Err(f) = self
                .settle(index, cur, &mut window, PIPELINE_PAGES, restart, failures)
                .await?
            {
                failure = Some(f);
                break;
            }
            if self.cancel.is_cancelled() {
                reading.abort_all();
                // Checkpoint what is written, so a rerun starts right after it.
                let settled = self
                    .settle(index, cur, &mut window, 0, restart, failures)
                    .await?;
                if settled.is_err() {
                    for page in &mut window {
                        while page.writes.join_next().await.is_some() {}
                    }
                }
                return Err(RangeError::Cancelled { range: index });
            }
        }
        if failure.is_none()
            && let Err(f) = self
                .settle(index, cur, &mut window, 0, restart, failures)
                .await?
        {
            failure = Some(f);
        }
        let Some(f) = failure else {
            return Ok(Ok(()));
        };
        reading.abort_all();
        // The retry must not race this attempt's writes (a list's read-compare-append would
        // see half of them): every write in flight ends first.
        for page in &mut window {
            while page.writes.join_next().await.is_some() {}
        }
        Ok(Err(f))
    }

    /// Starts the writes of `page`'s rows as a new entry at the back of `window`; returns
    /// once every row has a write slot (the rate limits and the in-flight bound admitted it).
    async fn dispatch(
        &self,
        page: Fetched,
        window: &mut VecDeque<InFlight>,
        last_pk: &mut Option<Vec<CqlValue>>,
    ) -> Result<(), PageFailure> {
        window.push_back(InFlight {
            writes: JoinSet::new(),
            rows: 0,
            bytes: 0,
            last_token: None,
            more: page.next.is_some(),
            read: page.read,
            read_at: page.read_at,
        });
        let Some(out) = window.back_mut() else {
            return Ok(());
        };
        let rows = match page.rows {
            PageRows::Values(rows) => rows,
            PageRows::Raw { width, columns } => {
                return self.dispatch_raw(out, width, &columns, page.read_at).await;
            }
        };
        let table = self.writer.table();
        let values: Vec<&ColumnDef> = self.value_ids.iter().map(|&i| &table.columns[i]).collect();
        let mut throttled = Duration::ZERO;
        let mut failure: Option<PageFailure> = None;
        // Rows without lists, in scan order, until the batch is full.
        let mut batch: Batching<BatchRow> = Batching::default();
        for row in rows {
            let scanned = match self.layout.split(row) {
                Ok(s) => s,
                Err(e) => {
                    failure = Some(PageFailure {
                        retryable: false,
                        error: e,
                    });
                    break;
                }
            };
            let first_of_partition = last_pk.as_ref() != Some(&scanned.pk);
            if first_of_partition {
                *last_pk = Some(scanned.pk.clone());
            }
            out.last_token = Some(scanned.token);
            out.rows += 1;
            let writer = self.writer.clone();
            if self.counters {
                let counters: Vec<(usize, Option<i64>)> = self
                    .value_ids
                    .iter()
                    .zip(&scanned.counters)
                    .map(|(&id, v)| (id, *v))
                    .collect();
                out.bytes += 8 * counters.len() as u64;
                let (permit, waited) = self.limits.admit(8 * counters.len() as u64).await;
                throttled += waited;
                out.writes.spawn(async move {
                    let _permit = permit;
                    writer
                        .write_counters(
                            &scanned.pk,
                            &scanned.ck,
                            &counters,
                            first_of_partition,
                            scanned.has_row,
                        )
                        .await
                });
            } else {
                let writes = row_writes(
                    &values,
                    &self.value_ids,
                    &scanned.cells,
                    scanned.has_row,
                    page.read_at.elapsed(),
                    self.spec.floor_timestamp,
                );
                let key_bytes: u64 = scanned.pk.iter().chain(&scanned.ck).map(value_size).sum();
                let bytes = writes.bytes + key_bytes;
                out.bytes += bytes;
                throttled += self.limits.throttle(1, bytes).await;
                if TableWriter::batchable(&writes) {
                    let new_partition = batch.rows.last().is_none_or(|r| r.pk != scanned.pk);
                    if batch.full(new_partition, bytes) {
                        self.spawn_batch(&mut out.writes, std::mem::take(&mut batch).rows)
                            .await;
                    }
                    batch.push(
                        BatchRow {
                            pk: scanned.pk,
                            ck: scanned.ck,
                            writes,
                            statics: first_of_partition,
                        },
                        new_partition,
                        bytes,
                    );
                } else {
                    let permit = self.limits.slot().await;
                    out.writes.spawn(async move {
                        let _permit = permit;
                        writer
                            .write_row(&scanned.pk, &scanned.ck, &writes, first_of_partition)
                            .await
                    });
                }
            }
            // Collect finished writes as we go, so a failure stops the page early.
            if collect_finished(&mut out.writes, &mut failure) {
                break;
            }
        }
        self.finish_page(&mut out.writes, batch, throttled, failure)
            .await
    }

    /// [`Self::dispatch`] of a raw page (see [`raw_path`]): per row, the cells grouped by
    /// (writetime, remaining TTL) into [`RawStatement`]s, as [`crate::cells::row_writes`]
    /// groups them, and collected into batches the same way.
    async fn dispatch_raw(
        &self,
        out: &mut InFlight,
        width: usize,
        columns: &[Option<Bytes>],
        read_at: Instant,
    ) -> Result<(), PageFailure> {
        let layout = self.layout;
        let pk_len = layout.pk_len;
        let keys = layout.pk_len + layout.ck_len;
        let expected = keys + 3 * layout.values + 1;
        if width != expected || self.value_ids.len() != layout.values {
            return Err(PageFailure {
                retryable: false,
                error: format!("scan row has {width} columns, expected {expected}"),
            });
        }
        let mut throttled = Duration::ZERO;
        let mut failure: Option<PageFailure> = None;
        let mut batch: Batching<RawStatement> = Batching::default();
        // (writetime, TTL, columns) of the row's groups; reused from row to row.
        let mut groups: Vec<(i64, i32, u64)> = Vec::new();
        let mut previous: Option<&[Option<Bytes>]> = None;
        for row in columns.chunks_exact(width) {
            let (key, rest) = row.split_at(keys);
            let key_values: Option<Vec<RawValue>> =
                key.iter().map(|k| k.clone().map(RawValue::Bytes)).collect();
            let key_values = match key_values {
                Some(k) => k,
                // Only a static-only row has null clustering columns, and this path has no
                // static columns.
                None => {
                    failure = Some(PageFailure {
                        retryable: false,
                        error: "scan row with a null key column".to_owned(),
                    });
                    break;
                }
            };
            let token = match rest.last() {
                Some(Some(t)) => match <[u8; 8]>::try_from(t.as_ref()) {
                    Ok(b) => i64::from_be_bytes(b),
                    Err(_) => {
                        failure = Some(PageFailure {
                            retryable: false,
                            error: format!("token column holds {} bytes", t.len()),
                        });
                        break;
                    }
                },
                _ => {
                    failure = Some(PageFailure {
                        retryable: false,
                        error: "token column is null".to_owned(),
                    });
                    break;
                }
            };
            out.last_token = Some(token);
            out.rows += 1;
            // As row_writes: TTLs lose the whole seconds since the page was read, and a cell
            // that expired meanwhile is not written.
            let spent = i32::try_from(read_at.elapsed().as_secs()).unwrap_or(i32::MAX);
            let mut bytes: u64 = key.iter().flatten().map(|b| b.len() as u64).sum();
            groups.clear();
            for (cell, &id) in rest.chunks_exact(3).zip(&self.value_ids) {
                let [value, writetime, ttl] = cell else {
                    continue;
                };
                let Some(value) = value else { continue };
                bytes += value.len() as u64;
                let Some(writetime) = writetime.as_deref().and_then(be_i64) else {
                    continue;
                };
                let ttl = ttl.as_deref().and_then(be_i32).unwrap_or(0);
                let ttl = if ttl <= 0 {
                    0
                } else if ttl > spent {
                    ttl - spent
                } else {
                    continue;
                };
                match groups
                    .iter_mut()
                    .find(|(w, t, _)| *w == writetime && *t == ttl)
                {
                    Some(g) => g.2 |= 1 << id,
                    None => groups.push((writetime, ttl, 1 << id)),
                }
            }
            // The oldest group first: it carries the row marker (the INSERT form).
            groups.sort_unstable_by_key(|&(w, t, _)| (w, t));
            let new_partition =
                batch.rows.is_empty() || previous.is_none_or(|p| p[..pk_len] != key[..pk_len]);
            previous = Some(row);
            out.bytes += bytes;
            throttled += self.limits.throttle(1, bytes).await;
            if batch.full(new_partition, bytes) {
                self.spawn_batch(&mut out.writes, std::mem::take(&mut batch).rows)
                    .await;
            }
            if groups.is_empty() {
                // Primary key only: a key-only INSERT at the floor timestamp.
                let mut values = key_values;
                values.push(RawValue::BigInt(self.spec.floor_timestamp));
                values.push(RawValue::Int(0));
                batch.push(
                    RawStatement {
                        insert: true,
                        columns: 0,
                        values,
                    },
                    new_partition,
                    bytes,
                );
            } else {
                self.push_groups(&mut batch, &groups, rest, &key_values, new_partition, bytes);
            }
            // Collect finished writes as we go, so a failure stops the page early.
            if collect_finished(&mut out.writes, &mut failure) {
                break;
            }
        }
        self.finish_page(&mut out.writes, batch, throttled, failure)
            .await
    }

    /// Adds one row's statements to `batch`: a statement per (writetime, TTL) group of
    /// `groups` (oldest first; the oldest is the `INSERT` that carries the marker), values
    /// taken from the row's scan columns `rest` (after the key) and its `key`.
    fn push_groups(
        &self,
        batch: &mut Batching<RawStatement>,
        groups: &[(i64, i32, u64)],
        rest: &[Option<Bytes>],
        key: &[RawValue],
        new_partition: bool,
        bytes: u64,
    ) {
        for (i, &(writetime, ttl, mask)) in groups.iter().enumerate() {
            let insert = i == 0;
            let cells = rest
                .chunks_exact(3)
                .zip(&self.value_ids)
                .filter(|(_, id)| mask & (1 << **id) != 0)
                .filter_map(|(c, _)| c[0].clone().map(RawValue::Bytes));
            let timestamps = [RawValue::BigInt(writetime), RawValue::Int(ttl)];
            let mut values = Vec::with_capacity(key.len() + 2 + mask.count_ones() as usize);
            if insert {
                values.extend(key.iter().cloned());
                values.extend(cells);
                values.extend(timestamps);
            } else {
                values.extend(timestamps);
                values.extend(cells);
                values.extend(key.iter().cloned());
            }
            batch.push(
                RawStatement {
                    insert,
                    columns: mask,
                    values,
                },
                new_partition && insert,
                if insert { bytes } else { 0 },
            );
        }
    }

    /// Starts writing `rows` (one request) once a write slot is free.
    async fn spawn_batch<T: Batched>(
        &self,
        writes: &mut JoinSet<Result<(), WriteError>>,
        rows: Vec<T>,
    ) {
        let permit = self.limits.slot().await;
        let writer = self.writer.clone();
        writes.spawn(async move {
            let _permit = permit;
            T::write(writer, rows).await
        });
    }

    /// Ends a page's dispatch: sends the last partial `batch` (unless a write failed) and
    /// reports the time the rate limits held the page back.
    async fn finish_page<T: Batched>(
        &self,
        writes: &mut JoinSet<Result<(), WriteError>>,
        batch: Batching<T>,
        throttled: Duration,
        failure: Option<PageFailure>,
    ) -> Result<(), PageFailure> {
        if failure.is_none() && !batch.rows.is_empty() {
            self.spawn_batch(writes, batch.rows).await;
        }
        if !throttled.is_zero() {
            self.observer.event(&Event::Throttled {
                micros: u64::try_from(throttled.as_micros()).unwrap_or(u64::MAX),
            });
        }
        failure.map_or(Ok(()), Err)
    }

    /// Retires the oldest pages of `window` whose writes all succeeded, waiting for them while
    /// more than `keep` pages are in flight, and checkpoints the newest retired one. The outer
    /// error is the checkpoint's; the inner one a failed write.
    async fn settle(
        &self,
        index: u32,
        cur: TokenRange,
        window: &mut VecDeque<InFlight>,
        keep: usize,
        restart: &mut i64,
        failures: &mut u32,
    ) -> Result<Result<(), PageFailure>, RangeError> {
        let mut newest = None;
        let mut failure = None;
        'pages: while !window.is_empty() {
            let wait = window.len() > keep;
            let Some(front) = window.front_mut() else {
                break;
            };
            loop {
                let done = if wait {
                    front.writes.join_next().await
                } else {
                    front.writes.try_join_next()
                };
                let Some(done) = done else { break };
                if let Some(f) = joined(done) {
                    failure = Some(f);
                    break 'pages;
                }
            }
            if !front.writes.is_empty() {
                break;
            }
            let Some(page) = window.pop_front() else {
                break;
            };
            *failures = 0;
            self.rows.fetch_add(page.rows, Ordering::Relaxed);
            self.bytes.fetch_add(page.bytes, Ordering::Relaxed);
            self.observer.event(&Event::Written {
                table: self.name.clone(),
                rows: page.rows,
                bytes: page.bytes,
            });
            // Retired when noticed, so under pipelining `write` may include a little of the
            // next page's dispatch.
            self.observer.event(&Event::Page {
                table: self.name.clone(),
                rows: page.rows,
                bytes: page.bytes,
                read: page.read,
                write: page.read_at.elapsed(),
            });
            if page.more {
                newest = page.last_token.or(newest);
            }
        }
        // One fsync for every page retired here; also before reporting a failure, so the
        // retry starts after what is already written.
        if let Some(t) = newest {
            self.log.resume_point(index, t).await?;
            *restart = t.saturating_sub(1).max(cur.start);
        }
        Ok(failure.map_or(Ok(()), Err))
    }
}

/// How a scan row is laid out: key columns, value columns, then the token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowLayout {
    pub pk_len: usize,
    pub ck_len: usize,
    pub values: usize,
    /// Counter mode: value columns come without writetime/TTL.
    pub counters: bool,
}

impl RowLayout {
    /// Splits a scan row into key, token and per-column data.
    pub(crate) fn split(&self, row: Vec<Option<CqlValue>>) -> Result<ScannedRow, String> {
        let per_column = if self.counters { 1 } else { 3 };
        let expected = self.pk_len + self.ck_len + per_column * self.values + 1;
        if row.len() != expected {
            return Err(format!(
                "scan row has {} columns, expected {expected}",
                row.len()
            ));
        }
        let mut it = row.into_iter();
        let mut pk = Vec::with_capacity(self.pk_len);
        for _ in 0..self.pk_len {
            pk.push(it.next().flatten().ok_or("null partition key column")?);
        }
        let ck_raw: Vec<Option<CqlValue>> = it.by_ref().take(self.ck_len).collect();
        // A partition with static cells but no rows comes back with null clustering columns.
        let has_row = ck_raw.iter().all(Option::is_some);
        let ck: Vec<CqlValue> = ck_raw.into_iter().flatten().collect();
        let mut cells = Vec::new();
        let mut counters = Vec::new();
        for _ in 0..self.values {
            if self.counters {
                counters.push(match it.next().flatten() {
                    Some(CqlValue::Counter(c)) => Some(c.0),
                    Some(CqlValue::BigInt(n)) => Some(n),
                    _ => None,
                });
            } else {
                let v = it.next().flatten();
                let wt = it.next().flatten();
                let ttl = it.next().flatten();
                cells.push(ScannedColumn::from_outputs(v, wt, ttl));
            }
        }
        let token = match it.next().flatten() {
            Some(CqlValue::BigInt(t)) => t,
            other => return Err(format!("token column holds {other:?}")),
        };
        Ok(ScannedRow {
            token,
            pk,
            ck,
            has_row,
            cells,
            counters,
        })
    }
}

/// A big-endian `bigint` (a writetime).
fn be_i64(b: &[u8]) -> Option<i64> {
    <[u8; 8]>::try_from(b).ok().map(i64::from_be_bytes)
}

/// A big-endian `int` (a TTL).
fn be_i32(b: &[u8]) -> Option<i32> {
    <[u8; 4]>::try_from(b).ok().map(i32::from_be_bytes)
}

/// Takes the results of the writes in `writes` that have ended, keeping the first failure in
/// `failure`; true when there is one (the page must stop).
fn collect_finished(
    writes: &mut JoinSet<Result<(), WriteError>>,
    failure: &mut Option<PageFailure>,
) -> bool {
    while let Some(done) = writes.try_join_next() {
        if let Some(f) = joined(done) {
            failure.get_or_insert(f);
        }
    }
    failure.is_some()
}

fn joined(r: Result<Result<(), WriteError>, tokio::task::JoinError>) -> Option<PageFailure> {
    match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.into()),
        Err(e) => Some(PageFailure {
            retryable: false,
            error: format!("write task ended abnormally: {e}"),
        }),
    }
}

/// One scan row, split.
#[derive(Debug, Clone)]
pub(crate) struct ScannedRow {
    pub token: i64,
    pub pk: Vec<CqlValue>,
    /// Empty for tables without clustering columns and for static-only rows.
    pub ck: Vec<CqlValue>,
    /// False for a partition's static-only row (clustering columns null).
    pub has_row: bool,
    /// Per value column (not in counter mode).
    pub cells: Vec<Option<ScannedColumn>>,
    /// Per value column, in counter mode.
    pub counters: Vec<Option<i64>>,
}

//! Scanning: one token range of origin, page by page, with
//! `SELECT key, c, writetime(c), ttl(c) …, token(pk) FROM t WHERE token(pk) > ? AND token(pk) <= ?`
//! (never `ALLOW FILTERING`), each page's rows written to target before the next page, and a
//! checkpoint after every page.
//!
//! ```text
//!  range (start, end] ──► sub-ranges (a stack, in token order)
//!      page ─► rows ─► admit (rows/s, bytes/s, write slot) ─► write tasks ─► all acked
//!           ─► checkpoint "at R <last token>" (fsync) ─► next page
//!      page or write fails (retryable) ─► backoff ─► rest of the sub-range split in two,
//!           rescanned from the last checkpoint ─► after `retries` failures in a row: the
//!           range fails, named, with the token it stopped at
//!  all sub-ranges ─► checkpoint "done R"
//! ```
//!
//! Routing: token-range scans carry no partition key, so the driver cannot route them to a
//! replica; they go to the load-balancing policy's choice (the local DC when set).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use scylla::client::session::Session;
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
use crate::schema::{ColumnDef, Shape, TableDef, qualified, quote};
use crate::throttle::{Limits, is_retryable};
use crate::writer::{TableWriter, WriteError, rows_of};

/// Everything the range workers of one table share.
pub(crate) struct TableScan {
    pub name: TableName,
    pub origin: Arc<Session>,
    pub writer: Arc<TableWriter>,
    /// The prepared scan, with the job's page size.
    pub select: PreparedStatement,
    /// Indexes (into the table's columns) of the value columns, in scan order.
    pub value_ids: Vec<usize>,
    pub layout: RowLayout,
    /// Counter mode: value columns are scanned without writetime/TTL.
    pub counters: bool,
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

/// A page that was read and written.
struct Page {
    rows: u64,
    bytes: u64,
    last_token: Option<i64>,
    next: Option<PagingState>,
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
        'subranges: while let Some(cur) = pending.pop() {
            let mut paging = PagingState::start();
            // Where to rescan from after a failure: everything up to here is checkpointed.
            let mut restart = cur.start;
            let mut last_pk: Option<Vec<CqlValue>> = None;
            loop {
                match self.page(cur, paging.clone(), &mut last_pk).await {
                    Ok(page) => {
                        failures = 0;
                        self.rows.fetch_add(page.rows, Ordering::Relaxed);
                        self.bytes.fetch_add(page.bytes, Ordering::Relaxed);
                        self.observer.event(&Event::Written {
                            table: self.name.clone(),
                            rows: page.rows,
                            bytes: page.bytes,
                        });
                        let Some(next) = page.next else { break };
                        if let Some(t) = page.last_token {
                            self.log.resume_point(index, t).await?;
                            restart = t.saturating_sub(1).max(cur.start);
                        }
                        if self.cancel.is_cancelled() {
                            return Err(RangeError::Cancelled { range: index });
                        }
                        paging = next;
                    }
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
                        continue 'subranges;
                    }
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

    /// Reads one page of `range` and writes its rows; returns once target acknowledged all.
    async fn page(
        &self,
        range: TokenRange,
        paging: PagingState,
        last_pk: &mut Option<Vec<CqlValue>>,
    ) -> Result<Page, PageFailure> {
        let started = Instant::now();
        let fetched = self
            .origin
            .execute_single_page(&self.select, (range.start, range.end), paging)
            .await;
        let (result, paging) = fetched.map_err(|e| PageFailure {
            retryable: is_retryable(&e),
            error: format!("scan of ({}, {}]: {e}", range.start, range.end),
        })?;
        let read_at = Instant::now();
        let rows = rows_of(result).map_err(|e| PageFailure {
            retryable: false,
            error: format!("scan result: {e}"),
        })?;
        let table = self.writer.table();
        let values: Vec<&ColumnDef> = self.value_ids.iter().map(|&i| &table.columns[i]).collect();
        let mut tasks: JoinSet<Result<(), WriteError>> = JoinSet::new();
        let mut page = Page {
            rows: 0,
            bytes: 0,
            last_token: None,
            next: match paging {
                PagingStateResponse::HasMorePages { state } => Some(state),
                PagingStateResponse::NoMorePages => None,
            },
        };
        let mut throttled = Duration::ZERO;
        let mut failure: Option<PageFailure> = None;
        for row in rows {
            let scanned = self.layout.split(row).map_err(|e| PageFailure {
                retryable: false,
                error: e,
            })?;
            let first_of_partition = last_pk.as_ref() != Some(&scanned.pk);
            if first_of_partition {
                *last_pk = Some(scanned.pk.clone());
            }
            page.last_token = Some(scanned.token);
            page.rows += 1;
            let writer = self.writer.clone();
            if self.counters {
                let counters: Vec<(usize, Option<i64>)> = self
                    .value_ids
                    .iter()
                    .zip(&scanned.counters)
                    .map(|(&id, v)| (id, *v))
                    .collect();
                page.bytes += 8 * counters.len() as u64;
                let (permit, waited) = self.limits.admit(8 * counters.len() as u64).await;
                throttled += waited;
                tasks.spawn(async move {
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
                    read_at.elapsed(),
                    self.spec.floor_timestamp,
                );
                let key_bytes: u64 = scanned.pk.iter().chain(&scanned.ck).map(value_size).sum();
                page.bytes += writes.bytes + key_bytes;
                let (permit, waited) = self.limits.admit(writes.bytes + key_bytes).await;
                throttled += waited;
                tasks.spawn(async move {
                    let _permit = permit;
                    writer
                        .write_row(&scanned.pk, &scanned.ck, &writes, first_of_partition)
                        .await
                });
            }
            // Collect finished writes as we go, so a failure stops the page early.
            while let Some(done) = tasks.try_join_next() {
                if let Some(f) = joined(done) {
                    failure.get_or_insert(f);
                }
            }
            if failure.is_some() {
                break;
            }
        }
        while let Some(done) = tasks.join_next().await {
            if let Some(f) = joined(done) {
                failure.get_or_insert(f);
            }
        }
        if !throttled.is_zero() {
            self.observer.event(&Event::Throttled {
                micros: u64::try_from(throttled.as_micros()).unwrap_or(u64::MAX),
            });
        }
        match failure {
            Some(f) => Err(f),
            None => {
                self.observer.event(&Event::Page {
                    table: self.name.clone(),
                    rows: page.rows,
                    bytes: page.bytes,
                    read: read_at.duration_since(started),
                    write: read_at.elapsed(),
                });
                Ok(page)
            }
        }
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

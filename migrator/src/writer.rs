//! Writes scanned rows to target: builds the statement of each group (prepared once, cached
//! by shape), runs it with retries, and applies the list and counter rules.
//!
//! **Batches**: a row's groups go in one request (a single-partition unlogged batch), and the
//! scan collects consecutive rows without lists into unlogged batches of at most
//! [`MAX_BATCH_PARTITIONS`] partitions and [`MAX_BATCH_BYTES`]. Every statement keeps its own
//! `USING TIMESTAMP … AND TTL …` (the batch sets none), so a batch changes how many requests
//! target serves, not what it stores; unlogged, because the writes are idempotent and need no
//! atomicity. Per row, ten-row batches cost the target sim less than half the CPU of single-row
//! INSERTs (migrator/BENCHMARKS.md): the per-request work is shared.
//!
//! **Lists** (not idempotent: each append gets a fresh timeuuid key, and even a whole-list
//! overwrite at the same timestamp duplicates on a rerun): before writing a row's list, the
//! writer reads target's list with its per-element writetimes and appends, in origin order,
//! only the origin elements target lacks. An element counts as present when target has an
//! element with the same value and writetime that no other origin element claimed (so
//! `[1, 1]` stays two elements). Runs of elements with the same writetime and TTL go in one
//! append, and runs are written one after another so target keeps origin's order. A crash
//! between two appends leaves a prefix, which the rerun completes. Trade-off: elements target
//! got from dual writes before the backfill come first; Cassandra cannot insert an element at
//! a chosen position.
//!
//! **Counters** cannot carry timestamps: the writer reads target's counters and adds
//! `origin − target` to each, so a rerun adds nothing more.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use scylla::client::session::Session;
use scylla::errors::ExecutionError;
use scylla::frame::response::result::ColumnType;
use scylla::serialize::SerializationError;
use scylla::serialize::row::SerializeRow;
use scylla::serialize::value::SerializeValue;
use scylla::serialize::writers::{CellWriter, WrittenCellProof};
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{Counter, CqlValue};
use tokio::sync::OnceCell;

use crate::cells::{Group, ListAppend, Marker, Piece, RowWrites, list_runs, missing_list_elements};
use crate::job::JobSpec;
use crate::schema::{ColumnDef, TableDef, qualified, quote};
use crate::throttle::is_retryable;

/// Why a row could not be written.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Retryable errors outlasted the retries.
    #[error("{cql:?} failed {attempts} times: {error}")]
    Exhausted {
        cql: String,
        attempts: u32,
        error: String,
    },
    /// An error retrying cannot fix.
    #[error("{cql:?} failed: {error}")]
    Fatal { cql: String, error: String },
    #[error("reading target's {column} for the list/counter rule returned {found}")]
    UnexpectedRead { column: String, found: String },
}

impl WriteError {
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::Exhausted { .. })
    }
}

/// Prepared statements by [`StatementKey`], at most `capacity`, oldest dropped first (a table
/// with many writetime combinations has many shapes; the common ones come back and are
/// prepared again). Each entry is prepared once: writes that miss together wait for the one
/// PREPARE instead of each sending their own.
#[derive(Debug)]
struct StatementCache {
    capacity: usize,
    map: HashMap<StatementKey, Arc<OnceCell<Arc<PreparedStatement>>>>,
    order: VecDeque<StatementKey>,
}

/// What identifies a statement without building its text: a group's statement is looked up
/// for every row, so its key is a few numbers, and the text is built only to prepare it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum StatementKey {
    /// A group's `UPDATE`, or with `insert` its `INSERT` form.
    Group {
        scope: Scope,
        insert: bool,
        pieces: Vec<(usize, PieceKind)>,
    },
    /// A row-scope group of single-cell columns (the raw path, [`RawStatement`]): `columns`
    /// has bit `i` set for column `i` of the table, so the key costs no allocation per row.
    Cells { insert: bool, columns: u64 },
    /// Any other statement (list reads and appends, counters), by its text.
    Text(String),
}

/// The part of a [`Piece`] its statement text depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PieceKind {
    Cell,
    /// `c = c + ?` (sets and maps).
    Add,
    Field(String),
}

/// Writes the rows of one table.
#[derive(Debug)]
pub struct TableWriter {
    session: Arc<Session>,
    table: TableDef,
    cache: Mutex<StatementCache>,
    retries: u32,
    spec: JobSpec,
}

/// Where a statement applies: the whole key, or the partition (static columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    Row,
    Partition,
}

impl TableWriter {
    pub fn new(session: Arc<Session>, table: TableDef, spec: &JobSpec) -> Self {
        Self {
            session,
            table,
            cache: Mutex::new(StatementCache {
                capacity: spec.statement_cache,
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            retries: spec.retries,
            spec: spec.clone(),
        }
    }

    pub fn table(&self) -> &TableDef {
        &self.table
    }

    /// Writes one row. `pk` / `ck` are its key values (`ck` empty for tables without
    /// clustering); `statics` says whether this row is the first of its partition in the scan
    /// (static cells are written once per partition). The row's groups go in one request
    /// (a single-partition batch when there are several), then its lists.
    pub async fn write_row(
        &self,
        pk: &[CqlValue],
        ck: &[CqlValue],
        writes: &RowWrites,
        statics: bool,
    ) -> Result<(), WriteError> {
        let mut statements = Vec::new();
        self.row_statements(pk, ck, writes, statics, &mut statements);
        self.send(statements).await?;
        if statics {
            for l in &writes.static_lists {
                self.write_list(Scope::Partition, pk, ck, l).await?;
            }
        }
        for l in &writes.lists {
            self.write_list(Scope::Row, pk, ck, l).await?;
        }
        Ok(())
    }

    /// Whether a row's writes can share a batch with other rows' (see [`Self::write_batch`]):
    /// lists cannot, their rule reads target first.
    pub fn batchable(writes: &RowWrites) -> bool {
        writes.lists.is_empty() && writes.static_lists.is_empty()
    }

    /// Writes rows without lists (see [`Self::batchable`]) in one unlogged batch: every
    /// statement keeps its own `USING TIMESTAMP … AND TTL …`, so batching changes how many
    /// requests target serves, not what it stores. The caller bounds the batch (see
    /// [`MAX_BATCH_PARTITIONS`], [`MAX_BATCH_BYTES`]).
    pub async fn write_batch(&self, rows: &[BatchRow]) -> Result<(), WriteError> {
        let mut statements = Vec::new();
        for r in rows {
            self.row_statements(&r.pk, &r.ck, &r.writes, r.statics, &mut statements);
        }
        self.send(statements).await
    }

    /// The group statements of one row: static groups (with `statics`), regular groups, the
    /// row marker.
    fn row_statements(
        &self,
        pk: &[CqlValue],
        ck: &[CqlValue],
        writes: &RowWrites,
        statics: bool,
        out: &mut Vec<(StatementKey, Vec<CqlValue>)>,
    ) {
        if statics {
            for g in &writes.statics {
                out.push(group_statement(Scope::Partition, pk, ck, g, false));
            }
        }
        for (i, g) in writes.regular.iter().enumerate() {
            let insert = writes.marker == Some(Marker::InGroup(i));
            out.push(group_statement(Scope::Row, pk, ck, g, insert));
        }
        if let Some(Marker::KeyOnly { writetime, ttl }) = writes.marker {
            let g = Group {
                writetime,
                ttl,
                pieces: Vec::new(),
            };
            out.push(group_statement(Scope::Row, pk, ck, &g, true));
        }
    }

    /// Runs `statements`: one alone, several as an unlogged batch.
    async fn send<V: SerializeRow + Sync>(
        &self,
        statements: Vec<(StatementKey, V)>,
    ) -> Result<(), WriteError> {
        let Some(first) = statements.first() else {
            return Ok(());
        };
        if statements.len() == 1 {
            let (key, values) = first;
            return self
                .with_retries(
                    || self.key_cql(key),
                    || async {
                        let p = self.prepared(key).await?;
                        self.session.execute_unpaged(&p, values).await
                    },
                )
                .await
                .map(drop);
        }
        let values: Vec<&V> = statements.iter().map(|(_, v)| v).collect();
        let what = || {
            format!(
                "BATCH of {} statements, the first {:?}",
                statements.len(),
                self.key_cql(&first.0)
            )
        };
        self.with_retries(what, || async {
            let mut batch = Batch::new(BatchType::Unlogged);
            for (key, _) in &statements {
                batch.append_statement(PreparedStatement::clone(&*self.prepared(key).await?));
            }
            self.session.batch(&batch, &values).await
        })
        .await
        .map(drop)
    }

    /// Writes the statements of rows scanned as raw bytes (see [`RawStatement`]): one alone,
    /// several as one unlogged batch, like [`Self::write_batch`].
    pub(crate) async fn write_raw(&self, statements: Vec<RawStatement>) -> Result<(), WriteError> {
        let keyed: Vec<(StatementKey, Vec<RawValue>)> = statements
            .into_iter()
            .map(|s| {
                (
                    StatementKey::Cells {
                        insert: s.insert,
                        columns: s.columns,
                    },
                    s.values,
                )
            })
            .collect();
        self.send(keyed).await
    }

    /// The text of `key`'s statement.
    fn key_cql(&self, key: &StatementKey) -> String {
        match key {
            StatementKey::Group {
                scope,
                insert,
                pieces,
            } => self.group_cql(*scope, *insert, pieces),
            StatementKey::Cells { insert, columns } => {
                let pieces: Vec<(usize, PieceKind)> = (0..64)
                    .filter(|i| columns & (1 << i) != 0)
                    .map(|i| (i, PieceKind::Cell))
                    .collect();
                self.group_cql(Scope::Row, *insert, &pieces)
            }
            StatementKey::Text(t) => t.clone(),
        }
    }

    /// The text of a [`StatementKey::Group`]; its markers in the order `write_group` binds.
    fn group_cql(&self, scope: Scope, insert: bool, pieces: &[(usize, PieceKind)]) -> String {
        let cols = &self.table.columns;
        if insert {
            let mut names: Vec<String> = self.key_columns(scope).map(|c| quote(&c.name)).collect();
            names.extend(pieces.iter().map(|(column, _)| quote(&cols[*column].name)));
            let marks = vec!["?"; names.len()].join(", ");
            format!(
                "INSERT INTO {} ({}) VALUES ({marks}) USING TIMESTAMP ? AND TTL ?",
                qualified(&self.table.name),
                names.join(", ")
            )
        } else {
            let sets: Vec<String> = pieces
                .iter()
                .map(|(column, kind)| {
                    let c = quote(&cols[*column].name);
                    match kind {
                        PieceKind::Cell => format!("{c} = ?"),
                        PieceKind::Add => format!("{c} = {c} + ?"),
                        PieceKind::Field(field) => format!("{c}.{} = ?", quote(field)),
                    }
                })
                .collect();
            format!(
                "UPDATE {} USING TIMESTAMP ? AND TTL ? SET {} WHERE {}",
                qualified(&self.table.name),
                sets.join(", "),
                self.key_condition(scope)
            )
        }
    }

    /// The list rule (module docs): read target's elements, append the missing ones.
    async fn write_list(
        &self,
        scope: Scope,
        pk: &[CqlValue],
        ck: &[CqlValue],
        list: &ListAppend,
    ) -> Result<(), WriteError> {
        let col = &self.table.columns[list.column];
        let c = quote(&col.name);
        let read = format!(
            "SELECT {c}, writetime({c}) FROM {} WHERE {} LIMIT 1",
            qualified(&self.table.name),
            self.key_condition(scope)
        );
        let key = self.key_values(scope, pk, ck);
        let rows = self.execute(&read, key.clone()).await?;
        let present: Vec<(CqlValue, i64)> = match rows.into_iter().next() {
            None => Vec::new(),
            Some(mut row) => {
                let wts = row.pop().flatten();
                let vals = row.pop().flatten();
                match (vals, wts) {
                    (None, _) => Vec::new(),
                    (Some(CqlValue::List(vs)), Some(CqlValue::List(ws))) => vs
                        .into_iter()
                        .zip(ws)
                        .map(|(v, w)| match w {
                            CqlValue::BigInt(w) => (v, w),
                            _ => (v, i64::MIN),
                        })
                        .collect(),
                    (v, w) => {
                        return Err(WriteError::UnexpectedRead {
                            column: col.name.clone(),
                            found: format!("{v:?} with writetimes {w:?}"),
                        });
                    }
                }
            }
        };
        let missing = missing_list_elements(&list.elements, &present);
        let append = format!(
            "UPDATE {} USING TIMESTAMP ? AND TTL ? SET {c} = {c} + ? WHERE {}",
            qualified(&self.table.name),
            self.key_condition(scope)
        );
        // One run after another: each append's timeuuids must follow the previous run's.
        for run in list_runs(&missing) {
            let mut values = vec![
                CqlValue::BigInt(run.writetime),
                CqlValue::Int(run.ttl),
                CqlValue::List(run.elements),
            ];
            values.extend(key.iter().cloned());
            self.execute(&append, values).await?;
        }
        Ok(())
    }

    /// Counter mode: adds `origin − target` to each of the row's counters. `values[i]` is
    /// origin's value of value column `ids[i]` (`None`: null, counts as 0 unless target has
    /// it too). `statics` as in [`TableWriter::write_row`].
    pub async fn write_counters(
        &self,
        pk: &[CqlValue],
        ck: &[CqlValue],
        counters: &[(usize, Option<i64>)],
        statics: bool,
        has_row: bool,
    ) -> Result<(), WriteError> {
        for scope in [Scope::Partition, Scope::Row] {
            let wanted: Vec<(usize, i64)> = counters
                .iter()
                .filter(|(id, _)| {
                    let is_static =
                        self.table.columns[*id].kind == crate::schema::ColumnKind::Static;
                    match scope {
                        Scope::Partition => is_static && statics,
                        Scope::Row => !is_static && has_row,
                    }
                })
                .map(|(id, v)| (*id, v.unwrap_or(0)))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let names: Vec<String> = wanted
                .iter()
                .map(|(id, _)| quote(&self.table.columns[*id].name))
                .collect();
            let read = format!(
                "SELECT {} FROM {} WHERE {} LIMIT 1",
                names.join(", "),
                qualified(&self.table.name),
                self.key_condition(scope)
            );
            let key = self.key_values(scope, pk, ck);
            let rows = self.execute(&read, key.clone()).await?;
            let current: Vec<i64> = match rows.into_iter().next() {
                None => vec![0; wanted.len()],
                Some(row) => row
                    .into_iter()
                    .map(|v| match v {
                        Some(CqlValue::Counter(Counter(n)) | CqlValue::BigInt(n)) => n,
                        _ => 0,
                    })
                    .collect(),
            };
            let mut sets = Vec::new();
            let mut values = Vec::new();
            for ((name, (_, want)), have) in names.iter().zip(&wanted).zip(current) {
                let delta = want.wrapping_sub(have);
                if delta != 0 {
                    sets.push(format!("{name} = {name} + ?"));
                    values.push(CqlValue::Counter(Counter(delta)));
                }
            }
            if sets.is_empty() {
                continue;
            }
            values.extend(key);
            let cql = format!(
                "UPDATE {} SET {} WHERE {}",
                qualified(&self.table.name),
                sets.join(", "),
                self.key_condition(scope)
            );
            self.execute(&cql, values).await?;
        }
        Ok(())
    }

    /// Deletes a row (`ck` given) or a whole partition with a tombstone at `timestamp`, which
    /// shadows only what was written at or before it (the validator's `--delete-extra`).
    pub async fn delete(
        &self,
        pk: &[CqlValue],
        ck: Option<&[CqlValue]>,
        timestamp: i64,
    ) -> Result<(), WriteError> {
        let scope = if ck.is_some() {
            Scope::Row
        } else {
            Scope::Partition
        };
        let cql = format!(
            "DELETE FROM {} USING TIMESTAMP ? WHERE {}",
            qualified(&self.table.name),
            self.key_condition(scope)
        );
        let mut values = vec![CqlValue::BigInt(timestamp)];
        values.extend(self.key_values(scope, pk, ck.unwrap_or_default()));
        self.execute(&cql, values).await.map(drop)
    }

    /// Runs a read with the writer's statement cache and retries (the validator reads both
    /// clusters through a writer each).
    pub(crate) async fn read(
        &self,
        cql: &str,
        values: Vec<CqlValue>,
    ) -> Result<Vec<Vec<Option<CqlValue>>>, WriteError> {
        self.execute(cql, values).await
    }

    fn key_columns(&self, scope: Scope) -> impl Iterator<Item = &ColumnDef> {
        let ck = (scope == Scope::Row).then(|| self.table.clustering());
        self.table.partition_key().chain(ck.into_iter().flatten())
    }

    fn key_condition(&self, scope: Scope) -> String {
        let conds: Vec<String> = self
            .key_columns(scope)
            .map(|c| format!("{} = ?", quote(&c.name)))
            .collect();
        conds.join(" AND ")
    }

    fn key_values(&self, scope: Scope, pk: &[CqlValue], ck: &[CqlValue]) -> Vec<CqlValue> {
        let mut v = pk.to_vec();
        if scope == Scope::Row {
            v.extend(ck.iter().cloned());
        }
        v
    }

    /// The prepared statement of `key`, prepared once (see [`StatementCache`]).
    async fn prepared(&self, key: &StatementKey) -> Result<Arc<PreparedStatement>, ExecutionError> {
        let cell = {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            match cache.map.get(key) {
                Some(cell) => cell.clone(),
                None => {
                    while cache.map.len() >= cache.capacity {
                        match cache.order.pop_front() {
                            Some(old) => {
                                cache.map.remove(&old);
                            }
                            None => break,
                        }
                    }
                    let cell = Arc::new(OnceCell::new());
                    cache.map.insert(key.clone(), cell.clone());
                    cache.order.push_back(key.clone());
                    cell
                }
            }
        };
        let prepared = cell
            .get_or_try_init(|| async {
                self.session.prepare(self.key_cql(key)).await.map(Arc::new)
            })
            .await?;
        Ok(prepared.clone())
    }

    /// Runs `cql` with retries on retryable errors; returns the rows (empty for writes).
    async fn execute(
        &self,
        cql: &str,
        values: Vec<CqlValue>,
    ) -> Result<Vec<Vec<Option<CqlValue>>>, WriteError> {
        self.execute_key(StatementKey::Text(cql.to_owned()), values)
            .await
    }

    /// Runs the statement of `key` with retries on retryable errors; returns the rows (empty
    /// for writes).
    async fn execute_key(
        &self,
        key: StatementKey,
        values: Vec<CqlValue>,
    ) -> Result<Vec<Vec<Option<CqlValue>>>, WriteError> {
        let cql = || self.key_cql(&key);
        let r = self
            .with_retries(cql, || async {
                let p = self.prepared(&key).await?;
                self.session.execute_unpaged(&p, &values).await
            })
            .await?;
        if !r.is_rows() {
            return Ok(Vec::new());
        }
        rows_of(r).map_err(|e| WriteError::Fatal {
            cql: cql(),
            error: e,
        })
    }

    /// Runs `op` until it succeeds, fails with an error retrying cannot fix, or fails
    /// `retries + 1` times; `what` names it in errors.
    async fn with_retries<T, F, Fut>(
        &self,
        what: impl Fn() -> String,
        mut op: F,
    ) -> Result<T, WriteError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ExecutionError>>,
    {
        let mut attempt = 0;
        loop {
            let error = match op().await {
                Ok(r) => return Ok(r),
                Err(e) => e,
            };
            attempt += 1;
            if !is_retryable(&error) {
                return Err(WriteError::Fatal {
                    cql: what(),
                    error: error.to_string(),
                });
            }
            if attempt > self.retries {
                return Err(WriteError::Exhausted {
                    cql: what(),
                    attempts: attempt,
                    error: error.to_string(),
                });
            }
            tracing::debug!(statement = %what(), attempt, %error, "write failed, retrying");
            tokio::time::sleep(self.spec.backoff(attempt)).await;
        }
    }
}

/// A group's statement and its values: `UPDATE … USING TIMESTAMP ? AND TTL ? SET … WHERE key`,
/// or with `insert` the `INSERT` form that also writes the row marker (only single-cell
/// pieces). The values follow the markers of [`TableWriter::group_cql`].
fn group_statement(
    scope: Scope,
    pk: &[CqlValue],
    ck: &[CqlValue],
    g: &Group,
    insert: bool,
) -> (StatementKey, Vec<CqlValue>) {
    let mut values: Vec<CqlValue> = Vec::with_capacity(g.pieces.len() + pk.len() + ck.len() + 2);
    let timestamps = [CqlValue::BigInt(g.writetime), CqlValue::Int(g.ttl)];
    let key_values = pk.iter().chain(if scope == Scope::Row { ck } else { &[] });
    if insert {
        values.extend(key_values.cloned());
        values.extend(g.pieces.iter().filter_map(|p| match p {
            Piece::Cell { value, .. } => Some(value.clone()),
            _ => None,
        }));
        values.extend(timestamps);
    } else {
        values.extend(timestamps);
        values.extend(g.pieces.iter().map(|p| match p {
            Piece::Cell { value, .. } | Piece::Field { value, .. } => value.clone(),
            Piece::SetAdd { elements, .. } => CqlValue::Set(elements.clone()),
            Piece::MapPut { entries, .. } => CqlValue::Map(entries.clone()),
        }));
        values.extend(key_values.cloned());
    }
    let key = StatementKey::Group {
        scope,
        insert,
        pieces: g
            .pieces
            .iter()
            .filter(|p| !insert || matches!(p, Piece::Cell { .. }))
            .map(|p| {
                let kind = match p {
                    Piece::Cell { .. } => PieceKind::Cell,
                    Piece::SetAdd { .. } | Piece::MapPut { .. } => PieceKind::Add,
                    Piece::Field { field, .. } => PieceKind::Field(field.clone()),
                };
                (p.column(), kind)
            })
            .collect(),
    };
    (key, values)
}

/// Most partitions in one batch: Cassandra logs a warning for unlogged batches across more
/// (`unlogged_batch_across_partitions_warn_threshold`, default 10).
pub const MAX_BATCH_PARTITIONS: usize = 10;
/// Most cell bytes in one batch: under Cassandra's `batch_size_warn_threshold` (5 KiB).
pub const MAX_BATCH_BYTES: u64 = 4 * 1024;

/// One row of [`TableWriter::write_batch`].
#[derive(Debug)]
pub struct BatchRow {
    pub pk: Vec<CqlValue>,
    pub ck: Vec<CqlValue>,
    pub writes: RowWrites,
    /// Whether the partition's static cells go along (first row of its partition).
    pub statics: bool,
}

/// One statement of a row scanned as raw bytes (the scan's raw path, for tables whose value
/// columns are all single-cell and regular): a row-scope group of cells, as
/// [`TableWriter::write_batch`] would write it, with its values bound as the bytes origin
/// sent. Origin's and target's column types are equal (schema check), so the bytes are what
/// target expects, and nothing is decoded or re-encoded per cell.
#[derive(Debug, Clone)]
pub(crate) struct RawStatement {
    /// The `INSERT` form (carries the row marker); else `UPDATE`.
    pub insert: bool,
    /// Bit `i`: column `i` of the table is a cell of the group.
    pub columns: u64,
    /// In the order of [`TableWriter::group_cql`]'s markers.
    pub values: Vec<RawValue>,
}

/// A value bound as serialized bytes (see [`RawStatement`]).
#[derive(Debug, Clone)]
pub(crate) enum RawValue {
    /// A cell's, a key column's or a writetime's bytes, as origin sent them.
    Bytes(bytes::Bytes),
    /// A `bigint` (a group's writetime, or the floor timestamp).
    BigInt(i64),
    /// A computed `int` (the remaining TTL).
    Int(i32),
}

impl SerializeValue for RawValue {
    fn serialize<'b>(
        &self,
        _typ: &ColumnType,
        writer: CellWriter<'b>,
    ) -> Result<WrittenCellProof<'b>, SerializationError> {
        match self {
            Self::Bytes(b) => writer.set_value(b),
            Self::BigInt(n) => writer.set_value(&n.to_be_bytes()),
            Self::Int(n) => writer.set_value(&n.to_be_bytes()),
        }
        .map_err(SerializationError::new)
    }
}

/// The rows of a result as dynamic values.
pub(crate) fn rows_of(
    r: scylla::response::query_result::QueryResult,
) -> Result<Vec<Vec<Option<CqlValue>>>, String> {
    let rows = r.into_rows_result().map_err(|e| e.to_string())?;
    let iter = rows
        .rows::<scylla::value::Row>()
        .map_err(|e| e.to_string())?;
    iter.map(|row| row.map(|r| r.columns).map_err(|e| e.to_string()))
        .collect()
}

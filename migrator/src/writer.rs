//! Writes one scanned row to target: builds the statement of each group (cached prepared
//! statements, one per column-set shape), runs it with retries, and applies the list and
//! counter rules.
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
use std::sync::Arc;

use scylla::client::session::Session;
use scylla::errors::ExecutionError;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{Counter, CqlValue};
use tokio::sync::Mutex;

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

/// Prepared statements by CQL text, at most `capacity`, oldest dropped first (a table with
/// many writetime combinations has many shapes; the common ones come back and are
/// re-prepared cheaply).
#[derive(Debug)]
struct StatementCache {
    capacity: usize,
    map: HashMap<String, Arc<PreparedStatement>>,
    order: VecDeque<String>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// (static cells are written once per partition).
    pub async fn write_row(
        &self,
        pk: &[CqlValue],
        ck: &[CqlValue],
        writes: &RowWrites,
        statics: bool,
    ) -> Result<(), WriteError> {
        if statics {
            for g in &writes.statics {
                self.write_group(Scope::Partition, pk, ck, g, false).await?;
            }
            for l in &writes.static_lists {
                self.write_list(Scope::Partition, pk, ck, l).await?;
            }
        }
        for (i, g) in writes.regular.iter().enumerate() {
            let insert = writes.marker == Some(Marker::InGroup(i));
            self.write_group(Scope::Row, pk, ck, g, insert).await?;
        }
        if let Some(Marker::KeyOnly { writetime, ttl }) = writes.marker {
            let g = Group {
                writetime,
                ttl,
                pieces: Vec::new(),
            };
            self.write_group(Scope::Row, pk, ck, &g, true).await?;
        }
        for l in &writes.lists {
            self.write_list(Scope::Row, pk, ck, l).await?;
        }
        Ok(())
    }

    /// `UPDATE … USING TIMESTAMP ? AND TTL ? SET … WHERE key`, or with `insert` the `INSERT`
    /// form that also writes the row marker (only single-cell pieces).
    async fn write_group(
        &self,
        scope: Scope,
        pk: &[CqlValue],
        ck: &[CqlValue],
        g: &Group,
        insert: bool,
    ) -> Result<(), WriteError> {
        let cols = &self.table.columns;
        let mut values: Vec<CqlValue> = Vec::with_capacity(g.pieces.len() + pk.len() + 4);
        let cql = if insert {
            let mut names: Vec<String> = self.key_columns(scope).map(|c| quote(&c.name)).collect();
            values.extend(pk.iter().cloned());
            values.extend(ck.iter().cloned());
            for p in &g.pieces {
                if let Piece::Cell { column, value } = p {
                    names.push(quote(&cols[*column].name));
                    values.push(value.clone());
                }
            }
            values.push(CqlValue::BigInt(g.writetime));
            values.push(CqlValue::Int(g.ttl));
            let marks = vec!["?"; names.len()].join(", ");
            format!(
                "INSERT INTO {} ({}) VALUES ({marks}) USING TIMESTAMP ? AND TTL ?",
                qualified(&self.table.name),
                names.join(", ")
            )
        } else {
            values.push(CqlValue::BigInt(g.writetime));
            values.push(CqlValue::Int(g.ttl));
            let sets: Vec<String> = g
                .pieces
                .iter()
                .map(|p| {
                    let c = quote(&cols[p.column()].name);
                    match p {
                        Piece::Cell { value, .. } => {
                            values.push(value.clone());
                            format!("{c} = ?")
                        }
                        Piece::SetAdd { elements, .. } => {
                            values.push(CqlValue::Set(elements.clone()));
                            format!("{c} = {c} + ?")
                        }
                        Piece::MapPut { entries, .. } => {
                            values.push(CqlValue::Map(entries.clone()));
                            format!("{c} = {c} + ?")
                        }
                        Piece::Field { field, value, .. } => {
                            values.push(value.clone());
                            format!("{c}.{} = ?", quote(field))
                        }
                    }
                })
                .collect();
            values.extend(pk.iter().cloned());
            if scope == Scope::Row {
                values.extend(ck.iter().cloned());
            }
            format!(
                "UPDATE {} USING TIMESTAMP ? AND TTL ? SET {} WHERE {}",
                qualified(&self.table.name),
                sets.join(", "),
                self.key_condition(scope)
            )
        };
        self.execute(&cql, values).await.map(drop)
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

    async fn prepared(&self, cql: &str) -> Result<Arc<PreparedStatement>, ExecutionError> {
        if let Some(p) = self.cache.lock().await.map.get(cql) {
            return Ok(p.clone());
        }
        let p = Arc::new(self.session.prepare(cql).await?);
        let mut cache = self.cache.lock().await;
        if !cache.map.contains_key(cql) {
            while cache.map.len() >= cache.capacity {
                match cache.order.pop_front() {
                    Some(old) => {
                        cache.map.remove(&old);
                    }
                    None => break,
                }
            }
            cache.map.insert(cql.to_owned(), p.clone());
            cache.order.push_back(cql.to_owned());
        }
        Ok(p)
    }

    /// Runs `cql` with retries on retryable errors; returns the rows (empty for writes).
    async fn execute(
        &self,
        cql: &str,
        values: Vec<CqlValue>,
    ) -> Result<Vec<Vec<Option<CqlValue>>>, WriteError> {
        let mut attempt = 0;
        loop {
            let result = match self.prepared(cql).await {
                Ok(p) => self.session.execute_unpaged(&p, &values).await,
                Err(e) => Err(e),
            };
            let error = match result {
                Ok(r) => {
                    if !r.is_rows() {
                        return Ok(Vec::new());
                    }
                    return rows_of(r).map_err(|e| WriteError::Fatal {
                        cql: cql.to_owned(),
                        error: e,
                    });
                }
                Err(e) => e,
            };
            attempt += 1;
            if !is_retryable(&error) {
                return Err(WriteError::Fatal {
                    cql: cql.to_owned(),
                    error: error.to_string(),
                });
            }
            if attempt > self.retries {
                return Err(WriteError::Exhausted {
                    cql: cql.to_owned(),
                    attempts: attempt,
                    error: error.to_string(),
                });
            }
            tracing::debug!(%cql, attempt, %error, "write failed, retrying");
            tokio::time::sleep(self.spec.backoff(attempt)).await;
        }
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

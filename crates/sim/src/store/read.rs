//! Reads: a [`ReadCommand`] selects partitions (keys, or a token range in token order),
//! rows within them (clustering keys or slices), and pages through the result.
//!
//! Paging resumes *after the last returned row's key*, not at an offset: rows inserted or
//! deleted between pages neither repeat nor shift the next page. A [`PagingState`] carries
//! the last partition key, the last clustering key and the remaining limits; its bytes are
//! what the executor hands the client.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use ferry_cql::types::{ColumnType, CqlValue, decode_value};
use ferry_cql::wire::DecodeError;

use super::data::{CKey, Cell, ColumnData, EncodedSlice, Partition};
use super::write::{self, Slice, WriteError};
use super::{PartitionKey, Partitions, Store};
use crate::murmur3;
use crate::schema::{ColumnDef, TableDef};

/// Which partitions to read.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PartitionSelection {
    /// `pk = …` / `pk IN (…)`: in the given order, duplicates read once.
    Keys(Vec<Vec<CqlValue>>),
    /// `token(pk) > start AND token(pk) <= end` (any bound kinds), in token order. When the
    /// start value is greater than the end value the range wraps around the ring: tokens
    /// after `start`, then tokens up to `end`. (CQL itself returns nothing for such a
    /// SELECT; the executor checks that before calling.)
    TokenRange { start: Bound<i64>, end: Bound<i64> },
    /// Every partition, in token order.
    All,
}

/// Which rows of each partition to read.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClusteringFilter {
    All,
    /// Full clustering keys (`=` / `IN` on every clustering column), returned in clustering
    /// order whatever the list order.
    Keys(Vec<Vec<CqlValue>>),
    /// Rows in any of these slices, in clustering order.
    Slices(Vec<Slice>),
}

/// A row predicate applied before limits and paging count a row (`ALLOW FILTERING` on
/// regular columns).
pub type RowFilter = Arc<dyn Fn(&Row) -> bool + Send + Sync>;

/// A read.
#[derive(Clone)]
pub struct ReadCommand {
    pub partitions: PartitionSelection,
    pub clustering: ClusteringFilter,
    /// `ORDER BY` opposite to the clustering order: rows within each partition reversed.
    pub reversed: bool,
    /// `LIMIT`, over all pages.
    pub limit: Option<u32>,
    /// `PER PARTITION LIMIT`.
    pub per_partition_limit: Option<u32>,
    /// Rows per page; `None` reads everything.
    pub page_size: Option<u32>,
    /// Where the previous page stopped.
    pub paging_state: Option<PagingState>,
    /// One row per partition with only the partition key and static columns: `SELECT
    /// DISTINCT`, and selections of only partition key and static columns.
    pub distinct: bool,
    pub filter: Option<RowFilter>,
}

impl std::fmt::Debug for ReadCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCommand")
            .field("partitions", &self.partitions)
            .field("clustering", &self.clustering)
            .field("reversed", &self.reversed)
            .field("limit", &self.limit)
            .field("per_partition_limit", &self.per_partition_limit)
            .field("page_size", &self.page_size)
            .field("paging_state", &self.paging_state)
            .field("distinct", &self.distinct)
            .field("filter", &self.filter.as_ref().map(|_| "…"))
            .finish()
    }
}

impl ReadCommand {
    /// Everything in the table, unpaged.
    pub fn all() -> Self {
        Self {
            partitions: PartitionSelection::All,
            clustering: ClusteringFilter::All,
            reversed: false,
            limit: None,
            per_partition_limit: None,
            page_size: None,
            paging_state: None,
            distinct: false,
            filter: None,
        }
    }

    /// One whole partition.
    pub fn partition(key: Vec<CqlValue>) -> Self {
        Self {
            partitions: PartitionSelection::Keys(vec![key]),
            ..Self::all()
        }
    }

    /// One row by its primary key.
    pub fn single_row(key: Vec<CqlValue>, clustering: Vec<CqlValue>) -> Self {
        Self {
            partitions: PartitionSelection::Keys(vec![key]),
            clustering: if clustering.is_empty() {
                ClusteringFilter::All
            } else {
                ClusteringFilter::Keys(vec![clustering])
            },
            ..Self::all()
        }
    }
}

/// A live simple cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CellValue {
    /// Serialized value.
    pub value: Bytes,
    pub writetime: i64,
    /// Seconds left; `None` without TTL.
    pub ttl: Option<u32>,
}

/// A live element of a non-frozen collection or UDT.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    /// Serialized set element / map key / UDT field position (`[short]`) / list key.
    pub path: Bytes,
    /// Serialized list element / map value / field value; empty for sets.
    pub value: Bytes,
    pub writetime: i64,
    pub ttl: Option<u32>,
}

/// A column's live data in a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValue {
    Cell(CellValue),
    /// Live elements in order (never empty: an empty collection is null).
    Elements(Vec<Element>),
}

impl ColumnValue {
    /// The value as one serialized (frozen-form) value of the column's type, as it travels in
    /// a result row.
    pub fn serialize(&self, col: &ColumnDef) -> Bytes {
        match self {
            Self::Cell(c) => c.value.clone(),
            Self::Elements(es) => serialize_elements(&col.ty, es),
        }
    }

    /// The decoded value.
    pub fn to_cql(&self, col: &ColumnDef) -> Result<CqlValue, DecodeError> {
        decode_value(&col.ty, &self.serialize(col))
    }

    /// `writetime(c)`: of the cell (for collections, Cassandra 5 gives a list per element:
    /// see [`ColumnValue::writetimes`]).
    pub fn writetimes(&self) -> Vec<i64> {
        match self {
            Self::Cell(c) => vec![c.writetime],
            Self::Elements(es) => es.iter().map(|e| e.writetime).collect(),
        }
    }

    /// `ttl(c)`, per element for collections.
    pub fn ttls(&self) -> Vec<Option<u32>> {
        match self {
            Self::Cell(c) => vec![c.ttl],
            Self::Elements(es) => es.iter().map(|e| e.ttl).collect(),
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
    out.extend_from_slice(b);
}

fn serialize_elements(ty: &ColumnType, es: &[Element]) -> Bytes {
    let mut out = Vec::new();
    match ty {
        ColumnType::Udt { fields, .. } => {
            // Fields by position; missing ones are null, trailing nulls still written.
            for i in 0..fields.len() {
                let path = write::udt_path(i);
                match es.iter().find(|e| e.path == path) {
                    Some(e) => put_bytes(&mut out, &e.value),
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
        }
        _ => {
            out.extend_from_slice(&(es.len() as i32).to_be_bytes());
            for e in es {
                match ty {
                    ColumnType::List(_) => put_bytes(&mut out, &e.value),
                    ColumnType::Set(_) => put_bytes(&mut out, &e.path),
                    _ => {
                        put_bytes(&mut out, &e.path);
                        put_bytes(&mut out, &e.value);
                    }
                }
            }
        }
    }
    Bytes::from(out)
}

/// A result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub token: i64,
    /// Serialized partition key components.
    pub partition_key: Vec<Bytes>,
    /// Serialized clustering values; `None` for a partition-level row (a partition with only
    /// static data, DISTINCT, tables without clustering columns), whose clustering columns
    /// read as null.
    pub clustering: Option<Vec<Bytes>>,
    /// One per [`TableDef::value_columns`], `None` when null.
    pub values: Vec<Option<ColumnValue>>,
}

impl Row {
    /// Every column in [`TableDef::columns`] order, decoded (`None` is null).
    pub fn cql_values(&self, def: &TableDef) -> Result<Vec<Option<CqlValue>>, DecodeError> {
        let mut out = Vec::with_capacity(def.columns().count());
        for (c, b) in def.partition_key.iter().zip(&self.partition_key) {
            out.push(Some(decode_value(&c.ty, b)?));
        }
        for (i, (c, _)) in def.clustering.iter().enumerate() {
            out.push(match self.clustering.as_ref().and_then(|k| k.get(i)) {
                Some(b) => Some(decode_value(&c.ty, b)?),
                None => None,
            });
        }
        for (c, v) in def.value_columns.iter().zip(&self.values) {
            out.push(v.as_ref().map(|v| v.to_cql(c)).transpose()?);
        }
        Ok(out)
    }

    /// A value column by name.
    pub fn value(&self, def: &TableDef, name: &str) -> Option<&ColumnValue> {
        self.values.get(def.value_index(name)?)?.as_ref()
    }
}

/// A result row as it lies in the store, borrowed while the table's read lock is held: what
/// [`Store::read_with`] hands its caller. A scan encodes each value straight from the store
/// into the response instead of first cloning every key and cell into a [`Row`]: with one-row
/// partitions those clones (two `Vec`s per row, a reference count per key and value, each on
/// a cache line of its own) made 40% of a scan's CPU (1M rows: 3.1 → 1.8 CPU-s).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowRef<'a> {
    def: &'a TableDef,
    /// The read's clock: liveness and remaining TTLs count from it.
    now: u32,
    token: i64,
    /// The stored (composite) partition key.
    key: &'a Bytes,
    /// `None` as [`Row::clustering`].
    clustering: Option<&'a CKey>,
    statics: Option<&'a super::data::Row>,
    row: Option<&'a super::data::Row>,
}

/// One value column of a [`RowRef`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CellRef<'a> {
    /// No live data.
    Null,
    /// A live single cell.
    Cell {
        value: &'a [u8],
        writetime: i64,
        /// Seconds left; `None` without TTL.
        ttl: Option<u32>,
    },
    /// Live elements of a non-frozen collection or UDT: read them from [`RowRef::to_row`].
    Elements,
}

impl<'a> RowRef<'a> {
    pub(crate) fn token(&self) -> i64 {
        self.token
    }

    /// Partition key component `i`, serialized.
    pub(crate) fn partition_key(&self, i: usize) -> Option<&'a [u8]> {
        let n = self.def.partition_key.len().max(1);
        if n == 1 {
            return (i == 0).then_some(self.key.as_ref());
        }
        match murmur3::split_key_components(self.key, n) {
            Some(parts) => parts.get(i).copied(),
            // As `split_key`: a key that does not split is one component.
            None => (i == 0).then_some(self.key.as_ref()),
        }
    }

    /// Clustering component `i`, serialized; `None` for a partition-level row.
    pub(crate) fn clustering(&self, i: usize) -> Option<&'a [u8]> {
        self.clustering?.values.get(i).map(|b| b.as_ref())
    }

    /// Value column `c` of the row.
    pub(crate) fn cell(&self, c: &ColumnDef) -> CellRef<'a> {
        let src = if c.is_static() {
            self.statics
        } else {
            self.row
        };
        match src.and_then(|r| r.column(c.id)) {
            None => CellRef::Null,
            Some(ColumnData::Simple(cell)) => match &cell.value {
                Some(value) if cell.is_live(self.now) => CellRef::Cell {
                    value,
                    writetime: cell.ts,
                    ttl: cell.ttl_left(self.now),
                },
                _ => CellRef::Null,
            },
            Some(ColumnData::Complex(x)) => {
                if x.cells.iter().any(|(_, c)| c.is_live(self.now)) {
                    CellRef::Elements
                } else {
                    CellRef::Null
                }
            }
        }
    }

    /// The row with its keys and values copied out of the store.
    pub(crate) fn to_row(self) -> Row {
        Row {
            token: self.token,
            partition_key: split_key(self.def, self.key),
            clustering: self.clustering.map(|k| k.values.to_vec()),
            values: row_values(self.def, self.statics, self.row, self.now),
        }
    }
}

/// Where a page stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagingState {
    /// Serialized partition key of the last returned row.
    pub partition_key: Bytes,
    /// Clustering of the last returned row; `None` when that row was partition-level (the
    /// partition is then finished).
    pub clustering: Option<Vec<Bytes>>,
    /// What is left of `LIMIT`.
    pub remaining: u32,
    /// What is left of `PER PARTITION LIMIT` in that partition.
    pub remaining_in_partition: u32,
}

/// Why paging state bytes were refused (PROTOCOL_ERROR in Cassandra).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PagingStateError {
    #[error("Invalid value for the paging state: {len} bytes, {reason}")]
    Malformed { len: usize, reason: &'static str },
}

impl PagingState {
    const VERSION: u8 = 1;

    /// The opaque bytes for the client.
    pub fn encode(&self) -> Bytes {
        let mut out = vec![Self::VERSION];
        put_bytes(&mut out, &self.partition_key);
        match &self.clustering {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(c) => {
                out.extend_from_slice(&(c.len() as i32).to_be_bytes());
                for v in c {
                    put_bytes(&mut out, v);
                }
            }
        }
        out.extend_from_slice(&self.remaining.to_be_bytes());
        out.extend_from_slice(&self.remaining_in_partition.to_be_bytes());
        Bytes::from(out)
    }

    /// Parses bytes from [`PagingState::encode`]; anything else is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, PagingStateError> {
        let bad = |reason| PagingStateError::Malformed {
            len: bytes.len(),
            reason,
        };
        let mut b = bytes;
        let int = |b: &mut &[u8]| -> Result<i32, PagingStateError> {
            let (x, rest) = b.split_first_chunk::<4>().ok_or(bad("truncated"))?;
            *b = rest;
            Ok(i32::from_be_bytes(*x))
        };
        let take = |b: &mut &[u8], n: i32| -> Result<Bytes, PagingStateError> {
            let n = usize::try_from(n).map_err(|_| bad("negative length"))?;
            if b.len() < n {
                return Err(bad("truncated"));
            }
            let (x, rest) = b.split_at(n);
            *b = rest;
            Ok(Bytes::copy_from_slice(x))
        };
        match b.split_first() {
            Some((&Self::VERSION, rest)) => b = rest,
            _ => return Err(bad("unknown version")),
        }
        let n = int(&mut b)?;
        let partition_key = take(&mut b, n)?;
        let count = int(&mut b)?;
        let clustering = if count < 0 {
            None
        } else {
            if count as usize > b.len() / 4 {
                return Err(bad("clustering count too large"));
            }
            let mut c = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let n = int(&mut b)?;
                c.push(take(&mut b, n)?);
            }
            Some(c)
        };
        let remaining = int(&mut b)? as u32;
        let remaining_in_partition = int(&mut b)? as u32;
        if !b.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(Self {
            partition_key,
            clustering,
            remaining,
            remaining_in_partition,
        })
    }
}

/// A page of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadResult {
    pub rows: Vec<Row>,
    /// `Some` when the page filled up: pass it back for the next page.
    pub paging_state: Option<PagingState>,
}

/// Why a read was refused (INVALID).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("{0}")]
    Key(#[from] WriteError),
    #[error("{0}")]
    PagingState(#[from] PagingStateError),
}

/// Splits a stored partition key into its serialized components.
pub(crate) fn split_key(def: &TableDef, key: &Bytes) -> Vec<Bytes> {
    let n = def.partition_key.len().max(1);
    match murmur3::split_key_components(key, n) {
        Some(parts) => parts.iter().map(|p| key.slice_ref(p)).collect(),
        None => vec![key.clone()],
    }
}

fn cell_value(c: &Cell, now: u32) -> Option<CellValue> {
    c.is_live(now).then(|| CellValue {
        value: c.value.clone().unwrap_or_default(),
        writetime: c.ts,
        ttl: c.ttl_left(now),
    })
}

fn column_value(data: Option<&ColumnData>, now: u32) -> Option<ColumnValue> {
    match data? {
        ColumnData::Simple(c) => cell_value(c, now).map(ColumnValue::Cell),
        ColumnData::Complex(x) => {
            let es: Vec<Element> = x
                .cells
                .iter()
                .filter(|(_, c)| c.is_live(now))
                .map(|(p, c)| Element {
                    path: p.clone(),
                    value: c.value.clone().unwrap_or_default(),
                    writetime: c.ts,
                    ttl: c.ttl_left(now),
                })
                .collect();
            (!es.is_empty()).then_some(ColumnValue::Elements(es))
        }
    }
}

/// Builds a result row's values from the static row and (optionally) a regular row.
pub(crate) fn row_values(
    def: &TableDef,
    statics: Option<&super::data::Row>,
    row: Option<&super::data::Row>,
    now: u32,
) -> Vec<Option<ColumnValue>> {
    def.value_columns
        .iter()
        .map(|c| {
            let src = if c.is_static() { statics } else { row };
            column_value(src.and_then(|r| r.column(c.id)), now)
        })
        .collect()
}

/// The state of one read while it walks partitions (under the table's read lock, `'a`).
struct Walk<'a> {
    def: &'a TableDef,
    cmd: &'a ReadCommand,
    cmp: &'a Arc<super::data::ClusteringComparator>,
    filter: &'a EncodedFilter,
    now: u32,
    rows: Vec<RowRef<'a>>,
    remaining: u32,
    page_left: u32,
    per_partition: u32,
    /// The partition the paging state resumes in, after `resume_ck` (`None`: after a
    /// partition-level row), with `resume_left` of its per-partition limit.
    resume_key: Option<&'a PartitionKey>,
    resume_ck: Option<&'a CKey>,
    resume_left: u32,
    /// Set when the walk must stop (limit reached or page full).
    done: bool,
    paging: Option<PagingState>,
}

impl<'a> Walk<'a> {
    /// Emits a row; returns false when the partition must stop (its limit hit, or done).
    fn emit(&mut self, row: RowRef<'a>, pp_left: &mut u32) -> bool {
        if let Some(f) = &self.cmd.filter
            && !f(&row.to_row())
        {
            return true;
        }
        self.rows.push(row);
        self.remaining -= 1;
        self.page_left -= 1;
        *pp_left -= 1;
        if self.remaining == 0 {
            self.done = true;
            return false;
        }
        if self.page_left == 0 {
            self.done = true;
            self.paging = Some(PagingState {
                partition_key: row.key.clone(),
                clustering: row.clustering.map(|k| k.values.to_vec()),
                remaining: self.remaining,
                remaining_in_partition: *pp_left,
            });
            return false;
        }
        *pp_left > 0
    }

    /// Reads one partition; the resumed one continues after its last row, later ones start
    /// fresh.
    fn visit(&mut self, pk: &'a PartitionKey, p: &'a Partition) {
        let (after, left) = if self.resume_key == Some(pk) {
            (Some(self.resume_ck), self.resume_left)
        } else {
            (None, self.per_partition)
        };
        self.partition(pk, p, after, left);
    }

    /// Reads one partition; `after` resumes after that clustering key.
    fn partition(
        &mut self,
        pk: &'a PartitionKey,
        p: &'a Partition,
        after: Option<Option<&'a CKey>>,
        pp_left: u32,
    ) {
        let now = self.now;
        let (cmp, filter) = (self.cmp, self.filter);
        let mut pp_left = pp_left;
        if pp_left == 0 {
            return;
        }
        let statics = p.static_row.as_deref();
        let at = |clustering: Option<&'a CKey>, row: Option<&'a super::data::Row>| RowRef {
            def: self.def,
            now,
            token: pk.token,
            key: &pk.key,
            clustering,
            statics,
            row,
        };
        if self.cmd.distinct {
            // One row per partition with anything live.
            if after.is_some() {
                return;
            }
            let live = statics.is_some_and(|s| s.has_live(now))
                || p.iter_rows(None, false).any(|(_, r)| r.has_live(now));
            if live {
                let row = at(None, None);
                self.emit(row, &mut pp_left);
            }
            return;
        }
        // Resuming after a partition-level row: that partition is finished.
        if let Some(None) = after {
            return;
        }
        let after = after.flatten();
        let mut emitted = false;
        let reversed = self.cmd.reversed;
        let candidates: Box<dyn Iterator<Item = (Option<&'a CKey>, &'a super::data::Row)>> =
            match filter {
                EncodedFilter::All => p.iter_rows(resume_range(after, reversed, None), reversed),
                EncodedFilter::Slices(slices) => {
                    let hull = if let [one] = slices.as_slice() {
                        Some(one.storage_bounds(cmp))
                    } else {
                        None
                    };
                    Box::new(
                        p.iter_rows(resume_range(after, reversed, hull), reversed)
                            .filter(move |(k, _)| {
                                k.is_some_and(|k| slices.iter().any(|s| s.contains(cmp, &k.values)))
                            }),
                    )
                }
                EncodedFilter::Keys(keys) => {
                    let it: Box<dyn Iterator<Item = &CKey>> = if reversed {
                        Box::new(keys.iter().rev())
                    } else {
                        Box::new(keys.iter())
                    };
                    Box::new(
                        it.filter(move |k| match after {
                            None => true,
                            Some(a) => {
                                if reversed {
                                    *k < a
                                } else {
                                    *k > a
                                }
                            }
                        })
                        .filter_map(|k| match &p.rows {
                            super::data::Rows::Sorted(m) => {
                                m.get_key_value(k).map(|(k, r)| (Some(k), r))
                            }
                            super::data::Rows::Single(r) => r.as_ref().map(|r| (None, r)),
                        }),
                    )
                }
            };
        for (k, r) in candidates {
            if !r.has_live(now) {
                continue;
            }
            emitted = true;
            let row = at(k, Some(r));
            if !self.emit(row, &mut pp_left) {
                return;
            }
        }
        // A partition with only static data reads as one row with null clustering columns
        // (only when no clustering restriction excludes it, as in Cassandra).
        if !emitted
            && after.is_none()
            && matches!(filter, EncodedFilter::All)
            && !self.def.clustering.is_empty()
            && statics.is_some_and(|s| s.has_live(now))
            && p.iter_rows(None, false).all(|(_, r)| !r.has_live(now))
        {
            let row = at(None, None);
            self.emit(row, &mut pp_left);
        }
    }
}

/// The storage range left after the resume point, intersected with a slice hull.
fn resume_range(
    after: Option<&CKey>,
    reversed: bool,
    hull: Option<(Bound<CKey>, Bound<CKey>)>,
) -> Option<(Bound<CKey>, Bound<CKey>)> {
    let (mut start, mut end) = hull.unwrap_or((Bound::Unbounded, Bound::Unbounded));
    if let Some(a) = after {
        let cut = Bound::Excluded(a.clone());
        let tighter = |current: Bound<CKey>, is_start: bool| match &current {
            Bound::Unbounded => cut.clone(),
            Bound::Included(c) | Bound::Excluded(c) => {
                let keep_current = if is_start { c > a } else { c < a };
                if keep_current { current } else { cut.clone() }
            }
        };
        if reversed {
            end = tighter(end, false);
        } else {
            start = tighter(start, true);
        }
    }
    if matches!((&start, &end), (Bound::Unbounded, Bound::Unbounded)) {
        None
    } else {
        Some((start, end))
    }
}

/// The clustering filter with values encoded once per read.
enum EncodedFilter {
    All,
    /// Sorted in clustering order, deduplicated.
    Keys(Vec<CKey>),
    Slices(Vec<EncodedSlice>),
}

/// The ring segments of a partition selection, as `PartitionKey` bounds.
fn token_segments(
    start: Bound<i64>,
    end: Bound<i64>,
) -> Vec<(Bound<PartitionKey>, Bound<PartitionKey>)> {
    let at = |t: i64| PartitionKey {
        token: t,
        key: Bytes::new(),
    };
    // "token > t" starts at (t + 1, empty key); "token <= t" ends before (t + 1, empty key).
    let lo = |b: Bound<i64>| -> Option<Bound<PartitionKey>> {
        match b {
            Bound::Unbounded => Some(Bound::Unbounded),
            Bound::Included(t) => Some(Bound::Included(at(t))),
            Bound::Excluded(t) => t.checked_add(1).map(|t| Bound::Included(at(t))),
        }
    };
    let hi = |b: Bound<i64>| -> Option<Bound<PartitionKey>> {
        match b {
            Bound::Unbounded => Some(Bound::Unbounded),
            Bound::Excluded(t) => Some(Bound::Excluded(at(t))),
            Bound::Included(t) => Some(
                t.checked_add(1)
                    .map_or(Bound::Unbounded, |t| Bound::Excluded(at(t))),
            ),
        }
    };
    let value = |b: &Bound<i64>| match b {
        Bound::Included(t) | Bound::Excluded(t) => Some(*t),
        Bound::Unbounded => None,
    };
    let wraps = matches!((value(&start), value(&end)), (Some(s), Some(e)) if s > e);
    let mut out = Vec::new();
    if wraps {
        if let Some(s) = lo(start) {
            out.push((s, Bound::Unbounded));
        }
        if let Some(e) = hi(end) {
            out.push((Bound::Unbounded, e));
        }
    } else if let (Some(s), Some(e)) = (lo(start), hi(end)) {
        out.push((s, e));
    }
    out
}

fn in_segment(k: &PartitionKey, seg: &(Bound<PartitionKey>, Bound<PartitionKey>)) -> bool {
    let after_start = match &seg.0 {
        Bound::Unbounded => true,
        Bound::Included(s) => k >= s,
        Bound::Excluded(s) => k > s,
    };
    let before_end = match &seg.1 {
        Bound::Unbounded => true,
        Bound::Included(e) => k <= e,
        Bound::Excluded(e) => k < e,
    };
    after_start && before_end
}

fn range_ok(seg: &(Bound<PartitionKey>, Bound<PartitionKey>)) -> bool {
    match seg {
        (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) => {
            s < e || (s == e && matches!(seg, (Bound::Included(_), Bound::Included(_))))
        }
        _ => true,
    }
}

impl Store {
    /// Reads one page (consistent: the table's read lock is held for the page).
    pub fn read(&self, def: &TableDef, cmd: &ReadCommand) -> Result<ReadResult, ReadError> {
        self.read_with(def, cmd, |rows, paging_state| ReadResult {
            rows: rows.iter().map(|r| r.to_row()).collect(),
            paging_state,
        })
    }

    /// Reads one page and hands its rows, still in the store, and the paging state to `f`,
    /// under the table's read lock (so `f` should only encode them).
    pub(crate) fn read_with<T>(
        &self,
        def: &TableDef,
        cmd: &ReadCommand,
        f: impl FnOnce(&[RowRef<'_>], Option<PagingState>) -> T,
    ) -> Result<T, ReadError> {
        let table = self.table(def);
        let cmp = &table.cmp;
        let filter = match &cmd.clustering {
            ClusteringFilter::All => EncodedFilter::All,
            ClusteringFilter::Keys(keys) => {
                let mut ks = Vec::with_capacity(keys.len());
                for k in keys {
                    if let Some(k) = self.clustering_key(def, cmp, k)? {
                        ks.push(k);
                    }
                }
                ks.sort();
                ks.dedup();
                EncodedFilter::Keys(ks)
            }
            ClusteringFilter::Slices(slices) => EncodedFilter::Slices(
                slices
                    .iter()
                    .map(|s| write::encode_slice(def, s))
                    .collect::<Result<_, _>>()?,
            ),
        };
        let resume = cmd.paging_state.as_ref();
        let resume_key = resume.map(|s| PartitionKey {
            token: murmur3::token(&s.partition_key),
            key: s.partition_key.clone(),
        });
        let resume_ck = match resume.and_then(|s| s.clustering.as_ref()) {
            Some(c) if !c.is_empty() => Some(CKey::exact(cmp, c.clone().into())),
            _ => None,
        };
        let per_partition = cmd.per_partition_limit.unwrap_or(u32::MAX);
        let remaining = resume.map_or(cmd.limit.unwrap_or(u32::MAX), |s| s.remaining);
        if remaining == 0 {
            return Ok(f(&[], None));
        }
        let parts = table.read();
        let mut walk = Walk {
            def,
            cmd,
            cmp,
            filter: &filter,
            now: self.clock.now_seconds(),
            rows: Vec::new(),
            remaining,
            page_left: cmd.page_size.filter(|p| *p > 0).unwrap_or(u32::MAX),
            per_partition,
            resume_key: resume_key.as_ref(),
            resume_ck: resume_ck.as_ref(),
            resume_left: resume.map_or(per_partition, |s| s.remaining_in_partition),
            done: false,
            paging: None,
        };
        match &cmd.partitions {
            PartitionSelection::Keys(keys) => {
                let mut pks: Vec<PartitionKey> = Vec::with_capacity(keys.len());
                for k in keys {
                    let pk = write::partition_key(def, k)?;
                    if !pks.contains(&pk) {
                        pks.push(pk);
                    }
                }
                let start = resume_key
                    .as_ref()
                    .and_then(|r| pks.iter().position(|k| k == r))
                    .unwrap_or(0);
                for pk in &pks[start..] {
                    // The stored key, which lives as long as the lock.
                    if let Some((pk, p)) = parts.get_key_value(pk) {
                        walk.visit(pk, p);
                    }
                    if walk.done {
                        break;
                    }
                }
            }
            PartitionSelection::TokenRange { start, end } => {
                let segs = token_segments(*start, *end);
                walk_segments(&parts, segs, resume_key.as_ref(), &mut walk);
            }
            PartitionSelection::All => {
                let segs = vec![(Bound::Unbounded, Bound::Unbounded)];
                walk_segments(&parts, segs, resume_key.as_ref(), &mut walk);
            }
        }
        let paging = walk.paging.take();
        Ok(f(&walk.rows, paging))
    }
}

fn walk_segments<'a>(
    parts: &'a Partitions,
    segs: Vec<(Bound<PartitionKey>, Bound<PartitionKey>)>,
    resume: Option<&PartitionKey>,
    walk: &mut Walk<'a>,
) {
    // Skip segments before the one holding the resume key; start that one at the key.
    let first = resume
        .and_then(|r| segs.iter().position(|s| in_segment(r, s)))
        .unwrap_or(0);
    for (i, mut seg) in segs.into_iter().enumerate().skip(first) {
        if i == first
            && let Some(r) = resume
            && in_segment(r, &seg)
        {
            seg.0 = Bound::Included(r.clone());
        }
        if !range_ok(&seg) {
            continue;
        }
        for (pk, p) in parts.range(seg) {
            walk.visit(pk, p);
            if walk.done {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::testkit::*;
    use super::super::write::{Mutation, Op};
    use super::*;
    use crate::schema::ClusteringOrder;
    use proptest::prelude::*;

    fn ck_of(r: &Row) -> Option<i32> {
        r.clustering
            .as_ref()
            .map(|c| i32::from_be_bytes(c[0].as_ref().try_into().unwrap()))
    }

    fn pk_of(r: &Row) -> i32 {
        i32::from_be_bytes(r.partition_key[0].as_ref().try_into().unwrap())
    }

    fn insert_at(s: &Store, t: &TableDef, pk: i32, ck: i32, ts: i64) {
        s.apply(
            t,
            Mutation {
                partition_key: vec![int(pk)],
                clustering: vec![int(ck)],
                ops: vec![Op::RowMarker(at(ts))],
            },
        )
        .unwrap();
    }

    fn insert(s: &Store, t: &TableDef, pk: i32, ck: i32) {
        insert_at(s, t, pk, ck, 1);
    }

    fn delete(s: &Store, t: &TableDef, pk: i32, ck: i32, ts: i64) {
        s.apply(
            t,
            Mutation {
                partition_key: vec![int(pk)],
                clustering: vec![int(ck)],
                ops: vec![Op::DeleteRow { timestamp: ts }],
            },
        )
        .unwrap();
    }

    #[test]
    fn clustering_order_asc_desc_slices_and_reversed() {
        for order in [ClusteringOrder::Asc, ClusteringOrder::Desc] {
            let (s, _) = store();
            let t = table(order);
            for ck in [-5, 3, 0, 10, -1] {
                insert(&s, &t, 1, ck);
            }
            let read = |cmd: ReadCommand| -> Vec<i32> {
                s.read(&t, &cmd)
                    .unwrap()
                    .rows
                    .iter()
                    .map(|r| ck_of(r).unwrap())
                    .collect()
            };
            let mut asc = vec![-5, -1, 0, 3, 10];
            if order == ClusteringOrder::Desc {
                asc.reverse();
            }
            assert_eq!(read(ReadCommand::partition(vec![int(1)])), asc);
            let mut rev = asc.clone();
            rev.reverse();
            assert_eq!(
                read(ReadCommand {
                    reversed: true,
                    ..ReadCommand::partition(vec![int(1)])
                }),
                rev
            );
            // ck > -1 AND ck <= 3, in clustering order.
            let slice = ReadCommand {
                clustering: ClusteringFilter::Slices(vec![Slice {
                    lower: Some((vec![int(-1)], false)),
                    upper: Some((vec![int(3)], true)),
                }]),
                ..ReadCommand::partition(vec![int(1)])
            };
            let mut expect = vec![0, 3];
            if order == ClusteringOrder::Desc {
                expect.reverse();
            }
            assert_eq!(read(slice.clone()), expect);
            expect.reverse();
            assert_eq!(
                read(ReadCommand {
                    reversed: true,
                    ..slice
                }),
                expect
            );
            // IN, given out of order, comes back in clustering order.
            let keys = ReadCommand {
                clustering: ClusteringFilter::Keys(vec![
                    vec![int(10)],
                    vec![int(-5)],
                    vec![int(7)],
                ]),
                ..ReadCommand::partition(vec![int(1)])
            };
            let mut expect = vec![-5, 10];
            if order == ClusteringOrder::Desc {
                expect.reverse();
            }
            assert_eq!(read(keys), expect);
        }
    }

    #[test]
    fn static_only_partitions_and_distinct() {
        let (s, _) = store();
        let t = table(ClusteringOrder::Asc);
        s.apply(
            &t,
            Mutation {
                partition_key: vec![int(7)],
                clustering: vec![],
                ops: vec![Op::Set {
                    column: "s".into(),
                    value: Some(int(1)),
                    at: at(1),
                }],
            },
        )
        .unwrap();
        insert(&s, &t, 8, 1);
        insert(&s, &t, 8, 2);
        let rows = s
            .read(&t, &ReadCommand::partition(vec![int(7)]))
            .unwrap()
            .rows;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].clustering, None);
        assert!(rows[0].value(&t, "s").is_some());
        // A clustering restriction excludes the static-only row.
        let restricted = ReadCommand::single_row(vec![int(7)], vec![int(1)]);
        assert!(s.read(&t, &restricted).unwrap().rows.is_empty());
        let distinct = ReadCommand {
            distinct: true,
            ..ReadCommand::all()
        };
        let rows = s.read(&t, &distinct).unwrap().rows;
        let mut pks: Vec<i32> = rows.iter().map(pk_of).collect();
        pks.sort();
        assert_eq!(pks, [7, 8]);
        let cql = rows[0].cql_values(&t).unwrap();
        assert_eq!(cql.len(), t.columns().count());
    }

    #[test]
    fn limits_and_per_partition_limits() {
        let (s, _) = store();
        let t = table(ClusteringOrder::Asc);
        for pk in 0..3 {
            for ck in 0..4 {
                insert(&s, &t, pk, ck);
            }
        }
        let cmd = ReadCommand {
            per_partition_limit: Some(2),
            ..ReadCommand::all()
        };
        assert_eq!(s.read(&t, &cmd).unwrap().rows.len(), 6);
        let cmd = ReadCommand {
            limit: Some(5),
            page_size: Some(2),
            ..ReadCommand::all()
        };
        let mut total = 0;
        let mut state = None;
        loop {
            let page = s
                .read(
                    &t,
                    &ReadCommand {
                        paging_state: state.clone(),
                        ..cmd.clone()
                    },
                )
                .unwrap();
            total += page.rows.len();
            match page.paging_state {
                Some(p) => state = Some(PagingState::decode(&p.encode()).unwrap()),
                None => break,
            }
        }
        assert_eq!(total, 5);
    }

    #[test]
    fn paging_state_bytes_roundtrip_and_reject_garbage() {
        let st = PagingState {
            partition_key: Bytes::from_static(b"\x00\x00\x00\x01"),
            clustering: Some(vec![Bytes::from_static(b"ab")]),
            remaining: 7,
            remaining_in_partition: u32::MAX,
        };
        assert_eq!(PagingState::decode(&st.encode()).unwrap(), st);
        assert!(PagingState::decode(&[]).is_err());
        assert!(PagingState::decode(&[1, 0xff, 0xff, 0xff, 0xff]).is_err());
        let enc = st.encode();
        for cut in 0..enc.len() {
            assert!(PagingState::decode(&enc[..cut]).is_err());
        }
    }

    #[test]
    fn token_ranges_and_wrapping() {
        let (s, _) = store();
        let t = kv();
        for k in 1..=20 {
            s.apply(
                &t,
                Mutation {
                    partition_key: vec![int(k)],
                    clustering: vec![],
                    ops: vec![Op::RowMarker(at(1))],
                },
            )
            .unwrap();
        }
        let read = |start, end| -> Vec<i64> {
            s.read(
                &t,
                &ReadCommand {
                    partitions: PartitionSelection::TokenRange { start, end },
                    ..ReadCommand::all()
                },
            )
            .unwrap()
            .rows
            .iter()
            .map(|r| r.token)
            .collect()
        };
        let all = read(Bound::Unbounded, Bound::Unbounded);
        assert_eq!(all.len(), 20);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "token order");
        // token(1) = -4069959284402364209 (see murmur3 tests).
        let t1 = -4069959284402364209;
        let below = read(Bound::Unbounded, Bound::Included(t1));
        let above = read(Bound::Excluded(t1), Bound::Unbounded);
        assert_eq!(below.len() + above.len(), 20);
        assert_eq!(*below.last().unwrap(), t1);
        let wrapped = read(Bound::Excluded(t1), Bound::Included(t1 - 1));
        assert_eq!(wrapped.len(), 19);
        assert_eq!(read(Bound::Excluded(i64::MAX), Bound::Unbounded).len(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn token_range_splits_return_every_partition_once(
            keys in proptest::collection::btree_set(any::<i32>(), 1..60),
            mut cuts in proptest::collection::vec(any::<i64>(), 1..6),
        ) {
            let (s, _) = store();
            let t = kv();
            for &k in &keys {
                s.apply(&t, Mutation {
                    partition_key: vec![int(k)],
                    clustering: vec![],
                    ops: vec![Op::RowMarker(at(1))],
                }).unwrap();
            }
            cuts.sort();
            cuts.dedup();
            // Ring split at the cuts: (c_i, c_i+1] plus the wrapping (c_last, c_0].
            let mut seen = Vec::new();
            for w in 0..cuts.len() {
                let (a, b) = (cuts[w], cuts[(w + 1) % cuts.len()]);
                let (start, end) = if cuts.len() == 1 {
                    (Bound::Unbounded, Bound::Unbounded)
                } else {
                    (Bound::Excluded(a), Bound::Included(b))
                };
                let mut state = None;
                loop {
                    let page = s.read(&t, &ReadCommand {
                        partitions: PartitionSelection::TokenRange { start, end },
                        page_size: Some(7),
                        paging_state: state.take(),
                        ..ReadCommand::all()
                    }).unwrap();
                    seen.extend(page.rows.iter().map(pk_of));
                    match page.paging_state { Some(p) => state = Some(p), None => break }
                }
            }
            seen.sort();
            prop_assert_eq!(seen, keys.into_iter().collect::<Vec<_>>());
        }

        #[test]
        fn paging_resumes_after_the_last_key_despite_concurrent_changes(
            initial in proptest::collection::btree_set((0..4i32, 0..40i32), 1..80),
            changes in proptest::collection::vec((any::<bool>(), 0..4i32, 0..40i32), 0..40),
            page in 1..9u32,
            reversed in any::<bool>(),
        ) {
            let (s, _) = store();
            let t = table(ClusteringOrder::Desc);
            let mut live: BTreeSet<(i32, i32)> = initial.clone();
            for &(pk, ck) in &initial { insert(&s, &t, pk, ck); }
            let mut returned: Vec<(i64, i32, i32)> = Vec::new();
            let mut state = None;
            let mut changes = changes.into_iter();
            let mut deleted: BTreeSet<(i32, i32)> = BTreeSet::new();
            let mut ts = 1;
            loop {
                let res = s.read(&t, &ReadCommand {
                    page_size: Some(page),
                    paging_state: state.take(),
                    reversed,
                    ..ReadCommand::all()
                }).unwrap();
                for r in &res.rows {
                    let k = (pk_of(r), ck_of(r).unwrap());
                    prop_assert!(live.contains(&k), "returned a row that is not live: {:?}", k);
                    returned.push((r.token, k.0, k.1));
                }
                let Some(p) = res.paging_state else { break };
                state = Some(p);
                // Change data between pages.
                if let Some((ins, pk, ck)) = changes.next() {
                    ts += 1;
                    if ins { insert_at(&s, &t, pk, ck, ts); live.insert((pk, ck)); }
                    else { delete(&s, &t, pk, ck, ts); live.remove(&(pk, ck)); deleted.insert((pk, ck)); }
                }
            }
            // Strictly increasing in read order: no row twice, nothing out of order.
            let order = |x: &(i64, i32, i32)| (x.0, x.1, if reversed { x.2 } else { -x.2 });
            prop_assert!(returned.windows(2).all(|w| order(&w[0]) < order(&w[1])));
            // Every row live from start to end (never deleted) was returned.
            for k in &initial {
                if !deleted.contains(k) {
                    prop_assert!(returned.iter().any(|r| (r.1, r.2) == *k), "missed {:?}", k);
                }
            }
        }
    }
}

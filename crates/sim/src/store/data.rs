//! The in-memory data model: cells, rows, partitions, clustering keys, and Cassandra's
//! reconciliation rules between them.
//!
//! Invariant kept by every write: a stored cell, element or row marker is never shadowed by a
//! stored tombstone (partition, range, row or collection deletion). Writes check the
//! deletions that cover them and drop what they shadow, and new deletions purge what they
//! shadow, so reads only need to check TTL expiry. Tombstones themselves are kept (until
//! TRUNCATE), so an older write arriving later is still refused.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use ferry_cql::types::ColumnType;

use super::order;
use crate::schema::ClusteringOrder;

/// `localDeletionTime` of a cell that is neither a tombstone nor expiring.
pub(crate) const NO_DELETION: u32 = u32::MAX;

/// One cell: a value (or a tombstone) with its write timestamp and TTL.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cell {
    pub(crate) ts: i64,
    /// Seconds; 0 when the cell does not expire.
    pub(crate) ttl: u32,
    /// Expiry (expiring cell) or deletion time (tombstone), local seconds; [`NO_DELETION`]
    /// otherwise. Cassandra's tie-break on equal timestamps looks at it.
    pub(crate) ldt: u32,
    /// `None`: a tombstone.
    pub(crate) value: Option<Bytes>,
}

impl Cell {
    pub(crate) fn live(value: Bytes, ts: i64, ttl: u32, now: u32) -> Self {
        Self {
            ts,
            ttl,
            ldt: if ttl == 0 {
                NO_DELETION
            } else {
                now.saturating_add(ttl).min(NO_DELETION - 1)
            },
            value: Some(value),
        }
    }

    pub(crate) fn tombstone(ts: i64, now: u32) -> Self {
        Self {
            ts,
            ttl: 0,
            ldt: now,
            value: None,
        }
    }

    pub(crate) fn is_live(&self, now: u32) -> bool {
        self.value.is_some() && (self.ttl == 0 || now < self.ldt)
    }

    /// Seconds left before expiry, for `ttl()`; `None` for a cell without TTL.
    pub(crate) fn ttl_left(&self, now: u32) -> Option<u32> {
        (self.ttl != 0).then(|| self.ldt.saturating_sub(now))
    }

    /// Whether `self` wins over `other` when both are writes to the same cell.
    ///
    /// Cassandra's `Cells.resolveRegular` (apache/cassandra
    /// `src/java/org/apache/cassandra/db/rows/Cells.java`): the higher timestamp wins; on a
    /// tie a tombstone or expiring cell beats a plain live cell (CASSANDRA-14592), a
    /// tombstone beats an expiring cell, the later local deletion time wins, and finally the
    /// greater value bytes (unsigned) win.
    pub(crate) fn wins_over(&self, other: &Cell) -> bool {
        if self.ts != other.ts {
            return self.ts > other.ts;
        }
        let (sx, ox) = (self.ldt != NO_DELETION, other.ldt != NO_DELETION);
        if sx || ox {
            if sx != ox {
                return sx;
            }
            let (st, ot) = (self.value.is_none(), other.value.is_none());
            if st != ot {
                return st;
            }
            if self.ldt != other.ldt {
                return self.ldt > other.ldt;
            }
        }
        let empty = Bytes::new();
        self.value.as_ref().unwrap_or(&empty) >= other.value.as_ref().unwrap_or(&empty)
    }

    pub(crate) fn heap_size(&self) -> usize {
        self.value.as_ref().map_or(0, Bytes::len)
    }
}

/// A deletion: shadows everything written at or before `ts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deletion {
    pub(crate) ts: i64,
    /// When it was applied, local seconds.
    pub(crate) ldt: u32,
}

impl Deletion {
    pub(crate) fn deletes(&self, ts: i64) -> bool {
        ts <= self.ts
    }

    /// `DeletionTime.supersedes`.
    pub(crate) fn supersedes(&self, other: &Deletion) -> bool {
        self.ts > other.ts || (self.ts == other.ts && self.ldt > other.ldt)
    }

    /// The stronger of two optional deletions.
    pub(crate) fn max(a: Option<Deletion>, b: Option<Deletion>) -> Option<Deletion> {
        match (a, b) {
            (Some(x), Some(y)) => Some(if y.supersedes(&x) { y } else { x }),
            (x, None) => x,
            (None, y) => y,
        }
    }

    pub(crate) fn shadows(d: Option<Deletion>, ts: i64) -> bool {
        d.is_some_and(|d| d.deletes(ts))
    }
}

/// A row marker (`LivenessInfo`): INSERT writes one, UPDATE does not. A row with a live
/// marker exists even when all its cells are null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) ts: i64,
    pub(crate) ttl: u32,
    /// Expiry (local seconds) or [`NO_DELETION`].
    pub(crate) expiry: u32,
}

impl Marker {
    pub(crate) fn new(ts: i64, ttl: u32, now: u32) -> Self {
        Self {
            ts,
            ttl,
            expiry: if ttl == 0 {
                NO_DELETION
            } else {
                now.saturating_add(ttl).min(NO_DELETION - 1)
            },
        }
    }

    pub(crate) fn is_live(&self, now: u32) -> bool {
        self.ttl == 0 || now < self.expiry
    }

    /// `LivenessInfo.supersedes`: later timestamp; on a tie an expiring marker, then the
    /// later expiry.
    pub(crate) fn supersedes(&self, other: &Marker) -> bool {
        if self.ts != other.ts {
            return self.ts > other.ts;
        }
        if (self.ttl != 0) != (other.ttl != 0) {
            return self.ttl != 0;
        }
        self.expiry > other.expiry
    }
}

/// The cells of a non-frozen collection or UDT, by path, with its collection tombstone.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Complex {
    pub(crate) deletion: Option<Deletion>,
    /// Sorted by the column's path order (see [`path_cmp`]).
    pub(crate) cells: Vec<(Bytes, Cell)>,
}

/// How the cell paths of a multi-cell column sort: list keys and UDT field positions
/// bytewise, set elements and map keys by their type.
pub(crate) fn path_cmp(ty: &ColumnType, a: &[u8], b: &[u8]) -> Ordering {
    match ty {
        ColumnType::Set(e) | ColumnType::Map(e, _) => order::compare(e, a, b),
        _ => a.cmp(b),
    }
}

impl Complex {
    pub(crate) fn find(&self, ty: &ColumnType, path: &[u8]) -> Result<usize, usize> {
        self.cells.binary_search_by(|(p, _)| path_cmp(ty, p, path))
    }

    /// Reconciles one element in; returns whether it was stored.
    pub(crate) fn put(&mut self, ty: &ColumnType, path: Bytes, cell: Cell) -> bool {
        if Deletion::shadows(self.deletion, cell.ts) {
            return false;
        }
        match self.find(ty, &path) {
            Ok(i) => {
                if cell.wins_over(&self.cells[i].1) {
                    self.cells[i].1 = cell;
                    true
                } else {
                    false
                }
            }
            Err(i) => {
                self.cells.insert(i, (path, cell));
                true
            }
        }
    }

    pub(crate) fn delete(&mut self, d: Deletion) {
        self.deletion = Deletion::max(self.deletion, Some(d));
        self.cells.retain(|(_, c)| !d.deletes(c.ts));
    }
}

/// A column's data in a row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ColumnData {
    Simple(Cell),
    Complex(Complex),
}

/// A row (or a partition's static row): marker, row deletion and cells by column id.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Row {
    pub(crate) marker: Option<Marker>,
    pub(crate) deletion: Option<Deletion>,
    /// Sorted by column id.
    pub(crate) cells: Vec<(u32, ColumnData)>,
}

impl Row {
    pub(crate) fn is_empty(&self) -> bool {
        self.marker.is_none() && self.deletion.is_none() && self.cells.is_empty()
    }

    pub(crate) fn column(&self, id: u32) -> Option<&ColumnData> {
        self.cells
            .binary_search_by_key(&id, |(i, _)| *i)
            .ok()
            .map(|i| &self.cells[i].1)
    }

    /// The column's data, created empty (simple or complex) if missing.
    pub(crate) fn column_mut(&mut self, id: u32, complex: bool) -> &mut ColumnData {
        let i = match self.cells.binary_search_by_key(&id, |(i, _)| *i) {
            Ok(i) => i,
            Err(i) => {
                let empty = if complex {
                    ColumnData::Complex(Complex::default())
                } else {
                    // A placeholder that any real cell beats.
                    ColumnData::Simple(Cell {
                        ts: i64::MIN,
                        ttl: 0,
                        ldt: 0,
                        value: None,
                    })
                };
                // Grow by one: rows have a handful of columns, and Vec's default minimum
                // capacity of 4 would triple the memory of a one-column row.
                self.cells.reserve_exact(1);
                self.cells.insert(i, (id, empty));
                i
            }
        };
        &mut self.cells[i].1
    }

    /// Whether anything in the row is live at `now` (marker, cell or element).
    pub(crate) fn has_live(&self, now: u32) -> bool {
        self.marker.is_some_and(|m| m.is_live(now))
            || self.cells.iter().any(|(_, d)| match d {
                ColumnData::Simple(c) => c.is_live(now),
                ColumnData::Complex(x) => x.cells.iter().any(|(_, c)| c.is_live(now)),
            })
    }

    /// Applies a deletion covering the whole row (row, range or partition): purges what it
    /// shadows. Records it as the row deletion when `record`.
    pub(crate) fn delete(&mut self, d: Deletion, record: bool) {
        if record {
            self.deletion = Deletion::max(self.deletion, Some(d));
        }
        if self.marker.is_some_and(|m| d.deletes(m.ts)) {
            self.marker = None;
        }
        self.cells.retain_mut(|(_, data)| match data {
            ColumnData::Simple(c) => !d.deletes(c.ts),
            ColumnData::Complex(x) => {
                x.cells.retain(|(_, c)| !d.deletes(c.ts));
                // A complex deletion older than this one is now redundant.
                if x.deletion.is_some_and(|own| !own.supersedes(&d)) {
                    x.deletion = None;
                }
                x.deletion.is_some() || !x.cells.is_empty()
            }
        });
    }

    pub(crate) fn heap_size(&self) -> usize {
        self.cells
            .iter()
            .map(|(_, d)| match d {
                ColumnData::Simple(c) => c.heap_size() + 16,
                ColumnData::Complex(x) => x
                    .cells
                    .iter()
                    .map(|(p, c)| p.len() + c.heap_size() + 16)
                    .sum(),
            })
            .sum::<usize>()
            + 8
    }
}

/// Types and orders of the clustering columns; every clustering key of a table shares one.
#[derive(Debug, PartialEq)]
pub(crate) struct ClusteringComparator {
    pub(crate) columns: Vec<(ColumnType, ClusteringOrder)>,
}

/// Where a probe key sorts relative to the keys it is a prefix of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Probe {
    Before,
    Exact,
    After,
}

/// A clustering key (or, as a probe, a prefix bound) in the table's clustering order.
#[derive(Debug, Clone)]
pub(crate) struct CKey {
    pub(crate) cmp: Arc<ClusteringComparator>,
    pub(crate) values: Box<[Bytes]>,
    pub(crate) probe: Probe,
}

impl CKey {
    pub(crate) fn exact(cmp: &Arc<ClusteringComparator>, values: Box<[Bytes]>) -> Self {
        Self {
            cmp: cmp.clone(),
            values,
            probe: Probe::Exact,
        }
    }
}

impl Ord for CKey {
    fn cmp(&self, other: &Self) -> Ordering {
        for (i, (a, b)) in self.values.iter().zip(other.values.iter()).enumerate() {
            let Some((ty, ord)) = self.cmp.columns.get(i) else {
                break;
            };
            let c = order::compare(ty, a, b);
            let c = if *ord == ClusteringOrder::Desc {
                c.reverse()
            } else {
                c
            };
            if c != Ordering::Equal {
                return c;
            }
        }
        let rank = |k: &CKey, longer: bool| match (k.probe, longer) {
            (Probe::Before, _) => 0,
            (Probe::After, _) => 2,
            (Probe::Exact, true) => 1,
            // A shorter exact key is a prefix: it sorts before its extensions.
            (Probe::Exact, false) => 0,
        };
        match self.values.len().cmp(&other.values.len()) {
            Ordering::Equal => self.probe.cmp(&other.probe),
            Ordering::Less => {
                if rank(self, false) == 2 {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            Ordering::Greater => {
                if rank(other, false) == 2 {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
        }
    }
}

impl PartialOrd for CKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for CKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for CKey {}

/// A slice of clustering values in *value* terms (CQL semantics, whatever the clustering
/// order): `lower`/`upper` are prefixes of the clustering columns compared
/// lexicographically with each type's natural order, as `(c1, c2) > (1, 2)` means.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EncodedSlice {
    pub(crate) lower: Option<(Vec<Bytes>, bool)>,
    pub(crate) upper: Option<(Vec<Bytes>, bool)>,
}

impl EncodedSlice {
    fn prefix_cmp(cmp: &ClusteringComparator, values: &[Bytes], bound: &[Bytes]) -> Ordering {
        for (i, (a, b)) in values.iter().zip(bound.iter()).enumerate() {
            let Some((ty, _)) = cmp.columns.get(i) else {
                break;
            };
            let c = order::compare(ty, a, b);
            if c != Ordering::Equal {
                return c;
            }
        }
        Ordering::Equal
    }

    pub(crate) fn contains(&self, cmp: &ClusteringComparator, values: &[Bytes]) -> bool {
        if let Some((b, incl)) = &self.lower {
            match Self::prefix_cmp(cmp, values, b) {
                Ordering::Less => return false,
                Ordering::Equal if !incl => return false,
                _ => {}
            }
        }
        if let Some((b, incl)) = &self.upper {
            match Self::prefix_cmp(cmp, values, b) {
                Ordering::Greater => return false,
                Ordering::Equal if !incl => return false,
                _ => {}
            }
        }
        true
    }

    /// Storage-order bounds implied by the first clustering column alone: a superset of the
    /// slice, which `contains` then narrows.
    pub(crate) fn storage_bounds(
        &self,
        cmp: &Arc<ClusteringComparator>,
    ) -> (std::ops::Bound<CKey>, std::ops::Bound<CKey>) {
        use std::ops::Bound;
        let probe = |v: &Bytes, p: Probe| CKey {
            cmp: cmp.clone(),
            values: Box::new([v.clone()]),
            probe: p,
        };
        // c1 >= v (or > v when the bound is a single exclusive value).
        let low = self
            .lower
            .as_ref()
            .and_then(|(b, incl)| b.first().map(|v| (v, *incl || b.len() > 1)));
        let high = self
            .upper
            .as_ref()
            .and_then(|(b, incl)| b.first().map(|v| (v, *incl || b.len() > 1)));
        let desc = cmp
            .columns
            .first()
            .is_some_and(|(_, o)| *o == ClusteringOrder::Desc);
        let (start, end) = if desc { (high, low) } else { (low, high) };
        let start = start.map_or(Bound::Unbounded, |(v, incl)| {
            Bound::Excluded(probe(v, if incl { Probe::Before } else { Probe::After }))
        });
        let end = end.map_or(Bound::Unbounded, |(v, incl)| {
            Bound::Excluded(probe(v, if incl { Probe::After } else { Probe::Before }))
        });
        (start, end)
    }
}

/// A range tombstone: a clustering slice deleted at a timestamp.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RangeTombstone {
    pub(crate) slice: EncodedSlice,
    pub(crate) deletion: Deletion,
}

/// The rows of a partition: tables without clustering columns hold at most one, kept inline
/// (a `BTreeMap` per partition would cost a node allocation per row).
#[derive(Debug, Clone)]
pub(crate) enum Rows {
    Single(Option<Row>),
    Sorted(BTreeMap<CKey, Row>),
}

/// A partition.
#[derive(Debug, Clone)]
pub(crate) struct Partition {
    pub(crate) deletion: Option<Deletion>,
    pub(crate) static_row: Option<Box<Row>>,
    pub(crate) ranges: Vec<RangeTombstone>,
    pub(crate) rows: Rows,
}

impl Partition {
    pub(crate) fn new(clustered: bool) -> Self {
        Self {
            deletion: None,
            static_row: None,
            ranges: Vec::new(),
            rows: if clustered {
                Rows::Sorted(BTreeMap::new())
            } else {
                Rows::Single(None)
            },
        }
    }

    /// The strongest deletion covering a row at `key` (partition, ranges, row's own).
    pub(crate) fn covering(
        &self,
        cmp: &ClusteringComparator,
        key: Option<&CKey>,
        row: Option<&Row>,
    ) -> Option<Deletion> {
        let mut d = self.deletion;
        if let Some(k) = key {
            for r in &self.ranges {
                if r.slice.contains(cmp, &k.values) {
                    d = Deletion::max(d, Some(r.deletion));
                }
            }
        }
        Deletion::max(d, row.and_then(|r| r.deletion))
    }

    pub(crate) fn row(&self, key: Option<&CKey>) -> Option<&Row> {
        match (&self.rows, key) {
            (Rows::Single(r), _) => r.as_ref(),
            (Rows::Sorted(m), Some(k)) => m.get(k),
            (Rows::Sorted(_), None) => None,
        }
    }

    pub(crate) fn row_mut(&mut self, key: Option<CKey>) -> Option<&mut Row> {
        match (&mut self.rows, key) {
            (Rows::Single(r), _) => Some(r.get_or_insert_with(Row::default)),
            (Rows::Sorted(m), Some(k)) => Some(m.entry(k).or_default()),
            (Rows::Sorted(_), None) => None,
        }
    }

    pub(crate) fn remove_if_empty(&mut self, key: Option<&CKey>) {
        match (&mut self.rows, key) {
            (Rows::Single(r), _) => {
                if r.as_ref().is_some_and(Row::is_empty) {
                    *r = None;
                }
            }
            (Rows::Sorted(m), Some(k)) => {
                if m.get(k).is_some_and(Row::is_empty) {
                    m.remove(k);
                }
            }
            (Rows::Sorted(_), None) => {}
        }
        if self.static_row.as_ref().is_some_and(|r| r.is_empty()) {
            self.static_row = None;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.deletion.is_none()
            && self.static_row.is_none()
            && self.ranges.is_empty()
            && match &self.rows {
                Rows::Single(r) => r.is_none(),
                Rows::Sorted(m) => m.is_empty(),
            }
    }

    /// Rows in storage order (or reversed), all of them or those in `range`.
    pub(crate) fn iter_rows<'a>(
        &'a self,
        range: Option<(std::ops::Bound<CKey>, std::ops::Bound<CKey>)>,
        reversed: bool,
    ) -> Box<dyn Iterator<Item = (Option<&'a CKey>, &'a Row)> + 'a> {
        match &self.rows {
            Rows::Single(r) => Box::new(r.iter().map(|r| (None, r))),
            Rows::Sorted(m) => {
                let it: Box<dyn DoubleEndedIterator<Item = (&CKey, &Row)>> = match range {
                    None => Box::new(m.iter()),
                    Some(r) if range_is_empty(&r) => Box::new(std::iter::empty()),
                    Some(r) => Box::new(m.range(r)),
                };
                if reversed {
                    Box::new(it.rev().map(|(k, r)| (Some(k), r)))
                } else {
                    Box::new(it.map(|(k, r)| (Some(k), r)))
                }
            }
        }
    }

    pub(crate) fn heap_size(&self) -> usize {
        let rows: usize = match &self.rows {
            Rows::Single(r) => r.as_ref().map_or(0, Row::heap_size),
            Rows::Sorted(m) => m
                .iter()
                .map(|(k, r)| r.heap_size() + k.values.iter().map(Bytes::len).sum::<usize>())
                .sum(),
        };
        rows + self.static_row.as_ref().map_or(0, |r| r.heap_size())
    }
}

/// `BTreeMap::range` panics when start > end; such a range is simply empty here.
fn range_is_empty(r: &(std::ops::Bound<CKey>, std::ops::Bound<CKey>)) -> bool {
    use std::ops::Bound::{Excluded, Included};
    match r {
        (Included(s) | Excluded(s), Included(e) | Excluded(e)) => {
            s > e || (s == e && !matches!(r, (Included(_), Included(_))))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(ts: i64, v: &[u8]) -> Cell {
        Cell::live(Bytes::copy_from_slice(v), ts, 0, 100)
    }

    #[test]
    fn last_write_wins_then_cassandras_tie_break() {
        assert!(cell(2, b"a").wins_over(&cell(1, b"z")));
        assert!(!cell(1, b"z").wins_over(&cell(2, b"a")));
        // Equal timestamps: greater value bytes (unsigned) win, in either order.
        assert!(cell(1, b"b").wins_over(&cell(1, b"a")));
        assert!(!cell(1, b"a").wins_over(&cell(1, b"b")));
        assert!(cell(1, &[0x80]).wins_over(&cell(1, &[0x7f])));
        // A tombstone beats a live cell of the same timestamp, and an expiring one.
        let t = Cell::tombstone(1, 100);
        assert!(t.wins_over(&cell(1, b"zz")));
        assert!(!cell(1, b"zz").wins_over(&t));
        let exp = Cell::live(Bytes::from_static(b"a"), 1, 10, 100);
        assert!(t.wins_over(&exp));
        // An expiring cell beats a plain live one (CASSANDRA-14592).
        assert!(exp.wins_over(&cell(1, b"zz")));
    }

    #[test]
    fn deletions_shadow_older_and_equal_not_newer() {
        let d = Deletion { ts: 10, ldt: 0 };
        assert!(d.deletes(9) && d.deletes(10) && !d.deletes(11));
    }

    #[test]
    fn probes_bracket_prefixes() {
        let cmp = Arc::new(ClusteringComparator {
            columns: vec![
                (ColumnType::Int, ClusteringOrder::Asc),
                (ColumnType::Int, ClusteringOrder::Desc),
            ],
        });
        let k = |a: i32, b: i32| {
            CKey::exact(
                &cmp,
                vec![
                    Bytes::copy_from_slice(&a.to_be_bytes()),
                    Bytes::copy_from_slice(&b.to_be_bytes()),
                ]
                .into(),
            )
        };
        let p = |a: i32, probe| CKey {
            cmp: cmp.clone(),
            values: vec![Bytes::copy_from_slice(&a.to_be_bytes())].into(),
            probe,
        };
        assert!(k(1, 5) < k(1, 4), "second column is DESC");
        assert!(p(1, Probe::Before) < k(1, 9));
        assert!(p(1, Probe::After) > k(1, -9));
        assert!(p(1, Probe::After) < k(2, 100));
        assert!(p(2, Probe::Before) > k(1, -100));
    }
}

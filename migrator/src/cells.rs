//! Timestamp fidelity, the pure part: a scanned origin row (values with `writetime()` and
//! `ttl()`) becomes writes that carry each cell's own writetime and remaining TTL.
//!
//! The rules:
//! - A row's cells are grouped by (writetime, TTL); each group is one `UPDATE … USING
//!   TIMESTAMP t AND TTL s SET …` with only that group's columns. Null columns appear in no
//!   group: they are *unset*, so the migrator writes no tombstones.
//! - Non-frozen collections and user types come apart into elements (Cassandra 5.0 gives one
//!   writetime and TTL per element): sets and maps are written with `c = c + ?`, user type
//!   fields with `c.f = ?`, each element in the group of its own writetime. Adding an element
//!   that exists is a no-op overwrite, so these are idempotent.
//! - Lists are not idempotent (every append gets a fresh timeuuid key), so list elements are
//!   kept aside as [`ListAppend`]s and written by the writer's read-compare-append rule (see
//!   `writer`).
//! - Frozen collections, frozen user types, tuples and vectors are one cell.
//! - Row marker: a row with regular cells gets its marker from the group with the lowest
//!   writetime (the `INSERT` form when that group has only single-cell columns, else a
//!   key-only `INSERT` at that writetime and TTL), so the marker is never newer than data
//!   origin had and any later delete shadows it. A row without regular cells (primary key
//!   only) gets a key-only `INSERT` at the job's floor timestamp: its real writetime cannot
//!   be read, and the floor is never "now".
//! - Static columns are grouped separately and written once per partition (by the caller).
//! - TTLs are the remaining seconds at read time minus whole seconds since then; a cell that
//!   expired meanwhile is not written.

use std::collections::BTreeMap;
use std::time::Duration;

use scylla::value::CqlValue;

use crate::schema::{ColumnDef, ColumnKind, Shape};

/// One column's live data as the scan returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScannedColumn {
    pub value: CqlValue,
    /// One per cell: a single entry for single-cell columns, one per live element otherwise.
    pub writetimes: Vec<i64>,
    /// Remaining TTL per cell, 0 for none.
    pub ttls: Vec<i32>,
}

impl ScannedColumn {
    /// Builds from the three scan outputs of a column (`c`, `writetime(c)`, `ttl(c)`).
    pub fn from_outputs(
        value: Option<CqlValue>,
        writetime: Option<CqlValue>,
        ttl: Option<CqlValue>,
    ) -> Option<Self> {
        let value = value?;
        let writetimes: Vec<i64> = match writetime {
            Some(CqlValue::BigInt(t)) => vec![t],
            Some(CqlValue::List(ts)) => ts
                .into_iter()
                .map(|t| match t {
                    CqlValue::BigInt(t) => t,
                    _ => 0,
                })
                .collect(),
            _ => Vec::new(),
        };
        let ttls: Vec<i32> = match ttl {
            Some(CqlValue::Int(t)) => vec![t],
            Some(CqlValue::List(ts)) => ts
                .into_iter()
                .map(|t| match t {
                    CqlValue::Int(t) => t,
                    _ => 0,
                })
                .collect(),
            _ => vec![0; writetimes.len()],
        };
        Some(Self {
            value,
            writetimes,
            ttls,
        })
    }
}

/// One assignment of a group.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// `"c" = ?`: a single-cell column.
    Cell { column: usize, value: CqlValue },
    /// `"c" = "c" + ?` with a set of elements.
    SetAdd {
        column: usize,
        elements: Vec<CqlValue>,
    },
    /// `"c" = "c" + ?` with map entries.
    MapPut {
        column: usize,
        entries: Vec<(CqlValue, CqlValue)>,
    },
    /// `"c"."f" = ?`.
    Field {
        column: usize,
        field: String,
        value: CqlValue,
    },
}

impl Piece {
    /// The column index (into the table's columns) the piece writes.
    pub fn column(&self) -> usize {
        match self {
            Self::Cell { column, .. }
            | Self::SetAdd { column, .. }
            | Self::MapPut { column, .. }
            | Self::Field { column, .. } => *column,
        }
    }
}

/// Cells sharing one writetime and TTL.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub writetime: i64,
    /// Seconds, 0 for none.
    pub ttl: i32,
    pub pieces: Vec<Piece>,
}

/// Consecutive elements of one list with the same writetime and TTL: one append.
#[derive(Debug, Clone, PartialEq)]
pub struct ListRun {
    pub writetime: i64,
    pub ttl: i32,
    pub elements: Vec<CqlValue>,
}

/// A list column's elements in origin order, with their writetimes.
#[derive(Debug, Clone, PartialEq)]
pub struct ListAppend {
    pub column: usize,
    /// (value, writetime, TTL).
    pub elements: Vec<(CqlValue, i64, i32)>,
}

/// How to write the row marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// The regular group at this index is written as an `INSERT` (carries the marker).
    InGroup(usize),
    /// A key-only `INSERT` at this writetime and TTL.
    KeyOnly { writetime: i64, ttl: i32 },
    /// No marker (static-only rows).
    None,
}

/// The writes of one row, split by scope.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RowWrites {
    pub regular: Vec<Group>,
    pub statics: Vec<Group>,
    pub lists: Vec<ListAppend>,
    pub static_lists: Vec<ListAppend>,
    pub marker: Option<Marker>,
    /// Cell bytes, for the bytes/s limit.
    pub bytes: u64,
}

/// Splits a scanned row into its writes.
///
/// `columns` are the table's value columns (static and regular), `cells[i]` the scan data of
/// `columns[i]` (`None`: null). `column_ids[i]` is the index the pieces report for column i.
/// `has_row` is false for a static-only row (clustering columns null).
pub fn row_writes(
    columns: &[&ColumnDef],
    column_ids: &[usize],
    cells: &[Option<ScannedColumn>],
    has_row: bool,
    elapsed: Duration,
    floor_timestamp: i64,
) -> RowWrites {
    let spent = i32::try_from(elapsed.as_secs()).unwrap_or(i32::MAX);
    // TTL still to go, or None when the cell expired since it was read.
    let remaining = |ttl: i32| -> Option<i32> {
        if ttl <= 0 {
            Some(0)
        } else if ttl > spent {
            Some(ttl - spent)
        } else {
            None
        }
    };
    let mut regular: BTreeMap<(i64, i32), Vec<Piece>> = BTreeMap::new();
    let mut statics: BTreeMap<(i64, i32), Vec<Piece>> = BTreeMap::new();
    let mut out = RowWrites::default();
    for ((col, &id), cell) in columns.iter().zip(column_ids).zip(cells) {
        let Some(cell) = cell else { continue };
        let is_static = col.kind == ColumnKind::Static;
        if !is_static && !has_row {
            continue;
        }
        out.bytes += value_size(&cell.value);
        let groups = if is_static {
            &mut statics
        } else {
            &mut regular
        };
        let at = |i: usize| -> Option<(i64, i32)> {
            let wt = cell.writetimes.get(i).copied()?;
            let ttl = remaining(cell.ttls.get(i).copied().unwrap_or(0))?;
            Some((wt, ttl))
        };
        match (&col.shape, &cell.value) {
            (Shape::Set, CqlValue::Set(es) | CqlValue::List(es)) => {
                for (i, e) in es.iter().enumerate() {
                    let Some(key) = at(i) else { continue };
                    let pieces = groups.entry(key).or_default();
                    match pieces
                        .iter_mut()
                        .find(|p| matches!(p, Piece::SetAdd { column, .. } if *column == id))
                    {
                        Some(Piece::SetAdd { elements, .. }) => elements.push(e.clone()),
                        _ => pieces.push(Piece::SetAdd {
                            column: id,
                            elements: vec![e.clone()],
                        }),
                    }
                }
            }
            (Shape::Map, CqlValue::Map(es)) => {
                for (i, (k, v)) in es.iter().enumerate() {
                    let Some(key) = at(i) else { continue };
                    let pieces = groups.entry(key).or_default();
                    match pieces
                        .iter_mut()
                        .find(|p| matches!(p, Piece::MapPut { column, .. } if *column == id))
                    {
                        Some(Piece::MapPut { entries, .. }) => entries.push((k.clone(), v.clone())),
                        _ => pieces.push(Piece::MapPut {
                            column: id,
                            entries: vec![(k.clone(), v.clone())],
                        }),
                    }
                }
            }
            (Shape::Udt(_), CqlValue::UserDefinedType { fields, .. }) => {
                // writetime() lists the live (non-null) fields, in field order.
                for (i, (name, v)) in fields
                    .iter()
                    .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)))
                    .enumerate()
                {
                    let Some(key) = at(i) else { continue };
                    groups.entry(key).or_default().push(Piece::Field {
                        column: id,
                        field: name.clone(),
                        value: v.clone(),
                    });
                }
            }
            (Shape::List, CqlValue::List(es)) => {
                let elements: Vec<(CqlValue, i64, i32)> = es
                    .iter()
                    .enumerate()
                    .filter_map(|(i, e)| at(i).map(|(wt, ttl)| (e.clone(), wt, ttl)))
                    .collect();
                if !elements.is_empty() {
                    let list = ListAppend {
                        column: id,
                        elements,
                    };
                    if is_static {
                        out.static_lists.push(list);
                    } else {
                        out.lists.push(list);
                    }
                }
            }
            (_, value) => {
                if let Some(key) = at(0) {
                    groups.entry(key).or_default().push(Piece::Cell {
                        column: id,
                        value: value.clone(),
                    });
                }
            }
        }
    }
    let into_groups = |m: BTreeMap<(i64, i32), Vec<Piece>>| -> Vec<Group> {
        m.into_iter()
            .map(|((writetime, ttl), pieces)| Group {
                writetime,
                ttl,
                pieces,
            })
            .collect()
    };
    out.regular = into_groups(regular);
    out.statics = into_groups(statics);
    out.marker = Some(if !has_row {
        Marker::None
    } else {
        // Lowest writetime among the regular cells, list elements included.
        let lowest_group = out.regular.first().map(|g| (g.writetime, g.ttl));
        let lowest_list = out
            .lists
            .iter()
            .flat_map(|l| l.elements.iter().map(|(_, wt, ttl)| (*wt, *ttl)))
            .min();
        match (lowest_group, lowest_list) {
            (None, None) => Marker::KeyOnly {
                writetime: floor_timestamp,
                ttl: 0,
            },
            (Some(g), l) if l.is_none_or(|l| g <= l) => {
                let simple = out.regular[0]
                    .pieces
                    .iter()
                    .all(|p| matches!(p, Piece::Cell { .. }));
                if simple {
                    Marker::InGroup(0)
                } else {
                    Marker::KeyOnly {
                        writetime: g.0,
                        ttl: g.1,
                    }
                }
            }
            (_, Some((writetime, ttl))) | (Some((writetime, ttl)), None) => {
                Marker::KeyOnly { writetime, ttl }
            }
        }
    });
    out
}

/// Splits list elements into runs of equal (writetime, TTL), in order.
pub fn list_runs(elements: &[(CqlValue, i64, i32)]) -> Vec<ListRun> {
    let mut runs: Vec<ListRun> = Vec::new();
    for (v, wt, ttl) in elements {
        match runs.last_mut() {
            Some(r) if r.writetime == *wt && r.ttl == *ttl => r.elements.push(v.clone()),
            _ => runs.push(ListRun {
                writetime: *wt,
                ttl: *ttl,
                elements: vec![v.clone()],
            }),
        }
    }
    runs
}

/// The origin elements target still lacks, in origin order: each target element (value,
/// writetime) accounts for one equal origin element, so duplicates are counted, not merged.
pub fn missing_list_elements(
    origin: &[(CqlValue, i64, i32)],
    target: &[(CqlValue, i64)],
) -> Vec<(CqlValue, i64, i32)> {
    let mut used = vec![false; target.len()];
    origin
        .iter()
        .filter(|(v, wt, _)| {
            let found = target
                .iter()
                .enumerate()
                .position(|(i, (tv, twt))| !used[i] && twt == wt && tv == v);
            match found {
                Some(i) => {
                    used[i] = true;
                    false
                }
                None => true,
            }
        })
        .cloned()
        .collect()
}

/// Approximate serialized size of a value (for the bytes/s limit and progress).
pub fn value_size(v: &CqlValue) -> u64 {
    match v {
        CqlValue::Ascii(s) | CqlValue::Text(s) => s.len() as u64,
        CqlValue::Blob(b) => b.len() as u64,
        CqlValue::Boolean(_) | CqlValue::TinyInt(_) => 1,
        CqlValue::SmallInt(_) => 2,
        CqlValue::Int(_) | CqlValue::Float(_) | CqlValue::Date(_) => 4,
        CqlValue::BigInt(_)
        | CqlValue::Double(_)
        | CqlValue::Counter(_)
        | CqlValue::Timestamp(_)
        | CqlValue::Time(_) => 8,
        CqlValue::Uuid(_) | CqlValue::Timeuuid(_) | CqlValue::Inet(_) => 16,
        CqlValue::List(es) | CqlValue::Set(es) | CqlValue::Vector(es) => {
            es.iter().map(|e| 4 + value_size(e)).sum()
        }
        CqlValue::Map(es) => es
            .iter()
            .map(|(k, v)| 8 + value_size(k) + value_size(v))
            .sum(),
        CqlValue::Tuple(es) => es
            .iter()
            .map(|e| 4 + e.as_ref().map_or(0, value_size))
            .sum(),
        CqlValue::UserDefinedType { fields, .. } => fields
            .iter()
            .map(|(_, e)| 4 + e.as_ref().map_or(0, value_size))
            .sum(),
        _ => 16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, kind: ColumnKind, shape: Shape) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            kind,
            ty: String::new(),
            shape,
        }
    }

    fn cell(value: CqlValue, wts: &[i64], ttls: &[i32]) -> Option<ScannedColumn> {
        Some(ScannedColumn {
            value,
            writetimes: wts.to_vec(),
            ttls: ttls.to_vec(),
        })
    }

    #[test]
    fn groups_by_writetime_and_ttl_and_skips_nulls() {
        let a = col("a", ColumnKind::Regular, Shape::Simple);
        let b = col("b", ColumnKind::Regular, Shape::Simple);
        let c = col("c", ColumnKind::Regular, Shape::Simple);
        let s = col("s", ColumnKind::Regular, Shape::Set);
        let w = row_writes(
            &[&a, &b, &c, &s],
            &[2, 3, 4, 5],
            &[
                cell(CqlValue::Int(1), &[10], &[0]),
                None,
                cell(CqlValue::Int(3), &[20], &[100]),
                cell(
                    CqlValue::Set(vec![CqlValue::Int(7), CqlValue::Int(8)]),
                    &[10, 30],
                    &[0, 0],
                ),
            ],
            true,
            Duration::from_millis(1500),
            5,
        );
        assert_eq!(w.regular.len(), 3);
        assert_eq!(
            w.regular[0],
            Group {
                writetime: 10,
                ttl: 0,
                pieces: vec![
                    Piece::Cell {
                        column: 2,
                        value: CqlValue::Int(1)
                    },
                    Piece::SetAdd {
                        column: 5,
                        elements: vec![CqlValue::Int(7)]
                    },
                ],
            }
        );
        // 100 s remaining at read, 1 whole second since.
        assert_eq!((w.regular[1].writetime, w.regular[1].ttl), (20, 99));
        assert_eq!((w.regular[2].writetime, w.regular[2].ttl), (30, 0));
        // The lowest group mixes a set element: the marker goes in a key-only INSERT.
        assert_eq!(
            w.marker,
            Some(Marker::KeyOnly {
                writetime: 10,
                ttl: 0
            })
        );
    }

    #[test]
    fn key_only_rows_get_the_floor_and_expired_cells_are_dropped() {
        let a = col("a", ColumnKind::Regular, Shape::Simple);
        let w = row_writes(
            &[&a],
            &[1],
            &[cell(CqlValue::Int(1), &[10], &[2])],
            true,
            Duration::from_secs(2),
            77,
        );
        assert!(w.regular.is_empty());
        assert_eq!(
            w.marker,
            Some(Marker::KeyOnly {
                writetime: 77,
                ttl: 0
            })
        );
    }

    #[test]
    fn statics_lists_and_udt_fields() {
        let s = col("s", ColumnKind::Static, Shape::Simple);
        let l = col("l", ColumnKind::Regular, Shape::List);
        let u = col(
            "u",
            ColumnKind::Regular,
            Shape::Udt(vec!["x".into(), "y".into()]),
        );
        let udt = CqlValue::UserDefinedType {
            keyspace: "ks".into(),
            name: "t".into(),
            fields: vec![("x".into(), None), ("y".into(), Some(CqlValue::Int(4)))],
        };
        let w = row_writes(
            &[&s, &l, &u],
            &[0, 1, 2],
            &[
                cell(CqlValue::Int(9), &[50], &[0]),
                cell(
                    CqlValue::List(vec![CqlValue::Int(1), CqlValue::Int(2)]),
                    &[5, 6],
                    &[0, 0],
                ),
                cell(udt, &[8], &[0]),
            ],
            true,
            Duration::ZERO,
            0,
        );
        assert_eq!(w.statics.len(), 1);
        assert_eq!(w.lists[0].elements.len(), 2);
        assert_eq!(
            w.regular[0].pieces,
            vec![Piece::Field {
                column: 2,
                field: "y".into(),
                value: CqlValue::Int(4)
            }]
        );
        // The list's first element is older than every group.
        assert_eq!(
            w.marker,
            Some(Marker::KeyOnly {
                writetime: 5,
                ttl: 0
            })
        );
        // A static-only row writes no regular data and no marker.
        let w = row_writes(
            &[&s, &l],
            &[0, 1],
            &[cell(CqlValue::Int(9), &[50], &[0]), None],
            false,
            Duration::ZERO,
            0,
        );
        assert_eq!((w.statics.len(), w.marker), (1, Some(Marker::None)));
    }

    #[test]
    fn list_completion_counts_duplicates() {
        let e = |v: i32, wt: i64| (CqlValue::Int(v), wt, 0);
        let origin = vec![e(1, 10), e(1, 10), e(2, 10), e(3, 20)];
        // Target got the first two appends before a crash.
        let target = vec![(CqlValue::Int(1), 10), (CqlValue::Int(1), 10)];
        assert_eq!(
            missing_list_elements(&origin, &target),
            vec![e(2, 10), e(3, 20)]
        );
        let all: Vec<(CqlValue, i64)> = origin.iter().map(|(v, wt, _)| (v.clone(), *wt)).collect();
        assert!(missing_list_elements(&origin, &all).is_empty());
        let runs = list_runs(&origin);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].elements.len(), 3);
    }
}

//! `system.size_estimates` and `system.table_estimates` as Cassandra 5.0 lays them out: per node,
//! one row per table and local primary token range, with the partition count in the range and the
//! table's mean partition size. Spark-style tools and the migrator read them to choose how many
//! splits a token-range scan gets.
//!
//! Cassandra records these every few minutes; here they are computed when queried, so they are
//! exact counts of stored partition keys (tombstoned ones included, as Cassandra counts keys).
//! A query costs one pass over the table's partitions.
//!
//! Ranges are the node's primary ranges `(previous ring token, own token]`; the one that wraps
//! round the ring is split at the minimum token, as Cassandra's `Range.unwrap` does, into
//! `(last, MIN]` and `(MIN, first]`.

use ferry_cql::types::{ColumnType, CqlValue};

use crate::schema::TableDef;
use crate::store::Store;

use super::virtual_table::VirtualTable;

/// `table_estimates.range_type` values. In one data center both name the same ranges.
const RANGE_TYPES: [&str; 2] = ["local_primary", "primary"];

/// One primary range of a node: `(start, end]`, `end == i64::MIN` meaning the ring's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRange {
    pub start: i64,
    pub end: i64,
}

/// The primary ranges of the node owning `own` (sorted or not) in a ring of `all` tokens, with
/// the wrapping range unwrapped.
pub fn primary_ranges(own: &[i64], all: &[i64]) -> Vec<TokenRange> {
    let mut ring = all.to_vec();
    ring.sort_unstable();
    ring.dedup();
    let mut out = Vec::with_capacity(own.len() + 1);
    for &t in own {
        let Ok(i) = ring.binary_search(&t) else {
            continue;
        };
        let prev = if i == 0 {
            ring[ring.len() - 1]
        } else {
            ring[i - 1]
        };
        if prev < t {
            out.push(TokenRange {
                start: prev,
                end: t,
            });
        } else {
            // Wraps (or is the whole ring, for a single token).
            out.push(TokenRange {
                start: prev,
                end: i64::MIN,
            });
            if t != i64::MIN {
                out.push(TokenRange {
                    start: i64::MIN,
                    end: t,
                });
            }
        }
    }
    out.sort_unstable_by_key(|r| (r.start, r.end));
    out
}

/// Partitions with a token in `range`.
fn partitions(store: &Store, def: &TableDef, range: TokenRange) -> u64 {
    let end = if range.end == i64::MIN {
        i64::MAX
    } else {
        range.end
    };
    store.partitions_in(def, range.start, end)
}

fn long(n: u64) -> Option<CqlValue> {
    Some(CqlValue::Bigint(i64::try_from(n).unwrap_or(i64::MAX)))
}

fn text(s: &str) -> Option<CqlValue> {
    Some(CqlValue::Text(s.to_owned()))
}

/// One row per (table, range) before it is laid out for either table:
/// `(keyspace, table, range_start, range_end, mean_partition_size, partitions_count)`.
type Estimate = (String, String, String, String, u64, u64);

fn estimates(store: &Store, tables: &[&TableDef], ranges: &[TokenRange]) -> Vec<Estimate> {
    let mut rows = Vec::with_capacity(tables.len() * ranges.len());
    for def in tables {
        let mean = store.size_estimate(def).mean_partition_size;
        for r in ranges {
            rows.push((
                def.keyspace.clone(),
                def.name.clone(),
                r.start.to_string(),
                r.end.to_string(),
                mean,
                partitions(store, def, *r),
            ));
        }
    }
    // Clustering order: range bounds are text, so they sort as text.
    rows.sort_unstable_by(|a, b| (&a.0, &a.1, &a.2, &a.3).cmp(&(&b.0, &b.1, &b.2, &b.3)));
    rows
}

/// `system.size_estimates` on the node with `ranges` (its primary ranges), for `tables` (every
/// user table).
pub fn size_estimates(store: &Store, tables: &[&TableDef], ranges: &[TokenRange]) -> VirtualTable {
    let rows = estimates(store, tables, ranges)
        .into_iter()
        .map(|(ks, t, start, end, mean, count)| {
            vec![
                text(&ks),
                text(&t),
                text(&start),
                text(&end),
                long(mean),
                long(count),
            ]
        })
        .collect();
    VirtualTable {
        keyspace: "system".into(),
        name: "size_estimates".into(),
        columns: columns(&["keyspace_name", "table_name", "range_start", "range_end"]),
        rows,
    }
}

/// `system.table_estimates`: the same numbers per `range_type` (`local_primary`, `primary`).
pub fn table_estimates(store: &Store, tables: &[&TableDef], ranges: &[TokenRange]) -> VirtualTable {
    let base = estimates(store, tables, ranges);
    let mut rows = Vec::with_capacity(base.len() * RANGE_TYPES.len());
    // Grouped by table, then range type, then range: the table's clustering order.
    let mut i = 0;
    while i < base.len() {
        let same_table = base[i..]
            .iter()
            .take_while(|r| r.0 == base[i].0 && r.1 == base[i].1)
            .count();
        for kind in RANGE_TYPES {
            for (ks, t, start, end, mean, count) in &base[i..i + same_table] {
                rows.push(vec![
                    text(ks),
                    text(t),
                    text(kind),
                    text(start),
                    text(end),
                    long(*mean),
                    long(*count),
                ]);
            }
        }
        i += same_table;
    }
    VirtualTable {
        keyspace: "system".into(),
        name: "table_estimates".into(),
        columns: columns(&[
            "keyspace_name",
            "table_name",
            "range_type",
            "range_start",
            "range_end",
        ]),
        rows,
    }
}

/// Text key columns, then the two bigint estimates (regular columns sort by name).
fn columns(keys: &[&str]) -> Vec<(String, ColumnType)> {
    keys.iter()
        .map(|k| ((*k).to_owned(), ColumnType::Varchar))
        .chain([
            ("mean_partition_size".to_owned(), ColumnType::Bigint),
            ("partitions_count".to_owned(), ColumnType::Bigint),
        ])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: i64, end: i64) -> TokenRange {
        TokenRange { start, end }
    }

    #[test]
    fn primary_ranges_end_at_own_tokens_and_unwrap_the_wrapping_one() {
        let all = [-100, -10, 5, 50, 500];
        assert_eq!(primary_ranges(&[5, 500], &all), [r(-10, 5), r(50, 500)]);
        // -100 is the lowest token: its range wraps from 500 round to it.
        assert_eq!(
            primary_ranges(&[-100, 50], &all),
            [r(i64::MIN, -100), r(5, 50), r(500, i64::MIN)]
        );
        // One token owns the whole ring.
        assert_eq!(primary_ranges(&[7], &[7]), [r(i64::MIN, 7), r(7, i64::MIN)]);
    }

    #[test]
    fn every_nodes_ranges_tile_the_ring() {
        let nodes = [vec![-90, 10, 70], vec![-40, 30], vec![0, 99]];
        let all: Vec<i64> = nodes.iter().flatten().copied().collect();
        let mut ranges: Vec<TokenRange> = nodes
            .iter()
            .flat_map(|own| primary_ranges(own, &all))
            .collect();
        ranges.sort_unstable_by_key(|r| (r.start, r.end));
        assert_eq!(ranges[0].start, i64::MIN);
        assert_eq!(ranges.last().map(|r| r.end), Some(i64::MIN));
        for w in ranges.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
    }
}

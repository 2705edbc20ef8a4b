//! A table's stored cells as JSON (`GET /tables/{keyspace}/{table}`): every key component,
//! column, element path and value as a CQL literal (what cqlsh would accept back), with the
//! cell's writetime, remaining TTL and whether it is a tombstone or expired.

use bytes::Bytes;
use ferry_cql::types::{ColumnType, decode_value};
use serde::Serialize;

use crate::schema::{ColumnDef, TableDef};
use crate::store::DumpedCell;

/// Entries returned when the request names no `limit`.
pub(super) const DEFAULT_LIMIT: usize = 1_000;
/// The largest `limit`: the whole answer is built in memory, so it stays at a few tens of MiB.
pub(super) const MAX_LIMIT: usize = 100_000;

/// The answer to `GET /tables/{keyspace}/{table}`.
#[derive(Debug, Serialize)]
pub(super) struct TableDump {
    keyspace: String,
    table: String,
    /// Names of the partition key columns, in `partition_key` order.
    partition_key_columns: Vec<String>,
    /// Names of the clustering columns, in `clustering` order.
    clustering_columns: Vec<String>,
    limit: usize,
    /// Whether more entries exist past `limit`.
    truncated: bool,
    cells: Vec<CellView>,
}

/// What a dumped entry is.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum EntryKind {
    /// The liveness info an INSERT writes (no column).
    RowMarker,
    Cell,
    /// A deleted cell or collection element.
    Tombstone,
}

/// One stored entry.
#[derive(Debug, Serialize)]
struct CellView {
    kind: EntryKind,
    token: i64,
    partition_key: Vec<String>,
    /// `null` for the static row and tables without clustering columns.
    clustering: Option<Vec<String>>,
    /// Whether the entry is in the partition's static row.
    #[serde(rename = "static")]
    is_static: bool,
    column: Option<String>,
    /// A non-frozen collection element's key (list: its timeuuid; set: the element; map: the
    /// key) or a non-frozen UDT's field name.
    path: Option<String>,
    /// `null` for row markers, tombstones and set elements (whose value is their path).
    value: Option<String>,
    /// µs since the epoch, as `writetime()` reports it.
    writetime: i64,
    /// Seconds left, as `ttl()` reports it; `null` without TTL.
    ttl: Option<u32>,
    /// Past its TTL: reads see null, but the cell is still stored (as until compaction).
    expired: bool,
}

impl TableDump {
    /// `entries` is what the store returned for `limit + 1`, so truncation is known exactly.
    pub(super) fn new(def: &TableDef, mut entries: Vec<DumpedCell>, limit: usize) -> Self {
        let truncated = entries.len() > limit;
        entries.truncate(limit);
        let has_clustering = !def.clustering.is_empty();
        let cells = entries
            .into_iter()
            .map(|e| {
                let column = e
                    .column
                    .as_deref()
                    .and_then(|name| def.value_columns.iter().find(|c| c.name == name));
                let (path, value) = match column {
                    Some(c) => element(c, e.path.as_ref(), e.value.as_ref()),
                    None => (None, None),
                };
                let kind = match (&e.column, &e.value) {
                    (None, _) => EntryKind::RowMarker,
                    (Some(_), None) => EntryKind::Tombstone,
                    (Some(_), Some(_)) => EntryKind::Cell,
                };
                CellView {
                    kind,
                    token: e.token,
                    partition_key: literals(def.partition_key.iter(), &e.partition_key),
                    is_static: has_clustering && e.clustering.is_none(),
                    clustering: e
                        .clustering
                        .as_ref()
                        .map(|ck| literals(def.clustering.iter().map(|(c, _)| c), ck)),
                    column: e.column,
                    path,
                    value,
                    writetime: e.writetime,
                    ttl: e.ttl,
                    expired: e.expired,
                }
            })
            .collect();
        Self {
            keyspace: def.keyspace.clone(),
            table: def.name.clone(),
            partition_key_columns: def.partition_key.iter().map(|c| c.name.clone()).collect(),
            clustering_columns: def.clustering.iter().map(|(c, _)| c.name.clone()).collect(),
            limit,
            truncated,
            cells,
        }
    }
}

fn literals<'a>(columns: impl Iterator<Item = &'a ColumnDef>, values: &[Bytes]) -> Vec<String> {
    columns
        .zip(values)
        .map(|(c, v)| literal(&c.ty, v))
        .collect()
}

/// A serialized value as a CQL literal; bytes that do not decode as `ty` (which the store
/// never keeps, but a dump must not fail on) are shown as a blob.
fn literal(ty: &ColumnType, bytes: &[u8]) -> String {
    match decode_value(ty, bytes) {
        Ok(v) => v.to_cql_literal(),
        Err(_) => ferry_cql::types::CqlValue::Blob(bytes.to_vec()).to_cql_literal(),
    }
}

/// The path and value of one cell of `column`, typed by what the path means for it.
fn element(
    column: &ColumnDef,
    path: Option<&Bytes>,
    value: Option<&Bytes>,
) -> (Option<String>, Option<String>) {
    let Some(path) = path else {
        return (None, value.map(|v| literal(&column.ty, v)));
    };
    match &column.ty {
        ColumnType::List(elem) => (
            Some(literal(&ColumnType::Timeuuid, path)),
            value.map(|v| literal(elem, v)),
        ),
        ColumnType::Set(elem) => (Some(literal(elem, path)), None),
        ColumnType::Map(key, val) => (Some(literal(key, path)), value.map(|v| literal(val, v))),
        ColumnType::Udt { fields, .. } => {
            let index = <[u8; 2]>::try_from(path.as_ref())
                .ok()
                .map(|b| usize::from(u16::from_be_bytes(b)));
            match index.and_then(|i| fields.get(i)) {
                Some((name, ty)) => (Some(name.clone()), value.map(|v| literal(ty, v))),
                None => (
                    Some(literal(&ColumnType::Blob, path)),
                    value.map(|v| literal(&ColumnType::Blob, v)),
                ),
            }
        }
        _ => (
            Some(literal(&ColumnType::Blob, path)),
            value.map(|v| literal(&column.ty, v)),
        ),
    }
}

//! Writes: a [`Mutation`] is a list of [`Op`]s on one partition (and one row of it), each
//! with the timestamp and TTL the executor resolved (USING TIMESTAMP / the protocol's
//! default timestamp / [`Store::now_micros`]; USING TTL / the table's default).
//!
//! What each op writes, as Cassandra does:
//! - `RowMarker`: INSERT's row marker (UPDATE writes none, so an UPDATE-only row vanishes
//!   when its cells are deleted).
//! - `Set` on a non-frozen collection or UDT: a collection tombstone at `timestamp - 1`,
//!   then one cell per element at `timestamp` (`= null`: the tombstone at `timestamp`).
//! - List appends and prepends get fresh time-ordered element keys; set-by-index, delete-by-
//!   index and removal read the current list first.
//! - Counters add to the current value with server time and no TTL; a deleted counter stays
//!   deleted (Cassandra: a counter tombstone always wins).

use std::sync::Arc;

use bytes::Bytes;
use ferry_cql::types::{ColumnType, CqlValue, encode_value};

use super::data::{
    CKey, Cell, ClusteringComparator, ColumnData, Complex, Deletion, EncodedSlice, Marker,
    Partition, RangeTombstone, Row,
};
use super::{MAX_TTL, PartitionKey, Store};
use crate::murmur3::{self, KeyError};
use crate::schema::{ColumnDef, TableDef};

/// A write's timestamp (µs) and TTL (seconds, 0 for none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteTime {
    pub timestamp: i64,
    pub ttl: u32,
}

/// A clustering slice in value terms, exactly as CQL means it whatever the clustering order:
/// `lower`/`upper` are prefixes of the clustering key compared lexicographically, each with
/// whether it is inclusive. `ck1 = 1 AND ck2 > 3` is `lower ([1, 3], false)`, `upper ([1],
/// true)`; `(ck1, ck2) >= (1, 2)` is `lower ([1, 2], true)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Slice {
    pub lower: Option<(Vec<CqlValue>, bool)>,
    pub upper: Option<(Vec<CqlValue>, bool)>,
}

/// One operation of a [`Mutation`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Op {
    /// INSERT's row marker.
    RowMarker(WriteTime),
    /// `c = v`; `None` writes a tombstone (`c = null`). On a non-frozen collection or UDT it
    /// replaces the whole value.
    Set {
        column: String,
        value: Option<CqlValue>,
        at: WriteTime,
    },
    /// `l = l + [..]`.
    ListAppend {
        column: String,
        values: Vec<CqlValue>,
        at: WriteTime,
    },
    /// `l = [..] + l`.
    ListPrepend {
        column: String,
        values: Vec<CqlValue>,
        at: WriteTime,
    },
    /// `l[i] = v` (`None`: deletes the element).
    ListSetIndex {
        column: String,
        index: i32,
        value: Option<CqlValue>,
        at: WriteTime,
    },
    /// `l = l - [..]`: removes every occurrence.
    ListRemove {
        column: String,
        values: Vec<CqlValue>,
        timestamp: i64,
    },
    /// `DELETE l[i]`.
    ListDeleteIndex {
        column: String,
        index: i32,
        timestamp: i64,
    },
    /// `s = s + {..}`.
    SetAdd {
        column: String,
        values: Vec<CqlValue>,
        at: WriteTime,
    },
    /// `s = s - {..}`.
    SetRemove {
        column: String,
        values: Vec<CqlValue>,
        timestamp: i64,
    },
    /// `m = m + {..}` or `m[k] = v` (a `None` value deletes the key).
    MapPut {
        column: String,
        entries: Vec<(CqlValue, Option<CqlValue>)>,
        at: WriteTime,
    },
    /// `m = m - {..}` or `DELETE m[k]`.
    MapRemove {
        column: String,
        keys: Vec<CqlValue>,
        timestamp: i64,
    },
    /// `u.f = v` on a non-frozen UDT (`None`: deletes the field, `DELETE u.f`).
    UdtSetField {
        column: String,
        field: String,
        value: Option<CqlValue>,
        at: WriteTime,
    },
    /// `c = c + delta` on a counter column (server time, no TTL).
    CounterAdd { column: String, delta: i64 },
    /// `DELETE c`: a cell tombstone, or a collection tombstone.
    DeleteColumn { column: String, timestamp: i64 },
    /// `DELETE FROM … WHERE` the full primary key.
    DeleteRow { timestamp: i64 },
    /// `DELETE FROM … WHERE` a clustering prefix or slice: a range tombstone.
    DeleteRange { slice: Slice, timestamp: i64 },
    /// `DELETE FROM … WHERE` the partition key only.
    DeletePartition { timestamp: i64 },
}

/// Writes to one partition and, for row-level ops, one row of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    /// Values of the partition key columns, in order.
    pub partition_key: Vec<CqlValue>,
    /// The full clustering key of the row that row-level ops write; empty when the table has
    /// no clustering columns or the ops touch only static columns or ranges.
    pub clustering: Vec<CqlValue>,
    pub ops: Vec<Op>,
}

/// Why a write was refused (INVALID, 0x2200, for all but `Internal`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error("Undefined column name {0}")]
    UnknownColumn(String),
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("Invalid value for column {column}: {reason}")]
    BadValue { column: String, reason: String },
    #[error("Missing mandatory PRIMARY KEY part {0}")]
    MissingKeyPart(String),
    #[error("Expected {expected} partition key values, got {got}")]
    PartitionKeyArity { expected: usize, got: usize },
    #[error("Expected at most {expected} clustering values, got {got}")]
    ClusteringArity { expected: usize, got: usize },
    #[error("ttl is too large. requested ({ttl}) maximum ({MAX_TTL})")]
    TtlTooLarge { ttl: u32 },
    #[error("Attempted to set an element on a list which is null")]
    SetOnNullList,
    #[error("Attempted to delete an element from a list which is null")]
    DeleteFromNullList,
    #[error("List index {index} out of bound, list has size {size}")]
    ListIndexOutOfBound { index: i32, size: usize },
    #[error("Invalid operation ({op}) for non {kind} column {column}")]
    WrongKind {
        op: &'static str,
        kind: &'static str,
        column: String,
    },
    #[error(
        "Cannot set the value of counter column {0} (counters can only be incremented/decremented, not set)"
    )]
    CounterSet(String),
    #[error("INSERT statements are not allowed on counter tables, use UPDATE instead")]
    InsertOnCounterTable,
    #[error("Unknown field {field} in user type {column}")]
    UnknownField { column: String, field: String },
    #[error("Cannot apply {0} to a PRIMARY KEY column")]
    PrimaryKeyColumn(String),
}

pub(crate) fn encode(col: &str, ty: &ColumnType, v: &CqlValue) -> Result<Bytes, WriteError> {
    let bad = |e: ferry_cql::wire::EncodeError| WriteError::BadValue {
        column: col.to_owned(),
        reason: e.to_string(),
    };
    // Exact capacity: `Bytes::from` a full `Vec` keeps the one allocation (a spare capacity
    // would cost a second, shared-state allocation per value).
    let mut b = Vec::with_capacity(ferry_cql::types::encoded_len(ty, v).map_err(bad)?);
    encode_value(ty, v, &mut b).map_err(bad)?;
    Ok(Bytes::from(b))
}

/// The partition's place from its key values.
pub(crate) fn partition_key(
    def: &TableDef,
    values: &[CqlValue],
) -> Result<PartitionKey, WriteError> {
    if values.len() != def.partition_key.len() {
        return Err(WriteError::PartitionKeyArity {
            expected: def.partition_key.len(),
            got: values.len(),
        });
    }
    let parts = def
        .partition_key
        .iter()
        .zip(values)
        .map(|(c, v)| encode(&c.name, &c.ty, v))
        .collect::<Result<Vec<_>, _>>()?;
    let key = murmur3::serialize_key_components(&parts)?;
    Ok(PartitionKey {
        token: murmur3::token(&key),
        key: Bytes::from(key),
    })
}

pub(crate) fn encode_clustering(
    def: &TableDef,
    values: &[CqlValue],
) -> Result<Vec<Bytes>, WriteError> {
    if values.len() > def.clustering.len() {
        return Err(WriteError::ClusteringArity {
            expected: def.clustering.len(),
            got: values.len(),
        });
    }
    def.clustering
        .iter()
        .zip(values)
        .map(|((c, _), v)| encode(&c.name, &c.ty, v))
        .collect()
}

pub(crate) fn encode_slice(def: &TableDef, s: &Slice) -> Result<EncodedSlice, WriteError> {
    let bound = |b: &Option<(Vec<CqlValue>, bool)>| {
        b.as_ref()
            .map(|(v, incl)| encode_clustering(def, v).map(|e| (e, *incl)))
            .transpose()
    };
    Ok(EncodedSlice {
        lower: bound(&s.lower)?,
        upper: bound(&s.upper)?,
    })
}

/// Element keys for lists: 16 bytes whose unsigned order is list order. Appends use
/// `2^63 + t`, prepends `2^63 - t`, with `t` a fresh strictly increasing µs reading, so
/// later appends go last and later prepends go first, like Cassandra's timeuuid keys.
fn list_key(t: i64, prepend: bool) -> Bytes {
    let t = t.max(1) as u64;
    let hi = if prepend {
        (1u64 << 63) - t.min((1u64 << 63) - 1)
    } else {
        (1u64 << 63) | t
    };
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&hi.to_be_bytes());
    b.extend_from_slice(&[0; 8]);
    Bytes::from(b)
}

fn element_type<'t>(col: &'t ColumnDef, op: &'static str) -> Result<&'t ColumnType, WriteError> {
    match (&col.ty, op) {
        (ColumnType::List(e), "list") | (ColumnType::Set(e), "set") if col.is_multi_cell() => Ok(e),
        _ => Err(WriteError::WrongKind {
            op,
            kind: op,
            column: col.name.clone(),
        }),
    }
}

/// Live elements of a multi-cell column, in order.
fn live_elements(row: Option<&Row>, id: u32, now: u32) -> Vec<(&Bytes, &Cell)> {
    match row.and_then(|r| r.column(id)) {
        Some(ColumnData::Complex(x)) => x
            .cells
            .iter()
            .filter(|(_, c)| c.is_live(now))
            .map(|(p, c)| (p, c))
            .collect(),
        _ => Vec::new(),
    }
}

/// What one mutation writes, resolved before taking the table lock where possible.
struct Ctx<'a> {
    def: &'a TableDef,
    cmp: &'a Arc<ClusteringComparator>,
    store: &'a Store,
    now: u32,
}

impl Ctx<'_> {
    fn column(&self, name: &str) -> Result<&ColumnDef, WriteError> {
        let c = self
            .def
            .column(name)
            .ok_or_else(|| WriteError::UnknownColumn(name.to_owned()))?;
        if c.is_primary_key() {
            return Err(WriteError::PrimaryKeyColumn(name.to_owned()));
        }
        Ok(c)
    }

    fn check_ttl(&self, at: &WriteTime) -> Result<(), WriteError> {
        if at.ttl > MAX_TTL {
            return Err(WriteError::TtlTooLarge { ttl: at.ttl });
        }
        Ok(())
    }

    fn live(&self, v: Bytes, at: &WriteTime) -> Cell {
        Cell::live(v, at.timestamp, at.ttl, self.now)
    }
}

/// The row an op targets and the deletion covering it.
fn target<'p>(
    p: &'p mut Partition,
    cmp: &ClusteringComparator,
    key: Option<&CKey>,
    is_static: bool,
    def: &TableDef,
) -> Result<(&'p mut Row, Option<Deletion>), WriteError> {
    if is_static {
        let cover = p.deletion;
        return Ok((p.static_row.get_or_insert_with(Box::default), cover));
    }
    if !def.clustering.is_empty() && key.is_none() {
        return Err(WriteError::MissingKeyPart(def.clustering[0].0.name.clone()));
    }
    let cover = p.covering(cmp, key, None);
    let row = p
        .row_mut(key.cloned())
        .ok_or_else(|| WriteError::MissingKeyPart(def.clustering[0].0.name.clone()))?;
    let cover = Deletion::max(cover, row.deletion);
    Ok((row, cover))
}

fn put_simple(row: &mut Row, id: u32, cell: Cell, cover: Option<Deletion>) {
    if Deletion::shadows(cover, cell.ts) {
        return;
    }
    if let ColumnData::Simple(existing) = row.column_mut(id, false)
        && cell.wins_over(existing)
    {
        *existing = cell;
    }
}

fn complex(row: &mut Row, id: u32) -> &mut Complex {
    match row.column_mut(id, true) {
        ColumnData::Complex(x) => x,
        // A column's kind never changes while its id lives; replace a stray simple cell.
        other => {
            *other = ColumnData::Complex(Complex::default());
            match other {
                ColumnData::Complex(x) => x,
                ColumnData::Simple(_) => unreachable!("just replaced"),
            }
        }
    }
}

fn put_element(row: &mut Row, col: &ColumnDef, path: Bytes, cell: Cell, cover: Option<Deletion>) {
    if Deletion::shadows(cover, cell.ts) {
        return;
    }
    complex(row, col.id).put(&col.ty, path, cell);
}

fn delete_complex(row: &mut Row, col: &ColumnDef, d: Deletion, cover: Option<Deletion>) {
    if Deletion::shadows(cover, d.ts) {
        return;
    }
    complex(row, col.id).delete(d);
}

/// One multi-cell value as (path, value) elements.
fn elements(
    ctx: &Ctx<'_>,
    col: &ColumnDef,
    v: &CqlValue,
) -> Result<Vec<(Bytes, Bytes)>, WriteError> {
    let name = &col.name;
    match (&col.ty, v) {
        (ColumnType::List(e), CqlValue::List(vs)) => vs
            .iter()
            .map(|x| Ok((list_key(ctx.store.now_micros(), false), encode(name, e, x)?)))
            .collect(),
        (ColumnType::Set(e), CqlValue::Set(vs) | CqlValue::List(vs)) => vs
            .iter()
            .map(|x| Ok((encode(name, e, x)?, Bytes::new())))
            .collect(),
        (ColumnType::Map(k, t), CqlValue::Map(es)) => es
            .iter()
            .map(|(a, b)| Ok((encode(name, k, a)?, encode(name, t, b)?)))
            .collect(),
        (ColumnType::Udt { fields, .. }, CqlValue::Udt { fields: vs, .. }) => {
            let mut out = Vec::new();
            for (fname, val) in vs {
                let Some(i) = fields.iter().position(|(f, _)| f == fname) else {
                    return Err(WriteError::UnknownField {
                        column: name.clone(),
                        field: fname.clone(),
                    });
                };
                if let Some(val) = val {
                    out.push((udt_path(i), encode(name, &fields[i].1, val)?));
                }
            }
            Ok(out)
        }
        _ => Err(WriteError::BadValue {
            column: name.clone(),
            reason: format!(
                "a {} value does not match column type {}",
                v.kind(),
                col.ty.cql_name()
            ),
        }),
    }
}

/// A UDT field's cell path: its position, as Cassandra's `[short]` field index.
pub(crate) fn udt_path(i: usize) -> Bytes {
    Bytes::copy_from_slice(&u16::try_from(i).unwrap_or(u16::MAX).to_be_bytes())
}

impl Store {
    /// Applies a mutation atomically (under the table's lock).
    pub fn apply(&self, def: &TableDef, m: Mutation) -> Result<(), WriteError> {
        let table = self.table(def);
        let pk = partition_key(def, &m.partition_key)?;
        let ck = self.clustering_key(def, &table.cmp, &m.clustering)?;
        let mut parts = table.write();
        self.apply_locked(def, &table.cmp, &mut parts, pk, ck.as_ref(), &m.ops)
    }

    pub(crate) fn clustering_key(
        &self,
        def: &TableDef,
        cmp: &Arc<ClusteringComparator>,
        values: &[CqlValue],
    ) -> Result<Option<CKey>, WriteError> {
        if values.is_empty() {
            return Ok(None);
        }
        let enc = encode_clustering(def, values)?;
        if enc.len() < def.clustering.len() {
            return Err(WriteError::MissingKeyPart(
                def.clustering[enc.len()].0.name.clone(),
            ));
        }
        Ok(Some(CKey::exact(cmp, enc.into())))
    }

    pub(crate) fn apply_locked(
        &self,
        def: &TableDef,
        cmp: &Arc<ClusteringComparator>,
        parts: &mut super::Partitions,
        pk: PartitionKey,
        ck: Option<&CKey>,
        ops: &[Op],
    ) -> Result<(), WriteError> {
        let ctx = Ctx {
            def,
            cmp,
            store: self,
            now: self.clock.now_seconds(),
        };
        // Validate everything first, so a failing op leaves the partition untouched.
        for op in ops {
            self.validate(&ctx, op, parts.get(&pk), ck)?;
        }
        let clustered = !def.clustering.is_empty();
        let p = parts
            .entry(pk.clone())
            .or_insert_with(|| Partition::new(clustered));
        let result = ops.iter().try_for_each(|op| self.apply_op(&ctx, p, ck, op));
        p.remove_if_empty(ck);
        if p.is_empty() {
            parts.remove(&pk);
        }
        result
    }

    fn validate(
        &self,
        ctx: &Ctx<'_>,
        op: &Op,
        existing: Option<&Partition>,
        ck: Option<&CKey>,
    ) -> Result<(), WriteError> {
        let def = ctx.def;
        let needs_row = |is_static: bool| {
            if !is_static && !def.clustering.is_empty() && ck.is_none() {
                Err(WriteError::MissingKeyPart(def.clustering[0].0.name.clone()))
            } else {
                Ok(())
            }
        };
        let col_name = match op {
            Op::RowMarker(at) => {
                if def.is_counter {
                    return Err(WriteError::InsertOnCounterTable);
                }
                needs_row(false)?;
                return ctx.check_ttl(at);
            }
            Op::DeleteRow { .. } => return needs_row(false),
            Op::DeletePartition { .. } => return Ok(()),
            Op::DeleteRange { slice, .. } => return encode_slice(def, slice).map(|_| ()),
            Op::Set { column, .. }
            | Op::ListAppend { column, .. }
            | Op::ListPrepend { column, .. }
            | Op::ListSetIndex { column, .. }
            | Op::ListRemove { column, .. }
            | Op::ListDeleteIndex { column, .. }
            | Op::SetAdd { column, .. }
            | Op::SetRemove { column, .. }
            | Op::MapPut { column, .. }
            | Op::MapRemove { column, .. }
            | Op::UdtSetField { column, .. }
            | Op::CounterAdd { column, .. }
            | Op::DeleteColumn { column, .. } => column,
        };
        let col = ctx.column(col_name)?;
        needs_row(col.is_static())?;
        let check = |ty: &ColumnType, v: &CqlValue| {
            ferry_cql::types::encoded_len(ty, v)
                .map(|_| ())
                .map_err(|e| WriteError::BadValue {
                    column: col.name.clone(),
                    reason: e.to_string(),
                })
        };
        let elem = |kind: &'static str| match (&col.ty, kind) {
            (ColumnType::List(e), "list") | (ColumnType::Set(e), "set") if col.is_multi_cell() => {
                Ok((**e).clone())
            }
            (ColumnType::Map(k, _), "map") if col.is_multi_cell() => Ok((**k).clone()),
            _ => Err(WriteError::WrongKind {
                op: kind,
                kind,
                column: col.name.clone(),
            }),
        };
        match op {
            Op::CounterAdd { .. } if !col.is_counter() => {
                return Err(WriteError::WrongKind {
                    op: "c = c + n",
                    kind: "counter",
                    column: col.name.clone(),
                });
            }
            Op::DeleteColumn { .. } | Op::CounterAdd { .. } => return Ok(()),
            _ if col.is_counter() => return Err(WriteError::CounterSet(col.name.clone())),
            _ => {}
        }
        match op {
            Op::Set { value, at, .. } => {
                if let Some(v) = value {
                    check(&col.ty, v)?;
                }
                ctx.check_ttl(at)
            }
            Op::ListAppend { values, at, .. } | Op::ListPrepend { values, at, .. } => {
                let e = elem("list")?;
                values.iter().try_for_each(|v| check(&e, v))?;
                ctx.check_ttl(at)
            }
            Op::ListRemove { values, .. } => {
                let e = elem("list")?;
                values.iter().try_for_each(|v| check(&e, v))
            }
            Op::SetAdd { values, at, .. } => {
                let e = elem("set")?;
                values.iter().try_for_each(|v| check(&e, v))?;
                ctx.check_ttl(at)
            }
            Op::SetRemove { values, .. } => {
                let e = elem("set")?;
                values.iter().try_for_each(|v| check(&e, v))
            }
            Op::MapPut { entries, at, .. } => {
                let k = elem("map")?;
                let ColumnType::Map(_, vt) = &col.ty else {
                    return Ok(());
                };
                for (key, v) in entries {
                    check(&k, key)?;
                    if let Some(v) = v {
                        check(vt, v)?;
                    }
                }
                ctx.check_ttl(at)
            }
            Op::MapRemove { keys, .. } => {
                let k = elem("map")?;
                keys.iter().try_for_each(|v| check(&k, v))
            }
            Op::ListSetIndex { index, .. } | Op::ListDeleteIndex { index, .. } => {
                let e = elem("list")?;
                if let Op::ListSetIndex { value: Some(v), .. } = op {
                    check(&e, v)?;
                }
                // The index must hit a live element now.
                let row = existing.and_then(|p| {
                    if col.is_static() {
                        p.static_row.as_deref()
                    } else {
                        p.row(ck)
                    }
                });
                let size = live_elements(row, col.id, ctx.now).len();
                if size == 0 {
                    return Err(if matches!(op, Op::ListSetIndex { .. }) {
                        WriteError::SetOnNullList
                    } else {
                        WriteError::DeleteFromNullList
                    });
                }
                if usize::try_from(*index).map_or(true, |i| i >= size) {
                    return Err(WriteError::ListIndexOutOfBound {
                        index: *index,
                        size,
                    });
                }
                if let Op::ListSetIndex { at, .. } = op {
                    ctx.check_ttl(at)?;
                }
                Ok(())
            }
            Op::UdtSetField {
                field, value, at, ..
            } => {
                let ColumnType::Udt { fields, .. } = &col.ty else {
                    return Err(WriteError::WrongKind {
                        op: "field set",
                        kind: "frozen user type",
                        column: col.name.clone(),
                    });
                };
                let Some((_, ft)) = fields.iter().find(|(f, _)| f == field) else {
                    return Err(WriteError::UnknownField {
                        column: col.name.clone(),
                        field: field.clone(),
                    });
                };
                if let Some(v) = value {
                    check(ft, v)?;
                }
                ctx.check_ttl(at)
            }
            _ => Ok(()),
        }
    }

    fn apply_op(
        &self,
        ctx: &Ctx<'_>,
        p: &mut Partition,
        ck: Option<&CKey>,
        op: &Op,
    ) -> Result<(), WriteError> {
        let def = ctx.def;
        let now = ctx.now;
        match op {
            Op::DeletePartition { timestamp } => {
                let d = Deletion {
                    ts: *timestamp,
                    ldt: now,
                };
                if Deletion::shadows(p.deletion, d.ts) && p.deletion != Some(d) {
                    return Ok(());
                }
                p.deletion = Deletion::max(p.deletion, Some(d));
                if let Some(s) = p.static_row.as_deref_mut() {
                    s.delete(d, false);
                }
                p.ranges.retain(|r| r.deletion.supersedes(&d));
                match &mut p.rows {
                    super::data::Rows::Single(r) => {
                        if let Some(r) = r {
                            r.delete(d, false);
                            if r.deletion.is_some_and(|own| !own.supersedes(&d)) {
                                r.deletion = None;
                            }
                        }
                    }
                    super::data::Rows::Sorted(m) => {
                        m.retain(|_, r| {
                            r.delete(d, false);
                            if r.deletion.is_some_and(|own| !own.supersedes(&d)) {
                                r.deletion = None;
                            }
                            !r.is_empty()
                        });
                    }
                }
                if let super::data::Rows::Single(r) = &mut p.rows
                    && r.as_ref().is_some_and(Row::is_empty)
                {
                    *r = None;
                }
                Ok(())
            }
            Op::DeleteRange { slice, timestamp } => {
                let slice = encode_slice(def, slice)?;
                let d = Deletion {
                    ts: *timestamp,
                    ldt: now,
                };
                if Deletion::shadows(p.deletion, d.ts) {
                    return Ok(());
                }
                if let super::data::Rows::Sorted(m) = &mut p.rows {
                    m.retain(|k, r| {
                        if slice.contains(ctx.cmp, &k.values) {
                            r.delete(d, false);
                        }
                        !r.is_empty()
                    });
                }
                p.ranges.push(RangeTombstone { slice, deletion: d });
                Ok(())
            }
            Op::DeleteRow { timestamp } => {
                let d = Deletion {
                    ts: *timestamp,
                    ldt: now,
                };
                let (row, cover) = target(p, ctx.cmp, ck, false, def)?;
                if !Deletion::shadows(cover, d.ts) {
                    row.delete(d, true);
                }
                Ok(())
            }
            Op::RowMarker(at) => {
                let (row, cover) = target(p, ctx.cmp, ck, false, def)?;
                let m = Marker::new(at.timestamp, at.ttl, now);
                if !Deletion::shadows(cover, m.ts)
                    && row.marker.is_none_or(|old| m.supersedes(&old))
                {
                    row.marker = Some(m);
                }
                Ok(())
            }
            Op::Set { column, value, at } => {
                let col = ctx.column(column)?;
                let (row, cover) = target(p, ctx.cmp, ck, col.is_static(), def)?;
                if col.is_multi_cell() {
                    let Some(v) = value else {
                        let d = Deletion {
                            ts: at.timestamp,
                            ldt: now,
                        };
                        delete_complex(row, col, d, cover);
                        return Ok(());
                    };
                    let elems = elements(ctx, col, v)?;
                    let d = Deletion {
                        ts: at.timestamp.saturating_sub(1),
                        ldt: now,
                    };
                    delete_complex(row, col, d, cover);
                    for (path, val) in elems {
                        put_element(row, col, path, ctx.live(val, at), cover);
                    }
                    return Ok(());
                }
                let cell = match value {
                    Some(v) => ctx.live(encode(&col.name, &col.ty, v)?, at),
                    None => Cell::tombstone(at.timestamp, now),
                };
                put_simple(row, col.id, cell, cover);
                Ok(())
            }
            Op::ListAppend { column, values, at } | Op::ListPrepend { column, values, at } => {
                let col = ctx.column(column)?;
                let e = element_type(col, "list")?;
                let prepend = matches!(op, Op::ListPrepend { .. });
                let encoded = values
                    .iter()
                    .map(|v| encode(&col.name, e, v))
                    .collect::<Result<Vec<_>, _>>()?;
                let (row, cover) = target(p, ctx.cmp, ck, col.is_static(), def)?;
                let keyed: Vec<(Bytes, Bytes)> = if prepend {
                    // The last value gets the first (largest) prepend key.
                    let mut v: Vec<_> = encoded
                        .into_iter()
                        .rev()
                        .map(|x| (list_key(self.now_micros(), true), x))
                        .collect();
                    v.reverse();
                    v
                } else {
                    encoded
                        .into_iter()
                        .map(|x| (list_key(self.now_micros(), false), x))
                        .collect()
                };
                for (path, val) in keyed {
                    put_element(row, col, path, ctx.live(val, at), cover);
                }
                Ok(())
            }
            Op::ListSetIndex {
                column,
                index,
                value,
                at,
            } => {
                let col = ctx.column(column)?;
                let e = element_type(col, "list")?;
                let encoded = value
                    .as_ref()
                    .map(|v| encode(&col.name, e, v))
                    .transpose()?;
                let (row, cover) = target(p, ctx.cmp, ck, col.is_static(), def)?;
                let path = {
                    let live = live_elements(Some(row), col.id, now);
                    if live.is_empty() {
                        return Err(WriteError::SetOnNullList);
                    }
                    let i = usize::try_from(*index).ok().filter(|i| *i < live.len());
                    let Some(i) = i else {
                        return Err(WriteError::ListIndexOutOfBound {
                            index: *index,
                            size: live.len(),
                        });
                    };
                    live[i].0.clone()
                };
                let cell = match encoded {
                    Some(v) => ctx.live(v, at),
                    None => Cell::tombstone(at.timestamp, now),
                };
                put_element(row, col, path, cell, cover);
                Ok(())
            }
            Op::ListDeleteIndex {
                column,
                index,
                timestamp,
            } => {
                let col = ctx.column(column)?;
                element_type(col, "list")?;
                let (row, cover) = target(p, ctx.cmp, ck, col.is_static(), def)?;
                let path = {
                    let live = live_elements(Some(row), col.id, now);
                    if live.is_empty() {
                        return Err(WriteError::DeleteFromNullList);
                    }
                    let i = usize::try_from(*index).ok().filter(|i| *i < live.len());
                    let Some(i) = i else {
                        return Err(WriteError::ListIndexOutOfBound {
                            index: *index,
                            size: live.len(),
                        });
                    };
                    live[i].0.clone()
                };
                put_element(row, col, path, Cell::tombstone(*timestamp, now), cover);
                Ok(())
            }
            Op::ListRemove {
                column,
                values,
                timestamp,
            } => {
                let col = ctx.column(column)?;
                let e = element_type(col, "list")?;
                let doomed = values
                    .iter()
                    .map(|v| encode(&col.name, e, v))
                    .collect::<Result<Vec<_>, _>>()?;
                let (row, cover) = target(p, ctx.cmp, ck, col.is_static(), def)?;
                let paths: Vec<Bytes> = live_elements(Some(row), col.id, now)
                    .into_iter()
                    .filter(|(_, c)| c.value.as_ref().is_some_and(|v| doomed.contains(v)))
                    .map(|(p, _)| p.clone())
                    .collect();
                for path in paths {
                    put_element(row, col, path, Cell::tombstone(*timestamp, now), cover);
                }
                Ok(())
            }
            Op::SetAdd { column, values, at } => {
                let col = ctx.column(column)?;
                let e = element_type(col, "set")?;
                let encoded = values
                    .iter()
                    .map(|v| encode(&col.name, e, v))
                    .collect::<Result<Vec<_>, _>>()?;
                let (row, cover) = target(p, ctx.cmp, ck, col.is_static(), def)?;
                for path in encoded {
                    put_element(row, col, path, ctx.live(Bytes::new(), at), cover);
                }
                Ok(())
            }
            Op::SetRemove {
                column,
                values,
                timestamp,
            } => {
                let col = ctx.column(column)?;
                let e = element_type(col, "set")?;
                let encoded = values
                    .iter()
                    .map(|v| encode(&col.name, e, v))
                    .collect::<Result<Vec<_>, _>>()?;
                let (row, cover) = target(p, ctx.cmp, ck, col.is_static(), def)?;
                for path in encoded {
                    put_element(row, col, path, Cell::tombstone(*timestamp, now), cover);
                }
                Ok(())
            }
            Op::MapPut {
                column,
                entries,
                at,
            } => {
                let col = ctx.column(column)?;
                let (ColumnType::Map(kt, vt), true) = (&col.ty, col.is_multi_cell()) else {
                    return Err(WriteError::WrongKind {
                        op: "map put",
                        kind: "map",
                        column: col.name.clone(),
                    });
                };
                let encoded = entries
                    .iter()
                    .map(|(k, v)| {
                        Ok((
                            encode(&col.name, kt, k)?,
                            v.as_ref().map(|v| encode(&col.name, vt, v)).transpose()?,
                        ))
                    })
                    .collect::<Result<Vec<_>, WriteError>>()?;
                let (row, cover) = target(p, ctx.cmp, ck, col.is_static(), def)?;
                for (path, val) in encoded {
                    let cell = match val {
                        Some(v) => ctx.live(v, at),
                        None => Cell::tombstone(at.timestamp, now),
                    };
                    put_element(row, col, path, cell, cover);
                }
                Ok(())
            }
            Op::MapRemove {
                column,
                keys,
                timestamp,
            } => {
                let col = ctx.column(column)?;
                let (ColumnType::Map(kt, _), true) = (&col.ty, col.is_multi_cell()) else {
                    return Err(WriteError::WrongKind {
                        op: "map remove",
                        kind: "map",
                        column: col.name.clone(),
                    });
                };
                let encoded = keys
                    .iter()
                    .map(|k| encode(&col.name, kt, k))
                    .collect::<Result<Vec<_>, _>>()?;
                let (row, cover) = target(p, ctx.cmp, ck, col.is_static(), def)?;
                for path in encoded {
                    put_element(row, col, path, Cell::tombstone(*timestamp, now), cover);
                }
                Ok(())
            }
            Op::UdtSetField {
                column,
                field,
                value,
                at,
            } => {
                let col = ctx.column(column)?;
                let (ColumnType::Udt { fields, .. }, true) = (&col.ty, col.is_multi_cell()) else {
                    return Err(WriteError::WrongKind {
                        op: "field set",
                        kind: "frozen user type",
                        column: col.name.clone(),
                    });
                };
                let Some(i) = fields.iter().position(|(f, _)| f == field) else {
                    return Err(WriteError::UnknownField {
                        column: col.name.clone(),
                        field: field.clone(),
                    });
                };
                let cell = match value {
                    Some(v) => ctx.live(encode(&col.name, &fields[i].1, v)?, at),
                    None => Cell::tombstone(at.timestamp, now),
                };
                let (row, cover) = target(p, ctx.cmp, ck, col.is_static(), def)?;
                put_element(row, col, udt_path(i), cell, cover);
                Ok(())
            }
            Op::CounterAdd { column, delta } => {
                let col = ctx.column(column)?;
                let (row, cover) = target(p, ctx.cmp, ck, col.is_static(), def)?;
                if cover.is_some() {
                    // A deleted counter cannot come back (Cassandra: counter tombstones
                    // always win, CASSANDRA-7346).
                    return Ok(());
                }
                let current = match row.column(col.id) {
                    Some(ColumnData::Simple(c)) if c.value.is_none() && c.ts != i64::MIN => {
                        return Ok(());
                    }
                    Some(ColumnData::Simple(c)) => c
                        .value
                        .as_ref()
                        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                        .map_or(0, i64::from_be_bytes),
                    _ => 0,
                };
                let ts = self.now_micros();
                let value = current.wrapping_add(*delta);
                let cell = Cell::live(Bytes::copy_from_slice(&value.to_be_bytes()), ts, 0, now);
                if let ColumnData::Simple(existing) = row.column_mut(col.id, false) {
                    *existing = cell;
                }
                Ok(())
            }
            Op::DeleteColumn { column, timestamp } => {
                let col = ctx.column(column)?;
                let (row, cover) = target(p, ctx.cmp, ck, col.is_static(), def)?;
                if col.is_multi_cell() {
                    let d = Deletion {
                        ts: *timestamp,
                        ldt: now,
                    };
                    delete_complex(row, col, d, cover);
                } else {
                    put_simple(row, col.id, Cell::tombstone(*timestamp, now), cover);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::schema::ClusteringOrder;
    use crate::store::read::{ColumnValue, ReadCommand};

    fn get(store: &Store, def: &TableDef, pk: i32, ck: i32) -> Option<crate::store::Row> {
        let rows = store
            .read(def, &ReadCommand::single_row(vec![int(pk)], vec![int(ck)]))
            .unwrap()
            .rows;
        rows.into_iter().next()
    }

    fn cell_of(row: &crate::store::Row, def: &TableDef, col: &str) -> Option<(Bytes, i64)> {
        match &row.values[def.value_index(col).unwrap()] {
            Some(ColumnValue::Cell(c)) => Some((c.value.clone(), c.writetime)),
            _ => None,
        }
    }

    fn set_v(ts: i64, v: Option<&str>) -> Op {
        Op::Set {
            column: "v".into(),
            value: v.map(text),
            at: at(ts),
        }
    }

    fn m(pk: i32, ck: i32, ops: Vec<Op>) -> Mutation {
        Mutation {
            partition_key: vec![int(pk)],
            clustering: vec![int(ck)],
            ops,
        }
    }

    #[test]
    fn last_write_wins_in_both_arrival_orders() {
        for order in [[1, 2], [2, 1]] {
            let (s, _) = store();
            let t = table(ClusteringOrder::Asc);
            for ts in order {
                let v = if ts == 2 { "new" } else { "old" };
                s.apply(&t, m(1, 1, vec![set_v(ts, Some(v))])).unwrap();
            }
            let row = get(&s, &t, 1, 1).unwrap();
            assert_eq!(cell_of(&row, &t, "v").unwrap(), (Bytes::from("new"), 2));
        }
    }

    #[test]
    fn equal_timestamps_tie_break_on_value_and_tombstone() {
        for order in [["a", "b"], ["b", "a"]] {
            let (s, _) = store();
            let t = table(ClusteringOrder::Asc);
            for v in order {
                s.apply(&t, m(1, 1, vec![Op::RowMarker(at(5)), set_v(5, Some(v))]))
                    .unwrap();
            }
            let row = get(&s, &t, 1, 1).unwrap();
            assert_eq!(cell_of(&row, &t, "v").unwrap().0, Bytes::from("b"));
            // A tombstone at the same timestamp wins.
            s.apply(&t, m(1, 1, vec![set_v(5, None)])).unwrap();
            let row = get(&s, &t, 1, 1).unwrap();
            assert!(cell_of(&row, &t, "v").is_none());
        }
    }

    #[test]
    fn tombstones_shadow_older_not_newer_in_both_orders() {
        // Delete at 10 then writes at 9 and 11 (and the reverse arrival order).
        for delete_first in [true, false] {
            let (s, _) = store();
            let t = table(ClusteringOrder::Asc);
            let del = m(1, 1, vec![Op::DeleteRow { timestamp: 10 }]);
            let old = m(1, 1, vec![Op::RowMarker(at(9)), set_v(9, Some("old"))]);
            if delete_first {
                s.apply(&t, del.clone()).unwrap();
            }
            s.apply(&t, old).unwrap();
            if !delete_first {
                s.apply(&t, del).unwrap();
            }
            assert!(get(&s, &t, 1, 1).is_none());
            s.apply(&t, m(1, 1, vec![set_v(11, Some("new"))])).unwrap();
            let row = get(&s, &t, 1, 1).unwrap();
            assert_eq!(cell_of(&row, &t, "v").unwrap().0, Bytes::from("new"));
            // Equal timestamp: the deletion wins.
            s.apply(&t, m(1, 2, vec![Op::DeleteRow { timestamp: 10 }]))
                .unwrap();
            s.apply(&t, m(1, 2, vec![set_v(10, Some("tie"))])).unwrap();
            assert!(get(&s, &t, 1, 2).is_none());
        }
    }

    #[test]
    fn row_marker_keeps_inserted_rows_update_rows_vanish() {
        let (s, _) = store();
        let t = table(ClusteringOrder::Asc);
        s.apply(&t, m(1, 1, vec![Op::RowMarker(at(1)), set_v(1, Some("x"))]))
            .unwrap();
        s.apply(&t, m(1, 2, vec![set_v(1, Some("y"))])).unwrap();
        for ck in [1, 2] {
            s.apply(
                &t,
                m(
                    1,
                    ck,
                    vec![Op::DeleteColumn {
                        column: "v".into(),
                        timestamp: 2,
                    }],
                ),
            )
            .unwrap();
        }
        let row = get(&s, &t, 1, 1).expect("inserted row survives with nulls");
        assert!(row.values.iter().all(Option::is_none));
        assert!(get(&s, &t, 1, 2).is_none(), "update-only row vanishes");
    }

    #[test]
    fn ttl_expires_with_the_clock() {
        let (s, clock) = store();
        let t = table(ClusteringOrder::Asc);
        let at10 = WriteTime {
            timestamp: 1,
            ttl: 10,
        };
        s.apply(
            &t,
            m(
                1,
                1,
                vec![
                    Op::RowMarker(at10),
                    Op::Set {
                        column: "v".into(),
                        value: Some(text("x")),
                        at: at10,
                    },
                ],
            ),
        )
        .unwrap();
        s.apply(
            &t,
            m(
                1,
                2,
                vec![
                    Op::RowMarker(at(1)),
                    Op::Set {
                        column: "v".into(),
                        value: Some(text("y")),
                        at: at10,
                    },
                ],
            ),
        )
        .unwrap();
        clock.advance_seconds(4);
        let row = get(&s, &t, 1, 1).unwrap();
        let ColumnValue::Cell(c) = row.values[t.value_index("v").unwrap()].as_ref().unwrap() else {
            panic!()
        };
        assert_eq!(c.ttl, Some(6));
        clock.advance_seconds(6);
        assert!(get(&s, &t, 1, 1).is_none(), "marker and cell expired");
        let row = get(&s, &t, 1, 2).expect("marker without TTL keeps the row");
        assert!(row.values.iter().all(Option::is_none));
        let err = s
            .apply(
                &t,
                m(
                    1,
                    3,
                    vec![Op::RowMarker(WriteTime {
                        timestamp: 1,
                        ttl: MAX_TTL + 1,
                    })],
                ),
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ttl is too large. requested (630720001) maximum (630720000)"
        );
    }

    fn list_of(row: &crate::store::Row, def: &TableDef, col: &str) -> Vec<(i32, i64)> {
        match &row.values[def.value_index(col).unwrap()] {
            Some(ColumnValue::Elements(es)) => es
                .iter()
                .map(|e| {
                    let b: &[u8] = if e.value.is_empty() {
                        &e.path
                    } else {
                        &e.value
                    };
                    (i32::from_be_bytes(b.try_into().unwrap()), e.writetime)
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn list_operations_and_per_element_writetimes() {
        let (s, _) = store();
        let t = table(ClusteringOrder::Asc);
        let l = |vs: &[i32]| vs.iter().map(|&v| int(v)).collect::<Vec<_>>();
        s.apply(
            &t,
            m(
                1,
                1,
                vec![Op::Set {
                    column: "l".into(),
                    value: Some(CqlValue::List(l(&[1, 2]))),
                    at: at(10),
                }],
            ),
        )
        .unwrap();
        s.apply(
            &t,
            m(
                1,
                1,
                vec![Op::ListAppend {
                    column: "l".into(),
                    values: l(&[3]),
                    at: at(20),
                }],
            ),
        )
        .unwrap();
        s.apply(
            &t,
            m(
                1,
                1,
                vec![Op::ListPrepend {
                    column: "l".into(),
                    values: l(&[-1, 0]),
                    at: at(30),
                }],
            ),
        )
        .unwrap();
        let row = get(&s, &t, 1, 1).unwrap();
        assert_eq!(
            list_of(&row, &t, "l"),
            [(-1, 30), (0, 30), (1, 10), (2, 10), (3, 20)]
        );
        s.apply(
            &t,
            m(
                1,
                1,
                vec![Op::ListSetIndex {
                    column: "l".into(),
                    index: 1,
                    value: Some(int(100)),
                    at: at(40),
                }],
            ),
        )
        .unwrap();
        s.apply(
            &t,
            m(
                1,
                1,
                vec![Op::ListDeleteIndex {
                    column: "l".into(),
                    index: 0,
                    timestamp: 40,
                }],
            ),
        )
        .unwrap();
        s.apply(
            &t,
            m(
                1,
                1,
                vec![Op::ListRemove {
                    column: "l".into(),
                    values: l(&[2, 3]),
                    timestamp: 40,
                }],
            ),
        )
        .unwrap();
        let row = get(&s, &t, 1, 1).unwrap();
        assert_eq!(list_of(&row, &t, "l"), [(100, 40), (1, 10)]);
        let err = s
            .apply(
                &t,
                m(
                    1,
                    1,
                    vec![Op::ListSetIndex {
                        column: "l".into(),
                        index: 5,
                        value: Some(int(1)),
                        at: at(50),
                    }],
                ),
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "List index 5 out of bound, list has size 2"
        );
        let err = s
            .apply(
                &t,
                m(
                    1,
                    9,
                    vec![Op::ListSetIndex {
                        column: "l".into(),
                        index: 0,
                        value: Some(int(1)),
                        at: at(50),
                    }],
                ),
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Attempted to set an element on a list which is null"
        );
    }

    #[test]
    fn collection_overwrite_writes_a_tombstone_at_ts_minus_one() {
        let (s, _) = store();
        let t = table(ClusteringOrder::Asc);
        let set = |vs: &[i32], ts| Op::Set {
            column: "st".into(),
            value: Some(CqlValue::Set(vs.iter().map(|&v| int(v)).collect())),
            at: at(ts),
        };
        s.apply(&t, m(1, 1, vec![set(&[1, 2], 10)])).unwrap();
        // Overwriting at the same timestamp merges (the tombstone at 9 spares elements at 10),
        // as in Cassandra.
        s.apply(&t, m(1, 1, vec![set(&[3], 10)])).unwrap();
        assert_eq!(
            list_of(&get(&s, &t, 1, 1).unwrap(), &t, "st"),
            [(1, 10), (2, 10), (3, 10)]
        );
        s.apply(&t, m(1, 1, vec![set(&[5], 11)])).unwrap();
        // An add at 10 is shadowed by the overwrite's tombstone at 11 - 1; one at 11 is not.
        for (v, ts) in [(7, 10), (-3, 11)] {
            s.apply(
                &t,
                m(
                    1,
                    1,
                    vec![Op::SetAdd {
                        column: "st".into(),
                        values: vec![int(v)],
                        at: at(ts),
                    }],
                ),
            )
            .unwrap();
        }
        let row = get(&s, &t, 1, 1).unwrap();
        assert_eq!(list_of(&row, &t, "st"), [(-3, 11), (5, 11)]);
        let dump = s.dump(&t);
        assert!(dump.iter().any(|c| c.column.as_deref() == Some("st")));
    }

    #[test]
    fn map_put_remove_and_static_columns() {
        let (s, _) = store();
        let t = table(ClusteringOrder::Asc);
        s.apply(
            &t,
            m(
                1,
                1,
                vec![
                    Op::MapPut {
                        column: "m".into(),
                        entries: vec![(text("b"), Some(int(2))), (text("a"), Some(int(1)))],
                        at: at(1),
                    },
                    Op::Set {
                        column: "s".into(),
                        value: Some(int(7)),
                        at: at(1),
                    },
                ],
            ),
        )
        .unwrap();
        s.apply(&t, m(1, 2, vec![Op::RowMarker(at(1))])).unwrap();
        s.apply(
            &t,
            m(
                1,
                1,
                vec![Op::MapRemove {
                    column: "m".into(),
                    keys: vec![text("a")],
                    timestamp: 2,
                }],
            ),
        )
        .unwrap();
        for ck in [1, 2] {
            let row = get(&s, &t, 1, ck).unwrap();
            assert_eq!(
                cell_of(&row, &t, "s").unwrap().0,
                Bytes::copy_from_slice(&7i32.to_be_bytes()),
                "static value on every row"
            );
        }
        let row = get(&s, &t, 1, 1).unwrap();
        let Some(ColumnValue::Elements(es)) = &row.values[t.value_index("m").unwrap()] else {
            panic!()
        };
        assert_eq!(es.len(), 1);
        assert_eq!(es[0].path, Bytes::from("b"));
    }

    #[test]
    fn range_and_partition_deletes() {
        let (s, _) = store();
        let t = table(ClusteringOrder::Desc);
        for ck in 0..10 {
            s.apply(&t, m(1, ck, vec![Op::RowMarker(at(5))])).unwrap();
        }
        s.apply(
            &t,
            Mutation {
                partition_key: vec![int(1)],
                clustering: vec![],
                ops: vec![Op::DeleteRange {
                    slice: Slice {
                        lower: Some((vec![int(3)], true)),
                        upper: Some((vec![int(6)], false)),
                    },
                    timestamp: 5,
                }],
            },
        )
        .unwrap();
        // A late write into the range, older than the range tombstone, stays deleted.
        s.apply(&t, m(1, 4, vec![Op::RowMarker(at(4))])).unwrap();
        let all = s.read(&t, &ReadCommand::partition(vec![int(1)])).unwrap();
        let cks: Vec<i32> = all
            .rows
            .iter()
            .map(|r| {
                i32::from_be_bytes(
                    r.clustering.as_ref().unwrap()[0]
                        .as_ref()
                        .try_into()
                        .unwrap(),
                )
            })
            .collect();
        assert_eq!(cks, [9, 8, 7, 6, 2, 1, 0]);
        s.apply(
            &t,
            Mutation {
                partition_key: vec![int(1)],
                clustering: vec![],
                ops: vec![Op::DeletePartition { timestamp: 6 }],
            },
        )
        .unwrap();
        assert!(
            s.read(&t, &ReadCommand::partition(vec![int(1)]))
                .unwrap()
                .rows
                .is_empty()
        );
        s.apply(&t, m(1, 1, vec![Op::RowMarker(at(7))])).unwrap();
        assert_eq!(
            s.read(&t, &ReadCommand::partition(vec![int(1)]))
                .unwrap()
                .rows
                .len(),
            1
        );
    }

    #[test]
    fn counters() {
        let mut c = crate::schema::tests::catalog_with_ks();
        let t = c
            .create_table(
                &crate::schema::tests::spec(
                    "c",
                    vec![
                        crate::schema::tests::col("k", ColumnType::Int),
                        crate::schema::tests::col("n", ColumnType::Counter),
                    ],
                    &["k"],
                    &[],
                ),
                false,
            )
            .unwrap()
            .unwrap();
        let (s, _) = store();
        let add = |d| Mutation {
            partition_key: vec![int(1)],
            clustering: vec![],
            ops: vec![Op::CounterAdd {
                column: "n".into(),
                delta: d,
            }],
        };
        s.apply(&t, add(5)).unwrap();
        s.apply(&t, add(-2)).unwrap();
        let rows = s
            .read(&t, &ReadCommand::partition(vec![int(1)]))
            .unwrap()
            .rows;
        let Some(ColumnValue::Cell(c)) = &rows[0].values[0] else {
            panic!()
        };
        assert_eq!(c.value.as_ref(), 3i64.to_be_bytes());
        let err = s
            .apply(
                &t,
                Mutation {
                    partition_key: vec![int(1)],
                    clustering: vec![],
                    ops: vec![Op::Set {
                        column: "n".into(),
                        value: Some(CqlValue::Counter(1)),
                        at: at(1),
                    }],
                },
            )
            .unwrap_err();
        assert!(matches!(err, WriteError::CounterSet(_)));
        assert!(matches!(
            s.apply(
                &t,
                Mutation {
                    partition_key: vec![int(1)],
                    clustering: vec![],
                    ops: vec![Op::RowMarker(at(1))],
                }
            ),
            Err(WriteError::InsertOnCounterTable)
        ));
        s.apply(
            &t,
            Mutation {
                partition_key: vec![int(1)],
                clustering: vec![],
                ops: vec![Op::DeleteRow {
                    timestamp: s.now_micros(),
                }],
            },
        )
        .unwrap();
        s.apply(&t, add(1)).unwrap();
        assert!(
            s.read(&t, &ReadCommand::partition(vec![int(1)]))
                .unwrap()
                .rows
                .is_empty()
        );
    }

    #[test]
    fn bad_values_are_errors_not_panics() {
        let (s, _) = store();
        let t = table(ClusteringOrder::Asc);
        assert!(matches!(
            s.apply(
                &t,
                m(
                    1,
                    1,
                    vec![Op::Set {
                        column: "v".into(),
                        value: Some(int(1)),
                        at: at(1),
                    }]
                )
            ),
            Err(WriteError::BadValue { .. })
        ));
        assert!(matches!(
            s.apply(
                &t,
                m(
                    1,
                    1,
                    vec![Op::Set {
                        column: "nope".into(),
                        value: None,
                        at: at(1),
                    }]
                )
            ),
            Err(WriteError::UnknownColumn(_))
        ));
        assert!(matches!(
            s.apply(
                &t,
                Mutation {
                    partition_key: vec![int(1)],
                    clustering: vec![],
                    ops: vec![set_v(1, Some("x"))],
                }
            ),
            Err(WriteError::MissingKeyPart(_))
        ));
        // A valid op before a failing one is not applied either.
        let err = s
            .apply(
                &t,
                m(
                    1,
                    1,
                    vec![
                        set_v(1, Some("x")),
                        Op::ListDeleteIndex {
                            column: "l".into(),
                            index: 0,
                            timestamp: 1,
                        },
                    ],
                ),
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Attempted to delete an element from a list which is null"
        );
        assert!(s.dump(&t).is_empty(), "failed writes leave nothing behind");
    }
}

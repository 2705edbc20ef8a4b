//! Lightweight transactions: a condition checked and a write applied atomically under the
//! table's write lock (Paxos reduced to a lock: one in-memory replica).
//!
//! The result carries the current row for the `[applied]` result: Cassandra shows the whole
//! existing row when `IF NOT EXISTS` fails, and the conditioned columns' current values when
//! `IF col …` fails; the executor picks the columns from [`LwtResult::current`].

use std::cmp::Ordering;

use bytes::Bytes;
use ferry_cql::types::{ColumnType, CqlValue};

use super::data::path_cmp;
use super::read::{ColumnValue, Row, row_values, split_key};
use super::write::{Mutation, WriteError, encode, partition_key};
use super::{Store, order};
use crate::schema::{ColumnDef, TableDef};

/// A comparison in an `IF` clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CondOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
}

impl CondOp {
    fn symbol(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::In => "IN",
        }
    }
}

/// `IF col op value`, or `IF col[elem] op value`.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnCondition {
    pub column: String,
    /// A list index or map key: the condition is on that element.
    pub element: Option<CqlValue>,
    pub op: CondOp,
    /// One value, or the `IN` list; `None` is null.
    pub values: Vec<Option<CqlValue>>,
}

/// A row condition.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Condition {
    NotExists,
    Exists,
    /// All must hold.
    Columns(Vec<ColumnCondition>),
}

/// The outcome of a conditional write.
#[derive(Debug, Clone, PartialEq)]
pub struct LwtResult {
    pub applied: bool,
    /// Per checked row, its current state (`None`: no live row), whether applied or not.
    pub current: Vec<Option<Row>>,
}

fn invalid(s: String) -> WriteError {
    WriteError::BadValue {
        column: String::new(),
        reason: s,
    }
}

/// The current value of a column (or an element of it) as serialized bytes.
fn current_value(
    col: &ColumnDef,
    value: Option<&ColumnValue>,
    element: Option<&CqlValue>,
) -> Result<(ColumnType, Option<Bytes>), WriteError> {
    let Some(elem) = element else {
        return Ok((col.ty.clone(), value.map(|v| v.serialize(col))));
    };
    match &col.ty {
        ColumnType::List(e) => {
            let CqlValue::Int(i) = elem else {
                return Err(invalid(format!(
                    "Invalid index for list element condition on {}",
                    col.name
                )));
            };
            let v = match value {
                Some(ColumnValue::Elements(es)) => usize::try_from(*i)
                    .ok()
                    .and_then(|i| es.get(i))
                    .map(|e| e.value.clone()),
                Some(ColumnValue::Cell(c)) => {
                    // A frozen list: decode to index it.
                    match ferry_cql::types::decode_value(&col.ty, &c.value) {
                        Ok(CqlValue::List(xs)) => usize::try_from(*i)
                            .ok()
                            .and_then(|i| xs.get(i))
                            .map(|x| encode(&col.name, e, x))
                            .transpose()?,
                        _ => None,
                    }
                }
                None => None,
            };
            Ok(((**e).clone(), v))
        }
        ColumnType::Map(k, vt) => {
            let key = encode(&col.name, k, elem)?;
            let v = match value {
                Some(ColumnValue::Elements(es)) => es
                    .iter()
                    .find(|e| path_cmp(&col.ty, &e.path, &key) == Ordering::Equal)
                    .map(|e| e.value.clone()),
                Some(ColumnValue::Cell(c)) => {
                    match ferry_cql::types::decode_value(&col.ty, &c.value) {
                        Ok(CqlValue::Map(es)) => es
                            .iter()
                            .find(|(x, _)| encode(&col.name, k, x).is_ok_and(|b| b == key))
                            .map(|(_, v)| encode(&col.name, vt, v))
                            .transpose()?,
                        _ => None,
                    }
                }
                None => None,
            };
            Ok(((**vt).clone(), v))
        }
        _ => Err(invalid(format!(
            "Invalid element access on column {} of type {}",
            col.name,
            col.ty.cql_name()
        ))),
    }
}

/// Serializes a condition value the way stored values of `ty` are: sets and maps sorted by
/// element order, so equality is bytewise.
fn condition_bytes(col: &str, ty: &ColumnType, v: &CqlValue) -> Result<Bytes, WriteError> {
    let sorted = match (ty, v) {
        (ColumnType::Set(e), CqlValue::Set(xs) | CqlValue::List(xs)) => {
            let mut enc = xs
                .iter()
                .map(|x| encode(col, e, x))
                .collect::<Result<Vec<_>, _>>()?;
            enc.sort_by(|a, b| order::compare(e, a, b));
            enc.dedup();
            let mut out = (enc.len() as i32).to_be_bytes().to_vec();
            for x in enc {
                out.extend_from_slice(&(x.len() as i32).to_be_bytes());
                out.extend_from_slice(&x);
            }
            return Ok(Bytes::from(out));
        }
        (ColumnType::Map(k, _), CqlValue::Map(es)) => {
            let mut es = es.clone();
            es.sort_by(|a, b| match (encode(col, k, &a.0), encode(col, k, &b.0)) {
                (Ok(x), Ok(y)) => order::compare(k, &x, &y),
                _ => Ordering::Equal,
            });
            CqlValue::Map(es)
        }
        _ => v.clone(),
    };
    encode(col, ty, &sorted)
}

fn holds(def: &TableDef, row: Option<&Row>, c: &ColumnCondition) -> Result<bool, WriteError> {
    let col = def
        .column(&c.column)
        .ok_or_else(|| WriteError::UnknownColumn(c.column.clone()))?;
    if col.is_primary_key() {
        return Err(invalid(format!(
            "PRIMARY KEY column '{}' cannot have IF conditions",
            col.name
        )));
    }
    let value = row.and_then(|r| r.value(def, &col.name));
    let (ty, current) = current_value(col, value, c.element.as_ref())?;
    if c.op != CondOp::In && c.values.len() != 1 {
        return Err(invalid(format!(
            "Expected 1 value for condition on {}, got {}",
            col.name,
            c.values.len()
        )));
    }
    let mut any = false;
    for v in &c.values {
        let expected = v
            .as_ref()
            .map(|v| condition_bytes(&col.name, &ty, v))
            .transpose()?;
        let ok = match (c.op, &current, &expected) {
            (CondOp::Eq | CondOp::In, a, b) => a == b,
            (CondOp::Ne, a, b) => a != b,
            (op, _, None) => {
                return Err(invalid(format!(
                    "Invalid comparison with null for operator \"{}\"",
                    op.symbol()
                )));
            }
            (_, None, Some(_)) => false,
            (op, Some(a), Some(b)) => {
                let o = order::compare(&ty, a, b);
                match op {
                    CondOp::Lt => o.is_lt(),
                    CondOp::Le => o.is_le(),
                    CondOp::Gt => o.is_gt(),
                    _ => o.is_ge(),
                }
            }
        };
        any |= ok;
    }
    Ok(any)
}

impl Store {
    /// `INSERT/UPDATE/DELETE … IF …` on the mutation's row.
    pub fn apply_if(
        &self,
        def: &TableDef,
        m: Mutation,
        condition: Condition,
    ) -> Result<LwtResult, WriteError> {
        let clustering = m.clustering.clone();
        self.apply_batch_if(def, vec![(clustering, condition)], vec![m])
    }

    /// A conditional batch: every mutation and check is on the same partition (Cassandra
    /// refuses others); all checks must hold for any mutation to apply.
    pub fn apply_batch_if(
        &self,
        def: &TableDef,
        checks: Vec<(Vec<CqlValue>, Condition)>,
        mutations: Vec<Mutation>,
    ) -> Result<LwtResult, WriteError> {
        let Some(first) = mutations.first() else {
            return Ok(LwtResult {
                applied: true,
                current: Vec::new(),
            });
        };
        let table = self.table(def);
        let pk = partition_key(def, &first.partition_key)?;
        let mut prepared = Vec::with_capacity(mutations.len());
        for m in &mutations {
            if partition_key(def, &m.partition_key)? != pk {
                return Err(invalid(
                    "Batch with conditions cannot span multiple partitions".to_owned(),
                ));
            }
            prepared.push(self.clustering_key(def, &table.cmp, &m.clustering)?);
        }
        let mut check_keys = Vec::with_capacity(checks.len());
        for (ck, cond) in &checks {
            check_keys.push((self.clustering_key(def, &table.cmp, ck)?, cond));
        }
        let now = self.clock.now_seconds();
        let mut parts = table.write();
        let mut applied = true;
        let mut current = Vec::with_capacity(checks.len());
        for (ck, cond) in &check_keys {
            let p = parts.get(&pk);
            let statics = p.and_then(|p| p.static_row.as_deref());
            let row = p.and_then(|p| p.row(ck.as_ref()));
            let row_live = row.is_some_and(|r| r.has_live(now));
            let static_live = statics.is_some_and(|s| s.has_live(now));
            // Without a clustering key the check is on the partition's static data (or the
            // single row of an unclustered table).
            let exists = if ck.is_none() && !def.clustering.is_empty() {
                static_live
            } else {
                row_live
            };
            let snapshot = (exists || static_live).then(|| Row {
                token: pk.token,
                partition_key: split_key(def, &pk.key),
                clustering: ck.as_ref().filter(|_| row_live).map(|k| k.values.to_vec()),
                values: row_values(def, statics, row.filter(|_| row_live), now),
            });
            let ok = match cond {
                Condition::NotExists => !exists,
                Condition::Exists => exists,
                Condition::Columns(cs) => {
                    let mut all = true;
                    for c in cs {
                        all &= holds(def, snapshot.as_ref(), c)?;
                    }
                    all
                }
            };
            applied &= ok;
            current.push(snapshot);
        }
        if applied {
            for (m, ck) in mutations.iter().zip(&prepared) {
                self.apply_locked(def, &table.cmp, &mut parts, pk.clone(), ck.as_ref(), &m.ops)?;
            }
        }
        Ok(LwtResult { applied, current })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::write::Op;
    use super::*;
    use crate::schema::ClusteringOrder;

    fn insert(v: &str) -> Mutation {
        Mutation {
            partition_key: vec![int(1)],
            clustering: vec![int(1)],
            ops: vec![
                Op::RowMarker(at(1)),
                Op::Set {
                    column: "v".into(),
                    value: Some(text(v)),
                    at: at(1),
                },
            ],
        }
    }

    fn v_of(def: &TableDef, r: &Row) -> Option<Bytes> {
        match r.value(def, "v")? {
            ColumnValue::Cell(c) => Some(c.value.clone()),
            ColumnValue::Elements(_) => None,
        }
    }

    #[test]
    fn if_not_exists_and_if_exists() {
        let (s, _) = store();
        let t = table(ClusteringOrder::Asc);
        let r = s.apply_if(&t, insert("a"), Condition::NotExists).unwrap();
        assert!(r.applied);
        assert_eq!(r.current, vec![None]);
        let r = s.apply_if(&t, insert("b"), Condition::NotExists).unwrap();
        assert!(!r.applied);
        let cur = r.current[0].as_ref().unwrap();
        assert_eq!(
            v_of(&t, cur),
            Some(Bytes::from("a")),
            "existing row returned"
        );
        let mut upd = insert("c");
        upd.clustering = vec![int(2)];
        assert!(!s.apply_if(&t, upd, Condition::Exists).unwrap().applied);
        assert!(
            s.apply_if(&t, insert("c"), Condition::Exists)
                .unwrap()
                .applied
        );
    }

    #[test]
    fn column_conditions() {
        let (s, _) = store();
        let t = table(ClusteringOrder::Asc);
        s.apply(&t, insert("b")).unwrap();
        let cond = |op, v: Option<&str>| {
            Condition::Columns(vec![ColumnCondition {
                column: "v".into(),
                element: None,
                op,
                values: vec![v.map(text)],
            }])
        };
        for (op, v, expect) in [
            (CondOp::Eq, Some("b"), true),
            (CondOp::Eq, Some("a"), false),
            (CondOp::Ne, Some("a"), true),
            (CondOp::Gt, Some("a"), true),
            (CondOp::Le, Some("a"), false),
            (CondOp::Eq, None, false),
            (CondOp::Ne, None, true),
        ] {
            let r = s.apply_if(&t, insert("b"), cond(op, v)).unwrap();
            assert_eq!(r.applied, expect, "{op:?} {v:?}");
        }
        let r = s
            .apply_if(
                &t,
                insert("b"),
                Condition::Columns(vec![ColumnCondition {
                    column: "v".into(),
                    element: None,
                    op: CondOp::In,
                    values: vec![None, Some(text("b"))],
                }]),
            )
            .unwrap();
        assert!(r.applied);
        let err = s
            .apply_if(&t, insert("b"), cond(CondOp::Lt, None))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("Invalid comparison with null for operator \"<\"")
        );
        // On a missing row: not applied, nothing current.
        let mut other = insert("x");
        other.clustering = vec![int(5)];
        let r = s.apply_if(&t, other, cond(CondOp::Eq, Some("x"))).unwrap();
        assert!(!r.applied);
        assert_eq!(r.current, vec![None]);
    }

    #[test]
    fn static_and_collection_conditions() {
        let (s, _) = store();
        let t = table(ClusteringOrder::Asc);
        s.apply(
            &t,
            Mutation {
                partition_key: vec![int(1)],
                clustering: vec![int(1)],
                ops: vec![
                    Op::RowMarker(at(1)),
                    Op::Set {
                        column: "s".into(),
                        value: Some(int(3)),
                        at: at(1),
                    },
                    Op::Set {
                        column: "st".into(),
                        value: Some(CqlValue::Set(vec![int(2), int(1)])),
                        at: at(1),
                    },
                    Op::MapPut {
                        column: "m".into(),
                        entries: vec![(text("k"), Some(int(9)))],
                        at: at(1),
                    },
                ],
            },
        )
        .unwrap();
        let check = |c: ColumnCondition| {
            s.apply_if(&t, insert("z"), Condition::Columns(vec![c]))
                .unwrap()
                .applied
        };
        assert!(check(ColumnCondition {
            column: "s".into(),
            element: None,
            op: CondOp::Ge,
            values: vec![Some(int(3))],
        }));
        assert!(check(ColumnCondition {
            column: "st".into(),
            element: None,
            op: CondOp::Eq,
            values: vec![Some(CqlValue::Set(vec![int(1), int(2)]))],
        }));
        assert!(check(ColumnCondition {
            column: "m".into(),
            element: Some(text("k")),
            op: CondOp::Eq,
            values: vec![Some(int(9))],
        }));
        assert!(!check(ColumnCondition {
            column: "m".into(),
            element: Some(text("nope")),
            op: CondOp::Eq,
            values: vec![Some(int(9))],
        }));
    }
}

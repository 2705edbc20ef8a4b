//! WHERE clauses, analysed once for reads and writes: which partitions (keys or a token range),
//! which rows inside them (full clustering keys or slices), and what is left to filter.

use std::cmp::Ordering;
use std::ops::Bound as RangeBound;
use std::sync::Arc;

use ferry_cql::types::{ColumnType, CqlValue, encode_value};

use crate::cql::{Bound, Operator, Relation, TermContext, term_to_value};
use crate::schema::{ColumnKind, TableDef};
use crate::store::order::compare;
use crate::store::{ClusteringFilter, PartitionSelection, RowFilter, Slice};

use super::error::ExecError;

#[derive(Debug, Default)]
pub(super) struct Restrictions {
    /// `None`: no partition key restriction (a scan).
    pub(super) partition_keys: Option<Vec<Vec<CqlValue>>>,
    pub(super) token: Option<(RangeBound<i64>, RangeBound<i64>)>,
    /// Full clustering keys from `=`/`IN` on every clustering column.
    pub(super) clustering_keys: Option<Vec<Vec<CqlValue>>>,
    /// A clustering prefix and/or slice.
    pub(super) slice: Option<Slice>,
    /// Predicates on other columns (need ALLOW FILTERING).
    pub(super) filters: Vec<(String, Operator, Vec<CqlValue>)>,
}

impl Restrictions {
    pub(super) fn partitions(&self) -> PartitionSelection {
        match (&self.partition_keys, &self.token) {
            (Some(keys), _) => PartitionSelection::Keys(keys.clone()),
            (None, Some((start, end))) => PartitionSelection::TokenRange {
                start: *start,
                end: *end,
            },
            (None, None) => PartitionSelection::All,
        }
    }

    pub(super) fn clustering(&self) -> ClusteringFilter {
        match (&self.clustering_keys, &self.slice) {
            (Some(keys), _) => ClusteringFilter::Keys(keys.clone()),
            (None, Some(slice)) => ClusteringFilter::Slices(vec![slice.clone()]),
            (None, None) => ClusteringFilter::All,
        }
    }

    /// Whether the token range selects nothing: CQL returns no rows when start > end (the store
    /// would wrap around the ring).
    pub(super) fn empty_token_range(&self) -> bool {
        match &self.token {
            Some((start, end)) => {
                let s = match start {
                    RangeBound::Included(v) | RangeBound::Excluded(v) => Some(*v),
                    RangeBound::Unbounded => None,
                };
                let e = match end {
                    RangeBound::Included(v) | RangeBound::Excluded(v) => Some(*v),
                    RangeBound::Unbounded => None,
                };
                matches!((s, e), (Some(s), Some(e)) if s > e || (s == e && !matches!((start, end), (RangeBound::Included(_), RangeBound::Included(_)))))
            }
            None => false,
        }
    }
}

fn bound_value(
    term: &crate::cql::Term,
    column: &str,
    ty: &ColumnType,
    ctx: &mut TermContext<'_>,
) -> Result<CqlValue, ExecError> {
    match term_to_value(term, column, ty, ctx)? {
        Bound::Value(v) => Ok(v),
        Bound::Null => Err(ExecError::invalid(format!(
            "Invalid null value in condition for column {column}"
        ))),
        Bound::Unset => Err(ExecError::invalid(format!(
            "Invalid unset value for column {column}"
        ))),
    }
}

fn list_values(
    term: &crate::cql::Term,
    column: &str,
    ty: &ColumnType,
    ctx: &mut TermContext<'_>,
) -> Result<Vec<CqlValue>, ExecError> {
    match bound_value(term, column, &ColumnType::List(Box::new(ty.clone())), ctx)? {
        CqlValue::List(items) => Ok(items),
        _ => Err(ExecError::invalid(format!(
            "Invalid IN value for column {column}"
        ))),
    }
}

/// The cartesian product of per-column candidate values.
fn product(columns: &[Vec<CqlValue>]) -> Vec<Vec<CqlValue>> {
    let mut out = vec![Vec::new()];
    for candidates in columns {
        let mut next = Vec::with_capacity(out.len() * candidates.len());
        for prefix in &out {
            for v in candidates {
                let mut k = prefix.clone();
                k.push(v.clone());
                next.push(k);
            }
        }
        out = next;
    }
    out
}

pub(super) fn analyse(
    def: &TableDef,
    relations: &[Relation],
    ctx: &mut TermContext<'_>,
) -> Result<Restrictions, ExecError> {
    let mut out = Restrictions::default();
    let mut pk: Vec<Option<Vec<CqlValue>>> = vec![None; def.partition_key.len()];
    let mut ck_eq: Vec<Option<Vec<CqlValue>>> = vec![None; def.clustering.len()];
    // Single-column slice bounds on clustering columns: (position, op, value).
    let mut ck_slices: Vec<(usize, Operator, CqlValue)> = Vec::new();
    for relation in relations {
        match relation {
            Relation::Column(name, op, term) => {
                let col = def
                    .column(name)
                    .ok_or_else(|| ExecError::invalid(format!("Undefined column name {name}")))?;
                match (col.kind, op) {
                    (ColumnKind::PartitionKey(i), Operator::Eq) => {
                        pk[i] = Some(vec![bound_value(term, name, &col.ty, ctx)?])
                    }
                    (ColumnKind::PartitionKey(i), Operator::In) => {
                        pk[i] = Some(list_values(term, name, &col.ty, ctx)?)
                    }
                    (ColumnKind::Clustering(i), Operator::Eq) => {
                        ck_eq[i] = Some(vec![bound_value(term, name, &col.ty, ctx)?])
                    }
                    (ColumnKind::Clustering(i), Operator::In) => {
                        ck_eq[i] = Some(list_values(term, name, &col.ty, ctx)?)
                    }
                    (
                        ColumnKind::Clustering(i),
                        Operator::Lt | Operator::Le | Operator::Gt | Operator::Ge,
                    ) => {
                        ck_slices.push((i, *op, bound_value(term, name, &col.ty, ctx)?));
                    }
                    (_, Operator::In) => out.filters.push((
                        name.clone(),
                        *op,
                        list_values(term, name, &col.ty, ctx)?,
                    )),
                    (_, Operator::Contains | Operator::ContainsKey) => {
                        let ty = searched_type(&col.ty, *op).ok_or_else(|| {
                            let what = if *op == Operator::Contains {
                                "CONTAINS on non-collection"
                            } else {
                                "CONTAINS KEY on non-map"
                            };
                            ExecError::invalid(format!("Cannot use {what} column {name}"))
                        })?;
                        out.filters.push((
                            name.clone(),
                            *op,
                            vec![bound_value(term, name, &ty, ctx)?],
                        ));
                    }
                    (_, Operator::Like) => {
                        return Err(ExecError::invalid(
                            "LIKE restrictions need a SASI index, which the simulator does not have",
                        ));
                    }
                    _ => out.filters.push((
                        name.clone(),
                        *op,
                        vec![bound_value(term, name, &col.ty, ctx)?],
                    )),
                }
            }
            Relation::Token(columns, op, term) => {
                let pk_names: Vec<&str> =
                    def.partition_key.iter().map(|c| c.name.as_str()).collect();
                if columns.iter().map(String::as_str).collect::<Vec<_>>() != pk_names {
                    return Err(ExecError::invalid(format!(
                        "The token function arguments must be in the partition key order: {}",
                        pk_names.join(", ")
                    )));
                }
                let CqlValue::Bigint(t) =
                    bound_value(term, "partition key token", &ColumnType::Bigint, ctx)?
                else {
                    return Err(ExecError::invalid("Invalid token value"));
                };
                let (start, end) = out
                    .token
                    .unwrap_or((RangeBound::Unbounded, RangeBound::Unbounded));
                out.token = Some(match op {
                    Operator::Gt => (RangeBound::Excluded(t), end),
                    Operator::Ge => (RangeBound::Included(t), end),
                    Operator::Lt => (start, RangeBound::Excluded(t)),
                    Operator::Le => (start, RangeBound::Included(t)),
                    Operator::Eq => (RangeBound::Included(t), RangeBound::Included(t)),
                    _ => {
                        return Err(ExecError::invalid(
                            "Only >, >=, <, <= and = are supported on token()",
                        ));
                    }
                });
            }
            Relation::MultiColumn(columns, op, term) => {
                let positions = columns
                    .iter()
                    .map(|c| match def.column(c).map(|d| d.kind) {
                        Some(ColumnKind::Clustering(i)) => Ok(i),
                        _ => Err(ExecError::invalid(format!("Multi-column relations can only be applied to clustering columns but was applied to: {c}"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if positions.iter().enumerate().any(|(n, p)| *p != n) {
                    return Err(ExecError::invalid(
                        "Clustering columns must appear in the PRIMARY KEY order in multi-column relations",
                    ));
                }
                let tuple = ColumnType::Tuple(
                    positions
                        .iter()
                        .map(|&p| def.clustering[p].0.ty.clone())
                        .collect(),
                );
                let unpack = |v: CqlValue| -> Result<Vec<CqlValue>, ExecError> {
                    match v {
                        CqlValue::Tuple(items) => items
                            .into_iter()
                            .map(|i| {
                                i.ok_or_else(|| {
                                    ExecError::invalid(
                                        "Invalid null value in multi-column relation",
                                    )
                                })
                            })
                            .collect(),
                        _ => Err(ExecError::invalid("Invalid multi-column value")),
                    }
                };
                match op {
                    Operator::Eq => {
                        for (p, v) in positions
                            .iter()
                            .zip(unpack(bound_value(term, "tuple", &tuple, ctx)?)?)
                        {
                            ck_eq[*p] = Some(vec![v]);
                        }
                    }
                    Operator::In => {
                        let keys = list_values(term, "tuple", &tuple, ctx)?
                            .into_iter()
                            .map(unpack)
                            .collect::<Result<Vec<_>, _>>()?;
                        if positions.len() == def.clustering.len() {
                            out.clustering_keys = Some(keys);
                        } else {
                            return Err(ExecError::invalid(
                                "Multi-column IN must restrict every clustering column in the simulator",
                            ));
                        }
                    }
                    Operator::Lt | Operator::Le | Operator::Gt | Operator::Ge => {
                        let values = unpack(bound_value(term, "tuple", &tuple, ctx)?)?;
                        let slice = out.slice.get_or_insert(Slice {
                            lower: None,
                            upper: None,
                        });
                        let inclusive = matches!(op, Operator::Le | Operator::Ge);
                        if matches!(op, Operator::Gt | Operator::Ge) {
                            slice.lower = Some((values, inclusive));
                        } else {
                            slice.upper = Some((values, inclusive));
                        }
                    }
                    _ => {
                        return Err(ExecError::invalid(format!(
                            "{op:?} is not supported on multi-column relations"
                        )));
                    }
                }
            }
        }
    }
    if pk.iter().all(Option::is_some) && !pk.is_empty() {
        let per_column: Vec<Vec<CqlValue>> = pk.into_iter().flatten().collect();
        out.partition_keys = Some(product(&per_column));
    } else if pk.iter().any(Option::is_some) {
        let missing = def
            .partition_key
            .iter()
            .zip(&pk)
            .find(|(_, v)| v.is_none())
            .map(|(c, _)| c.name.clone())
            .unwrap_or_default();
        return Err(ExecError::invalid(format!(
            "Cannot execute this query as it might involve data filtering and thus may have unpredictable performance. If you want to execute this query despite the performance unpredictability, use ALLOW FILTERING (partition key part {missing} is not restricted)"
        )));
    }
    // Clustering: an `=`/`IN` prefix, then at most one sliced column.
    let prefix_len = ck_eq.iter().take_while(|v| v.is_some()).count();
    if ck_eq[prefix_len..].iter().any(Option::is_some) {
        let gap = def
            .clustering
            .get(prefix_len)
            .map(|c| c.0.name.clone())
            .unwrap_or_default();
        return Err(ExecError::invalid(format!(
            "PRIMARY KEY column \"{gap}\" cannot be restricted as preceding column is not restricted"
        )));
    }
    let prefix_choices: Vec<Vec<CqlValue>> = ck_eq.into_iter().take(prefix_len).flatten().collect();
    if !ck_slices.is_empty() {
        if ck_slices.iter().any(|(i, _, _)| *i != prefix_len) {
            return Err(ExecError::invalid(
                "Clustering column slices must follow the restricted prefix",
            ));
        }
        if prefix_choices.iter().any(|c| c.len() != 1) {
            return Err(ExecError::invalid(
                "IN followed by a slice on clustering columns is not supported by the simulator",
            ));
        }
        let prefix: Vec<CqlValue> = prefix_choices.iter().map(|c| c[0].clone()).collect();
        let mut slice = Slice {
            lower: None,
            upper: None,
        };
        for (_, op, v) in ck_slices {
            let mut bound = prefix.clone();
            bound.push(v);
            match op {
                Operator::Gt => slice.lower = Some((bound, false)),
                Operator::Ge => slice.lower = Some((bound, true)),
                Operator::Lt => slice.upper = Some((bound, false)),
                _ => slice.upper = Some((bound, true)),
            }
        }
        if !prefix.is_empty() {
            slice.lower.get_or_insert((prefix.clone(), true));
            slice.upper.get_or_insert((prefix, true));
        }
        out.slice = Some(slice);
    } else if prefix_len == def.clustering.len() && prefix_len > 0 {
        out.clustering_keys = Some(product(&prefix_choices));
    } else if prefix_len > 0 {
        if prefix_choices.iter().any(|c| c.len() != 1) {
            return Err(ExecError::invalid(
                "IN on a clustering prefix is not supported by the simulator",
            ));
        }
        let prefix: Vec<CqlValue> = prefix_choices.iter().map(|c| c[0].clone()).collect();
        out.slice = Some(Slice {
            lower: Some((prefix.clone(), true)),
            upper: Some((prefix, true)),
        });
    }
    Ok(out)
}

/// What `CONTAINS` (an element or map value) or `CONTAINS KEY` (a map key) compares against in a
/// collection of type `ty`; `None` when the operator does not apply to it.
fn searched_type(ty: &ColumnType, op: Operator) -> Option<ColumnType> {
    match (op, ty) {
        (Operator::Contains, ColumnType::List(e) | ColumnType::Set(e)) => Some((**e).clone()),
        (Operator::Contains, ColumnType::Map(_, v)) => Some((**v).clone()),
        (Operator::ContainsKey, ColumnType::Map(k, _)) => Some((**k).clone()),
        _ => None,
    }
}

/// Whether a collection value holds `wanted` (serialized as the searched type) as an element,
/// a map value (`CONTAINS`) or a map key (`CONTAINS KEY`), compared with the element type's
/// ordering so equal values with different encodings still match.
fn collection_contains(ty: &ColumnType, op: Operator, value: &CqlValue, wanted: &[u8]) -> bool {
    let Some(elem_ty) = searched_type(ty, op) else {
        return false;
    };
    let matches = |v: &CqlValue| {
        let mut b = Vec::new();
        encode_value(&elem_ty, v, &mut b).is_ok()
            && compare(&elem_ty, &b, wanted) == Ordering::Equal
    };
    match (op, value) {
        (Operator::Contains, CqlValue::List(items) | CqlValue::Set(items)) => {
            items.iter().any(matches)
        }
        (Operator::Contains, CqlValue::Map(entries)) => entries.iter().any(|(_, v)| matches(v)),
        (Operator::ContainsKey, CqlValue::Map(entries)) => entries.iter().any(|(k, _)| matches(k)),
        _ => false,
    }
}

/// The ALLOW FILTERING predicates as a store row filter.
pub(super) fn row_filter(
    def: &Arc<TableDef>,
    filters: &[(String, Operator, Vec<CqlValue>)],
) -> Result<Option<RowFilter>, ExecError> {
    if filters.is_empty() {
        return Ok(None);
    }
    let mut compiled = Vec::with_capacity(filters.len());
    for (name, op, values) in filters {
        let col = def
            .column(name)
            .cloned()
            .ok_or_else(|| ExecError::invalid(format!("Undefined column name {name}")))?;
        // CONTAINS (KEY) values are elements or keys, not whole collections.
        let ty = searched_type(&col.ty, *op).unwrap_or_else(|| col.ty.clone());
        let encoded = values
            .iter()
            .map(|v| {
                let mut b = Vec::new();
                encode_value(&ty, v, &mut b).map_err(|e| ExecError::invalid(e.to_string()))?;
                Ok(b)
            })
            .collect::<Result<Vec<_>, ExecError>>()?;
        compiled.push((col, *op, encoded));
    }
    let def = def.clone();
    Ok(Some(Arc::new(move |row: &crate::store::Row| {
        compiled.iter().all(|(col, op, wanted)| {
            if matches!(op, Operator::Contains | Operator::ContainsKey) {
                return row
                    .value(&def, &col.name)
                    .and_then(|v| v.to_cql(col).ok())
                    .is_some_and(|v| collection_contains(&col.ty, *op, &v, &wanted[0]));
            }
            let have: Option<Vec<u8>> = match col.kind {
                ColumnKind::PartitionKey(i) => row.partition_key.get(i).map(|b| b.to_vec()),
                ColumnKind::Clustering(i) => row
                    .clustering
                    .as_ref()
                    .and_then(|c| c.get(i))
                    .map(|b| b.to_vec()),
                _ => row
                    .value(&def, &col.name)
                    .map(|v| v.serialize(col).to_vec()),
            };
            let Some(have) = have else { return false };
            let cmp = |w: &Vec<u8>| compare(&col.ty, &have, w);
            match op {
                Operator::Eq => cmp(&wanted[0]) == Ordering::Equal,
                Operator::Ne => cmp(&wanted[0]) != Ordering::Equal,
                Operator::Lt => cmp(&wanted[0]) == Ordering::Less,
                Operator::Le => cmp(&wanted[0]) != Ordering::Greater,
                Operator::Gt => cmp(&wanted[0]) == Ordering::Greater,
                Operator::Ge => cmp(&wanted[0]) != Ordering::Less,
                Operator::In => wanted.iter().any(|w| cmp(w) == Ordering::Equal),
                _ => false,
            }
        })
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(ty: &ColumnType, v: &CqlValue) -> Vec<u8> {
        let mut b = Vec::new();
        encode_value(ty, v, &mut b).unwrap();
        b
    }

    #[test]
    fn contains_looks_at_elements_and_map_values_contains_key_at_keys() {
        let text = |s: &str| CqlValue::Text(s.into());
        let set = ColumnType::Set(Box::new(ColumnType::Varchar));
        let map = ColumnType::Map(Box::new(ColumnType::Varchar), Box::new(ColumnType::Int));
        let tags = CqlValue::Set(vec![text("big"), text("red")]);
        let attrs = CqlValue::Map(vec![(text("a"), CqlValue::Int(1))]);
        let red = encoded(&ColumnType::Varchar, &text("red"));
        let a = encoded(&ColumnType::Varchar, &text("a"));
        let one = encoded(&ColumnType::Int, &CqlValue::Int(1));
        assert!(collection_contains(&set, Operator::Contains, &tags, &red));
        assert!(!collection_contains(&set, Operator::Contains, &tags, &a));
        assert!(collection_contains(&map, Operator::ContainsKey, &attrs, &a));
        assert!(collection_contains(&map, Operator::Contains, &attrs, &one));
        let two = encoded(&ColumnType::Int, &CqlValue::Int(2));
        assert!(!collection_contains(&map, Operator::Contains, &attrs, &two));
        // CONTAINS KEY needs a map; CONTAINS needs a collection.
        assert_eq!(searched_type(&set, Operator::ContainsKey), None);
        assert_eq!(searched_type(&ColumnType::Int, Operator::Contains), None);
    }
}

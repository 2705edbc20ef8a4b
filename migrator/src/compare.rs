//! Validation, the pure part: the order in which a token-range scan returns rows (so two
//! scans can be merged), and what differs between origin's and target's copy of a row.
//!
//! The rules, per cell (a single-cell column, a set element, a map entry, a user type field,
//! a list element):
//! - Target's cell **newer** than origin's (higher writetime) is a later write (a dual write)
//!   and not a difference.
//! - Otherwise other values are a [`DiffKind::Value`] difference; the same value with an
//!   older writetime a [`DiffKind::Writetime`] one; the same value and writetime with
//!   remaining TTLs further apart than the tolerance (they are read at different instants),
//!   or a TTL on one side only, a [`DiffKind::Ttl`] one.
//! - An origin cell target lacks is a value difference, unless it expires within the
//!   tolerance. A target cell origin lacks is one too, unless it is newer than every origin
//!   cell of its column.
//! - Lists have no element identity CQL can read (the timeuuid keys differ per cluster): an
//!   element matches a target element with the same value and writetime not matched yet, so
//!   a duplicated element on target is a difference. Matching is quadratic in the list's
//!   length; lists are meant to be short.
//! - A row on origin only is [`DiffKind::Missing`] (unless every cell it has expires within
//!   the tolerance: target may have let it expire already), on target only
//!   [`DiffKind::Extra`].

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use scylla::value::CqlValue;

use crate::cells::ScannedColumn;
use crate::schema::{ColumnDef, Shape};

/// A kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DiffKind {
    /// The row (or static-only partition) is on origin, not on target.
    Missing,
    /// The row is on target, not on origin.
    Extra,
    /// Cells with other values, or cells one side lacks.
    Value,
    /// The same value with an older writetime on target.
    Writetime,
    /// The same value and writetime, remaining TTLs further apart than the tolerance.
    Ttl,
}

impl DiffKind {
    pub const ALL: [DiffKind; 5] = [
        Self::Missing,
        Self::Extra,
        Self::Value,
        Self::Writetime,
        Self::Ttl,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Extra => "extra",
            Self::Value => "value",
            Self::Writetime => "writetime",
            Self::Ttl => "ttl",
        }
    }
}

impl fmt::Display for DiffKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The differences of one row: per kind, the indexes (into the compared columns) of the
/// columns involved. Missing and extra rows list the columns the existing side has.
pub type Findings = BTreeMap<DiffKind, Vec<usize>>;

/// Compares one row's cells. `origin` / `target` hold a side's cells per column of
/// `columns` (`None` for a side without the row); only the columns at the positions `which`
/// are compared (a row's regular columns, or a partition's static ones). `ttl_tolerance` in
/// seconds.
pub fn compare_row(
    columns: &[&ColumnDef],
    which: &[usize],
    origin: Option<&[Option<ScannedColumn>]>,
    target: Option<&[Option<ScannedColumn>]>,
    ttl_tolerance: i32,
) -> Findings {
    fn cell(cells: &[Option<ScannedColumn>], i: usize) -> Option<&ScannedColumn> {
        cells.get(i).and_then(Option::as_ref)
    }
    let present = |cells: &[Option<ScannedColumn>]| -> Vec<usize> {
        which
            .iter()
            .copied()
            .filter(|&i| cell(cells, i).is_some())
            .collect()
    };
    let mut out = Findings::new();
    match (origin, target) {
        (None, None) => {}
        (Some(o), None) => {
            let live: Vec<&ScannedColumn> = which.iter().filter_map(|&i| cell(o, i)).collect();
            let expiring = !live.is_empty()
                && live.iter().all(|c| {
                    !c.ttls.is_empty() && c.ttls.iter().all(|&t| t > 0 && t <= ttl_tolerance)
                });
            if !expiring {
                out.insert(DiffKind::Missing, present(o));
            }
        }
        (None, Some(t)) => {
            out.insert(DiffKind::Extra, present(t));
        }
        (Some(o), Some(t)) => {
            for &i in which {
                let Some(col) = columns.get(i) else { continue };
                for kind in compare_column(&col.shape, cell(o, i), cell(t, i), ttl_tolerance) {
                    out.entry(kind).or_default().push(i);
                }
            }
        }
    }
    out
}

/// One cell as compared: what identifies it within its column, its value, writetime, TTL.
struct Cell<'a> {
    id: Option<&'a CqlValue>,
    field: Option<&'a str>,
    value: Option<&'a CqlValue>,
    writetime: i64,
    ttl: i32,
}

/// The cells of a column, in the order the server returns them.
fn cells_of<'a>(shape: &Shape, c: &'a ScannedColumn) -> Vec<Cell<'a>> {
    let at = |i: usize| {
        (
            c.writetimes.get(i).copied().unwrap_or(i64::MIN),
            c.ttls.get(i).copied().unwrap_or(0),
        )
    };
    match (shape, &c.value) {
        (Shape::Set, CqlValue::Set(es) | CqlValue::List(es)) => es
            .iter()
            .enumerate()
            .map(|(i, e)| Cell {
                id: Some(e),
                field: None,
                value: None,
                writetime: at(i).0,
                ttl: at(i).1,
            })
            .collect(),
        (Shape::List, CqlValue::List(es)) => es
            .iter()
            .enumerate()
            .map(|(i, e)| Cell {
                id: None,
                field: None,
                value: Some(e),
                writetime: at(i).0,
                ttl: at(i).1,
            })
            .collect(),
        (Shape::Map, CqlValue::Map(es)) => es
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Cell {
                id: Some(k),
                field: None,
                value: Some(v),
                writetime: at(i).0,
                ttl: at(i).1,
            })
            .collect(),
        (Shape::Udt(_), CqlValue::UserDefinedType { fields, .. }) => fields
            .iter()
            .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)))
            .enumerate()
            .map(|(i, (n, v))| Cell {
                id: None,
                field: Some(n),
                value: Some(v),
                writetime: at(i).0,
                ttl: at(i).1,
            })
            .collect(),
        (_, v) => vec![Cell {
            id: None,
            field: None,
            value: Some(v),
            writetime: at(0).0,
            ttl: at(0).1,
        }],
    }
}

/// The kinds of difference between origin's and target's cells of one column.
pub fn compare_column(
    shape: &Shape,
    origin: Option<&ScannedColumn>,
    target: Option<&ScannedColumn>,
    ttl_tolerance: i32,
) -> Vec<DiffKind> {
    let o = origin.map(|c| cells_of(shape, c)).unwrap_or_default();
    let t = target.map(|c| cells_of(shape, c)).unwrap_or_default();
    let newest_origin = o.iter().map(|c| c.writetime).max();
    let mut kinds = Vec::new();
    let mut add = |k: DiffKind| {
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    };
    let expiring = |c: &Cell<'_>| c.ttl > 0 && c.ttl <= ttl_tolerance;
    let mut used = vec![false; t.len()];
    for oc in &o {
        // The target cell with the same identity: same element / key / field; for lists the
        // first unused element with the same value and writetime.
        let found = t.iter().enumerate().position(|(i, tc)| {
            !used[i]
                && match (oc.id, oc.field) {
                    (Some(a), _) => tc
                        .id
                        .is_some_and(|b| compare_values(a, b) == Ordering::Equal),
                    (None, Some(f)) => tc.field == Some(f),
                    (None, None) if *shape == Shape::List => {
                        tc.writetime == oc.writetime && tc.value == oc.value
                    }
                    (None, None) => true,
                }
        });
        let Some(i) = found else {
            if !expiring(oc) {
                add(DiffKind::Value);
            }
            continue;
        };
        used[i] = true;
        let tc = &t[i];
        if tc.writetime > oc.writetime {
            continue;
        }
        if tc.value != oc.value {
            add(DiffKind::Value);
        } else if tc.writetime < oc.writetime {
            add(DiffKind::Writetime);
        } else if (oc.ttl == 0) != (tc.ttl == 0) || oc.ttl.abs_diff(tc.ttl) > ttl_tolerance as u32 {
            add(DiffKind::Ttl);
        }
    }
    for (i, tc) in t.iter().enumerate() {
        if !used[i] && newest_origin.is_none_or(|n| tc.writetime <= n) {
            add(DiffKind::Value);
        }
    }
    kinds.sort();
    kinds
}

/// The newest writetime among a column's cells.
pub fn newest_writetime(c: &ScannedColumn) -> Option<i64> {
    c.writetimes.iter().copied().max()
}

/// Cassandra's order of values of one type (`AbstractType.compare`), on decoded values: the
/// order of clustering columns in a scan, of set elements and map keys. Numbers by value,
/// text and blobs bytewise, `uuid` by version then time (v1) then bits, `timeuuid` by time
/// then its low bytes signed, frozen collections / tuples / user types element by element.
/// Values of different variants (which one column never mixes) order by variant.
pub fn compare_values(a: &CqlValue, b: &CqlValue) -> Ordering {
    use CqlValue as V;
    match (a, b) {
        (V::Empty, V::Empty) => Ordering::Equal,
        (V::Empty, _) => Ordering::Less,
        (_, V::Empty) => Ordering::Greater,
        (V::Int(x), V::Int(y)) => x.cmp(y),
        (V::BigInt(x), V::BigInt(y)) => x.cmp(y),
        (V::SmallInt(x), V::SmallInt(y)) => x.cmp(y),
        (V::TinyInt(x), V::TinyInt(y)) => x.cmp(y),
        (V::Counter(x), V::Counter(y)) => x.0.cmp(&y.0),
        (V::Timestamp(x), V::Timestamp(y)) => x.0.cmp(&y.0),
        (V::Time(x), V::Time(y)) => x.0.cmp(&y.0),
        (V::Date(x), V::Date(y)) => x.0.cmp(&y.0),
        (V::Boolean(x), V::Boolean(y)) => x.cmp(y),
        (V::Float(x), V::Float(y)) => java_float(f64::from(*x), f64::from(*y)),
        (V::Double(x), V::Double(y)) => java_float(*x, *y),
        (V::Ascii(x) | V::Text(x), V::Ascii(y) | V::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (V::Blob(x), V::Blob(y)) => x.cmp(y),
        (V::Inet(x), V::Inet(y)) => inet_bytes(x).cmp(&inet_bytes(y)),
        (V::Uuid(x), V::Uuid(y)) => uuid(x.as_bytes(), y.as_bytes()),
        (V::Timeuuid(x), V::Timeuuid(y)) => timeuuid(x.as_bytes(), y.as_bytes()),
        (V::Varint(x), V::Varint(y)) => {
            varint(x.as_signed_bytes_be_slice(), y.as_signed_bytes_be_slice())
        }
        (V::Decimal(x), V::Decimal(y)) => {
            let (xb, xs) = x.as_signed_be_bytes_slice_and_exponent();
            let (yb, ys) = y.as_signed_be_bytes_slice_and_exponent();
            decimal(xb, xs, yb, ys)
        }
        (V::List(x) | V::Set(x) | V::Vector(x), V::List(y) | V::Set(y) | V::Vector(y)) => x
            .iter()
            .zip(y)
            .map(|(a, b)| compare_values(a, b))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        (V::Map(x), V::Map(y)) => x
            .iter()
            .zip(y)
            .map(|((ak, av), (bk, bv))| compare_values(ak, bk).then_with(|| compare_values(av, bv)))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        (V::Tuple(x), V::Tuple(y)) => {
            optional_elements(x.iter().map(Option::as_ref), y.iter().map(Option::as_ref))
        }
        (V::UserDefinedType { fields: x, .. }, V::UserDefinedType { fields: y, .. }) => {
            optional_elements(
                x.iter().map(|(_, v)| v.as_ref()),
                y.iter().map(|(_, v)| v.as_ref()),
            )
        }
        _ => variant(a).cmp(&variant(b)),
    }
}

/// Null first, then by value, then the shorter first.
fn optional_elements<'a>(
    mut x: impl Iterator<Item = Option<&'a CqlValue>>,
    mut y: impl Iterator<Item = Option<&'a CqlValue>>,
) -> Ordering {
    loop {
        let o = match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(a), Some(b)) => match (a, b) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(a), Some(b)) => compare_values(a, b),
            },
        };
        if o.is_ne() {
            return o;
        }
    }
}

/// Java's `Double.compare`: NaN above everything, -0.0 below 0.0.
fn java_float(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => x.total_cmp(&y),
    }
}

fn inet_bytes(ip: &std::net::IpAddr) -> Vec<u8> {
    match ip {
        std::net::IpAddr::V4(v) => v.octets().to_vec(),
        std::net::IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn long_at(x: &[u8; 16], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&x[at..at + 8]);
    u64::from_be_bytes(b)
}

/// A v1 UUID's 60-bit timestamp from its `time_low-time_mid-time_hi` layout.
fn v1_time(msb: u64) -> i64 {
    ((msb << 48) | ((msb << 16) & 0xFFFF_0000_0000) | (msb >> 32)) as i64
}

fn uuid(a: &[u8; 16], b: &[u8; 16]) -> Ordering {
    let (ma, mb) = (long_at(a, 0), long_at(b, 0));
    let (va, vb) = ((ma >> 12) & 0xf, (mb >> 12) & 0xf);
    va.cmp(&vb)
        .then_with(|| {
            if va == 1 {
                v1_time(ma).cmp(&v1_time(mb))
            } else {
                ma.cmp(&mb)
            }
        })
        .then_with(|| long_at(a, 8).cmp(&long_at(b, 8)))
}

fn timeuuid(a: &[u8; 16], b: &[u8; 16]) -> Ordering {
    v1_time(long_at(a, 0))
        .cmp(&v1_time(long_at(b, 0)))
        .then_with(|| {
            a[8..]
                .iter()
                .map(|&x| x as i8)
                .cmp(b[8..].iter().map(|&x| x as i8))
        })
}

/// Two's-complement big-endian integers of any length.
fn varint(a: &[u8], b: &[u8]) -> Ordering {
    fn minimal(mut x: &[u8]) -> &[u8] {
        while x.len() > 1 && ((x[0] == 0 && x[1] < 0x80) || (x[0] == 0xff && x[1] >= 0x80)) {
            x = &x[1..];
        }
        x
    }
    let (a, b) = (minimal(a), minimal(b));
    let neg = |x: &[u8]| x.first().is_some_and(|&b| b >= 0x80);
    let (na, nb) = (neg(a), neg(b));
    if na != nb {
        return nb.cmp(&na);
    }
    let by_len = a.len().cmp(&b.len());
    let by_len = if na { by_len.reverse() } else { by_len };
    by_len.then_with(|| a.cmp(b))
}

/// `unscaled × 10^-scale`, compared exactly when both fit in 128 bits after rescaling
/// (decimals in keys are short); otherwise as doubles.
fn decimal(ab: &[u8], ascale: i32, bb: &[u8], bscale: i32) -> Ordering {
    fn to_i128(x: &[u8]) -> Option<i128> {
        if x.is_empty() || x.len() > 16 {
            return None;
        }
        let fill = if x[0] >= 0x80 { 0xff } else { 0 };
        let mut buf = [fill; 16];
        buf[16 - x.len()..].copy_from_slice(x);
        Some(i128::from_be_bytes(buf))
    }
    let (Some(a), Some(b)) = (to_i128(ab), to_i128(bb)) else {
        return varint(ab, bb);
    };
    // Bring both to the larger scale.
    let rescale = |v: i128, by: i32| -> Option<i128> {
        10i128.checked_pow(u32::try_from(by).ok()?)?.checked_mul(v)
    };
    let exact = if ascale >= bscale {
        rescale(b, ascale - bscale).map(|b| a.cmp(&b))
    } else {
        rescale(a, bscale - ascale).map(|a| a.cmp(&b))
    };
    exact.unwrap_or_else(|| {
        let f = |v: i128, s: i32| v as f64 / 10f64.powi(s);
        java_float(f(a, ascale), f(b, bscale))
    })
}

fn variant(v: &CqlValue) -> u8 {
    use CqlValue as V;
    match v {
        V::Empty => 0,
        V::Ascii(_) | V::Text(_) => 1,
        V::Boolean(_) => 2,
        V::Blob(_) => 3,
        V::Counter(_) => 4,
        V::Decimal(_) => 5,
        V::Date(_) => 6,
        V::Double(_) => 7,
        V::Duration(_) => 8,
        V::Float(_) => 9,
        V::Int(_) => 10,
        V::BigInt(_) => 11,
        V::Timestamp(_) => 12,
        V::Inet(_) => 13,
        V::List(_) | V::Set(_) | V::Vector(_) => 14,
        V::Map(_) => 15,
        V::UserDefinedType { .. } => 16,
        V::SmallInt(_) => 17,
        V::TinyInt(_) => 18,
        V::Time(_) => 19,
        V::Timeuuid(_) => 20,
        V::Tuple(_) => 21,
        V::Uuid(_) => 22,
        V::Varint(_) => 23,
        _ => 24,
    }
}

/// Where a scan row sits in a scan: token, partition key, then (static-only rows first)
/// clustering, each clustering column ascending or descending as `descending` says.
pub(crate) fn compare_keys(
    descending: &[bool],
    a: (i64, &[CqlValue], Option<&[CqlValue]>),
    b: (i64, &[CqlValue], Option<&[CqlValue]>),
) -> Ordering {
    a.0.cmp(&b.0)
        .then_with(|| elementwise(a.1, b.1, &[]))
        .then_with(|| match (a.2, b.2) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => elementwise(x, y, descending),
        })
}

fn elementwise(a: &[CqlValue], b: &[CqlValue], descending: &[bool]) -> Ordering {
    a.iter()
        .zip(b)
        .enumerate()
        .map(|(i, (x, y))| {
            let o = compare_values(x, y);
            if descending.get(i).copied().unwrap_or(false) {
                o.reverse()
            } else {
                o
            }
        })
        .find(|o| o.is_ne())
        .unwrap_or_else(|| a.len().cmp(&b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ColumnKind;

    fn col(shape: Shape) -> ColumnDef {
        ColumnDef {
            name: "c".into(),
            kind: ColumnKind::Regular,
            ty: String::new(),
            shape,
        }
    }

    fn cell(value: CqlValue, wts: &[i64], ttls: &[i32]) -> ScannedColumn {
        ScannedColumn {
            value,
            writetimes: wts.to_vec(),
            ttls: ttls.to_vec(),
        }
    }

    fn kinds(shape: Shape, o: Option<ScannedColumn>, t: Option<ScannedColumn>) -> Vec<DiffKind> {
        compare_column(&shape, o.as_ref(), t.as_ref(), 5)
    }

    #[test]
    fn single_cells() {
        let c = |v: i32, wt: i64, ttl: i32| Some(cell(CqlValue::Int(v), &[wt], &[ttl]));
        assert!(kinds(Shape::Simple, c(1, 10, 0), c(1, 10, 0)).is_empty());
        // Newer on target: a dual write.
        assert!(kinds(Shape::Simple, c(1, 10, 0), c(2, 11, 0)).is_empty());
        assert_eq!(
            kinds(Shape::Simple, c(1, 10, 0), c(2, 9, 0)),
            [DiffKind::Value]
        );
        assert_eq!(
            kinds(Shape::Simple, c(1, 10, 0), c(2, 10, 0)),
            [DiffKind::Value]
        );
        assert_eq!(
            kinds(Shape::Simple, c(1, 10, 0), c(1, 9, 0)),
            [DiffKind::Writetime]
        );
        assert_eq!(
            kinds(Shape::Simple, c(1, 10, 100), c(1, 10, 0)),
            [DiffKind::Ttl]
        );
        assert_eq!(
            kinds(Shape::Simple, c(1, 10, 100), c(1, 10, 90)),
            [DiffKind::Ttl]
        );
        assert!(kinds(Shape::Simple, c(1, 10, 100), c(1, 10, 96)).is_empty());
        assert_eq!(kinds(Shape::Simple, c(1, 10, 0), None), [DiffKind::Value]);
        // About to expire: target may have dropped it already.
        assert!(kinds(Shape::Simple, c(1, 10, 3), None).is_empty());
        assert_eq!(kinds(Shape::Simple, None, c(1, 10, 0)), [DiffKind::Value]);
    }

    #[test]
    fn sets_and_maps_per_element() {
        let set = |es: &[i32], wts: &[i64]| {
            Some(cell(
                CqlValue::Set(es.iter().map(|&e| CqlValue::Int(e)).collect()),
                wts,
                &vec![0; wts.len()],
            ))
        };
        assert!(kinds(Shape::Set, set(&[1, 2], &[5, 6]), set(&[1, 2], &[5, 6])).is_empty());
        assert_eq!(
            kinds(Shape::Set, set(&[1, 2], &[5, 6]), set(&[1], &[5])),
            [DiffKind::Value]
        );
        assert_eq!(
            kinds(Shape::Set, set(&[1, 2], &[5, 6]), set(&[1, 2], &[5, 4])),
            [DiffKind::Writetime]
        );
        // An extra element newer than all of origin's column: a dual write.
        assert!(kinds(Shape::Set, set(&[1], &[5]), set(&[1, 2], &[5, 9])).is_empty());
        assert_eq!(
            kinds(Shape::Set, set(&[1], &[5]), set(&[1, 2], &[5, 4])),
            [DiffKind::Value]
        );
        let map = |es: &[(i32, &str)], wt: i64| {
            Some(cell(
                CqlValue::Map(
                    es.iter()
                        .map(|(k, v)| (CqlValue::Int(*k), CqlValue::Text((*v).into())))
                        .collect(),
                ),
                &vec![wt; es.len()],
                &vec![0; es.len()],
            ))
        };
        assert_eq!(
            kinds(Shape::Map, map(&[(1, "a")], 5), map(&[(1, "b")], 4)),
            [DiffKind::Value]
        );
    }

    #[test]
    fn list_duplicates_are_a_difference() {
        let list = |es: &[i32], wts: &[i64]| {
            Some(cell(
                CqlValue::List(es.iter().map(|&e| CqlValue::Int(e)).collect()),
                wts,
                &vec![0; wts.len()],
            ))
        };
        assert!(kinds(Shape::List, list(&[1, 1], &[5, 5]), list(&[1, 1], &[5, 5])).is_empty());
        assert_eq!(
            kinds(Shape::List, list(&[1], &[5]), list(&[1, 1], &[5, 5])),
            [DiffKind::Value]
        );
        assert_eq!(
            kinds(Shape::List, list(&[1, 1], &[5, 5]), list(&[1], &[5])),
            [DiffKind::Value]
        );
        assert!(kinds(Shape::List, list(&[1], &[5]), list(&[1, 7], &[5, 6])).is_empty());
    }

    #[test]
    fn rows_missing_extra_and_expiring() {
        let c = col(Shape::Simple);
        let cols = [&c];
        let live = [Some(cell(CqlValue::Int(1), &[1], &[0]))];
        let expiring = [Some(cell(CqlValue::Int(1), &[1], &[2]))];
        let f = compare_row(&cols, &[0], Some(&live), None, 5);
        assert_eq!(f.get(&DiffKind::Missing), Some(&vec![0]));
        assert!(compare_row(&cols, &[0], Some(&expiring), None, 5).is_empty());
        let f = compare_row(&cols, &[0], None, Some(&live), 5);
        assert_eq!(f.get(&DiffKind::Extra), Some(&vec![0]));
        // Columns outside `which` are not looked at.
        assert!(compare_row(&cols, &[], Some(&live), Some(&[None]), 5).is_empty());
        // A primary-key-only row is missing too.
        let f = compare_row(&cols, &[0], Some(&[None]), None, 5);
        assert_eq!(f.get(&DiffKind::Missing), Some(&vec![]));
    }

    #[test]
    fn value_order() {
        use CqlValue as V;
        assert_eq!(compare_values(&V::Int(-1), &V::Int(2)), Ordering::Less);
        assert_eq!(
            compare_values(&V::Text("b".into()), &V::Text("ab".into())),
            Ordering::Greater
        );
        assert_eq!(
            compare_values(
                &V::Varint(scylla::value::CqlVarint::from_signed_bytes_be(vec![0xff])),
                &V::Varint(scylla::value::CqlVarint::from_signed_bytes_be(vec![
                    0x01, 0x00
                ]))
            ),
            Ordering::Less
        );
        let dec = |b: Vec<u8>, s: i32| {
            V::Decimal(scylla::value::CqlDecimal::from_signed_be_bytes_and_exponent(b, s))
        };
        // 1.0 == 1.00, 0.5 < 1
        assert_eq!(
            compare_values(&dec(vec![10], 1), &dec(vec![100], 2)),
            Ordering::Equal
        );
        assert_eq!(
            compare_values(&dec(vec![5], 1), &dec(vec![1], 0)),
            Ordering::Less
        );
        assert_eq!(
            compare_values(&V::Double(f64::NAN), &V::Double(1.0)),
            Ordering::Greater
        );
        let key = |t: i64, c: i32| (t, vec![V::Int(0)], Some(vec![V::Int(c)]));
        let (a, b) = (key(1, 1), key(1, 2));
        let cmp =
            |d: &[bool]| compare_keys(d, (a.0, &a.1, a.2.as_deref()), (b.0, &b.1, b.2.as_deref()));
        assert_eq!(cmp(&[false]), Ordering::Less);
        assert_eq!(cmp(&[true]), Ordering::Greater);
        // A static-only row comes before the partition's rows.
        assert_eq!(
            compare_keys(&[], (1, &a.1, None), (1, &a.1, a.2.as_deref())),
            Ordering::Less
        );
    }
}

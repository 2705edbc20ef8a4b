//! Cassandra's per-type ordering of serialized values (`AbstractType.compare`): clustering
//! order, set elements and map keys, and LWT `<`/`>` conditions all use it.
//!
//! Values compare as their serialized bytes, never decoded into `CqlValue`s: ints
//! numerically, text and blobs bytewise, `timeuuid` by time then signed bytes, `uuid` by
//! version first, decimals by value (`1.0 == 1.00`, as `BigDecimal.compareTo`), frozen
//! collections, tuples and UDTs element by element. An empty value sorts before any other.

use std::cmp::Ordering;

use ferry_cql::types::ColumnType;
use ferry_cql::types::CqlVarint;

/// Compares two serialized values of `ty`.
pub fn compare(ty: &ColumnType, a: &[u8], b: &[u8]) -> Ordering {
    if a.is_empty() || b.is_empty() {
        return (!a.is_empty()).cmp(&!b.is_empty());
    }
    match ty {
        ColumnType::Int
        | ColumnType::Bigint
        | ColumnType::Smallint
        | ColumnType::Tinyint
        | ColumnType::Counter
        | ColumnType::Timestamp
        | ColumnType::Time => signed_be(a, b),
        ColumnType::Float | ColumnType::Double => float(a, b),
        ColumnType::Varint => varint(a, b),
        ColumnType::Decimal => decimal(a, b),
        ColumnType::Uuid => uuid(a, b),
        ColumnType::Timeuuid => timeuuid(a, b),
        ColumnType::List(e) | ColumnType::Set(e) => elements(a, b, |x, y| compare(e, x, y)),
        ColumnType::Map(k, v) => map_entries(k, v, a, b),
        ColumnType::Tuple(ts) => fields(ts.iter(), a, b),
        ColumnType::Udt { fields: fs, .. } => fields(fs.iter().map(|(_, t)| t), a, b),
        ColumnType::Vector { element, dimension } => vector(element, *dimension, a, b),
        // Text, ascii, blob, boolean, date (unsigned days), inet, duration, custom.
        _ => a.cmp(b),
    }
}

fn signed_be(a: &[u8], b: &[u8]) -> Ordering {
    if a.len() != b.len() {
        return a.len().cmp(&b.len()).then_with(|| a.cmp(b));
    }
    (a[0] as i8)
        .cmp(&(b[0] as i8))
        .then_with(|| a[1..].cmp(&b[1..]))
}

fn float(a: &[u8], b: &[u8]) -> Ordering {
    fn value(x: &[u8]) -> Option<f64> {
        match x.len() {
            4 => Some(f32::from_be_bytes([x[0], x[1], x[2], x[3]]).into()),
            8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(x);
                Some(f64::from_be_bytes(b))
            }
            _ => None,
        }
    }
    match (value(a), value(b)) {
        // Java's Float.compare: every NaN equal, above everything; -0.0 below 0.0.
        (Some(x), Some(y)) => match (x.is_nan(), y.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => x.total_cmp(&y),
        },
        _ => a.cmp(b),
    }
}

/// Two's-complement big-endian integers of any length.
fn varint(a: &[u8], b: &[u8]) -> Ordering {
    let a = minimal(a);
    let b = minimal(b);
    let (na, nb) = (a[0] >= 0x80, b[0] >= 0x80);
    if na != nb {
        return nb.cmp(&na);
    }
    let by_len = a.len().cmp(&b.len());
    let by_len = if na { by_len.reverse() } else { by_len };
    by_len.then_with(|| a.cmp(b))
}

/// Strips redundant sign bytes (never empties a non-empty value).
fn minimal(mut x: &[u8]) -> &[u8] {
    while x.len() > 1 && ((x[0] == 0 && x[1] < 0x80) || (x[0] == 0xff && x[1] >= 0x80)) {
        x = &x[1..];
    }
    x
}

fn decimal(a: &[u8], b: &[u8]) -> Ordering {
    fn parts(x: &[u8]) -> Option<(i64, CqlVarint)> {
        let (scale, unscaled) = x.split_first_chunk::<4>()?;
        if unscaled.is_empty() {
            return None;
        }
        Some((
            i32::from_be_bytes(*scale).into(),
            CqlVarint::from_signed_bytes_be(unscaled),
        ))
    }
    let (Some((sa, ua)), Some((sb, ub))) = (parts(a), parts(b)) else {
        return a.cmp(b);
    };
    let sign = |u: &CqlVarint| {
        if u.is_negative() {
            -1
        } else if u.as_signed_bytes_be().iter().all(|&x| x == 0) {
            0
        } else {
            1
        }
    };
    let (ga, gb) = (sign(&ua), sign(&ub));
    if ga != gb || ga == 0 {
        return ga.cmp(&gb);
    }
    // Magnitudes as digit strings with trailing zeros folded into the exponent: the value is
    // 0.d1d2… × 10^(len - scale); compare the leading position, then the digits.
    let norm = |u: &CqlVarint, scale: i64| {
        let s = u.to_string();
        let digits = s.trim_start_matches('-');
        let trimmed = digits.trim_end_matches('0');
        let exp = digits.len() as i64 - scale;
        (exp, trimmed.to_owned())
    };
    let (ea, da) = norm(&ua, sa);
    let (eb, db) = norm(&ub, sb);
    let mag = ea.cmp(&eb).then_with(|| da.cmp(&db));
    if ga < 0 { mag.reverse() } else { mag }
}

fn long_at(x: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&x[at..at + 8]);
    u64::from_be_bytes(b)
}

/// A v1 UUID's 60-bit timestamp, from its `time_low-time_mid-time_hi` layout.
fn reorder_timestamp(msb: u64) -> u64 {
    (msb << 48) | ((msb << 16) & 0xFFFF_0000_0000) | (msb >> 32)
}

/// `UUIDType`: version, then time for v1 (bytes otherwise), then the low bits unsigned.
fn uuid(a: &[u8], b: &[u8]) -> Ordering {
    if a.len() != 16 || b.len() != 16 {
        return a.cmp(b);
    }
    let (ma, mb) = (long_at(a, 0), long_at(b, 0));
    let (va, vb) = ((ma >> 12) & 0xf, (mb >> 12) & 0xf);
    va.cmp(&vb)
        .then_with(|| {
            if va == 1 {
                (reorder_timestamp(ma) as i64).cmp(&(reorder_timestamp(mb) as i64))
            } else {
                ma.cmp(&mb)
            }
        })
        .then_with(|| long_at(a, 8).cmp(&long_at(b, 8)))
}

/// `TimeUUIDType`: the timestamp, then the low 8 bytes as *signed* bytes (kept "for
/// compatibility" in Cassandra's comparator).
fn timeuuid(a: &[u8], b: &[u8]) -> Ordering {
    if a.len() != 16 || b.len() != 16 {
        return a.cmp(b);
    }
    (reorder_timestamp(long_at(a, 0)) as i64)
        .cmp(&(reorder_timestamp(long_at(b, 0)) as i64))
        .then_with(|| {
            a[8..]
                .iter()
                .map(|&x| x as i8)
                .cmp(b[8..].iter().map(|&x| x as i8))
        })
}

/// Reads an `[int]`-length element; `None` on malformed input.
fn take<'a>(x: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = x.split_first_chunk::<4>()?;
    let len = usize::try_from(i32::from_be_bytes(*len)).ok()?;
    if rest.len() < len {
        return None;
    }
    let (e, rest) = rest.split_at(len);
    *x = rest;
    Some(e)
}

/// Lists and sets: element by element, then the shorter first.
fn elements(a: &[u8], b: &[u8], cmp: impl Fn(&[u8], &[u8]) -> Ordering) -> Ordering {
    let (Some((na, mut ra)), Some((nb, mut rb))) = (count(a), count(b)) else {
        return a.cmp(b);
    };
    for _ in 0..na.min(nb) {
        let (Some(x), Some(y)) = (take(&mut ra), take(&mut rb)) else {
            return a.cmp(b);
        };
        let c = cmp(x, y);
        if c != Ordering::Equal {
            return c;
        }
    }
    na.cmp(&nb)
}

fn count(x: &[u8]) -> Option<(usize, &[u8])> {
    let (n, rest) = x.split_first_chunk::<4>()?;
    Some((usize::try_from(i32::from_be_bytes(*n)).ok()?, rest))
}

/// Maps: key then value per entry, then the smaller map first.
fn map_entries(k: &ColumnType, v: &ColumnType, a: &[u8], b: &[u8]) -> Ordering {
    let (Some((na, mut ra)), Some((nb, mut rb))) = (count(a), count(b)) else {
        return a.cmp(b);
    };
    for _ in 0..na.min(nb) {
        let (Some(ka), Some(va), Some(kb), Some(vb)) =
            (take(&mut ra), take(&mut ra), take(&mut rb), take(&mut rb))
        else {
            return a.cmp(b);
        };
        let c = compare(k, ka, kb).then_with(|| compare(v, va, vb));
        if c != Ordering::Equal {
            return c;
        }
    }
    na.cmp(&nb)
}

/// Tuples and UDTs: field by field; a null field sorts first; a missing one counts as null.
fn fields<'t>(mut types: impl Iterator<Item = &'t ColumnType>, a: &[u8], b: &[u8]) -> Ordering {
    fn field<'a>(x: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
        if x.is_empty() {
            return Some(None);
        }
        let (len, rest) = x.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*len);
        if len < 0 {
            *x = rest;
            return Some(None);
        }
        let len = len as usize;
        if rest.len() < len {
            return None;
        }
        let (e, rest) = rest.split_at(len);
        *x = rest;
        Some(Some(e))
    }
    let (mut ra, mut rb) = (a, b);
    while !ra.is_empty() || !rb.is_empty() {
        let Some(t) = types.next() else {
            break;
        };
        let (Some(x), Some(y)) = (field(&mut ra), field(&mut rb)) else {
            return a.cmp(b);
        };
        let c = match (x, y) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => compare(t, x, y),
        };
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

fn vector(element: &ColumnType, dimension: u32, a: &[u8], b: &[u8]) -> Ordering {
    if let Some(size) = element.fixed_value_len() {
        if size == 0 || a.len() != b.len() {
            return a.cmp(b);
        }
        for (x, y) in a.chunks(size).zip(b.chunks(size)) {
            let c = compare(element, x, y);
            if c != Ordering::Equal {
                return c;
            }
        }
        return Ordering::Equal;
    }
    // Variable-size elements carry `[unsigned vint]` lengths.
    match (split_vector(dimension, a), split_vector(dimension, b)) {
        (Some(xa), Some(xb)) => {
            for (x, y) in xa.iter().zip(xb.iter()) {
                let c = compare(element, x, y);
                if c != Ordering::Equal {
                    return c;
                }
            }
            Ordering::Equal
        }
        _ => a.cmp(b),
    }
}

fn split_vector(dimension: u32, mut x: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    for _ in 0..dimension {
        // Cassandra's unsigned vint: the count of leading 1 bits of the first byte is the
        // number of extra bytes.
        let first = *x.first()?;
        let extra = first.leading_ones() as usize;
        if x.len() < 1 + extra {
            return None;
        }
        let mut len = u64::from(first) & (0xff >> extra.min(8));
        for &b in &x[1..=extra] {
            len = (len << 8) | u64::from(b);
        }
        x = &x[1 + extra..];
        let len = usize::try_from(len).ok()?;
        if x.len() < len {
            return None;
        }
        out.push(&x[..len]);
        x = &x[len..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_cql::types::{CqlDecimal, CqlValue, encode_value};
    use proptest::prelude::*;

    fn enc(ty: &ColumnType, v: &CqlValue) -> Vec<u8> {
        let mut b = Vec::new();
        encode_value(ty, v, &mut b).unwrap();
        b
    }

    fn cmp(ty: &ColumnType, a: &CqlValue, b: &CqlValue) -> Ordering {
        compare(ty, &enc(ty, a), &enc(ty, b))
    }

    #[test]
    fn numbers_compare_numerically() {
        use CqlValue as V;
        assert_eq!(
            cmp(&ColumnType::Int, &V::Int(-1), &V::Int(1)),
            Ordering::Less
        );
        assert_eq!(
            cmp(&ColumnType::Bigint, &V::Bigint(i64::MIN), &V::Bigint(0)),
            Ordering::Less
        );
        assert_eq!(
            cmp(&ColumnType::Double, &V::Double(-0.0), &V::Double(0.0)),
            Ordering::Less
        );
        assert_eq!(
            cmp(
                &ColumnType::Double,
                &V::Double(f64::NAN),
                &V::Double(f64::INFINITY)
            ),
            Ordering::Greater
        );
        assert_eq!(
            cmp(&ColumnType::Float, &V::Float(-2.0), &V::Float(1.5)),
            Ordering::Less
        );
        let vi = |n: i64| V::Varint(n.into());
        for (a, b) in [(-300, -2), (-1, 0), (5, 300), (127, 128), (-129, -128)] {
            assert_eq!(
                cmp(&ColumnType::Varint, &vi(a), &vi(b)),
                Ordering::Less,
                "{a} {b}"
            );
        }
        let d = |u: i64, s: i32| {
            V::Decimal(CqlDecimal {
                scale: s,
                unscaled: u.into(),
            })
        };
        assert_eq!(
            cmp(&ColumnType::Decimal, &d(10, 1), &d(100, 2)),
            Ordering::Equal
        );
        assert_eq!(
            cmp(&ColumnType::Decimal, &d(15, 1), &d(2, 0)),
            Ordering::Less
        );
        assert_eq!(
            cmp(&ColumnType::Decimal, &d(-15, 1), &d(-2, 0)),
            Ordering::Greater
        );
        assert_eq!(
            cmp(&ColumnType::Decimal, &d(0, 5), &d(-1, 0)),
            Ordering::Greater
        );
        assert_eq!(
            cmp(&ColumnType::Decimal, &d(999, 3), &d(1, 0)),
            Ordering::Less
        );
    }

    #[test]
    fn text_bytewise_and_empty_first() {
        let t = ColumnType::Varchar;
        let s = |x: &str| CqlValue::Text(x.into());
        assert_eq!(cmp(&t, &s("B"), &s("a")), Ordering::Less);
        assert_eq!(cmp(&t, &s("é"), &s("z")), Ordering::Greater);
        assert_eq!(
            compare(&ColumnType::Int, &[], &[0x80, 0, 0, 0]),
            Ordering::Less
        );
    }

    #[test]
    fn timeuuids_by_time_then_signed_bytes() {
        // Same time, low bytes 0x7f… vs 0x80…: signed, 0x80 is smaller.
        let mut a = [0u8; 16];
        a[6] = 0x10;
        let mut b = a;
        a[8] = 0x7f;
        b[8] = 0x80;
        assert_eq!(timeuuid(&a, &b), Ordering::Greater);
        // time_hi dominates time_low.
        let mut early = [0u8; 16];
        early[0] = 0xff;
        early[6] = 0x10;
        let mut late = [0u8; 16];
        late[6] = 0x11;
        assert_eq!(timeuuid(&early, &late), Ordering::Less);
        assert_eq!(uuid(&early, &late), Ordering::Less);
        // uuid: version first.
        let mut v4 = [0u8; 16];
        v4[6] = 0x40;
        assert_eq!(uuid(&late, &v4), Ordering::Less);
    }

    #[test]
    fn collections_and_tuples() {
        let l = ColumnType::List(Box::new(ColumnType::Int));
        let li = |xs: &[i32]| CqlValue::List(xs.iter().map(|&x| CqlValue::Int(x)).collect());
        assert_eq!(cmp(&l, &li(&[1, 2]), &li(&[1, 2, 0])), Ordering::Less);
        assert_eq!(cmp(&l, &li(&[-1, 9]), &li(&[1])), Ordering::Less);
        let t = ColumnType::Tuple(vec![ColumnType::Int, ColumnType::Varchar]);
        let tu = |a: Option<i32>, b: &str| {
            CqlValue::Tuple(vec![a.map(CqlValue::Int), Some(CqlValue::Text(b.into()))])
        };
        assert_eq!(cmp(&t, &tu(None, "z"), &tu(Some(-5), "a")), Ordering::Less);
        assert_eq!(
            cmp(&t, &tu(Some(1), "a"), &tu(Some(1), "b")),
            Ordering::Less
        );
        let m = ColumnType::Map(Box::new(ColumnType::Int), Box::new(ColumnType::Int));
        let mi = |xs: &[(i32, i32)]| {
            CqlValue::Map(
                xs.iter()
                    .map(|&(k, v)| (CqlValue::Int(k), CqlValue::Int(v)))
                    .collect(),
            )
        };
        assert_eq!(cmp(&m, &mi(&[(1, 5)]), &mi(&[(1, 6)])), Ordering::Less);
        assert_eq!(cmp(&m, &mi(&[(2, 0)]), &mi(&[(1, 6)])), Ordering::Greater);
    }

    proptest! {
        #[test]
        fn ints_match_rust_order(a: i64, b: i64) {
            prop_assert_eq!(
                cmp(&ColumnType::Bigint, &CqlValue::Bigint(a), &CqlValue::Bigint(b)),
                a.cmp(&b)
            );
            prop_assert_eq!(
                cmp(&ColumnType::Varint, &CqlValue::Varint(a.into()), &CqlValue::Varint(b.into())),
                a.cmp(&b)
            );
        }

        #[test]
        fn never_panics_on_garbage(
            a in proptest::collection::vec(any::<u8>(), 0..40),
            b in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            for t in [
                ColumnType::Decimal,
                ColumnType::Varint,
                ColumnType::Map(Box::new(ColumnType::Int), Box::new(ColumnType::Varchar)),
                ColumnType::Tuple(vec![ColumnType::Int, ColumnType::Uuid]),
                ColumnType::Vector { element: Box::new(ColumnType::Varchar), dimension: 3 },
                ColumnType::Vector { element: Box::new(ColumnType::Float), dimension: 2 },
            ] {
                let _ = compare(&t, &a, &b);
            }
        }
    }
}

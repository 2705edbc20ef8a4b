//! Cell values (spec 6 and 7 of v5): decoding a `[bytes]` payload by its column type and
//! encoding it back, type-checked.
//!
//! Encoding writes straight into the caller's buffer, no intermediate `Vec` per element: a nested
//! element's length prefix comes from a counting pass over the same encoder (see `Sink`),
//! which costs one extra walk per nesting level instead of an allocation per element.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BufMut;

use super::MAX_TYPE_DEPTH;
use super::column_type::ColumnType;
use super::decimal::{CqlDecimal, CqlVarint};
use super::duration::CqlDuration;
use crate::wire::{self, DecodeError, EncodeError};

/// Nanoseconds in a day: `time` values lie in `0..NANOS_PER_DAY`.
pub const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// A non-null cell value. Null is `Option<CqlValue>::None`; "not set" lives in
/// [`wire::RawValue`].
#[derive(Debug, Clone, PartialEq)]
pub enum CqlValue {
    Ascii(String),
    Bigint(i64),
    Blob(Vec<u8>),
    Boolean(bool),
    Counter(i64),
    Decimal(CqlDecimal),
    Double(f64),
    Float(f32),
    Int(i32),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
    Text(String),
    Varint(CqlVarint),
    Timeuuid([u8; 16]),
    Inet(IpAddr),
    /// Days, with 2^31 as the Unix epoch.
    Date(u32),
    /// Nanoseconds since midnight, `0..NANOS_PER_DAY`.
    Time(i64),
    Smallint(i16),
    Tinyint(i8),
    Duration(CqlDuration),
    List(Vec<CqlValue>),
    Set(Vec<CqlValue>),
    Map(Vec<(CqlValue, CqlValue)>),
    Tuple(Vec<Option<CqlValue>>),
    /// Fields in type order. Decoding fills fields missing from a short value with `None`;
    /// encoding accepts a prefix of the type's fields. `keyspace` and `name` are informational:
    /// encoding checks field names and types, so a value can move between keyspaces.
    Udt {
        keyspace: String,
        name: String,
        fields: Vec<(String, Option<CqlValue>)>,
    },
    Vector(Vec<CqlValue>),
    /// The raw bytes of a [`ColumnType::Custom`] value.
    Custom(Vec<u8>),
    /// A zero-length value of a type whose values are otherwise never empty (an `int` of zero
    /// bytes, say): legal in Cassandra for legacy reasons and distinct from null.
    Empty,
}

impl CqlValue {
    /// The variant's name, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ascii(_) => "ascii",
            Self::Bigint(_) => "bigint",
            Self::Blob(_) => "blob",
            Self::Boolean(_) => "boolean",
            Self::Counter(_) => "counter",
            Self::Decimal(_) => "decimal",
            Self::Double(_) => "double",
            Self::Float(_) => "float",
            Self::Int(_) => "int",
            Self::Timestamp(_) => "timestamp",
            Self::Uuid(_) => "uuid",
            Self::Text(_) => "text",
            Self::Varint(_) => "varint",
            Self::Timeuuid(_) => "timeuuid",
            Self::Inet(_) => "inet",
            Self::Date(_) => "date",
            Self::Time(_) => "time",
            Self::Smallint(_) => "smallint",
            Self::Tinyint(_) => "tinyint",
            Self::Duration(_) => "duration",
            Self::List(_) => "list",
            Self::Set(_) => "set",
            Self::Map(_) => "map",
            Self::Tuple(_) => "tuple",
            Self::Udt { .. } => "udt",
            Self::Vector(_) => "vector",
            Self::Custom(_) => "custom",
            Self::Empty => "empty",
        }
    }
}

impl ColumnType {
    /// Whether a zero-length payload of this type decodes as [`CqlValue::Empty`]. Strings,
    /// blobs and custom types have a meaningful empty value of their own.
    pub fn empty_is_special(&self) -> bool {
        !matches!(
            self,
            Self::Ascii | Self::Varchar | Self::Blob | Self::Custom(_)
        )
    }
}

fn too_deep(depth: usize) -> String {
    format!("value nesting depth {depth} exceeds the maximum {MAX_TYPE_DEPTH}")
}

/// Takes exactly `N` bytes: a fixed-width value.
fn exact<const N: usize>(bytes: &[u8], what: &'static str) -> Result<[u8; N], DecodeError> {
    if bytes.len() < N {
        return Err(DecodeError::TooShort {
            what,
            needed: N,
            remaining: bytes.len(),
        });
    }
    if bytes.len() > N {
        return Err(DecodeError::TrailingBytes {
            what,
            extra: bytes.len() - N,
        });
    }
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok(out)
}

/// Decodes one cell payload (the content of a non-null `[bytes]`) as a value of `ty`.
pub fn decode_value(ty: &ColumnType, bytes: &[u8]) -> Result<CqlValue, DecodeError> {
    decode_at(ty, bytes, 1)
}

fn decode_at(ty: &ColumnType, bytes: &[u8], depth: usize) -> Result<CqlValue, DecodeError> {
    if depth > MAX_TYPE_DEPTH {
        return Err(DecodeError::Malformed {
            what: "value",
            reason: too_deep(depth),
        });
    }
    if bytes.is_empty() && ty.empty_is_special() {
        return Ok(CqlValue::Empty);
    }
    Ok(match ty {
        ColumnType::Custom(_) => CqlValue::Custom(bytes.to_vec()),
        ColumnType::Blob => CqlValue::Blob(bytes.to_vec()),
        ColumnType::Ascii => {
            if let Some(&b) = bytes.iter().find(|b| !b.is_ascii()) {
                return Err(DecodeError::InvalidValue {
                    what: "ascii byte",
                    value: b.into(),
                });
            }
            // ASCII is valid UTF-8.
            CqlValue::Ascii(String::from_utf8_lossy(bytes).into_owned())
        }
        ColumnType::Varchar => CqlValue::Text(
            std::str::from_utf8(bytes)
                .map_err(|_| DecodeError::InvalidUtf8 { what: "text" })?
                .to_owned(),
        ),
        ColumnType::Bigint => CqlValue::Bigint(i64::from_be_bytes(exact(bytes, "bigint")?)),
        ColumnType::Counter => CqlValue::Counter(i64::from_be_bytes(exact(bytes, "counter")?)),
        ColumnType::Timestamp => {
            CqlValue::Timestamp(i64::from_be_bytes(exact(bytes, "timestamp")?))
        }
        ColumnType::Boolean => CqlValue::Boolean(exact::<1>(bytes, "boolean")?[0] != 0),
        ColumnType::Double => CqlValue::Double(f64::from_be_bytes(exact(bytes, "double")?)),
        ColumnType::Float => CqlValue::Float(f32::from_be_bytes(exact(bytes, "float")?)),
        ColumnType::Int => CqlValue::Int(i32::from_be_bytes(exact(bytes, "int")?)),
        ColumnType::Smallint => CqlValue::Smallint(i16::from_be_bytes(exact(bytes, "smallint")?)),
        ColumnType::Tinyint => CqlValue::Tinyint(i8::from_be_bytes(exact(bytes, "tinyint")?)),
        ColumnType::Uuid => CqlValue::Uuid(exact(bytes, "uuid")?),
        ColumnType::Timeuuid => CqlValue::Timeuuid(exact(bytes, "timeuuid")?),
        ColumnType::Date => CqlValue::Date(u32::from_be_bytes(exact(bytes, "date")?)),
        ColumnType::Time => {
            let ns = i64::from_be_bytes(exact(bytes, "time")?);
            if !(0..NANOS_PER_DAY).contains(&ns) {
                return Err(DecodeError::InvalidValue {
                    what: "time (ns of day)",
                    value: ns,
                });
            }
            CqlValue::Time(ns)
        }
        ColumnType::Varint => CqlValue::Varint(CqlVarint::from_signed_bytes_be(bytes)),
        ColumnType::Decimal => {
            let mut b = bytes;
            let scale = wire::read_int(&mut b, "decimal scale")?;
            if b.is_empty() {
                return Err(DecodeError::TooShort {
                    what: "decimal unscaled value",
                    needed: 1,
                    remaining: 0,
                });
            }
            CqlValue::Decimal(CqlDecimal {
                scale,
                unscaled: CqlVarint::from_signed_bytes_be(b),
            })
        }
        ColumnType::Inet => match bytes.len() {
            4 => CqlValue::Inet(IpAddr::V4(Ipv4Addr::from(exact::<4>(bytes, "inet")?))),
            16 => CqlValue::Inet(IpAddr::V6(Ipv6Addr::from(exact::<16>(bytes, "inet")?))),
            n => {
                return Err(DecodeError::Malformed {
                    what: "inet",
                    reason: format!("expected 4 or 16 bytes, got {n}"),
                });
            }
        },
        ColumnType::Duration => CqlValue::Duration(CqlDuration::read(bytes)?),
        ColumnType::List(e) => CqlValue::List(decode_elements(e, bytes, "list", depth)?),
        ColumnType::Set(e) => CqlValue::Set(decode_elements(e, bytes, "set", depth)?),
        ColumnType::Map(kt, vt) => {
            const WHAT: &str = "map";
            let mut b = bytes;
            let n = read_count(&mut b, WHAT)?;
            // A pair takes at least 8 bytes (two lengths): never reserve more than can be there.
            let mut out = Vec::with_capacity(n.min(b.len() / 8));
            for _ in 0..n {
                let k = read_element(&mut b, WHAT)?;
                let v = read_element(&mut b, WHAT)?;
                out.push((decode_at(kt, k, depth + 1)?, decode_at(vt, v, depth + 1)?));
            }
            wire::expect_end(b, WHAT)?;
            CqlValue::Map(out)
        }
        ColumnType::Tuple(ts) => CqlValue::Tuple(decode_fields(ts.iter(), bytes, "tuple", depth)?),
        ColumnType::Udt {
            keyspace,
            name,
            fields,
        } => {
            let values = decode_fields(fields.iter().map(|(_, t)| t), bytes, "udt", depth)?;
            CqlValue::Udt {
                keyspace: keyspace.clone(),
                name: name.clone(),
                fields: fields.iter().map(|(f, _)| f.clone()).zip(values).collect(),
            }
        }
        ColumnType::Vector { element, dimension } => {
            CqlValue::Vector(decode_vector(element, *dimension, bytes, depth)?)
        }
    })
}

/// A collection's `[int]` element count.
fn read_count(b: &mut &[u8], what: &'static str) -> Result<usize, DecodeError> {
    let n = wire::read_int(b, what)?;
    usize::try_from(n).map_err(|_| DecodeError::NegativeLength {
        what,
        len: n.into(),
    })
}

/// A collection element: a `[bytes]` that may not be null.
fn read_element<'a>(b: &mut &'a [u8], what: &'static str) -> Result<&'a [u8], DecodeError> {
    wire::read_bytes(b, what)?.ok_or_else(|| DecodeError::Malformed {
        what,
        reason: "null element in a collection".to_owned(),
    })
}

fn decode_elements(
    ty: &ColumnType,
    bytes: &[u8],
    what: &'static str,
    depth: usize,
) -> Result<Vec<CqlValue>, DecodeError> {
    let mut b = bytes;
    let n = read_count(&mut b, what)?;
    // Each element takes at least its 4-byte length.
    let mut out = Vec::with_capacity(n.min(b.len() / 4));
    for _ in 0..n {
        out.push(decode_at(ty, read_element(&mut b, what)?, depth + 1)?);
    }
    wire::expect_end(b, what)?;
    Ok(out)
}

/// Tuple and UDT fields: one `[bytes]` each, null allowed. A value that ends early leaves the
/// remaining fields null (spec 7 allows this for UDTs; Cassandra's tuples tolerate it too).
fn decode_fields<'t>(
    types: impl ExactSizeIterator<Item = &'t ColumnType>,
    bytes: &[u8],
    what: &'static str,
    depth: usize,
) -> Result<Vec<Option<CqlValue>>, DecodeError> {
    let mut b = bytes;
    let mut out = Vec::with_capacity(types.len());
    for t in types {
        if b.is_empty() {
            out.push(None);
            continue;
        }
        out.push(match wire::read_bytes(&mut b, what)? {
            None => None,
            Some(v) => Some(decode_at(t, v, depth + 1)?),
        });
    }
    wire::expect_end(b, what)?;
    Ok(out)
}

/// Vectors (Cassandra 5 `VectorType`): fixed-size elements are packed with no lengths, others
/// each carry an `[unsigned vint]` length.
fn decode_vector(
    ty: &ColumnType,
    dimension: u32,
    bytes: &[u8],
    depth: usize,
) -> Result<Vec<CqlValue>, DecodeError> {
    const WHAT: &str = "vector";
    let dim = dimension as usize;
    if let Some(size) = ty.fixed_value_len() {
        let expected = (dim as u64).saturating_mul(size as u64);
        if bytes.len() as u64 != expected {
            return Err(DecodeError::Malformed {
                what: WHAT,
                reason: format!(
                    "expected {expected} bytes ({dim} × {size}), got {}",
                    bytes.len()
                ),
            });
        }
        return bytes
            .chunks_exact(size)
            .map(|c| decode_at(ty, c, depth + 1))
            .collect();
    }
    let mut b = bytes;
    // Each element takes at least its 1-byte length.
    let mut out = Vec::with_capacity(dim.min(b.len()));
    for _ in 0..dim {
        let len = wire::read_unsigned_vint(&mut b, WHAT)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        out.push(decode_at(
            ty,
            wire::read_raw(&mut b, len, WHAT)?,
            depth + 1,
        )?);
    }
    wire::expect_end(b, WHAT)?;
    Ok(out)
}

/// Where encoded bytes go: the caller's buffer, or a counter that sizes a length prefix.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

struct Count(usize);

impl Sink for Count {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

struct Out<'a, B: BufMut>(&'a mut B);

impl<B: BufMut> Sink for Out<'_, B> {
    fn put(&mut self, bytes: &[u8]) {
        self.0.put_slice(bytes);
    }
}

/// Encodes `v` as a cell payload of type `ty` (without the `[bytes]` length; see
/// [`encoded_len`] for it). Fails when the value does not match the type or a length does
/// not fit its prefix; on failure some bytes may already have been written.
pub fn encode_value(
    ty: &ColumnType,
    v: &CqlValue,
    buf: &mut impl BufMut,
) -> Result<(), EncodeError> {
    encode_into(ty, v, &mut Out(buf), 1)
}

/// The exact byte length [`encode_value`] would write, with the same checks.
pub fn encoded_len(ty: &ColumnType, v: &CqlValue) -> Result<usize, EncodeError> {
    len_at(ty, v, 1)
}

fn len_at(ty: &ColumnType, v: &CqlValue, depth: usize) -> Result<usize, EncodeError> {
    let mut c = Count(0);
    encode_into(ty, v, &mut c, depth)?;
    Ok(c.0)
}

fn mismatch(ty: &ColumnType, v: &CqlValue) -> EncodeError {
    EncodeError::Invalid {
        what: "value",
        reason: format!(
            "a {} value does not match column type {}",
            v.kind(),
            ty.cql_name()
        ),
    }
}

fn invalid(what: &'static str, reason: String) -> EncodeError {
    EncodeError::Invalid { what, reason }
}

fn int_len(n: usize, what: &'static str) -> Result<i32, EncodeError> {
    i32::try_from(n).map_err(|_| EncodeError::TooLong {
        what,
        len: n,
        max: i32::MAX as usize,
    })
}

/// An element as `[bytes]`: `[int]` length, then the payload.
fn put_element(
    ty: &ColumnType,
    v: &CqlValue,
    out: &mut impl Sink,
    what: &'static str,
    depth: usize,
) -> Result<(), EncodeError> {
    let len = int_len(len_at(ty, v, depth)?, what)?;
    out.put(&len.to_be_bytes());
    encode_into(ty, v, out, depth)
}

fn put_unsigned_vint(out: &mut impl Sink, v: u64) {
    let mut tmp = [0u8; 9];
    let mut rest: &mut [u8] = &mut tmp;
    wire::write_unsigned_vint(&mut rest, v);
    let n = 9 - rest.len();
    out.put(&tmp[..n]);
}

fn encode_into(
    ty: &ColumnType,
    v: &CqlValue,
    out: &mut impl Sink,
    depth: usize,
) -> Result<(), EncodeError> {
    if depth > MAX_TYPE_DEPTH {
        return Err(invalid("value", too_deep(depth)));
    }
    match (ty, v) {
        (_, CqlValue::Empty) => {}
        (ColumnType::Custom(_), CqlValue::Custom(b)) | (ColumnType::Blob, CqlValue::Blob(b)) => {
            out.put(b)
        }
        (ColumnType::Ascii, CqlValue::Ascii(s)) => {
            if let Some(c) = s.chars().find(|c| !c.is_ascii()) {
                return Err(invalid(
                    "ascii",
                    format!("non-ASCII character U+{:04X}", u32::from(c)),
                ));
            }
            out.put(s.as_bytes());
        }
        (ColumnType::Varchar, CqlValue::Text(s)) => out.put(s.as_bytes()),
        (ColumnType::Bigint, CqlValue::Bigint(n))
        | (ColumnType::Counter, CqlValue::Counter(n))
        | (ColumnType::Timestamp, CqlValue::Timestamp(n)) => out.put(&n.to_be_bytes()),
        (ColumnType::Time, CqlValue::Time(n)) => {
            if !(0..NANOS_PER_DAY).contains(n) {
                return Err(invalid(
                    "time",
                    format!("{n} ns is outside 0..{NANOS_PER_DAY}"),
                ));
            }
            out.put(&n.to_be_bytes());
        }
        (ColumnType::Boolean, CqlValue::Boolean(b)) => out.put(&[u8::from(*b)]),
        (ColumnType::Double, CqlValue::Double(x)) => out.put(&x.to_be_bytes()),
        (ColumnType::Float, CqlValue::Float(x)) => out.put(&x.to_be_bytes()),
        (ColumnType::Int, CqlValue::Int(n)) => out.put(&n.to_be_bytes()),
        (ColumnType::Smallint, CqlValue::Smallint(n)) => out.put(&n.to_be_bytes()),
        (ColumnType::Tinyint, CqlValue::Tinyint(n)) => out.put(&n.to_be_bytes()),
        (ColumnType::Date, CqlValue::Date(n)) => out.put(&n.to_be_bytes()),
        (ColumnType::Uuid, CqlValue::Uuid(u)) | (ColumnType::Timeuuid, CqlValue::Timeuuid(u)) => {
            out.put(u)
        }
        (ColumnType::Varint, CqlValue::Varint(n)) => out.put(n.as_signed_bytes_be()),
        (ColumnType::Decimal, CqlValue::Decimal(d)) => {
            out.put(&d.scale.to_be_bytes());
            out.put(d.unscaled.as_signed_bytes_be());
        }
        (ColumnType::Inet, CqlValue::Inet(IpAddr::V4(a))) => out.put(&a.octets()),
        (ColumnType::Inet, CqlValue::Inet(IpAddr::V6(a))) => out.put(&a.octets()),
        (ColumnType::Duration, CqlValue::Duration(d)) => {
            if !d.has_consistent_sign() {
                return Err(invalid("duration", format!("mixed signs in {d:?}")));
            }
            let mut tmp = Vec::with_capacity(27);
            d.write(&mut tmp);
            out.put(&tmp);
        }
        (ColumnType::List(et), CqlValue::List(es)) | (ColumnType::Set(et), CqlValue::Set(es)) => {
            let what = if matches!(ty, ColumnType::List(_)) {
                "list"
            } else {
                "set"
            };
            out.put(&int_len(es.len(), what)?.to_be_bytes());
            for e in es {
                put_element(et, e, out, what, depth + 1)?;
            }
        }
        (ColumnType::Map(kt, vt), CqlValue::Map(pairs)) => {
            out.put(&int_len(pairs.len(), "map")?.to_be_bytes());
            for (k, v) in pairs {
                put_element(kt, k, out, "map", depth + 1)?;
                put_element(vt, v, out, "map", depth + 1)?;
            }
        }
        (ColumnType::Tuple(ts), CqlValue::Tuple(vs)) => {
            if ts.len() != vs.len() {
                return Err(invalid(
                    "tuple",
                    format!(
                        "{} values for {} with {} elements",
                        vs.len(),
                        ty.cql_name(),
                        ts.len()
                    ),
                ));
            }
            for (t, v) in ts.iter().zip(vs) {
                put_field(t, v.as_ref(), out, "tuple", depth + 1)?;
            }
        }
        (ColumnType::Udt { fields: tf, .. }, CqlValue::Udt { fields: vf, .. }) => {
            if vf.len() > tf.len() {
                return Err(invalid(
                    "udt",
                    format!(
                        "{} fields for {} with {} fields",
                        vf.len(),
                        ty.cql_name(),
                        tf.len()
                    ),
                ));
            }
            for ((tname, t), (vname, v)) in tf.iter().zip(vf) {
                if tname != vname {
                    return Err(invalid(
                        "udt",
                        format!("field '{vname}' where {} has '{tname}'", ty.cql_name()),
                    ));
                }
                put_field(t, v.as_ref(), out, "udt", depth + 1)?;
            }
        }
        (ColumnType::Vector { element, dimension }, CqlValue::Vector(es)) => {
            if es.len() != *dimension as usize {
                return Err(invalid(
                    "vector",
                    format!("{} elements for {}", es.len(), ty.cql_name()),
                ));
            }
            let fixed = element.fixed_value_len().is_some();
            for e in es {
                if fixed {
                    if matches!(e, CqlValue::Empty) {
                        return Err(invalid(
                            "vector",
                            format!("empty element in {}", ty.cql_name()),
                        ));
                    }
                    encode_into(element, e, out, depth + 1)?;
                } else {
                    put_unsigned_vint(out, len_at(element, e, depth + 1)? as u64);
                    encode_into(element, e, out, depth + 1)?;
                }
            }
        }
        _ => return Err(mismatch(ty, v)),
    }
    Ok(())
}

/// A tuple or UDT field: `[bytes]`, null as length -1.
fn put_field(
    ty: &ColumnType,
    v: Option<&CqlValue>,
    out: &mut impl Sink,
    what: &'static str,
    depth: usize,
) -> Result<(), EncodeError> {
    match v {
        None => {
            out.put(&(-1i32).to_be_bytes());
            Ok(())
        }
        Some(v) => put_element(ty, v, out, what, depth),
    }
}

#[cfg(test)]
mod tests {
    use super::super::strategies;
    use super::*;
    use proptest::prelude::*;

    fn enc(ty: &ColumnType, v: &CqlValue) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(ty, v, &mut out).unwrap();
        assert_eq!(encoded_len(ty, v).unwrap(), out.len());
        out
    }

    /// Encode → decode gives the value back; decode → encode gives the bytes back.
    fn roundtrip(ty: &ColumnType, v: &CqlValue) -> Vec<u8> {
        let bytes = enc(ty, v);
        let back = decode_value(ty, &bytes).unwrap();
        assert_eq!(&back, v, "{}", ty.cql_name());
        assert_eq!(enc(ty, &back), bytes);
        bytes
    }

    fn bx(t: ColumnType) -> Box<ColumnType> {
        Box::new(t)
    }

    #[test]
    fn each_simple_type_roundtrips() {
        use ColumnType as T;
        use CqlValue as V;
        let cases = [
            (T::Ascii, V::Ascii("hello".into())),
            (T::Bigint, V::Bigint(-2)),
            (T::Blob, V::Blob(vec![0, 1, 0xff])),
            (T::Boolean, V::Boolean(true)),
            (T::Counter, V::Counter(i64::MAX)),
            (
                T::Decimal,
                V::Decimal(CqlDecimal {
                    scale: 2,
                    unscaled: 12345i64.into(),
                }),
            ),
            (T::Double, V::Double(-1.5)),
            (T::Float, V::Float(f32::INFINITY)),
            (T::Int, V::Int(i32::MIN)),
            (T::Timestamp, V::Timestamp(1_700_000_000_000)),
            (T::Uuid, V::Uuid([7; 16])),
            (T::Varchar, V::Text("héllo ✓".into())),
            (T::Varint, V::Varint(CqlVarint::from(-129i64))),
            (T::Timeuuid, V::Timeuuid([0x11; 16])),
            (T::Inet, V::Inet("10.0.0.1".parse().unwrap())),
            (T::Inet, V::Inet("2001:db8::1".parse().unwrap())),
            (T::Date, V::Date(1 << 31)),
            (T::Time, V::Time(NANOS_PER_DAY - 1)),
            (T::Smallint, V::Smallint(-300)),
            (T::Tinyint, V::Tinyint(-7)),
            (
                T::Duration,
                V::Duration(CqlDuration {
                    months: 1,
                    days: 2,
                    nanos: 3,
                }),
            ),
            (T::Custom("com.example.T".into()), V::Custom(vec![9, 9])),
        ];
        for (t, v) in &cases {
            roundtrip(t, v);
        }
    }

    #[test]
    fn hand_checked_bytes() {
        use ColumnType as T;
        use CqlValue as V;
        assert_eq!(
            roundtrip(&T::Varint, &V::Varint(128i64.into())),
            [0x00, 0x80]
        );
        assert_eq!(roundtrip(&T::Varint, &V::Varint((-1i64).into())), [0xff]);
        assert_eq!(roundtrip(&T::Varint, &V::Varint(0i64.into())), [0x00]);
        // -1.28 = -128 × 10^-2.
        let d = V::Decimal(CqlDecimal {
            scale: 2,
            unscaled: (-128i64).into(),
        });
        assert_eq!(roundtrip(&T::Decimal, &d), [0, 0, 0, 2, 0x80]);
        let dur = V::Duration(CqlDuration {
            months: 1,
            days: 2,
            nanos: 3,
        });
        assert_eq!(roundtrip(&T::Duration, &dur), [0x02, 0x04, 0x06]);
        assert_eq!(roundtrip(&T::Date, &V::Date(1 << 31)), [0x80, 0, 0, 0]);
        let vec3 = T::Vector {
            element: bx(T::Float),
            dimension: 3,
        };
        let v = V::Vector(vec![V::Float(1.0), V::Float(2.0), V::Float(-0.5)]);
        assert_eq!(
            roundtrip(&vec3, &v),
            [0x3f, 0x80, 0, 0, 0x40, 0, 0, 0, 0xbf, 0, 0, 0],
        );
        let list = T::List(bx(T::Int));
        assert_eq!(
            roundtrip(&list, &V::List(vec![V::Int(1), V::Int(2)])),
            [0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 2],
        );
    }

    #[test]
    fn variable_size_vector_elements_carry_vint_lengths() {
        let t = ColumnType::Vector {
            element: bx(ColumnType::Varchar),
            dimension: 2,
        };
        let v = CqlValue::Vector(vec![
            CqlValue::Text("ab".into()),
            CqlValue::Text(String::new()),
        ]);
        assert_eq!(roundtrip(&t, &v), [0x02, b'a', b'b', 0x00]);
        // smallint is variable-size in Cassandra's vectors.
        let t = ColumnType::Vector {
            element: bx(ColumnType::Smallint),
            dimension: 1,
        };
        assert_eq!(
            roundtrip(&t, &CqlValue::Vector(vec![CqlValue::Smallint(1)])),
            [0x02, 0x00, 0x01]
        );
        let bad = CqlValue::Vector(vec![]);
        assert!(encode_value(&t, &bad, &mut Vec::new()).is_err());
        assert!(decode_value(&t, &[0x02, 0x00, 0x01, 0x00]).is_err());
        let floats = ColumnType::Vector {
            element: bx(ColumnType::Float),
            dimension: 3,
        };
        let err = decode_value(&floats, &[0; 11]).unwrap_err();
        assert!(err.to_string().contains("expected 12 bytes"), "{err}");
    }

    #[test]
    fn zero_dimension_vectors_do_not_panic() {
        let inner = ColumnType::Vector {
            element: bx(ColumnType::Float),
            dimension: 0,
        };
        let outer = ColumnType::Vector {
            element: bx(inner),
            dimension: 3,
        };
        let v = CqlValue::Vector(vec![CqlValue::Vector(vec![]); 3]);
        assert_eq!(enc(&outer, &v), [0, 0, 0]);
        // Zero-length elements read back as the legacy empty value.
        assert_eq!(
            decode_value(&outer, &[0, 0, 0]).unwrap(),
            CqlValue::Vector(vec![CqlValue::Empty; 3])
        );
        assert!(decode_value(&outer, &[1, 2, 3, 4]).is_err());
    }

    #[test]
    fn collections_tuples_and_udts_roundtrip() {
        use ColumnType as T;
        use CqlValue as V;
        let m = T::Map(bx(T::Varchar), bx(T::List(bx(T::Int))));
        roundtrip(
            &m,
            &V::Map(vec![
                (V::Text("a".into()), V::List(vec![V::Int(1)])),
                (V::Text("b".into()), V::List(vec![])),
            ]),
        );
        roundtrip(&T::Set(bx(T::Uuid)), &V::Set(vec![V::Uuid([1; 16])]));
        let tup = T::Tuple(vec![T::Int, T::Varchar]);
        let bytes = roundtrip(&tup, &V::Tuple(vec![Some(V::Int(1)), None]));
        assert_eq!(bytes, [0, 0, 0, 4, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
        let udt = T::Udt {
            keyspace: "ks".into(),
            name: "addr".into(),
            fields: vec![("street".into(), T::Varchar), ("zip".into(), T::Int)],
        };
        let full = V::Udt {
            keyspace: "ks".into(),
            name: "addr".into(),
            fields: vec![
                ("street".into(), Some(V::Text("x".into()))),
                ("zip".into(), None),
            ],
        };
        roundtrip(&udt, &full);
        // A value written before the `zip` field existed: one field only, the rest is null.
        let short = [0, 0, 0, 1, b'x'];
        assert_eq!(decode_value(&udt, &short).unwrap(), full);
        let prefix = V::Udt {
            keyspace: "other_ks".into(),
            name: "addr".into(),
            fields: vec![("street".into(), Some(V::Text("x".into())))],
        };
        assert_eq!(enc(&udt, &prefix), short);
        let wrong = V::Udt {
            keyspace: "ks".into(),
            name: "addr".into(),
            fields: vec![("zip".into(), None)],
        };
        assert!(encode_value(&udt, &wrong, &mut Vec::new()).is_err());
    }

    #[test]
    fn empty_values_are_not_errors() {
        assert_eq!(
            decode_value(&ColumnType::Int, &[]).unwrap(),
            CqlValue::Empty
        );
        assert_eq!(
            decode_value(&ColumnType::List(bx(ColumnType::Int)), &[]).unwrap(),
            CqlValue::Empty
        );
        assert_eq!(
            decode_value(&ColumnType::Varchar, &[]).unwrap(),
            CqlValue::Text(String::new())
        );
        assert_eq!(
            decode_value(&ColumnType::Blob, &[]).unwrap(),
            CqlValue::Blob(vec![])
        );
        assert_eq!(enc(&ColumnType::Int, &CqlValue::Empty), Vec::<u8>::new());
    }

    #[test]
    fn wrong_lengths_are_clear_errors() {
        let e = decode_value(&ColumnType::Int, &[0, 0, 1]).unwrap_err();
        assert_eq!(
            e,
            DecodeError::TooShort {
                what: "int",
                needed: 4,
                remaining: 3
            }
        );
        let e = decode_value(&ColumnType::Bigint, &[0; 9]).unwrap_err();
        assert_eq!(
            e,
            DecodeError::TrailingBytes {
                what: "bigint",
                extra: 1
            }
        );
        // A list claiming 2^31-1 elements in 8 bytes: fails, and never reserves that much.
        let e = decode_value(
            &ColumnType::List(bx(ColumnType::Int)),
            &[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0],
        );
        assert!(matches!(e, Err(DecodeError::TooShort { .. })), "{e:?}");
        let e = decode_value(
            &ColumnType::Map(bx(ColumnType::Int), bx(ColumnType::Int)),
            &[0, 0, 0, 1, 0, 0, 0, 0],
        );
        assert!(e.is_err());
        let e = decode_value(
            &ColumnType::List(bx(ColumnType::Int)),
            &[0xff, 0xff, 0xff, 0xff],
        )
        .unwrap_err();
        assert!(matches!(e, DecodeError::NegativeLength { len: -1, .. }));
        let e = decode_value(&ColumnType::Time, &NANOS_PER_DAY.to_be_bytes()).unwrap_err();
        assert!(matches!(e, DecodeError::InvalidValue { .. }));
        assert!(decode_value(&ColumnType::Inet, &[1, 2, 3]).is_err());
        assert!(decode_value(&ColumnType::Ascii, &[0xc3, 0xa9]).is_err());
        assert!(decode_value(&ColumnType::Varchar, &[0xff]).is_err());
        assert!(decode_value(&ColumnType::Decimal, &[0, 0, 0, 1]).is_err());
        let null_elem = [0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff];
        assert!(decode_value(&ColumnType::List(bx(ColumnType::Int)), &null_elem).is_err());
    }

    #[test]
    fn type_mismatch_names_both() {
        let err = encode_value(
            &ColumnType::Int,
            &CqlValue::Text("x".into()),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "value: a text value does not match column type int"
        );
        let t = ColumnType::Map(bx(ColumnType::Varchar), bx(ColumnType::Int));
        let err = encode_value(
            &t,
            &CqlValue::Map(vec![(CqlValue::Int(1), CqlValue::Int(1))]),
            &mut Vec::new(),
        );
        assert!(err.unwrap_err().to_string().contains("column type text"));
        let bad_time = encode_value(&ColumnType::Time, &CqlValue::Time(-1), &mut Vec::new());
        assert!(bad_time.is_err());
        let mixed = CqlValue::Duration(CqlDuration {
            months: 1,
            days: -1,
            nanos: 0,
        });
        assert!(encode_value(&ColumnType::Duration, &mixed, &mut Vec::new()).is_err());
        assert!(
            encode_value(
                &ColumnType::Ascii,
                &CqlValue::Ascii("é".into()),
                &mut Vec::new()
            )
            .is_err()
        );
    }

    #[test]
    fn nan_roundtrips_bitwise() {
        let bytes = enc(&ColumnType::Double, &CqlValue::Double(f64::NAN));
        let CqlValue::Double(x) = decode_value(&ColumnType::Double, &bytes).unwrap() else {
            panic!()
        };
        assert_eq!(x.to_bits(), f64::NAN.to_bits());
    }

    proptest! {
        #[test]
        fn random_values_roundtrip((t, v) in strategies::typed_value()) {
            roundtrip(&t, &v);
        }

        #[test]
        fn decode_never_panics_on_random_bytes(
            t in strategies::column_type(),
            data in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            let _ = decode_value(&t, &data);
        }

        #[test]
        fn decode_never_panics_on_corrupted_values(
            (t, v) in strategies::typed_value(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = enc(&t, &v);
            if !bytes.is_empty() {
                for (i, x) in flips {
                    let i = i.index(bytes.len());
                    bytes[i] ^= x;
                }
                let _ = decode_value(&t, &bytes);
                let _ = decode_value(&t, &bytes[..cut.index(bytes.len())]);
            }
        }
    }
}

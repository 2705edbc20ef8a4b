//! CQL column types and cell values.
//!
//! # Layout
//! - [`column_type`]: [`ColumnType`], its `[option]` codec (`read_column_type` /
//!   `write_column_type`, version-gated like Cassandra's), CQL names and marshal class names
//!   (how `vector` travels).
//! - [`value`]: [`CqlValue`] and the type-directed `decode_value` / `encode_value`.
//! - [`decimal`]: [`CqlVarint`] and [`CqlDecimal`], kept as two's-complement bytes.
//! - [`duration`]: [`CqlDuration`] and its three-`[vint]` encoding.
//! - [`literal`]: `CqlValue::to_cql_literal`, valid CQL for every value.
//!
//! Everything that recurses over a type from the wire stops at [`MAX_TYPE_DEPTH`], so a
//! hostile `list<list<list<…>>>` is an error, not a stack overflow.

pub mod column_type;
pub mod decimal;
pub mod duration;
pub mod literal;
pub mod value;

pub use column_type::{ColumnType, read_column_type, write_column_type};
pub use decimal::{CqlDecimal, CqlVarint};
pub use duration::CqlDuration;
pub use value::{CqlValue, decode_value, encode_value, encoded_len};

/// The deepest type nesting accepted (a simple type is depth 1). Real schemas stay in single
/// digits; 64 leaves room while bounding recursion to a few KiB of stack.
pub const MAX_TYPE_DEPTH: usize = 64;

/// Proptest strategies for types and matching values, shared with other modules' tests.
#[cfg(test)]
pub(crate) mod strategies {
    use proptest::prelude::*;

    use super::{ColumnType, CqlDecimal, CqlDuration, CqlValue, CqlVarint};
    use crate::types::value::NANOS_PER_DAY;

    fn simple_type() -> impl Strategy<Value = ColumnType> {
        use ColumnType as T;
        prop_oneof![
            Just(T::Ascii),
            Just(T::Bigint),
            Just(T::Blob),
            Just(T::Boolean),
            Just(T::Counter),
            Just(T::Decimal),
            Just(T::Double),
            Just(T::Float),
            Just(T::Int),
            Just(T::Timestamp),
            Just(T::Uuid),
            Just(T::Varchar),
            Just(T::Varint),
            Just(T::Timeuuid),
            Just(T::Inet),
            Just(T::Date),
            Just(T::Time),
            Just(T::Smallint),
            Just(T::Tinyint),
            Just(T::Duration),
            "com\\.example\\.[A-Z][a-z]{0,6}".prop_map(T::Custom),
        ]
    }

    /// Arbitrary column types, nested up to four levels.
    pub(crate) fn column_type() -> impl Strategy<Value = ColumnType> {
        simple_type().prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|t| ColumnType::List(Box::new(t))),
                inner.clone().prop_map(|t| ColumnType::Set(Box::new(t))),
                (inner.clone(), inner.clone())
                    .prop_map(|(k, v)| ColumnType::Map(Box::new(k), Box::new(v))),
                // Cassandra has no empty tuples or UDTs; their zero-byte value would decode as Empty.
                prop::collection::vec(inner.clone(), 1..4).prop_map(ColumnType::Tuple),
                (
                    "[a-z][a-z0-9_]{0,6}",
                    "[a-zA-Z][a-zA-Z0-9_ ]{0,6}",
                    prop::collection::vec(("[a-zA-Z_\"][a-zA-Z0-9_\" ]{0,6}", inner.clone()), 1..4),
                )
                    .prop_map(|(keyspace, name, fields)| ColumnType::Udt {
                        keyspace,
                        name,
                        fields
                    }),
                (inner, 1u32..5).prop_map(|(t, d)| ColumnType::Vector {
                    element: Box::new(t),
                    dimension: d
                }),
            ]
        })
    }

    fn float64() -> impl Strategy<Value = f64> {
        // NaN never equals itself; its bitwise roundtrip has its own test.
        any::<f64>().prop_map(|x| if x.is_nan() { 0.0 } else { x })
    }

    fn float32() -> impl Strategy<Value = f32> {
        any::<f32>().prop_map(|x| if x.is_nan() { 0.0 } else { x })
    }

    fn duration() -> impl Strategy<Value = CqlDuration> {
        (any::<bool>(), 0..=i32::MAX, 0..=i32::MAX, 0..=i64::MAX).prop_map(|(neg, m, d, n)| {
            if neg {
                CqlDuration {
                    months: -m,
                    days: -d,
                    nanos: -n,
                }
            } else {
                CqlDuration {
                    months: m,
                    days: d,
                    nanos: n,
                }
            }
        })
    }

    /// A value of exactly `ty`, never [`CqlValue::Empty`] (so it also fits vector elements).
    pub(crate) fn value_for(ty: &ColumnType) -> BoxedStrategy<CqlValue> {
        use ColumnType as T;
        use CqlValue as V;
        match ty {
            T::Custom(_) => prop::collection::vec(any::<u8>(), 0..8)
                .prop_map(V::Custom)
                .boxed(),
            T::Ascii => "[ -~]{0,8}".prop_map(V::Ascii).boxed(),
            T::Varchar => ".{0,8}".prop_map(V::Text).boxed(),
            T::Blob => prop::collection::vec(any::<u8>(), 0..8)
                .prop_map(V::Blob)
                .boxed(),
            T::Bigint => any::<i64>().prop_map(V::Bigint).boxed(),
            T::Counter => any::<i64>().prop_map(V::Counter).boxed(),
            T::Timestamp => any::<i64>().prop_map(V::Timestamp).boxed(),
            T::Boolean => any::<bool>().prop_map(V::Boolean).boxed(),
            T::Decimal => (any::<i32>(), any::<i128>())
                .prop_map(|(scale, u)| {
                    V::Decimal(CqlDecimal {
                        scale,
                        unscaled: u.into(),
                    })
                })
                .boxed(),
            T::Double => float64().prop_map(V::Double).boxed(),
            T::Float => float32().prop_map(V::Float).boxed(),
            T::Int => any::<i32>().prop_map(V::Int).boxed(),
            T::Smallint => any::<i16>().prop_map(V::Smallint).boxed(),
            T::Tinyint => any::<i8>().prop_map(V::Tinyint).boxed(),
            T::Uuid => any::<[u8; 16]>().prop_map(V::Uuid).boxed(),
            T::Timeuuid => any::<[u8; 16]>().prop_map(V::Timeuuid).boxed(),
            T::Varint => prop_oneof![
                any::<i64>().prop_map(|n| V::Varint(n.into())),
                prop::collection::vec(any::<u8>(), 1..24)
                    .prop_map(|b| V::Varint(CqlVarint::from_signed_bytes_be(&b))),
            ]
            .boxed(),
            T::Inet => any::<std::net::IpAddr>().prop_map(V::Inet).boxed(),
            T::Date => any::<u32>().prop_map(V::Date).boxed(),
            T::Time => (0..NANOS_PER_DAY).prop_map(V::Time).boxed(),
            T::Duration => duration().prop_map(V::Duration).boxed(),
            T::List(e) => prop::collection::vec(value_for(e), 0..4)
                .prop_map(V::List)
                .boxed(),
            T::Set(e) => prop::collection::vec(value_for(e), 0..4)
                .prop_map(V::Set)
                .boxed(),
            T::Map(k, v) => prop::collection::vec((value_for(k), value_for(v)), 0..4)
                .prop_map(V::Map)
                .boxed(),
            T::Tuple(ts) => ts
                .iter()
                .map(|t| prop::option::of(value_for(t)))
                .collect::<Vec<_>>()
                .prop_map(V::Tuple)
                .boxed(),
            T::Udt {
                keyspace,
                name,
                fields,
            } => {
                let (keyspace, name) = (keyspace.clone(), name.clone());
                let names: Vec<String> = fields.iter().map(|(f, _)| f.clone()).collect();
                fields
                    .iter()
                    .map(|(_, t)| prop::option::of(value_for(t)))
                    .collect::<Vec<_>>()
                    .prop_map(move |vals| V::Udt {
                        keyspace: keyspace.clone(),
                        name: name.clone(),
                        fields: names.iter().cloned().zip(vals).collect(),
                    })
                    .boxed()
            }
            T::Vector { element, dimension } => {
                prop::collection::vec(value_for(element), *dimension as usize)
                    .prop_map(V::Vector)
                    .boxed()
            }
        }
    }

    /// A random type with a value of it; sometimes the legacy empty value where it is legal.
    pub(crate) fn typed_value() -> impl Strategy<Value = (ColumnType, CqlValue)> {
        column_type().prop_flat_map(|t| {
            let v = if t.empty_is_special() {
                prop_oneof![9 => value_for(&t), 1 => Just(CqlValue::Empty)].boxed()
            } else {
                value_for(&t)
            };
            (Just(t), v)
        })
    }
}

//! Partition keys that arrive as CQL literal text (a proxy's repair request, see
//! [`ferry_update::PartitionKey`]) turned into typed, bound values.
//!
//! ```text
//!  "'it''s'", "42"  ─► ferry_sim::cql::parse_term (one constant term, nothing after it)
//!                   ─► term_to_value for the column's type (Cassandra's literal rules)
//!                   ─► ferry_cql encode_value ─► Encoded bytes bound to `pk1 = ? AND pk2 = ?`
//! ```
//!
//! Why bind rather than splice the text into the statement: a literal can then never add a
//! clause or a statement, whatever it contains, and a literal that is not a value of its
//! column's type is refused here with the column named, not by origin with a syntax error.
//! The types come from origin's own metadata for the prepared statement (user types
//! resolved by the server), so they are exactly what the bytes are checked against.
//!
//! The literal rules are the sim's (`ferry_sim::cql`), which follow Cassandra's
//! `AbstractType.fromString`; one parser for the workspace, not a second one here.

use std::time::{SystemTime, UNIX_EPOCH};

use ferry_cql::types::{ColumnType, encode_value};
use ferry_sim::cql::{Bound, IdGenerator, TermContext, parse_term, term_to_value};
use scylla::frame::response::result::{
    CollectionType, ColumnType as DriverType, NativeType as Native,
};
use scylla::serialize::SerializationError;
use scylla::serialize::value::SerializeValue;
use scylla::serialize::writers::{CellWriter, WrittenCellProof};
use scylla::statement::prepared::PreparedStatement;

/// Longest literal accepted for one key column: a frame is at most 1 MiB anyway, and a key
/// this long is a mistake, not a key.
pub const MAX_LITERAL: usize = 64 * 1024;

/// Why a partition key's text cannot be bound. Every message names the column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("{given} key components, the table's partition key has {expected} columns")]
    Arity { given: usize, expected: usize },
    #[error("column {column}: literal of {len} bytes, at most {max} accepted")]
    TooLong {
        column: String,
        len: usize,
        max: usize,
    },
    #[error("column {column}: {literal:?} is not a CQL literal: {error}")]
    Syntax {
        column: String,
        literal: String,
        error: String,
    },
    #[error("column {column}: {literal:?} is not a constant (no markers, functions or arithmetic)")]
    NotConstant { column: String, literal: String },
    #[error("column {column}: {literal:?} is not a {ty} value: {error}")]
    Type {
        column: String,
        ty: String,
        literal: String,
        error: String,
    },
    #[error("column {column}: a partition key column cannot be null")]
    Null { column: String },
    #[error("column {column}: its type {ty} is not one a key literal can be read for")]
    Unsupported { column: String, ty: String },
}

/// One key column's encoded value, bound as is: its bytes were made for the very type the
/// prepared statement declares, so the driver's own type check has nothing left to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded(pub Vec<u8>);

impl SerializeValue for Encoded {
    fn serialize<'b>(
        &self,
        _typ: &DriverType,
        writer: CellWriter<'b>,
    ) -> Result<WrittenCellProof<'b>, SerializationError> {
        writer.set_value(&self.0).map_err(SerializationError::new)
    }
}

/// The partition key columns of a prepared `… WHERE pk1 = ? AND pk2 = ?`, in marker order.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyColumns {
    columns: Vec<(String, Result<ColumnType, String>)>,
}

impl KeyColumns {
    /// From the statement's bind markers (origin's metadata). A type this build cannot read
    /// literals for is kept as its name: only keys of that table are refused, with the
    /// reason.
    pub fn of(prepared: &PreparedStatement) -> Self {
        Self::new(
            prepared
                .get_variable_col_specs()
                .iter()
                .map(|spec| (spec.name().to_owned(), column_type(spec.typ())))
                .collect(),
        )
    }

    /// Columns with their types (`Err(name)`: a type literals cannot be read for).
    pub fn new(columns: Vec<(String, Result<ColumnType, String>)>) -> Self {
        Self { columns }
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// `literals` (one per column, in order) as values to bind.
    pub fn bind(&self, literals: &[String]) -> Result<Vec<Encoded>, KeyError> {
        if literals.len() != self.columns.len() {
            return Err(KeyError::Arity {
                given: literals.len(),
                expected: self.columns.len(),
            });
        }
        // Only a timestamp literal `'now'` reads the clock; one instant per key.
        let now_micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let mut ids = IdGenerator::new(0);
        let values = ferry_cql::request::Values::None;
        let mut ctx = TermContext {
            values: &values,
            now_micros,
            ids: &mut ids,
        };
        self.columns
            .iter()
            .zip(literals)
            .map(|((column, ty), literal)| {
                let column = column.clone();
                let ty = match ty {
                    Ok(ty) => ty,
                    Err(name) => {
                        return Err(KeyError::Unsupported {
                            column,
                            ty: name.clone(),
                        });
                    }
                };
                if literal.len() > MAX_LITERAL {
                    return Err(KeyError::TooLong {
                        column,
                        len: literal.len(),
                        max: MAX_LITERAL,
                    });
                }
                let term = parse_term(literal).map_err(|e| KeyError::Syntax {
                    column: column.clone(),
                    literal: literal.clone(),
                    error: e.to_string(),
                })?;
                if !term.is_constant() {
                    return Err(KeyError::NotConstant {
                        column,
                        literal: literal.clone(),
                    });
                }
                let type_error = |error: String| KeyError::Type {
                    column: column.clone(),
                    ty: ty.cql_name(),
                    literal: literal.clone(),
                    error,
                };
                let value = match term_to_value(&term, &column, ty, &mut ctx) {
                    Ok(Bound::Value(v)) => v,
                    Ok(Bound::Null | Bound::Unset) => return Err(KeyError::Null { column }),
                    Err(e) => return Err(type_error(e.to_string())),
                };
                let mut bytes = Vec::new();
                encode_value(ty, &value, &mut bytes).map_err(|e| type_error(e.to_string()))?;
                Ok(Encoded(bytes))
            })
            .collect()
    }
}

/// The driver's description of a type as `ferry_cql`'s, or the type's name when it has no
/// counterpart.
pub fn column_type(t: &DriverType) -> Result<ColumnType, String> {
    use ColumnType as T;
    let boxed = |t: &DriverType| column_type(t).map(Box::new);
    Ok(match t {
        DriverType::Native(n) => match n {
            Native::Ascii => T::Ascii,
            Native::Boolean => T::Boolean,
            Native::Blob => T::Blob,
            Native::Counter => T::Counter,
            Native::Date => T::Date,
            Native::Decimal => T::Decimal,
            Native::Double => T::Double,
            Native::Duration => T::Duration,
            Native::Float => T::Float,
            Native::Int => T::Int,
            Native::BigInt => T::Bigint,
            Native::Text => T::Varchar,
            Native::Timestamp => T::Timestamp,
            Native::Inet => T::Inet,
            Native::SmallInt => T::Smallint,
            Native::TinyInt => T::Tinyint,
            Native::Time => T::Time,
            Native::Timeuuid => T::Timeuuid,
            Native::Uuid => T::Uuid,
            Native::Varint => T::Varint,
            other => return Err(format!("{other:?}")),
        },
        DriverType::Collection { typ, .. } => match typ {
            CollectionType::List(e) => T::List(boxed(e)?),
            CollectionType::Set(e) => T::Set(boxed(e)?),
            CollectionType::Map(k, v) => T::Map(boxed(k)?, boxed(v)?),
            other => return Err(format!("{other:?}")),
        },
        DriverType::Vector { typ, dimensions } => T::Vector {
            element: boxed(typ)?,
            dimension: u32::from(*dimensions),
        },
        DriverType::UserDefinedType { definition, .. } => T::Udt {
            keyspace: definition.keyspace.to_string(),
            name: definition.name.to_string(),
            fields: definition
                .field_types
                .iter()
                .map(|(n, t)| column_type(t).map(|t| (n.to_string(), t)))
                .collect::<Result<_, _>>()?,
        },
        DriverType::Tuple(ts) => T::Tuple(ts.iter().map(column_type).collect::<Result<_, _>>()?),
        other => return Err(format!("{other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(cols: &[(&str, ColumnType)]) -> KeyColumns {
        KeyColumns::new(
            cols.iter()
                .map(|(n, t)| ((*n).to_owned(), Ok(t.clone())))
                .collect(),
        )
    }

    fn bind(cols: &KeyColumns, literals: &[&str]) -> Result<Vec<Vec<u8>>, KeyError> {
        let literals: Vec<String> = literals.iter().map(|s| (*s).to_owned()).collect();
        cols.bind(&literals)
            .map(|v| v.into_iter().map(|e| e.0).collect())
    }

    #[test]
    fn compound_keys_bind_each_column_by_its_type() {
        let cols = columns(&[
            ("t", ColumnType::Varchar),
            ("n", ColumnType::Int),
            ("u", ColumnType::Uuid),
            ("b", ColumnType::Blob),
        ]);
        let bytes = bind(
            &cols,
            &[
                "'it''s; AND x = 1'",
                "-42",
                "6f1e3b9e-1d2c-4c8e-9a3b-0e6f2b1c9d7e",
                "0x00ff",
            ],
        )
        .unwrap();
        assert_eq!(bytes[0], b"it's; AND x = 1");
        assert_eq!(bytes[1], (-42i32).to_be_bytes());
        assert_eq!(
            bytes[2],
            [
                0x6f, 0x1e, 0x3b, 0x9e, 0x1d, 0x2c, 0x4c, 0x8e, 0x9a, 0x3b, 0x0e, 0x6f, 0x2b, 0x1c,
                0x9d, 0x7e
            ]
        );
        assert_eq!(bytes[3], [0x00, 0xff]);
    }

    #[test]
    fn collections_and_tuples_as_keys() {
        let cols = columns(&[
            (
                "f",
                ColumnType::Tuple(vec![ColumnType::Int, ColumnType::Varchar]),
            ),
            ("s", ColumnType::Set(Box::new(ColumnType::Int))),
        ]);
        let bytes = bind(&cols, &["(1, 'x')", "{2, 1}"]).unwrap();
        assert_eq!(bytes[0], [0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 1, b'x']);
        assert_eq!(bytes[1][..4], [0, 0, 0, 2]);
    }

    #[test]
    fn malformed_literals_are_refused_naming_the_column() {
        let cols = columns(&[("k", ColumnType::Varchar), ("n", ColumnType::Int)]);
        let e = bind(&cols, &["'a'", "'x'"]).unwrap_err();
        assert!(
            matches!(&e, KeyError::Type { column, .. } if column == "n"),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("column n: \"'x'\" is not a int value:"),
            "{e}"
        );
        let e = bind(&cols, &["'a'", "1 ALLOW FILTERING"]).unwrap_err();
        assert!(
            matches!(&e, KeyError::Syntax { column, .. } if column == "n"),
            "{e}"
        );
        let e = bind(&cols, &["'open", "1"]).unwrap_err();
        assert!(
            matches!(&e, KeyError::Syntax { column, .. } if column == "k"),
            "{e}"
        );
        let e = bind(&cols, &["'a'", "1; DROP TABLE ks.t"]).unwrap_err();
        assert!(matches!(e, KeyError::Syntax { .. }), "{e}");
        let e = bind(&cols, &["now()", "1"]).unwrap_err();
        assert!(matches!(e, KeyError::NotConstant { .. }), "{e}");
        let e = bind(&cols, &["null", "1"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "column k: a partition key column cannot be null"
        );
        let e = bind(&cols, &["'a'"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "1 key components, the table's partition key has 2 columns"
        );
        let long = format!("'{}'", "a".repeat(MAX_LITERAL));
        let e = bind(&cols, &[&long, "1"]).unwrap_err();
        assert!(matches!(e, KeyError::TooLong { .. }), "{e}");
        let uuid = columns(&[("u", ColumnType::Uuid)]);
        let e = bind(&uuid, &["6f1e3b9e-1d2c"]).unwrap_err();
        assert!(
            matches!(&e, KeyError::Syntax { column, .. } | KeyError::Type { column, .. } if column == "u"),
            "{e}"
        );
        let blob = columns(&[("b", ColumnType::Blob)]);
        let e = bind(&blob, &["0x0"]).unwrap_err();
        assert!(e.to_string().contains("even length"), "{e}");
        let unsupported = KeyColumns::new(vec![("c".to_owned(), Err("Custom".to_owned()))]);
        let e = bind(&unsupported, &["1"]).unwrap_err();
        assert!(matches!(e, KeyError::Unsupported { .. }), "{e}");
    }

    #[test]
    fn driver_types_map_to_ferry_types() {
        let text = DriverType::Native(Native::Text);
        assert_eq!(column_type(&text), Ok(ColumnType::Varchar));
        let map = DriverType::Collection {
            frozen: true,
            typ: CollectionType::Map(
                Box::new(text.clone()),
                Box::new(DriverType::Native(Native::BigInt)),
            ),
        };
        assert_eq!(
            column_type(&map),
            Ok(ColumnType::Map(
                Box::new(ColumnType::Varchar),
                Box::new(ColumnType::Bigint)
            ))
        );
        let tuple = DriverType::Tuple(vec![text, DriverType::Native(Native::Timeuuid)]);
        assert_eq!(
            column_type(&tuple),
            Ok(ColumnType::Tuple(vec![
                ColumnType::Varchar,
                ColumnType::Timeuuid
            ]))
        );
    }
}

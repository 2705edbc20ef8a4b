//! [`TypeName`]: spelling a written type back (`Display`) and resolving it to a
//! [`ColumnType`] with Cassandra's freezing rules.

use std::fmt;

use ferry_cql::types::ColumnType;

use super::ast::{QualifiedName, TypeName};

impl fmt::Display for TypeName {
    /// The type as Cassandra's `asCQL3Type()` prints it: `frozen<list<int>>`, `map<text, int>`,
    /// `vector<float, 3>`, `ks.udt`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Native(t) => f.write_str(&t.cql_name()),
            Self::List(e) => write!(f, "list<{e}>"),
            Self::Set(e) => write!(f, "set<{e}>"),
            Self::Map(k, v) => write!(f, "map<{k}, {v}>"),
            Self::Tuple(ts) => {
                f.write_str("tuple<")?;
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                f.write_str(">")
            }
            Self::Frozen(t) => write!(f, "frozen<{t}>"),
            Self::Vector(e, n) => write!(f, "vector<{e}, {n}>"),
            Self::Udt(name) => write!(f, "{name}"),
            Self::Custom(class) => write!(f, "'{}'", class.replace('\'', "''")),
        }
    }
}

impl TypeName {
    /// Maps the written type to a [`ColumnType`]; the flag is whether the value is one frozen
    /// cell although the type could be multi-cell (`frozen<…>`, and tuples, which Cassandra
    /// always freezes). `udts` looks a user type up by its name as written (the caller applies
    /// the session keyspace) and returns a [`ColumnType::Udt`].
    ///
    /// Errors carry Cassandra's message for the same declaration.
    pub fn resolve(
        &self,
        udts: impl Fn(&QualifiedName) -> Option<ColumnType>,
    ) -> Result<(ColumnType, bool), String> {
        match self {
            Self::Frozen(inner) => {
                inner.check_freezable()?;
                Ok((inner.resolve_in(&udts, true)?, true))
            }
            Self::Tuple(_) => Ok((self.resolve_in(&udts, true)?, true)),
            _ => Ok((self.resolve_in(&udts, false)?, false)),
        }
    }

    fn check_freezable(&self) -> Result<(), String> {
        match self {
            Self::List(_)
            | Self::Set(_)
            | Self::Map(..)
            | Self::Tuple(_)
            | Self::Udt(_)
            | Self::Frozen(_) => Ok(()),
            other => Err(format!(
                "frozen<> is only allowed on collections, tuples, and user-defined types (got {other})"
            )),
        }
    }

    /// Whether this is a collection or UDT written without `frozen<>`.
    fn is_non_frozen_multicell(&self) -> bool {
        matches!(
            self,
            Self::List(_) | Self::Set(_) | Self::Map(..) | Self::Udt(_)
        )
    }

    /// Checks an element of the collection `outer` (for messages) when `outer` is not frozen.
    fn check_element(&self, outer: &TypeName, frozen: bool) -> Result<(), String> {
        if matches!(self, Self::Native(ColumnType::Counter)) {
            return Err(format!(
                "Counters are not allowed inside collections: {outer}"
            ));
        }
        if !frozen && self.is_non_frozen_multicell() {
            return Err(if matches!(self, Self::Udt(_)) {
                format!("Non-frozen UDTs are not allowed inside collections: {outer}")
            } else {
                format!("Non-frozen collections are not allowed inside collections: {outer}")
            });
        }
        Ok(())
    }

    fn resolve_in(
        &self,
        udts: &dyn Fn(&QualifiedName) -> Option<ColumnType>,
        frozen: bool,
    ) -> Result<ColumnType, String> {
        let elem = |t: &TypeName| -> Result<Box<ColumnType>, String> {
            t.check_element(self, frozen)?;
            // Everything inside a collection is frozen, written so or not.
            Ok(Box::new(t.resolve_in(udts, true)?))
        };
        Ok(match self {
            Self::Native(t) => t.clone(),
            Self::Custom(class) => ColumnType::Custom(class.clone()),
            Self::List(e) => ColumnType::List(elem(e)?),
            Self::Set(e) => {
                if matches!(**e, Self::Native(ColumnType::Duration)) {
                    return Err(format!("Durations are not allowed inside sets: {self}"));
                }
                ColumnType::Set(elem(e)?)
            }
            Self::Map(k, v) => {
                if matches!(**k, Self::Native(ColumnType::Duration)) {
                    return Err(format!("Durations are not allowed as map keys: {self}"));
                }
                ColumnType::Map(elem(k)?, elem(v)?)
            }
            Self::Tuple(ts) => {
                let mut out = Vec::with_capacity(ts.len());
                for t in ts {
                    if matches!(t, Self::Native(ColumnType::Counter)) {
                        return Err(format!("Counters are not allowed inside tuples: {self}"));
                    }
                    out.push(t.resolve_in(udts, true)?);
                }
                ColumnType::Tuple(out)
            }
            Self::Frozen(inner) => {
                inner.check_freezable()?;
                inner.resolve_in(udts, true)?
            }
            Self::Vector(e, n) => {
                if *n == 0 {
                    return Err(format!(
                        "vectors may only have positive dimensions; given {n}"
                    ));
                }
                if matches!(**e, Self::Native(ColumnType::Counter)) {
                    return Err(format!("vectors may not contain counters: {self}"));
                }
                ColumnType::Vector {
                    element: Box::new(e.resolve_in(udts, true)?),
                    dimension: *n,
                }
            }
            Self::Udt(name) => udts(name).ok_or_else(|| format!("Unknown type {name}"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udts(name: &QualifiedName) -> Option<ColumnType> {
        (name.name == "addr").then(|| ColumnType::Udt {
            keyspace: "ks".into(),
            name: "addr".into(),
            fields: vec![("zip".into(), ColumnType::Int)],
        })
    }

    fn native(t: ColumnType) -> Box<TypeName> {
        Box::new(TypeName::Native(t))
    }

    #[test]
    fn resolves_and_reports_freezing() {
        use ColumnType as C;
        let list = TypeName::List(native(C::Int));
        assert_eq!(
            list.resolve(udts).unwrap(),
            (C::List(Box::new(C::Int)), false)
        );
        let frozen = TypeName::Frozen(Box::new(list.clone()));
        assert_eq!(
            frozen.resolve(udts).unwrap(),
            (C::List(Box::new(C::Int)), true)
        );
        let tuple = TypeName::Tuple(vec![TypeName::Native(C::Int), list.clone()]);
        assert!(tuple.resolve(udts).unwrap().1);
        let nested = TypeName::List(Box::new(list.clone()));
        assert_eq!(
            nested.resolve(udts).unwrap_err(),
            "Non-frozen collections are not allowed inside collections: list<list<int>>"
        );
        let nested_ok = TypeName::Map(native(C::Varchar), Box::new(frozen.clone()));
        assert_eq!(
            nested_ok.resolve(udts).unwrap().0.cql_name(),
            "map<text, list<int>>"
        );
        let udt = TypeName::Udt(QualifiedName::new(None, "addr"));
        assert!(!udt.resolve(udts).unwrap().1);
        assert_eq!(
            TypeName::Set(Box::new(udt.clone()))
                .resolve(udts)
                .unwrap_err(),
            "Non-frozen UDTs are not allowed inside collections: set<addr>"
        );
        assert_eq!(
            TypeName::Udt(QualifiedName::new(Some("ks"), "nope"))
                .resolve(udts)
                .unwrap_err(),
            "Unknown type ks.nope"
        );
        assert!(
            TypeName::Frozen(native(C::Int))
                .resolve(udts)
                .unwrap_err()
                .starts_with("frozen<> is only allowed")
        );
        assert_eq!(
            TypeName::List(native(C::Counter))
                .resolve(udts)
                .unwrap_err(),
            "Counters are not allowed inside collections: list<counter>"
        );
        assert!(TypeName::Set(native(C::Duration)).resolve(udts).is_err());
        assert!(
            TypeName::Map(native(C::Duration), native(C::Int))
                .resolve(udts)
                .is_err()
        );
        assert_eq!(
            TypeName::Vector(native(C::Float), 3).resolve(udts).unwrap(),
            (
                C::Vector {
                    element: Box::new(C::Float),
                    dimension: 3
                },
                false
            )
        );
        assert!(TypeName::Vector(native(C::Float), 0).resolve(udts).is_err());
    }
}
